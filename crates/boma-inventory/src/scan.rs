//! The guard against a mistake in the harness's own inputs: an extra-vars file
//! (`overrides/*.yml`, `certs/*.yml`, the run's own JSON) holding `ansible_host: <a production
//! address>` or `ansible_connection: local`. The connection itself holds by construction
//! whatever any variable says (`docs/security/connection.md`); a connection variable in a file
//! the harness passes is refused all the same, naming it, because it means the profile author
//! expected it to do something. Pure: the caller chooses the files and reads them.
//!
//! A top-level key is *connection-class* ([`is_connection_var`]) when it is:
//!
//! 1. `ansible_connection`, which picks the connection plugin;
//! 2. a name every remote connection plugin shares, or one ansible-core's `ssh` plugin (the one
//!    the harness pins) reads outside its own prefix: [`CONNECTION_VARS`];
//! 3. a variable of the `ssh` plugin (`ansible_ssh_*`, `ansible_scp_*`, `ansible_sftp_*`) or of
//!    any other connection plugin of ansible-core and of the collections in the `ansible` 11
//!    bundle the repo pins, by its `ansible_<plugin>_` prefix: [`CONNECTION_PREFIXES`];
//! 4. any `ansible_*_args`: extra command-line arguments of some plugin (`-o ProxyCommand=…`
//!    can send ssh anywhere).
//!
//! Deliberately not connection-class: privilege escalation (`ansible_become*`, `ansible_sudo_*`)
//! and the interpreter (`ansible_python_interpreter`), which act on the host already connected
//! to; and names other plugins read outside their prefix (`ansible_executable` of `chroot`),
//! which have no effect while (1) is pinned to `ansible.builtin.ssh`.
//!
//! YAML merge keys (`<<: *defaults`) are followed, as PyYAML (and so Ansible) merges them.

use std::fmt;

use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};

use boma_yaml::untag;

/// Connection variables matched by their whole name (see the module docs, rule 2).
pub const CONNECTION_VARS: [&str; 13] = [
    "ansible_connection",
    "ansible_host",
    "ansible_port",
    "ansible_user",
    // Read by no plugin of ansible-core, but it reads like `ansible_user`.
    "ansible_remote_user",
    "ansible_password",
    "ansible_private_key_file",
    "ansible_host_key_checking",
    "ansible_pipelining",
    "ansible_control_path",
    "ansible_control_path_dir",
    "ansible_sshpass_prompt",
    // The ssh plugin's host of last resort.
    "inventory_hostname",
];

/// Prefixes of connection plugins' own variables (see the module docs, rule 3).
pub const CONNECTION_PREFIXES: [&str; 32] = [
    "ansible_ssh_",
    "ansible_scp_",
    "ansible_sftp_",
    "ansible_paramiko_",
    "ansible_libssh_",
    "ansible_network_cli_",
    "ansible_netconf_",
    "ansible_httpapi_",
    "ansible_grpc_",
    "ansible_winrm_",
    "ansible_psrp_",
    "ansible_docker_",
    "ansible_podman_",
    "ansible_buildah_",
    "ansible_nsenter_",
    "ansible_lxc_",
    "ansible_lxd_",
    "ansible_incus_",
    "ansible_chroot_",
    "ansible_jail_",
    "ansible_zone_",
    "ansible_iocage_",
    "ansible_libvirt_",
    "ansible_qubes_",
    "ansible_saltstack_",
    "ansible_func_",
    "ansible_kubectl_",
    "ansible_oc_",
    "ansible_aws_ssm_",
    "ansible_gcloud_",
    "ansible_vmware_",
    "ansible_wsl_",
];

/// Whether a top-level vars key is connection-class (see the module docs for the rule).
pub fn is_connection_var(key: &str) -> bool {
    CONNECTION_VARS.contains(&key)
        || CONNECTION_PREFIXES.iter().any(|p| key.starts_with(p))
        || (key.starts_with("ansible_") && key.ends_with("_args"))
}

/// A connection-class key found in a vars file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionVar {
    pub file: String,
    /// 1-based.
    pub line: usize,
    pub key: String,
}

impl fmt::Display for ConnectionVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.key)
    }
}

/// Why the run's vars files were refused. The harness maps it to "refused, exit 2".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionVarsError {
    /// Connection-class keys, the first of them named in full.
    #[error(
        "refusing {}:{}: `{}` is a connection variable; the harness sets the connection itself: \
         remove it from {}{}",
        .found[0].file, .found[0].line, .found[0].key, .found[0].file, more(.found)
    )]
    Found { found: Vec<ConnectionVar> },
    #[error("{file}:{line}:{column}: malformed yaml: {message}")]
    Malformed {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

fn more(found: &[ConnectionVar]) -> String {
    match found {
        [] | [_] => String::new(),
        [_, rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(ToString::to_string).collect();
            format!(" (also {})", rest.join(", "))
        }
    }
}

/// Every connection-class top-level key of one vars file (YAML or JSON), with its line; `file`
/// is how findings name it.
pub fn find_connection_vars(
    file: &str,
    text: &str,
) -> Result<Vec<ConnectionVar>, ConnectionVarsError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| ConnectionVarsError::Malformed {
        file: file.to_owned(),
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_owned(),
    })?;
    let mut found = Vec::new();
    for doc in &docs {
        top_level_keys(file, doc, &mut found);
    }
    Ok(found)
}

/// The connection-class keys of a mapping, following merge keys into the mappings they merge.
fn top_level_keys(file: &str, node: &MarkedYaml<'_>, found: &mut Vec<ConnectionVar>) {
    let YamlData::Mapping(entries) = &untag(node).data else {
        return;
    };
    for (key, value) in entries {
        // The line of the key as written: saphyr gives a tagged node's inner node no position.
        let line = key.span.start.line();
        match untag(key).data.as_str() {
            Some("<<") => match &untag(value).data {
                YamlData::Sequence(merged) => {
                    for mapping in merged {
                        top_level_keys(file, mapping, found);
                    }
                }
                _ => top_level_keys(file, value, found),
            },
            Some(name) if is_connection_var(name) => found.push(ConnectionVar {
                file: file.to_owned(),
                line,
                key: name.to_owned(),
            }),
            _ => {}
        }
    }
}

/// Refuse the run when any of `files` (name, text) sets a connection-class key. Which files to
/// scan is the caller's choice: every file the run passes as `-e @file` and every file of the
/// `group_vars` the transient inventory links.
pub fn refuse_connection_vars<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ConnectionVarsError> {
    let mut found = Vec::new();
    for (file, text) in files {
        found.extend(find_connection_vars(file, text)?);
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(ConnectionVarsError::Found { found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable ansible-core 2.18's `ssh` connection plugin documents (`ssh.py`), less
    /// `delegated_vars[…]`, which no vars file can set.
    const SSH_PLUGIN_VARS: [&str; 34] = [
        "inventory_hostname",
        "ansible_host",
        "ansible_ssh_host",
        "ansible_host_key_checking",
        "ansible_ssh_host_key_checking",
        "ansible_password",
        "ansible_ssh_pass",
        "ansible_ssh_password",
        "ansible_sshpass_prompt",
        "ansible_ssh_args",
        "ansible_ssh_common_args",
        "ansible_ssh_executable",
        "ansible_sftp_executable",
        "ansible_scp_executable",
        "ansible_scp_extra_args",
        "ansible_sftp_extra_args",
        "ansible_ssh_extra_args",
        "ansible_ssh_retries",
        "ansible_port",
        "ansible_ssh_port",
        "ansible_user",
        "ansible_ssh_user",
        "ansible_pipelining",
        "ansible_ssh_pipelining",
        "ansible_private_key_file",
        "ansible_ssh_private_key_file",
        "ansible_control_path",
        "ansible_control_path_dir",
        "ansible_sftp_batch_mode",
        "ansible_ssh_transfer_method",
        "ansible_ssh_use_tty",
        "ansible_ssh_timeout",
        "ansible_ssh_pkcs11_provider",
        "ansible_connection",
    ];

    #[test]
    fn every_variable_of_the_pinned_ssh_plugin_is_connection_class() {
        for var in SSH_PLUGIN_VARS {
            assert!(is_connection_var(var), "{var}");
        }
    }

    #[test]
    fn other_plugins_and_extra_args_are_connection_class_and_become_is_not() {
        for var in [
            "ansible_paramiko_host",
            "ansible_winrm_transport",
            "ansible_psrp_proxy",
            "ansible_docker_host",
            "ansible_podman_extra_args",
            "ansible_lxd_remote",
            "ansible_kubectl_kubeconfig",
            "ansible_aws_ssm_bucket_name",
            "ansible_netconf_proxy_command",
            "ansible_winrm_kinit_args",
            "ansible_remote_user",
        ] {
            assert!(is_connection_var(var), "{var}");
        }
        for var in [
            "ansible_become",
            "ansible_become_method",
            "ansible_become_user",
            "ansible_python_interpreter",
            "ansible_managed",
            "base__mesh_enabled",
            "reverse_proxy__ssh_args",
            "ANSIBLE_HOST",
            "ansible_hostname",
        ] {
            assert!(!is_connection_var(var), "{var}");
        }
    }

    #[test]
    fn findings_name_file_line_and_key_including_merged_ones() {
        let text = "\
---
defaults: &conn
  ansible_port: 22
base__firewall_apply: true
ansible_host: 77.42.120.136
!unsafe ansible_connection: local
nested:
  ansible_user: not-top-level
<<: *conn
";
        let found = find_connection_vars("overrides/askari.yml", text).unwrap();
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "overrides/askari.yml:5: ansible_host",
                "overrides/askari.yml:6: ansible_connection",
                "overrides/askari.yml:3: ansible_port",
            ]
        );
        let json = "{\n  \"boma_it_vm_name\": \"boma-it-x\",\n  \"ansible_ssh_common_args\": \"-o ProxyCommand=x\"\n}\n";
        let found = find_connection_vars("run-vars.json", json).unwrap();
        assert_eq!(
            found[0].to_string(),
            "run-vars.json:3: ansible_ssh_common_args"
        );
    }

    #[test]
    fn the_refusal_is_one_line_naming_the_first_and_the_rest() {
        let files = [
            ("overrides/askari.yml", "base__mesh_enabled: false\n"),
            (
                "certs/internal.yml",
                "ansible_host: 77.42.120.136\nansible_port: 22\n",
            ),
            (
                "inventories/production/group_vars/offsite_hosts/vars.yml",
                "ansible_connection: local\n",
            ),
        ];
        let err = refuse_connection_vars(files).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing certs/internal.yml:1: `ansible_host` is a connection variable; the harness \
             sets the connection itself: remove it from certs/internal.yml (also \
             certs/internal.yml:2: ansible_port, \
             inventories/production/group_vars/offsite_hosts/vars.yml:1: ansible_connection)"
        );
        assert_eq!(refuse_connection_vars(files[..1].iter().copied()), Ok(()));
        let err = refuse_connection_vars([("a.yml", "a: [\n")]).unwrap_err();
        assert!(
            matches!(err, ConnectionVarsError::Malformed { .. }),
            "{err}"
        );
    }
}
