//! Preflight's search for real addresses in the members' variables. A role that templates a
//! peer's address from a variable (a `group_vars` list of mesh peers, an allow-list) must get
//! the fleet's address; a real host's address left there would aim a member at production (the
//! unreachable routes stop the packets, but the test would not test what it claims). So every
//! member variable that still holds a real fleet address is named, and the run is refused.
//!
//! Input: each member's variables as Ansible resolves them (`ansible-inventory --list` over the
//! transient inventory: its `_meta.hostvars`) and the `-e` files' values
//! ([`crate::vars::read_vars_file`]). Every string and every key is searched, at any depth, for
//! IPv4 and IPv6 literals (also inside URLs, CIDRs, `host:port`, `[v6]:port`); only exact real
//! addresses are reported, so an unrelated number never is. Pure.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use camino::Utf8PathBuf;
use serde_json::Value;

/// Where a variable comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum VarSource {
    /// A member's resolved variables (inventory, `group_vars`, `host_vars`).
    Member(String),
    /// An `-e` file, which every member gets.
    ExtraVars(Utf8PathBuf),
}

impl fmt::Display for VarSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarSource::Member(name) => write!(f, "member {name}"),
            VarSource::ExtraVars(file) => write!(f, "{file}"),
        }
    }
}

/// A real address found in a variable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RealAddressUse {
    pub source: VarSource,
    /// A JSON path: `base__mesh_peers[1].endpoint`.
    pub path: String,
    pub address: IpAddr,
}

impl fmt::Display for RealAddressUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: `{}` holds {}, a real host's address: override it for the fleet (a fleet `extra_vars_files` entry) with the member's fleet address (`hostvars[peer].ansible_host`)",
            self.source, self.path, self.address
        )
    }
}

/// Why `ansible-inventory --list` output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("ansible-inventory --list: {0}")]
    Malformed(String),
    #[error(
        "ansible-inventory --list has no variables for member `{0}`: is it in the transient inventory?"
    )]
    MissingMember(String),
}

/// The real addresses in `members`' variables, from `ansible-inventory --list` output.
pub fn scan_inventory_list(
    list: &str,
    members: &[String],
    real: &BTreeSet<IpAddr>,
) -> Result<Vec<RealAddressUse>, ScanError> {
    let json: Value =
        serde_json::from_str(list).map_err(|e| ScanError::Malformed(e.to_string()))?;
    let hostvars = json
        .pointer("/_meta/hostvars")
        .and_then(Value::as_object)
        .ok_or_else(|| ScanError::Malformed("no `_meta.hostvars` object".into()))?;
    let mut found = Vec::new();
    for member in members {
        let vars = hostvars
            .get(member)
            .and_then(Value::as_object)
            .ok_or_else(|| ScanError::MissingMember(member.clone()))?;
        found.extend(scan_vars(&VarSource::Member(member.clone()), vars, real));
    }
    Ok(found)
}

/// The real addresses in one set of variables (a member's, or an `-e` file's), sorted.
pub fn scan_vars(
    source: &VarSource,
    vars: &serde_json::Map<String, Value>,
    real: &BTreeSet<IpAddr>,
) -> Vec<RealAddressUse> {
    let mut found = Vec::new();
    for (name, value) in vars {
        walk(value, &path_key("", name), &mut |path, text| {
            for address in addresses_in(text) {
                if real.contains(&address) {
                    found.push(RealAddressUse {
                        source: source.clone(),
                        path: path.to_owned(),
                        address,
                    });
                }
            }
        });
    }
    found.sort();
    found.dedup();
    found
}

fn walk(value: &Value, path: &str, visit: &mut impl FnMut(&str, &str)) {
    match value {
        Value::String(text) => visit(path, text),
        Value::Object(map) => {
            for (key, inner) in map {
                let inner_path = path_key(path, key);
                // A key can hold an address too (`{"77.42.120.136": "askari"}`).
                visit(&inner_path, key);
                walk(inner, &inner_path, visit);
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                walk(inner, &format!("{path}[{index}]"), visit);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `path.key`, or `path["odd key"]` when the key is not a plain identifier.
fn path_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Value::String(key.to_owned())),
    }
}

/// Every IP address literal in `text`: IPv4 in the runs of digits and dots, IPv6 in the runs
/// of hex digits, `:` and `.` that hold at least two `:` (so `host:port`, URLs, CIDRs,
/// `[v6]:port`, a trailing `.` and `::ffff:a.b.c.d` are all read), each address once.
pub fn addresses_in(text: &str) -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = Vec::new();
    let mut push = |address: IpAddr| {
        if !found.contains(&address) {
            found.push(address);
        }
    };
    for run in text.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
        if let Ok(v4) = run.trim_matches('.').parse::<Ipv4Addr>() {
            push(IpAddr::V4(v4));
        }
    }
    let v6_part = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
    for run in text.split(|c: char| !v6_part(c)) {
        let run = run.trim_end_matches('.');
        if run.matches(':').count() < 2 {
            continue;
        }
        // An unbracketed `v6:port` is ambiguous, so it is not split: `[v6]:port`'s brackets
        // already were.
        if let Ok(v6) = run.parse::<Ipv6Addr>() {
            push(IpAddr::V6(v6));
            if let Some(v4) = v6.to_ipv4_mapped() {
                push(IpAddr::V4(v4));
            }
        }
    }
    found
}
