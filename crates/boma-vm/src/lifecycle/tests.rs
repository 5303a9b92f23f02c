//! The lifecycle's decisions, against the fakes.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use camino::Utf8PathBuf;

use super::*;
use crate::BackendKind;
use crate::fake::{FakeDisks, FakeGuest, FakeHypervisors, World, vm};
use crate::hypervisor::{FleetNic, Segment};

struct Rig {
    _tmp: tempfile::TempDir,
    runs: Runs,
    world: Rc<RefCell<World>>,
    hypervisors: FakeHypervisors,
    guest: FakeGuest,
    disks: FakeDisks,
}

impl Rig {
    fn new() -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let runs = Runs::new(Utf8PathBuf::from_path_buf(tmp.path().join(".run")).unwrap());
        let world = World::shared();
        Rig {
            _tmp: tmp,
            runs,
            hypervisors: FakeHypervisors {
                world: Rc::clone(&world),
            },
            guest: FakeGuest {
                world: Rc::clone(&world),
            },
            disks: FakeDisks {
                fail_overlay: false,
            },
            world,
        }
    }

    fn fx(&self) -> Effects<'_> {
        Effects {
            runs: &self.runs,
            hypervisors: &self.hypervisors,
            kind: BackendKind::Qemu,
            guest: &self.guest,
            disks: &self.disks,
            waits: Waits {
                boot: Duration::from_millis(200),
                reboot: Duration::from_millis(200),
                poll: Duration::from_millis(1),
            },
        }
    }
}

fn request(name: &str) -> UpRequest {
    UpRequest {
        host: "askari".into(),
        name: vm(name),
        mac: "52:54:00:00:00:01".into(),
        base_image: "/cache/golden.qcow2".into(),
        base: BaseImage::Golden,
        mem_mib: 3072,
        vcpus: 2,
        published_ports: vec![443],
        accel: Accel::Tcg,
        user_data: "#cloud-config\n".into(),
        meta_data: "instance-id: x\n".into(),
        network_config: "network:\n  version: 2\n".into(),
        user: "ansible".into(),
        key: "/keys/id_ed25519".into(),
        exclusive: true,
    }
}

#[test]
fn up_boots_waits_through_early_ssh_failures_and_records_the_run() {
    let rig = Rig::new();
    rig.world.borrow_mut().unreachable_polls = 3;
    let record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    assert_eq!(
        record.boot_id.as_deref(),
        Some(rig.world.borrow().boot_id().as_str())
    );
    assert_eq!(record.published[&443].port, 40443);
    assert_eq!(rig.runs.current().unwrap(), Some(record.clone()));
    for file in [
        "overlay.qcow2",
        "seed.img",
        "user-data",
        "meta-data",
        "run.json",
    ] {
        assert!(record.dir.join(file).exists(), "{file}");
    }
    assert_eq!(
        std::fs::read_to_string(record.dir.join("user-data")).unwrap(),
        "#cloud-config\n"
    );
}

#[test]
fn a_second_up_is_refused_while_one_is_live_and_creates_nothing() {
    let rig = Rig::new();
    let first = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let failure = up(&rig.fx(), &request("boma-it-askari-2")).unwrap_err();
    let message = failure.error.to_string();
    assert!(failure.error.is_preflight(), "{message}");
    assert!(
        message.contains("boma-it-askari-1") && message.contains("cargo xtask down"),
        "{message}"
    );
    assert!(failure.record.is_none());
    assert!(!rig.runs.vm_dir(&vm("boma-it-askari-2")).exists());
    assert_eq!(rig.runs.current().unwrap().unwrap().name, first.name);
    assert_eq!(rig.world.borrow().booted, vec![vm("boma-it-askari-1")]);
}

#[test]
fn a_run_that_is_not_exclusive_leaves_a_live_current_vm_alone() {
    let rig = Rig::new();
    let first = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let mut second = request("boma-it-askari-2");
    second.exclusive = false;
    up(&rig.fx(), &second).unwrap();
    assert!(rig.world.borrow().running.contains(&first.name));
    assert!(first.dir.exists());
}

#[test]
fn a_stale_run_whose_vm_is_gone_is_cleared_by_the_next_up() {
    let rig = Rig::new();
    let stale = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    // SIGKILL: the process is gone, the files stay.
    rig.world.borrow_mut().running.clear();
    let fresh = up(&rig.fx(), &request("boma-it-askari-2")).unwrap();
    assert!(!stale.dir.exists(), "the stale run's files are removed");
    assert_eq!(rig.runs.current().unwrap().unwrap().name, fresh.name);
}

#[test]
fn a_failed_disk_step_or_boot_leaves_no_files_and_no_record() {
    let mut rig = Rig::new();
    rig.disks.fail_overlay = true;
    let failure = up(&rig.fx(), &request("boma-it-askari-1")).unwrap_err();
    assert!(failure.record.is_none());
    assert!(!rig.runs.vm_dir(&vm("boma-it-askari-1")).exists());

    rig.disks.fail_overlay = false;
    rig.world.borrow_mut().boot_fails = true;
    let failure = up(&rig.fx(), &request("boma-it-askari-2")).unwrap_err();
    assert!(failure.record.is_none());
    assert!(!rig.runs.vm_dir(&vm("boma-it-askari-2")).exists());
    assert!(rig.runs.current().unwrap().is_none());
}

#[test]
fn a_guest_that_never_answers_times_out_and_is_handed_back_for_keeping() {
    let rig = Rig::new();
    rig.world.borrow_mut().unreachable_polls = u32::MAX;
    let failure = up(&rig.fx(), &request("boma-it-askari-1")).unwrap_err();
    let message = failure.error.to_string();
    assert!(
        matches!(failure.error, VmError::Timeout { .. }),
        "{message}"
    );
    assert!(message.contains("console.log"), "{message}");
    let record = failure.record.expect("the booted VM is handed back");
    assert!(
        rig.world.borrow().running.contains(&record.name),
        "not destroyed: the caller decides"
    );
    assert_eq!(rig.runs.current().unwrap().unwrap().name, record.name);
}

#[test]
fn cloud_init_errors_fail_with_its_own_report_and_degraded_passes() {
    let rig = Rig::new();
    rig.world.borrow_mut().cloud_init_status = 1;
    let failure = up(&rig.fx(), &request("boma-it-askari-1")).unwrap_err();
    assert!(
        failure.error.to_string().contains("bad seed"),
        "{}",
        failure.error
    );

    let rig = Rig::new();
    rig.world.borrow_mut().cloud_init_status = 2;
    up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
}

#[test]
fn a_vm_process_that_dies_during_the_wait_is_reported_at_once() {
    let rig = Rig::new();
    {
        let mut w = rig.world.borrow_mut();
        w.unreachable_polls = u32::MAX;
        w.dies = true;
    }
    let failure = up(&rig.fx(), &request("boma-it-askari-1")).unwrap_err();
    assert!(
        matches!(failure.error, VmError::GuestGone { .. }),
        "{}",
        failure.error
    );
}

#[test]
fn guest_reboot_is_proven_by_a_new_boot_id_despite_stale_answers() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let before = record.boot_id.clone().unwrap();
    rig.world.borrow_mut().stale_after_reboot = 3;
    reboot(&rig.fx(), &mut record, RebootHow::Guest).unwrap();
    let after = record.boot_id.clone().unwrap();
    assert_ne!(before, after);
    assert_eq!(rig.runs.current().unwrap().unwrap().boot_id, Some(after));
    let commands = rig.world.borrow().commands.clone();
    assert!(commands.contains(&"sudo systemctl reboot".to_owned()));
    assert!(commands.contains(&"systemctl is-system-running --wait".to_owned()));
}

#[test]
fn after_a_reboot_the_guest_is_looked_for_where_the_backend_now_says_it_is() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let before = record.boot_id.clone();
    rig.world.borrow_mut().moves_to_after_reboot = Some("192.168.123.77".into());
    reboot(&rig.fx(), &mut record, RebootHow::Guest).unwrap();
    assert_ne!(record.boot_id, before, "proven at the new address");
    assert_eq!(record.ssh.host, "192.168.123.77");
    let saved = rig.runs.current().unwrap().unwrap();
    assert_eq!(
        saved.ssh.host, "192.168.123.77",
        "the record on disk moved too"
    );
}

#[test]
fn hard_reboot_goes_through_the_backend() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let before = record.boot_id.clone();
    reboot(&rig.fx(), &mut record, RebootHow::Hard).unwrap();
    assert_ne!(record.boot_id, before);
    assert!(
        !rig.world
            .borrow()
            .commands
            .contains(&"sudo systemctl reboot".to_owned())
    );
}

#[test]
fn a_guest_that_never_comes_back_times_out_naming_the_console() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    rig.world.borrow_mut().never_returns = true;
    let err = reboot(&rig.fx(), &mut record, RebootHow::Guest).unwrap_err();
    assert!(matches!(err, VmError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("new boot_id"), "{err}");
    assert!(!err.to_string().contains("last boot"), "{err}");
}

const PANIC_BOOT: &str = "[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\n\
     [    2.500000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n";
const CLEAN_BOOT: &str = "[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\n\
     [    3.100000] Run /init as init process\n";
const EMERGENCY_BOOT: &str = "[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\n\
     You are in emergency mode. After logging in, type \"journalctl -xb\" to view\n";

/// Waits long enough that an answer before them can only be the console's verdict.
fn patient(rig: &Rig) -> Effects<'_> {
    Effects {
        waits: Waits {
            boot: Duration::from_secs(60),
            reboot: Duration::from_secs(60),
            poll: Duration::from_millis(1),
        },
        ..rig.fx()
    }
}

#[test]
fn a_reboot_whose_console_shows_a_panic_ends_at_once_saying_why() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    {
        let mut world = rig.world.borrow_mut();
        world.never_returns = true;
        world.console_after_reboot = vec![PANIC_BOOT.into()];
    }
    let err = reboot(&patient(&rig), &mut record, RebootHow::Guest).unwrap_err();
    // Not a timeout: the 60 s wait was cut short by what the console showed.
    assert!(matches!(err, VmError::BootFailed { .. }), "{err}");
    assert!(
        err.to_string().contains(
            "(the boot after the reboot): its kernel panicked 2.5 s into boot: VFS: Unable to mount root fs"
        ),
        "{err}"
    );
}

const EMULATOR_FAULT_BOOT: &str = "[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\n\
     [    4.971062] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n\
     [    4.971867] RIP: 0010:sched_clock_cpu+0x9/0x1d0\n\
     [    4.981640] Kernel panic - not syncing: Fatal exception in interrupt\n";

#[test]
fn a_reboot_into_the_emulators_fault_is_reset_once_and_proven_all_the_same() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let before = record.boot_id.clone();
    {
        let mut world = rig.world.borrow_mut();
        world.console_after_reboot = vec![EMULATOR_FAULT_BOOT.into(), CLEAN_BOOT.into()];
    }
    reboot(&patient(&rig), &mut record, RebootHow::Guest).unwrap();
    assert_eq!(
        rig.world.borrow().boot_count,
        3,
        "the reboot, then one reset"
    );
    assert_ne!(record.boot_id, before);
}

#[test]
fn a_reboot_into_the_emulators_fault_twice_fails() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    {
        let mut world = rig.world.borrow_mut();
        world.never_returns = true;
        world.console_after_reboot = vec![EMULATOR_FAULT_BOOT.into()];
    }
    let err = reboot(&patient(&rig), &mut record, RebootHow::Guest).unwrap_err();
    assert!(matches!(err, VmError::BootFailed { .. }), "{err}");
    assert!(err.to_string().contains("Oops: int3"), "{err}");
    assert_eq!(
        rig.world.borrow().boot_count,
        3,
        "the reboot, one reset, no more"
    );
}

#[test]
fn a_reboot_into_a_panic_of_the_guests_own_is_never_reset() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    {
        let mut world = rig.world.borrow_mut();
        world.never_returns = true;
        world.console_after_reboot = vec![PANIC_BOOT.into()];
    }
    reboot(&patient(&rig), &mut record, RebootHow::Guest).unwrap_err();
    assert_eq!(rig.world.borrow().boot_count, 2, "the reboot, no reset");
}

#[test]
fn a_panic_before_the_reboot_was_asked_is_the_old_boots_history() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let before = record.boot_id.clone();
    std::fs::write(record.console_log(), PANIC_BOOT).unwrap();
    rig.world.borrow_mut().console_after_reboot = vec![CLEAN_BOOT.into()];
    reboot(&patient(&rig), &mut record, RebootHow::Guest).unwrap();
    // Not judged: neither failed on nor reset for (a reset would be a third boot)...
    assert_eq!(rig.world.borrow().boot_count, 2, "the reboot, no reset");
    assert_ne!(record.boot_id, before);
    assert_eq!(
        record.boot_id.as_deref(),
        Some(rig.world.borrow().boot_id().as_str())
    );
    // ...but kept: the console still holds it, before the new boot.
    assert_eq!(
        std::fs::read_to_string(record.console_log()).unwrap(),
        format!("{PANIC_BOOT}{CLEAN_BOOT}")
    );
}

#[test]
fn a_first_boot_that_panics_is_reset_once_and_goes_on() {
    let rig = Rig::new();
    {
        let mut world = rig.world.borrow_mut();
        world.console_text = PANIC_BOOT.into();
        world.console_after_reboot = vec![CLEAN_BOOT.into()];
        world.unreachable_polls = u32::MAX;
    }
    let record = up(&patient(&rig), &request("boma-it-askari-1")).unwrap();
    // One boot, one reset: the boot_id is the second boot's.
    assert_eq!(rig.world.borrow().boot_count, 2);
    assert_eq!(
        record.boot_id.as_deref(),
        Some(rig.world.borrow().boot_id().as_str())
    );
    let console = std::fs::read_to_string(record.console_log()).unwrap();
    assert!(
        console.starts_with(PANIC_BOOT) && console.ends_with(CLEAN_BOOT),
        "both boots kept: {console}"
    );
}

#[test]
fn a_first_boot_that_panics_again_after_its_reset_ends_the_run() {
    let rig = Rig::new();
    {
        let mut world = rig.world.borrow_mut();
        world.console_text = PANIC_BOOT.into();
        world.console_after_reboot = vec![PANIC_BOOT.into()];
        world.unreachable_polls = u32::MAX;
    }
    let failure = up(&patient(&rig), &request("boma-it-askari-1")).unwrap_err();
    assert!(
        matches!(failure.error, VmError::BootFailed { .. }),
        "{}",
        failure.error
    );
    assert!(
        failure
            .error
            .to_string()
            .contains("(its first boot): its kernel panicked"),
        "{}",
        failure.error
    );
    assert_eq!(rig.world.borrow().boot_count, 2, "reset once, not again");
    assert!(
        failure.record.is_some(),
        "the VM is handed back for keeping"
    );
}

/// A layer carries the steps applied to it (the change under test): a panic in its first boot
/// is its verdict, not reset as a golden image's would be.
#[test]
fn a_first_boot_from_a_layer_that_panics_fails_without_a_reset() {
    let rig = Rig::new();
    {
        let mut world = rig.world.borrow_mut();
        world.console_text = PANIC_BOOT.into();
        world.console_after_reboot = vec![CLEAN_BOOT.into()];
        world.unreachable_polls = u32::MAX;
    }
    let mut from_layer = request("boma-it-askari-1");
    from_layer.base = BaseImage::Layer;
    let failure = up(&patient(&rig), &from_layer).unwrap_err();
    assert!(
        failure
            .error
            .to_string()
            .contains("(its first boot): its kernel panicked 2.5 s into boot"),
        "{}",
        failure.error
    );
    assert_eq!(rig.world.borrow().boot_count, 1, "no reset");
}

/// The emulator's own fault is nobody's change: reset once, whatever the first boot boots.
#[test]
fn a_first_boot_from_a_layer_into_the_emulators_fault_is_reset_once() {
    let rig = Rig::new();
    {
        let mut world = rig.world.borrow_mut();
        world.console_text = EMULATOR_FAULT_BOOT.into();
        world.console_after_reboot = vec![CLEAN_BOOT.into()];
        world.unreachable_polls = u32::MAX;
    }
    let mut from_layer = request("boma-it-askari-1");
    from_layer.base = BaseImage::Layer;
    let record = up(&patient(&rig), &from_layer).unwrap();
    assert_eq!(rig.world.borrow().boot_count, 2, "one boot, one reset");
    assert!(record.boot_id.is_some());
}

/// A guest that restarts itself after a panic (`kernel.panic=N`) comes back with a new
/// boot_id: the panicked boot before it is the reboot's verdict all the same.
#[test]
fn a_panic_the_guest_restarts_past_after_the_reboot_fails_the_reboot() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    rig.world.borrow_mut().console_after_reboot = vec![format!("{PANIC_BOOT}{CLEAN_BOOT}")];
    let err = reboot(&patient(&rig), &mut record, RebootHow::Guest).unwrap_err();
    assert!(matches!(err, VmError::BootFailed { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("(the boot after the reboot): its kernel panicked 2.5 s into boot")
            && message.contains("the console shows 1 boot(s) after it"),
        "{message}"
    );
}

/// The same panic written while the guest was already answering (between two polls): the
/// confirmation once it answered finds it.
#[test]
fn a_panic_seen_only_once_the_guest_answered_fails_the_wait() {
    let rig = Rig::new();
    let record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let from = console_len(&record);
    let watch = ConsoleWatch::new(from, "the boot after the reboot", Resettable::EmulatorFault);
    watch.confirm(&record).unwrap();
    std::fs::write(record.console_log(), format!("{PANIC_BOOT}{CLEAN_BOOT}")).unwrap();
    let err = watch.confirm(&record).unwrap_err();
    assert!(matches!(err, VmError::BootFailed { .. }), "{err}");
    // The emulator's fault the guest restarted past is what a reset would have undone.
    std::fs::write(
        record.console_log(),
        format!("{EMULATOR_FAULT_BOOT}{CLEAN_BOOT}"),
    )
    .unwrap();
    watch.confirm(&record).unwrap();
}

#[test]
fn a_first_boot_in_emergency_mode_ends_at_once_without_a_reset() {
    let rig = Rig::new();
    {
        let mut world = rig.world.borrow_mut();
        world.console_text = EMERGENCY_BOOT.into();
        world.unreachable_polls = u32::MAX;
    }
    let failure = up(&patient(&rig), &request("boma-it-askari-1")).unwrap_err();
    let message = failure.error.to_string();
    assert!(
        matches!(failure.error, VmError::BootFailed { .. }),
        "{message}"
    );
    assert!(message.contains("it is in emergency mode"), "{message}");
    assert_eq!(
        rig.world.borrow().boot_count,
        1,
        "emergency mode is not reset"
    );
}

#[test]
fn power_off_keeps_the_files_and_down_removes_everything() {
    let rig = Rig::new();
    let record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    power_off(&rig.fx(), &record).unwrap();
    assert!(record.dir.join("overlay.qcow2").exists());
    assert!(!rig.world.borrow().running.contains(&record.name));
    down(&rig.fx(), &record).unwrap();
    assert!(!record.dir.exists());
    assert!(rig.world.borrow().running.is_empty());
    assert!(rig.runs.current().unwrap().is_none());
}

/// A failed run of several keeps its VM powered off; `start` boots it again from its record,
/// with a new boot_id, as the current run.
#[test]
fn a_vm_kept_powered_off_survives_the_next_run_and_starts_again() {
    let rig = Rig::new();
    let mut kept = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let first_boot = kept.boot_id.clone();
    keep_powered_off(&rig.fx(), &kept).unwrap();
    assert!(!rig.world.borrow().running.contains(&kept.name));
    assert_eq!(rig.world.borrow().stopped, vec![kept.name.clone()]);
    assert!(
        rig.world.borrow().destroyed.is_empty(),
        "stopped, not removed"
    );
    assert!(kept.dir.join("overlay.qcow2").exists());
    assert!(rig.runs.current().unwrap().is_none(), "no longer current");
    // The next run does not take it for a stale one.
    let mut next = request("boma-it-askari-2");
    next.exclusive = false;
    up(&rig.fx(), &next).unwrap();
    assert!(kept.dir.join("run.json").exists(), "left alone");
    let mut record = rig.runs.record(&kept.name).unwrap().expect("its record");
    assert_eq!(record, kept);
    start(&rig.fx(), &mut record).unwrap();
    assert!(rig.world.borrow().running.contains(&kept.name));
    assert_eq!(rig.world.borrow().started, vec![kept.name.clone()]);
    assert_ne!(record.boot_id, first_boot, "a new boot");
    assert_eq!(record.ssh, kept.ssh, "the same forwards");
    assert_eq!(rig.runs.current().unwrap(), Some(record.clone()));
    // Started again, it is left as it is.
    kept = record.clone();
    start(&rig.fx(), &mut record).unwrap();
    assert_eq!(record, kept);
    assert_eq!(rig.world.borrow().started.len(), 1);
}

/// A kept VM's boot after `start` is judged as a reboot's: a panic there fails it.
#[test]
fn a_start_into_a_panic_fails_naming_it() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    keep_powered_off(&rig.fx(), &record).unwrap();
    {
        let mut world = rig.world.borrow_mut();
        world.never_returns = true;
        world.console_after_reboot = vec![PANIC_BOOT.into()];
    }
    let err = start(&patient(&rig), &mut record).unwrap_err();
    assert!(matches!(err, VmError::BootFailed { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("(its boot after the start): its kernel panicked"),
        "{err}"
    );
}

#[test]
fn prune_removes_live_vms_orphaned_dirs_and_the_record() {
    let rig = Rig::new();
    let record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    // An orphan directory from a crashed run, and a VM nobody recorded.
    std::fs::create_dir_all(rig.runs.vm_dir(&vm("boma-it-askari-0"))).unwrap();
    rig.world.borrow_mut().running.insert(vm("boma-it-ghost-7"));
    let report = prune(&rig.fx(), BackendKind::Qemu).unwrap();
    assert_eq!(
        report.vms,
        vec![
            vm("boma-it-askari-0"),
            vm("boma-it-askari-1"),
            vm("boma-it-ghost-7")
        ]
    );
    assert_eq!(report.dirs, 2);
    assert!(rig.world.borrow().running.is_empty());
    assert!(!record.dir.exists());
    assert!(rig.runs.current().unwrap().is_none());
    assert!(rig.runs.vm_dirs().unwrap().is_empty());
}

#[test]
fn ready_answers_parse_and_truncated_ones_do_not() {
    let id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    assert_eq!(
        parse_ready(&format!("cloud-init=0\n{id}\n")),
        Some((0, id.to_owned()))
    );
    assert_eq!(parse_ready("cloud-init=0\n"), None);
    assert_eq!(parse_ready(&format!("{id}\n")), None);
}

/// A VM kept by one backend is live to that backend: another backend's `up` must neither call
/// it stale nor remove it (it used to delete the overlay, socket and record of a live VM).
#[test]
fn a_live_vm_of_another_backend_is_refused_not_removed() {
    let rig = Rig::new();
    let kept = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let libvirt = Effects {
        kind: BackendKind::Libvirt,
        ..rig.fx()
    };
    let failure = up(&libvirt, &request("boma-it-askari-2")).unwrap_err();
    let message = failure.error.to_string();
    assert!(failure.error.is_preflight(), "{message}");
    assert!(message.contains("boma-it-askari-1"), "{message}");
    assert!(
        kept.dir.join("overlay.qcow2").exists(),
        "the kept VM's files stay"
    );
    assert!(rig.world.borrow().running.contains(&kept.name));
    assert!(rig.world.borrow().destroyed.is_empty());
    assert_eq!(rig.runs.current().unwrap().unwrap().name, kept.name);
}

/// A stale run is removed by its own backend, whichever backend the new run uses.
#[test]
fn a_stale_run_is_removed_by_its_own_backend() {
    let rig = Rig::new();
    let libvirt = Effects {
        kind: BackendKind::Libvirt,
        ..rig.fx()
    };
    let stale = up(&libvirt, &request("boma-it-askari-1")).unwrap();
    rig.world.borrow_mut().running.clear();
    up(&rig.fx(), &request("boma-it-askari-2")).unwrap();
    assert!(!stale.dir.exists());
    assert_eq!(rig.world.borrow().destroyed, vec![stale.name.clone()]);
    assert_eq!(rig.world.borrow().destroyed_by, vec![BackendKind::Libvirt]);
}

/// The other direction: a live libvirt VM is not the QEMU backend's to call stale or stop.
#[test]
fn a_live_libvirt_vm_is_refused_not_removed_by_a_qemu_run() {
    let rig = Rig::new();
    let libvirt = Effects {
        kind: BackendKind::Libvirt,
        ..rig.fx()
    };
    let kept = up(&libvirt, &request("boma-it-askari-1")).unwrap();
    let failure = up(&rig.fx(), &request("boma-it-askari-2")).unwrap_err();
    let message = failure.error.to_string();
    assert!(failure.error.is_preflight(), "{message}");
    assert!(message.contains("boma-it-askari-1"), "{message}");
    assert!(rig.world.borrow().running.contains(&kept.name));
    assert!(rig.world.borrow().destroyed.is_empty());
    assert!(kept.dir.join("overlay.qcow2").exists());
}

#[test]
fn a_power_cycle_stops_the_vm_runs_between_on_its_disks_and_proves_a_new_boot() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let before = record.boot_id.clone();
    let mut seen_running = None;
    let world = Rc::clone(&rig.world);
    power_cycle(&rig.fx(), &mut record, "reboot", &mut |r| {
        seen_running = Some(world.borrow().running.contains(&r.name));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen_running, Some(false), "`between` runs on a stopped VM");
    assert_ne!(record.boot_id, before, "a new boot");
    assert!(rig.world.borrow().running.contains(&record.name));
    let commands = rig.world.borrow().commands.clone();
    assert!(commands.contains(&"sudo systemctl poweroff".to_owned()));
}

#[test]
fn a_failure_between_leaves_the_vm_stopped_and_says_why() {
    let rig = Rig::new();
    let mut record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    let err = power_cycle(&rig.fx(), &mut record, "reboot", &mut |_| {
        Err(VmError::Backend("layer store full".into()))
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "layer store full");
    assert!(!rig.world.borrow().running.contains(&record.name));
}

/// A run another live harness still drives (powered off for a moment while it stores a layer)
/// is not stale: a parallel run leaves it alone.
#[test]
fn a_stopped_vm_that_a_live_run_drives_is_not_cleared_as_stale() {
    let rig = Rig::new();
    let record = up(&rig.fx(), &request("boma-it-askari-1")).unwrap();
    rig.world.borrow_mut().running.clear();
    let name = record.name.clone();
    preflight(&rig.fx(), false, &|n| *n == name).unwrap();
    assert!(record.dir.exists(), "still there");
    preflight(&rig.fx(), false, &|_| false).unwrap();
    assert!(!record.dir.exists(), "stale once nobody drives it");
}

/// A fleet of `hosts` on one segment of the fake QEMU backend, each member booted by
/// `up_member`, in fleet order.
fn fleet(rig: &Rig, hosts: &[&str]) -> (Segment, Vec<RunRecord>) {
    let fleet_dir = rig.runs.root().join("boma-it-web-1a2b3c4d");
    let segment = Segment::for_run(BackendKind::Qemu, &fleet_dir).unwrap();
    segment_up(&rig.fx(), &segment).unwrap();
    let records = member_requests(&segment, hosts)
        .iter()
        .map(|(req, nic)| up_member(&rig.fx(), req, nic).unwrap())
        .collect();
    (segment, records)
}

#[test]
fn a_member_records_its_fleet_nic_and_a_segment_of_another_backend_is_refused() {
    let rig = Rig::new();
    let (segment, records) = fleet(&rig, &["web-a", "web-b"]);
    assert_eq!(
        rig.world.borrow().segments_created,
        std::slice::from_ref(&segment)
    );
    let saved = rig.runs.record(&records[1].name).unwrap().unwrap();
    let nic = saved
        .fleet_nic
        .clone()
        .expect("the member's record keeps its fleet NIC");
    assert_eq!(nic.member, "web-b");
    assert_eq!(nic.address.to_string(), "10.231.0.11");
    assert_eq!(nic.segment, segment);
    // A kept member starts again on its segment: the spec it boots with carries the NIC.
    assert_eq!(BootSpec::of_record(&saved).fleet_nic, Some(nic.clone()));

    let libvirt = Effects {
        kind: BackendKind::Libvirt,
        ..rig.fx()
    };
    let mut req = request("boma-it-web-c-1a2b3c4d");
    req.exclusive = false;
    let failure = up_member(&libvirt, &req, &nic).unwrap_err();
    assert!(failure.error.is_preflight(), "{}", failure.error);
    assert!(failure.record.is_none());
    assert!(!rig.runs.vm_dir(&req.name).exists(), "nothing created");
}

/// The members of `hosts` as `up_members` takes them: each request and its NIC on `segment`.
fn member_requests(segment: &Segment, hosts: &[&str]) -> Vec<(UpRequest, FleetNic)> {
    let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let nics = boma_fleet::FLEET_NETWORK.members(&names).unwrap();
    hosts
        .iter()
        .zip(&nics)
        .map(|(host, nic)| {
            let mut req = request(&format!("boma-it-{host}-1a2b3c4d"));
            req.host = (*host).to_owned();
            req.exclusive = false;
            (req, FleetNic::new(nic, segment.clone()))
        })
        .collect()
}

/// A fleet's guests boot side by side: every member is started before the first is waited for.
#[test]
fn up_members_starts_every_member_before_waiting_for_any() {
    let rig = Rig::new();
    let segment =
        Segment::for_run(BackendKind::Qemu, &rig.runs.root().join("boma-it-web-1")).unwrap();
    segment_up(&rig.fx(), &segment).unwrap();
    let records = up_members(&rig.fx(), &member_requests(&segment, &["web-a", "web-b"])).unwrap();
    let events: Vec<String> = rig
        .world
        .borrow()
        .events
        .iter()
        .filter(|e| e.starts_with("boot ") || e.starts_with("ready? "))
        .cloned()
        .collect();
    assert_eq!(
        events,
        [
            "boot boma-it-web-a-1a2b3c4d",
            "boot boma-it-web-b-1a2b3c4d",
            "ready? boma-it-web-a-1a2b3c4d",
            "ready? boma-it-web-b-1a2b3c4d",
        ]
    );
    for (record, host) in records.iter().zip(["web-a", "web-b"]) {
        assert_eq!(record.host, host);
        assert!(record.boot_id.is_some(), "{} answered", record.name);
        assert_eq!(
            rig.runs.record(&record.name).unwrap().as_ref(),
            Some(record)
        );
    }
}

/// A member that does not come up fails the fleet's `up`, handing back every member booted, so
/// the caller keeps or removes them all.
#[test]
fn up_members_hands_back_every_booted_member_when_one_fails() {
    let rig = Rig::new();
    let segment =
        Segment::for_run(BackendKind::Qemu, &rig.runs.root().join("boma-it-web-1")).unwrap();
    segment_up(&rig.fx(), &segment).unwrap();
    rig.world.borrow_mut().cloud_init_status = 1;
    let failure =
        up_members(&rig.fx(), &member_requests(&segment, &["web-a", "web-b"])).unwrap_err();
    assert!(
        matches!(failure.error, VmError::CloudInit { .. }),
        "{}",
        failure.error
    );
    let names: Vec<&str> = failure.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["boma-it-web-a-1a2b3c4d", "boma-it-web-b-1a2b3c4d"]);
    assert_eq!(rig.world.borrow().running.len(), 2);

    // A member that cannot be booted stops the launches: nothing more is started.
    let rig = Rig::new();
    segment_up(&rig.fx(), &segment).unwrap();
    rig.world.borrow_mut().boot_fails = true;
    let failure =
        up_members(&rig.fx(), &member_requests(&segment, &["web-a", "web-b"])).unwrap_err();
    assert!(failure.records.is_empty());
    assert!(rig.world.borrow().booted.is_empty());
}

#[test]
fn prune_takes_down_this_checkouts_segments_after_their_members_and_names_the_rest() {
    let rig = Rig::new();
    let (segment, records) = fleet(&rig, &["web-a", "web-b"]);
    let foreign = Segment::LibvirtNetwork {
        run: "another-checkout-1".into(),
    };
    let leftover_network = Segment::LibvirtNetwork {
        run: "web-1a2b3c4d".into(),
    };
    {
        let mut world = rig.world.borrow_mut();
        world.foreign_segments.insert(foreign.clone());
        world.foreign_segments.insert(leftover_network.clone());
    }
    let qemu = prune(&rig.fx(), BackendKind::Qemu).unwrap();
    assert_eq!(qemu.segments, std::slice::from_ref(&segment));
    assert!(qemu.foreign_segments.is_empty());
    for record in &records {
        assert!(qemu.vms.contains(&record.name));
    }
    assert_eq!(rig.world.borrow().segments_destroyed, [segment]);
    // The libvirt pass: the network named after a run directory of this checkout goes; one
    // that nothing here names stays.
    std::fs::create_dir_all(rig.runs.root().join("boma-it-web-1a2b3c4d")).unwrap();
    let libvirt = prune(&rig.fx(), BackendKind::Libvirt).unwrap();
    assert_eq!(libvirt.segments, [leftover_network]);
    assert_eq!(libvirt.foreign_segments, std::slice::from_ref(&foreign));
    assert!(rig.world.borrow().foreign_segments.contains(&foreign));
}

#[test]
fn together_at_once_freezes_every_member_then_starts_each_with_a_proven_new_boot() {
    let rig = Rig::new();
    let (_, mut records) = fleet(&rig, &["web-a", "web-b"]);
    let before: Vec<_> = records.iter().map(|r| r.boot_id.clone()).collect();
    rig.world.borrow_mut().events.clear();
    let booted = together(&rig.fx(), &mut records, &boma_fleet::Boot::AllAtOnce).unwrap();
    assert_eq!(booted.len(), 2);
    assert!(booted.iter().all(|b| b.system_state == "running"));
    let events = rig.world.borrow().events.clone();
    let (a, b) = (&records[0].name, &records[1].name);
    assert_eq!(
        events,
        [
            format!("suspend {a}"),
            format!("suspend {b}"),
            format!("reset {a}"),
            format!("resume {a}"),
            format!("reset {b}"),
            format!("resume {b}"),
            format!("settle {a} (whole): running"),
            format!("settle {b} (whole): running"),
        ]
    );
    for (record, before) in records.iter().zip(&before) {
        assert_ne!(&record.boot_id, before, "{}: a new boot", record.name);
        let saved = rig.runs.record(&record.name).unwrap().unwrap();
        assert_eq!(saved.boot_id, record.boot_id, "recorded");
    }
    assert_ne!(records[0].boot_id, records[1].boot_id);
}

/// In order: the member the others depend on last. Each is started only once the one before it
/// answers with a new boot_id and has settled (bounded); the gated ones settle again at the end.
#[test]
fn together_in_order_gates_each_member_on_the_previous_boot_and_settles_again() {
    let rig = Rig::new();
    let (_, mut records) = fleet(&rig, &["web-a", "web-b", "web-c"]);
    let (a, b, c) = (
        records[0].name.clone(),
        records[1].name.clone(),
        records[2].name.clone(),
    );
    {
        let mut world = rig.world.borrow_mut();
        world.events.clear();
        // b waits for a peer booted later: its bounded wait ends while it is starting.
        world
            .system_states
            .insert(b.clone(), vec!["starting".into(), "running".into()]);
        // c fails at boot without waiting: settled, degraded.
        world
            .system_states
            .insert(c.clone(), vec!["degraded".into()]);
    }
    let order = boma_fleet::Boot::InOrder(vec!["web-b".into(), "web-c".into(), "web-a".into()]);
    let booted = together(&rig.fx(), &mut records, &order).unwrap();
    let states: Vec<&str> = booted.iter().map(|b| b.system_state.as_str()).collect();
    assert_eq!(states, ["running", "running", "degraded"]);
    assert_eq!(
        rig.world.borrow().events,
        [
            format!("suspend {a}"),
            format!("suspend {b}"),
            format!("suspend {c}"),
            format!("reset {b}"),
            format!("resume {b}"),
            format!("settle {b} (at most): starting"),
            format!("reset {c}"),
            format!("resume {c}"),
            format!("settle {c} (at most): degraded"),
            format!("reset {a}"),
            format!("resume {a}"),
            format!("settle {a} (whole): running"),
            format!("settle {b} (whole): running"),
        ]
    );
    let bounded = format!("timeout {} ", boma_fleet::BOOT_SETTLE.as_secs());
    assert!(
        rig.world
            .borrow()
            .commands
            .iter()
            .any(|c| c.starts_with(&bounded))
    );
}

#[test]
fn the_together_plan_is_decided_from_the_boot_order() {
    use boma_fleet::Boot;
    let members = ["a", "b"];
    assert_eq!(
        plan_together(&members, &Boot::AllAtOnce).unwrap(),
        [
            TogetherStep::Freeze(vec![0, 1]),
            TogetherStep::Start(vec![0, 1]),
            TogetherStep::Await {
                members: vec![0, 1],
                settle: Settle::Whole
            },
        ]
    );
    assert_eq!(
        plan_together(&members, &Boot::InOrder(vec!["b".into(), "a".into()])).unwrap(),
        [
            TogetherStep::Freeze(vec![0, 1]),
            TogetherStep::Start(vec![1]),
            TogetherStep::Await {
                members: vec![1],
                settle: Settle::AtMost(boma_fleet::BOOT_SETTLE)
            },
            TogetherStep::Start(vec![0]),
            TogetherStep::Await {
                members: vec![0],
                settle: Settle::Whole
            },
            TogetherStep::Resettle(vec![1]),
        ]
    );
    for bad in [vec!["b"], vec!["b", "b"], vec!["b", "a", "c"]] {
        let order = Boot::InOrder(bad.iter().map(|s| (*s).to_owned()).collect());
        assert!(plan_together(&members, &order).is_err(), "{bad:?}");
    }
    assert!(cut_short("starting") && cut_short("initializing"));
    assert!(!cut_short("running") && !cut_short("degraded") && !cut_short("maintenance"));
}

/// A member whose boot after the power loss panics fails the round naming it, as a single VM's
/// reboot would; the member still frozen is started afresh, so that it can be inspected.
#[test]
fn a_member_that_panics_after_the_power_loss_fails_the_round_and_the_rest_are_started() {
    let rig = Rig::new();
    let (_, mut records) = fleet(&rig, &["web-a", "web-b"]);
    let (a, b) = (records[0].name.clone(), records[1].name.clone());
    {
        let mut world = rig.world.borrow_mut();
        world.events.clear();
        world.never_returns = true;
        world.console_after_reboot = vec![PANIC_BOOT.into()];
    }
    let order = boma_fleet::Boot::InOrder(vec!["web-b".into(), "web-a".into()]);
    let err = together(&patient(&rig), &mut records, &order).unwrap_err();
    assert!(matches!(err, VmError::BootFailed { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(b.as_str()) && message.contains("(its boot after the power loss)"),
        "{message}"
    );
    let events = rig.world.borrow().events.clone();
    assert_eq!(
        events,
        [
            format!("suspend {a}"),
            format!("suspend {b}"),
            format!("reset {b}"),
            format!("resume {b}"),
            format!("reset {a}"),
            format!("resume {a}"),
        ]
    );
    assert!(rig.world.borrow().frozen.is_empty(), "none left frozen");
}
