//! Reaching the guest: SSH with the harness's own key pair.

pub mod keys;
pub mod ssh;
