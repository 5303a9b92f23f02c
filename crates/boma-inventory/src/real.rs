//! The hosts of the real (production) inventory, as Ansible itself reads them: their names, so
//! that the transient inventory can prove its one host is none of them, their addresses, so
//! that a test VM can be given no route to any of them, and the group hierarchy the VM is
//! placed in.
//!
//! The harness runs `ansible-inventory -i inventories/production --list` from its venv and
//! hands the JSON to [`Fleet::from_ansible_list`], which is pure. No parser of ours stands
//! between Ansible and the routes: INI, YAML, host ranges, `:children`, a host in two files,
//! inventory plugins (`constructed`, a cloud's) and scripts are read by Ansible, so the fleet
//! is exactly the one a production run would see. A divergence would be a production host
//! with no unreachable route.
//!
//! `--list` without `--export`: each host's variables are merged as Ansible merges them for a
//! play (group vars, the inventory's `group_vars`/`host_vars`, a `constructed` plugin's
//! `compose`), so an `ansible_host` given anywhere in the inventory is the one seen here. Inline
//! `!vault` values need no password and stay encrypted (`{"__ansible_vault": "…"}`); such an
//! `ansible_host` cannot be routed and is said so, like a DNS name.
//!
//! What Ansible connects to, per host: every `ansible_host` and `ansible_ssh_host` it has (its
//! ssh plugin takes the last of them it finds; both are routed away, which costs nothing), or
//! the host name itself when it has neither. A host with `ansible_connection: local` is the
//! control node, reached over no network. A value that is an IP literal is routed away; any
//! other (a DNS name, a template, a vaulted value) is "named only" ([`Fleet::named_only`]).
//!
//! A host of the real inventory named like a test VM (`boma-it-…`, in any case) is refused:
//! then the shape of a name alone proves it is not a real host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::Value;

/// The real inventory, relative to the repo root.
pub const PRODUCTION_DIR: &str = "inventories/production";

/// The host variables that say where Ansible connects to, in the order its ssh plugin reads
/// them (the last one set wins there; every one is routed away here).
pub const ADDRESS_VARS: [&str; 2] = ["ansible_host", "ansible_ssh_host"];

/// Why the real inventory's hosts could not be taken from `ansible-inventory --list`.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Not the JSON `ansible-inventory --list` prints.
    #[error("ansible-inventory --list printed no inventory ({message})")]
    Malformed { message: String },
    /// A real host named like a test VM.
    #[error(
        "host `{host}` is named like a test vm: the `{prefix}` prefix is reserved for test \
         vms (it is how prune and the name check tell them apart); rename it in {PRODUCTION_DIR}/",
        prefix = boma_name::PREFIX
    )]
    NamedLikeTestVm { host: String },
    /// No host at all: "the VM is none of the real hosts" would hold vacuously.
    #[error(
        "ansible lists no hosts in {PRODUCTION_DIR}/, so the harness cannot prove the test vm is \
         none of them: check it with `ansible-inventory -i {PRODUCTION_DIR} --list`"
    )]
    NoHosts,
}

/// How Ansible reaches one host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reached {
    /// `ansible_connection: local`: the control node itself.
    Local,
    /// Over the network, at each of these (each `ansible_host`/`ansible_ssh_host` as text, or
    /// the host name).
    At(BTreeSet<String>),
}

/// The real fleet as Ansible reads its inventory. Its only constructor is
/// [`Fleet::from_ansible_list`], which refuses a host named like a test VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    hosts: BTreeMap<String, Reached>,
    /// Group → the groups that list it under `children` (`all` included, as Ansible says it).
    parents: BTreeMap<String, BTreeSet<String>>,
}

impl Fleet {
    /// The fleet `ansible-inventory --list` printed (`json`, without `--export`).
    pub fn from_ansible_list(json: &str) -> Result<Fleet, InventoryError> {
        let malformed = |message: String| InventoryError::Malformed { message };
        let list: serde_json::Map<String, Value> =
            serde_json::from_str(json).map_err(|e| malformed(e.to_string()))?;
        let hostvars = match list.get("_meta").map(|meta| meta.get("hostvars")) {
            Some(Some(Value::Object(vars))) => vars.clone(),
            _ => return Err(malformed("no `_meta.hostvars`".to_owned())),
        };
        let mut names: BTreeSet<String> = hostvars.keys().cloned().collect();
        let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (group, entry) in list.iter().filter(|(group, _)| *group != "_meta") {
            let Value::Object(entry) = entry else {
                return Err(malformed(format!("group `{group}` is not an object")));
            };
            for host in strings(entry, "hosts").map_err(|m| malformed(format!("{group}: {m}")))? {
                names.insert(host);
            }
            for child in
                strings(entry, "children").map_err(|m| malformed(format!("{group}: {m}")))?
            {
                parents.entry(child).or_default().insert(group.clone());
            }
        }
        if let Some(host) = names.iter().find(|host| named_like_test_vm(host)) {
            return Err(InventoryError::NamedLikeTestVm { host: host.clone() });
        }
        if names.is_empty() {
            return Err(InventoryError::NoHosts);
        }
        let hosts = names
            .into_iter()
            .map(|name| {
                let reached = reached(&name, hostvars.get(&name));
                (name, reached)
            })
            .collect();
        Ok(Fleet { hosts, parents })
    }

    /// Every host name.
    pub fn names(&self) -> BTreeSet<String> {
        self.hosts.keys().cloned().collect()
    }

    /// Every literal IP address Ansible would connect to (see the module docs).
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        self.targets()
            .filter_map(|(_, target)| target.parse().ok())
            .collect()
    }

    /// The hosts Ansible reaches through something other than an address — a DNS name, a
    /// template, a vaulted value — with it: no static route can stand for them, so the caller
    /// says they are not covered.
    pub fn named_only(&self) -> Vec<(String, String)> {
        self.targets()
            .filter(|(_, target)| target.parse::<IpAddr>().is_err())
            .map(|(host, target)| (host.to_owned(), target.to_owned()))
            .collect()
    }

    /// Every group `group` is a member of through the hierarchy, transitively: its parents,
    /// their parents, and so on; without `group` itself (even on a cycle) and without the
    /// implicit `all` and `ungrouped`. A group the inventory does not know has none.
    pub fn ancestors(&self, group: &str) -> BTreeSet<String> {
        ancestors_in(&self.parents, group)
            .into_iter()
            .filter(|above| *above != group)
            .map(str::to_owned)
            .collect()
    }

    /// The part of the hierarchy a host placed in `groups` sits in: each of `groups` and each of
    /// their ancestors, with its parent groups (without the implicit `all` and `ungrouped`,
    /// empty for a top-level group or one the inventory does not know). Cycles are kept as
    /// given, for the renderer to refuse.
    pub fn lineage(&self, groups: &[String]) -> BTreeMap<String, BTreeSet<String>> {
        let mut members: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
        for group in groups {
            members.extend(ancestors_in(&self.parents, group));
        }
        members
            .into_iter()
            .map(|group| {
                let parents = self
                    .parents
                    .get(group)
                    .into_iter()
                    .flatten()
                    .filter(|parent| !is_implicit(parent))
                    .cloned()
                    .collect();
                (group.to_owned(), parents)
            })
            .collect()
    }

    /// (host, what Ansible connects to) for every host reached over a network.
    fn targets(&self) -> impl Iterator<Item = (&str, &str)> {
        self.hosts.iter().flat_map(|(host, reached)| {
            let targets = match reached {
                Reached::Local => None,
                Reached::At(targets) => Some(targets),
            };
            targets
                .into_iter()
                .flatten()
                .map(move |target| (host.as_str(), target.as_str()))
        })
    }
}

/// The list of names under `key` of a group's entry (absent: none).
fn strings(entry: &serde_json::Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match entry.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(name) => Ok(name.clone()),
                other => Err(format!("`{key}` holds {other}, not a name")),
            })
            .collect(),
        Some(other) => Err(format!("`{key}` is {other}, not a list")),
    }
}

/// How Ansible reaches host `name`, whose merged variables are `vars`.
fn reached(name: &str, vars: Option<&Value>) -> Reached {
    let var = |key: &str| vars.and_then(|vars| vars.get(key));
    if var("ansible_connection").and_then(Value::as_str) == Some("local") {
        return Reached::Local;
    }
    let given: BTreeSet<String> = ADDRESS_VARS
        .iter()
        .filter_map(|key| var(key))
        .map(target_text)
        .collect();
    if given.is_empty() {
        Reached::At(BTreeSet::from([name.to_owned()]))
    } else {
        Reached::At(given)
    }
}

/// An address variable's value as text: a string as it is, an inline vault value said so
/// (it is never decrypted here), anything else as JSON.
fn target_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(map) if map.contains_key("__ansible_vault") => "a vaulted value".to_owned(),
        other => other.to_string(),
    }
}

/// Whether `group` is one every host is in anyway (`all`) or that holds hosts of no other group
/// (`ungrouped`): neither is listed as an ancestor nor walked through.
pub(crate) fn is_implicit(group: &str) -> bool {
    group == "all" || group == "ungrouped"
}

/// Every group above `group` in `parents` (group → its parent groups), transitively, skipping
/// implicit groups; `group` itself is in it only when it is on a cycle. Each group is walked
/// from once, so a cycle ends the walk instead of looping.
pub(crate) fn ancestors_in<'a>(
    parents: &'a BTreeMap<String, BTreeSet<String>>,
    group: &str,
) -> BTreeSet<&'a str> {
    fn parents_of<'a>(
        parents: &'a BTreeMap<String, BTreeSet<String>>,
        group: &str,
    ) -> impl Iterator<Item = &'a str> {
        parents
            .get(group)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|parent| !is_implicit(parent))
    }
    let mut above = BTreeSet::new();
    let mut pending: Vec<&str> = parents_of(parents, group).collect();
    while let Some(next) = pending.pop() {
        if above.insert(next) {
            pending.extend(parents_of(parents, next));
        }
    }
    above
}

fn named_like_test_vm(host: &str) -> bool {
    boma_name::has_test_prefix(host)
}
