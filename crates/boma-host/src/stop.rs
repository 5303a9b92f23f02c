//! Stopping what the harness spawned, and nothing else: the processes named in the spawn
//! journal (`boma_exec::journal`) that are still the very process recorded — same host boot,
//! same pid, same start time, same user, same program — each with its process group, SIGTERM
//! first and SIGKILL only after a grace period. The journal is a file anyone who can write the
//! run directory can edit, so no entry is believed on its own: what it says is compared with
//! the live process, and a pid that now runs another user's or another program's process is
//! never signalled.
//!
//! Nothing is chosen by command-line text: an operator's `tail -f <run>/console.log`, the ssh
//! shell the harness told them to paste, or another checkout's runs mention the same paths and
//! must survive a `prune`. The test VMs themselves are not stopped here: the backends stop
//! them by their QEMU `-name` or libvirt domain.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use boma_exec::journal::{self, Spawned};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::procs::{self, ProcInfo};

/// How long a stopped process group gets to exit after SIGTERM before SIGKILL: enough for
/// ansible-playbook to end its workers and ssh connections.
pub const GRACE: Duration = Duration::from_secs(5);
/// How long to wait for SIGKILL to take effect before reporting a survivor.
const KILL_CONFIRM: Duration = Duration::from_secs(2);
/// How often the executor looks again.
const POLL: Duration = Duration::from_millis(25);

/// Processes that are never stopped, whatever the journal says: the one stopping and its
/// parent (the shell or `cargo` that runs it), with their process groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exempt {
    pub pids: Vec<u32>,
    pub pgids: Vec<u32>,
}

impl Exempt {
    /// This process and its parent, and their groups.
    pub fn this_process() -> Exempt {
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        let pgids = [me, parent]
            .into_iter()
            .filter_map(procs::info)
            .map(|p| p.pgid)
            .collect();
        Exempt {
            pids: vec![me, parent],
            pgids,
        }
    }

    fn covers(&self, pid: u32, pgid: u32) -> bool {
        self.pids.contains(&pid) || self.pgids.contains(&pgid)
    }
}

/// What receives the signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The process group the recorded process leads: it and everything it started.
    Group(u32),
    /// Only the recorded process: it has left the group it led, and the group it is in now
    /// is not ours to signal.
    Process,
}

/// One recorded process to stop, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopAction {
    pub recorded: Spawned,
    pub target: Target,
}

impl StopAction {
    /// Whether the recorded process still runs, as `live` sees `/proc` ([`is_recorded`]).
    fn still_running(&self, live: &dyn Fn(u32) -> Option<ProcInfo>) -> bool {
        live(self.recorded.pid).is_some_and(|now| is_recorded(&self.recorded, &now))
    }
}

/// Whether `now` is the very process `recorded` names, still running: its start time, user and
/// program are the recorded ones (a pid reused by a later process, by another user's or by
/// another program's is not), and it has not exited. The boot is compared by the caller. Pure.
pub fn is_recorded(recorded: &Spawned, now: &ProcInfo) -> bool {
    now.pid == recorded.pid
        && now.start_ticks == recorded.start_ticks
        && now.uid == recorded.uid
        && now.comm == recorded.comm
        && !now.has_exited()
}

impl fmt::Display for StopAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Spawned {
            pid,
            cmdline,
            spawned_by,
            ..
        } = &self.recorded;
        let whom = match self.target {
            Target::Group(pgid) => format!("pid {pid} and its process group {pgid}"),
            Target::Process => format!("pid {pid} alone (it left its process group)"),
        };
        write!(
            f,
            "`{cmdline}` ({whom}): the harness (pid {spawned_by}) started it and it is still running"
        )
    }
}

/// Decide what to stop: every recorded process of this host boot (`this_boot`) that is still
/// the process recorded ([`is_recorded`]), never an `exempt` one, each group once. Pure:
/// `live` shows `/proc`.
pub fn plan_stop(
    recorded: &[Spawned],
    live: &dyn Fn(u32) -> Option<ProcInfo>,
    this_boot: &str,
    exempt: &Exempt,
) -> Vec<StopAction> {
    let mut seen_groups = BTreeSet::new();
    let mut seen_pids = BTreeSet::new();
    let mut actions = Vec::new();
    for spawned in recorded.iter().filter(|s| s.boot_id == this_boot) {
        let Some(now) = live(spawned.pid) else {
            continue;
        };
        if !is_recorded(spawned, &now) {
            // Exited, or the pid now belongs to another process.
            continue;
        }
        if exempt.covers(now.pid, now.pgid) || !seen_pids.insert(now.pid) {
            continue;
        }
        let target = if now.pgid == now.pid && now.pgid == spawned.pgid {
            if !seen_groups.insert(now.pgid) {
                continue;
            }
            Target::Group(now.pgid)
        } else {
            Target::Process
        };
        actions.push(StopAction {
            recorded: spawned.clone(),
            target,
        });
    }
    actions
}

/// How a process was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// It exited after SIGTERM, within the grace period.
    Term,
    /// It outlived SIGTERM by the grace period and was killed.
    Kill,
    /// It had exited (or its pid was reused) before it was signalled.
    AlreadyGone,
    /// It still runs after SIGKILL: stuck in the kernel (state `D`).
    Survived,
}

/// What [`stop`] did to one recorded process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub pid: u32,
    /// The group signalled, `None` when only the process was.
    pub pgid: Option<u32>,
    pub cmdline: String,
    pub how: How,
    /// The harness process that had started it.
    pub spawned_by: u32,
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Stopped {
            pid,
            pgid,
            cmdline,
            how,
            spawned_by,
        } = self;
        let whom = match pgid {
            Some(pgid) => format!("pid {pid}, process group {pgid}"),
            None => format!("pid {pid}"),
        };
        let why = format!("the harness (pid {spawned_by}) had started it");
        match how {
            How::Term => write!(f, "stopped `{cmdline}` ({whom}) with SIGTERM: {why}"),
            How::Kill => write!(
                f,
                "killed `{cmdline}` ({whom}) with SIGKILL: {why} and it ignored SIGTERM"
            ),
            How::AlreadyGone => write!(f, "`{cmdline}` ({whom}) had already exited"),
            How::Survived => write!(
                f,
                "`{cmdline}` ({whom}) survived SIGKILL (stuck in the kernel?): {why}; see `ps -o pid,stat,wchan:32,cmd -g {}`",
                pgid.unwrap_or(*pid)
            ),
        }
    }
}

/// Stop each planned process: SIGTERM (and SIGCONT, so a stopped job can act on it) to its
/// group, wait until the group has no running member or `grace` is over, then SIGKILL what
/// is left. Zombies count as gone. Each process is checked again ([`is_recorded`]) right
/// before it is signalled.
pub fn stop(actions: &[StopAction], grace: Duration) -> Vec<Stopped> {
    let mut results: Vec<Stopped> = actions
        .iter()
        .map(|action| Stopped {
            pid: action.recorded.pid,
            pgid: match action.target {
                Target::Group(pgid) => Some(pgid),
                Target::Process => None,
            },
            cmdline: action.recorded.cmdline.clone(),
            how: How::AlreadyGone,
            spawned_by: action.recorded.spawned_by,
        })
        .collect();
    let live = |pid| procs::info(pid);
    let mut signalled = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        if action.still_running(&live) {
            signal(action, Signal::SIGTERM);
            signal(action, Signal::SIGCONT);
            signalled.push(i);
        }
    }
    let outlived_term = wait_until_gone(actions, signalled.clone(), grace);
    for &i in &outlived_term {
        signal(&actions[i], Signal::SIGKILL);
    }
    let outlived_kill = wait_until_gone(actions, outlived_term.clone(), KILL_CONFIRM);
    for i in signalled {
        results[i].how = if outlived_kill.contains(&i) {
            How::Survived
        } else if outlived_term.contains(&i) {
            How::Kill
        } else {
            How::Term
        };
    }
    results
}

/// Whether anything of `action` still runs: a member of its group, or the process itself.
fn still_there(action: &StopAction) -> bool {
    match action.target {
        Target::Group(pgid) => !procs::running_in_group(pgid).is_empty(),
        Target::Process => action.still_running(&|pid| procs::info(pid)),
    }
}

/// Poll until every action in `pending` is gone or `limit` is over; returns those left.
fn wait_until_gone(actions: &[StopAction], mut pending: Vec<usize>, limit: Duration) -> Vec<usize> {
    let deadline = Instant::now() + limit;
    loop {
        pending.retain(|&i| still_there(&actions[i]));
        if pending.is_empty() || Instant::now() >= deadline {
            return pending;
        }
        std::thread::sleep(POLL);
    }
}

fn signal(action: &StopAction, signal: Signal) {
    // ESRCH (already gone) is the outcome we want; anything else shows up as a survivor.
    let _ = match action.target {
        Target::Group(pgid) => killpg(Pid::from_raw(pgid as i32), signal),
        Target::Process => kill(Pid::from_raw(action.recorded.pid as i32), signal),
    };
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("cannot read the spawn journal {path}: {source}")]
    Journal {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read this host's boot id ({path}): {source}", path = journal::BOOT_ID_PATH)]
    BootId {
        #[source]
        source: std::io::Error,
    },
}

/// [`plan_stop`] for the journal at `path`, against this machine's `/proc`, sparing this
/// process and its parent.
pub fn plan_from_journal(path: &Path) -> Result<Vec<StopAction>, StopError> {
    let recorded = journal::read(path).map_err(|source| StopError::Journal {
        path: path.display().to_string(),
        source,
    })?;
    let this_boot = procs::boot_id().map_err(|source| StopError::BootId { source })?;
    Ok(plan_stop(
        &recorded,
        &|pid| procs::info(pid),
        &this_boot,
        &Exempt::this_process(),
    ))
}

/// Drop from the journal at `path` every entry whose process is no longer running (or ran
/// under an earlier boot), so it does not grow without end; returns how many were dropped.
pub fn forget_exited(path: &Path) -> Result<usize, StopError> {
    let this_boot = procs::boot_id().map_err(|source| StopError::BootId { source })?;
    journal::retain(path, |s| {
        s.boot_id == this_boot && procs::info(s.pid).is_some_and(|now| is_recorded(s, &now))
    })
    .map_err(|source| StopError::Journal {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const BOOT: &str = "1f0e-this-boot";
    const UID: u32 = 1000;
    const COMM: &str = "ansible-playboo";

    fn spawned(pid: u32, start_ticks: u64, cmdline: &str) -> Spawned {
        Spawned {
            pid,
            pgid: pid,
            start_ticks,
            boot_id: BOOT.into(),
            uid: UID,
            comm: COMM.into(),
            cmdline: cmdline.into(),
            spawned_by: 99,
            at_unix: 1_750_000_000,
        }
    }

    fn running(pid: u32, pgid: u32, start_ticks: u64, state: char) -> ProcInfo {
        ProcInfo {
            pid,
            ppid: 1,
            pgid,
            state,
            start_ticks,
            uid: UID,
            comm: COMM.into(),
            args: vec![COMM.into(), pid.to_string()],
        }
    }

    fn table(procs: &[ProcInfo]) -> BTreeMap<u32, ProcInfo> {
        procs.iter().map(|p| (p.pid, p.clone())).collect()
    }

    fn plan(recorded: &[Spawned], now: &[ProcInfo], exempt: &Exempt) -> Vec<(u32, Target)> {
        let now = table(now);
        plan_stop(recorded, &|pid| now.get(&pid).cloned(), BOOT, exempt)
            .into_iter()
            .map(|a| (a.recorded.pid, a.target))
            .collect()
    }

    #[test]
    fn a_recorded_process_still_running_is_stopped_with_its_group() {
        let recorded = [spawned(100, 5000, "ansible-playbook site.yml")];
        let now = [running(100, 100, 5000, 'S')];
        assert_eq!(
            plan(&recorded, &now, &Exempt::default()),
            [(100, Target::Group(100))]
        );
    }

    #[test]
    fn exited_reused_zombie_and_other_boot_entries_are_left_alone() {
        let mut other_boot = spawned(103, 5003, "ssh old boot");
        other_boot.boot_id = "an-earlier-boot".into();
        let recorded = [
            spawned(100, 5000, "gone"),
            spawned(101, 5001, "pid reused"),
            spawned(102, 5002, "zombie"),
            other_boot,
        ];
        let now = [
            running(101, 101, 9999, 'S'),
            running(102, 102, 5002, 'Z'),
            running(103, 103, 5003, 'S'),
        ];
        assert_eq!(plan(&recorded, &now, &Exempt::default()), []);
    }

    #[test]
    fn a_pid_now_running_another_users_or_another_programs_process_is_left_alone() {
        let recorded = [
            spawned(100, 5000, "ssh -p 40022 ansible@127.0.0.1"),
            spawned(101, 5001, "ansible-playbook site.yml"),
            spawned(102, 5002, "ansible-playbook verify.yml"),
        ];
        let mut other_user = running(100, 100, 5000, 'S');
        other_user.uid = 0;
        let mut other_program = running(101, 101, 5001, 'S');
        other_program.comm = "postgres".into();
        let now = [other_user, other_program, running(102, 102, 5002, 'S')];
        assert_eq!(
            plan(&recorded, &now, &Exempt::default()),
            [(102, Target::Group(102))]
        );
    }

    #[test]
    fn never_this_process_its_parent_or_their_groups() {
        let recorded = [
            spawned(10, 1, "me"),
            spawned(11, 2, "my parent"),
            spawned(12, 3, "joined my group"),
            spawned(13, 4, "a real orphan"),
        ];
        let now = [
            running(10, 10, 1, 'R'),
            running(11, 11, 2, 'S'),
            running(12, 10, 3, 'S'),
            running(13, 13, 4, 'S'),
        ];
        let exempt = Exempt {
            pids: vec![10, 11],
            pgids: vec![10, 11],
        };
        assert_eq!(plan(&recorded, &now, &exempt), [(13, Target::Group(13))]);
    }

    #[test]
    fn each_group_and_each_pid_once() {
        let recorded = [
            spawned(100, 5000, "ansible-playbook"),
            spawned(100, 5000, "ansible-playbook"),
        ];
        let now = [running(100, 100, 5000, 'S')];
        assert_eq!(
            plan(&recorded, &now, &Exempt::default()),
            [(100, Target::Group(100))]
        );
    }

    #[test]
    fn a_process_that_left_its_group_is_signalled_alone() {
        // It moved itself into another group (say the operator's shell job): signalling
        // that group would hit processes the harness never started.
        let recorded = [spawned(100, 5000, "wanderer")];
        let now = [running(100, 40, 5000, 'S')];
        assert_eq!(
            plan(&recorded, &now, &Exempt::default()),
            [(100, Target::Process)]
        );
    }

    #[test]
    fn says_what_and_why() {
        let action = StopAction {
            recorded: spawned(100, 5000, "ssh -p 40022 ansible@127.0.0.1"),
            target: Target::Group(100),
        };
        assert_eq!(
            action.to_string(),
            "`ssh -p 40022 ansible@127.0.0.1` (pid 100 and its process group 100): the harness (pid 99) started it and it is still running"
        );
        let stopped = Stopped {
            pid: 100,
            pgid: Some(100),
            cmdline: "ansible-playbook site.yml".into(),
            how: How::Kill,
            spawned_by: 99,
        };
        assert_eq!(
            stopped.to_string(),
            "killed `ansible-playbook site.yml` (pid 100, process group 100) with SIGKILL: the harness (pid 99) had started it and it ignored SIGTERM"
        );
    }
}
