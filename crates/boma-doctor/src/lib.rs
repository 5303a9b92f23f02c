//! Whether this machine can run boma's integration cycle, and what to do when it cannot.
//!
//! The control node's facts and rules are `boma_host`'s (the same `it`'s preflight and the
//! reservation use); the doctor adds the repository's facts and words every verdict:
//! - [`Facts::gather`] looks (tools and their versions, KVM, memory, disk, libvirt, the image
//!   cache, the Ansible venv). It creates nothing, boots nothing and installs nothing.
//! - [`diagnose`] / [`diagnose_for`] judge: facts in, one [`Line`] per subject out, each
//!   `Ok`, `Warn` or `Problem` with its fix; `it` can run when no line is a `Problem`.
//! - [`render`] turns a diagnosis into the text the operator reads.
//!
//! `cargo xtask doctor` prints everything; `it`'s preflight prints the lines of what its step
//! [`Needs`]; `cargo xtask substrate` uses [`locate_tools`] and [`missing_substrate`] to
//! decide whether to install anything at all.

mod diagnose;
mod facts;
mod gather;
pub mod parse;

use boma_host::facts::ToolFact;

pub use boma_host::Needs;
pub use boma_host::gather::{debian_codename, locate_tools};
pub use diagnose::{Diagnosis, Line, Status, describe_age, diagnose, diagnose_for, render};
pub use facts::{
    DiskFacts, Facts, ImageCacheFacts, ImageCheck, ImageFact, MemoryFacts, ProfileMemory,
    VenvAnsible, VenvFacts,
};
pub use gather::VENV_ANSIBLE_PLAYBOOK;

/// A program the `integration_test` role installs that is not on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTool {
    pub program: &'static str,
    /// Its Debian package on this release.
    pub package: String,
    /// What the harness or CI runs it for.
    pub why: &'static str,
}

/// Every missing program, with its package: what applying the `integration_test` role
/// installs (every program of [`boma_host::TOOLS`] is in its package list). Pure.
pub fn missing_substrate(tools: &[ToolFact], codename: Option<&str>) -> Vec<MissingTool> {
    tools
        .iter()
        .filter(|fact| !fact.state.is_present())
        .map(|fact| MissingTool {
            program: fact.tool.program,
            package: fact.tool.package.name(codename),
            why: fact.tool.purpose.why(),
        })
        .collect()
}
