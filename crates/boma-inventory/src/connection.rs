//! The harness's own connection to the test VM: the Ansible variables of the connection file,
//! passed as the **last** `-e @file` of every playbook run (apply, idempotence, verify). Extra
//! vars are Ansible's highest precedence and bind every host a run touches, delegated ones
//! included, so nothing below them — inventory or playbook `group_vars`/`host_vars`, role
//! `vars`/`defaults`, play `vars`/`vars_files`, `include_vars`, `set_fact`, `ansible.cfg`, the
//! environment — can move the connection.
//!
//! What they pin:
//! - the plugin by its fully-qualified name, `ansible.builtin.ssh`: a `connection_plugins/ssh.py`
//!   beside a playbook or in a role shadows a bare `ssh`, never the builtin (checked with
//!   ansible-core 2.18);
//! - its executables: `ssh` is the run's wrapper (which rebuilds every command line from the
//!   run's table: `boma_ssh::wrap`), `scp` and `sftp` are shims that refuse, and transfers are
//!   `piped` through the wrapper;
//! - every name the plugin reads for the host, port, user and key, aliases included (it takes
//!   the *last* of `ansible_host`, `ansible_ssh_host` that is set, likewise the others), so no
//!   alias from elsewhere wins;
//! - its extra arguments and ssh args empty (the wrapper drops them anyway; empty, Ansible adds
//!   no `ControlPath` of its own), no password or PKCS#11 provider (which would make Ansible
//!   run `sshpass` in front of the wrapper), pipelining on;
//! - the interpreter and the become method, which every task on the VM needs.
//!
//! A consequence, intended: every task of a harness run runs on the VM, `delegate_to:
//! localhost` and `connection: local` included. Values are data: Ansible templates every string
//! variable when it is used, so a value holding a Jinja delimiter is refused rather than
//! rendered.
//!
//! A fleet run's connection file ([`render_fleet_connection_vars`]) pins the same names with one
//! difference: extra vars bind every host of the run alike, so one literal address would aim
//! every member at one VM. Its host is the one template the harness writes,
//! `"{{ boma_fleet_address }}"` ([`FLEET_HOST`]), which Ansible resolves per host — the
//! delegated host's own for a `delegate_to: <member>` task — to that member's fleet address,
//! which the wrapper's table maps to that member's VM. A name or address no member has
//! (`boma_fleet_address` overridden, `delegate_to: localhost`, a real host's address) is
//! refused by the wrapper or fails to template: nothing connects.

use camino::Utf8Path;

/// The connection plugin, by the name no plugin directory can shadow.
pub const CONNECTION_PLUGIN: &str = "ansible.builtin.ssh";
pub const PYTHON_INTERPRETER: &str = "/usr/bin/python3";
/// The test VM's cloud-init user has passwordless sudo.
pub const BECOME_METHOD: &str = "sudo";
/// The run's connection directory holds these three programs.
pub const SSH_PROGRAM: &str = "ssh";
pub const SCP_PROGRAM: &str = "scp";
pub const SFTP_PROGRAM: &str = "sftp";

/// What Jinja reads as the start of a statement, an expression or a comment.
const JINJA_DELIMITERS: [&str; 3] = ["{{", "{%", "{#"];

/// The host variable each fleet member has in the transient inventory holding its fleet address
/// (`boma_fleet::member_host_vars` renders it).
pub const FLEET_ADDRESS_VAR: &str = "boma_fleet_address";
/// A fleet run's `ansible_host`: each member's own [`FLEET_ADDRESS_VAR`], resolved per host.
pub const FLEET_HOST: &str = "{{ boma_fleet_address }}";
/// A fleet run's `ansible_port`: what a member's sshd listens on at its fleet address. Ansible's
/// `-o Port=` is dropped by the wrapper, which connects to the member's own way in.
pub const FLEET_PORT: u16 = 22;

/// How Ansible reaches the test VM: through the run's connection directory's `ssh` (the
/// wrapper), to the loopback end of its port forward, as the harness set it up.
#[derive(Debug, Clone, Copy)]
pub struct VmConnection<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub ssh_private_key_file: &'a Utf8Path,
    /// The run's connection directory: `ssh` (the wrapper), `scp` and `sftp` (refusing shims).
    pub connect_dir: &'a Utf8Path,
}

/// How Ansible reaches a fleet run's members: as [`VmConnection`], each at its fleet address
/// ([`FLEET_HOST`]), which the wrapper maps to the member's way in.
#[derive(Debug, Clone, Copy)]
pub struct FleetConnection<'a> {
    pub user: &'a str,
    pub ssh_private_key_file: &'a Utf8Path,
    /// The run's connection directory: `ssh` (the wrapper), `scp` and `sftp` (refusing shims).
    pub connect_dir: &'a Utf8Path,
}

/// Why the harness's connection variables were not rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionValueError {
    #[error(
        "refusing `{key}: {value}` for the test vm's connection: ansible would read it as a jinja \
         template (it holds `{{{{`, `{{%` or `{{#`); use a value without them"
    )]
    Template { key: &'static str, value: String },
    #[error("refusing an empty `{key}` for the test vm's connection")]
    Empty { key: &'static str },
}

/// One connection variable's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionValue {
    Text(String),
    Port(u16),
    Flag(bool),
}

impl ConnectionValue {
    /// The value as text (a port in decimal, a flag as `true`/`false`).
    pub fn as_text(&self) -> String {
        match self {
            ConnectionValue::Text(text) => text.clone(),
            ConnectionValue::Port(port) => port.to_string(),
            ConnectionValue::Flag(flag) => flag.to_string(),
        }
    }
}

/// The harness's connection variables for the VM, in the order they are rendered, or why one
/// of the given values cannot be used.
pub fn connection_vars(
    vm: &VmConnection<'_>,
) -> Result<Vec<(&'static str, ConnectionValue)>, ConnectionValueError> {
    check_values(&[("ansible_host", vm.host)])?;
    pinned(
        vm.host,
        vm.port,
        vm.user,
        vm.ssh_private_key_file,
        vm.connect_dir,
    )
}

/// A fleet run's connection variables: [`connection_vars`]'s names, the host being each
/// member's fleet address ([`FLEET_HOST`]) and the port [`FLEET_PORT`].
pub fn fleet_connection_vars(
    fleet: &FleetConnection<'_>,
) -> Result<Vec<(&'static str, ConnectionValue)>, ConnectionValueError> {
    pinned(
        FLEET_HOST,
        FLEET_PORT,
        fleet.user,
        fleet.ssh_private_key_file,
        fleet.connect_dir,
    )
}

/// Refuses an empty value, or one Jinja would read.
fn check_values(values: &[(&'static str, &str)]) -> Result<(), ConnectionValueError> {
    for (key, value) in values {
        if value.is_empty() {
            return Err(ConnectionValueError::Empty { key });
        }
        if JINJA_DELIMITERS.iter().any(|d| value.contains(d)) {
            return Err(ConnectionValueError::Template {
                key,
                value: (*value).to_owned(),
            });
        }
    }
    Ok(())
}

/// Every name the ssh plugin reads, pinned: `host` as given (checked by the caller), the rest
/// checked here.
fn pinned(
    host: &str,
    port: u16,
    user: &str,
    ssh_private_key_file: &Utf8Path,
    connect_dir: &Utf8Path,
) -> Result<Vec<(&'static str, ConnectionValue)>, ConnectionValueError> {
    let key_file = ssh_private_key_file.as_str();
    check_values(&[
        ("ansible_user", user),
        ("ansible_ssh_private_key_file", key_file),
        ("ansible_ssh_executable", connect_dir.as_str()),
    ])?;
    let program = |name: &str| connect_dir.join(name).into_string();
    let (ssh, scp, sftp) = (
        program(SSH_PROGRAM),
        program(SCP_PROGRAM),
        program(SFTP_PROGRAM),
    );
    let text = |value: &str| ConnectionValue::Text(value.to_owned());
    let none = || ConnectionValue::Text(String::new());
    Ok(vec![
        ("ansible_connection", text(CONNECTION_PLUGIN)),
        ("ansible_ssh_executable", text(&ssh)),
        ("ansible_scp_executable", text(&scp)),
        ("ansible_sftp_executable", text(&sftp)),
        ("ansible_ssh_transfer_method", text("piped")),
        ("ansible_host", text(host)),
        ("ansible_ssh_host", text(host)),
        ("ansible_port", ConnectionValue::Port(port)),
        ("ansible_ssh_port", ConnectionValue::Port(port)),
        ("ansible_user", text(user)),
        ("ansible_ssh_user", text(user)),
        ("ansible_private_key_file", text(key_file)),
        ("ansible_ssh_private_key_file", text(key_file)),
        ("ansible_ssh_args", none()),
        ("ansible_ssh_common_args", none()),
        ("ansible_ssh_extra_args", none()),
        ("ansible_scp_extra_args", none()),
        ("ansible_sftp_extra_args", none()),
        ("ansible_password", none()),
        ("ansible_ssh_pass", none()),
        ("ansible_ssh_password", none()),
        ("ansible_ssh_pkcs11_provider", none()),
        ("ansible_pipelining", ConnectionValue::Flag(true)),
        ("ansible_ssh_pipelining", ConnectionValue::Flag(true)),
        ("ansible_python_interpreter", text(PYTHON_INTERPRETER)),
        ("ansible_become_method", text(BECOME_METHOD)),
    ])
}

/// The harness's connection variables as a JSON document (for `-e @file`): strings, the ports
/// as numbers, the flags as booleans.
pub fn render_connection_vars(vm: &VmConnection<'_>) -> Result<String, ConnectionValueError> {
    connection_vars(vm).map(|vars| render(&vars))
}

/// A fleet run's connection file ([`fleet_connection_vars`]), as [`render_connection_vars`].
pub fn render_fleet_connection_vars(
    fleet: &FleetConnection<'_>,
) -> Result<String, ConnectionValueError> {
    fleet_connection_vars(fleet).map(|vars| render(&vars))
}

fn render(vars: &[(&'static str, ConnectionValue)]) -> String {
    let vars: serde_json::Map<String, serde_json::Value> = vars
        .iter()
        .map(|(key, value)| {
            let value = match value {
                ConnectionValue::Text(text) => serde_json::Value::from(text.clone()),
                ConnectionValue::Port(port) => serde_json::Value::from(*port),
                ConnectionValue::Flag(flag) => serde_json::Value::from(*flag),
            };
            ((*key).to_owned(), value)
        })
        .collect();
    let text = serde_json::to_string_pretty(&vars).expect("a map of strings and numbers");
    format!("{text}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm<'a>(host: &'a str, user: &'a str, key: &'a str) -> VmConnection<'a> {
        VmConnection {
            host,
            port: 40022,
            user,
            ssh_private_key_file: Utf8Path::new(key),
            connect_dir: Utf8Path::new("/run/boma-it-x/connect"),
        }
    }

    #[test]
    fn values_that_jinja_would_read_are_refused() {
        let key = "/k/id_ed25519";
        for (host, user, key) in [
            ("{{ lookup('env', 'PROD') }}", "ansible", key),
            ("127.0.0.1", "{% if x %}root{% endif %}", key),
            ("127.0.0.1", "ansible", "/k/{# x #}"),
        ] {
            let err = render_connection_vars(&vm(host, user, key)).unwrap_err();
            assert!(
                matches!(err, ConnectionValueError::Template { .. }),
                "{err}"
            );
        }
        let templated = VmConnection {
            connect_dir: Utf8Path::new("/run/{{ x }}/connect"),
            ..vm("127.0.0.1", "ansible", key)
        };
        assert!(render_connection_vars(&templated).is_err());
        assert_eq!(
            render_connection_vars(&vm("", "ansible", key)),
            Err(ConnectionValueError::Empty {
                key: "ansible_host"
            })
        );
        // A brace alone is data.
        assert!(render_connection_vars(&vm("127.0.0.1", "ansible", "/k/{a}/id")).is_ok());
    }

    #[test]
    fn a_fleet_pins_the_same_names_with_each_members_own_address() {
        let single = connection_vars(&vm("127.0.0.1", "ansible", "/k/id")).unwrap();
        let fleet = fleet_connection_vars(&FleetConnection {
            user: "ansible",
            ssh_private_key_file: Utf8Path::new("/k/id"),
            connect_dir: Utf8Path::new("/run/boma-it-x/connect"),
        })
        .unwrap();
        let names = |vars: &[(&str, ConnectionValue)]| -> Vec<String> {
            vars.iter().map(|(k, _)| (*k).to_owned()).collect()
        };
        assert_eq!(names(&fleet), names(&single));
        for (key, value) in &fleet {
            let expected = match *key {
                "ansible_host" | "ansible_ssh_host" => {
                    ConnectionValue::Text("{{ boma_fleet_address }}".into())
                }
                "ansible_port" | "ansible_ssh_port" => ConnectionValue::Port(22),
                _ => single.iter().find(|(k, _)| k == key).unwrap().1.clone(),
            };
            assert_eq!(value, &expected, "{key}");
        }
        assert_eq!(FLEET_HOST, format!("{{{{ {FLEET_ADDRESS_VAR} }}}}"));
        // What is given is still checked.
        let templated = fleet_connection_vars(&FleetConnection {
            user: "{{ u }}",
            ssh_private_key_file: Utf8Path::new("/k/id"),
            connect_dir: Utf8Path::new("/run/connect"),
        });
        assert!(matches!(
            templated,
            Err(ConnectionValueError::Template {
                key: "ansible_user",
                ..
            })
        ));
    }

    #[test]
    fn every_alias_carries_the_same_value() {
        let vars = connection_vars(&vm("127.0.0.1", "ansible", "/k/id")).unwrap();
        let get = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.as_text())
        };
        for (plain, alias) in [
            ("ansible_host", "ansible_ssh_host"),
            ("ansible_port", "ansible_ssh_port"),
            ("ansible_user", "ansible_ssh_user"),
            ("ansible_private_key_file", "ansible_ssh_private_key_file"),
            ("ansible_pipelining", "ansible_ssh_pipelining"),
            ("ansible_password", "ansible_ssh_pass"),
            ("ansible_password", "ansible_ssh_password"),
        ] {
            assert_eq!(get(plain), get(alias), "{plain}");
            assert!(get(plain).is_some(), "{plain}");
        }
        assert_eq!(
            get("ansible_ssh_executable").as_deref(),
            Some("/run/boma-it-x/connect/ssh")
        );
        assert_eq!(
            get("ansible_connection").as_deref(),
            Some("ansible.builtin.ssh")
        );
    }
}
