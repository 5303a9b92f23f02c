//! The reboot schedule: which rounds run, who reboots in each, how a power loss boots the
//! members, and the names reports give them (`after rolling a`,
//! `after together (boot order b, a)`). Pure.

use std::fmt;
use std::time::Duration;

use crate::file::{Fleet, RebootKind};

/// One reboot round. After it, every member is captured and diffed against its capture before
/// the round, and every probe runs again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// `member` reboots (a proven reboot: a new boot_id) while the others keep running.
    Rolling { member: String },
    /// Every member is stopped at once, as at a power loss, then started afresh as `boot` says
    /// (ADR-027: QMP `stop`, then `system_reset` and `cont` per member).
    Together { boot: Boot },
}

/// How the `together` round boots the members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Every member started at once.
    AllAtOnce,
    /// One after another, each once the previous answers on SSH and its boot has settled
    /// (`systemctl is-system-running --wait`, at most [`BOOT_SETTLE`]). The member the others
    /// depend on last is the worst case: their boot-time attempts to reach it all happen while
    /// it is down, so a boot-order bug fails every time, not one race in five.
    InOrder(Vec<String>),
}

/// How long a member booted in order may take to settle before the next is started: a member
/// that waits for a later peer (a retrying unit's start job stays pending) never settles.
pub const BOOT_SETTLE: Duration = Duration::from_secs(60);

impl Round {
    /// Whether `member` reboots in this round (the others must keep their boot_id).
    pub fn reboots(&self, member: &str) -> bool {
        match self {
            Round::Rolling { member: m } => m == member,
            Round::Together { .. } => true,
        }
    }
}

/// `rolling a`, `together`, `together (boot order b, a)`.
impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Round::Rolling { member } => write!(f, "rolling {member}"),
            Round::Together {
                boot: Boot::AllAtOnce,
            } => f.write_str("together"),
            Round::Together {
                boot: Boot::InOrder(order),
            } => write!(f, "together (boot order {})", order.join(", ")),
        }
    }
}

/// The rounds of `fleet`, in its `reboots` order; `rolling` is one round per member, in member
/// order.
pub fn rounds(fleet: &Fleet) -> Vec<Round> {
    let mut rounds = Vec::new();
    for kind in fleet.reboots() {
        match kind {
            RebootKind::Rolling => rounds.extend(
                fleet
                    .members()
                    .iter()
                    .map(|m| Round::Rolling { member: m.clone() }),
            ),
            RebootKind::Together => rounds.push(Round::Together {
                boot: match fleet.boot_order() {
                    Some(order) => Boot::InOrder(order.to_vec()),
                    None => Boot::AllAtOnce,
                },
            }),
        }
    }
    rounds
}

/// When a check was made: after the apply (before any reboot), or after a round. Check names
/// start with it, so a report says which reboot broke what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Applied,
    After(Round),
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Applied => f.write_str("after apply"),
            Phase::After(round) => write!(f, "after {round}"),
        }
    }
}
