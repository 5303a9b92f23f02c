//! Why the substrate was not installed, each variant saying whether anything was changed.

use boma_doctor::MissingTool;
use boma_exec::ExecError;
use boma_exec::interrupt::{self, Interrupted};

#[derive(Debug, thiserror::Error)]
pub enum SubstrateError {
    #[error(
        "the Ansible venv is missing, and the substrate is installed by an Ansible role: run `make venv` first (`make test-integration` does)"
    )]
    NoVenv,
    #[error(
        "installing the VM substrate needs root, and this user is neither root nor has sudo: as root, run: {command}"
    )]
    NoSudo { command: String },
    #[error(
        "installing the VM substrate needs root, and sudo asks for a password with no terminal to type it into: run by hand: {command}"
    )]
    SudoNeedsPasswordNoTerminal { command: String },
    #[error(
        "installing the VM substrate needs root, and sudo asks for a password, which this command cannot type for you: run `sudo -v` (sudo then remembers it for a while) and run this again, or run by hand: {command}"
    )]
    SudoNeedsPassword { command: String },
    #[error(
        "applying the integration_test role failed ({}): its output is above; fix the cause and run `cargo xtask substrate` again",
        describe_code(*.code)
    )]
    Playbook { code: Option<i32> },
    #[error(
        "the integration_test role ran, yet {} still missing: add the package to integration_test__packages (roles/integration_test/defaults/main.yml)",
        describe_missing(.missing)
    )]
    StillMissing { missing: Vec<MissingTool> },
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl SubstrateError {
    /// Refused before anything was changed: a prerequisite (the venv, a way to become root) is
    /// missing. Every other error comes after the role started, or is an interrupt.
    pub fn refused(&self) -> bool {
        match self {
            SubstrateError::NoVenv
            | SubstrateError::NoSudo { .. }
            | SubstrateError::SudoNeedsPasswordNoTerminal { .. }
            | SubstrateError::SudoNeedsPassword { .. } => true,
            SubstrateError::Playbook { .. }
            | SubstrateError::StillMissing { .. }
            | SubstrateError::Exec(_) => false,
        }
    }

    /// The interrupt that stopped it, if that is what this is.
    pub fn interrupted(&self) -> Option<Interrupted> {
        interrupt::in_chain(self)
    }
}

fn describe_code(code: Option<i32>) -> String {
    code.map_or_else(
        || "killed by a signal".to_owned(),
        |c| format!("exit status {c}"),
    )
}

fn describe_missing(missing: &[MissingTool]) -> String {
    let programs: Vec<String> = missing
        .iter()
        .map(|m| format!("{} ({})", m.program, m.package))
        .collect();
    let verb = if missing.len() == 1 { "is" } else { "are" };
    format!("{} {verb}", programs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn still_missing_names_programs_and_packages_and_is_a_failure() {
        let err = SubstrateError::StillMissing {
            missing: vec![MissingTool {
                program: "nft",
                package: "nftables".into(),
                why: "",
            }],
        };
        assert!(
            err.to_string().contains("nft (nftables) is still missing"),
            "{err}"
        );
        assert!(!err.refused());
        assert_eq!(err.interrupted(), None);
    }

    #[test]
    fn an_interrupted_command_is_an_interrupt_not_a_refusal() {
        let interrupted = Interrupted { signal: 1 };
        let err = SubstrateError::from(ExecError::Interrupted {
            cmd: "sudo -n true".into(),
            interrupted,
        });
        assert_eq!(err.interrupted(), Some(interrupted));
        assert!(!err.refused());
        assert!(SubstrateError::NoVenv.refused());
    }
}
