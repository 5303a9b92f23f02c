//! Turning what a run recorded into the report's model (`boma-report` renders it).

use boma_exec::progress::{PhaseRecord, PhaseStatus};
use boma_report::{Report, RunReport, Timestamp};

/// A finished phase, as the report records it.
pub fn phase(record: &PhaseRecord) -> boma_report::PhaseRecord {
    boma_report::PhaseRecord {
        name: record.name.clone(),
        status: match record.status {
            PhaseStatus::Ok => boma_report::PhaseStatus::Ok,
            PhaseStatus::Failed => boma_report::PhaseStatus::Failed,
            PhaseStatus::Interrupted => boma_report::PhaseStatus::Interrupted,
            PhaseStatus::Skipped => boma_report::PhaseStatus::Skipped,
        },
        started_at: Timestamp::from_system_time(record.started),
        seconds: record.took.as_secs_f64(),
    }
}

/// A report of one run.
pub fn single(run: &RunReport) -> Report {
    Report {
        started_at: run.started_at,
        total_seconds: run.total_seconds,
        runs: vec![run.clone()],
    }
}
