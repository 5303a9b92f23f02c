//! `prune`'s process stopping against real processes: children started through `boma_exec`
//! with the spawn journal on, standing in for what a SIGKILLed harness leaves running.
//!
//! The journal is process-wide, so every test here records into the same file and plans only
//! from its own entries (each test's commands carry a marker of its own).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use boma_exec::journal::{self, Spawned};
use boma_exec::{CmdExt, ExecError};
use boma_host::procs::{self, ProcessIdentity};
use boma_host::stop::{self, Exempt, How, Target};
use xshell::{Shell, cmd};

/// Long enough to outlive any test; bounded so that a failed test leaves nothing for long.
const CHILD_LIFETIME: Duration = Duration::from_secs(90);

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    journal: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let journal = root.join(".run/spawned.jsonl");
        journal::record_into(&journal).unwrap();
        Fixture {
            _dir: dir,
            root,
            journal,
        }
    })
}

/// A run directory of this test's own, whose path marks its commands.
fn run_dir(test: &str) -> PathBuf {
    let dir = fixture().root.join(format!(".run/boma-it-{test}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("console.log"), "booting\n").unwrap();
    dir
}

/// Run `script` through the spawner in a thread, as the harness runs a long command.
fn spawn_script(script: String) -> JoinHandle<Result<boma_exec::Captured, ExecError>> {
    std::thread::spawn(move || {
        let sh = Shell::new().unwrap();
        cmd!(sh, "sh -c {script}")
            .exec()
            .timeout(CHILD_LIFETIME)
            .run()
    })
}

/// This test's journal entries (those mentioning `marker`), waiting until `count` exist.
fn recorded(marker: &Path, count: usize) -> Vec<Spawned> {
    let marker = marker.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mine: Vec<Spawned> = journal::read(&fixture().journal)
            .unwrap()
            .into_iter()
            .filter(|s| s.cmdline.contains(marker))
            .collect();
        if mine.len() >= count || Instant::now() > deadline {
            assert_eq!(mine.len(), count, "journal entries for {marker}");
            return mine;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills a test's process group when the test ends, passed or failed, so that a failing
/// assertion leaves no `sleep` behind (the spawner's timeout dies with the test process).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn plan(recorded: &[Spawned]) -> Vec<stop::StopAction> {
    stop::plan_stop(
        recorded,
        &|pid| procs::info(pid),
        &procs::boot_id().unwrap(),
        &Exempt::this_process(),
    )
}

fn is_running(pid: u32, start_ticks: u64) -> bool {
    ProcessIdentity { pid, start_ticks }.is_running(&|pid| procs::info(pid))
}

/// The children of `pid`, waiting until `count` exist.
fn children(pid: u32, count: usize) -> Vec<procs::ProcInfo> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<_> = procs::all()
            .into_iter()
            .filter(|p| p.ppid == pid && !p.has_exited())
            .collect();
        if found.len() >= count || Instant::now() > deadline {
            assert_eq!(found.len(), count, "children of {pid}");
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A harness command (`sleep` under `sh`, as the journal recorded it) running in a run
/// directory of a test's own; its group is killed when this is dropped.
struct Sleeping {
    dir: PathBuf,
    entry: Spawned,
    runner: JoinHandle<Result<boma_exec::Captured, ExecError>>,
    cleanup: KillOnDrop,
}

fn sleeping(test: &str) -> Sleeping {
    let dir = run_dir(test);
    let runner = spawn_script(format!("sleep 120; : {}", dir.display()));
    let entry = recorded(&dir, 1).remove(0);
    Sleeping {
        cleanup: KillOnDrop(entry.pgid),
        dir,
        entry,
        runner,
    }
}

/// Kill a test's process group now, and see the spawner report it killed by SIGKILL.
fn kill_group(pgid: u32, runner: JoinHandle<Result<boma_exec::Captured, ExecError>>) {
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    killed_by_signal(runner.join().unwrap(), 9);
}

fn killed_by_signal(outcome: Result<boma_exec::Captured, ExecError>, signal: i32) {
    use std::os::unix::process::ExitStatusExt as _;
    match outcome {
        Err(ExecError::Failed { status, .. }) => assert_eq!(status.signal(), Some(signal)),
        other => panic!("expected death by signal {signal}, got {other:?}"),
    }
}

#[test]
fn a_recorded_running_command_is_stopped_with_sigterm_and_its_whole_group() {
    let dir = run_dir("term");
    let marker = dir.display();
    // The shell leads the group and waits on its own child, as ansible-playbook does.
    let runner = spawn_script(format!("sleep 120; : {marker}"));
    let entries = recorded(&dir, 1);
    let leader = &entries[0];
    let _cleanup = KillOnDrop(leader.pgid);
    let grandchild = children(leader.pid, 1).remove(0);
    assert_eq!(grandchild.pgid, leader.pid);

    let actions = plan(&entries);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].target, Target::Group(leader.pid));

    let started = Instant::now();
    let stopped = stop::stop(&actions, Duration::from_secs(5));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "SIGTERM sufficed"
    );
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].how, How::Term);
    assert_eq!(stopped[0].pid, leader.pid);
    assert_eq!(stopped[0].pgid, Some(leader.pid));
    assert!(
        stopped[0].to_string().contains("with SIGTERM"),
        "{}",
        stopped[0]
    );
    assert!(!is_running(grandchild.pid, grandchild.start_ticks));
    killed_by_signal(runner.join().unwrap(), libc_sigterm());
}

#[test]
fn a_group_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = run_dir("kill");
    let marker = dir.display();
    // Both the shell and its sleep ignore SIGTERM (an ignored signal stays ignored across exec).
    let runner = spawn_script(format!("trap '' TERM; sleep 120; : {marker}"));
    let entries = recorded(&dir, 1);
    let leader = &entries[0];
    let _cleanup = KillOnDrop(leader.pgid);
    let grandchild = children(leader.pid, 1).remove(0);
    let actions = plan(&entries);
    assert_eq!(actions.len(), 1);

    let grace = Duration::from_millis(800);
    let started = Instant::now();
    let stopped = stop::stop(&actions, grace);
    let took = started.elapsed();
    assert_eq!(stopped[0].how, How::Kill, "{}", stopped[0]);
    assert!(
        took >= grace,
        "SIGKILL came before the grace was over: {took:?}"
    );
    assert!(took < grace + Duration::from_secs(3), "{took:?}");
    assert!(!is_running(leader.pid, leader.start_ticks));
    assert!(!is_running(grandchild.pid, grandchild.start_ticks));
    killed_by_signal(runner.join().unwrap(), 9);
}

#[test]
fn an_operators_process_naming_the_run_directory_is_not_touched() {
    let dir = run_dir("operator");
    let console = dir.join("console.log");
    let console = console.display();
    // The operator's `tail -f …/console.log`: its own session, not started by the harness,
    // though its command line names the run directory (what the old prune matched on).
    let sh = Shell::new().unwrap();
    // The tail writes its own pid (setsid may fork when its caller leads a group, so `$!`
    // would name the wrong process).
    let pidfile = dir.join("tail.pid");
    let pidfile = pidfile.display();
    let detach = format!(
        "setsid sh -c 'echo $$ > {pidfile}; exec tail -f {console}' >/dev/null 2>&1 </dev/null &"
    );
    cmd!(sh, "sh -c {detach}").exec().run().unwrap();
    let tail_pid: u32 = (0..200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            std::fs::read_to_string(pidfile.to_string())
                .ok()
                .and_then(|t| t.trim().parse().ok())
        })
        .expect("the tail wrote its pid");
    // Until the exec, the pid still runs `sh`.
    for _ in 0..200 {
        if procs::info(tail_pid).is_some_and(|p| p.cmdline().contains("tail -f")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _cleanup_tail = KillOnDrop(tail_pid);
    let tail = procs::info(tail_pid).expect("the tail runs");
    assert!(
        tail.cmdline().contains(&dir.display().to_string()),
        "{}",
        tail.cmdline()
    );
    assert_eq!(tail.pgid, tail_pid, "the tail leads its own group");
    // A harness command that is still running, in the same run directory.
    let runner = spawn_script(format!("sleep 120; : {}", dir.display()));
    // The journal holds the (exited) detaching shell and the running harness command.
    let entries = recorded(&dir, 2);
    assert!(entries.iter().all(|e| e.pid != tail_pid));
    let _cleanup = entries
        .iter()
        .map(|e| KillOnDrop(e.pgid))
        .collect::<Vec<_>>();

    let actions = plan(&entries);
    assert_eq!(
        actions.len(),
        1,
        "only the running harness command: {actions:?}"
    );
    assert_ne!(actions[0].recorded.pid, tail_pid);
    let stopped = stop::stop(&actions, Duration::from_secs(5));
    assert_eq!(stopped[0].how, How::Term);
    killed_by_signal(runner.join().unwrap(), libc_sigterm());

    assert!(
        is_running(tail_pid, tail.start_ticks),
        "the operator's tail was stopped"
    );
}

#[test]
fn an_entry_whose_pid_now_has_another_start_time_or_boot_is_not_touched() {
    let Sleeping {
        dir,
        entry: real,
        runner,
        cleanup: _cleanup,
    } = sleeping("reused");

    // The same pid, recorded with another start time: a later process reusing the pid.
    let mut reused = real.clone();
    reused.start_ticks += 1;
    // The same pid and start time, recorded under an earlier boot.
    let mut earlier_boot = real.clone();
    earlier_boot.boot_id = "00000000-0000-0000-0000-000000000000".into();
    let edited = dir.join("edited.jsonl");
    for entry in [&reused, &earlier_boot] {
        journal::append(&edited, entry).unwrap();
    }
    let actions = stop::plan_from_journal(&edited).unwrap();
    assert_eq!(actions, []);
    assert!(is_running(real.pid, real.start_ticks));

    // The true entry still finds it, and once it is stopped the journal forgets it.
    let own = dir.join("own.jsonl");
    journal::append(&own, &real).unwrap();
    let actions = stop::plan_from_journal(&own).unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(stop::forget_exited(&own).unwrap(), 0, "still running");
    assert_eq!(
        stop::stop(&actions, Duration::from_secs(5))[0].how,
        How::Term
    );
    killed_by_signal(runner.join().unwrap(), libc_sigterm());
    assert_eq!(stop::forget_exited(&own).unwrap(), 1);
    assert_eq!(journal::read(&own).unwrap(), []);
}

#[test]
fn the_journal_records_who_runs_a_spawn_and_which_program() {
    let sleeping = sleeping("identity");
    let entry = &sleeping.entry;
    let live = procs::info(entry.pid).expect("it runs");
    assert_eq!(entry.uid, nix::unistd::getuid().as_raw());
    assert_eq!(entry.uid, live.uid);
    assert_eq!(entry.comm, "sh");
    assert_eq!(entry.comm, live.comm);
    kill_group(entry.pgid, sleeping.runner);
}

/// A pid the journal names that now runs another program, with the recorded start time (as
/// an edited journal, or a pid reused within the same clock tick, would have it): the real
/// process is never signalled.
#[test]
fn an_entry_whose_pid_now_runs_another_program_is_not_touched() {
    let Sleeping {
        dir,
        entry: real,
        runner,
        cleanup: _cleanup,
    } = sleeping("program");

    let mut other_program = real.clone();
    other_program.comm = "ansible-playboo".into();
    let edited = dir.join("edited.jsonl");
    journal::append(&edited, &other_program).unwrap();
    assert_eq!(stop::plan_from_journal(&edited).unwrap(), []);
    assert_eq!(
        stop::forget_exited(&edited).unwrap(),
        1,
        "not ours: forgotten"
    );
    assert!(is_running(real.pid, real.start_ticks));

    // The true entry still names it.
    assert_eq!(plan(std::slice::from_ref(&real)).len(), 1);
    kill_group(real.pgid, runner);
}

/// A pid the journal names as this user's that now runs another user's process: never
/// signalled. As root the other user's process is real (`setpriv` to `nobody`); otherwise
/// this user's own process stands in, recorded under another uid.
#[test]
fn an_entry_whose_pid_now_runs_another_users_process_is_not_touched() {
    const NOBODY: u32 = 65534;
    let me = nix::unistd::getuid().as_raw();
    let (runner, live, _cleanup) = if me == 0 {
        let runner = std::thread::spawn(|| {
            let sh = Shell::new().unwrap();
            let nobody = NOBODY.to_string();
            cmd!(
                sh,
                "setpriv --reuid={nobody} --regid={nobody} --clear-groups sleep 117.25"
            )
            .exec()
            .timeout(CHILD_LIFETIME)
            .run()
        });
        let entry = wait_for(|| {
            journal::read(&fixture().journal)
                .unwrap()
                .into_iter()
                .find(|s| s.cmdline.contains("sleep 117.25"))
        });
        let cleanup = KillOnDrop(entry.pgid);
        // Until setpriv has changed its user and exec'd sleep, the pid is still setpriv.
        let live = wait_for(|| procs::info(entry.pid).filter(|p| p.comm == "sleep"));
        assert_eq!(live.uid, NOBODY);
        (runner, live, cleanup)
    } else {
        let Sleeping {
            entry,
            runner,
            cleanup,
            ..
        } = sleeping("user");
        (runner, procs::info(entry.pid).expect("it runs"), cleanup)
    };
    let as_recorded = Spawned {
        pid: live.pid,
        pgid: live.pgid,
        start_ticks: live.start_ticks,
        boot_id: procs::boot_id().unwrap(),
        uid: live.uid,
        comm: live.comm.clone(),
        cmdline: live.cmdline(),
        spawned_by: std::process::id(),
        at_unix: 1_750_000_000,
    };
    let another_user = Spawned {
        uid: if live.uid == me { me + 1 } else { me },
        ..as_recorded.clone()
    };
    assert_eq!(plan(std::slice::from_ref(&another_user)), []);
    assert!(is_running(live.pid, live.start_ticks));
    // What tells them apart is the user alone: recorded as it runs, it would be stopped.
    assert_eq!(plan(&[as_recorded]).len(), 1);
    kill_group(live.pgid, runner);
}

/// Poll `find` until it finds something (10 s at most).
fn wait_for<T>(mut find: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = find() {
            return found;
        }
        assert!(Instant::now() < deadline, "not found in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_process_gone_before_the_signal_is_reported_as_already_gone() {
    let Sleeping {
        entry,
        runner,
        cleanup: _cleanup,
        ..
    } = sleeping("gone");
    let actions = plan(std::slice::from_ref(&entry));
    assert_eq!(actions.len(), 1);
    // It ends on its own between the plan and the stop.
    kill_group(entry.pid, runner);
    let stopped = stop::stop(&actions, Duration::from_secs(5));
    assert_eq!(stopped[0].how, How::AlreadyGone);
}

fn libc_sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}
