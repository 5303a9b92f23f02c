//! What a fleet shows after the apply and after every reboot round: every member captured (its
//! state and the controller's probes of its published ports, as a single run captures its VM),
//! every member's published ports probed from every other member over the fleet's segment (the
//! peer probes), and after a round, what changed since the phase before, as checks named by the
//! round and the member (`boma_fleet::findings`). A round's "before" is the previous phase's
//! "after": a loss is reported once, in the round that caused it.
//!
//! Each member's captures and reboot diffs go to `<member's dir>/after-apply/` and
//! `after-round-<n>/`; the peer probes' answers to the same directories of the fleet's.

use std::time::Duration;

use boma_exec::say;
use boma_fleet::findings;
use boma_fleet::probe::{self, PeerOutcome, PeerTarget};
use boma_fleet::{PROBE_TIMING, Phase, Round};
use boma_report::CheckRecord;
use boma_vm::lifecycle;
use boma_vm::{RebootHow, RunRecord};

use super::members::Running;
use super::preflight::FleetInputs;
use crate::files;
use crate::guest_state::{self, Captured};
use crate::{Ctx, HarnessError, checks};

/// Everything one phase showed: each member's capture (in fleet order) and the peer probes.
#[derive(Debug, Clone)]
pub struct Seen {
    pub captures: Vec<Captured>,
    pub peers: Vec<PeerOutcome>,
}

/// The directory a phase's evidence goes to, under a member's or the fleet's directory: the
/// apply's (`round` 0) or round `round`'s.
pub fn phase_dir(round: usize) -> String {
    if round == 0 {
        "after-apply".to_owned()
    } else {
        format!("after-round-{round}")
    }
}

/// Capture every member and probe every member from every other, as `phase` (its evidence in
/// [`phase_dir`] of `round`).
pub fn look(
    ctx: &Ctx,
    inputs: &FleetInputs,
    running: &Running,
    phase: &Phase,
    round: usize,
) -> Result<Seen, HarnessError> {
    let mut captures = Vec::new();
    for (member, record) in inputs.members.iter().zip(&running.records) {
        let dir = record.dir.join(phase_dir(round));
        files::create_dir(&dir)?;
        captures.push(guest_state::capture(
            ctx,
            &member.inputs,
            record,
            &dir.join("state.json"),
            &format!("of {} {phase}", member.name),
        )?);
    }
    let peers = peer_probes(ctx, inputs, running, round)?;
    Ok(Seen { captures, peers })
}

/// What the apply left, judged absolutely (nothing was rebooted yet): each member's controller
/// probes, and every peer probe.
pub fn after_apply(inputs: &FleetInputs, seen: &Seen) -> Vec<CheckRecord> {
    let mut found = Vec::new();
    for (member, captured) in inputs.members.iter().zip(&seen.captures) {
        for check in checks::from_probes(&[], &captured.probes) {
            found.push(findings::member_check(
                &Phase::Applied,
                member.name.as_str(),
                check,
            ));
        }
    }
    found.extend(findings::peer_probes(&Phase::Applied, None, &seen.peers));
    found
}

/// How long one member's peer probes may take over ssh: every probe's time, and a margin for
/// python's start under TCG.
const PEER_PROBE_TIMEOUT: Duration =
    Duration::from_secs(PROBE_TIMING.within.as_secs() + PROBE_TIMING.attempt.as_secs() + 60);

/// Every member's published ports probed from every other member, at their fleet addresses:
/// each prober runs its probes (in parallel, inside one python program) over the harness's own
/// ssh. A prober that cannot be asked gives `no_result` for each of its probes; only an
/// interrupt stops the run here. The answers are kept in the fleet's [`phase_dir`].
pub fn peer_probes(
    ctx: &Ctx,
    inputs: &FleetInputs,
    running: &Running,
    round: usize,
) -> Result<Vec<PeerOutcome>, HarnessError> {
    let targets: Vec<PeerTarget<'_>> = inputs
        .members
        .iter()
        .map(|m| PeerTarget {
            name: m.name.as_str(),
            address: m.nic.address,
            ports: &m.inputs.profile.published_ports,
        })
        .collect();
    let planned = probe::plan(&targets);
    let mut outcomes = Vec::new();
    let mut said = String::new();
    for (member, record) in inputs.members.iter().zip(&running.records) {
        let own: Vec<probe::PeerProbe> = planned
            .iter()
            .filter(|p| p.from == member.name.as_str())
            .cloned()
            .collect();
        if own.is_empty() {
            continue;
        }
        let script = probe::render_script(&own, PROBE_TIMING);
        let answer = ctx
            .machine
            .guest()
            .run_script(&record.ssh, &script, PEER_PROBE_TIMEOUT);
        let (stdout, missing) = match answer {
            Ok(out) if out.success() => (out.stdout, String::new()),
            Ok(out) => (
                out.stdout,
                format!(
                    "the probe program on {} ended with {}: {}",
                    member.name,
                    out.status,
                    out.stderr.trim()
                ),
            ),
            Err(e) if boma_exec::interrupt::in_chain(&e).is_some() => return Err(e.into()),
            Err(e) => (
                String::new(),
                format!("the probe program could not run on {}: {e}", member.name),
            ),
        };
        let found = probe::parse_output(&own, &stdout, &missing);
        for outcome in &found {
            let line = format!(
                "{} {} ({} attempt(s)): {}",
                outcome.probe.label(),
                outcome.reason,
                outcome.attempts,
                outcome.detail
            );
            say!("    peer probe {line}");
            said.push_str(&line);
            said.push('\n');
        }
        outcomes.extend(found);
    }
    if !said.is_empty() {
        files::write_into(
            &running.dir.join(phase_dir(round)),
            "peer-probes.txt",
            &said,
        )?;
    }
    Ok(outcomes)
}

/// Round number `round` (from 1): its reboots, then what every member shows against `before`,
/// as checks pushed into `found` as they are made (a round that does not come back ends the run
/// with its failure recorded). What it saw becomes the next round's "before".
pub fn run_round(
    ctx: &Ctx,
    inputs: &FleetInputs,
    running: &mut Running,
    (round, number): (&Round, usize),
    before: &Seen,
    found: &mut Vec<CheckRecord>,
) -> Result<Seen, HarnessError> {
    let phase = Phase::After(round.clone());
    say!("round {number}: {round}");
    let stays: Vec<usize> = (0..running.records.len())
        .filter(|&i| !round.reboots(inputs.members[i].name.as_str()))
        .collect();
    let boots_before = boot_ids(ctx, &running.records, &stays)?;
    if let Err(e) = reboot(inputs, running, round, ctx) {
        found.push(round_failure(inputs, running, &phase, &e));
        return Err(e.into());
    }
    let boots_after = boot_ids(ctx, &running.records, &stays)?;
    for ((&i, before), after) in stays.iter().zip(&boots_before).zip(&boots_after) {
        found.push(findings::stayed_up(
            &phase,
            inputs.members[i].name.as_str(),
            before,
            after,
        ));
    }
    files::forget_facts(&running.run_dir());
    // A new lease may have moved a member (libvirt): the connection follows.
    super::members::write_files(ctx, inputs, running)?;
    let after = look(ctx, inputs, running, &phase, number)?;
    for (i, member) in inputs.members.iter().enumerate() {
        let dir = boma_vm::RunDir::new(running.records[i].dir.join(phase_dir(number)));
        say!("{}'s reboot diff over {round}:", member.name);
        let lost = guest_state::compare(
            &before.captures[i],
            &after.captures[i],
            &member.inputs.profile.reboot_diff_ignore,
            &dir,
        )?;
        found.extend(
            lost.into_iter()
                .map(|c| findings::member_check(&phase, member.name.as_str(), c)),
        );
    }
    found.extend(findings::peer_probes(
        &phase,
        Some(&before.peers),
        &after.peers,
    ));
    Ok(after)
}

/// The live boot_id of each of `records` at `indices`.
fn boot_ids(
    ctx: &Ctx,
    records: &[RunRecord],
    indices: &[usize],
) -> Result<Vec<String>, HarnessError> {
    indices
        .iter()
        .map(|&i| {
            let record = &records[i];
            ctx.with_effects(record.backend, record.accel, |fx| {
                lifecycle::boot_id(fx, record)
            })
            .map_err(HarnessError::from)
        })
        .collect()
}

/// The round's reboots, each proven by a new boot_id: one member's from inside the guest, or
/// the power loss over every member and their boots as the fleet's boot order says.
fn reboot(
    inputs: &FleetInputs,
    running: &mut Running,
    round: &Round,
    ctx: &Ctx,
) -> Result<(), boma_vm::VmError> {
    match round {
        Round::Rolling { member } => {
            let i = inputs
                .members
                .iter()
                .position(|m| m.name.as_str() == member)
                .expect("a rolling round reboots a member");
            let record = &mut running.records[i];
            ctx.with_effects(record.backend, record.accel, |fx| {
                lifecycle::reboot(fx, record, RebootHow::Guest)
            })
            .map(drop)
        }
        Round::Together { boot } => {
            let first = &running.records[0];
            let (kind, accel) = (first.backend, first.accel);
            ctx.with_effects(kind, accel, |fx| {
                lifecycle::together(fx, &mut running.records, boot)
            })
            .map(drop)
        }
    }
}

/// A round that did not come back, as the failed check of the member it names
/// (`after together: b: reboot_timeout`): the rolling round's member, or in a together round
/// the member whose VM the error names (a round-wide check when none is named).
fn round_failure(
    inputs: &FleetInputs,
    running: &Running,
    phase: &Phase,
    error: &boma_vm::VmError,
) -> CheckRecord {
    let check = checks::reboot_check(error);
    let text = error.to_string();
    let member = match phase {
        Phase::After(Round::Rolling { member }) => Some(member.as_str()),
        _ => inputs
            .members
            .iter()
            .zip(&running.records)
            .find(|(_, record)| text.contains(record.name.as_str()))
            .map(|(member, _)| member.name.as_str()),
    };
    match member {
        Some(member) => findings::member_check(phase, member, check),
        None => CheckRecord {
            name: format!("{phase}: {}", check.name),
            ..check
        },
    }
}
