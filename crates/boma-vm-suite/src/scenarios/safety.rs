//! `safety`: the test VM's connection holds by construction, against a real guest. In a
//! scratch worktree of the repository, several variable sources aim every connection setting
//! elsewhere at once — the inventory's `group_vars` of the VM's group, the play's `vars`, a
//! `set_fact`, the operator's environment (`ANSIBLE_*`) — at loopback canaries: a listener on
//! 127.0.0.2 that counts connections, an executable that logs being run (the hostile `ssh`,
//! `scp`, `sftp` and `ProxyCommand`), and `ansible_connection: local`, which would write the
//! probe's files on this machine. The run must pass; each kind of task (plain, delegated to
//! localhost, on the local connection, delegated to another address) must have written the
//! guest's boot_id in the guest; this machine must have none of the probe's files; the canaries
//! must have seen nothing; and the run's command log must show its connections through the
//! wrapper. A connection variable in an extra-vars file is refused before anything is created,
//! naming the file and line (the harness's own inputs: a mistake there is refused, not
//! overridden). The fast tests' matrix (`xtask/tests/it/connection_matrix.rs`) covers every source;
//! this shows it models a real guest.

use std::io::Read as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use boma_exec::CmdExt;
use boma_report::RunResult;
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use super::{
    Suite, boot_id, current_in, ensure_image, exit_code, guest_run, it, require_nothing_left,
    xtask_command, xtask_in,
};
use crate::verdict;

/// Where the hostile group_vars go: a group of the probe profile, read last of its directory.
const HOSTILE_GROUP_VARS: &str = "inventories/production/group_vars/offsite_hosts/zz-hostile.yml";

/// The probe playbook: each kind of task writes the boot it ran in.
const PROBE_PLAYBOOK: &str = "tests/integration/safety-probe.yml";
/// The probe's files, one per kind of task: `<PROBE_PREFIX><kind>`.
const PROBE_PREFIX: &str = "/var/tmp/boma-safety-";
const PROBE_KINDS: [&str; 4] = ["plain", "delegated", "local", "elsewhere"];

/// The probe's profile: in `offsite_hosts` (so the hostile group_vars apply), askari's
/// overrides as extra vars (so the repo policy holds), no published port.
const PROBE_PROFILE: &str = "safety-probe";
const PROBE_PROFILE_TEXT: &str = r#"{
  "groups": ["offsite_hosts"],
  "applies": [
    {"playbook": "tests/integration/safety-probe.yml", "tags": []}
  ],
  "extra_vars_files": ["overrides/askari.yml"],
  "mem_mib": 1024,
  "vcpus": 2,
  "published_ports": []
}
"#;

/// A connection variable in an extra-vars file, on its first line.
const REFUSED_OVERRIDE: &str = "overrides/zz-hostile.yml";
const REFUSED_OVERRIDE_TEXT: &str = "ansible_host: 127.0.0.2\n";
const REFUSED_PROFILE: &str = "safety-refused";
const REFUSED_PROFILE_TEXT: &str = r#"{
  "groups": ["offsite_hosts"],
  "applies": [
    {"playbook": "tests/integration/safety-probe.yml", "tags": []}
  ],
  "extra_vars_files": ["overrides/askari.yml", "overrides/zz-hostile.yml"],
  "mem_mib": 1024,
  "vcpus": 2,
  "published_ports": []
}
"#;

/// The loopback canaries every hostile value points at.
struct Canaries {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Logs its arguments when run: the hostile `ssh`, `scp`, `sftp`, `ProxyCommand`.
    exec: Utf8PathBuf,
    log: Utf8PathBuf,
}

impl Canaries {
    fn start(dir: &Utf8Path) -> anyhow::Result<Canaries> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
        let listener = TcpListener::bind("127.0.0.2:0").context("cannot listen on 127.0.0.2")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopped) = (Arc::clone(&hits), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                        eprintln!("the canary on 127.0.0.2 was reached from {peer}");
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                        let _ = stream.read(&mut [0u8; 64]);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        let exec = dir.join("canary-exec");
        let log = dir.join("canary.log");
        std::fs::write(
            &exec,
            format!("#!/bin/sh\nprintf '%s\\n' \"$0 $*\" >> '{log}'\nexit 255\n"),
        )?;
        std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755))?;
        Ok(Canaries {
            port,
            hits,
            stop,
            exec,
            log,
        })
    }
}

impl Drop for Canaries {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every connection setting aimed at the canaries, as the inventory's group_vars.
fn hostile_group_vars(port: u16, exec: &Utf8Path) -> String {
    format!(
        "---
# Written by the VM suite's safety scenario into a scratch worktree: connection settings that
# must not move the harness's connection. Loopback canaries only.
ansible_connection: local
ansible_host: 127.0.0.2
ansible_ssh_host: 127.0.0.2
ansible_port: {port}
ansible_ssh_port: {port}
ansible_user: root
ansible_ssh_user: root
ansible_ssh_private_key_file: /nonexistent
ansible_ssh_args: \"-o HostName=127.0.0.2 -o Port={port} -o ProxyCommand={exec}\"
ansible_ssh_common_args: \"-o ProxyJump=root@127.0.0.2:{port}\"
ansible_ssh_extra_args: \"-F {exec} -i /nonexistent\"
ansible_ssh_executable: {exec}
ansible_scp_executable: {exec}
ansible_sftp_executable: {exec}
ansible_ssh_transfer_method: scp
ansible_control_path: /tmp/boma-safety-%%h
"
    )
}

/// The probe: hostile play vars and a hostile fact, then each kind of task writes the boot it
/// ran in, and a file goes over the connection.
fn probe_playbook(port: u16, exec: &Utf8Path) -> String {
    let mut text = format!(
        "---
# Written by the VM suite's safety scenario into a scratch worktree: records which machine and
# boot each kind of task reached.
- name: Record the boot each kind of task ran in
  hosts: all
  gather_facts: false
  vars:
    ansible_connection: local
    ansible_ssh_executable: {exec}
    ansible_ssh_args: \"-o HostName=127.0.0.2 -o Port={port}\"
  tasks:
    - name: Aim the connection elsewhere once more, as a fact
      ansible.builtin.set_fact:
        ansible_host: 127.0.0.2
        ansible_port: {port}
        ansible_connection: local

    - name: A file sent over the connection
      ansible.builtin.copy:
        content: \"probe\\n\"
        dest: {PROBE_PREFIX}copied
        mode: \"0644\"
"
    );
    for kind in PROBE_KINDS {
        let placement = match kind {
            "delegated" => "      delegate_to: localhost\n",
            "local" => "      connection: local\n",
            "elsewhere" => "      delegate_to: 127.0.0.2\n",
            _ => "",
        };
        text.push_str(&format!(
            "
    - name: Write the boot id ({kind})
      ansible.builtin.shell: cat /proc/sys/kernel/random/boot_id > {PROBE_PREFIX}{kind}
      changed_when: false
{placement}"
        ));
    }
    text
}

/// The operator's environment, hostile too: the harness must not hand it to Ansible.
fn hostile_environment(port: u16, exec: &Utf8Path) -> Vec<(String, String)> {
    [
        (
            "ANSIBLE_SSH_ARGS",
            format!("-o HostName=127.0.0.2 -o Port={port}"),
        ),
        ("ANSIBLE_SSH_EXECUTABLE", exec.to_string()),
        ("ANSIBLE_TRANSPORT", "local".to_owned()),
        ("ANSIBLE_REMOTE_PORT", port.to_string()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

/// The scratch files, by path relative to the worktree.
fn scratch_files(port: u16, exec: &Utf8Path) -> Vec<(&'static str, String)> {
    vec![
        (HOSTILE_GROUP_VARS, hostile_group_vars(port, exec)),
        (PROBE_PLAYBOOK, probe_playbook(port, exec)),
        ("profiles/safety-probe.json", PROBE_PROFILE_TEXT.to_owned()),
        (REFUSED_OVERRIDE, REFUSED_OVERRIDE_TEXT.to_owned()),
        (
            "profiles/safety-refused.json",
            REFUSED_PROFILE_TEXT.to_owned(),
        ),
    ]
}

pub fn safety(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "safety";
    ensure_image(suite, S)?;
    let copy = suite.work.join("safety-checkout");
    let repo = suite.repo.clone();
    let sh = Shell::new()?;
    // HEAD: the committed checkout (what CI tests). `safe.directory` on the command line (a
    // protected scope): root runs the suite, the checkout may be a developer's.
    let safe = format!("safe.directory={repo}");
    cmd!(
        sh,
        "git -c {safe} -C {repo} worktree add --detach {copy} HEAD"
    )
    .exec()
    .run()?;
    let result = in_copy(suite, &copy);
    let removed = remove_copy(suite, &copy);
    result?;
    removed
}

/// The refusal, then the probe, in the scratch worktree `copy`.
fn in_copy(suite: &mut Suite, copy: &Utf8Path) -> anyhow::Result<()> {
    const S: &str = "safety";
    let canaries = Canaries::start(&suite.work.join("safety-canaries"))?;
    for (path, text) in scratch_files(canaries.port, &canaries.exec) {
        let path = copy.join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {path}"))?;
    }
    // The Makefile's venv is not in git: the scratch worktree uses the repository's.
    let venv = suite.repo.join(".venv");
    if venv.is_dir() {
        std::os::unix::fs::symlink(&venv, copy.join(".venv"))
            .with_context(|| format!("cannot link {venv} into {copy}"))?;
    }
    require_nothing_left(copy, "preparing the scratch worktree")?;

    // An extra-vars file with a connection variable: refused (2) before anything is created.
    let run = it(suite, S, copy, &[REFUSED_PROFILE], 2)?;
    let report = verdict::run_of(&run.report, REFUSED_PROFILE).map_err(anyhow::Error::msg)?;
    let place = format!("{REFUSED_OVERRIDE}:1");
    let error = report.error.clone().unwrap_or_default();
    ensure!(
        report.result == RunResult::Refused,
        "`{}` ended `{}`, expected `refused`: {error}",
        run.label,
        report.result
    );
    ensure!(
        error.contains(&place) || run.stderr_tail.contains(&place),
        "the refusal does not name {place}: {error}"
    );
    ensure!(report.vm.is_none(), "a refused run booted {:?}", report.vm);
    eprintln!("refused before anything was created: {error}");
    require_nothing_left(copy, "a refused run")?;

    // Hostile group_vars, play vars, a fact and environment: every task still reaches the VM.
    // No reboot (the probe's boot_id must be the current one) and no layers (a reused layer
    // would skip the apply that writes it).
    for kind in PROBE_KINDS {
        let _ = std::fs::remove_file(format!("{PROBE_PREFIX}{kind}"));
    }
    suite.it_env = hostile_environment(canaries.port, &canaries.exec);
    let run = it(
        suite,
        S,
        copy,
        &[
            PROBE_PROFILE,
            "--keep",
            "--no-idempotence",
            "--no-reboot",
            "--fresh",
        ],
        0,
    );
    suite.it_env.clear();
    let run = run?;
    let report = verdict::run_of(&run.report, PROBE_PROFILE).map_err(anyhow::Error::msg)?;
    ensure!(
        report.result == RunResult::Passed,
        "`{}` ended `{}`",
        run.label,
        report.result
    );
    let record = current_in(copy)?;
    ensure!(
        report.vm.as_deref() == Some(record.name.as_str()),
        "the kept VM {} is not the run's {:?}",
        record.name,
        report.vm
    );
    let now = boot_id(&record)?;
    ensure!(!now.is_empty(), "no boot_id from {}", record.name);
    for kind in PROBE_KINDS {
        let file = format!("{PROBE_PREFIX}{kind}");
        let written = guest_run(&record, &format!("cat {file}"))?;
        ensure!(
            written == now,
            "{file} on {} holds `{written}`, not its boot_id `{now}`: the {kind} task did not run in the test VM",
            record.name
        );
        ensure!(
            !Utf8Path::new(&file).exists(),
            "{file} exists on this machine: the {kind} task ran on the controller"
        );
    }
    ensure!(
        canaries.hits.load(Ordering::Relaxed) == 0,
        "the canary on 127.0.0.2 was reached"
    );
    let ran = std::fs::read_to_string(&canaries.log).unwrap_or_default();
    ensure!(ran.is_empty(), "the canary executable was run: {ran}");
    let log = copy
        .join("tests/integration/.run")
        .join(record.name.as_str())
        .join("harness.log");
    let log = std::fs::read_to_string(&log).with_context(|| format!("cannot read {log}"))?;
    let wrapped = log.lines().filter(|l| l.contains(" [pinned: ")).count();
    ensure!(
        wrapped > 0,
        "the run's command log shows no connection through the wrapper"
    );
    eprintln!(
        "with every connection setting aimed elsewhere by group_vars, play vars, a fact and the environment, every kind of task wrote {}'s boot_id {now}; {wrapped} connections went through the wrapper; the canaries saw nothing",
        record.name
    );
    let out = xtask_in(suite, copy, &["down"], &[])?;
    let code = exit_code(out.status);
    ensure!(code == 0, "`xtask down` in {copy} exited with {code}");
    require_nothing_left(copy, "down in the scratch worktree")
}

/// Whatever happened: the scratch worktree's VMs (the repository's own `prune` does not look
/// in another checkout's run directory), then the worktree.
fn remove_copy(suite: &Suite, copy: &Utf8Path) -> anyhow::Result<()> {
    if copy.join("tests/integration/.run").exists() {
        let pruned = xtask_command(suite, copy, &["prune"], &[])?
            .stream()
            .allow_fail()
            .uninterruptible()
            .run()?;
        ensure!(
            pruned.success(),
            "`xtask prune` in {copy} exited with {}",
            exit_code(pruned.status)
        );
    }
    // The link first, so that nothing below can reach through it into the real venv.
    let _ = std::fs::remove_file(copy.join(".venv"));
    let repo = &suite.repo;
    let safe = format!("safe.directory={repo}");
    let sh = Shell::new()?;
    cmd!(sh, "git -c {safe} -C {repo} worktree remove --force {copy}")
        .exec()
        .uninterruptible()
        .allow_fail()
        .run()?;
    if copy.exists() {
        std::fs::remove_dir_all(copy).with_context(|| format!("cannot remove {copy}"))?;
        cmd!(sh, "git -c {safe} -C {repo} worktree prune")
            .exec()
            .uninterruptible()
            .run()?;
    }
    ensure!(!copy.exists(), "the scratch worktree {copy} is still there");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_profiles_are_valid_profiles() {
        let files = scratch_files(40000, Utf8Path::new("/work/safety-canaries/canary-exec"));
        for (name, text) in [
            (PROBE_PROFILE, PROBE_PROFILE_TEXT),
            (REFUSED_PROFILE, REFUSED_PROFILE_TEXT),
        ] {
            let file = format!("profiles/{name}.json");
            assert!(files.iter().any(|(p, _)| *p == file), "{file}");
            let profile = boma_inventory::parse_profile(&file, text).unwrap();
            assert_eq!(profile.groups, ["offsite_hosts"]);
            assert!(HOSTILE_GROUP_VARS.contains("/group_vars/offsite_hosts/"));
            assert_eq!(profile.applies[0].playbook_path(), PROBE_PLAYBOOK);
            assert!(profile.expect.is_empty());
        }
    }

    #[test]
    fn the_hostile_values_are_connection_variables_aimed_at_loopback_only() {
        let exec = Utf8Path::new("/work/safety-canaries/canary-exec");
        let text = hostile_group_vars(40000, exec);
        let found = boma_inventory::find_connection_vars("zz-hostile.yml", &text).unwrap();
        let keys: Vec<&str> = found.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(keys.len(), 16, "{keys:?}");
        assert!(keys.contains(&"ansible_connection"));
        assert!(keys.contains(&"ansible_ssh_executable"));
        // Every address in it is the loopback canary.
        for word in text.split([' ', '"', '=', '\n', '@', ':']) {
            if word.parse::<std::net::IpAddr>().is_ok() {
                assert_eq!(word, "127.0.0.2", "{text}");
            }
        }
        let playbook = probe_playbook(40000, exec);
        for kind in PROBE_KINDS {
            assert!(
                playbook.contains(&format!("{PROBE_PREFIX}{kind}")),
                "{kind}"
            );
        }
        assert!(playbook.contains("delegate_to: localhost"));
        assert!(playbook.contains("connection: local"));
        let env = hostile_environment(40000, exec);
        assert!(env.iter().all(|(k, _)| k.starts_with("ANSIBLE_")));
        assert_eq!(REFUSED_OVERRIDE_TEXT, "ansible_host: 127.0.0.2\n");
    }

    #[test]
    fn the_refused_override_is_named_at_its_first_line() {
        let found =
            boma_inventory::find_connection_vars(REFUSED_OVERRIDE, REFUSED_OVERRIDE_TEXT).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "overrides/zz-hostile.yml:1: ansible_host"
        );
        let profile =
            boma_inventory::parse_profile("profiles/safety-refused.json", REFUSED_PROFILE_TEXT)
                .unwrap();
        assert_eq!(
            profile.extra_vars_files.last().map(|f| f.as_str()),
            Some(REFUSED_OVERRIDE)
        );
    }
}
