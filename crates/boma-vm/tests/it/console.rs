//! What the serial console says about a guest that failed a boot, read from real consoles
//! (`tests/fixtures/`): a TCG kernel Oops one second after a reboot (the `-j 1` bench run of
//! `cat-lost-route`, 2026-11-29), another five seconds into a first boot (the quick start's
//! `it askari` on CI, 2026-11-29, whose wait ran out at 420 s), and catalogue mode 7's RED in
//! emergency mode (an excerpt: its kernel banner and the boot's end); and consoles of several
//! boots built from them (a guest that restarts itself after a panic).

use boma_vm::run::diagnostics::{BootVerdict, boot_verdict};

const OOPS: &str = include_str!("../fixtures/console-tcg-oops-after-reboot.log");
const EMERGENCY: &str = include_str!("../fixtures/console-emergency-mode.log");
const OOPS_FIRST_BOOT: &str = include_str!("../fixtures/console-tcg-oops-first-boot.log");

#[test]
fn a_panic_in_the_last_boot_is_named_with_its_time_words_and_first_sign() {
    let verdict = boot_verdict(OOPS).expect("the console ends in a panic");
    assert!(matches!(verdict, BootVerdict::KernelPanic { .. }));
    assert_eq!(
        verdict.to_string(),
        "its kernel panicked 1.2 s into boot: Fatal exception in interrupt \
         (first sign: Oops: int3: 0000 [#1] PREEMPT SMP NOPTI, in enqueue_timer+0xa5/0x100)"
    );
}

#[test]
fn both_tcg_oopses_seen_are_the_emulators_fault() {
    let after_reboot = boot_verdict(OOPS).expect("a panic");
    assert!(after_reboot.is_emulator_fault(), "{after_reboot}");
    let first_boot = boot_verdict(OOPS_FIRST_BOOT).expect("a panic");
    assert!(first_boot.is_emulator_fault(), "{first_boot}");
    assert_eq!(
        first_boot.to_string(),
        "its kernel panicked 5.0 s into boot: Fatal exception in interrupt \
         (first sign: Oops: int3: 0000 [#1] PREEMPT SMP NOPTI, in sched_clock_cpu+0x9/0x1d0)"
    );
}

#[test]
fn a_panic_of_the_guests_own_is_not_the_emulators() {
    let root_fs = "[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\n\
         [    2.500000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n";
    let verdict = boot_verdict(root_fs).expect("a panic");
    assert!(!verdict.is_emulator_fault(), "{verdict}");
    assert!(!BootVerdict::EmergencyMode.is_emulator_fault());
    // The same int3 trap, but once init ran: the guest had started, its disk may have changed.
    let oops = OOPS_FIRST_BOOT
        .find("[    4.971062] Oops: int3")
        .expect("the Oops");
    let in_init = format!(
        "{}[    4.900000] Run /init as init process\n{}",
        &OOPS_FIRST_BOOT[..oops],
        &OOPS_FIRST_BOOT[oops..]
    );
    let verdict = boot_verdict(&in_init).expect("a panic");
    assert!(!verdict.is_emulator_fault(), "{verdict}");
}

#[test]
fn emergency_mode_is_named() {
    let verdict = boot_verdict(EMERGENCY).expect("the console ends in emergency mode");
    assert_eq!(verdict, BootVerdict::EmergencyMode);
    assert!(
        verdict.to_string().starts_with("it is in emergency mode"),
        "{verdict}"
    );
}

/// The boot after the panic's banner in the after-reboot console, cut before its Oops: a boot
/// still going, as a console reads while the guest is only slow.
fn still_booting() -> &'static str {
    let banner = OOPS.rfind("] Linux version ").expect("a banner");
    let line_start = OOPS[..banner].rfind('\n').map_or(0, |i| i + 1);
    let oops = OOPS.find("Oops: int3").expect("the Oops");
    let oops_line = OOPS[..oops].rfind('\n').map_or(0, |i| i + 1);
    &OOPS[line_start..oops_line]
}

/// The first-boot console's boot with init started before its Oops: a panic of the guest's
/// own, not the emulator's.
fn own_panic_boot() -> String {
    let oops = OOPS_FIRST_BOOT
        .find("[    4.971062] Oops: int3")
        .expect("the Oops");
    format!(
        "{}[    4.900000] Run /init as init process\n{}",
        &OOPS_FIRST_BOOT[..oops],
        &OOPS_FIRST_BOOT[oops..]
    )
}

/// What the kernel prints before it restarts a panicked guest by itself (`kernel.panic=10`).
const RESTARTING: &str = "[    7.830000] Rebooting in 10 seconds..\n";

#[test]
fn a_boot_still_going_shows_nothing_final() {
    assert_eq!(boot_verdict(still_booting()), None);
}

/// `kernel.panic=N`: the guest panics, restarts itself, and the next boot comes up. Judged by
/// its last boot only, the console said nothing; every boot since the reboot was asked counts.
#[test]
fn a_panic_the_guest_restarted_past_is_the_verdict() {
    let console = format!("{}{RESTARTING}{}", own_panic_boot(), still_booting());
    let verdict = boot_verdict(&console).expect("the panic of the first boot");
    assert!(!verdict.is_emulator_fault(), "{verdict}");
    assert!(
        matches!(
            verdict,
            BootVerdict::KernelPanic {
                later_boots: 1,
                after_init: true,
                ..
            }
        ),
        "{verdict:?}"
    );
    assert_eq!(
        verdict.to_string(),
        "its kernel panicked 5.0 s into boot: Fatal exception in interrupt \
         (first sign: Oops: int3: 0000 [#1] PREEMPT SMP NOPTI, in sched_clock_cpu+0x9/0x1d0); \
         the console shows 1 boot(s) after it (the guest restarted itself): a panic in any boot \
         since the reboot was asked is the verdict, even when a later boot answers"
    );
    // The same with the emulator's fault: still that fault (which a reset may undo).
    let console = format!("{OOPS_FIRST_BOOT}{RESTARTING}{}", still_booting());
    let verdict = boot_verdict(&console).expect("the emulator's fault");
    assert!(verdict.is_emulator_fault(), "{verdict}");
}

#[test]
fn the_first_failed_boot_is_the_verdict() {
    // A panic, then a boot still going.
    let panicked_then_rebooted = format!("{OOPS}\n{}", still_booting());
    assert!(
        boot_verdict(&panicked_then_rebooted)
            .expect("a panic")
            .to_string()
            .starts_with("its kernel panicked 1.2 s into boot"),
    );
    // Emergency mode, then a boot that panicked: emergency mode came first.
    let emergency_then_panic = format!("{EMERGENCY}\n{OOPS}");
    assert_eq!(
        boot_verdict(&emergency_then_panic),
        Some(BootVerdict::EmergencyMode)
    );
}

/// What comes before the first banner is the end of the boot a reboot stopped: a panic there
/// (the kernel going down) is judged too, and as past its init.
#[test]
fn the_end_of_the_stopped_boot_counts_past_its_init() {
    let int3_at_shutdown = "[  164.103370] systemd-shutdown[1]: Rebooting.\n\
         [  164.110000] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n\
         [  164.120000] Kernel panic - not syncing: Fatal exception in interrupt\n";
    let verdict = boot_verdict(int3_at_shutdown).expect("a panic");
    assert!(!verdict.is_emulator_fault(), "{verdict}");
}

#[test]
fn a_console_without_a_banner_is_read_whole() {
    let oops = OOPS.find("Oops: int3").expect("the Oops");
    let from_the_oops = &OOPS[oops - "[    1.242806] ".len()..];
    assert!(
        boot_verdict(from_the_oops)
            .expect("a panic")
            .to_string()
            .starts_with("its kernel panicked 1.2 s into boot: Fatal exception in interrupt"),
    );
    assert_eq!(boot_verdict(""), None);
}
