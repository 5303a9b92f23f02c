//! The integration cycle an operator runs before touching a live host: preflight, boot a VM
//! that mirrors the host, apply the real playbooks, reboot it for real, verify from the
//! controller, collect diagnostics on failure, tear down.
//!
//! Each step is a function over a [`Ctx`]; `it` chains them and owns the keep-or-remove
//! decision. Rendering lives in the pure crates, hypervisors in `boma-vm`.

mod ansible;
mod error;
pub mod golden;
mod machine;
mod preflight;
mod settings;
mod steps;
pub mod verify;

pub use error::HarnessError;
pub use machine::{Machine, RealMachine};
pub use preflight::{Plan, tool_missing};
pub use settings::{BackendChoice, Ctx, ImageSource, Settings};
pub use steps::{ItOptions, apply, assert, console, down, it, prune, reboot, up};
