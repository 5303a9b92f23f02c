//! The integration cycle an operator runs before touching a live host: preflight, boot a VM
//! that mirrors the host, apply the real playbooks, reboot it for real, check from inside and
//! from the controller, collect diagnostics on failure, tear down — and report all of it.
//!
//! The rooms:
//! - [`cycle`]: `it`, the whole cycle for one profile, and its report;
//! - [`steps`]: `up`, `apply`, `reboot`, `assert`, `down`, `console`, `prune`, `start` one
//!   at a time, and the playbook runs the cycle shares with them;
//! - `preflight`: every refusal, before anything is fetched, built, probed or created;
//! - `backend`: the operator's backend choice resolved against libvirt's verdict (pure);
//! - `diff` and `checks`: the reboot diff run, and every check judged (pure);
//! - `idempotence`: the second apply's evidence, as the `boma_changes` callback proves it (pure);
//! - `vm`, `golden`, `ansible`, `real_inventory`, `probe`, `files`: booting and the failure
//!   policy, the golden image, `ansible-playbook` (and the scrubbed environment of every Ansible
//!   process), the real inventory as `ansible-inventory` lists it, the controller's port
//!   probes, the run's own files;
//! - [`fleet`]: `it` for a fleet — several profiles on one private segment, rebooted in turn
//!   and all at once, every member captured and diffed after every round (ADR-027);
//! - [`connect`]: the run's ssh wrapper, its table and shims, the control directory;
//! - [`Machine`]: every effect on this machine, as narrow traits a fake can stand in for.

mod ansible;
mod backend;
mod checks;
pub mod connect;
pub mod cycle;
mod diff;
mod error;
mod files;
pub mod fleet;
pub mod golden;
mod guest_file;
mod idempotence;
mod layers;
mod machine;
mod preflight;
pub mod probe;
mod real_inventory;
mod report;
mod settings;
pub mod steps;
mod verify;
mod vm;

pub use ansible::{
    AnsibleEnv, ChangedTask, EnvPlan, PlaybookCall, ansible_env, dropped_lines, inherited_env,
    parse_changes, playbook_env, run_with_env,
};
pub use backend::{BackendChoice, Resolved, resolve};
pub use cycle::{ItOptions, RunOutcome, it};
pub use error::{ExitClass, HarnessError};
pub use files::RunFiles;
pub use machine::{Ansible, HostProbe, Machine, PortProber, Provisioner, RealMachine};
pub use report::single as single_report;
pub use settings::{Ctx, ImageSource, Settings, WaitOverrides};
pub use steps::{apply, assert, console, down, prune, reboot, remove_orphan, start, up};
pub use verify::VerifyResults;
pub use vm::RunId;

/// The error and its causes on one line, each cause once (a wrapper that repeats its source's
/// message is not printed twice).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut last = message.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !last.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        last = text;
        source = cause.source();
    }
    message
}
