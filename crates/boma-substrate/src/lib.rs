//! The VM substrate installed on this machine the first time — by applying the
//! `integration_test` role to it, exactly as CI did by hand
//! (`.venv/bin/ansible-playbook -i inventories/ci/hosts.yml playbooks/workstation.yml`) — and
//! nothing at all once everything is there. `cargo xtask substrate` (which `make
//! test-integration` runs before the cycle) is its only caller; nothing else installs anything
//! (`cargo xtask doctor` only looks).
//!
//! - [`plan`]: whether and how the role can run (root, passwordless sudo, or a refusal that
//!   carries the exact command to run by hand) and its arguments — pure;
//! - [`ensure`]: the effect — find what is missing, run the role, check again.

mod error;
mod install;
pub mod plan;

pub use error::SubstrateError;
pub use install::{SubstrateOutcome, ensure};
