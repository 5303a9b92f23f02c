//! Reads a capture into a [`GuestState`], section by section. A section that is missing, failed
//! or unreadable becomes [`Section::Unavailable`] with the reason; it never becomes empty.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::capture::{DOCKER_INACTIVE, ParseError, RawSection, split_sections};
use crate::model::{
    Container, GuestState, ListenAddress, Listener, Mount, PortRange, Route, Section, Unit,
};
use crate::nft::parse_ruleset;

/// Unit types the diff follows. Devices, scopes and slices are left out: they come and go with
/// hardware, logins and containers, and what matters about them shows elsewhere (a container's
/// scope as the container, a session's as nothing at all).
const FOLLOWED_UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "timer",
    "mount",
    "path",
    "target",
    "automount",
    "swap",
];

/// What `systemctl is-system-running` may answer.
const SYSTEM_STATES: &[&str] = &[
    "initializing",
    "starting",
    "running",
    "degraded",
    "maintenance",
    "stopping",
    "offline",
    "unknown",
];

/// Unit file states that start the unit at the next boot or on demand.
const ENABLED_STATES: &[&str] = &["enabled", "enabled-runtime"];

/// Reads the output of [`crate::CAPTURE_SCRIPT`] (or of `capture.sh`, which took the fixtures).
///
/// Fails only when the text is no capture at all; see [`ParseError`].
pub fn parse_capture(stdout: &str) -> Result<GuestState, ParseError> {
    let sections = split_sections(stdout)?;
    let read = |name: &str, program: &str| output(sections.get(name), program);
    let (failed_units, units) = match section(read("units-json", "systemctl"), units) {
        Section::Available((failed, units)) => {
            (Section::Available(failed), Section::Available(units))
        }
        Section::Unavailable(why) => (Section::Unavailable(why.clone()), Section::Unavailable(why)),
    };
    Ok(GuestState {
        system: system(sections.get("is-system-running")),
        failed_units,
        units,
        enabled_units: section(read("unit-files-json", "systemctl"), enabled_units),
        listeners: section(read("ss-tulpn", "ss"), listeners),
        nftables: section(read("nft-text", "nft"), parse_ruleset),
        routes: routes(
            read("ip-route-json", "ip"),
            sections
                .get("ip6-route-json")
                .map(|_| read("ip6-route-json", "ip")),
        ),
        mounts: section(read("findmnt-json", "findmnt"), mounts),
        containers: containers(sections.get("docker-ps")),
        ephemeral_ports: read("port-range", "read")
            .ok()
            .and_then(port_range)
            .unwrap_or(PortRange::LINUX_DEFAULT),
    })
}

/// The section's stdout if its command ran and succeeded, else why not.
fn output<'a>(raw: Option<&'a RawSection>, program: &str) -> Result<&'a str, String> {
    let raw = raw.ok_or("not in the capture")?;
    match raw.rc {
        Some(0) => Ok(&raw.stdout),
        None => Err("the capture ended inside this section".to_owned()),
        Some(127) => Err(format!("{program} is not installed")),
        Some(124) => Err(format!("{program} timed out")),
        Some(rc) => Err(format!("exit status {rc}: {}", tail(raw))),
    }
}

/// The last lines the command printed, on one line, for a reason.
fn tail(raw: &RawSection) -> String {
    let text = format!("{}{}", raw.stdout, raw.stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    if tail.is_empty() {
        "no output".to_owned()
    } else {
        tail.chars().take(300).collect()
    }
}

fn section<T>(
    text: Result<&str, String>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Section<T> {
    match text.and_then(|text| parse(text).map_err(|why| format!("unreadable output: {why}"))) {
        Ok(value) => Section::Available(value),
        Err(why) => Section::Unavailable(why),
    }
}

/// `is-system-running` exits non-zero for every state but `running`, and still prints it.
fn system(raw: Option<&RawSection>) -> Section<String> {
    let Some(raw) = raw else {
        return Section::Unavailable("not in the capture".to_owned());
    };
    let word = raw.stdout.trim();
    match raw.rc {
        Some(_) if SYSTEM_STATES.contains(&word) => Section::Available(word.to_owned()),
        Some(124) => Section::Unavailable("the boot did not finish within 120 s".to_owned()),
        Some(127) => Section::Unavailable("systemctl is not installed".to_owned()),
        Some(rc) => Section::Unavailable(format!("exit status {rc}: {}", tail(raw))),
        None => Section::Unavailable("the capture ended inside this section".to_owned()),
    }
}

#[derive(Deserialize)]
struct UnitEntry {
    unit: String,
    load: String,
    active: String,
    sub: String,
}

type Units = (BTreeSet<String>, BTreeMap<String, Unit>);

/// Failed units of every type, and the followed types' units that exist.
fn units(text: &str) -> Result<Units, String> {
    let entries: Vec<UnitEntry> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut failed = BTreeSet::new();
    let mut units = BTreeMap::new();
    for entry in entries {
        if entry.active == "failed" {
            failed.insert(entry.unit.clone());
        }
        let Some((_, kind)) = entry.unit.rsplit_once('.') else {
            continue;
        };
        // A unit that is only referenced (`not-found`, inactive) does not exist.
        let exists = entry.load != "not-found" || entry.active != "inactive";
        if exists && FOLLOWED_UNIT_TYPES.contains(&kind) {
            let unit = Unit {
                kind: kind.to_owned(),
                active: entry.active,
                sub: entry.sub,
            };
            units.insert(entry.unit, unit);
        }
    }
    Ok((failed, units))
}

#[derive(Deserialize)]
struct UnitFileEntry {
    unit_file: String,
    state: String,
}

fn enabled_units(text: &str) -> Result<BTreeMap<String, String>, String> {
    let entries: Vec<UnitFileEntry> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(entries
        .into_iter()
        .filter(|e| ENABLED_STATES.contains(&e.state.as_str()))
        .map(|e| (e.unit_file, e.state))
        .collect())
}

/// Reads `ss -H -tulpn`: `tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=632,fd=6))`.
fn listeners(text: &str) -> Result<Vec<Listener>, String> {
    let mut by_socket: BTreeMap<(String, u16, ListenAddress), BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [proto, _state, _recv, _send, local, _peer, process @ ..] = words.as_slice() else {
            return Err(format!("unexpected line {line:?}"));
        };
        let (address, port) = local
            .rsplit_once(':')
            .and_then(|(address, port)| Some((address, port.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("no address:port in {line:?}"))?;
        let names = by_socket
            .entry(((*proto).to_owned(), port, ListenAddress::from_ss(address)))
            .or_default();
        names.extend(process_names(&process.join(" ")));
    }
    Ok(by_socket
        .into_iter()
        .map(|((proto, port, address), names)| Listener {
            proto,
            port,
            address,
            processes: names.into_iter().collect(),
        })
        .collect())
}

/// The quoted names in `users:(("systemd-resolve",pid=316,fd=11),("x",pid=2,fd=3))`.
fn process_names(users: &str) -> Vec<String> {
    users
        .split("(\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_owned()))
        .collect()
}

#[derive(Deserialize)]
struct RouteEntry {
    #[serde(rename = "type")]
    kind: Option<String>,
    dst: String,
    gateway: Option<String>,
    via: Option<Via>,
    dev: Option<String>,
    table: Option<String>,
    protocol: Option<String>,
    expires: Option<serde_json::Value>,
    #[serde(default)]
    nexthops: Vec<Nexthop>,
}

#[derive(Deserialize)]
struct Via {
    host: String,
}

#[derive(Deserialize)]
struct Nexthop {
    gateway: Option<String>,
    dev: Option<String>,
}

/// Routes from `ip -j route show table all` (both families on Debian 13), merged with a separate
/// IPv6 listing when the capture has one.
fn routes(v4: Result<&str, String>, v6: Option<Result<&str, String>>) -> Section<Vec<Route>> {
    let mut all = BTreeSet::new();
    for text in std::iter::once(v4).chain(v6) {
        let read = text.and_then(|text| {
            let entries: Vec<RouteEntry> =
                serde_json::from_str(text).map_err(|e| format!("unreadable output: {e}"))?;
            Ok(entries)
        });
        match read {
            Ok(entries) => all.extend(entries.into_iter().filter_map(route)),
            Err(why) => return Section::Unavailable(why),
        }
    }
    Section::Available(all.into_iter().collect())
}

/// The `local` table is left out: the kernel derives it from the addresses, whose subnets
/// show in `main` as `proto kernel` routes.
fn route(entry: RouteEntry) -> Option<Route> {
    let table = entry.table.unwrap_or_else(|| "main".to_owned());
    if table == "local" {
        return None;
    }
    let joined = |parts: Vec<String>| (!parts.is_empty()).then(|| parts.join(","));
    let (gateway, dev) = if entry.nexthops.is_empty() {
        (entry.gateway.or(entry.via.map(|via| via.host)), entry.dev)
    } else {
        let gateways = entry
            .nexthops
            .iter()
            .filter_map(|n| n.gateway.clone())
            .collect();
        let devs = entry
            .nexthops
            .iter()
            .filter_map(|n| n.dev.clone())
            .collect();
        (joined(gateways), joined(devs))
    };
    Some(Route {
        table,
        kind: entry.kind.unwrap_or_else(|| "unicast".to_owned()),
        dst: entry.dst,
        gateway,
        dev,
        protocol: entry.protocol,
        expires: entry.expires.is_some(),
    })
}

#[derive(Deserialize)]
struct Findmnt {
    filesystems: Vec<FindmntEntry>,
}

#[derive(Deserialize)]
struct FindmntEntry {
    target: String,
    source: Option<String>,
    fstype: String,
    #[serde(default)]
    children: Vec<FindmntEntry>,
}

fn mounts(text: &str) -> Result<Vec<Mount>, String> {
    let tree: Findmnt = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut mounts = BTreeSet::new();
    let mut stack = tree.filesystems;
    while let Some(entry) = stack.pop() {
        mounts.insert(Mount {
            target: entry.target,
            fstype: entry.fstype,
            source: entry.source.unwrap_or_default(),
        });
        stack.extend(entry.children);
    }
    Ok(mounts.into_iter().collect())
}

#[derive(Deserialize)]
struct DockerPsEntry {
    #[serde(rename = "Names")]
    names: String,
    #[serde(rename = "State")]
    state: String,
    #[serde(rename = "Ports", default)]
    ports: String,
}

/// `docker ps --format '{{json .}}'`, one object a line. An installed daemon that is not
/// running has no running containers, which the diff must see.
fn containers(raw: Option<&RawSection>) -> Section<Vec<Container>> {
    if let Some(raw) = raw
        && raw.rc == Some(3)
        && raw.stdout.trim() == DOCKER_INACTIVE
    {
        return Section::Available(Vec::new());
    }
    section(output(raw, "docker"), |text| {
        let mut containers = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry: DockerPsEntry = serde_json::from_str(line).map_err(|e| e.to_string())?;
            let mut ports: Vec<String> = entry
                .ports
                .split(", ")
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            ports.sort();
            ports.dedup();
            containers.push(Container {
                name: entry.names,
                state: entry.state,
                ports,
            });
        }
        containers.sort();
        Ok(containers)
    })
}

fn port_range(text: &str) -> Option<PortRange> {
    let mut words = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(low)), Some(Ok(high))) = (words.next(), words.next()) else {
        return None;
    };
    Some(PortRange { low, high })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(sections: &[(&str, &str, i32)]) -> String {
        sections
            .iter()
            .map(|(name, body, rc)| format!("### {name}\n{body}\n### rc={rc}\n"))
            .collect()
    }

    #[test]
    fn a_missing_or_failed_section_is_unavailable_not_empty() {
        let text = capture(&[
            ("is-system-running", "degraded", 1),
            ("nft-text", "sh: 1: nft: not found", 127),
            (
                "ss-tulpn",
                "Cannot open netlink socket: Permission denied",
                1,
            ),
        ]);
        let state = parse_capture(&text).unwrap();
        assert_eq!(state.system, Section::Available("degraded".to_owned()));
        assert_eq!(
            state.nftables,
            Section::Unavailable("nft is not installed".to_owned())
        );
        assert_eq!(
            state.listeners,
            Section::Unavailable(
                "exit status 1: Cannot open netlink socket: Permission denied".to_owned()
            )
        );
        assert_eq!(
            state.units,
            Section::Unavailable("not in the capture".to_owned())
        );
        assert_eq!(state.ephemeral_ports, PortRange::LINUX_DEFAULT);
    }

    #[test]
    fn output_that_does_not_parse_is_unavailable() {
        let text = capture(&[("units-json", "[{\"unit\": 1", 0)]);
        let state = parse_capture(&text).unwrap();
        let Section::Unavailable(why) = state.units else {
            panic!("broken JSON read as units");
        };
        assert!(why.starts_with("unreadable output: "), "{why}");
    }

    #[test]
    fn a_stopped_docker_daemon_has_no_containers() {
        let text = capture(&[("docker-ps", DOCKER_INACTIVE, 3)]);
        let state = parse_capture(&text).unwrap();
        assert_eq!(state.containers, Section::Available(Vec::new()));
    }

    #[test]
    fn listeners_keep_the_three_wildcards_and_specific_addresses_apart() {
        let text = "\
udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:* users:((\"systemd-resolve\",pid=316,fd=18))
tcp LISTEN 0 4096 0.0.0.0:443 0.0.0.0:* users:((\"docker-proxy\",pid=900,fd=7))
tcp LISTEN 0 4096 [::]:443 [::]:* users:((\"docker-proxy\",pid=901,fd=7))
tcp LISTEN 0 5 [fe80::1]%ens2:8080 [::]:* users:((\"python3\",pid=1,fd=3),(\"sh\",pid=2,fd=3))
tcp LISTEN 0 5 *:9000 *:*
";
        let found = listeners(text).unwrap();
        let brief: Vec<String> = found
            .iter()
            .map(|l| format!("{}/{} {:?} {:?}", l.proto, l.port, l.address, l.processes))
            .collect();
        assert_eq!(
            brief,
            [
                "tcp/443 AnyIpv4 [\"docker-proxy\"]",
                "tcp/443 AnyIpv6 [\"docker-proxy\"]",
                "tcp/8080 One(\"fe80::1%ens2\") [\"python3\", \"sh\"]",
                "tcp/9000 AnyDualStack []",
                "udp/53 One(\"127.0.0.53%lo\") [\"systemd-resolve\"]",
            ]
        );
    }

    #[test]
    fn routes_keep_their_table_and_mark_expiring_ones() {
        let json = r#"[
            {"dst":"default","gateway":"10.0.2.2","dev":"ens2","protocol":"dhcp","metric":100,"flags":[]},
            {"type":"local","dst":"10.0.2.15","dev":"ens2","table":"local","protocol":"kernel","flags":[]},
            {"dst":"198.51.100.0/24","gateway":"10.0.2.2","dev":"ens2","table":"100","flags":[]},
            {"dst":"default","nhid":4,"gateway":"fe80::2","dev":"ens2","protocol":"ra","expires":1747,"flags":[]}
        ]"#;
        let Section::Available(found) = routes(Ok(json), None) else {
            panic!("routes unavailable");
        };
        let brief: Vec<String> = found
            .iter()
            .map(|r| {
                format!(
                    "{} {} {:?} {:?} expires={}",
                    r.table, r.dst, r.gateway, r.protocol, r.expires
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                "100 198.51.100.0/24 Some(\"10.0.2.2\") None expires=false",
                "main default Some(\"10.0.2.2\") Some(\"dhcp\") expires=false",
                "main default Some(\"fe80::2\") Some(\"ra\") expires=true",
            ]
        );
    }
}
