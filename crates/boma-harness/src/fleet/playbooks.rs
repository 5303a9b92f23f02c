//! A fleet's `ansible-playbook` runs, as production runs them: one run per step over every
//! member that lists it (`--limit`), the idempotence pass the same way (each member judged by
//! the `boma_changes` callback's proof of what it saw on that member), each member's verify
//! playbooks limited to it, and the fleet's own verify playbooks over every member. Every run
//! gets the members' inventory, the fleet's `-e` files and, last, the fleet's connection file.

use boma_exec::progress::phase;
use boma_fleet::FleetStep;
use boma_inventory::{FleetPlaybookRun, MemberName};
use boma_vm::{RunDir, RunRecord};
use camino::{Utf8Path, Utf8PathBuf};

use super::preflight::FleetInputs;
use crate::ansible::PlaybookCall;
use crate::files;
use crate::guest_file::{self, GuestFile};
use crate::idempotence::{self, Verdict};
use crate::verify::{self, VerifyRun, Written};
use crate::{Ctx, HarnessError};

/// What every playbook run of a fleet shares.
pub struct FleetPlaybooks<'a> {
    ctx: &'a Ctx<'a>,
    inputs: &'a FleetInputs,
    /// The fleet run's own files (inventory, connection, fact cache, logs).
    files: RunDir,
    timeout: std::time::Duration,
}

impl<'a> FleetPlaybooks<'a> {
    pub fn new(
        ctx: &'a Ctx<'a>,
        inputs: &'a FleetInputs,
        files: RunDir,
        accel: boma_vm::Accel,
    ) -> FleetPlaybooks<'a> {
        FleetPlaybooks {
            ctx,
            inputs,
            files,
            timeout: ctx.settings.playbook_timeout(accel),
        }
    }

    fn run<'b>(
        &'b self,
        inventory: &'b Utf8Path,
        connection: &'b Utf8Path,
        vars: Option<&'b Utf8Path>,
    ) -> FleetPlaybookRun<'b> {
        FleetPlaybookRun {
            repo_root: self.ctx.repo(),
            inventory_dir: inventory,
            extra_vars_files: &self.inputs.extra_vars_files,
            cert_tier: self.inputs.tier,
            run_extra_vars: vars,
            vault_password_file: self.inputs.vault_password_file.as_deref(),
            connection_vars: connection,
        }
    }

    fn call(&self, label: String, args: Vec<String>, changes: Option<&Utf8Path>) -> PlaybookCall {
        crate::playbooks::playbook_call(self.ctx, &self.files, self.timeout, (label, args), changes)
    }

    /// The checked names of `limit` (a step's members).
    fn names(&self, limit: &[String]) -> Vec<MemberName> {
        limit
            .iter()
            .filter_map(|m| self.inputs.member(m))
            .map(|m| m.name.clone())
            .collect()
    }

    /// Apply one step over its members; with `changes`, as the idempotence pass.
    pub fn apply(&self, step: &FleetStep, changes: Option<&Utf8Path>) -> Result<(), HarnessError> {
        let label = match changes {
            None => format!("apply {}", step.apply.label()),
            Some(_) => format!("idempotence {}", step.apply.label()),
        };
        let (inventory, connection) = (self.files.inventory(), self.files.connection_vars());
        let args = boma_inventory::fleet_apply_argv(
            &self.run(&inventory, &connection, None),
            &step.apply,
            &self.names(&step.limit),
        );
        let running = phase(&label);
        running.close(
            self.ctx
                .machine
                .ansible()
                .run_playbook(&self.call(label, args, changes)),
        )
    }

    /// Where the idempotence pass of step `index` records what changed.
    pub fn changes_of(&self, index: usize) -> Utf8PathBuf {
        self.files
            .path()
            .join(format!("idempotence-{}.jsonl", index + 1))
    }

    /// Apply every step a second time, each recording what changed in a file of its own, and
    /// judge each member on the steps it is in: their runs must each prove the callback saw the
    /// member, and nothing may have changed on it.
    pub fn idempotence(&self) -> Result<Vec<(MemberName, Verdict)>, HarnessError> {
        for (index, step) in self.inputs.steps.iter().enumerate() {
            let changes = self.changes_of(index);
            // A file left from before must not pass for this pass's record.
            files::remove_if_present(&changes)?;
            self.apply(step, Some(&changes))?;
        }
        let mut verdicts = Vec::new();
        for member in &self.inputs.members {
            let mut text = String::new();
            let mut labels = Vec::new();
            for (index, step) in self.inputs.steps.iter().enumerate() {
                if !step.limit.iter().any(|m| m == member.name.as_str()) {
                    continue;
                }
                let changes = self.changes_of(index);
                if let Some(recorded) = files::read_if_present(&changes)? {
                    text.push_str(&recorded);
                }
                labels.push(format!("idempotence {}", step.apply.label()));
            }
            verdicts.push((
                member.name.clone(),
                idempotence::judge(&text, member.name.as_str(), &labels),
            ));
        }
        Ok(verdicts)
    }

    /// Run a verify playbook over `on` (member names with their VMs), with `vars` (its harness
    /// variables, which say where each member writes its results: `results_on_guest`), and read
    /// back over the harness's own ssh what each member wrote; a copy of each is kept in
    /// `keep(member)`. One [`VerifyRun`] per member, in the order given. Only an interrupt, or a
    /// member that cannot be reached, stops the run here.
    pub fn verify(
        &self,
        playbook: &Utf8Path,
        label: String,
        on: &[(&MemberName, &RunRecord)],
        vars: &Utf8Path,
        results_on_guest: &Utf8Path,
        keep: &dyn Fn(&MemberName) -> Utf8PathBuf,
    ) -> Result<Vec<VerifyRun>, HarnessError> {
        for (_, record) in on {
            // Nothing an earlier run wrote may pass for this run's results.
            guest_file::remove(self.ctx.machine.guest(), record, results_on_guest.as_str())?;
        }
        let limit: Vec<MemberName> = on.iter().map(|(name, _)| (*name).clone()).collect();
        let (inventory, connection) = (self.files.inventory(), self.files.connection_vars());
        let args = boma_inventory::fleet_playbook_argv(
            &self.run(&inventory, &connection, Some(vars)),
            playbook,
            &limit,
        );
        let running = phase(&label);
        let played = self
            .ctx
            .machine
            .ansible()
            .run_playbook(&self.call(label, args, None));
        if let Err(e) = &played
            && e.interrupted().is_some()
        {
            running.failed();
            return Err(played.unwrap_err());
        }
        let failure = played.err().map(|e| e.to_string());
        let mut runs = Vec::new();
        for (name, record) in on {
            let written =
                match guest_file::read(self.ctx.machine.guest(), record, results_on_guest.as_str())
                {
                    Ok(GuestFile::Present(text)) => {
                        files::write(&keep(name), &text)?;
                        Written::from_text(Some(&text))
                    }
                    Ok(GuestFile::Absent) => Written::from_text(None),
                    Err(e) => {
                        running.failed();
                        return Err(e);
                    }
                };
            runs.push(VerifyRun {
                playbook: playbook.to_owned(),
                failure: failure.clone(),
                written,
            });
        }
        if runs
            .iter()
            .all(|run| crate::checks::from_verify(run).iter().all(|c| c.ok))
        {
            running.done();
        } else {
            running.failed();
        }
        Ok(runs)
    }
}

/// Where verify playbook `index` (of a member's, or of the fleet's) writes its results on each
/// member.
pub fn results_on_guest(index: usize) -> Utf8PathBuf {
    verify::guest_results_file(index)
}
