//! The report as the few lines a person reads on stderr when the harness is done.

use std::fmt::Write as _;

use crate::model::clean_seconds;
use crate::{Report, RunReport, RunResult};

/// Per run: a heading, a line per phase (`  <status> <seconds> <name>`), a line per check
/// (`  PASS|FAIL|XFAIL <name> (<reason>)`, XFAIL a failure the profile's `expect` names), the
/// layers, the evidence, and the result; with several runs, the overall result last.
pub fn render_text_summary(report: &Report) -> String {
    let mut s = String::new();
    for (i, run) in report.runs.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        write_run(&mut s, run);
    }
    if report.runs.is_empty() {
        s.push_str("no profile ran\n");
    }
    if report.runs.len() != 1 {
        let _ = writeln!(
            s,
            "overall: {} ({} runs, {:.1}s)",
            report.result(),
            report.runs.len(),
            clean_seconds(report.total_seconds)
        );
    }
    s
}

fn write_run(s: &mut String, run: &RunReport) {
    let mut about: Vec<&str> = Vec::new();
    about.extend(run.vm.as_deref());
    about.extend(run.backend.as_deref());
    about.extend(run.accel.as_deref());
    let tier = format!("tier {}", run.cert_tier);
    about.push(&tier);
    let _ = writeln!(s, "{} ({})", run.host, about.join(", "));
    for phase in &run.phases {
        let _ = writeln!(
            s,
            "  {:<11} {:>7.1}s  {}",
            phase.status.as_str(),
            clean_seconds(phase.seconds),
            phase.name
        );
    }
    for check in &run.checks {
        let mark = check_mark(check.ok, run.is_expected(check));
        let reason = check
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let _ = writeln!(s, "  {mark} {}{reason}", check.name);
    }
    for layer in &run.layers {
        let why = match (&layer.why_not, layer.reused) {
            (Some(why), false) => format!(": {why}"),
            _ => String::new(),
        };
        // Not reused: the step was applied; whether a layer was stored, `why` says.
        let verb = if layer.reused { "reused " } else { "applied" };
        let _ = writeln!(s, "  layer {verb} {} ({}){why}", layer.step, layer.key);
    }
    if let Some(path) = &run.diagnostics {
        let _ = writeln!(s, "  diagnostics: {path}");
    }
    if let Some(error) = &run.error {
        let _ = writeln!(s, "  error: {}", error.trim_end().replace('\n', "\n    "));
    }
    let verdict = match run.result {
        RunResult::Passed if !run.rebooted => {
            "passed WITHOUT a reboot: blind to reboot-survival bugs".to_owned()
        }
        RunResult::Passed => "passed, across a real reboot".to_owned(),
        RunResult::ExpectedFailure => {
            "expected failure: it failed exactly as its profile's `expect` says".to_owned()
        }
        other => other.to_string(),
    };
    let _ = writeln!(
        s,
        "  result: {verdict} ({:.1}s)",
        clean_seconds(run.total_seconds)
    );
}

/// `PASS`, `FAIL`, or `XFAIL` for a failure the profile expects (pytest's word for it).
pub fn check_mark(ok: bool, expected: bool) -> &'static str {
    match (ok, expected) {
        (true, _) => "PASS",
        (false, true) => "XFAIL",
        (false, false) => "FAIL",
    }
}
