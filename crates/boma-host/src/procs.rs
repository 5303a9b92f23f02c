//! The one `/proc` walker: every process on this machine, each read once with the spawner's
//! parsers (`boma_exec::procfs`) — its state, group, start time, user, program and arguments —
//! and the host's boot id. A pid is only ever acted on together with its start time, which
//! proves it is still the process that was recorded and not a later one that reuses the
//! number.

use boma_exec::procfs;

/// A process as `/proc` shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    /// The state letter of `/proc/<pid>/stat` (`R`, `S`, `D`, `T`, `Z` …).
    pub state: char,
    /// Clock ticks after boot at which it started (field 22 of `/proc/<pid>/stat`).
    pub start_ticks: u64,
    /// Its real uid: the user it runs for.
    pub uid: u32,
    /// The program's name as the kernel keeps it (field 2 of `/proc/<pid>/stat`).
    pub comm: String,
    /// Its arguments (none for a zombie or a kernel thread).
    pub args: Vec<String>,
}

impl ProcInfo {
    /// Whether it has exited and only waits to be reaped: PID 1 on a CI machine reaps lazily,
    /// so a zombie must count as gone.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    pub fn identity(&self) -> ProcessIdentity {
        ProcessIdentity {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }

    /// Its arguments joined by spaces, as `ps` shows them.
    pub fn cmdline(&self) -> String {
        self.args.join(" ")
    }
}

/// A pid with its start time: names one process of one boot, never a later one with its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    pub start_ticks: u64,
}

impl ProcessIdentity {
    /// Whether this very process is still running, as `live` sees `/proc` (a zombie is not).
    pub fn is_running(&self, live: &dyn Fn(u32) -> Option<ProcInfo>) -> bool {
        live(self.pid).is_some_and(|p| p.start_ticks == self.start_ticks && !p.has_exited())
    }
}

/// `pid` as `/proc` shows it now, `None` when there is no such process (or it vanished while
/// it was read).
pub fn info(pid: u32) -> Option<ProcInfo> {
    let stat = procfs::read_stat(pid)?;
    let uid = procfs::parse_real_uid(&procfs::read_status(pid)?)?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(ProcInfo {
        pid,
        ppid: stat.ppid,
        pgid: stat.pgid,
        state: stat.state,
        start_ticks: stat.start_ticks,
        uid,
        comm: stat.comm,
        args,
    })
}

/// This process.
pub fn this_process() -> Option<ProcInfo> {
    info(std::process::id())
}

/// Every process on this machine, in pid order.
pub fn all() -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<ProcInfo> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter_map(info)
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

/// The pids in process group `pgid` that have not exited.
pub fn running_in_group(pgid: u32) -> Vec<u32> {
    all()
        .into_iter()
        .filter(|p| p.pgid == pgid && !p.has_exited())
        .map(|p| p.pid)
        .collect()
}

/// The running processes whose program is `comm` (`libvirtd`).
pub fn pids_named(comm: &str) -> Vec<u32> {
    all()
        .into_iter()
        .filter(|p| p.comm == comm && !p.has_exited())
        .map(|p| p.pid)
        .collect()
}

/// The resident memory of `pid`, in MiB, `None` when it is gone.
pub fn resident_mib(pid: u32) -> Option<u64> {
    Some(procfs::parse_resident_kib(&procfs::read_status(pid)?)? / 1024)
}

/// This host's boot id: it changes on every boot, so pids and start times recorded under
/// another one mean nothing now. Read once, by the spawner that records them.
pub fn boot_id() -> std::io::Result<String> {
    boma_exec::journal::host_boot_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen_running_as_itself_and_a_changed_start_time_is_not() {
        let me = this_process().expect("/proc/self");
        assert_eq!(me.pid, std::process::id());
        assert!(!me.has_exited());
        assert!(me.cmdline().contains("boma_host"), "{}", me.cmdline());
        assert_eq!(me.uid, nix::unistd::getuid().as_raw());
        assert!(me.comm.starts_with("boma_host"), "{}", me.comm);
        let live = |pid| info(pid);
        assert!(me.identity().is_running(&live));
        let reused = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me.identity()
        };
        assert!(!reused.is_running(&live));
        assert!(info(u32::MAX - 1).is_none());
        assert!(all().iter().any(|p| p.pid == me.pid));
    }

    #[test]
    fn a_zombie_is_not_running() {
        let zombie = ProcInfo {
            pid: 7,
            ppid: 1,
            pgid: 7,
            state: 'Z',
            start_ticks: 70,
            uid: 1000,
            comm: "sleep".into(),
            args: Vec::new(),
        };
        let live = |_| Some(zombie.clone());
        assert!(!zombie.identity().is_running(&live));
    }
}
