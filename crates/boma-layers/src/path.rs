//! `RepoPath`: a file's path inside the repository, checked once and carried as a type, so that
//! a manifest can never hold an absolute path, a `..`, or two spellings of one file.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A normalized path relative to the repository root: `/`-separated, non-empty, no `.` or `..`
/// components, no leading or doubled `/`. Orders as its string, so sorted manifests are sorted
/// by path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoPath(String);

/// A string that is not a path inside the repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a path inside the repo: it must be relative, non-empty and free of `..`")]
pub struct NotInRepo {
    pub given: String,
}

impl RepoPath {
    /// Checks `path` (relative to the repo root). `./` and doubled `/` are normalized away;
    /// `..`, an absolute path and an empty one are refused.
    pub fn new(path: &str) -> Result<RepoPath, NotInRepo> {
        if path.starts_with('/') {
            return Err(NotInRepo {
                given: path.to_owned(),
            });
        }
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(NotInRepo {
                        given: path.to_owned(),
                    });
                }
                part => parts.push(part),
            }
        }
        if parts.is_empty() {
            return Err(NotInRepo {
                given: path.to_owned(),
            });
        }
        Ok(RepoPath(parts.join("/")))
    }

    /// `relative` resolved against the directory `base` (`None`: the repo root), the way a
    /// file system does: `..` climbs. `None` when the result is the root itself or leaves the
    /// repository (an absolute path, or more `..` than there are directories).
    pub fn resolve(base: Option<&RepoPath>, relative: &str) -> Option<RepoPath> {
        if relative.starts_with('/') {
            return None;
        }
        let mut parts: Vec<&str> = base.map(|b| b.0.split('/').collect()).unwrap_or_default();
        for part in relative.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop()?;
                }
                part => parts.push(part),
            }
        }
        if parts.is_empty() {
            return None;
        }
        Some(RepoPath(parts.join("/")))
    }

    /// `self/child`, for a `child` that is a plain relative path (no `..`).
    pub fn join(&self, child: &str) -> RepoPath {
        RepoPath::resolve(Some(self), child).unwrap_or_else(|| self.clone())
    }

    /// The directory holding this path; `None` at the top of the repository.
    pub fn parent(&self) -> Option<RepoPath> {
        self.0
            .rsplit_once('/')
            .map(|(dir, _)| RepoPath(dir.to_owned()))
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, name)| name)
    }

    /// Whether this path is `dir` or lies below it.
    pub fn is_under(&self, dir: &RepoPath) -> bool {
        self.0 == dir.0
            || (self.0.starts_with(&dir.0) && self.0.as_bytes().get(dir.0.len()) == Some(&b'/'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RepoPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RepoPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RepoPath, D::Error> {
        let text = String::deserialize(d)?;
        RepoPath::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_what_leaves_the_repo() {
        assert_eq!(
            RepoPath::new("./roles//base/").unwrap().as_str(),
            "roles/base"
        );
        for bad in ["", ".", "/etc/passwd", "roles/../../x", "a/.."] {
            assert!(RepoPath::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn resolves_like_a_file_system() {
        let playbooks = RepoPath::new("playbooks").unwrap();
        let resolve = |rel| RepoPath::resolve(Some(&playbooks), rel).map(|p| p.0);
        assert_eq!(resolve("other.yml").as_deref(), Some("playbooks/other.yml"));
        assert_eq!(resolve("../tests/x.yml").as_deref(), Some("tests/x.yml"));
        assert_eq!(resolve(".."), None, "the root is not a file");
        assert_eq!(resolve("../../x"), None, "above the root");
        assert_eq!(resolve("/abs"), None);
        assert_eq!(
            RepoPath::resolve(None, "roles/x").map(|p| p.0).as_deref(),
            Some("roles/x")
        );
    }

    #[test]
    fn under_means_below_a_directory_not_a_name_prefix() {
        let dir = RepoPath::new("roles/base").unwrap();
        assert!(
            RepoPath::new("roles/base/tasks/main.yml")
                .unwrap()
                .is_under(&dir)
        );
        assert!(dir.is_under(&dir));
        assert!(!RepoPath::new("roles/base_extra/x").unwrap().is_under(&dir));
    }
}
