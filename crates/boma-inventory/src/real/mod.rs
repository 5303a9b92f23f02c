//! The hosts of the real (production) inventory: their names, so that the transient inventory can
//! prove its one host is none of them, and their addresses, so that a test VM can be given no
//! route to any of them.
//!
//! The inventory directory is read as `ansible-playbook -i inventories/production/` reads it, and
//! no file Ansible would take hosts from is ever skipped: it is read, or refused with its name
//! and the fix. For every entry, recursively (Ansible descends into subdirectories):
//!
//! - ignored, as Ansible ignores it in a directory source: hidden names, `group_vars`,
//!   `host_vars`, `vars_plugins`, and names ending in one of [`IGNORED_SUFFIXES`]
//!   (ansible-core's `INVENTORY_IGNORE_EXTS` default: `REJECT_EXTS` plus `.orig`, `.cfg`,
//!   `.retry`). `.ini` is *not* ignored: ansible-core up to 2.18 skips `*.ini` in a directory,
//!   2.19 reads it (ansible/ansible#84001), and an operator may point `-i` at the file itself.
//!   Unlike ansible-core, `INVENTORY_IGNORE_EXTS`/`INVENTORY_IGNORE_PATTERNS` set in a config or
//!   the environment are not consulted: the repo's `ansible.cfg` sets neither.
//! - refused: an executable file or one starting with `#!` (Ansible runs it as an inventory
//!   script, whose hosts cannot be known without running it), `*.toml`, a YAML file holding
//!   `plugin:` (an inventory plugin's configuration: its hosts come from elsewhere), and
//!   anything that is neither a file nor a directory.
//! - read as YAML: `*.yml`, `*.yaml`, `*.json` (Ansible's `yaml` plugin; [`fleet`]).
//! - read as INI: any other name ([`ini_fleet`]). A file without an extension is YAML when it
//!   loads as a YAML mapping, INI otherwise, as Ansible tries its `yaml` plugin first.
//!
//! A host of the real inventory named like a test VM (`boma-it-…`, in any case) is refused too:
//! then the shape of a name alone proves it is not a real host.
//!
//! `ansible_host` set in `host_vars/` or `group_vars/` is not seen: addresses belong in the
//! inventory files, where this repo keeps them.
//!
//! The group hierarchy is read too (YAML `children`, INI `[group:children]`): a test VM placed in
//! a profile's groups must also be in every group the real host is in through them
//! ([`Fleet::ancestors`], [`Fleet::lineage`]).

mod ini;
mod pattern;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;

use camino::{Utf8Path, Utf8PathBuf};

pub use ini::ini_fleet;
pub(crate) use pattern::expand_host_pattern;
pub use yaml::{fleet, host_names};

/// The real inventory, relative to the repo root.
pub const PRODUCTION_DIR: &str = "inventories/production";

/// Name endings Ansible ignores in an inventory directory: ansible-core's `REJECT_EXTS`
/// (`.pyc`, `.pyo`, `.swp`, `.bak`, `~`, `.rpm`, `.md`, `.txt`, `.rst`) and what
/// `INVENTORY_IGNORE_EXTS` adds to it (`.orig`, `.cfg`, `.retry`; its `.ini` is left out, see
/// the module docs). Editor backups (`hosts.ini~`) end in `~`.
pub const IGNORED_SUFFIXES: [&str; 12] = [
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
];

/// Names Ansible never reads as inventory sources, whatever their suffix.
const IGNORED_NAMES: [&str; 3] = ["group_vars", "host_vars", "vars_plugins"];

/// Deeper than this is a symlink loop, not an inventory.
const MAX_DEPTH: usize = 16;

/// Why the real inventory's hosts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{file}:{line}:{column}: malformed yaml: {message}")]
    Malformed {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A YAML inventory that does not have the shape of one.
    #[error("{file}:{line}:{column}: {message}")]
    Shape {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// An INI inventory line Ansible's `ini` plugin would reject.
    #[error("{file}:{line}: {message}")]
    Ini {
        file: String,
        line: usize,
        message: String,
    },
    /// A file Ansible would read hosts from, but the harness cannot.
    #[error("{file} {reason}")]
    Unreadable { file: String, reason: String },
    /// A real host named like a test VM.
    #[error(
        "{at}: host `{host}` is named like a test vm \
         (`{prefix}…`): rename it there, so that a name's shape alone proves a test vm is no \
         real host",
        prefix = boma_name::PREFIX
    )]
    NamedLikeTestVm { at: String, host: String },
    #[error("no inventory files in {dir}")]
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
    /// `ansible_host` set for a whole group (its `vars`), which its hosts inherit unless they
    /// set their own: group → values.
    group_hosts: BTreeMap<String, BTreeSet<String>>,
    /// Where each host is first defined, as `file:line`, for messages.
    defined_at: BTreeMap<String, String>,
    /// Group → the groups that list it under `children`, as written (`all` included when a file
    /// says so; a group may have several).
    parents: BTreeMap<String, BTreeSet<String>>,
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
    /// static route can stand for them, so the caller says they are not covered. A name set for
    /// a whole group is listed as `group <name>`.
    pub fn named_only(&self) -> Vec<(String, String)> {
        self.targets()
            .filter(|(_, target)| target.parse::<IpAddr>().is_err())
            .map(|(host, target)| (host.into_owned(), target.to_owned()))
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
    /// written, for the renderer to refuse.
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

    /// (host, what Ansible connects to) for every host reached over a network: each given
    /// `ansible_host`, or the name itself when none is given; then each group's `ansible_host`.
    fn targets(&self) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, &str)> {
        let hosts = self
            .hosts
            .iter()
            .filter(|(host, _)| !self.local.contains(*host))
            .flat_map(|(host, given)| {
                let itself = given.is_empty().then_some(host.as_str());
                given
                    .iter()
                    .map(String::as_str)
                    .chain(itself)
                    .map(move |target| (host.as_str().into(), target))
            });
        let groups = self.group_hosts.iter().flat_map(|(group, given)| {
            given
                .iter()
                .map(move |target| (format!("group {group}").into(), target.as_str()))
        });
        hosts.chain(groups)
    }

    /// Record host `name`, defined at `at` (`file:line`), with the `ansible_host` it sets.
    fn add_host(&mut self, name: String, at: String, given: Option<&str>, local: bool) {
        if local {
            self.local.insert(name.clone());
        }
        self.defined_at.entry(name.clone()).or_insert(at);
        self.hosts
            .entry(name)
            .or_default()
            .extend(given.map(str::to_owned));
    }

    fn add_group_host(&mut self, group: &str, given: &str) {
        self.group_hosts
            .entry(group.to_owned())
            .or_default()
            .insert(given.to_owned());
    }

    /// Record that `parent` lists `child` under its `children`.
    fn add_child(&mut self, parent: &str, child: &str) {
        self.parents
            .entry(child.to_owned())
            .or_default()
            .insert(parent.to_owned());
    }

    fn extend(&mut self, other: Fleet) {
        for (host, given) in other.hosts {
            self.hosts.entry(host).or_default().extend(given);
        }
        for (group, given) in other.group_hosts {
            self.group_hosts.entry(group).or_default().extend(given);
        }
        for (host, at) in other.defined_at {
            self.defined_at.entry(host).or_insert(at);
        }
        self.local.extend(other.local);
        for (group, parents) in other.parents {
            self.parents.entry(group).or_default().extend(parents);
        }
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

/// One file of the real inventory directory, as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryFile {
    /// How messages name it (relative to the repo root), with its extension.
    pub name: String,
    /// Any execute bit set: Ansible would run it as a script.
    pub executable: bool,
    pub text: String,
}

/// Whether Ansible skips the entry `name` of an inventory directory.
pub fn ansible_ignores(name: &str) -> bool {
    name.starts_with('.')
        || IGNORED_NAMES.contains(&name)
        || IGNORED_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

/// The hosts of one file of the real inventory, read as Ansible would read it (see the module
/// docs), or why it is refused.
pub fn inventory_file_fleet(file: &InventoryFile) -> Result<Fleet, InventoryError> {
    let name = file.name.as_str();
    let refused = |reason: &str| InventoryError::Unreadable {
        file: name.to_owned(),
        reason: reason.to_owned(),
    };
    if file.executable || file.text.starts_with("#!") {
        return Err(refused(
            "is executable or starts with `#!`, so Ansible runs it as an inventory script, whose \
             hosts the harness cannot know: remove its execute bit and `#!` line if it is a \
             static inventory, or move it out of the inventory directory",
        ));
    }
    let extension = Utf8Path::new(name).extension();
    match extension {
        Some("yml" | "yaml" | "json") => yaml_inventory(name, &file.text),
        Some("toml") => Err(refused(
            "is a TOML inventory, which the harness does not read: write it as YAML (or INI)",
        )),
        None if yaml::is_mapping(&file.text) => yaml_inventory(name, &file.text),
        _ => ini_fleet(name, &file.text),
    }
}

fn yaml_inventory(name: &str, text: &str) -> Result<Fleet, InventoryError> {
    if yaml::has_plugin_key(text) {
        return Err(InventoryError::Unreadable {
            file: name.to_owned(),
            reason: "configures an inventory plugin (`plugin:`), whose hosts the harness cannot \
                     know: keep the real hosts in static YAML or INI files"
                .to_owned(),
        });
    }
    fleet(name, text)
}

/// The fleet of the whole real inventory from its files (in the order Ansible reads them),
/// refusing a host named like a test VM.
pub fn real_fleet(files: &[InventoryFile]) -> Result<Fleet, InventoryError> {
    let mut all = Fleet::default();
    for file in files {
        all.extend(inventory_file_fleet(file)?);
    }
    if let Some((host, at)) = all
        .defined_at
        .iter()
        .find(|(host, _)| boma_name::has_test_prefix(host))
    {
        return Err(InventoryError::NamedLikeTestVm {
            at: at.clone(),
            host: host.clone(),
        });
    }
    Ok(all)
}

/// Every host name in the real inventory (see [`read_real_fleet`]).
pub fn read_real_host_names(repo_root: &Utf8Path) -> Result<BTreeSet<String>, InventoryError> {
    Ok(read_real_fleet(repo_root)?.names())
}

/// Every host of the real inventory, `inventories/production/` under `repo_root`, read as the
/// module docs say.
pub fn read_real_fleet(repo_root: &Utf8Path) -> Result<Fleet, InventoryError> {
    let dir = repo_root.join(PRODUCTION_DIR);
    let mut files = Vec::new();
    collect(repo_root, &dir, 0, &mut files)?;
    if files.is_empty() {
        // An empty set would make "the VM is none of the real hosts" vacuously true.
        return Err(InventoryError::NoFiles { dir });
    }
    real_fleet(&files)
}

/// The inventory files under `dir`, in Ansible's order (sorted names, depth first).
fn collect(
    repo_root: &Utf8Path,
    dir: &Utf8Path,
    depth: usize,
    files: &mut Vec<InventoryFile>,
) -> Result<(), InventoryError> {
    let read_err = |path: &Utf8Path| {
        let path = path.to_owned();
        move |source| InventoryError::Read { path, source }
    };
    let shown = |path: &Utf8Path| {
        path.strip_prefix(repo_root)
            .unwrap_or(path)
            .as_str()
            .to_owned()
    };
    if depth > MAX_DEPTH {
        return Err(InventoryError::Unreadable {
            file: shown(dir),
            reason: format!("is nested deeper than {MAX_DEPTH} directories: a symlink loop?"),
        });
    }
    let mut entries = Vec::new();
    for entry in dir.read_dir_utf8().map_err(read_err(dir))? {
        entries.push(entry.map_err(read_err(dir))?.path().to_owned());
    }
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap_or_default();
        if ansible_ignores(name) {
            continue;
        }
        // `metadata` follows symlinks, as Ansible does.
        let meta = path.metadata().map_err(read_err(&path))?;
        if meta.is_dir() {
            collect(repo_root, &path, depth + 1, files)?;
        } else if meta.is_file() {
            files.push(InventoryFile {
                name: shown(&path),
                executable: meta.permissions().mode() & 0o111 != 0,
                text: std::fs::read_to_string(&path).map_err(read_err(&path))?,
            });
        } else {
            return Err(InventoryError::Unreadable {
                file: shown(&path),
                reason: "is neither a file nor a directory: remove it from the inventory \
                         directory"
                    .to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansible_ignores_what_its_defaults_ignore() {
        for ignored in [
            ".hidden.yml",
            ".git",
            "group_vars",
            "host_vars",
            "vars_plugins",
            "hosts.ini~",
            "hosts~",
            "hosts.orig",
            "hosts.retry",
            "ec2.cfg",
            "README.md",
            "notes.txt",
            "x.pyc",
            "x.swp",
            "x.bak",
        ] {
            assert!(ansible_ignores(ignored), "{ignored}");
        }
        for read in [
            "hosts",
            "hosts.ini",
            "hosts.yml",
            "x.json",
            "x.toml",
            "x.inv",
        ] {
            assert!(!ansible_ignores(read), "{read}");
        }
    }

    fn file(name: &str, text: &str) -> InventoryFile {
        InventoryFile {
            name: name.to_owned(),
            executable: false,
            text: text.to_owned(),
        }
    }

    #[test]
    fn the_format_follows_the_name_and_for_a_bare_name_the_content() {
        let names = |f: &InventoryFile| inventory_file_fleet(f).unwrap().names();
        let yaml = "all:\n  hosts:\n    a:\n";
        let ini = "[all]\na\n";
        for f in [
            file("h.yml", yaml),
            file("h.yaml", yaml),
            file("h.json", r#"{"all": {"hosts": {"a": null}}}"#),
            file("hosts", yaml),
            file("hosts", ini),
            file("hosts.ini", ini),
            file("hosts.inv", ini),
            // One bare host name loads as a YAML string, not a mapping: INI, as for Ansible.
            file("hosts", "a\n"),
        ] {
            assert_eq!(names(&f), BTreeSet::from(["a".to_owned()]), "{f:?}");
        }
        // An INI file named `.yml` is read as YAML, as Ansible does, and is malformed there.
        assert!(inventory_file_fleet(&file("h.yml", "[all]\na b\n")).is_err());
    }

    #[test]
    fn scripts_plugins_and_toml_are_refused() {
        let err = |f: InventoryFile| inventory_file_fleet(&f).unwrap_err().to_string();
        let mut script = file("inventories/production/ec2", "[all]\na\n");
        script.executable = true;
        assert!(err(script).contains("runs it as an inventory script"));
        assert!(
            err(file(
                "inventories/production/ec2.py",
                "#!/usr/bin/env python3\n"
            ))
            .contains("runs it as an inventory script")
        );
        assert_eq!(
            err(file(
                "inventories/production/aws.yml",
                "plugin: amazon.aws.aws_ec2\n"
            )),
            "inventories/production/aws.yml configures an inventory \
             plugin (`plugin:`), whose hosts the harness cannot know: keep the real hosts in \
             static YAML or INI files"
        );
        assert!(err(file("h.toml", "[all.hosts.a]\n")).contains("TOML inventory"));
    }

    #[test]
    fn a_host_named_like_a_test_vm_is_refused_in_any_case() {
        let files = [
            file(
                "inventories/production/a.yml",
                "all:\n  hosts:\n    askari:\n",
            ),
            file("inventories/production/b.ini", "[lab]\n\nBOMA-IT-x1\n"),
        ];
        let err = real_fleet(&files).unwrap_err().to_string();
        assert_eq!(
            err,
            "inventories/production/b.ini:3: host `BOMA-IT-x1` is \
             named like a test vm (`boma-it-…`): rename it there, so that a name's shape alone \
             proves a test vm is no real host"
        );
        // A name that merely contains the prefix is fine.
        let files = [file("a.ini", "old-boma-it-x\nboma-i\n")];
        assert_eq!(real_fleet(&files).unwrap().names().len(), 2);
    }

    #[test]
    fn group_addresses_count_as_fleet_addresses() {
        let files = [
            file("a.ini", "[web]\nw1\n[web:vars]\nansible_host=192.0.2.7\n"),
            file(
                "b.yml",
                "db:\n  hosts:\n    d1:\n  vars:\n    ansible_host: db.example.net\n",
            ),
        ];
        let fleet = real_fleet(&files).unwrap();
        assert!(fleet.addresses().contains(&"192.0.2.7".parse().unwrap()));
        assert!(
            fleet
                .named_only()
                .contains(&("group db".to_owned(), "db.example.net".to_owned())),
            "{:?}",
            fleet.named_only()
        );
    }
}
