//! What a fleet run reports, per round and member: the checks' names say which reboot broke
//! what, and a fleet's `expect` matches them.

use std::net::Ipv4Addr;

use boma_fleet::findings::{member_check, peer_probes, stayed_up};
use boma_fleet::{Boot, PeerOutcome, PeerProbe, Phase, Round};
use boma_inventory::{ProbeKind, match_expect};
use boma_report::{CheckRecord, CheckSource};

fn outcome(from: &str, to: &str, port: u16, reason: &str) -> PeerOutcome {
    PeerOutcome {
        probe: PeerProbe {
            from: from.into(),
            to: to.into(),
            address: Ipv4Addr::new(10, 231, 0, if to == "a" { 10 } else { 11 }),
            port,
            kind: ProbeKind::Http,
            name: None,
            server: None,
        },
        ok: reason == "ok",
        reason: reason.into(),
        attempts: if reason == "ok" { 1 } else { 6 },
        detail: if reason == "ok" {
            "HTTP 200".into()
        } else {
            "no answer to the connection within 8s".into()
        },
    }
}

fn diff_check(name: &str, ok: bool, reason: &str) -> CheckRecord {
    CheckRecord {
        name: name.into(),
        source: CheckSource::RebootDiff,
        ok,
        reason: Some(reason.into()),
        detail: None,
    }
}

fn rolling(member: &str) -> Phase {
    Phase::After(Round::Rolling {
        member: member.into(),
    })
}

fn together_b_a() -> Phase {
    Phase::After(Round::Together {
        boot: Boot::InOrder(vec!["b".into(), "a".into()]),
    })
}

fn lines(records: &[CheckRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            format!(
                "{} {} ({}) [{}]",
                if r.ok { "PASS" } else { "FAIL" },
                r.name,
                r.reason.as_deref().unwrap_or(""),
                r.source
            )
        })
        .collect()
}

/// A fleet run of two members over the default rounds, as the checks name what it saw: b's
/// service failed only when b booted while a was down, and b lost its way into a when a
/// rebooted (and stayed without it).
#[test]
fn a_fleet_runs_checks_name_the_round_and_the_member() {
    let all_ok = [outcome("a", "b", 8081, "ok"), outcome("b", "a", 8080, "ok")];
    let b_to_a_lost = [
        outcome("a", "b", 8081, "ok"),
        outcome("b", "a", 8080, "timeout"),
    ];
    let b_down = [
        outcome("a", "b", 8081, "refused"),
        outcome("b", "a", 8080, "timeout"),
    ];
    // A member's reboot diff over a round, as boma-harness's `checks::from_reboot_diff`
    // reports it.
    let quiet = || vec![diff_check("reboot_diff", true, "ok")];
    let b_failed = || {
        vec![
            diff_check("degraded: boma-fleet-b.service failed", false, "degraded"),
            diff_check("unit_failed boma-fleet-b.service", false, "unit_failed"),
        ]
    };
    let diff = |phase: &Phase, member: &str, records: Vec<CheckRecord>| {
        records
            .into_iter()
            .map(|r| member_check(phase, member, r))
            .collect::<Vec<_>>()
    };

    let mut records = Vec::new();
    records.extend(peer_probes(&Phase::Applied, None, &all_ok));
    let phase = rolling("a");
    records.extend(diff(&phase, "a", quiet()));
    records.extend(diff(&phase, "b", quiet()));
    records.push(stayed_up(&phase, "b", "1111", "1111"));
    records.extend(peer_probes(&phase, Some(&all_ok), &b_to_a_lost));
    let phase = rolling("b");
    records.extend(diff(&phase, "a", quiet()));
    records.extend(diff(&phase, "b", quiet()));
    records.push(stayed_up(&phase, "a", "2222", "3333"));
    records.extend(peer_probes(&phase, Some(&b_to_a_lost), &b_to_a_lost));
    let phase = together_b_a();
    records.extend(diff(&phase, "a", quiet()));
    records.extend(diff(&phase, "b", b_failed()));
    records.push(member_check(
        &phase,
        "b",
        CheckRecord {
            name: "system_running".into(),
            source: CheckSource::Builtin,
            ok: false,
            reason: Some("degraded".into()),
            detail: None,
        },
    ));
    records.extend(peer_probes(&phase, Some(&b_to_a_lost), &b_down));

    insta::assert_snapshot!("fleet_run_checks", lines(&records).join("\n"));

    let failed: Vec<String> = records
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.name.clone())
        .collect();
    let expect = [
        "after rolling a: peer_probe_failed b → a:8080".to_owned(),
        "after rolling b: a: stayed_up".to_owned(),
        "after together (boot order b, a): b: system_running".to_owned(),
        "after together (boot order b, a): b: degraded: boma-fleet-b.service failed".to_owned(),
        "after together (boot order b, a): b: unit_failed boma-fleet-b.service".to_owned(),
        "after together (boot order b, a): peer_probe_failed a → b:8081".to_owned(),
    ];
    let matched = match_expect(&expect, &failed);
    assert!(matched.missing.is_empty(), "{matched:?}");
    assert!(matched.unexpected.is_empty(), "{matched:?}");
    // A round's name is a whole word: `rolling a` does not match `rolling ab`'s checks.
    assert!(!boma_inventory::expect_entry_matches(
        "after rolling a",
        "after rolling ab: peer_probe_failed b → ab:8080 timeout"
    ));
}

#[test]
fn after_the_apply_every_failing_peer_probe_fails() {
    let records = peer_probes(
        &Phase::Applied,
        None,
        &[
            outcome("a", "b", 8081, "refused"),
            outcome("b", "a", 8080, "ok"),
        ],
    );
    assert_eq!(
        lines(&records),
        ["FAIL after apply: peer_probe_failed a → b:8081 refused (refused) [probe]"]
    );
}

#[test]
fn a_probe_that_comes_back_is_reported_recovered_and_passes() {
    let records = peer_probes(
        &rolling("b"),
        Some(&[outcome("b", "a", 8080, "timeout")]),
        &[outcome("b", "a", 8080, "ok")],
    );
    assert_eq!(
        lines(&records),
        [
            "PASS after rolling b: peer_probe_recovered b → a:8080 (ok) [probe]",
            "PASS after rolling b: peer_probes (ok) [probe]"
        ]
    );
    let detail = records[0].detail.as_ref().unwrap();
    assert_eq!(
        detail["before"],
        "timeout (no answer to the connection within 8s)"
    );
}

#[test]
fn no_probes_no_probe_checks() {
    assert!(peer_probes(&Phase::Applied, None, &[]).is_empty());
}
