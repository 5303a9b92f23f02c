//! The reservation store against the real file system, `flock` and `/proc`: what it writes,
//! what it drops as stale, and that concurrent reservers — threads, and separate processes
//! like two checkouts — never over-commit the budget.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use boma_exec::CmdExt;
use boma_host::judge::{MARGIN_MIB, TCG_OVERHEAD_MIB};
use boma_host::procs::{self, ProcessIdentity};
use boma_host::reserve::{
    Budget, Reason, Reservation, ReservationRequest, Reservations, ReserveError,
};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

const MEM_MIB: u64 = 3072;
const CHARGE: u64 = MEM_MIB + TCG_OVERHEAD_MIB;

fn cache() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

fn request(vm: &str) -> ReservationRequest {
    ReservationRequest {
        vm: vm.into(),
        mem_mib: MEM_MIB,
        vcpus: 2,
        checkout: "/work/checkout-b".into(),
        what: "cargo xtask it askari".into(),
    }
}

/// A budget that fits exactly `vms` requests.
fn fits(vms: u64) -> Budget {
    Budget {
        available_mib: vms * CHARGE + MARGIN_MIB,
        max_vms: 64,
    }
}

fn files_in(dir: &Utf8Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn me() -> ProcessIdentity {
    procs::this_process().unwrap().identity()
}

#[test]
fn a_reservation_is_recorded_and_released_when_its_guard_drops() {
    let (_tmp, cache) = cache();
    let store = Reservations::open(&cache).unwrap();
    assert_eq!(store.dir(), cache.join("reservations"));
    let guard = store
        .reserve(&request("boma-it-askari-1"), &fits(1))
        .unwrap();
    let text = std::fs::read_to_string(store.dir().join("boma-it-askari-1.json")).unwrap();
    let on_disk: Reservation = serde_json::from_str(&text).unwrap();
    assert_eq!(&on_disk, guard.reservation());
    assert_eq!(on_disk.holder, me());
    assert_eq!(on_disk.boot_id, procs::boot_id().unwrap());
    assert_eq!(
        (on_disk.mem_mib, on_disk.overhead_mib, on_disk.vcpus),
        (MEM_MIB, TCG_OVERHEAD_MIB, 2)
    );
    assert_eq!(on_disk.checkout, "/work/checkout-b");
    assert_eq!(on_disk.what, "cargo xtask it askari");
    assert_eq!(store.live().unwrap(), vec![on_disk]);
    drop(guard);
    assert_eq!(files_in(store.dir()), Vec::<String>::new());

    let guard = store
        .reserve(&request("boma-it-askari-2"), &fits(1))
        .unwrap();
    guard.release().unwrap();
    assert!(store.live().unwrap().is_empty());
}

#[test]
fn a_live_reservation_refuses_the_next_and_is_named() {
    let (_tmp, cache) = cache();
    let store = Reservations::open(&cache).unwrap();
    let mut first = request("boma-it-askari-1");
    first.checkout = "/work/checkout-a".into();
    let _held = store.reserve(&first, &fits(2)).unwrap();
    let err = store
        .reserve(&request("boma-it-askari-2"), &fits(1))
        .unwrap_err();
    let ReserveError::Refused(refusal) = &err else {
        panic!("{err}");
    };
    assert!(matches!(refusal.reason, Reason::Memory { .. }));
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "boma-it-askari-1 (3072 MiB): `cargo xtask it askari` from /work/checkout-a, harness pid {}",
            std::process::id()
        )),
        "{text}"
    );
    assert!(
        text.contains("`cargo xtask down` in /work/checkout-a, or `cargo xtask prune` there"),
        "{text}"
    );
    assert_eq!(files_in(store.dir()), ["boma-it-askari-1.json"]);
}

#[test]
fn stale_reservations_are_dropped_before_deciding() {
    let (_tmp, cache) = cache();
    let store = Reservations::open(&cache).unwrap();
    let this_boot = procs::boot_id().unwrap();
    let stale = |vm: &str, holder: ProcessIdentity, boot_id: &str| Reservation {
        vm: vm.into(),
        holder,
        vm_process: None,
        boot_id: boot_id.into(),
        mem_mib: MEM_MIB,
        overhead_mib: TCG_OVERHEAD_MIB,
        vcpus: 2,
        checkout: "/work/crashed".into(),
        what: "cargo xtask it askari".into(),
        since_unix: 1_750_000_000,
    };
    let me = me();
    let records = [
        // The harness that held it is gone.
        stale(
            "boma-it-dead",
            ProcessIdentity {
                pid: u32::MAX - 1,
                start_ticks: 1,
            },
            &this_boot,
        ),
        // Its pid now belongs to another process (this one, started at another time).
        stale(
            "boma-it-reused",
            ProcessIdentity {
                start_ticks: me.start_ticks + 1,
                ..me
            },
            &this_boot,
        ),
        // Taken before the host last booted.
        stale(
            "boma-it-old-boot",
            me,
            "00000000-0000-0000-0000-000000000000",
        ),
    ];
    for r in &records {
        std::fs::write(
            store.dir().join(format!("{}.json", r.vm)),
            serde_json::to_string(r).unwrap(),
        )
        .unwrap();
    }
    // Counted, the three would leave no room; dropped, one VM fits.
    let guard = store.reserve(&request("boma-it-new"), &fits(1)).unwrap();
    let mut dropped: Vec<&str> = guard
        .dropped_stale()
        .iter()
        .map(|r| r.vm.as_str())
        .collect();
    dropped.sort_unstable();
    assert_eq!(
        dropped,
        ["boma-it-dead", "boma-it-old-boot", "boma-it-reused"]
    );
    assert_eq!(files_in(store.dir()), ["boma-it-new.json"]);
}

#[test]
fn a_file_that_is_not_a_reservation_is_refused_not_ignored() {
    let (_tmp, cache) = cache();
    let store = Reservations::open(&cache).unwrap();
    std::fs::write(store.dir().join("boma-it-x.json"), "{ not json").unwrap();
    let err = store.reserve(&request("boma-it-y"), &fits(1)).unwrap_err();
    assert!(matches!(err, ReserveError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("boma-it-x.json"), "{err}");
    let err = store.reserve(&request("../escape"), &fits(1)).unwrap_err();
    assert!(matches!(err, ReserveError::BadName { .. }), "{err}");
}

/// A process standing in for a VM's QEMU: detached, so it outlives the command that started
/// it, as `qemu-system-x86_64 -daemonize` does.
fn detached_sleep() -> u32 {
    let sh = Shell::new().unwrap();
    let script = "sleep 60 >/dev/null 2>&1 </dev/null & echo $!";
    cmd!(sh, "sh -c {script}")
        .exec()
        .read()
        .unwrap()
        .parse()
        .unwrap()
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn a_kept_reservation_lives_as_long_as_the_vm_process() {
    let (_tmp, cache) = cache();
    let store = Reservations::open(&cache).unwrap();
    let vm_pid = detached_sleep();
    let _vm = KillOnDrop(vm_pid);
    let vm = procs::info(vm_pid).unwrap().identity();

    let guard = store.reserve(&request("boma-it-up"), &fits(1)).unwrap();
    guard.keep_for_vm(vm_pid).unwrap();
    let path = store.dir().join("boma-it-up.json");
    let mut kept: Reservation =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(kept.vm_process, Some(vm));

    // `cargo xtask up` has exited: its holder is gone, the VM runs on.
    kept.holder = ProcessIdentity {
        pid: u32::MAX - 1,
        start_ticks: 1,
    };
    std::fs::write(&path, serde_json::to_string(&kept).unwrap()).unwrap();
    assert_eq!(store.live().unwrap(), vec![kept.clone()]);
    assert!(store.reserve(&request("boma-it-next"), &fits(1)).is_err());

    // The VM stops (even as an unreaped zombie): the reservation is stale.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(vm_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while vm.is_running(&|pid| procs::info(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let guard = store.reserve(&request("boma-it-next"), &fits(1)).unwrap();
    assert_eq!(guard.dropped_stale(), [kept]);
}

#[test]
fn a_reservation_cannot_be_handed_to_a_process_that_does_not_run() {
    let (_tmp, cache) = cache();
    let store = Reservations::open(&cache).unwrap();
    let guard = store.reserve(&request("boma-it-up"), &fits(1)).unwrap();
    let err = guard.keep_for_vm(u32::MAX - 1).unwrap_err();
    assert!(matches!(err, ReserveError::NotRunning { .. }), "{err}");
    assert!(store.live().unwrap().is_empty(), "released with the guard");
    assert!(!store.release("boma-it-up").unwrap());
}

#[test]
fn threads_reserving_at_once_never_exceed_the_budget() {
    const THREADS: usize = 12;
    for (fit, budget) in [
        (3, fits(3)),
        (
            2,
            Budget {
                max_vms: 2,
                ..fits(100)
            },
        ),
    ] {
        for round in 0..5 {
            let (_tmp, cache) = cache();
            let barrier = Arc::new(Barrier::new(THREADS));
            let attempts: Vec<_> = (0..THREADS)
                .map(|i| {
                    let cache = cache.clone();
                    let barrier = Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        let store = Reservations::open(&cache).unwrap();
                        barrier.wait();
                        store.reserve(&request(&format!("boma-it-race-{i}")), &budget)
                    })
                })
                .collect();
            // Every guard is held until all threads have tried.
            let outcomes: Vec<_> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
            let reserved = outcomes.iter().filter(|o| o.is_ok()).count();
            assert_eq!(reserved, fit, "round {round} with {budget:?}");
            for outcome in &outcomes {
                if let Err(e) = outcome {
                    assert!(matches!(e, ReserveError::Refused(_)), "{e}");
                }
            }
            let store = Reservations::open(&cache).unwrap();
            assert_eq!(files_in(store.dir()).len(), fit);
            drop(outcomes);
            assert!(files_in(store.dir()).is_empty());
        }
    }
}

const CHILD_ENV: &str = "BOMA_HOST_TEST_RESERVER";

#[test]
fn processes_reserving_at_once_never_exceed_the_budget() {
    const CHILDREN: usize = 6;
    const FIT: u64 = 2;
    let (_tmp, cache) = cache();
    add_ballast(&cache);
    let exe = std::env::current_exe().unwrap();
    // `--exact` matches the test's module path too (`reserve::reserver_child`).
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let child_test = format!("{module}::reserver_child");
    let runs: Vec<_> = (0..CHILDREN)
        .map(|i| {
            // This test binary itself, re-run as a child: a command line, not a tool, so it is
            // built by hand and run through boma-exec all the same.
            #[allow(clippy::disallowed_methods)]
            let mut command = std::process::Command::new(&exe);
            command
                .args(["--exact", &child_test, "--ignored", "--nocapture"])
                .env(CHILD_ENV, format!("{cache}|{i}|{CHILDREN}|{FIT}"));
            std::thread::spawn(move || command.exec().timeout(Duration::from_secs(120)).read())
        })
        .collect();
    // Start them together once all are ready.
    wait_for_files(cache.as_std_path(), "ready-", CHILDREN);
    std::fs::write(cache.join("go"), "").unwrap();
    let outputs: Vec<String> = runs
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    let reserved = outputs
        .iter()
        .filter(|o| o.contains("outcome: reserved"))
        .count();
    let refused = outputs
        .iter()
        .filter(|o| o.contains("outcome: refused"))
        .count();
    assert_eq!(
        (reserved, refused),
        (FIT as usize, CHILDREN - FIT as usize),
        "{outputs:#?}"
    );
}

/// One reserver process of `processes_reserving_at_once_never_exceed_the_budget`: reserves
/// once everyone is ready, says how it went, and holds its reservation until every process
/// has tried. Does nothing unless that test started it.
#[test]
#[ignore = "a helper process, started by processes_reserving_at_once_never_exceed_the_budget"]
fn reserver_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [cache, id, children, fit]: [&str; 4] = spec
        .split('|')
        .collect::<Vec<_>>()
        .try_into()
        .expect("cache|id|children|fit");
    let cache = Utf8Path::new(cache);
    let children: usize = children.parse().unwrap();
    let fit: u64 = fit.parse().unwrap();
    let store = Reservations::open(cache).unwrap();
    std::fs::write(cache.join(format!("ready-{id}")), "").unwrap();
    wait_for_files(cache.as_std_path(), "go", 1);
    let budget = Budget {
        max_vms: usize::MAX,
        ..fits(fit)
    };
    let outcome = store.reserve(&request(&format!("boma-it-proc-{id}")), &budget);
    // The parent test reads the child's verdict from its stdout.
    #[allow(clippy::print_stdout)]
    match &outcome {
        Ok(_) => println!("outcome: reserved"),
        Err(ReserveError::Refused(_)) => println!("outcome: refused"),
        Err(e) => panic!("{e}"),
    }
    std::fs::write(cache.join(format!("tried-{id}")), "").unwrap();
    wait_for_files(cache.as_std_path(), "tried-", children);
    drop(outcome);
}

/// Live reservations that claim no memory, held by this test process: every reserver must
/// read them all, which holds a reserver in the critical section for milliseconds, so that
/// processes started together overlap there (without the lock, this test over-commits).
fn add_ballast(cache: &Utf8Path) {
    let store = Reservations::open(cache).unwrap();
    let boot_id = procs::boot_id().unwrap();
    for i in 0..BALLAST {
        let ballast = Reservation {
            vm: format!("boma-it-ballast-{i}"),
            holder: me(),
            vm_process: None,
            boot_id: boot_id.clone(),
            mem_mib: 0,
            overhead_mib: 0,
            vcpus: 0,
            checkout: "/work/ballast".into(),
            what: "nothing".into(),
            since_unix: 0,
        };
        std::fs::write(
            store.dir().join(format!("{}.json", ballast.vm)),
            serde_json::to_string(&ballast).unwrap(),
        )
        .unwrap();
    }
}

const BALLAST: usize = 400;

fn wait_for_files(dir: &Path, prefix: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(prefix))
            })
            .count();
        if found >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {count} {prefix}* files"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
