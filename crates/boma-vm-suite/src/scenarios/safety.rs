//! `safety`: the test VM's connection is protected by more than its name. In a scratch
//! worktree of the repository, `group_vars` of the VM's group aim every connection variable
//! elsewhere (loopback stand-ins that lead nowhere); a run whose one apply writes the guest's
//! boot_id into the guest must still pass, and the file must hold the VM's boot_id: the apply
//! reached the test VM. A connection variable in an extra-vars file is refused before anything
//! is created, naming the file and line.

use anyhow::{Context, ensure};
use boma_exec::CmdExt;
use boma_report::RunResult;
use camino::Utf8Path;
use xshell::{Shell, cmd};

use super::{
    Suite, boot_id, current_in, ensure_image, exit_code, guest_run, it, require_nothing_left,
    xtask_command, xtask_in,
};
use crate::verdict;

/// Where the hostile group_vars go: a group of the probe profile, read last of its directory.
const HOSTILE_GROUP_VARS: &str = "inventories/production/group_vars/offsite_hosts/zz-hostile.yml";

/// Every connection variable aimed elsewhere — at loopback addresses and files that lead
/// nowhere, so that even a harness that let them through sends nothing off this machine. Never
/// `ansible_connection: local`, which would run the play on this machine.
const HOSTILE_GROUP_VARS_TEXT: &str = "---
# Written by the VM suite's safety scenario into a scratch worktree: connection variables that
# must not move the harness's connection. Loopback stand-ins only.
ansible_host: 127.0.0.2
ansible_port: 1
ansible_user: nobody
ansible_ssh_private_key_file: /nonexistent
ansible_ssh_common_args: \"-o ProxyCommand=/bin/false\"
";

/// The probe: one harmless write in the guest, of the boot it ran in.
const PROBE_PLAYBOOK: &str = "tests/integration/safety-probe.yml";
const PROBE_FILE: &str = "/var/tmp/boma-safety-probe";
const PROBE_PLAYBOOK_TEXT: &str = "---
# Written by the VM suite's safety scenario into a scratch worktree: records which machine and
# boot the apply reached.
- name: Record the boot the apply ran in
  hosts: all
  gather_facts: false
  tasks:
    - name: Read the boot id
      ansible.builtin.command: cat /proc/sys/kernel/random/boot_id
      register: safety_probe_boot_id
      changed_when: false

    - name: Write it where the VM suite reads it
      ansible.builtin.copy:
        content: \"{{ safety_probe_boot_id.stdout }}\\n\"
        dest: /var/tmp/boma-safety-probe
        mode: \"0644\"
";

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

/// The scratch files, by path relative to the worktree.
const SCRATCH_FILES: [(&str, &str); 5] = [
    (HOSTILE_GROUP_VARS, HOSTILE_GROUP_VARS_TEXT),
    (PROBE_PLAYBOOK, PROBE_PLAYBOOK_TEXT),
    ("profiles/safety-probe.json", PROBE_PROFILE_TEXT),
    (REFUSED_OVERRIDE, REFUSED_OVERRIDE_TEXT),
    ("profiles/safety-refused.json", REFUSED_PROFILE_TEXT),
];

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
    for (path, text) in SCRATCH_FILES {
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

    // Hostile group_vars: the apply still reaches the VM. No reboot (the probe's boot_id must
    // be the current one) and no layers (a reused layer would skip the apply that writes it).
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
    )?;
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
    let written = guest_run(&record, &format!("cat {PROBE_FILE}"))?;
    let now = boot_id(&record)?;
    ensure!(
        !now.is_empty() && written == now,
        "{PROBE_FILE} on {} holds `{written}`, not its boot_id `{now}`: the apply did not run in the test VM",
        record.name
    );
    eprintln!(
        "with every connection variable aimed elsewhere by group_vars, the apply wrote {}'s boot_id {now}",
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
        for (name, text) in [
            (PROBE_PROFILE, PROBE_PROFILE_TEXT),
            (REFUSED_PROFILE, REFUSED_PROFILE_TEXT),
        ] {
            let file = format!("profiles/{name}.json");
            assert!(SCRATCH_FILES.iter().any(|(p, _)| *p == file), "{file}");
            let profile = boma_inventory::parse_profile(&file, text).unwrap();
            assert_eq!(profile.groups, ["offsite_hosts"]);
            assert!(HOSTILE_GROUP_VARS.contains("/group_vars/offsite_hosts/"));
            assert_eq!(profile.applies[0].playbook_path(), PROBE_PLAYBOOK);
            assert!(profile.expect.is_empty());
        }
    }

    #[test]
    fn the_hostile_group_vars_are_all_connection_variables_aimed_at_loopback() {
        let found = boma_inventory::find_connection_vars("zz-hostile.yml", HOSTILE_GROUP_VARS_TEXT)
            .unwrap();
        let keys: Vec<&str> = found.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ansible_host",
                "ansible_port",
                "ansible_user",
                "ansible_ssh_private_key_file",
                "ansible_ssh_common_args"
            ]
        );
        // Nothing here may lead off this machine or run the play on it.
        assert!(!HOSTILE_GROUP_VARS_TEXT.contains("ansible_connection"));
        assert!(HOSTILE_GROUP_VARS_TEXT.contains("ansible_host: 127.0.0.2\n"));
        assert_eq!(REFUSED_OVERRIDE_TEXT, "ansible_host: 127.0.0.2\n");
        assert!(PROBE_PLAYBOOK_TEXT.contains(PROBE_FILE));
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
