//! The `together` round of a fleet (ADR-027): a power loss over every member, then every
//! member booted afresh — at once, or one after another in the fleet's boot order, each once
//! the previous answers on SSH with a new boot_id and its boot has settled (bounded: a member
//! that waits for a peer booted later never settles).
//!
//! Every member is frozen at once (QMP `stop`, `virsh suspend`), as at a power loss, then
//! started with a hardware reset while frozen and a resume (`system_reset` + `cont`, `virsh
//! reset` + `virsh resume`): its QEMU stays, so its image stays consistent under
//! `cache=unsafe`, and its forwards and switch port stay. Each member's boot is proven and
//! judged as a single VM's reboot is — a new boot_id, its console watched for a panic or
//! emergency mode, the emulator's fault reset once ([`super::wait_new_boot`]).
//!
//! What happens in which order is decided by [`plan_together`] (pure); [`together`] only
//! carries the steps out.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use boma_exec::progress::phase;
use boma_exec::say;
use boma_fleet::{BOOT_SETTLE, Boot};

use super::watch::console_len;
use super::{Effects, Rebooted, Settle, boot_id, cut_short, settle_boot, wait_new_boot};
use crate::{RebootHow, RunRecord, VmError};

/// One step of the round; members are indices into the fleet's members (and the records
/// [`together`] is given, in the same order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TogetherStep {
    /// Freeze these, one right after another: the power loss.
    Freeze(Vec<usize>),
    /// Start each of these afresh (a reset while frozen, then resume), without waiting.
    Start(Vec<usize>),
    /// Wait for each of these to answer with a new boot_id, then for its boot to settle.
    Await { members: Vec<usize>, settle: Settle },
    /// Wait again, with no bound but the reboot's, for those of these whose settle the gate
    /// cut short ([`cut_short`]): once every member runs, the state a round's captures see is
    /// the settled one.
    Resettle(Vec<usize>),
}

/// The round's steps for `members` (in fleet order) booted as `boot` says. In order, each
/// member but the last is gated by [`BOOT_SETTLE`]; the last settles wholly, then the gated
/// ones do. A boot order that names anything but every member once is refused. Pure.
pub fn plan_together(members: &[&str], boot: &Boot) -> Result<Vec<TogetherStep>, VmError> {
    let all: Vec<usize> = (0..members.len()).collect();
    let order = match boot {
        Boot::AllAtOnce => {
            return Ok(vec![
                TogetherStep::Freeze(all.clone()),
                TogetherStep::Start(all.clone()),
                TogetherStep::Await {
                    members: all,
                    settle: Settle::Whole,
                },
            ]);
        }
        Boot::InOrder(order) => order,
    };
    let indices: Vec<usize> = order
        .iter()
        .filter_map(|name| members.iter().position(|m| m == name))
        .collect();
    let distinct: BTreeSet<usize> = indices.iter().copied().collect();
    if indices.len() != order.len() || distinct.len() != members.len() {
        return Err(VmError::Backend(format!(
            "the boot order {} does not name each of the members {} once",
            order.join(", "),
            members.join(", ")
        )));
    }
    let mut steps = vec![TogetherStep::Freeze(all)];
    let (last, gated) = indices.split_last().expect("a fleet has members");
    for &member in gated {
        steps.push(TogetherStep::Start(vec![member]));
        steps.push(TogetherStep::Await {
            members: vec![member],
            settle: Settle::AtMost(BOOT_SETTLE),
        });
    }
    steps.push(TogetherStep::Start(vec![*last]));
    steps.push(TogetherStep::Await {
        members: vec![*last],
        settle: Settle::Whole,
    });
    if !gated.is_empty() {
        steps.push(TogetherStep::Resettle(gated.to_vec()));
    }
    Ok(steps)
}

/// How a wait names a member's boot after the power loss.
const AFTER_POWER_LOSS: &str = "its boot after the power loss";

/// The round over `records` (the fleet's members, in fleet order; each member's name is its
/// record's `host`), booted as `boot` says. Each member's result is its boot's: how long from
/// its start to its settled state, and that state. A member that fails ends the round with its
/// error; the members still frozen then are started afresh (not waited for), so that every one
/// can be inspected.
pub fn together(
    fx: &Effects,
    records: &mut [RunRecord],
    boot: &Boot,
) -> Result<Vec<Rebooted>, VmError> {
    let names: Vec<&str> = records.iter().map(|r| r.host.as_str()).collect();
    let steps = plan_together(&names, boot)?;
    let step = phase("together");
    let mut frozen = BTreeSet::new();
    let outcome = carry_out(fx, records, &steps, &mut frozen);
    if outcome.is_err() && !frozen.is_empty() {
        for &member in &frozen {
            say!(
                "    starting {} afresh so that it can be inspected (the round failed while it was frozen)",
                records[member].name
            );
            if let Err(e) = start_afresh(fx, &records[member]) {
                say!("    cannot start {}: {e}", records[member].name);
            }
        }
    }
    step.close(outcome)
}

fn carry_out(
    fx: &Effects,
    records: &mut [RunRecord],
    steps: &[TogetherStep],
    frozen: &mut BTreeSet<usize>,
) -> Result<Vec<Rebooted>, VmError> {
    let before = records
        .iter()
        .map(|record| boot_id(fx, record))
        .collect::<Result<Vec<_>, _>>()?;
    let count = records.len();
    let mut console_from = vec![0; count];
    let mut started = vec![Instant::now(); count];
    let mut results: Vec<Option<Rebooted>> = vec![None; count];
    for step in steps {
        match step {
            TogetherStep::Freeze(members) => {
                let names: Vec<String> = members
                    .iter()
                    .map(|&m| records[m].name.to_string())
                    .collect();
                say!("power loss: freezing {}", names.join(", "));
                for &member in members {
                    let record = &records[member];
                    fx.hypervisor(record.backend).suspend(record)?;
                    frozen.insert(member);
                }
            }
            TogetherStep::Start(members) => {
                for &member in members {
                    let record = &records[member];
                    say!(
                        "starting {} afresh (boot_id before: {})",
                        record.name,
                        before[member]
                    );
                    console_from[member] = console_len(record);
                    started[member] = Instant::now();
                    start_afresh(fx, record)?;
                    frozen.remove(&member);
                }
            }
            TogetherStep::Await { members, settle } => {
                for &member in members {
                    let deadline = Instant::now() + fx.waits.reboot;
                    let state = wait_new_boot(
                        fx,
                        &mut records[member],
                        &before[member],
                        console_from[member],
                        AFTER_POWER_LOSS,
                        deadline,
                        *settle,
                    )?;
                    if matches!(settle, Settle::AtMost(_)) && cut_short(&state) {
                        say!(
                            "    {} has not settled within {} (it may wait for a member booted later): starting the next",
                            records[member].name,
                            boma_exec::progress::human(bound_of(*settle))
                        );
                    }
                    results[member] = Some(settled(started[member], state));
                }
            }
            TogetherStep::Resettle(members) => {
                for &member in members {
                    let cut = results[member]
                        .as_ref()
                        .is_some_and(|r| cut_short(&r.system_state));
                    if !cut {
                        continue;
                    }
                    let deadline = Instant::now() + fx.waits.reboot;
                    let state = settle_boot(fx, &records[member], Settle::Whole, deadline)?;
                    results[member] = Some(settled(started[member], state));
                }
            }
        }
    }
    results
        .into_iter()
        .zip(records.iter())
        .map(|(result, record)| {
            result.ok_or_else(|| {
                VmError::Backend(format!("the together round never booted {}", record.name))
            })
        })
        .collect()
}

/// A member's boot, from its start until now, when it settled in `state`.
fn settled(started: Instant, state: String) -> Rebooted {
    Rebooted {
        took: started.elapsed(),
        system_state: state,
    }
}

fn bound_of(settle: Settle) -> Duration {
    match settle {
        Settle::AtMost(bound) => bound,
        Settle::Whole => Duration::ZERO,
    }
}

/// A frozen member booted afresh: a hardware reset, then resume.
fn start_afresh(fx: &Effects, record: &RunRecord) -> Result<(), VmError> {
    let hypervisor = fx.hypervisor(record.backend);
    if !hypervisor.reboot(record, RebootHow::Hard)? {
        return Err(VmError::Backend(format!(
            "the {} backend cannot reset {}",
            record.backend, record.name
        )));
    }
    hypervisor.resume(record)
}
