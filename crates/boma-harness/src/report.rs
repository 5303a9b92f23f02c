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

/// `report` with every registered secret masked in every string it holds: the error, the
/// checks' reasons and details (a verify playbook reports what the guest said), the paths.
pub fn redacted(report: RunReport) -> RunReport {
    let mut value = serde_json::to_value(&report).expect("a run report serialises");
    boma_exec::redact::redact_json(&mut value);
    serde_json::from_value(value).expect("masking strings keeps a run report's shape")
}

/// A report of one run.
pub fn single(run: &RunReport) -> Report {
    Report {
        started_at: run.started_at,
        total_seconds: run.total_seconds,
        runs: vec![run.clone()],
    }
}
