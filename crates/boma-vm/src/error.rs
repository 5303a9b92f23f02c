//! What can go wrong with a test VM, typed so the binary can pick the exit status.

use std::time::Duration;

use boma_exec::ExecError;
use boma_exec::interrupt::Interrupted;
use camino::{Utf8Path, Utf8PathBuf};

use crate::run::diagnostics::BootVerdict;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Refused before anything was created (memory, disk, a run already live, a missing tool).
    #[error("{0}")]
    Preflight(String),
    #[error("no current run: start one with `cargo xtask up <host>` (or `cargo xtask it <host>`)")]
    NoRun,
    #[error("{0}")]
    Exec(#[source] ExecError),
    #[error("{0}")]
    Interrupted(#[from] Interrupted),
    #[error("{path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not happen within {}s{}", .after.as_secs(), hint_line(.hint))]
    Timeout {
        what: String,
        after: Duration,
        hint: String,
    },
    #[error(
        "the VM process of {name} is gone (it crashed or was killed); serial console: {console}"
    )]
    GuestGone { name: String, console: Utf8PathBuf },
    /// The guest will never answer: while a wait for it was going, its console showed its
    /// boot end in a kernel panic or in emergency mode. The wait ends at once, not at its limit.
    #[error("{name} will never answer ({during}): {verdict}; its serial console is {console}")]
    BootFailed {
        name: String,
        during: &'static str,
        verdict: Box<BootVerdict>,
        console: Utf8PathBuf,
    },
    #[error("cloud-init in {name} finished with errors:\n{detail}")]
    CloudInit { name: String, detail: String },
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("{0}")]
    Backend(String),
}

fn hint_line(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(": {hint}")
    }
}

impl From<ExecError> for VmError {
    fn from(e: ExecError) -> VmError {
        // An interrupted command is an interrupt, whatever it was doing.
        match e.interrupted() {
            Some(interrupted) => VmError::Interrupted(interrupted),
            None => VmError::Exec(e),
        }
    }
}

impl VmError {
    pub fn io(path: &Utf8Path, source: std::io::Error) -> VmError {
        VmError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Whether this is a refusal before anything was created (exit status 2).
    pub fn is_preflight(&self) -> bool {
        matches!(self, VmError::Preflight(_) | VmError::NoRun)
            || matches!(self, VmError::Exec(ExecError::NotFound { .. }))
    }

    pub fn interrupted(&self) -> Option<Interrupted> {
        match self {
            VmError::Interrupted(i) => Some(*i),
            _ => None,
        }
    }
}
