//! The report as JUnit XML, in the common format Jenkins, GitLab and GitHub's test-report actions
//! read: a `<testsuite>` per run, a `<testcase>` per phase and per check. `tests/junit.xsd` is
//! that format, and the tests validate every rendering against it.

use std::fmt::Write as _;

use crate::model::{REBOOT_PHASE, clean_seconds};
use crate::xml::{attr, clean, text};
use crate::{CheckRecord, PhaseRecord, PhaseStatus, Report, RunReport, RunResult};

/// What a skipped reboot says: a pass without one proves nothing about reboot survival.
const NOT_REBOOTED: &str = "not rebooted: this pass is blind to reboot-survival bugs";
/// A `message` attribute is a one-line summary; the full text goes into the element's body.
const MESSAGE_CHARS: usize = 200;

/// The report as a JUnit XML document (ending with a newline).
///
/// Every phase and check is a test case. A failed phase or check is a `<failure>`, an
/// interrupted phase an `<error>`, a skipped phase `<skipped/>`. A failure the profile's `expect`
/// names is `<skipped type="expected_failure">` with its evidence, as pytest writes an xfail: a
/// CI server shows it neither green nor red, and an expected failure's run (exit 0) shows no
/// red test case — its failed phases are expected too, since the run's failures are exactly
/// the expected ones. A run whose result no test case
/// accounts for (refused in preflight, an error outside any phase, an interrupt between phases)
/// gets a `result` test case carrying it, so a CI server never shows such a run as green; a pass
/// without a reboot shows a skipped `reboot`.
pub fn render_junit(report: &Report) -> String {
    let suites: Vec<(&RunReport, Vec<Case>)> =
        report.runs.iter().map(|run| (run, cases(run))).collect();
    let total = suites
        .iter()
        .fold(Counts::default(), |sum, (_, cases)| sum + Counts::of(cases));

    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"boma\"{} time=\"{}\">",
        total.attrs(),
        time(report.total_seconds)
    );
    for (id, (run, cases)) in suites.iter().enumerate() {
        write_suite(&mut out, id, run, cases);
    }
    out.push_str("</testsuites>\n");
    out
}

/// One `<testcase>`, decided before anything is written.
struct Case {
    classname: String,
    name: String,
    seconds: f64,
    outcome: Outcome,
}

enum Outcome {
    Passed,
    Failure(Problem),
    Error(Problem),
    Skipped(String),
    /// A failure the profile expects: rendered as skipped, typed `expected_failure`.
    Expected(Problem),
}

/// The `type` of an expected failure's `<skipped>`.
const EXPECTED_FAILURE: &str = "expected_failure";

struct Problem {
    message: String,
    kind: String,
    body: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

impl Counts {
    fn of(cases: &[Case]) -> Counts {
        cases.iter().fold(Counts::default(), |mut n, case| {
            n.tests += 1;
            match case.outcome {
                Outcome::Passed => {}
                Outcome::Failure(_) => n.failures += 1,
                Outcome::Error(_) => n.errors += 1,
                Outcome::Skipped(_) | Outcome::Expected(_) => n.skipped += 1,
            }
            n
        })
    }

    fn attrs(self) -> String {
        format!(
            " tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\"",
            self.tests, self.failures, self.errors, self.skipped
        )
    }
}

impl std::ops::Add for Counts {
    type Output = Counts;

    fn add(self, o: Counts) -> Counts {
        Counts {
            tests: self.tests + o.tests,
            failures: self.failures + o.failures,
            errors: self.errors + o.errors,
            skipped: self.skipped + o.skipped,
        }
    }
}

/// The test cases of one run: its phases, its checks, then the run's result when nothing else
/// carries it.
fn cases(run: &RunReport) -> Vec<Case> {
    // The run's error belongs to the phase that ended the run: the last one that failed.
    let ending = run
        .phases
        .iter()
        .rposition(|p| p.status == PhaseStatus::Failed);
    let mut cases: Vec<Case> = run
        .phases
        .iter()
        .enumerate()
        .map(|(i, phase)| phase_case(run, phase, ending == Some(i)))
        .collect();
    cases.extend(run.checks.iter().map(|check| check_case(run, check)));
    cases.extend(result_case(run, &cases));
    cases
}

fn phase_case(run: &RunReport, phase: &PhaseRecord, ended_run: bool) -> Case {
    let error = run.error.as_deref().unwrap_or_default();
    let outcome = match phase.status {
        PhaseStatus::Ok => Outcome::Passed,
        // What failed in such a run is what its profile expects to fail.
        PhaseStatus::Failed if run.result == RunResult::ExpectedFailure => {
            Outcome::Expected(Problem {
                message: expected_message(summary(error).as_deref()),
                kind: EXPECTED_FAILURE.to_owned(),
                body: if ended_run {
                    error.to_owned()
                } else {
                    String::new()
                },
            })
        }
        PhaseStatus::Failed if ended_run => Outcome::Failure(Problem {
            message: summary(error).unwrap_or_else(|| "failed".to_owned()),
            kind: "phase_failed".to_owned(),
            body: error.to_owned(),
        }),
        PhaseStatus::Failed => Outcome::Failure(Problem {
            message: "failed".to_owned(),
            kind: "phase_failed".to_owned(),
            body: String::new(),
        }),
        PhaseStatus::Skipped if phase.name == REBOOT_PHASE && !run.rebooted => {
            Outcome::Skipped(NOT_REBOOTED.to_owned())
        }
        PhaseStatus::Skipped => Outcome::Skipped("skipped".to_owned()),
        PhaseStatus::Interrupted => Outcome::Error(Problem {
            message: "interrupted".to_owned(),
            kind: "interrupted".to_owned(),
            body: error.to_owned(),
        }),
    };
    Case {
        classname: classname(run, "phase"),
        name: phase.name.clone(),
        seconds: phase.seconds,
        outcome,
    }
}

fn check_case(run: &RunReport, check: &CheckRecord) -> Case {
    let reason = check.reason.as_deref().filter(|r| !r.trim().is_empty());
    let outcome = if check.ok {
        Outcome::Passed
    } else if run.is_expected(check) {
        Outcome::Expected(Problem {
            message: expected_message(reason),
            kind: EXPECTED_FAILURE.to_owned(),
            body: detail_text(check.detail.as_ref()),
        })
    } else {
        Outcome::Failure(Problem {
            message: reason.unwrap_or("failed").to_owned(),
            kind: reason.unwrap_or(check.source.as_str()).to_owned(),
            body: detail_text(check.detail.as_ref()),
        })
    };
    Case {
        classname: classname(run, check.source.as_str()),
        name: check.name.clone(),
        // Checks are not timed one by one; their phase is.
        seconds: 0.0,
        outcome,
    }
}

/// A test case for the run's result when none of `cases` accounts for it.
fn result_case(run: &RunReport, cases: &[Case]) -> Option<Case> {
    let error = run.error.as_deref().unwrap_or_default();
    let problem = |kind: &str| Problem {
        message: summary(error).unwrap_or_else(|| run.result.as_str().to_owned()),
        kind: kind.to_owned(),
        body: error.to_owned(),
    };
    let phase_is = |status| run.phases.iter().any(|p| p.status == status);
    let case = |classname: String, name: &str, outcome| Case {
        classname,
        name: name.to_owned(),
        seconds: 0.0,
        outcome,
    };
    match run.result {
        // Its expected failures are its test cases; nothing else failed.
        RunResult::ExpectedFailure => None,
        RunResult::Passed => {
            let reboot_skipped = run
                .phases
                .iter()
                .any(|p| p.name == REBOOT_PHASE && p.status == PhaseStatus::Skipped);
            // A pass without a reboot shows as a skipped reboot, so a CI server shows it as
            // incomplete rather than green.
            (!run.rebooted && !reboot_skipped).then(|| {
                let skipped = Outcome::Skipped(NOT_REBOOTED.to_owned());
                case(classname(run, "phase"), REBOOT_PHASE, skipped)
            })
        }
        RunResult::Failed => {
            let carried = cases
                .iter()
                .any(|c| matches!(c.outcome, Outcome::Failure(_)));
            (!carried).then(|| {
                let failure = Outcome::Failure(problem("failed"));
                case(classname(run, "run"), "result", failure)
            })
        }
        RunResult::Refused | RunResult::Error => (!phase_is(PhaseStatus::Failed)).then(|| {
            let error = Outcome::Error(problem(run.result.as_str()));
            case(classname(run, "run"), "result", error)
        }),
        RunResult::Interrupted => (!phase_is(PhaseStatus::Interrupted)).then(|| {
            let error = Outcome::Error(Problem {
                message: "interrupted".to_owned(),
                ..problem("interrupted")
            });
            case(classname(run, "run"), "result", error)
        }),
    }
}

fn write_suite(out: &mut String, id: usize, run: &RunReport, cases: &[Case]) {
    let host = non_empty(&run.host);
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\"{} time=\"{}\" timestamp=\"{}\" hostname=\"{}\" id=\"{id}\" package=\"{}\">",
        attr(&host),
        Counts::of(cases).attrs(),
        time(run.total_seconds),
        run.started_at.utc_without_zone(),
        attr(&non_empty(run.vm.as_deref().unwrap_or(&run.host))),
        attr(&format!("boma.{host}")),
    );
    out.push_str("    <properties>\n");
    for (name, value) in properties(run) {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            attr(&value)
        );
    }
    out.push_str("    </properties>\n");
    for case in cases {
        write_case(out, case);
    }
    let _ = writeln!(
        out,
        "    <system-out>{}</system-out>",
        text(&system_out(run))
    );
    // Empty, but the Ant-derived schema wants it present.
    out.push_str("    <system-err/>\n");
    out.push_str("  </testsuite>\n");
}

fn write_case(out: &mut String, case: &Case) {
    let _ = write!(
        out,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
        attr(&non_empty(&case.name)),
        attr(&case.classname),
        time(case.seconds)
    );
    let (element, problem) = match &case.outcome {
        Outcome::Passed => {
            out.push_str("/>\n");
            return;
        }
        Outcome::Expected(problem) => ("skipped", problem),
        Outcome::Skipped(message) => {
            let _ = writeln!(
                out,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                attr(message)
            );
            return;
        }
        Outcome::Failure(problem) => ("failure", problem),
        Outcome::Error(problem) => ("error", problem),
    };
    let _ = write!(
        out,
        ">\n      <{element} message=\"{}\" type=\"{}\"",
        attr(&problem.message),
        attr(&non_empty(&problem.kind))
    );
    if problem.body.is_empty() {
        out.push_str("/>\n");
    } else {
        let _ = writeln!(out, ">{}</{element}>", text(&problem.body));
    }
    out.push_str("    </testcase>\n");
}

/// The run's facts a CI server can show or filter on.
fn properties(run: &RunReport) -> Vec<(&'static str, String)> {
    let mut props = vec![
        ("result", run.result.as_str().to_owned()),
        ("rebooted", run.rebooted.to_string()),
        ("cert_tier", run.cert_tier.clone()),
    ];
    let optional = [
        ("vm", &run.vm),
        ("backend", &run.backend),
        ("accel", &run.accel),
        ("diagnostics", &run.diagnostics),
    ];
    props.extend(
        optional
            .into_iter()
            .filter_map(|(name, value)| Some((name, value.clone()?))),
    );
    if let Some(image) = &run.image {
        props.push(("image", image.path.clone()));
        props.push(("image_sha512", image.sha512.clone()));
        props.push(("image_origin", image.origin.clone()));
    }
    // The `timestamp` attribute has no zone; this says it is UTC, to the millisecond.
    props.push(("started_at", run.started_at.rfc3339()));
    props
}

/// What a person reading the CI page needs first: where the evidence is, whether the reboot
/// happened, which cached layers the run stood on.
fn system_out(run: &RunReport) -> String {
    let mut s = format!("result: {}\n", run.result);
    if !run.expected_failures.is_empty() {
        let _ = writeln!(
            s,
            "expected failures (the profile's `expect`): {}",
            run.expected_failures.join(", ")
        );
    }
    s.push_str(match (run.rebooted, run.result) {
        (true, _) => "rebooted: yes (a new boot_id)\n",
        (false, RunResult::Passed) => "rebooted: no: this pass is blind to reboot-survival bugs\n",
        (false, _) => "rebooted: no\n",
    });
    if let Some(path) = &run.diagnostics {
        let _ = writeln!(s, "diagnostics: {path}");
    }
    if let Some(error) = &run.error {
        let _ = writeln!(s, "error: {error}");
    }
    if run.layers.is_empty() {
        s.push_str("layers: none\n");
    } else {
        s.push_str("layers:\n");
        for layer in &run.layers {
            match (&layer.why_not, layer.reused) {
                (_, true) => {
                    let _ = writeln!(s, "  reused  {} ({})", layer.step, layer.key);
                }
                (Some(why), false) => {
                    let _ = writeln!(s, "  applied {} ({}): {why}", layer.step, layer.key);
                }
                (None, false) => {
                    let _ = writeln!(s, "  applied {} ({})", layer.step, layer.key);
                }
            }
        }
    }
    s
}

/// `boma.<host>.<what>`: CI servers group test cases by the dotted class name.
fn classname(run: &RunReport, what: &str) -> String {
    format!("boma.{}.{what}", non_empty(&run.host))
}

/// Seconds as JUnit's `time`: a plain decimal to the millisecond (no sign, no exponent).
fn time(seconds: f64) -> String {
    format!("{:.3}", clean_seconds(seconds))
}

/// An expected failure's one-line message: `expected failure: <why>`.
fn expected_message(why: Option<&str>) -> String {
    match why {
        Some(why) => format!("expected failure: {why}"),
        None => "expected failure".to_owned(),
    }
}

/// The evidence of a check as text: a string as is, anything else as pretty JSON.
fn detail_text(detail: Option<&serde_json::Value>) -> String {
    match detail {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// The first non-blank line of `text`, shortened, for a `message` attribute.
fn summary(text: &str) -> Option<String> {
    let line = clean(text)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())?
        .to_owned();
    if line.chars().count() <= MESSAGE_CHARS {
        return Some(line);
    }
    let mut short: String = line.chars().take(MESSAGE_CHARS - 1).collect();
    short.push('…');
    Some(short)
}

/// Names the schema requires to be non-empty (after XML's whitespace collapsing, and after
/// the characters XML cannot hold are dropped).
fn non_empty(name: &str) -> String {
    let name = clean(name);
    if name.trim().is_empty() {
        "(unnamed)".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_the_first_line_shortened() {
        assert_eq!(summary(""), None);
        assert_eq!(summary("\n  \n second\nthird").as_deref(), Some("second"));
        let long = "x".repeat(500);
        let short = summary(&long).unwrap();
        assert_eq!(short.chars().count(), MESSAGE_CHARS);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn time_is_a_plain_decimal() {
        assert_eq!(time(0.0), "0.000");
        assert_eq!(time(12.3456), "12.346");
        assert_eq!(time(-1.0), "0.000");
        assert_eq!(time(f64::NAN), "0.000");
        let huge = time(1e20);
        assert!(
            huge.chars().all(|c| c.is_ascii_digit() || c == '.'),
            "{huge}"
        );
    }

    #[test]
    fn blank_names_get_a_placeholder() {
        assert_eq!(non_empty(""), "(unnamed)");
        assert_eq!(non_empty(" \u{1}\t"), "(unnamed)");
        assert_eq!(non_empty("up"), "up");
    }
}
