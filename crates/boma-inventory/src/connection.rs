//! The harness's own connection to the test VM: one list of Ansible connection variables,
//! rendered into the transient inventory's host vars and, as JSON, into a file passed as the
//! last `-e @file` of a playbook run (see [`crate::ConnectionPin`]).
//!
//! Every name Ansible's ssh connection plugin reads for the host, port, user and key is set,
//! aliases included: the plugin takes the *last* of `ansible_host`, `ansible_ssh_host` that is
//! set (likewise `ansible_ssh_port`, `ansible_ssh_user`, `ansible_ssh_private_key_file`), so
//! setting only `ansible_host` would let an `ansible_ssh_host` from elsewhere win.
//!
//! Values are data: Ansible templates every string variable when it is used, so a value
//! holding a Jinja delimiter is refused rather than rendered.

use camino::Utf8Path;

/// Host-key checking is off for this throwaway host: its key is new on every run, and it must
/// never land in anyone's `known_hosts`. The keep-alives end a dead connection after about a
/// minute (4 unanswered probes 15 s apart) instead of letting it hang the run.
pub const SSH_COMMON_ARGS: &str = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
     -o LogLevel=ERROR -o ServerAliveInterval=15 -o ServerAliveCountMax=4";
pub const PYTHON_INTERPRETER: &str = "/usr/bin/python3";
/// The test VM's cloud-init user has passwordless sudo.
pub const BECOME_METHOD: &str = "sudo";

/// What Jinja reads as the start of a statement, an expression or a comment.
const JINJA_DELIMITERS: [&str; 3] = ["{{", "{%", "{#"];

/// How Ansible reaches the test VM: the loopback end of its port forward, as the harness set it
/// up.
#[derive(Debug, Clone, Copy)]
pub struct VmConnection<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub ssh_private_key_file: &'a Utf8Path,
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
}

impl ConnectionValue {
    /// The value as text (a port in decimal), for renderers that write only strings.
    pub fn as_text(&self) -> String {
        match self {
            ConnectionValue::Text(text) => text.clone(),
            ConnectionValue::Port(port) => port.to_string(),
        }
    }
}

/// The harness's connection variables for the VM, in the order they are rendered, or why one
/// of the given values cannot be used.
pub fn connection_vars(
    vm: &VmConnection<'_>,
) -> Result<Vec<(&'static str, ConnectionValue)>, ConnectionValueError> {
    let key_file = vm.ssh_private_key_file.as_str();
    for (key, value) in [
        ("ansible_host", vm.host),
        ("ansible_user", vm.user),
        ("ansible_ssh_private_key_file", key_file),
    ] {
        if value.is_empty() {
            return Err(ConnectionValueError::Empty { key });
        }
        if JINJA_DELIMITERS.iter().any(|d| value.contains(d)) {
            return Err(ConnectionValueError::Template {
                key,
                value: value.to_owned(),
            });
        }
    }
    let text = |value: &str| ConnectionValue::Text(value.to_owned());
    Ok(vec![
        ("ansible_connection", text("ssh")),
        ("ansible_host", text(vm.host)),
        ("ansible_ssh_host", text(vm.host)),
        ("ansible_port", ConnectionValue::Port(vm.port)),
        ("ansible_ssh_port", ConnectionValue::Port(vm.port)),
        ("ansible_user", text(vm.user)),
        ("ansible_ssh_user", text(vm.user)),
        ("ansible_private_key_file", text(key_file)),
        ("ansible_ssh_private_key_file", text(key_file)),
        ("ansible_ssh_common_args", text(SSH_COMMON_ARGS)),
        ("ansible_ssh_extra_args", text("")),
        ("ansible_python_interpreter", text(PYTHON_INTERPRETER)),
        ("ansible_become_method", text(BECOME_METHOD)),
    ])
}

/// The harness's connection variables as a JSON document (for `-e @file`): strings, and the
/// ports as numbers.
pub fn render_connection_vars(vm: &VmConnection<'_>) -> Result<String, ConnectionValueError> {
    let vars: serde_json::Map<String, serde_json::Value> = connection_vars(vm)?
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                ConnectionValue::Text(text) => serde_json::Value::from(text),
                ConnectionValue::Port(port) => serde_json::Value::from(port),
            };
            (key.to_owned(), value)
        })
        .collect();
    let text = serde_json::to_string_pretty(&vars).expect("a map of strings and numbers");
    Ok(format!("{text}\n"))
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
    fn every_address_alias_carries_the_same_value() {
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
        ] {
            assert_eq!(get(plain), get(alias), "{plain}");
            assert!(get(plain).is_some(), "{plain}");
        }
    }
}
