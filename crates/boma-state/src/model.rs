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

    /// Whether systemd is restarting it after it exited (`Restart=`): `activating/auto-restart`
    /// while it waits `RestartSec=`, `auto-restart-queued` once the restart job is queued
    /// (systemd 254 and later).
    pub fn is_restarting(&self) -> bool {
        matches!(self.sub.as_str(), "auto-restart" | "auto-restart-queued")
    }

    /// Whether a start or stop job of its own was still running: neither up nor down yet.
    pub fn is_changing(&self) -> bool {
        matches!(self.active.as_str(), "activating" | "deactivating") && !self.is_restarting()
    }
}

/// A socket waiting for traffic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Listener {
    /// `tcp` or `udp`.
    pub proto: String,
    pub port: u16,
    pub address: ListenAddress,
    /// Process names holding the socket, sorted, without duplicates.
    pub processes: Vec<String>,
}

/// Where a socket listens. The three wildcards are kept apart, because `ss` tells them apart:
/// a socket bound to IPv4's any address shows as `0.0.0.0`, one bound to IPv6's any address
/// with `IPV6_V6ONLY` as `[::]`, and one bound to IPv6's any address that takes IPv4 too
/// (dual-stack) as `*` (iproute2's `inet_addr_print`). sshd's two sockets, `0.0.0.0:22` and
/// `[::]:22`, are two listeners: losing either is a loss. Serialised as `ss` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum ListenAddress {
    /// `0.0.0.0`: every IPv4 address.
    AnyIpv4,
    /// `[::]`: every IPv6 address, and no IPv4 one.
    AnyIpv6,
    /// `*`: every IPv4 and every IPv6 address.
    AnyDualStack,
    /// One address, without brackets, with its `%interface` when the socket is bound to one.
    One(String),
}

impl ListenAddress {
    /// Reads the address part of `ss`'s local `address:port`.
    pub fn from_ss(text: &str) -> ListenAddress {
        match text {
            "0.0.0.0" => ListenAddress::AnyIpv4,
            "[::]" => ListenAddress::AnyIpv6,
            "*" => ListenAddress::AnyDualStack,
            one => ListenAddress::One(one.replace(['[', ']'], "")),
        }
    }

    /// Whether a socket bound here takes the traffic a socket bound to `wanted` took.
    pub fn covers(&self, wanted: &ListenAddress) -> bool {
        match (self, wanted) {
            _ if self == wanted => true,
            (ListenAddress::AnyDualStack, _) => true,
            (ListenAddress::AnyIpv4, ListenAddress::One(one)) => !one.contains(':'),
            (ListenAddress::AnyIpv6, ListenAddress::One(one)) => one.contains(':'),
            _ => false,
        }
    }

    /// As `ss` prints it (a single address without its brackets): `0.0.0.0`, `[::]`, `*`,
    /// `fe80::1%ens2`.
    pub fn as_ss(&self) -> &str {
        match self {
            ListenAddress::AnyIpv4 => "0.0.0.0",
            ListenAddress::AnyIpv6 => "[::]",
            ListenAddress::AnyDualStack => "*",
            ListenAddress::One(one) => one,
        }
    }

    /// As a person reads it: `every IPv4 address (0.0.0.0)`, `127.0.0.53%lo`.
    pub fn describe(&self) -> String {
        match self {
            ListenAddress::AnyIpv4 => "every IPv4 address (0.0.0.0)".to_owned(),
            ListenAddress::AnyIpv6 => "every IPv6 address ([::], IPv6 only)".to_owned(),
            ListenAddress::AnyDualStack => "every IPv4 and IPv6 address (*)".to_owned(),
            ListenAddress::One(one) => one.clone(),
        }
    }
}

impl From<ListenAddress> for String {
    fn from(address: ListenAddress) -> String {
        address.as_ss().to_owned()
    }
}

impl From<String> for ListenAddress {
    fn from(text: String) -> ListenAddress {
        ListenAddress::from_ss(&text)
    }
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
    /// `running`, `exited`, `restarting` (Docker's restart policy is starting it again after
    /// it exited), `created`, `paused`, `dead`.
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
