//! The cache of golden images the harness boots: obtain, verify, hold and list them.
//!
//! An image enters the cache in one of two ways: [`Cache::ensure_downloaded`] fetches it (over
//! http(s) or from a local mirror) and checks it against the publisher's `SHA512SUMS`, or
//! [`Cache::adopt`] takes in one that another crate built. Either way its digest goes into the
//! cache's own `SHA512SUMS`, and every later use re-hashes the file against that entry first:
//! a truncated or corrupted image is deleted, never returned. A download is handed out again
//! only for the URL it came from.
//!
//! A run boots a pinned image, never the cache entry itself: [`Cache::pin`] hard-links the
//! verified image into the run directory and verifies it again through the link, and
//! [`pin_given`] copies an operator-given image there, hashing it on the way. Either returns the
//! digest of exactly what boots.
//!
//! Runs on one machine share the cache through an exclusive `flock` on `<dir>/.lock`; the
//! kernel releases it when a run dies, so it cannot go stale.
//!
//! ```no_run
//! use boma_image::{Cache, DownloadSource, default_dir};
//! let cache = Cache::open(&default_dir()?)?;
//! let image = match cache.ensure_downloaded(&DownloadSource::debian_genericcloud()) {
//!     Ok(path) => path,
//!     Err(e) if e.is_unreachable() => return Ok(()), // build the image instead, and say so
//!     Err(e) => return Err(e.into()),
//! };
//! let pinned = cache.pin(&image, camino::Utf8Path::new("tests/integration/.run/boma-it-x"))?;
//! println!("{} sha512 {}", pinned.path, pinned.sha512);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
mod error;
mod fetch;
mod files;
mod layout;
mod pin;
mod progress;
mod source;
pub mod sums;

use std::ffi::OsString;

use camino::Utf8PathBuf;

pub use cache::{Cache, CacheLock, CachedImage, Origin, Verification};
pub use error::CacheError;
pub use fetch::hash_file;
pub use layout::CACHE_SUMS;
pub use pin::{PINNED_IMAGE, PinnedImage, pin_given};
pub use source::{DEBIAN_GENERICCLOUD_URL, DownloadSource, SUMS_FILE};
pub use sums::parse_sums;

/// SHA-512 of a file (hex), in constant memory, interruptible.
pub fn sha512_file(path: &camino::Utf8Path) -> Result<String, CacheError> {
    fetch::hash_file(path).map(|(sha512, _)| sha512)
}

/// Debian's official genericcloud image, the default golden image.
pub const GENERICCLOUD: &str = "debian-13-genericcloud-amd64.qcow2";
/// The golden image boma builds itself from Debian packages (when the cloud site is out of reach).
pub const BUILT: &str = "debian-13-boma-amd64.qcow2";
/// The environment variable that moves the cache.
pub const CACHE_ENV: &str = "BOMA_IT_CACHE";
/// Where the cache lives unless [`CACHE_ENV`] says otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/boma-integration";

/// The cache directory: `$BOMA_IT_CACHE`, or [`DEFAULT_DIR`] when it is unset or empty.
pub fn default_dir() -> Result<Utf8PathBuf, CacheError> {
    dir_from_env(std::env::var_os(CACHE_ENV))
}

fn dir_from_env(value: Option<OsString>) -> Result<Utf8PathBuf, CacheError> {
    match value {
        Some(value) if !value.is_empty() => {
            Utf8PathBuf::from_path_buf(value.into()).map_err(|path| CacheError::CacheDir {
                reason: format!("{CACHE_ENV}={} is not valid UTF-8", path.display()),
            })
        }
        _ => Ok(DEFAULT_DIR.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt as _;

    use super::*;

    #[test]
    fn the_cache_dir_comes_from_the_environment_or_the_default() {
        assert_eq!(dir_from_env(None).unwrap(), DEFAULT_DIR);
        assert_eq!(dir_from_env(Some("".into())).unwrap(), DEFAULT_DIR);
        assert_eq!(
            dir_from_env(Some("/srv/cache".into())).unwrap(),
            "/srv/cache"
        );
        let err = dir_from_env(Some(OsString::from_vec(vec![b'/', 0xff]))).unwrap_err();
        assert!(err.to_string().contains("BOMA_IT_CACHE"), "{err}");
    }
}
