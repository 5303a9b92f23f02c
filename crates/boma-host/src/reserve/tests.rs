//! The reservation policy (`decide`, `Reservation::is_live`) on plain values.

use std::collections::BTreeMap;

use super::*;
use crate::judge::TCG_OVERHEAD_MIB;

const BOOT: &str = "b0a7-this-boot";
/// A guest of 3072 MiB under TCG.
const CHARGE: u64 = 3072 + TCG_OVERHEAD_MIB;

fn request(vm: &str) -> ReservationRequest {
    ReservationRequest {
        vm: vm.into(),
        mem_mib: 3072,
        vcpus: 2,
        checkout: "/work/b".into(),
        what: "cargo xtask it askari".into(),
    }
}

fn reservation(vm: &str, pid: u32) -> Reservation {
    Reservation {
        vm: vm.into(),
        holder: ProcessIdentity {
            pid,
            start_ticks: u64::from(pid) * 10,
        },
        vm_process: None,
        boot_id: BOOT.into(),
        mem_mib: 3072,
        overhead_mib: TCG_OVERHEAD_MIB,
        vcpus: 2,
        checkout: "/work/a".into(),
        what: "cargo xtask it askari".into(),
        since_unix: 1_750_000_000,
    }
}

fn live(vm: &str, pid: u32, resident_mib: u64) -> Live {
    Live {
        reservation: reservation(vm, pid),
        resident_mib,
    }
}

fn budget(available_mib: u64, max_vms: usize) -> Budget {
    Budget {
        available_mib,
        max_vms,
    }
}

#[test]
fn fits_exactly_and_refuses_one_mib_short() {
    let exact = CHARGE + MARGIN_MIB;
    assert_eq!(
        decide(&[], &request("boma-it-b"), &budget(exact, 4)),
        Ok(())
    );
    let refusal = decide(&[], &request("boma-it-b"), &budget(exact - 1, 4)).unwrap_err();
    assert_eq!(
        refusal.reason,
        Reason::Memory {
            need: MemoryNeed {
                still_to_claim_mib: 0,
                charge_mib: CHARGE,
            },
            available_mib: exact - 1,
        }
    );
}

#[test]
fn a_reserved_vm_that_has_not_booted_counts_whole() {
    let others = [live("boma-it-a", 40, 0)];
    let two = 2 * CHARGE + MARGIN_MIB;
    assert_eq!(
        decide(&others, &request("boma-it-b"), &budget(two, 4)),
        Ok(())
    );
    assert!(decide(&others, &request("boma-it-b"), &budget(two - 1, 4)).is_err());
}

#[test]
fn what_a_running_vm_holds_is_not_counted_twice() {
    // MemAvailable already lacks the 2000 MiB the first VM's QEMU holds.
    let others = [live("boma-it-a", 40, 2000)];
    let need = (CHARGE - 2000) + CHARGE + MARGIN_MIB;
    assert_eq!(
        decide(&others, &request("boma-it-b"), &budget(need, 4)),
        Ok(())
    );
    let refusal = decide(&others, &request("boma-it-b"), &budget(need - 1, 4)).unwrap_err();
    assert!(matches!(
        refusal.reason,
        Reason::Memory { need, .. } if need.still_to_claim_mib == CHARGE - 2000
    ));
    // A VM holding more than its charge has nothing left to claim.
    assert_eq!(live("boma-it-a", 40, CHARGE + 500).still_to_claim_mib(), 0);
}

#[test]
fn the_vm_count_limit_holds_whatever_the_memory() {
    let others = [live("boma-it-a", 40, 0)];
    let refusal = decide(&others, &request("boma-it-b"), &budget(1 << 40, 1)).unwrap_err();
    assert_eq!(refusal.reason, Reason::TooMany { max_vms: 1 });
}

#[test]
fn the_same_vm_cannot_be_reserved_twice() {
    let others = [live("boma-it-a", 40, 0)];
    let refusal = decide(&others, &request("boma-it-a"), &budget(1 << 40, 4)).unwrap_err();
    assert_eq!(refusal.reason, Reason::AlreadyReserved);
}

#[test]
fn a_refusal_names_every_live_reservation_and_how_to_stop_it() {
    let mut booted = live("boma-it-askari-1a2b3c4d", 4242, 1500);
    booted.reservation.vm_process = Some(ProcessIdentity {
        pid: 4300,
        start_ticks: 43_000,
    });
    let mut other = live("boma-it-offsite-9f8e7d6c", 5151, 0);
    other.reservation.checkout = "/home/ops/boma".into();
    other.reservation.what = "cargo xtask up offsite".into();
    let refusal = decide(
        &[booted, other],
        &request("boma-it-askari-0badf00d"),
        &budget(9000, 4),
    )
    .unwrap_err();
    let text = refusal.to_string();
    assert_eq!(
        text.lines().count(),
        3,
        "one line of reason, one per reservation"
    );
    assert_eq!(
        text,
        "cannot reserve boma-it-askari-0badf00d (4352 MiB with QEMU's overhead): it needs 12580 MiB (7204 MiB the reserved VMs may still claim, its own 4352 MiB and a 1024 MiB margin) and 9000 MiB is available; reserved now:
  boma-it-askari-1a2b3c4d (3072 MiB): `cargo xtask it askari` from /work/a, harness pid 4242, QEMU pid 4300 — stop it with `cargo xtask down` in /work/a, or `cargo xtask prune` there
  boma-it-offsite-9f8e7d6c (3072 MiB): `cargo xtask up offsite` from /home/ops/boma, harness pid 5151 — stop it with `cargo xtask down` in /home/ops/boma, or `cargo xtask prune` there"
    );
}

#[test]
fn a_lone_vm_too_big_for_the_machine_says_to_shrink_it() {
    let text = decide(&[], &request("boma-it-b"), &budget(2048, 4))
        .unwrap_err()
        .to_string();
    assert!(text.ends_with("lower mem_mib in the profile"), "{text}");
}

fn procs_table(entries: &[(u32, u64, char)]) -> BTreeMap<u32, ProcInfo> {
    entries
        .iter()
        .map(|&(pid, start_ticks, state)| {
            (
                pid,
                ProcInfo {
                    pid,
                    ppid: 1,
                    pgid: pid,
                    state,
                    start_ticks,
                    uid: 1000,
                    comm: "qemu-system-x86".into(),
                    args: Vec::new(),
                },
            )
        })
        .collect()
}

#[test]
fn live_while_its_holder_or_its_vm_runs_under_this_boot() {
    let mut r = reservation("boma-it-a", 40);
    r.vm_process = Some(ProcessIdentity {
        pid: 77,
        start_ticks: 770,
    });
    let check = |r: &Reservation, table: &BTreeMap<u32, ProcInfo>| {
        r.is_live(BOOT, &|pid| table.get(&pid).cloned())
    };
    // The harness is running.
    assert!(check(&r, &procs_table(&[(40, 400, 'S')])));
    // The harness exited (`cargo xtask up`), the VM runs on.
    assert!(check(&r, &procs_table(&[(77, 770, 'S')])));
    // Both gone; or both pids reused; or the VM a zombie.
    assert!(!check(&r, &procs_table(&[])));
    assert!(!check(&r, &procs_table(&[(40, 401, 'S'), (77, 771, 'S')])));
    assert!(!check(&r, &procs_table(&[(77, 770, 'Z')])));
    // Recorded under an earlier boot: pids and start times mean nothing now.
    let mut old = r.clone();
    old.boot_id = "an-earlier-boot".into();
    assert!(!check(
        &old,
        &procs_table(&[(40, 400, 'S'), (77, 770, 'S')])
    ));
}
