//! The cache directory's file names: the ones the cache reserves for itself and the rule for a
//! name that may hold an image. Shared by `source` (an image's name comes from its URL) and
//! `cache` (which lays the files out), so neither has to borrow from the other.

/// The cache's own checksum file.
pub const CACHE_SUMS: &str = "SHA512SUMS";
/// Scratch directory for images being built.
pub(crate) const SCRATCH: &str = "tmp";
/// The lock file every run `flock`s.
pub(crate) const LOCK: &str = ".lock";
/// Suffix of a download in progress.
pub(crate) const PART: &str = ".part";
/// Suffix of the sidecar that says where an image came from.
pub(crate) const ORIGIN: &str = ".origin";

/// Whether `name` is safe as a file name directly in the cache directory, and says why not.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.starts_with('.') {
        return Err("it starts with a dot".to_owned());
    }
    if name == CACHE_SUMS || name == SCRATCH {
        return Err(format!("{name} is reserved by the cache"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._+-~".contains(*c)))
    {
        return Err(format!("it contains {bad:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn reserved_hidden_and_odd_names_are_refused() {
        assert_eq!(check_name("debian-13-genericcloud-amd64.qcow2"), Ok(()));
        for bad in ["", ".lock", "SHA512SUMS", "tmp", "a b", "a/b", "a%20b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
