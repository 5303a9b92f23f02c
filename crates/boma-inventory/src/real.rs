//! The hosts of the real (production) inventory: their names, so that the transient inventory can
//! prove its one host is none of them, and their addresses, so that a test VM can be given no
//! route to any of them.
//!
//! The inventory is Ansible's YAML format: top-level group names (usually just `all`), each with
//! optional `hosts` (a mapping of host name to vars), `children` (a mapping of group name to the
//! same structure) and `vars`. It is read with `saphyr`, a maintained YAML 1.2 parser (serde_yaml
//! is deprecated), keeping positions so that errors point into the file.
//!
//! Anything that could hide a host is an error rather than skipped: a `hosts` that is not a
//! mapping, a host name that is not a string. Host patterns are expanded as Ansible does
//! (`web[01:03]`, `db-[a:c]`, a trailing `:port`), so every name Ansible would see is returned.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;

use camino::{Utf8Path, Utf8PathBuf};
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// The real inventory, relative to the repo root.
pub const PRODUCTION_DIR: &str = "inventories/production";

/// More names than this from one host pattern is a typo, not an inventory.
const MAX_EXPANSION: usize = 10_000;

/// Why the real inventory's host names could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{file}:{line}:{column}: malformed yaml: {message}")]
    Malformed {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Shape {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("no inventory files (*.yml, *.yaml) in {dir}")]
    NoFiles { dir: Utf8PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The real fleet as its inventory describes it: each host name with the `ansible_host` values
/// given for it (none when Ansible would connect to the name itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fleet {
    hosts: BTreeMap<String, BTreeSet<String>>,
    /// Hosts with `ansible_connection: local`: the control node itself, not reached over a
    /// network, so they have no address to route away.
    local: BTreeSet<String>,
}

impl Fleet {
    /// Every host name.
    pub fn names(&self) -> BTreeSet<String> {
        self.hosts.keys().cloned().collect()
    }

    /// Every literal IP address Ansible would connect to: each `ansible_host` that is one, and
    /// each host name that is one when no `ansible_host` is given.
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        self.targets()
            .filter_map(|(_, target)| target.parse().ok())
            .collect()
    }

    /// The hosts Ansible reaches through a DNS name rather than an address, with that name: no
    /// static route can stand for them, so the caller says they are not covered.
    pub fn named_only(&self) -> Vec<(String, String)> {
        self.targets()
            .filter(|(_, target)| target.parse::<IpAddr>().is_err())
            .map(|(host, target)| (host.to_owned(), target.to_owned()))
            .collect()
    }

    /// (host, what Ansible connects to) for every host reached over a network: each given
    /// `ansible_host`, or the name itself when none is given.
    fn targets(&self) -> impl Iterator<Item = (&str, &str)> {
        self.hosts
            .iter()
            .filter(|(host, _)| !self.local.contains(*host))
            .flat_map(|(host, given)| {
                let itself = given.is_empty().then_some(host.as_str());
                given
                    .iter()
                    .map(String::as_str)
                    .chain(itself)
                    .map(move |target| (host.as_str(), target))
            })
    }

    fn extend(&mut self, other: Fleet) {
        for (host, given) in other.hosts {
            self.hosts.entry(host).or_default().extend(given);
        }
        self.local.extend(other.local);
    }
}

/// Every host name in the text of one YAML inventory file; `file` is how errors name it.
pub fn host_names(file: &str, text: &str) -> Result<BTreeSet<String>, InventoryError> {
    Ok(fleet(file, text)?.names())
}

/// The hosts of one YAML inventory file, with their `ansible_host`; `file` is how errors name it.
pub fn fleet(file: &str, text: &str) -> Result<Fleet, InventoryError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| InventoryError::Malformed {
        file: file.to_owned(),
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_owned(),
    })?;
    let walker = Walker { file };
    let mut fleet = Fleet::default();
    match docs.as_slice() {
        // An empty file is an empty inventory, as for Ansible.
        [] => {}
        [doc] => walker.groups(doc, "the top level", &mut fleet)?,
        [_, second, ..] => {
            return Err(walker.shape(second, "an inventory file holds one yaml document"));
        }
    }
    Ok(fleet)
}

/// Every host name in the real inventory (see [`read_real_fleet`]).
pub fn read_real_host_names(repo_root: &Utf8Path) -> Result<BTreeSet<String>, InventoryError> {
    Ok(read_real_fleet(repo_root)?.names())
}

/// Every host of the real inventory: the `*.yml`/`*.yaml` files directly in
/// `inventories/production/` (not `group_vars/` or `host_vars/`, which hold variables). An
/// `ansible_host` set in `host_vars/` is therefore not seen: addresses belong in the inventory
/// files, where this repo keeps them.
pub fn read_real_fleet(repo_root: &Utf8Path) -> Result<Fleet, InventoryError> {
    let dir = repo_root.join(PRODUCTION_DIR);
    let read_err = |path: &Utf8Path| {
        let path = path.to_owned();
        move |source| InventoryError::Read { path, source }
    };
    let mut files = Vec::new();
    for entry in dir.read_dir_utf8().map_err(read_err(&dir))? {
        let entry = entry.map_err(read_err(&dir))?;
        let path = entry.path();
        let is_yaml = matches!(path.extension(), Some("yml" | "yaml"));
        // `metadata` follows symlinks: a linked inventory file counts, a directory never does.
        if is_yaml && path.metadata().map_err(read_err(path))?.is_file() {
            files.push(path.to_owned());
        }
    }
    if files.is_empty() {
        // An empty set would make "the VM is none of the real hosts" vacuously true.
        return Err(InventoryError::NoFiles { dir });
    }
    files.sort();
    let mut all = Fleet::default();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
        let name = path.strip_prefix(repo_root).unwrap_or(&path);
        all.extend(fleet(name.as_str(), &text)?);
    }
    Ok(all)
}

struct Walker<'a> {
    file: &'a str,
}

impl Walker<'_> {
    fn shape(&self, node: &MarkedYaml<'_>, message: impl Into<String>) -> InventoryError {
        InventoryError::Shape {
            file: self.file.to_owned(),
            line: node.span.start.line(),
            column: node.span.start.col() + 1,
            message: message.into(),
        }
    }

    /// A mapping of group name to group definition (the top level, or a group's `children`).
    fn groups(
        &self,
        node: &MarkedYaml<'_>,
        what: &str,
        fleet: &mut Fleet,
    ) -> Result<(), InventoryError> {
        let node = untag(node);
        let groups = match &node.data {
            YamlData::Value(Scalar::Null) => return Ok(()),
            YamlData::Mapping(groups) => groups,
            _ => return Err(self.shape(node, format!("{what} must be a mapping of group names"))),
        };
        for (name, group) in groups {
            let name = self.name(name, "group")?;
            self.group(&name, group, fleet)?;
        }
        Ok(())
    }

    fn group(
        &self,
        name: &str,
        node: &MarkedYaml<'_>,
        fleet: &mut Fleet,
    ) -> Result<(), InventoryError> {
        let node = untag(node);
        let entries = match &node.data {
            YamlData::Value(Scalar::Null) => return Ok(()),
            YamlData::Mapping(entries) => entries,
            _ => {
                return Err(self.shape(
                    node,
                    format!("group `{name}` must be a mapping (hosts, children, vars)"),
                ));
            }
        };
        for (key, value) in entries {
            match untag(key).data.as_str() {
                Some("hosts") => self.hosts(name, value, fleet)?,
                Some("children") => {
                    self.groups(value, &format!("`children` of group `{name}`"), fleet)?
                }
                // `vars` holds no hosts; Ansible skips other keys with a warning.
                _ => {}
            }
        }
        Ok(())
    }

    fn hosts(
        &self,
        group: &str,
        node: &MarkedYaml<'_>,
        fleet: &mut Fleet,
    ) -> Result<(), InventoryError> {
        let node = untag(node);
        let patterns = match &node.data {
            YamlData::Value(Scalar::Null) => return Ok(()),
            YamlData::Mapping(patterns) => patterns,
            _ => {
                return Err(self.shape(
                    node,
                    format!("`hosts` of group `{group}` must be a mapping of host names"),
                ));
            }
        };
        for (key, vars) in patterns {
            let pattern = self.name(key, "host")?;
            let names = expand_host_pattern(&pattern)
                .map_err(|message| self.shape(key, format!("host `{pattern}`: {message}")))?;
            let given = self.ansible_host(&pattern, vars)?;
            let local = is_local(vars);
            for name in names {
                if local {
                    fleet.local.insert(name.clone());
                }
                fleet.hosts.entry(name).or_default().extend(given.clone());
            }
        }
        Ok(())
    }

    /// The `ansible_host` among a host's vars, if it sets one.
    fn ansible_host(
        &self,
        host: &str,
        vars: &MarkedYaml<'_>,
    ) -> Result<Option<String>, InventoryError> {
        let YamlData::Mapping(vars) = &untag(vars).data else {
            return Ok(None);
        };
        for (key, value) in vars {
            if untag(key).data.as_str() == Some("ansible_host") {
                return match &untag(value).data {
                    YamlData::Value(Scalar::String(s)) => Ok(Some(s.trim().to_owned())),
                    _ => Err(self.shape(
                        value,
                        format!("the `ansible_host` of host `{host}` must be a string"),
                    )),
                };
            }
        }
        Ok(None)
    }

    /// A group or host name: a string, or an integer that Ansible would read as one.
    fn name(&self, node: &MarkedYaml<'_>, what: &str) -> Result<String, InventoryError> {
        match &untag(node).data {
            YamlData::Value(Scalar::String(s)) => Ok(s.to_string()),
            YamlData::Value(Scalar::Integer(i)) => Ok(i.to_string()),
            _ => Err(self.shape(node, format!("a {what} name must be a string"))),
        }
    }
}

/// Whether a host's vars say `ansible_connection: local`.
fn is_local(vars: &MarkedYaml<'_>) -> bool {
    let YamlData::Mapping(vars) = &untag(vars).data else {
        return false;
    };
    vars.iter().any(|(key, value)| {
        untag(key).data.as_str() == Some("ansible_connection")
            && untag(value).data.as_str() == Some("local")
    })
}

/// The node under a YAML tag (tags do not change an inventory's structure).
fn untag<'a, 'input>(node: &'a MarkedYaml<'input>) -> &'a MarkedYaml<'input> {
    match &node.data {
        YamlData::Tagged(_, inner) => untag(inner),
        _ => node,
    }
}

/// The host names a pattern stands for, as Ansible's `parse_address` and `expand_hostname_range`
/// read it: a trailing `:port` is dropped, each `[begin:end]` or `[begin:end:step]` range
/// (numeric, zero-padded when `begin` is, or single letters) is expanded.
pub(crate) fn expand_host_pattern(pattern: &str) -> Result<Vec<String>, String> {
    let names = expand_ranges(strip_port(pattern))?;
    if names.len() > MAX_EXPANSION {
        return Err(format!("expands to more than {MAX_EXPANSION} hosts"));
    }
    Ok(names)
}

/// `name:port` → `name`. A colon inside `[...]` belongs to a range, and an address with more than
/// one colon outside brackets is IPv6, which has no port suffix.
fn strip_port(pattern: &str) -> &str {
    let mut depth = 0usize;
    let mut colons = Vec::new();
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    if let [colon] = colons[..] {
        let (name, port) = (&pattern[..colon], &pattern[colon + 1..]);
        if !name.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return name;
        }
    }
    pattern
}

fn expand_ranges(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_owned()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or("unclosed `[`")?;
    let (head, range, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let values = range_values(range)?;
    let tails = expand_ranges(tail)?;
    if values.len().saturating_mul(tails.len()) > MAX_EXPANSION {
        return Err(format!("expands to more than {MAX_EXPANSION} hosts"));
    }
    let mut names = Vec::with_capacity(values.len() * tails.len());
    for value in &values {
        for tail in &tails {
            names.push(format!("{head}{value}{tail}"));
        }
    }
    Ok(names)
}

/// The values of one range, `begin:end` or `begin:end:step`.
fn range_values(range: &str) -> Result<Vec<String>, String> {
    let bad = || format!("`[{range}]` is not a host range (begin:end or begin:end:step)");
    let parts: Vec<&str> = range.split(':').collect();
    let (begin, end, step) = match parts[..] {
        [begin, end] => (begin, end, 1),
        [begin, end, step] => (begin, end, step.parse::<usize>().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    if step == 0 {
        return Err(bad());
    }
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let is_letter = |s: &str| s.len() == 1 && s.bytes().all(|b| b.is_ascii_alphabetic());
    if is_letter(begin) && is_letter(end) {
        // Ansible's order is `string.ascii_letters`: a-z then A-Z.
        const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let (b, e) = (
            LETTERS.find(begin).ok_or_else(bad)?,
            LETTERS.find(end).ok_or_else(bad)?,
        );
        if b > e {
            return Err(format!("`[{range}]` must have begin <= end"));
        }
        return Ok(LETTERS[b..=e]
            .chars()
            .step_by(step)
            .map(String::from)
            .collect());
    }
    if !(is_number(begin) && is_number(end)) {
        return Err(bad());
    }
    let (b, e) = (
        begin.parse::<u64>().map_err(|_| bad())?,
        end.parse::<u64>().map_err(|_| bad())?,
    );
    if b > e {
        return Err(format!("`[{range}]` must have begin <= end"));
    }
    if (e - b) / step as u64 >= MAX_EXPANSION as u64 {
        return Err(format!("expands to more than {MAX_EXPANSION} hosts"));
    }
    // A zero-padded begin fixes the width, and then end must be written with the same width.
    let width = if begin.len() > 1 && begin.starts_with('0') {
        if end.len() != begin.len() {
            return Err(format!(
                "`[{range}]` must write begin and end with the same width"
            ));
        }
        begin.len()
    } else {
        0
    };
    Ok((b..=e)
        .step_by(step)
        .map(|n| format!("{n:0width$}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::{expand_host_pattern, host_names};

    fn names(text: &str) -> Vec<String> {
        host_names("hosts.yml", text).unwrap().into_iter().collect()
    }

    #[test]
    fn all_with_hosts_and_nested_children() {
        let text = "
all:
  hosts:
    askari:
      ansible_host: 192.0.2.10
  vars:
    ignored: [not, a, host]
  children:
    offsite_hosts:
      hosts:
        kiboko: {}
        simba:
      children:
        deep:
          hosts: {twiga: null}
    empty_group:
    only_vars:
      vars: {hosts: not-a-host}
";
        assert_eq!(names(text), ["askari", "kiboko", "simba", "twiga"]);
    }

    #[test]
    fn top_level_groups_without_all() {
        assert_eq!(
            names("web:\n  hosts:\n    a:\ndb:\n  hosts: {b: {}}\n"),
            ["a", "b"]
        );
    }

    #[test]
    fn empty_inventory_has_no_hosts() {
        assert!(names("").is_empty());
        assert!(names("all:\n").is_empty());
    }

    #[test]
    fn tags_and_integer_names() {
        assert_eq!(
            names("all:\n  hosts:\n    !custom h1:\n    42:\n"),
            ["42", "h1"]
        );
    }

    #[test]
    fn anchors_are_followed() {
        let text = "all:\n  children:\n    a: &g\n      hosts: {x: }\n    b: *g\n";
        assert_eq!(names(text), ["x"]);
    }

    #[test]
    fn patterns_expand_like_ansible() {
        let e = |p: &str| expand_host_pattern(p).unwrap();
        assert_eq!(e("askari"), ["askari"]);
        assert_eq!(e("askari:2222"), ["askari"]);
        assert_eq!(e("web[1:3]"), ["web1", "web2", "web3"]);
        assert_eq!(
            e("web[08:10].example:22"),
            ["web08.example", "web09.example", "web10.example"]
        );
        assert_eq!(e("n[0:6:3]"), ["n0", "n3", "n6"]);
        assert_eq!(e("db-[a:c]"), ["db-a", "db-b", "db-c"]);
        assert_eq!(e("[a:b][1:2]"), ["a1", "a2", "b1", "b2"]);
        assert_eq!(e("fe80::1"), ["fe80::1"]);
        for bad in [
            "web[1:]",
            "web[3:1]",
            "web[01:100]",
            "web[1",
            "web[x]",
            "web[1:9:0]",
            "w[0:99999999]",
        ] {
            assert!(expand_host_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn structure_that_could_hide_hosts_is_an_error() {
        let err = |t: &str| {
            host_names("inventories/production/hosts.yml", t)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("all:\n  children:\n    web:\n      hosts: [a, b]\n"),
            "inventories/production/hosts.yml:4:14: `hosts` of group `web` must be a mapping of host names"
        );
        assert_eq!(
            err("all:\n  hosts:\n    [a]: {}\n"),
            "inventories/production/hosts.yml:3:5: a host name must be a string"
        );
        assert!(err("- a\n- b\n").contains("the top level must be a mapping of group names"));
        assert!(err("all: [a]\n").contains("group `all` must be a mapping"));
        assert!(err("all:\n  hosts: {a: }\n---\nb:\n").contains("one yaml document"));
        assert!(err("all:\n  hosts:\n    a: {\n").contains("malformed yaml"));
        assert!(
            err("all:\n  hosts:\n    w[1:]:\n")
                .contains("host `w[1:]`: `[1:]` is not a host range")
        );
    }

    #[test]
    fn fleet_addresses_come_from_ansible_host_or_a_literal_name() {
        let text = "\
all:
  children:
    offsite:
      hosts:
        askari: {ansible_host: 77.42.120.136}
        kiboko:
          ansible_host: kiboko.example.net
        10.1.2.3:
        twiga: {ansible_connection: local}
        tembo:
        v6: {ansible_host: '2001:db8::7'}
    again:
      hosts:
        askari: {ansible_host: 77.42.120.137}
";
        let fleet = super::fleet("hosts.yml", text).unwrap();
        let addresses: Vec<String> = fleet.addresses().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            addresses,
            ["10.1.2.3", "77.42.120.136", "77.42.120.137", "2001:db8::7"]
        );
        assert_eq!(
            fleet.named_only(),
            [
                ("kiboko".to_owned(), "kiboko.example.net".to_owned()),
                ("tembo".to_owned(), "tembo".to_owned()),
            ]
        );
        let err = super::fleet("hosts.yml", "all:\n  hosts:\n    a: {ansible_host: [x]}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "hosts.yml:3:23: the `ansible_host` of host `a` must be a string"
        );
    }
}
