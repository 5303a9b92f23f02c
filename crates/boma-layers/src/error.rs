//! Why a layer store operation failed (as opposed to a layer being absent or defective, which
//! is a normal answer of a lookup).

use std::io;

use boma_exec::ExecError;
use boma_exec::interrupt::Interrupted;
use camino::Utf8PathBuf;

use crate::key::LayerKey;

/// Why a store operation failed (as opposed to a layer being absent or defective, which is a
/// normal answer).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not valid utf-8: put the image cache under a utf-8 path")]
    NotUtf8 { path: String },
    #[error("{0}")]
    Exec(#[from] ExecError),
    #[error("{0}")]
    Interrupted(#[from] Interrupted),
    #[error("cannot start a shell for qemu-img: {0}")]
    Shell(String),
    #[error("unexpected `qemu-img info` output for {path}: {reason}")]
    QemuImgOutput { path: Utf8PathBuf, reason: String },
    #[error("{path} is a {format} image; only qcow2 overlays can become layers")]
    OverlayNotQcow2 { path: Utf8PathBuf, format: String },
    #[error(
        "{overlay} is backed by {}, not {expected}: create the step's overlay on the parent layer (or the golden image for the first step)",
        found.as_deref().unwrap_or("nothing")
    )]
    OverlayBacking {
        overlay: Utf8PathBuf,
        found: Option<String>,
        expected: Utf8PathBuf,
    },
    #[error(
        "parent layer {key} is not in the store: hold the chain's layers while the vm runs, then insert"
    )]
    ParentMissing { key: LayerKey },
}

/// The error of an I/O `action` on `path`, for `map_err`.
pub(crate) fn io_err(
    action: &'static str,
    path: &camino::Utf8Path,
) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}
