//! Running `ansible-playbook` from the repository's venv, with the repository's config, bounded
//! in time, its output folded under the phase line (and saved to the run's log), and the tasks
//! it changed recorded for the idempotence check.

use std::time::Duration;

use boma_exec::CmdExt;
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use crate::HarnessError;

/// The callback (in `tests/integration/callback_plugins/`) that records changed tasks.
const CHANGES_CALLBACK: &str = "boma_changes";

/// One `ansible-playbook` run.
#[derive(Debug, Clone)]
pub struct PlaybookCall {
    pub repo: Utf8PathBuf,
    /// How the step is named: `apply playbooks/site.yml --tags base`.
    pub label: String,
    pub args: Vec<String>,
    /// The run is stopped (with its ssh connections) after this long.
    pub timeout: Duration,
    /// Where the tasks that reported `changed` are appended (JSON lines).
    pub changes_file: Option<Utf8PathBuf>,
    /// Where gathered facts are cached between the run's playbooks (`gathering = smart`):
    /// "Gathering Facts" then runs once per boot instead of once per playbook. The harness
    /// empties it at every reboot, so no fact outlives the boot it describes.
    pub facts_dir: Option<Utf8PathBuf>,
    /// Run with Mitogen's strategy (`BOMA_IT_MITOGEN=1`: measured, not the default).
    pub mitogen: Option<Utf8PathBuf>,
}

/// `.venv/bin/ansible-playbook` when the Makefile's venv exists, else whatever is on PATH.
pub fn program(repo: &Utf8Path) -> Utf8PathBuf {
    let venv = repo.join(".venv/bin/ansible-playbook");
    if venv.is_file() {
        venv
    } else {
        Utf8PathBuf::from("ansible-playbook")
    }
}

/// Run one playbook, streaming (or folding) its output. A failing play is
/// [`HarnessError::Playbook`] with the tail of its output; a run past its time limit is
/// [`HarnessError::PlaybookTimedOut`].
pub fn run(sh: &Shell, call: &PlaybookCall) -> Result<(), HarnessError> {
    let program = program(&call.repo);
    let _dir = sh.push_dir(&call.repo);
    let args = &call.args;
    let mut run = cmd!(sh, "{program} {args...}")
        .exec()
        .stream()
        .allow_fail()
        .timeout(call.timeout)
        // The repository's config whatever the caller's cwd or environment says.
        .env("ANSIBLE_CONFIG", call.repo.join("ansible.cfg"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("PYTHONUNBUFFERED", "1");
    if let Some(dir) = &call.facts_dir {
        run = run
            .env("ANSIBLE_GATHERING", "smart")
            .env("ANSIBLE_CACHE_PLUGIN", "ansible.builtin.jsonfile")
            .env("ANSIBLE_CACHE_PLUGIN_CONNECTION", dir)
            .env("ANSIBLE_CACHE_PLUGIN_TIMEOUT", "86400");
    }
    if let Some(plugins) = &call.mitogen {
        run = run
            .env("ANSIBLE_STRATEGY_PLUGINS", plugins)
            .env("ANSIBLE_STRATEGY", "mitogen_linear");
    }
    if let Some(file) = &call.changes_file {
        run = run
            .env(
                "ANSIBLE_CALLBACK_PLUGINS",
                call.repo.join("tests/integration/callback_plugins"),
            )
            // Replaces ansible.cfg's list, so it names profile_tasks too.
            .env(
                "ANSIBLE_CALLBACKS_ENABLED",
                format!("ansible.posix.profile_tasks,{CHANGES_CALLBACK}"),
            )
            .env("BOMA_IT_CHANGES_FILE", file);
    }
    match run.run() {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(HarnessError::Playbook {
            step: call.label.clone(),
            code: out.status.code(),
            tail: boma_exec::progress::output_tail(20),
        }),
        Err(boma_exec::ExecError::TimedOut { after, .. }) => Err(HarnessError::PlaybookTimedOut {
            step: call.label.clone(),
            after,
        }),
        Err(e) => Err(e.into()),
    }
}

/// The script that reads the vault's values (run by the venv's python, script on stdin).
const VAULT_VALUES: &str = include_str!("vault_values.py");

/// Every value the vault holds in `files`, decrypted with `password_file` by ansible-core's own
/// vault code. Quiet: the values never reach the command log (the caller masks them).
pub fn vault_values(
    sh: &Shell,
    repo: &Utf8Path,
    password_file: &Utf8Path,
    files: &[Utf8PathBuf],
) -> Result<Vec<String>, HarnessError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let python = repo.join(".venv/bin/python3");
    let out = cmd!(sh, "{python} - {password_file} {files...}")
        .exec()
        .stdin(VAULT_VALUES.as_bytes().to_vec())
        .timeout(Duration::from_secs(120))
        .read()?;
    serde_json::from_str(&out).map_err(|e| {
        HarnessError::Refused(format!(
            "cannot read the vault's values ({e}): is the vault password right?"
        ))
    })
}

/// A task that reported `changed`, as the callback recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ChangedTask {
    pub host: String,
    pub task: String,
    pub role: Option<String>,
    /// `file:line` of the task (absolute, as Ansible reports it).
    pub path: Option<String>,
}

impl ChangedTask {
    /// `role : task (roles/x/tasks/main.yml:12)`, with the path made repo-relative.
    pub fn describe(&self, repo: &Utf8Path) -> String {
        let role = self
            .role
            .as_deref()
            .map(|r| format!("{r} : "))
            .unwrap_or_default();
        let path = self
            .path
            .as_deref()
            .map(|p| {
                let relative = p
                    .strip_prefix(repo.as_str())
                    .map(|r| r.trim_start_matches('/'))
                    .unwrap_or(p);
                format!(" ({relative})")
            })
            .unwrap_or_default();
        format!("{role}{}{path}", self.task)
    }
}

/// Parse the callback's JSON lines; a torn last line (a killed run) is skipped. Pure.
pub fn parse_changes(text: &str) -> Vec<ChangedTask> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_tasks_parse_and_describe_themselves() {
        let text = concat!(
            r#"{"host": "boma-it-a-1", "task": "Install nftables", "role": "base", "path": "/repo/roles/base/tasks/firewall.yml:3", "status": "changed"}"#,
            "\n",
            r#"{"host": "boma-it-a-1", "task": "Touch", "role": null, "path": null, "status": "changed"}"#,
            "\n",
            r#"{"host": "boma-it-a-1", "task": "torn"#,
        );
        let tasks = parse_changes(text);
        assert_eq!(tasks.len(), 2);
        assert_eq!(
            tasks[0].describe(Utf8Path::new("/repo")),
            "base : Install nftables (roles/base/tasks/firewall.yml:3)"
        );
        assert_eq!(tasks[1].describe(Utf8Path::new("/repo")), "Touch");
    }
}
