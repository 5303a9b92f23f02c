//! Fault injection against the fake machine: interrupts at each phase, failures after boot,
//! reboot-class findings, stale state, concurrent runs and every kind of bad input. Each case
//! checks what is left (VMs, run directories, the record, the lock) and what the report says.

use crate::support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::support::{
    ASKARI_AFTER, Playbook, Rig, interrupted_during, not_idempotent, options, serial,
    verify_fails_red, verify_passes,
};
use boma_exec::CmdExt as _;
use boma_exec::interrupt;
use boma_harness::{ExitClass, ItOptions, PlaybookCall};
use boma_inventory::CertTier;
use boma_report::{CheckSource, RunResult};
use camino::{Utf8Path, Utf8PathBuf};

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

#[test]
fn a_passing_cycle_applies_checks_idempotence_reboots_and_removes_its_vm() {
    let _serial = serial();
    let rig = Rig::new();
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let report = &outcome.report;
    assert_eq!(report.result, RunResult::Passed);
    assert!(report.rebooted);
    let image = report
        .image
        .clone()
        .expect("the report names the image it booted");
    assert_eq!(image.sha512, "ab".repeat(64));
    assert_eq!(
        image.origin,
        format!(
            "cache (downloaded from {})",
            boma_image::DownloadSource::debian_genericcloud().image_url
        )
    );
    assert_eq!(
        *rig.machine.playbook_calls.borrow(),
        vec![
            "apply playbooks/site.yml --tags base",
            "apply playbooks/offsite.yml --tags docker_host,reverse_proxy",
            "idempotence playbooks/site.yml --tags base",
            "idempotence playbooks/offsite.yml --tags docker_host,reverse_proxy",
            "verify tests/verify/askari.yml",
        ]
    );
    let commands = rig.machine.world.borrow().commands.clone();
    assert!(
        commands.iter().any(|c| c == "sudo systemctl reboot"),
        "{commands:?}"
    );
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for expected in [
        "idempotence",
        "reboot_diff",
        "system_running",
        "no_route_to_fleet",
        "docker_active",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        report.checks.iter().any(|c| c.source == CheckSource::Probe),
        "the controller probes every published port: {names:?}"
    );
    // Stable phase names: never the VM's name.
    let vm = report.vm.clone().unwrap();
    assert!(report.phases.iter().all(|p| !p.name.contains(&vm)));
    rig.assert_nothing_left();
}

/// The verdict was reached; removing the VM then failed. The report still says what the checks
/// found and that the guest rebooted, and the error names the removal.
#[test]
fn a_failing_down_after_a_pass_still_reports_the_checks() {
    let _serial = serial();
    let rig = Rig::new();
    rig.machine.world.borrow_mut().destroy_fails = true;
    let outcome = rig.it();
    let error = outcome
        .error
        .as_ref()
        .expect("the removal failed")
        .to_string();
    assert!(error.contains("fake destroy failure"), "{error}");
    let report = &outcome.report;
    assert_ne!(
        report.result,
        RunResult::Passed,
        "a VM left behind is not a clean pass"
    );
    assert!(report.rebooted);
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "reboot_diff" && c.ok)
    );
    assert!(report.checks.iter().all(|c| c.ok), "{:?}", report.checks);
    assert!(
        report
            .error
            .as_deref()
            .is_some_and(|e| e.contains("fake destroy failure"))
    );
}

#[test]
fn a_run_without_reboot_says_so_in_the_report() {
    let _serial = serial();
    let rig = Rig::new();
    let outcome = rig.it_with(
        "askari",
        ItOptions {
            no_reboot: true,
            ..options()
        },
    );
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert!(
        !outcome.report.rebooted,
        "a pass without a reboot must not read as a full pass"
    );
    assert!(
        !rig.machine
            .world
            .borrow()
            .commands
            .iter()
            .any(|c| c == "sudo systemctl reboot"),
        "no reboot was asked for"
    );
    assert!(
        outcome
            .report
            .checks
            .iter()
            .all(|c| c.source != CheckSource::RebootDiff)
    );
}

#[test]
fn a_listener_lost_across_the_reboot_fails_the_run_by_name_with_no_check_written() {
    let _serial = serial();
    let rig = Rig::new();
    // After the reboot, nothing listens on port 80 any more.
    let after: String = ASKARI_AFTER
        .lines()
        .filter(|l| !(l.contains("0.0.0.0:80 ") && l.contains("docker-proxy")))
        .map(|l| format!("{l}\n"))
        .collect();
    rig.machine.world.borrow_mut().captures[1] = after;
    let outcome = rig.it();
    assert_eq!(outcome.exit_class(), Some(ExitClass::Failed));
    assert_eq!(outcome.report.result, RunResult::Failed);
    let lost: Vec<&str> = outcome
        .report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(lost, vec!["listener_lost tcp/80 docker-proxy"]);
    let bundle = outcome.report.diagnostics.clone().expect("a bundle");
    let diff = std::fs::read_to_string(format!("{bundle}/reboot-diff.txt")).unwrap();
    assert!(diff.contains("listener_lost tcp/80 docker-proxy"), "{diff}");
    for file in ["state-before.json", "state-after.json", "report.json"] {
        assert!(
            std::path::Path::new(&format!("{bundle}/{file}")).is_file(),
            "{file} is in the bundle"
        );
    }
}

#[test]
fn a_port_that_dies_at_the_reboot_fails_its_probe_and_the_diff() {
    let _serial = serial();
    let rig = Rig::new();
    rig.machine.ports_dead_after_reboot.borrow_mut().push(443);
    let outcome = rig.it();
    let failed: Vec<String> = outcome
        .report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.clone())
        .collect();
    assert!(
        failed.iter().any(|n| n.starts_with("probe_443")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|n| n.starts_with("probe_failed 443")),
        "{failed:?}"
    );
}

#[test]
fn a_task_that_changes_on_the_second_apply_fails_idempotence_naming_it() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = not_idempotent();
    let outcome = rig.it();
    let check = outcome
        .report
        .checks
        .iter()
        .find(|c| c.name == "idempotence")
        .expect("an idempotence check");
    assert!(!check.ok);
    let detail = check.detail.clone().unwrap().to_string();
    assert!(
        detail.contains("base : Add the route (roles/base/tasks/main.yml:7)"),
        "{detail}"
    );
    assert_eq!(outcome.report.result, RunResult::Failed);
    // Skipped on request.
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = not_idempotent();
    let outcome = rig.it_with(
        "askari",
        ItOptions {
            idempotence: false,
            ..options()
        },
    );
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert!(
        !outcome
            .report
            .checks
            .iter()
            .any(|c| c.name == "idempotence")
    );
}

#[test]
fn a_failed_verify_keeps_the_vm_and_writes_the_diagnostics_bundle() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = verify_fails_red();
    let outcome = rig.it();
    assert_eq!(outcome.exit_class(), Some(ExitClass::Failed));
    assert_eq!(outcome.report.result, RunResult::Failed);
    let failed: Vec<&str> = outcome
        .report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, vec!["forward_chain_accepts_containers"]);
    let vm = outcome.report.vm.clone().unwrap();
    assert!(
        rig.machine
            .world
            .borrow()
            .running
            .iter()
            .any(|n| n.as_str() == vm)
    );
    let bundle = rig.sandbox.settings.diagnostics_root.join(&vm);
    for file in [
        "console.log",
        "run.json",
        "nft-ruleset.txt",
        "journal-boot.txt",
        "verify-results-0.json",
        "report.json",
        "state-before.json",
        "state-after.json",
        "reboot-diff.txt",
    ] {
        assert!(
            bundle.join(file).is_file(),
            "{file} missing from the bundle"
        );
    }
}

#[test]
fn an_interrupt_in_each_phase_removes_the_vm_and_exits_with_the_signal() {
    for (phase, signal) in [
        ("boot", SIGINT),
        ("apply", SIGINT),
        ("idempotence", SIGTERM),
        ("capture", SIGINT),
        ("reboot", SIGTERM),
        ("verify", SIGINT),
        // A dropped ssh session: handled like SIGTERM.
        ("apply", SIGHUP),
    ] {
        let _serial = serial();
        let rig = Rig::new();
        match phase {
            "boot" => {
                rig.machine.world.borrow_mut().interrupt_on =
                    Some(("cloud-init status --wait".into(), signal))
            }
            "capture" => {
                rig.machine.world.borrow_mut().interrupt_on =
                    Some(("reboot-diff capture".into(), signal))
            }
            "reboot" => {
                rig.machine.world.borrow_mut().interrupt_on =
                    Some(("systemctl reboot".into(), signal))
            }
            step => *rig.machine.playbook.borrow_mut() = interrupted_during(step, signal),
        }
        let outcome = rig.it();
        assert_eq!(
            outcome.exit_class(),
            Some(ExitClass::Interrupted(interrupt::Interrupted { signal })),
            "{phase}: {:?}",
            outcome.error
        );
        assert_eq!(outcome.report.result, RunResult::Interrupted, "{phase}");
        assert!(
            outcome.report.diagnostics.is_none(),
            "{phase}: no bundle on interrupt"
        );
        rig.assert_nothing_left();
        interrupt::reset();
    }
}

#[test]
fn an_interrupt_with_keep_keeps_the_vm_and_says_so() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = interrupted_during("apply", SIGINT);
    let outcome = rig.it_with(
        "askari",
        ItOptions {
            keep: true,
            ..options()
        },
    );
    assert_eq!(
        outcome.exit_class(),
        Some(ExitClass::Interrupted(interrupt::Interrupted {
            signal: SIGINT
        }))
    );
    assert_eq!(rig.machine.world.borrow().running.len(), 1);
    assert_eq!(rig.sandbox.vm_dirs().len(), 1);
}

#[test]
fn a_first_boot_that_panics_is_reset_once_and_the_report_says_so() {
    let _serial = serial();
    let rig = Rig::new();
    {
        let mut world = rig.machine.world.borrow_mut();
        world.console_text = "[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\n\
             [    4.971062] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n\
             [    4.981640] Kernel panic - not syncing: Fatal exception in interrupt\n"
            .into();
        world.console_after_reboot =
            vec!["[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\n".into()];
        world.unreachable_polls = u32::MAX;
    }
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.result, RunResult::Passed);
    let phases: Vec<&str> = outcome
        .report
        .phases
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert!(
        phases.contains(&"reset after a kernel panic in its first boot"),
        "{phases:?}"
    );
}

#[test]
fn a_reboot_into_the_emulators_fault_is_reset_once_and_the_report_says_so() {
    let _serial = serial();
    let rig = Rig::new();
    rig.machine.world.borrow_mut().console_after_reboot = vec![
        "[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\n\
         [    1.242806] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n\
         [    1.250000] Kernel panic - not syncing: Fatal exception in interrupt\n"
            .into(),
        "[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\n".into(),
    ];
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.result, RunResult::Passed);
    assert!(outcome.report.rebooted);
    let phases: Vec<&str> = outcome
        .report
        .phases
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert!(
        phases.contains(&"reset after a kernel panic in the boot after the reboot"),
        "{phases:?}"
    );
}

#[test]
fn a_guest_in_emergency_mode_after_the_reboot_is_kept_with_its_console() {
    let _serial = serial();
    let rig = Rig::new();
    rig.machine.world.borrow_mut().never_returns = true;
    rig.machine.world.borrow_mut().console_after_reboot = vec![
        "[\u{1b}[0;32m  OK  \u{1b}[0m] Reached target emergency.target\r\nYou are in emergency mode.\r\n".into(),
    ];
    let outcome = rig.it();
    assert_eq!(outcome.exit_class(), Some(ExitClass::Failed));
    // The console's end is shown at once, as plain text, and kept in the bundle's log.
    let bundle = outcome.report.diagnostics.clone().expect("a bundle");
    let log = std::fs::read_to_string(format!("{bundle}/harness.log")).unwrap();
    assert!(
        log.contains("the end of the serial console:\n  | [  OK  ] Reached target emergency.target\n  | You are in emergency mode.\n"),
        "{log}"
    );
    assert_eq!(
        outcome.report.result,
        RunResult::Failed,
        "a verdict on the host"
    );
    assert!(
        outcome
            .report
            .checks
            .iter()
            .any(|c| c.name == "reboot_timeout" && !c.ok)
    );
    let vm = outcome.report.vm.clone().unwrap();
    assert!(
        rig.machine
            .world
            .borrow()
            .running
            .iter()
            .any(|n| n.as_str() == vm)
    );
    let message = outcome.error.unwrap().to_string();
    assert!(message.contains("console.log"), "{message}");
    assert!(
        message.contains("(the boot after the reboot): it is in emergency mode"),
        "{message}"
    );
}

#[test]
fn a_vm_process_that_dies_before_the_reboot_is_reported_at_once() {
    let _serial = serial();
    let rig = Rig::new();
    let world = std::rc::Rc::clone(&rig.machine.world);
    *rig.machine.playbook.borrow_mut() = Box::new(move |call| {
        // The VM's process dies once the last playbook run is over.
        if call.label.starts_with("idempotence playbooks/offsite") {
            world.borrow_mut().dies = true;
        }
        Ok(())
    });
    let message = rig.it().error.expect("fails").to_string();
    assert!(message.contains("is gone"), "{message}");
}

#[test]
fn a_stale_run_left_by_sigkill_is_cleared_by_the_next_run() {
    let _serial = serial();
    let rig = Rig::new();
    let kept = boma_harness::up(&rig.ctx(), "askari").unwrap();
    // SIGKILL: the QEMU process is gone, its files and record stay; its reservation went stale
    // with it (the fake's "QEMU pid" is this test process, which lives on: drop it by hand).
    rig.machine.world.borrow_mut().running.clear();
    let reservation = rig
        .sandbox
        .settings
        .cache_dir
        .join(format!("reservations/{}.json", kept.name));
    std::fs::remove_file(reservation).unwrap();
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    rig.assert_nothing_left();
}

/// A parallel run's child killed by a signal cannot tear down: its parent, which chose its run
/// id, removes its VM, files and reservation by name.
#[test]
fn a_run_whose_harness_died_is_removed_by_the_name_its_parent_chose() {
    let _serial = serial();
    let rig = Rig::new();
    // Kept running, as a child SIGKILLed mid-run leaves its VM.
    let outcome = rig.it_with(
        "askari",
        ItOptions {
            keep: true,
            run_id: Some("0a1b2c3d".parse().unwrap()),
            ..options()
        },
    );
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let name = boma_name::VmName::parse("boma-it-askari-0a1b2c3d").unwrap();
    assert_eq!(outcome.report.vm.as_deref(), Some(name.as_str()));
    assert_eq!(rig.sandbox.vm_dirs(), [name.as_str()]);
    let reservation = rig
        .sandbox
        .settings
        .cache_dir
        .join(format!("reservations/{name}.json"));
    assert!(reservation.exists(), "the kept VM holds its reservation");

    // No process of this journal was started by pid 4 000 000: none is stopped.
    let removed = boma_harness::remove_orphan(&rig.ctx(), &name, 4_000_000).unwrap();
    assert_eq!(
        removed,
        [
            format!("its VM {name} and its files"),
            "its memory reservation".to_owned()
        ]
    );
    rig.assert_nothing_left();
    assert!(!reservation.exists(), "its reservation is released");
}

#[test]
fn a_lock_file_left_by_a_crash_does_not_block() {
    let _serial = serial();
    let rig = Rig::new();
    std::fs::create_dir_all(&rig.sandbox.settings.runs_root).unwrap();
    std::fs::write(
        rig.sandbox.settings.runs_root.join(".lock"),
        "pid 999999: cargo xtask it askari",
    )
    .unwrap();
    assert!(rig.it().error.is_none());
}

#[test]
fn a_second_up_is_refused_naming_the_live_one_and_how_to_stop_it() {
    let _serial = serial();
    let rig = Rig::new();
    let first = boma_harness::up(&rig.ctx(), "askari").unwrap();
    let error = boma_harness::up(&rig.ctx(), "askari").unwrap_err();
    assert_eq!(error.class(), ExitClass::Refused);
    let message = error.to_string();
    assert!(
        message.contains(first.name.as_str()) && message.contains("cargo xtask down"),
        "{message}"
    );
    assert_eq!(
        rig.machine.world.borrow().booted.len(),
        1,
        "nothing new booted"
    );
    assert_eq!(rig.sandbox.vm_dirs().len(), 1, "nothing new created");
}

/// A run beside a live VM (kept by `up`, or another run's) leaves it alone: runs are bounded
/// by the machine-wide memory reservation, not by one another.
#[test]
fn a_run_beside_a_kept_vm_passes_and_leaves_it_alone() {
    let _serial = serial();
    let rig = Rig::new();
    let kept = boma_harness::up(&rig.ctx(), "askari").unwrap();
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert!(rig.machine.world.borrow().running.contains(&kept.name));
    assert_eq!(rig.sandbox.vm_dirs(), vec![kept.name.to_string()]);
}

/// A VM kept with one backend is never removed by a command using the other: its own backend
/// is asked whether it is alive (it used to be called stale and deleted, overlay and all).
#[test]
fn a_kept_vm_of_one_backend_survives_a_command_with_the_other() {
    let _serial = serial();
    let mut rig = Rig::new();
    let kept = boma_harness::up(&rig.ctx(), "askari").unwrap();
    rig.machine.libvirt.borrow_mut().daemon_answers = true;
    rig.sandbox.settings.backend = boma_harness::BackendChoice::Libvirt;
    let error = boma_harness::up(&rig.ctx(), "askari").unwrap_err();
    assert_eq!(error.class(), ExitClass::Refused, "{error}");
    assert!(error.to_string().contains(kept.name.as_str()), "{error}");
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert!(
        kept.dir.join("overlay.qcow2").is_file(),
        "the kept VM's files are still there"
    );
    assert!(rig.machine.world.borrow().running.contains(&kept.name));
    assert!(!rig.machine.world.borrow().destroyed.contains(&kept.name));
}

/// Memory is reserved machine-wide: a run that does not fit beside the live ones is refused
/// before anything is fetched or created, naming them.
#[test]
fn a_run_that_does_not_fit_beside_a_live_one_is_refused_naming_it() {
    let _serial = serial();
    let rig = Rig::new();
    // Room for one askari (3072 MiB + QEMU's 1280 + the 1024 margin), not two.
    rig.machine.available_mib.set(6000);
    let kept = boma_harness::up(&rig.ctx(), "askari").unwrap();
    let asked = rig.machine.image_steps.borrow().len();
    let outcome = rig.it();
    let error = outcome.error.expect("refused");
    assert_eq!(error.class(), ExitClass::Refused, "{error}");
    let message = error.to_string();
    assert!(
        message.contains(kept.name.as_str()) && message.contains("cargo xtask up askari"),
        "{message}"
    );
    assert_eq!(
        rig.machine.image_steps.borrow().len(),
        asked,
        "nothing fetched"
    );
    assert_eq!(rig.sandbox.vm_dirs().len(), 1);
}

/// Bad input: one clear line, exit status 2, nothing created, nothing fetched or built.
fn refused(rig: &Rig, host: &str, tier: CertTier) -> String {
    let outcome = rig.it_with(host, ItOptions { tier, ..options() });
    let error = outcome.error.expect("refused");
    assert_eq!(error.class(), ExitClass::Refused, "{error}");
    assert_eq!(outcome.report.result, RunResult::Refused);
    assert!(
        rig.machine.world.borrow().booted.is_empty(),
        "booted despite: {error}"
    );
    assert!(rig.sandbox.vm_dirs().is_empty());
    assert!(
        rig.machine.image_steps.borrow().is_empty(),
        "the image was fetched or built despite: {error}"
    );
    let message = error.to_string();
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    message
}

#[test]
fn bad_input_is_refused_before_anything_is_created() {
    let _serial = serial();
    let rig = Rig::new();
    let sandbox = &rig.sandbox;

    let m = refused(&rig, "nosuch", CertTier::Internal);
    assert!(
        m.contains("profiles/nosuch.json") && m.contains("askari, askari-red"),
        "{m}"
    );

    sandbox.write(
        "profiles/broken.json",
        "{\"groups\": [\"offsite_hosts\"],\n  \"applies\": [\n",
    );
    let m = refused(&rig, "broken", CertTier::Internal);
    assert!(m.contains("profiles/broken.json:3:"), "{m}");

    let good = r#"{"groups": ["offsite_hosts"], "applies": [{"playbook": "site.yml", "tags": ["base"]}],
 "extra_vars_files": ["overrides/askari.yml"], "mem_mib": 3072, "vcpus": 2, "published_ports": [443]"#;
    sandbox.write("profiles/typo.json", &format!("{good}, \"memory\": 1}}"));
    let m = refused(&rig, "typo", CertTier::Internal);
    assert!(
        m.contains("profiles/typo.json:2:") && m.contains("memory"),
        "{m}"
    );

    // A name that cannot be a VM's costs nothing: no image fetched or built (it used to).
    sandbox.write("profiles/Ask_ari.json", &format!("{good}}}"));
    let m = refused(&rig, "Ask_ari", CertTier::Internal);
    assert!(m.contains("Ask_ari"), "{m}");

    sandbox.write(
        "profiles/noverify.json",
        &format!("{good}, \"verify\": [\"tests/verify/nosuch.yml\"]}}"),
    );
    let m = refused(&rig, "noverify", CertTier::Internal);
    assert!(
        m.contains("tests/verify/nosuch.yml") && m.contains("does not exist"),
        "{m}"
    );

    sandbox.write("overrides/mesh-on.yml", "base__mesh_enabled: true\n");
    sandbox.write(
        "profiles/meshy.json",
        &format!(
            "{}}}",
            good.replace(
                "\"overrides/askari.yml\"",
                "\"overrides/askari.yml\", \"overrides/mesh-on.yml\""
            )
        ),
    );
    let m = refused(&rig, "meshy", CertTier::Internal);
    assert!(
        m.contains("overrides/mesh-on.yml leaves `base__mesh_enabled: true`")
            && m.contains("tests/integration/policy.yml"),
        "{m}"
    );

    std::fs::remove_file(sandbox.settings.repo.join("overrides/askari-red.yml")).unwrap();
    let m = refused(&rig, "askari-red", CertTier::Internal);
    assert!(m.contains("overrides/askari-red.yml"), "{m}");

    std::fs::remove_file(sandbox.settings.repo.join("certs/le-prod-wildcard.yml")).unwrap();
    let m = refused(&rig, "askari", CertTier::LeProdWildcard);
    assert!(m.contains("certs/le-prod-wildcard.yml"), "{m}");

    // askari builds Caddy from Debian's package, which has no Gandi module: an LE tier
    // cannot work with it, and is refused before anything else about it is looked at.
    let m = refused(&rig, "askari", CertTier::LeStaging);
    assert!(
        m.contains("cannot work together") && m.contains("Gandi") && m.contains("--certs internal"),
        "{m}"
    );

    // Every program the cycle requires (the list the doctor calls a problem when missing)
    // stops `it`, naming its package.
    for tool in boma_host::Needs::All.required_tools() {
        *rig.machine.missing_tools.borrow_mut() = vec![tool.program.into()];
        let m = refused(&rig, "askari", CertTier::Internal);
        assert!(
            m.contains(tool.program) && m.contains(&tool.package.name(None)),
            "{m}"
        );
    }
    rig.machine.missing_tools.borrow_mut().clear();

    // askari's 3072 MiB with 4500 available: the case the doctor once called a fit
    // (boma-doctor's tests hold its verdict and the reservation's to this one).
    rig.machine.available_mib.set(4500);
    let m = refused(&rig, "askari", CertTier::Internal);
    assert!(
        m.contains("4500 MiB is available") && m.contains("lower mem_mib"),
        "{m}"
    );
}

/// The programs the doctor only warns about (libvirt's, the image build's, CI's) stop no run.
#[test]
fn a_run_needs_no_program_outside_the_required_list() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.missing_tools.borrow_mut() = boma_host::TOOLS
        .iter()
        .filter(|t| !boma_host::Needs::All.required_tools().any(|r| r == *t))
        .map(|t| t.program.into())
        .collect();
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
}

#[test]
fn an_le_tier_without_a_vault_password_is_refused() {
    let _serial = serial();
    let rig = Rig::new();
    // A profile that pulls the registry image, so the tier combination itself is allowed.
    rig.sandbox.write(
        "overrides/registry.yml",
        "reverse_proxy__image_source: registry\n",
    );
    let text = std::fs::read_to_string(rig.sandbox.settings.repo.join("profiles/askari.json"))
        .unwrap()
        .replace(
            "\"overrides/askari.yml\"",
            "\"overrides/askari.yml\", \"overrides/registry.yml\"",
        );
    rig.sandbox.write("profiles/registry.json", &text);
    let m = refused(&rig, "registry", CertTier::LeStaging);
    assert!(
        m.contains("le-staging") && m.contains("--vault-password-file"),
        "{m}"
    );
}

/// The DNS token lives in the vault; whatever prints it — a failing task, a container's
/// environment in the bundle, the guest's journal — the command log, the report and the bundle
/// must not carry it, nor the vault password.
#[test]
fn the_dns_token_and_the_vault_password_never_reach_the_log_report_or_bundle() {
    let _serial = serial();
    let mut rig = Rig::new();
    let password = "vault-pass-7c1d9e4b2a";
    let token = "gandi-pat-51f0c9a2e8d7";
    let vault = rig.sandbox.root.join("vault-pass");
    std::fs::write(&vault, format!("{password}\n")).unwrap();
    rig.sandbox.settings.vault_password_file = Some(vault);
    rig.sandbox.write(
        "overrides/registry.yml",
        "reverse_proxy__image_source: registry\n",
    );
    let text = std::fs::read_to_string(rig.sandbox.settings.repo.join("profiles/askari.json"))
        .unwrap()
        .replace(
            "\"overrides/askari.yml\"",
            "\"overrides/askari.yml\", \"overrides/registry.yml\"",
        );
    rig.sandbox.write("profiles/registry.json", &text);
    // The vault decrypts to the token; the guest prints it as root (a leaked env file); the
    // verify playbook prints it while failing (a registered container environment).
    *rig.machine.vault.borrow_mut() = vec![token.to_owned()];
    rig.machine.world.borrow_mut().says = Some(format!("GANDI_BEARER_TOKEN={token}"));
    *rig.machine.playbook.borrow_mut() = Box::new(move |call| {
        if call.label.starts_with("verify") {
            boma_exec::progress::output(&format!("\"Env\": [\"GANDI_BEARER_TOKEN={token}\"]"));
            // A check whose detail carries what the guest said, the token in it.
            let results = serde_json::json!({"checks": [{"name": "caddy_env", "ok": false,
                "reason": "leaked", "detail": {"env": [format!("GANDI_BEARER_TOKEN={token}")]}}]});
            std::fs::write(support::results_file(&call.args), results.to_string()).unwrap();
            return Err(boma_harness::HarnessError::Playbook {
                step: call.label.clone(),
                code: Some(2),
                tail: vec![],
            });
        }
        Ok(())
    });
    let outcome = rig.it_with(
        "registry",
        ItOptions {
            tier: CertTier::LeStaging,
            ..options()
        },
    );
    let caddy = outcome.report.checks.iter().find(|c| c.name == "caddy_env");
    assert_eq!(
        caddy.and_then(|c| c.detail.clone()),
        Some(serde_json::json!({"env": ["GANDI_BEARER_TOKEN=<redacted>"]})),
        "the check is reported, its detail masked"
    );
    let report = boma_report::render_json(&boma_harness::single_report(&outcome.report));
    let junit = boma_report::render_junit(&boma_harness::single_report(&outcome.report));
    for secret in [token, password] {
        assert!(!report.contains(secret), "the report leaks {secret}");
        assert!(!junit.contains(secret), "the JUnit report leaks {secret}");
        assert!(!outcome.error.as_ref().unwrap().to_string().contains(secret));
    }
    let vm = rig.sandbox.vm_dirs().pop().unwrap();
    let bundle = rig.sandbox.settings.diagnostics_root.join(vm);
    let mut checked = Vec::new();
    for entry in bundle.read_dir_utf8().unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for secret in [token, password] {
            assert!(!text.contains(secret), "{} leaks {secret}", entry.path());
        }
        checked.push(entry.file_name().to_owned());
    }
    assert!(
        checked.contains(&"harness.log".to_owned()),
        "the command log is in the bundle: {checked:?}"
    );
    let log = std::fs::read_to_string(bundle.join("harness.log")).unwrap();
    assert!(
        log.contains("GANDI_BEARER_TOKEN=<redacted>"),
        "the token's line is there, masked"
    );
    let nft = std::fs::read_to_string(bundle.join("nft-ruleset.txt")).unwrap();
    assert!(nft.contains("GANDI_BEARER_TOKEN=<redacted>"), "{nft}");
}

#[test]
fn a_failed_inventory_write_after_boot_is_a_failure_not_a_refusal() {
    let _serial = serial();
    let rig = Rig::new();
    // The transient inventory links the real group_vars; without them the write fails after
    // the VM booted, which is not "nothing was created" (it used to exit 2).
    let group_vars = rig
        .sandbox
        .settings
        .repo
        .join("inventories/production/group_vars");
    std::fs::remove_dir_all(&group_vars).unwrap();
    let outcome = rig.it();
    let error = outcome.error.expect("fails");
    assert_eq!(error.class(), ExitClass::Failed, "{error}");
    assert!(error.to_string().contains("group_vars"), "{error}");
    assert_eq!(rig.machine.world.borrow().booted.len(), 1);
}

#[test]
fn remove_failed_writes_the_bundle_then_removes_the_vm() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = verify_fails_red();
    let outcome = rig.it_with(
        "askari",
        ItOptions {
            remove_failed: true,
            ..options()
        },
    );
    assert_eq!(outcome.report.result, RunResult::Failed);
    let bundle = outcome.report.diagnostics.clone().expect("a bundle");
    assert!(std::path::Path::new(&format!("{bundle}/reboot-diff.txt")).is_file());
    rig.assert_nothing_left();
}

/// A hung dpkg or a dead connection cannot hang a run: a playbook past its time limit takes
/// the usual failure path (VM kept, bundle written, the limit and how to raise it named).
#[test]
fn a_playbook_past_its_time_limit_fails_the_run_and_keeps_the_vm() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.playbook.borrow_mut() = Box::new(|call| {
        if call.label.contains("offsite.yml") {
            return Err(boma_harness::HarnessError::PlaybookTimedOut {
                step: call.label.clone(),
                after: call.timeout,
            });
        }
        Ok(())
    });
    let outcome = rig.it();
    let error = outcome.error.expect("fails");
    assert_eq!(error.class(), ExitClass::Failed);
    assert!(
        error.to_string().contains("BOMA_IT_STEP_TIMEOUT"),
        "{error}"
    );
    assert_eq!(outcome.report.result, RunResult::Failed);
    assert!(outcome.report.diagnostics.is_some());
    assert_eq!(
        rig.machine.world.borrow().running.len(),
        1,
        "kept for inspection"
    );
}

// Disk layers in a run, on the fake machine with real qcow2 images (`Rig::with_layers`).

/// The one VM directory of the rig's runs.
fn only_vm_dir(runs_root: &Utf8Path) -> Utf8PathBuf {
    let dirs: Vec<Utf8PathBuf> = runs_root
        .read_dir_utf8()
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().starts_with("boma-it-"))
        .map(|e| e.path().to_owned())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// `qemu-img info`'s view of a disk: its backing file, if any.
fn backing_of(disk: &Utf8Path) -> Option<String> {
    let sh = xshell::Shell::new().unwrap();
    let json = xshell::cmd!(sh, "qemu-img info -U --output=json {disk}")
        .exec()
        .read()
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["backing-filename"].as_str().map(str::to_owned)
}

/// The disk and its whole chain open and check clean.
fn assert_valid_disk(disk: &Utf8Path) {
    let sh = xshell::Shell::new().unwrap();
    let out = xshell::cmd!(sh, "qemu-img check -U {disk}")
        .exec()
        .allow_fail()
        .run()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{disk}: {}{}",
        out.stdout,
        out.stderr
    );
}

fn inode(path: &Utf8Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

/// Applies succeed and verify passes; `at` runs inside the first apply whose label contains
/// `during` (after the VM is up, before the layer of that step is taken; not in the idempotence
/// pass).
fn during_apply(during: &'static str, mut at: impl FnMut(&PlaybookCall) + 'static) -> Playbook {
    let mut rest = verify_passes();
    let mut done = false;
    Box::new(move |call| {
        if !done && call.label.starts_with("apply") && call.label.contains(during) {
            done = true;
            at(call);
        }
        rest(call)
    })
}

/// How often the guest was asked to power itself off (each power cycle that takes a layer).
fn power_offs(rig: &Rig) -> usize {
    rig.machine
        .world
        .borrow()
        .commands
        .iter()
        .filter(|c| *c == "sudo systemctl poweroff")
        .count()
}

/// A run that keeps its VM, so that its disk and its log can be read afterwards.
fn kept() -> ItOptions {
    ItOptions {
        keep: true,
        ..options()
    }
}

/// What a store fault must leave: a passed run, one line saying layers are off and why, the
/// report's entry for the step saying it too, and the VM on its own disk (the overlay it had
/// before the power cycle, valid, nothing half-made beside it).
fn assert_layers_went_off(
    rig: &Rig,
    outcome: &boma_harness::RunOutcome,
    overlay_before: u64,
    why: &str,
) {
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.result, RunResult::Passed);
    let dir = only_vm_dir(&rig.sandbox.settings.runs_root);
    let log = std::fs::read_to_string(dir.join("harness.log")).unwrap();
    let off: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("layers: off for the rest of this run"))
        .collect();
    assert_eq!(off.len(), 1, "{log}");
    assert!(off[0].contains(why), "{}", off[0]);
    let step = &outcome.report.layers[0];
    assert!(
        step.why_not.as_deref().is_some_and(|w| w.contains(why)),
        "{step:?}"
    );
    let overlay = dir.join("overlay.qcow2");
    assert_eq!(inode(&overlay), overlay_before, "the VM kept its own disk");
    assert_valid_disk(&overlay);
    assert!(!dir.join("overlay.qcow2.new").exists());
    // Once off, no later step is power-cycled for a layer: the reboot is a plain one.
    assert_eq!(power_offs(rig), 1);
    assert!(
        rig.machine
            .world
            .borrow()
            .commands
            .iter()
            .any(|c| c == "sudo systemctl reboot")
    );
}

#[test]
fn with_layers_a_run_stores_each_step_and_the_next_run_reuses_them() {
    let _serial = serial();
    let rig = Rig::with_layers();
    let first = rig.it();
    assert!(first.error.is_none(), "{:?}", first.error);
    let stored: Vec<bool> = first.report.layers.iter().map(|l| l.reused).collect();
    assert_eq!(stored, [false, false], "{:?}", first.report.layers);
    assert_eq!(
        power_offs(&rig),
        2,
        "one power cycle per step, the last is the reboot"
    );
    let keys = |outcome: &boma_harness::RunOutcome| -> Vec<String> {
        outcome
            .report
            .layers
            .iter()
            .map(|l| l.key.clone())
            .collect()
    };
    let again = rig.it();
    assert!(again.error.is_none(), "{:?}", again.error);
    let reused: Vec<bool> = again.report.layers.iter().map(|l| l.reused).collect();
    assert_eq!(reused, [true, true], "{:?}", again.report.layers);
    assert_eq!(keys(&first), keys(&again));
}

/// A port the profile publishes is served only by its last step (askari's Caddy): after the
/// first step's power cycle it fails as it failed before it, which is no loss of that power
/// cycle. (Seen on a real guest: the step's reboot test failed `probe_443_https` after `base`.)
#[test]
fn a_port_only_a_later_step_serves_is_no_loss_of_an_earlier_steps_power_cycle() {
    let _serial = serial();
    let rig = Rig::with_layers();
    rig.machine.ports_unserved.borrow_mut().push(443);
    let unserved = Rc::clone(&rig.machine.ports_unserved);
    *rig.machine.playbook.borrow_mut() = Box::new(move |call: &PlaybookCall| {
        if call.label.contains("offsite.yml") {
            unserved.borrow_mut().retain(|p| *p != 443);
        }
        support::verify_passes()(call)
    });
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let step_checks: Vec<(&str, bool)> = outcome
        .report
        .checks
        .iter()
        .filter(|c| c.name.contains("power cycle after step 1"))
        .map(|c| (c.name.as_str(), c.ok))
        .collect();
    assert!(
        step_checks.iter().all(|(_, ok)| *ok) && !step_checks.is_empty(),
        "{step_checks:?}"
    );
}

/// The other side: a port that answered after the first step's apply and not after its power
/// cycle is that power cycle's loss, named with the step.
#[test]
fn a_port_lost_at_an_earlier_steps_power_cycle_fails_the_run_naming_the_step() {
    let _serial = serial();
    let rig = Rig::with_layers();
    rig.machine.ports_dead_after_reboot.borrow_mut().push(443);
    let outcome = rig.it();
    let failed: Vec<&str> = outcome
        .report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        failed.contains(
            &"probe_failed 443 timeout (power cycle after step 1: playbooks/site.yml --tags base)"
        ),
        "{failed:?}"
    );
}

#[test]
fn a_layer_store_that_cannot_be_opened_turns_layers_off_and_the_run_boots_the_golden_image() {
    let _serial = serial();
    let rig = Rig::with_layers();
    // A file where the store's directory goes: the store cannot be opened, as with a cache
    // on a full or read-only disk.
    std::fs::write(rig.sandbox.settings.cache_dir.join("layers"), "").unwrap();
    let outcome = rig.it_with("askari", kept());
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.result, RunResult::Passed);
    assert!(!outcome.report.layers.is_empty());
    for step in &outcome.report.layers {
        let why = step.why_not.as_deref().unwrap_or_default();
        assert!(
            why.starts_with("layers off for this run: the layer store cannot be used"),
            "{why}"
        );
    }
    let dir = only_vm_dir(&rig.sandbox.settings.runs_root);
    assert_eq!(
        backing_of(&dir.join("overlay.qcow2")).as_deref(),
        Some(dir.join("golden.qcow2").as_str()),
        "booted from the run's own pin of the golden image"
    );
    assert_eq!(power_offs(&rig), 0, "no layer, no power cycle");
}

#[test]
fn a_store_lock_that_cannot_be_taken_while_storing_turns_layers_off_on_the_vms_own_disk() {
    let _serial = serial();
    let rig = Rig::with_layers();
    let store = rig.sandbox.settings.cache_dir.join("layers");
    let runs = rig.sandbox.settings.runs_root.clone();
    let overlay_inode = Rc::new(Cell::new(0));
    let seen = Rc::clone(&overlay_inode);
    *rig.machine.playbook.borrow_mut() = during_apply("site.yml", move |_| {
        seen.set(inode(&only_vm_dir(&runs).join("overlay.qcow2")));
        // The store lock cannot be opened (a directory stands in its place): any I/O
        // refusal of the store (permissions, a full disk) takes this path.
        std::fs::remove_file(store.join(".lock")).unwrap();
        std::fs::create_dir(store.join(".lock")).unwrap();
    });
    let outcome = rig.it_with("askari", kept());
    assert_layers_went_off(
        &rig,
        &outcome,
        overlay_inode.get(),
        "step 1's layer could not be stored (cannot lock",
    );
}

#[test]
fn qemu_img_failing_on_the_overlay_turns_layers_off_on_the_vms_own_disk() {
    let _serial = serial();
    let rig = Rig::with_layers();
    let runs = rig.sandbox.settings.runs_root.clone();
    let overlay_inode = Rc::new(Cell::new(0));
    let seen = Rc::clone(&overlay_inode);
    // A writer still holds the overlay (as a QEMU that has not let go would): qemu-img cannot
    // read it.
    let writer = Rc::new(RefCell::new(None));
    let holds = Rc::clone(&writer);
    let mut rest = verify_passes();
    *rig.machine.playbook.borrow_mut() = Box::new(move |call| {
        let overlay = only_vm_dir(&runs).join("overlay.qcow2");
        if call.label == "apply playbooks/site.yml --tags base" && seen.get() == 0 {
            seen.set(inode(&overlay));
            let sh = xshell::Shell::new().unwrap();
            let sleep = "sleep 60000";
            let started = xshell::cmd!(sh, "qemu-io -c {sleep} {overlay}")
                .exec()
                .start()
                .unwrap();
            *holds.borrow_mut() = Some(started);
            // Until qemu-io has the image open.
            std::thread::sleep(std::time::Duration::from_millis(300));
        } else if let Some(started) = holds.borrow_mut().take() {
            started.stop();
        }
        rest(call)
    });
    let outcome = rig.it_with("askari", kept());
    if let Some(started) = writer.borrow_mut().take() {
        started.stop();
    }
    assert_layers_went_off(
        &rig,
        &outcome,
        overlay_inode.get(),
        "step 1's layer could not be stored (`qemu-img info",
    );
}

#[test]
fn an_overlay_that_cannot_be_made_on_the_new_layer_leaves_the_vm_its_own_disk() {
    let _serial = serial();
    let rig = Rig::with_layers();
    // The boot's overlay is made; the one on step 1's new layer finds no space.
    rig.machine.qcow2.as_ref().unwrap().fail_from.set(Some(2));
    let runs = rig.sandbox.settings.runs_root.clone();
    let overlay_inode = Rc::new(Cell::new(0));
    let seen = Rc::clone(&overlay_inode);
    *rig.machine.playbook.borrow_mut() = during_apply("site.yml", move |_| {
        seen.set(inode(&only_vm_dir(&runs).join("overlay.qcow2")));
    });
    let outcome = rig.it_with("askari", kept());
    assert_layers_went_off(
        &rig,
        &outcome,
        overlay_inode.get(),
        "no space left on device",
    );
    // The VM's disk is still the one it booted, on the pinned golden image.
    let dir = only_vm_dir(&rig.sandbox.settings.runs_root);
    let backing = backing_of(&dir.join("overlay.qcow2")).unwrap();
    assert!(backing.ends_with("/golden.qcow2"), "{backing}");
}

// Every power cycle that stores a layer is a reboot test of its step.

/// The askari capture after a reboot that lost the docker-proxy on port 80.
fn lost_port_80() -> String {
    ASKARI_AFTER
        .lines()
        .filter(|l| !(l.contains("0.0.0.0:80 ") && l.contains("docker-proxy")))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn failed_names(outcome: &boma_harness::RunOutcome) -> Vec<String> {
    outcome
        .report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.clone())
        .collect()
}

const STEP_1_LOST: &str =
    "listener_lost tcp/80 docker-proxy (power cycle after step 1: playbooks/site.yml --tags base)";

/// The layer store of a rig, as a run opens it.
fn store_of(rig: &Rig) -> boma_layers::LayerStore {
    boma_layers::LayerStore::open(
        &rig.sandbox.settings.cache_dir.join(boma_layers::LAYERS_DIR),
        boma_layers::StoreConfig::default(),
    )
    .unwrap()
}

#[test]
fn a_step_whose_apply_time_state_does_not_survive_its_power_cycle_fails_the_run_by_name() {
    let _serial = serial();
    let rig = Rig::with_layers();
    // Boot 0 is the first boot (step 1 applied there); boot 1 follows step 1's power cycle and
    // lost a listener; the final reboot (boot 2) keeps what boot 1 had, so only the step's own
    // power cycle can show the loss.
    rig.machine.world.borrow_mut().captures = vec![support::ASKARI_BEFORE.into(), lost_port_80()];
    let outcome = rig.it();
    assert_eq!(outcome.report.result, RunResult::Failed);
    assert_eq!(failed_names(&outcome), [STEP_1_LOST]);
    let dir = only_vm_dir(&rig.sandbox.settings.runs_root);
    let diff = std::fs::read_to_string(dir.join("step-1/reboot-diff.txt")).unwrap();
    assert!(diff.contains("listener_lost tcp/80 docker-proxy"), "{diff}");
    // The layer records the verdict of the power cycle that made it.
    let key = boma_layers::LayerKey::parse(&outcome.report.layers[0].key).unwrap();
    let found = store_of(&rig)
        .lookup(&key, boma_layers::Timestamp(0))
        .unwrap();
    assert!(
        matches!(&found, boma_layers::Lookup::LostState { lost }
            if lost == &["listener_lost tcp/80 docker-proxy".to_owned()]),
        "{found:?}"
    );
}

#[test]
fn a_layer_whose_power_cycle_lost_state_is_never_reused_and_a_warm_run_fails_again() {
    let _serial = serial();
    let rig = Rig::with_layers();
    // Two runs of three boots each: each run's step 1 power cycle loses the listener.
    let (before, lost) = (support::ASKARI_BEFORE.to_owned(), lost_port_80());
    rig.machine.world.borrow_mut().captures =
        vec![before.clone(), lost.clone(), lost.clone(), before, lost];
    let cold = rig.it();
    assert_eq!(failed_names(&cold), [STEP_1_LOST]);
    let warm = rig.it();
    let step1 = &warm.report.layers[0];
    assert!(!step1.reused, "{step1:?}");
    assert!(
        step1
            .why_not
            .as_deref()
            .is_some_and(|w| w.contains("lost state at the power cycle that stored it")),
        "{step1:?}"
    );
    assert_eq!(warm.report.result, RunResult::Failed);
    assert_eq!(failed_names(&warm), [STEP_1_LOST]);
}

#[test]
fn a_run_that_reuses_layers_reports_the_verdicts_of_the_power_cycles_that_made_them() {
    let _serial = serial();
    let rig = Rig::with_layers();
    let first = rig.it();
    assert!(first.error.is_none(), "{:?}", first.error);
    let step_checks = |outcome: &boma_harness::RunOutcome| -> Vec<(String, bool, String)> {
        outcome
            .report
            .checks
            .iter()
            .filter(|c| c.name.starts_with("reboot_diff (power cycle after step"))
            .map(|c| {
                let detail = c.detail.clone().unwrap_or_default().to_string();
                (c.name.clone(), c.ok, detail)
            })
            .collect()
    };
    // The first run judged step 1's power cycle itself.
    let own = step_checks(&first);
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(
        own[0].0,
        "reboot_diff (power cycle after step 1: playbooks/site.yml --tags base)"
    );
    // The second reuses both layers and reports what their power cycles showed.
    let again = rig.it();
    assert!(again.error.is_none(), "{:?}", again.error);
    let recorded = step_checks(&again);
    let names: Vec<&str> = recorded.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "reboot_diff (power cycle after step 1: playbooks/site.yml --tags base)",
            "reboot_diff (power cycle after step 2: playbooks/offsite.yml --tags docker_host,reverse_proxy)",
        ]
    );
    for (name, ok, detail) in &recorded {
        assert!(ok, "{name}");
        assert!(detail.contains("recorded by layer"), "{detail}");
    }
}

#[test]
fn with_layers_a_run_is_never_blinder_than_with_fresh() {
    let _serial = serial();
    // The same guest: what the first step made at apply time is gone after the next boot.
    let lossy = |rig: &Rig| {
        rig.machine.world.borrow_mut().captures =
            vec![support::ASKARI_BEFORE.into(), lost_port_80()];
    };
    let fresh = Rig::new();
    lossy(&fresh);
    let fresh = fresh.it();
    let layered = Rig::with_layers();
    lossy(&layered);
    let layered = layered.it();
    assert_eq!(fresh.report.result, RunResult::Failed);
    assert_eq!(layered.report.result, RunResult::Failed);
    // Every finding of the fresh run is a finding of the layered one (named by its step).
    let finding = |name: &str| name.split(" (power cycle after").next().unwrap().to_owned();
    let of_fresh: Vec<String> = failed_names(&fresh).iter().map(|n| finding(n)).collect();
    let of_layered: Vec<String> = failed_names(&layered).iter().map(|n| finding(n)).collect();
    assert_eq!(of_fresh, ["listener_lost tcp/80 docker-proxy"]);
    for name in &of_fresh {
        assert!(
            of_layered.contains(name),
            "{name} missing from {of_layered:?}"
        );
    }
}

/// A run given no id takes the one the machine mints (the kernel's randomness, on a real
/// machine): its VM is named by it.
#[test]
fn a_run_without_a_chosen_id_is_named_by_the_id_the_machine_mints() {
    let _serial = serial();
    let rig = Rig::new();
    let outcome = rig.it();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        outcome.report.vm.as_deref(),
        Some("boma-it-askari-00000001")
    );
    let up = boma_harness::up(&rig.ctx(), "askari").unwrap();
    assert_eq!(up.name.as_str(), "boma-it-askari-00000002");
}

/// One process of the spawn journal, recorded as started by the harness `spawned_by`.
fn journaled(pid: u32, spawned_by: u32) -> boma_host::stop::StopAction {
    boma_host::stop::StopAction {
        recorded: boma_exec::journal::Spawned {
            pid,
            pgid: pid,
            start_ticks: 1000 + u64::from(pid),
            boot_id: "boot".into(),
            uid: 1000,
            comm: "ansible-playboo".into(),
            cmdline: format!("ansible-playbook playbooks/site.yml ({pid})"),
            spawned_by,
            at_unix: 0,
        },
        target: boma_host::stop::Target::Group(pid),
    }
}

/// A killed run's leftovers are what its own harness started: of the journal's live processes,
/// only those the dead child (by its pid) recorded are stopped, never a sibling's.
#[test]
fn an_orphans_processes_are_only_those_its_own_harness_started() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.journaled.borrow_mut() =
        vec![journaled(101, 7), journaled(102, 8), journaled(103, 7)];
    let name = boma_name::VmName::parse("boma-it-askari-0a1b2c3d").unwrap();
    let removed = boma_harness::remove_orphan(&rig.ctx(), &name, 7).unwrap();
    assert_eq!(*rig.machine.stopped.borrow(), [101, 103]);
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(
        removed[0].contains("ansible-playbook playbooks/site.yml (101)"),
        "{removed:?}"
    );
}

/// `prune` stops every live process the spawn journal recorded, whoever started it.
#[test]
fn prune_stops_every_process_the_journal_recorded() {
    let _serial = serial();
    let rig = Rig::new();
    *rig.machine.journaled.borrow_mut() = vec![journaled(101, 7), journaled(102, 8)];
    boma_harness::prune(&rig.ctx()).unwrap();
    assert_eq!(*rig.machine.stopped.borrow(), [101, 102]);
}
