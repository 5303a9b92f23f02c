//! QEMU's fleet segment: one `vde_switch` per fleet run (ADR-027), a process with a unix socket
//! directory of the run's own under `/tmp` and its pidfile in the run's directory, which every
//! member's second NIC plugs into. It touches no host interface and no address, and needs no
//! root.
//!
//! Started through the one spawner, detached (`--daemon --pidfile`, as QEMU's `-daemonize`):
//! the spawn journal records the command, and the daemon it forks is recorded there too, so
//! `prune`'s first pass stops it like anything else the harness started. Stopped by its pid,
//! found in `/proc` as this user's `vde_switch` serving the run's socket directory (the pidfile
//! is a file anyone who can write the run directory can edit; `/proc` is not), SIGTERM first
//! (it then removes its socket directory itself), SIGKILL after a grace period.

use std::time::{Duration, Instant};

use boma_exec::{CmdExt, say};
use boma_fleet::{SwitchPaths, VDE_SWITCH};
use boma_host::procs::{self, ProcInfo};
use camino::{Utf8Path, Utf8PathBuf};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use xshell::{Shell, cmd};

use crate::VmError;
use crate::hypervisor::{Segment, Segments};

/// How long the switch may take to start (its parent returns once it forked) and to listen.
const START: Duration = Duration::from_secs(10);
/// How long it gets to exit after SIGTERM, then after SIGKILL.
const GRACE: Duration = Duration::from_secs(5);
/// The socket `vde_switch` listens on for its ports, inside its directory.
const CONTROL_SOCKET: &str = "ctl";

/// The QEMU backend's segments: `vde_switch` processes.
pub struct VdeSwitches<'a> {
    sh: &'a Shell,
    /// This checkout's run directory: the switches whose pidfile is in a run directory inside
    /// it, serving the socket directory that run directory gives, are its own.
    runs_root: &'a Utf8Path,
}

impl<'a> VdeSwitches<'a> {
    pub fn new(sh: &'a Shell, runs_root: &'a Utf8Path) -> VdeSwitches<'a> {
        VdeSwitches { sh, runs_root }
    }
}

impl Segments for VdeSwitches<'_> {
    fn create(&self, segment: &Segment) -> Result<(), VmError> {
        let paths = switch_of(segment)?;
        if !switch_pids(&paths.dir).is_empty() {
            return Ok(());
        }
        let run_dir = paths.pidfile.parent().unwrap_or(self.runs_root);
        std::fs::create_dir_all(run_dir).map_err(|e| VmError::io(run_dir, e))?;
        claim_socket_dir(&paths.dir)?;
        let args = boma_fleet::vde_switch_args(&paths);
        let sh = self.sh;
        let argv = &args;
        cmd!(sh, "{VDE_SWITCH} {argv...}")
            .exec()
            .timeout(START)
            .run()?;
        let pid = wait_listening(&paths)?;
        let cmdline = format!("{VDE_SWITCH} {} (its daemon)", args.join(" "));
        boma_exec::journal::record_spawn(pid, &cmdline).map_err(|e| {
            VmError::Backend(format!("the fleet's switch (pid {pid}) runs, but {e}"))
        })?;
        say!("    the fleet's switch runs (pid {pid}): {}", paths.dir);
        Ok(())
    }

    fn destroy(&self, segment: &Segment) -> Result<(), VmError> {
        let paths = switch_of(segment)?;
        for pid in switch_pids(&paths.dir) {
            stop(pid, &paths.dir)?;
        }
        // Gone by SIGTERM, it removed its directory; by SIGKILL, it could not.
        for path in [&paths.dir, &paths.pidfile] {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(VmError::io(path, e)),
            }
        }
        Ok(())
    }

    fn leftovers(&self) -> Result<Vec<Segment>, VmError> {
        let uid = nix::unistd::getuid().as_raw();
        let mut found: Vec<Segment> = procs::all()
            .iter()
            .filter_map(|p| our_switch(p, uid))
            .map(|s| Segment::VdeSwitch {
                dir: s.dir,
                pidfile: s.pidfile,
            })
            .filter(|s| s.is_switch_of_a_run_in(self.runs_root))
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }
}

fn switch_of(segment: &Segment) -> Result<SwitchPaths, VmError> {
    segment.switch().ok_or_else(|| {
        VmError::Backend(format!(
            "the QEMU backend has no {segment}: a fleet's segment is its backend's"
        ))
    })
}

/// A `vde_switch` of the user `uid`, with the paths its arguments name (`--sock`/`-s`,
/// `--pidfile`; without one, a pidfile beside the directory stands in, which no run directory
/// holds, so such a switch is never a run's). Pure.
pub fn our_switch(process: &ProcInfo, uid: u32) -> Option<SwitchPaths> {
    if process.comm != VDE_SWITCH || process.uid != uid || process.has_exited() {
        return None;
    }
    let value = |long: &str, short: Option<&str>| {
        let args = &process.args;
        args.iter().enumerate().find_map(|(at, arg)| {
            if arg == long || Some(arg.as_str()) == short {
                args.get(at + 1).cloned()
            } else {
                arg.strip_prefix(&format!("{long}=")).map(str::to_owned)
            }
        })
    };
    let dir = Utf8PathBuf::from(value("--sock", Some("-s"))?);
    if !dir.is_absolute() {
        return None;
    }
    let pidfile = value("--pidfile", None)
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|| dir.with_file_name(format!("{}.pid", dir.file_name().unwrap_or(""))));
    Some(SwitchPaths { dir, pidfile })
}

/// Make sure the socket directory under `/tmp`, whose name anyone can compute, is not someone
/// else's: absent, or a plain directory of this user's (a stale one, left by a switch killed
/// with SIGKILL, is removed so the switch makes it afresh with its own mode). A symlink or
/// another user's directory is refused rather than served into.
fn claim_socket_dir(dir: &Utf8Path) -> Result<(), VmError> {
    if remove_stale_socket_dir(dir)? == SocketDir::Foreign {
        let uid = nix::unistd::getuid().as_raw();
        return Err(VmError::Backend(format!(
            "the fleet switch's socket directory {dir} exists and is not a directory of this user's (uid {uid}): look at who made it, remove it, and run again"
        )));
    }
    Ok(())
}

/// What was at a switch's socket directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDir {
    Absent,
    /// A directory of this user's, now removed.
    Removed,
    /// A symlink, a file or another user's directory: left alone.
    Foreign,
    /// A switch of this user's still serves it: left alone.
    Served,
}

/// Remove `dir` when it is a plain directory of this user's, which no switch serves any more
/// (the caller stopped it, or it was killed): `prune` calls it for every run directory it
/// removes, so a SIGKILLed switch's directory goes with its run.
pub fn remove_stale_socket_dir(dir: &Utf8Path) -> Result<SocketDir, VmError> {
    use std::os::unix::fs::MetadataExt as _;

    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SocketDir::Absent),
        Err(e) => return Err(VmError::io(dir, e)),
    };
    if !meta.file_type().is_dir() || meta.uid() != nix::unistd::getuid().as_raw() {
        return Ok(SocketDir::Foreign);
    }
    if !switch_pids(dir).is_empty() {
        return Ok(SocketDir::Served);
    }
    std::fs::remove_dir_all(dir).map_err(|e| VmError::io(dir, e))?;
    Ok(SocketDir::Removed)
}

/// The pids of this user's switches serving `dir`, as `/proc` shows them now.
fn switch_pids(dir: &Utf8Path) -> Vec<u32> {
    let uid = nix::unistd::getuid().as_raw();
    procs::all()
        .iter()
        .filter(|p| our_switch(p, uid).is_some_and(|s| s.dir == dir))
        .map(|p| p.pid)
        .collect()
}

/// After `vde_switch --daemon` returned: its daemon, by the pid it wrote, once it is the switch
/// serving the directory and its control socket is there (QEMU connects to it at once).
fn wait_listening(paths: &SwitchPaths) -> Result<u32, VmError> {
    let uid = nix::unistd::getuid().as_raw();
    let deadline = Instant::now() + START;
    loop {
        let pid = std::fs::read_to_string(&paths.pidfile)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        let serving = pid
            .and_then(procs::info)
            .filter(|p| our_switch(p, uid).is_some_and(|s| s.dir == paths.dir));
        if let Some(process) = serving
            && paths.dir.join(CONTROL_SOCKET).exists()
        {
            return Ok(process.pid);
        }
        if Instant::now() >= deadline {
            return Err(VmError::Timeout {
                what: format!("the fleet's switch listening in {}", paths.dir),
                after: START,
                hint: format!(
                    "{VDE_SWITCH} returned, but no switch of this user serves {} with a pid in {}",
                    paths.dir, paths.pidfile
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stop the switch `pid` serving `dir`: SIGTERM, then SIGKILL after [`GRACE`]. Each signal only
/// while that pid is still this user's switch of `dir`. Not interruptible: it runs in cleanup.
fn stop(pid: u32, dir: &Utf8Path) -> Result<(), VmError> {
    let uid = nix::unistd::getuid().as_raw();
    let still_ours =
        || procs::info(pid).is_some_and(|p| our_switch(&p, uid).is_some_and(|s| s.dir == dir));
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        if !still_ours() {
            return Ok(());
        }
        say!(
            "+ kill -{} {pid}  # {VDE_SWITCH} {dir}",
            signal.as_str().trim_start_matches("SIG")
        );
        let _ = kill(Pid::from_raw(pid as i32), signal);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline && still_ours() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if still_ours() {
        return Err(VmError::Backend(format!(
            "{VDE_SWITCH} pid {pid} ({dir}) survived SIGKILL"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(comm: &str, uid: u32, args: &str) -> ProcInfo {
        ProcInfo {
            pid: 4242,
            ppid: 1,
            pgid: 4242,
            state: 'S',
            start_ticks: 1,
            uid,
            comm: comm.into(),
            args: args.split(' ').map(str::to_owned).collect(),
        }
    }

    #[test]
    fn a_switch_is_ours_by_program_user_and_socket_directory() {
        let run = "/repo/tests/integration/.run/boma-it-web-1";
        let args = format!(
            "vde_switch --sock /tmp/boma-vde-0123456789abcdef --mode 0600 --dirmode 0700 --rcfile /dev/null --daemon --pidfile {run}/fleet.switch.pid"
        );
        let ours = our_switch(&process("vde_switch", 1000, &args), 1000).unwrap();
        assert_eq!(ours.dir, "/tmp/boma-vde-0123456789abcdef");
        assert_eq!(ours.pidfile, format!("{run}/fleet.switch.pid"));
        // Another user's, another program, a zombie: never ours.
        assert!(our_switch(&process("vde_switch", 0, &args), 1000).is_none());
        assert!(our_switch(&process("qemu-system-x86", 1000, &args), 1000).is_none());
        let mut zombie = process("vde_switch", 1000, &args);
        zombie.state = 'Z';
        assert!(our_switch(&zombie, 1000).is_none());
        // The short and `=` forms; a relative or missing socket directory is none of ours.
        let short = our_switch(
            &process("vde_switch", 1000, "vde_switch -s /r/x/fleet.switch"),
            1000,
        );
        assert_eq!(short.unwrap().pidfile, "/r/x/fleet.switch.pid");
        let equals = our_switch(
            &process("vde_switch", 1000, "vde_switch --sock=/r/y/s -d"),
            1000,
        );
        assert_eq!(equals.unwrap().dir, "/r/y/s");
        assert!(our_switch(&process("vde_switch", 1000, "vde_switch --sock rel"), 1000).is_none());
        assert!(our_switch(&process("vde_switch", 1000, "vde_switch -d"), 1000).is_none());
    }

    #[test]
    fn a_stale_socket_directory_goes_only_when_it_is_this_users_own() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let stale = root.join("boma-vde-stale");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("ctl"), "").unwrap();
        assert_eq!(remove_stale_socket_dir(&stale).unwrap(), SocketDir::Removed);
        assert!(!stale.exists());
        assert_eq!(remove_stale_socket_dir(&stale).unwrap(), SocketDir::Absent);
        // A symlink someone planted where a run's directory will be: never followed, never
        // removed, and refused when a switch would be started there.
        let target = root.join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        let planted = root.join("boma-vde-planted");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        assert_eq!(
            remove_stale_socket_dir(&planted).unwrap(),
            SocketDir::Foreign
        );
        assert!(target.is_dir() && planted.is_symlink());
        let refused = claim_socket_dir(&planted).unwrap_err().to_string();
        assert!(
            refused.contains("is not a directory of this user's"),
            "{refused}"
        );
    }

    /// The switch this module runs is the program the doctor and `it`'s preflight look for, from
    /// the package the substrate role installs.
    #[test]
    fn the_switch_is_the_fleet_tool_of_the_machine_rules() {
        let tool = boma_host::tools::tool(VDE_SWITCH).expect("vde_switch in boma_host::TOOLS");
        assert_eq!(
            tool.package,
            boma_host::tools::Package::Named(boma_fleet::VDE_SWITCH_PACKAGE)
        );
        assert!(tool.purpose.required_by(boma_host::Needs::Fleet));
        assert!(!tool.purpose.required_by(boma_host::Needs::All));
    }

    /// A stand-in for `vde_switch`: with `--daemon`, it runs itself again detached in a session
    /// of its own (as the real one's `daemon(3)`), which makes the socket directory and its
    /// control socket, writes its pid, and removes the directory on SIGTERM.
    const STAND_IN: &str = r#"#!/bin/sh
if [ "$1" = "--daemon-child" ]; then
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --sock) dir=$2; shift ;;
            --pidfile) pidfile=$2; shift ;;
        esac
        shift
    done
    trap 'rm -rf "$dir"; exit 0' TERM
    mkdir -m 0700 "$dir" && : > "$dir/ctl" && echo $$ > "$pidfile"
    while :; do sleep 0.1; done
fi
setsid "$0" --daemon-child "$@" </dev/null >/dev/null 2>&1 &
"#;

    /// The effect against a stand-in switch (no `vde2` needed): started through the spawner and
    /// recorded, its daemon found by its socket directory, listed as this checkout's leftover,
    /// stopped by its pid; and the spawn journal names the daemon, so `prune`'s first pass
    /// (`boma_host::stop` over the journal) stops it too.
    #[test]
    fn a_switch_is_started_recorded_found_and_stopped_by_its_pid() {
        use std::os::unix::fs::PermissionsExt as _;

        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join(VDE_SWITCH), STAND_IN).unwrap();
        std::fs::set_permissions(bin.join(VDE_SWITCH), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let sh = Shell::new().unwrap();
        sh.set_var("PATH", format!("{bin}:/usr/bin:/bin"));
        let runs_root = root.join(".run");
        let switches = VdeSwitches::new(&sh, &runs_root);
        let fleet_dir = runs_root.join("boma-it-web-1a2b3c4d");
        let segment = Segment::for_run(crate::BackendKind::Qemu, &fleet_dir).unwrap();
        let paths = segment.switch().unwrap();

        let journal = root.join("spawned.jsonl");
        boma_exec::journal::record_into(journal.as_std_path()).unwrap();
        let created = switches.create(&segment);
        boma_exec::journal::stop_recording();
        created.unwrap();
        let pid: u32 = std::fs::read_to_string(&paths.pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(switch_pids(&paths.dir), [pid]);
        assert!(paths.dir.join(CONTROL_SOCKET).exists());
        assert_eq!(
            switches.leftovers().unwrap(),
            std::slice::from_ref(&segment)
        );
        // Up already: left as it is.
        switches.create(&segment).unwrap();
        assert_eq!(switch_pids(&paths.dir), [pid]);
        let recorded = boma_exec::journal::read(journal.as_std_path()).unwrap();
        assert!(
            recorded
                .iter()
                .any(|s| s.pid == pid && s.cmdline.ends_with("(its daemon)")),
            "{recorded:?}"
        );

        switches.destroy(&segment).unwrap();
        assert!(switch_pids(&paths.dir).is_empty());
        assert!(!paths.dir.exists() && !paths.pidfile.exists());
        assert!(switches.leftovers().unwrap().is_empty());
        switches.destroy(&segment).unwrap();

        // Started again, then stopped as `prune` stops what the journal names.
        boma_exec::journal::record_into(journal.as_std_path()).unwrap();
        let created = switches.create(&segment);
        boma_exec::journal::stop_recording();
        created.unwrap();
        let pid = switch_pids(&paths.dir)[0];
        let mut actions = boma_host::stop::plan_from_journal(journal.as_std_path()).unwrap();
        // Only the switch: other tests of this process may spawn while the journal records.
        actions.retain(|a| a.recorded.pid == pid);
        assert_eq!(actions.len(), 1, "the journal names the running daemon");
        boma_host::stop::stop(&actions, Duration::from_secs(5));
        assert!(
            switch_pids(&paths.dir).is_empty(),
            "stopped from the journal"
        );
    }
}
