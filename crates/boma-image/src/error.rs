//! The cache's typed errors: one variant per case a caller may branch on, each saying what to do.

use std::io;

use boma_exec::interrupt::Interrupted;
use camino::{Utf8Path, Utf8PathBuf};

/// Why the cache could not provide, verify or take in an image.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The download host could not be reached at all (DNS failure, connection refused or
    /// unreachable, connect timeout). The caller may fall back to building the image.
    #[error("cannot reach the download host for {url}")]
    Unreachable {
        url: String,
        #[source]
        source: ureq::Error,
    },
    /// The host answered, but there is nothing at this URL: the URL is wrong. No fallback.
    #[error(
        "{url} does not exist (HTTP 404 or no such file): the URL is wrong; point it at an \
         existing image and the SHA512SUMS in the same directory"
    )]
    NotFound { url: String },
    /// Any other HTTP error status.
    #[error("{url} answered HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    /// The request failed after the host was reached (TLS, protocol, reset before a response).
    #[error("request for {url} failed")]
    Request {
        url: String,
        #[source]
        source: ureq::Error,
    },
    /// The body stopped arriving: connection dropped, read timeout, local read error.
    #[error("download of {url} broke off after {received} bytes; nothing was cached, run again")]
    Transfer {
        url: String,
        received: u64,
        #[source]
        source: io::Error,
    },
    /// The body ended early without an error from the transport.
    #[error(
        "download of {url} ended after {received} of {expected} bytes; nothing was cached, \
         run again"
    )]
    Truncated {
        url: String,
        received: u64,
        expected: u64,
    },
    /// The checksum URL does not serve a `SHA512SUMS` file.
    #[error("{url} is not a SHA512SUMS file ({reason}): is the checksum URL right?")]
    BadSums { url: String, reason: String },
    /// The checksum file does not vouch for this image, so it is refused.
    #[error(
        "{sums_url} has no entry for {name}, so the image cannot be verified and was not \
         downloaded: the image and its SHA512SUMS must come from the same directory; check both \
         URLs, or use a complete mirror"
    )]
    MissingEntry { name: String, sums_url: String },
    /// The download does not match its checksum; it was deleted.
    #[error(
        "sha512 of {url} does not match {sums_url}: expected {expected}, got {actual}; the \
         download was deleted and nothing was cached; run again, and if it repeats the mirror is \
         corrupt or mid-update, so use another one"
    )]
    Mismatch {
        url: String,
        sums_url: String,
        expected: String,
        actual: String,
    },
    #[error("invalid image URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("cannot adopt {path}: {reason}")]
    Adopt { path: Utf8PathBuf, reason: String },
    #[error("cannot pin {path} for this run: {reason}")]
    Pin { path: Utf8PathBuf, reason: String },
    /// The image read through its pin is not the one the cache verified; the pin was deleted.
    #[error(
        "the image pinned from {path} does not match the cache's SHA512SUMS (expected \
         {expected}, got {actual}): it changed after it was verified; the pin was deleted, run \
         again"
    )]
    PinMismatch {
        path: Utf8PathBuf,
        expected: String,
        actual: String,
    },
    #[error("cache directory: {reason}")]
    CacheDir { reason: String },
    #[error("could not {action} {path}")]
    Io {
        action: &'static str,
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
    /// Ctrl-C or SIGTERM arrived; any partial download was deleted.
    #[error("{0}")]
    Interrupted(#[from] Interrupted),
}

impl CacheError {
    /// The interrupt that stopped the operation, if that is what happened.
    pub fn interrupted(&self) -> Option<Interrupted> {
        match self {
            CacheError::Interrupted(interrupted) => Some(*interrupted),
            _ => None,
        }
    }

    /// True when the download host could not be reached, the case where building the image
    /// locally is the sensible fallback.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, CacheError::Unreachable { .. })
    }
}

/// `map_err` adapter for a failed filesystem operation on `path`.
pub(crate) fn io_err(
    action: &'static str,
    path: &Utf8Path,
) -> impl FnOnce(io::Error) -> CacheError {
    let path = path.to_owned();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}
