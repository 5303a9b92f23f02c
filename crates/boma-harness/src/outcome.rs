//! How a run ended, as its report says it: the result the error that ended it means, and a
//! RED profile judged by its `expect` — exactly the expected failures make an expected
//! failure. Decided from the report and the error alone: nothing is read or written (an
//! expected failure is said out loud).

use boma_exec::say;
use boma_report::{CheckRecord, RunReport, RunResult};

use crate::checks;
use crate::error::{ExitClass, HarnessError, error_chain};

/// How a run ended, by the error that ended it (before a RED profile's `expect` is judged).
pub fn result_of(error: Option<&HarnessError>) -> RunResult {
    match error {
        None => RunResult::Passed,
        Some(e) => match e.class() {
            ExitClass::Interrupted(_) => RunResult::Interrupted,
            ExitClass::Refused => RunResult::Refused,
            ExitClass::Failed
                if matches!(
                    e,
                    HarnessError::ChecksFailed { .. } | HarnessError::ExpectationsUnmet { .. }
                ) =>
            {
                RunResult::Failed
            }
            // A guest that never came back, a failed playbook: a verdict on the host.
            ExitClass::Failed if is_verdict(e) => RunResult::Failed,
            ExitClass::Failed => RunResult::Error,
        },
    }
}

/// A RED profile judged by its `expect`, whenever the run reached a verdict (passed or
/// failed): exactly the expected failures make an expected failure (no error: exit 0); any
/// other verdict is a failure naming what differs — an expected failure not seen (a run that
/// passed included), a failure not expected, or an end no check records. Refusals, errors
/// and interrupts say nothing about the host and stay as they are. Returns the run's error.
pub fn judge_expectations(
    expect: &[String],
    error: Option<HarnessError>,
    report: &mut RunReport,
) -> Option<HarnessError> {
    if expect.is_empty() || !matches!(report.result, RunResult::Passed | RunResult::Failed) {
        return error;
    }
    let seen = checks::against_expectations(expect, &report.checks);
    report.expected_failures = seen.expected.clone();
    // The error that ended the run, when no check records it (a failed apply): it cannot have
    // been expected.
    let ended_by = error.filter(|e| !recorded_as_check(e, &report.checks));
    if seen.met() && ended_by.is_none() {
        say!(
            "expected failure: exactly what the profile's `expect` names failed ({}), nothing else",
            seen.expected.join(", ")
        );
        report.result = RunResult::ExpectedFailure;
        return None;
    }
    let unmet = HarnessError::ExpectationsUnmet {
        missing: seen.missing,
        unexpected: seen.unexpected,
        ended_by: ended_by.map(Box::new),
    };
    report.result = RunResult::Failed;
    report.error = Some(error_chain(&unmet));
    Some(unmet)
}

/// A RED (`expect`) whose checks all passed did not show its planted bug: a failure like any
/// other, kept with its bundle for a look at why (`it` names what was not seen).
pub fn planted_bug_shown(expect: &[String]) -> Result<(), HarnessError> {
    match expect {
        [] => Ok(()),
        expect => Err(HarnessError::ExpectationsUnmet {
            missing: expect.to_vec(),
            unexpected: Vec::new(),
            ended_by: None,
        }),
    }
}

/// Whether the error that ended a run is its checks' verdict: the checks that failed (or, for
/// a RED profile, none did), or a reboot that did not come back (recorded as
/// `reboot_timeout`, `guest_gone` …).
fn recorded_as_check(error: &HarnessError, recorded: &[CheckRecord]) -> bool {
    match error {
        HarnessError::ChecksFailed { .. }
        | HarnessError::ExpectationsUnmet { ended_by: None, .. } => true,
        HarnessError::Vm(e) => {
            // A fleet names it by its round and member (`after rolling a: a: reboot_timeout`).
            let name = checks::reboot_check(e).name;
            let named = |check: &str| check == name || check.ends_with(&format!(": {name}"));
            recorded.iter().any(|c| !c.ok && named(&c.name))
        }
        _ => false,
    }
}

/// A failure that is the host's fault (it did not survive, a play failed), not the harness's.
fn is_verdict(e: &HarnessError) -> bool {
    matches!(
        e,
        HarnessError::Playbook { .. }
            | HarnessError::PlaybookTimedOut { .. }
            | HarnessError::Vm(
                boma_vm::VmError::Timeout { .. }
                    | boma_vm::VmError::BootFailed { .. }
                    | boma_vm::VmError::GuestGone { .. }
                    | boma_vm::VmError::CloudInit { .. }
            )
    )
}
