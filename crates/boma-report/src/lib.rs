//! The harness's run report, and its three renderings.
//!
//! A [`Report`] says what one invocation of the harness did: per profile ([`RunReport`]) the VM
//! it booted, the cached disk layers it stood on, each timed phase, each check, whether the guest
//! was really rebooted, and where the diagnostics went. It is rendered as
//!
//! - JSON ([`render_json`]): the harness's data, on stdout, in `--report PATH` and in the
//!   diagnostics bundle;
//! - JUnit XML ([`render_junit`]): for `--junit PATH`, in the common format that GitLab, Jenkins
//!   and GitHub's test-report actions read (`tests/junit.xsd` in this crate, checked by a real
//!   validator in the tests);
//! - a text summary ([`render_text_summary`]): what a person reads on stderr at the end.
//!
//! The renderers are pure: values in, text out. This crate reads no clock, environment or file
//! and prints nothing; times, paths and the (already redacted) error text come from the caller.
//!
//! A pass without a reboot is never a full pass: [`RunReport::rebooted`] travels with every
//! result, the JUnit rendering shows the missing reboot as a skipped test case, and the summary
//! says it in capitals.

// The binary owns stdout and stderr; a library that prints corrupts the JSON report.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod junit;
mod model;
mod text;
mod timestamp;
mod xml;

pub use junit::render_junit;
pub use model::{
    CheckRecord, CheckSource, ImageUse, LayerUse, PhaseRecord, PhaseStatus, REBOOT_PHASE, Report,
    RunReport, RunResult,
};
pub use text::{check_mark, render_text_summary};
pub use timestamp::{ParseTimestampError, Timestamp};

/// The report as pretty JSON (ending with a newline): one object
/// `{"result", "started_at", "total_seconds", "runs": [...]}`, `result` being the worst run's.
/// Enum values are snake_case (`"passed"`, `"reboot_diff"`); times are RFC 3339 UTC; absent
/// values are `null` rather than missing, so a reader sees every field.
pub fn render_json(report: &Report) -> String {
    // Cannot fail: every key is a string and every number finite (see `clean_seconds`).
    let mut json = serde_json::to_string_pretty(report).expect("a report always serializes");
    json.push('\n');
    json
}
