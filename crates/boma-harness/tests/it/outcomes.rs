//! How a run ends, against the fake machine: a RED profile judged by its own `expect` (an
//! expected failure exits 0, anything else exits 1, a pass included).

use crate::support;

use crate::support::{Rig, serial, verify_fails_red, verify_passes};
use boma_harness::{ExitClass, HarnessError};
use boma_report::RunResult;

/// askari-red as the fake plays it: the verify playbook finds the incident's chain and the
/// controller's probe of 443 fails — exactly what its `expect` names. (On a real guest 443
/// fails before the reboot too; the fake kills it only at the reboot, so the reboot diff also
/// loses it, and the sandbox's profile expects that as well.)
fn red_as_planted(rig: &Rig) {
    *rig.machine.playbook.borrow_mut() = verify_fails_red();
    rig.machine.ports_dead_after_reboot.borrow_mut().push(443);
    let profile = rig.sandbox.settings.repo.join("profiles/askari-red.json");
    let text = std::fs::read_to_string(&profile).unwrap().replace(
        r#""probe_443_https""#,
        r#""probe_443_https", "probe_failed 443""#,
    );
    rig.sandbox.write("profiles/askari-red.json", &text);
}

fn idempotence_check(outcome: &boma_harness::RunOutcome) -> &boma_report::CheckRecord {
    outcome
        .report
        .checks
        .iter()
        .find(|c| c.name == "idempotence")
        .expect("an idempotence check")
}

fn failed_names(outcome: &boma_harness::RunOutcome) -> Vec<&str> {
    outcome
        .report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect()
}

#[test]
fn a_red_that_fails_exactly_as_expected_is_an_expected_failure_exiting_0() {
    let _serial = serial();
    let rig = Rig::new();
    red_as_planted(&rig);
    let outcome = rig.it_with("askari-red", support::options());
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.exit_class(), None, "exit 0");
    let report = &outcome.report;
    assert_eq!(report.result, RunResult::ExpectedFailure);
    assert_eq!(
        report.expected_failures,
        [
            "probe_443_https",
            "probe_failed 443 timeout",
            "forward_chain_accepts_containers",
        ]
    );
    assert_eq!(failed_names(&outcome), report.expected_failures);
    // Still the evidence of a failure: what ended the run, and the bundle (with the report,
    // which says `expected_failure` too).
    assert!(
        report
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("checks failed: ")),
        "{:?}",
        report.error
    );
    let bundle = report.diagnostics.clone().expect("a bundle");
    let saved = std::fs::read_to_string(format!("{bundle}/report.json")).unwrap();
    assert!(saved.contains(r#""result": "expected_failure""#), "{saved}");
    let log = std::fs::read_to_string(format!("{bundle}/harness.log")).unwrap();
    assert!(
        log.contains("  XFAIL forward_chain_accepts_containers"),
        "{log}"
    );
}

#[test]
fn a_red_whose_bug_stopped_happening_fails_naming_every_expected_failure() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = verify_passes();
    let outcome = rig.it_with("askari-red", support::options());
    assert!(failed_names(&outcome).is_empty());
    let error = outcome
        .error
        .as_ref()
        .expect("a pass is not what a RED expects");
    assert_eq!(error.class(), ExitClass::Failed);
    assert_eq!(
        error.to_string(),
        "expected failures not seen: forward_chain_accepts_containers, probe_443_https"
    );
    assert_eq!(outcome.report.result, RunResult::Failed);
    assert_eq!(
        outcome.report.error.as_deref(),
        Some(error.to_string().as_str())
    );
    assert!(outcome.report.expected_failures.is_empty());
    // A failure like any other: the VM kept for a look at why, with its bundle.
    assert!(outcome.report.diagnostics.is_some());
    assert_eq!(rig.machine.world.borrow().running.len(), 1, "kept");
}

#[test]
fn a_red_with_one_expected_failure_missing_fails_and_keeps_the_others_expected() {
    let _serial = serial();
    let rig = Rig::new();
    // The probe of 443 stays alive: `probe_443_https` is not seen.
    *rig.machine.playbook.borrow_mut() = verify_fails_red();
    let outcome = rig.it_with("askari-red", support::options());
    let error = outcome.error.expect("fails");
    assert_eq!(
        error.to_string(),
        "expected failures not seen: probe_443_https"
    );
    assert_eq!(outcome.report.result, RunResult::Failed);
    assert_eq!(
        outcome.report.expected_failures,
        ["forward_chain_accepts_containers",]
    );
}

#[test]
fn a_red_with_a_failure_it_does_not_expect_fails_naming_it() {
    let _serial = serial();
    let rig = Rig::new();
    red_as_planted(&rig);
    // The guest keeps a route to the real fleet: not the planted bug.
    rig.machine.world.borrow_mut().routed = true;
    let outcome = rig.it_with("askari-red", support::options());
    let error = outcome.error.expect("fails");
    assert_eq!(error.class(), ExitClass::Failed);
    assert_eq!(
        error.to_string(),
        "failed but not expected: no_route_to_fleet"
    );
    assert_eq!(outcome.report.result, RunResult::Failed);
}

/// A RED whose apply fails never got to the checks its `expect` names: a failure, with the
/// playbook's own error as the cause.
#[test]
fn a_red_whose_apply_fails_is_a_failure_with_the_apply_as_its_cause() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = Box::new(|call| {
        if call.label.starts_with("apply playbooks/offsite.yml") {
            return Err(HarnessError::Playbook {
                step: call.label.clone(),
                code: Some(2),
                tail: vec!["fatal: [vm]: FAILED!".into()],
            });
        }
        Ok(())
    });
    let outcome = rig.it_with("askari-red", support::options());
    let error = outcome.error.expect("fails");
    let chain = boma_harness::error_chain(&error);
    assert!(
        chain.starts_with(
            "expected failures not seen: forward_chain_accepts_containers, probe_443_https; the run ended on a failure no check records: apply playbooks/offsite.yml --tags docker_host,reverse_proxy failed (ansible-playbook exit status 2)"
        ),
        "{chain}"
    );
    assert_eq!(outcome.report.result, RunResult::Failed);
    assert_eq!(outcome.report.error.as_deref(), Some(chain.as_str()));
}

/// A RED whose planted bug keeps the guest from coming back (`expect: reboot_timeout`): the
/// reboot's failure is recorded as a check, so it is an expected failure.
#[test]
fn a_red_that_never_comes_back_as_expected_is_an_expected_failure() {
    let _serial = serial();
    let rig = Rig::new();
    rig.sandbox.write(
        "profiles/askari-hangs-red.json",
        &std::fs::read_to_string(rig.sandbox.settings.repo.join("profiles/askari.json"))
            .unwrap()
            .replace(
                r#""verify": ["tests/verify/askari.yml"]"#,
                r#""verify": ["tests/verify/askari.yml"], "expect": ["reboot_timeout"]"#,
            ),
    );
    rig.machine.world.borrow_mut().never_returns = true;
    let outcome = rig.it_with("askari-hangs-red", support::options());
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.result, RunResult::ExpectedFailure);
    assert_eq!(outcome.report.expected_failures, ["reboot_timeout"]);
    assert!(!outcome.report.rebooted);
}

/// Refusals say nothing about the host: a RED refused in preflight stays refused.
#[test]
fn a_refused_red_stays_refused() {
    let _serial = serial();
    let rig = Rig::new();
    rig.machine
        .missing_tools
        .borrow_mut()
        .push("qemu-img".into());
    let outcome = rig.it_with("askari-red", support::options());
    assert_eq!(outcome.exit_class(), Some(ExitClass::Refused));
    assert_eq!(outcome.report.result, RunResult::Refused);
    assert!(outcome.report.expected_failures.is_empty());
}

/// The idempotence check fails closed: a second apply the `boma_changes` callback never
/// recorded (not loaded: no file at all) is `idempotence_unproven`, a failed check, not
/// "nothing changed".
#[test]
fn a_second_apply_the_callback_never_recorded_is_unproven_and_fails() {
    let _serial = serial();
    let rig = Rig::new();
    rig.machine.callback_silent.set(true);
    let outcome = rig.it();
    let check = idempotence_check(&outcome);
    assert!(!check.ok);
    assert_eq!(check.reason.as_deref(), Some("idempotence_unproven"));
    let detail = check.detail.as_ref().and_then(|d| d.as_str()).unwrap();
    assert!(
        detail.starts_with("the boma_changes callback recorded 0 playbook run(s) for 2 step(s)"),
        "{detail}"
    );
    assert_eq!(outcome.exit_class(), Some(ExitClass::Failed));
    assert_eq!(outcome.report.result, RunResult::Failed);
    assert!(
        outcome
            .error
            .unwrap()
            .to_string()
            .contains("checks failed: idempotence"),
    );
}

/// With the callback's marks, a clean second apply is proven and says what it saw.
#[test]
fn a_proven_second_apply_says_what_the_callback_saw() {
    let _serial = serial();
    let rig = Rig::new();
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let check = idempotence_check(&outcome);
    assert!(check.ok);
    assert_eq!(
        check.detail,
        Some(serde_json::json!(
            "6 task results on the second apply, none changed"
        ))
    );
}

/// A failed run of several profiles (`it a b c`, any `-j`) keeps its VM powered off: no guest
/// left burning the CPU the next runs need, its disk, record and bundle kept, its memory given
/// back, and one line saying how to start it again — which `start` then does.
#[test]
fn a_failed_run_of_several_keeps_its_vm_powered_off_and_start_boots_it_again() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = verify_fails_red();
    let several = boma_harness::ItOptions {
        power_off_failed: true,
        ..support::options()
    };
    let outcome = rig.it_with("askari", several);
    assert_eq!(outcome.exit_class(), Some(ExitClass::Failed));
    let vm = outcome.report.vm.clone().unwrap();
    {
        let world = rig.machine.world.borrow();
        assert!(world.running.is_empty(), "powered off: {:?}", world.running);
        assert_eq!(world.stopped.len(), 1);
        assert_eq!(world.stopped[0].as_str(), vm);
        assert!(world.destroyed.is_empty(), "kept, not removed");
    }
    let dir = rig.sandbox.settings.runs_root.join(&vm);
    for file in ["overlay.qcow2", "seed.img", "run.json"] {
        assert!(dir.join(file).is_file(), "{file} is kept");
    }
    assert!(
        outcome.report.diagnostics.is_some(),
        "the bundle is written"
    );
    let reservation = rig
        .sandbox
        .settings
        .cache_dir
        .join(format!("reservations/{vm}.json"));
    assert!(!reservation.exists(), "a powered-off VM holds no memory");
    let log = std::fs::read_to_string(dir.join("harness.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("is kept powered off"))
        .unwrap_or_else(|| panic!("no line says the VM is powered off:\n{log}"));
    assert!(
        line.contains(&format!("`cargo xtask start {vm}` boots it again")),
        "{line}"
    );

    let record = boma_harness::start(&rig.ctx(), &vm).unwrap();
    assert_eq!(record.name.as_str(), vm);
    let world = rig.machine.world.borrow();
    assert!(world.running.contains(&record.name), "running again");
    assert_eq!(world.started.len(), 1);
    assert_eq!(world.started[0], record.name);
    drop(world);
    assert!(reservation.exists(), "its memory is reserved again");
    let current = boma_vm::Runs::new(&rig.sandbox.settings.runs_root)
        .current()
        .unwrap()
        .expect("the started VM is current");
    assert_eq!(current.name, record.name);
}

/// A single-profile run keeps its failed VM running, as before.
#[test]
fn a_failed_single_run_keeps_its_vm_running() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = verify_fails_red();
    let outcome = rig.it();
    assert_eq!(outcome.exit_class(), Some(ExitClass::Failed));
    let world = rig.machine.world.borrow();
    assert_eq!(world.running.len(), 1);
    assert!(world.stopped.is_empty());
}

#[test]
fn start_refuses_a_vm_it_has_no_record_of_and_a_bad_name() {
    let _serial = serial();
    let rig = Rig::new();
    for (vm, says) in [
        (
            "boma-it-askari-00000000",
            "no kept VM boma-it-askari-00000000",
        ),
        ("askari", "askari"),
    ] {
        let error = boma_harness::start(&rig.ctx(), vm).unwrap_err();
        assert_eq!(error.class(), ExitClass::Refused, "{error}");
        assert!(error.to_string().contains(says), "{error}");
    }
    assert!(rig.machine.world.borrow().started.is_empty());
}
