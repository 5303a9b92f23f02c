//! Reading a repository for [`crate::check`]: the role names, the vocabulary and the files
//! that carry tags.

use std::io;

use camino::{Utf8Path, Utf8PathBuf};

use crate::{Report, TagsError, parse_vocabulary, scan};

/// The vocabulary of concern tags, relative to the repository root.
pub const VOCABULARY: &str = "tests/tags.yml";

/// Check the repository at `root`: `playbooks/*.yml`, `roles/*/tasks/**/*.yml` and
/// `roles/*/handlers/**/*.yml` (`.yaml` too) against the role names (the directories under
/// `roles/`) and [`VOCABULARY`]. Findings name files relative to `root`.
pub fn check_repo(root: &Utf8Path) -> Result<Report, TagsError> {
    let vocabulary_path = root.join(VOCABULARY);
    let vocabulary = parse_vocabulary(VOCABULARY, &read(&vocabulary_path)?)?;

    let mut roles = Vec::new();
    let mut paths = yaml_files(&root.join("playbooks"), false)?;
    for role in dir_entries(&root.join("roles"))? {
        if !is_dir(&role)? {
            continue;
        }
        roles.push(role.file_name().unwrap_or_default().to_owned());
        for sub in ["tasks", "handlers"] {
            paths.extend(yaml_files(&role.join(sub), true)?);
        }
    }

    // One order for every run: findings list files alphabetically.
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in &paths {
        let relative = path.strip_prefix(root).unwrap_or(path).to_string();
        files.push((relative, read(path)?));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    Ok(scan(&files, &roles, &vocabulary))
}

/// The `*.yml`/`*.yaml` files in `dir` (and below it when `recurse`), sorted; none when `dir`
/// does not exist (a role without handlers).
fn yaml_files(dir: &Utf8Path, recurse: bool) -> Result<Vec<Utf8PathBuf>, TagsError> {
    let mut files = Vec::new();
    for path in dir_entries(dir)? {
        if is_dir(&path)? {
            if recurse {
                files.extend(yaml_files(&path, true)?);
            }
        } else if matches!(path.extension(), Some("yml" | "yaml")) {
            files.push(path);
        }
    }
    Ok(files)
}

/// The entries of `dir`, sorted so findings come in a stable order; none when it is missing.
fn dir_entries(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>, TagsError> {
    let entries = match dir.read_dir_utf8() {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(dir, e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(|e| read_error(dir, e))?.into_path());
    }
    paths.sort();
    Ok(paths)
}

/// Whether `path` is a directory, following symlinks (a linked role counts).
fn is_dir(path: &Utf8Path) -> Result<bool, TagsError> {
    Ok(path.metadata().map_err(|e| read_error(path, e))?.is_dir())
}

fn read(path: &Utf8Path) -> Result<String, TagsError> {
    std::fs::read_to_string(path).map_err(|e| read_error(path, e))
}

fn read_error(path: &Utf8Path, source: io::Error) -> TagsError {
    TagsError::Read {
        path: path.to_owned(),
        source,
    }
}
