//! What the serial console says about a guest that never answered, read from real consoles
//! (`tests/fixtures/`): a TCG kernel Oops one second after a reboot (the `-j 1` bench run of
//! `cat-lost-route`, 2026-11-29), and catalogue mode 7's RED in emergency mode (an excerpt:
//! its kernel banner and the boot's end).

use boma_vm::run::diagnostics::{BootVerdict, boot_verdict};

const OOPS: &str = include_str!("fixtures/console-tcg-oops-after-reboot.log");
const EMERGENCY: &str = include_str!("fixtures/console-emergency-mode.log");

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
fn emergency_mode_is_named() {
    let verdict = boot_verdict(EMERGENCY).expect("the console ends in emergency mode");
    assert_eq!(verdict, BootVerdict::EmergencyMode);
    assert!(
        verdict.to_string().starts_with("it is in emergency mode"),
        "{verdict}"
    );
}

#[test]
fn only_the_last_boot_counts() {
    // The boot after the panic's banner, cut before its Oops: a boot still going, as a console
    // reads while the guest is only slow.
    let banner = OOPS.rfind("] Linux version ").expect("a banner");
    let line_start = OOPS[..banner].rfind('\n').map_or(0, |i| i + 1);
    let oops = OOPS.find("Oops: int3").expect("the Oops");
    let oops_line = OOPS[..oops].rfind('\n').map_or(0, |i| i + 1);
    let still_booting = &OOPS[line_start..oops_line];
    assert_eq!(boot_verdict(still_booting), None);

    // A panic, then a power cycle into a boot that is still going: the panic is history.
    let panicked_then_rebooted = format!("{OOPS}\n{still_booting}");
    assert_eq!(boot_verdict(&panicked_then_rebooted), None);

    // Emergency mode, then a boot that panicked: the panic is what the guest does now.
    let emergency_then_panic = format!("{EMERGENCY}\n{OOPS}");
    assert!(
        boot_verdict(&emergency_then_panic)
            .expect("a panic")
            .to_string()
            .starts_with("its kernel panicked 1.2 s into boot"),
    );
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
