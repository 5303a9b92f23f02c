//! The reports the tests render: one per kind of run the harness reports, with fixed times,
//! names and paths so that every rendering is deterministic.

use boma_report::{
    CheckRecord, CheckSource, ImageUse, LayerUse, PhaseRecord, PhaseStatus, Report, RunReport,
    RunResult, Timestamp,
};
use serde_json::json;

/// Every scenario, by the name its snapshots carry.
pub fn all() -> Vec<(&'static str, Report)> {
    vec![
        ("passed", passed()),
        ("red", red()),
        ("expected_failure", expected_failure()),
        ("expectation_unmet", expectation_unmet()),
        ("refused", refused()),
        ("interrupted", interrupted()),
        ("two_profiles", two_profiles()),
        ("no_reboot", no_reboot()),
        ("hostile", hostile()),
        (
            "empty",
            Report {
                runs: Vec::new(),
                started_at: at("2026-11-29T01:00:00.000Z"),
                total_seconds: 0.0,
            },
        ),
    ]
}

pub fn at(text: &str) -> Timestamp {
    text.parse().expect("a fixture timestamp")
}

fn phase(name: &str, status: PhaseStatus, started_at: &str, seconds: f64) -> PhaseRecord {
    PhaseRecord {
        name: name.to_owned(),
        status,
        started_at: at(started_at),
        seconds,
    }
}

fn check(
    name: &str,
    source: CheckSource,
    ok: bool,
    reason: &str,
    detail: Option<serde_json::Value>,
) -> CheckRecord {
    CheckRecord {
        name: name.to_owned(),
        source,
        ok,
        reason: Some(reason.to_owned()),
        detail,
    }
}

fn layer(step: &str, key: &str, why_not: Option<&str>) -> LayerUse {
    LayerUse {
        step: step.to_owned(),
        key: key.to_owned(),
        reused: why_not.is_none(),
        why_not: why_not.map(str::to_owned),
    }
}

/// A report of one run; the invocation took `total_seconds` (a little longer than the run).
fn single(run: RunReport, total_seconds: f64) -> Report {
    Report {
        started_at: run.started_at,
        total_seconds,
        runs: vec![run],
    }
}

/// askari, booted under KVM, applied, rebooted, all checks green.
fn askari_passed() -> RunReport {
    RunReport {
        host: "askari".to_owned(),
        vm: Some("boma-it-askari-1a2b3c4d".to_owned()),
        backend: Some("qemu".to_owned()),
        accel: Some("kvm".to_owned()),
        cert_tier: "internal".to_owned(),
        image: Some(ImageUse {
            path: "/var/lib/boma-integration/debian-13-boma-amd64.qcow2".to_owned(),
            sha512: "3229dd24a6b9aada".to_owned(),
            origin: "cache (built)".to_owned(),
        }),
        result: RunResult::Passed,
        rebooted: true,
        error: None,
        diagnostics: None,
        started_at: at("2026-11-29T01:02:03.456Z"),
        total_seconds: 226.1,
        layers: vec![
            layer(
                "golden",
                "debian-13-genericcloud-amd64-20261120-sha512:9f3c0e",
                None,
            ),
            layer(
                "apply playbooks/site.yml --tags base",
                "base-7d41a2",
                Some("roles/base changed since the layer was built"),
            ),
        ],
        phases: vec![
            phase("up", PhaseStatus::Ok, "2026-11-29T01:02:03.500Z", 41.2),
            phase(
                "apply playbooks/site.yml --tags base",
                PhaseStatus::Ok,
                "2026-11-29T01:02:44.700Z",
                95.4,
            ),
            phase(
                "apply playbooks/site.yml --tags docker_host",
                PhaseStatus::Ok,
                "2026-11-29T01:04:20.100Z",
                60.1,
            ),
            phase("reboot", PhaseStatus::Ok, "2026-11-29T01:05:20.200Z", 20.3),
            phase(
                "verify tests/verify/askari.yml",
                PhaseStatus::Ok,
                "2026-11-29T01:05:40.500Z",
                8.7,
            ),
        ],
        checks: vec![
            check(
                "docker_active",
                CheckSource::Verify,
                true,
                "ok",
                Some(json!("active")),
            ),
            check(
                "forward_chain_accepts_containers",
                CheckSource::Verify,
                true,
                "ok",
                None,
            ),
            check(
                "https_443_from_controller",
                CheckSource::Probe,
                true,
                "ok",
                None,
            ),
            check(
                "nft_ruleset_survives_reboot",
                CheckSource::RebootDiff,
                true,
                "ok",
                None,
            ),
            check(
                "second_apply_changes_nothing",
                CheckSource::Idempotence,
                true,
                "ok",
                None,
            ),
        ],
        expected_failures: Vec::new(),
    }
}

pub fn passed() -> Report {
    single(askari_passed(), 226.5)
}

/// The 2026-06-17 incident in a VM: the forward chain drops container traffic after the reboot.
pub fn red() -> Report {
    let mut run = askari_passed();
    run.vm = Some("boma-it-askari-5e6f7a8b".to_owned());
    run.result = RunResult::Failed;
    run.error = Some(
        "verify failed: forward_chain_accepts_containers, https_443_from_controller, docker_forward_dropin_survives_reboot"
            .to_owned(),
    );
    run.diagnostics = Some("/root/integration-runs/boma-it-askari-5e6f7a8b".to_owned());
    run.phases[4].status = PhaseStatus::Failed;
    run.phases[4].seconds = 14.9;
    run.checks = vec![
        check(
            "docker_active",
            CheckSource::Verify,
            true,
            "ok",
            Some(json!("active")),
        ),
        check(
            "forward_chain_accepts_containers",
            CheckSource::Verify,
            false,
            "pure_drop",
            Some(json!(
                "table inet filter {\n  chain forward {\n    type filter hook forward priority filter; policy drop;\n  }\n}"
            )),
        ),
        check(
            "https_443_from_controller",
            CheckSource::Probe,
            false,
            "timeout",
            Some(
                json!({"endpoint": "127.0.0.1:40443", "curl_exit": 28, "error": "Connection timed out after 5001 milliseconds"}),
            ),
        ),
        check(
            "docker_forward_dropin_survives_reboot",
            CheckSource::RebootDiff,
            false,
            "lost_after_reboot",
            Some(json!({
                "before": "chain DOCKER-USER { ct state established,related accept }",
                "after": null,
            })),
        ),
        check(
            "second_apply_changes_nothing",
            CheckSource::Idempotence,
            true,
            "ok",
            None,
        ),
    ];
    run.total_seconds = 232.3;
    single(run, 232.7)
}

/// askari-red, a RED profile that plants the incident: it fails exactly as its `expect` says,
/// so the run is an expected failure (exit 0).
pub fn expected_failure() -> Report {
    let mut report = red();
    let run = &mut report.runs[0];
    run.host = "askari-red".to_owned();
    run.result = RunResult::ExpectedFailure;
    run.error = Some(
        "checks failed: forward_chain_accepts_containers, https_443_from_controller, docker_forward_dropin_survives_reboot"
            .to_owned(),
    );
    run.expected_failures = run
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.clone())
        .collect();
    report
}

/// askari-red after its planted bug stopped happening: every check passed, so the run fails
/// (exit 1) naming what its `expect` waited for in vain.
pub fn expectation_unmet() -> Report {
    let mut report = passed();
    let run = &mut report.runs[0];
    run.host = "askari-red".to_owned();
    run.result = RunResult::Failed;
    run.error = Some(
        "expected failures not seen: forward_chain_accepts_containers, https_443_from_controller"
            .to_owned(),
    );
    report
}

/// Preflight refused the profile: nothing was booted, no phase ran.
pub fn refused() -> Report {
    single(RunReport {
        host: "njema".to_owned(),
        vm: None,
        backend: None,
        accel: None,
        cert_tier: "internal".to_owned(),
        image: None,
        result: RunResult::Refused,
        rebooted: false,
        error: Some(
            "profiles/njema.json: applies[1].tags: `dockr` is neither a role nor in tests/tags.yml"
                .to_owned(),
        ),
        diagnostics: None,
        started_at: at("2026-11-29T02:00:00.000Z"),
        total_seconds: 0.2,
        layers: Vec::new(),
        phases: Vec::new(),
        checks: Vec::new(),
        expected_failures: Vec::new(),
    },
    0.3)
}

/// Ctrl-C while Ansible was applying: the VM was removed, no verdict.
pub fn interrupted() -> Report {
    let mut run = askari_passed();
    run.result = RunResult::Interrupted;
    run.rebooted = false;
    run.error = Some(
        "interrupted (SIGINT): `ansible-playbook -i .run/boma-it-askari-1a2b3c4d/inventory playbooks/site.yml --tags docker_host` was stopped"
            .to_owned(),
    );
    run.phases.truncate(3);
    run.phases[2].status = PhaseStatus::Interrupted;
    run.phases[2].seconds = 12.6;
    run.checks = Vec::new();
    run.total_seconds = 149.3;
    single(run, 149.6)
}

/// askari passes; njema's second apply changes something, so it is not idempotent.
pub fn two_profiles() -> Report {
    let askari = askari_passed();
    let njema = RunReport {
        host: "njema".to_owned(),
        vm: Some("boma-it-njema-9c8d7e6f".to_owned()),
        backend: Some("libvirt".to_owned()),
        accel: Some("tcg".to_owned()),
        cert_tier: "letsencrypt-staging".to_owned(),
        image: None,
        result: RunResult::Failed,
        rebooted: true,
        error: Some("verify failed: second_apply_changes_nothing".to_owned()),
        diagnostics: Some("/root/integration-runs/boma-it-njema-9c8d7e6f".to_owned()),
        started_at: at("2026-11-29T01:05:50.000Z"),
        total_seconds: 301.5,
        layers: vec![layer(
            "golden",
            "debian-13-genericcloud-amd64-20261120-sha512:9f3c0e",
            None,
        )],
        phases: vec![
            phase("up", PhaseStatus::Ok, "2026-11-29T01:05:50.100Z", 88.0),
            phase(
                "apply playbooks/offsite.yml",
                PhaseStatus::Ok,
                "2026-11-29T01:07:18.100Z",
                150.2,
            ),
            phase("reboot", PhaseStatus::Ok, "2026-11-29T01:09:48.300Z", 41.9),
            phase(
                "verify tests/verify/njema.yml",
                PhaseStatus::Ok,
                "2026-11-29T01:10:30.200Z",
                21.3,
            ),
        ],
        checks: vec![
            check("restic_timer_active", CheckSource::Verify, true, "ok", None),
            check(
                "second_apply_changes_nothing",
                CheckSource::Idempotence,
                false,
                "changed",
                Some(json!({"changed": ["backup : render restic env"]})),
            ),
        ],
        expected_failures: Vec::new(),
    };
    Report {
        started_at: askari.started_at,
        total_seconds: 528.0,
        runs: vec![askari, njema],
    }
}

/// `--no-reboot`: every check passed, but the run proves nothing about reboot survival.
pub fn no_reboot() -> Report {
    let mut run = askari_passed();
    run.rebooted = false;
    run.phases.remove(3);
    run.checks.remove(3);
    run.total_seconds = 205.8;
    single(run, 206.2)
}

/// Text that breaks a renderer which splices it into XML: markup, quotes, `]]>`, entities,
/// terminal colours, NUL and other controls XML 1.0 forbids, CR/LF/tab, non-characters.
pub fn hostile() -> Report {
    let run = RunReport {
        host: r#"h<o>s&t"'"#.to_owned(),
        vm: Some("boma-it-\u{1b}[31mred\u{1b}[0m".to_owned()),
        backend: Some("qemu".to_owned()),
        accel: Some("tcg\u{0}".to_owned()),
        cert_tier: "int'ernal".to_owned(),
        image: None,
        result: RunResult::Error,
        rebooted: false,
        error: Some(
            "fatal: [vm]: FAILED! => {\"msg\": \"<b>&amp; ]]> \u{0}\u{7}\u{1b}[0;31mcolour\u{1b}[0m\"}\r\nsecond line\ttab \u{fffe}end"
                .to_owned(),
        ),
        diagnostics: Some("/tmp/a&b/<dir>/]]>".to_owned()),
        started_at: at("2026-11-29T03:00:00.000Z"),
        total_seconds: 5.0,
        layers: vec![layer("golden", "k<&>", Some("key changed: <old> & \"new\""))],
        phases: vec![phase(
            "apply playbooks/x.yml --tags \"a,b\" <&> ]]>",
            PhaseStatus::Failed,
            "2026-11-29T03:00:01.000Z",
            4.0,
        )],
        checks: vec![check(
            "check ]]> & <x>",
            CheckSource::Builtin,
            false,
            "timeout\"<>&",
            Some(json!(
                "]]>\n<tag attr=\"x\">&entity;</tag>\u{0}\u{8}<![CDATA[ x ]]>"
            )),
        )],
        expected_failures: Vec::new(),
    };
    single(run, 5.1)
}
