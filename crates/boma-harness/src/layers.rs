//! Disk layers in a run: start from the deepest cached layer whose key matches, and after each
//! step applied in this run keep the VM's disk as a new layer (`boma-layers` keys, stores and
//! checks them). A layer is taken from a cleanly shut-down guest: the VM powers off, the
//! overlay is copied into the store, a fresh overlay is made on the new layer, and the VM starts
//! again — for the last step that power cycle *is* the run's reboot, so it costs only the copy.
//!
//! Layers are off with `--fresh`, and for a cert tier that puts a secret on the guest's disk
//! (a layer lives for weeks in the cache).

use std::time::SystemTime;

use boma_exec::progress::phase;
use boma_exec::say;
use boma_layers::{
    ChainMatch, DiskTree, LAYERS_DIR, Layer, LayerStore, NewLayer, StepRecipe, StoreConfig,
    Timestamp, step_recipes,
};
use boma_report::LayerUse;
use boma_vm::{RunRecord, VmError};
use camino::{Utf8Path, Utf8PathBuf};

use crate::golden::{self, Golden};
use crate::preflight::Inputs;
use crate::{Ctx, HarnessError};

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
    pub uses: Vec<LayerUse>,
}

fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}

fn store_error(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Vm(VmError::Backend(format!("layer store: {e}")))
}

impl RunLayers {
    /// Look up the deepest matching layer for `inputs`' steps, starting from `golden`.
    pub fn plan(ctx: &Ctx, inputs: &Inputs, golden: &Golden) -> Result<RunLayers, HarnessError> {
        let dir = ctx.settings.cache_dir.join(LAYERS_DIR);
        let store = LayerStore::open(&dir, StoreConfig::default()).map_err(store_error)?;
        let steps = step_recipes(
            &DiskTree::new(ctx.repo()),
            &inputs.profile,
            inputs.tier,
            &golden.sha512,
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
        let pinned = golden::pin(golden, &pin_dir, &ctx.settings.cache_dir)?;
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
        Ok(RunLayers {
            store,
            profile: inputs.host.clone(),
            steps,
            reused: layers,
            stored: Vec::new(),
            golden: pinned.path,
            uses,
        })
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

    /// Where the idempotence verdict of a chain of layers is kept: by the last layer's key.
    fn verdict_path(&self, ctx: &Ctx) -> Utf8PathBuf {
        let last = self.steps.last().map(|s| s.recipe.key());
        ctx.settings
            .cache_dir
            .join("layers-idempotence")
            .join(last.map_or_else(|| "none".to_owned(), |k| k.as_str().to_owned()))
    }

    /// A run over the same layers already applied every step twice and saw nothing change:
    /// what it said, to report instead of re-applying everything.
    pub fn idempotence_verdict(&self, ctx: &Ctx) -> Option<String> {
        std::fs::read_to_string(self.verdict_path(ctx)).ok()
    }

    /// Remember that this chain passed the idempotence check.
    pub fn record_idempotence(&self, ctx: &Ctx) {
        let path = self.verdict_path(ctx);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let when = boma_report::Timestamp::from_system_time(SystemTime::now());
        let _ = std::fs::write(
            &path,
            format!(
                "cached: a run on {} applied every step of these layers twice and nothing changed",
                when.rfc3339()
            ),
        );
    }

    /// The guest came back from step `index`'s layer (the power cycle after [`Self::take`]):
    /// later runs may boot from it. Until this, the store keeps the layer without booting it,
    /// so a step that breaks the boot fails a re-run at its reboot, as it failed this one.
    pub fn booted(&self, index: usize) {
        let key = self.steps[index].recipe.key();
        if let Err(e) = self.store.mark_booted(&key, now()) {
            say!(
                "layers: could not record that layer {} booted ({e}): later runs will not start from it",
                key.short()
            );
        }
    }

    /// Store the stopped VM's disk as step `index`'s layer, then give the VM a fresh overlay on
    /// it (the same path, so the hypervisor's definition stays valid). Called between the
    /// power-off and the start of a power cycle.
    pub fn take(&mut self, ctx: &Ctx, record: &RunRecord, index: usize) -> Result<(), VmError> {
        let step = &self.steps[index];
        let overlay = record.dir.join("overlay.qcow2");
        let taking = phase(format!("layer {}", step.label));
        let inserted = self
            .store
            .insert(
                NewLayer {
                    recipe: step.recipe.clone(),
                    profile: self.profile.clone(),
                    step_label: step.label.clone(),
                    golden: self.golden.clone(),
                },
                &overlay,
                now(),
            )
            .map_err(|e| VmError::Backend(format!("layer store: {e}")));
        let inserted = taking.close(inserted)?;
        say!(
            "layers: step {} stored as {}{}",
            index + 1,
            inserted.layer.key().short(),
            if inserted.stored {
                ""
            } else {
                " (another run had stored it first)"
            }
        );
        for key in &inserted.evicted.removed {
            say!("layers: evicted {} (the store's size bound)", key.short());
        }
        let layer_path = inserted.layer.path().to_owned();
        std::fs::remove_file(&overlay).map_err(|e| VmError::io(&overlay, e))?;
        ctx.machine.disks().create_overlay(&layer_path, &overlay)?;
        self.uses.retain(|u| u.step != step.label);
        self.uses.push(LayerUse {
            step: step.label.clone(),
            key: inserted.layer.key().as_str().to_owned(),
            reused: false,
            why_not: Some("stored by this run".into()),
        });
        self.stored.push(inserted.layer);
        Ok(())
    }
}
