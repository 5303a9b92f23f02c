//! Pinning an image for one run: the file QEMU opens is fixed, and its digest is read through
//! that very file, so nothing can change the image between its verification and the boot.
//!
//! A cached image is hard-linked ([`crate::Cache::pin`]): the same inode, so renaming another
//! file over the cache entry leaves the pin as it was. An operator-given image
//! ([`pin_given`]) is copied instead, because it is the operator's writable file: a link would
//! follow any later write to it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt as _;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::CacheError;
use crate::error::io_err;
use crate::fetch::{copy_hashing, hash_file};
use crate::files::remove_if_present;

/// The pinned image's file name in a run directory: the harness creates the VM's overlay on it.
pub const PINNED_IMAGE: &str = "golden.qcow2";

/// A pinned image is read-only, like the cache's own images.
const PINNED_MODE: u32 = 0o444;

/// An image fixed for one run: the file to boot and its SHA-512 as read through that file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinnedImage {
    pub path: Utf8PathBuf,
    pub sha512: String,
}

/// Pin an operator-given image (`--image <file>`) for one run: copy it read-only into `run_dir`
/// as [`PINNED_IMAGE`], hashing the bytes on their way through, and return that digest for the
/// run's report. A later write to the operator's file does not reach the copy.
pub fn pin_given(image: &Utf8Path, run_dir: &Utf8Path) -> Result<PinnedImage, CacheError> {
    let meta = image.metadata().map_err(io_err("read", image))?;
    if !meta.is_file() {
        return Err(CacheError::Pin {
            path: image.to_owned(),
            reason: "it is not a file".to_owned(),
        });
    }
    place(run_dir, |staged| copy_into(image, staged))
}

/// Hard-link `image` into `run_dir` as [`PINNED_IMAGE`] (copying when a link cannot be made)
/// and hash it through the pinned path. The caller compares the digest with what it expects.
pub(crate) fn pin_file(image: &Utf8Path, run_dir: &Utf8Path) -> Result<PinnedImage, CacheError> {
    place(run_dir, |staged| {
        match fs::hard_link(image, staged) {
            Ok(()) => {}
            // Another filesystem, or a kernel that refuses links to files of another owner
            // (`fs.protected_hardlinks`): a private copy pins the bytes just as well.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::CrossesDevices | io::ErrorKind::PermissionDenied
                ) =>
            {
                copy_into(image, staged)?;
            }
            Err(e) => return Err(io_err("hard-link the image into the run directory", staged)(e)),
        }
        // Through the link: these are the bytes the run will boot.
        Ok(hash_file(staged)?.0)
    })
}

/// Put a file into `run_dir` as [`PINNED_IMAGE`]: `make` fills a hidden staging path and
/// returns its digest, then it is renamed into place (replacing an earlier pin of this run).
fn place(
    run_dir: &Utf8Path,
    make: impl FnOnce(&Utf8Path) -> Result<String, CacheError>,
) -> Result<PinnedImage, CacheError> {
    fs::create_dir_all(run_dir).map_err(io_err("create", run_dir))?;
    let staged = run_dir.join(format!(".{PINNED_IMAGE}.pin"));
    remove_if_present(&staged)?;
    let sha512 = match make(&staged) {
        Ok(sha512) => sha512,
        Err(e) => {
            // Best effort: the error being returned matters more than the leftover.
            let _ = remove_if_present(&staged);
            return Err(e);
        }
    };
    let path = run_dir.join(PINNED_IMAGE);
    fs::rename(&staged, &path).map_err(io_err("rename into place", &path))?;
    Ok(PinnedImage { path, sha512 })
}

/// Copy `image` into a new read-only file at `dest`, returning the digest of the bytes copied.
fn copy_into(image: &Utf8Path, dest: &Utf8Path) -> Result<String, CacheError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io_err("create", dest))?;
    let (sha512, _) = copy_hashing(image, &mut file, dest)?;
    file.sync_all().map_err(io_err("fsync", dest))?;
    set_read_only(&file, dest)?;
    Ok(sha512)
}

fn set_read_only(file: &File, path: &Utf8Path) -> Result<(), CacheError> {
    file.set_permissions(fs::Permissions::from_mode(PINNED_MODE))
        .map_err(io_err("make read-only", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_pin_is_read_only_and_hashed_as_copied() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        let image = root.join("given.qcow2");
        fs::write(&image, b"qcow2 bytes").unwrap();
        let pinned = place(&root.join("run"), |staged| copy_into(&image, staged)).unwrap();
        assert_eq!(pinned.path, root.join("run").join(PINNED_IMAGE));
        assert_eq!(fs::read(&pinned.path).unwrap(), b"qcow2 bytes");
        assert_eq!(pinned.sha512, hash_file(&image).unwrap().0);
        let mode = pinned.path.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        // No staging file is left behind.
        let names: Vec<_> = fs::read_dir(root.join("run")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_failed_pin_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        let err = place(&root.join("run"), |staged| {
            fs::write(staged, b"half").unwrap();
            Err(io_err("read", staged)(io::Error::other("disk gone")))
        })
        .unwrap_err();
        assert!(matches!(err, CacheError::Io { .. }), "{err}");
        assert_eq!(fs::read_dir(root.join("run")).unwrap().count(), 0);
    }
}
