//! One process as `/proc` shows it: the one parser of `/proc/<pid>/stat` and of the
//! `/proc/<pid>/status` fields boma uses. It lives at the spawner's floor because the spawn
//! journal records each child's identity the moment it starts; `boma-host` walks `/proc` with
//! these same parsers, so a process is read one way everywhere.

/// The fields of `/proc/<pid>/stat` boma uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The program's name as the kernel keeps it (field 2, at most 15 bytes): it changes only
    /// when the process execs another program (or renames itself, which no tool boma runs
    /// does).
    pub comm: String,
    /// The state letter (`R`, `S`, `D`, `T`, `Z` …).
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
    /// Clock ticks after boot at which it started (field 22): with the pid, it names this
    /// process and no later one that reuses the pid.
    pub start_ticks: u64,
}

/// Parse the text of `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
/// parentheses, so it runs from the first `(` to the last `)` and the fields are counted from
/// there. Pure.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // fields[0] is field 3 of proc(5): state, ppid, pgrp, session, … starttime is field 22.
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The real uid (the first of the `Uid:` line's four) from the text of `/proc/<pid>/status`:
/// the user the process runs for, which no setuid program changes. Pure.
pub fn parse_real_uid(status: &str) -> Option<u32> {
    status_field(status, "Uid:")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `VmRSS` from the text of `/proc/<pid>/status`, in KiB (absent for a kernel thread or a
/// zombie). Pure.
pub fn parse_resident_kib(status: &str) -> Option<u64> {
    status_field(status, "VmRSS:")?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .map(str::trim)
}

/// `/proc/<pid>/stat`, parsed; `None` when there is no such process.
pub fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The text of `/proc/<pid>/status`; `None` when there is no such process.
pub fn read_status(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/<pid>/stat` of a zombie whose name holds spaces and parentheses (the kernel keeps
    /// them as the program set them).
    const AWKWARD: &str = "31337 (tail -f (x)) Z 1 31330 31330 0 -1 4194560 97 0 0 0 0 0 0 0 20 0 1 0 5550123 2265088 186 18446744073709551615\n";

    #[test]
    fn parses_stat_past_an_awkward_command_name() {
        assert_eq!(
            parse_stat(AWKWARD),
            Some(Stat {
                comm: "tail -f (x)".into(),
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
    fn reads_the_real_uid_and_resident_memory_of_a_status() {
        // A QEMU's status as a user ran it (real uid 1000; a setuid program would differ in
        // the effective, second, field only).
        let status = "Name:\tqemu-system-x86\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\nVmHWM:\t 2039552 kB\nVmRSS:\t 2028520 kB\nRssAnon:\t 2015224 kB\n";
        assert_eq!(parse_real_uid(status), Some(1000));
        assert_eq!(parse_resident_kib(status), Some(2_028_520));
        let kthread = "Name:\tkthreadd\nUid:\t0\t0\t0\t0\n";
        assert_eq!(parse_real_uid(kthread), Some(0));
        assert_eq!(parse_resident_kib(kthread), None);
        assert_eq!(parse_real_uid("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = read_stat(std::process::id()).expect("/proc/self/stat");
        assert!(!me.comm.is_empty() && me.start_ticks > 0, "{me:?}");
        let status = read_status(std::process::id()).unwrap();
        assert_eq!(
            parse_real_uid(&status),
            Some(nix::unistd::getuid().as_raw())
        );
        assert!(read_stat(u32::MAX - 1).is_none());
    }
}
