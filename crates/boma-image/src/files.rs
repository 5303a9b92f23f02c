//! Small filesystem helpers shared by the cache and the pins.

use std::{fs, io};

use camino::Utf8Path;

use crate::CacheError;
use crate::error::io_err;

/// Delete `path`; one that is already gone is not an error.
pub(crate) fn remove_if_present(path: &Utf8Path) -> Result<(), CacheError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("delete", path)(e)),
        _ => Ok(()),
    }
}
