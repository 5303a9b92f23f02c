//! Content-addressed disk layers for the integration harness: after each apply step of a
//! profile, the VM's disk is kept as a read-only qcow2 layer keyed by everything that
//! determines it, so that a re-run starts from the deepest layer whose key still matches and
//! applies only the remaining steps.
//!
//! - [`reach`](mod@reach) (pure): the repository files one step can read, and why each is included.
//! - [`key`] (pure): the [`Recipe`] of a layer (golden image digest, groups, step, reached
//!   files' hashes, the run's inputs besides the repository, previous key), its [`LayerKey`],
//!   and [`explain_miss`].
//! - [`installed`] (reads the controller): what the venv has installed, and the files Ansible
//!   loads from the controller outside the repository.
//! - [`plan`] (pure): what eviction and pruning remove.
//! - [`store`] (effects): [`LayerStore`] in `<cache>/layers/`: insert, validated lookup,
//!   deepest match, holds, prune, eviction. The only effects are file operations, `flock`s and
//!   `qemu-img` (through `boma_exec`); times come from the caller.
//!
//! The harness's side: [`step_recipes`] for the profile, [`LayerStore::deepest_match`], boot
//! from the deepest layer (or the golden image) and apply the remaining steps; after each,
//! shut the guest down cleanly and [`LayerStore::insert`] its disk.

mod chain;
mod error;
pub mod installed;
pub mod keep;
pub mod key;
mod lock;
pub mod outside;
pub mod path;
pub mod plan;
mod qemu;
pub mod reach;
pub mod store;
pub mod tree;

pub use chain::{StepRecipe, step_recipes};
pub use installed::{controller_files, venv_packages};
pub use key::{
    FileDigest, KEY_FORMAT, LayerKey, Manifest, NotAKey, Recipe, RunInputs, explain_miss, manifest,
};
pub use path::{NotInRepo, RepoPath};
pub use plan::{LayerInfo, PruneScope, RemovalPlan, Timestamp, plan_eviction, plan_prune};
pub use reach::{Reach, ReachError, Reached, StepFiles, Why, playbook_path, reach};
pub use store::{
    ChainMatch, DEFAULT_MAX_TOTAL_BYTES, Defect, Dropped, Inserted, LAYERS_DIR, Layer, LayerHold,
    LayerMeta, LayerStore, Lookup, Miss, MissCause, NewLayer, Parent, PowerCycleVerdict, Removal,
    StoreConfig, StoreError,
};
pub use tree::{DiskTree, MemoryTree, RepoTree, TreeError};
