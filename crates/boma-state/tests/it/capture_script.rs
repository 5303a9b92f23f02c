//! Runs `CAPTURE_SCRIPT` under `/bin/sh` (dash, as on Debian) the way the harness does, script
//! on stdin, against stand-in commands: proves its framing, that one missing or failing
//! command spoils only its own section, and that stderr stays out of the JSON.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use boma_exec::CmdExt as _;
use boma_state::{CAPTURE_SCRIPT, PortRange, SETTLE_WITHIN_SECONDS, Section, parse_capture};
use xshell::{Shell, cmd};

/// Stand-ins for the guest's tools. `nft` is missing, `ip` warns on stderr, `findmnt` fails,
/// `list-unit-files` prints no trailing newline, `cat` stands in for the sysctl file, systemd
/// has no job and no unit restarting, and `sleep` counts the seconds it was asked to wait in
/// the file `slept` beside it instead of sleeping.
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
"list-jobs --no-legend --no-pager") ;;
"list-units --all --no-legend --no-pager --plain --state=auto-restart,auto-restart-queued") ;;
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
        "sleep",
        r#"n=0; if [ -f "${0%/*}/slept" ]; then read -r n < "${0%/*}/slept"; fi; echo $((n + $1)) > "${0%/*}/slept""#,
    ),
    (
        "docker",
        r#"echo '{"Names":"caddy","State":"running","Ports":"0.0.0.0:443->443/tcp"}'"#,
    ),
];

fn install_stubs(dir: &Path, overrides: &[(&str, &str)]) {
    for (name, body) in STUBS.iter().chain(overrides) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Runs `CAPTURE_SCRIPT` under `/bin/sh -s` with only the stand-ins (`overrides` replacing
/// some) on `PATH`; its stdout, and how many seconds it asked `sleep` for.
fn run_capture(overrides: &[(&str, &str)]) -> (String, u32) {
    let bin = tempfile::tempdir().unwrap();
    install_stubs(bin.path(), overrides);
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
    let slept = std::fs::read_to_string(bin.path().join("slept"))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0);
    (out.stdout, slept)
}

/// One section of a capture: its text between `### <name>` and `### rc=N`, and N.
fn section<'a>(text: &'a str, name: &str) -> (&'a str, &'a str) {
    let start = text.find(&format!("### {name}\n")).unwrap() + name.len() + 5;
    let body = &text[start..];
    let end = body.find("### rc=").unwrap();
    let rc = body[end + 7..].lines().next().unwrap();
    (&body[..end], rc)
}

#[test]
fn the_script_frames_every_section_and_survives_missing_and_failing_commands() {
    let (text, slept) = run_capture(&[]);
    assert_eq!(slept, 0, "a settled host is not waited for");
    assert_eq!(section(&text, "settle"), ("settled after 0 s\n", "0"));
    let headers: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("### ") && !l.starts_with("### rc=") && *l != "### stderr")
        .collect();
    assert_eq!(
        headers,
        [
            "### is-system-running",
            "### settle",
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

/// systemd's jobs as `systemctl list-jobs --no-legend` prints them, and a unit in its restart
/// loop as `list-units --plain --no-legend` does, for as many seconds as `slept` says.
const SLOW_SYSTEMD: &str = r#"n=0; if [ -f "${0%/*}/slept" ]; then read -r n < "${0%/*}/slept"; fi
case "$*" in
"list-jobs --no-legend --no-pager")
  if [ "$n" -lt "${JOBS_FOR:-2}" ]; then echo '1234 web.service restart running'; fi ;;
"list-units --all --no-legend --no-pager --plain --state=auto-restart,auto-restart-queued")
  if [ "$n" -lt "${LOOPS_FOR:-3}" ]; then echo 'api.service loaded activating auto-restart API server'; fi ;;
*) exec "${0%/*}/systemctl.real" "$@" ;;
esac"#;

/// A handler's restart still running and a unit retried after failing once: the capture waits
/// for both, a second at a time, and reads the units after.
#[test]
fn the_capture_waits_for_systemds_jobs_and_restart_loops_to_end() {
    let real = STUBS
        .iter()
        .find(|(name, _)| *name == "systemctl")
        .unwrap()
        .1;
    let (text, slept) = run_capture(&[("systemctl.real", real), ("systemctl", SLOW_SYSTEMD)]);
    assert_eq!(section(&text, "settle"), ("settled after 3 s\n", "0"));
    assert_eq!(slept, 3);
    let state = parse_capture(&text).unwrap();
    assert!(state.units.available().is_some());
}

/// A unit that keeps restarting holds the capture at most `SETTLE_WITHIN_SECONDS`; then the
/// section names what was still going on and the capture goes on.
#[test]
fn the_wait_is_bounded_and_says_what_did_not_settle() {
    assert!(
        CAPTURE_SCRIPT.contains(&format!("\nsettle_within={SETTLE_WITHIN_SECONDS}\n")),
        "the script's bound and SETTLE_WITHIN_SECONDS disagree"
    );
    let real = STUBS
        .iter()
        .find(|(name, _)| *name == "systemctl")
        .unwrap()
        .1;
    let forever = SLOW_SYSTEMD.replace("${LOOPS_FOR:-3}", "1000");
    let (text, slept) = run_capture(&[("systemctl.real", real), ("systemctl", &forever)]);
    assert_eq!(slept, SETTLE_WITHIN_SECONDS);
    assert_eq!(
        section(&text, "settle"),
        (
            format!(
                "not settled after {SETTLE_WITHIN_SECONDS} s\napi.service loaded activating auto-restart API server\n"
            )
            .as_str(),
            "1"
        )
    );
    let state = parse_capture(&text).unwrap();
    assert!(state.units.available().is_some());
}
