//! The integration cycle an operator runs before touching a live host: preflight, boot a VM
//! that mirrors the host, apply the real playbooks, reboot it for real, check from inside and
//! from the controller, collect diagnostics on failure, tear down — and report all of it.
//!
//! The rooms, from the cycle down:
//! - [`cycle`]: `it`, the whole cycle for one profile, read top down: each phase a call into
//!   the room below that does it; `outcome`: how a run ended, a RED profile judged by its
//!   `expect`;
//! - [`steps`]: `up`, `apply`, `reboot`, `assert`, `down`, `console`, `prune`, `start`, one at a
//!   time;
//! - `preflight`: every refusal, before anything is fetched, built, probed or created;
//! - `boot`: the VM's memory reservation, its image, its seed, `up`; `layers`: disk layers in
//!   a run; `fate`: what becomes of a booted VM (the failure policy, the keep policy);
//! - `playbooks`: the playbook runs against one VM (apply a step, the idempotence pass, a verify
//!   playbook) and the run files they read; `guest_state`: the guest's state captured with the controller's probes, two
//!   captures compared; `guest_file`: one file of the guest, over the harness's own ssh;
//! - `files`: the harness's own files (the run's records, named by `boma_vm::RunDir`), written
//!   through it — but the connection directory, which `connect` writes;
//! - `checks`, `idempotence`, `verify`, `backend`, `report`: pure judges and renderers;
//! - [`Ctx`]: the settings and the [`Machine`] — every effect on this machine, as narrow traits
//!   a fake can stand in for; their real side is `ansible` (`ansible-playbook` and the
//!   scrubbed environment of every Ansible process), [`golden`], [`probe`] (the controller's
//!   port probes), `real_inventory`;
//! - [`fleet`]: `it` for a fleet — several profiles on one private segment, rebooted in turn
//!   and all at once, every member captured and diffed after every round (ADR-027);
//! - [`connect`]: the run's ssh wrapper, its table and shims, the control directory.

mod ansible;
mod backend;
mod boot;
mod checks;
pub mod connect;
mod ctx;
pub mod cycle;
mod error;
mod fate;
mod files;
pub mod fleet;
pub mod golden;
mod guest_file;
mod guest_state;
mod idempotence;
mod layers;
mod machine;
mod outcome;
mod playbooks;
mod preflight;
pub mod probe;
mod real_inventory;
mod report;
mod run_id;
mod settings;
pub mod steps;
mod verify;

pub use ansible::{
    AnsibleEnv, ChangedTask, EnvPlan, PlaybookCall, ansible_env, dropped_lines, inherited_env,
    parse_changes, playbook_env, run_with_env,
};
pub use backend::{BackendChoice, Resolved, resolve};
pub use ctx::Ctx;
pub use cycle::{ItOptions, RunOutcome, it};
pub use error::{ExitClass, HarnessError, error_chain};
pub use machine::{
    Ansible, HostProbe, Machine, MemoryReservations, PortProber, Processes, Provisioner,
    RealMachine, ReservationStore,
};
pub use report::single as single_report;
pub use run_id::RunId;
pub use settings::{ImageSource, Settings, WaitOverrides};
pub use steps::{apply, assert, console, down, prune, reboot, remove_orphan, start, up};
pub use verify::VerifyResults;
