//! The parser and the diff on captures taken from real Debian 13 guests with
//! `/work/captures/capture.sh` (committed under `tests/fixtures/`): what each capture parses
//! to, and the rendered diff of each before/after pair.

use boma_state::{
    CAPTURE_SCRIPT, GuestState, Ignore, PortRange, ProbeResult, RebootDiff, Section, Snapshot,
    diff, parse_capture, render_text,
};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn state(name: &str) -> GuestState {
    parse_capture(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn snapshot(name: &str, probes: Vec<ProbeResult>) -> Snapshot {
    Snapshot {
        guest: state(name),
        probes,
    }
}

fn json(state: &GuestState) -> String {
    serde_json::to_string_pretty(state).unwrap()
}

/// Every section of a capture taken on a host with these tools is read.
fn assert_all_available(name: &str, state: &GuestState) {
    let unavailable: Vec<String> = [
        ("system", why(&state.system)),
        ("failed units", why(&state.failed_units)),
        ("units", why(&state.units)),
        ("enabled units", why(&state.enabled_units)),
        ("listeners", why(&state.listeners)),
        ("nftables", why(&state.nftables)),
        ("routes", why(&state.routes)),
        ("mounts", why(&state.mounts)),
        ("containers", why(&state.containers)),
    ]
    .into_iter()
    .filter_map(|(what, why)| why.map(|why| format!("{what}: {why}")))
    .collect();
    assert!(unavailable.is_empty(), "{name}: {unavailable:?}");
}

fn why<T>(section: &Section<T>) -> Option<&str> {
    match section {
        Section::Available(_) => None,
        Section::Unavailable(why) => Some(why),
    }
}

/// The diff of a pair of fixtures, `<dir>/before.txt` and `<dir>/after.txt`.
fn pair(dir: &str) -> RebootDiff {
    diff(
        &snapshot(&format!("{dir}/before.txt"), Vec::new()),
        &snapshot(&format!("{dir}/after.txt"), Vec::new()),
        &Ignore::builtin(),
    )
}

/// The diff of two parsed states (real captures, perhaps changed), with no probes and the
/// built-in ignore list.
fn diff_states(before: GuestState, after: GuestState) -> RebootDiff {
    let snapshot = |guest| Snapshot {
        guest,
        probes: Vec::new(),
    };
    diff(&snapshot(before), &snapshot(after), &Ignore::builtin())
}

/// Each of `expected` is among `found`.
fn assert_among(found: &[String], expected: &[&str]) {
    for one in expected {
        assert!(
            found.iter().any(|f| f == one),
            "{one} missing from {found:#?}"
        );
    }
}

/// The rendered diff, then each ignored finding: the snapshot shows what the built-in list
/// hides, so a new entry in it is reviewed.
fn report(result: &RebootDiff) -> String {
    let mut text = render_text(result);
    for finding in &result.ignored {
        text.push_str(&format!("IGNORED {finding}\n"));
    }
    text
}

fn displays(findings: &[boma_state::Finding]) -> Vec<String> {
    findings.iter().map(ToString::to_string).collect()
}

#[test]
fn golden_fresh_parses_with_nft_and_docker_absent() {
    let state = state("golden-fresh.txt");
    assert_eq!(state.system, Section::Available("running".to_owned()));
    assert_eq!(
        state.nftables,
        Section::Unavailable("nft is not installed".to_owned())
    );
    assert_eq!(
        state.containers,
        Section::Unavailable("docker is not installed".to_owned())
    );
    let units = state.units.available().unwrap();
    assert_eq!(units["ssh.service"].sub, "running");
    assert!(
        !units.contains_key("home.mount"),
        "a not-found unit was kept"
    );
    assert_eq!(state.ephemeral_ports, PortRange::LINUX_DEFAULT);
}

#[test]
fn askari_before_parses_every_section() {
    let state = state("askari/before.txt");
    assert_all_available("askari/before.txt", &state);
    let nft = state.nftables.available().unwrap();
    let tables: Vec<&str> = nft.tables.keys().map(String::as_str).collect();
    assert_eq!(tables, ["inet filter", "ip filter", "ip nat"]);
    let forward = nft.tables["inet filter"].chains["forward"].base.as_ref();
    assert_eq!(forward.and_then(|b| b.policy.as_deref()), Some("drop"));
    let containers = state.containers.available().unwrap();
    assert_eq!(containers[0].name, "caddy");
    assert_eq!(containers[0].state, "running");
}

/// Captures of complete runs of the capture script on hosts with nft and docker.
const COMPLETE: &[&str] = &[
    "askari/before.txt",
    "askari/after.txt",
    "askari-red/before.txt",
    "askari-red/after.txt",
];

#[test]
fn complete_captures_parse_every_section() {
    for name in COMPLETE {
        assert_all_available(name, &state(name));
    }
}

/// Every capture under `tests/fixtures/`, as `dir/file.txt`, sorted.
fn all_fixtures() -> Vec<String> {
    let root = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let files: Vec<_> = if path.is_dir() {
            std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        } else {
            vec![path]
        };
        for file in files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "txt"))
        {
            let relative = file.strip_prefix(&root).unwrap();
            names.push(relative.to_str().unwrap().to_owned());
        }
    }
    names.sort();
    names
}

/// What each fixture parses to, one named snapshot per file: `askari/before.txt` is
/// `state_askari_before`.
#[test]
fn every_fixture_parses_to_its_snapshot() {
    let names = all_fixtures();
    assert!(names.len() >= 12, "{names:?}");
    for name in names {
        let slug = name.trim_end_matches(".txt").replace(['/', '-'], "_");
        insta::assert_snapshot!(format!("state_{slug}"), json(&state(&name)));
    }
}

/// A healthy askari (Debian 13, Docker, Caddy in a container, nftables) across a real reboot:
/// the hard requirement is that nothing is lost and nothing is new.
#[test]
fn a_healthy_askari_reboot_is_quiet() {
    let result = pair("askari");
    assert!(result.lost.is_empty(), "{}", report(&result));
    assert!(result.appeared.is_empty(), "{}", report(&result));
    assert!(result.unavailable.is_empty(), "{}", report(&result));
    insta::assert_snapshot!("diff_askari", report(&result));
}

/// The incident (forward chain `policy drop` without Docker's drop-in) survives the reboot
/// unchanged on the guest: the guest-side diff is quiet, and only the controller's probe of the
/// published port tells. The probe results are hand-made here (the harness produces them); the
/// guest states are the real captures.
#[test]
fn the_incident_is_quiet_on_the_guest_and_caught_by_the_probe() {
    let result = pair("askari-red");
    assert!(result.passed(), "{}", report(&result));
    assert!(result.appeared.is_empty(), "{}", report(&result));
    insta::assert_snapshot!("diff_askari_red", report(&result));

    let probe = |ok: bool, reason: &str| ProbeResult {
        port: 443,
        kind: "https".to_owned(),
        ok,
        reason: reason.to_owned(),
    };
    let result = diff(
        &snapshot("askari-red/before.txt", vec![probe(true, "ok")]),
        &snapshot("askari-red/after.txt", vec![probe(false, "timeout")]),
        &Ignore::builtin(),
    );
    assert_eq!(displays(&result.lost), ["probe_failed 443 timeout"]);
}

/// A real capture caught while it was still being written (it ends inside `unit-files-json`):
/// each section it lacks was readable before the reboot, so each is lost by name; what it has
/// (the system state, the units) is compared as usual.
#[test]
fn a_capture_cut_short_loses_the_sections_it_lacks() {
    let cut = state("askari-red/after-cut-short.txt");
    assert_eq!(
        cut.enabled_units,
        Section::Unavailable("the capture ended inside this section".to_owned())
    );
    assert_eq!(
        cut.nftables,
        Section::Unavailable("not in the capture".to_owned())
    );
    assert!(cut.units.available().is_some());
    let result = diff_states(state("askari-red/before.txt"), cut);
    assert_eq!(
        displays(&result.lost),
        [
            "section_lost containers",
            "section_lost listeners",
            "section_lost mounts",
            "section_lost nftables",
            "section_lost routes",
            "section_lost unit-files",
        ],
        "{}",
        report(&result)
    );
    assert!(result.appeared.is_empty(), "{}", report(&result));
    insta::assert_snapshot!("diff_askari_red_cut_short", report(&result));
}

/// The real askari capture after the reboot, with `docker ps` timing out (`timeout 60` exits
/// 124) the way the capture script frames it: the containers were readable before the reboot,
/// so they are lost as a section, not skipped as "not compared".
#[test]
fn docker_ps_timing_out_after_the_reboot_is_lost() {
    let text = fixture("askari/after.txt");
    let start = text.find("### docker-ps\n").unwrap();
    let end = start + text[start..].find("### rc=0\n").unwrap() + "### rc=0\n".len();
    let timed_out = format!(
        "{}### docker-ps\n### rc=124\n{}",
        &text[..start],
        &text[end..]
    );
    let result = diff_states(
        state("askari/before.txt"),
        parse_capture(&timed_out).unwrap(),
    );
    assert_eq!(displays(&result.lost), ["section_lost containers"]);
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("readable before the reboot, not after: docker timed out")
    );
}

#[test]
fn a_capture_compared_with_itself_is_quiet() {
    for name in std::iter::once(&"golden-fresh.txt").chain(COMPLETE) {
        let same = snapshot(name, Vec::new());
        let result = diff(&same, &same, &Ignore::builtin());
        assert!(result.lost.is_empty(), "{name}: {}", render_text(&result));
        assert!(
            result.appeared.is_empty(),
            "{name}: {}",
            render_text(&result)
        );
        assert!(
            result.ignored.is_empty(),
            "{name}: {}",
            render_text(&result)
        );
    }
}

#[test]
fn a_fresh_host_made_into_askari_shows_what_appeared() {
    // Not a reboot, but two real states: what the apply added is new, and the sections the
    // fresh host could not show (no nft, no docker) are not compared rather than all new.
    let result = diff(
        &snapshot("golden-fresh.txt", Vec::new()),
        &snapshot("askari/before.txt", Vec::new()),
        &Ignore::builtin(),
    );
    assert_among(
        &displays(&result.appeared),
        &[
            "listener_appeared tcp/443 docker-proxy",
            "listener_appeared udp/443 docker-proxy",
            "unit_appeared docker.service",
            "unit_enabled docker.service",
            "route_appeared 172.18.0.0/16 dev br-ee7bb0e6e49d",
        ],
    );
    assert_eq!(
        result.unavailable,
        [
            "nftables: nft is not installed (before the reboot)",
            "containers: docker is not installed (before the reboot)",
        ]
    );
    insta::assert_snapshot!("diff_golden_fresh_to_askari", render_text(&result));
}

/// The real askari pair, with the IPv4 half of two services' sockets gone after the reboot
/// and an IPv6-only socket in its place: `ss` shows sshd as `0.0.0.0:22` and `[::]:22`, and
/// an IPv6-only socket takes no IPv4 connection, so each is a loss.
#[test]
fn losing_the_ipv4_socket_while_an_ipv6_only_one_stays_is_lost() {
    let after: String = fixture("askari/after.txt")
        .lines()
        .filter(|l| !(l.contains(" 0.0.0.0:22 ") && l.contains("\"sshd\"")))
        .map(|l| {
            if l.starts_with("tcp ") && l.contains(" 0.0.0.0:443 ") {
                format!(
                    "{}\n",
                    l.replace("0.0.0.0:443 ", "[::]:443    ")
                        .replace("0.0.0.0:*", "   [::]:*")
                )
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(after.contains("[::]:443 "), "the fixture changed: {after}");
    let result = diff_states(state("askari/before.txt"), parse_capture(&after).unwrap());
    assert_eq!(
        displays(&result.lost),
        [
            "listener_lost tcp/22 sshd",
            "listener_lost tcp/443 docker-proxy"
        ],
        "{}",
        report(&result)
    );
    for finding in &result.lost {
        assert_eq!(
            finding.detail.as_deref(),
            Some("on every IPv4 address (0.0.0.0)")
        );
    }
    assert_eq!(
        displays(&result.appeared),
        ["listener_appeared tcp/443 docker-proxy"]
    );
}

/// The built-in rules about Docker's mounts and routes have the shape of what Docker made in
/// the real askari capture, and hide nothing the host made itself: with every mount and route
/// of that capture gone, Docker's are ignored and the host's own are lost, the main interface's
/// link-local route among them.
#[test]
fn the_docker_rules_hide_what_docker_made_in_a_real_capture_and_nothing_else() {
    let before = state("askari/before.txt");
    let mut after = before.clone();
    after.mounts = Section::Available(Vec::new());
    after.routes = Section::Available(Vec::new());
    let result = diff_states(before, after);
    let ignored = displays(&result.ignored);
    // Made by Docker.
    assert_among(
        &ignored,
        &[
            "mount_lost /run/docker/netns/371a9e81f5be nsfs",
            "mount_lost /var/lib/docker/overlay2/ade1d6a439ee5ff48c87712ae18308b174e9fe3382337bc7028a34e12e60c9cf/merged overlay",
            "route_lost fe80::/64 dev docker0",
            "route_lost fe80::/64 dev br-ee7bb0e6e49d",
            "route_lost fe80::/64 dev veth395b6c9",
        ],
    );
    // Made by the host.
    assert_among(
        &displays(&result.lost),
        &[
            "route_lost fe80::/64 dev ens2",
            "route_lost default via 10.0.2.2 dev ens2",
            "route_lost 172.18.0.0/16 dev br-ee7bb0e6e49d",
            "mount_lost / ext4",
            "mount_lost /tmp tmpfs",
        ],
    );
    // On the main interface, only what a router advertised with a lifetime is skipped.
    let main_interface: Vec<&String> = ignored.iter().filter(|i| i.ends_with(" ens2")).collect();
    assert_eq!(
        main_interface,
        [
            "route_lost default via fe80::2 dev ens2",
            "route_lost fec0::/64 dev ens2"
        ]
    );
}

/// What the built-in rules hid before they were narrowed, on the real askari pair: WireGuard's
/// kernel socket (no process) on 51820 and a port a unit's configuration names, both in the
/// ephemeral range; containerd on a non-loopback address; a data volume mounted under
/// /var/lib/docker; the main interface's link-local route. Each is now lost by name.
#[test]
fn what_the_narrowed_rules_no_longer_hide_is_found() {
    let sockets = "\
udp   UNCONN 0      0             0.0.0.0:51820 0.0.0.0:*
tcp   LISTEN 0      5             0.0.0.0:40000 0.0.0.0:* users:((\"python3\",pid=700,fd=3))
tcp   LISTEN 0      4096          0.0.0.0:41000 0.0.0.0:* users:((\"containerd\",pid=1329,fd=10))
";
    let text = fixture("askari/before.txt").replacen(
        "### ss-tulpn\n",
        &format!("### ss-tulpn\n{sockets}"),
        1,
    );
    let mut before = parse_capture(&text).unwrap();
    let Section::Available(mounts) = &mut before.mounts else {
        panic!("askari has mounts");
    };
    mounts.push(boma_state::Mount {
        target: "/var/lib/docker/volumes/pgdata/_data".to_owned(),
        fstype: "ext4".to_owned(),
        source: "/dev/vdb".to_owned(),
    });
    let mut after = state("askari/after.txt");
    let Section::Available(routes) = &mut after.routes else {
        panic!("askari has routes");
    };
    routes.retain(|r| !(r.dst == "fe80::/64" && r.dev.as_deref() == Some("ens2")));
    let result = diff_states(before, after);
    assert_eq!(
        displays(&result.lost),
        [
            "listener_lost tcp/40000 python3",
            "listener_lost tcp/41000 containerd",
            "listener_lost udp/51820",
            "route_lost fe80::/64 dev ens2",
            "mount_lost /var/lib/docker/volumes/pgdata/_data ext4",
        ],
        "{}",
        report(&result)
    );
}

/// The real askari capture after the reboot with sshd in systemd's restart loop and caddy in
/// Docker's, each in the exact form `systemctl list-units --output=json` and `docker ps
/// --format '{{json .}}'` print it: each is a loss of its own, not a pass.
#[test]
fn a_unit_and_a_container_still_restarting_after_the_reboot_are_lost() {
    let text = fixture("askari/after.txt");
    let sshd = r#"{"unit":"ssh.service","load":"loaded","active":"active","sub":"running","#;
    let caddy = r#""State":"running","Status":"Up 43 seconds""#;
    assert!(
        text.contains(sshd) && text.contains(caddy),
        "the fixture changed"
    );
    let restarting = text
        .replacen(
            sshd,
            r#"{"unit":"ssh.service","load":"loaded","active":"activating","sub":"auto-restart","#,
            1,
        )
        .replacen(
            caddy,
            r#""State":"restarting","Status":"Restarting (1) 4 seconds ago""#,
            1,
        );
    let result = diff_states(
        state("askari/before.txt"),
        parse_capture(&restarting).unwrap(),
    );
    assert_eq!(
        displays(&result.lost),
        ["unit_restarting ssh.service", "container_restarting caddy"],
        "{}",
        report(&result)
    );
}

/// A real guest after a real reboot with a unit in systemd's restart loop (`restart-loop/`: a
/// VM of the golden image with `boma-loop.service`, `ExecStart=/bin/false`, `Restart=always`,
/// `RestartSec=5`, enabled, then rebooted): `units-json` says `activating`/`auto-restart`, the
/// `units-restarting` section lists it, and the diff against a healthy boot of the same image
/// names it `unit_restarting`.
#[test]
fn a_real_restart_loop_after_a_real_reboot_is_unit_restarting() {
    let text = fixture("restart-loop/after.txt");
    assert!(text.contains(
        r#"{"unit":"boma-loop.service","load":"loaded","active":"activating","sub":"auto-restart","description":"boma loop"}"#
    ));
    assert!(
        text.contains(
            "### units-restarting\nboma-loop.service loaded activating auto-restart boma loop\n"
        ),
        "the raw section as the settle wait polls it"
    );
    let result = diff_states(state("golden-fresh.txt"), state("restart-loop/after.txt"));
    let lost = displays(&result.lost);
    assert!(
        lost.iter()
            .any(|f| f == "unit_restarting boma-loop.service"),
        "{}",
        report(&result)
    );
}

/// The fixtures are what the parser reads in production: every section `CAPTURE_SCRIPT`
/// prints is in them under the same name, but the port range (whose absence means Linux's
/// default) and the settle wait (the parser reads nothing from it: the units' states are in
/// `units-json`).
#[test]
fn the_fixtures_have_every_section_the_production_script_prints() {
    let names: Vec<&str> = CAPTURE_SCRIPT
        .lines()
        .filter_map(|line| line.strip_prefix("sec "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    let capture = fixture("askari/before.txt");
    for name in names
        .into_iter()
        .filter(|n| !matches!(*n, "port-range" | "settle"))
    {
        assert!(
            capture.lines().any(|l| l == format!("### {name}")),
            "section {name} is not in the fixtures"
        );
    }
}

/// The failure-mode catalogue: each RED pair (the bug, before and after a real reboot) and the
/// exact findings it must produce; each GREEN pair (the same host done right) must be quiet.
const CATALOGUE: &[(&str, &[&str])] = &[
    (
        "cat-not-enabled-red",
        &[
            "unit_inactive boma-cat-web.service",
            "listener_lost tcp/8080 python3",
        ],
    ),
    (
        "cat-lost-route-red",
        &["route_lost 198.51.100.0/24 via 10.0.2.2 dev ens2"],
    ),
    (
        "cat-mount-order-red",
        &[
            "degraded: boma-cat-reader.service failed",
            "unit_failed boma-cat-reader.service",
            "listener_lost tcp/8081 python3",
            "mount_lost /srv/boma-cat-data ext4",
        ],
    ),
    // A flush of the whole ruleset after Docker started takes Docker's tables with it: the
    // loss is reported at the table, with its chains in the detail.
    (
        "cat-nft-flush-red",
        &["table_lost ip filter", "table_lost ip nat"],
    ),
];

/// One VM with the GREEN of `cat_not_enabled`, `cat_lost_route` (with `onlink`) and
/// `cat_mount_order` applied together, after their REDs had been rebooted.
const CATALOGUE_GREEN: &[&str] = &["cat-green"];

#[test]
fn each_catalogue_red_loses_exactly_what_it_breaks() {
    for (dir, expected) in CATALOGUE {
        let result = pair(dir);
        assert_eq!(
            displays(&result.lost),
            *expected,
            "{dir}:\n{}",
            report(&result)
        );
        let slug = dir.replace('-', "_");
        insta::assert_snapshot!(format!("diff_{slug}"), report(&result));
    }
}

#[test]
fn each_catalogue_green_is_quiet() {
    for dir in CATALOGUE_GREEN {
        let result = pair(dir);
        assert!(result.lost.is_empty(), "{dir}:\n{}", report(&result));
        assert!(result.appeared.is_empty(), "{dir}:\n{}", report(&result));
        let slug = dir.replace('-', "_");
        insta::assert_snapshot!(format!("diff_{slug}"), report(&result));
    }
}

/// The GREEN of the nftables-flush mode, taken on the VM that had run its RED and an
/// experiment whose boot never finished (`is-system-running` still `starting`, cloud-init not
/// done, `nftables.service` active), then Docker restarted by hand, which left its FORWARD
/// policy `accept` because IP forwarding was already on. Docker's tables and chains are all
/// there after the reboot; what the diff reports is that unfinished boot and the policy change,
/// each real, and it says the first capture came from an unfinished boot.
#[test]
fn the_nft_flush_green_after_an_unfinished_boot_keeps_dockers_chains() {
    let result = pair("cat-nft-flush");
    assert_eq!(
        displays(&result.lost),
        [
            "unit_inactive cloud-init-main.service",
            "unit_inactive nftables.service",
            "chain_changed ip filter FORWARD",
        ],
        "{}",
        report(&result)
    );
    assert!(
        result.unavailable[0].contains("the boot had not finished"),
        "{:?}",
        result.unavailable
    );
    insta::assert_snapshot!("diff_cat_nft_flush", report(&result));
}
