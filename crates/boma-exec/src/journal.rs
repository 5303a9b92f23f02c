//! The spawn journal: every command the harness starts is appended to a file at the moment it
//! starts, so that `prune` can later stop exactly those processes — identified by pid *and*
//! start time — and nothing else that merely mentions the run directory in its command line.
//!
//! The journal is process-wide ([`record_into`] / [`stop_recording`]) because the spawner is:
//! every [`crate::Run`] records itself right after `spawn()` succeeds. One JSON line per spawn,
//! written with a single `write` on an `O_APPEND` descriptor under an `flock`, so that several
//! threads (or processes) append safely and [`retain`] can rewrite the file without losing an
//! append. [`read`] skips a torn line; an append that finds the file
//! ending in a torn line starts on a fresh line, so one crash never eats the next record.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::procfs;

/// Where the host's boot id is: it changes on every boot, so a journal written before the last
/// reboot — whose pids and start times mean nothing now — is recognised and never trusted.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// One process the harness started, as recorded when it started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spawned {
    pub pid: u32,
    /// Its process group: the spawner makes every command lead its own, so this is `pid`
    /// unless the command moved itself before we looked.
    pub pgid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot at which it started. With the
    /// pid, it names this process and no later one that reuses the pid.
    pub start_ticks: u64,
    /// The host's boot id when it started.
    pub boot_id: String,
    /// The user it runs for (its real uid): a later process of another user is never it.
    pub uid: u32,
    /// The program it runs, as the kernel names it (`/proc/<pid>/stat`'s field 2): a later
    /// process of another program is never it. An entry without these two (written by an
    /// older harness) does not parse, so it is never trusted.
    pub comm: String,
    /// The command line as logged (`+ …`), secrets redacted.
    pub cmdline: String,
    /// The harness process that started it.
    pub spawned_by: u32,
    /// When it started, in seconds since the Unix epoch.
    pub at_unix: u64,
}

/// Why a spawn could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("cannot record it in the spawn journal {}: {source}", .path.display())]
pub struct JournalError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

static JOURNAL: RwLock<Option<PathBuf>> = RwLock::new(None);
static BOOT_ID: OnceLock<String> = OnceLock::new();

/// From now on, append every spawn of this process to `path` (created if missing, with its
/// directory). Fails now, rather than at the first spawn, if the file cannot be written.
pub fn record_into(path: impl Into<PathBuf>) -> Result<(), JournalError> {
    let path = path.into();
    let fail = |source| JournalError {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    open_for_append(&path).map_err(fail)?;
    host_boot_id().map_err(fail)?;
    *JOURNAL.write().unwrap_or_else(|e| e.into_inner()) = Some(path);
    Ok(())
}

/// Stop recording spawns.
pub fn stop_recording() {
    *JOURNAL.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The journal spawns are recorded into now, if any.
pub fn recording() -> Option<PathBuf> {
    JOURNAL.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// This host's boot id (read once: it cannot change while this process lives).
pub fn host_boot_id() -> std::io::Result<String> {
    if let Some(id) = BOOT_ID.get() {
        return Ok(id.clone());
    }
    let id = std::fs::read_to_string(BOOT_ID_PATH)?.trim().to_owned();
    Ok(BOOT_ID.get_or_init(|| id).clone())
}

/// Record a process the spawner just started, if recording is on. Called while the caller
/// still holds the child unreaped, so `/proc/<pid>` exists even if it already exited. Also for
/// a daemon a spawned command forked and left running (`vde_switch --daemon`): the spawn
/// recorded its parent, which has exited, and `prune` must find the daemon.
pub fn record_spawn(pid: u32, cmdline: &str) -> Result<(), JournalError> {
    let Some(path) = recording() else {
        return Ok(());
    };
    let fail = |source| JournalError {
        path: path.clone(),
        source,
    };
    let unreadable = |what: &str| {
        fail(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/proc/{pid}/{what} cannot be read or is not in the expected format"),
        ))
    };
    let stat = procfs::read_stat(pid).ok_or_else(|| unreadable("stat"))?;
    let uid = procfs::read_status(pid)
        .and_then(|status| procfs::parse_real_uid(&status))
        .ok_or_else(|| unreadable("status"))?;
    let entry = Spawned {
        pid,
        pgid: stat.pgid,
        start_ticks: stat.start_ticks,
        boot_id: host_boot_id().map_err(fail)?,
        uid,
        comm: stat.comm,
        cmdline: cmdline.to_owned(),
        spawned_by: std::process::id(),
        at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    append(&path, &entry).map_err(fail)
}

fn open_for_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

/// Append one entry as one line, with one `write`.
pub fn append(path: &Path, entry: &Spawned) -> std::io::Result<()> {
    let file = open_for_append(path)?;
    // Exclusive, though O_APPEND alone keeps lines whole: a concurrent write, seen half done,
    // would look like a torn line below, and `retain` must not rewrite under an appender.
    file.lock()?;
    let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
    line.push('\n');
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            // A torn last line (a writer died mid-write): start ours on a line of its own.
            line.insert(0, '\n');
        }
    }
    (&file).write_all(line.as_bytes())
}

/// Every entry of the journal at `path`, in order; a missing journal has none. A line that is
/// not a whole entry (torn by a crash) is skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<Spawned>> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut file) => {
            file.read_to_string(&mut text)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    Ok(parse(&text))
}

/// The entries in a journal's text, skipping lines that are not whole entries.
pub fn parse(text: &str) -> Vec<Spawned> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Rewrite the journal keeping only the entries `keep` accepts (for `prune`, once the
/// processes it stopped are gone); returns how many were dropped. Excludes appenders while it
/// rewrites, in place, so none of their lines is lost.
pub fn retain(path: &Path, mut keep: impl FnMut(&Spawned) -> bool) -> std::io::Result<usize> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    file.lock()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let entries = parse(&text);
    let before = text.lines().filter(|l| !l.trim().is_empty()).count();
    let mut kept = String::new();
    for entry in entries.into_iter().filter(|e| keep(e)) {
        kept.push_str(&serde_json::to_string(&entry).map_err(std::io::Error::other)?);
        kept.push('\n');
    }
    file.set_len(0)?;
    file.write_all_at(kept.as_bytes(), 0)?;
    Ok(before - kept.lines().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: u32) -> Spawned {
        Spawned {
            pid,
            pgid: pid,
            start_ticks: 1000 + u64::from(pid),
            boot_id: "b00t".into(),
            uid: 1000,
            comm: "sleep".into(),
            cmdline: format!("sleep {pid}"),
            spawned_by: 1,
            at_unix: 1_750_000_000,
        }
    }

    #[test]
    fn a_torn_line_is_skipped_and_the_next_append_starts_a_fresh_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spawned.jsonl");
        append(&path, &entry(1)).unwrap();
        // A writer died after writing half a line.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"pid":2,"pgid":2,"start_"#).unwrap();
        assert_eq!(read(&path).unwrap(), vec![entry(1)]);
        append(&path, &entry(3)).unwrap();
        assert_eq!(read(&path).unwrap(), vec![entry(1), entry(3)]);
    }

    #[test]
    fn a_missing_journal_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("none.jsonl")).unwrap().is_empty());
        assert_eq!(retain(&dir.path().join("none.jsonl"), |_| true).unwrap(), 0);
    }

    #[test]
    fn retain_drops_what_is_not_kept_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spawned.jsonl");
        for pid in 1..=4 {
            append(&path, &entry(pid)).unwrap();
        }
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{torn")
            .unwrap();
        assert_eq!(retain(&path, |e| e.pid % 2 == 0).unwrap(), 3);
        assert_eq!(read(&path).unwrap(), vec![entry(2), entry(4)]);
        append(&path, &entry(5)).unwrap();
        assert_eq!(read(&path).unwrap(), vec![entry(2), entry(4), entry(5)]);
    }

    #[test]
    fn appends_from_many_threads_stay_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spawned.jsonl");
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let mut e = entry(t * 1000 + i);
                        // Long lines make an interleaving visible if writes were split.
                        e.cmdline = format!("{} {}", e.cmdline, "x".repeat(3000));
                        append(&path, &e).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 400);
        let mut pids: Vec<u32> = parse(&text).iter().map(|e| e.pid).collect();
        pids.sort_unstable();
        let mut expected: Vec<u32> = (0..8u32)
            .flat_map(|t| (0..50).map(move |i| t * 1000 + i))
            .collect();
        expected.sort_unstable();
        assert_eq!(pids, expected);
    }
}
