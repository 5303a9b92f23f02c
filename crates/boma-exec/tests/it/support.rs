//! What boma-exec's integration tests share: one lock. The interrupt flag (and the signal
//! handlers) and the spawn journal's recording are process-global, so a real signal or a
//! recording would reach whatever else runs in this process: every test here takes turns.

use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

/// Held by every test of this binary while it runs. A test that failed half-way leaves no
/// pending interrupt to the next.
pub fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    boma_exec::interrupt::reset();
    guard
}
