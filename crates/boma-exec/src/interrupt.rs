//! Ctrl-C, SIGTERM and SIGHUP as a value the harness checks, instead of a process that dies
//! mid-step.
//!
//! The binary calls [`install`] once. From then on SIGINT, SIGTERM and SIGHUP (a dropped ssh
//! session) only set a flag: running commands are stopped by [`crate::Run`], waits return
//! [`Interrupted`], and the caller tears the VM down (or keeps it) before exiting with
//! [`Interrupted::exit_code`]. A second signal while cleaning up is still only recorded:
//! cleanup finishes. SIGHUP is left alone when the process started with it ignored (`nohup`):
//! the operator asked for the run to outlive the session.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Set once the harness is tearing down after an interrupt: signals are still recorded, but
/// no longer stop the cleanup's own commands.
static CLEANING_UP: AtomicBool = AtomicBool::new(false);
/// A simulated signal (tests), or 0.
static SIMULATED: AtomicI32 = AtomicI32::new(0);
/// The signals routed to a flag: the ones that end a run from outside.
const ROUTED: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];
/// The flags the real handlers set, one per routed signal.
static FLAGS: OnceLock<[(i32, Arc<AtomicBool>); 3]> = OnceLock::new();

/// The run was interrupted by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {}", signal_name(*.signal))]
pub struct Interrupted {
    pub signal: i32,
}

impl Interrupted {
    /// The conventional shell exit status for death by this signal (130 for SIGINT).
    pub fn exit_code(&self) -> i32 {
        128 + self.signal
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Whether the harness is tearing down after an interrupt.
pub fn cleaning_up() -> bool {
    CLEANING_UP.load(Ordering::SeqCst)
}

/// The interrupt somewhere in an error's chain of sources, if that is what it is: an error
/// wraps an interrupt when a command or a wait was stopped by a signal. Detected once, here,
/// by walking `source()`, so that no error type has to re-answer the question.
pub fn in_chain(error: &(dyn std::error::Error + 'static)) -> Option<Interrupted> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(i) = e.downcast_ref::<Interrupted>() {
            return Some(*i);
        }
        current = e.source();
    }
    None
}

/// Route SIGINT, SIGTERM and SIGHUP to the flag (SIGHUP only when it is not ignored, see the
/// module doc). Safe to call more than once.
pub fn install() -> std::io::Result<()> {
    let flags =
        FLAGS.get_or_init(|| ROUTED.map(|signal| (signal, Arc::new(AtomicBool::new(false)))));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let ignored = ignored_signals(&status);
    for (signal, flag) in flags {
        if *signal == SIGHUP && ignored.contains(&SIGHUP) {
            continue;
        }
        // Only a flag, never `register_conditional_default`: a second Ctrl-C must not kill the
        // harness while it is removing the VM it created.
        signal_hook::flag::register(*signal, Arc::clone(flag))?;
    }
    Ok(())
}

/// The signals this process ignores, from the `SigIgn:` mask of `/proc/self/status` (bit n-1
/// set for signal n). Empty when the line is missing or unreadable: then nothing is taken as
/// ignored. Pure.
pub fn ignored_signals(status: &str) -> Vec<i32> {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    (1..=64).filter(|n| mask & (1u64 << (n - 1)) != 0).collect()
}

/// The pending interrupt, if a signal arrived (and cleanup has not begun).
pub fn pending() -> Option<Interrupted> {
    if CLEANING_UP.load(Ordering::SeqCst) {
        return None;
    }
    received()
}

/// The interrupt that arrived, whether or not cleanup has begun.
pub fn received() -> Option<Interrupted> {
    let simulated = SIMULATED.load(Ordering::SeqCst);
    if simulated != 0 {
        return Some(Interrupted { signal: simulated });
    }
    FLAGS
        .get()?
        .iter()
        .find(|(_, flag)| flag.load(Ordering::SeqCst))
        .map(|(signal, _)| Interrupted { signal: *signal })
}

/// `Err` once a signal arrived.
pub fn check() -> Result<(), Interrupted> {
    pending().map_or(Ok(()), Err)
}

/// Sleep for `duration`, waking early with `Err` if a signal arrives.
pub fn sleep(duration: Duration) -> Result<(), Interrupted> {
    let deadline = Instant::now() + duration;
    loop {
        check()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Enter cleanup: from now on interrupts no longer stop commands or waits, so that the VM the
/// harness created is removed even if the operator presses Ctrl-C again. Returns the interrupt
/// that caused the cleanup, if any, for the exit status.
pub fn begin_cleanup() -> Option<Interrupted> {
    let cause = received();
    CLEANING_UP.store(true, Ordering::SeqCst);
    cause
}

/// [`begin_cleanup`], but only when an interrupt arrived: returns it.
pub fn begin_cleanup_if_interrupted() -> Option<Interrupted> {
    received().and_then(|_| begin_cleanup())
}

/// Pretend a signal arrived: for tests that exercise the interrupt paths.
pub fn simulate(signal: i32) {
    SIMULATED.store(signal, Ordering::SeqCst);
}

/// Forget a pending (simulated) interrupt: for tests.
pub fn reset() {
    SIMULATED.store(0, Ordering::SeqCst);
    CLEANING_UP.store(false, Ordering::SeqCst);
    if let Some(flags) = FLAGS.get() {
        for (_, flag) in flags {
            flag.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_signals_are_read_from_the_sigign_mask() {
        // As `nohup sh -c 'cat /proc/self/status'` shows it: SIGHUP (1) ignored.
        let status = "Name:\tcat\nSigQ:\t0/31503\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000001\nSigCgt:\t0000000000000000\n";
        assert_eq!(ignored_signals(status), [SIGHUP]);
        // SIGPIPE (13) and SIGHUP ignored.
        assert_eq!(ignored_signals("SigIgn:\t0000000000001001\n"), [SIGHUP, 13]);
        assert!(ignored_signals("SigIgn:\t0000000000000000\n").is_empty());
        assert!(ignored_signals("no such line").is_empty());
    }

    #[test]
    fn every_routed_signal_has_its_name() {
        for signal in ROUTED {
            let text = Interrupted { signal }.to_string();
            assert!(!text.ends_with("a signal"), "{text}");
        }
        assert_eq!(Interrupted { signal: SIGHUP }.exit_code(), 129);
        assert_eq!(
            Interrupted { signal: SIGHUP }.to_string(),
            "interrupted by SIGHUP"
        );
    }
}
