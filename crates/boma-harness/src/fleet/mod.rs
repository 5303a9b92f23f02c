//! `it` for a fleet (ADR-027): several profiles on one private segment, with the same phases,
//! exit codes and report as a host's run.
//!
//! preflight (every refusal, and the members' variables searched for real addresses) → every
//! member reserved at once → the segment up and every member booted side by side → one
//! `ansible-playbook` per step over the members that list it → the idempotence pass the same
//! way → every member captured and probed from the controller and from every other member →
//! the reboot rounds (rolling: each member in turn while the others run; together: a power loss
//! over all of them, booted at once or in the fleet's boot order), after each every member
//! captured, diffed against the phase before and probed again → `system_running`,
//! `no_route_to_fleet` and the verify playbooks → down, or on failure every member kept with
//! one bundle (powered off in a run of several); an interrupt tears everything down.
//!
//! Every check is named by when it was seen and whose it is (`boma_fleet::findings`), so the
//! report, JSON and JUnit say per member and per round what was lost. Fleets run without disk
//! layers in this version (ADR-027: a member's disk can depend on its peers).
//!
//! The rooms: [`preflight`], [`members`] (the VMs: reserve, boot, files, down, keep, bundle),
//! [`playbooks`] (the `ansible-playbook` runs), [`rounds`] (captures, peer probes, reboots).

mod members;
mod playbooks;
mod preflight;
mod rounds;

use boma_exec::progress;
use boma_exec::say;
use boma_fleet::{Phase, findings};
use boma_report::{CheckRecord, RunReport};
use boma_vm::lifecycle;
use boma_vm::{Accel, BackendKind};
use camino::Utf8PathBuf;

use crate::boot;
use crate::cycle::{self, ItOptions, RunOutcome};
use crate::fate::{self, Ended, Fate, KeepPolicy};
use crate::files;
use crate::outcome;
use crate::{Ctx, HarnessError, checks};
use members::Running;
use playbooks::FleetPlaybooks;
use preflight::FleetInputs;

/// Run the fleet named `name` (`fleets/<name>.json`) through the cycle.
pub fn it(ctx: &Ctx, name: &str, options: ItOptions) -> RunOutcome {
    let (started, mut report) = cycle::open_report(name, options.tier);
    // What the fleet expects to fail (a RED fleet), once preflight has read it.
    let mut expect = Vec::new();
    let error = run(ctx, name, options, &mut report, &mut expect).err();
    cycle::close_report(started, report, &expect, error)
}

fn run(
    ctx: &Ctx,
    name: &str,
    options: ItOptions,
    report: &mut RunReport,
    expect: &mut Vec<String>,
) -> Result<(), HarnessError> {
    // The machine mints it, as for a host: a fake machine gives tests a fixed id.
    let run_id = options
        .run_id
        .unwrap_or_else(|| ctx.machine.host().fresh_run_id())
        .to_string();
    let inputs = preflight::inputs(ctx, name, options.tier, &run_id)?;
    expect.extend(inputs.fleet.expect().iter().cloned());
    let what = format!("cargo xtask it {name}");
    // Shared: several runs may go at once; `prune` waits for none of them.
    let _lock = ctx.runs().lock_shared(&what)?;
    let run_dir = ctx.run_dir(&inputs.dir_name);
    let dir = run_dir.path().to_owned();
    // The members' inventory is written (into the fleet's directory) and searched before
    // anything else exists: a refusal leaves nothing.
    if let Err(e) = preflight::no_real_addresses(ctx, &inputs, &run_dir.inventory()) {
        files::remove_unbooted(&dir);
        return Err(e);
    }
    let prepared = prepare(ctx, &inputs, &what, report);
    let (reservations, accel, base) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            files::remove_unbooted(&dir);
            return Err(e);
        }
    };
    // From here the run has a directory: its command log goes there too.
    let _ = progress::log_into(Some(run_dir.harness_log().as_std_path()));
    let booted = members::boot(ctx, &inputs, accel, &base);
    let mut running = match booted {
        Ok(records) => Running {
            dir: dir.clone(),
            records,
        },
        Err((error, records)) => {
            let running = Running {
                dir: dir.clone(),
                records,
            };
            if running.records.is_empty() {
                // Nothing booted: not even the segment stays.
                let _ = members::teardown(ctx, &inputs, &running);
                return Err(error);
            }
            return end(
                ctx,
                &inputs,
                &running,
                options,
                reservations,
                report,
                Err(error),
            );
        }
    };
    let mut reservations = reservations;
    for (reservation, record) in reservations.iter_mut().zip(&running.records) {
        if let Some(pid) = boot::vm_pid(ctx, record) {
            let _ = reservation.vm_started(pid);
        }
    }
    let outcome = after_boot(ctx, &inputs, &mut running, options, report)
        .and_then(|()| outcome::planted_bug_shown(inputs.fleet.expect()));
    end(
        ctx,
        &inputs,
        &running,
        options,
        reservations,
        report,
        outcome,
    )
}

/// Everything before the members boot: their memory reserved at once, a stale current run
/// cleared, the golden image and the acceleration, the golden image pinned in the fleet's
/// directory (every member's overlay stands on it).
fn prepare(
    ctx: &Ctx,
    inputs: &FleetInputs,
    what: &str,
    report: &mut RunReport,
) -> Result<(Vec<boma_host::reserve::Reserved>, Accel, Utf8PathBuf), HarnessError> {
    let reservations = members::reserve(ctx, inputs, what)?;
    boot::clear_stale_current(ctx, inputs.backend.kind, false)?;
    say!("backend: {} ({})", inputs.backend.kind, inputs.backend.why);
    let (golden, accel) = boot::golden_and_accel(ctx)?;
    let dir = ctx.settings.runs_root.join(inputs.dir_name.as_str());
    say!(
        "layers: none for a fleet in this version (ADR-027: a member's disk can depend on its peers); every step is applied from the golden image"
    );
    let pinned = ctx
        .machine
        .provisioner()
        .pin(&golden, &dir, &ctx.settings.cache_dir)?;
    report.vm = Some(inputs.dir_name.to_string());
    report.backend = Some(inputs.backend.kind.to_string());
    report.accel = Some(format!("{accel:?}").to_lowercase());
    report.image = Some(boma_report::ImageUse {
        path: golden.path.to_string(),
        sha512: golden.sha512.clone(),
        origin: golden.origin.clone(),
    });
    Ok((reservations, accel, pinned.path))
}

/// What becomes of the members once the cycle is over, as a single run's keep policy says for
/// its VM ([`cycle::fate`]), for all of them at once; a failure's bundle first.
fn end(
    ctx: &Ctx,
    inputs: &FleetInputs,
    running: &Running,
    options: ItOptions,
    reservations: Vec<boma_host::reserve::Reserved>,
    report: &mut RunReport,
    outcome: Result<(), HarnessError>,
) -> Result<(), HarnessError> {
    let ended = Ended::of(&outcome);
    if let Err(error) = &outcome {
        // The bundle, and for an interrupt every member removed (unless --keep).
        report.diagnostics = members::after_failure(ctx, inputs, running, error, options.keep)
            .map(|p| p.to_string());
    }
    let fate = fate::fate(
        ended,
        KeepPolicy {
            keep: options.keep,
            remove_failed: options.remove_failed,
            power_off_failed: options.power_off_failed,
        },
    );
    // Whether the members still run when this command ends: their memory stays reserved for
    // them (until `prune`); otherwise the guards release it when dropped.
    let mut runs_on = fate == Fate::KeepRunning;
    let outcome = match (fate, ended) {
        (Fate::KeepRunning, Ended::Passed) => {
            say!(
                "passed; keeping the fleet {} as asked (--keep); `cargo xtask prune` removes it",
                inputs.name()
            );
            for (member, record) in inputs.members.iter().zip(&running.records) {
                say!("  {}: {}", member.name, record.ssh.shell_hint());
            }
            outcome
        }
        (Fate::Remove, Ended::Passed) => {
            let removed = members::teardown(ctx, inputs, running);
            runs_on = removed.is_err();
            removed
        }
        (Fate::Remove, Ended::Failed) => {
            say!(
                "--remove-failed: removing the fleet {} (the bundle keeps the evidence)",
                inputs.name()
            );
            if let Err(e) = members::teardown(ctx, inputs, running) {
                say!(
                    "could not remove the fleet {}: {e}; run `cargo xtask prune`",
                    inputs.name()
                );
            }
            outcome
        }
        (Fate::KeepPoweredOff, _) => {
            if members::keep_powered_off(ctx, inputs, running) {
                let bundle = report
                    .diagnostics
                    .as_deref()
                    .map(|b| format!(", its bundle in {b}"))
                    .unwrap_or_default();
                let names: Vec<String> =
                    running.records.iter().map(|r| r.name.to_string()).collect();
                say!(
                    "the fleet {} is kept powered off (one run of several: running guests would take the CPU the others need){bundle}: `cargo xtask start <vm>` boots a member again ({})",
                    inputs.name(),
                    names.join(", ")
                );
            } else {
                runs_on = true;
            }
            outcome
        }
        // Kept running by the failure policy (after_failure said how to reach them), or
        // removed by it after an interrupt.
        (Fate::KeepRunning | Fate::Remove, _) => outcome,
    };
    for (reservation, record) in reservations.into_iter().zip(&running.records) {
        if runs_on && let Some(pid) = boot::vm_pid(ctx, record) {
            let _ = reservation.keep_for_vm(pid);
        }
    }
    outcome
}

/// Everything after the members are up. The checks gathered so far stay in the report whatever
/// fails later.
fn after_boot(
    ctx: &Ctx,
    inputs: &FleetInputs,
    running: &mut Running,
    options: ItOptions,
    report: &mut RunReport,
) -> Result<(), HarnessError> {
    members::write_files(ctx, inputs, running)?;
    let files = running.run_dir();
    let _ = progress::fold_into(Some(files.ansible_log().as_std_path()));
    let accel = running.records.first().map_or(Accel::Tcg, |r| r.accel);
    {
        let playbooks = FleetPlaybooks::new(ctx, inputs, files.clone(), accel);
        for step in &inputs.steps {
            playbooks.apply(step, None)?;
        }
        if options.idempotence {
            for (member, verdict) in playbooks.idempotence()? {
                let check = checks::from_idempotence(&verdict, ctx.repo());
                report.checks.push(findings::member_check(
                    &Phase::Applied,
                    member.as_str(),
                    check,
                ));
            }
        } else {
            progress::skipped("idempotence");
        }
    }
    let mut seen = rounds::look(ctx, inputs, running, &Phase::Applied, 0)?;
    report.checks.extend(rounds::after_apply(inputs, &seen));
    let mut last = Phase::Applied;
    if options.no_reboot {
        say!("--no-reboot: checking without a reboot (blind to reboot-survival bugs)");
        // Skipped as a host's reboot is: a pass without it reads as incomplete in JUnit.
        progress::skipped(boma_report::REBOOT_PHASE);
    } else {
        let rounds = boma_fleet::rounds(&inputs.fleet);
        let names: Vec<String> = rounds.iter().map(ToString::to_string).collect();
        say!("rounds: {}", names.join("; "));
        for (index, round) in rounds.iter().enumerate() {
            seen = rounds::run_round(
                ctx,
                inputs,
                running,
                (round, index + 1),
                &seen,
                &mut report.checks,
            )?;
            report.rebooted = true;
            last = Phase::After(round.clone());
        }
    }
    report
        .checks
        .extend(final_checks(ctx, inputs, running, &seen, &last, accel)?);
    cycle::checks_verdict(&report.checks, inputs.fleet.expect())
}

/// The checks after the last phase, named by it: each member's `system_running` (from its last
/// capture) and `no_route_to_fleet`, each member's own verify playbooks (limited to it), then
/// the fleet's verify playbooks over every member, each member's results its own checks.
fn final_checks(
    ctx: &Ctx,
    inputs: &FleetInputs,
    running: &Running,
    seen: &rounds::Seen,
    last: &Phase,
    accel: Accel,
) -> Result<Vec<CheckRecord>, HarnessError> {
    let mut found = Vec::new();
    for ((member, record), captured) in inputs
        .members
        .iter()
        .zip(&running.records)
        .zip(&seen.captures)
    {
        let name = member.name.as_str();
        let mut builtin = Vec::new();
        crate::guest_state::builtin_checks(ctx, &member.inputs, record, captured, &mut builtin)?;
        found.extend(
            builtin
                .into_iter()
                .map(|c| findings::member_check(last, name, c)),
        );
    }
    let files = running.run_dir();
    let playbooks = FleetPlaybooks::new(ctx, inputs, files.clone(), accel);
    for (member, record) in inputs.members.iter().zip(&running.records) {
        for (index, playbook) in member.inputs.profile.verify.iter().enumerate() {
            let own = record.run_dir();
            let runs = playbooks.verify(
                playbook,
                format!("verify {playbook} ({})", member.name),
                &[(&member.name, record)],
                &own.harness_vars(index),
                &playbooks::results_on_guest(index),
                &|_| own.verify_results(index),
            )?;
            for run in &runs {
                found.extend(
                    checks::from_verify(run)
                        .into_iter()
                        .map(|c| findings::member_check(last, member.name.as_str(), c)),
                );
            }
        }
    }
    let everyone: Vec<_> = inputs
        .members
        .iter()
        .zip(&running.records)
        .map(|(m, r)| (&m.name, r))
        .collect();
    for (index, playbook) in inputs.fleet.verify().iter().enumerate() {
        let runs = playbooks.verify(
            playbook,
            format!("verify {playbook}"),
            &everyone,
            &files.harness_vars(index),
            &playbooks::results_on_guest(index),
            &|member| {
                files
                    .path()
                    .join(format!("verify-results-{index}-{member}.json"))
            },
        )?;
        for ((member, _), run) in everyone.iter().zip(&runs) {
            found.extend(
                checks::from_verify(run)
                    .into_iter()
                    .map(|c| findings::member_check(last, member.as_str(), c)),
            );
        }
    }
    Ok(found)
}

/// Remove what a fleet run that died without cleaning up left — a parallel run's child killed
/// by a signal: the processes it started (the spawn journal, by `started_by`), every member's VM
/// and directory and reservation (found by the run id its parent chose), the segment, the
/// fleet's directory. One line per thing removed.
pub fn remove_orphan(
    ctx: &Ctx,
    name: &str,
    run_id: &str,
    started_by: u32,
) -> Result<Vec<String>, HarnessError> {
    let none = std::collections::BTreeSet::new();
    let dir_name = boma_name::VmName::mint(name, run_id, &none)?;
    let profiles = boma_inventory::list_profiles(ctx.repo())?;
    let fleet = boma_fleet::load_fleet(ctx.repo(), name, &profiles)
        .map_err(|e| HarnessError::Refused(e.to_string()))?;
    let runs = ctx.runs();
    let mut removed = Vec::new();
    let mut kind = None;
    // Each member's VM, directory and reservation; the first removal also stops what the child
    // started (the spawn journal: the switch among them).
    for member in fleet.members() {
        let vm_name = boma_name::VmName::mint(member, run_id, &none)?;
        if let Some(record) = runs.record(&vm_name)? {
            kind = kind.or(Some(record.backend));
        }
        removed.extend(crate::steps::remove_orphan(ctx, &vm_name, started_by)?);
    }
    let dir = runs.vm_dir(&dir_name);
    let kind = match kind {
        Some(kind) => kind,
        None => crate::backend::resolve(ctx.settings.backend, &ctx.machine.host().libvirt())
            .map_or(BackendKind::Qemu, |r| r.kind),
    };
    if let Ok(segment) = boma_vm::Segment::for_run(kind, &dir) {
        let down = ctx.with_effects(kind, Accel::Tcg, |fx| lifecycle::segment_down(fx, &segment));
        match down {
            Ok(()) => removed.push(format!("its {segment} (if it was up)")),
            Err(e) => say!("could not take down the {segment}: {e}"),
        }
    }
    if dir.exists() {
        files::empty_dir(&dir)?;
        removed.push(format!("its fleet directory {dir}"));
    }
    Ok(removed)
}
