//! What becomes of a booted VM when a step or the cycle ends: the one failure policy (an
//! interrupt removes it unless asked to keep it; any other failure writes a diagnostics
//! bundle and keeps it, saying how to look at it), and the cycle's keep policy (removed, kept
//! running, or kept powered off), carried out with the VM's memory reservation.

use boma_exec::progress::phase;
use boma_exec::{interrupt, say};
use boma_host::reserve::Reserved;
use boma_vm::RunRecord;
use boma_vm::lifecycle;
use boma_vm::run::diagnostics;
use camino::Utf8PathBuf;

use crate::boot;
use crate::ctx::Ctx;
use crate::error::HarnessError;
use crate::files;

/// How much of the serial console a failure whose guest never answered shows.
const CONSOLE_LINES: usize = 15;

/// The single failure policy for a booted VM: an interrupt removes it (unless `keep`); any
/// other failure collects diagnostics and keeps it, saying how to inspect and clean up.
/// Returns the diagnostics bundle's path, when one was written.
pub fn after_failure(
    ctx: &Ctx,
    record: &RunRecord,
    error: &HarnessError,
    keep: bool,
) -> Option<Utf8PathBuf> {
    let interrupted = on_interrupt(
        error,
        keep,
        record.name.as_str(),
        || record.ssh.shell_hint(),
        || {
            ctx.with_effects(record.backend, record.accel, |fx| {
                lifecycle::down(fx, record)
            })
            .map_err(HarnessError::from)
        },
    );
    if interrupted {
        return None;
    }
    say!("failed after boot: collecting diagnostics, keeping the VM");
    show_console_tail(error, record, None);
    let bundle = collect_diagnostics(ctx, record);
    say!("");
    say!("the VM {} is kept for inspection:", record.name);
    say!("  shell:        {}", record.ssh.shell_hint());
    say!(
        "  console:      cargo xtask console   (or {})",
        record.console_log()
    );
    match &bundle {
        Some(dir) => say!("  diagnostics:  {dir}"),
        None => say!("  diagnostics:  could not be collected (see above)"),
    }
    say!("  clean up:     cargo xtask down      (or `cargo xtask prune` for every test VM)");
    bundle
}

/// The interrupt half of the failure policy, for a VM or a fleet (`what` names it): says so and
/// removes what booted with `remove`, unless `keep`. Whether `error` was an interrupt.
pub(crate) fn on_interrupt(
    error: &HarnessError,
    keep: bool,
    what: &str,
    hints: impl FnOnce() -> String,
    remove: impl FnOnce() -> Result<(), HarnessError>,
) -> bool {
    if error.interrupted().is_none() {
        return false;
    }
    interrupt::begin_cleanup();
    say!("interrupted: {error}");
    if keep {
        say!("keeping {what} as asked (--keep): {}", hints());
    } else if let Err(e) = remove() {
        say!("could not remove {what} after the interrupt: {e}; run `cargo xtask prune`");
    }
    true
}

/// A guest that never answered can say why only on its console: show its end now (`whose`
/// names the VM when a fleet has several).
pub(crate) fn show_console_tail(error: &HarnessError, record: &RunRecord, whose: Option<&str>) {
    if !matches!(
        error,
        HarnessError::Vm(
            boma_vm::VmError::Timeout { .. }
                | boma_vm::VmError::BootFailed { .. }
                | boma_vm::VmError::GuestGone { .. }
        )
    ) {
        return;
    }
    let tail = diagnostics::console_tail(&files::console_text(record), CONSOLE_LINES);
    if !tail.is_empty() {
        let of = whose.map(|name| format!(" of {name}")).unwrap_or_default();
        say!("the end of the serial console{of}:");
        for line in tail {
            say!("  | {line}");
        }
    }
}

/// The bundle: the guest's evidence (boma-vm) and the run's own files (results, states, the
/// reboot diff, the folded Ansible log).
fn collect_diagnostics(ctx: &Ctx, record: &RunRecord) -> Option<Utf8PathBuf> {
    let out = ctx.settings.diagnostics_root.join(record.name.as_str());
    let step = phase("diagnostics");
    match diagnostics::collect(ctx.machine.guest(), record, &out) {
        Ok(dir) => {
            files::copy_evidence(&record.run_dir(), &dir);
            step.done();
            Some(dir)
        }
        Err(e) => {
            step.failed();
            say!("could not collect diagnostics: {e}");
            None
        }
    }
}

/// How a run's cycle ended, for what becomes of its VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Passed,
    Failed,
    Interrupted,
}

impl Ended {
    pub fn of(outcome: &Result<(), HarnessError>) -> Ended {
        match outcome {
            Ok(()) => Ended::Passed,
            Err(e) if e.interrupted().is_some() => Ended::Interrupted,
            Err(_) => Ended::Failed,
        }
    }
}

/// What the operator asked of a run's VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepPolicy {
    /// Keep the VM running whatever happens (`--keep`).
    pub keep: bool,
    /// A failed run's VM is removed once its bundle is written (`--remove-failed`).
    pub remove_failed: bool,
    /// A failed run's VM is kept powered off (one run of several).
    pub power_off_failed: bool,
}

/// What becomes of a run's VM once the cycle is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Remove,
    KeepRunning,
    /// Powered off with its disk, record and bundle: `cargo xtask start <vm>` boots it again.
    KeepPoweredOff,
}

/// The keep policy, pure: `--keep` keeps the VM running whatever happens; a pass or an
/// interrupt removes it; a failure keeps it for inspection — removed with `--remove-failed`
/// (nobody will log in), powered off in a run of several profiles (a running guest would take
/// the CPU the next runs need), running otherwise.
pub fn fate(ended: Ended, policy: KeepPolicy) -> Fate {
    match ended {
        _ if policy.keep => Fate::KeepRunning,
        Ended::Passed | Ended::Interrupted => Fate::Remove,
        Ended::Failed if policy.remove_failed => Fate::Remove,
        Ended::Failed if policy.power_off_failed => Fate::KeepPoweredOff,
        Ended::Failed => Fate::KeepRunning,
    }
}

/// The end of a cycle whose VM booted, carried out: for a failure the bundle (and, for an
/// interrupt, the VM removed unless kept), then the VM's [`fate`] — and, while the VM runs on
/// after this command, its memory reservation kept for it (until `down` or `prune`; otherwise
/// the reservation is released here). Returns the run's outcome (a pass whose VM cannot be
/// removed fails) and the bundle's path.
pub fn settle(
    ctx: &Ctx,
    record: &RunRecord,
    outcome: Result<(), HarnessError>,
    policy: KeepPolicy,
    reservation: Reserved,
) -> (Result<(), HarnessError>, Option<Utf8PathBuf>) {
    let ended = Ended::of(&outcome);
    let bundle = match &outcome {
        Err(error) => after_failure(ctx, record, error, policy.keep),
        Ok(()) => None,
    };
    let fate = fate(ended, policy);
    let mut runs_on = fate == Fate::KeepRunning;
    let outcome = match (fate, ended) {
        (Fate::KeepRunning, Ended::Passed) => {
            say!(
                "passed; keeping {} as asked (--keep): {}",
                record.name,
                record.ssh.shell_hint()
            );
            outcome
        }
        (Fate::Remove, Ended::Passed) => {
            let removed = ctx.with_effects(record.backend, record.accel, |fx| {
                lifecycle::down(fx, record)
            });
            runs_on = removed.is_err();
            removed.map_err(HarnessError::from)
        }
        (Fate::Remove, Ended::Failed) => {
            say!(
                "--remove-failed: removing {} (the bundle keeps the evidence)",
                record.name
            );
            if let Err(e) = ctx.with_effects(record.backend, record.accel, |fx| {
                lifecycle::down(fx, record)
            }) {
                say!(
                    "could not remove {}: {e}; run `cargo xtask prune`",
                    record.name
                );
            }
            outcome
        }
        (Fate::KeepPoweredOff, _) => {
            let off = ctx.with_effects(record.backend, record.accel, |fx| {
                lifecycle::keep_powered_off(fx, record)
            });
            match off {
                Ok(()) => say!(
                    "{}",
                    powered_off_line(record, bundle.as_ref().map(|b| b.as_str()))
                ),
                Err(e) => {
                    runs_on = true;
                    say!(
                        "could not power {} off: {e}; it keeps running (`cargo xtask prune` removes it)",
                        record.name
                    );
                }
            }
            outcome
        }
        // Kept running by the failure policy (after_failure said how to reach it), or
        // removed by it after an interrupt.
        (Fate::KeepRunning | Fate::Remove, _) => outcome,
    };
    if runs_on && let Some(pid) = boot::vm_pid(ctx, record) {
        let _ = reservation.keep_for_vm(pid);
    }
    (outcome, bundle)
}

/// The one line that says a failed run's VM was kept powered off, and how to look at it.
fn powered_off_line(record: &RunRecord, bundle: Option<&str>) -> String {
    let bundle = bundle
        .map(|b| format!(", its bundle in {b}"))
        .unwrap_or_default();
    format!(
        "{name} is kept powered off (one run of several: a running guest would take the CPU the others need); its disk, console and record stay in {dir}{bundle}: `cargo xtask start {name}` boots it again to inspect it",
        name = record.name,
        dir = record.dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: KeepPolicy = KeepPolicy {
        keep: false,
        remove_failed: false,
        power_off_failed: false,
    };

    #[test]
    fn a_failed_vm_is_powered_off_only_in_a_run_of_several() {
        let several = KeepPolicy {
            power_off_failed: true,
            ..DEFAULT
        };
        assert_eq!(fate(Ended::Failed, DEFAULT), Fate::KeepRunning);
        assert_eq!(fate(Ended::Failed, several), Fate::KeepPoweredOff);
        // Nothing else changes with it.
        for (ended, expected) in [
            (Ended::Passed, Fate::Remove),
            (Ended::Interrupted, Fate::Remove),
        ] {
            assert_eq!(fate(ended, DEFAULT), expected);
            assert_eq!(fate(ended, several), expected);
        }
        // --remove-failed removes, --keep keeps running, whatever the run is part of.
        let remove = KeepPolicy {
            remove_failed: true,
            ..several
        };
        assert_eq!(fate(Ended::Failed, remove), Fate::Remove);
        let keep = KeepPolicy {
            keep: true,
            ..several
        };
        for ended in [Ended::Passed, Ended::Failed, Ended::Interrupted] {
            assert_eq!(fate(ended, keep), Fate::KeepRunning);
        }
    }
}
