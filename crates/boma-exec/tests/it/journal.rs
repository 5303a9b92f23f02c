//! The spawn journal against real commands: recording is process-global, so these tests take
//! turns with every other test of this binary (`support::serial`).

use std::time::Duration;

use boma_exec::journal::{self, Spawned};
use boma_exec::{CmdExt, ExecError};
use xshell::{Shell, cmd};

use crate::support::serial;

/// Field 22 of `/proc/<pid>/stat`, read independently of the journal's own parser.
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(19).unwrap().parse().unwrap()
}

#[test]
fn every_spawn_is_recorded_with_pid_group_start_time_boot_user_and_program() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/spawned.jsonl");
    journal::record_into(&path).unwrap();
    assert_eq!(journal::recording().as_deref(), Some(path.as_path()));

    // A long command in a thread: while it runs, its record must match the live process.
    let runner = std::thread::spawn(|| {
        let sh = Shell::new().unwrap();
        cmd!(sh, "sleep 2.5").exec().run()
    });
    let recorded = wait_for_entry(&path, |e| e.cmdline == "sleep 2.5");
    assert_eq!(
        recorded.pgid, recorded.pid,
        "the command leads its own group"
    );
    assert_eq!(recorded.start_ticks, start_ticks(recorded.pid));
    assert_eq!(recorded.spawned_by, std::process::id());
    assert_eq!(recorded.comm, "sleep");
    assert_eq!(recorded.uid, nix::unistd::getuid().as_raw());
    assert_eq!(recorded.boot_id, journal::host_boot_id().unwrap());
    assert_eq!(
        recorded.boot_id,
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
    );
    runner.join().unwrap().unwrap();

    // A failing command is recorded too: it was started.
    let sh = Shell::new().unwrap();
    let failing = cmd!(sh, "sh -c 'exit 3'").exec();
    let failing_shown = failing.display().to_owned();
    assert!(failing.run().is_err());
    let cmdlines: Vec<String> = journal::read(&path)
        .unwrap()
        .into_iter()
        .map(|e| e.cmdline)
        .collect();
    assert_eq!(cmdlines, ["sleep 2.5".to_owned(), failing_shown]);

    journal::stop_recording();
    cmd!(sh, "true").exec().run().unwrap();
    assert_eq!(journal::read(&path).unwrap().len(), 2, "nothing after stop");
}

#[test]
fn the_journal_holds_the_command_line_as_logged_with_secrets_masked() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spawned.jsonl");
    boma_exec::redact::register("vault-pass-4f3e2d1c");
    journal::record_into(&path).unwrap();
    let sh = Shell::new().unwrap();
    let secret = "vault-pass-4f3e2d1c";
    cmd!(sh, "echo {secret}").exec().run().unwrap();
    journal::stop_recording();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(secret), "{text}");
    let entries = journal::read(&path).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].cmdline, "echo <redacted>");
}

#[test]
fn spawns_from_many_threads_are_each_recorded_once() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spawned.jsonl");
    journal::record_into(&path).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            std::thread::spawn(move || {
                let sh = Shell::new().unwrap();
                for i in 0..5 {
                    let word = format!("t{t}-{i}");
                    cmd!(sh, "echo {word}").exec().quiet().run().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    journal::stop_recording();
    let entries = journal::read(&path).unwrap();
    let mut words: Vec<String> = entries.iter().map(|e| e.cmdline.clone()).collect();
    words.sort();
    let mut expected: Vec<String> = (0..6)
        .flat_map(|t| (0..5).map(move |i| format!("echo t{t}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(words, expected);
    let mut pids: Vec<u32> = entries.iter().map(|e| e.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 30, "one entry per process");
}

#[test]
fn an_unwritable_journal_is_refused_up_front() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // A directory where the journal file should be.
    let err = journal::record_into(dir.path()).unwrap_err();
    assert!(err.to_string().contains("spawn journal"), "{err}");
    assert_eq!(journal::recording(), None);
}

#[test]
fn a_spawn_that_cannot_be_recorded_is_stopped_and_fails() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spawned.jsonl");
    journal::record_into(&path).unwrap();
    // The journal becomes unwritable after recording was turned on.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let marker = dir.path().join("ran-to-the-end");
    let marker_text = marker.to_str().unwrap();
    let script = format!("sleep 1; touch {marker_text}");
    let sh = Shell::new().unwrap();
    let err = cmd!(sh, "sh -c {script}").exec().run().unwrap_err();
    journal::stop_recording();
    assert!(matches!(err, ExecError::Journal { .. }), "{err}");
    assert!(err.to_string().contains("cargo xtask prune"), "{err}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!marker.exists(), "the unrecorded command kept running");
}

fn wait_for_entry(path: &std::path::Path, want: impl Fn(&Spawned) -> bool) -> Spawned {
    for _ in 0..200 {
        if let Some(e) = journal::read(path).unwrap().into_iter().find(&want) {
            return e;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no matching entry in {}", path.display());
}
