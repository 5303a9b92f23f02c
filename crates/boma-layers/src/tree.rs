//! How [`crate::reach`](mod@crate::reach) and [`crate::key`] read the repository: a narrow trait with an in-memory
//! implementation for tests and a thin one over the real checkout.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use camino::{Utf8Path, Utf8PathBuf};

use crate::path::RepoPath;

/// Read access to a repository's files. No policy: which files matter is decided by the callers.
pub trait RepoTree {
    /// The content of the file at `path`; `None` when there is no such file (or it is a
    /// directory).
    fn read(&self, path: &RepoPath) -> Result<Option<Vec<u8>>, TreeError>;

    /// Every file below the directory `dir`, at any depth, sorted; none when `dir` does not
    /// exist or is a file.
    fn files_under(&self, dir: &RepoPath) -> Result<Vec<RepoPath>, TreeError>;

    /// The names of the directories directly in `dir` (`None`: the repo root), sorted.
    fn subdirs(&self, dir: Option<&RepoPath>) -> Result<Vec<String>, TreeError>;

    /// Every file of the repository, at any depth, except those under `skip`, sorted.
    fn files_except(&self, skip: &[RepoPath]) -> Result<Vec<RepoPath>, TreeError>;
}

/// A file or directory of the checkout could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("cannot read {path}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} has a name that is not utf-8: rename it (the layer key names files as text)")]
    NotUtf8 { path: String },
    #[error("{path} is listed but could not be read back: the checkout changed while it was read")]
    Vanished { path: RepoPath },
}

/// A repository held in memory: for tests of the pure logic.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    files: BTreeMap<RepoPath, Vec<u8>>,
}

impl MemoryTree {
    /// A tree of `(path, content)` pairs. Panics on a path that [`RepoPath::new`] refuses:
    /// test inputs are literals.
    pub fn new<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> MemoryTree {
        let files = files
            .into_iter()
            .map(|(path, text)| {
                let path = RepoPath::new(path).expect("test paths are repo paths");
                (path, text.as_bytes().to_vec())
            })
            .collect();
        MemoryTree { files }
    }

    /// Adds or replaces a file.
    pub fn set(&mut self, path: &str, text: &str) {
        let path = RepoPath::new(path).expect("test paths are repo paths");
        self.files.insert(path, text.as_bytes().to_vec());
    }

    /// Removes a file.
    pub fn remove(&mut self, path: &str) {
        let path = RepoPath::new(path).expect("test paths are repo paths");
        self.files.remove(&path);
    }
}

impl RepoTree for MemoryTree {
    fn read(&self, path: &RepoPath) -> Result<Option<Vec<u8>>, TreeError> {
        Ok(self.files.get(path).cloned())
    }

    fn files_under(&self, dir: &RepoPath) -> Result<Vec<RepoPath>, TreeError> {
        Ok(self
            .files
            .keys()
            .filter(|path| *path != dir && path.is_under(dir))
            .cloned()
            .collect())
    }

    fn subdirs(&self, dir: Option<&RepoPath>) -> Result<Vec<String>, TreeError> {
        let prefix = dir.map_or(String::new(), |d| format!("{d}/"));
        let names: BTreeSet<String> = self
            .files
            .keys()
            .filter_map(|path| path.as_str().strip_prefix(&prefix))
            .filter_map(|inner| inner.split_once('/').map(|(name, _)| name.to_owned()))
            .collect();
        Ok(names.into_iter().collect())
    }

    fn files_except(&self, skip: &[RepoPath]) -> Result<Vec<RepoPath>, TreeError> {
        Ok(self
            .files
            .keys()
            .filter(|path| !skip.iter().any(|s| path.is_under(s)))
            .cloned()
            .collect())
    }
}

/// The repository on disk, rooted at a checkout. Symlinks are followed (a linked role or
/// `group_vars` is read through, as Ansible reads it); a directory reached twice through links
/// is walked once.
#[derive(Debug, Clone)]
pub struct DiskTree {
    root: Utf8PathBuf,
}

impl DiskTree {
    pub fn new(root: &Utf8Path) -> DiskTree {
        DiskTree {
            root: root.to_owned(),
        }
    }

    fn walk(
        &self,
        dir: &Utf8Path,
        relative: Option<&RepoPath>,
        skip: &[RepoPath],
        seen: &mut BTreeSet<std::path::PathBuf>,
        out: &mut Vec<RepoPath>,
    ) -> Result<(), TreeError> {
        let io_err = |path: &Utf8Path| {
            let path = path.to_owned();
            move |source| TreeError::Io { path, source }
        };
        // A symlink loop would otherwise recurse forever.
        let real = std::fs::canonicalize(dir).map_err(io_err(dir))?;
        if !seen.insert(real) {
            return Ok(());
        }
        let entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                let inside = relative.map_or(String::new(), |r| format!("{r}/"));
                return Err(TreeError::NotUtf8 {
                    path: format!("{inside}{}", name.to_string_lossy()),
                });
            };
            let path = dir.join(name);
            let child = match relative {
                Some(relative) => relative.join(name),
                None => RepoPath::new(name).map_err(|_| TreeError::NotUtf8 {
                    path: name.to_owned(),
                })?,
            };
            if skip.iter().any(|s| child.is_under(s)) {
                continue;
            }
            // `metadata` follows links; a dangling link is no file for Ansible either.
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            if meta.is_dir() {
                self.walk(&path, Some(&child), skip, seen, out)?;
            } else {
                out.push(child);
            }
        }
        Ok(())
    }
}

impl RepoTree for DiskTree {
    fn read(&self, path: &RepoPath) -> Result<Option<Vec<u8>>, TreeError> {
        let full = self.root.join(path.as_str());
        match std::fs::read(&full) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::IsADirectory
                ) =>
            {
                Ok(None)
            }
            Err(source) => Err(TreeError::Io { path: full, source }),
        }
    }

    fn files_under(&self, dir: &RepoPath) -> Result<Vec<RepoPath>, TreeError> {
        let full = self.root.join(dir.as_str());
        match std::fs::metadata(&full) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(Vec::new()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(TreeError::Io { path: full, source }),
        }
        let mut out = Vec::new();
        self.walk(&full, Some(dir), &[], &mut BTreeSet::new(), &mut out)?;
        out.sort();
        Ok(out)
    }

    fn subdirs(&self, dir: Option<&RepoPath>) -> Result<Vec<String>, TreeError> {
        let full = dir.map_or(self.root.clone(), |d| self.root.join(d.as_str()));
        let entries = match std::fs::read_dir(&full) {
            Ok(entries) => entries,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(source) => return Err(TreeError::Io { path: full, source }),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| TreeError::Io {
                path: full.clone(),
                source,
            })?;
            // Through links, as Ansible looks.
            if !std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn files_except(&self, skip: &[RepoPath]) -> Result<Vec<RepoPath>, TreeError> {
        let mut out = Vec::new();
        self.walk(&self.root, None, skip, &mut BTreeSet::new(), &mut out)?;
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_disk_trees_list_the_same_files() {
        let files = [
            ("roles/base/tasks/main.yml", "- debug: {}\n"),
            ("roles/base/templates/a.j2", "x"),
            ("roles/base_other/tasks/main.yml", "[]"),
            ("playbooks/site.yml", "[]"),
        ];
        let memory = MemoryTree::new(files);
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        for (path, text) in files {
            let full = root.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        let disk = DiskTree::new(root);
        let base = RepoPath::new("roles/base").unwrap();
        let listed = disk.files_under(&base).unwrap();
        assert_eq!(listed, memory.files_under(&base).unwrap());
        assert_eq!(
            listed.iter().map(RepoPath::as_str).collect::<Vec<_>>(),
            ["roles/base/tasks/main.yml", "roles/base/templates/a.j2"]
        );
        let missing = RepoPath::new("roles/none").unwrap();
        assert!(disk.files_under(&missing).unwrap().is_empty());
        assert_eq!(disk.read(&missing).unwrap(), None);
        assert_eq!(disk.read(&base).unwrap(), None, "a directory is no file");
        let site = RepoPath::new("playbooks/site.yml").unwrap();
        assert_eq!(disk.read(&site).unwrap(), Some(b"[]".to_vec()));
        let roles = RepoPath::new("roles").unwrap();
        assert_eq!(
            disk.subdirs(Some(&roles)).unwrap(),
            memory.subdirs(Some(&roles)).unwrap()
        );
        assert_eq!(disk.subdirs(None).unwrap(), ["playbooks", "roles"]);
        let skip = [RepoPath::new("roles/base").unwrap()];
        let rest = disk.files_except(&skip).unwrap();
        assert_eq!(rest, memory.files_except(&skip).unwrap());
        assert_eq!(
            rest.iter().map(RepoPath::as_str).collect::<Vec<_>>(),
            ["playbooks/site.yml", "roles/base_other/tasks/main.yml"]
        );
    }

    #[test]
    fn disk_tree_follows_links_and_survives_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("real/base/tasks")).unwrap();
        std::fs::write(root.join("real/base/tasks/main.yml"), "[]").unwrap();
        std::fs::create_dir_all(root.join("roles")).unwrap();
        std::os::unix::fs::symlink(root.join("real/base"), root.join("roles/base")).unwrap();
        std::os::unix::fs::symlink(root.join("roles"), root.join("roles/base/tasks/loop")).unwrap();
        let listed = DiskTree::new(root)
            .files_under(&RepoPath::new("roles").unwrap())
            .unwrap();
        assert!(
            listed
                .iter()
                .any(|p| p.as_str() == "roles/base/tasks/main.yml"),
            "{listed:?}"
        );
    }
}
