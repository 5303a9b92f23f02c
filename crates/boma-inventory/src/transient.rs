//! The transient inventory: one `hosts.yml` holding exactly one host, the test VM, and the
//! directory around it that borrows the real inventory's `group_vars` — or, for a fleet run,
//! exactly its members ([`render_members_yml`]).
//!
//! The VM is in the groups the real host is in: the profile's groups, and every group above them
//! in the real inventory, nested as there (a parent lists its child groups under `children`), so
//! that plays aimed at a parent group reach the VM and group variables take the precedence they
//! take in production, where it follows a group's depth.
//!
//! Its safety rests on the VM's name (`boma_name::VmName`): it looks like a test VM
//! (`boma-it-…`), is a plain host name (so that `--limit <vm>` is a name, not an Ansible
//! pattern), and is none of the real hosts (so that no real host's `host_vars`, cached facts or
//! habits attach to it). [`HostsYml`] can only be rendered from a [`VmName`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use boma_name::VmName;
use camino::{Utf8Path, Utf8PathBuf};

use crate::real::{PRODUCTION_DIR, ancestors_in, is_implicit};
use boma_yaml::quote;

/// Why a transient inventory was not rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refusing group `{group}`: not a usable ansible group for the test vm")]
    BadGroup { group: String },
    #[error(
        "refusing fleet member `{name}`: a member's inventory name is letters, digits, `-`, `_` and `.`, not starting with `-` or `.`, at most 63 characters, and not `all` or `ungrouped`"
    )]
    BadMember { name: String },
    #[error("refusing fleet member `{name}`: it is listed twice")]
    TwiceListed { name: String },
    #[error("refusing an inventory of no fleet member")]
    NoMember,
    #[error(
        "refusing `{var}` for fleet member `{member}`: a host variable here is a plain name (letters, digits, `_`) with a value ansible does not read as a template"
    )]
    BadHostVar { member: String, var: String },
    #[error(
        "refusing group `{group}`: the real inventory makes it a child of itself (a cycle of \
         `children`), which ansible refuses too: break the cycle in the real inventory"
    )]
    GroupCycle { group: String },
}

/// The test VM as the transient inventory lists it. How Ansible reaches it is not the
/// inventory's business: the connection file, the last `-e @file` of every run, says it
/// ([`crate::render_connection_vars`]).
#[derive(Debug, Clone, Copy)]
pub struct TransientHost<'a> {
    pub vm: &'a VmName,
    /// The profile's groups, so the VM gets their `group_vars`.
    pub groups: &'a [String],
    /// The real inventory's hierarchy above `groups`: group → its parent groups
    /// ([`crate::Fleet::lineage`]), so the VM is in every group the real host is in through
    /// them. Entries above none of `groups` are not rendered.
    pub group_parents: &'a BTreeMap<String, BTreeSet<String>>,
}

/// A rendered `hosts.yml`, and the one VM it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsYml {
    vm: VmName,
    text: String,
}

impl HostsYml {
    pub fn vm(&self) -> &VmName {
        &self.vm
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Renders `hosts.yml` with the VM as its only host, listed in each of `host.groups`, with no
/// variables of its own. Each ancestor of those groups in `host.group_parents` lists its child
/// groups under `children`, nested as in the real inventory (a group under several parents
/// appears under each), and the topmost sit under `all`. Refuses an implicit or empty group, one
/// named like the VM, and a cycle.
pub fn render_hosts_yml(host: &TransientHost<'_>) -> Result<HostsYml, Refusal> {
    let vm = host.vm.clone();
    let placement = Placement::of(&[(vm.as_str(), host.groups)], host.group_parents)?;
    let name = quote(vm.as_str());

    let mut text = String::from(
        "# Transient inventory of one boma integration-test vm, rendered for this run only.\n\
         # Its connection is the harness's connection file, the last -e of every run.\n",
    );
    text.push_str("all:\n  hosts:\n");
    text.push_str(&format!("    {name}: {{}}\n"));
    if !placement.top.is_empty() {
        text.push_str("  children:\n");
        for group in &placement.top {
            placement.render(&mut text, 4, group);
        }
    }
    Ok(HostsYml { vm, text })
}

/// The groups the hosts are rendered in, and how they nest.
struct Placement<'a> {
    /// Each host's groups (the profile's): group → the hosts it lists under `hosts`, in the
    /// hosts' order.
    listing: BTreeMap<&'a str, Vec<&'a str>>,
    /// Group → the groups it lists under `children` (among the listing groups and their
    /// ancestors).
    children: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// The groups with no parent but `all`.
    top: BTreeSet<&'a str>,
}

impl<'a> Placement<'a> {
    /// `hosts`: each host's name and groups.
    fn of(
        hosts: &[(&'a str, &'a [String])],
        parents: &'a BTreeMap<String, BTreeSet<String>>,
    ) -> Result<Placement<'a>, Refusal> {
        let refuse = |group: &str| {
            Err(Refusal::BadGroup {
                group: group.to_owned(),
            })
        };
        // A group named like a host would shadow it (and `--limit` would mean both).
        let named_like_a_host = |group: &str| hosts.iter().any(|(host, _)| *host == group);
        let mut listing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (host, groups) in hosts {
            for group in groups.iter() {
                // `all` and `ungrouped` are implicit.
                if group.is_empty() || is_implicit(group) || named_like_a_host(group) {
                    return refuse(group);
                }
                let listed = listing.entry(group.as_str()).or_default();
                if !listed.contains(host) {
                    listed.push(host);
                }
            }
        }
        let mut members: BTreeSet<&str> = listing.keys().copied().collect();
        for group in listing.keys() {
            members.extend(ancestors_in(parents, group));
        }
        let mut children: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut top = BTreeSet::new();
        for &group in &members {
            if group.is_empty() || named_like_a_host(group) {
                return refuse(group);
            }
            // Nesting a group inside itself would never end; Ansible refuses it as well.
            if ancestors_in(parents, group).contains(group) {
                return Err(Refusal::GroupCycle {
                    group: group.to_owned(),
                });
            }
            let mut has_parent = false;
            let above = parents.get(group).into_iter().flatten();
            for parent in above.filter(|parent| !is_implicit(parent)) {
                children.entry(parent).or_default().insert(group);
                has_parent = true;
            }
            if !has_parent {
                top.insert(group);
            }
        }
        Ok(Placement {
            listing,
            children,
            top,
        })
    }

    /// `group` at `indent` spaces: the hosts it lists, then its child groups, each in full.
    /// Ends, as the hierarchy has no cycle.
    fn render(&self, text: &mut String, indent: usize, group: &str) {
        let pad = " ".repeat(indent);
        text.push_str(&format!("{pad}{}:\n", quote(group)));
        if let Some(hosts) = self.listing.get(group) {
            text.push_str(&format!("{pad}  hosts:\n"));
            for host in hosts {
                text.push_str(&format!("{pad}    {}: {{}}\n", quote(host)));
            }
        }
        if let Some(children) = self.children.get(group) {
            text.push_str(&format!("{pad}  children:\n"));
            for child in children {
                self.render(text, indent + 4, child);
            }
        }
    }
}

/// A fleet member's inventory name: the name the host has in production (`askari`), under
/// which roles see it (`inventory_hostname`, `groups`, `hostvars`). Not a test VM's name:
/// nothing in a fleet run's inventory proves by its name that it is no real host — what a
/// fleet run's Ansible reaches rests on the connection wrapper, whose table maps only the
/// members' names and fleet addresses to their VMs. The only constructor is the check: a plain
/// host name (letters, digits, `-`, `_`, `.`), so that `--limit a,b` is a list of names, not
/// an Ansible pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberName(String);

impl MemberName {
    pub fn checked(name: &str) -> Result<MemberName, Refusal> {
        let plain = !name.is_empty()
            && name.len() <= boma_name::MAX_LEN
            && !name.starts_with(['-', '.'])
            && !is_implicit(name)
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if plain {
            Ok(MemberName(name.to_owned()))
        } else {
            Err(Refusal::BadMember {
                name: name.to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MemberName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fleet member as the transient inventory lists it.
#[derive(Debug, Clone, Copy)]
pub struct TransientMember<'a> {
    pub name: &'a MemberName,
    /// Its profile's groups.
    pub groups: &'a [String],
    /// Its host variables: the fleet address it is reached at (`boma_fleet::member_host_vars`:
    /// `ansible_host` and `boma_fleet_address`), so that a role templating a peer's address
    /// from `hostvars` gets the peer VM's. Nothing else: its connection is the harness's
    /// connection file, the last `-e` of every run.
    pub vars: &'a BTreeMap<&'a str, String>,
}

/// A rendered fleet `hosts.yml`, and the members it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersYml {
    members: Vec<MemberName>,
    text: String,
}

impl MembersYml {
    /// The members, in the order given.
    pub fn members(&self) -> &[MemberName] {
        &self.members
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Renders a fleet run's `hosts.yml`: exactly `members`, each under its real inventory name
/// with its host variables, each in its profile's groups and their lineage in the real
/// inventory (`group_parents`: the union of the members' [`crate::Fleet::lineage`]), nested as
/// [`render_hosts_yml`] nests one VM's. Refuses no member, a member listed twice, a group
/// [`render_hosts_yml`] refuses or named like a member, a variable that is not a plain name or
/// whose value Ansible would template.
pub fn render_members_yml(
    members: &[TransientMember<'_>],
    group_parents: &BTreeMap<String, BTreeSet<String>>,
) -> Result<MembersYml, Refusal> {
    if members.is_empty() {
        return Err(Refusal::NoMember);
    }
    let mut seen = BTreeSet::new();
    for member in members {
        if !seen.insert(member.name) {
            return Err(Refusal::TwiceListed {
                name: member.name.to_string(),
            });
        }
        for (var, value) in member.vars {
            let plain = var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let template = ["{{", "{%", "{#"].iter().any(|d| value.contains(d));
            if !plain || template {
                return Err(Refusal::BadHostVar {
                    member: member.name.to_string(),
                    var: (*var).to_owned(),
                });
            }
        }
    }
    let hosts: Vec<(&str, &[String])> = members
        .iter()
        .map(|m| (m.name.as_str(), m.groups))
        .collect();
    let placement = Placement::of(&hosts, group_parents)?;
    let mut text = String::from(
        "# Transient inventory of a boma fleet run's members, rendered for this run only.\n\
         # Their connection is the harness's connection file, the last -e of every run.\n",
    );
    text.push_str("all:\n  hosts:\n");
    for member in members {
        if member.vars.is_empty() {
            text.push_str(&format!("    {}: {{}}\n", quote(member.name.as_str())));
            continue;
        }
        text.push_str(&format!("    {}:\n", quote(member.name.as_str())));
        for (var, value) in member.vars {
            text.push_str(&format!("      {var}: {}\n", quote(value)));
        }
    }
    if !placement.top.is_empty() {
        text.push_str("  children:\n");
        for group in &placement.top {
            placement.render(&mut text, 4, group);
        }
    }
    Ok(MembersYml {
        members: members.iter().map(|m| m.name.clone()).collect(),
        text,
    })
}

/// Why the inventory directory was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path} is not a directory: the test vm needs the real inventory's group vars")]
    NoGroupVars { path: Utf8PathBuf },
    #[error("refusing to touch {path}: it exists and is not a symlink to {expected}")]
    ForeignGroupVars {
        path: Utf8PathBuf,
        expected: Utf8PathBuf,
    },
    #[error("cannot write {path}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes `<dir>/hosts.yml` and links `<dir>/group_vars` to the real inventory's `group_vars`
/// (linked, not copied, so the VM sees exactly what production sees). An existing `group_vars`
/// that is anything but that link is left alone and refused.
pub fn write_inventory_dir(
    dir: &Utf8Path,
    repo_root: &Utf8Path,
    hosts: &HostsYml,
) -> Result<(), WriteError> {
    write_dir(dir, repo_root, hosts.as_str())
}

/// [`write_inventory_dir`] for a fleet run's members.
pub fn write_members_dir(
    dir: &Utf8Path,
    repo_root: &Utf8Path,
    members: &MembersYml,
) -> Result<(), WriteError> {
    write_dir(dir, repo_root, members.as_str())
}

fn write_dir(dir: &Utf8Path, repo_root: &Utf8Path, hosts: &str) -> Result<(), WriteError> {
    let io_err = |path: &Utf8Path| {
        let path = path.to_owned();
        move |source| WriteError::Io { path, source }
    };
    // The link must not depend on where it is read from.
    let repo_root = std::path::absolute(repo_root).map_err(io_err(repo_root))?;
    let repo_root = Utf8PathBuf::try_from(repo_root).map_err(|e| {
        let path = Utf8PathBuf::from(e.as_path().to_string_lossy().into_owned());
        WriteError::Io {
            path,
            source: e.into_io_error(),
        }
    })?;
    let target = repo_root.join(PRODUCTION_DIR).join("group_vars");
    if !target.is_dir() {
        return Err(WriteError::NoGroupVars { path: target });
    }

    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let link = dir.join("group_vars");
    match link.symlink_metadata() {
        Ok(meta) => {
            let ours = meta.is_symlink() && link.read_link_utf8().is_ok_and(|t| t == target);
            if !ours {
                return Err(WriteError::ForeignGroupVars {
                    path: link,
                    expected: target,
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::os::unix::fs::symlink(&target, &link).map_err(io_err(&link))?;
        }
        Err(source) => return Err(WriteError::Io { path: link, source }),
    }

    // Written aside and renamed, so that no reader ever sees half an inventory.
    let hosts_yml = dir.join("hosts.yml");
    let partial = dir.join("hosts.yml.part");
    std::fs::write(&partial, hosts).map_err(io_err(&partial))?;
    std::fs::rename(&partial, &hosts_yml).map_err(io_err(&hosts_yml))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fleet;

    const SAMPLE: &str = include_str!("../tests/fixtures/inventories/sample.json");

    fn member(name: &str) -> MemberName {
        MemberName::checked(name).unwrap()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn fleet_vars(address: &str) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("ansible_host", address.to_owned()),
            ("boma_fleet_address", address.to_owned()),
        ])
    }

    /// Two members in the sample inventory's hierarchy: askari in `offsite_hosts`, simba in
    /// `nas_hosts` (under `home_hosts`, itself under `docker_hosts`, and under `backup_hosts`).
    fn two_members() -> MembersYml {
        let real = Fleet::from_ansible_list(SAMPLE).unwrap();
        let (askari, simba) = (member("askari"), member("simba"));
        let (askari_groups, simba_groups) = (strings(&["offsite_hosts"]), strings(&["nas_hosts"]));
        let (askari_vars, simba_vars) = (fleet_vars("10.231.0.10"), fleet_vars("10.231.0.11"));
        let all_groups = strings(&["offsite_hosts", "nas_hosts"]);
        render_members_yml(
            &[
                TransientMember {
                    name: &askari,
                    groups: &askari_groups,
                    vars: &askari_vars,
                },
                TransientMember {
                    name: &simba,
                    groups: &simba_groups,
                    vars: &simba_vars,
                },
            ],
            &real.lineage(&all_groups),
        )
        .unwrap()
    }

    #[test]
    fn members_yml_snapshot() {
        let members = two_members();
        assert_eq!(members.members(), [member("askari"), member("simba")]);
        insta::assert_snapshot!("members_yml_two_members", members.as_str());
    }

    /// Each member is where its profile's groups put it, under its real name, with its fleet
    /// address as its host variables — and nowhere else.
    #[test]
    fn each_member_is_in_its_own_groups_and_their_lineage_only() {
        use saphyr::{LoadableYamlNode as _, Yaml};
        let members = two_members();
        let docs = Yaml::load_from_str(members.as_str()).unwrap();
        let doc = &docs[0];
        let all = &doc["all"];
        let hosts = all["hosts"].as_mapping().unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(
            all["hosts"]["simba"]["boma_fleet_address"].as_str(),
            Some("10.231.0.11")
        );
        assert_eq!(
            all["hosts"]["askari"]["ansible_host"].as_str(),
            Some("10.231.0.10")
        );
        let lists = |path: &[&str], host: &str| {
            let mut node = all;
            for key in path {
                node = &node[*key];
            }
            node["hosts"].as_mapping_get(host).is_some()
        };
        let offsite = ["children", "docker_hosts", "children", "offsite_hosts"];
        let nas = ["children", "backup_hosts", "children", "nas_hosts"];
        assert!(lists(&offsite, "askari") && !lists(&offsite, "simba"));
        assert!(lists(&nas, "simba") && !lists(&nas, "askari"));
    }

    #[test]
    fn a_single_vms_inventory_is_the_members_renderer_of_one_host_without_variables() {
        let real = Fleet::from_ansible_list(SAMPLE).unwrap();
        let groups = strings(&["nas_hosts", "offsite_hosts"]);
        let vm = VmName::parse("boma-it-askari-1").unwrap();
        let single = render_hosts_yml(&TransientHost {
            vm: &vm,
            groups: &groups,
            group_parents: &real.lineage(&groups),
        })
        .unwrap();
        let name = member("boma-it-askari-1");
        let none = BTreeMap::new();
        let members = render_members_yml(
            &[TransientMember {
                name: &name,
                groups: &groups,
                vars: &none,
            }],
            &real.lineage(&groups),
        )
        .unwrap();
        let body = |text: &str| text.lines().skip(2).collect::<Vec<_>>().join("\n");
        assert_eq!(body(members.as_str()), body(single.as_str()));
    }

    #[test]
    fn what_is_not_a_member_or_its_variable_is_refused() {
        for bad in [
            "",
            "-x",
            ".x",
            "a b",
            "a,b",
            "a:b",
            "web*",
            "all",
            "ungrouped",
            "é",
        ] {
            assert_eq!(
                MemberName::checked(bad),
                Err(Refusal::BadMember { name: bad.into() }),
                "{bad:?}"
            );
        }
        assert!(MemberName::checked(&"x".repeat(64)).is_err());
        for good in ["askari", "web-01", "db_2", "node.lan", "catf-boot-order-a"] {
            assert!(MemberName::checked(good).is_ok(), "{good}");
        }
        let none = BTreeMap::new();
        let groups = strings(&["web"]);
        let a = member("a");
        let plain = TransientMember {
            name: &a,
            groups: &groups,
            vars: &none,
        };
        let parents = BTreeMap::new();
        assert_eq!(render_members_yml(&[], &parents), Err(Refusal::NoMember));
        assert_eq!(
            render_members_yml(&[plain, plain], &parents),
            Err(Refusal::TwiceListed { name: "a".into() })
        );
        // A group named like a member would make `--limit a` mean the group too.
        let b = member("web");
        let named_like_a_group = TransientMember {
            name: &b,
            groups: &groups,
            vars: &none,
        };
        assert_eq!(
            render_members_yml(&[plain, named_like_a_group], &parents),
            Err(Refusal::BadGroup {
                group: "web".into()
            })
        );
        for (var, value) in [
            ("ansible-host", "10.231.0.10"),
            ("1st", "x"),
            ("boma_fleet_address", "{{ lookup('env', 'PROD') }}"),
        ] {
            let vars = BTreeMap::from([(var, value.to_owned())]);
            let templated = TransientMember {
                name: &a,
                groups: &groups,
                vars: &vars,
            };
            assert_eq!(
                render_members_yml(&[templated], &parents),
                Err(Refusal::BadHostVar {
                    member: "a".into(),
                    var: var.into()
                }),
                "{var}"
            );
        }
    }
}
