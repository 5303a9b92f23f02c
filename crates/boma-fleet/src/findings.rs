//! What a fleet run found, per round and member, as the report's check records. Every name
//! starts with when it was seen and, for one member's check, whose it is:
//! `after together (boot order b, a): b: unit_failed boma-fleet-b.service`,
//! `after rolling a: peer_probe_failed b → a:8080 timeout`. A fleet's `expect` matches these
//! names as a profile's does (a whole-word prefix). Pure.
//!
//! A round's "before" is the previous round's "after" (the apply's, for the first round), so a
//! loss is reported in the round that caused it, once: a unit lost in `rolling a` and still
//! gone after `together` is `rolling a`'s finding. Peer probes follow the same rule.

use boma_report::{CheckRecord, CheckSource};
use serde_json::json;

use crate::probe::PeerOutcome;
use crate::schedule::Phase;

/// A member's own check, named for the fleet: `<phase>: <member>: <name>`. Every check a single
/// run makes goes through it — its reboot diff over the round (boma-harness's
/// `checks::from_reboot_diff`), its controller probes, `system_running`,
/// `no_route_to_fleet`, its verify tasks — so a fleet reports them as a host's run does.
pub fn member_check(phase: &Phase, member: &str, record: CheckRecord) -> CheckRecord {
    CheckRecord {
        name: format!("{phase}: {member}: {}", record.name),
        ..record
    }
}

/// In a rolling round, a member that was not rebooted must still run the boot it ran before:
/// a new boot_id means it went down with its peer (a panic, a watchdog) — a finding.
pub fn stayed_up(phase: &Phase, member: &str, boot_before: &str, boot_after: &str) -> CheckRecord {
    let ok = boot_before == boot_after;
    member_check(
        phase,
        member,
        CheckRecord {
            name: "stayed_up".into(),
            source: CheckSource::Builtin,
            ok,
            reason: Some(if ok { "ok" } else { "rebooted" }.into()),
            detail: Some(json!(format!("boot_id {boot_before} -> {boot_after}"))),
        },
    )
}

/// The peer probes of one phase. After the apply (`before: None`) every failed probe is a
/// failure; after a round, a probe that passed before the round and fails after it is
/// (`peer_probe_failed`), one that failed before and passes now is reported as recovered, and
/// one still failing was reported when it broke. A phase with no new failure also gets one
/// passed `peer_probes` check, so the report shows the probes ran.
pub fn peer_probes(
    phase: &Phase,
    before: Option<&[PeerOutcome]>,
    after: &[PeerOutcome],
) -> Vec<CheckRecord> {
    let mut records = Vec::new();
    for outcome in after {
        let earlier = before.and_then(|b| b.iter().find(|e| e.probe == outcome.probe));
        let detail = json!({
            "after": format!("{} ({} attempt(s)): {}", outcome.reason, outcome.attempts, outcome.detail),
            "before": earlier.map(|e| format!("{} ({})", e.reason, e.detail)),
        });
        let label = outcome.probe.label();
        match (before.is_some(), earlier.map(|e| e.ok), outcome.ok) {
            // Broke in this phase (or failing right after the apply, or new in this phase).
            (false, _, false) | (true, Some(true) | None, false) => records.push(CheckRecord {
                name: format!("{phase}: peer_probe_failed {label} {}", outcome.reason),
                source: CheckSource::Probe,
                ok: false,
                reason: Some(outcome.reason.clone()),
                detail: Some(detail),
            }),
            (true, Some(false), true) => records.push(CheckRecord {
                name: format!("{phase}: peer_probe_recovered {label}"),
                source: CheckSource::Probe,
                ok: true,
                reason: Some("ok".into()),
                detail: Some(detail),
            }),
            _ => {}
        }
    }
    if !records.iter().any(|r| !r.ok) && !after.is_empty() {
        let passing = after.iter().filter(|o| o.ok).count();
        records.push(CheckRecord {
            name: format!("{phase}: peer_probes"),
            source: CheckSource::Probe,
            ok: true,
            reason: Some("ok".into()),
            detail: Some(json!(format!(
                "{passing} of {} passed; none broke in this phase",
                after.len()
            ))),
        });
    }
    records
}
