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
            .env("ANSIBLE_STRATEGY", "mitogen_linear")
            // Mitogen runs ssh itself and judges its output: it refuses an unknown host key
            // whatever `StrictHostKeyChecking=no` in the pinned ssh args says. The VM is a
            // fresh loopback guest with a new key each boot, checked no more than the plain
            // ssh runs check it (`UserKnownHostsFile=/dev/null`).
            .env("ANSIBLE_HOST_KEY_CHECKING", "False");
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

    /// A repository whose venv's `ansible-playbook` is the given shell script.
    fn repo_with_playbook(script: &str) -> (tempfile::TempDir, Utf8PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let repo = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let bin = repo.join(".venv/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let program = bin.join("ansible-playbook");
        std::fs::write(&program, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        (tmp, repo)
    }

    fn call(repo: &Utf8Path, timeout: Duration) -> PlaybookCall {
        PlaybookCall {
            repo: repo.to_owned(),
            label: "apply playbooks/site.yml --tags base".into(),
            args: vec!["playbooks/site.yml".into()],
            timeout,
            changes_file: None,
            facts_dir: None,
            mitogen: None,
        }
    }

    #[test]
    fn a_playbook_past_its_limit_is_stopped_and_named() {
        let (_tmp, repo) = repo_with_playbook("sleep 30");
        let sh = Shell::new().unwrap();
        let err = run(&sh, &call(&repo, Duration::from_millis(300))).unwrap_err();
        match err {
            HarnessError::PlaybookTimedOut { step, after } => {
                assert_eq!(step, "apply playbooks/site.yml --tags base");
                assert_eq!(after, Duration::from_millis(300));
            }
            other => panic!("not a timeout: {other}"),
        }
    }

    #[test]
    fn a_failing_play_keeps_its_exit_code() {
        let (_tmp, repo) = repo_with_playbook("echo 'fatal: [vm]: FAILED!'; exit 2");
        let sh = Shell::new().unwrap();
        let err = run(&sh, &call(&repo, Duration::from_secs(30))).unwrap_err();
        assert!(
            matches!(err, HarnessError::Playbook { code: Some(2), .. }),
            "{err}"
        );
    }

    /// The vault script, run by the repository's venv (`make venv`; `make test` makes it):
    /// an inline `!vault` value and a file encrypted whole are both read back.
    #[test]
    fn the_vault_script_reads_inline_and_whole_file_values() {
        let repo = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bin = repo.join(".venv/bin");
        assert!(
            bin.join("ansible-vault").is_file(),
            "this test needs the Ansible venv: run `make venv` (`make test` does)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let password = dir.join("pass");
        std::fs::write(&password, "vault-test-password\n").unwrap();
        let sh = Shell::new().unwrap();
        let vault = bin.join("ansible-vault");
        let inline = cmd!(
            sh,
            "{vault} encrypt_string --vault-password-file {password} --name vault__token inline-secret-4d2c"
        )
        .exec()
        .quiet()
        .read()
        .unwrap();
        let inline_file = dir.join("inline.yml");
        std::fs::write(&inline_file, format!("---\nplain: visible\n{inline}\n")).unwrap();
        let whole_file = dir.join("whole.yml");
        std::fs::write(&whole_file, "---\nnested:\n  - whole-secret-9e1f\n").unwrap();
        cmd!(
            sh,
            "{vault} encrypt --vault-password-file {password} {whole_file}"
        )
        .exec()
        .quiet()
        .run()
        .unwrap();
        let values = vault_values(&sh, &repo, &password, &[inline_file, whole_file]).unwrap();
        assert_eq!(values, ["inline-secret-4d2c", "whole-secret-9e1f"]);
        let wrong = dir.join("wrong");
        std::fs::write(&wrong, "not-the-password\n").unwrap();
        assert!(vault_values(&sh, &repo, &wrong, &[dir.join("whole.yml")]).is_err());
    }

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
