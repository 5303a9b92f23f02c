//! A fleet run against the fake machine (two fake VMs on one fake segment): the whole cycle,
//! what each round shows and whose it is, the refusals before anything is created, and an
//! interrupt in the together round.

use boma_harness::{ExitClass, RunOutcome};
use boma_report::RunResult;

use crate::support::{self, Rig, serial};

const ADMIT: &str = "catf-peer-admit";
const ADMIT_A: &str = "catf-peer-admit-a";
const ADMIT_B: &str = "catf-peer-admit-b";
const ORDER: &str = "catf-boot-order";
const ORDER_A: &str = "catf-boot-order-a";
const ORDER_B: &str = "catf-boot-order-b";

/// Real captures of a catalogue guest whose service was started but never enabled, before and
/// after a real reboot (boma-state's fixtures): the reboot loses the unit and its listener.
const NOT_ENABLED_BEFORE: &str =
    include_str!("../../../boma-state/tests/fixtures/cat-not-enabled-red/before.txt");
const NOT_ENABLED_AFTER: &str =
    include_str!("../../../boma-state/tests/fixtures/cat-not-enabled-red/after.txt");

/// A rig whose run directory is short: a fleet's switch socket lives in it, and a unix socket
/// path is short (the sandbox's own, under a temporary directory, is too long for a fleet with
/// a long name — which a test below shows is refused).
fn fleet_rig() -> Rig {
    let mut rig = Rig::new();
    rig.sandbox.settings.runs_root = rig.sandbox.root.join("run");
    rig
}

fn fleet(rig: &Rig, name: &str) -> RunOutcome {
    boma_harness::fleet::it(&rig.ctx(), name, support::options())
}

fn names(outcome: &RunOutcome) -> Vec<&str> {
    outcome
        .report
        .checks
        .iter()
        .map(|c| c.name.as_str())
        .collect()
}

fn failed(outcome: &RunOutcome) -> Vec<&str> {
    outcome
        .report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect()
}

/// Nothing of a fleet run is left: no VM, no run directory, no segment, no reservation.
fn assert_nothing_left(rig: &Rig) {
    rig.assert_nothing_left();
    assert!(
        rig.machine.world.borrow().segments.is_empty(),
        "a segment is still up"
    );
    let reservations = rig.sandbox.settings.cache_dir.join("reservations");
    let left: Vec<String> = std::fs::read_dir(&reservations)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("boma-it-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "reservations left: {left:?}");
}

#[test]
fn a_green_fleet_passes_every_round_and_leaves_nothing() {
    let _serial = serial();
    let rig = fleet_rig();
    let outcome = fleet(&rig, ADMIT);
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let report = &outcome.report;
    assert_eq!(report.result, RunResult::Passed);
    assert!(report.rebooted);
    assert_eq!(report.host, ADMIT);
    assert!(
        report
            .vm
            .as_deref()
            .is_some_and(|vm| vm.starts_with("boma-it-catf-peer-admit-")),
        "{:?}",
        report.vm
    );
    let checks = names(&outcome);
    for expected in [
        "after apply: catf-peer-admit-a: idempotence",
        "after apply: catf-peer-admit-b: idempotence",
        "after apply: catf-peer-admit-a: probe_8092_http",
        "after apply: peer_probes",
        "after rolling catf-peer-admit-a: catf-peer-admit-b: stayed_up",
        "after rolling catf-peer-admit-a: catf-peer-admit-a: reboot_diff",
        "after rolling catf-peer-admit-a: catf-peer-admit-b: reboot_diff",
        "after rolling catf-peer-admit-a: peer_probes",
        "after rolling catf-peer-admit-b: catf-peer-admit-a: stayed_up",
        "after together: catf-peer-admit-a: reboot_diff",
        "after together: peer_probes",
        "after together: catf-peer-admit-a: system_running",
        "after together: catf-peer-admit-b: no_route_to_fleet",
    ] {
        assert!(checks.contains(&expected), "no {expected:?} in {checks:#?}");
    }
    // The JUnit report has a test case per check: per round and per member.
    let junit = boma_report::render_junit(&boma_report::Report {
        runs: vec![report.clone()],
        started_at: report.started_at,
        total_seconds: report.total_seconds,
    });
    assert!(
        junit.contains(
            r#"<testcase name="after rolling catf-peer-admit-a: catf-peer-admit-b: stayed_up""#
        ),
        "{junit}"
    );
    // In the together round every member reboots: none is held to its boot_id.
    assert!(
        !checks
            .iter()
            .any(|c| c.starts_with("after together") && c.ends_with("stayed_up")),
        "{checks:#?}"
    );
    // One playbook run per step over both members, then the idempotence pass the same way.
    let calls = rig.machine.playbook_calls.borrow().clone();
    assert_eq!(
        calls,
        [
            "apply tests/catalogue/catf-peer-admit.yml --tags catf_peer_admit",
            "idempotence tests/catalogue/catf-peer-admit.yml --tags catf_peer_admit",
        ]
    );
    let args = rig.machine.playbook_args.borrow()[0].clone();
    let limit = args.iter().skip_while(|a| *a != "--limit").nth(1).unwrap();
    assert_eq!(limit, "catf-peer-admit-a,catf-peer-admit-b");
    assert!(
        args.last().unwrap().ends_with("/connection-vars.json"),
        "the fleet's connection file is the last -e: {args:?}"
    );
    // The members booted side by side: both started before either was waited for.
    let world = rig.machine.world.borrow();
    let order: Vec<&str> = world
        .events
        .iter()
        .filter(|e| e.starts_with("boot ") || e.starts_with("ready? "))
        .map(|e| e.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(order, ["boot", "boot", "ready?", "ready?"]);
    // Every member was rebooted in every round that is its: rolling a, rolling b, together.
    assert_eq!(world.boots.values().copied().collect::<Vec<_>>(), [3, 3]);
    assert_eq!(world.segments_created.len(), 1);
    assert_eq!(world.segments_destroyed, world.segments_created);
    drop(world);
    assert_nothing_left(&rig);
}

/// A member's loss is reported once, in the round that caused it and under its name — a peer
/// rebooting does not repeat it.
#[test]
fn a_members_loss_names_the_round_and_the_member_once() {
    let _serial = serial();
    let rig = fleet_rig();
    // b's guest loses its unit the first time it reboots; every later boot is the same.
    rig.machine.world.borrow_mut().captures_by = vec![(
        ADMIT_B.to_owned(),
        vec![NOT_ENABLED_BEFORE.into(), NOT_ENABLED_AFTER.into()],
    )];
    let outcome = fleet(&rig, ADMIT);
    let error = outcome.error.as_ref().expect("the loss fails the fleet");
    assert_eq!(error.class(), ExitClass::Failed);
    assert_eq!(outcome.report.result, RunResult::Failed);
    assert_eq!(
        failed(&outcome),
        [
            "after rolling catf-peer-admit-b: catf-peer-admit-b: unit_inactive boma-cat-web.service",
            "after rolling catf-peer-admit-b: catf-peer-admit-b: listener_lost tcp/8080 python3",
        ]
    );
    // Kept for a look, with one bundle holding every member's evidence.
    let bundle = camino::Utf8PathBuf::from(outcome.report.diagnostics.clone().expect("a bundle"));
    for member in [ADMIT_A, ADMIT_B] {
        assert!(
            bundle.join(member).join("console.log").is_file(),
            "{member}"
        );
        assert!(
            bundle
                .join(member)
                .join("after-round-2/reboot-diff.txt")
                .is_file(),
            "{member}'s diff of round 2"
        );
        assert!(
            bundle.join(member).join("after-apply/state.json").is_file(),
            "{member}'s capture after the apply"
        );
    }
    let diff = std::fs::read_to_string(bundle.join(ADMIT_B).join("after-round-2/reboot-diff.txt"))
        .unwrap();
    assert!(diff.contains("boma-cat-web.service"), "{diff}");
    assert!(bundle.join("report.json").is_file());
    assert!(bundle.join("harness.log").is_file());
    // The fleet's own evidence: what each phase's peer probes answered.
    let probes = std::fs::read_to_string(bundle.join("after-round-2/peer-probes.txt")).unwrap();
    assert_eq!(
        probes,
        "catf-peer-admit-b → catf-peer-admit-a:8092 ok (1 attempt(s)): open\n"
    );
    assert_eq!(rig.machine.world.borrow().running.len(), 2, "both kept");
}

/// A peer probe that passed after the apply and fails after a round names the round, the prober
/// and the target; the RED fleet that expects exactly that is an expected failure (exit 0).
#[test]
fn a_peer_probe_that_fails_after_a_round_names_it_and_a_red_expecting_it_exits_0() {
    let _serial = serial();
    let rig = fleet_rig();
    rig.machine
        .peers_dead_after_reboot
        .borrow_mut()
        .push((ADMIT_A.to_owned(), 8092));
    let green = fleet(&rig, ADMIT);
    assert_eq!(green.report.result, RunResult::Failed);
    assert_eq!(
        failed(&green),
        [
            "after rolling catf-peer-admit-a: peer_probe_failed catf-peer-admit-b → catf-peer-admit-a:8092 timeout"
        ]
    );
    let check = green.report.checks.iter().find(|c| !c.ok).unwrap();
    assert_eq!(check.reason.as_deref(), Some("timeout"));
    let peer_probes = names(&green)
        .into_iter()
        .filter(|c| c.contains("peer_probe"))
        .collect::<Vec<_>>();
    // Still failing after rolling b and together: reported once, where it broke; those rounds
    // say their probes ran and nothing new broke.
    assert_eq!(
        peer_probes,
        [
            "after apply: peer_probes",
            "after rolling catf-peer-admit-a: peer_probe_failed catf-peer-admit-b → catf-peer-admit-a:8092 timeout",
            "after rolling catf-peer-admit-b: peer_probes",
            "after together: peer_probes",
        ]
    );

    let red = fleet(&rig, "catf-peer-admit-red");
    assert!(red.error.is_none(), "{:?}", red.error);
    assert_eq!(red.report.result, RunResult::ExpectedFailure);
    assert_eq!(
        red.report.expected_failures,
        [
            "after rolling catf-peer-admit-a: peer_probe_failed catf-peer-admit-b → catf-peer-admit-a:8092 timeout"
        ]
    );
}

/// A RED fleet whose bug did not show fails, naming what it expected.
#[test]
fn a_red_fleet_whose_bug_does_not_show_fails_naming_its_expect() {
    let _serial = serial();
    let rig = fleet_rig();
    let outcome = fleet(&rig, "catf-peer-admit-red");
    let error = outcome.error.expect("a pass is not what a RED expects");
    assert_eq!(error.class(), ExitClass::Failed, "{error}");
    assert_eq!(
        error.to_string(),
        "expected failures not seen: after rolling catf-peer-admit-a: peer_probe_failed catf-peer-admit-b → catf-peer-admit-a:8092"
    );
    assert_eq!(outcome.report.result, RunResult::Failed);
}

/// A member variable that still holds a real host's address is refused before anything is
/// created, naming the member, the variable, the address and the fix; so is an `-e` value.
#[test]
fn a_member_variable_holding_a_real_address_is_refused_before_anything_boots() {
    let _serial = serial();
    let rig = fleet_rig();
    let mut vars = serde_json::Map::new();
    vars.insert(
        "catf_peer_admit__server".into(),
        serde_json::json!("http://77.42.120.136:8092/"),
    );
    rig.machine
        .member_vars
        .borrow_mut()
        .insert(ADMIT_B.to_owned(), vars);
    let outcome = fleet(&rig, ADMIT);
    let error = outcome.error.expect("refused");
    assert_eq!(error.class(), ExitClass::Refused);
    assert_eq!(
        error.to_string(),
        "member catf-peer-admit-b: `catf_peer_admit__server` holds 77.42.120.136, a real host's address: override it for the fleet (a fleet `extra_vars_files` entry) with the member's fleet address (`hostvars[peer].ansible_host`)"
    );
    assert_eq!(outcome.report.result, RunResult::Refused);
    assert!(rig.machine.world.borrow().booted.is_empty());
    assert_nothing_left(&rig);

    // The same address in an `-e` file the fleet names: every member would get it.
    let rig = fleet_rig();
    rig.sandbox.write(
        "overrides/catf-peer-admit-red.yml",
        "catf_peer_admit__peers_in_file: false\nupstream: [\"77.42.120.136\"]\n",
    );
    let outcome = fleet(&rig, "catf-peer-admit-red");
    let error = outcome.error.expect("refused");
    assert_eq!(error.class(), ExitClass::Refused);
    assert!(
        error.to_string().starts_with(
            "overrides/catf-peer-admit-red.yml: `upstream[0]` holds 77.42.120.136, a real host's address"
        ),
        "{error}"
    );
    assert_nothing_left(&rig);
}

/// A fleet that half fits is refused whole: nothing boots, nothing stays reserved.
#[test]
fn a_fleet_that_does_not_fit_is_refused_whole() {
    let _serial = serial();
    let rig = fleet_rig();
    // One 768 MiB member with QEMU's overhead and the margin fits; two do not.
    let one = boma_host::judge::vm_charge_mib(768) + boma_host::judge::MARGIN_MIB;
    rig.machine.available_mib.set(one + 100);
    let outcome = fleet(&rig, ADMIT);
    let error = outcome.error.expect("refused");
    assert_eq!(error.class(), ExitClass::Refused, "{error}");
    assert_eq!(outcome.report.result, RunResult::Refused);
    assert!(rig.machine.world.borrow().booted.is_empty());
    assert!(
        rig.machine.image_steps.borrow().is_empty(),
        "refused before the image"
    );
    assert_nothing_left(&rig);
}

/// An interrupt while the together round boots the members in order tears everything down:
/// every member, the segment, the fleet's directory, the reservations.
#[test]
fn an_interrupt_in_the_together_round_leaves_nothing() {
    let _serial = serial();
    let rig = fleet_rig();
    // The boot-order gate's bounded settle is asked only in a together round in order.
    rig.machine.world.borrow_mut().interrupt_on =
        Some(("timeout 60 systemctl is-system-running".into(), 2));
    let outcome = fleet(&rig, ORDER);
    let error = outcome.error.expect("interrupted");
    assert!(
        matches!(error.class(), ExitClass::Interrupted(i) if i.signal == 2),
        "{error}"
    );
    assert_eq!(outcome.report.result, RunResult::Interrupted);
    let world = rig.machine.world.borrow();
    assert!(
        world.events.iter().any(|e| e.starts_with("suspend ")),
        "the round had begun: {:?}",
        world.events
    );
    let destroyed: Vec<String> = world.destroyed.iter().map(|n| n.to_string()).collect();
    for member in [ORDER_A, ORDER_B] {
        assert!(
            destroyed
                .iter()
                .any(|d| d.starts_with(&format!("boma-it-{member}-"))),
            "{member} removed: {destroyed:?}"
        );
    }
    drop(world);
    assert_nothing_left(&rig);
}

/// A failed fleet in a run of several is kept powered off, all of it, its segment down; a
/// member started again plugs into its segment brought up again.
#[test]
fn a_failed_fleet_of_several_runs_is_kept_powered_off_and_a_member_starts_on_its_segment() {
    let _serial = serial();
    let rig = fleet_rig();
    rig.machine.world.borrow_mut().captures_by = vec![(
        ADMIT_B.to_owned(),
        vec![NOT_ENABLED_BEFORE.into(), NOT_ENABLED_AFTER.into()],
    )];
    let options = boma_harness::ItOptions {
        power_off_failed: true,
        ..support::options()
    };
    let outcome = boma_harness::fleet::it(&rig.ctx(), ADMIT, options);
    assert_eq!(outcome.report.result, RunResult::Failed);
    let b = rig.machine.vm_of(ADMIT_B).unwrap();
    {
        let world = rig.machine.world.borrow();
        assert!(world.running.is_empty(), "every member powered off");
        assert_eq!(world.stopped.len(), 2);
        assert!(world.segments.is_empty(), "the segment is down");
    }
    // Both members' directories and the fleet's (its golden image under their overlays) stay.
    assert_eq!(
        rig.sandbox.vm_dirs().len(),
        3,
        "{:?}",
        rig.sandbox.vm_dirs()
    );
    boma_harness::start(&rig.ctx(), &b).unwrap();
    let world = rig.machine.world.borrow();
    assert_eq!(
        world
            .started
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
        [b]
    );
    assert_eq!(world.segments.len(), 1, "the segment is up again");
}

/// What a parallel run's parent does for a fleet child killed before it reported: every member,
/// the segment, the fleet's directory and the reservations go, found by the run id it chose.
#[test]
fn a_killed_fleet_childs_leftovers_are_removed_by_its_run_id() {
    let _serial = serial();
    let rig = fleet_rig();
    let id: boma_harness::RunId = "0a1b2c3d".parse().unwrap();
    // A fleet left running, as a child killed mid-run leaves it.
    let options = boma_harness::ItOptions {
        keep: true,
        run_id: Some(id),
        ..support::options()
    };
    let kept = boma_harness::fleet::it(&rig.ctx(), ADMIT, options);
    assert_eq!(kept.report.result, RunResult::Passed);
    assert_eq!(rig.machine.world.borrow().running.len(), 2);
    assert_eq!(rig.sandbox.vm_dirs().len(), 3);
    let removed =
        boma_harness::fleet::remove_orphan(&rig.ctx(), ADMIT, "0a1b2c3d", std::process::id())
            .unwrap();
    let said = removed.join("; ");
    for member in [ADMIT_A, ADMIT_B] {
        assert!(
            said.contains(&format!("its VM boma-it-{member}-0a1b2c3d")),
            "{said}"
        );
    }
    assert!(said.contains("vde_switch"), "{said}");
    assert!(said.contains("its fleet directory"), "{said}");
    assert_nothing_left(&rig);
}

/// A fleet's run id comes from the machine, as a host's does: kept members are named with the
/// id the (fake) machine minted, and two fleet runs get two ids.
#[test]
fn a_fleets_run_id_is_minted_by_the_machine() {
    let _serial = serial();
    let rig = fleet_rig();
    let keep = || boma_harness::ItOptions {
        keep: true,
        ..support::options()
    };
    for (fleet_name, member, id) in [(ADMIT, ADMIT_A, "00000001"), (ORDER, ORDER_A, "00000002")] {
        let kept = boma_harness::fleet::it(&rig.ctx(), fleet_name, keep());
        assert_eq!(kept.report.result, RunResult::Passed, "{fleet_name}");
        let vm = rig.machine.vm_of(member).unwrap().to_string();
        assert_eq!(vm, format!("boma-it-{member}-{id}"));
    }
}

/// `--no-reboot` checks a fleet after the apply only, and says so: the report is not rebooted,
/// the final checks carry the apply's name, and JUnit shows the reboot skipped.
#[test]
fn a_fleet_without_reboot_is_checked_after_the_apply_and_says_so() {
    let _serial = serial();
    let rig = fleet_rig();
    let options = boma_harness::ItOptions {
        no_reboot: true,
        ..support::options()
    };
    let outcome = boma_harness::fleet::it(&rig.ctx(), ADMIT, options);
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let report = &outcome.report;
    assert!(!report.rebooted);
    let checks = names(&outcome);
    assert!(
        checks.contains(&"after apply: catf-peer-admit-b: system_running"),
        "{checks:#?}"
    );
    assert!(
        !checks
            .iter()
            .any(|c| c.contains("rolling") || c.contains("together")),
        "{checks:#?}"
    );
    assert_eq!(rig.machine.world.borrow().boots.values().sum::<u32>(), 2);
    let junit = boma_report::render_junit(&boma_report::Report {
        runs: vec![report.clone()],
        started_at: report.started_at,
        total_seconds: report.total_seconds,
    });
    assert!(junit.contains(r#"name="reboot""#), "{junit}");
    assert!(junit.contains("<skipped message="), "{junit}");
    assert_nothing_left(&rig);
}

/// A member that never comes back after its reboot fails the fleet, and the end of its serial
/// console is shown at once and kept in the bundle's log, as for a host.
#[test]
fn a_member_in_emergency_mode_after_its_reboot_shows_its_console() {
    let _serial = serial();
    let rig = fleet_rig();
    rig.machine.world.borrow_mut().never_returns = true;
    rig.machine.world.borrow_mut().console_after_reboot =
        vec!["[  OK  ] Reached target emergency.target\r\nYou are in emergency mode.\r\n".into()];
    let outcome = fleet(&rig, ADMIT);
    assert_eq!(outcome.exit_class(), Some(ExitClass::Failed));
    let bundle = outcome.report.diagnostics.clone().expect("a bundle");
    let log = std::fs::read_to_string(format!("{bundle}/harness.log")).unwrap();
    assert!(
        log.contains(&format!(
            "the end of the serial console of {ADMIT_A}:\n  | [  OK  ] Reached target emergency.target\n  | You are in emergency mode.\n"
        )),
        "{log}"
    );
}
