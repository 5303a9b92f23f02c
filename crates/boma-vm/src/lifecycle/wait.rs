//! How long the lifecycle waits, and the one loop that waits: poll until an answer or a
//! deadline, checking for Ctrl-C between attempts.

use std::time::{Duration, Instant};

use boma_exec::interrupt;

use crate::{Accel, VmError};

/// Fresh overlay to SSH and cloud-init done: ~45 s measured under TCG; generous for a loaded host.
pub const BOOT_TIMEOUT_TCG: Duration = Duration::from_secs(420);
/// Reboot to SSH with a new boot_id: 55-90 s measured under TCG (longer with Docker).
pub const REBOOT_TIMEOUT_TCG: Duration = Duration::from_secs(420);
/// How often a wait looks again.
const POLL: Duration = Duration::from_secs(3);

/// How long the lifecycle waits, fitted to the accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    pub boot: Duration,
    pub reboot: Duration,
    pub poll: Duration,
}

impl Waits {
    pub fn for_accel(accel: Accel) -> Waits {
        Waits {
            boot: accel.scale(BOOT_TIMEOUT_TCG),
            reboot: accel.scale(REBOOT_TIMEOUT_TCG),
            poll: POLL,
        }
    }
}

/// Call `attempt` until it answers `Some`, fails, or `deadline` passes; between attempts
/// sleep `waits.poll` (interruptible). A timeout names `what` was awaited and a `hint` (the
/// serial console, usually).
pub fn poll_until<T>(
    waits: &Waits,
    deadline: Instant,
    what: String,
    hint: String,
    mut attempt: impl FnMut() -> Result<Option<T>, VmError>,
) -> Result<T, VmError> {
    let started = Instant::now();
    loop {
        interrupt::check()?;
        if let Some(found) = attempt()? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(VmError::Timeout {
                what,
                after: deadline.saturating_duration_since(started),
                hint,
            });
        }
        interrupt::sleep(
            waits
                .poll
                .min(deadline.saturating_duration_since(Instant::now())),
        )?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Waits {
        Waits {
            boot: Duration::ZERO,
            reboot: Duration::ZERO,
            poll: Duration::from_millis(1),
        }
    }

    #[test]
    fn returns_the_first_answer() {
        let mut calls = 0;
        let got = poll_until(
            &fast(),
            Instant::now() + Duration::from_secs(5),
            "x".into(),
            String::new(),
            || {
                calls += 1;
                Ok((calls == 3).then_some(calls))
            },
        )
        .unwrap();
        assert_eq!(got, 3);
    }

    #[test]
    fn times_out_naming_what_and_the_hint() {
        let err = poll_until::<()>(
            &fast(),
            Instant::now() + Duration::from_millis(20),
            "the thing".into(),
            "look at the console".into(),
            || Ok(None),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("the thing") && err.contains("look at the console"),
            "{err}"
        );
    }

    #[test]
    fn an_attempt_error_ends_the_wait() {
        let err = poll_until::<()>(
            &fast(),
            Instant::now() + Duration::from_secs(5),
            String::new(),
            String::new(),
            || Err(VmError::Backend("gone".into())),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "gone");
    }
}
