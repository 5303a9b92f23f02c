//! Each reason of the reboot diff on small hand-made states, the ignore list, sections that
//! could not be read, and the rendered text.

use std::collections::{BTreeMap, BTreeSet};

use boma_state::{
    BaseChain, Chain, Container, GuestState, Ignore, ListenAddress, Listener, Mount, PortRange,
    ProbeResult, Reason, RebootDiff, Route, Ruleset, Section, Snapshot, Table, Unit, diff,
    render_text,
};

fn unit(kind: &str, active: &str, sub: &str) -> Unit {
    Unit {
        kind: kind.to_owned(),
        active: active.to_owned(),
        sub: sub.to_owned(),
    }
}

/// A socket, its address as `ss` prints it: `0.0.0.0`, `[::]`, `*`, `127.0.0.53%lo`.
fn listener(proto: &str, port: u16, address: &str, process: &str) -> Listener {
    Listener {
        proto: proto.to_owned(),
        port,
        address: ListenAddress::from_ss(address),
        processes: vec![process.to_owned()],
    }
}

fn route(dst: &str, gateway: Option<&str>, dev: &str, protocol: &str) -> Route {
    Route {
        table: "main".to_owned(),
        kind: "unicast".to_owned(),
        dst: dst.to_owned(),
        gateway: gateway.map(str::to_owned),
        dev: Some(dev.to_owned()),
        protocol: Some(protocol.to_owned()),
        expires: false,
    }
}

fn mount(target: &str, fstype: &str, source: &str) -> Mount {
    Mount {
        target: target.to_owned(),
        fstype: fstype.to_owned(),
        source: source.to_owned(),
    }
}

fn container(name: &str, state: &str) -> Container {
    Container {
        name: name.to_owned(),
        state: state.to_owned(),
        ports: vec!["0.0.0.0:443->443/tcp".to_owned()],
    }
}

fn chain(base: Option<(&str, &str, &str, &str)>, rules: &[&str]) -> Chain {
    Chain {
        base: base.map(|(kind, hook, priority, policy)| BaseChain {
            kind: kind.to_owned(),
            hook: hook.to_owned(),
            priority: priority.to_owned(),
            policy: Some(policy.to_owned()),
        }),
        rules: rules.iter().map(|r| (*r).to_owned()).collect(),
    }
}

/// A small healthy Docker host: sshd, a web service, nftables with Docker's nat table, a
/// container, a static route and a data mount.
fn healthy() -> GuestState {
    let units = BTreeMap::from([
        (
            "ssh.service".to_owned(),
            unit("service", "active", "running"),
        ),
        (
            "web.service".to_owned(),
            unit("service", "active", "running"),
        ),
        (
            "docker.service".to_owned(),
            unit("service", "active", "running"),
        ),
        (
            "srv-data.mount".to_owned(),
            unit("mount", "active", "mounted"),
        ),
    ]);
    let enabled = ["ssh.service", "web.service", "docker.service"]
        .into_iter()
        .map(|u| (u.to_owned(), "enabled".to_owned()))
        .collect();
    let mut filter = Table::default();
    filter.chains.insert(
        "forward".to_owned(),
        chain(
            Some(("filter", "forward", "filter", "drop")),
            &[
                "ct state established,related accept",
                "iifname \"docker0\" accept",
            ],
        ),
    );
    let mut nat = Table::default();
    nat.chains.insert(
        "DOCKER".to_owned(),
        chain(None, &["iifname \"docker0\" counter return"]),
    );
    nat.chains.insert(
        "PREROUTING".to_owned(),
        chain(
            Some(("nat", "prerouting", "dstnat", "accept")),
            &["fib daddr type local counter jump DOCKER"],
        ),
    );
    let ruleset = Ruleset {
        tables: BTreeMap::from([
            ("inet filter".to_owned(), filter),
            ("ip nat".to_owned(), nat),
        ]),
    };
    GuestState {
        system: Section::Available("running".to_owned()),
        failed_units: Section::Available(BTreeSet::new()),
        units: Section::Available(units),
        enabled_units: Section::Available(enabled),
        listeners: Section::Available(vec![
            listener("tcp", 22, "*", "sshd"),
            listener("tcp", 8080, "*", "python3"),
            listener("udp", 53, "127.0.0.53%lo", "systemd-resolve"),
        ]),
        nftables: Section::Available(ruleset),
        routes: Section::Available(vec![
            route("default", Some("10.0.2.2"), "ens2", "dhcp"),
            route("198.51.100.0/24", Some("10.0.2.2"), "ens2", "static"),
        ]),
        mounts: Section::Available(vec![
            mount("/", "ext4", "/dev/vda1"),
            mount("/srv/data", "tmpfs", "tmpfs"),
        ]),
        containers: Section::Available(vec![container("caddy", "running")]),
        ephemeral_ports: PortRange::LINUX_DEFAULT,
    }
}

fn probe(port: u16, ok: bool, reason: &str) -> ProbeResult {
    ProbeResult {
        port,
        kind: "https".to_owned(),
        ok,
        reason: reason.to_owned(),
    }
}

fn snap(guest: GuestState) -> Snapshot {
    Snapshot {
        guest,
        probes: vec![probe(443, true, "ok")],
    }
}

/// The diff from [`healthy`] to `healthy` changed by `change`, with the built-in ignore list.
fn after(change: impl FnOnce(&mut GuestState)) -> RebootDiff {
    let mut changed = healthy();
    change(&mut changed);
    diff(&snap(healthy()), &snap(changed), &Ignore::builtin())
}

fn lost(result: &RebootDiff) -> Vec<String> {
    result.lost.iter().map(ToString::to_string).collect()
}

fn appeared(result: &RebootDiff) -> Vec<String> {
    result.appeared.iter().map(ToString::to_string).collect()
}

fn units(state: &mut GuestState) -> &mut BTreeMap<String, Unit> {
    match &mut state.units {
        Section::Available(units) => units,
        Section::Unavailable(_) => unreachable!(),
    }
}

fn available<T>(section: &mut Section<T>) -> &mut T {
    match section {
        Section::Available(value) => value,
        Section::Unavailable(_) => unreachable!(),
    }
}

#[test]
fn an_unchanged_host_is_quiet() {
    let result = after(|_| {});
    assert_eq!(result, RebootDiff::default());
    assert!(result.passed());
}

#[test]
fn degraded_names_the_newly_failed_units_besides_unit_failed() {
    let result = after(|s| {
        s.system = Section::Available("degraded".to_owned());
        s.failed_units = Section::Available(BTreeSet::from(["web.service".to_owned()]));
        units(s).insert(
            "web.service".to_owned(),
            unit("service", "failed", "failed"),
        );
    });
    assert_eq!(
        lost(&result),
        ["degraded: web.service failed", "unit_failed web.service"]
    );
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("system running -> degraded")
    );
    assert!(!result.passed());
}

#[test]
fn a_system_not_running_without_failed_units_says_its_state() {
    let result = after(|s| s.system = Section::Available("maintenance".to_owned()));
    assert_eq!(lost(&result), ["degraded: system is maintenance"]);
}

#[test]
fn a_unit_failed_before_and_after_is_not_news() {
    let mut before = healthy();
    before.failed_units = Section::Available(BTreeSet::from(["flaky.service".to_owned()]));
    let result = diff(&snap(before.clone()), &snap(before), &Ignore::builtin());
    assert!(result.lost.is_empty(), "{}", render_text(&result));
}

#[test]
fn a_service_started_but_not_enabled_is_inactive_after() {
    let result = after(|s| {
        units(s).insert(
            "web.service".to_owned(),
            unit("service", "inactive", "dead"),
        );
    });
    assert_eq!(lost(&result), ["unit_inactive web.service"]);
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("active/running -> inactive/dead")
    );
}

#[test]
fn a_transient_unit_gone_after_the_reboot_is_inactive() {
    let result = after(|s| {
        units(s).remove("web.service");
    });
    assert_eq!(lost(&result), ["unit_inactive web.service"]);
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("active/running -> not loaded")
    );
}

/// The capture waits (bounded) for systemd's jobs and restart loops to settle; a unit still in
/// `activating/auto-restart` after that keeps exiting, and is a loss of its own.
#[test]
fn a_unit_in_systemds_restart_loop_after_the_reboot_is_restarting() {
    let result = after(|s| {
        units(s).insert(
            "web.service".to_owned(),
            unit("service", "activating", "auto-restart"),
        );
    });
    assert_eq!(lost(&result), ["unit_restarting web.service"]);
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("active/running -> activating/auto-restart: systemd keeps restarting it")
    );
}

/// A restart loop is a loss whatever the unit was before the reboot: looping before and after
/// still fails, and so does one that was not there.
#[test]
fn a_restart_loop_after_the_reboot_fails_whatever_came_before() {
    let looping = |s: &mut GuestState| {
        units(s).insert(
            "web.service".to_owned(),
            unit("service", "activating", "auto-restart-queued"),
        );
        units(s).insert(
            "new.service".to_owned(),
            unit("service", "activating", "auto-restart"),
        );
    };
    let mut before = healthy();
    units(&mut before).insert(
        "web.service".to_owned(),
        unit("service", "activating", "auto-restart"),
    );
    let mut now = healthy();
    looping(&mut now);
    let result = diff(&snap(before), &snap(now), &Ignore::builtin());
    assert_eq!(
        lost(&result),
        ["unit_restarting new.service", "unit_restarting web.service"]
    );
}

/// A unit still starting before the reboot (a start job longer than the capture's wait) was
/// neither up nor down: not up after, it is said to be not compared, not passed in silence.
#[test]
fn a_unit_still_starting_before_the_reboot_is_not_compared_by_name() {
    let mut before = healthy();
    units(&mut before).insert(
        "slow.service".to_owned(),
        unit("service", "activating", "start"),
    );
    let mut now = healthy();
    units(&mut now).insert(
        "slow.service".to_owned(),
        unit("service", "inactive", "dead"),
    );
    let result = diff(&snap(before.clone()), &snap(now), &Ignore::builtin());
    assert!(result.lost.is_empty(), "{}", render_text(&result));
    assert_eq!(
        result.unavailable,
        [
            "units: still starting or stopping before the reboot, so not compared: slow.service (activating/start)"
        ]
    );
    // Up after the reboot, there is nothing to say but that it appeared.
    let mut up = healthy();
    units(&mut up).insert(
        "slow.service".to_owned(),
        unit("service", "active", "running"),
    );
    let result = diff(&snap(before), &snap(up), &Ignore::builtin());
    assert!(result.unavailable.is_empty(), "{:?}", result.unavailable);
}

#[test]
fn a_failed_unit_is_reported_once_as_failed() {
    let result = after(|s| {
        s.failed_units = Section::Available(BTreeSet::from(["web.service".to_owned()]));
        units(s).insert(
            "web.service".to_owned(),
            unit("service", "failed", "failed"),
        );
        s.system = Section::Available("running".to_owned());
    });
    assert_eq!(lost(&result), ["unit_failed web.service"]);
}

#[test]
fn an_enable_that_lived_in_run_is_lost() {
    let mut before = healthy();
    available(&mut before.enabled_units)
        .insert("late.service".to_owned(), "enabled-runtime".to_owned());
    let result = diff(&snap(before), &snap(healthy()), &Ignore::builtin());
    assert_eq!(lost(&result), ["unit_disabled late.service"]);
    assert!(
        result.lost[0].detail.as_deref().unwrap().contains("/run"),
        "{:?}",
        result.lost[0].detail
    );
}

#[test]
fn a_lost_listener_is_named_by_protocol_port_and_process() {
    let result = after(|s| available(&mut s.listeners).retain(|l| l.port != 8080));
    assert_eq!(lost(&result), ["listener_lost tcp/8080 python3"]);
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("on every IPv4 and IPv6 address (*)")
    );
}

/// `ss` shows sshd's two sockets as `0.0.0.0:22` and `[::]:22` (the second with IPV6_V6ONLY):
/// the IPv6-only one takes no IPv4 connection, so losing the IPv4 one is a loss.
#[test]
fn an_ipv4_socket_lost_while_its_ipv6_only_twin_stays_is_lost() {
    let both = |s: &mut GuestState| {
        let listeners = available(&mut s.listeners);
        listeners.retain(|l| l.port != 22);
        listeners.push(listener("tcp", 22, "0.0.0.0", "sshd"));
        listeners.push(listener("tcp", 22, "[::]", "sshd"));
    };
    let mut before = healthy();
    both(&mut before);
    let mut ipv6_only = before.clone();
    available(&mut ipv6_only.listeners).retain(|l| l.address != ListenAddress::AnyIpv4);
    let result = diff(&snap(before.clone()), &snap(ipv6_only), &Ignore::builtin());
    assert_eq!(lost(&result), ["listener_lost tcp/22 sshd"]);
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("on every IPv4 address (0.0.0.0)")
    );

    let mut none = before.clone();
    available(&mut none.listeners).retain(|l| l.port != 22);
    let result = diff(&snap(before), &snap(none), &Ignore::builtin());
    assert_eq!(lost(&result), ["listener_lost tcp/22 sshd"]);
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("on every IPv4 address (0.0.0.0), every IPv6 address ([::], IPv6 only)")
    );
}

#[test]
fn a_dual_stack_socket_is_served_by_an_ipv4_and_an_ipv6_only_socket_together() {
    let split = |keep_ipv4: bool| {
        after(|s| {
            let listeners = available(&mut s.listeners);
            listeners.retain(|l| l.port != 8080);
            listeners.push(listener("tcp", 8080, "[::]", "python3"));
            if keep_ipv4 {
                listeners.push(listener("tcp", 8080, "0.0.0.0", "python3"));
            }
        })
    };
    let result = split(true);
    assert!(result.lost.is_empty(), "{}", render_text(&result));
    let result = split(false);
    assert_eq!(lost(&result), ["listener_lost tcp/8080 python3"]);
}

#[test]
fn an_ipv4_wildcard_serves_an_ipv4_address_and_not_an_ipv6_one() {
    let moved = |from: &str, to: &str| {
        let mut before = healthy();
        available(&mut before.listeners).push(listener("tcp", 9000, from, "app"));
        let mut after = healthy();
        available(&mut after.listeners).push(listener("tcp", 9000, to, "app"));
        diff(&snap(before), &snap(after), &Ignore::builtin())
    };
    assert!(moved("127.0.0.1", "0.0.0.0").lost.is_empty());
    assert!(moved("[::1]", "[::]").lost.is_empty());
    assert_eq!(
        lost(&moved("[::1]", "0.0.0.0")),
        ["listener_lost tcp/9000 app"]
    );
    assert_eq!(
        lost(&moved("127.0.0.1", "[::]")),
        ["listener_lost tcp/9000 app"]
    );
}

#[test]
fn a_wildcard_listener_serves_a_specific_address() {
    let result = after(|s| {
        let listeners = available(&mut s.listeners);
        listeners.retain(|l| l.port != 53);
        listeners.push(listener("udp", 53, "*", "systemd-resolve"));
    });
    assert!(result.lost.is_empty(), "{}", render_text(&result));
    assert_eq!(
        appeared(&result),
        ["listener_appeared udp/53 systemd-resolve"]
    );
}

#[test]
fn a_specific_address_does_not_serve_a_wildcard() {
    let result = after(|s| {
        let listeners = available(&mut s.listeners);
        listeners.retain(|l| l.port != 8080);
        listeners.push(listener("tcp", 8080, "127.0.0.1", "python3"));
    });
    assert_eq!(lost(&result), ["listener_lost tcp/8080 python3"]);
}

/// containerd's streaming server takes a new port from the ephemeral range each start, on
/// 127.0.0.1 (askari: 45611 before the reboot, 37759 after).
#[test]
fn containerds_random_loopback_port_is_ignored() {
    let mut before = healthy();
    available(&mut before.listeners).push(listener("tcp", 45611, "127.0.0.1", "containerd"));
    let mut after = healthy();
    available(&mut after.listeners).push(listener("tcp", 39877, "127.0.0.1", "containerd"));
    let result = diff(&snap(before), &snap(after), &Ignore::builtin());
    assert!(
        result.lost.is_empty() && result.appeared.is_empty(),
        "{}",
        render_text(&result)
    );
    let ignored: Vec<String> = result.ignored.iter().map(ToString::to_string).collect();
    assert_eq!(
        ignored,
        [
            "listener_lost tcp/45611 containerd",
            "listener_appeared tcp/39877 containerd",
        ]
    );
}

/// rpc.statd binds its loopback notify socket with bindresvport: a new privileged port each
/// start. Seen in CI on a fleet's NFS server that did not lose anything: udp/700 before the
/// power loss, udp/671 after.
#[test]
fn statds_random_reserved_loopback_port_is_ignored_and_nothing_else_like_it() {
    let mut before = healthy();
    available(&mut before.listeners).push(listener("udp", 700, "127.0.0.1", "rpc.statd"));
    let mut after = healthy();
    available(&mut after.listeners).push(listener("udp", 671, "127.0.0.1", "rpc.statd"));
    let result = diff(&snap(before), &snap(after), &Ignore::builtin());
    assert!(
        result.lost.is_empty() && result.appeared.is_empty(),
        "{}",
        render_text(&result)
    );
    assert_eq!(result.ignored.len(), 2, "{}", render_text(&result));
    // Not on a public address, not another program at such a port, not statd's port outside
    // bindresvport's range.
    let mut before = healthy();
    available(&mut before.listeners).extend([
        listener("udp", 701, "0.0.0.0", "rpc.statd"),
        listener("udp", 702, "127.0.0.1", "python3"),
        listener("tcp", 2049, "127.0.0.1", "rpc.statd"),
    ]);
    let result = diff(&snap(before), &snap(healthy()), &Ignore::builtin());
    assert_eq!(
        lost(&result),
        [
            "listener_lost tcp/2049 rpc.statd",
            "listener_lost udp/701 rpc.statd",
            "listener_lost udp/702 python3",
        ]
    );
}

#[test]
fn any_other_listener_in_the_ephemeral_range_is_compared() {
    let mut before = healthy();
    available(&mut before.listeners).extend([
        listener("udp", 51820, "0.0.0.0", "wg"),
        listener("tcp", 45611, "127.0.0.1", "python3"),
        listener("tcp", 45612, "0.0.0.0", "containerd"),
    ]);
    let result = diff(&snap(before), &snap(healthy()), &Ignore::builtin());
    assert_eq!(
        lost(&result),
        [
            "listener_lost tcp/45611 python3",
            "listener_lost tcp/45612 containerd",
            "listener_lost udp/51820 wg",
        ]
    );
}

#[test]
fn a_lost_table_is_reported_without_its_chains() {
    let result = after(|s| {
        available(&mut s.nftables).tables.remove("ip nat");
    });
    assert_eq!(lost(&result), ["table_lost ip nat"]);
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("chains DOCKER, PREROUTING")
    );
}

#[test]
fn a_lost_chain_is_reported_without_its_rules() {
    let result = after(|s| {
        let nat = available(&mut s.nftables).tables.get_mut("ip nat").unwrap();
        nat.chains.remove("DOCKER");
    });
    assert_eq!(lost(&result), ["chain_lost ip nat DOCKER"]);
}

#[test]
fn a_lost_rule_names_its_table_and_chain() {
    let result = after(|s| {
        let filter = available(&mut s.nftables)
            .tables
            .get_mut("inet filter")
            .unwrap();
        filter
            .chains
            .get_mut("forward")
            .unwrap()
            .rules
            .retain(|r| !r.contains("docker0"));
    });
    assert_eq!(
        lost(&result),
        ["rule_lost inet filter forward: iifname \"docker0\" accept"]
    );
}

#[test]
fn a_rule_written_twice_and_kept_once_is_lost_once() {
    let mut before = healthy();
    let forward = |s: &mut GuestState| -> Vec<String> {
        let filter = &available(&mut s.nftables).tables["inet filter"];
        filter.chains["forward"].rules.clone()
    };
    let mut rules = forward(&mut before);
    rules.push("iifname \"docker0\" accept".to_owned());
    let filter = available(&mut before.nftables)
        .tables
        .get_mut("inet filter")
        .unwrap();
    filter.chains.get_mut("forward").unwrap().rules = rules;
    let result = diff(&snap(before), &snap(healthy()), &Ignore::builtin());
    assert_eq!(
        lost(&result),
        ["rule_lost inet filter forward: iifname \"docker0\" accept"]
    );
}

#[test]
fn a_base_chain_whose_policy_changed_is_reported() {
    let mut before = healthy();
    let filter = available(&mut before.nftables)
        .tables
        .get_mut("inet filter")
        .unwrap();
    let forward = filter.chains.get_mut("forward").unwrap();
    forward.base.as_mut().unwrap().policy = Some("accept".to_owned());
    let result = diff(&snap(before), &snap(healthy()), &Ignore::builtin());
    assert_eq!(lost(&result), ["chain_changed inet filter forward"]);
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some(
            "type filter hook forward priority filter policy accept, 2 rules -> \
             type filter hook forward priority filter policy drop, 2 rules"
        )
    );
}

#[test]
fn a_route_added_imperatively_is_lost() {
    let result = after(|s| available(&mut s.routes).retain(|r| r.dst != "198.51.100.0/24"));
    assert_eq!(
        lost(&result),
        ["route_lost 198.51.100.0/24 via 10.0.2.2 dev ens2"]
    );
    assert_eq!(result.lost[0].detail.as_deref(), Some("proto static"));
}

#[test]
fn a_route_learned_with_a_lifetime_is_ignored() {
    let mut before = healthy();
    let mut ra = route("default", Some("fe80::2"), "ens2", "ra");
    ra.expires = true;
    available(&mut before.routes).push(ra);
    let result = diff(&snap(before), &snap(healthy()), &Ignore::builtin());
    assert!(result.lost.is_empty(), "{}", render_text(&result));
    assert_eq!(result.ignored.len(), 1);
}

#[test]
fn a_route_in_another_table_or_of_another_type_says_so() {
    let mut before = healthy();
    let mut table = route("203.0.113.0/24", Some("10.0.2.2"), "ens2", "static");
    table.table = "100".to_owned();
    let mut unreachable = route("203.0.113.7", None, "lo", "static");
    unreachable.kind = "unreachable".to_owned();
    unreachable.dev = None;
    available(&mut before.routes).extend([table, unreachable]);
    let result = diff(&snap(before), &snap(healthy()), &Ignore::builtin());
    assert_eq!(
        lost(&result),
        [
            "route_lost 203.0.113.0/24 via 10.0.2.2 dev ens2 table 100",
            "route_lost unreachable 203.0.113.7",
        ]
    );
}

#[test]
fn a_mount_made_by_hand_is_lost_by_path_not_also_as_its_unit() {
    let result = after(|s| {
        available(&mut s.mounts).retain(|m| m.target != "/srv/data");
        units(s).remove("srv-data.mount");
    });
    assert_eq!(lost(&result), ["mount_lost /srv/data tmpfs"]);
}

/// A container Docker is still restarting at the capture keeps exiting: a loss of its own,
/// whatever it was before the reboot.
#[test]
fn a_container_docker_keeps_restarting_is_lost() {
    let result = after(|s| *available(&mut s.containers) = vec![container("caddy", "restarting")]);
    assert_eq!(lost(&result), ["container_restarting caddy"]);
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("running -> restarting: Docker keeps restarting it")
    );
    let mut before = healthy();
    *available(&mut before.containers) = vec![container("caddy", "restarting")];
    let result = diff(&snap(before.clone()), &snap(before), &Ignore::builtin());
    assert_eq!(lost(&result), ["container_restarting caddy"]);
}

#[test]
fn containers_lost_or_stopped() {
    let result = after(|s| available(&mut s.containers).clear());
    assert_eq!(lost(&result), ["container_lost caddy"]);
    let result = after(|s| *available(&mut s.containers) = vec![container("caddy", "exited")]);
    assert_eq!(lost(&result), ["container_not_running caddy"]);
    assert_eq!(result.lost[0].detail.as_deref(), Some("running -> exited"));
}

#[test]
fn a_probe_that_passed_before_and_fails_after_is_lost() {
    let before = snap(healthy());
    let mut after = snap(healthy());
    after.probes = vec![probe(443, false, "timeout")];
    let result = diff(&before, &after, &Ignore::builtin());
    assert_eq!(lost(&result), ["probe_failed 443 timeout"]);
    // The other way round it recovered: reported, not failed.
    let result = diff(&after, &before, &Ignore::builtin());
    assert!(result.passed());
    assert_eq!(appeared(&result), ["probe_recovered 443"]);
}

#[test]
fn a_probe_not_run_after_the_reboot_is_not_compared() {
    let before = snap(healthy());
    let mut after = snap(healthy());
    after.probes.clear();
    let result = diff(&before, &after, &Ignore::builtin());
    assert!(result.passed());
    assert_eq!(
        result.unavailable,
        ["probe 443/https: not run after the reboot"]
    );
}

#[test]
fn a_section_unreadable_before_the_reboot_is_not_compared() {
    let mut before = healthy();
    before.listeners = Section::Unavailable("exit status 1: ss: netlink failure".to_owned());
    before.nftables = Section::Unavailable("nft is not installed".to_owned());
    let mut after = healthy();
    after.nftables = Section::Unavailable("nft is not installed".to_owned());
    available(&mut after.listeners).clear();
    let result = diff(&snap(before), &snap(after), &Ignore::builtin());
    assert!(result.lost.is_empty(), "{}", render_text(&result));
    assert!(result.appeared.is_empty(), "{}", render_text(&result));
    assert_eq!(
        result.unavailable,
        [
            "listeners: exit status 1: ss: netlink failure (before the reboot)",
            "nftables: nft is not installed (before and after the reboot)",
        ]
    );
}

/// A section readable before the reboot and not after (`docker ps` timing out, `ss` failing, a
/// capture cut short) fails by name: it is never read as empty, and never passes as "not
/// compared".
#[test]
fn a_section_readable_before_and_not_after_is_lost() {
    let result = after(|s| {
        s.listeners = Section::Unavailable("exit status 1: ss: netlink failure".to_owned());
        s.nftables = Section::Unavailable("the capture ended inside this section".to_owned());
        s.containers = Section::Unavailable("docker timed out".to_owned());
        s.units = Section::Unavailable("not in the capture".to_owned());
        s.failed_units = Section::Unavailable("not in the capture".to_owned());
        s.system = Section::Unavailable("the boot did not finish within 120 s".to_owned());
    });
    assert_eq!(
        lost(&result),
        [
            "section_lost containers",
            "section_lost listeners",
            "section_lost nftables",
            "section_lost system",
            "section_lost units",
        ]
    );
    assert_eq!(
        result.lost[0].detail.as_deref(),
        Some("readable before the reboot, not after: docker timed out")
    );
    assert!(!result.passed());
    assert_eq!(
        result.unavailable,
        ["failed units: not in the capture (after the reboot)"]
    );
}

#[test]
fn what_appeared_after_the_reboot_does_not_fail() {
    let result = after(|s| {
        units(s).insert(
            "extra.service".to_owned(),
            unit("service", "active", "running"),
        );
        available(&mut s.listeners).push(listener("tcp", 9090, "*", "extra"));
        available(&mut s.containers).push(container("extra", "running"));
    });
    assert!(result.passed());
    assert_eq!(
        appeared(&result),
        [
            "unit_appeared extra.service",
            "listener_appeared tcp/9090 extra",
            "container_appeared extra",
        ]
    );
}

#[test]
fn the_builtin_list_ignores_a_new_login_session() {
    let mut before = healthy();
    units(&mut before).insert(
        "session-3.scope".to_owned(),
        unit("scope", "active", "running"),
    );
    units(&mut before).insert(
        "apt-daily.service".to_owned(),
        unit("service", "activating", "start"),
    );
    units(&mut before).insert(
        "ldconfig.service".to_owned(),
        unit("service", "active", "exited"),
    );
    let mut after = healthy();
    units(&mut after).insert(
        "session-1.scope".to_owned(),
        unit("scope", "active", "running"),
    );
    let result = diff(&snap(before), &snap(after), &Ignore::builtin());
    assert!(result.lost.is_empty(), "{}", render_text(&result));
    assert!(result.appeared.is_empty(), "{}", render_text(&result));
    assert_eq!(result.ignored.len(), 3);
}

#[test]
fn a_profile_pattern_moves_a_finding_to_ignored() {
    let ignore = Ignore::with_patterns(&["listener_lost tcp/8080 *".to_owned()]).unwrap();
    let mut changed = healthy();
    available(&mut changed.listeners).retain(|l| l.port != 8080);
    let result = diff(&snap(healthy()), &snap(changed), &ignore);
    assert!(result.passed());
    assert_eq!(result.ignored[0].reason, Reason::ListenerLost);
}

/// `reboot_diff_ignore: ["*"]` silenced the whole diff while the report said `reboot_diff: ok`.
/// A pattern that matches every finding of a reason is refused, and the refusal suggests no
/// `*` of its own.
#[test]
fn a_profile_pattern_that_silences_a_whole_reason_is_refused() {
    for pattern in ["*", "* *", "unit_*", "listener_lost *", "route_lost * *"] {
        let err = Ignore::with_patterns(&[pattern.to_owned()])
            .expect_err(pattern)
            .to_string();
        assert!(err.contains(&format!("{pattern:?}")), "{err}");
        assert!(
            !err.replacen(&format!("{pattern:?}"), "", 1).contains('*'),
            "{err}"
        );
    }
}

/// The report says how many findings each profile pattern hid, so a pattern that silences
/// more than its author meant shows; one that hid nothing shows too (it may be stale).
#[test]
fn each_profile_pattern_says_how_many_findings_it_hid() {
    let ignore = Ignore::with_patterns(&[
        "listener_lost tcp/8080 *".to_owned(),
        "unit_inactive web.service".to_owned(),
        "unit_inactive session-*.scope".to_owned(),
        "mount_lost /srv/scratch *".to_owned(),
    ])
    .unwrap();
    let mut before = healthy();
    units(&mut before).insert(
        "session-3.scope".to_owned(),
        unit("scope", "active", "running"),
    );
    let mut changed = healthy();
    units(&mut changed).insert(
        "web.service".to_owned(),
        unit("service", "inactive", "dead"),
    );
    available(&mut changed.listeners).retain(|l| l.port != 8080);
    let result = diff(&snap(before), &snap(changed), &ignore);
    assert!(result.passed(), "{}", render_text(&result));
    let hid: Vec<(&str, usize)> = result
        .hidden_by_profile
        .iter()
        .map(|h| (h.pattern.as_str(), h.hid))
        .collect();
    assert_eq!(
        hid,
        [
            ("listener_lost tcp/8080 *", 1),
            ("unit_inactive web.service", 1),
            // The built-in list hides login sessions: not counted against the profile.
            ("unit_inactive session-*.scope", 0),
            ("mount_lost /srv/scratch *", 0),
        ]
    );
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(
        json["hidden_by_profile"][0],
        serde_json::json!({"pattern": "listener_lost tcp/8080 *", "hid": 1})
    );
    insta::assert_snapshot!("render_profile_patterns", render_text(&result));
}

#[test]
fn reasons_serialise_as_their_stable_names() {
    for reason in Reason::ALL {
        let json = serde_json::to_string(&reason).unwrap();
        assert_eq!(json, format!("\"{}\"", reason.as_str()));
    }
}

#[test]
fn rendered_text_lists_lost_new_ignored_and_unavailable() {
    let mut before = healthy();
    before.mounts = Section::Unavailable("findmnt is not installed".to_owned());
    units(&mut before).insert(
        "session-3.scope".to_owned(),
        unit("scope", "active", "running"),
    );
    let result = diff(
        &snap(before),
        &{
            let mut after = healthy();
            units(&mut after).insert(
                "web.service".to_owned(),
                unit("service", "inactive", "dead"),
            );
            available(&mut after.listeners).retain(|l| l.port != 8080);
            available(&mut after.listeners).push(listener("tcp", 9090, "*", "extra"));
            after.mounts = Section::Unavailable("findmnt is not installed".to_owned());
            after.containers = Section::Unavailable("docker timed out".to_owned());
            let mut after = snap(after);
            after.probes = vec![probe(443, false, "timeout")];
            after
        },
        &Ignore::builtin(),
    );
    insta::assert_snapshot!("render_mixed", render_text(&result));
}

#[test]
fn rendered_text_of_a_quiet_diff_is_one_line() {
    assert_eq!(
        render_text(&after(|_| {})),
        "reboot diff: 0 lost, 0 new, 0 ignored, 0 unavailable\n"
    );
}
