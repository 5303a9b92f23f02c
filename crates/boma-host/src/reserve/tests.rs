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

fn requests(vms: &[&str]) -> Vec<ReservationRequest> {
    vms.iter().map(|vm| request(vm)).collect()
}

#[test]
fn a_set_is_charged_by_the_one_memory_rule_with_one_margin() {
    let set = requests(&["boma-it-a-1", "boma-it-b-1"]);
    let exact = 2 * CHARGE + MARGIN_MIB;
    assert_eq!(decide_all(&[], &set, &budget(exact, 4)), Ok(()));
    let refusal = decide_all(&[], &set, &budget(exact - 1, 4)).unwrap_err();
    // The second member is the one that does not fit, counted beside the first.
    assert_eq!(refusal.vm, "boma-it-b-1");
    assert_eq!(refusal.with, ["boma-it-a-1"]);
    assert_eq!(
        refusal.reason,
        Reason::Memory {
            need: MemoryNeed {
                still_to_claim_mib: CHARGE,
                charge_mib: CHARGE,
            },
            available_mib: exact - 1,
        }
    );
    // Beside a live VM that holds part of its charge already.
    let others = [live("boma-it-x-1", 40, 1000)];
    let beside = (CHARGE - 1000) + 2 * CHARGE + MARGIN_MIB;
    assert_eq!(decide_all(&others, &set, &budget(beside, 4)), Ok(()));
    assert!(decide_all(&others, &set, &budget(beside - 1, 4)).is_err());
}

#[test]
fn a_set_counts_towards_the_vm_limit_and_names_a_vm_once() {
    let set = requests(&["boma-it-a-1", "boma-it-b-1", "boma-it-c-1"]);
    let others = [live("boma-it-x-1", 40, 0)];
    let refusal = decide_all(&others, &set, &budget(1 << 40, 3)).unwrap_err();
    assert_eq!(refusal.vm, "boma-it-c-1");
    assert_eq!(refusal.reason, Reason::TooMany { max_vms: 3 });
    assert!(
        refusal
            .to_string()
            .contains("1 test VM(s) are reserved, 2 more come before it in the request"),
        "{refusal}"
    );
    assert_eq!(decide_all(&others, &set, &budget(1 << 40, 4)), Ok(()));

    let twice = requests(&["boma-it-a-1", "boma-it-a-1"]);
    let refusal = decide_all(&[], &twice, &budget(1 << 40, 4)).unwrap_err();
    assert_eq!(refusal.reason, Reason::AlreadyReserved);
    assert!(
        refusal.to_string().contains("the request names it twice"),
        "{refusal}"
    );
    let taken = decide_all(&others, &requests(&["boma-it-x-1"]), &budget(1 << 40, 4));
    assert!(
        taken
            .unwrap_err()
            .to_string()
            .contains("a VM of that name is already reserved")
    );
}

#[test]
fn a_set_that_does_not_fit_says_none_of_it_is_reserved() {
    let set = requests(&["boma-it-a-1", "boma-it-b-1"]);
    let text = decide_all(&[], &set, &budget(CHARGE + MARGIN_MIB, 4))
        .unwrap_err()
        .to_string();
    assert_eq!(
        text,
        "cannot reserve boma-it-b-1 (4352 MiB with QEMU's overhead) together with boma-it-a-1 (all or none: none is reserved): it needs 9728 MiB (4352 MiB the reserved and requested VMs may still claim, its own 4352 MiB and a 1024 MiB margin) and 5376 MiB is available; no other test VM is reserved: lower the members' mem_mib"
    );
}

/// The store against the real file system and `flock`: a set is written whole or not at all.
mod store {
    use std::sync::{Arc, Barrier};

    use camino::Utf8PathBuf;

    use super::*;

    fn cache() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        (dir, path)
    }

    fn files_in(store: &Reservations) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// A budget that fits exactly `vms` VMs of [`request`]'s size.
    fn fits(vms: u64) -> Budget {
        budget(vms * CHARGE + MARGIN_MIB, 64)
    }

    #[test]
    fn a_set_is_written_whole_released_together_and_refused_whole() {
        let (_tmp, cache) = cache();
        let store = Reservations::open(&cache).unwrap();
        let held = store.reserve(&request("boma-it-x-1"), &fits(3)).unwrap();
        // Two more fit beside it, three do not: nothing of the three is written.
        let three = requests(&["boma-it-a-1", "boma-it-b-1", "boma-it-c-1"]);
        let err = store.reserve_all(&three, &fits(3)).unwrap_err();
        assert!(matches!(err, ReserveError::Refused(_)), "{err}");
        assert_eq!(files_in(&store), ["boma-it-x-1.json"]);

        let set = store.reserve_all(&three[..2], &fits(3)).unwrap();
        let names: Vec<&str> = set.iter().map(|r| r.reservation().vm.as_str()).collect();
        assert_eq!(names, ["boma-it-a-1", "boma-it-b-1"]);
        assert_eq!(
            files_in(&store),
            ["boma-it-a-1.json", "boma-it-b-1.json", "boma-it-x-1.json"]
        );
        assert!(
            set.iter()
                .all(|r| r.reservation().holder == held.reservation().holder)
        );
        drop(set);
        assert_eq!(files_in(&store), ["boma-it-x-1.json"]);
    }

    #[test]
    fn a_set_whose_last_file_cannot_be_written_leaves_none() {
        let (_tmp, cache) = cache();
        let store = Reservations::open(&cache).unwrap();
        // A directory where the second reservation's file must go: its rename fails.
        std::fs::create_dir(store.dir().join("boma-it-b-1.json")).unwrap();
        std::fs::write(store.dir().join("boma-it-b-1.json/keep"), "").unwrap();
        let err = store
            .reserve_all(&requests(&["boma-it-a-1", "boma-it-b-1"]), &fits(2))
            .unwrap_err();
        assert!(matches!(err, ReserveError::Io { .. }), "{err}");
        assert!(
            !store.dir().join("boma-it-a-1.json").exists(),
            "the first member's reservation went with the failed set"
        );
    }

    /// Two fleets of two reserve at once where three VMs fit, while a third party reads the store
    /// (under the lock, as every reserver does): one fleet gets both of its VMs, the other none,
    /// and no reader ever sees a fleet with one VM reserved.
    #[test]
    fn two_sets_reserving_at_once_never_leave_a_partial_set() {
        const ROUNDS: usize = 20;
        let whole = |vms: &[String]| {
            ["a", "b"].iter().all(|fleet| {
                let of = vms
                    .iter()
                    .filter(|vm| vm.starts_with(&format!("boma-it-{fleet}-")))
                    .count();
                of == 0 || of == 2
            })
        };
        for round in 0..ROUNDS {
            let (_tmp, cache) = cache();
            let barrier = Arc::new(Barrier::new(3));
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let reader = {
                let (cache, barrier, done) =
                    (cache.clone(), Arc::clone(&barrier), Arc::clone(&done));
                std::thread::spawn(move || {
                    let store = Reservations::open(&cache).unwrap();
                    barrier.wait();
                    let mut seen = Vec::new();
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let vms: Vec<String> =
                            store.live().unwrap().into_iter().map(|r| r.vm).collect();
                        if !whole(&vms) {
                            seen.push(vms);
                        }
                    }
                    seen
                })
            };
            let attempts: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|fleet| {
                    let cache = cache.clone();
                    let barrier = Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        let store = Reservations::open(&cache).unwrap();
                        let set = requests(&[
                            &format!("boma-it-{fleet}-1"),
                            &format!("boma-it-{fleet}-2"),
                        ]);
                        barrier.wait();
                        store.reserve_all(&set, &fits(3))
                    })
                })
                .collect();
            let outcomes: Vec<_> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let partial = reader.join().unwrap();
            assert!(
                partial.is_empty(),
                "round {round}: a reader saw {partial:?}"
            );
            let store = Reservations::open(&cache).unwrap();
            let won: Vec<usize> = (0..2).filter(|i| outcomes[*i].is_ok()).collect();
            assert_eq!(won.len(), 1, "round {round}: {outcomes:?}");
            let winner = ["a", "b"][won[0]];
            assert_eq!(
                files_in(&store),
                [
                    format!("boma-it-{winner}-1.json"),
                    format!("boma-it-{winner}-2.json")
                ],
                "round {round}"
            );
            let loser = &outcomes[1 - won[0]];
            assert!(
                matches!(loser, Err(ReserveError::Refused(r)) if r.reason != Reason::AlreadyReserved),
                "round {round}: {loser:?}"
            );
            drop(outcomes);
            assert!(files_in(&store).is_empty(), "released together");
        }
    }
}
