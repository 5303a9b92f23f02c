//! The hostile-input matrix (issue 19 §1): every variable source Ansible reads × every
//! connection setting. Each test is one source (a row of the matrix in
//! `docs/security/connection.md`) with every setting aimed elsewhere at once, in one real
//! `ansible-playbook` run from the venv, with the harness's real environment
//! (`boma_harness::ansible_env`), connection file, inventory and wrapper (this crate's binary,
//! `connect-ssh`). The table names a recording stand-in for the final `ssh`: it logs its
//! argv, then runs the remote command here with `sh -c`, so Ansible's modules really run (the
//! "VM" is a temporary directory).
//!
//! Every hostile value leads to a loopback canary: a listener on 127.0.0.2 that counts
//! connections, an executable that logs being run (the hostile `ssh`, `scp`, `sftp`,
//! `ProxyCommand`), connection plugins that log being used, and a file that only a task run on
//! the controller writes. Per source the run must pass with every task on the VM, every ssh
//! command line the wrapper's (the pinned options first, the VM's alias), every one of them
//! through the wrapper, no scp or sftp, and every canary untouched; OpenSSH's own `ssh -G`
//! confirms each recorded command line connects to the VM's endpoint only.
//!
//! The fleet cells ([`FleetRig`]) run a probe over two members as a fleet run does: the
//! members' inventory under their own names with their fleet addresses, the fleet's connection
//! file (`ansible_host: "{{ boma_fleet_address }}"`) and the members' table. A task delegated
//! to the other member must reach that member's endpoint; a fleet address overridden to the
//! canary's, or `delegate_to: localhost`, must reach nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use boma_exec::CmdExt as _;
use boma_harness::PlaybookCall;
use boma_harness::connect::{self, FleetMember, FleetSetup, Setup};
use boma_inventory::{
    Apply, CertTier, FleetPlaybookRun, MemberName, PlaybookRun, TransientHost, TransientMember,
    VmName, apply_argv, fleet_playbook_argv, render_hosts_yml, render_members_yml,
    write_inventory_dir, write_members_dir,
};
use boma_vm::{RunDir, SshTarget};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

const VM: &str = "boma-it-probe-matrix";
const GROUP: &str = "probe_hosts";
const VM_PORT: u16 = 40022;
const VM_USER: &str = "ansible";
/// The marker tasks of the probe role, by label: each writes `<label> <where it ran>`.
const MARKERS: [&str; 4] = ["plain", "delegated", "local", "elsewhere"];

/// The repository under test.
fn repo() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn write(path: &Utf8Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn write_exec(path: &Utf8Path, text: &str) {
    write(path, text);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A listener on 127.0.0.2 that counts every connection made to it.
struct Canary {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Canary {
    fn listen() -> Canary {
        let listener = TcpListener::bind("127.0.0.2:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopped) = (Arc::clone(&hits), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                        let mut buf = [0u8; 64];
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                        let _ = stream.read(&mut buf);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Canary { port, hits, stop }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Where a hostile source writes its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    InventoryGroupVars,
    PlaybookGroupVars,
    PlaybookHostVars,
    RoleVars,
    RoleDefaults,
    PlayVars,
    VarsFiles,
    IncludeVars,
    SetFact,
    AnsibleCfg,
    Environment,
    ConnectionPlugins,
}

/// One cell's sandbox: a copy of the harness's inputs around a probe playbook, the run's files,
/// the "VM" (a directory) and the canaries.
struct Rig {
    _tmp: tempfile::TempDir,
    root: Utf8PathBuf,
    repo: Utf8PathBuf,
    files: RunDir,
    vm: VmName,
    canary: Canary,
}

impl Rig {
    fn new() -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let repo = root.join("repo");
        let files = RunDir::new(root.join("run").join(VM));
        std::fs::create_dir_all(files.path()).unwrap();
        std::fs::create_dir_all(root.join("vm")).unwrap();
        std::fs::create_dir_all(root.join("home")).unwrap();
        std::fs::create_dir_all(root.join("canary")).unwrap();
        let vm = VmName::checked(VM, &BTreeSet::from(["askari".to_owned()])).unwrap();
        let rig = Rig {
            _tmp: tmp,
            root,
            repo,
            files,
            vm,
            canary: Canary::listen(),
        };
        rig.write_inputs();
        rig
    }

    fn canary_log(&self) -> Utf8PathBuf {
        self.root.join("canary/log")
    }
    fn canary_exec(&self) -> Utf8PathBuf {
        self.root.join("canary/exec")
    }
    fn canary_file(&self) -> Utf8PathBuf {
        self.root.join("canary/ran-on-the-controller")
    }
    fn imported(&self) -> Utf8PathBuf {
        self.root.join("canary/plugins-imported")
    }
    fn stand_in_log(&self) -> Utf8PathBuf {
        self.root.join("stand-in.jsonl")
    }
    fn where_log(&self) -> Utf8PathBuf {
        self.root.join("vm/where.log")
    }

    /// The repository's harness inputs around the probe, the stand-in and the canaries.
    fn write_inputs(&self) {
        let repo = &self.repo;
        write_sandbox(&self.root, repo);
        write(&repo.join("playbooks/probe.yml"), &probe_playbook(None));
        write(&repo.join("roles/probe/tasks/main.yml"), PROBE_TASKS);
        let run_vars = serde_json::json!({
            "probe_where": self.where_log(),
            "probe_copy": self.root.join("vm/copied.txt"),
            "probe_fetched": self.root.join("home/fetched"),
            "probe_canary_file": self.canary_file(),
        });
        write(&self.run_vars(), &run_vars.to_string());

        let hosts = render_hosts_yml(&TransientHost {
            vm: &self.vm,
            groups: &[GROUP.to_owned()],
            group_parents: &BTreeMap::new(),
        })
        .unwrap();
        write_inventory_dir(&self.files.inventory(), repo, &hosts).unwrap();
        let target = SshTarget {
            host: "127.0.0.1".into(),
            port: VM_PORT,
            user: VM_USER.into(),
            key: self.root.join("home/harness_key"),
        };
        connect::write_connection(
            &self.files,
            &Setup {
                vm: &self.vm,
                target: &target,
                wrapper: Utf8Path::new(env!("CARGO_BIN_EXE_xtask")),
                ssh: &self.root.join("ssh-stand-in"),
            },
        )
        .unwrap();
    }

    fn run_vars(&self) -> Utf8PathBuf {
        self.files.path().join("run-vars.json")
    }

    /// Every connection setting aimed at a canary, as Ansible variables.
    fn hostile_vars(&self) -> serde_json::Value {
        Rig::hostile_vars_aimed_at(self.canary.port, &self.root)
    }

    /// Every connection setting aimed at the canary listening on `port` and the canaries under
    /// `root`.
    fn hostile_vars_aimed_at(port: u16, root: &Utf8Path) -> serde_json::Value {
        let exec = root.join("canary/exec");
        let args = format!("-o HostName=127.0.0.2 -o Port={port} -o User=root");
        serde_json::json!({
            "ansible_connection": "local",
            "ansible_host": "127.0.0.2",
            "ansible_ssh_host": "127.0.0.2",
            "ansible_port": port,
            "ansible_ssh_port": port,
            "ansible_user": "root",
            "ansible_ssh_user": "root",
            "ansible_private_key_file": "/root/.ssh/id_operator",
            "ansible_ssh_private_key_file": "/root/.ssh/id_operator",
            "ansible_password": "hunter2",
            "ansible_ssh_args": format!("{args} -o ProxyCommand={exec}"),
            "ansible_ssh_common_args": format!("{args} -o ProxyJump=root@127.0.0.2:{port}"),
            "ansible_ssh_extra_args": format!("{args} -F {exec} -i /root/.ssh/id_operator"),
            "ansible_scp_extra_args": args,
            "ansible_sftp_extra_args": args,
            "ansible_ssh_executable": exec,
            "ansible_scp_executable": exec,
            "ansible_sftp_executable": exec,
            "ansible_ssh_transfer_method": "scp",
            "ansible_control_path": root.join("canary/cp-%%h"),
            "ansible_control_path_dir": root.join("canary/cp"),
            "ansible_pipelining": false,
        })
    }

    /// The same settings as `ansible.cfg` would give them.
    fn hostile_cfg(&self) -> String {
        let port = self.canary.port;
        let exec = self.canary_exec();
        let plugins = self.root.join("canary/plugins");
        format!(
            "[defaults]\nroles_path = roles\ntransport = local\nremote_user = root\nremote_port = {port}\n\
             private_key_file = /root/.ssh/id_operator\nconnection_plugins = {plugins}\n\
             [ssh_connection]\nssh_args = -o HostName=127.0.0.2 -o Port={port} -o ProxyCommand={exec}\n\
             ssh_common_args = -o ProxyJump=root@127.0.0.2:{port}\nssh_extra_args = -F {exec}\n\
             ssh_executable = {exec}\nscp_executable = {exec}\nsftp_executable = {exec}\n\
             transfer_method = scp\ncontrol_path = {root}/canary/cp-%%h\ncontrol_path_dir = {root}/canary/cp\n\
             pipelining = False\n",
            root = self.root
        )
    }

    /// The same settings as an operator's shell would export them, with what else an
    /// environment can carry: another checkout's roles, code for Python to import, an agent,
    /// a `PATH` whose `ssh` is the canary.
    fn hostile_environment(&self) -> Vec<(String, String)> {
        let port = self.canary.port;
        let exec = self.canary_exec();
        let cfg = self.root.join("canary/ansible.cfg");
        write(&cfg, &self.hostile_cfg());
        let evil_bin = self.root.join("canary/bin");
        std::fs::create_dir_all(&evil_bin).unwrap();
        for program in ["ssh", "scp", "sftp"] {
            std::os::unix::fs::symlink(&exec, evil_bin.join(program)).unwrap();
        }
        let evil_roles = self.root.join("canary/roles");
        write(
            &evil_roles.join("probe/tasks/main.yml"),
            &format!(
                "- name: Another checkout's role\n  ansible.builtin.shell: 'echo role >> {}'\n",
                self.canary_log()
            ),
        );
        write(
            &self.root.join("canary/python/sitecustomize.py"),
            &format!(
                "open({:?}, 'a').write('python imported sitecustomize\\n')\n",
                self.canary_log().as_str()
            ),
        );
        self.write_plugins(&self.root.join("canary/plugins"));
        let args = format!("-o HostName=127.0.0.2 -o Port={port}");
        let mut env = self.baseline_environment();
        env.extend(
            [
                ("ANSIBLE_CONFIG", cfg.to_string()),
                ("ANSIBLE_TRANSPORT", "local".into()),
                ("ANSIBLE_REMOTE_PORT", port.to_string()),
                ("ANSIBLE_REMOTE_USER", "root".into()),
                ("ANSIBLE_PRIVATE_KEY_FILE", "/root/.ssh/id_operator".into()),
                ("ANSIBLE_SSH_ARGS", format!("{args} -o ProxyCommand={exec}")),
                ("ANSIBLE_SSH_COMMON_ARGS", args.clone()),
                ("ANSIBLE_SSH_EXTRA_ARGS", format!("{args} -F {exec}")),
                ("ANSIBLE_SCP_EXTRA_ARGS", args.clone()),
                ("ANSIBLE_SFTP_EXTRA_ARGS", args),
                ("ANSIBLE_SSH_EXECUTABLE", exec.to_string()),
                ("ANSIBLE_SCP_EXECUTABLE", exec.to_string()),
                ("ANSIBLE_SFTP_EXECUTABLE", exec.to_string()),
                ("ANSIBLE_SSH_TRANSFER_METHOD", "scp".into()),
                (
                    "ANSIBLE_SSH_CONTROL_PATH",
                    format!("{}/canary/cp-%%h", self.root),
                ),
                (
                    "ANSIBLE_SSH_CONTROL_PATH_DIR",
                    format!("{}/canary/cp", self.root),
                ),
                ("ANSIBLE_PIPELINING", "False".into()),
                (
                    "ANSIBLE_CONNECTION_PLUGINS",
                    self.root.join("canary/plugins").to_string(),
                ),
                ("ANSIBLE_ROLES_PATH", evil_roles.to_string()),
                ("PYTHONPATH", self.root.join("canary/python").to_string()),
                (
                    "SSH_AUTH_SOCK",
                    self.root.join("canary/agent.sock").to_string(),
                ),
                ("PATH", format!("{evil_bin}:/usr/bin:/bin")),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env
    }

    /// What an operator's environment holds that the harness lets through.
    fn baseline_environment(&self) -> Vec<(String, String)> {
        [
            ("HOME", self.root.join("home").to_string()),
            ("USER", "root".to_owned()),
            ("LANG", "C.UTF-8".to_owned()),
            ("PATH", "/usr/bin:/bin".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
    }

    /// Connection plugins named `ssh` and `local` in `dir`: they log being imported (Ansible
    /// imports every plugin it can see when a playbook starts) and, as a canary, being used.
    fn write_plugins(&self, dir: &Utf8Path) {
        for name in ["ssh", "local"] {
            write(
                &dir.join(format!("{name}.py")),
                &HOSTILE_PLUGIN
                    .replace("@NAME@", name)
                    .replace("@IMPORTED@", self.imported().as_str())
                    .replace("@CANARY@", self.canary_log().as_str()),
            );
        }
    }

    /// Put the hostile settings into `source`.
    fn make_hostile(&self, source: Source) -> Vec<(String, String)> {
        let vars = self.hostile_vars();
        let yaml = format!("---\n{vars}\n");
        let repo = &self.repo;
        match source {
            Source::InventoryGroupVars => write(
                &repo.join(format!(
                    "inventories/production/group_vars/{GROUP}/zz-hostile.yml"
                )),
                &yaml,
            ),
            Source::PlaybookGroupVars => write(&repo.join("playbooks/group_vars/all.yml"), &yaml),
            Source::PlaybookHostVars => {
                write(&repo.join(format!("playbooks/host_vars/{VM}.yml")), &yaml)
            }
            Source::RoleVars => write(&repo.join("roles/probe/vars/main.yml"), &yaml),
            Source::RoleDefaults => write(&repo.join("roles/probe/defaults/main.yml"), &yaml),
            Source::PlayVars => write(
                &repo.join("playbooks/probe.yml"),
                &probe_playbook(Some(&format!("  vars: {vars}\n"))),
            ),
            Source::VarsFiles => {
                write(&repo.join("playbooks/hostile.yml"), &yaml);
                write(
                    &repo.join("playbooks/probe.yml"),
                    &probe_playbook(Some("  vars_files:\n    - hostile.yml\n")),
                );
            }
            Source::IncludeVars => {
                write(&repo.join("playbooks/hostile.yml"), &yaml);
                write(
                    &repo.join("playbooks/probe.yml"),
                    &probe_playbook(Some(
                        "  pre_tasks:\n    - name: Include hostile vars\n      ansible.builtin.include_vars:\n        file: hostile.yml\n",
                    )),
                );
            }
            Source::SetFact => write(
                &repo.join("playbooks/probe.yml"),
                &probe_playbook(Some(&format!(
                    "  pre_tasks:\n    - name: Set hostile facts\n      ansible.builtin.set_fact: {vars}\n"
                ))),
            ),
            Source::AnsibleCfg => {
                self.write_plugins(&self.root.join("canary/plugins"));
                write(&repo.join("ansible.cfg"), &self.hostile_cfg());
            }
            Source::Environment => return self.hostile_environment(),
            Source::ConnectionPlugins => {
                self.write_plugins(&repo.join("playbooks/connection_plugins"));
                self.write_plugins(&repo.join("roles/probe/connection_plugins"));
                // What would make Ansible pick them: the bare plugin names.
                write(
                    &repo.join(format!(
                        "inventories/production/group_vars/{GROUP}/zz-hostile.yml"
                    )),
                    "---\nansible_connection: ssh\n",
                );
            }
        }
        self.baseline_environment()
    }

    /// Run the probe playbook as the harness runs an apply, under `inherited`.
    fn play(&self, inherited: Vec<(String, String)>) -> Result<(), boma_harness::HarnessError> {
        let connection_vars = self.files.connection_vars();
        let inventory = self.files.inventory();
        let run_vars = self.run_vars();
        let run = PlaybookRun {
            repo_root: &self.repo,
            inventory_dir: &inventory,
            vm: &self.vm,
            extra_vars_files: &[],
            cert_tier: CertTier::Internal,
            run_extra_vars: Some(&run_vars),
            vault_password_file: None,
            connection_vars: &connection_vars,
        };
        let apply = Apply {
            playbook: "probe.yml".into(),
            tags: Vec::new(),
        };
        let call = PlaybookCall {
            repo: self.repo.clone(),
            label: "apply playbooks/probe.yml".into(),
            args: apply_argv(&run, &apply),
            timeout: Duration::from_secs(300),
            changes_file: None,
            facts_dir: None,
            mitogen: None,
            connect_dir: Some(self.files.connect_dir()),
            control_dir: Some(connect::control_dir(self.files.path())),
        };
        let sh = Shell::new().unwrap();
        boma_harness::run_with_env(&sh, &call, inherited)
    }

    /// Every way the run could have left the VM, each as one line.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let read = |path: &Utf8Path| std::fs::read_to_string(path).unwrap_or_default();
        // Every task on the VM.
        let where_lines: BTreeSet<String> =
            read(&self.where_log()).lines().map(str::to_owned).collect();
        let expected: BTreeSet<String> = MARKERS.iter().map(|m| format!("{m} {VM}")).collect();
        if where_lines != expected {
            problems.push(format!(
                "tasks ran at {where_lines:?}, expected every one on the vm: {expected:?}"
            ));
        }
        problems.extend(canary_problems(&self.root, &self.canary));
        // Every ssh the wrapper's, and every one through it.
        let recorded: Vec<Vec<String>> = read(&self.stand_in_log())
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if recorded.len() < MARKERS.len() {
            problems.push(format!(
                "only {} ssh connection(s) recorded",
                recorded.len()
            ));
        }
        let table: boma_ssh::Table =
            serde_json::from_str(&read(&self.files.connect_dir().join(connect::TABLE_FILE)))
                .unwrap();
        let pinned = boma_ssh::pinned_options(table.endpoint_for(VM).unwrap());
        for argv in &recorded {
            if !argv.starts_with(&pinned) {
                problems.push(format!(
                    "an ssh command line without the pinned options: {argv:?}"
                ));
                continue;
            }
            let rest = &argv[pinned.len()..];
            let Some(at) = rest.iter().position(|a| a == "--") else {
                problems.push(format!("no `--` in {argv:?}"));
                continue;
            };
            let kept_ok = rest[..at].iter().all(|a| {
                matches!(
                    a.as_str(),
                    "-q" | "-v"
                        | "-vv"
                        | "-vvv"
                        | "-t"
                        | "-tt"
                        | "-T"
                        | "-O"
                        | "check"
                        | "stop"
                        | "exit"
                )
            });
            if !kept_ok || rest.get(at + 1).map(String::as_str) != Some(VM) {
                problems.push(format!(
                    "ssh options beyond the allowed flags: {:?}",
                    &rest[..=at + 1]
                ));
            }
        }
        let log = read(&self.files.harness_log());
        let wrapped = log.lines().filter(|l| l.starts_with("+ ")).count();
        if wrapped != recorded.len() {
            problems.push(format!(
                "{wrapped} connection(s) through the wrapper, {} reached ssh",
                recorded.len()
            ));
        }
        for line in log.lines().filter(|l| !l.starts_with("+ ")) {
            problems.push(format!("the command log says: {line}"));
        }
        // OpenSSH's own reading of each distinct command line.
        let distinct: BTreeSet<&[String]> = recorded
            .iter()
            .filter_map(|argv| {
                argv.iter()
                    .position(|a| a == "--")
                    .map(|at| &argv[..at + 2])
            })
            .collect();
        for argv in distinct {
            problems.extend(effective_problems(argv, VM_PORT));
        }
        problems
    }

    /// Run `source` hostile and require a clean verdict.
    fn check(source: Source) {
        let rig = Rig::new();
        let inherited = rig.make_hostile(source);
        let played = rig.play(inherited);
        let mut problems = rig.problems();
        if let Err(e) = played {
            problems.insert(0, format!("the run failed: {e}"));
        }
        assert!(
            problems.is_empty(),
            "{source:?} with every connection setting aimed elsewhere:\n  {}",
            problems.join("\n  ")
        );
        let imported = std::fs::read_to_string(rig.imported()).unwrap_or_default();
        match source {
            // The plugins were there to be used: Ansible imported them, and used none.
            Source::ConnectionPlugins | Source::AnsibleCfg => assert!(
                !imported.is_empty(),
                "{source:?}: no hostile plugin was even loaded, so the cell proves nothing"
            ),
            // The environment never reached Ansible: it did not even see them.
            Source::Environment => assert!(imported.is_empty(), "{source:?}: {imported}"),
            _ => {}
        }
    }
}

fn repo_file(path: &str) -> Utf8PathBuf {
    repo().join(path)
}

/// A cell's sandbox under `root` around the repository copy `repo`: the harness's inputs (this
/// checkout's `ansible.cfg`, the cert tier, the inventory's `group_vars`, the venv), the
/// canary executable (`canary/exec`, logging to `canary/log`) and the recording ssh stand-in
/// (`ssh-stand-in`, logging to `stand-in.jsonl`, running commands in `vm/`).
fn write_sandbox(root: &Utf8Path, repo: &Utf8Path) {
    write(
        &repo.join("ansible.cfg"),
        &std::fs::read_to_string(repo_file("ansible.cfg")).unwrap(),
    );
    write(&repo.join("certs/internal.yml"), "---\n{}\n");
    std::fs::create_dir_all(repo.join("inventories/production/group_vars").join(GROUP)).unwrap();
    std::os::unix::fs::symlink(self::repo().join(".venv"), repo.join(".venv")).unwrap();
    write_exec(
        &root.join("canary/exec"),
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$0 $*\" >> '{}'\nexit 255\n",
            root.join("canary/log")
        ),
    );
    write_exec(
        &root.join("ssh-stand-in"),
        &STAND_IN
            .replace("@LOG@", root.join("stand-in.jsonl").as_str())
            .replace("@VM_HOME@", root.join("vm").as_str()),
    );
}

/// What the canaries of the sandbox under `root` saw: a task run on the controller, a canary
/// executable or plugin run, a connection to the listener.
fn canary_problems(root: &Utf8Path, canary: &Canary) -> Vec<String> {
    let mut problems = Vec::new();
    if root.join("canary/ran-on-the-controller").exists() {
        problems.push("a task ran on the controller (the canary file exists)".into());
    }
    let canary_log = std::fs::read_to_string(root.join("canary/log")).unwrap_or_default();
    if !canary_log.is_empty() {
        problems.push(format!("the canaries were run: {canary_log}"));
    }
    if canary.hits() > 0 {
        problems.push(format!(
            "{} connection(s) reached the canary listener on 127.0.0.2",
            canary.hits()
        ));
    }
    problems
}

/// What `ssh -G` (the configuration ssh would connect with) says is wrong with `argv`, which
/// must reach the loopback forward on `port`.
fn effective_problems(argv: &[String], port: u16) -> Vec<String> {
    let sh = Shell::new().unwrap();
    let text = match cmd!(sh, "ssh -G {argv...}").exec().quiet().read() {
        Ok(text) => text,
        Err(e) => return vec![format!("ssh -G refused {argv:?}: {e}")],
    };
    let config: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once(' ')).collect();
    let mut problems = Vec::new();
    let port = port.to_string();
    for (key, want) in [
        ("hostname", "127.0.0.1"),
        ("port", port.as_str()),
        ("user", VM_USER),
        ("identitiesonly", "yes"),
        ("identityagent", "none"),
    ] {
        if config.get(key).copied() != Some(want) {
            problems.push(format!(
                "ssh -G: {key} is {:?}, not {want}",
                config.get(key)
            ));
        }
    }
    for absent in [
        "proxycommand",
        "proxyjump",
        "sendenv",
        "localforward",
        "remoteforward",
    ] {
        if let Some(value) = config.get(absent) {
            problems.push(format!("ssh -G: {absent} {value}"));
        }
    }
    if !config
        .get("controlpath")
        .is_some_and(|p| p.starts_with("/tmp/boma-ssh-"))
    {
        problems.push(format!(
            "ssh -G: controlpath {:?}",
            config.get("controlpath")
        ));
    }
    problems
}

/// A fleet's two members: inventory name, VM, loopback port.
const MEMBERS: [(&str, &str, u16); 2] = [
    ("probe-a", "boma-it-probe-a-1", 40022),
    ("probe-b", "boma-it-probe-b-1", 40023),
];

/// What a fleet cell does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FleetCell {
    /// Nothing hostile: the members reach each other, and only each other.
    Plain,
    /// Every connection setting, and the fleet address, aimed at the canary from the
    /// inventory's `group_vars`.
    HostileGroupVars,
    /// The fleet address itself overridden (a play var) to the canary's address, standing for a
    /// real host's.
    AddressOverridden,
    /// A task delegated to `localhost`, which is no member.
    DelegateToLocalhost,
}

/// A fleet cell's sandbox: as [`Rig`]'s, with two members on one loopback address, each on its
/// own port, and the fleet's own inventory, connection file and table.
struct FleetRig {
    _tmp: tempfile::TempDir,
    root: Utf8PathBuf,
    repo: Utf8PathBuf,
    files: RunDir,
    canary: Canary,
}

impl FleetRig {
    fn new() -> FleetRig {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let repo = root.join("repo");
        let files = RunDir::new(root.join("run").join("boma-it-probe-fleet-1"));
        for dir in [
            files.path(),
            &root.join("vm"),
            &root.join("home"),
            &root.join("canary"),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let rig = FleetRig {
            _tmp: tmp,
            root,
            repo,
            files,
            canary: Canary::listen(),
        };
        rig.write_inputs();
        rig
    }

    fn where_log(&self) -> Utf8PathBuf {
        self.root.join("vm/where.log")
    }
    fn stand_in_log(&self) -> Utf8PathBuf {
        self.root.join("stand-in.jsonl")
    }
    fn canary_file(&self) -> Utf8PathBuf {
        self.root.join("canary/ran-on-the-controller")
    }
    fn run_vars(&self) -> Utf8PathBuf {
        self.files.path().join("run-vars.json")
    }

    fn names() -> Vec<MemberName> {
        MEMBERS
            .iter()
            .map(|(name, _, _)| MemberName::checked(name).unwrap())
            .collect()
    }

    /// The fleet's inputs as a fleet run writes them: the members' inventory (each with
    /// `boma_fleet::member_host_vars`), the fleet's connection file and the members' table.
    fn write_inputs(&self) {
        let repo = &self.repo;
        write_sandbox(&self.root, repo);
        write(&repo.join("playbooks/fleet-probe.yml"), &fleet_probe(""));
        let run_vars = serde_json::json!({
            "probe_where": self.where_log(),
            "probe_canary_file": self.canary_file(),
        });
        write(&self.run_vars(), &run_vars.to_string());

        let names = Self::names();
        let nics = boma_fleet::FLEET_NETWORK
            .members(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        let vars: Vec<BTreeMap<&str, String>> =
            nics.iter().map(boma_fleet::member_host_vars).collect();
        let groups = [GROUP.to_owned()];
        let transient: Vec<TransientMember> = names
            .iter()
            .zip(&vars)
            .map(|(name, vars)| TransientMember {
                name,
                groups: &groups,
                vars,
            })
            .collect();
        let hosts = render_members_yml(&transient, &BTreeMap::new()).unwrap();
        write_members_dir(&self.files.inventory(), repo, &hosts).unwrap();

        let vms: Vec<VmName> = MEMBERS
            .iter()
            .map(|(_, vm, _)| VmName::parse(vm).unwrap())
            .collect();
        let targets: Vec<SshTarget> = MEMBERS
            .iter()
            .map(|(_, _, port)| SshTarget {
                host: "127.0.0.1".into(),
                port: *port,
                user: VM_USER.into(),
                key: self.root.join("home/harness_key"),
            })
            .collect();
        let members: Vec<FleetMember> = (0..MEMBERS.len())
            .map(|i| FleetMember {
                vm: &vms[i],
                name: &names[i],
                address: nics[i].address,
                target: &targets[i],
            })
            .collect();
        connect::write_fleet_connection(
            &self.files,
            &FleetSetup {
                members: &members,
                wrapper: Utf8Path::new(env!("CARGO_BIN_EXE_xtask")),
                ssh: &self.root.join("ssh-stand-in"),
            },
        )
        .unwrap();
    }

    /// Put the cell's input in place.
    fn make(&self, cell: FleetCell) {
        let canary = "127.0.0.2";
        match cell {
            FleetCell::Plain => {}
            FleetCell::HostileGroupVars => {
                let mut vars = Rig::hostile_vars_aimed_at(self.canary.port, &self.root);
                vars["boma_fleet_address"] = canary.into();
                write(
                    &self.repo.join(format!(
                        "inventories/production/group_vars/{GROUP}/zz-hostile.yml"
                    )),
                    &format!("---\n{vars}\n"),
                );
            }
            FleetCell::AddressOverridden => write(
                &self.repo.join("playbooks/fleet-probe.yml"),
                &fleet_probe(&format!("    boma_fleet_address: {canary}\n")),
            ),
            FleetCell::DelegateToLocalhost => write(
                &self.repo.join("playbooks/fleet-probe.yml"),
                &format!(
                    "{}\n    - name: A task delegated to localhost\n      ansible.builtin.shell: '[ -n \"$BOMA_FAKE_VM\" ] || touch {{{{ probe_canary_file }}}}'\n      delegate_to: localhost\n      changed_when: false\n",
                    fleet_probe("").trim_end()
                ),
            ),
        }
    }

    /// Run the probe over every member, as a fleet run's verify playbook runs.
    fn play(&self) -> Result<(), boma_harness::HarnessError> {
        let connection_vars = self.files.connection_vars();
        let inventory = self.files.inventory();
        let run_vars = self.run_vars();
        let run = FleetPlaybookRun {
            repo_root: &self.repo,
            inventory_dir: &inventory,
            extra_vars_files: &[],
            cert_tier: CertTier::Internal,
            run_extra_vars: Some(&run_vars),
            vault_password_file: None,
            connection_vars: &connection_vars,
        };
        let call = PlaybookCall {
            repo: self.repo.clone(),
            label: "verify playbooks/fleet-probe.yml".into(),
            args: fleet_playbook_argv(
                &run,
                Utf8Path::new("playbooks/fleet-probe.yml"),
                &Self::names(),
            ),
            timeout: Duration::from_secs(300),
            changes_file: None,
            facts_dir: None,
            mitogen: None,
            connect_dir: Some(self.files.connect_dir()),
            control_dir: Some(connect::control_dir(self.files.path())),
        };
        let sh = Shell::new().unwrap();
        let home = self.root.join("home").to_string();
        let env = [
            ("HOME", home.as_str()),
            ("USER", "root"),
            ("LANG", "C.UTF-8"),
            ("PATH", "/usr/bin:/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        boma_harness::run_with_env(&sh, &call, env)
    }

    /// What must hold whatever the cell: nothing ran on the controller, no canary was touched,
    /// every ssh that reached the stand-in is the wrapper's and ssh reads it as a member's
    /// endpoint, and the command log has a line for each.
    fn nothing_escaped(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let read = |path: &Utf8Path| std::fs::read_to_string(path).unwrap_or_default();
        problems.extend(canary_problems(&self.root, &self.canary));
        let table: boma_ssh::Table =
            serde_json::from_str(&read(&self.files.connect_dir().join(connect::TABLE_FILE)))
                .unwrap();
        let recorded = self.recorded();
        for argv in &recorded {
            let Some(at) = argv.iter().position(|a| a == "--") else {
                problems.push(format!("no `--` in {argv:?}"));
                continue;
            };
            let alias = argv.get(at + 1).map(String::as_str).unwrap_or_default();
            let Some((_, _, port)) = MEMBERS.iter().find(|(_, vm, _)| *vm == alias) else {
                problems.push(format!("ssh to {alias:?}, which is no member's vm"));
                continue;
            };
            let pinned = boma_ssh::pinned_options(table.endpoint_for(alias).unwrap());
            if !argv.starts_with(&pinned) {
                problems.push(format!(
                    "an ssh command line without {alias}'s pinned options"
                ));
            }
            problems.extend(effective_problems(&argv[..at + 2], *port));
        }
        let log = read(&self.files.harness_log());
        let wrapped = log.lines().filter(|l| l.starts_with("+ ")).count();
        if wrapped != recorded.len() {
            problems.push(format!(
                "{wrapped} connection(s) through the wrapper, {} reached ssh",
                recorded.len()
            ));
        }
        problems
    }

    /// The command lines the stand-in ssh was run with.
    fn recorded(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.stand_in_log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// What the probe wrote, one line per task run.
    fn where_lines(&self) -> BTreeSet<String> {
        std::fs::read_to_string(self.where_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The wrapper's refusals in the command log.
    fn refusals(&self) -> Vec<String> {
        std::fs::read_to_string(self.files.harness_log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("refusing "))
            .map(str::to_owned)
            .collect()
    }

    /// A cell whose run must pass with each member's tasks on it and each delegated task on
    /// the other member, each member seeing its peer's fleet address.
    fn check_reached(cell: FleetCell) {
        let rig = FleetRig::new();
        rig.make(cell);
        let played = rig.play();
        let mut problems = rig.nothing_escaped();
        if let Err(e) = played {
            problems.insert(0, format!("the run failed: {e}"));
        }
        let expected: BTreeSet<String> = [
            "plain probe-a boma-it-probe-a-1",
            "plain probe-b boma-it-probe-b-1",
            "delegated probe-a boma-it-probe-b-1",
            "delegated probe-b boma-it-probe-a-1",
            "peer probe-a 10.231.0.11 10.231.0.11",
            "peer probe-b 10.231.0.10 10.231.0.10",
        ]
        .map(str::to_owned)
        .into();
        let seen = rig.where_lines();
        if seen != expected {
            problems.push(format!("the probe wrote {seen:#?}, expected {expected:#?}"));
        }
        let refusals = rig.refusals();
        if !refusals.is_empty() {
            problems.push(format!("the wrapper refused: {refusals:?}"));
        }
        assert!(
            problems.is_empty(),
            "{cell:?}:\n  {}",
            problems.join("\n  ")
        );
    }
}

/// The fleet probe: on every member, a plain task, one delegated to the other member, and one
/// writing the peer's address as a role templates it from `hostvars`; `vars` (indented play
/// vars) after the peer's.
fn fleet_probe(vars: &str) -> String {
    format!(
        r#"---
- name: Probe where a fleet's connections go
  hosts: all
  gather_facts: false
  vars:
    probe_peer: "{{{{ groups['all'] | difference([inventory_hostname]) | first }}}}"
{vars}  tasks:
    - name: A task on each member
      ansible.builtin.shell: 'echo "plain {{{{ inventory_hostname }}}} ${{BOMA_FAKE_VM:-controller}}" >> {{{{ probe_where }}}}'
      changed_when: false

    - name: A task delegated to the other member
      ansible.builtin.shell: 'echo "delegated {{{{ inventory_hostname }}}} ${{BOMA_FAKE_VM:-controller}}" >> {{{{ probe_where }}}}'
      delegate_to: "{{{{ probe_peer }}}}"
      changed_when: false

    - name: The peer's address as a role templates it
      ansible.builtin.shell: 'echo "peer {{{{ inventory_hostname }}}} {{{{ hostvars[probe_peer].ansible_host }}}} {{{{ hostvars[probe_peer].boma_fleet_address }}}}" >> {{{{ probe_where }}}}'
      changed_when: false

    - name: The canary, written only by a task that runs on the controller
      ansible.builtin.shell: '[ -n "$BOMA_FAKE_VM" ] || touch {{{{ probe_canary_file }}}}'
      changed_when: false
"#
    )
}

/// The probe playbook, with `extra` (play keywords) after `hosts`.
fn probe_playbook(extra: Option<&str>) -> String {
    format!(
        "---\n- name: Probe where the connection goes\n  hosts: all\n  gather_facts: false\n{}  roles:\n    - probe\n",
        extra.unwrap_or_default()
    )
}

/// The probe role: a task of each kind that could leave the VM, a file each way, and a
/// connection reset (ssh's `-O check`).
const PROBE_TASKS: &str = r#"---
- name: A plain task
  ansible.builtin.shell: 'echo "plain ${BOMA_FAKE_VM:-controller}" >> {{ probe_where }}'
  changed_when: false

- name: A task delegated to localhost
  ansible.builtin.shell: 'echo "delegated ${BOMA_FAKE_VM:-controller}" >> {{ probe_where }}'
  delegate_to: localhost
  changed_when: false

- name: A task on the local connection
  ansible.builtin.shell: 'echo "local ${BOMA_FAKE_VM:-controller}" >> {{ probe_where }}'
  connection: local
  changed_when: false

- name: A task delegated to another address
  ansible.builtin.shell: 'echo "elsewhere ${BOMA_FAKE_VM:-controller}" >> {{ probe_where }}'
  delegate_to: 127.0.0.2
  changed_when: false

- name: The canary, written only by a task that runs on the controller
  ansible.builtin.shell: '[ -n "$BOMA_FAKE_VM" ] || touch {{ probe_canary_file }}'
  changed_when: false

- name: A file sent over the connection
  ansible.builtin.copy:
    content: "probe\n"
    dest: "{{ probe_copy }}"
    mode: "0644"

- name: A file fetched over the connection
  ansible.builtin.fetch:
    src: "{{ probe_copy }}"
    dest: "{{ probe_fetched }}/"
    flat: true

- name: A connection reset
  ansible.builtin.meta: reset_connection
"#;

/// The recording stand-in for the final ssh: it logs its argv, answers a control command as
/// "no master", and runs the remote command here, in the "VM" directory, with `BOMA_FAKE_VM`
/// set to the alias it was given (so a task can tell where it ran).
const STAND_IN: &str = r#"#!/usr/bin/python3
import json, os, sys
args = sys.argv[1:]
with open("@LOG@", "a") as log:
    log.write(json.dumps(args) + "\n")
at = args.index("--")
if "-O" in args[:at]:
    sys.exit(255)
alias, command = args[at + 1], args[at + 2:]
env = dict(os.environ, BOMA_FAKE_VM=alias, HOME="@VM_HOME@")
os.chdir("@VM_HOME@")
os.execve("/bin/sh", ["sh", "-c", " ".join(command)], env)
"#;

/// A connection plugin that logs being imported and, as a canary, being used.
const HOSTILE_PLUGIN: &str = r#"
with open("@IMPORTED@", "a") as imported:
    imported.write(__file__ + "\n")

from ansible.plugins.connection.local import Connection as Local

DOCUMENTATION = """
name: @NAME@
short_description: a hostile stand-in
description: [a hostile stand-in for the boma hostile-input matrix]
author: boma
"""


class Connection(Local):
    transport = "@NAME@"

    def exec_command(self, cmd, in_data=None, sudoable=True):
        with open("@CANARY@", "a") as canary:
            canary.write("plugin " + __file__ + "\n")
        return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
"#;

#[test]
fn inventory_group_vars() {
    Rig::check(Source::InventoryGroupVars);
}

#[test]
fn playbook_group_vars() {
    Rig::check(Source::PlaybookGroupVars);
}

#[test]
fn playbook_host_vars() {
    Rig::check(Source::PlaybookHostVars);
}

#[test]
fn role_vars() {
    Rig::check(Source::RoleVars);
}

#[test]
fn role_defaults() {
    Rig::check(Source::RoleDefaults);
}

#[test]
fn play_vars() {
    Rig::check(Source::PlayVars);
}

#[test]
fn vars_files() {
    Rig::check(Source::VarsFiles);
}

#[test]
fn include_vars() {
    Rig::check(Source::IncludeVars);
}

#[test]
fn set_fact() {
    Rig::check(Source::SetFact);
}

#[test]
fn ansible_cfg() {
    Rig::check(Source::AnsibleCfg);
}

#[test]
fn ansible_environment() {
    Rig::check(Source::Environment);
}

#[test]
fn connection_plugins() {
    Rig::check(Source::ConnectionPlugins);
}

/// Two members reach each other, and only each other: each member's tasks run on it, a task
/// delegated to the other member runs on that member (`ansible_host` is a template resolved
/// per host, the delegated host's own), and a role reading the peer's address from `hostvars`
/// gets the peer's fleet address.
#[test]
fn fleet_members_reach_each_other() {
    FleetRig::check_reached(FleetCell::Plain);
}

/// Every connection setting, and `boma_fleet_address` itself, aimed at the canary from the
/// inventory's `group_vars`: below the connection file and the members' own host variables,
/// they move nothing.
#[test]
fn fleet_inventory_group_vars() {
    FleetRig::check_reached(FleetCell::HostileGroupVars);
}

/// A play var that makes a member's fleet address another host's (the canary listener stands
/// for the real `askari`'s 77.42.120.136): the wrapper's table has no such destination, so every
/// connection is refused and nothing is reached.
#[test]
fn fleet_address_overridden_is_refused() {
    let rig = FleetRig::new();
    rig.make(FleetCell::AddressOverridden);
    let played = rig.play();
    let mut problems = rig.nothing_escaped();
    if played.is_ok() {
        problems.push("the run passed".into());
    }
    if !rig.recorded().is_empty() {
        problems.push(format!("ssh was run: {:?}", rig.recorded()));
    }
    if !rig.where_lines().is_empty() {
        problems.push(format!("tasks ran: {:?}", rig.where_lines()));
    }
    let refusals = rig.refusals();
    if refusals.is_empty()
        || !refusals
            .iter()
            .all(|r| r.starts_with("refusing ssh to 127.0.0.2: not a vm of this run"))
    {
        problems.push(format!("the wrapper's refusals: {refusals:?}"));
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

/// `localhost` is no member and has no fleet address: a task delegated to it fails, and runs
/// neither on the controller nor on a member.
#[test]
fn fleet_delegate_to_localhost_runs_nowhere() {
    let rig = FleetRig::new();
    rig.make(FleetCell::DelegateToLocalhost);
    let played = rig.play();
    let mut problems = rig.nothing_escaped();
    match played {
        Ok(()) => problems.push("the run passed".into()),
        Err(e) => {
            let text = boma_harness::error_chain(&e);
            if !text.contains("boma_fleet_address") {
                problems.push(format!("the run failed otherwise: {text}"));
            }
        }
    }
    // The tasks before it ran on the members, as in any fleet run.
    let seen = rig.where_lines();
    if !seen.contains("delegated probe-a boma-it-probe-b-1") {
        problems.push(format!("the probe wrote {seen:?}"));
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

/// The matrix catches the hole it closes. With the connection file as it was before (a bare
/// `ssh`, the host, port, user and key, `ansible_ssh_common_args`: no executable, no
/// `ansible_ssh_args`), the issue's one line in a linked group_vars file sends Ansible's ssh
/// to the canary listener: a real (loopback) connection attempt.
#[test]
fn the_previous_pin_lets_hostile_group_vars_through() {
    let rig = Rig::new();
    let old = serde_json::json!({
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_ssh_host": "127.0.0.1",
        "ansible_port": VM_PORT,
        "ansible_ssh_port": VM_PORT,
        "ansible_user": VM_USER,
        "ansible_ssh_user": VM_USER,
        "ansible_private_key_file": rig.root.join("home/harness_key"),
        "ansible_ssh_private_key_file": rig.root.join("home/harness_key"),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_ssh_extra_args": "",
        "ansible_python_interpreter": "/usr/bin/python3",
    });
    write(&rig.files.connection_vars(), &old.to_string());
    let port = rig.canary.port;
    write(
        &rig.repo.join(format!(
            "inventories/production/group_vars/{GROUP}/zz-hostile.yml"
        )),
        &format!(
            "---\nansible_ssh_args: \"-o HostName=127.0.0.2 -o Port={port} -o BatchMode=yes\"\nansible_ssh_executable: /usr/bin/ssh\n"
        ),
    );
    let played = rig.play(rig.baseline_environment());
    assert!(played.is_err(), "the probe passed");
    let problems = rig.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("reached the canary listener")),
        "{problems:#?}"
    );
}

/// Why the connection file names the plugin fully: with everything else as it is now but a
/// bare `ansible_connection: ssh`, the `connection_plugins/ssh.py` beside the playbook is the
/// connection (ansible-core 2.18), and the run never reaches the wrapper.
#[test]
fn a_bare_ssh_is_shadowed_by_a_plugin_beside_the_playbook() {
    let rig = Rig::new();
    let file = rig.files.connection_vars();
    let text = std::fs::read_to_string(&file).unwrap();
    let bare = text.replace("\"ansible.builtin.ssh\"", "\"ssh\"");
    assert_ne!(bare, text);
    write(&file, &bare);
    rig.write_plugins(&rig.repo.join("playbooks/connection_plugins"));
    let _ = rig.play(rig.baseline_environment());
    let canary = std::fs::read_to_string(rig.canary_log()).unwrap_or_default();
    assert!(
        canary.contains("plugin ") && canary.contains("playbooks/connection_plugins/ssh.py"),
        "{canary:?}"
    );
}

/// The options of the installed ssh plugin that decide where and how it connects: every name
/// it reads each from must be pinned by the connection file (Ansible takes the last name of an
/// option's list that is set, whatever its precedence, so one unpinned alias would win).
const LOAD_BEARING: [&str; 16] = [
    "host",
    "port",
    "remote_user",
    "private_key_file",
    "password",
    "pkcs11_provider",
    "ssh_executable",
    "scp_executable",
    "sftp_executable",
    "ssh_transfer_method",
    "ssh_args",
    "ssh_common_args",
    "ssh_extra_args",
    "scp_extra_args",
    "sftp_extra_args",
    "pipelining",
];

/// The options that cannot move the connection once the load-bearing ones are pinned: each
/// only adds ssh options the wrapper drops (`ControlPath`, `StrictHostKeyChecking`,
/// `ConnectTimeout`), concerns a program that is refused (sftp) or not run (sshpass), or acts
/// on the VM (`-tt`, retries).
const HARMLESS: [&str; 8] = [
    "control_path",
    "control_path_dir",
    "host_key_checking",
    "reconnection_retries",
    "sftp_batch_mode",
    "sshpass_prompt",
    "timeout",
    "use_tty",
];

/// The list that is left, checked against the installed ansible-core: an option or a variable
/// name a later version adds fails here until it is pinned or shown harmless.
#[test]
fn the_connection_file_pins_every_name_the_installed_plugin_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_str().unwrap();
    let doc = repo().join(".venv/bin/ansible-doc");
    let sh = Shell::new().unwrap();
    let text = cmd!(sh, "{doc} -t connection ansible.builtin.ssh --json")
        .exec()
        .env_exactly([("HOME", home), ("PATH", "/usr/bin:/bin")])
        .quiet()
        .read()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let options = doc["ansible.builtin.ssh"]["doc"]["options"]
        .as_object()
        .unwrap();
    let pinned: BTreeSet<&str> = boma_inventory::connection_vars(&boma_inventory::VmConnection {
        host: "127.0.0.1",
        port: VM_PORT,
        user: VM_USER,
        ssh_private_key_file: Utf8Path::new("/k/id"),
        connect_dir: Utf8Path::new("/run/connect"),
    })
    .unwrap()
    .into_iter()
    .map(|(name, _)| name)
    .collect();
    for (option, spec) in options {
        let load_bearing = LOAD_BEARING.contains(&option.as_str());
        assert!(
            load_bearing || HARMLESS.contains(&option.as_str()),
            "the ssh plugin's option `{option}` is neither pinned nor shown harmless"
        );
        if !load_bearing {
            continue;
        }
        let names = spec["vars"].as_array().cloned().unwrap_or_default();
        for name in names.iter().filter_map(|v| v["name"].as_str()) {
            // The inventory name and the delegated host's own variables (which hold the
            // extra vars too) are not variables a file sets.
            if name == "inventory_hostname" || name.starts_with("delegated_vars[") {
                continue;
            }
            assert!(
                pinned.contains(name),
                "`{name}` ({option}) is not pinned by the connection file"
            );
        }
    }
    for option in LOAD_BEARING.iter().chain(&HARMLESS) {
        assert!(
            options.contains_key(*option),
            "no option `{option}` any more"
        );
    }
}

/// The matrix in `docs/security/connection.md` names these tests, and names every one of them.
#[test]
fn the_documented_matrix_names_the_tests_of_this_file() {
    let doc = std::fs::read_to_string(repo_file("docs/security/connection.md")).unwrap();
    let this = include_str!("connection_matrix.rs");
    let named: BTreeSet<&str> = doc
        .split("connection_matrix::")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
                .unwrap()
        })
        .collect();
    let defined: BTreeSet<&str> = this
        .split("#[test]\nfn ")
        .skip(1)
        .map(|rest| rest.split('(').next().unwrap())
        .filter(|name| *name != "the_documented_matrix_names_the_tests_of_this_file")
        .collect();
    assert_eq!(named, defined);
}
