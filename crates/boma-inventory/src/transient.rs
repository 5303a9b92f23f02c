//! The transient inventory: one `hosts.yml` holding exactly one host, the test VM, and the
//! directory around it that borrows the real inventory's `group_vars`.
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
    let placement = Placement::of(host.groups, host.group_parents, &vm)?;
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
            placement.render(&mut text, 4, group, &name);
        }
    }
    Ok(HostsYml { vm, text })
}

/// The groups the VM is rendered in, and how they nest.
struct Placement<'a> {
    /// The profile's groups: they list the VM under `hosts`.
    listing: BTreeSet<&'a str>,
    /// Group → the groups it lists under `children` (among the listing groups and their
    /// ancestors).
    children: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// The groups with no parent but `all`.
    top: BTreeSet<&'a str>,
}

impl<'a> Placement<'a> {
    fn of(
        groups: &'a [String],
        parents: &'a BTreeMap<String, BTreeSet<String>>,
        vm: &VmName,
    ) -> Result<Placement<'a>, Refusal> {
        let refuse = |group: &str| {
            Err(Refusal::BadGroup {
                group: group.to_owned(),
            })
        };
        for group in groups {
            // `all` and `ungrouped` are implicit; a group named like the VM would shadow it.
            if group.is_empty() || is_implicit(group) || group == vm.as_str() {
                return refuse(group);
            }
        }
        let listing: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
        let mut members = listing.clone();
        for group in groups {
            members.extend(ancestors_in(parents, group));
        }
        let mut children: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut top = BTreeSet::new();
        for &group in &members {
            if group.is_empty() || group == vm.as_str() {
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

    /// `group` at `indent` spaces: the VM if it lists it, then its child groups, each in full.
    /// Ends, as the hierarchy has no cycle.
    fn render(&self, text: &mut String, indent: usize, group: &str, vm: &str) {
        let pad = " ".repeat(indent);
        text.push_str(&format!("{pad}{}:\n", quote(group)));
        if self.listing.contains(group) {
            text.push_str(&format!("{pad}  hosts:\n{pad}    {vm}: {{}}\n"));
        }
        if let Some(children) = self.children.get(group) {
            text.push_str(&format!("{pad}  children:\n"));
            for child in children {
                self.render(text, indent + 4, child, vm);
            }
        }
    }
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
    std::fs::write(&partial, hosts.as_str()).map_err(io_err(&partial))?;
    std::fs::rename(&partial, &hosts_yml).map_err(io_err(&hosts_yml))?;
    Ok(())
}
