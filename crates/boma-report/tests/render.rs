//! Snapshots of each scenario's JSON, JUnit XML and text summary, and the rules a reader of the
//! report relies on (the verdict, the reboot, the JSON round trip).

mod scenarios;

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
