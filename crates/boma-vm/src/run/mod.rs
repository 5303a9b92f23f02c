//! A run's files: the layout of a VM's run directory, the record of the live VM and the run
//! lock, what `prune` removes, and the diagnostics bundle of a failed run.

pub mod diagnostics;
pub mod dir;
pub mod prune;
pub mod record;
