//! The report's model: what one invocation of the harness did, per profile, phase and check.

use serde::{Deserialize, Serialize, Serializer};

use crate::Timestamp;

/// The name of the reboot phase, which a pass without a reboot is measured against.
pub const REBOOT_PHASE: &str = "reboot";

/// Everything one invocation did. Several profiles may run in one invocation; the report covers
/// all of them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Report {
    pub runs: Vec<RunReport>,
    pub started_at: Timestamp,
    #[serde(default)]
    pub total_seconds: f64,
}

impl Report {
    /// The worst result of the runs ([`RunResult`]'s order). A report with no run proves
    /// nothing, so it is an error, never a pass.
    pub fn result(&self) -> RunResult {
        self.runs
            .iter()
            .map(|run| run.result)
            .reduce(RunResult::worst)
            .unwrap_or(RunResult::Error)
    }
}

// By hand, for the derived `result` first: a reader of the JSON sees the verdict at the top.
impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            result: RunResult,
            started_at: Timestamp,
            #[serde(serialize_with = "seconds")]
            total_seconds: f64,
            runs: &'a [RunReport],
        }
        Wire {
            result: self.result(),
            started_at: self.started_at,
            total_seconds: self.total_seconds,
            runs: &self.runs,
        }
        .serialize(serializer)
    }
}

/// One profile's run: booted (or not), applied, rebooted, verified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The profile, e.g. `askari`.
    pub host: String,
    /// The VM's name (`boma-it-askari-1a2b3c4d`) when one was booted.
    #[serde(default)]
    pub vm: Option<String>,
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub accel: Option<String>,
    pub cert_tier: String,
    /// The golden image the run booted (or stood on, through its layers).
    #[serde(default)]
    pub image: Option<ImageUse>,
    pub result: RunResult,
    /// Whether the guest was rebooted (a new boot_id). False under `--no-reboot` or when the
    /// run failed before the reboot: a pass without a reboot is blind to exactly the bugs the
    /// harness exists for, so it must never read as a full pass (see [`RunReport::full_pass`]).
    pub rebooted: bool,
    /// Why the run did not pass, already redacted by the caller.
    #[serde(default)]
    pub error: Option<String>,
    /// The diagnostics bundle's path, when one was written.
    #[serde(default)]
    pub diagnostics: Option<String>,
    pub started_at: Timestamp,
    #[serde(default, serialize_with = "seconds")]
    pub total_seconds: f64,
    /// Which cached disk layers were reused, and why the others were not.
    #[serde(default)]
    pub layers: Vec<LayerUse>,
    #[serde(default)]
    pub phases: Vec<PhaseRecord>,
    #[serde(default)]
    pub checks: Vec<CheckRecord>,
    /// The names of the failed checks the profile's `expect` names (a RED profile's planted
    /// bug, caught): still failed checks, shown as expected ([`RunReport::is_expected`]). Empty
    /// for a profile without `expect`, and in reports written before it existed.
    #[serde(default)]
    pub expected_failures: Vec<String>,
}

/// The golden image of a run: which bytes were booted, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUse {
    pub path: String,
    /// SHA-512 of the file, hex, checked before the run pinned it.
    pub sha512: String,
    /// `cache`, `download <url>`, `build`, `file <path>`.
    pub origin: String,
}

impl RunReport {
    /// Passed, and proven across a real reboot.
    pub fn full_pass(&self) -> bool {
        self.result == RunResult::Passed && self.rebooted
    }

    /// Whether `check` failed as the profile's `expect` says it would.
    pub fn is_expected(&self, check: &CheckRecord) -> bool {
        !check.ok && self.expected_failures.contains(&check.name)
    }
}

/// How a run ended. The declaration order is the severity order (`Ord`), least severe first,
/// and [`RunResult::worst`] picks by it:
///
/// `Passed < ExpectedFailure < Failed < Refused < Error < Interrupted`
///
/// The further right, the less the run tells: `ExpectedFailure` is a RED profile's verdict as
/// it should be (its failures are exactly those its `expect` names: the harness caught the bug
/// the profile plants); `Failed` is a verdict (the harness worked and the host is broken, or a
/// RED profile failed otherwise than its `expect` says); `Refused` means preflight stopped
/// before anything was created (no verdict, a usage or configuration problem); `Error` means
/// the harness or the substrate broke mid-run (no verdict, and something may be left to
/// inspect); `Interrupted` means the operator or CI stopped the invocation, so later runs never
/// happened and the signal must win, as the exit status 128+n does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    Passed,
    ExpectedFailure,
    Failed,
    Refused,
    Error,
    Interrupted,
}

impl RunResult {
    /// The more severe of two results.
    pub fn worst(a: RunResult, b: RunResult) -> RunResult {
        a.max(b)
    }

    /// Whether the run ended as it should: it passed, or it failed exactly as its profile's
    /// `expect` says. Exit status 0 means this, and nothing else.
    pub fn as_expected(self) -> bool {
        matches!(self, RunResult::Passed | RunResult::ExpectedFailure)
    }

    /// The name used in every rendering (`passed`, `failed` …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Passed => "passed",
            RunResult::ExpectedFailure => "expected_failure",
            RunResult::Failed => "failed",
            RunResult::Refused => "refused",
            RunResult::Error => "error",
            RunResult::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One timed phase of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// Stable across runs, so CI can track it: `up`, `apply playbooks/site.yml --tags base`,
    /// `reboot`, `verify tests/verify/askari.yml`; never the VM's name.
    pub name: String,
    pub status: PhaseStatus,
    pub started_at: Timestamp,
    #[serde(default, serialize_with = "seconds")]
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Ok,
    Failed,
    Skipped,
    Interrupted,
}

impl PhaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Ok => "ok",
            PhaseStatus::Failed => "failed",
            PhaseStatus::Skipped => "skipped",
            PhaseStatus::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for PhaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One outcome-based check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub name: String,
    pub source: CheckSource,
    pub ok: bool,
    /// A short machine-readable cause (`timeout`, `refused`, `pure_drop`, `ok` …).
    #[serde(default)]
    pub reason: Option<String>,
    /// Evidence: a chain listing, a curl error, a diff.
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

/// Who made a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckSource {
    /// A profile's verify playbook.
    Verify,
    /// The controller's own probe of a published port.
    Probe,
    /// What changed across the reboot.
    RebootDiff,
    /// A second apply that must change nothing.
    Idempotence,
    /// The harness's own checks.
    Builtin,
}

impl CheckSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckSource::Verify => "verify",
            CheckSource::Probe => "probe",
            CheckSource::RebootDiff => "reboot_diff",
            CheckSource::Idempotence => "idempotence",
            CheckSource::Builtin => "builtin",
        }
    }
}

impl std::fmt::Display for CheckSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a step's cached disk layer was reused, and if not, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerUse {
    pub step: String,
    pub key: String,
    pub reused: bool,
    #[serde(default)]
    pub why_not: Option<String>,
}

/// Seconds as a report shows them: to the millisecond, and never negative, NaN or infinite
/// (JSON has no NaN, and serde_json would write `null` where a reader expects a number).
pub(crate) fn clean_seconds(seconds: f64) -> f64 {
    if seconds.is_finite() && seconds > 0.0 {
        let rounded = (seconds * 1000.0).round() / 1000.0;
        if rounded.is_finite() {
            rounded
        } else {
            seconds
        }
    } else {
        0.0
    }
}

fn seconds<S: Serializer>(seconds: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(clean_seconds(*seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [RunResult; 6] = [
        RunResult::Passed,
        RunResult::ExpectedFailure,
        RunResult::Failed,
        RunResult::Refused,
        RunResult::Error,
        RunResult::Interrupted,
    ];

    #[test]
    fn results_are_ordered_by_severity() {
        assert!(ALL.windows(2).all(|w| w[0] < w[1]), "{ALL:?}");
        assert_eq!(
            RunResult::worst(RunResult::Passed, RunResult::Failed),
            RunResult::Failed
        );
        assert_eq!(
            RunResult::worst(RunResult::Error, RunResult::Refused),
            RunResult::Error
        );
        assert_eq!(
            RunResult::worst(RunResult::Interrupted, RunResult::Error),
            RunResult::Interrupted
        );
    }

    #[test]
    fn worst_is_symmetric_and_idempotent() {
        for a in ALL {
            assert_eq!(RunResult::worst(a, a), a);
            assert_eq!(RunResult::worst(a, RunResult::Passed), a);
            for b in ALL {
                assert_eq!(RunResult::worst(a, b), RunResult::worst(b, a));
                assert!(RunResult::worst(a, b) >= a && RunResult::worst(a, b) >= b);
            }
        }
    }

    #[test]
    fn only_a_pass_or_an_expected_failure_is_as_expected() {
        let as_expected: Vec<RunResult> = ALL.into_iter().filter(|r| r.as_expected()).collect();
        assert_eq!(as_expected, [RunResult::Passed, RunResult::ExpectedFailure]);
        // Beside a pass, an expected failure is what the invocation reports; beside a real
        // failure, the failure.
        assert_eq!(
            RunResult::worst(RunResult::Passed, RunResult::ExpectedFailure),
            RunResult::ExpectedFailure
        );
        assert_eq!(
            RunResult::worst(RunResult::ExpectedFailure, RunResult::Failed),
            RunResult::Failed
        );
    }

    #[test]
    fn a_run_written_before_expected_failures_existed_expects_none() {
        let old = r#"{"host": "askari-red", "cert_tier": "internal", "result": "failed",
            "rebooted": true, "started_at": "2026-11-29T01:02:03.456Z",
            "checks": [{"name": "probe_443_https", "source": "probe", "ok": false}]}"#;
        let run: RunReport = serde_json::from_str(old).unwrap();
        assert!(run.expected_failures.is_empty());
        assert!(!run.is_expected(&run.checks[0]));
    }

    #[test]
    fn only_a_failed_check_can_be_expected() {
        let check = |ok| CheckRecord {
            name: "probe_443_https".into(),
            source: CheckSource::Probe,
            ok,
            reason: None,
            detail: None,
        };
        let old = r#"{"host": "askari-red", "cert_tier": "internal", "result": "expected_failure",
            "rebooted": true, "started_at": "2026-11-29T01:02:03.456Z",
            "expected_failures": ["probe_443_https"]}"#;
        let run: RunReport = serde_json::from_str(old).unwrap();
        assert!(run.is_expected(&check(false)));
        assert!(!run.is_expected(&check(true)));
    }

    #[test]
    fn names_are_snake_case_in_json_and_text() {
        for r in ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(
            serde_json::to_value(CheckSource::RebootDiff).unwrap(),
            "reboot_diff"
        );
        assert_eq!(CheckSource::RebootDiff.to_string(), "reboot_diff");
        assert_eq!(serde_json::to_value(PhaseStatus::Ok).unwrap(), "ok");
        assert_eq!(
            serde_json::to_value(RunResult::ExpectedFailure).unwrap(),
            "expected_failure"
        );
    }

    #[test]
    fn seconds_are_clean_numbers() {
        assert_eq!(clean_seconds(1.23456), 1.235);
        assert_eq!(clean_seconds(0.1 + 0.2), 0.3);
        assert_eq!(clean_seconds(-3.0), 0.0);
        assert_eq!(clean_seconds(f64::NAN), 0.0);
        assert_eq!(clean_seconds(f64::INFINITY), 0.0);
        assert_eq!(clean_seconds(f64::MAX), f64::MAX);
    }
}
