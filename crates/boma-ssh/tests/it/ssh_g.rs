//! The proof against OpenSSH itself: `ssh -G` prints the configuration ssh would connect with,
//! without connecting. Fed the wrapper's output for hostile Ansible command lines (with an agent
//! socket in the environment), it must show the pinned endpoint, nothing of the hostile
//! options, and nothing of this machine's `/etc/ssh/ssh_config` (`-F /dev/null` replaces the
//! per-user file and skips the system one). ssh finds `~/.ssh/config` through the password
//! database, not `$HOME`, so an operator's config is stood in for by a file the hostile lines
//! name with `-F`. The same lines given to ssh unwrapped show what the wrapper prevents.

use crate::support::*;

use std::collections::BTreeMap;

use boma_exec::CmdExt;
use boma_ssh::{Endpoint, EndpointSpec, wrap};
use xshell::{Shell, cmd};

/// An operator's ssh config that would send every host elsewhere (a `Host *` block).
struct HostileConfig {
    _dir: tempfile::TempDir,
    dir: String,
    evil_config: String,
}

fn hostile_config() -> HostileConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    let evil_config = format!("{path}/ssh_config");
    std::fs::write(
        &evil_config,
        "Host *\n  HostName 127.0.0.3\n  Port 2299\n  User root\n  ProxyJump jump@127.0.0.4\n  \
         IdentityFile ~/.ssh/id_operator\n  ForwardAgent yes\n  LocalForward 8080 127.0.0.3:80\n",
    )
    .unwrap();
    HostileConfig {
        _dir: dir,
        dir: path,
        evil_config,
    }
}

/// `ssh -G <args>` with an agent socket in the environment: the effective configuration,
/// key → values.
fn effective(home: &HostileConfig, args: &[String]) -> BTreeMap<String, Vec<String>> {
    let sh = Shell::new().unwrap();
    let text = cmd!(sh, "ssh -G {args...}")
        .env("SSH_AUTH_SOCK", format!("{}/agent.sock", home.dir))
        .exec()
        .quiet()
        .read()
        .unwrap();
    let mut config: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(' ') {
            config
                .entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    config
}

fn one<'a>(config: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match config.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{key}: {other:?}"),
    }
}

fn args(text: &[&str]) -> Vec<String> {
    text.iter().map(|s| (*s).to_owned()).collect()
}

/// Hostile command lines: everything an `ansible_ssh_*_args` variable could add, before and
/// after the destination.
fn hostile_argvs(evil_config: &str) -> Vec<Vec<String>> {
    vec![
        args(&[
            "-o",
            "HostName=127.0.0.3",
            "-o",
            "Port=2299",
            "127.0.0.1",
            "id",
        ]),
        args(&["-F", evil_config, "127.0.0.1", "id"]),
        args(&[
            "-S",
            "/tmp/evil.sock",
            "-o",
            "ControlMaster=yes",
            "127.0.0.1",
        ]),
        args(&["-J", "jump@127.0.0.4", "127.0.0.1", "id"]),
        args(&["-o", "ProxyCommand=nc 127.0.0.3 22", "127.0.0.1", "id"]),
        args(&[
            "-i",
            "~/.ssh/id_operator",
            "-A",
            "-o",
            "IdentityAgent=/tmp/a",
            "127.0.0.1",
        ]),
        args(&["-l", "root", "-p", "22", "root@127.0.0.1", "id"]),
        args(&[
            "-L",
            "8080:127.0.0.3:80",
            "-R",
            "9090:127.0.0.3:22",
            "-D",
            "1080",
            "127.0.0.1",
        ]),
        args(&[
            "127.0.0.1",
            "-oHostName=127.0.0.3",
            "-p2299",
            "-F",
            evil_config,
            "id",
        ]),
        args(&["-tt", "-vvv", "-O", "check", "ssh://root@127.0.0.1:2299"]),
    ]
}

#[test]
fn openssh_connects_where_the_pinned_options_say_whatever_ansible_adds() {
    let home = hostile_config();
    let table = table();
    for hostile in hostile_argvs(&home.evil_config) {
        let wrapped = wrap(&table, &hostile).unwrap();
        let config = effective(&home, &wrapped);
        let context = format!("{hostile:?}");
        assert_eq!(one(&config, "hostname"), "127.0.0.1", "{context}");
        assert_eq!(one(&config, "port"), "40022", "{context}");
        assert_eq!(one(&config, "user"), "ansible", "{context}");
        assert_eq!(one(&config, "identityfile"), KEY, "{context}");
        assert_eq!(one(&config, "identitiesonly"), "yes", "{context}");
        assert_eq!(one(&config, "identityagent"), "none", "{context}");
        assert_eq!(one(&config, "forwardagent"), "no", "{context}");
        assert_eq!(one(&config, "clearallforwardings"), "yes", "{context}");
        assert!(
            one(&config, "controlpath").starts_with(&format!("{CONTROL}/")),
            "{context}"
        );
        // Not even this machine's /etc/ssh/ssh_config (Debian's sends LANG and LC_*).
        assert_eq!(one(&config, "hashknownhosts"), "no", "{context}");
        for absent in [
            "proxycommand",
            "proxyjump",
            "localforward",
            "remoteforward",
            "dynamicforward",
            "sendenv",
        ] {
            assert!(!config.contains_key(absent), "{absent}: {context}");
        }
    }
}

/// The same hostile lines, unwrapped: ssh goes where they say. This is what the wrapper is for,
/// and it shows that the assertions above can fail.
#[test]
fn unwrapped_the_hostile_lines_move_the_connection() {
    let home = hostile_config();
    let argvs = hostile_argvs(&home.evil_config);
    let config = effective(&home, &argvs[0]);
    assert_eq!(one(&config, "hostname"), "127.0.0.3");
    assert_eq!(one(&config, "port"), "2299");
    let config = effective(&home, &argvs[3]);
    assert_eq!(one(&config, "proxyjump"), "jump@[127.0.0.4]");
    // The operator's `Host *` block applies to whatever ssh reads it with.
    let config = effective(&home, &argvs[1]);
    assert_eq!(one(&config, "hostname"), "127.0.0.3");
    assert_eq!(one(&config, "user"), "root");
    assert!(
        config["identityfile"]
            .iter()
            .any(|k| k.ends_with("id_operator"))
    );
    // A second `-F` wins over a first: one put before it is no protection, only dropping it is.
    let config = effective(
        &home,
        &args(&["-F", "/dev/null", "-F", &home.evil_config, "127.0.0.1"]),
    );
    assert_eq!(one(&config, "hostname"), "127.0.0.3");
}

/// Paths are quoted: a key under a home with a space is read whole, not split.
#[test]
fn a_key_path_with_a_space_is_read_whole() {
    let home = hostile_config();
    let key = "/home/John Doe/.local/state/boma-it/ssh/id_ed25519";
    let endpoint = Endpoint::new(EndpointSpec {
        alias: "127.0.0.1".into(),
        address: "127.0.0.1".parse().unwrap(),
        port: 40022,
        user: "ansible".into(),
        identity_file: key.into(),
        control_dir: None,
    })
    .unwrap();
    let mut argv = boma_ssh::pinned_options(&endpoint);
    argv.extend(["--".to_owned(), "127.0.0.1".to_owned()]);
    let config = effective(&home, &argv);
    assert_eq!(one(&config, "identityfile"), key);
    assert!(!config.contains_key("controlpath"), "{config:?}");
    assert_eq!(one(&config, "controlmaster"), "false");
}
