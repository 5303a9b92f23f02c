//! A VM's ssh endpoint, checked once ([`Endpoint::new`] is the only way to make one), and the
//! options that pin every connection to it ([`pinned_options`]).

use std::net::IpAddr;

use camino::{Utf8Path, Utf8PathBuf};

/// The longest control directory [`Endpoint::new`] accepts. ssh binds its control socket at
/// `<dir>/<%C: 40 hex digits>` plus a 17-character temporary suffix, and a unix socket path
/// holds at most 104 bytes on some systems (108 on Linux, the NUL included): 45 + 1 + 40 + 17
/// = 103.
pub const MAX_CONTROL_DIR: usize = 45;

/// How long a master connection outlives its last client.
const CONTROL_PERSIST: &str = "60s";

/// How long a connection attempt may take, and how dead peers are noticed: 4 unanswered
/// keep-alives 15 s apart end a connection to a guest that went away (a minute), without
/// cutting a slow guest's long task short.
const CONNECT_TIMEOUT_S: u32 = 10;
const SERVER_ALIVE_INTERVAL_S: u32 = 15;
const SERVER_ALIVE_COUNT_MAX: u32 = 4;

/// Whether connections to an endpoint share one master connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `ControlMaster=auto` with the socket in `dir` (run-private, short; see
    /// [`MAX_CONTROL_DIR`]): Ansible's many connections per play reuse one login.
    Shared { dir: Utf8PathBuf },
    /// No master, no socket: the harness's own probes, which must never be answered by a
    /// master connection to a boot that has ended.
    Off,
}

/// A VM as ssh reaches it: an alias (what ssh is told to connect to, after `--`), the address
/// and port it really connects to, the user and the harness's key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "EndpointSpec", into = "EndpointSpec")]
pub struct Endpoint {
    alias: String,
    address: IpAddr,
    port: u16,
    user: String,
    identity_file: Utf8PathBuf,
    control: Control,
}

/// An endpoint's parts before they are checked (and as the table file holds them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// The VM's inventory name: what ssh is told to connect to.
    pub alias: String,
    /// Where it really connects (`-o HostName=`): an address, never a name a resolver could
    /// turn into anything.
    pub address: IpAddr,
    pub port: u16,
    pub user: String,
    /// The harness's private key (absolute).
    pub identity_file: Utf8PathBuf,
    /// The control socket directory, when connections share a master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_dir: Option<Utf8PathBuf>,
}

/// Why an endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "refusing the ssh alias `{0}`: use a plain host name or address (letters, digits, `.`, `:`, `-`, `_`, not starting with `-`)"
    )]
    Alias(String),
    #[error("refusing port 0 for the vm's ssh")]
    Port,
    #[error(
        "refusing the ssh user `{0}`: use a plain user name (letters, digits, `.`, `-`, `_`, not starting with `-`)"
    )]
    User(String),
    #[error(
        "refusing {what} `{path}` for the vm's ssh: it must be an absolute path without `%`, `$`, quotes, backslashes or control characters (ssh would expand or split them)"
    )]
    Path {
        what: &'static str,
        path: Utf8PathBuf,
    },
    #[error(
        "refusing the control directory `{0}`: longer than {MAX_CONTROL_DIR} characters, its socket would not fit a unix socket path"
    )]
    ControlDirTooLong(Utf8PathBuf),
}

impl Endpoint {
    /// The only constructor: every value ends up in an `-o Key=value` that ssh reads as a
    /// config line, so each is checked to mean exactly itself there.
    pub fn new(spec: EndpointSpec) -> Result<Endpoint, EndpointError> {
        // An address is a fine alias too (the harness's own probes have no name at hand).
        let alias_ok = is_plain_name(&spec.alias.replace(':', "."));
        if !alias_ok {
            return Err(EndpointError::Alias(spec.alias));
        }
        if spec.port == 0 {
            return Err(EndpointError::Port);
        }
        if !is_plain_name(&spec.user) || spec.user.len() > 32 {
            return Err(EndpointError::User(spec.user));
        }
        check_path("the identity file", &spec.identity_file)?;
        let control = match spec.control_dir {
            Some(dir) => {
                check_path("the control directory", &dir)?;
                if dir.as_str().len() > MAX_CONTROL_DIR {
                    return Err(EndpointError::ControlDirTooLong(dir));
                }
                Control::Shared { dir }
            }
            None => Control::Off,
        };
        Ok(Endpoint {
            alias: spec.alias,
            address: spec.address,
            port: spec.port,
            user: spec.user,
            identity_file: spec.identity_file,
            control,
        })
    }

    pub fn alias(&self) -> &str {
        &self.alias
    }
    pub fn address(&self) -> IpAddr {
        self.address
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn user(&self) -> &str {
        &self.user
    }
    pub fn identity_file(&self) -> &Utf8Path {
        &self.identity_file
    }
    pub fn control(&self) -> &Control {
        &self.control
    }
}

impl TryFrom<EndpointSpec> for Endpoint {
    type Error = EndpointError;
    fn try_from(spec: EndpointSpec) -> Result<Endpoint, EndpointError> {
        Endpoint::new(spec)
    }
}

impl From<Endpoint> for EndpointSpec {
    fn from(endpoint: Endpoint) -> EndpointSpec {
        EndpointSpec {
            alias: endpoint.alias,
            address: endpoint.address,
            port: endpoint.port,
            user: endpoint.user,
            identity_file: endpoint.identity_file,
            control_dir: match endpoint.control {
                Control::Shared { dir } => Some(dir),
                Control::Off => None,
            },
        }
    }
}

/// A host or user name that ssh reads as itself: no option, no `%` token, no space.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A path ssh reads as itself once double-quoted (quotes keep spaces together): absolute (no
/// `~` expansion), and nothing ssh expands (`%` tokens, `${VAR}`) or that would end the quotes.
fn check_path(what: &'static str, path: &Utf8Path) -> Result<(), EndpointError> {
    let plain = path.is_absolute()
        && !path
            .as_str()
            .chars()
            .any(|c| c.is_control() || matches!(c, '%' | '$' | '"' | '\'' | '\\'));
    if plain {
        Ok(())
    } else {
        Err(EndpointError::Path {
            what,
            path: path.to_owned(),
        })
    }
}

/// Every option that pins a connection to `endpoint`, to be put before anything else on ssh's
/// command line (OpenSSH keeps the first value it sees):
///
/// - `-F /dev/null`: no user config (`~/.ssh/config` never applies) and so no system config;
/// - where and as whom: `HostName`, `Port`, `User`, `IdentityFile` (the harness's key) with
///   `IdentitiesOnly=yes` and `IdentityAgent=none` (the operator's agent keys are never
///   offered), public-key authentication only;
/// - no detour: `ProxyCommand=none`, `ProxyJump=none`, `CanonicalizeHostname=no`;
/// - nothing carried along: `ClearAllForwardings=yes`, `ForwardAgent=no`, `ForwardX11=no`,
///   `Tunnel=no`, `PermitLocalCommand=no`, `EscapeChar=none` (no `~C` command line from
///   Ansible's stdin);
/// - the run's own master connection, or none ([`Control`]);
/// - the throwaway guest's host key neither checked nor stored: `StrictHostKeyChecking=no`,
///   `UserKnownHostsFile=/dev/null`, `GlobalKnownHostsFile=/dev/null`,
///   `KnownHostsCommand=none`, `UpdateHostKeys=no`;
/// - never a prompt (`BatchMode=yes`), bounded waits, errors only (`LogLevel=ERROR`: no
///   "Permanently added" line in Ansible's output).
pub fn pinned_options(endpoint: &Endpoint) -> Vec<String> {
    let mut options = vec![
        format!("HostName={}", endpoint.address),
        format!("Port={}", endpoint.port),
        format!("User={}", endpoint.user),
        format!("IdentityFile=\"{}\"", endpoint.identity_file),
        "IdentitiesOnly=yes".to_owned(),
        "IdentityAgent=none".to_owned(),
        "PreferredAuthentications=publickey".to_owned(),
        "PasswordAuthentication=no".to_owned(),
        "KbdInteractiveAuthentication=no".to_owned(),
        "ProxyCommand=none".to_owned(),
        "ProxyJump=none".to_owned(),
        "CanonicalizeHostname=no".to_owned(),
    ];
    match &endpoint.control {
        Control::Shared { dir } => options.extend([
            "ControlMaster=auto".to_owned(),
            format!("ControlPersist={CONTROL_PERSIST}"),
            format!("ControlPath=\"{dir}/%C\""),
        ]),
        Control::Off => {
            options.extend(["ControlMaster=no".to_owned(), "ControlPath=none".to_owned()])
        }
    }
    options.extend(
        [
            "ClearAllForwardings=yes",
            "ForwardAgent=no",
            "ForwardX11=no",
            "Tunnel=no",
            "PermitLocalCommand=no",
            "EscapeChar=none",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "GlobalKnownHostsFile=/dev/null",
            "KnownHostsCommand=none",
            "UpdateHostKeys=no",
            "BatchMode=yes",
        ]
        .map(str::to_owned),
    );
    options.extend([
        format!("ConnectTimeout={CONNECT_TIMEOUT_S}"),
        format!("ServerAliveInterval={SERVER_ALIVE_INTERVAL_S}"),
        format!("ServerAliveCountMax={SERVER_ALIVE_COUNT_MAX}"),
        "LogLevel=ERROR".to_owned(),
    ]);
    let mut argv = vec!["-F".to_owned(), "/dev/null".to_owned()];
    for option in options {
        argv.push("-o".to_owned());
        argv.push(option);
    }
    argv
}

/// A control command ssh may send to the run's master connection (`-O`): Ansible's
/// `reset_connection` asks `check`, then `stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlCommand {
    Check,
    Stop,
    Exit,
}

impl ControlCommand {
    pub fn parse(word: &str) -> Option<ControlCommand> {
        match word {
            "check" => Some(ControlCommand::Check),
            "stop" => Some(ControlCommand::Stop),
            "exit" => Some(ControlCommand::Exit),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ControlCommand::Check => "check",
            ControlCommand::Stop => "stop",
            ControlCommand::Exit => "exit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> EndpointSpec {
        EndpointSpec {
            alias: "boma-it-askari-1".into(),
            address: "127.0.0.1".parse().unwrap(),
            port: 40022,
            user: "ansible".into(),
            identity_file: "/var/lib/boma/ssh/id_ed25519".into(),
            control_dir: Some("/tmp/boma-ssh-0123456789abcdef".into()),
        }
    }

    #[test]
    fn values_ssh_would_read_as_something_else_are_refused() {
        assert!(Endpoint::new(spec()).is_ok());
        assert!(
            Endpoint::new(EndpointSpec {
                alias: "::1".into(),
                identity_file: "/home/John Doe/.local/state/boma-it/ssh/id_ed25519".into(),
                ..spec()
            })
            .is_ok()
        );
        for alias in ["", "-oProxyCommand=x", "a b", "host%h", "a@b"] {
            let err = Endpoint::new(EndpointSpec {
                alias: alias.into(),
                ..spec()
            });
            assert_eq!(err, Err(EndpointError::Alias(alias.into())), "{alias:?}");
        }
        for user in ["", "-lroot", "root x", "${USER}"] {
            let err = Endpoint::new(EndpointSpec {
                user: user.into(),
                ..spec()
            });
            assert_eq!(err, Err(EndpointError::User(user.into())), "{user:?}");
        }
        for key in [
            "id_ed25519",
            "~/.ssh/id",
            "/k/%d/id",
            "/k/${HOME}/id",
            "/k/\nx",
            "/k/\"x",
        ] {
            let err = Endpoint::new(EndpointSpec {
                identity_file: key.into(),
                ..spec()
            });
            assert!(matches!(err, Err(EndpointError::Path { .. })), "{key:?}");
        }
        assert_eq!(
            Endpoint::new(EndpointSpec { port: 0, ..spec() }),
            Err(EndpointError::Port)
        );
        let long = format!("/tmp/{}", "x".repeat(MAX_CONTROL_DIR));
        assert!(matches!(
            Endpoint::new(EndpointSpec {
                control_dir: Some(long.into()),
                ..spec()
            }),
            Err(EndpointError::ControlDirTooLong(_))
        ));
    }

    #[test]
    fn the_pinned_options_open_with_no_config_and_the_endpoint() {
        let endpoint = Endpoint::new(spec()).unwrap();
        let argv = pinned_options(&endpoint);
        assert_eq!(
            argv[..10],
            [
                "-F",
                "/dev/null",
                "-o",
                "HostName=127.0.0.1",
                "-o",
                "Port=40022",
                "-o",
                "User=ansible",
                "-o",
                "IdentityFile=\"/var/lib/boma/ssh/id_ed25519\""
            ]
        );
        // `-F` once, then nothing but `-o Key=value` pairs.
        for pair in argv[2..].chunks(2) {
            assert_eq!(pair[0], "-o", "{argv:?}");
            assert!(pair[1].contains('='), "{argv:?}");
        }
        assert!(argv.contains(&"ControlPath=\"/tmp/boma-ssh-0123456789abcdef/%C\"".to_owned()));
        let off = Endpoint::new(EndpointSpec {
            control_dir: None,
            ..spec()
        })
        .unwrap();
        let argv = pinned_options(&off);
        assert!(argv.contains(&"ControlMaster=no".to_owned()));
        assert!(argv.contains(&"ControlPath=none".to_owned()));
        assert!(!argv.iter().any(|a| a.starts_with("ControlPersist")));
    }

    #[test]
    fn an_endpoint_reads_back_through_its_checks() {
        let endpoint = Endpoint::new(spec()).unwrap();
        let json = serde_json::to_string(&endpoint).unwrap();
        let back: Endpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, endpoint);
        let hostile = json.replace("\"ansible\"", "\"-lroot\"");
        assert!(serde_json::from_str::<Endpoint>(&hostile).is_err());
    }
}
