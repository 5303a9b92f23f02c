//! Ctrl-C and SIGTERM as a value the harness checks, instead of a process that dies mid-step.
//!
//! The binary calls [`install`] once. From then on SIGINT/SIGTERM only set a flag: running
//! commands are stopped by [`crate::Run`], waits return [`Interrupted`], and the caller tears
//! the VM down (or keeps it) before exiting with [`Interrupted::exit_code`]. A second signal
//! while cleaning up is still only recorded: cleanup finishes.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Set once the harness is tearing down after an interrupt: signals are still recorded, but
/// no longer stop the cleanup's own commands.
static CLEANING_UP: AtomicBool = AtomicBool::new(false);
/// A simulated signal (tests), or 0.
static SIMULATED: AtomicI32 = AtomicI32::new(0);
/// The flags the real handlers set, one per signal we route.
static FLAGS: OnceLock<[(i32, Arc<AtomicBool>); 2]> = OnceLock::new();

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

/// Route SIGINT and SIGTERM to the flag. Safe to call more than once.
pub fn install() -> std::io::Result<()> {
    let flags = FLAGS.get_or_init(|| {
        [
            (SIGINT, Arc::new(AtomicBool::new(false))),
            (SIGTERM, Arc::new(AtomicBool::new(false))),
        ]
    });
    for (signal, flag) in flags {
        // Only a flag, never `register_conditional_default`: a second Ctrl-C must not kill the
        // harness while it is removing the VM it created.
        signal_hook::flag::register(*signal, Arc::clone(flag))?;
    }
    Ok(())
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
