//! The full cycle an operator runs before touching a live host, for one profile, read top
//! down: preflight → reserve and image → layers → up → apply → idempotence → capture → reboot
//! → capture → checks → verify → down, with one report whatever happens. Each phase is a call
//! into the room that does it; this file only orders them and fills the report. Failures
//! after boot keep the VM with a diagnostics bundle; an interrupt removes it (unless `--keep`).

use std::time::{Instant, SystemTime};

use boma_exec::progress;
use boma_exec::say;
use boma_report::{RunReport, RunResult, Timestamp};
use boma_vm::lifecycle::{self, BaseImage};
use boma_vm::{RebootHow, RunDir, RunRecord};
use camino::Utf8Path;

use crate::boot::{self, Prepared};
use crate::checks;
use crate::ctx::Ctx;
use crate::error::{ExitClass, HarnessError, error_chain};
use crate::fate::{self, KeepPolicy};
use crate::files;
use crate::guest_state::{self, Captured};
use crate::layers::{self, RunLayers};
use crate::outcome;
use crate::playbooks::{self, PlaybookSet};
use crate::preflight::{self, Inputs, Needs, NewVm};
use crate::report;
use crate::run_id::RunId;

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
    pub run_id: Option<RunId>,
    /// A failed run keeps its VM powered off rather than running (its disk, record and bundle
    /// stay; `cargo xtask start <vm>` boots it again). The caller sets it for each run of an
    /// invocation of several profiles (`it a b c`, any `-j`), where kept guests would take the
    /// CPU the next runs need; a single-profile run keeps its VM running.
    pub power_off_failed: bool,
}

impl ItOptions {
    fn keep_policy(&self) -> KeepPolicy {
        KeepPolicy {
            keep: self.keep,
            remove_failed: self.remove_failed,
            power_off_failed: self.power_off_failed,
        }
    }
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

/// Run the cycle for `host`: its phases (`run`), then its report — the result the error
/// means, a RED profile judged by its `expect`, the phases' times, every secret masked.
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
    (Instant::now(), new_report(host, tier))
}

/// The end of every run (a host's or a fleet's): the result the error means, a RED judged by
/// its `expect`, the phases' times, every secret masked, and a copy in the bundle.
pub(crate) fn close_report(
    started: Instant,
    mut report: RunReport,
    expect: &[String],
    error: Option<HarnessError>,
) -> RunOutcome {
    let _ = progress::log_into(None);
    let _ = progress::fold_into(None);
    report.result = outcome::result_of(error.as_ref());
    report.error = error.as_ref().map(|e| error_chain(e));
    let error = outcome::judge_expectations(expect, error, &mut report);
    report.phases = progress::records().iter().map(report::phase).collect();
    report.total_seconds = started.elapsed().as_secs_f64();
    // Every string of the report (errors, check details from the guest, phase names) masked.
    let report = report::redacted(report);
    if let Some(dir) = &report.diagnostics {
        // The bundle carries the report too.
        let single = report::single(&report);
        files::add_report_to_bundle(Utf8Path::new(dir), &boma_report::render_json(&single));
    }
    RunOutcome { report, error }
}

/// The report of a run that has not started yet: an error until it ends otherwise.
fn new_report(host: &str, tier: boma_inventory::CertTier) -> RunReport {
    RunReport {
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
    }
}

/// The cycle's phases, in order, up to the VM's fate.
fn run(
    ctx: &Ctx,
    host: &str,
    options: ItOptions,
    report: &mut RunReport,
    expect: &mut Vec<String>,
) -> Result<(), HarnessError> {
    // Preflight: every refusal, before anything is fetched, built, probed or created.
    let inputs = preflight::inputs(ctx, host, options.tier, Needs::All)?;
    expect.clone_from(&inputs.profile.expect);
    let run_id = options
        .run_id
        .unwrap_or_else(|| ctx.machine.host().fresh_run_id())
        .to_string();
    let new = preflight::new_vm(ctx, &inputs, &run_id)?;
    let what = format!("cargo xtask it {host}");
    // Shared: several runs (each its own VM) may go at once; `prune` waits for none of them.
    let _lock = ctx.runs().lock_shared(&what)?;
    // The VM's memory reserved machine-wide, the golden image, the KVM verdict.
    let prepared = boot::prepare(ctx, &inputs, &new, &what, false)?;
    report_prepared(report, &new, &prepared);
    // Layers: the deepest cached disk whose inputs match, unless asked not to, the tier puts a
    // secret on the disk, or the store cannot be used.
    let run_dir = ctx.run_dir(&new.name);
    let (mut layers, uses) =
        layers::start(ctx, &inputs, &prepared.golden, &new.name, run_dir.path())?;
    report.layers = uses;
    // A reused layer carries steps applied to it: a panic in its first boot is not reset.
    let (base, base_kind) = match &layers {
        Some(l) if l.reused_steps() > 0 => (l.base().to_owned(), BaseImage::Layer),
        Some(l) => (l.base().to_owned(), BaseImage::Golden),
        None => (
            boot::pin_for_run(ctx, &new, &prepared.golden)?,
            BaseImage::Golden,
        ),
    };
    // From here the run has a directory: its command log goes there too.
    if files::create_dir(run_dir.path()).is_ok() {
        let _ = progress::log_into(Some(run_dir.harness_log().as_std_path()));
    }
    // Up.
    let booted = boot::boot(
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
                fate::after_failure(ctx, &record, &error, options.keep).map(|p| p.to_string());
            return Err(error);
        }
        Err((error, None)) => return Err(error),
    };
    report.vm = Some(record.name.to_string());
    let mut reservation = prepared.reservation;
    if let Some(pid) = boot::vm_pid(ctx, &record) {
        let _ = reservation.vm_started(pid);
    }
    // Apply, idempotence, the reboot test, the checks.
    let outcome = after_boot(ctx, &inputs, &mut record, options, &mut layers, report);
    if let Some(l) = &layers {
        report.layers = l.uses.clone();
    }
    let outcome = outcome.and_then(|()| outcome::planted_bug_shown(&inputs.profile.expect));
    // Down, or kept with its bundle.
    let (outcome, bundle) = fate::settle(ctx, &record, outcome, options.keep_policy(), reservation);
    report.diagnostics = bundle.map(|p| p.to_string());
    outcome
}

/// What the report says of the VM before it boots: its backend, acceleration and image.
fn report_prepared(report: &mut RunReport, new: &NewVm, prepared: &Prepared) {
    report.backend = Some(new.backend.kind.to_string());
    report.accel = Some(format!("{:?}", prepared.accel).to_lowercase());
    report.image = Some(boma_report::ImageUse {
        path: prepared.golden.path.to_string(),
        sha512: prepared.golden.sha512.clone(),
        origin: prepared.golden.origin.clone(),
    });
}

/// Everything after the VM is up, phase by phase. The checks gathered so far stay in the
/// report whatever fails later.
fn after_boot(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &mut RunRecord,
    options: ItOptions,
    layers: &mut Option<RunLayers>,
    report: &mut RunReport,
) -> Result<(), HarnessError> {
    let files = record.run_dir();
    playbooks::write_run_files(ctx.repo(), inputs, record, &files)?;
    let _ = progress::fold_into(Some(files.ansible_log().as_std_path()));
    apply(ctx, inputs, record, &files, layers, report)?;
    if options.idempotence {
        idempotence(ctx, inputs, record, &files, layers.as_ref(), report)?;
    } else {
        progress::skipped("idempotence");
    }
    let after = reboot_test(ctx, inputs, record, &files, options, layers, report)?;
    guest_state::builtin_checks(ctx, inputs, record, &after, &mut report.checks)?;
    let set = PlaybookSet::new(ctx, inputs, record, &files);
    playbooks::verify_all(ctx, &set, &mut report.checks)?;
    checks_verdict(&report.checks, &inputs.profile.expect)
}

/// The checks' verdict: every check on stderr (a RED's expected failures marked as such), and
/// the failed ones as the error that ends the run.
pub(crate) fn checks_verdict(
    found: &[boma_report::CheckRecord],
    expect: &[String],
) -> Result<(), HarnessError> {
    say!("checks:");
    let expected = checks::against_expectations(expect, found).expected;
    progress::line(checks::summary_expecting(found, &expected).trim_end());
    let failed = checks::failed(found);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(HarnessError::ChecksFailed { failed })
    }
}

/// Apply each step of the profile, but those its reused layers already hold. The last step is
/// always applied in this run, even when its layer is reused (a converged apply on its own
/// disk): the reboot diff's "before" must be the state an apply leaves, with everything it
/// started and made at run time, not the state a boot leaves — that difference is what the
/// reboot-class bugs are. After each step but the last, while layers are stored, its layer is
/// taken by a power cycle that is a reboot test of the step ([`step_reboot_test`]).
fn apply(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &mut RunRecord,
    files: &RunDir,
    layers: &mut Option<RunLayers>,
    report: &mut RunReport,
) -> Result<(), HarnessError> {
    let steps_total = inputs.profile.applies.len();
    let reused = layers.as_ref().map_or(0, RunLayers::reused_steps);
    let first_applied = reused.min(steps_total.saturating_sub(1));
    // Each reused layer's power cycle was a reboot test of its step: its verdict is this run's
    // too (only layers whose power cycle lost nothing are reused).
    if let Some(run_layers) = layers.as_ref() {
        report.checks.extend(run_layers.reused_verdicts());
    }
    for (index, step) in inputs.profile.applies.iter().enumerate() {
        if index < first_applied {
            progress::skipped(format!("apply {}", step.label()));
            continue;
        }
        {
            let set = PlaybookSet::new(ctx, inputs, record, files);
            playbooks::apply_step(ctx, &set, step, None)?;
        }
        if let Some(run_layers) = layers.as_mut()
            && index + 1 < steps_total
            && run_layers.storing()
        {
            step_reboot_test(ctx, inputs, record, files, run_layers, index, report)?;
        }
    }
    Ok(())
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
    files: &RunDir,
    run_layers: &mut RunLayers,
    index: usize,
    report: &mut RunReport,
) -> Result<(), HarnessError> {
    let step = index + 1;
    let label = inputs.profile.applies[index].label();
    let step_files = files.step(step);
    files::create_dir(step_files.path())?;
    let before = guest_state::capture(
        ctx,
        inputs,
        record,
        &step_files.state_before(),
        &format!("after step {step}'s apply"),
    )?;
    if let Err(e) = power_cycle_taking(ctx, record, run_layers, index, "power cycle (layer)") {
        let mut check = checks::reboot_check(&e);
        check.name = layers::power_cycle_check_name(&check.name, index, &label);
        report.checks.push(check);
        return Err(e.into());
    }
    files::forget_facts(files);
    playbooks::write_run_files(ctx.repo(), inputs, record, files)?;
    let after = guest_state::capture(
        ctx,
        inputs,
        record,
        &step_files.state_after(),
        &format!("after step {step}'s power cycle"),
    )?;
    // Only what the power cycle lost: the diff's `probe_failed` is a probe that answered after
    // the apply and not after the boot. A port only a later step serves fails both times, and
    // the absolute probe checks belong to the run's final reboot.
    let mut found = guest_state::compare(
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

/// The idempotence pass: every step again, and a task that changes fails the run — unless a
/// run over the same layers already proved it, whose verdict is reported instead.
fn idempotence(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &RunRecord,
    files: &RunDir,
    layers: Option<&RunLayers>,
    report: &mut RunReport,
) -> Result<(), HarnessError> {
    let steps_total = inputs.profile.applies.len();
    let cached = layers
        .filter(|l| l.reused_steps() == steps_total)
        .and_then(RunLayers::idempotence_verdict);
    match cached {
        Some(detail) => {
            say!("idempotence: {detail}");
            progress::skipped("idempotence");
            report.checks.push(checks::idempotence_cached(detail));
        }
        None => {
            let set = PlaybookSet::new(ctx, inputs, record, files);
            let verdict = playbooks::idempotence(ctx, &set)?;
            let check = checks::from_idempotence(&verdict, ctx.repo());
            if check.ok
                && let Some(run_layers) = layers
            {
                run_layers.record_idempotence();
            }
            report.checks.push(check);
        }
    }
    Ok(())
}

/// The reboot test: the guest's state captured, the VM rebooted for real (a new boot_id), its
/// state captured again, and what the reboot lost judged — the controller's probes across it
/// and the reboot diff. With layers, the reboot is the power cycle that takes the last step's
/// layer (from the cleanly shut-down guest), and what it lost is that layer's verdict. With
/// `--no-reboot` the second capture follows the first. Returns the state after.
fn reboot_test(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &mut RunRecord,
    files: &RunDir,
    options: ItOptions,
    layers: &mut Option<RunLayers>,
    report: &mut RunReport,
) -> Result<Captured, HarnessError> {
    let steps_total = inputs.profile.applies.len();
    let before = guest_state::capture(
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
        // No layer of a state that already failed a check (a task that changed on the second
        // apply: that disk is not what the step's inputs make).
        let clean_so_far = report.checks.iter().all(|c| c.ok);
        let reused = layers.as_ref().map_or(0, RunLayers::reused_steps);
        let takes_last = layers
            .as_ref()
            .is_some_and(|l| reused < steps_total && clean_so_far && l.storing());
        let rebooted = match layers.as_mut() {
            Some(run_layers) if takes_last => {
                power_cycle_taking(ctx, record, run_layers, steps_total - 1, "reboot")
            }
            _ => ctx
                .with_effects(record.backend, record.accel, |fx| {
                    lifecycle::reboot(fx, record, RebootHow::Guest)
                })
                .map(|_| ()),
        };
        took_last_layer = takes_last && rebooted.is_ok();
        files::forget_facts(files);
        match rebooted {
            Ok(_) => report.rebooted = true,
            Err(e) => {
                report.checks.push(checks::reboot_check(&e));
                return Err(e.into());
            }
        }
        // A new lease may have moved the guest (libvirt): the inventory follows.
        playbooks::write_run_files(ctx.repo(), inputs, record, files)?;
    }
    let after = guest_state::capture(
        ctx,
        inputs,
        record,
        &files.state_after(),
        "after the reboot",
    )?;
    let mut across = checks::from_probes(&before.probes, &after.probes);
    if report.rebooted {
        across.extend(guest_state::compare(
            &before,
            &after,
            &inputs.profile.reboot_diff_ignore,
            files,
        )?);
    }
    if took_last_layer && let Some(run_layers) = layers.as_mut() {
        run_layers.record_verdict(steps_total - 1, &across);
    }
    report.checks.extend(across);
    Ok(after)
}

/// Power-cycle the VM, storing step `index`'s layer while it is off.
fn power_cycle_taking(
    ctx: &Ctx,
    record: &mut RunRecord,
    layers: &mut RunLayers,
    index: usize,
    label: &str,
) -> Result<(), boma_vm::VmError> {
    ctx.with_effects(record.backend, record.accel, |fx| {
        lifecycle::power_cycle(fx, record, label, &mut |stopped| {
            layers.take(ctx.machine.disks(), stopped, index)
        })
    })?;
    layers.booted(index);
    Ok(())
}
