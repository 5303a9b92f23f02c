//! The transient inventory: one `hosts.yml` holding exactly one host, the test VM, and the
//! directory around it that borrows the real inventory's `group_vars`.
//!
//! Its safety rests on the VM's name (`boma_name::VmName`): it looks like a test VM
//! (`boma-it-…`), is a plain host name (so that `--limit <vm>` is a name, not an Ansible
//! pattern), and is none of the real hosts (so that no real host's `host_vars`, cached facts or
//! habits attach to it). [`HostsYml`] can only be rendered from a [`VmName`].

use std::collections::BTreeSet;
use std::io;

use boma_name::VmName;
use camino::{Utf8Path, Utf8PathBuf};

use crate::connection::{ConnectionValueError, VmConnection, connection_vars};
use crate::real::PRODUCTION_DIR;
use boma_yaml::quote;
/// Why a transient inventory was not rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refusing group `{group}`: not a usable ansible group for the test vm")]
    BadGroup { group: String },
    #[error("{0}")]
    Connection(#[from] ConnectionValueError),
}

/// The test VM as the transient inventory lists it, and how Ansible reaches it.
#[derive(Debug, Clone, Copy)]
pub struct TransientHost<'a> {
    pub vm: &'a VmName,
    /// The profile's groups, so the VM gets their `group_vars`.
    pub groups: &'a [String],
    /// Where ssh connects: the loopback end of QEMU's port forward.
    pub ansible_host: &'a str,
    pub ansible_port: u16,
    pub ansible_user: &'a str,
    pub ssh_private_key_file: &'a Utf8Path,
}

impl TransientHost<'_> {
    /// How Ansible reaches this host.
    pub fn connection(&self) -> VmConnection<'_> {
        VmConnection {
            host: self.ansible_host,
            port: self.ansible_port,
            user: self.ansible_user,
            ssh_private_key_file: self.ssh_private_key_file,
        }
    }
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

/// Renders `hosts.yml` with the VM as its only host, placed in each of `host.groups`, with the
/// harness's connection variables ([`crate::connection_vars`]) as its host vars: host vars
/// outrank every group var, so no `group_vars` file can move the connection. Refuses connection
/// values that [`crate::connection_vars`] refuses.
pub fn render_hosts_yml(host: &TransientHost<'_>) -> Result<HostsYml, Refusal> {
    let vm = host.vm.clone();
    for group in host.groups {
        // `all` and `ungrouped` are implicit; a group named like the VM would shadow it.
        if group.is_empty() || group == "all" || group == "ungrouped" || group == vm.as_str() {
            return Err(Refusal::BadGroup {
                group: group.clone(),
            });
        }
    }
    let groups: BTreeSet<&String> = host.groups.iter().collect();

    let vars = connection_vars(&host.connection())?;
    let name = quote(vm.as_str());

    let mut text = String::from(
        "# Transient inventory of one boma integration-test vm, rendered for this run only.\n",
    );
    text.push_str("all:\n  hosts:\n");
    text.push_str(&format!("    {name}:\n"));
    for (key, value) in vars {
        text.push_str(&format!("      {key}: {}\n", quote(&value.as_text())));
    }
    if !groups.is_empty() {
        // The vars live on the host under `all`; the groups only list it.
        text.push_str("  children:\n");
        for group in groups {
            text.push_str(&format!(
                "    {}:\n      hosts:\n        {name}: {{}}\n",
                quote(group)
            ));
        }
    }
    Ok(HostsYml { vm, text })
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
