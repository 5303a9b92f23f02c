//! Reading `/proc`: a process's state, group, start time, command line and resident memory.
//! A pid is only ever acted on together with its start time, which proves it is still the
//! process that was recorded and not a later one that reuses the number.

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
    /// Its arguments joined by spaces (empty for a zombie or a kernel thread).
    pub cmdline: String,
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

/// The fields of `/proc/<pid>/stat` the harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
    pub start_ticks: u64,
}

/// Parse the text of `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`. Pure.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    // fields[0] is field 3 of proc(5): state, ppid, pgrp, session, … starttime is field 22.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// `VmRSS` from the text of `/proc/<pid>/status`, in KiB. Pure.
pub fn parse_resident_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix("VmRSS:")?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// `pid` as `/proc` shows it now, `None` when there is no such process.
pub fn info(pid: u32) -> Option<ProcInfo> {
    info_at(&pid.to_string())
}

/// This process.
pub fn this_process() -> Option<ProcInfo> {
    info(std::process::id())
}

fn info_at(entry: &str) -> Option<ProcInfo> {
    let pid = entry.parse().ok()?;
    let stat = parse_stat(&std::fs::read_to_string(format!("/proc/{entry}/stat")).ok()?)?;
    let raw = std::fs::read(format!("/proc/{entry}/cmdline")).unwrap_or_default();
    let cmdline = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    Some(ProcInfo {
        pid,
        ppid: stat.ppid,
        pgid: stat.pgid,
        state: stat.state,
        start_ticks: stat.start_ticks,
        cmdline,
    })
}

/// Every process on this machine, in pid order.
pub fn all() -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<ProcInfo> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| info_at(entry.file_name().to_str()?))
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

/// The resident memory of `pid`, in MiB, `None` when it is gone.
pub fn resident_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(parse_resident_kib(&status)? / 1024)
}

/// This host's boot id: it changes on every boot, so pids and start times recorded under
/// another one mean nothing now.
pub fn boot_id() -> std::io::Result<String> {
    boma_exec::journal::host_boot_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_past_an_awkward_command_name() {
        let text = "31337 (tail -f (x)) Z 1 31330 31330 0 -1 4194560 97 0 0 0 0 0 0 0 20 0 1 0 5550123 2265088 186 18446744073709551615\n";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                state: 'Z',
                ppid: 1,
                pgid: 31330,
                start_ticks: 5_550_123,
            })
        );
        assert_eq!(parse_stat("12 (x) S 1 12"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn parses_resident_memory() {
        let status = "Name:\tqemu-system-x86\nVmHWM:\t 2039552 kB\nVmRSS:\t 2028520 kB\nRssAnon:\t 2015224 kB\n";
        assert_eq!(parse_resident_kib(status), Some(2_028_520));
        assert_eq!(parse_resident_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn this_process_is_seen_running_and_a_changed_start_time_is_not() {
        let me = this_process().expect("/proc/self");
        assert_eq!(me.pid, std::process::id());
        assert!(!me.has_exited());
        assert!(me.cmdline.contains("boma_host"), "{}", me.cmdline);
        let live = |pid| info(pid);
        assert!(me.identity().is_running(&live));
        let reused = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me.identity()
        };
        assert!(!reused.is_running(&live));
        assert!(info(u32::MAX - 1).is_none());
    }

    #[test]
    fn a_zombie_is_not_running() {
        let zombie = ProcInfo {
            pid: 7,
            ppid: 1,
            pgid: 7,
            state: 'Z',
            start_ticks: 70,
            cmdline: String::new(),
        };
        let live = |_| Some(zombie.clone());
        assert!(!zombie.identity().is_running(&live));
    }
}
