//! Running `ansible-playbook` from the repository's venv, with the repository's config.

use std::process::Command;

use boma_exec::CmdExt;
use camino::{Utf8Path, Utf8PathBuf};

use crate::HarnessError;

/// `.venv/bin/ansible-playbook` when the Makefile's venv exists, else whatever is on PATH.
pub fn program(repo: &Utf8Path) -> Utf8PathBuf {
    let venv = repo.join(".venv/bin/ansible-playbook");
    if venv.is_file() {
        venv
    } else {
        Utf8PathBuf::from("ansible-playbook")
    }
}

/// Run one playbook, streaming its output. A failing play is [`HarnessError::Playbook`].
pub fn run(repo: &Utf8Path, step: &str, args: &[String]) -> Result<(), HarnessError> {
    let mut command = Command::new(program(repo).as_std_path());
    command
        .args(args)
        .current_dir(repo)
        // The repository's config whatever the caller's cwd or environment says.
        .env("ANSIBLE_CONFIG", repo.join("ansible.cfg"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("PYTHONUNBUFFERED", "1");
    let out = command.exec().stream().allow_fail().run()?;
    if out.success() {
        Ok(())
    } else {
        Err(HarnessError::Playbook {
            step: step.to_owned(),
            code: out.status.code(),
        })
    }
}
