//! Disk layers in a run: start from the deepest cached layer whose key matches, and after each
//! step applied in this run keep the VM's disk as a new layer (`boma-layers` keys, stores and
//! checks them). A layer is taken from a cleanly shut-down guest: the VM powers off, the
//! overlay is copied into the store, a fresh overlay is made on the new layer, and the VM starts
//! again — for the last step that power cycle *is* the run's reboot, so it costs only the copy.
//!
//! Layers are off with `--fresh`, and for a cert tier that puts a secret on the guest's disk
//! (a layer lives for weeks in the cache).
//!
//! **A fault of the store is not a verdict on the host.** A store that cannot be used (a disk
//! full, `qemu-img` failing, a directory it may not write) turns layers off for the rest of the
//! run with one line saying why, and the run goes on: from the golden image when planning
//! failed, on the VM's own disk when storing a step failed (its overlay is replaced only once
//! the new one exists). Only an interrupt stops the run.
//!
//! The VM only ever boots bytes that cannot change under it: a layer is published only where
//! none was (`boma-layers` never replaces one); when another run published the same step first,
//! this VM keeps its own disk and this run stores no later step. The chain a VM's disk is
//! backed by is kept from removal for as long as its run directory exists, so a failed run's
//! kept VM can be started again after the run is over.

use std::collections::BTreeMap;
use std::time::SystemTime;

use boma_exec::interrupt::{self, Interrupted};
use boma_exec::progress::phase;
use boma_exec::say;
use boma_layers::{
    ChainMatch, DiskTree, FileDigest, Inserted, LAYERS_DIR, Layer, LayerStore, NewLayer, RunInputs,
    StepRecipe, StoreConfig, Timestamp, step_recipes,
};
use boma_name::VmName;
use boma_report::{CheckRecord, CheckSource, LayerUse};
use boma_vm::lifecycle::{self, Disks};
use boma_vm::{RunRecord, VmError};
use camino::{Utf8Path, Utf8PathBuf};

use crate::boot;
use crate::ctx::Ctx;
use crate::error::{HarnessError, error_chain};
use crate::files;
use crate::golden::Golden;
use crate::preflight::Inputs;

/// The layers of one run: what it reuses, and the store it adds to.
pub struct RunLayers {
    store: LayerStore,
    profile: String,
    steps: Vec<StepRecipe>,
    /// Held (no prune or eviction removes them) while the VM runs.
    reused: Vec<Layer>,
    /// Layers stored by this run, held too.
    stored: Vec<Layer>,
    /// The golden image pinned in the store (the first layer's backing).
    golden: Utf8PathBuf,
    /// The VM and its run directory: its keep record names them.
    vm: VmName,
    run_dir: Utf8PathBuf,
    /// Why this run stores no more layers (`None` while it does).
    stopped: Option<String>,
    /// Where the idempotence verdicts of chains of layers are kept (in the image cache).
    idempotence_verdicts: Utf8PathBuf,
    pub uses: Vec<LayerUse>,
}

/// What the layer key needs from other parts of the harness: the environment Ansible runs in
/// and a description of how it connects to the VM. Whatever changes either must change it.
#[derive(Debug, Clone)]
pub struct KeyedSetup {
    /// Every variable `ansible-playbook` gets, with per-run values (paths into the run
    /// directory, ports) replaced by stand-ins.
    pub ansible_env: BTreeMap<String, String>,
    /// The connection as the harness sets it up (its text, a version: opaque to the key).
    pub connection: String,
}

impl KeyedSetup {
    /// This run's setup, with per-run values replaced by stand-ins: Ansible's scrubbed
    /// environment ([`crate::ansible::ansible_env`], from this process's) and the harness's
    /// connection variables (the run's wrapper, transfers, pins) as rendered for a stand-in VM.
    pub fn current(ctx: &Ctx) -> Result<KeyedSetup, HarnessError> {
        // The checkout's and the run's paths are stand-ins: the key is the same in every
        // checkout and every run (what the checkout holds is keyed by content).
        let checkout = Utf8Path::new("/checkout");
        let connect_dir = Utf8Path::new("/run/connect");
        let plan = crate::ansible::EnvPlan {
            repo: checkout,
            tools_dir: &checkout.join(".venv/bin"),
            connect_dir: Some(connect_dir),
            set: Vec::new(),
        };
        let ansible_env = crate::ansible::ansible_env(crate::ansible::inherited_env(), &plan).vars;
        let stand_in = boma_inventory::VmConnection {
            host: "127.0.0.1",
            port: 2222,
            user: boma_cloudinit::DEFAULT_USER,
            ssh_private_key_file: &ctx.settings.key_dir().join("id_ed25519"),
            connect_dir,
        };
        let connection = boma_inventory::render_connection_vars(&stand_in)
            .map_err(|e| HarnessError::Refused(format!("connection variables: {e}")))?;
        Ok(KeyedSetup {
            ansible_env,
            connection,
        })
    }
}

/// Where Ansible loads collections and plugins from on the controller when nothing says
/// otherwise (`~/.ansible/…`, `/usr/share/ansible/…`).
fn controller_dirs(home: Option<&str>) -> Vec<Utf8PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = home {
        let home = Utf8Path::new(home).join(".ansible");
        dirs.extend([home.join("collections"), home.join("plugins")]);
    }
    dirs.extend([
        Utf8PathBuf::from("/usr/share/ansible/collections"),
        Utf8PathBuf::from("/usr/share/ansible/plugins"),
    ]);
    dirs
}

/// Everything the key depends on besides the repository: the VM's groups in the real
/// inventory, what is installed in the venv, the environment, controller-wide collections and
/// plugins, the seed (with stand-ins for the run's name and MAC) and the connection.
fn run_inputs(ctx: &Ctx, inputs: &Inputs, setup: &KeyedSetup) -> Result<RunInputs, HarnessError> {
    let venv = ctx.repo().join(".venv");
    let installed = boma_layers::venv_packages(&venv).map_err(|e| {
        store_error(format!(
            "what is installed in {venv} cannot be read, so a layer could not be keyed by it ({e})"
        ))
    })?;
    let home = setup.ansible_env.get("HOME").map(String::as_str);
    let controller_files =
        boma_layers::controller_files(&controller_dirs(home)).map_err(store_error)?;
    let (_, public_key) = ctx.machine.provisioner().keypair(&ctx.settings.key_dir())?;
    let seed = boot::seed_documents(
        inputs,
        &public_key,
        &format!("boma-it-{}-RUNID", inputs.host),
        "52:54:00:00:00:00",
    )?;
    let seed_text = format!(
        "user-data\n{}\nmeta-data\n{}\nnetwork-config\n{}",
        seed.user_data, seed.meta_data, seed.network_config
    );
    Ok(RunInputs {
        lineage: inputs.group_parents.clone(),
        ansible_env: RunInputs::digest_env(&setup.ansible_env),
        installed,
        controller_files,
        seed: FileDigest::of(seed_text.as_bytes()),
        connection: FileDigest::of(setup.connection.as_bytes()),
    })
}

fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}

fn store_error(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Vm(VmError::Backend(format!("layer store: {e}")))
}

/// The run's layers (`None` when they are off) and what the report says of them. Off: asked
/// (`--fresh`, `BOMA_IT_LAYERS=off`), a cert tier whose secret would stay on a cached disk, or
/// a store that cannot be used (one line says why, and each step's entry in the report; the
/// run boots from the golden image and stores nothing). Only an interrupt is an error.
pub fn start(
    ctx: &Ctx,
    inputs: &Inputs,
    golden: &Golden,
    vm: &VmName,
    run_dir: &Utf8Path,
) -> Result<(Option<RunLayers>, Vec<LayerUse>), HarnessError> {
    if !ctx.settings.layers {
        return Ok((None, Vec::new()));
    }
    if inputs.tier.needs_vault_secret() {
        say!(
            "layers: off for the {} tier (its secret would stay on a cached disk)",
            inputs.tier
        );
        return Ok((None, Vec::new()));
    }
    // The setup Ansible runs with: where the scrubbed environment and the harness's own
    // connection are decided, pass theirs.
    let planned = KeyedSetup::current(ctx)
        .and_then(|setup| RunLayers::plan(ctx, inputs, golden, vm, run_dir, &setup));
    match planned {
        Ok(layers) => {
            let uses = layers.uses.clone();
            Ok((Some(layers), uses))
        }
        Err(e) if e.interrupted().is_some() => Err(e),
        Err(e) => {
            let why = format!(
                "layers off for this run: the layer store cannot be used ({})",
                error_chain(&e)
            );
            say!("{why}; booting from the golden image, storing nothing");
            let uses = inputs
                .profile
                .applies
                .iter()
                .map(|apply| LayerUse {
                    step: apply.label(),
                    key: String::new(),
                    reused: false,
                    why_not: Some(why.clone()),
                })
                .collect();
            Ok((None, uses))
        }
    }
}

/// The name of a check from the power cycle after step `index` (counted from 0): the check's
/// own name first, so that a profile's `expect` entry for a finding matches it wherever the
/// reboot that lost it happened, then the step.
pub fn power_cycle_check_name(name: &str, index: usize, label: &str) -> String {
    format!("{name} (power cycle after step {}: {label})", index + 1)
}

/// Why storing a layer did not happen.
enum TakeFailure {
    /// The run was interrupted: it stops.
    Interrupted(Interrupted),
    /// The store failed: layers go off, the run goes on.
    Fault(String),
}

impl From<boma_layers::StoreError> for TakeFailure {
    fn from(e: boma_layers::StoreError) -> TakeFailure {
        match interrupt::in_chain(&e) {
            Some(interrupted) => TakeFailure::Interrupted(interrupted),
            None => TakeFailure::Fault(error_chain(&e)),
        }
    }
}

impl From<VmError> for TakeFailure {
    fn from(e: VmError) -> TakeFailure {
        match interrupt::in_chain(&e) {
            Some(interrupted) => TakeFailure::Interrupted(interrupted),
            None => TakeFailure::Fault(error_chain(&e)),
        }
    }
}

impl RunLayers {
    /// Look up the deepest matching layer for `inputs`' steps, starting from `golden`, for the
    /// VM `vm` whose run directory is `run_dir` (created here: the keep record needs it).
    pub fn plan(
        ctx: &Ctx,
        inputs: &Inputs,
        golden: &Golden,
        vm: &VmName,
        run_dir: &Utf8Path,
        setup: &KeyedSetup,
    ) -> Result<RunLayers, HarnessError> {
        let dir = ctx.settings.cache_dir.join(LAYERS_DIR);
        let store = LayerStore::open(&dir, StoreConfig::default()).map_err(store_error)?;
        let run = run_inputs(ctx, inputs, setup)?;
        let steps = step_recipes(
            &DiskTree::new(ctx.repo()),
            &inputs.profile,
            inputs.tier,
            &golden.sha512,
            &run,
        )
        .map_err(store_error)?;
        for step in &steps {
            for note in &step.reach.notes {
                say!("layers: step {}: {note}", step.index + 1);
            }
        }
        // The golden image the first layer is backed by, pinned in the store itself (a hard
        // link to the verified read-only cache entry): layers outlive every run directory.
        let pin_dir = dir.join(format!(
            "golden-{}",
            &golden.sha512[..32.min(golden.sha512.len())]
        ));
        let pinned = ctx
            .machine
            .provisioner()
            .pin(golden, &pin_dir, &ctx.settings.cache_dir)?;
        let recipes: Vec<_> = steps.iter().map(|s| s.recipe.clone()).collect();
        let ChainMatch { layers, miss } = store
            .deepest_match(&inputs.host, &recipes, now())
            .map_err(store_error)?;
        let mut uses = Vec::new();
        for (step, layer) in steps.iter().zip(&layers) {
            say!(
                "layers: reusing step {} ({}) from layer {}",
                step.index + 1,
                step.label,
                layer.key().short()
            );
            uses.push(LayerUse {
                step: step.label.clone(),
                key: layer.key().as_str().to_owned(),
                reused: true,
                why_not: None,
            });
        }
        if let Some(miss) = &miss {
            say!("layers: {miss}");
            for step in steps.iter().skip(layers.len()) {
                uses.push(LayerUse {
                    step: step.label.clone(),
                    key: step.recipe.key().as_str().to_owned(),
                    reused: false,
                    why_not: Some(if step.index == miss.step_index {
                        miss.to_string()
                    } else {
                        "an earlier step is applied in this run".into()
                    }),
                });
            }
        }
        let run_layers = RunLayers {
            store,
            profile: inputs.host.clone(),
            steps,
            reused: layers,
            stored: Vec::new(),
            golden: pinned.path,
            vm: vm.clone(),
            run_dir: run_dir.to_owned(),
            stopped: None,
            idempotence_verdicts: ctx.settings.cache_dir.join("layers-idempotence"),
            uses,
        };
        files::create_dir(run_dir)?;
        run_layers.keep_chain().map_err(store_error)?;
        Ok(run_layers)
    }

    /// Records the layers the VM's disk is backed by, so they outlive this process while the
    /// run directory does (a kept VM).
    fn keep_chain(&self) -> Result<(), boma_layers::StoreError> {
        let keys = self
            .reused
            .iter()
            .chain(&self.stored)
            .map(|l| l.key().clone());
        self.store.keep_for(&self.vm, &self.run_dir, keys)
    }

    /// Whether this run still stores layers.
    pub fn storing(&self) -> bool {
        self.stopped.is_none()
    }

    /// The disk the VM boots from: the deepest reused layer, or the store's pinned golden.
    pub fn base(&self) -> &Utf8Path {
        self.reused
            .last()
            .map(Layer::path)
            .unwrap_or(self.golden.as_path())
    }

    /// How many steps the reused layers already hold.
    pub fn reused_steps(&self) -> usize {
        self.reused.len()
    }

    /// The verdicts of the reused layers' power cycles, as passed checks named by their steps
    /// (a layer whose power cycle lost something is never reused, so each lost nothing).
    pub fn reused_verdicts(&self) -> Vec<CheckRecord> {
        self.steps
            .iter()
            .zip(&self.reused)
            .map(|(step, layer)| {
                let when = layer.meta().verdict.as_ref().map_or(0, |v| v.at.0);
                let when = boma_report::Timestamp::from_system_time(
                    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(when),
                );
                let lost = layer.meta().verdict.as_ref().map_or(0, |v| v.lost.len());
                CheckRecord {
                    name: power_cycle_check_name("reboot_diff", step.index, &step.label),
                    source: CheckSource::RebootDiff,
                    ok: lost == 0,
                    reason: Some(if lost == 0 { "ok" } else { "lost" }.to_owned()),
                    detail: Some(serde_json::json!(format!(
                        "recorded by layer {}: the power cycle that stored it, on {}, lost {lost}",
                        layer.key().short(),
                        when.rfc3339()
                    ))),
                }
            })
            .collect()
    }

    /// Record the verdict of the power cycle that stored step `index`'s layer: the names of the
    /// checks that failed across it. Only for a layer this run stored (not one another run
    /// published first). A store that cannot record it turns layers off: the layer then stays
    /// unjudged, and no run reuses it.
    pub fn record_verdict(&mut self, index: usize, across: &[CheckRecord]) {
        let key = self.steps[index].recipe.key();
        if !self.stored.iter().any(|l| l.key() == &key) {
            return;
        }
        let lost: Vec<String> = across
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.clone())
            .collect();
        if !lost.is_empty() {
            say!(
                "layers: step {}'s layer {} lost state at its power cycle: no run will reuse it",
                index + 1,
                key.short()
            );
        }
        if let Err(e) = self.store.record_verdict(&key, lost, now()) {
            let label = self.steps[index].label.clone();
            self.stop(
                &label,
                &format!(
                    "could not record the verdict of layer {}'s power cycle ({}), so later runs will not start from it",
                    key.short(),
                    error_chain(&e)
                ),
            );
        }
    }

    /// Where the idempotence verdict of a chain of layers is kept: by the last layer's key.
    fn verdict_path(&self) -> Utf8PathBuf {
        let last = self.steps.last().map(|s| s.recipe.key());
        self.idempotence_verdicts
            .join(last.map_or_else(|| "none".to_owned(), |k| k.as_str().to_owned()))
    }

    /// A run over the same layers already applied every step twice and saw nothing change:
    /// what it said, to report instead of re-applying everything.
    pub fn idempotence_verdict(&self) -> Option<String> {
        files::read_if_present(&self.verdict_path()).ok().flatten()
    }

    /// Remember that this chain passed the idempotence check.
    pub fn record_idempotence(&self) {
        let when = boma_report::Timestamp::from_system_time(SystemTime::now());
        let _ = files::create_dir(&self.idempotence_verdicts).and_then(|()| {
            files::write(
                &self.verdict_path(),
                &format!(
                    "cached: a run on {} applied every step of these layers twice and nothing changed",
                    when.rfc3339()
                ),
            )
        });
    }

    /// The guest came back from step `index`'s layer (the power cycle after [`Self::take`]):
    /// later runs may boot from it. Until this, the store keeps the layer without booting it,
    /// so a step that breaks the boot fails a re-run at its reboot, as it failed this one.
    pub fn booted(&mut self, index: usize) {
        let key = self.steps[index].recipe.key();
        // Only a layer this VM booted from: not one another run published first.
        if !self.stored.iter().any(|l| l.key() == &key) {
            return;
        }
        if let Err(e) = self.store.mark_booted(&key, now()) {
            let label = self.steps[index].label.clone();
            self.stop(
                &label,
                &format!(
                    "could not record that layer {} booted ({}), so later runs will not start from it",
                    key.short(),
                    error_chain(&e)
                ),
            );
        }
    }

    /// Store the stopped VM's disk as step `index`'s layer, then give the VM a fresh overlay on
    /// it (the same path, so the hypervisor's definition stays valid). Called between the
    /// power-off and the start of a power cycle. When another run published this step first,
    /// the VM keeps its own disk (its bytes, exactly as it shut down) and the run stores no
    /// later step: those would sit on a disk that is not in the store. When the store fails,
    /// layers go off for the rest of the run and the VM keeps its own disk too: only an
    /// interrupt is an error.
    pub fn take(
        &mut self,
        disks: &dyn Disks,
        record: &RunRecord,
        index: usize,
    ) -> Result<(), VmError> {
        let label = self.steps[index].label.clone();
        let taking = phase(format!("layer {label}"));
        let taken = self.try_take(disks, record, index);
        // A fault of the cache is no failure of the run: the phase is done, the line says it.
        taking.done();
        match taken {
            Ok(()) => Ok(()),
            Err(TakeFailure::Interrupted(interrupted)) => Err(VmError::Interrupted(interrupted)),
            Err(TakeFailure::Fault(fault)) => {
                self.stop(
                    &label,
                    &format!(
                        "step {}'s layer could not be stored ({fault}); the VM keeps its own disk",
                        index + 1
                    ),
                );
                Ok(())
            }
        }
    }

    /// Layers off for the rest of the run, with one line saying why; the step's entry in the
    /// report says it too.
    fn stop(&mut self, step_label: &str, why: &str) {
        // One line, whatever a command printed.
        let why = why
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        say!("layers: off for the rest of this run: {why}");
        const PLAIN: [&str; 2] = [
            "stored by this run",
            "an earlier step is applied in this run",
        ];
        if let Some(entry) = self.uses.iter_mut().find(|u| u.step == step_label) {
            let off = format!("{why}; layers are off for the rest of this run");
            // What the plan said of the step (why its layer was not reused) stays first.
            entry.why_not = Some(match entry.why_not.take() {
                Some(miss) if !PLAIN.contains(&miss.as_str()) => format!("{miss}; then {off}"),
                _ => off,
            });
        }
        self.stopped = Some(why);
    }

    fn try_take(
        &mut self,
        disks: &dyn Disks,
        record: &RunRecord,
        index: usize,
    ) -> Result<(), TakeFailure> {
        let step = &self.steps[index];
        let overlay = record.run_dir().overlay();
        let inserted = self.store.insert(
            NewLayer {
                recipe: step.recipe.clone(),
                profile: self.profile.clone(),
                step_label: step.label.clone(),
                golden: self.golden.clone(),
            },
            &overlay,
            now(),
        )?;
        let (layer, evicted) = match inserted {
            Inserted::Published { layer, evicted } => (layer, evicted),
            Inserted::AlreadyPublished { key } => {
                let label = step.label.clone();
                self.stop(
                    &label,
                    &format!(
                        "step {}'s layer {} is already stored by another run, and a published layer is never replaced; the VM keeps its own disk",
                        index + 1,
                        key.short()
                    ),
                );
                return Ok(());
            }
        };
        say!(
            "layers: step {} stored as {}",
            index + 1,
            layer.key().short()
        );
        for key in &evicted.removed {
            say!("layers: evicted {} (the store's size bound)", key.short());
        }
        let entry = LayerUse {
            step: step.label.clone(),
            key: layer.key().as_str().to_owned(),
            reused: false,
            why_not: Some("stored by this run".into()),
        };
        let layer_path = layer.path().to_owned();
        self.stored.push(*layer);
        match self.uses.iter_mut().find(|u| u.step == entry.step) {
            Some(existing) => *existing = entry,
            None => self.uses.push(entry),
        }
        self.keep_chain()?;
        // At every moment the VM has a valid disk, its own until the new one exists.
        lifecycle::replace_overlay(disks, &layer_path, &record.run_dir())?;
        Ok(())
    }
}
