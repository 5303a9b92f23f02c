//! The full cycle an operator runs before touching a live host, for one profile:
//! preflight → up → apply → idempotence → capture → reboot → capture → checks → down, with one
//! report whatever happens. Failures after boot keep the VM with a diagnostics bundle; an
//! interrupt removes it (unless `--keep`).

use std::time::{Instant, SystemTime};

use boma_exec::progress;
use boma_exec::say;
use boma_report::{CheckRecord, CheckSource, RunReport, RunResult, Timestamp};
use boma_vm::lifecycle;
use boma_vm::{RebootHow, RunRecord};
use serde_json::json;

use crate::error::ExitClass;
use crate::files::{self, RunFiles};
use crate::layers::{self, RunLayers};
use crate::preflight::{self, Inputs, Needs};
use crate::steps::{self, PlaybookSet};
use crate::vm::{self, with_effects};
use crate::{Ctx, HarnessError, checks, diff};

/// Options of the full cycle.
#[derive(Debug, Clone, Copy)]
pub struct ItOptions {
    pub tier: boma_inventory::CertTier,
    /// Keep the VM even when the run passes.
    pub keep: bool,
    /// Verify without rebooting (faster, and blind to exactly the bugs this exists for).
    pub no_reboot: bool,
    /// Apply every step a second time and fail on any task that reports `changed`.
    pub idempotence: bool,
    /// A failed run removes its VM once the diagnostics bundle is written (CI, the VM suite:
    /// nobody will log in, the bundle holds the evidence). Default: keep it for inspection.
    pub remove_failed: bool,
}

/// What one run of the cycle produced: its report, and the error that ended it (if any).
#[derive(Debug)]
pub struct RunOutcome {
    pub report: RunReport,
    pub error: Option<HarnessError>,
}

impl RunOutcome {
    pub fn exit_class(&self) -> Option<ExitClass> {
        self.error.as_ref().map(HarnessError::class)
    }
}

/// Run the cycle for `host`.
pub fn it(ctx: &Ctx, host: &str, options: ItOptions) -> RunOutcome {
    progress::reset_records();
    let started = Instant::now();
    let started_at = Timestamp::from_system_time(SystemTime::now());
    let mut report = RunReport {
        host: host.to_owned(),
        vm: None,
        backend: None,
        accel: None,
        cert_tier: options.tier.to_string(),
        image: None,
        result: RunResult::Error,
        rebooted: false,
        error: None,
        diagnostics: None,
        started_at,
        total_seconds: 0.0,
        layers: Vec::new(),
        phases: Vec::new(),
        checks: Vec::new(),
    };
    let error = run(ctx, host, options, &mut report).err();
    let _ = progress::log_into(None);
    let _ = progress::fold_into(None);
    report.result = match &error {
        None => RunResult::Passed,
        Some(e) => match e.class() {
            ExitClass::Interrupted(_) => RunResult::Interrupted,
            ExitClass::Refused => RunResult::Refused,
            ExitClass::Failed if matches!(e, HarnessError::ChecksFailed { .. }) => {
                RunResult::Failed
            }
            // A guest that never came back, a failed playbook: a verdict on the host.
            ExitClass::Failed if is_verdict(e) => RunResult::Failed,
            ExitClass::Failed => RunResult::Error,
        },
    };
    report.error = error.as_ref().map(|e| crate::error_chain(e));
    report.phases = progress::records()
        .iter()
        .map(crate::report::phase)
        .collect();
    report.total_seconds = started.elapsed().as_secs_f64();
    // Every string of the report (errors, check details from the guest, phase names) masked.
    let report = crate::report::redacted(report);
    if let Some(dir) = &report.diagnostics {
        // The bundle carries the report too.
        let path = camino::Utf8Path::new(dir).join("report.json");
        let single = crate::report::single(&report);
        let _ = std::fs::write(path, boma_report::render_json(&single));
    }
    RunOutcome { report, error }
}

/// A failure that is the host's fault (it did not survive, a play failed), not the harness's.
fn is_verdict(e: &HarnessError) -> bool {
    matches!(
        e,
        HarnessError::Playbook { .. }
            | HarnessError::PlaybookTimedOut { .. }
            | HarnessError::Vm(
                boma_vm::VmError::Timeout { .. }
                    | boma_vm::VmError::BootFailed { .. }
                    | boma_vm::VmError::GuestGone { .. }
                    | boma_vm::VmError::CloudInit { .. }
            )
    )
}

fn run(
    ctx: &Ctx,
    host: &str,
    options: ItOptions,
    report: &mut RunReport,
) -> Result<(), HarnessError> {
    let inputs = preflight::inputs(ctx, host, options.tier, Needs::All)?;
    let run_id = vm::new_run_id();
    let new = preflight::new_vm(ctx, &inputs, &run_id)?;
    let what = format!("cargo xtask it {host}");
    // Shared: several runs (each its own VM) may go at once; `prune` waits for none of them.
    let _lock = vm::runs(ctx).lock_shared(&what)?;
    let prepared = vm::prepare(ctx, &inputs, &new, &what, false)?;
    let mut prepared = prepared;
    report.backend = Some(new.backend.kind.to_string());
    report.accel = Some(format!("{:?}", prepared.accel).to_lowercase());
    report.image = Some(boma_report::ImageUse {
        path: prepared.golden.path.to_string(),
        sha512: prepared.golden.sha512.clone(),
        origin: prepared.golden.origin.clone(),
    });
    // Layers: the deepest cached disk whose inputs match, unless asked not to, the tier puts a
    // secret on the disk, or the store cannot be used.
    let run_dir = ctx.settings.runs_root.join(new.name.as_str());
    let (mut layers, uses) = layers::start(ctx, &inputs, &prepared.golden, &new.name, &run_dir)?;
    report.layers = uses;
    let base = match &layers {
        Some(l) => l.base().to_owned(),
        None => vm::pin_for_run(ctx, &new, &prepared.golden)?,
    };
    // From here the run has a directory: its command log goes there too.
    if std::fs::create_dir_all(&run_dir).is_ok() {
        let _ = progress::log_into(Some(RunFiles { dir: run_dir }.harness_log().as_std_path()));
    }
    let mut record = match vm::boot(ctx, &inputs, &new, prepared.accel, &base, false) {
        Ok(record) => record,
        Err((error, Some(record))) => {
            report.vm = Some(record.name.to_string());
            report.diagnostics =
                vm::after_failure(ctx, &record, &error, options.keep).map(|p| p.to_string());
            return Err(error);
        }
        Err((error, None)) => return Err(error),
    };
    report.vm = Some(record.name.to_string());
    if let Some(pid) = vm_pid(&record) {
        let _ = prepared.reservation.vm_started(pid);
    }
    let outcome = after_boot(ctx, &inputs, &mut record, options, &mut layers, report);
    if let Some(l) = &layers {
        report.layers = l.uses.clone();
    }
    let outcome = match outcome {
        Ok(()) if options.keep => {
            say!(
                "passed; keeping {} as asked (--keep): {}",
                record.name,
                record.ssh.shell_hint()
            );
            Ok(())
        }
        Ok(()) => with_effects(ctx, record.backend, record.accel, |fx| {
            lifecycle::down(fx, &record)
        })
        .map_err(HarnessError::from),
        Err(error) => {
            report.diagnostics =
                vm::after_failure(ctx, &record, &error, options.keep).map(|p| p.to_string());
            if options.remove_failed && !options.keep && error.interrupted().is_none() {
                say!(
                    "--remove-failed: removing {} (the bundle keeps the evidence)",
                    record.name
                );
                if let Err(e) = with_effects(ctx, record.backend, record.accel, |fx| {
                    lifecycle::down(fx, &record)
                }) {
                    say!(
                        "could not remove {}: {e}; run `cargo xtask prune`",
                        record.name
                    );
                }
            }
            Err(error)
        }
    };
    // A kept VM keeps its memory reserved (until `down` or `prune`); a removed one frees it
    // (the guard releases when dropped).
    let kept = options.keep || (!options.remove_failed && error_keeps_vm(&outcome));
    if kept && let Some(pid) = vm_pid(&record) {
        let _ = prepared.reservation.keep_for_vm(pid);
    }
    outcome
}

/// Whether a failure left the VM running (every failure but an interrupt does).
fn error_keeps_vm(outcome: &Result<(), HarnessError>) -> bool {
    outcome
        .as_ref()
        .err()
        .is_some_and(|e| e.interrupted().is_none())
}

/// The VM's hypervisor process: QEMU's pid (recorded), or libvirt's QEMU found by name.
fn vm_pid(record: &RunRecord) -> Option<u32> {
    record.pid.or_else(|| {
        boma_vm::host::procs::vm_processes()
            .into_iter()
            .find(|p| p.name == record.name)
            .map(|p| p.pid)
    })
}

/// Everything after the VM is up. The checks gathered so far stay in the report whatever
/// fails later.
fn after_boot(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &mut RunRecord,
    options: ItOptions,
    layers: &mut Option<RunLayers>,
    report: &mut RunReport,
) -> Result<(), HarnessError> {
    let files = RunFiles::of(record);
    files::write_run_files(ctx.repo(), inputs, record, &files)?;
    let _ = progress::fold_into(Some(files.ansible_log().as_std_path()));
    let steps_total = inputs.profile.applies.len();
    let reused = layers.as_ref().map_or(0, RunLayers::reused_steps);
    // The last step is always applied in this run, even when its layer is reused (a converged
    // apply on its own disk): the reboot diff's "before" must be the state an apply leaves,
    // with everything it started and made at run time, not the state a boot leaves — that
    // difference is what the reboot-class bugs are.
    let first_applied = reused.min(steps_total.saturating_sub(1));
    // Each reused layer's power cycle was a reboot test of its step: its verdict is this run's
    // too (only layers whose power cycle lost nothing are reused).
    if let Some(run_layers) = layers.as_ref() {
        report.checks.extend(run_layers.reused_verdicts());
    }
    for (index, apply) in inputs.profile.applies.iter().enumerate() {
        if index < first_applied {
            progress::skipped(format!("apply {}", apply.label()));
            continue;
        }
        {
            let set = PlaybookSet::new(ctx, inputs, record, &files);
            steps::apply_step(ctx, &set, apply, None)?;
        }
        // A layer after each step but the last (whose layer is taken at the reboot): it needs
        // a cleanly shut-down guest, so the VM is power-cycled here, and that power cycle is a
        // reboot test of the step.
        if let Some(run_layers) = layers.as_mut()
            && index + 1 < steps_total
            && run_layers.storing()
        {
            step_reboot_test(ctx, inputs, record, &files, run_layers, index, report)?;
        }
    }
    if options.idempotence {
        let cached = layers
            .as_ref()
            .and_then(|l| l.idempotence_verdict(ctx))
            .filter(|_| reused == steps_total);
        match cached {
            Some(detail) => {
                say!("idempotence: {detail}");
                progress::skipped("idempotence");
                report.checks.push(checks::idempotence_cached(detail));
            }
            None => {
                let set = PlaybookSet::new(ctx, inputs, record, &files);
                let changed = steps::idempotence(ctx, &set, &files)?;
                let check = checks::from_idempotence(&changed, ctx.repo());
                if check.ok
                    && let Some(run_layers) = layers.as_ref()
                {
                    run_layers.record_idempotence(ctx);
                }
                report.checks.push(check);
            }
        }
    } else {
        progress::skipped("idempotence");
    }

    let before = diff::capture(
        ctx,
        inputs,
        record,
        &files.state_before(),
        "before the reboot",
    )?;
    // Whether the reboot was the power cycle that stored the last step's layer: then what it
    // lost is that layer's verdict.
    let mut took_last_layer = false;
    if options.no_reboot {
        say!("--no-reboot: checking without a reboot (blind to reboot-survival bugs)");
        progress::skipped("reboot");
    } else {
        // With layers, the reboot is the power cycle that takes the last step's layer (from the
        // cleanly shut-down guest); it is a real reboot all the same: a full shutdown, a new
        // boot_id.
        // No layer of a state that already failed a check (a task that changed on the second
        // apply: that disk is not what the step's inputs make).
        let clean_so_far = report.checks.iter().all(|c| c.ok);
        let takes_last = layers
            .as_ref()
            .is_some_and(|l| reused < steps_total && clean_so_far && l.storing());
        let rebooted = match layers.as_mut() {
            Some(run_layers) if takes_last => {
                power_cycle_taking(ctx, record, run_layers, steps_total - 1, "reboot")
            }
            _ => with_effects(ctx, record.backend, record.accel, |fx| {
                lifecycle::reboot(fx, record, RebootHow::Guest)
            })
            .map(|_| ()),
        };
        took_last_layer = takes_last && rebooted.is_ok();
        files.forget_facts();
        match rebooted {
            Ok(_) => report.rebooted = true,
            Err(e) => {
                report.checks.push(reboot_check(&e));
                return Err(e.into());
            }
        }
        // A new lease may have moved the guest (libvirt): the inventory follows.
        files::write_run_files(ctx.repo(), inputs, record, &files)?;
    }
    let after = diff::capture(
        ctx,
        inputs,
        record,
        &files.state_after(),
        "after the reboot",
    )?;
    let mut across = checks::from_probes(&before.probes, &after.probes);
    if report.rebooted {
        let compared = diff::compare(&before, &after, &inputs.profile.reboot_diff_ignore, &files)?;
        across.extend(compared);
    }
    if took_last_layer && let Some(run_layers) = layers.as_mut() {
        run_layers.record_verdict(steps_total - 1, &across);
    }
    report.checks.extend(across);
    report.checks.push(checks::system_running(
        &after.system_state,
        &after.failed_units,
    ));
    report.checks.push(diff::fleet_routes(ctx, inputs, record)?);
    let set = PlaybookSet::new(ctx, inputs, record, &files);
    for (index, playbook) in inputs.profile.verify.iter().enumerate() {
        let found = steps::verify_playbook(ctx, &set, playbook, index)?;
        report.checks.extend(checks::from_verify(&found));
    }
    say!("checks:");
    progress::line(checks::summary(&report.checks).trim_end());
    expectations(inputs, &report.checks);
    let failed = checks::failed(&report.checks);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(HarnessError::ChecksFailed { failed })
    }
}

/// The power cycle that stores step `index`'s layer, as a reboot test of that step: the state
/// its apply left is captured, the VM power-cycled (the layer taken while it is off), the state
/// captured again and both compared like the final reboot's. What was lost becomes the layer's
/// verdict and failed checks named by the step; a guest that does not come back is the step's
/// `reboot_timeout`. The captures and the diff are in `step-<n>/` of the run directory.
fn step_reboot_test(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &mut RunRecord,
    files: &RunFiles,
    run_layers: &mut RunLayers,
    index: usize,
    report: &mut RunReport,
) -> Result<(), HarnessError> {
    let step = index + 1;
    let label = inputs.profile.applies[index].label();
    let step_files = RunFiles {
        dir: files.dir.join(format!("step-{step}")),
    };
    std::fs::create_dir_all(&step_files.dir).map_err(|e| HarnessError::io(&step_files.dir, e))?;
    let before = diff::capture(
        ctx,
        inputs,
        record,
        &step_files.state_before(),
        &format!("after step {step}'s apply"),
    )?;
    if let Err(e) = power_cycle_taking(ctx, record, run_layers, index, "power cycle (layer)") {
        let mut check = reboot_check(&e);
        check.name = layers::power_cycle_check_name(&check.name, index, &label);
        report.checks.push(check);
        return Err(e.into());
    }
    files.forget_facts();
    files::write_run_files(ctx.repo(), inputs, record, files)?;
    let after = diff::capture(
        ctx,
        inputs,
        record,
        &step_files.state_after(),
        &format!("after step {step}'s power cycle"),
    )?;
    let mut found = checks::from_probes(&before.probes, &after.probes);
    found.extend(diff::compare(
        &before,
        &after,
        &inputs.profile.reboot_diff_ignore,
        &step_files,
    )?);
    run_layers.record_verdict(index, &found);
    for check in &mut found {
        check.name = layers::power_cycle_check_name(&check.name, index, &label);
    }
    report.checks.extend(found);
    Ok(())
}

/// Power-cycle the VM, storing step `index`'s layer while it is off.
fn power_cycle_taking(
    ctx: &Ctx,
    record: &mut RunRecord,
    layers: &mut RunLayers,
    index: usize,
    label: &str,
) -> Result<(), boma_vm::VmError> {
    with_effects(ctx, record.backend, record.accel, |fx| {
        lifecycle::power_cycle(fx, record, label, &mut |stopped| {
            layers.take(ctx, stopped, index)
        })
    })?;
    layers.booted(index);
    Ok(())
}

/// A reboot that did not come back, as a check (`reboot_timeout`, `guest_gone`).
/// `reboot_timeout` is the guest not returning, whether the wait ran out or was cut short by a
/// console that shows it never will (a kernel panic, emergency mode).
fn reboot_check(error: &boma_vm::VmError) -> CheckRecord {
    let reason = match error {
        boma_vm::VmError::Timeout { .. } | boma_vm::VmError::BootFailed { .. } => "reboot_timeout",
        boma_vm::VmError::GuestGone { .. } => "guest_gone",
        _ => "reboot_failed",
    };
    CheckRecord {
        name: reason.to_owned(),
        source: CheckSource::Builtin,
        ok: false,
        reason: Some(reason.to_owned()),
        detail: Some(json!(error.to_string())),
    }
}

/// A RED profile says what must fail: say whether it did.
fn expectations(inputs: &Inputs, checks: &[CheckRecord]) {
    if inputs.profile.expect.is_empty() {
        return;
    }
    let (missing, unexpected) = checks::against_expectations(&inputs.profile.expect, checks);
    if missing.is_empty() && unexpected.is_empty() {
        say!("expected failures (profile `expect`): all seen, nothing else failed");
    } else {
        if !missing.is_empty() {
            say!("expected but not seen: {}", missing.join(", "));
        }
        if !unexpected.is_empty() {
            say!("failed but not expected: {}", unexpected.join(", "));
        }
    }
}
