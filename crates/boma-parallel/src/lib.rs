//! Several profiles in one `cargo xtask it`: which ones ([`select`]), how many may run at once
//! on this machine ([`bounds`]: `-j N`, the memory left to guests, the cores), each run as a
//! child process with its own log and report ([`child`]) by a scheduler that starts them in
//! turn ([`schedule`]), and one report of them all ([`combine`]) — in which every host has its
//! line: a host an interrupt kept from starting reads `interrupted`, a child that died without
//! reporting (the OOM killer, SIGKILL) reads `error` once the parent removed what it left.
//!
//! The caller (xtask) gives what only it knows: the child's command line, the machine's
//! available memory, and how to remove what a killed child left (the harness's business).

pub mod bounds;
pub mod child;
pub mod combine;
pub mod schedule;
pub mod select;

pub use bounds::{Bounds, Charge, VCPUS_PER_CORE};
pub use child::{ChildRun, Children, Cleanup, Ended};
pub use combine::combine;
pub use schedule::{Job, Turn, run_all};
pub use select::{Shard, dedup, shard_of};
