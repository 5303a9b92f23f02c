//! The edge: where the repository is, how an outcome ends the process, how an error is printed
//! and how data reaches stdout — each written once, here, for every subcommand.
//!
//! Every subcommand ends in an [`Outcome`], or in a [`Failure`]: an error that carries the
//! outcome it means, decided where the error was raised (a harness error knows its class, a
//! substrate error whether it changed anything). [`finish`] prints the failure's error and
//! maps the outcome to the exit status in [`status`], the one place that chooses it.

use std::error::Error;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use boma_exec::interrupt::Interrupted;
use boma_exec::say;
use boma_harness::{ExitClass, HarnessError};
use boma_substrate::SubstrateError;
use camino::{Utf8Path, Utf8PathBuf};

/// How a subcommand ended, as its exit status says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what it was asked and found nothing wrong (0).
    Passed,
    /// It ran and something failed: a check, a run, a tool (1).
    Failed,
    /// Bad input or a missing prerequisite, found before anything was created (2).
    Refused,
    /// Stopped by a signal (128+n).
    Interrupted(Interrupted),
    /// The run's ssh wrapper refused a connection, or could not become ssh (255, ssh's own
    /// failure status, which Ansible reads as "unreachable").
    SshRefused,
}

impl From<ExitClass> for Outcome {
    fn from(class: ExitClass) -> Outcome {
        match class {
            ExitClass::Failed => Outcome::Failed,
            ExitClass::Refused => Outcome::Refused,
            ExitClass::Interrupted(i) => Outcome::Interrupted(i),
        }
    }
}

/// An error that ended a subcommand, with the outcome it means. Only its constructors decide
/// that outcome, and none of them makes a passing one.
#[derive(Debug)]
pub struct Failure {
    outcome: Outcome,
    error: Box<dyn Error + Send + Sync + 'static>,
}

impl Failure {
    /// Refused before anything was created; `message` names the problem and the fix.
    pub fn refused(message: impl Into<String>) -> Failure {
        Failure {
            outcome: Outcome::Refused,
            error: message.into().into(),
        }
    }

    /// Failed; `message` says what and why.
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            outcome: Outcome::Failed,
            error: message.into().into(),
        }
    }

    /// The outcome its error means.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
}

impl From<HarnessError> for Failure {
    fn from(error: HarnessError) -> Failure {
        Failure {
            outcome: error.class().into(),
            error: Box::new(error),
        }
    }
}

impl From<SubstrateError> for Failure {
    fn from(error: SubstrateError) -> Failure {
        let outcome = match error.interrupted() {
            Some(i) => Outcome::Interrupted(i),
            None if error.refused() => Outcome::Refused,
            None => Outcome::Failed,
        };
        Failure {
            outcome,
            error: Box::new(error),
        }
    }
}

impl From<Interrupted> for Failure {
    fn from(interrupted: Interrupted) -> Failure {
        Failure {
            outcome: Outcome::Interrupted(interrupted),
            error: Box::new(interrupted),
        }
    }
}

/// End the process: print the failure's error, if it failed, and exit with the outcome's
/// status.
pub fn finish(result: Result<Outcome, Failure>) -> ExitCode {
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(failure) => {
            print_error(&*failure.error);
            failure.outcome()
        }
    };
    ExitCode::from(status(outcome))
}

/// The exit status of an outcome: 0 passed, 1 failed, 2 refused, 128+n interrupted by signal
/// n. The one place a status is chosen.
fn status(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Passed => 0,
        Outcome::Failed => 1,
        Outcome::Refused => 2,
        Outcome::Interrupted(i) => u8::try_from(i.exit_code()).unwrap_or(1),
        Outcome::SshRefused => boma_harness::connect::SSH_FAILED,
    }
}

/// Print an error and its causes on one line of stderr, secrets masked: the one format of an
/// error, whichever command it ends.
pub fn print_error(error: &(dyn Error + 'static)) {
    boma_exec::progress::line(&format!("error: {}", boma_harness::error_chain(error)));
}

/// Set once a write to stdout failed: the rest of the data is dropped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write `text` to stdout: data (a report, a path, a listing). A stdout nobody reads any more
/// (a closed pipe: `| head`, a dropped session) is neither a panic nor a failure of the
/// command — the files a command writes (`--report`, `--junit`) are written before, and the
/// exit status still says how it went: the first failed write is said on stderr, and the rest
/// of the data is dropped.
pub fn print(text: &str) {
    if STDOUT_CLOSED.load(Ordering::SeqCst) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::SeqCst);
        say!("cannot write to stdout ({e}): the rest of this command's output is dropped");
    }
}

/// The repository this invocation works on, found at run time — never baked in at compile
/// time: with a target directory shared between checkouts, cargo can run a binary built in
/// another checkout, and a tool that tests *this* checkout's roles must not read another's.
/// `cargo run` sets `CARGO_MANIFEST_DIR` (to `<repo>/xtask`); run directly, the binary takes the
/// git top level of the working directory. Either must be a boma checkout.
pub fn repo_root() -> Result<Utf8PathBuf, Failure> {
    let candidate = match std::env::var("CARGO_MANIFEST_DIR") {
        Ok(manifest) => Utf8Path::new(&manifest)
            .parent()
            .map(Utf8Path::to_owned)
            .unwrap_or_else(|| Utf8PathBuf::from(manifest)),
        Err(_) => {
            let cwd = std::env::current_dir()
                .ok()
                .and_then(|d| Utf8PathBuf::from_path_buf(d).ok())
                .ok_or_else(|| Failure::refused("the working directory is not a UTF-8 path"))?;
            git_top_level(&cwd).unwrap_or(cwd)
        }
    };
    if is_boma_checkout(&candidate) {
        Ok(candidate)
    } else {
        Err(Failure::refused(format!(
            "{candidate} is not a boma checkout (no xtask/Cargo.toml and profiles/): run `cargo xtask` inside the repository"
        )))
    }
}

/// Whether `dir` looks like the root of this repository.
pub fn is_boma_checkout(dir: &Utf8Path) -> bool {
    dir.join("xtask/Cargo.toml").is_file() && dir.join("profiles").is_dir()
}

/// The nearest ancestor of `dir` (itself included) that holds a `.git`.
fn git_top_level(dir: &Utf8Path) -> Option<Utf8PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Utf8Path::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_checkout_is_a_boma_checkout_and_tmp_is_not() {
        let here = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert!(is_boma_checkout(here));
        let tmp = tempfile::tempdir().unwrap();
        assert!(!is_boma_checkout(Utf8Path::from_path(tmp.path()).unwrap()));
    }

    #[test]
    fn git_top_level_is_found_from_a_subdirectory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        assert_eq!(git_top_level(&root.join("a/b")).as_deref(), Some(root));
    }

    #[test]
    fn outcomes_map_to_the_documented_statuses() {
        assert_eq!(status(Outcome::Passed), 0);
        assert_eq!(status(Outcome::Failed), 1);
        assert_eq!(status(Outcome::Refused), 2);
        for (signal, code) in [(1, 129), (2, 130), (15, 143)] {
            assert_eq!(status(Outcome::Interrupted(Interrupted { signal })), code);
        }
    }

    #[test]
    fn a_failure_carries_the_outcome_decided_where_its_error_was_raised() {
        let refused = Failure::from(HarnessError::Refused("x".into()));
        assert_eq!(refused.outcome, Outcome::Refused);
        let sigterm = Interrupted { signal: 15 };
        assert_eq!(
            Failure::from(HarnessError::Interrupted(sigterm)).outcome,
            Outcome::Interrupted(sigterm)
        );
        let playbook = HarnessError::Playbook {
            step: "apply".into(),
            code: Some(2),
            tail: vec![],
        };
        assert_eq!(Failure::from(playbook).outcome, Outcome::Failed);
        assert_eq!(
            Failure::from(SubstrateError::NoVenv).outcome,
            Outcome::Refused
        );
        let interrupted = SubstrateError::Exec(boma_exec::ExecError::Interrupted {
            cmd: "sudo -n true".into(),
            interrupted: Interrupted { signal: 1 },
        });
        assert_eq!(
            Failure::from(interrupted).outcome,
            Outcome::Interrupted(Interrupted { signal: 1 })
        );
        assert_eq!(
            Failure::from(SubstrateError::Playbook { code: Some(4) }).outcome,
            Outcome::Failed
        );
    }
}
