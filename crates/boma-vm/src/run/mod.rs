//! A run's files: the record of the live VM and the run lock, what `prune` removes, and the
//! diagnostics bundle of a failed run.

pub mod diagnostics;
pub mod prune;
pub mod record;
