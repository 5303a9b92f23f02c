//! Fault injection against the fake machine: interrupts at each phase, failures after boot,
//! stale state, concurrent runs and every kind of bad input. Each case checks what is left:
//! VMs, run directories, the record, the lock.

mod support;

use boma_exec::interrupt;
use boma_harness::{Ctx, HarnessError, ItOptions};
use boma_inventory::CertTier;
use support::{Sandbox, interrupted_during, serial, verify_fails_red};

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

fn options() -> ItOptions {
    ItOptions {
        tier: CertTier::Internal,
        keep: false,
        no_reboot: false,
    }
}

/// Nothing of the run is left: no VM, no run directory, no record, and the lock is free.
fn assert_nothing_left(sandbox: &Sandbox, machine: &support::FakeMachine) {
    assert!(
        machine.world.borrow().running.is_empty(),
        "a VM is still running"
    );
    assert!(
        sandbox.vm_dirs().is_empty(),
        "run dirs left: {:?}",
        sandbox.vm_dirs()
    );
    assert!(!sandbox.has_current(), "the run record is left");
    boma_vm::Runs::new(&sandbox.settings.runs_root)
        .lock("test")
        .expect("the lock is free");
}

#[test]
fn a_passing_cycle_removes_its_vm() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    let results = boma_harness::it(&ctx, "askari", options()).unwrap();
    assert!(results.passed());
    assert_eq!(
        *machine.playbook_calls.borrow(),
        vec![
            "apply playbooks/site.yml --tags base",
            "apply playbooks/offsite.yml --tags docker_host,reverse_proxy",
            "verify"
        ]
    );
    let commands = machine.world.borrow().commands.clone();
    assert!(
        commands.iter().any(|c| c == "sudo systemctl reboot"),
        "the cycle reboots: {commands:?}"
    );
    assert_nothing_left(&sandbox, &machine);
}

#[test]
fn no_reboot_skips_the_reboot_and_says_so() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    boma_harness::it(
        &ctx,
        "askari",
        ItOptions {
            no_reboot: true,
            ..options()
        },
    )
    .unwrap();
    assert!(
        !machine
            .world
            .borrow()
            .commands
            .iter()
            .any(|c| c.contains("reboot"))
    );
}

#[test]
fn a_failed_verify_keeps_the_vm_and_writes_the_diagnostics_bundle() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    *machine.playbook.borrow_mut() = verify_fails_red();
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    let err = boma_harness::it(&ctx, "askari-red", options()).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    let HarnessError::VerifyFailed { failed } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        failed,
        &[
            "forward_chain_accepts_containers",
            "https_443_from_controller"
        ]
    );
    // Kept for inspection.
    let vm = sandbox.vm_dirs().pop().expect("the VM's files are kept");
    assert!(machine.world.borrow().running.contains(&vm));
    assert!(sandbox.has_current());
    let bundle = sandbox.settings.diagnostics_root.join(&vm);
    for file in [
        "nft-ruleset.txt",
        "docker-ps.txt",
        "ss-tlnp.txt",
        "journal-boot.txt",
        "critical-chain.txt",
        "cloud-init-status.txt",
        "console.log",
        "run.json",
        "verify-results.json",
    ] {
        assert!(
            bundle.join(file).is_file(),
            "{file} missing from the bundle"
        );
    }
    // And `prune` clears it all.
    boma_harness::prune(&ctx).unwrap();
    assert_nothing_left(&sandbox, &machine);
}

#[test]
fn an_interrupt_in_each_phase_removes_the_vm_and_exits_with_the_signal() {
    // Phases: waiting for the first boot (the guest is asked for cloud-init's status), apply,
    // the reboot, verify.
    for (phase, signal) in [
        ("boot", SIGINT),
        ("apply", SIGINT),
        ("reboot", SIGTERM),
        ("verify", SIGTERM),
    ] {
        let _serial = serial();
        let sandbox = Sandbox::new();
        let machine = sandbox.machine();
        match phase {
            "boot" => {
                machine.world.borrow_mut().interrupt_on =
                    Some(("cloud-init status --wait".into(), signal))
            }
            "reboot" => {
                machine.world.borrow_mut().interrupt_on = Some(("systemctl reboot".into(), signal))
            }
            step => *machine.playbook.borrow_mut() = interrupted_during(step, signal),
        }
        let ctx = Ctx {
            settings: &sandbox.settings,
            machine: &machine,
        };
        let err = boma_harness::it(&ctx, "askari", options()).unwrap_err();
        assert_eq!(err.exit_code(), 128 + signal, "{phase}: {err}");
        assert_nothing_left(&sandbox, &machine);
        assert!(
            !sandbox.settings.diagnostics_root.exists(),
            "{phase}: an interrupt is not a failure to diagnose"
        );
        interrupt::reset();
    }
}

#[test]
fn an_interrupt_with_keep_keeps_the_vm_and_says_so() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    *machine.playbook.borrow_mut() = interrupted_during("apply", SIGINT);
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    let err = boma_harness::it(
        &ctx,
        "askari",
        ItOptions {
            keep: true,
            ..options()
        },
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 130);
    assert_eq!(machine.world.borrow().running.len(), 1);
    assert_eq!(sandbox.vm_dirs().len(), 1);
    interrupt::reset();
}

#[test]
fn a_guest_that_never_comes_back_after_the_reboot_is_kept_with_its_console() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    machine.world.borrow_mut().never_returns = true;
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    let err = boma_harness::it(&ctx, "askari", options()).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("new boot_id"), "{err}");
    let vm = sandbox.vm_dirs().pop().expect("kept for inspection");
    assert!(machine.world.borrow().running.contains(&vm));
    let bundle = sandbox.settings.diagnostics_root.join(&vm);
    assert!(bundle.join("console.log").is_file());
    // Unreachable over SSH: the bundle says so instead of hanging on each command.
    let nft = std::fs::read_to_string(bundle.join("nft-ruleset.txt")).unwrap();
    assert!(nft.contains("unreachable"), "{nft}");
}

#[test]
fn a_vm_process_that_dies_during_a_reboot_is_reported_at_once() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    boma_harness::up(&ctx, "askari").unwrap();
    machine.world.borrow_mut().dies = true;
    let err = boma_harness::reboot(&ctx, false).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("is gone"), "{err}");
}

#[test]
fn a_stale_run_left_by_sigkill_is_cleared_by_the_next_run() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    let stale = boma_harness::up(&ctx, "askari").unwrap();
    // The harness and its VM were SIGKILLed: the process is gone, the files and record stay.
    machine.world.borrow_mut().running.clear();
    boma_harness::it(&ctx, "askari", options()).unwrap();
    assert!(!stale.dir.exists());
    assert_nothing_left(&sandbox, &machine);
}

#[test]
fn a_lock_file_left_by_a_crash_does_not_block() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    std::fs::create_dir_all(&sandbox.settings.runs_root).unwrap();
    std::fs::write(
        sandbox.settings.runs_root.join(".lock"),
        "pid 999999: cargo xtask it askari",
    )
    .unwrap();
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    boma_harness::it(&ctx, "askari", options()).unwrap();
}

#[test]
fn a_second_run_is_refused_naming_the_live_one_and_how_to_stop_it() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    let live = boma_harness::up(&ctx, "askari").unwrap();
    let err = boma_harness::it(&ctx, "askari", options()).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&live.name) && message.contains("cargo xtask down"),
        "{message}"
    );
    assert_eq!(machine.world.borrow().booted.len(), 1, "nothing new booted");

    // A harness command holding the lock right now is named too.
    let runs = boma_vm::Runs::new(&sandbox.settings.runs_root);
    let _held = runs.lock("cargo xtask it askari").unwrap();
    let err = boma_harness::down(&ctx, false).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("cargo xtask it askari"), "{err}");
}

/// Bad input: one clear line, exit status 2, nothing created.
fn refused(
    sandbox: &Sandbox,
    machine: &support::FakeMachine,
    host: &str,
    tier: CertTier,
) -> String {
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine,
    };
    let err = boma_harness::it(&ctx, host, ItOptions { tier, ..options() }).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(
        machine.world.borrow().booted.is_empty(),
        "booted despite: {err}"
    );
    assert!(sandbox.vm_dirs().is_empty());
    assert_eq!(
        machine.golden_asked.get(),
        0,
        "the image was fetched or built despite: {err}"
    );
    let message = err.to_string();
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    message
}

#[test]
fn bad_input_is_refused_before_anything_is_created() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    let repo = &sandbox.settings.repo;

    let m = refused(&sandbox, &machine, "nosuch", CertTier::Internal);
    assert!(
        m.contains("profiles/nosuch.json") && m.contains("askari, askari-red"),
        "{m}"
    );

    std::fs::write(
        repo.join("profiles/broken.json"),
        "{\"groups\": [\"offsite_hosts\"],\n  \"applies\": [\n",
    )
    .unwrap();
    let m = refused(&sandbox, &machine, "broken", CertTier::Internal);
    assert!(m.contains("profiles/broken.json:3:"), "{m}");

    std::fs::write(
        repo.join("profiles/typo.json"),
        r#"{"groups": ["offsite_hosts"], "applies": [{"playbook": "site.yml", "tags": ["base"]}],
 "extra_vars_files": [], "mem_mib": 3072, "vcpus": 2, "published_ports": [443], "memory": 1}"#,
    )
    .unwrap();
    let m = refused(&sandbox, &machine, "typo", CertTier::Internal);
    assert!(
        m.contains("profiles/typo.json:2:") && m.contains("memory"),
        "{m}"
    );

    std::fs::write(
        repo.join("profiles/short.json"),
        r#"{"groups": ["offsite_hosts"], "applies": [{"playbook": "site.yml", "tags": ["base"]}],
 "extra_vars_files": [], "vcpus": 2, "published_ports": [443]}"#,
    )
    .unwrap();
    let m = refused(&sandbox, &machine, "short", CertTier::Internal);
    assert!(
        m.contains("profiles/short.json") && m.contains("mem_mib"),
        "{m}"
    );

    std::fs::remove_file(repo.join("overrides/askari-red.yml")).unwrap();
    let m = refused(&sandbox, &machine, "askari-red", CertTier::Internal);
    assert!(m.contains("overrides/askari-red.yml"), "{m}");

    std::fs::remove_file(repo.join("certs/le-prod-wildcard.yml")).unwrap();
    let m = refused(&sandbox, &machine, "askari", CertTier::LeProdWildcard);
    assert!(m.contains("certs/le-prod-wildcard.yml"), "{m}");

    let m = refused(&sandbox, &machine, "askari", CertTier::LeStaging);
    assert!(
        m.contains("le-staging") && m.contains("--vault-password-file"),
        "{m}"
    );

    machine
        .missing_tools
        .borrow_mut()
        .push("cloud-localds".into());
    let m = refused(&sandbox, &machine, "askari", CertTier::Internal);
    assert!(
        m.contains("cloud-localds") && m.contains("cloud-image-utils"),
        "{m}"
    );
    machine.missing_tools.borrow_mut().clear();

    machine.available_mib.set(3000);
    let m = refused(&sandbox, &machine, "askari", CertTier::Internal);
    assert!(m.contains("3000 MiB is available"), "{m}");
}

#[test]
fn the_vault_password_never_reaches_the_diagnostics() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    let secret = "vault-pass-7c1d9e4b2a";
    let vault = sandbox.root.join("vault-pass");
    std::fs::write(&vault, format!("{secret}\n")).unwrap();
    let mut settings = sandbox.settings.clone();
    settings.vault_password_file = Some(vault);
    // Whatever the guest prints as root carries the secret (as a leaked env file would).
    machine.world.borrow_mut().says = Some(format!("GANDI_BEARER_TOKEN={secret}"));
    *machine.playbook.borrow_mut() = verify_fails_red();
    let ctx = Ctx {
        settings: &settings,
        machine: &machine,
    };
    let err = boma_harness::it(
        &ctx,
        "askari",
        ItOptions {
            tier: CertTier::LeStaging,
            ..options()
        },
    )
    .unwrap_err();
    assert!(!err.to_string().contains(secret));
    let vm = sandbox.vm_dirs().pop().unwrap();
    let bundle = settings.diagnostics_root.join(vm);
    let mut checked = 0;
    for entry in bundle.read_dir_utf8().unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        assert!(
            !text.contains(secret),
            "{} leaks the vault password",
            entry.path()
        );
        checked += 1;
    }
    assert!(checked >= 6);
    let nft = std::fs::read_to_string(bundle.join("nft-ruleset.txt")).unwrap();
    assert!(nft.contains("GANDI_BEARER_TOKEN=<redacted>"), "{nft}");
}
