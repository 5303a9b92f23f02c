//! The harness's failures, and the exit status each one means.

use boma_exec::ExecError;
use boma_exec::interrupt::Interrupted;
use boma_vm::VmError;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Bad input or a missing prerequisite, found before anything was created.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Image(#[from] boma_image::CacheError),
    #[error(transparent)]
    Build(#[from] boma_golden::BuildError),
    #[error(transparent)]
    Exec(ExecError),
    #[error("{step} failed (ansible-playbook exit status {})", .code.map_or("?".to_owned(), |c| c.to_string()))]
    Playbook { step: String, code: Option<i32> },
    #[error("verify failed: {}", .failed.join(", "))]
    VerifyFailed { failed: Vec<String> },
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

impl From<ExecError> for HarnessError {
    fn from(e: ExecError) -> HarnessError {
        match e.interrupted() {
            Some(i) => HarnessError::Interrupted(i),
            None => HarnessError::Exec(e),
        }
    }
}

impl HarnessError {
    /// 0 passed (not an error), 1 the run failed, 2 usage or preflight, 128+n interrupted.
    pub fn exit_code(&self) -> i32 {
        if let Some(i) = self.interrupted() {
            return i.exit_code();
        }
        match self {
            HarnessError::Usage(_) => 2,
            HarnessError::Vm(e) if e.is_preflight() => 2,
            HarnessError::Exec(ExecError::NotFound { .. }) => 2,
            HarnessError::Build(
                boma_golden::BuildError::NotRoot
                | boma_golden::BuildError::WrongArch(_)
                | boma_golden::BuildError::MissingTool { .. },
            ) => 2,
            _ => 1,
        }
    }

    pub fn interrupted(&self) -> Option<Interrupted> {
        match self {
            HarnessError::Interrupted(i) => Some(*i),
            HarnessError::Vm(e) => e.interrupted(),
            HarnessError::Image(e) => e.interrupted(),
            HarnessError::Build(e) => e.interrupted(),
            HarnessError::Exec(e) => e.interrupted(),
            _ => None,
        }
    }
}
