//! The steps an operator can also run one at a time (`up`, `apply`, `reboot`, `assert`, `down`,
//! `console`, `prune`, `start` of a kept VM), and the playbook runs the cycle shares with them
//! (apply a step, the idempotence pass, a verify playbook).

use boma_exec::progress::{self, phase};
use boma_exec::say;
use boma_inventory::{Apply, CertTier, PlaybookRun};
use boma_vm::lifecycle::{self, BaseImage};
use boma_vm::{Accel, BackendKind, RebootHow, RunRecord};
use camino::{Utf8Path, Utf8PathBuf};

use crate::ansible::PlaybookCall;
use crate::files::{self, RunFiles};
use crate::guest_file::{self, GuestFile};
use crate::preflight::{self, Inputs, Needs};
use crate::verify::{self, VerifyRun, Written};
use crate::vm::{self, runs, with_effects};
use crate::{Ctx, HarnessError, checks, diff, idempotence};

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
        playbook_call(ctx, self.files, self.timeout, (label, args), changes)
    }
}

/// One `ansible-playbook` run of a run whose files are `files` (a VM's, or a fleet's): its
/// fact cache, connection directory and control sockets are the run's; with `changes`, the
/// `boma_changes` callback records there what changed.
pub(crate) fn playbook_call(
    ctx: &Ctx,
    files: &RunFiles,
    timeout: std::time::Duration,
    (label, args): (String, Vec<String>),
    changes: Option<&Utf8Path>,
) -> PlaybookCall {
    PlaybookCall {
        repo: ctx.repo().to_owned(),
        label,
        args,
        timeout,
        changes_file: changes.map(Utf8Path::to_owned),
        // `BOMA_IT_FACT_CACHE=off` gathers facts in every playbook, as plain Ansible does (for
        // measuring what the cache saves).
        facts_dir: (std::env::var("BOMA_IT_FACT_CACHE").as_deref() != Ok("off"))
            .then(|| files.facts()),
        mitogen: mitogen_plugins(ctx),
        connect_dir: Some(files.connect_dir()),
        control_dir: Some(files.control_dir()),
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
/// its second run is not safe to apply to a live host (Molecule's idempotence step). What the
/// `boma_changes` callback wrote is judged only if it proves the callback saw every step
/// ([`idempotence::judge`]): no file, or one without its marks, is unproven, never "nothing
/// changed".
pub fn idempotence(
    ctx: &Ctx,
    set: &PlaybookSet,
    files: &RunFiles,
) -> Result<idempotence::Verdict, HarnessError> {
    let changes = files.changes();
    // A file left from before must not pass for this pass's record.
    match std::fs::remove_file(&changes) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(HarnessError::io(&changes, e)),
    }
    let mut labels = Vec::new();
    for apply in &set.inputs.profile.applies {
        apply_step(ctx, set, apply, Some(&changes))?;
        labels.push(format!("idempotence {}", apply.label()));
    }
    let text = match std::fs::read_to_string(&changes) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(HarnessError::io(&changes, e)),
    };
    Ok(idempotence::judge(&text, set.record.name.as_str(), &labels))
}

/// Run one of the profile's verify playbooks on the VM and read back, over the harness's own
/// ssh, what it wrote there (a copy is kept in the run directory for the bundle). How the play
/// ended and what it wrote are evidence, judged by [`checks::from_verify`]: a failed play is a
/// failed check, not an error. Only an interrupt, or a guest that cannot be reached, stops the
/// run here.
pub fn verify_playbook(
    ctx: &Ctx,
    set: &PlaybookSet,
    playbook: &Utf8Path,
    index: usize,
) -> Result<VerifyRun, HarnessError> {
    let on_guest = verify::guest_results_file(index);
    // Nothing an earlier run (`assert` twice) wrote may pass for this run's results.
    guest_file::remove(ctx, set.record, on_guest.as_str())?;
    let kept = set.files.results(index);
    let _ = std::fs::remove_file(&kept);
    let vars = set.files.harness_vars(index);
    let label = format!("verify {playbook}");
    let step = phase(&label);
    let args = boma_inventory::playbook_argv(&set.run(ctx, Some(&vars)), playbook);
    let played = ctx
        .machine
        .ansible()
        .run_playbook(&set.call(ctx, label, args, None));
    if let Err(e) = &played
        && e.interrupted().is_some()
    {
        step.failed();
        return Err(played.unwrap_err());
    }
    let written = match guest_file::read(ctx, set.record, on_guest.as_str()) {
        Ok(GuestFile::Present(text)) => {
            files::write(&kept, &text)?;
            Written::from_text(Some(&text))
        }
        Ok(GuestFile::Absent) => Written::from_text(None),
        Err(e) => {
            step.failed();
            return Err(e);
        }
    };
    let run = VerifyRun {
        playbook: playbook.to_owned(),
        failure: played.err().map(|e| e.to_string()),
        written,
    };
    if checks::from_verify(&run).iter().all(|c| c.ok) {
        step.done();
    } else {
        step.failed();
    }
    Ok(run)
}

/// Boot a VM mirroring `host` and wait until it is ready. Returns its record.
pub fn up(ctx: &Ctx, host: &str) -> Result<RunRecord, HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock(&format!("cargo xtask up {host}"))?;
    let inputs = preflight::inputs(ctx, host, CertTier::Internal, Needs::Vm)?;
    let new = preflight::new_vm(ctx, &inputs, &vm::new_run_id())?;
    let prepared = vm::prepare(ctx, &inputs, &new, &format!("cargo xtask up {host}"), true)?;
    let base = vm::pin_for_run(ctx, &new, &prepared.golden)?;
    let golden = (base.as_path(), BaseImage::Golden);
    let record = match vm::boot(ctx, &inputs, &new, prepared.accel, golden, true) {
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
    if let Some(pid) = vm::vm_pid(&record) {
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

/// Boot a kept, powered-off VM again, from its record (a failed run of several profiles keeps
/// its VM so): its disk, forwards and console as they were, its memory reserved again
/// machine-wide first. It becomes the current VM: `apply`, `assert`, `console` and `down`
/// act on it.
pub fn start(ctx: &Ctx, vm: &str) -> Result<RunRecord, HarnessError> {
    let name = boma_name::VmName::parse(vm)?;
    let runs = runs(ctx);
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
    let reservation = vm::reserve_again(ctx, &record, &what)?;
    let started = with_effects(ctx, record.backend, record.accel, |fx| {
        // A kept fleet member plugs into its fleet's segment, which its run took down.
        if let Some(nic) = &record.fleet_nic {
            lifecycle::segment_up(fx, &nic.segment)?;
        }
        lifecycle::start(fx, &mut record)
    });
    // Running (even a boot that failed), it keeps its memory until `down` or `prune`.
    if let Some(pid) = vm::vm_pid(&record) {
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
    let libvirt = ctx.machine.host().libvirt() == boma_host::judge::Libvirt::Usable;
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
    let journal = ctx.settings.runs_root.join(JOURNAL);
    match boma_host::stop::plan_from_journal(journal.as_std_path()) {
        Ok(actions) => {
            let its: Vec<_> = actions
                .into_iter()
                .filter(|a| a.recorded.spawned_by == started_by)
                .collect();
            for stopped in boma_host::stop::stop(&its, boma_host::stop::GRACE) {
                removed.push(format!("stopped {stopped}"));
            }
        }
        Err(e) => say!("cannot read the spawn journal {journal}: {e}"),
    }
    let dir = runs(ctx).vm_dir(name);
    let record: Option<RunRecord> = std::fs::read_to_string(dir.join("run.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    // The backend the child chose: its record's, else the one these settings resolve to.
    let kind = record.as_ref().map(|r| r.backend).unwrap_or_else(|| {
        crate::backend::resolve(ctx.settings.backend, &ctx.machine.host().libvirt())
            .map_or(BackendKind::Qemu, |r| r.kind)
    });
    let existed = dir.exists();
    let gone = with_effects(ctx, kind, Accel::Tcg, |fx| {
        lifecycle::remove(fx, name, record.as_ref())
    })?;
    if existed || gone {
        removed.push(format!("its VM {name} and its files"));
    }
    let released = boma_host::reserve::Reservations::open(&ctx.settings.cache_dir)
        .and_then(|store| store.release(name.as_str()));
    if matches!(released, Ok(true)) {
        removed.push("its memory reservation".to_owned());
    }
    Ok(removed)
}
