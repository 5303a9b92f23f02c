//! The one way boma runs an external command.
//!
//! Every command is echoed to stderr as `+ prog args…` (that echo is the harness's command
//! log), runs in its own process group so that a timeout or an interrupt can stop it together
//! with its children, and fails with a typed error that names the command, its exit status and
//! the tail of its output. Secrets registered with [`redact::register`] never reach the log or
//! an error message. With [`journal::record_into`], every spawn is also recorded (pid, process
//! group, start time, user, program) so that `prune` can later stop exactly what the harness
//! started. The one other way a program starts is [`replace_process`]: this process becomes it
//! (`exec`).
//!
//! Commands are built with `xshell::cmd!` (arguments are never passed through a shell) and run
//! with [`CmdExt::exec`]:
//!
//! ```no_run
//! use boma_exec::CmdExt;
//! let sh = xshell::Shell::new().unwrap();
//! let path = "/tmp/x.qcow2";
//! let info = xshell::cmd!(sh, "qemu-img info --output=json {path}").exec().read().unwrap();
//! ```

pub mod interrupt;
pub mod journal;
pub mod procfs;
pub mod progress;
pub mod redact;
mod replace;
mod run;
mod tools;

pub use replace::replace_process;
pub use run::{Captured, CmdExt, ExecError, Run, Started};
pub use tools::{find_on_path, on_path, package_hint};
