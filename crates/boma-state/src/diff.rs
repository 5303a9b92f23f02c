//! The reboot diff: what was there before the reboot and is gone after (a failure), what is new
//! after it (reported), what is known to differ between two boots (ignored), and which parts
//! could not be compared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, Reason};
use crate::ignore::{Ignore, IgnoredBy, takes_a_random_port};
use crate::model::{
    Chain, Container, GuestState, ListenAddress, Listener, Mount, PortRange, ProbeResult, Route,
    Ruleset, Section, Snapshot, Unit,
};

/// The outcome of [`diff`]. Each list is sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootDiff {
    /// There before the reboot, gone after: each one fails the run.
    pub lost: Vec<Finding>,
    /// There only after the reboot: reported, not failed.
    pub appeared: Vec<Finding>,
    /// Lost or appeared, but known to differ between any two boots.
    pub ignored: Vec<Finding>,
    /// Parts that could not be compared because they were unreadable before the reboot (or
    /// on both sides), with why, e.g. `nftables: nft is not installed (before and after the
    /// reboot)`. A part readable before and not after is in `lost` as `section_lost`.
    pub unavailable: Vec<String>,
    /// How many findings each of the profile's `reboot_diff_ignore` patterns hid, in the
    /// profile's order; one that hid nothing is listed with 0 (it may be stale). A finding the
    /// built-in list also matches is the built-in list's, not counted here.
    #[serde(default)]
    pub hidden_by_profile: Vec<PatternHits>,
}

/// One profile pattern and how many findings it moved to `ignored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatternHits {
    pub pattern: String,
    pub hid: usize,
}

impl RebootDiff {
    /// Whether nothing was lost.
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
    }
}

/// Compares the state before the reboot with the state after it.
pub fn diff(before: &Snapshot, after: &Snapshot, ignore: &Ignore) -> RebootDiff {
    let mut found = Found::default();
    let (b, a) = (&before.guest, &after.guest);
    found.system(b, a);
    found.units(b, a);
    if let Some((b, a)) = found.both(Part::UnitFiles, &b.enabled_units, &a.enabled_units) {
        enabled_units(b, a, &mut found);
    }
    if let Some((bl, al)) = found.both(Part::Listeners, &b.listeners, &a.listeners) {
        listeners(bl, al, b.ephemeral_ports, a.ephemeral_ports, &mut found);
    }
    if let Some((b, a)) = found.both(Part::Nftables, &b.nftables, &a.nftables) {
        nftables(b, a, &mut found);
    }
    if let Some((b, a)) = found.both(Part::Routes, &b.routes, &a.routes) {
        routes(b, a, &mut found);
    }
    if let Some((b, a)) = found.both(Part::Mounts, &b.mounts, &a.mounts) {
        mounts(b, a, &mut found);
    }
    if let Some((b, a)) = found.both(Part::Containers, &b.containers, &a.containers) {
        containers(b, a, &mut found);
    }
    probes(&before.probes, &after.probes, &mut found);
    found.finish(ignore)
}

/// A part of the state the diff compares as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    System,
    FailedUnits,
    Units,
    UnitFiles,
    Listeners,
    Nftables,
    Routes,
    Mounts,
    Containers,
}

impl Part {
    /// How the `unavailable` list names it.
    fn label(self) -> &'static str {
        match self {
            Part::System => "system state",
            Part::FailedUnits => "failed units",
            Part::Units => "units",
            Part::UnitFiles => "enabled unit files",
            Part::Listeners => "listeners",
            Part::Nftables => "nftables",
            Part::Routes => "routes",
            Part::Mounts => "mounts",
            Part::Containers => "containers",
        }
    }

    /// The subject of its `section_lost` finding: one word, so a pattern can name it.
    fn name(self) -> &'static str {
        match self {
            Part::System => "system",
            Part::FailedUnits => "failed-units",
            Part::Units => "units",
            Part::UnitFiles => "unit-files",
            Part::Listeners => "listeners",
            Part::Nftables => "nftables",
            Part::Routes => "routes",
            Part::Mounts => "mounts",
            Part::Containers => "containers",
        }
    }
}

/// Findings as they are raised, before the ignore list sorts them.
#[derive(Default)]
struct Found {
    lost: Vec<Finding>,
    appeared: Vec<Finding>,
    /// Ignored by a rule about the state itself rather than its text (an ephemeral port, an
    /// expiring route).
    ignored: Vec<Finding>,
    unavailable: Vec<String>,
}

impl Found {
    fn lost(&mut self, reason: Reason, subject: impl Into<String>, detail: Option<String>) {
        self.lost.push(Finding::new(reason, subject, detail));
    }

    fn appeared(&mut self, reason: Reason, subject: impl Into<String>, detail: Option<String>) {
        self.appeared.push(Finding::new(reason, subject, detail));
    }

    /// Both sides of a section, or `None` after noting why they cannot be compared. A section
    /// readable before the reboot and not after is a loss (`section_lost`): what the reboot
    /// did to it cannot be shown, and a `docker ps` that hangs after the reboot says something
    /// about the host.
    fn both<'a, T>(
        &mut self,
        part: Part,
        before: &'a Section<T>,
        after: &'a Section<T>,
    ) -> Option<(&'a T, &'a T)> {
        let what = part.label();
        match (before, after) {
            (Section::Available(b), Section::Available(a)) => return Some((b, a)),
            (Section::Unavailable(b), Section::Unavailable(a)) if a == b => {
                self.unavailable
                    .push(format!("{what}: {b} (before and after the reboot)"));
            }
            (Section::Available(_), Section::Unavailable(why)) => {
                // Failed units are read from the units' section: its loss is raised once, as
                // `section_lost units`.
                if part == Part::FailedUnits {
                    self.unavailable
                        .push(format!("{what}: {why} (after the reboot)"));
                } else {
                    self.lost(
                        Reason::SectionLost,
                        part.name(),
                        Some(format!("readable before the reboot, not after: {why}")),
                    );
                }
            }
            (b, a) => {
                for (section, when) in [(b, "before"), (a, "after")] {
                    if let Section::Unavailable(why) = section {
                        self.unavailable
                            .push(format!("{what}: {why} ({when} the reboot)"));
                    }
                }
            }
        }
        None
    }

    fn system(&mut self, before: &GuestState, after: &GuestState) {
        let failed = self.both(Part::FailedUnits, &before.failed_units, &after.failed_units);
        let newly_failed: Vec<&String> = match failed {
            Some((b, a)) => a.difference(b).collect(),
            None => Vec::new(),
        };
        let states = |state: &GuestState, unit: &str| {
            let units = state.units.available()?;
            units.get(unit).map(self::state)
        };
        for unit in &newly_failed {
            let detail = match (states(before, unit), states(after, unit)) {
                (Some(was), Some(now)) => Some(format!("{was} -> {now}")),
                (None, Some(now)) => Some(format!("not loaded -> {now}")),
                _ => None,
            };
            self.lost(Reason::UnitFailed, unit.as_str(), detail);
        }
        let Some((b, a)) = self.both(Part::System, &before.system, &after.system) else {
            return;
        };
        // The capture script waits for the boot to finish; a capture that still says so was
        // taken too early, and what was starting then may read as lost or new.
        if matches!(b.as_str(), "initializing" | "starting") {
            self.unavailable.push(format!(
                "units: the boot had not finished before the reboot (system {b}), so units still starting then may show as lost or new"
            ));
        }
        if b == "running" && a != "running" {
            let subject = if newly_failed.is_empty() {
                format!("system is {a}")
            } else {
                let names: Vec<&str> = newly_failed.iter().map(|u| u.as_str()).collect();
                format!("{} failed", names.join(", "))
            };
            self.lost(
                Reason::Degraded,
                subject,
                Some(format!("system {b} -> {a}")),
            );
        }
    }

    fn units(&mut self, before: &GuestState, after: &GuestState) {
        let Some((b, a)) = self.both(Part::Units, &before.units, &after.units) else {
            return;
        };
        // Mounts and swaps are compared as mounts, by path: a lost tmpfs reads as
        // `mount_lost /srv/data tmpfs`, not also as its unit.
        let followed = |unit: &Unit| !matches!(unit.kind.as_str(), "mount" | "swap");
        let was = |name: &str| b.get(name).map_or_else(|| "not loaded".to_owned(), state);
        for (name, was) in b.iter().filter(|(_, u)| u.is_active() && followed(u)) {
            match a.get(name) {
                None => self.lost(
                    Reason::UnitInactive,
                    name,
                    Some(format!("{} -> not loaded", state(was))),
                ),
                // A unit that failed is reported as `unit_failed`, one restarting below.
                Some(now) if !now.is_active() && now.active != "failed" && !now.is_restarting() => {
                    self.lost(
                        Reason::UnitInactive,
                        name,
                        Some(format!("{} -> {}", state(was), state(now))),
                    )
                }
                Some(_) => {}
            }
        }
        // The capture waits (bounded) for systemd's jobs to finish and its restart loops to
        // end; a unit still restarting after that keeps exiting, which a reboot must not
        // leave behind, whatever it was before.
        for (name, now) in a.iter().filter(|(_, u)| u.is_restarting()) {
            self.lost(
                Reason::UnitRestarting,
                name,
                Some(format!(
                    "{} -> {}: systemd keeps restarting it",
                    was(name),
                    state(now)
                )),
            );
        }
        for (name, now) in a.iter().filter(|(_, u)| u.is_active() && followed(u)) {
            if !b.get(name).is_some_and(Unit::is_active) {
                self.appeared(
                    Reason::UnitAppeared,
                    name,
                    Some(format!("{} -> {}", was(name), state(now))),
                );
            }
        }
        // A unit still starting or stopping before the reboot (a job longer than the
        // capture's wait) was neither up nor down: if it is not up after, say it was not
        // compared rather than call it lost or fine.
        let changing: Vec<String> = b
            .iter()
            .filter(|(name, u)| {
                u.is_changing() && followed(u) && !a.get(*name).is_some_and(Unit::is_active)
            })
            .map(|(name, u)| format!("{name} ({})", state(u)))
            .collect();
        if !changing.is_empty() {
            self.unavailable.push(format!(
                "units: still starting or stopping before the reboot, so not compared: {}",
                changing.join(", ")
            ));
        }
    }

    /// Sorts the findings, moving those the ignore list matches to `ignored`, and counts what
    /// each profile pattern hid.
    fn finish(self, ignore: &Ignore) -> RebootDiff {
        let mut hidden_by_profile: Vec<PatternHits> = ignore
            .profile_patterns()
            .map(|pattern| PatternHits {
                pattern: pattern.to_owned(),
                hid: 0,
            })
            .collect();
        let mut ignored = self.ignored;
        let mut keep = |findings: Vec<Finding>| -> Vec<Finding> {
            let mut kept = Vec::new();
            for finding in findings {
                match ignore.matching(&finding) {
                    None => kept.push(finding),
                    Some(by) => {
                        if let IgnoredBy::Profile(index) = by {
                            hidden_by_profile[index].hid += 1;
                        }
                        ignored.push(finding);
                    }
                }
            }
            kept.sort();
            kept
        };
        let lost = keep(self.lost);
        let appeared = keep(self.appeared);
        ignored.sort();
        RebootDiff {
            lost,
            appeared,
            ignored,
            unavailable: self.unavailable,
            hidden_by_profile,
        }
    }
}

fn state(unit: &Unit) -> String {
    format!("{}/{}", unit.active, unit.sub)
}

fn enabled_units(b: &BTreeMap<String, String>, a: &BTreeMap<String, String>, found: &mut Found) {
    for (name, was) in b.iter().filter(|(name, _)| !a.contains_key(*name)) {
        let detail = if was == "enabled-runtime" {
            "was enabled-runtime: enabled in /run, which a reboot empties".to_owned()
        } else {
            format!("was {was}")
        };
        found.lost(Reason::UnitDisabled, name, Some(detail));
    }
    for (name, now) in a.iter().filter(|(name, _)| !b.contains_key(*name)) {
        found.appeared(Reason::UnitEnabled, name, Some(format!("now {now}")));
    }
}

fn listeners(
    before: &[Listener],
    after: &[Listener],
    before_ephemeral: PortRange,
    after_ephemeral: PortRange,
    found: &mut Found,
) {
    for (reason, from, to, ephemeral) in [
        (Reason::ListenerLost, before, after, before_ephemeral),
        (Reason::ListenerAppeared, after, before, after_ephemeral),
    ] {
        // One finding per socket owner and port: sshd losing `0.0.0.0:22` and `[::]:22` is one
        // `listener_lost tcp/22 sshd` naming both addresses.
        let mut missing: BTreeMap<(&str, u16, &[String]), Vec<&ListenAddress>> = BTreeMap::new();
        for listener in from.iter().filter(|l| !served(l, to)) {
            let key = (
                listener.proto.as_str(),
                listener.port,
                &listener.processes[..],
            );
            missing.entry(key).or_default().push(&listener.address);
        }
        for ((proto, port, processes), addresses) in missing {
            let mut subject = format!("{proto}/{port}");
            if !processes.is_empty() {
                subject.push(' ');
                subject.push_str(&processes.join(","));
            }
            let on: Vec<String> = addresses.iter().map(|a| a.describe()).collect();
            let finding = Finding::new(reason, subject, Some(format!("on {}", on.join(", "))));
            // A socket of a program known to take its port at random has a new port every
            // boot; nothing else is skipped for its port.
            if takes_a_random_port(processes, &addresses, port, ephemeral) {
                found.ignored.push(finding);
            } else if reason == Reason::ListenerLost {
                found.lost.push(finding);
            } else {
                found.appeared.push(finding);
            }
        }
    }
}

/// Whether the sockets `by` take the traffic `wanted` took: the same protocol and port on an
/// address that covers its address. A dual-stack socket is replaced as well by an IPv4 and an
/// IPv6-only socket together.
fn served(wanted: &Listener, by: &[Listener]) -> bool {
    let covered = |address: &ListenAddress| {
        by.iter().any(|socket| {
            socket.proto == wanted.proto
                && socket.port == wanted.port
                && socket.address.covers(address)
        })
    };
    match &wanted.address {
        ListenAddress::AnyDualStack => {
            covered(&ListenAddress::AnyDualStack)
                || (covered(&ListenAddress::AnyIpv4) && covered(&ListenAddress::AnyIpv6))
        }
        address => covered(address),
    }
}

/// Reports the outermost loss only: a lost table's chains and rules are not listed again.
fn nftables(before: &Ruleset, after: &Ruleset, found: &mut Found) {
    let tables = [
        (
            before,
            after,
            Reason::TableLost,
            Reason::ChainLost,
            Reason::RuleLost,
        ),
        (
            after,
            before,
            Reason::TableAppeared,
            Reason::ChainAppeared,
            Reason::RuleAppeared,
        ),
    ];
    for (from, to, table_reason, chain_reason, rule_reason) in tables {
        let lost = table_reason == Reason::TableLost;
        let mut push = |reason, subject: String, detail| {
            if lost {
                found.lost(reason, subject, detail);
            } else {
                found.appeared(reason, subject, detail);
            }
        };
        for (table_name, table) in &from.tables {
            let Some(other) = to.tables.get(table_name) else {
                let chains: Vec<&str> = table.chains.keys().map(String::as_str).collect();
                let detail = (!chains.is_empty()).then(|| format!("chains {}", chains.join(", ")));
                push(table_reason, table_name.clone(), detail);
                continue;
            };
            for (chain_name, chain) in &table.chains {
                let subject = format!("{table_name} {chain_name}");
                let Some(other_chain) = other.chains.get(chain_name) else {
                    push(chain_reason, subject, Some(chain_summary(chain)));
                    continue;
                };
                if lost && chain.base != other_chain.base {
                    let detail =
                        format!("{} -> {}", chain_summary(chain), chain_summary(other_chain));
                    push(Reason::ChainChanged, subject.clone(), Some(detail));
                }
                for rule in missing_rules(&chain.rules, &other_chain.rules) {
                    push(rule_reason, format!("{subject}: {rule}"), None);
                }
            }
        }
    }
}

/// The rules of `from` that `to` lacks, counting a rule written twice as two.
fn missing_rules<'a>(from: &'a [String], to: &[String]) -> Vec<&'a str> {
    let mut left: BTreeMap<&str, usize> = BTreeMap::new();
    for rule in to {
        *left.entry(rule).or_default() += 1;
    }
    from.iter()
        .filter(|rule| match left.get_mut(rule.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .map(String::as_str)
        .collect()
}

fn chain_summary(chain: &Chain) -> String {
    let rules = match chain.rules.len() {
        1 => "1 rule".to_owned(),
        n => format!("{n} rules"),
    };
    match &chain.base {
        None => rules,
        Some(base) => {
            let policy = base
                .policy
                .as_ref()
                .map(|p| format!(" policy {p}"))
                .unwrap_or_default();
            format!(
                "type {} hook {} priority {}{policy}, {rules}",
                base.kind, base.hook, base.priority
            )
        }
    }
}

fn routes(before: &[Route], after: &[Route], found: &mut Found) {
    // The protocol is not part of a route's identity: the same route re-added by another
    // program is still there.
    let same = |a: &Route, b: &Route| {
        a.table == b.table
            && a.kind == b.kind
            && a.dst == b.dst
            && a.gateway == b.gateway
            && a.dev == b.dev
    };
    for (from, to, reason) in [
        (before, after, Reason::RouteLost),
        (after, before, Reason::RouteAppeared),
    ] {
        for route in from.iter().filter(|r| !to.iter().any(|o| same(r, o))) {
            let detail = route.protocol.as_ref().map(|p| format!("proto {p}"));
            let finding = Finding::new(reason, route_subject(route), detail);
            // Learned from a router advertisement, with a lifetime: whether it is installed at
            // a given moment depends on the network's timing, not on the host.
            if route.expires {
                found.ignored.push(finding);
            } else if reason == Reason::RouteLost {
                found.lost.push(finding);
            } else {
                found.appeared.push(finding);
            }
        }
    }
}

/// `198.51.100.0/24 via 10.0.2.2 dev ens2`, `unreachable 203.0.113.7`, `… table 100`.
fn route_subject(route: &Route) -> String {
    let mut words = Vec::new();
    if route.kind != "unicast" {
        words.push(route.kind.clone());
    }
    words.push(route.dst.clone());
    if let Some(gateway) = &route.gateway {
        words.push(format!("via {gateway}"));
    }
    if let Some(dev) = &route.dev {
        words.push(format!("dev {dev}"));
    }
    if route.table != "main" {
        words.push(format!("table {}", route.table));
    }
    words.join(" ")
}

fn mounts(before: &[Mount], after: &[Mount], found: &mut Found) {
    let has = |list: &[Mount], m: &Mount| {
        list.iter()
            .any(|o| o.target == m.target && o.fstype == m.fstype)
    };
    for mount in before.iter().filter(|m| !has(after, m)) {
        found.lost(
            Reason::MountLost,
            format!("{} {}", mount.target, mount.fstype),
            Some(format!("from {}", mount.source)),
        );
    }
    for mount in after.iter().filter(|m| !has(before, m)) {
        found.appeared(
            Reason::MountAppeared,
            format!("{} {}", mount.target, mount.fstype),
            Some(format!("from {}", mount.source)),
        );
    }
}

fn containers(before: &[Container], after: &[Container], found: &mut Found) {
    let by_name = |list: &[Container], name: &str| list.iter().find(|c| c.name == name).cloned();
    for was in before {
        match by_name(after, &was.name) {
            None => found.lost(
                Reason::ContainerLost,
                &was.name,
                Some(format!("was {}", was.state)),
            ),
            // Reported below.
            Some(now) if now.state == "restarting" => {}
            Some(now) if was.state == "running" && now.state != "running" => found.lost(
                Reason::ContainerNotRunning,
                &was.name,
                Some(format!("running -> {}", now.state)),
            ),
            Some(_) => {}
        }
    }
    // Docker restarts a container with a restart policy each time it exits; one still
    // `restarting` at the capture keeps exiting, whatever it was before the reboot.
    for now in after.iter().filter(|c| c.state == "restarting") {
        let was = by_name(before, &now.name).map_or_else(|| "absent".to_owned(), |c| c.state);
        found.lost(
            Reason::ContainerRestarting,
            &now.name,
            Some(format!("{was} -> restarting: Docker keeps restarting it")),
        );
    }
    for now in after.iter().filter(|c| by_name(before, &c.name).is_none()) {
        found.appeared(
            Reason::ContainerAppeared,
            &now.name,
            Some(format!("now {}", now.state)),
        );
    }
}

fn probes(before: &[ProbeResult], after: &[ProbeResult], found: &mut Found) {
    for was in before {
        let now = after
            .iter()
            .find(|p| p.port == was.port && p.kind == was.kind);
        match now {
            None if was.ok => found.unavailable.push(format!(
                "probe {}/{}: not run after the reboot",
                was.port, was.kind
            )),
            Some(now) if was.ok && !now.ok => found.lost(
                Reason::ProbeFailed,
                format!("{} {}", now.port, now.reason),
                Some(format!("{} probe: ok -> {}", now.kind, now.reason)),
            ),
            Some(now) if !was.ok && now.ok => found.appeared(
                Reason::ProbeRecovered,
                format!("{}", now.port),
                Some(format!("{} probe: {} -> ok", now.kind, was.reason)),
            ),
            _ => {}
        }
    }
}
