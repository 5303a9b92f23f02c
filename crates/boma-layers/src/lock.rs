//! `flock`s on files of the store: the store lock, a layer's hold lock, an insert's part file.
//!
//! Every acquisition opens its own file description, so locks exclude other threads of this
//! process as well as other processes. A lock file that a remover may unlink is re-checked
//! after locking: if the path no longer names the inode we locked, the lock protects nothing
//! and is taken again on the new file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use boma_exec::interrupt::{self, Interrupted};
use camino::Utf8Path;

/// How often a waiting lock is retried (and Ctrl-C checked).
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// A held `flock`; released when dropped (the file is closed).
#[derive(Debug)]
pub struct Locked {
    _file: File,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    Io(io::Error),
    Interrupted(Interrupted),
}

/// Takes `mode` on `path` (created if missing), waiting while another holder conflicts.
pub fn wait(path: &Utf8Path, mode: Mode) -> Result<Locked, LockError> {
    loop {
        if let Some(locked) = try_once(path, mode).map_err(LockError::Io)? {
            return Ok(locked);
        }
        interrupt::sleep(POLL).map_err(LockError::Interrupted)?;
    }
}

/// How many times [`try_briefly`] tries, and how long it pauses in between.
const BRIEF_TRIES: u32 = 5;
const BRIEF_PAUSE: Duration = Duration::from_millis(20);

/// Takes `mode` on `path` (created if missing) if no one conflicts, retrying for about a tenth
/// of a second before calling the file busy (`None`).
///
/// A `flock` belongs to the open file description, and a child process gets a copy of every
/// descriptor between its fork and its exec (where close-on-exec closes them): a lock this
/// process has just released can linger that long in a child that another thread is starting.
/// Removal must not mistake that moment for a run holding the layer.
pub fn try_briefly(path: &Utf8Path, mode: Mode) -> Result<Option<Locked>, LockError> {
    for attempt in 0..BRIEF_TRIES {
        if let Some(locked) = try_once(path, mode).map_err(LockError::Io)? {
            return Ok(Some(locked));
        }
        if attempt + 1 < BRIEF_TRIES {
            interrupt::sleep(BRIEF_PAUSE).map_err(LockError::Interrupted)?;
        }
    }
    Ok(None)
}

/// One attempt: `None` when someone holds a conflicting lock.
fn try_once(path: &Utf8Path, mode: Mode) -> io::Result<Option<Locked>> {
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        let taken = match mode {
            Mode::Shared => file.try_lock_shared(),
            Mode::Exclusive => file.try_lock(),
        };
        match taken {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        // A remover unlinks the lock file while holding it; whoever locked the old inode in the
        // meantime must start over on the path's current file.
        let ours = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                return Ok(Some(Locked { _file: file }));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
}

/// Takes an exclusive lock on an existing file without creating it (an insert's part file);
/// `None` when someone holds it or it is gone.
pub fn try_existing(path: &Utf8Path) -> io::Result<Option<Locked>> {
    let file = match OpenOptions::new().read(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(Locked { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Locks an already open file exclusively (the part file an insert writes).
pub fn hold_open(file: &File) -> io::Result<()> {
    file.try_lock().map_err(|e| match e {
        TryLockError::WouldBlock => io::Error::other("a fresh part file is locked by someone else"),
        TryLockError::Error(e) => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_and_exclude_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("k.lock");
        let a = try_once(&path, Mode::Shared)
            .unwrap()
            .expect("first shared");
        let b = try_once(&path, Mode::Shared)
            .unwrap()
            .expect("second shared");
        assert!(try_once(&path, Mode::Exclusive).unwrap().is_none());
        drop((a, b));
        let x = try_once(&path, Mode::Exclusive)
            .unwrap()
            .expect("exclusive when idle");
        assert!(try_once(&path, Mode::Shared).unwrap().is_none());
        drop(x);
    }

    #[test]
    fn a_lock_on_an_unlinked_file_is_taken_again_on_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("k.lock");
        let remover = try_once(&path, Mode::Exclusive).unwrap().unwrap();
        std::fs::remove_file(&path).unwrap();
        // The path is free again: a holder now locks the new file, which a second remover
        // then cannot take, although the first remover still holds the old inode.
        let holder = try_once(&path, Mode::Shared).unwrap().expect("new file");
        assert!(try_once(&path, Mode::Exclusive).unwrap().is_none());
        drop((remover, holder));
    }
}
