//! Snapshots of each scenario's JSON, JUnit XML and text summary, and the rules a reader of the
//! report relies on (the verdict, the reboot, the JSON round trip).

use crate::scenarios;

use boma_report::{Report, RunResult, render_json, render_junit, render_text_summary};

/// One named snapshot per rendering of the scenario.
fn snapshots(name: &str, report: &Report) {
    insta::assert_snapshot!(format!("{name}.json"), render_json(report));
    insta::assert_snapshot!(format!("{name}.junit"), render_junit(report));
    insta::assert_snapshot!(format!("{name}.text"), render_text_summary(report));
}

#[test]
fn passed() {
    let report = scenarios::passed();
    assert_eq!(report.result(), RunResult::Passed);
    assert!(report.runs[0].full_pass());
    snapshots("passed", &report);
}

#[test]
fn red() {
    let report = scenarios::red();
    assert_eq!(report.result(), RunResult::Failed);
    let junit = render_junit(&report);
    assert!(
        junit.contains(r#"<failure message="pure_drop" type="pure_drop">"#),
        "{junit}"
    );
    assert!(junit.contains(r#"classname="boma.askari.reboot_diff""#));
    assert!(junit.contains("/root/integration-runs/boma-it-askari-5e6f7a8b"));
    snapshots("red", &report);
}

/// A RED profile caught as its `expect` says: the verdict is not a pass, but it is as expected
/// (exit 0), and no rendering shows it as a pass or as red: JUnit skips its expected failures
/// (typed `expected_failure`, with their evidence), its failed phase too, and says why.
#[test]
fn expected_failure() {
    let report = scenarios::expected_failure();
    assert_eq!(report.result(), RunResult::ExpectedFailure);
    assert!(report.result().as_expected());
    assert!(!report.runs[0].full_pass());
    let junit = render_junit(&report);
    assert!(
        junit.contains(r#"tests="10" failures="0" errors="0" skipped="4""#),
        "{junit}"
    );
    assert!(
        junit.contains(
            r#"<skipped message="expected failure: pure_drop" type="expected_failure">table inet filter"#
        ),
        "{junit}"
    );
    assert!(
        junit.contains("expected failures (the profile's `expect`): forward_chain_accepts_containers, https_443_from_controller, docker_forward_dropin_survives_reboot"),
        "{junit}"
    );
    let text = render_text_summary(&report);
    assert!(
        text.contains("  XFAIL forward_chain_accepts_containers (pure_drop)\n"),
        "{text}"
    );
    assert!(text.contains("  PASS docker_active (ok)\n"), "{text}");
    assert!(
        text.contains("result: expected failure: it failed exactly as its profile's `expect` says"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
    assert_eq!(json["result"], "expected_failure");
    assert_eq!(
        json["runs"][0]["expected_failures"][0],
        "forward_chain_accepts_containers"
    );
    snapshots("expected_failure", &report);
}

/// A RED profile whose planted bug stopped happening passed every check: that is a failure
/// (exit 1), and JUnit shows it as one even though no check failed.
#[test]
fn expectation_unmet() {
    let report = scenarios::expectation_unmet();
    assert_eq!(report.result(), RunResult::Failed);
    assert!(!report.result().as_expected());
    let junit = render_junit(&report);
    assert!(
        junit.contains(r#"<failure message="expected failures not seen: forward_chain_accepts_containers, https_443_from_controller" type="failed">"#),
        "{junit}"
    );
    assert!(junit.contains(r#"failures="1""#), "{junit}");
    snapshots("expectation_unmet", &report);
}

/// A RED profile with a failure its `expect` does not name: the run fails, and JUnit shows
/// that failure (and the failed phase) red while the expected ones stay skipped.
#[test]
fn an_unexpected_failure_beside_expected_ones_is_red() {
    let mut report = scenarios::expected_failure();
    let run = &mut report.runs[0];
    run.result = RunResult::Failed;
    run.expected_failures
        .retain(|n| n != "https_443_from_controller");
    let junit = render_junit(&report);
    assert!(
        junit.contains(r#"tests="10" failures="2" errors="0" skipped="2""#),
        "{junit}"
    );
    assert!(
        junit.contains(r#"<failure message="timeout" type="timeout">"#),
        "{junit}"
    );
    let text = render_text_summary(&report);
    assert!(
        text.contains("  FAIL https_443_from_controller (timeout)\n")
            && text.contains("  XFAIL forward_chain_accepts_containers (pure_drop)\n"),
        "{text}"
    );
}

#[test]
fn refused() {
    let report = scenarios::refused();
    assert_eq!(report.result(), RunResult::Refused);
    // No phase ran, so the refusal itself must show as an error, not as an empty green suite.
    let junit = render_junit(&report);
    assert!(
        junit.contains(r#"tests="1" failures="0" errors="1""#),
        "{junit}"
    );
    assert!(junit.contains(r#"hostname="njema""#), "{junit}");
    snapshots("refused", &report);
}

#[test]
fn interrupted() {
    let report = scenarios::interrupted();
    assert_eq!(report.result(), RunResult::Interrupted);
    let junit = render_junit(&report);
    assert!(
        junit.contains(r#"<error message="interrupted" type="interrupted">"#),
        "{junit}"
    );
    snapshots("interrupted", &report);
}

#[test]
fn two_profiles() {
    let report = scenarios::two_profiles();
    assert_eq!(report.result(), RunResult::Failed);
    let junit = render_junit(&report);
    assert_eq!(junit.matches("<testsuite ").count(), 2);
    assert!(
        junit.contains(r#"<testsuites name="boma" tests="16" failures="1" errors="0" skipped="0""#),
        "{junit}"
    );
    snapshots("two_profiles", &report);
}

#[test]
fn a_pass_without_reboot_never_reads_as_a_full_pass() {
    let report = scenarios::no_reboot();
    assert_eq!(report.result(), RunResult::Passed);
    assert!(!report.runs[0].full_pass());
    let junit = render_junit(&report);
    assert!(junit.contains(r#"skipped="1""#), "{junit}");
    assert!(
        junit.contains(
            r#"<skipped message="not rebooted: this pass is blind to reboot-survival bugs"/>"#
        ),
        "{junit}"
    );
    let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
    assert_eq!(json["runs"][0]["rebooted"], false);
    assert!(render_text_summary(&report).contains("passed WITHOUT a reboot"));
    snapshots("no_reboot", &report);
}

#[test]
fn an_empty_report_is_not_a_pass() {
    let report = Report {
        runs: Vec::new(),
        started_at: scenarios::at("2026-11-29T01:00:00Z"),
        total_seconds: 0.0,
    };
    assert_eq!(report.result(), RunResult::Error);
    assert!(render_text_summary(&report).contains("overall: error"));
}

#[test]
fn json_reads_back_into_the_same_report() {
    for (name, report) in scenarios::all() {
        let json = render_json(&report);
        let back: Report = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, report, "{name}");
        assert_eq!(render_json(&back), json, "{name}");
    }
}

#[test]
fn json_top_level_is_the_verdict_then_the_runs() {
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&scenarios::two_profiles())).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(json["result"], "failed");
    assert_eq!(json["started_at"], "2026-11-29T01:02:03.456Z");
    assert_eq!(json["runs"][1]["checks"][1]["source"], "idempotence");
    assert_eq!(json["runs"][0]["phases"][0]["status"], "ok");
}
