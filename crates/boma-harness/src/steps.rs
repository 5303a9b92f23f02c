//! The steps an operator can also run one at a time (`up`, `apply`, `reboot`, `assert`, `down`,
//! `console`, `prune`), and the playbook runs the cycle shares with them (apply a step, the
//! idempotence pass, a verify playbook).

use boma_exec::progress::{self, phase};
use boma_exec::say;
use boma_inventory::{Apply, CertTier, PlaybookRun};
use boma_vm::lifecycle;
use boma_vm::{Accel, BackendKind, RebootHow, RunRecord};
use camino::{Utf8Path, Utf8PathBuf};

use crate::ansible::{self, ChangedTask, PlaybookCall};
use crate::files::{self, RunFiles};
use crate::preflight::{self, Inputs, Needs};
use crate::verify::VerifyResults;
use crate::vm::{self, runs, with_effects};
use crate::{Ctx, HarnessError, checks, diff};

/// The spawn journal in the run directory: every process the harness started (pid, group,
/// start time), so `prune` stops exactly those.
pub const JOURNAL: &str = "spawned.jsonl";

/// What every `ansible-playbook` run against one VM shares.
pub struct PlaybookSet<'a> {
    pub inputs: &'a Inputs,
    pub record: &'a RunRecord,
    pub files: &'a RunFiles,
    inventory: Utf8PathBuf,
    connection: Utf8PathBuf,
    timeout: std::time::Duration,
}

impl<'a> PlaybookSet<'a> {
    pub fn new(
        ctx: &Ctx,
        inputs: &'a Inputs,
        record: &'a RunRecord,
        files: &'a RunFiles,
    ) -> PlaybookSet<'a> {
        PlaybookSet {
            inputs,
            record,
            files,
            inventory: files.inventory(),
            connection: files.connection_vars(),
            timeout: vm::step_timeout(ctx, record.accel),
        }
    }

    /// The arguments every run shares: applies, the idempotence pass and verify playbooks alike
    /// get the harness's connection variables as the last `-e` file, which no variable source
    /// outranks, for every host the run touches: each of their tasks runs on the VM, through
    /// the run's ssh wrapper, whatever it delegates to.
    fn run<'b>(&'b self, ctx: &'b Ctx, run_vars: Option<&'b Utf8Path>) -> PlaybookRun<'b> {
        PlaybookRun {
            repo_root: ctx.repo(),
            inventory_dir: &self.inventory,
            vm: &self.record.name,
            extra_vars_files: &self.inputs.profile.extra_vars_files,
            cert_tier: self.inputs.tier,
            run_extra_vars: run_vars,
            vault_password_file: self.inputs.vault_password_file.as_deref(),
            connection_vars: &self.connection,
        }
    }

    fn call(
        &self,
        ctx: &Ctx,
        label: String,
        args: Vec<String>,
        changes: Option<&Utf8Path>,
    ) -> PlaybookCall {
        PlaybookCall {
            repo: ctx.repo().to_owned(),
            label,
            args,
            timeout: self.timeout,
            changes_file: changes.map(Utf8Path::to_owned),
            // `BOMA_IT_FACT_CACHE=off` gathers facts in every playbook, as plain Ansible does
            // (for measuring what the cache saves).
            facts_dir: (std::env::var("BOMA_IT_FACT_CACHE").as_deref() != Ok("off"))
                .then(|| self.files.facts()),
            mitogen: mitogen_plugins(ctx),
            connect_dir: Some(self.files.connect_dir()),
            control_dir: Some(self.files.control_dir()),
        }
    }
}

/// Mitogen's strategy plugins in the venv, when `BOMA_IT_MITOGEN=1` asks for them.
fn mitogen_plugins(ctx: &Ctx) -> Option<Utf8PathBuf> {
    if std::env::var("BOMA_IT_MITOGEN").as_deref() != Ok("1") {
        return None;
    }
    let lib = ctx.repo().join(".venv/lib");
    let python = lib
        .read_dir_utf8()
        .ok()?
        .flatten()
        .find(|e| e.file_name().starts_with("python"))?;
    let plugins = python
        .path()
        .join("site-packages/ansible_mitogen/plugins/strategy");
    plugins.is_dir().then_some(plugins)
}

/// Apply one step of the profile.
pub fn apply_step(
    ctx: &Ctx,
    set: &PlaybookSet,
    apply: &Apply,
    changes: Option<&Utf8Path>,
) -> Result<(), HarnessError> {
    let label = match changes {
        None => format!("apply {}", apply.label()),
        Some(_) => format!("idempotence {}", apply.label()),
    };
    let step = phase(&label);
    let args = boma_inventory::apply_argv(&set.run(ctx, None), apply);
    let call = set.call(ctx, label, args, changes);
    step.close(ctx.machine.ansible().run_playbook(&call))
}

/// Apply every step a second time, recording what changed: a role that reports `changed` on
/// its second run is not safe to apply to a live host (Molecule's idempotence step).
pub fn idempotence(
    ctx: &Ctx,
    set: &PlaybookSet,
    files: &RunFiles,
) -> Result<Vec<ChangedTask>, HarnessError> {
    let changes = files.changes();
    let _ = std::fs::remove_file(&changes);
    for apply in &set.inputs.profile.applies {
        apply_step(ctx, set, apply, Some(&changes))?;
    }
    let text = std::fs::read_to_string(&changes).unwrap_or_default();
    Ok(ansible::parse_changes(&text)
        .into_iter()
        .filter(|t| t.host == set.record.name.as_str())
        .collect())
}

/// Run one of the profile's verify playbooks and read what it found. A playbook that fails
/// after writing its results is a set of failed checks, not an error.
pub fn verify_playbook(
    ctx: &Ctx,
    set: &PlaybookSet,
    playbook: &Utf8Path,
    index: usize,
) -> Result<VerifyResults, HarnessError> {
    let results_file = set.files.results(index);
    let _ = std::fs::remove_file(&results_file);
    let vars = set.files.harness_vars(index);
    let label = format!("verify {playbook}");
    let step = phase(&label);
    let args = boma_inventory::playbook_argv(&set.run(ctx, Some(&vars)), playbook);
    let played = ctx
        .machine
        .ansible()
        .run_playbook(&set.call(ctx, label, args, None));
    let results = std::fs::read_to_string(&results_file)
        .ok()
        .and_then(|t| VerifyResults::parse(&t).ok());
    match (played, results) {
        (Ok(()), Some(results)) if results.passed() => {
            step.done();
            Ok(results)
        }
        (played, Some(results)) => {
            step.failed();
            if let Err(e) = played
                && e.interrupted().is_some()
            {
                return Err(e);
            }
            Ok(results)
        }
        (Err(e), None) => {
            step.failed();
            Err(e)
        }
        (Ok(()), None) => {
            step.failed();
            Err(HarnessError::Refused(format!(
                "the verify playbook {playbook} passed but wrote no results to {results_file}: it must write its checks to boma_it_results_file (tests/integration/README.md)"
            )))
        }
    }
}

/// Boot a VM mirroring `host` and wait until it is ready. Returns its record.
pub fn up(ctx: &Ctx, host: &str) -> Result<RunRecord, HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock(&format!("cargo xtask up {host}"))?;
    let inputs = preflight::inputs(ctx, host, CertTier::Internal, Needs::Vm)?;
    let new = preflight::new_vm(ctx, &inputs, &vm::new_run_id())?;
    let prepared = vm::prepare(ctx, &inputs, &new, &format!("cargo xtask up {host}"), true)?;
    let base = vm::pin_for_run(ctx, &new, &prepared.golden)?;
    let record = match vm::boot(ctx, &inputs, &new, prepared.accel, &base, true) {
        Ok(record) => record,
        Err((error, Some(record))) => {
            if vm::after_failure(ctx, &record, &error, false).is_some()
                && let Some(pid) = record.pid
            {
                let _ = prepared.reservation.keep_for_vm(pid);
            }
            return Err(error);
        }
        Err((error, None)) => return Err(error),
    };
    // The VM outlives this command: its reservation goes with it (until `down` or `prune`).
    let pid = record.pid.or_else(|| {
        boma_vm::host::procs::vm_processes()
            .into_iter()
            .find(|p| p.name == record.name)
            .map(|p| p.pid)
    });
    if let Some(pid) = pid {
        prepared
            .reservation
            .keep_for_vm(pid)
            .map_err(vm::reserve_error)?;
    }
    let files = RunFiles::of(&record);
    files::write_run_files(ctx.repo(), &inputs, &record, &files)
        .map_err(|e| standalone_failure(ctx, &record, e))?;
    Ok(record)
}

/// The current run. Applying another host's profile to it is allowed (the RED→GREEN cycle
/// applies the fix to the VM booted for the RED case) and said out loud.
fn current_for(ctx: &Ctx, host: &str) -> Result<RunRecord, HarnessError> {
    let record = runs(ctx).require_current()?;
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
    vm::after_failure(ctx, record, &error, true);
    error
}

/// Apply the profile's playbooks to the current VM.
pub fn apply(ctx: &Ctx, host: &str, tier: CertTier) -> Result<(), HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock(&format!("cargo xtask apply {host}"))?;
    let record = current_for(ctx, host)?;
    let inputs = preflight::inputs(ctx, host, tier, Needs::Ansible)?;
    let files = RunFiles::of(&record);
    let applied = (|| {
        files::write_run_files(ctx.repo(), &inputs, &record, &files)?;
        let set = PlaybookSet::new(ctx, &inputs, &record, &files);
        for step in &inputs.profile.applies {
            apply_step(ctx, &set, step, None)?;
        }
        Ok(())
    })();
    applied.map_err(|e| standalone_failure(ctx, &record, e))
}

/// Reboot the current VM for real; succeed only with a new boot_id.
pub fn reboot(ctx: &Ctx, hard: bool) -> Result<(), HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock("cargo xtask reboot")?;
    let mut record = runs.require_current()?;
    let how = if hard {
        RebootHow::Hard
    } else {
        RebootHow::Guest
    };
    with_effects(ctx, record.backend, record.accel, |fx| {
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
    let runs = runs(ctx);
    let _lock = runs.lock(&format!("cargo xtask assert {host}"))?;
    let record = current_for(ctx, host)?;
    let inputs = preflight::inputs(ctx, host, tier, Needs::Ansible)?;
    let files = RunFiles::of(&record);
    let checked = (|| {
        files::write_run_files(ctx.repo(), &inputs, &record, &files)?;
        let state = diff::capture(ctx, &inputs, &record, &files.state_after(), "now")?;
        let mut found = checks::from_probes(&[], &state.probes);
        found.push(checks::system_running(
            &state.system_state,
            &state.failed_units,
        ));
        found.push(diff::fleet_routes(ctx, &inputs, &record)?);
        let set = PlaybookSet::new(ctx, &inputs, &record, &files);
        for (index, playbook) in inputs.profile.verify.iter().enumerate() {
            found.extend(checks::from_verify(&verify_playbook(
                ctx, &set, playbook, index,
            )?));
        }
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
    let runs = runs(ctx);
    let _lock = runs.lock("cargo xtask down")?;
    let Some(record) = runs.current()? else {
        say!(
            "no current run: nothing to take down (`cargo xtask prune` removes leftovers of crashed runs)"
        );
        return Ok(());
    };
    with_effects(ctx, record.backend, record.accel, |fx| {
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
        vm::release(ctx, &record.name);
    }
    Ok(())
}

/// The current (or last) VM's serial console.
pub fn console(ctx: &Ctx) -> Result<Utf8PathBuf, HarnessError> {
    Ok(runs(ctx).require_current()?.console_log())
}

/// Remove every test VM, process and run file of this checkout's run directory, each VM by the
/// backend that runs it.
pub fn prune(ctx: &Ctx) -> Result<(), HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock("cargo xtask prune")?;
    let step = phase("prune");
    let mut removed = Vec::new();
    let mut dirs = 0;
    let libvirt = matches!(
        ctx.machine.host().libvirt(),
        crate::backend::LibvirtProbe::Usable
    );
    let kinds: &[BackendKind] = if libvirt {
        &[BackendKind::Libvirt, BackendKind::Qemu]
    } else {
        &[BackendKind::Qemu]
    };
    // First what the harness itself spawned and a killed harness left running (ansible,
    // ssh): only processes recorded in the spawn journal, identified by pid and start time,
    // SIGTERM first.
    let journal = ctx.settings.runs_root.join(JOURNAL);
    let stopped = match boma_host::stop::plan_from_journal(journal.as_std_path()) {
        Ok(actions) => boma_host::stop::stop(&actions, boma_host::stop::GRACE),
        Err(e) => {
            say!("cannot read the spawn journal {journal}: {e}");
            Vec::new()
        }
    };
    for s in &stopped {
        say!("{s}");
    }
    let _ = boma_host::stop::forget_exited(journal.as_std_path());
    for kind in kinds {
        let report = with_effects(ctx, *kind, Accel::Tcg, |fx| lifecycle::prune(fx, *kind))?;
        removed.extend(report.vms);
        dirs += report.dirs;
    }
    removed.sort();
    removed.dedup();
    for name in &removed {
        vm::release(ctx, name);
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
