//! The layer store: read-only qcow2 layers in `<cache>/layers/`, each named by its key, each
//! backed by its parent layer or the golden image.
//!
//! Layout of the store directory:
//! - `<key>.qcow2`: the layer, mode 0444, its backing file the parent's `<key>.qcow2` in this
//!   directory (or the golden image), as an absolute path.
//! - `<key>.json`: [`LayerMeta`], written last: a qcow2 without it is no layer.
//! - `<key>.lock`: `flock`ed shared by every run whose VM's chain contains the layer
//!   ([`LayerHold`]); removal takes it exclusively without waiting, and skips what it cannot
//!   take.
//! - `<key>.qcow2.<pid>-<n>.part`: an insert's copy in progress, `flock`ed by its writer.
//! - `kept/<vm>.json`: the layers a VM's disk is backed by, for as long as its run directory
//!   exists ([`crate::keep`]): a failed run's kept VM outlives the process and its `flock`s.
//! - `.lock`: the store lock, held while layers are published, validated or removed (short:
//!   never across a copy or a VM run).
//!
//! **A published qcow2 is never replaced.** A disk is published with `link(2)`, which fails
//! when the name exists, and under the store lock only when nothing of that key is there (an
//! unproven or damaged layer nobody holds is removed first, like any removal). Whatever a VM
//! boots from the store therefore keeps its bytes and its inode until the last run backed by it
//! is over: a second run that computed the same key keeps booting its own disk
//! ([`Inserted::AlreadyPublished`]).
//!
//! Locks are taken in one order, a layer's hold before the store lock, and removal only ever
//! *tries* a hold lock, so two runs cannot deadlock. Exclusive hold locks are only ever taken
//! under the store lock, so a shared hold taken while holding the store lock never waits.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use boma_exec::ExecError;
use boma_name::VmName;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

pub use crate::error::StoreError;
use crate::error::io_err;
use crate::keep::{self, KEEP_DIR, KeepRecord};
use crate::key::{LayerKey, MISS_REASONS_SHOWN, Recipe, explain_miss};
use crate::lock::{self, LockError, Locked, Mode};
use crate::plan::{LayerInfo, PruneScope, RemovalPlan, Timestamp, plan_eviction, plan_prune};
use crate::qemu::{self, CheckOutcome};

/// The store's directory under the image cache (`$BOMA_IT_CACHE`).
pub const LAYERS_DIR: &str = "layers";

/// The default bound on the store's total size: 20 GiB.
///
/// A layer holds only the clusters its step wrote on top of its parent. askari's chain is two
/// layers: `base` (nftables, sshd: tens of MiB) and `docker_host`+`reverse_proxy` (Debian's
/// Docker and a Caddy image built in the guest: roughly 1–1.5 GiB), so one generation of both
/// profiles is about 3 GiB, and 20 GiB keeps five or six generations: enough that switching
/// between branches or profiles rebuilds nothing, while staying a small share of a workstation
/// disk that must also leave the 4 GiB a run needs free (ADR-025). Callers may set another
/// bound in [`StoreConfig`].
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 20 * 1024 * 1024 * 1024;

const STORE_LOCK: &str = ".lock";
const QCOW2: &str = "qcow2";
const JSON: &str = "json";
const LOCK: &str = "lock";
const PART: &str = "part";
/// Format of [`LayerMeta`] files.
const META_FORMAT: u32 = 1;

/// Distinguishes the part files of concurrent inserts within one process.
static PART_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How the store is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// After each insert, least recently used layers are evicted down to this many bytes.
    pub max_total_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

/// What a layer's qcow2 is backed by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Parent {
    /// The previous step's layer, in this store.
    Layer { key: LayerKey },
    /// The golden image (the first step's layer).
    Golden { path: Utf8PathBuf, digest: String },
}

/// `<key>.json`: what a layer is and what its key was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerMeta {
    pub format: u32,
    pub key: LayerKey,
    pub profile: String,
    pub step_index: usize,
    /// For people: `site.yml --tags base`.
    pub step_label: String,
    pub parent: Parent,
    /// The backing file the qcow2's header must name, exactly.
    pub backing_file: Utf8PathBuf,
    /// Everything the key was computed from, the per-file manifest included.
    pub recipe: Recipe,
    pub created: Timestamp,
    pub last_used: Timestamp,
    /// The qcow2's length: a layer never changes after it is stored, so any other length means
    /// it was damaged.
    pub size_bytes: u64,
    /// When a guest first booted from this layer and answered ([`LayerStore::mark_booted`]).
    /// Until then no run boots from it: a step that breaks the boot (a bad fstab, sshd on an
    /// address that is gone) stores a layer that a guest never comes back from, and a re-run
    /// must meet that failure at its reboot, as the first run did, not in its first boot.
    #[serde(default)]
    pub booted: Option<Timestamp>,
    /// What the power cycle that made this layer showed ([`LayerStore::record_verdict`]): the
    /// state the step's apply left against the state after that power cycle. Only a layer
    /// whose power cycle lost nothing is booted by later runs: one that lost something is kept
    /// (so a miss can say so) but every run applies its step again and shows the loss itself,
    /// and one never judged (its run ended first) proves nothing.
    #[serde(default)]
    pub verdict: Option<PowerCycleVerdict>,
}

/// The verdict of the power cycle that made a layer: a reboot test of its step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerCycleVerdict {
    pub at: Timestamp,
    /// What was lost, by the name of each failed check (`unit_inactive web.service`); empty
    /// when nothing was.
    pub lost: Vec<String>,
}

impl LayerMeta {
    fn info(&self) -> LayerInfo {
        LayerInfo {
            key: self.key.clone(),
            profile: self.profile.clone(),
            step_index: self.step_index,
            step_label: self.step_label.clone(),
            parent: match &self.parent {
                Parent::Layer { key } => Some(key.clone()),
                Parent::Golden { .. } => None,
            },
            size_bytes: self.size_bytes,
            created: self.created,
            last_used: self.last_used,
            booted: self.booted.is_some(),
            lost: self.verdict.as_ref().map(|v| v.lost.clone()),
        }
    }
}

/// What the caller knows of a layer it is about to insert. The key, the parent and the backing
/// file all follow from these, so they cannot disagree.
#[derive(Debug, Clone)]
pub struct NewLayer {
    pub recipe: Recipe,
    pub profile: String,
    pub step_label: String,
    /// The golden image the profile's chain starts from (its digest is the recipe's).
    pub golden: Utf8PathBuf,
}

/// A shared lock on a layer: while it is held, no prune or eviction removes the layer (nor,
/// since removal takes descendants along, any of its ancestors). Hold one for every layer in a
/// running VM's chain.
#[derive(Debug)]
pub struct LayerHold {
    key: LayerKey,
    _lock: Locked,
}

impl LayerHold {
    pub fn key(&self) -> &LayerKey {
        &self.key
    }
}

/// A valid, held layer: its qcow2 may be used as a backing file until this is dropped.
#[derive(Debug)]
pub struct Layer {
    meta: LayerMeta,
    path: Utf8PathBuf,
    hold: LayerHold,
}

impl Layer {
    pub fn key(&self) -> &LayerKey {
        &self.meta.key
    }

    /// The qcow2, to use as the backing file of the next overlay.
    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    pub fn meta(&self) -> &LayerMeta {
        &self.meta
    }

    pub fn hold(&self) -> &LayerHold {
        &self.hold
    }
}

/// Why a stored layer was not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defect {
    MetadataMissing,
    MetadataUnreadable {
        reason: String,
    },
    MetadataInconsistent {
        reason: String,
    },
    ImageMissing,
    SizeChanged {
        recorded: u64,
        found: u64,
    },
    ParentMissing {
        parent: Utf8PathBuf,
    },
    BackingChanged {
        expected: Utf8PathBuf,
        found: Option<String>,
    },
    BackingFormat {
        found: Option<String>,
    },
    Unreadable {
        reason: String,
    },
    CheckFailed {
        output: String,
    },
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::MetadataMissing => {
                write!(f, "its metadata is missing (an insert was cut short)")
            }
            Defect::MetadataUnreadable { reason } => {
                write!(f, "its metadata is unreadable: {reason}")
            }
            Defect::MetadataInconsistent { reason } => {
                write!(f, "its metadata is inconsistent: {reason}")
            }
            Defect::ImageMissing => write!(f, "its qcow2 is missing"),
            Defect::SizeChanged { recorded, found } => write!(
                f,
                "its qcow2 is {found} bytes, not the {recorded} it was stored with (truncated or rewritten)"
            ),
            Defect::ParentMissing { parent } => write!(f, "its backing file {parent} is gone"),
            Defect::BackingChanged { expected, found } => write!(
                f,
                "its qcow2 is backed by {}, not {expected}",
                found.as_deref().unwrap_or("nothing")
            ),
            Defect::BackingFormat { found } => write!(
                f,
                "its backing format is {}, not qcow2",
                found.as_deref().unwrap_or("unset")
            ),
            Defect::Unreadable { reason } => write!(f, "qemu-img cannot read it: {reason}"),
            Defect::CheckFailed { output } => write!(f, "qemu-img check failed: {output}"),
        }
    }
}

/// A defective layer that was dropped (with its descendants, whose backing would dangle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub defect: Defect,
    pub removed: Vec<LayerKey>,
    /// Layers that could not be removed because a run holds them (or a descendant).
    pub spared_busy: Vec<LayerKey>,
}

/// The result of [`LayerStore::lookup`].
#[derive(Debug)]
pub enum Lookup {
    Found(Box<Layer>),
    /// No layer has this key.
    Absent,
    /// A layer had this key but was not valid; it was dropped and must not be booted.
    Dropped(Dropped),
    /// A layer has this key but no guest has come back from it yet (its run's boot from it
    /// failed, or that run is still under way): kept, not booted.
    NotBooted,
    /// A guest came back from it, but its power cycle was never judged (its run ended first,
    /// or is still under way): kept, not booted.
    NotJudged,
    /// Its power cycle lost state: kept, so a miss can say so, never booted as healthy.
    LostState {
        lost: Vec<String>,
    },
}

/// Why the chain stopped at a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissCause {
    /// No layer of this profile was ever stored for this step.
    NeverBuilt,
    /// A layer of this profile and step is stored, but for other inputs.
    Changed {
        cached: LayerKey,
        reasons: Vec<String>,
    },
    Dropped(Dropped),
    /// The layer is stored but no guest has come back from it ([`Lookup::NotBooted`]).
    NotBooted,
    /// The layer's power cycle was never judged ([`Lookup::NotJudged`]).
    NotJudged,
    /// The layer's power cycle lost state ([`Lookup::LostState`]).
    LostState {
        lost: Vec<String>,
    },
}

/// The first step of a chain without a usable layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    pub step_index: usize,
    pub key: LayerKey,
    pub cause: MissCause,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counted from 1, as the harness names steps to people.
        let step = self.step_index + 1;
        match &self.cause {
            MissCause::NeverBuilt => write!(f, "step {step}: no layer stored yet"),
            MissCause::Changed { cached, reasons } => write!(
                f,
                "step {step}: layer {} is for other inputs: {}",
                cached.short(),
                reasons.join("; ")
            ),
            MissCause::NotBooted => write!(
                f,
                "step {step}: layer {} is stored, but no guest has come back from it (the boot from it failed, or its run is still under way)",
                self.key.short()
            ),
            MissCause::NotJudged => write!(
                f,
                "step {step}: layer {} is stored, but its power cycle was never judged (its run ended first, or is still under way)",
                self.key.short()
            ),
            MissCause::LostState { lost } => write!(
                f,
                "step {step}: layer {} lost state at the power cycle that stored it ({}): the step is applied again, so this run shows it",
                self.key.short(),
                lost.join(", ")
            ),
            MissCause::Dropped(dropped) => {
                write!(
                    f,
                    "step {step}: layer {} dropped: {}",
                    self.key.short(),
                    dropped.defect
                )
            }
        }
    }
}

/// The result of [`LayerStore::deepest_match`].
#[derive(Debug)]
pub struct ChainMatch {
    /// The layers of steps `0..layers.len()`, valid and held: the last is the one to boot from.
    pub layers: Vec<Layer>,
    /// Why the next step has no layer; `None` when every step has one.
    pub miss: Option<Miss>,
}

impl ChainMatch {
    /// The deepest valid layer and its step index.
    pub fn deepest(&self) -> Option<(usize, &Layer)> {
        self.layers
            .len()
            .checked_sub(1)
            .map(|i| (i, &self.layers[i]))
    }
}

/// What was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    pub removed: Vec<LayerKey>,
    pub freed_bytes: u64,
    pub spared_busy: Vec<LayerKey>,
}

/// The result of [`LayerStore::insert`].
#[derive(Debug)]
pub enum Inserted {
    /// This copy is the layer now, held: the caller's VM may boot from a fresh overlay on it
    /// (the bytes it just shut down, under a new header).
    Published {
        layer: Box<Layer>,
        /// What the size bound evicted afterwards.
        evicted: Removal,
    },
    /// A layer of this key was already published (another run that computed the same key was
    /// first), and a published layer is never replaced: this copy was discarded. The caller's
    /// VM keeps booting its own disk, which holds exactly what it shut down; another run's
    /// disk of the same key differs in run-time detail (Docker's bridge names, machine ids)
    /// that a reboot diff would read as lost. Later steps of the caller's chain then sit on a
    /// disk that is not in the store, so the caller stores none of them.
    AlreadyPublished { key: LayerKey },
}

fn lock_err(path: &Utf8Path) -> impl FnOnce(LockError) -> StoreError {
    let path = path.to_owned();
    move |e| match e {
        LockError::Io(source) => StoreError::Io {
            action: "lock",
            path,
            source,
        },
        LockError::Interrupted(i) => StoreError::Interrupted(i),
    }
}

/// What validation found.
enum Validity {
    Valid(Box<LayerMeta>),
    Absent,
    Defective(Defect),
}

/// An insert's part file: locked from creation until it is dropped, so that a sweep never
/// takes it from under its writer; its name is removed on drop (a published layer is another
/// name of the same inode).
struct PartFile {
    path: Utf8PathBuf,
    /// Holds the `flock`.
    file: Option<File>,
}

impl Drop for PartFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The layer store. See the module documentation for its layout and locking.
#[derive(Debug)]
pub struct LayerStore {
    dir: Utf8PathBuf,
    config: StoreConfig,
}

impl LayerStore {
    /// Opens (creating if needed) the store in `dir`, usually `<cache>/`[`LAYERS_DIR`]. The
    /// directory is made absolute and canonical, because layers name their parents by absolute
    /// path.
    ///
    /// The directory keeps the process's default mode, like the image cache around it: with
    /// libvirt's system instance, QEMU runs as another user and must reach the layers through
    /// it. Layers are disks, and may hold whatever a step wrote (the Let's Encrypt tiers put
    /// the vault's DNS token on the disk): the harness decides what is worth storing.
    pub fn open(dir: &Utf8Path, config: StoreConfig) -> Result<LayerStore, StoreError> {
        fs::create_dir_all(dir).map_err(io_err("create the layer store", dir))?;
        let real = fs::canonicalize(dir).map_err(io_err("resolve", dir))?;
        let dir = Utf8PathBuf::try_from(real).map_err(|e| StoreError::NotUtf8 {
            path: e.as_path().to_string_lossy().into_owned(),
        })?;
        Ok(LayerStore { dir, config })
    }

    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// Where the layer `key`'s qcow2 is (whether or not it is stored).
    pub fn qcow2_path(&self, key: &LayerKey) -> Utf8PathBuf {
        self.file(key, QCOW2)
    }

    fn file(&self, key: &LayerKey, extension: &str) -> Utf8PathBuf {
        self.dir.join(format!("{key}.{extension}"))
    }

    /// Holds `key` (shared), whether or not it is stored yet: see [`LayerHold`]. Waits only
    /// while a removal of that layer is under way.
    pub fn hold(&self, key: &LayerKey) -> Result<LayerHold, StoreError> {
        let path = self.file(key, LOCK);
        let lock = lock::wait(&path, Mode::Shared).map_err(lock_err(&path))?;
        Ok(LayerHold {
            key: key.clone(),
            _lock: lock,
        })
    }

    /// Keeps `keys` (every layer the VM `vm`'s disk is backed by) from removal for as long as
    /// `run_dir` exists, after this process and its [`LayerHold`]s are gone: a failed run's
    /// kept VM can be started again from its chain. Replaces the VM's earlier record. Write it
    /// only once `run_dir` exists (a record whose directory is gone is stale and swept), and
    /// while the chain is still held.
    pub fn keep_for(
        &self,
        vm: &VmName,
        run_dir: &Utf8Path,
        keys: impl IntoIterator<Item = LayerKey>,
    ) -> Result<(), StoreError> {
        let record = KeepRecord {
            run_dir: run_dir.to_owned(),
            keys: keys.into_iter().collect(),
        };
        keep::write(&self.dir.join(KEEP_DIR), vm, &record)
    }

    fn store_lock(&self) -> Result<Locked, StoreError> {
        let path = self.dir.join(STORE_LOCK);
        lock::wait(&path, Mode::Exclusive).map_err(lock_err(&path))
    }

    /// The layer `key`, if it is stored and valid; held, and its `last_used` set to `now`.
    /// A layer that fails any check (metadata, size, backing file, parent, `qemu-img check`)
    /// is removed with its descendants and reported as [`Lookup::Dropped`].
    pub fn lookup(&self, key: &LayerKey, now: Timestamp) -> Result<Lookup, StoreError> {
        let hold = self.hold(key)?;
        let guard = self.store_lock()?;
        match self.validate(key)? {
            Validity::Valid(meta) if meta.booted.is_none() => {
                drop(hold);
                Ok(Lookup::NotBooted)
            }
            Validity::Valid(meta) if meta.verdict.is_none() => {
                drop(hold);
                Ok(Lookup::NotJudged)
            }
            Validity::Valid(meta) if meta.verdict.as_ref().is_some_and(|v| !v.lost.is_empty()) => {
                drop(hold);
                Ok(Lookup::LostState {
                    lost: meta.verdict.map(|v| v.lost).unwrap_or_default(),
                })
            }
            Validity::Valid(mut meta) => {
                meta.last_used = now;
                self.write_meta(&meta)?;
                Ok(Lookup::Found(Box::new(Layer {
                    path: self.qcow2_path(key),
                    meta: *meta,
                    hold,
                })))
            }
            Validity::Absent => {
                drop(hold);
                self.discard_idle_lock(key)?;
                Ok(Lookup::Absent)
            }
            Validity::Defective(defect) => {
                // Our own hold would keep the layer from being removed.
                drop(hold);
                let removal = self.remove_planned(&guard, Some(key), |layers, busy| {
                    drop_plan(layers, key, busy)
                })?;
                Ok(Lookup::Dropped(Dropped {
                    defect,
                    removed: removal.removed,
                    spared_busy: removal.spared_busy,
                }))
            }
        }
    }

    /// The deepest layer of `chain` (the recipes of a profile's steps, in order) that is
    /// stored and valid, walking from the first step and stopping at the first miss. Every
    /// layer up to the deepest is returned held. The miss is explained against the most fitting
    /// stored layer of the same profile and step (one with the same parent first, then the most
    /// recently used), if there is one.
    pub fn deepest_match(
        &self,
        profile: &str,
        chain: &[Recipe],
        now: Timestamp,
    ) -> Result<ChainMatch, StoreError> {
        let mut layers = Vec::new();
        for (step_index, recipe) in chain.iter().enumerate() {
            let key = recipe.key();
            let cause = match self.lookup(&key, now)? {
                Lookup::Found(layer) => {
                    layers.push(*layer);
                    continue;
                }
                Lookup::Dropped(dropped) => MissCause::Dropped(dropped),
                Lookup::NotBooted => MissCause::NotBooted,
                Lookup::NotJudged => MissCause::NotJudged,
                Lookup::LostState { lost } => MissCause::LostState { lost },
                Lookup::Absent => self.explain(profile, step_index, recipe)?,
            };
            return Ok(ChainMatch {
                layers,
                miss: Some(Miss {
                    step_index,
                    key,
                    cause,
                }),
            });
        }
        Ok(ChainMatch { layers, miss: None })
    }

    fn explain(
        &self,
        profile: &str,
        step_index: usize,
        wanted: &Recipe,
    ) -> Result<MissCause, StoreError> {
        let candidates = self
            .scan()?
            .into_iter()
            .filter(|meta| meta.profile == profile && meta.step_index == step_index);
        let best = candidates.max_by_key(|meta| {
            (
                meta.recipe.previous == wanted.previous,
                meta.last_used,
                meta.key.clone(),
            )
        });
        Ok(match best {
            None => MissCause::NeverBuilt,
            Some(meta) => MissCause::Changed {
                reasons: explain_miss(wanted, &meta.recipe, MISS_REASONS_SHOWN),
                cached: meta.key,
            },
        })
    }

    /// Stores the VM disk `overlay` (a qcow2 whose guest was shut down cleanly, backed by the
    /// parent layer or, for the first step, the golden image) as the layer for `new.recipe`.
    ///
    /// The overlay is copied to a part file, its backing pointer rewritten to the parent's
    /// path in the store (`qemu-img rebase -u`: the content below is the same, only the header
    /// changes) and made read-only. Then, under the store lock, it is published only if no
    /// layer of that key is there: a proven one is never touched ([`Inserted::AlreadyPublished`]),
    /// an unproven or damaged one is removed first unless someone holds it (then this copy
    /// loses too). The name is made with `link(2)`, which never replaces a file, and the
    /// metadata is written last. The overlay itself is never modified. Then the store is
    /// evicted down to its size bound; the new layer is held, so it stays.
    pub fn insert(
        &self,
        new: NewLayer,
        overlay: &Utf8Path,
        now: Timestamp,
    ) -> Result<Inserted, StoreError> {
        let key = new.recipe.key();
        let (parent, backing) = match &new.recipe.previous {
            Some(parent) => (
                Parent::Layer {
                    key: parent.clone(),
                },
                self.qcow2_path(parent),
            ),
            None => {
                let golden = canonical(&new.golden)?;
                (
                    Parent::Golden {
                        path: golden.clone(),
                        digest: new.recipe.golden_digest.clone(),
                    },
                    golden,
                )
            }
        };

        // The unsafe rebase is only right if the overlay was written on top of `backing`.
        let info = qemu::info(overlay)?;
        if info.format != QCOW2 {
            return Err(StoreError::OverlayNotQcow2 {
                path: overlay.to_owned(),
                format: info.format,
            });
        }
        let found = info.full_backing_filename.clone();
        let same_backing = match &found {
            Some(found) => same_file(Utf8Path::new(found), &backing),
            None => false,
        };
        if !same_backing {
            return Err(StoreError::OverlayBacking {
                overlay: overlay.to_owned(),
                found,
                expected: backing,
            });
        }

        let mut part = PartFile {
            path: self.dir.join(format!(
                "{key}.{QCOW2}.{}-{}.{PART}",
                std::process::id(),
                PART_COUNTER.fetch_add(1, Ordering::Relaxed)
            )),
            file: None,
        };
        let size_bytes = self.copy_in(overlay, &mut part, &backing)?;

        let guard = self.store_lock()?;
        if let Parent::Layer { key: parent } = &parent
            && !(self.qcow2_path(parent).exists() && self.file(parent, JSON).exists())
        {
            return Err(StoreError::ParentMissing {
                key: parent.clone(),
            });
        }
        if !self.make_room_for(&guard, &key)? {
            return Ok(Inserted::AlreadyPublished { key });
        }
        let target = self.qcow2_path(&key);
        match fs::hard_link(&part.path, &target) {
            Ok(()) => {}
            // Someone published it outside the store lock (nothing of ours does): still never
            // replaced.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Ok(Inserted::AlreadyPublished { key });
            }
            Err(e) => return Err(io_err("publish", &target)(e)),
        }
        // Under the store lock no one holds a layer lock exclusively: this does not wait.
        let hold = self.hold(&key)?;
        let meta = LayerMeta {
            format: META_FORMAT,
            key: key.clone(),
            profile: new.profile,
            step_index: new.recipe.step_index,
            step_label: new.step_label,
            parent,
            backing_file: backing,
            recipe: new.recipe,
            created: now,
            last_used: now,
            size_bytes,
            booted: None,
            verdict: None,
        };
        self.write_meta(&meta)?;
        drop(guard);
        drop(part);

        let evicted = self.evict_lru(self.config.max_total_bytes)?;
        Ok(Inserted::Published {
            layer: Box::new(Layer {
                path: self.qcow2_path(&key),
                meta,
                hold,
            }),
            evicted,
        })
    }

    /// Under the store lock: whether `key` may be published. Nothing of it there: yes. A
    /// layer whose power cycle lost nothing: no, never replaced (runs boot it). Anything else
    /// — a layer whose power cycle lost state, an unjudged, unproven or damaged one, a metadata
    /// file without its qcow2 or the reverse — is removed like any removal, only if no one holds
    /// it; if someone does, no. No run boots such a layer (lookups skip it), so its removal
    /// never swaps a disk under a guest; without it one lossy power cycle would keep its key
    /// from ever holding a healthy layer again (seen: a harness fault judged askari's first step
    /// lossy, and every later run applied that step again and could store nothing). The new
    /// copy comes with its own power cycle's verdict; the lossy one's run reported its loss.
    fn make_room_for(&self, guard: &Locked, key: &LayerKey) -> Result<bool, StoreError> {
        let leftovers = [QCOW2, JSON].iter().any(|ext| self.file(key, ext).exists());
        if !leftovers {
            return Ok(true);
        }
        if let Validity::Valid(meta) = self.validate(key)?
            && meta.verdict.as_ref().is_some_and(|v| v.lost.is_empty())
        {
            return Ok(false);
        }
        let removal = self.remove_planned(guard, Some(key), |layers, busy| {
            drop_plan(layers, key, busy)
        })?;
        Ok(removal.removed.contains(key))
    }

    /// Records that a guest booted from the layer `key` and answered: from now on runs may
    /// boot from it ([`LayerMeta::booted`]). A layer whose metadata is absent or unreadable is
    /// left alone (the next lookup deals with it).
    pub fn mark_booted(&self, key: &LayerKey, now: Timestamp) -> Result<(), StoreError> {
        let _guard = self.store_lock()?;
        if let Some(Ok(mut meta)) = self.read_meta(key)?
            && meta.booted.is_none()
        {
            meta.booted = Some(now);
            self.write_meta(&meta)?;
        }
        Ok(())
    }

    /// Records the verdict of the power cycle that made the layer `key` (what it lost, by
    /// name; nothing when it lost nothing): from now on runs boot from it only if it lost
    /// nothing. The first verdict is kept. A layer whose metadata is absent or unreadable is
    /// left alone (the next lookup deals with it).
    pub fn record_verdict(
        &self,
        key: &LayerKey,
        lost: Vec<String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let _guard = self.store_lock()?;
        if let Some(Ok(mut meta)) = self.read_meta(key)?
            && meta.verdict.is_none()
        {
            meta.verdict = Some(PowerCycleVerdict { at: now, lost });
            self.write_meta(&meta)?;
        }
        Ok(())
    }

    /// Copies `overlay` to `part` (created and locked here), points the copy at `backing`,
    /// makes it read-only and durable; returns its length.
    fn copy_in(
        &self,
        overlay: &Utf8Path,
        part: &mut PartFile,
        backing: &Utf8Path,
    ) -> Result<u64, StoreError> {
        let path = part.path.clone();
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        lock::hold_open(&out).map_err(io_err("lock", &path))?;
        let out = part.file.insert(out);
        let mut source = File::open(overlay).map_err(io_err("open", overlay))?;
        io::copy(&mut source, out).map_err(io_err("copy the overlay to", &path))?;
        out.flush().map_err(io_err("write", &path))?;
        qemu::rebase_unsafe(&path, backing)?;
        out.set_permissions(Permissions::from_mode(0o444))
            .map_err(io_err("make read-only", &path))?;
        out.sync_all().map_err(io_err("sync", &path))?;
        let len = out.metadata().map_err(io_err("stat", &path))?.len();
        Ok(len)
    }

    /// Every layer whose metadata reads, sorted by profile, step and creation. No qemu-img:
    /// validity is checked on lookup.
    pub fn list(&self) -> Result<Vec<LayerInfo>, StoreError> {
        let mut infos: Vec<LayerInfo> = self.scan()?.iter().map(LayerMeta::info).collect();
        infos.sort_by(|a, b| {
            (&a.profile, a.step_index, a.created, &a.key).cmp(&(
                &b.profile,
                b.step_index,
                b.created,
                &b.key,
            ))
        });
        Ok(infos)
    }

    /// Removes every layer not in use, and leftovers of interrupted inserts.
    pub fn prune_all(&self) -> Result<Removal, StoreError> {
        let guard = self.store_lock()?;
        self.sweep(&guard)?;
        self.remove_planned(&guard, None, |layers, busy| {
            plan_prune(layers, Timestamp(0), PruneScope::All, busy)
        })
    }

    /// Removes layers whose whole subtree went unused for longer than `age` before `now`.
    pub fn prune_older_than(&self, age: Duration, now: Timestamp) -> Result<Removal, StoreError> {
        let guard = self.store_lock()?;
        self.sweep(&guard)?;
        self.remove_planned(&guard, None, |layers, busy| {
            plan_prune(layers, now, PruneScope::UnusedFor(age), busy)
        })
    }

    /// Removes least recently used layers until the store holds at most `max_total_bytes`
    /// (or only layers in use remain).
    pub fn evict_lru(&self, max_total_bytes: u64) -> Result<Removal, StoreError> {
        let guard = self.store_lock()?;
        self.sweep(&guard)?;
        self.remove_planned(&guard, None, |layers, busy| {
            plan_eviction(layers, max_total_bytes, busy)
        })
    }

    /// Runs a removal plan under the store lock: tries each layer's hold lock exclusively (the
    /// ones it cannot take are busy), plans with that, removes what the plan says while those
    /// locks are held. `extra` is a key whose metadata may not read (a defective layer), added
    /// so that the plan can still name it.
    fn remove_planned(
        &self,
        _guard: &Locked,
        extra: Option<&LayerKey>,
        plan: impl FnOnce(&[LayerInfo], &BTreeSet<LayerKey>) -> RemovalPlan,
    ) -> Result<Removal, StoreError> {
        let mut layers: Vec<LayerInfo> = self.scan()?.iter().map(LayerMeta::info).collect();
        if let Some(key) = extra
            && !layers.iter().any(|l| &l.key == key)
        {
            let size = fs::metadata(self.qcow2_path(key)).map_or(0, |m| m.len());
            layers.push(LayerInfo {
                key: key.clone(),
                profile: String::new(),
                step_index: 0,
                step_label: String::new(),
                parent: None,
                size_bytes: size,
                created: Timestamp(0),
                last_used: Timestamp(0),
                booted: false,
                lost: None,
            });
        }
        let mut locks = Vec::new();
        // Kept VMs whose process is gone hold their chains through their records.
        let mut busy = keep::live_keys(&self.dir.join(KEEP_DIR), true)?;
        for layer in &layers {
            let path = self.file(&layer.key, LOCK);
            match lock::try_briefly(&path, Mode::Exclusive).map_err(lock_err(&path))? {
                Some(lock) => locks.push((layer.key.clone(), lock)),
                None => {
                    busy.insert(layer.key.clone());
                }
            }
        }
        let plan = plan(&layers, &busy);
        for key in &plan.remove {
            self.remove_files(key)?;
        }
        drop(locks);
        Ok(Removal {
            removed: plan.remove,
            freed_bytes: plan.freed_bytes,
            spared_busy: plan.spared_busy,
        })
    }

    /// Deletes a layer's files, metadata first (a qcow2 without metadata is never used), then
    /// its lock file, which the caller holds exclusively.
    fn remove_files(&self, key: &LayerKey) -> Result<(), StoreError> {
        for extension in [JSON, QCOW2, LOCK] {
            let path = self.file(key, extension);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path)(e)),
            }
        }
        Ok(())
    }

    /// Removes the lock file of a key that has no layer, unless someone holds it.
    fn discard_idle_lock(&self, key: &LayerKey) -> Result<(), StoreError> {
        let path = self.file(key, LOCK);
        if let Some(_lock) = lock::try_briefly(&path, Mode::Exclusive).map_err(lock_err(&path))? {
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
        Ok(())
    }

    /// Under the store lock: removes what interrupted inserts and removals left (part files no
    /// one writes, a qcow2 or metadata without its partner, lock files of no layer).
    fn sweep(&self, _guard: &Locked) -> Result<(), StoreError> {
        let mut keys = BTreeSet::new();
        for name in self.names()? {
            if name.ends_with(&format!(".{PART}")) {
                let path = self.dir.join(&name);
                // A part file being written is locked by its writer.
                if lock::try_existing(&path)
                    .map_err(io_err("lock", &path))?
                    .is_some()
                {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            if let Some((stem, _)) = name.rsplit_once('.')
                && let Ok(key) = LayerKey::parse(stem)
            {
                keys.insert(key);
            }
        }
        for key in keys {
            let path = self.file(&key, LOCK);
            let Some(_lock) = lock::try_briefly(&path, Mode::Exclusive).map_err(lock_err(&path))?
            else {
                continue;
            };
            let meta_reads = matches!(self.read_meta(&key)?, Some(Ok(_)));
            if !(meta_reads && self.qcow2_path(&key).exists()) {
                self.remove_files(&key)?;
            }
        }
        Ok(())
    }

    fn names(&self) -> Result<Vec<String>, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The metadata of every layer whose metadata reads.
    fn scan(&self) -> Result<Vec<LayerMeta>, StoreError> {
        let mut metas = Vec::new();
        for name in self.names()? {
            let Some(stem) = name.strip_suffix(&format!(".{JSON}")) else {
                continue;
            };
            let Ok(key) = LayerKey::parse(stem) else {
                continue;
            };
            if let Some(Ok(meta)) = self.read_meta(&key)? {
                metas.push(meta);
            }
        }
        Ok(metas)
    }

    /// `None` when there is no metadata file; `Some(Err(reason))` when it does not parse.
    fn read_meta(&self, key: &LayerKey) -> Result<Option<Result<LayerMeta, String>>, StoreError> {
        let path = self.file(key, JSON);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(
                serde_json::from_str::<LayerMeta>(&text).map_err(|e| e.to_string()),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Some(Err(e.to_string()))),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Writes `<key>.json` atomically (the caller holds the store lock).
    fn write_meta(&self, meta: &LayerMeta) -> Result<(), StoreError> {
        let path = self.file(&meta.key, JSON);
        let part = self.dir.join(format!("{}.{JSON}.{PART}", meta.key));
        let text = serde_json::to_string_pretty(meta).expect("metadata serializes");
        let mut file = File::create(&part).map_err(io_err("create", &part))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(io_err("write", &part))?;
        fs::rename(&part, &path).map_err(io_err("publish", &path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", &self.dir))?;
        Ok(())
    }

    /// Every check a layer must pass before it is booted; cheap ones first.
    fn validate(&self, key: &LayerKey) -> Result<Validity, StoreError> {
        let qcow2 = self.qcow2_path(key);
        let meta = match self.read_meta(key)? {
            None if qcow2.exists() => return Ok(Validity::Defective(Defect::MetadataMissing)),
            None => return Ok(Validity::Absent),
            Some(Err(reason)) => {
                return Ok(Validity::Defective(Defect::MetadataUnreadable { reason }));
            }
            Some(Ok(meta)) => Box::new(meta),
        };
        if let Err(reason) = self.consistent(key, &meta) {
            return Ok(Validity::Defective(Defect::MetadataInconsistent { reason }));
        }
        let found = match fs::metadata(&qcow2) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Validity::Defective(Defect::ImageMissing));
            }
            Err(e) => return Err(io_err("stat", &qcow2)(e)),
        };
        if found != meta.size_bytes {
            return Ok(Validity::Defective(Defect::SizeChanged {
                recorded: meta.size_bytes,
                found,
            }));
        }
        let parent_there = match &meta.parent {
            Parent::Layer { key } => self.qcow2_path(key).exists() && self.file(key, JSON).exists(),
            Parent::Golden { path, .. } => path.exists(),
        };
        if !parent_there {
            return Ok(Validity::Defective(Defect::ParentMissing {
                parent: meta.backing_file,
            }));
        }
        let info = match qemu::info(&qcow2) {
            Ok(info) => info,
            Err(StoreError::Exec(e @ ExecError::Failed { .. })) => {
                return Ok(Validity::Defective(Defect::Unreadable {
                    reason: e.to_string(),
                }));
            }
            Err(StoreError::QemuImgOutput { reason, .. }) => {
                return Ok(Validity::Defective(Defect::Unreadable { reason }));
            }
            Err(e) => return Err(e),
        };
        if info.backing_filename.as_deref() != Some(meta.backing_file.as_str()) {
            return Ok(Validity::Defective(Defect::BackingChanged {
                expected: meta.backing_file,
                found: info.backing_filename,
            }));
        }
        if info.backing_format.as_deref() != Some(QCOW2) {
            return Ok(Validity::Defective(Defect::BackingFormat {
                found: info.backing_format,
            }));
        }
        match qemu::check(&qcow2)? {
            CheckOutcome::Clean => Ok(Validity::Valid(meta)),
            CheckOutcome::Broken { output, .. } => {
                Ok(Validity::Defective(Defect::CheckFailed { output }))
            }
        }
    }

    /// The metadata agrees with its file name, its recipe and this store.
    fn consistent(&self, key: &LayerKey, meta: &LayerMeta) -> Result<(), String> {
        if meta.format != META_FORMAT {
            return Err(format!(
                "metadata format {} is not {META_FORMAT}",
                meta.format
            ));
        }
        if &meta.key != key {
            return Err(format!("it names key {}", meta.key));
        }
        if &meta.recipe.key() != key {
            return Err("its recipe hashes to another key".to_owned());
        }
        if meta.step_index != meta.recipe.step_index {
            return Err("its step index differs from its recipe's".to_owned());
        }
        let expected_backing = match (&meta.parent, &meta.recipe.previous) {
            (Parent::Layer { key: parent }, Some(previous)) if parent == previous => {
                self.qcow2_path(parent)
            }
            (Parent::Golden { path, digest }, None) if digest == &meta.recipe.golden_digest => {
                path.clone()
            }
            _ => return Err("its parent differs from its recipe's".to_owned()),
        };
        if meta.backing_file != expected_backing {
            return Err(format!(
                "its backing file {} is not its parent {expected_backing}",
                meta.backing_file
            ));
        }
        Ok(())
    }
}

/// The plan for dropping a defective layer: it and its descendants, except what is busy (and
/// the ancestors, within that subtree, of what is busy).
fn drop_plan(layers: &[LayerInfo], key: &LayerKey, busy: &BTreeSet<LayerKey>) -> RemovalPlan {
    // The subtree of `key`, pruned as a whole: `plan_prune` over just those layers.
    let mut subtree = BTreeSet::from([key.clone()]);
    loop {
        let before = subtree.len();
        for layer in layers {
            if layer.parent.as_ref().is_some_and(|p| subtree.contains(p)) {
                subtree.insert(layer.key.clone());
            }
        }
        if subtree.len() == before {
            break;
        }
    }
    let members: Vec<LayerInfo> = layers
        .iter()
        .filter(|l| subtree.contains(&l.key))
        .cloned()
        .collect();
    plan_prune(&members, Timestamp(0), PruneScope::All, busy)
}

fn canonical(path: &Utf8Path) -> Result<Utf8PathBuf, StoreError> {
    let real = fs::canonicalize(path).map_err(io_err("resolve", path))?;
    Utf8PathBuf::try_from(real).map_err(|e| StoreError::NotUtf8 {
        path: e.as_path().to_string_lossy().into_owned(),
    })
}

/// Whether two paths name the same existing file (through links and `..`).
fn same_file(a: &Utf8Path, b: &Utf8Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
