//! Verify playbooks run on the VM only: they get the harness's connection as their last extra
//! vars, write their results on the VM, and the harness reads them back over its own ssh. A
//! verify that fails, or writes nothing, fails the run (exit 1, the VM kept with its bundle);
//! preflight refuses one written for the controller, wherever in what it reaches.

use crate::support;

use std::cell::RefCell;
use std::rc::Rc;

use crate::support::{Rig, serial};
use boma_harness::{ExitClass, HarnessError};
use boma_inventory::CertTier;
use boma_report::{CheckRecord, RunResult};

const ASKARI_VERIFY: &str = "verify_failed tests/verify/askari.yml";

fn all_ok() -> String {
    serde_json::json!({"checks": [
        {"name": "docker_active", "ok": true, "reason": "ok"},
        {"name": "forward_chain_accepts_containers", "ok": true, "reason": "ok"},
    ]})
    .to_string()
}

fn check<'a>(checks: &'a [CheckRecord], name: &str) -> &'a CheckRecord {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

/// The run failed (exit 1) with a kept VM and a bundle, not refused.
fn failed_and_kept(rig: &Rig, outcome: &boma_harness::RunOutcome) {
    assert_eq!(
        outcome.exit_class(),
        Some(ExitClass::Failed),
        "{:?}",
        outcome.error
    );
    assert_eq!(outcome.report.result, RunResult::Failed);
    let vm = outcome.report.vm.clone().expect("a vm");
    assert!(
        rig.machine
            .world
            .borrow()
            .running
            .iter()
            .any(|n| n.as_str() == vm),
        "the VM is kept"
    );
    assert!(outcome.report.diagnostics.is_some(), "a bundle");
}

#[test]
fn a_verify_that_exits_non_zero_with_every_check_ok_fails_the_run() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = Box::new(|call| {
        if call.label.starts_with("verify") {
            std::fs::write(support::results_file(&call.args), all_ok()).unwrap();
            return Err(HarnessError::Playbook {
                step: call.label.clone(),
                code: Some(2),
                tail: vec!["fatal: [boma-it-x]: FAILED! => a task after the results".into()],
            });
        }
        Ok(())
    });
    let outcome = rig.it();
    failed_and_kept(&rig, &outcome);
    let failed = check(&outcome.report.checks, ASKARI_VERIFY);
    assert!(!failed.ok);
    assert_eq!(failed.reason.as_deref(), Some("playbook_failed"));
    assert!(check(&outcome.report.checks, "docker_active").ok);
}

#[test]
fn a_verify_that_writes_no_results_fails_the_run_and_is_no_refusal() {
    for exits in [Ok(()), Err(2)] {
        let _serial = serial();
        let rig = Rig::new();
        *rig.machine.playbook.borrow_mut() = Box::new(move |call| match exits {
            Err(code) if call.label.starts_with("verify") => Err(HarnessError::Playbook {
                step: call.label.clone(),
                code: Some(code),
                tail: vec![],
            }),
            _ => Ok(()),
        });
        let outcome = rig.it();
        failed_and_kept(&rig, &outcome);
        let failed = check(&outcome.report.checks, ASKARI_VERIFY);
        assert_eq!(failed.reason.as_deref(), Some("no_results"), "{exits:?}");
        let detail = failed.detail.as_ref().unwrap().as_str().unwrap();
        assert!(
            detail.starts_with("it wrote no results to boma_it_results_file"),
            "{detail}"
        );
    }
}

/// What an earlier run left on the VM (`assert` run twice) never passes for this run's
/// results: the harness removes the file before the playbook runs.
#[test]
fn results_an_earlier_run_left_on_the_vm_are_not_read_as_this_runs() {
    let _serial = serial();
    let rig = Rig::new();
    rig.machine
        .guest_files
        .borrow_mut()
        .insert("/run/boma-it/verify-results-0.json".into(), all_ok());
    *rig.machine.playbook.borrow_mut() = Box::new(|_| Ok(()));
    let outcome = rig.it();
    failed_and_kept(&rig, &outcome);
    assert_eq!(
        check(&outcome.report.checks, ASKARI_VERIFY)
            .reason
            .as_deref(),
        Some("no_results")
    );
    let commands = rig.machine.world.borrow().commands.clone();
    let remove = commands
        .iter()
        .position(|c| c == "script: # boma-it remove /run/boma-it/verify-results-0.json");
    let read = commands
        .iter()
        .position(|c| c == "script: # boma-it read /run/boma-it/verify-results-0.json");
    assert!(
        matches!((remove, read), (Some(r), Some(w)) if r < w),
        "{commands:?}"
    );
}

/// The verify run gets what every run gets, the connection last; its inputs name a path on
/// the VM and nothing of the controller's.
/// A verify run's `-e` files, and its inputs as it read them.
type Seen = (Vec<String>, serde_json::Value);

#[test]
fn a_verify_run_is_pinned_to_the_vm_and_writes_on_it() {
    let _serial = serial();
    let rig = Rig::new();
    let seen: Rc<RefCell<Option<Seen>>> = Rc::default();
    let record = Rc::clone(&seen);
    *rig.machine.playbook.borrow_mut() = Box::new(move |call| {
        if call.label.starts_with("verify") {
            let files: Vec<String> = call
                .args
                .iter()
                .filter_map(|a| a.strip_prefix('@').map(str::to_owned))
                .collect();
            let vars = files
                .iter()
                .find(|f| f.contains("/harness-vars-0.json"))
                .unwrap();
            let vars = serde_json::from_str(&std::fs::read_to_string(vars).unwrap()).unwrap();
            *record.borrow_mut() = Some((files, vars));
            std::fs::write(support::results_file(&call.args), all_ok()).unwrap();
        }
        Ok(())
    });
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let (files, vars) = seen.borrow().clone().expect("verify ran");
    assert!(
        files.last().unwrap().ends_with("/connection-vars.json"),
        "the connection is the last -e file: {files:?}"
    );
    assert!(
        files[files.len() - 2].ends_with("/harness-vars-0.json"),
        "{files:?}"
    );
    let keys: Vec<&String> = vars.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "boma_it_fleet_addresses",
            "boma_it_results_file",
            "boma_it_vm_name"
        ]
    );
    assert_eq!(
        vars["boma_it_results_file"],
        "/run/boma-it/verify-results-0.json"
    );
    // What it wrote on the VM joined the report.
    assert!(check(&outcome.report.checks, "docker_active").ok);
}

/// Refused before anything is created, naming the file and line.
fn refused(rig: &Rig, host: &str) -> String {
    let outcome = rig.it_with(
        host,
        boma_harness::ItOptions {
            tier: CertTier::Internal,
            ..support::options()
        },
    );
    let error = outcome.error.expect("refused");
    assert_eq!(error.class(), ExitClass::Refused, "{error}");
    assert!(rig.machine.world.borrow().booted.is_empty());
    assert!(rig.sandbox.vm_dirs().is_empty());
    assert!(rig.machine.playbook_calls.borrow().is_empty());
    error.to_string()
}

/// A profile `probe` like askari's, with its own verify playbook.
fn profile_with_verify(rig: &Rig, host: &str, verify: &str) {
    let text = std::fs::read_to_string(rig.sandbox.settings.repo.join("profiles/askari.json"))
        .unwrap()
        .replace("tests/verify/askari.yml", verify);
    rig.sandbox.write(&format!("profiles/{host}.json"), &text);
}

const VM_PLAY: &str = "- name: Verify\n  hosts: \"{{ boma_it_vm_name }}\"\n  tasks:\n";

#[test]
fn a_verify_playbook_written_for_the_controller_is_refused_with_file_and_line() {
    let _serial = serial();
    let rig = Rig::new();
    rig.sandbox.write(
        "tests/verify/probe.yml",
        &format!(
            "{VM_PLAY}    - name: Probe from the controller\n      ansible.builtin.command: curl -k https://x/\n      delegate_to: localhost\n"
        ),
    );
    profile_with_verify(&rig, "probe", "tests/verify/probe.yml");
    assert_eq!(
        refused(&rig, "probe"),
        "tests/verify/probe.yml:6: delegate_to: verify playbooks run on the VM only; declare \
         controller probes in the profile's published_ports"
    );
}

#[test]
fn what_a_verify_playbook_reaches_is_scanned_too() {
    let _serial = serial();
    for (files, says) in [
        (
            vec![
                (
                    "tests/verify/probe.yml",
                    format!("{VM_PLAY}    - ansible.builtin.import_tasks: probe-tasks.yml\n"),
                ),
                (
                    "tests/verify/probe-tasks.yml",
                    "- name: A local action\n  local_action: ansible.builtin.command true\n"
                        .to_owned(),
                ),
            ],
            "tests/verify/probe-tasks.yml:2: local_action",
        ),
        (
            vec![
                (
                    "tests/verify/probe.yml",
                    "- hosts: \"{{ boma_it_vm_name }}\"\n  roles: [probe_role]\n".to_owned(),
                ),
                (
                    "roles/probe_role/tasks/main.yml",
                    "- name: Here\n  ansible.builtin.command: true\n  connection: local\n"
                        .to_owned(),
                ),
            ],
            "roles/probe_role/tasks/main.yml:3: connection",
        ),
        (
            vec![
                (
                    "tests/verify/probe.yml",
                    "- ansible.builtin.import_playbook: probe-local.yml\n".to_owned(),
                ),
                (
                    "tests/verify/probe-local.yml",
                    "- hosts: localhost\n  tasks: []\n".to_owned(),
                ),
            ],
            "tests/verify/probe-local.yml:1: hosts: localhost",
        ),
    ] {
        let rig = Rig::new();
        for (path, text) in &files {
            rig.sandbox.write(path, text);
        }
        profile_with_verify(&rig, "probe", "tests/verify/probe.yml");
        let message = refused(&rig, "probe");
        assert!(message.starts_with(says), "{message}");
    }
}

const CADDY_ROOT: &str = "/srv/caddy/data/caddy/pki/authorities/local/root.crt";

/// askari's controller-side HTTPS check is the harness's own probe now: before each probe the
/// harness reads Caddy's local root from the guest, and the probe trusts that copy alone and
/// asks for a `Server: Caddy` answer.
#[test]
fn the_https_probe_trusts_the_guests_ca_read_over_the_harness_ssh() {
    let _serial = serial();
    let rig = Rig::new();
    let root = "-----BEGIN CERTIFICATE-----\nMIIBozCCAUmgAwIBAgIQ\n-----END CERTIFICATE-----\n";
    rig.machine
        .guest_files
        .borrow_mut()
        .insert(CADDY_ROOT.into(), root.into());
    let outcome = rig.it_with(
        "askari",
        boma_harness::ItOptions {
            keep: true,
            ..support::options()
        },
    );
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let probed = rig.machine.probed.borrow().clone();
    assert_eq!(probed.len(), 2, "before and after the reboot: {probed:?}");
    for target in &probed {
        assert_eq!(target.server.as_deref(), Some("Caddy"));
        let ca = target.ca.as_ref().expect("a CA");
        assert_eq!(ca.guest_path, CADDY_ROOT);
        let local = ca.local.as_ref().expect("read from the guest");
        assert_eq!(std::fs::read_to_string(local).unwrap(), root);
        let dir: Vec<_> = local.parent().unwrap().read_dir_utf8().unwrap().collect();
        assert_eq!(dir.len(), 1, "the CA is alone in its directory");
    }
    let commands = rig.machine.world.borrow().commands.clone();
    let reads = commands
        .iter()
        .filter(|c| *c == &format!("script: # boma-it read {CADDY_ROOT}"))
        .count();
    assert_eq!(reads, 2, "{commands:?}");
}

#[test]
fn a_ca_the_guest_does_not_have_is_probed_unverified() {
    let _serial = serial();
    let rig = Rig::new();
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    for target in rig.machine.probed.borrow().iter() {
        let ca = target.ca.as_ref().expect("askari's profile names a CA");
        assert_eq!(ca.local, None, "{target:?}");
    }
}
