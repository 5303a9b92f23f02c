//! The steps an operator can run one at a time: `up`, `apply`, `reboot`, `assert`, `down`,
//! `console`, `start` of a kept VM, `prune`, and the removal of what a killed run left. Each
//! takes the run lock, acts on the current VM (or makes it), and on failure leaves the VM to
//! the one failure policy (`fate`).

use boma_exec::progress::{self, phase};
use boma_exec::say;
use boma_inventory::CertTier;
use boma_vm::lifecycle::{self, BaseImage};
use boma_vm::{Accel, BackendKind, RebootHow, RunRecord};
use camino::Utf8PathBuf;

use crate::boot;
use crate::checks;
use crate::ctx::Ctx;
use crate::error::HarnessError;
use crate::fate;
use crate::guest_state;
use crate::playbooks::{self, PlaybookSet};
use crate::preflight::{self, Needs};

/// Boot a VM mirroring `host` and wait until it is ready. Returns its record.
pub fn up(ctx: &Ctx, host: &str) -> Result<RunRecord, HarnessError> {
    let runs = ctx.runs();
    let _lock = runs.lock(&format!("cargo xtask up {host}"))?;
    let inputs = preflight::inputs(ctx, host, CertTier::Internal, Needs::Vm)?;
    let new = preflight::new_vm(ctx, &inputs, &ctx.machine.host().fresh_run_id().to_string())?;
    let prepared = boot::prepare(ctx, &inputs, &new, &format!("cargo xtask up {host}"), true)?;
    let base = boot::pin_for_run(ctx, &new, &prepared.golden)?;
    let golden = (base.as_path(), BaseImage::Golden);
    let record = match boot::boot(ctx, &inputs, &new, prepared.accel, golden, true) {
        Ok(record) => record,
        Err((error, Some(record))) => {
            if fate::after_failure(ctx, &record, &error, false).is_some()
                && let Some(pid) = record.pid
            {
                let _ = prepared.reservation.keep_for_vm(pid);
            }
            return Err(error);
        }
        Err((error, None)) => return Err(error),
    };
    // The VM outlives this command: its reservation goes with it (until `down` or `prune`).
    if let Some(pid) = boot::vm_pid(ctx, &record) {
        prepared
            .reservation
            .keep_for_vm(pid)
            .map_err(boot::reserve_error)?;
    }
    let files = record.run_dir();
    playbooks::write_run_files(ctx.repo(), &inputs, &record, &files)
        .map_err(|e| standalone_failure(ctx, &record, e))?;
    Ok(record)
}

/// Boot a kept, powered-off VM again, from its record (a failed run of several profiles keeps
/// its VM so): its disk, forwards and console as they were, its memory reserved again
/// machine-wide first. It becomes the current VM: `apply`, `assert`, `console` and `down`
/// act on it.
pub fn start(ctx: &Ctx, vm: &str) -> Result<RunRecord, HarnessError> {
    let name = boma_name::VmName::parse(vm)?;
    let runs = ctx.runs();
    let what = format!("cargo xtask start {name}");
    // Shared, as a run's: the other runs of a parallel `it` may still be going.
    let _lock = runs.lock_shared(&what)?;
    let Some(mut record) = runs.record(&name)? else {
        return Err(HarnessError::Refused(format!(
            "no kept VM {name} in {}: `ls {}` lists the kept ones (`cargo xtask prune` removes them all)",
            runs.root(),
            runs.root()
        )));
    };
    let reservation = boot::reserve_again(ctx, &record, &what)?;
    let started = ctx.with_effects(record.backend, record.accel, |fx| {
        // A kept fleet member plugs into its fleet's segment, which its run took down.
        if let Some(nic) = &record.fleet_nic {
            lifecycle::segment_up(fx, &nic.segment)?;
        }
        lifecycle::start(fx, &mut record)
    });
    // Running (even a boot that failed), it keeps its memory until `down` or `prune`.
    if let Some(pid) = boot::vm_pid(ctx, &record) {
        let _ = reservation.keep_for_vm(pid);
    }
    match started {
        Ok(()) => {
            say!(
                "{name} is up again: {}; `cargo xtask down` removes it",
                record.ssh.shell_hint()
            );
            Ok(record)
        }
        Err(e) => {
            say!(
                "{name} did not come back: its console is {}; `cargo xtask down` removes it",
                record.console_log()
            );
            Err(e.into())
        }
    }
}

/// The current run. Applying another host's profile to it is allowed (the RED→GREEN cycle
/// applies the fix to the VM booted for the RED case) and said out loud.
fn current_for(ctx: &Ctx, host: &str) -> Result<RunRecord, HarnessError> {
    let record = ctx.runs().require_current()?;
    if record.host != host {
        say!(
            "note: the current run {} was booted for {}; using the profile of {host} on it",
            record.name,
            record.host
        );
    }
    Ok(record)
}

/// A failed standalone step on a VM that `up` made: diagnostics and keep, or, when
/// interrupted, leave the VM to the operator who started it.
fn standalone_failure(ctx: &Ctx, record: &RunRecord, error: HarnessError) -> HarnessError {
    if error.interrupted().is_some() {
        say!(
            "interrupted: {error}; the VM {} stays up (`up` started it): `cargo xtask down` removes it",
            record.name
        );
        return error;
    }
    fate::after_failure(ctx, record, &error, true);
    error
}

/// Apply the profile's playbooks to the current VM.
pub fn apply(ctx: &Ctx, host: &str, tier: CertTier) -> Result<(), HarnessError> {
    let runs = ctx.runs();
    let _lock = runs.lock(&format!("cargo xtask apply {host}"))?;
    let record = current_for(ctx, host)?;
    let inputs = preflight::inputs(ctx, host, tier, Needs::Ansible)?;
    let files = record.run_dir();
    let applied = (|| {
        playbooks::write_run_files(ctx.repo(), &inputs, &record, &files)?;
        let set = PlaybookSet::new(ctx, &inputs, &record, &files);
        for step in &inputs.profile.applies {
            playbooks::apply_step(ctx, &set, step, None)?;
        }
        Ok(())
    })();
    applied.map_err(|e| standalone_failure(ctx, &record, e))
}

/// Reboot the current VM for real; succeed only with a new boot_id.
pub fn reboot(ctx: &Ctx, hard: bool) -> Result<(), HarnessError> {
    let runs = ctx.runs();
    let _lock = runs.lock("cargo xtask reboot")?;
    let mut record = runs.require_current()?;
    let how = if hard {
        RebootHow::Hard
    } else {
        RebootHow::Guest
    };
    ctx.with_effects(record.backend, record.accel, |fx| {
        lifecycle::reboot(fx, &mut record, how)
    })
    .map_err(|e| standalone_failure(ctx, &record, e.into()))?;
    Ok(())
}

/// Run the profile's checks against the current VM: the built-in ones (system running, no route
/// to the fleet, the controller's probes) and its verify playbooks.
pub fn assert(
    ctx: &Ctx,
    host: &str,
    tier: CertTier,
) -> Result<Vec<boma_report::CheckRecord>, HarnessError> {
    let runs = ctx.runs();
    let _lock = runs.lock(&format!("cargo xtask assert {host}"))?;
    let record = current_for(ctx, host)?;
    let inputs = preflight::inputs(ctx, host, tier, Needs::Ansible)?;
    let files = record.run_dir();
    let checked = (|| {
        playbooks::write_run_files(ctx.repo(), &inputs, &record, &files)?;
        let state = guest_state::capture(ctx, &inputs, &record, &files.state_after(), "now")?;
        let mut found = checks::from_probes(&[], &state.probes);
        guest_state::builtin_checks(ctx, &inputs, &record, &state, &mut found)?;
        let set = PlaybookSet::new(ctx, &inputs, &record, &files);
        playbooks::verify_all(ctx, &set, &mut found)?;
        progress::line(checks::summary(&found).trim_end());
        let failed = checks::failed(&found);
        if failed.is_empty() {
            Ok(found)
        } else {
            Err(HarnessError::ChecksFailed { failed })
        }
    })();
    checked.map_err(|e| standalone_failure(ctx, &record, e))
}

/// Remove the current VM and its files; with `keep`, only power it off and keep its files.
pub fn down(ctx: &Ctx, keep: bool) -> Result<(), HarnessError> {
    let runs = ctx.runs();
    let _lock = runs.lock("cargo xtask down")?;
    let Some(record) = runs.current()? else {
        say!(
            "no current run: nothing to take down (`cargo xtask prune` removes leftovers of crashed runs)"
        );
        return Ok(());
    };
    ctx.with_effects(record.backend, record.accel, |fx| {
        if keep {
            lifecycle::power_off(fx, &record)?;
            say!(
                "{} is powered off; its files stay in {} (overlay, console.log); `cargo xtask prune` removes them",
                record.name,
                record.dir
            );
            Ok(())
        } else {
            lifecycle::down(fx, &record)
        }
    })?;
    if !keep {
        let _ = boot::release(ctx, &record.name);
    }
    Ok(())
}

/// The current (or last) VM's serial console.
pub fn console(ctx: &Ctx) -> Result<Utf8PathBuf, HarnessError> {
    Ok(ctx.runs().require_current()?.console_log())
}

/// Remove every test VM, process and run file of this checkout's run directory, each VM by the
/// backend that runs it.
pub fn prune(ctx: &Ctx) -> Result<(), HarnessError> {
    let runs = ctx.runs();
    let _lock = runs.lock("cargo xtask prune")?;
    let step = phase("prune");
    let mut removed = Vec::new();
    let mut dirs = 0;
    let libvirt = ctx.machine.host().libvirt() == boma_host::judge::Libvirt::Usable;
    let kinds: &[BackendKind] = if libvirt {
        &[BackendKind::Libvirt, BackendKind::Qemu]
    } else {
        &[BackendKind::Qemu]
    };
    // First what the harness itself spawned and a killed harness left running (ansible,
    // ssh): only processes recorded in the spawn journal, identified by pid and start time,
    // SIGTERM first.
    let journal = runs.journal();
    let processes = ctx.machine.processes();
    let stopped = match processes.journaled(&journal) {
        Ok(actions) => processes.stop(&actions),
        Err(e) => {
            say!("cannot read the spawn journal {journal}: {e}");
            Vec::new()
        }
    };
    for s in &stopped {
        say!("{s}");
    }
    processes.forget_exited(&journal);
    for kind in kinds {
        let report = ctx.with_effects(*kind, Accel::Tcg, |fx| lifecycle::prune(fx, *kind))?;
        removed.extend(report.vms);
        dirs += report.dirs;
    }
    removed.sort();
    removed.dedup();
    for name in &removed {
        let _ = boot::release(ctx, name);
    }
    step.done();
    if removed.is_empty() && dirs == 0 {
        say!("nothing to prune: no test VM, no run files");
    } else {
        let names: Vec<&str> = removed.iter().map(|n| n.as_str()).collect();
        say!(
            "pruned {} VM(s) ({}) and {dirs} run director(ies)",
            removed.len(),
            names.join(", ")
        );
    }
    Ok(())
}

/// Remove what a run that died without cleaning up left — a parallel run's child killed by a
/// signal before it could tear down: the processes it started (found in the spawn journal by
/// `started_by`, the child's pid), its VM and run directory (found by `name`: the parent chose
/// its run id), its memory reservation. One line per thing removed. A cleanup: after Ctrl-C it
/// still runs to its end.
pub fn remove_orphan(
    ctx: &Ctx,
    name: &boma_name::VmName,
    started_by: u32,
) -> Result<Vec<String>, HarnessError> {
    boma_exec::interrupt::begin_cleanup_if_interrupted();
    let mut removed = Vec::new();
    let runs = ctx.runs();
    let journal = runs.journal();
    let processes = ctx.machine.processes();
    match processes.journaled(&journal) {
        Ok(actions) => {
            let its: Vec<_> = actions
                .into_iter()
                .filter(|a| a.recorded.spawned_by == started_by)
                .collect();
            for stopped in processes.stop(&its) {
                removed.push(format!("stopped {stopped}"));
            }
        }
        Err(e) => say!("cannot read the spawn journal {journal}: {e}"),
    }
    let record: Option<RunRecord> = runs.record(name).ok().flatten();
    // The backend the child chose: its record's, else the one these settings resolve to.
    let kind = record.as_ref().map(|r| r.backend).unwrap_or_else(|| {
        crate::backend::resolve(ctx.settings.backend, &ctx.machine.host().libvirt())
            .map_or(BackendKind::Qemu, |r| r.kind)
    });
    let existed = runs.vm_dir(name).exists();
    let gone = ctx.with_effects(kind, Accel::Tcg, |fx| {
        lifecycle::remove(fx, name, record.as_ref())
    })?;
    if existed || gone {
        removed.push(format!("its VM {name} and its files"));
    }
    if boot::release(ctx, name) {
        removed.push("its memory reservation".to_owned());
    }
    Ok(removed)
}
