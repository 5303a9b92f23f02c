//! One report of every child, in the order the hosts were given: a child's own report when it
//! wrote one, else a line saying why there is none — it never started (an interrupt came
//! first: `interrupted`), or it died without reporting (`error`, saying what the parent removed
//! after it). A host never goes missing: a report that lacks a host would read as a pass of
//! the hosts that are there. Pure.

use boma_exec::interrupt::Interrupted;
use boma_report::{RunReport, RunResult, Timestamp};

use crate::child::{ChildRun, Ended, describe, signal_name};
use crate::schedule::{Job, Turn};

/// Every job's runs: its child's report, or one made here. `interrupted` is the parent's
/// interrupt (why a job never started); `tier` and `at` fill a made report.
pub fn combine(
    jobs: &[Job],
    turns: Vec<Turn<ChildRun>>,
    interrupted: Option<Interrupted>,
    tier: &str,
    at: Timestamp,
) -> Vec<RunReport> {
    let mut runs = Vec::new();
    for (job, turn) in jobs.iter().zip(turns) {
        match turn {
            Turn::NotStarted => {
                let why = match interrupted {
                    Some(i) => format!("never started: the run was {i} before its turn"),
                    None => "never started".to_owned(),
                };
                runs.push(made(&job.host, tier, RunResult::Interrupted, why, at, 0.0));
            }
            Turn::Ran(child) => match child.report {
                Some(report) => runs.extend(report.runs),
                None => {
                    let why = unreported(&child);
                    let secs = child.took.as_secs_f64();
                    // No verdict on the host: the harness itself died (RunResult's `error`).
                    runs.push(made(&job.host, tier, RunResult::Error, why, at, secs));
                }
            },
        }
    }
    runs
}

/// Why a child that ran left no report, and what the parent removed after it.
fn unreported(child: &ChildRun) -> String {
    let how = match &child.ended {
        Ended::Killed(signal) => format!("killed by {} before it reported", signal_name(*signal)),
        Ended::Exited(code) => format!("exited {code} without a report"),
        Ended::NotRun(_) => describe(&child.ended),
    };
    let cleanup = match &child.cleanup {
        None => String::new(),
        Some(Ok(removed)) if removed.is_empty() => "; it left nothing to remove".to_owned(),
        Some(Ok(removed)) => format!("; removed what it left: {}", removed.join("; ")),
        Some(Err(e)) => {
            format!("; removing what it left failed: {e} (`cargo xtask prune` removes it)")
        }
    };
    format!("{how}{cleanup} (its log: {})", child.log)
}

fn made(
    host: &str,
    tier: &str,
    result: RunResult,
    error: String,
    at: Timestamp,
    total_seconds: f64,
) -> RunReport {
    RunReport {
        host: host.to_owned(),
        vm: None,
        backend: None,
        accel: None,
        cert_tier: tier.to_owned(),
        image: None,
        result,
        rebooted: false,
        error: Some(error),
        diagnostics: None,
        started_at: at,
        total_seconds,
        layers: Vec::new(),
        phases: Vec::new(),
        checks: Vec::new(),
        expected_failures: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::Charge;
    use boma_report::Report;
    use std::time::Duration;

    fn at() -> Timestamp {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    fn job(host: &str) -> Job {
        Job {
            host: host.to_owned(),
            charge: Charge::default(),
        }
    }

    fn child(host: &str, ended: Ended, result: Option<RunResult>) -> ChildRun {
        ChildRun {
            host: host.to_owned(),
            ended,
            report: result.map(|result| Report {
                runs: vec![made(host, "internal", result, String::new(), at(), 1.0)],
                started_at: at(),
                total_seconds: 1.0,
            }),
            log: format!("/r/parallel/{host}.log").into(),
            took: Duration::from_secs(7),
            cleanup: None,
        }
    }

    #[test]
    fn unstarted_hosts_read_interrupted_and_the_report_is_interrupted() {
        let jobs = [job("askari"), job("ubongo"), job("cat-a")];
        let turns = vec![
            Turn::Ran(child("askari", Ended::Exited(0), Some(RunResult::Passed))),
            Turn::NotStarted,
            Turn::NotStarted,
        ];
        let runs = combine(
            &jobs,
            turns,
            Some(Interrupted { signal: 2 }),
            "internal",
            at(),
        );
        let hosts: Vec<&str> = runs.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(hosts, ["askari", "ubongo", "cat-a"]);
        assert_eq!(runs[1].result, RunResult::Interrupted);
        assert_eq!(
            runs[1].error.as_deref(),
            Some("never started: the run was interrupted by SIGINT before its turn")
        );
        let report = Report {
            runs,
            started_at: at(),
            total_seconds: 1.0,
        };
        assert_eq!(report.result(), RunResult::Interrupted);
    }

    #[test]
    fn a_killed_child_is_an_error_saying_what_was_removed_after_it() {
        let mut killed = child("askari", Ended::Killed(9), None);
        killed.cleanup = Some(Ok(vec![
            "its VM boma-it-askari-0a1b2c3d and its files".to_owned(),
            "its memory reservation".to_owned(),
        ]));
        let runs = combine(
            &[job("askari")],
            vec![Turn::Ran(killed)],
            None,
            "internal",
            at(),
        );
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].result, RunResult::Error);
        assert_eq!(
            runs[0].error.as_deref(),
            Some(
                "killed by SIGKILL before it reported; removed what it left: its VM boma-it-askari-0a1b2c3d and its files; its memory reservation (its log: /r/parallel/askari.log)"
            )
        );
        assert_eq!(runs[0].total_seconds, 7.0);
    }

    #[test]
    fn a_child_that_exited_without_a_report_is_an_error_with_its_status() {
        let mut crashed = child("ubongo", Ended::Exited(101), None);
        crashed.cleanup = Some(Err("virsh destroy failed".to_owned()));
        let runs = combine(
            &[job("ubongo")],
            vec![Turn::Ran(crashed)],
            None,
            "internal",
            at(),
        );
        let error = runs[0].error.as_deref().unwrap();
        assert!(error.starts_with("exited 101 without a report; removing what it left failed: virsh destroy failed (`cargo xtask prune` removes it)"), "{error}");
    }

    #[test]
    fn a_childs_own_report_is_taken_whole() {
        let runs = combine(
            &[job("askari"), job("ubongo")],
            vec![
                Turn::Ran(child("askari", Ended::Exited(1), Some(RunResult::Failed))),
                Turn::Ran(child("ubongo", Ended::Exited(0), Some(RunResult::Passed))),
            ],
            None,
            "internal",
            at(),
        );
        let results: Vec<RunResult> = runs.iter().map(|r| r.result).collect();
        assert_eq!(results, [RunResult::Failed, RunResult::Passed]);
        assert_eq!(runs[0].error.as_deref(), Some(""));
    }
}
