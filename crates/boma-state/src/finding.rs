//! What the reboot diff reports: a finding, and the stable reason it was raised for.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a finding was raised. The snake_case names are stable: operators grep them, ignore
/// patterns start with them, and the failure-mode catalogue asserts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // Lost: each is a failure.
    /// The system was `running` before and is not after.
    Degraded,
    /// A unit is failed after the reboot that was not before.
    UnitFailed,
    /// A unit was active before and is not after (and did not fail).
    UnitInactive,
    /// A unit file was enabled before and is not after.
    UnitDisabled,
    /// A unit is in systemd's restart loop after the reboot (`activating/auto-restart`): it
    /// keeps exiting, whatever it was before.
    UnitRestarting,
    ListenerLost,
    TableLost,
    ChainLost,
    /// A base chain kept its name but changed type, hook, priority or policy.
    ChainChanged,
    RuleLost,
    RouteLost,
    MountLost,
    ContainerLost,
    ContainerNotRunning,
    /// Docker is restarting a container after the reboot (state `restarting`): it keeps
    /// exiting, whatever it was before.
    ContainerRestarting,
    /// The controller's probe of a published port passed before and fails after.
    ProbeFailed,
    /// A part of the state was readable before the reboot and is not after (a `docker ps`
    /// that timed out, a capture cut short): what the reboot did to it cannot be shown.
    SectionLost,
    // Appeared: reported, not failed.
    UnitAppeared,
    UnitEnabled,
    ListenerAppeared,
    TableAppeared,
    ChainAppeared,
    RuleAppeared,
    RouteAppeared,
    MountAppeared,
    ContainerAppeared,
    ProbeRecovered,
}

impl Reason {
    pub const ALL: [Reason; 27] = [
        Reason::Degraded,
        Reason::UnitFailed,
        Reason::UnitInactive,
        Reason::UnitDisabled,
        Reason::UnitRestarting,
        Reason::ListenerLost,
        Reason::TableLost,
        Reason::ChainLost,
        Reason::ChainChanged,
        Reason::RuleLost,
        Reason::RouteLost,
        Reason::MountLost,
        Reason::ContainerLost,
        Reason::ContainerNotRunning,
        Reason::ContainerRestarting,
        Reason::ProbeFailed,
        Reason::SectionLost,
        Reason::UnitAppeared,
        Reason::UnitEnabled,
        Reason::ListenerAppeared,
        Reason::TableAppeared,
        Reason::ChainAppeared,
        Reason::RuleAppeared,
        Reason::RouteAppeared,
        Reason::MountAppeared,
        Reason::ContainerAppeared,
        Reason::ProbeRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Degraded => "degraded",
            Reason::UnitFailed => "unit_failed",
            Reason::UnitInactive => "unit_inactive",
            Reason::UnitDisabled => "unit_disabled",
            Reason::UnitRestarting => "unit_restarting",
            Reason::ListenerLost => "listener_lost",
            Reason::TableLost => "table_lost",
            Reason::ChainLost => "chain_lost",
            Reason::ChainChanged => "chain_changed",
            Reason::RuleLost => "rule_lost",
            Reason::RouteLost => "route_lost",
            Reason::MountLost => "mount_lost",
            Reason::ContainerLost => "container_lost",
            Reason::ContainerNotRunning => "container_not_running",
            Reason::ContainerRestarting => "container_restarting",
            Reason::ProbeFailed => "probe_failed",
            Reason::SectionLost => "section_lost",
            Reason::UnitAppeared => "unit_appeared",
            Reason::UnitEnabled => "unit_enabled",
            Reason::ListenerAppeared => "listener_appeared",
            Reason::TableAppeared => "table_appeared",
            Reason::ChainAppeared => "chain_appeared",
            Reason::RuleAppeared => "rule_appeared",
            Reason::RouteAppeared => "route_appeared",
            Reason::MountAppeared => "mount_appeared",
            Reason::ContainerAppeared => "container_appeared",
            Reason::ProbeRecovered => "probe_recovered",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between the two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    pub reason: Reason,
    /// What it is about, e.g. `tcp/8080 python3`, `ip nat DOCKER`, `caddy`.
    pub subject: String,
    /// What a person needs to act, e.g. `active/running -> inactive/dead`.
    pub detail: Option<String>,
}

impl Finding {
    pub(crate) fn new(reason: Reason, subject: impl Into<String>, detail: Option<String>) -> Self {
        Finding {
            reason,
            subject: subject.into(),
            detail,
        }
    }
}

/// `<reason> <subject>`, e.g. `listener_lost tcp/8080 python3`; `degraded` reads as a sentence:
/// `degraded: foo.service failed`. Ignore patterns are matched against this text.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Reason::Degraded => write!(f, "degraded: {}", self.subject),
            reason => write!(f, "{reason} {}", self.subject),
        }
    }
}
