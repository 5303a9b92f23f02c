//! The guest's observable state as the reboot diff compares it: normalised so that two captures
//! of an unchanged host are equal, and serialisable for the bundle's `state-*.json`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One part of the state, or why the capture could not tell it.
///
/// A section that could not be read is never an empty one: an empty list would read as
/// "everything was lost".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section<T> {
    Available(T),
    /// Why the section could not be read, e.g. `nft is not installed` or `exit status 1: …`.
    Unavailable(String),
}

impl<T> Section<T> {
    pub fn available(&self) -> Option<&T> {
        match self {
            Section::Available(value) => Some(value),
            Section::Unavailable(_) => None,
        }
    }
}

/// Everything one capture tells about the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestState {
    /// `systemctl is-system-running`: `running`, `degraded`, `maintenance`, `starting`, …
    pub system: Section<String>,
    /// Units whose active state is `failed`, of every type.
    pub failed_units: Section<BTreeSet<String>>,
    /// Loaded units of the types the diff follows (see [`Unit`]), by name.
    pub units: Section<BTreeMap<String, Unit>>,
    /// Unit files enabled for the next boot, by name, with their state (`enabled` or
    /// `enabled-runtime`: the latter lives in /run and does not survive a reboot).
    pub enabled_units: Section<BTreeMap<String, String>>,
    /// Listening TCP sockets and bound UDP sockets, sorted.
    pub listeners: Section<Vec<Listener>>,
    pub nftables: Section<Ruleset>,
    /// Routes of every table but `local`, IPv4 and IPv6, sorted.
    pub routes: Section<Vec<Route>>,
    /// Mounted file systems, sorted by target.
    pub mounts: Section<Vec<Mount>>,
    /// Docker containers, running or not, sorted by name. Available and empty when the
    /// daemon is installed but not running.
    pub containers: Section<Vec<Container>>,
    /// The kernel's ephemeral port range: sockets bound there are picked at random.
    pub ephemeral_ports: PortRange,
}

/// A unit's state as `systemctl list-units` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// The suffix: `service`, `socket`, `timer`, `mount`, `path`, `target`, `automount`, `swap`.
    pub kind: String,
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`.
    pub active: String,
    /// The type-specific sub-state: `running`, `exited`, `listening`, `waiting`, `dead`, …
    pub sub: String,
}

impl Unit {
    /// Whether the unit is up: `reloading` counts, `activating` (still starting, or waiting to
    /// restart after a crash) does not.
    pub fn is_active(&self) -> bool {
        matches!(self.active.as_str(), "active" | "reloading")
    }
}

/// A socket waiting for traffic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Listener {
    /// `tcp` or `udp`.
    pub proto: String,
    pub port: u16,
    /// `*` for a wildcard (`0.0.0.0`, `[::]` and `*` are one: the port is open on every
    /// address), otherwise the address with its `%interface` scope, without brackets.
    pub address: String,
    /// Process names holding the socket, sorted, without duplicates.
    pub processes: Vec<String>,
}

/// The nftables ruleset, without handles, counters or set elements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    /// Tables by `family name`, e.g. `inet filter`, `ip nat`.
    pub tables: BTreeMap<String, Table>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub chains: BTreeMap<String, Chain>,
    /// Named sets, maps, counters, quotas, flowtables and the like as `kind name`, e.g.
    /// `set blocklist`: their contents change at runtime, so only their names are kept.
    pub objects: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// Set for a base chain (one attached to a hook); `None` for a regular chain.
    pub base: Option<BaseChain>,
    /// Normalised rule texts, sorted; a rule written twice appears twice.
    pub rules: Vec<String>,
}

/// What attaches a base chain to the packet path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseChain {
    /// `filter`, `nat`, `route`.
    pub kind: String,
    /// `input`, `forward`, `prerouting`, …, with `device …` for netdev chains.
    pub hook: String,
    /// As nft prints it: `filter`, `dstnat`, `-100`, `filter + 10`.
    pub priority: String,
    /// `accept` or `drop`; nft omits it for chain types without one.
    pub policy: Option<String>,
}

/// One route, without what changes while it is installed (metric, expiry, nexthop id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    /// The routing table by name or number: `main`, `100`.
    pub table: String,
    /// `unicast`, `unreachable`, `blackhole`, `prohibit`, `multicast`, …
    pub kind: String,
    /// The destination prefix, or `default`.
    pub dst: String,
    pub gateway: Option<String>,
    pub dev: Option<String>,
    /// Who installed it: `kernel`, `dhcp`, `static`, `boot`, `ra`, …
    pub protocol: Option<String>,
    /// Learned with a lifetime (router advertisements): whether it is there at a given moment
    /// depends on the network, not on the host.
    pub expires: bool,
}

/// A mounted file system.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mount {
    pub target: String,
    pub fstype: String,
    pub source: String,
}

/// A Docker container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    /// `running`, `exited`, `restarting`, `created`, `paused`, `dead`.
    pub state: String,
    /// Published ports as Docker prints them, sorted: `0.0.0.0:443->443/tcp`.
    pub ports: Vec<String>,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    /// Linux's default `net.ipv4.ip_local_port_range`, assumed when a capture does not say.
    pub const LINUX_DEFAULT: PortRange = PortRange {
        low: 32768,
        high: 60999,
    };

    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

/// The controller's view of one published port, produced by the harness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub port: u16,
    /// `tcp`, `http` or `https`.
    pub kind: String,
    pub ok: bool,
    /// `ok`, `timeout`, `refused`, `reset`, `tls`, …
    pub reason: String,
}

/// What the diff compares at one moment: the guest's own view and the controller's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub guest: GuestState,
    pub probes: Vec<ProbeResult>,
}
