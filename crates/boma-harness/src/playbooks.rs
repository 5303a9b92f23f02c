//! The playbook runs against one VM, as the cycle and the single steps share them: apply a
//! step of the profile, the idempotence pass (every step again, the `boma_changes` callback's
//! record judged), a verify playbook (run on the VM, its results read back over the harness's
//! own ssh) — and the run files they read ([`write_run_files`]: the transient inventory, the
//! run's connection, the verify playbooks' variables). Every run gets the harness's connection
//! as its last `-e` file.

use boma_exec::progress::phase;
use boma_inventory::{Apply, PlaybookRun};
use boma_report::CheckRecord;
use boma_vm::{RunDir, RunRecord};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;

use crate::ansible::PlaybookCall;
use crate::checks;
use crate::connect;
use crate::ctx::Ctx;
use crate::error::HarnessError;
use crate::files;
use crate::guest_file::{self, GuestFile};
use crate::idempotence;
use crate::preflight::Inputs;
use crate::verify::{self, VerifyRun, Written};

/// What every `ansible-playbook` run against one VM shares.
pub struct PlaybookSet<'a> {
    pub inputs: &'a Inputs,
    pub record: &'a RunRecord,
    pub files: &'a RunDir,
    inventory: Utf8PathBuf,
    connection: Utf8PathBuf,
    timeout: std::time::Duration,
}

impl<'a> PlaybookSet<'a> {
    pub fn new(
        ctx: &Ctx,
        inputs: &'a Inputs,
        record: &'a RunRecord,
        files: &'a RunDir,
    ) -> PlaybookSet<'a> {
        PlaybookSet {
            inputs,
            record,
            files,
            inventory: files.inventory(),
            connection: files.connection_vars(),
            timeout: ctx.settings.playbook_timeout(record.accel),
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

/// One `ansible-playbook` run of a run whose directory is `run` (a VM's, or a fleet's): its
/// fact cache, connection directory and control sockets are the run's; with `changes`, the
/// `boma_changes` callback records there what changed.
pub fn playbook_call(
    ctx: &Ctx,
    run: &RunDir,
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
            .then(|| run.facts()),
        mitogen: mitogen_plugins(ctx),
        connect_dir: Some(run.connect_dir()),
        control_dir: Some(connect::control_dir(run.path())),
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
pub fn idempotence(ctx: &Ctx, set: &PlaybookSet) -> Result<idempotence::Verdict, HarnessError> {
    let changes = set.files.idempotence_changes();
    // A file left from before must not pass for this pass's record.
    files::remove_if_present(&changes)?;
    let mut labels = Vec::new();
    for apply in &set.inputs.profile.applies {
        apply_step(ctx, set, apply, Some(&changes))?;
        labels.push(format!("idempotence {}", apply.label()));
    }
    let text = files::read_if_present(&changes)?.unwrap_or_default();
    Ok(idempotence::judge(&text, set.record.name.as_str(), &labels))
}

/// Run every verify playbook of the profile, in order, each one's checks kept in `found` as
/// soon as it has run ([`verify_playbook`]).
pub fn verify_all(
    ctx: &Ctx,
    set: &PlaybookSet,
    found: &mut Vec<CheckRecord>,
) -> Result<(), HarnessError> {
    for (index, playbook) in set.inputs.profile.verify.iter().enumerate() {
        let run = verify_playbook(ctx, set, playbook, index)?;
        found.extend(checks::from_verify(&run));
    }
    Ok(())
}

/// Run one of the profile's verify playbooks on the VM and read back, over the harness's own
/// ssh, what it wrote there (a copy is kept in the run directory for the bundle). How the play
/// ended and what it wrote are evidence, judged by [`checks::from_verify`]: a failed play is a
/// failed check, not an error. Only an interrupt, or a guest that cannot be reached, stops the
/// run here.
fn verify_playbook(
    ctx: &Ctx,
    set: &PlaybookSet,
    playbook: &Utf8Path,
    index: usize,
) -> Result<VerifyRun, HarnessError> {
    let on_guest = verify::guest_results_file(index);
    // Nothing an earlier run (`assert` twice) wrote may pass for this run's results.
    guest_file::remove(ctx.machine.guest(), set.record, on_guest.as_str())?;
    let kept = set.files.verify_results(index);
    let _ = files::remove_if_present(&kept);
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
    let written = match guest_file::read(ctx.machine.guest(), set.record, on_guest.as_str()) {
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

/// Render and write the transient inventory and the run's variable files.
pub fn write_run_files(
    repo: &Utf8Path,
    inputs: &Inputs,
    record: &RunRecord,
    run: &RunDir,
) -> Result<(), HarnessError> {
    let host = boma_inventory::TransientHost {
        vm: &record.name,
        groups: &inputs.profile.groups,
        group_parents: &inputs.group_parents,
    };
    let hosts = boma_inventory::render_hosts_yml(&host)?;
    boma_inventory::write_inventory_dir(&run.inventory(), repo, &hosts)?;
    write_connection(record, run)?;
    for index in 0..inputs.profile.verify.len() {
        let vars = harness_vars(
            record.name.as_str(),
            &inputs.fleet_addresses,
            &crate::verify::guest_results_file(index),
        );
        files::write(
            &run.harness_vars(index),
            &serde_json::to_string_pretty(&vars).expect("json"),
        )?;
    }
    Ok(())
}

/// The run's connection ([`connect::write_connection`]), with this program as the wrapper and
/// the ssh client on PATH. Written again whenever the VM's address may have moved (after a
/// reboot).
fn write_connection(record: &RunRecord, run: &RunDir) -> Result<(), HarnessError> {
    let (wrapper, ssh) = connection_programs()?;
    connect::write_connection(
        run,
        &connect::Setup {
            vm: &record.name,
            target: &record.ssh,
            wrapper: &wrapper,
            ssh: &ssh,
        },
    )
}

/// The programs of a run's connection: the wrapper, which is this very program
/// (`connect-ssh`, found again by path when Ansible runs it), and the ssh client on `PATH`.
pub fn connection_programs() -> Result<(Utf8PathBuf, Utf8PathBuf), HarnessError> {
    let ssh = boma_exec::find_on_path("ssh")
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .ok_or_else(|| {
            HarnessError::Connection(format!(
                "`ssh` is not on PATH: {}",
                boma_exec::package_hint("ssh").unwrap_or("install it")
            ))
        })?;
    let wrapper = std::env::current_exe()
        .ok()
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .ok_or_else(|| HarnessError::Connection("cannot tell this program's own path".into()))?;
    Ok((wrapper, ssh))
}

/// The verify playbooks' inputs: the hosts the play runs on (the VM's inventory name; a fleet's
/// members, `a,b`), the real fleet's addresses (the VM must have no route to them), and where
/// on the VM to write the results (`results_on_guest`, a path the harness reads back over its
/// own ssh). Pure.
///
/// Where the controller reaches the published ports is not among them: a verify playbook runs
/// on the VM only, and the controller's probes are the harness's (`published_ports`).
pub fn harness_vars(
    hosts: &str,
    fleet: &[std::net::IpAddr],
    results_on_guest: &Utf8Path,
) -> serde_json::Value {
    json!({
        "boma_it_vm_name": hosts,
        "boma_it_fleet_addresses": fleet.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "boma_it_results_file": results_on_guest,
    })
}
