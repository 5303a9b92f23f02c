//! Interrupt paths, against real signals sent to this process: the interrupt flag and the
//! signal handlers are process-global, so these tests take turns with every other test of this
//! binary (`support::serial`).

use std::time::{Duration, Instant};

use boma_exec::{CmdExt, ExecError, interrupt};
use xshell::{Shell, cmd};

use crate::support::serial;

/// Send this test process a real `signal` (`TERM`, `HUP`) 300 ms from now.
fn signal_self_soon(signal: &'static str) -> std::thread::JoinHandle<()> {
    let me = std::process::id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        // From outside boma-exec on purpose: the signal must come as a terminal's would,
        // not through the spawner under test.
        #[allow(clippy::disallowed_methods)]
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &me])
            .status()
            .unwrap();
    })
}

/// Deliver a real `signal` (`TERM`, `HUP`) to this test process shortly after a long command
/// starts; return the error the command ended with and how long it ran.
fn signalled_during_a_command(signal: &'static str) -> (ExecError, Duration) {
    interrupt::install().unwrap();
    let sh = Shell::new().unwrap();
    let killer = signal_self_soon(signal);
    let started = Instant::now();
    let err = cmd!(sh, "sleep 30").exec().run().unwrap_err();
    killer.join().unwrap();
    (err, started.elapsed())
}

/// Whether this test process started with SIGHUP ignored (run under `nohup`): then
/// `install` leaves SIGHUP alone, by design, and the SIGHUP test checks that instead.
fn started_with_sighup_ignored() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    interrupt::ignored_signals(&status).contains(&signal_hook::consts::SIGHUP)
}

#[test]
fn a_real_sighup_stops_a_running_command_like_sigterm_unless_under_nohup() {
    let _serial = serial();
    if started_with_sighup_ignored() {
        // Under nohup the operator asked the run to outlive the session: a SIGHUP neither
        // stops the command nor leaves an interrupt pending.
        interrupt::install().unwrap();
        let killer = signal_self_soon("HUP");
        let sh = Shell::new().unwrap();
        cmd!(sh, "sleep 1").exec().run().unwrap();
        killer.join().unwrap();
        assert!(interrupt::pending().is_none());
        return;
    }
    let (err, took) = signalled_during_a_command("HUP");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let interrupted = err.interrupted().expect("an interrupt error");
    assert_eq!(interrupted.exit_code(), 129);
    assert!(err.to_string().contains("SIGHUP"), "{err}");
    // Cleanup still runs its commands, as after SIGTERM.
    assert_eq!(interrupt::begin_cleanup(), Some(interrupted));
    let sh = Shell::new().unwrap();
    cmd!(sh, "true").exec().run().unwrap();
    interrupt::reset();
}

#[test]
fn a_real_sigterm_stops_a_running_command_promptly() {
    let _serial = serial();
    let (err, took) = signalled_during_a_command("TERM");
    let sh = Shell::new().unwrap();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let interrupted = err.interrupted().expect("an interrupt error");
    assert_eq!(interrupted.exit_code(), 143);
    assert!(matches!(err, ExecError::Interrupted { .. }));

    // Nothing new starts while the interrupt is pending; sleeps wake at once.
    let err = cmd!(sh, "true").exec().run().unwrap_err();
    assert!(err.interrupted().is_some());
    assert!(interrupt::sleep(Duration::from_secs(10)).is_err());

    // A cleanup command runs despite the pending interrupt.
    assert_eq!(
        cmd!(sh, "echo unmounted")
            .exec()
            .uninterruptible()
            .read()
            .unwrap(),
        "unmounted"
    );

    // Cleanup runs its commands even though the interrupt is remembered.
    assert_eq!(interrupt::begin_cleanup(), Some(interrupted));
    cmd!(sh, "true").exec().run().unwrap();
    assert!(interrupt::check().is_ok());
    assert_eq!(interrupt::received(), Some(interrupted));

    interrupt::reset();
    assert!(interrupt::received().is_none());
}
