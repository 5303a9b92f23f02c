//! Pure judgements of what `xtask it` reported: the report read back, a RED's failures against
//! its profile's `expect`, what a GREEN and askari must show, the layers a repeated run reused,
//! and the diagnostics bundle's nft ruleset. Values in, lists of problems out (empty: as
//! required), so that each scenario says every way a run fell short at once.
//!
//! The expectation rule is written here again rather than taken from `boma-harness`: the suite
//! checks the harness, so it must not share the code it checks.

use boma_inventory::match_expect;
use boma_report::{CheckSource, LayerUse, Report, RunReport, RunResult};

/// Read a report `xtask it` wrote (`--report`) or printed (stdout).
pub fn parse_report(text: &str) -> Result<Report, serde_json::Error> {
    serde_json::from_str(text)
}

/// The one run of `host` in a report.
pub fn run_of<'a>(report: &'a Report, host: &str) -> Result<&'a RunReport, String> {
    let mut runs = report.runs.iter().filter(|r| r.host == host);
    match (runs.next(), runs.next()) {
        (Some(run), None) => Ok(run),
        (None, _) => Err(format!(
            "the report has no run of {host} (runs: {})",
            hosts_of(report).join(", ")
        )),
        (Some(_), Some(_)) => Err(format!("the report has more than one run of {host}")),
    }
}

fn hosts_of(report: &Report) -> Vec<&str> {
    report.runs.iter().map(|r| r.host.as_str()).collect()
}

/// Each run's host, result and error, one line: what an unexpected exit status is explained by.
pub fn outcomes(report: &Report) -> String {
    if report.runs.is_empty() {
        return "no run in the report".to_owned();
    }
    report
        .runs
        .iter()
        .map(|r| format!("{}: {}{}", r.host, r.result, error_suffix(r)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The names of a run's failed checks, in the report's order.
pub fn failed_checks(run: &RunReport) -> Vec<&str> {
    run.checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect()
}

/// A RED run must end as an expected failure (`expected_failure`: the harness worked, found the
/// host broken, and judged it by the profile's `expect` — not `failed`, `error`, `refused` or
/// `interrupted`), with exactly its profile's expected failures, each reported as expected.
pub fn red_problems(run: &RunReport, expect: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if expect.is_empty() {
        problems.push(format!(
            "{} is judged as a RED but its profile has no `expect`",
            run.host
        ));
    }
    if run.result != RunResult::ExpectedFailure {
        problems.push(format!(
            "{} ended `{}`, a RED must end `expected_failure`{}",
            run.host,
            run.result,
            error_suffix(run)
        ));
    }
    let failed = failed_checks(run);
    let seen = match_expect(expect, &failed);
    let not_marked: Vec<&str> = failed
        .iter()
        .filter(|f| !seen.unexpected.iter().any(|u| u == *f))
        .filter(|f| !run.expected_failures.iter().any(|e| e == *f))
        .copied()
        .collect();
    if !not_marked.is_empty() {
        problems.push(format!(
            "{}: expected but not reported as expected: {}",
            run.host,
            not_marked.join(", ")
        ));
    }
    if !seen.missing.is_empty() {
        problems.push(format!(
            "{}: expected but not seen: {}",
            run.host,
            seen.missing.join(", ")
        ));
    }
    if !seen.unexpected.is_empty() {
        problems.push(format!(
            "{}: failed but not expected: {}",
            run.host,
            seen.unexpected.join(", ")
        ));
    }
    problems
}

/// A GREEN run must pass across a real reboot with every check ok (a pass without a reboot is
/// blind to what the harness exists for).
pub fn green_problems(run: &RunReport) -> Vec<String> {
    let mut problems = Vec::new();
    if run.result != RunResult::Passed {
        problems.push(format!(
            "{} ended `{}`, a GREEN must pass{}",
            run.host,
            run.result,
            error_suffix(run)
        ));
    }
    if !run.rebooted {
        problems.push(format!("{} was not rebooted", run.host));
    }
    if run.checks.is_empty() {
        problems.push(format!("{} reported no check at all", run.host));
    }
    let failed = failed_checks(run);
    if !failed.is_empty() {
        problems.push(format!(
            "{}: failed checks: {}",
            run.host,
            failed.join(", ")
        ));
    }
    problems
}

fn error_suffix(run: &RunReport) -> String {
    run.error
        .as_deref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

/// The checks `tests/verify/askari.yml` writes: the incident's outcomes inside the VM (the
/// HTTPS one from the controller is the harness's probe, `probe_443_https`).
pub const ASKARI_VERIFY_CHECKS: [&str; 2] = ["docker_active", "forward_chain_accepts_containers"];

/// What askari's probe of 443 says when Caddy answered with a certificate verified against
/// Caddy's local root alone (`profiles/askari.json`'s `ca` and `server`).
pub const ASKARI_PROBE_EVIDENCE: &str =
    "server Caddy; verified against /srv/caddy/data/caddy/pki/authorities/local/root.crt alone";

/// A passing askari run: a GREEN, and each source of checks was there — the reboot diff with
/// nothing lost, the idempotence pass, the system running, no route to the real fleet (with the
/// unreachable route's own answer as evidence), the controller's probe of 443, and the verify
/// playbook's checks.
pub fn askari_problems(run: &RunReport) -> Vec<String> {
    let mut problems = green_problems(run);
    let has = |name: &str, source: CheckSource| {
        run.checks
            .iter()
            .any(|c| c.name == name && c.source == source)
    };
    for (name, source) in [
        ("reboot_diff", CheckSource::RebootDiff),
        ("idempotence", CheckSource::Idempotence),
        ("system_running", CheckSource::Builtin),
        ("no_route_to_fleet", CheckSource::Builtin),
    ] {
        if !has(name, source) {
            problems.push(format!("no `{name}` check from the {source} source"));
        }
    }
    for name in ASKARI_VERIFY_CHECKS {
        if !has(name, CheckSource::Verify) {
            problems.push(format!("the verify playbook did not report `{name}`"));
        }
    }
    let probe_443 = run
        .checks
        .iter()
        .find(|c| c.source == CheckSource::Probe && c.name.starts_with("probe_443_"));
    match probe_443.map(|c| detail_text(c.detail.as_ref())) {
        None => problems.push("no controller probe of port 443 (`probe_443_*`)".into()),
        // The profile's `ca` and `server`: Caddy answered, with a certificate its local root
        // (read from the guest) signed.
        Some(detail) if !detail.contains(ASKARI_PROBE_EVIDENCE) => problems.push(format!(
            "the controller's probe of 443 does not say `{ASKARI_PROBE_EVIDENCE}`: {detail}"
        )),
        Some(_) => {}
    }
    let fleet_evidence = run
        .checks
        .iter()
        .find(|c| c.name == "no_route_to_fleet")
        .map(|c| detail_text(c.detail.as_ref()));
    if let Some(detail) = fleet_evidence
        && !detail.contains("No route to host")
    {
        problems.push(format!(
            "no_route_to_fleet passed without the unreachable route's answer: {detail}"
        ));
    }
    problems
}

/// The reboot diff's verdict as evidence: the `reboot_diff` check's detail (`nothing lost; …`),
/// or the findings that failed it.
pub fn reboot_diff_evidence(run: &RunReport) -> String {
    let diff: Vec<String> = run
        .checks
        .iter()
        .filter(|c| c.source == CheckSource::RebootDiff)
        .map(|c| {
            let detail = detail_text(c.detail.as_ref());
            let mark = if c.ok { "ok" } else { "LOST" };
            format!("{mark} {}: {detail}", c.name)
        })
        .collect();
    if diff.is_empty() {
        "no reboot-diff check".to_owned()
    } else {
        diff.join("\n")
    }
}

/// A check's evidence as text: a string as it is, anything else as JSON, none as `-`.
pub fn detail_text(detail: Option<&serde_json::Value>) -> String {
    match detail {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "-".to_owned(),
    }
}

/// A repeated run's layers: with layers on, one entry per step of the profile, each reused;
/// with layers off (`BOMA_IT_LAYERS=off`), none reused.
pub fn layers_problems(layers: &[LayerUse], steps: usize, layers_on: bool) -> Vec<String> {
    let not_reused: Vec<String> = layers
        .iter()
        .filter(|l| !l.reused)
        .map(|l| {
            format!(
                "{} ({})",
                l.step,
                l.why_not.as_deref().unwrap_or("no reason given")
            )
        })
        .collect();
    let reused: Vec<&str> = layers
        .iter()
        .filter(|l| l.reused)
        .map(|l| l.step.as_str())
        .collect();
    let mut problems = Vec::new();
    if layers_on {
        if layers.len() != steps {
            problems.push(format!(
                "the report lists {} layer(s) for a profile of {steps} step(s)",
                layers.len()
            ));
        }
        if !not_reused.is_empty() {
            problems.push(format!(
                "a repeated run applied again: {}",
                not_reused.join("; ")
            ));
        }
    } else if !reused.is_empty() {
        problems.push(format!(
            "layers are off (BOMA_IT_LAYERS=off) yet reused: {}",
            reused.join(", ")
        ));
    }
    problems
}

/// The exit status `xtask it` must end with when every run ended as its profile says: a RED's
/// expected failure exits 0, as a GREEN's pass does.
pub const EXIT_AS_EXPECTED: i32 = 0;

/// Whether the `inet filter` forward chain in an `nft list ruleset` is `policy drop` with no
/// accept rule in it (the incident's chain).
pub fn pure_drop_forward(ruleset: &str) -> bool {
    let mut in_inet_filter = false;
    let mut in_forward = false;
    let mut policy_drop = false;
    let mut accepts = false;
    for line in ruleset.lines().map(str::trim) {
        if line.starts_with("table ") {
            in_inet_filter = line.starts_with("table inet filter");
        } else if in_inet_filter && line.starts_with("chain ") {
            in_forward = line.starts_with("chain forward");
        } else if in_inet_filter && in_forward {
            if line.contains("policy drop") {
                policy_drop = true;
            } else if line.contains("accept") {
                accepts = true;
            } else if line == "}" {
                in_forward = false;
            }
        }
    }
    policy_drop && !accepts
}

#[cfg(test)]
mod tests {
    use super::*;
    use boma_inventory::{ExpectMatch, expect_entry_matches};

    // Hand-written in the shape `xtask it` prints (boma-report's JSON, the check names the
    // harness gives): no VM runs under `cargo test`.
    const ASKARI_PASSED: &str = include_str!("../tests/fixtures/askari-passed.json");
    const ASKARI_RED: &str = include_str!("../tests/fixtures/askari-red-failed.json");
    const CATALOGUE: &str = include_str!("../tests/fixtures/catalogue.json");

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn an_entry_matches_itself_or_itself_and_a_space() {
        assert!(expect_entry_matches("reboot_timeout", "reboot_timeout"));
        assert!(expect_entry_matches(
            "probe_failed 443",
            "probe_failed 443 timeout"
        ));
        assert!(!expect_entry_matches("probe_443", "probe_443_https"));
        assert!(!expect_entry_matches(
            "probe_failed 443 timeout",
            "probe_failed 443"
        ));
        assert!(!expect_entry_matches("", "reboot_timeout"));
    }

    #[test]
    fn expectations_are_compared_both_ways() {
        let expect = strings(&["unit_inactive web.service", "reboot_timeout"]);
        let seen = match_expect(&expect, &["unit_inactive web.service", "probe_8080_http"]);
        assert_eq!(seen.missing, ["reboot_timeout"]);
        assert_eq!(seen.unexpected, ["probe_8080_http"]);
        let seen = match_expect(&expect, &["reboot_timeout", "unit_inactive web.service"]);
        assert_eq!(seen, ExpectMatch::default());
        // One entry may cover several findings; nothing failing meets no expectation.
        let seen = match_expect(
            &strings(&["chain_lost ip nat"]),
            &["chain_lost ip nat DOCKER", "chain_lost ip nat POSTROUTING"],
        );
        assert_eq!(seen, ExpectMatch::default());
        assert_eq!(match_expect::<&str>(&expect, &[]).missing.len(), 2);
    }

    #[test]
    fn a_report_is_read_back_with_every_run() {
        let report = parse_report(ASKARI_PASSED).unwrap();
        assert_eq!(report.result(), RunResult::Passed);
        let run = run_of(&report, "askari").unwrap();
        assert_eq!(run.vm.as_deref(), Some("boma-it-askari-5e6f7a8b"));
        assert_eq!(run.phases.len(), 12);
        assert!(
            run_of(&report, "ubongo")
                .unwrap_err()
                .contains("no run of ubongo")
        );
        assert!(parse_report("error: refused\n").is_err());
    }

    #[test]
    fn a_healthy_askari_passes_every_requirement() {
        let report = parse_report(ASKARI_PASSED).unwrap();
        let run = run_of(&report, "askari").unwrap();
        assert_eq!(askari_problems(run), Vec::<String>::new());
        assert_eq!(
            reboot_diff_evidence(run),
            "ok reboot_diff: nothing lost; 2 appeared, 5 ignored"
        );
    }

    #[test]
    fn an_askari_probe_that_did_not_verify_caddy_is_named() {
        let report = parse_report(ASKARI_PASSED).unwrap();
        let mut run = run_of(&report, "askari").unwrap().clone();
        let after = "HTTP 502, server Caddy; /srv/caddy/data/caddy/pki/authorities/local/root.crt \
                     is absent in the guest: certificate not verified (1 attempt(s))";
        for check in &mut run.checks {
            if check.name == "probe_443_https" {
                check.detail = Some(serde_json::json!({"after": after}));
            }
        }
        let problems = askari_problems(&run);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "the controller's probe of 443 does not say `server Caddy; verified against"
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn askari_missing_a_source_or_evidence_is_named() {
        let report = parse_report(ASKARI_PASSED).unwrap();
        let mut run = run_of(&report, "askari").unwrap().clone();
        run.checks
            .retain(|c| c.name != "idempotence" && !c.name.starts_with("probe_443"));
        for check in &mut run.checks {
            if check.name == "no_route_to_fleet" {
                check.detail = Some(serde_json::json!(
                    "the real inventory gives no literal address"
                ));
            }
        }
        run.rebooted = false;
        let problems = askari_problems(&run);
        assert_eq!(
            problems,
            [
                "askari was not rebooted",
                "no `idempotence` check from the idempotence source",
                "no controller probe of port 443 (`probe_443_*`)",
                "no_route_to_fleet passed without the unreachable route's answer: the real inventory gives no literal address",
            ]
        );
    }

    #[test]
    fn the_red_case_matches_or_says_what_differs() {
        let report = parse_report(ASKARI_RED).unwrap();
        let run = run_of(&report, "askari-red").unwrap();
        let expect = strings(&[
            "forward_chain_accepts_containers",
            "https_443_from_controller",
            "probe_failed 443 timeout",
            "probe_443_https",
        ]);
        assert_eq!(red_problems(run, &expect), Vec::<String>::new());
        // The profile as committed lacks the probe's own check: the suite says so.
        let problems = red_problems(run, &expect[..3]);
        assert_eq!(
            problems,
            ["askari-red: failed but not expected: probe_443_https"]
        );
        // A GREEN judged as one fails on every count.
        let problems = green_problems(run);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("askari-red ended `expected_failure`"),
            "{problems:?}"
        );
    }

    /// What `it` reported before it judged `expect` itself: the right failures, but `failed`
    /// (exit 1) and none of them reported as expected.
    #[test]
    fn a_red_reported_failed_is_not_an_expected_failure() {
        let report = parse_report(ASKARI_RED).unwrap();
        let mut run = run_of(&report, "askari-red").unwrap().clone();
        run.result = RunResult::Failed;
        run.expected_failures.clear();
        let expect = strings(&[
            "forward_chain_accepts_containers",
            "https_443_from_controller",
            "probe_failed 443 timeout",
            "probe_443_https",
        ]);
        assert_eq!(
            red_problems(&run, &expect),
            [
                "askari-red ended `failed`, a RED must end `expected_failure`: checks failed: probe_443_https, probe_failed 443 timeout, forward_chain_accepts_containers, https_443_from_controller",
                "askari-red: expected but not reported as expected: probe_443_https, probe_failed 443 timeout, forward_chain_accepts_containers, https_443_from_controller",
            ]
        );
    }

    #[test]
    fn a_red_that_errored_is_not_a_red_that_failed() {
        let report = parse_report(CATALOGUE).unwrap();
        let run = run_of(&report, "cat-lost-route-red").unwrap();
        assert_eq!(run.result, RunResult::Error);
        let problems = red_problems(run, &strings(&["route_lost 198.51.100.0/24"]));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("ended `error`, a RED must end `expected_failure`: ssh failed")
        );
        assert!(problems[1].contains("expected but not seen: route_lost"));
        assert_eq!(
            red_problems(run_of(&report, "cat-not-enabled").unwrap(), &[]),
            [
                "cat-not-enabled is judged as a RED but its profile has no `expect`",
                "cat-not-enabled ended `passed`, a RED must end `expected_failure`"
            ]
        );
    }

    #[test]
    fn layers_of_a_repeated_run() {
        let reused = |step: &str| LayerUse {
            step: step.into(),
            key: "k".into(),
            reused: true,
            why_not: None,
        };
        let fresh = LayerUse {
            step: "apply playbooks/offsite.yml --tags docker_host,reverse_proxy".into(),
            key: "k2".into(),
            reused: false,
            why_not: Some("roles/docker_host changed".into()),
        };
        let both = [
            reused("apply playbooks/site.yml --tags base"),
            fresh.clone(),
        ];
        assert!(layers_problems(&both[..1], 1, true).is_empty());
        assert_eq!(
            layers_problems(&both, 2, true),
            [
                "a repeated run applied again: apply playbooks/offsite.yml --tags docker_host,reverse_proxy (roles/docker_host changed)"
            ]
        );
        assert_eq!(
            layers_problems(&[], 2, true),
            ["the report lists 0 layer(s) for a profile of 2 step(s)"]
        );
        assert!(layers_problems(&[], 2, false).is_empty());
        assert!(layers_problems(&[fresh], 2, false).is_empty());
        assert_eq!(
            layers_problems(&both[..1], 2, false),
            [
                "layers are off (BOMA_IT_LAYERS=off) yet reused: apply playbooks/site.yml --tags base"
            ]
        );
    }

    #[test]
    fn outcomes_explain_an_exit_status() {
        let report = parse_report(CATALOGUE).unwrap();
        let line = outcomes(&report);
        assert!(
            line.contains("; cat-lost-route-red: error: ssh failed: connection reset; cat-not-enabled: passed;"),
            "{line}"
        );
        let empty = Report {
            runs: Vec::new(),
            ..report
        };
        assert_eq!(outcomes(&empty), "no run in the report");
    }

    #[test]
    fn recognises_the_red_forward_chain() {
        // Captured from a rebooted GREEN askari guest (boma-state's fixture): the forward
        // chain drops by policy but accepts Docker's bridges; Docker's own `ip filter FORWARD`
        // is another table.
        let green = include_str!("../tests/fixtures/nft-ruleset-green.txt");
        assert!(!pure_drop_forward(green));
        // The same ruleset with the drop-in's accepts gone: the incident's chain.
        let red = include_str!("../tests/fixtures/nft-ruleset-red.txt");
        assert!(pure_drop_forward(red));
        // A drop policy elsewhere (input) is not the forward chain's.
        assert!(!pure_drop_forward(
            "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n"
        ));
        assert!(!pure_drop_forward(""));
    }
}
