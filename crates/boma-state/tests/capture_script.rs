//! Runs `CAPTURE_SCRIPT` under `/bin/sh` (dash, as on Debian) the way the harness does, script
//! on stdin, against stand-in commands: proves its framing, that one missing or failing
//! command spoils only its own section, and that stderr stays out of the JSON.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use boma_exec::CmdExt as _;
use boma_state::{CAPTURE_SCRIPT, PortRange, Section, parse_capture};
use xshell::{Shell, cmd};

/// Stand-ins for the guest's tools. `nft` is missing, `ip` warns on stderr, `findmnt` fails,
/// `list-unit-files` prints no trailing newline, `cat` stands in for the sysctl file.
const STUBS: &[(&str, &str)] = &[
    (
        "systemctl",
        r#"case "$*" in
"is-system-running --wait") echo degraded; exit 1 ;;
"list-units --all --output=json --no-pager")
  echo '[{"unit":"ssh.service","load":"loaded","active":"active","sub":"running","description":"s"},{"unit":"boot-only.service","load":"loaded","active":"failed","sub":"failed","description":"b"}]' ;;
"list-unit-files --output=json --no-pager")
  printf '%s' '[{"unit_file":"ssh.service","state":"enabled","preset":"enabled"}]' ;;
"-q is-active docker.service") exit 0 ;;
*) echo "unexpected systemctl $*" >&2; exit 64 ;;
esac"#,
    ),
    ("timeout", r#"shift; exec "$@""#),
    (
        "ss",
        r#"echo 'tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=632,fd=6))'"#,
    ),
    (
        "ip",
        r#"echo 'Warning: an unrelated warning' >&2
echo '[{"dst":"default","gateway":"10.0.2.2","dev":"ens2","protocol":"dhcp","flags":[]}]'"#,
    ),
    (
        "findmnt",
        r#"echo 'findmnt: cannot read /proc/self/mountinfo' >&2; exit 1"#,
    ),
    ("cat", r#"printf '1024\t2047\n'"#),
    (
        "docker",
        r#"echo '{"Names":"caddy","State":"running","Ports":"0.0.0.0:443->443/tcp"}'"#,
    ),
];

fn install_stubs(dir: &Path) {
    for (name, body) in STUBS {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn the_script_frames_every_section_and_survives_missing_and_failing_commands() {
    let bin = tempfile::tempdir().unwrap();
    install_stubs(bin.path());
    let sh = Shell::new().unwrap();
    let out = cmd!(sh, "/bin/sh -s")
        .exec()
        .env("PATH", bin.path())
        .stdin(CAPTURE_SCRIPT)
        .quiet()
        .run()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "the script wrote to stderr: {}",
        out.stderr
    );
    let text = out.stdout;
    let headers: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("### ") && !l.starts_with("### rc=") && *l != "### stderr")
        .collect();
    assert_eq!(
        headers,
        [
            "### is-system-running",
            "### units-json",
            "### unit-files-json",
            "### ss-tulpn",
            "### nft-text",
            "### ip-route-json",
            "### findmnt-json",
            "### docker-ps",
            "### port-range",
        ]
    );
    assert_eq!(text.matches("### rc=").count(), headers.len(), "{text}");

    let state = parse_capture(&text).unwrap();
    assert_eq!(state.system, Section::Available("degraded".to_owned()));
    let failed = state.failed_units.available().unwrap();
    assert!(failed.contains("boot-only.service"), "{failed:?}");
    let enabled = state.enabled_units.available().unwrap();
    assert_eq!(enabled.keys().collect::<Vec<_>>(), ["ssh.service"]);
    let listeners = state.listeners.available().unwrap();
    assert_eq!(listeners[0].processes, ["sshd"]);
    assert_eq!(
        state.nftables,
        Section::Unavailable("nft is not installed".to_owned())
    );
    let routes = state.routes.available().expect("stderr spoiled the JSON");
    assert_eq!(routes[0].gateway.as_deref(), Some("10.0.2.2"));
    assert_eq!(
        state.mounts,
        Section::Unavailable("exit status 1: findmnt: cannot read /proc/self/mountinfo".to_owned())
    );
    assert_eq!(state.containers.available().unwrap()[0].name, "caddy");

    let expected = PortRange {
        low: 1024,
        high: 2047,
    };
    assert_eq!(state.ephemeral_ports, expected);
}
