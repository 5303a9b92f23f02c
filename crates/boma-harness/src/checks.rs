//! The checks a run reports, from every source, as report records: the profile's verify
//! playbooks, the controller's probes, the reboot diff, the idempotence pass, and the built-in
//! checks every host gets (the system is running after the reboot, no route to the real fleet).
//! Pure: the cycle gathers the evidence, these functions judge it.

use boma_report::{CheckRecord, CheckSource};
use boma_state::RebootDiff;
use camino::Utf8Path;
use serde_json::json;

use crate::idempotence::Verdict;
use crate::probe::ProbeOutcome;
use crate::verify::{VerifyRun, Written};

fn record(
    name: impl Into<String>,
    source: CheckSource,
    ok: bool,
    reason: impl Into<String>,
    detail: Option<serde_json::Value>,
) -> CheckRecord {
    CheckRecord {
        name: name.into(),
        source,
        ok,
        reason: Some(reason.into()),
        detail,
    }
}

/// One run of a verify playbook, as checks: each check it wrote, and `verify_failed
/// <playbook>` when the run itself failed in a way its checks do not explain — it wrote no
/// results or no readable ones (`no_results`, `malformed_results`), wrote no check
/// (`no_checks`), or exited non-zero although every check it wrote passed
/// (`playbook_failed`). A play that fails after writing a failed check is the contract: its
/// checks say why.
pub fn from_verify(run: &VerifyRun) -> Vec<CheckRecord> {
    let results = match &run.written {
        Written::Results(results) => Some(results),
        Written::Nothing | Written::Malformed(_) => None,
    };
    let mut checks: Vec<CheckRecord> = results
        .into_iter()
        .flat_map(|r| &r.checks)
        .map(|c| CheckRecord {
            name: c.name.clone(),
            source: CheckSource::Verify,
            ok: c.ok,
            reason: c.reason.clone(),
            detail: c.detail.clone(),
        })
        .collect();
    let failure = |reason: &str, what: String| {
        let detail = match &run.failure {
            Some(failure) => format!("{what}; {failure}"),
            None => format!("{what}; ansible-playbook exited 0"),
        };
        record(
            format!("verify_failed {}", run.playbook),
            CheckSource::Verify,
            false,
            reason,
            Some(json!(detail)),
        )
    };
    match (&run.written, &run.failure) {
        (Written::Nothing, _) => checks.push(failure(
            "no_results",
            "it wrote no results to boma_it_results_file".to_owned(),
        )),
        (Written::Malformed(why), _) => checks.push(failure(
            "malformed_results",
            format!("its results are not {{\"checks\": [...]}} ({why})"),
        )),
        (Written::Results(results), _) if results.checks.is_empty() => {
            checks.push(failure("no_checks", "it wrote no check".to_owned()));
        }
        (Written::Results(results), Some(_)) if results.passed() => checks.push(failure(
            "playbook_failed",
            "every check it wrote passed, but the play failed".to_owned(),
        )),
        _ => {}
    }
    checks
}

/// Each published port's probe after the reboot (or after the apply, without one), with what
/// it answered before.
pub fn from_probes(before: &[ProbeOutcome], after: &[ProbeOutcome]) -> Vec<CheckRecord> {
    after
        .iter()
        .map(|a| {
            let earlier = before.iter().find(|b| b.port == a.port);
            let detail = json!({
                "after": a.detail,
                "before": earlier.map(|b| format!("{} ({})", b.reason, b.detail)),
            });
            // A port that failed before the reboot too is not a reboot-class failure: say so,
            // so the operator looks at the apply, not at the boot.
            let reason = match earlier {
                Some(b) if !a.ok && !b.ok => format!("{}, before the reboot too", a.reason),
                _ => a.reason.clone(),
            };
            record(
                format!("probe_{}_{}", a.port, a.kind),
                CheckSource::Probe,
                a.ok,
                reason,
                Some(detail),
            )
        })
        .collect()
}

/// The reboot diff's verdict: each finding lost is a failed check named by it (`listener_lost
/// tcp/22 sshd`); a diff that lost nothing is one passed `reboot_diff` check whose detail
/// counts what appeared and what was ignored, and how many findings each of the profile's
/// `reboot_diff_ignore` patterns hid (a pass a pattern bought shows as such).
pub fn from_reboot_diff(diff: &RebootDiff) -> Vec<CheckRecord> {
    if diff.lost.is_empty() {
        let mut detail = format!(
            "nothing lost; {} appeared, {} ignored",
            diff.appeared.len(),
            diff.ignored.len()
        );
        if !diff.hidden_by_profile.is_empty() {
            let hits: Vec<String> = diff
                .hidden_by_profile
                .iter()
                .map(|h| format!("{:?} hid {}", h.pattern, h.hid))
                .collect();
            detail.push_str(&format!("; reboot_diff_ignore {}", hits.join(", ")));
        }
        return vec![record(
            "reboot_diff",
            CheckSource::RebootDiff,
            true,
            "ok",
            Some(json!(detail)),
        )];
    }
    diff.lost
        .iter()
        .map(|finding| CheckRecord {
            name: finding.to_string(),
            source: CheckSource::RebootDiff,
            ok: false,
            reason: Some(finding.reason.as_str().to_owned()),
            detail: finding.detail.clone().map(|d| json!(d)),
        })
        .collect()
}

/// The second apply of every step must change nothing: one check, naming each task that did.
/// A pass the callback did not prove it saw is `idempotence_unproven`, a failure: "nothing
/// recorded" is not "nothing changed".
pub fn from_idempotence(verdict: &Verdict, repo: &Utf8Path) -> CheckRecord {
    let (ok, reason, detail) = match verdict {
        Verdict::Proven { results, changed } if changed.is_empty() => (
            true,
            "ok",
            json!(format!(
                "{results} task results on the second apply, none changed"
            )),
        ),
        Verdict::Proven { changed, .. } => {
            let tasks: Vec<String> = changed.iter().map(|t| t.describe(repo)).collect();
            (false, "changed", json!(tasks))
        }
        Verdict::Unproven(why) => (false, "idempotence_unproven", json!(why)),
    };
    record(
        "idempotence",
        CheckSource::Idempotence,
        ok,
        reason,
        Some(detail),
    )
}

/// The idempotence verdict a run with the same layers already reached (no step applied here).
pub fn idempotence_cached(detail: String) -> CheckRecord {
    record(
        "idempotence",
        CheckSource::Idempotence,
        true,
        "cached",
        Some(json!(detail)),
    )
}

/// After the reboot systemd must report `running`: `degraded` means a unit failed at boot.
pub fn system_running(state: &str, failed_units: &[String]) -> CheckRecord {
    let ok = state == "running";
    let detail = if failed_units.is_empty() {
        json!(state)
    } else {
        json!(format!("{state}: {} failed", failed_units.join(", ")))
    };
    record(
        "system_running",
        CheckSource::Builtin,
        ok,
        state,
        Some(detail),
    )
}

/// The shell command that asks the guest for a route to each real fleet address: one line
/// `<address> <rc> <what ip said>` each. Addresses are printed by Rust (`IpAddr`), so no
/// quoting is needed.
pub fn fleet_route_command(addresses: &[std::net::IpAddr]) -> String {
    let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    format!(
        "for a in {}; do out=$(ip route get \"$a\" 2>&1); echo \"$a $? $out\" | head -n1; done",
        list.join(" ")
    )
}

/// Judge the answers of [`fleet_route_command`]: every address must have no route (the
/// seed's network-config makes each unreachable).
pub fn no_route_to_fleet(addresses: &[std::net::IpAddr], answer: &str) -> CheckRecord {
    if addresses.is_empty() {
        return record(
            "no_route_to_fleet",
            CheckSource::Builtin,
            true,
            "ok",
            Some(json!("the real inventory gives no literal address")),
        );
    }
    let mut routed = Vec::new();
    let mut lines = Vec::new();
    for address in addresses {
        let text = address.to_string();
        let line = answer
            .lines()
            .find(|l| l.split_whitespace().next() == Some(text.as_str()));
        match line {
            Some(l) => {
                lines.push(l.trim().to_owned());
                let rc = l.split_whitespace().nth(1);
                if rc == Some("0") {
                    routed.push(text);
                }
            }
            None => {
                lines.push(format!("{text}: no answer"));
                routed.push(text);
            }
        }
    }
    let ok = routed.is_empty();
    record(
        "no_route_to_fleet",
        CheckSource::Builtin,
        ok,
        if ok { "ok" } else { "routed" },
        Some(json!(lines.join("; "))),
    )
}

/// The names of the failed checks.
pub fn failed(checks: &[CheckRecord]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.clone())
        .collect()
}

/// One line per check, for the operator.
pub fn summary(checks: &[CheckRecord]) -> String {
    summary_expecting(checks, &[])
}

/// [`summary`], marking XFAIL the failed checks a RED profile's `expect` names (`expected`).
pub fn summary_expecting(checks: &[CheckRecord], expected: &[String]) -> String {
    checks
        .iter()
        .map(|c| {
            let mark = boma_report::check_mark(c.ok, expected.contains(&c.name));
            let reason = c
                .reason
                .as_deref()
                .filter(|r| *r != "ok")
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!("  {mark} {}{reason}  [{}]\n", c.name, c.source)
        })
        .collect()
}

/// A RED profile's run held against its `expect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// The failed checks an entry names: each a failure as expected.
    pub expected: Vec<String>,
    /// Entries no failed check matched: expected failures that did not happen.
    pub missing: Vec<String>,
    /// Failed checks no entry names.
    pub unexpected: Vec<String>,
}

impl Expectations {
    /// Exactly the expected failures, and nothing else: an expected failure (exit 0).
    pub fn met(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }
}

/// A RED profile's `expect` against the checks a run reported (the one rule:
/// [`boma_inventory::match_expect`]). A run that passed meets no expectation: every entry is
/// missing.
pub fn against_expectations(expect: &[String], checks: &[CheckRecord]) -> Expectations {
    let failed = failed(checks);
    let seen = boma_inventory::match_expect(expect, &failed);
    Expectations {
        expected: failed
            .iter()
            .filter(|f| !seen.unexpected.contains(f))
            .cloned()
            .collect(),
        missing: seen.missing,
        unexpected: seen.unexpected,
    }
}

/// A reboot that did not come back, as a check (`reboot_timeout`, `guest_gone`).
/// `reboot_timeout` is the guest not returning, whether the wait ran out or was cut short by a
/// console that shows it never will (a kernel panic, emergency mode).
pub fn reboot_check(error: &boma_vm::VmError) -> CheckRecord {
    let reason = match error {
        boma_vm::VmError::Timeout { .. } | boma_vm::VmError::BootFailed { .. } => "reboot_timeout",
        boma_vm::VmError::GuestGone { .. } => "guest_gone",
        _ => "reboot_failed",
    };
    CheckRecord {
        name: reason.to_owned(),
        source: CheckSource::Builtin,
        ok: false,
        reason: Some(reason.to_owned()),
        detail: Some(json!(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_routes_are_judged_per_address() {
        let addresses: Vec<std::net::IpAddr> = vec![
            "77.42.120.136".parse().unwrap(),
            "192.0.2.50".parse().unwrap(),
        ];
        let answer = "77.42.120.136 2 RTNETLINK answers: No route to host\n192.0.2.50 0 192.0.2.50 via 10.0.2.2 dev ens2 src 10.0.2.15\n";
        let check = no_route_to_fleet(&addresses, answer);
        assert!(!check.ok);
        assert_eq!(check.reason.as_deref(), Some("routed"));
        let answer = "77.42.120.136 2 RTNETLINK answers: No route to host\n192.0.2.50 2 RTNETLINK answers: No route to host\n";
        assert!(no_route_to_fleet(&addresses, answer).ok);
        // An address the guest did not answer for is not proven unrouted.
        assert!(!no_route_to_fleet(&addresses, "77.42.120.136 2 x\n").ok);
        assert!(fleet_route_command(&addresses).contains("for a in 77.42.120.136 192.0.2.50;"));
    }

    #[test]
    fn a_probe_failing_before_the_reboot_too_says_so() {
        let outcome = |port, ok, reason: &str| ProbeOutcome {
            port,
            kind: "https".into(),
            ok,
            reason: reason.into(),
            detail: String::new(),
        };
        let before = [outcome(443, false, "timeout"), outcome(8443, true, "ok")];
        let after = [
            outcome(443, false, "timeout"),
            outcome(8443, false, "refused"),
        ];
        let checks = from_probes(&before, &after);
        let reasons: Vec<Option<&str>> = checks.iter().map(|c| c.reason.as_deref()).collect();
        assert_eq!(
            reasons,
            [Some("timeout, before the reboot too"), Some("refused")]
        );
        assert_eq!(checks[0].name, "probe_443_https");
        assert!(checks.iter().all(|c| !c.ok));
    }

    #[test]
    fn system_state_and_idempotence() {
        assert!(system_running("running", &[]).ok);
        let degraded = system_running("degraded", &["zz.service".into()]);
        assert!(!degraded.ok);
        assert_eq!(degraded.detail, Some(json!("degraded: zz.service failed")));
        let none = from_idempotence(
            &Verdict::Proven {
                results: 12,
                changed: Vec::new(),
            },
            Utf8Path::new("/r"),
        );
        assert!(none.ok);
        assert_eq!(
            none.detail,
            Some(json!("12 task results on the second apply, none changed"))
        );
        let some = from_idempotence(
            &Verdict::Proven {
                results: 12,
                changed: vec![crate::ansible::ChangedTask {
                    host: "h".into(),
                    task: "Add a route".into(),
                    role: Some("cat".into()),
                    path: Some("/r/roles/cat/tasks/main.yml:4".into()),
                }],
            },
            Utf8Path::new("/r"),
        );
        assert!(!some.ok);
        assert_eq!(some.reason.as_deref(), Some("changed"));
        assert_eq!(
            some.detail,
            Some(json!(["cat : Add a route (roles/cat/tasks/main.yml:4)"]))
        );
        let unproven = from_idempotence(&Verdict::Unproven("no marks".into()), Utf8Path::new("/r"));
        assert!(!unproven.ok, "unproven is never a pass");
        assert_eq!(unproven.reason.as_deref(), Some("idempotence_unproven"));
        assert_eq!(unproven.detail, Some(json!("no marks")));
    }

    #[test]
    fn a_quiet_reboot_diff_says_what_each_profile_pattern_hid() {
        let ignore = boma_state::Ignore::with_patterns(&[
            "listener_lost tcp/9100 *".to_owned(),
            "unit_inactive stale.service".to_owned(),
        ])
        .unwrap();
        let listening = |port: u16| {
            format!(
                "### ss-tulpn\ntcp LISTEN 0 128 0.0.0.0:{port} 0.0.0.0:* users:((\"node_exporter\",pid=9,fd=3))\n### rc=0\n"
            )
        };
        let snapshot = |text: &str| boma_state::Snapshot {
            guest: boma_state::parse_capture(text).unwrap(),
            probes: Vec::new(),
        };
        let diff = boma_state::diff(
            &snapshot(&listening(9100)),
            &snapshot(&listening(9101)),
            &ignore,
        );
        let checks = from_reboot_diff(&diff);
        assert_eq!(checks.len(), 1);
        assert!(checks[0].ok);
        assert_eq!(
            checks[0].detail,
            Some(json!(
                "nothing lost; 1 appeared, 1 ignored; reboot_diff_ignore \
                 \"listener_lost tcp/9100 *\" hid 1, \"unit_inactive stale.service\" hid 0"
            ))
        );
        // Without the pattern the same diff fails, by the finding's name.
        let diff = boma_state::diff(
            &snapshot(&listening(9100)),
            &snapshot(&listening(9101)),
            &boma_state::Ignore::builtin(),
        );
        let checks = from_reboot_diff(&diff);
        assert_eq!(failed(&checks), ["listener_lost tcp/9100 node_exporter"]);
        assert_eq!(checks[0].reason.as_deref(), Some("listener_lost"));
    }

    #[test]
    fn expectations_match_names_or_prefixes() {
        let checks = vec![
            record(
                "unit_inactive web.service",
                CheckSource::RebootDiff,
                false,
                "unit_inactive",
                None,
            ),
            record(
                "probe_8080_http",
                CheckSource::Probe,
                false,
                "refused",
                None,
            ),
            record("idempotence", CheckSource::Idempotence, true, "ok", None),
        ];
        let seen = against_expectations(
            &["unit_inactive web.service".into(), "reboot_timeout".into()],
            &checks,
        );
        assert_eq!(seen.expected, ["unit_inactive web.service"]);
        assert_eq!(seen.missing, ["reboot_timeout"]);
        assert_eq!(seen.unexpected, ["probe_8080_http"]);
        assert!(!seen.met());
        // An entry followed by a space and more matches; every failure named, every entry seen.
        let seen =
            against_expectations(&["unit_inactive".into(), "probe_8080_http".into()], &checks);
        assert!(seen.met(), "{seen:?}");
        assert_eq!(
            seen.expected,
            ["unit_inactive web.service", "probe_8080_http"]
        );
        // Nothing failed: nothing expected was seen.
        let passed: Vec<CheckRecord> = checks.iter().filter(|c| c.ok).cloned().collect();
        let seen = against_expectations(&["probe_8080_http".into()], &passed);
        assert_eq!(seen.missing, ["probe_8080_http"]);
        assert!(seen.expected.is_empty() && !seen.met());
    }

    #[test]
    fn the_summary_marks_expected_failures() {
        let checks = vec![
            record("idempotence", CheckSource::Idempotence, true, "ok", None),
            record(
                "probe_8080_http",
                CheckSource::Probe,
                false,
                "refused",
                None,
            ),
            record("reboot_diff", CheckSource::RebootDiff, false, "lost", None),
        ];
        assert_eq!(
            summary_expecting(&checks, &["probe_8080_http".into()]),
            "  PASS idempotence  [idempotence]\n  XFAIL probe_8080_http (refused)  [probe]\n  FAIL reboot_diff (lost)  [reboot_diff]\n"
        );
    }

    /// Each way a verify run can end, and the checks it makes (name, ok, reason).
    #[test]
    fn a_verify_run_fails_by_name_when_its_checks_do_not_say_why() {
        use crate::verify::{VerifyResults, VerifyRun, Written};
        let results = |ok: bool| {
            Written::Results(
                VerifyResults::parse(&format!(
                    r#"{{"checks": [{{"name": "docker_active", "ok": true}},
                        {{"name": "forward_chain_accepts_containers", "ok": {ok}, "reason": "x"}}]}}"#
                ))
                .unwrap(),
            )
        };
        let failed = Some("verify tests/verify/askari.yml failed (ansible-playbook exit status 2)");
        let judged = |written: Written, failure: Option<&str>| -> Vec<(String, bool, String)> {
            let run = VerifyRun {
                playbook: "tests/verify/askari.yml".into(),
                failure: failure.map(str::to_owned),
                written,
            };
            from_verify(&run)
                .into_iter()
                .map(|c| (c.name, c.ok, c.reason.unwrap_or_default()))
                .collect()
        };
        let check = |name: &str, ok: bool, reason: &str| (name.to_owned(), ok, reason.to_owned());
        let verify_failed =
            |reason: &str| check("verify_failed tests/verify/askari.yml", false, reason);

        // Passed, all ok: its checks.
        assert_eq!(
            judged(results(true), None),
            [
                check("docker_active", true, ""),
                check("forward_chain_accepts_containers", true, "x")
            ]
        );
        // Failed after writing a failed check: the contract; the check says why.
        assert_eq!(
            judged(results(false), failed),
            [
                check("docker_active", true, ""),
                check("forward_chain_accepts_containers", false, "x")
            ]
        );
        // Failed with every check ok: a green that would hide a red.
        assert_eq!(
            judged(results(true), failed).last().unwrap(),
            &verify_failed("playbook_failed")
        );
        // Nothing written, passed or failed; unreadable; no check at all.
        assert_eq!(
            judged(Written::Nothing, None),
            [verify_failed("no_results")]
        );
        assert_eq!(
            judged(Written::Nothing, failed),
            [verify_failed("no_results")]
        );
        assert_eq!(
            judged(Written::Malformed("eof".into()), None),
            [verify_failed("malformed_results")]
        );
        assert_eq!(
            judged(Written::Results(VerifyResults { checks: vec![] }), None),
            [verify_failed("no_checks")]
        );
        let run = VerifyRun {
            playbook: "tests/verify/askari.yml".into(),
            failure: failed.map(str::to_owned),
            written: Written::Nothing,
        };
        assert_eq!(
            from_verify(&run)[0].detail,
            Some(json!(
                "it wrote no results to boma_it_results_file; verify tests/verify/askari.yml \
                 failed (ansible-playbook exit status 2)"
            ))
        );
    }
}
