//! The full cycle an operator runs before touching a live host, for one profile:
//! preflight → up → apply → idempotence → capture → reboot → capture → checks → down, with one
//! report whatever happens. Failures after boot keep the VM with a diagnostics bundle; an
//! interrupt removes it (unless `--keep`).

use std::time::{Instant, SystemTime};

use boma_exec::progress;
use boma_exec::say;
use boma_report::{CheckRecord, CheckSource, RunReport, RunResult, Timestamp};
use boma_vm::lifecycle::{self, BaseImage};
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
    /// The run's id, when the caller chose it (a parallel run's parent, which must find what a
    /// child killed by a signal left); a fresh one otherwise.
    pub run_id: Option<vm::RunId>,
    /// A failed run keeps its VM powered off rather than running (its disk, record and bundle
    /// stay; `cargo xtask start <vm>` boots it again). The caller sets it for each run of an
    /// invocation of several profiles (`it a b c`, any `-j`), where kept guests would take the
    /// CPU the next runs need; a single-profile run keeps its VM running.
    pub power_off_failed: bool,
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
    let (started, mut report) = open_report(host, options.tier);
    // What the profile expects to fail (a RED profile), once preflight has read it.
    let mut expect = Vec::new();
    let error = run(ctx, host, options, &mut report, &mut expect).err();
    close_report(started, report, &expect, error)
}

/// A run's report as it starts (a host's or a fleet's), and when it started.
pub(crate) fn open_report(host: &str, tier: boma_inventory::CertTier) -> (Instant, RunReport) {
    progress::reset_records();
    let started = Instant::now();
    let report = RunReport {
        host: host.to_owned(),
        vm: None,
        backend: None,
        accel: None,
        cert_tier: tier.to_string(),
        image: None,
        result: RunResult::Error,
        rebooted: false,
        error: None,
        diagnostics: None,
        started_at: Timestamp::from_system_time(SystemTime::now()),
        total_seconds: 0.0,
        layers: Vec::new(),
        phases: Vec::new(),
        checks: Vec::new(),
        expected_failures: Vec::new(),
    };
    (started, report)
}

/// The end of every run: its result from the error that ended it, a RED's `expect` judged, the
/// phases and the time, everything masked, and a copy in the diagnostics bundle.
pub(crate) fn close_report(
    started: Instant,
    mut report: RunReport,
    expect: &[String],
    error: Option<HarnessError>,
) -> RunOutcome {
    let _ = progress::log_into(None);
    let _ = progress::fold_into(None);
    report.result = result_of(error.as_ref());
    report.error = error.as_ref().map(|e| crate::error_chain(e));
    let error = judge_expectations(expect, error, &mut report);
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

/// How a run ended, by the error that ended it (before a RED profile's `expect` is judged).
fn result_of(error: Option<&HarnessError>) -> RunResult {
    match error {
        None => RunResult::Passed,
        Some(e) => match e.class() {
            ExitClass::Interrupted(_) => RunResult::Interrupted,
            ExitClass::Refused => RunResult::Refused,
            ExitClass::Failed
                if matches!(
                    e,
                    HarnessError::ChecksFailed { .. } | HarnessError::ExpectationsUnmet { .. }
                ) =>
            {
                RunResult::Failed
            }
            // A guest that never came back, a failed playbook: a verdict on the host.
            ExitClass::Failed if is_verdict(e) => RunResult::Failed,
            ExitClass::Failed => RunResult::Error,
        },
    }
}

/// A RED profile judged by its `expect`, whenever the run reached a verdict (passed or
/// failed): exactly the expected failures make an expected failure (no error: exit 0); any
/// other verdict is a failure naming what differs — an expected failure not seen (a run that
/// passed included), a failure not expected, or an end no check records. Refusals, errors
/// and interrupts say nothing about the host and stay as they are. Returns the run's error.
fn judge_expectations(
    expect: &[String],
    error: Option<HarnessError>,
    report: &mut RunReport,
) -> Option<HarnessError> {
    if expect.is_empty() || !matches!(report.result, RunResult::Passed | RunResult::Failed) {
        return error;
    }
    let seen = checks::against_expectations(expect, &report.checks);
    report.expected_failures = seen.expected.clone();
    // The error that ended the run, when no check records it (a failed apply): it cannot have
    // been expected.
    let ended_by = error.filter(|e| !recorded_as_check(e, &report.checks));
    if seen.met() && ended_by.is_none() {
        say!(
            "expected failure: exactly what the profile's `expect` names failed ({}), nothing else",
            seen.expected.join(", ")
        );
        report.result = RunResult::ExpectedFailure;
        return None;
    }
    let unmet = HarnessError::ExpectationsUnmet {
        missing: seen.missing,
        unexpected: seen.unexpected,
        ended_by: ended_by.map(Box::new),
    };
    report.result = RunResult::Failed;
    report.error = Some(crate::error_chain(&unmet));
    Some(unmet)
}

/// Whether the error that ended a run is its checks' verdict: the checks that failed (or, for
/// a RED profile, none did), or a reboot that did not come back (recorded as
/// `reboot_timeout`, `guest_gone` …).
fn recorded_as_check(error: &HarnessError, checks: &[CheckRecord]) -> bool {
    match error {
        HarnessError::ChecksFailed { .. }
        | HarnessError::ExpectationsUnmet { ended_by: None, .. } => true,
        HarnessError::Vm(e) => {
            // A fleet names it by its round and member (`after rolling a: a: reboot_timeout`).
            let name = reboot_check(e).name;
            let named = |check: &str| check == name || check.ends_with(&format!(": {name}"));
            checks.iter().any(|c| !c.ok && named(&c.name))
        }
        _ => false,
    }
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
    expect: &mut Vec<String>,
) -> Result<(), HarnessError> {
    let inputs = preflight::inputs(ctx, host, options.tier, Needs::All)?;
    expect.clone_from(&inputs.profile.expect);
    let run_id = options.run_id.unwrap_or_else(vm::RunId::random).to_string();
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
    // A reused layer carries steps applied to it: a panic in its first boot is not reset.
    let (base, base_kind) = match &layers {
        Some(l) if l.reused_steps() > 0 => (l.base().to_owned(), BaseImage::Layer),
        Some(l) => (l.base().to_owned(), BaseImage::Golden),
        None => (
            vm::pin_for_run(ctx, &new, &prepared.golden)?,
            BaseImage::Golden,
        ),
    };
    // From here the run has a directory: its command log goes there too.
    if std::fs::create_dir_all(&run_dir).is_ok() {
        let _ = progress::log_into(Some(RunFiles { dir: run_dir }.harness_log().as_std_path()));
    }
    let booted = vm::boot(
        ctx,
        &inputs,
        &new,
        prepared.accel,
        (&base, base_kind),
        false,
    );
    let mut record = match booted {
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
    if let Some(pid) = vm::vm_pid(&record) {
        let _ = prepared.reservation.vm_started(pid);
    }
    let outcome = after_boot(ctx, &inputs, &mut record, options, &mut layers, report);
    if let Some(l) = &layers {
        report.layers = l.uses.clone();
    }
    let outcome = outcome.and_then(|()| planted_bug_shown(&inputs.profile.expect));
    let ended = match &outcome {
        Ok(()) => Ended::Passed,
        Err(e) if e.interrupted().is_some() => Ended::Interrupted,
        Err(_) => Ended::Failed,
    };
    if let Err(error) = &outcome {
        // The bundle, and for an interrupt the VM removed (unless --keep).
        report.diagnostics =
            vm::after_failure(ctx, &record, error, options.keep).map(|p| p.to_string());
    }
    let fate = fate(ended, options);
    // Whether the VM still runs when this command ends: its memory stays reserved for it
    // (until `down` or `prune`); otherwise the guard releases it when dropped.
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
            let removed = with_effects(ctx, record.backend, record.accel, |fx| {
                lifecycle::down(fx, &record)
            });
            runs_on = removed.is_err();
            removed.map_err(HarnessError::from)
        }
        (Fate::Remove, Ended::Failed) => {
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
            outcome
        }
        (Fate::KeepPoweredOff, _) => {
            let off = with_effects(ctx, record.backend, record.accel, |fx| {
                lifecycle::keep_powered_off(fx, &record)
            });
            match off {
                Ok(()) => say!(
                    "{}",
                    powered_off_line(&record, report.diagnostics.as_deref())
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
    if runs_on && let Some(pid) = vm::vm_pid(&record) {
        let _ = prepared.reservation.keep_for_vm(pid);
    }
    outcome
}

/// A RED (`expect`) whose checks all passed did not show its planted bug: a failure like any
/// other, kept with its bundle for a look at why (`it` names what was not seen).
pub(crate) fn planted_bug_shown(expect: &[String]) -> Result<(), HarnessError> {
    match expect {
        [] => Ok(()),
        expect => Err(HarnessError::ExpectationsUnmet {
            missing: expect.to_vec(),
            unexpected: Vec::new(),
            ended_by: None,
        }),
    }
}

/// The checks' verdict: every check on stderr (a RED's expected failures marked as such), and
/// the failed ones as the error that ends the run.
pub(crate) fn checks_verdict(
    checks: &[CheckRecord],
    expect: &[String],
) -> Result<(), HarnessError> {
    say!("checks:");
    let expected = checks::against_expectations(expect, checks).expected;
    progress::line(checks::summary_expecting(checks, &expected).trim_end());
    let failed = checks::failed(checks);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(HarnessError::ChecksFailed { failed })
    }
}

/// How a run's cycle ended, for what becomes of its VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Passed,
    Failed,
    Interrupted,
}

/// What becomes of a run's VM once the cycle is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Remove,
    KeepRunning,
    /// Powered off with its disk, record and bundle: `cargo xtask start <vm>` boots it again.
    KeepPoweredOff,
}

/// The keep policy, pure: `--keep` keeps the VM running whatever happens; a pass or an
/// interrupt removes it; a failure keeps it for inspection — removed with `--remove-failed`
/// (nobody will log in), powered off in a run of several profiles (a running guest would take
/// the CPU the next runs need), running otherwise.
pub(crate) fn fate(ended: Ended, options: ItOptions) -> Fate {
    match ended {
        _ if options.keep => Fate::KeepRunning,
        Ended::Passed | Ended::Interrupted => Fate::Remove,
        Ended::Failed if options.remove_failed => Fate::Remove,
        Ended::Failed if options.power_off_failed => Fate::KeepPoweredOff,
        Ended::Failed => Fate::KeepRunning,
    }
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
                let verdict = steps::idempotence(ctx, &set, &files)?;
                let check = checks::from_idempotence(&verdict, ctx.repo());
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
    checks_verdict(&report.checks, &inputs.profile.expect)
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
    // Only what the power cycle lost: the diff's `probe_failed` is a probe that answered after
    // the apply and not after the boot. A port only a later step serves fails both times, and
    // the absolute probe checks belong to the run's final reboot.
    let mut found = diff::compare(
        &before,
        &after,
        &inputs.profile.reboot_diff_ignore,
        &step_files,
    )?;
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
pub(crate) fn reboot_check(error: &boma_vm::VmError) -> CheckRecord {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ItOptions {
        ItOptions {
            tier: boma_inventory::CertTier::Internal,
            keep: false,
            no_reboot: false,
            idempotence: true,
            remove_failed: false,
            power_off_failed: false,
            run_id: None,
        }
    }

    #[test]
    fn a_failed_vm_is_powered_off_only_in_a_run_of_several() {
        let several = ItOptions {
            power_off_failed: true,
            ..options()
        };
        assert_eq!(fate(Ended::Failed, options()), Fate::KeepRunning);
        assert_eq!(fate(Ended::Failed, several), Fate::KeepPoweredOff);
        // Nothing else changes with it.
        for (ended, expected) in [
            (Ended::Passed, Fate::Remove),
            (Ended::Interrupted, Fate::Remove),
        ] {
            assert_eq!(fate(ended, options()), expected);
            assert_eq!(fate(ended, several), expected);
        }
        // --remove-failed removes, --keep keeps running, whatever the run is part of.
        let remove = ItOptions {
            remove_failed: true,
            ..several
        };
        assert_eq!(fate(Ended::Failed, remove), Fate::Remove);
        let keep = ItOptions {
            keep: true,
            ..several
        };
        for ended in [Ended::Passed, Ended::Failed, Ended::Interrupted] {
            assert_eq!(fate(ended, keep), Fate::KeepRunning);
        }
    }
}
