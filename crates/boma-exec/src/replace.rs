//! Replacing this process with another program (`exec(2)`): for a wrapper that must hand its
//! caller's pipes, terminal and process id straight to the program it decided on (the run's ssh
//! wrapper becomes `ssh`). Nothing is spawned, so nothing is journaled: the program keeps the
//! pid the caller started and stops with it.

use std::os::unix::process::CommandExt as _;
use std::path::Path;

/// Become `program` with `args` (the environment and open files unchanged). Returns only when
/// that failed, with why.
#[allow(clippy::disallowed_methods)] // The one exec of the workspace (clippy.toml).
pub fn replace_process(program: &Path, args: &[String]) -> std::io::Error {
    std::process::Command::new(program).args(args).exec()
}
