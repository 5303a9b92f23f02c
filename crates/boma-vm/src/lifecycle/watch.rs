//! The serial console, read at every poll of a wait for the guest: a boot that will never
//! answer ends the wait at once, and a boot that crashed for a reason outside the change under
//! test is reset, once. Every boot the console shows since the wait began is judged, so a
//! guest that restarts itself after a panic (`kernel.panic=N`) fails all the same, even once
//! it answers ([`ConsoleWatch::confirm`]).

use boma_exec::progress::phase;
use boma_exec::say;

use super::BaseImage;
use crate::run::diagnostics::{BootVerdict, boot_verdict};
use crate::{Hypervisor, RebootHow, RunRecord, VmError};

/// Which crashed boots one hardware reset may undo without hiding a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resettable {
    /// Any kernel panic: the golden image's first boot, before anything of the run is
    /// applied. A panic there is the emulator's or the image's, never the change under test.
    AnyPanic,
    /// Only the emulator's known fault ([`BootVerdict::is_emulator_fault`]): the boot after a
    /// reboot is the test, and a first boot from a cached layer boots the steps applied to it
    /// (the change under test); any other panic there is its verdict.
    EmulatorFault,
}

/// What a first boot may be reset for, by what it boots: only the golden image carries
/// nothing of the change under test. Pure.
pub fn first_boot_resettable(base: BaseImage) -> Resettable {
    match base {
        BaseImage::Golden => Resettable::AnyPanic,
        BaseImage::Layer => Resettable::EmulatorFault,
    }
}

/// What a wait does about what the console shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Nothing final yet: ask the guest.
    Wait,
    /// Reset the guest, say why, and go on waiting for the boot after the reset.
    Reset(BootVerdict),
    /// The guest will never answer: end the wait with this.
    Fail(BootVerdict),
}

/// The decision, pure: a verdict the policy may undo is reset, once; any other ends the wait.
pub fn next(verdict: Option<BootVerdict>, resettable: Resettable, was_reset: bool) -> Next {
    let Some(verdict) = verdict else {
        return Next::Wait;
    };
    let may_reset = match resettable {
        Resettable::AnyPanic => matches!(verdict, BootVerdict::KernelPanic { .. }),
        Resettable::EmulatorFault => verdict.is_emulator_fault(),
    };
    if may_reset && !was_reset {
        Next::Reset(verdict)
    } else {
        Next::Fail(verdict)
    }
}

/// One wait's view of the console: from which byte its boot starts, and whether it was reset.
pub struct ConsoleWatch {
    /// What the console held before this boot (the old boot's lines, or the boot before a
    /// reset) is history: only what follows is read.
    from: u64,
    was_reset: bool,
    /// Which boot this is, for the error and the reset's phase ("its first boot").
    during: &'static str,
    resettable: Resettable,
}

impl ConsoleWatch {
    /// Watch the boot whose console starts at byte `from`.
    pub fn new(from: u64, during: &'static str, resettable: Resettable) -> ConsoleWatch {
        ConsoleWatch {
            from,
            was_reset: false,
            during,
            resettable,
        }
    }

    /// Read the console and act on it: `Ok` to go on waiting (after a reset, if one was due),
    /// [`VmError::BootFailed`] when the guest will never answer.
    pub fn check(
        &mut self,
        hypervisor: &dyn Hypervisor,
        record: &RunRecord,
    ) -> Result<(), VmError> {
        match self.next(record) {
            Next::Wait => Ok(()),
            Next::Reset(verdict) => {
                let why = if verdict.is_emulator_fault() {
                    "the emulator's known fault (a breakpoint trap in kernel code patched at boot), not the guest's"
                } else {
                    "before anything was applied, so not the change under test"
                };
                say!(
                    "    {} ended in a kernel panic, {why}: {verdict}",
                    self.during
                );
                say!(
                    "    resetting it once (the console keeps both boots); another panic ends the run"
                );
                self.from = console_len(record);
                self.was_reset = true;
                let reset = phase(format!("reset after a kernel panic in {}", self.during));
                reset.close(reset_guest(hypervisor, record))
            }
            Next::Fail(verdict) => Err(self.failed(record, verdict)),
        }
    }

    /// Once the guest answered: judge the console once more, every boot since the wait began
    /// (a panic the guest restarted past, between two polls, is in it). A verdict the policy
    /// would have reset is one the guest got past by itself, as a reset would; any other fails.
    pub fn confirm(&self, record: &RunRecord) -> Result<(), VmError> {
        match self.next(record) {
            Next::Wait => Ok(()),
            Next::Reset(verdict) => {
                say!(
                    "    {} ended in a kernel panic the guest restarted past by itself, as a reset would have: {verdict}",
                    self.during
                );
                Ok(())
            }
            Next::Fail(verdict) => Err(self.failed(record, verdict)),
        }
    }

    /// What to do about the console as it reads now.
    fn next(&self, record: &RunRecord) -> Next {
        next(
            console_verdict(record, self.from),
            self.resettable,
            self.was_reset,
        )
    }

    fn failed(&self, record: &RunRecord, verdict: BootVerdict) -> VmError {
        VmError::BootFailed {
            name: record.name.to_string(),
            during: self.during,
            verdict: Box::new(verdict),
            console: record.console_log(),
        }
    }
}

/// What the serial console shows of the boots since byte `from` ([`boot_verdict`]: every one of
/// them); a console started anew, shorter than `from`, is read whole. `None` while it shows
/// nothing final, or cannot be read.
fn console_verdict(record: &RunRecord, from: u64) -> Option<BootVerdict> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    // Read at every poll: only the watched boot's bytes, not the whole history before them.
    let mut console = std::fs::File::open(record.console_log()).ok()?;
    let len = console.metadata().ok()?.len();
    let start = if len < from { 0 } else { from };
    console.seek(SeekFrom::Start(start)).ok()?;
    let mut since = Vec::new();
    console.read_to_end(&mut since).ok()?;
    boot_verdict(&String::from_utf8_lossy(&since))
}

/// How many bytes the serial console holds now (0 before it exists).
pub fn console_len(record: &RunRecord) -> u64 {
    std::fs::metadata(record.console_log()).map_or(0, |m| m.len())
}

/// A hardware reset of a guest whose kernel panicked.
fn reset_guest(hypervisor: &dyn Hypervisor, record: &RunRecord) -> Result<(), VmError> {
    if hypervisor.reboot(record, RebootHow::Hard)? {
        Ok(())
    } else {
        Err(VmError::Backend(format!(
            "the {} backend cannot reset {}",
            record.backend, record.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panic(first_sign: Option<&str>) -> BootVerdict {
        BootVerdict::KernelPanic {
            at: Some(1.2),
            words: "Fatal exception in interrupt".into(),
            first_sign: first_sign.map(str::to_owned),
            place: None,
            after_init: false,
            later_boots: 0,
        }
    }

    const INT3: &str = "Oops: int3: 0000 [#1] PREEMPT SMP NOPTI";
    const GPF: &str = "general protection fault, probably for non-canonical address";

    #[test]
    fn nothing_final_means_wait() {
        assert_eq!(next(None, Resettable::AnyPanic, false), Next::Wait);
        assert_eq!(next(None, Resettable::EmulatorFault, true), Next::Wait);
    }

    #[test]
    fn a_first_boot_is_reset_once_for_any_panic() {
        for verdict in [panic(Some(INT3)), panic(Some(GPF)), panic(None)] {
            assert_eq!(
                next(Some(verdict.clone()), Resettable::AnyPanic, false),
                Next::Reset(verdict.clone())
            );
            assert_eq!(
                next(Some(verdict.clone()), Resettable::AnyPanic, true),
                Next::Fail(verdict)
            );
        }
    }

    #[test]
    fn after_a_reboot_only_the_emulators_fault_is_reset_once() {
        let int3 = panic(Some(INT3));
        assert_eq!(
            next(Some(int3.clone()), Resettable::EmulatorFault, false),
            Next::Reset(int3.clone())
        );
        assert_eq!(
            next(Some(int3.clone()), Resettable::EmulatorFault, true),
            Next::Fail(int3)
        );
        let in_init = BootVerdict::KernelPanic {
            at: Some(12.0),
            words: "Fatal exception".into(),
            first_sign: Some(INT3.into()),
            place: None,
            after_init: true,
            later_boots: 0,
        };
        for verdict in [panic(Some(GPF)), panic(None), in_init] {
            assert_eq!(
                next(Some(verdict.clone()), Resettable::EmulatorFault, false),
                Next::Fail(verdict)
            );
        }
    }

    #[test]
    fn only_the_golden_images_first_boot_is_reset_for_any_panic() {
        assert_eq!(
            first_boot_resettable(BaseImage::Golden),
            Resettable::AnyPanic
        );
        // A layer carries the steps applied to it: only the emulator's fault is not theirs.
        assert_eq!(
            first_boot_resettable(BaseImage::Layer),
            Resettable::EmulatorFault
        );
        let own = panic(Some(GPF));
        assert_eq!(
            next(
                Some(own.clone()),
                first_boot_resettable(BaseImage::Layer),
                false
            ),
            Next::Fail(own)
        );
    }

    #[test]
    fn emergency_mode_is_never_reset() {
        for resettable in [Resettable::AnyPanic, Resettable::EmulatorFault] {
            assert_eq!(
                next(Some(BootVerdict::EmergencyMode), resettable, false),
                Next::Fail(BootVerdict::EmergencyMode)
            );
        }
    }
}
