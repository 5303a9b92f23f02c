//! The control node: what this machine has, what a run needs of it, and the processes and
//! reservations the harness keeps on it. One home for every rule about "this machine", so the
//! doctor, `it`'s preflight and the reservation read the same facts and apply the same rules.
//!
//! - [`facts`], [`gather`], [`parse`]: what the machine has — programs on `PATH` (with their
//!   versions when asked), memory, disk, `/dev/kvm` and the cached KVM verdict, libvirt as seen
//!   from this network namespace — read once each, as plain values; nothing is created.
//! - [`tools`]: the programs the cycle and CI run, and which ones each step ([`Needs`])
//!   cannot start without.
//! - [`kvm`]: the accelerator and the probe verdict's file (the probe itself boots a guest, so
//!   it is `boma-vm`'s).
//! - [`judge`]: the verdicts, pure — the memory rule, disk, required programs, libvirt, KVM.
//! - [`procs`]: the one `/proc` walker (state, group, start time, user, program, arguments).
//! - [`stop`]: what `prune` stops — only what the spawn journal (`boma_exec::journal`)
//!   recorded and is still the same process — and how (SIGTERM, grace, SIGKILL).
//! - [`reserve`]: the machine-wide reservation store in the image cache directory, charging
//!   by [`judge`]'s memory rule.

pub mod facts;
pub mod gather;
pub mod judge;
pub mod kvm;
pub mod parse;
pub mod procs;
pub mod reserve;
pub mod stop;
pub mod tools;

pub use kvm::Accel;
pub use tools::{Needs, TOOLS};
