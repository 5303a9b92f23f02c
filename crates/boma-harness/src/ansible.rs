//! Running `ansible-playbook` from the repository's venv, with the repository's config, bounded
//! in time, its output folded under the phase line (and saved to the run's log), and the tasks
//! it changed recorded for the idempotence check.
//!
//! Every Ansible process the harness starts (a playbook, the vault script) runs in a scrubbed
//! environment ([`ansible_env`]): an allow-list of what says who and where the operator is and
//! how text looks, never an inherited `ANSIBLE_*`, `PYTHON*` or `SSH_*` (an agent socket among
//! them), plus what the harness sets: the checkout's `ansible.cfg`, its callbacks and fact
//! cache, and a `PATH` that starts with the run's connection directory, so any `ssh`, `scp` or
//! `sftp` Ansible or a controller-side module finds on `PATH` is the run's own.

use std::collections::BTreeMap;
use std::time::Duration;

use boma_exec::CmdExt;
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use crate::connect;
use crate::error::HarnessError;

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
    /// The run's connection directory (`ssh`, `scp`, `sftp`): first on Ansible's `PATH`.
    pub connect_dir: Option<Utf8PathBuf>,
    /// The control socket directory of the run's ssh, made for this playbook and removed
    /// after it.
    pub control_dir: Option<Utf8PathBuf>,
}

/// `.venv/bin/ansible-playbook` when the Makefile's venv exists, else whatever is on the
/// harness's PATH (found here: Ansible's own PATH is the harness's choice).
pub fn program(repo: &Utf8Path) -> Utf8PathBuf {
    let venv = repo.join(".venv/bin/ansible-playbook");
    if venv.is_file() {
        return venv;
    }
    boma_exec::find_on_path("ansible-playbook")
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .unwrap_or_else(|| Utf8PathBuf::from("ansible-playbook"))
}

/// Inherited variables that reach Ansible unchanged: who and where the operator is, and how
/// text is shown. Nothing that configures Ansible, Python or ssh.
const INHERITED: [&str; 8] = [
    "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR",
];
/// Locale variables, inherited too.
const INHERITED_PREFIX: &str = "LC_";
/// The system's directories, after the run's own, on Ansible's `PATH`.
const SYSTEM_PATH: [&str; 3] = ["/usr/local/bin", "/usr/bin", "/bin"];

/// What an Ansible process's environment is made of, besides the allow-list.
#[derive(Debug, Clone)]
pub struct EnvPlan<'a> {
    /// The checkout: its `ansible.cfg` is the only config.
    pub repo: &'a Utf8Path,
    /// The Ansible program's directory (the venv's `bin`): on `PATH`, so its helpers are found.
    pub tools_dir: &'a Utf8Path,
    /// The run's connection directory, first on `PATH` (none before a VM exists).
    pub connect_dir: Option<&'a Utf8Path>,
    /// What the harness sets for this process on top (callbacks, fact cache, …).
    pub set: Vec<(String, String)>,
}

/// An Ansible process's whole environment, and the inherited variables it does not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsibleEnv {
    pub vars: BTreeMap<String, String>,
    /// Inherited names that were left out or replaced (sorted).
    pub dropped: Vec<String>,
}

/// The environment of an Ansible process: the allow-list of `inherited`, then `PATH` (the
/// connection directory, the tools, the system), the checkout's `ansible.cfg`, and what `plan`
/// sets. Pure: the caller reads the inherited environment.
pub fn ansible_env(
    inherited: impl IntoIterator<Item = (String, String)>,
    plan: &EnvPlan<'_>,
) -> AnsibleEnv {
    let inherited: BTreeMap<String, String> = inherited.into_iter().collect();
    let mut vars: BTreeMap<String, String> = inherited
        .iter()
        .filter(|(name, _)| {
            INHERITED.contains(&name.as_str()) || name.starts_with(INHERITED_PREFIX)
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let mut path: Vec<String> = plan
        .connect_dir
        .map(|d| d.to_string())
        .into_iter()
        .collect();
    path.push(plan.tools_dir.to_string());
    for dir in SYSTEM_PATH {
        if !path.iter().any(|p| p == dir) {
            path.push(dir.to_owned());
        }
    }
    vars.insert("PATH".to_owned(), path.join(":"));
    // The repository's config whatever the caller's cwd or environment says.
    vars.insert(
        "ANSIBLE_CONFIG".to_owned(),
        plan.repo.join("ansible.cfg").into_string(),
    );
    vars.insert("ANSIBLE_NOCOLOR".to_owned(), "1".to_owned());
    vars.insert("PYTHONUNBUFFERED".to_owned(), "1".to_owned());
    vars.extend(plan.set.iter().cloned());
    let dropped = inherited
        .iter()
        .filter(|(name, value)| vars.get(*name) != Some(*value))
        .map(|(name, _)| name.clone())
        .collect();
    AnsibleEnv { vars, dropped }
}

/// One line for each dropped variable that could have changed what Ansible does: every
/// `ANSIBLE_*` (another checkout's roles, a vault password file, ssh arguments…), `PYTHON*`
/// (code imported into Ansible) and `SSH_*` (the operator's agent). Pure.
pub fn dropped_lines(dropped: &[String]) -> Vec<String> {
    dropped
        .iter()
        .filter_map(|name| {
            let why = if name.starts_with("ANSIBLE_") {
                "the run's ansible is configured by this checkout's ansible.cfg and the harness only"
            } else if name.starts_with("PYTHON") {
                "ansible runs its venv's python as installed"
            } else if name.starts_with("SSH_") {
                "the run's ssh offers the harness's key only"
            } else {
                return None;
            };
            Some(format!("dropped {name} from ansible's environment ({why})"))
        })
        .collect()
}

/// What the harness sets for one playbook run on top of [`ansible_env`]'s base. Pure.
pub fn playbook_vars(call: &PlaybookCall) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| vars.push((name.to_owned(), value.to_owned()));
    if let Some(dir) = &call.facts_dir {
        set("ANSIBLE_GATHERING", "smart");
        set("ANSIBLE_CACHE_PLUGIN", "ansible.builtin.jsonfile");
        set("ANSIBLE_CACHE_PLUGIN_CONNECTION", dir.as_str());
        set("ANSIBLE_CACHE_PLUGIN_TIMEOUT", "86400");
    }
    if let Some(plugins) = &call.mitogen {
        set("ANSIBLE_STRATEGY_PLUGINS", plugins.as_str());
        set("ANSIBLE_STRATEGY", "mitogen_linear");
        // Mitogen runs ssh itself and judges its output: it refuses an unknown host key
        // whatever `StrictHostKeyChecking=no` says. The VM is a fresh loopback guest with a
        // new key each boot, checked no more than the plain ssh runs check it.
        set("ANSIBLE_HOST_KEY_CHECKING", "False");
    }
    if let Some(file) = &call.changes_file {
        let plugins = call.repo.join("tests/integration/callback_plugins");
        set("ANSIBLE_CALLBACK_PLUGINS", plugins.as_str());
        // Replaces ansible.cfg's list, so it names profile_tasks too.
        set(
            "ANSIBLE_CALLBACKS_ENABLED",
            &format!("ansible.posix.profile_tasks,{CHANGES_CALLBACK}"),
        );
        set("BOMA_IT_CHANGES_FILE", file.as_str());
    }
    vars
}

/// The environment of one playbook run of `program`, from `inherited`. Pure.
pub fn playbook_env(
    call: &PlaybookCall,
    program: &Utf8Path,
    inherited: impl IntoIterator<Item = (String, String)>,
) -> AnsibleEnv {
    let tools = program.parent().unwrap_or(Utf8Path::new("/usr/bin"));
    let plan = EnvPlan {
        repo: &call.repo,
        tools_dir: tools,
        connect_dir: call.connect_dir.as_deref(),
        set: playbook_vars(call),
    };
    ansible_env(inherited, &plan)
}

/// The process's own environment, as the pure functions take it (names or values that are not
/// UTF-8 are left out: none of the allow-list is).
pub fn inherited_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Run one playbook, streaming (or folding) its output. A failing play is
/// [`HarnessError::Playbook`] with the tail of its output; a run past its time limit is
/// [`HarnessError::PlaybookTimedOut`].
pub fn run(sh: &Shell, call: &PlaybookCall) -> Result<(), HarnessError> {
    run_with_env(sh, call, inherited_env())
}

/// [`run`], as if this process's environment were `inherited` (what the hostile-input matrix
/// drives: a real playbook under an operator's hostile environment).
pub fn run_with_env(
    sh: &Shell,
    call: &PlaybookCall,
    inherited: Vec<(String, String)>,
) -> Result<(), HarnessError> {
    if let Some(dir) = &call.control_dir {
        connect::open_control_dir(dir)?;
    }
    let played = run_in_env(sh, call, inherited);
    if let Some(dir) = &call.control_dir {
        connect::close_control_dir(sh, dir);
    }
    played
}

fn run_in_env(
    sh: &Shell,
    call: &PlaybookCall,
    inherited: Vec<(String, String)>,
) -> Result<(), HarnessError> {
    let program = program(&call.repo);
    let env = playbook_env(call, &program, inherited);
    let _dir = sh.push_dir(&call.repo);
    let args = &call.args;
    let run = cmd!(sh, "{program} {args...}")
        .exec()
        .stream()
        .allow_fail()
        .timeout(call.timeout)
        .env_exactly(&env.vars);
    match run.run() {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(HarnessError::Playbook {
            step: call.label.clone(),
            code: out.status.code(),
            // This playbook's own output: the process-wide tail is shared by whatever else
            // runs meanwhile (a test binary's threads).
            tail: out.tail(),
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
    let env = ansible_env(
        inherited_env(),
        &EnvPlan {
            repo,
            tools_dir: &repo.join(".venv/bin"),
            connect_dir: None,
            set: Vec::new(),
        },
    );
    let out = cmd!(sh, "{python} - {password_file} {files...}")
        .exec()
        .env_exactly(&env.vars)
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
            connect_dir: None,
            control_dir: None,
        }
    }

    fn hostile_environment() -> Vec<(String, String)> {
        [
            ("HOME", "/home/op"),
            ("USER", "op"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            ("TERM", "xterm"),
            ("PATH", "/home/op/bin:/usr/bin"),
            ("ANSIBLE_ROLES_PATH", "/home/op/other-checkout/roles"),
            ("ANSIBLE_VAULT_PASSWORD_FILE", "/home/op/.vault-pass"),
            ("ANSIBLE_SSH_ARGS", "-o HostName=127.0.0.3"),
            ("ANSIBLE_CONFIG", "/home/op/ansible.cfg"),
            ("SSH_AUTH_SOCK", "/run/user/1000/agent.sock"),
            ("PYTHONPATH", "/home/op/hooks"),
            ("PYTHONUNBUFFERED", "1"),
            ("http_proxy", "http://127.0.0.9:3128"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec()
    }

    #[test]
    fn ansible_sees_the_allow_list_and_the_harness_settings_only() {
        let plan = EnvPlan {
            repo: Utf8Path::new("/src/boma"),
            tools_dir: Utf8Path::new("/src/boma/.venv/bin"),
            connect_dir: Some(Utf8Path::new("/src/boma/tests/integration/.run/vm/connect")),
            set: vec![("BOMA_IT_CHANGES_FILE".into(), "/run/changes".into())],
        };
        let env = ansible_env(hostile_environment(), &plan);
        let names: Vec<&str> = env.vars.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "ANSIBLE_CONFIG",
                "ANSIBLE_NOCOLOR",
                "BOMA_IT_CHANGES_FILE",
                "HOME",
                "LANG",
                "LC_ALL",
                "PATH",
                "PYTHONUNBUFFERED",
                "TERM",
                "USER"
            ]
        );
        assert_eq!(
            env.vars["PATH"],
            "/src/boma/tests/integration/.run/vm/connect:/src/boma/.venv/bin:/usr/local/bin:/usr/bin:/bin"
        );
        assert_eq!(env.vars["ANSIBLE_CONFIG"], "/src/boma/ansible.cfg");
        assert_eq!(
            dropped_lines(&env.dropped),
            [
                "dropped ANSIBLE_CONFIG from ansible's environment (the run's ansible is configured by this checkout's ansible.cfg and the harness only)",
                "dropped ANSIBLE_ROLES_PATH from ansible's environment (the run's ansible is configured by this checkout's ansible.cfg and the harness only)",
                "dropped ANSIBLE_SSH_ARGS from ansible's environment (the run's ansible is configured by this checkout's ansible.cfg and the harness only)",
                "dropped ANSIBLE_VAULT_PASSWORD_FILE from ansible's environment (the run's ansible is configured by this checkout's ansible.cfg and the harness only)",
                "dropped PYTHONPATH from ansible's environment (ansible runs its venv's python as installed)",
                "dropped SSH_AUTH_SOCK from ansible's environment (the run's ssh offers the harness's key only)",
            ]
        );
        // PATH and a proxy are dropped without a word: the first is always the harness's, the
        // second changes nothing Ansible does on this machine.
        assert!(env.dropped.contains(&"PATH".to_owned()));
        assert!(env.dropped.contains(&"http_proxy".to_owned()));
    }

    /// The real spawn: the fake `ansible-playbook` writes the environment it got. The test
    /// process has cargo's variables and whatever the shell that ran it exported; Ansible gets
    /// none of them.
    #[test]
    fn the_playbook_process_gets_exactly_the_scrubbed_environment() {
        let (_tmp, repo) = repo_with_playbook("env > \"$0.env\"");
        let sh = Shell::new().unwrap();
        let connect = repo.join("connect");
        let call = PlaybookCall {
            connect_dir: Some(connect.clone()),
            ..call(&repo, Duration::from_secs(30))
        };
        run(&sh, &call).unwrap();
        let text = std::fs::read_to_string(repo.join(".venv/bin/ansible-playbook.env")).unwrap();
        let got: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .filter(|(k, _)| k != "PWD" && k != "SHLVL" && k != "_")
            .collect();
        let expected = playbook_env(&call, &program(&repo), inherited_env()).vars;
        assert_eq!(got, expected);
        assert!(!got.contains_key("CARGO_MANIFEST_DIR"), "{got:?}");
        assert!(got["PATH"].starts_with(&format!("{connect}:")), "{got:?}");
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
