//! The control node's resources, as the harness uses them: the processes it spawned (found
//! again by pid and start time, stopped with their process group) and the machine-wide
//! reservations that keep concurrent runs within the memory and VM-count budget.
//!
//! - [`procs`]: reading `/proc` (state, group, start time, resident memory, boot id).
//! - [`stop`]: what `prune` stops — only what the spawn journal (`boma_exec::journal`)
//!   recorded and is still the same process — and how (SIGTERM, grace, SIGKILL).
//! - [`reserve`]: the reservation store in the image cache directory, and its pure policy.

pub mod procs;
pub mod reserve;
pub mod stop;
