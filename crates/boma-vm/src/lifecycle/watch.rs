//! The serial console, read at every poll of a wait for the guest: a boot that will never
//! answer ends the wait at once, and a boot that crashed for a reason outside the change under
//! test is reset, once.

use boma_exec::progress::phase;
use boma_exec::say;

use crate::run::diagnostics::{BootVerdict, boot_verdict};
use crate::{Hypervisor, RebootHow, RunRecord, VmError};

/// Which crashed boots one hardware reset may undo without hiding a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resettable {
    /// Any kernel panic: the first boot, before anything of the run is applied (the golden
    /// image, or a layer a guest has already come back from). A panic there is the emulator's
    /// or the image's, never the change under test.
    AnyPanic,
    /// Only the emulator's known fault ([`BootVerdict::is_emulator_fault`]): the boot after a
    /// reboot is the test, and any other panic there is its verdict.
    EmulatorFault,
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
        match next(
            console_verdict(record, self.from),
            self.resettable,
            self.was_reset,
        ) {
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
            Next::Fail(verdict) => Err(VmError::BootFailed {
                name: record.name.to_string(),
                during: self.during,
                verdict: Box::new(verdict),
                console: record.console_log(),
            }),
        }
    }
}

/// What the serial console shows of the guest's last boot, reading from byte `from` on; a
/// console started anew, shorter than `from`, is read whole. `None` while it shows nothing
/// final, or cannot be read.
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
        };
        for verdict in [panic(Some(GPF)), panic(None), in_init] {
            assert_eq!(
                next(Some(verdict.clone()), Resettable::EmulatorFault, false),
                Next::Fail(verdict)
            );
        }
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
