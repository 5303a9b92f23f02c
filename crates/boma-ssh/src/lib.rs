//! The one place that decides an ssh command line to a run's VM. Pure: plain values in, argv
//! out; no file, environment, clock or process is touched here.
//!
//! Why it holds whatever Ansible, a variable or a config file says:
//!
//! - **OpenSSH keeps the first value it sees** for each option (`ssh_config(5)`: "the first
//!   obtained value will be used"), and the command line is read before any config file.
//!   [`pinned_options`] come first in every argv this crate builds, so nothing after them can
//!   change where ssh connects, as whom, with which key or through which proxy.
//! - **No config file applies**: `-F /dev/null` replaces `~/.ssh/config` and makes ssh skip
//!   `/etc/ssh/ssh_config`, so a `Host *` block with a `ProxyJump` never reaches the run.
//! - **Nothing of Ansible's options survives**: [`wrap`] parses ssh's argv grammar, keeps only
//!   the tty, quiet and verbose flags and the control commands that act on the run's own
//!   control socket, and rebuilds the command line from the [`Table`]. Options that add rather
//!   than replace (`-i`, `-L`/`-R`/`-D`, `-o SendEnv`), and a second `-F` (which ssh takes
//!   last-wins), are dropped with the rest rather than outvoted.
//! - **The destination is looked up, never passed on**: a destination that is not one of the
//!   run's VMs (by inventory name or address) is refused; a known one becomes the VM's alias
//!   after `--`, and `-o HostName=` (first, pinned) says where that is.
//! - **The operator's agent is never asked**: `IdentityAgent=none` and `IdentitiesOnly=yes`,
//!   so only the harness's key is offered.

mod endpoint;
mod table;
mod wrap;

pub use endpoint::{
    Control, ControlCommand, Endpoint, EndpointError, EndpointSpec, MAX_CONTROL_DIR, pinned_options,
};
pub use table::{Table, TableEntry, TableEntrySpec, TableError, TableSpec};
pub use wrap::{FLAGS, Refusal, VALUE_OPTIONS, wrap};
