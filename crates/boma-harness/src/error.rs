//! The harness's failures, typed until the edge, each with the exit class it means.
//!
//! The class is decided where an error is raised, by which variant is raised: a refusal before
//! anything was created is [`HarnessError::Refused`] (or a typed input error that can only
//! happen in preflight), everything after is a failure. An interrupt is found once, by walking
//! the chain of sources ([`boma_exec::interrupt::in_chain`]), whatever wraps it.

use boma_exec::ExecError;
use boma_exec::interrupt::{self, Interrupted};
use boma_inventory::{InventoryError, NameRefusal, ProfileError, Refusal, WriteError};
use boma_vm::VmError;
use camino::Utf8PathBuf;

/// What an error means for the exit status (which status, the binary's edge decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// The run failed (exit 1): a VM may have been created and kept.
    Failed,
    /// Bad input or a missing prerequisite, found before anything was created (exit 2).
    Refused,
    /// Stopped by a signal (exit 128+n).
    Interrupted(Interrupted),
}

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Refused before anything was created; the message names the problem and the fix.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Profile(#[from] ProfileError),
    #[error("{0}")]
    Name(#[from] NameRefusal),
    #[error("reading the real inventory: {0}")]
    RealInventory(#[source] InventoryError),
    /// The transient inventory could not be rendered or written: the VM exists by then.
    #[error("{0}")]
    TransientInventory(#[from] Refusal),
    #[error("{0}")]
    InventoryWrite(#[from] WriteError),
    /// The run's connection (its table, wrapper, control directory) could not be set up: the
    /// VM exists by then.
    #[error("the run's connection: {0}")]
    Connection(String),
    #[error("{0}")]
    Vm(#[from] VmError),
    #[error("{0}")]
    Image(#[from] boma_image::CacheError),
    #[error("{0}")]
    Build(#[from] boma_golden::BuildError),
    #[error("{0}")]
    Exec(#[from] ExecError),
    #[error("{step} failed (ansible-playbook exit status {}){}", .code.map_or("?".to_owned(), |c| c.to_string()), tail_block(.tail))]
    Playbook {
        step: String,
        code: Option<i32>,
        /// The last lines of Ansible's output (it may have been folded from the terminal).
        tail: Vec<String>,
    },
    #[error("{step} did not finish within {}s and was stopped (set BOMA_IT_STEP_TIMEOUT to allow longer)", .after.as_secs())]
    PlaybookTimedOut {
        step: String,
        after: std::time::Duration,
    },
    #[error("checks failed: {}", .failed.join(", "))]
    ChecksFailed { failed: Vec<String> },
    /// A RED profile's run did not fail as its `expect` says: an expected failure did not
    /// happen (the planted bug stopped showing, or the run passed), something else failed, or
    /// the run ended on a failure no check records (`ended_by`, its cause).
    #[error("{}", unmet(.missing, .unexpected, .ended_by.is_some()))]
    ExpectationsUnmet {
        missing: Vec<String>,
        unexpected: Vec<String>,
        #[source]
        ended_by: Option<Box<HarnessError>>,
    },
    #[error("{path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Interrupted(#[from] Interrupted),
}

fn unmet(missing: &[String], unexpected: &[String], ended_otherwise: bool) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "expected failures not seen: {}",
            missing.join(", ")
        ));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "failed but not expected: {}",
            unexpected.join(", ")
        ));
    }
    if ended_otherwise {
        parts.push("the run ended on a failure no check records".to_owned());
    }
    parts.join("; ")
}

fn tail_block(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        let lines: Vec<String> = tail.iter().map(|l| format!("    {l}")).collect();
        format!("; last output:\n{}", lines.join("\n"))
    }
}

/// The error and its causes on one line, each cause once (a wrapper that repeats its source's
/// message is not printed twice).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut last = message.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !last.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        last = text;
        source = cause.source();
    }
    message
}

impl HarnessError {
    pub fn io(path: impl Into<Utf8PathBuf>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            path: path.into(),
            source,
        }
    }

    /// The exit class: an interrupt anywhere in the chain wins; refusals are the preflight
    /// variants; everything else is a failure.
    pub fn class(&self) -> ExitClass {
        if let Some(i) = self.interrupted() {
            return ExitClass::Interrupted(i);
        }
        let refused = match self {
            HarnessError::Refused(_)
            | HarnessError::Profile(_)
            | HarnessError::Name(_)
            | HarnessError::RealInventory(_) => true,
            HarnessError::Vm(e) => e.is_preflight(),
            HarnessError::Exec(ExecError::NotFound { .. }) => true,
            HarnessError::Build(
                boma_golden::BuildError::NotRoot
                | boma_golden::BuildError::WrongArch(_)
                | boma_golden::BuildError::MissingTool { .. },
            ) => true,
            _ => false,
        };
        if refused {
            ExitClass::Refused
        } else {
            ExitClass::Failed
        }
    }

    /// The interrupt that stopped the run, if that is what this is.
    pub fn interrupted(&self) -> Option<Interrupted> {
        interrupt::in_chain(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupt_is_found_through_any_wrapping() {
        let interrupted = Interrupted { signal: 2 };
        let exec = ExecError::Interrupted {
            cmd: "ssh x".into(),
            interrupted,
        };
        let wrapped = HarnessError::Vm(VmError::from(exec));
        assert_eq!(wrapped.class(), ExitClass::Interrupted(interrupted));
        let sigterm = Interrupted { signal: 15 };
        let image = HarnessError::Image(boma_image::CacheError::Interrupted(sigterm));
        assert_eq!(image.class(), ExitClass::Interrupted(sigterm));
    }

    #[test]
    fn refusals_are_refused_and_failures_after_boot_are_failures() {
        assert_eq!(
            HarnessError::Refused("no".into()).class(),
            ExitClass::Refused
        );
        assert_eq!(
            HarnessError::Vm(VmError::Preflight("memory".into())).class(),
            ExitClass::Refused
        );
        // A failed inventory write happens after the VM booted: not "nothing was created".
        let write = HarnessError::InventoryWrite(WriteError::NoGroupVars {
            path: "/x/group_vars".into(),
        });
        assert_eq!(write.class(), ExitClass::Failed);
        let playbook = HarnessError::Playbook {
            step: "apply".into(),
            code: Some(2),
            tail: vec![],
        };
        assert_eq!(playbook.class(), ExitClass::Failed);
    }
}
