//! What took how long: the suite's measured steps, rendered as the `Timing` summary a person
//! reads at the end and as JSON (`--timings PATH`) that CI keeps; and one run's figures from its
//! report (total and per phase). Pure: durations in, text out.

use std::time::Duration;

use boma_exec::progress::human;
use boma_report::RunReport;

/// One measured step of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub scenario: &'static str,
    pub step: String,
    pub took: Duration,
}

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
        }
    }
}

/// The summary printed at the end: one line per timing, in the order measured.
pub fn render_summary(timings: &[Timing]) -> String {
    let mut out = String::from("VM suite timings:\n");
    for t in timings {
        out.push_str(&format!(
            "  {:<10} {:>8}  {}\n",
            t.scenario,
            human(t.took),
            t.step
        ));
    }
    out
}

/// The same figures as JSON, with each scenario's outcome:
/// `{"scenarios": [{"name", "result"}], "timings": [{"scenario", "step", "seconds"}]}`, seconds
/// to the millisecond.
pub fn render_json(outcomes: &[(String, Outcome)], timings: &[Timing]) -> String {
    let scenarios: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|(name, outcome)| serde_json::json!({"name": name, "result": outcome.as_str()}))
        .collect();
    let timings: Vec<serde_json::Value> = timings
        .iter()
        .map(|t| {
            serde_json::json!({
                "scenario": t.scenario,
                "step": t.step,
                "seconds": (t.took.as_secs_f64() * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    let json = serde_json::json!({"scenarios": scenarios, "timings": timings});
    // Cannot fail: plain strings and finite numbers.
    let mut text = serde_json::to_string_pretty(&json).expect("timings serialise");
    text.push('\n');
    text
}

/// A report's seconds as a duration (a report's seconds are finite and never negative, but a
/// hand-edited one could say otherwise).
pub fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or_default()
}

/// One run's figures: its result, total, whether it rebooted, then each phase with its status.
pub fn run_figures(label: &str, run: &RunReport) -> String {
    let mut out = format!(
        "{label}: {} {} in {}, {}\n",
        run.host,
        run.result,
        human(seconds(run.total_seconds)),
        if run.rebooted {
            "rebooted"
        } else {
            "NOT rebooted"
        }
    );
    for phase in &run.phases {
        out.push_str(&format!(
            "  {:>8}  {:<11} {}\n",
            human(seconds(phase.seconds)),
            phase.status.as_str(),
            phase.name
        ));
    }
    out
}

/// The timings a run adds to the suite's: its total, and each phase not skipped.
pub fn run_timings(scenario: &'static str, label: &str, run: &RunReport) -> Vec<Timing> {
    std::iter::once(Timing {
        scenario,
        step: format!("{label}: {} (total)", run.host),
        took: seconds(run.total_seconds),
    })
    .chain(
        run.phases
            .iter()
            .filter(|p| p.status != boma_report::PhaseStatus::Skipped)
            .map(|p| Timing {
                scenario,
                step: format!("{label}: {}", p.name),
                took: seconds(p.seconds),
            }),
    )
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict;

    fn timings() -> Vec<Timing> {
        vec![
            Timing {
                scenario: "baseline",
                step: "raw qemu: boot to first ssh (median of 3)".into(),
                took: Duration::from_millis(37_640),
            },
            Timing {
                scenario: "catalogue",
                step: "xtask it cat-lost-route-red cat-not-enabled-red -j 2".into(),
                took: Duration::from_secs(1290),
            },
        ]
    }

    #[test]
    fn the_summary_lists_each_timing() {
        insta::assert_snapshot!("summary", render_summary(&timings()));
    }

    #[test]
    fn the_json_keeps_outcomes_and_seconds() {
        let outcomes = vec![
            ("baseline".to_owned(), Outcome::Passed),
            ("catalogue".to_owned(), Outcome::Failed),
        ];
        let json = render_json(&outcomes, &timings());
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["scenarios"][1]["result"], "failed");
        assert_eq!(back["timings"][0]["seconds"], 37.64);
        assert_eq!(back["timings"][1]["scenario"], "catalogue");
        insta::assert_snapshot!("timings_json", json);
    }

    #[test]
    fn a_run_gives_its_figures_and_timings() {
        let report =
            verdict::parse_report(include_str!("../tests/fixtures/askari-passed.json")).unwrap();
        let run = &report.runs[0];
        insta::assert_snapshot!("askari_figures", run_figures("run 1", run));
        let added = run_timings("askari", "run 1", run);
        assert_eq!(added.len(), 1 + run.phases.len());
        assert_eq!(added[0].step, "run 1: askari (total)");
        assert_eq!(added[0].took, Duration::from_millis(654_900));
        assert_eq!(seconds(-1.0), Duration::ZERO);
        assert_eq!(seconds(f64::NAN), Duration::ZERO);
    }
}
