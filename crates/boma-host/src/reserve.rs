//! Machine-wide reservations of test VMs: the race-free form of "one at a time" (or "N at a
//! time"). Checking `/proc` for another VM is not enough: two runs started together, from two
//! checkouts, both pass the check before either boots. A reservation is taken under an
//! exclusive `flock` in the image cache directory (shared by every checkout on the machine),
//! so two runs are decided one after the other, each seeing what the other reserved.
//!
//! Layout: `<cache>/reservations/.lock` (the lock) and one `<vm>.json` per reserved VM. A
//! reservation is live while its holder (the harness command that took it) or the VM's own
//! process (once recorded) runs, under this host boot; anything else is stale and dropped.
//! The policy is the pure [`decide`] (one VM) and [`decide_all`] (a fleet's VMs, all or none);
//! [`Reservations`] only locks, reads and writes.

use std::fmt;
use std::fs::File;
use std::time::{SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};

use crate::judge::{MARGIN_MIB, MemoryNeed, vm_charge_mib};
use crate::procs::{self, ProcInfo, ProcessIdentity};

const SUBDIR: &str = "reservations";
const LOCK_FILE: &str = ".lock";

/// What a run asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    /// The VM's name (`boma-it-…`), unique per run.
    pub vm: String,
    /// The guest's memory (`-m`).
    pub mem_mib: u64,
    pub vcpus: u32,
    /// The checkout the run belongs to: where `cargo xtask down` stops it.
    pub checkout: Utf8PathBuf,
    /// The command that runs it (`cargo xtask it askari`).
    pub what: String,
}

impl ReservationRequest {
    /// The memory the VM may claim in all ([`vm_charge_mib`]).
    pub fn charge_mib(&self) -> u64 {
        vm_charge_mib(self.mem_mib)
    }
}

/// A reservation, as recorded in `<cache>/reservations/<vm>.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    pub vm: String,
    /// The harness command that took it.
    pub holder: ProcessIdentity,
    /// The VM's own process (QEMU), once it runs: the reservation lives as long as it does,
    /// even after the harness command exits (`cargo xtask up`).
    pub vm_process: Option<ProcessIdentity>,
    /// The host boot both processes belong to.
    pub boot_id: String,
    pub mem_mib: u64,
    /// What its QEMU was charged beyond the guest's memory, when it was taken.
    pub overhead_mib: u64,
    pub vcpus: u32,
    pub checkout: Utf8PathBuf,
    pub what: String,
    /// When it was taken, in seconds since the Unix epoch.
    pub since_unix: u64,
}

impl Reservation {
    pub fn charge_mib(&self) -> u64 {
        self.mem_mib + self.overhead_mib
    }

    /// Whether it still holds: under this host boot, its holder or its VM process running.
    /// Pure: `live` shows `/proc`.
    pub fn is_live(&self, this_boot: &str, live: &dyn Fn(u32) -> Option<ProcInfo>) -> bool {
        self.boot_id == this_boot
            && (self.holder.is_running(live) || self.vm_process.is_some_and(|p| p.is_running(live)))
    }

    /// One line naming it and how to stop it.
    pub fn describe(&self) -> String {
        let vm_pid = self
            .vm_process
            .map(|p| format!(", QEMU pid {}", p.pid))
            .unwrap_or_default();
        format!(
            "{} ({} MiB): `{}` from {}, harness pid {}{vm_pid} — stop it with `cargo xtask down` in {}, or `cargo xtask prune` there",
            self.vm, self.mem_mib, self.what, self.checkout, self.holder.pid, self.checkout
        )
    }
}

/// A live reservation with what its VM already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub reservation: Reservation,
    /// The resident memory of its VM's process (0 before the VM runs). `MemAvailable` already
    /// excludes it, so only the rest of the charge is still to be claimed.
    pub resident_mib: u64,
}

impl Live {
    /// What the VM may still claim on top of what it holds now.
    pub fn still_to_claim_mib(&self) -> u64 {
        self.reservation
            .charge_mib()
            .saturating_sub(self.resident_mib)
    }
}

/// What the machine affords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `MemAvailable` now, in MiB.
    pub available_mib: u64,
    /// How many test VMs may run at once.
    pub max_vms: usize,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A live reservation has the same VM name.
    AlreadyReserved,
    /// `max_vms` are reserved already.
    TooMany { max_vms: usize },
    /// The live reservations' unclaimed memory, this one's and the margin exceed what is
    /// available ([`MemoryNeed`]).
    Memory {
        need: MemoryNeed,
        available_mib: u64,
    },
}

/// A refused reservation, naming every live one and how to stop it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    pub vm: String,
    pub charge_mib: u64,
    pub reason: Reason,
    pub live: Vec<Reservation>,
    /// The VMs of the same all-or-none request counted before this one (a fleet's earlier
    /// members): none of them is reserved either.
    pub with: Vec<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Refusal {
            vm,
            charge_mib,
            reason,
            live,
            with,
        } = self;
        write!(
            f,
            "cannot reserve {vm} ({charge_mib} MiB with QEMU's overhead)"
        )?;
        if !with.is_empty() {
            write!(
                f,
                " together with {} (all or none: none is reserved)",
                with.join(", ")
            )?;
        }
        write!(f, ": ")?;
        match reason {
            Reason::AlreadyReserved if live.iter().any(|r| r.vm == *vm) => {
                write!(f, "a VM of that name is already reserved")?
            }
            Reason::AlreadyReserved => write!(f, "the request names it twice")?,
            Reason::TooMany { max_vms } if with.is_empty() => write!(
                f,
                "{} test VM(s) are reserved and this machine runs at most {max_vms} at a time",
                live.len()
            )?,
            Reason::TooMany { max_vms } => write!(
                f,
                "{} test VM(s) are reserved, {} more come before it in the request, and this machine runs at most {max_vms} at a time",
                live.len(),
                with.len()
            )?,
            Reason::Memory {
                need,
                available_mib,
            } => write!(
                f,
                "it needs {} MiB ({} MiB the {} VMs may still claim, its own {charge_mib} MiB and a {MARGIN_MIB} MiB margin) and {available_mib} MiB is available",
                need.total_mib(),
                need.still_to_claim_mib,
                if with.is_empty() {
                    "reserved"
                } else {
                    "reserved and requested"
                },
            )?,
        }
        if live.is_empty() {
            let fix = if with.is_empty() {
                "lower mem_mib in the profile"
            } else {
                "lower the members' mem_mib"
            };
            return write!(f, "; no other test VM is reserved: {fix}");
        }
        write!(f, "; reserved now:")?;
        for reservation in live {
            write!(f, "\n  {}", reservation.describe())?;
        }
        Ok(())
    }
}

/// The policy: whether `req` fits beside the `live` reservations within `budget`. Pure.
pub fn decide(live: &[Live], req: &ReservationRequest, budget: &Budget) -> Result<(), Refusal> {
    decide_all(live, std::slice::from_ref(req), budget)
}

/// The policy for several VMs that run together (a fleet's members): whether all of `reqs` fit
/// beside the `live` reservations within `budget`, each counted as if the ones before it were
/// reserved and had not booted yet — the one memory rule ([`MemoryNeed`]) over the whole set:
/// what the live VMs may still claim, every request's charge, one margin. The refusal names the
/// first that does not fit and the ones counted before it. Pure.
pub fn decide_all(
    live: &[Live],
    reqs: &[ReservationRequest],
    budget: &Budget,
) -> Result<(), Refusal> {
    let live_claim: u64 = live.iter().map(Live::still_to_claim_mib).sum();
    for (at, req) in reqs.iter().enumerate() {
        let before = &reqs[..at];
        let refuse = |reason| Refusal {
            vm: req.vm.clone(),
            charge_mib: req.charge_mib(),
            reason,
            live: live.iter().map(|l| l.reservation.clone()).collect(),
            with: before.iter().map(|r| r.vm.clone()).collect(),
        };
        let named_before = live.iter().any(|l| l.reservation.vm == req.vm)
            || before.iter().any(|r| r.vm == req.vm);
        if named_before {
            return Err(refuse(Reason::AlreadyReserved));
        }
        if live.len() + at >= budget.max_vms {
            return Err(refuse(Reason::TooMany {
                max_vms: budget.max_vms,
            }));
        }
        let need = MemoryNeed {
            still_to_claim_mib: live_claim + before.iter().map(|r| r.charge_mib()).sum::<u64>(),
            charge_mib: req.charge_mib(),
        };
        if !need.fits(budget.available_mib) {
            return Err(refuse(Reason::Memory {
                need,
                available_mib: budget.available_mib,
            }));
        }
    }
    Ok(())
}

/// Why the reservation store failed.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("cannot use {path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a reservation ({reason}); if no test VM of that name is running, remove the file"
    )]
    Corrupt { path: Utf8PathBuf, reason: String },
    #[error("`{vm}` cannot name a reservation: use the VM's name (letters, digits, `-`, `_`, `.`)")]
    BadName { vm: String },
    #[error("process {pid} is not running: the reservation of {vm} cannot be tied to it")]
    NotRunning { vm: String, pid: u32 },
}

fn io_error(path: &Utf8Path) -> impl FnOnce(std::io::Error) -> ReserveError + '_ {
    move |source| ReserveError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The reservations of this machine, in `<cache>/reservations/`.
#[derive(Debug, Clone)]
pub struct Reservations {
    dir: Utf8PathBuf,
}

impl Reservations {
    /// The store under the image cache directory `cache_dir` (created if missing).
    pub fn open(cache_dir: &Utf8Path) -> Result<Reservations, ReserveError> {
        let dir = cache_dir.join(SUBDIR);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(Reservations { dir })
    }

    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// Reserve `req` if it fits beside the live reservations within `budget`. Stale
    /// reservations are dropped first (the guard lists them). The guard releases on drop.
    pub fn reserve(
        &self,
        req: &ReservationRequest,
        budget: &Budget,
    ) -> Result<Reserved, ReserveError> {
        let mut reserved = self.reserve_all(std::slice::from_ref(req), budget)?;
        Ok(reserved.pop().expect("one reservation per request"))
    }

    /// Reserve every one of `reqs` or none: a fleet that half fits must not boot half its
    /// members. One lock, one scan, one decision over the whole set ([`decide_all`]), then every
    /// file is written — or, if one cannot be, those written are removed again. The guards come
    /// in the order of `reqs`, each releasing its own VM on drop (drop the vector to release them
    /// together); the first lists the stale reservations dropped.
    pub fn reserve_all(
        &self,
        reqs: &[ReservationRequest],
        budget: &Budget,
    ) -> Result<Vec<Reserved>, ReserveError> {
        let paths = reqs
            .iter()
            .map(|req| self.path_of(&req.vm))
            .collect::<Result<Vec<_>, _>>()?;
        let me = this_process()?;
        let _lock = self.lock()?;
        let scan = self.scan()?;
        decide_all(&scan.live, reqs, budget)?;
        let since_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut stale = Some(scan.stale);
        let mut reserved = Vec::with_capacity(reqs.len());
        for (req, path) in reqs.iter().zip(&paths) {
            let reservation = Reservation {
                vm: req.vm.clone(),
                holder: me,
                vm_process: None,
                boot_id: scan.this_boot.clone(),
                mem_mib: req.mem_mib,
                overhead_mib: req.charge_mib() - req.mem_mib,
                vcpus: req.vcpus,
                checkout: req.checkout.clone(),
                what: req.what.clone(),
                since_unix,
            };
            // On an error the guards written so far drop with `reserved`, releasing their VMs
            // (under the lock still held): none of the set stays reserved.
            write_atomically(path, &reservation)?;
            reserved.push(Reserved {
                store: self.clone(),
                reservation,
                stale: stale.take().unwrap_or_default(),
                armed: true,
            });
        }
        Ok(reserved)
    }

    /// The live reservations, dropping stale ones.
    pub fn live(&self) -> Result<Vec<Reservation>, ReserveError> {
        let _lock = self.lock()?;
        Ok(self
            .scan()?
            .live
            .into_iter()
            .map(|l| l.reservation)
            .collect())
    }

    /// Release the reservation of `vm`, whoever took it (`down`, `prune`); whether there was
    /// one.
    pub fn release(&self, vm: &str) -> Result<bool, ReserveError> {
        let path = self.path_of(vm)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    fn path_of(&self, vm: &str) -> Result<Utf8PathBuf, ReserveError> {
        let safe = !vm.is_empty()
            && !vm.starts_with('.')
            && vm.len() <= 200
            && vm
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !safe {
            return Err(ReserveError::BadName { vm: vm.to_owned() });
        }
        Ok(self.dir.join(format!("{vm}.json")))
    }

    /// Wait for the machine-wide lock (held for milliseconds: a scan and a write).
    fn lock(&self) -> Result<File, ReserveError> {
        let path = self.dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path))?;
        file.lock().map_err(io_error(&path))?;
        Ok(file)
    }

    /// Read every reservation, remove the stale ones. Call with the lock held.
    fn scan(&self) -> Result<Scan, ReserveError> {
        let this_boot =
            procs::boot_id().map_err(io_error(Utf8Path::new(boma_exec::journal::BOOT_ID_PATH)))?;
        let entries = std::fs::read_dir(&self.dir).map_err(io_error(&self.dir))?;
        let mut paths: Vec<Utf8PathBuf> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Utf8PathBuf::from_path_buf(e.path()).ok())
            .filter(|p| {
                p.extension() == Some("json") && p.file_name().is_some_and(|n| !n.starts_with('.'))
            })
            .collect();
        paths.sort();
        let live_proc = |pid| procs::info(pid);
        let mut scan = Scan {
            this_boot,
            live: Vec::new(),
            stale: Vec::new(),
        };
        for path in paths {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                // Released between the listing and the read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path)(e)),
            };
            let reservation: Reservation =
                serde_json::from_str(&text).map_err(|e| ReserveError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if reservation.is_live(&scan.this_boot, &live_proc) {
                let resident_mib = reservation
                    .vm_process
                    .filter(|p| p.is_running(&live_proc))
                    .and_then(|p| procs::resident_mib(p.pid))
                    .unwrap_or(0);
                scan.live.push(Live {
                    reservation,
                    resident_mib,
                });
            } else {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&path)(e)),
                }
                scan.stale.push(reservation);
            }
        }
        Ok(scan)
    }
}

struct Scan {
    this_boot: String,
    live: Vec<Live>,
    stale: Vec<Reservation>,
}

fn this_process() -> Result<ProcessIdentity, ReserveError> {
    procs::this_process()
        .map(|p| p.identity())
        .ok_or_else(|| ReserveError::Io {
            path: Utf8PathBuf::from("/proc/self/stat"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
}

fn write_atomically(path: &Utf8Path, reservation: &Reservation) -> Result<(), ReserveError> {
    let name = path
        .file_name()
        .expect("a reservation path has a file name");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let text = serde_json::to_string_pretty(reservation).expect("a reservation serialises");
    std::fs::write(&tmp, format!("{text}\n")).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// A reservation held by this command; released on drop unless [`Reserved::keep_for_vm`]
/// hands it to the VM's process.
#[derive(Debug)]
#[must_use = "the reservation is released when this guard is dropped"]
pub struct Reserved {
    store: Reservations,
    reservation: Reservation,
    stale: Vec<Reservation>,
    armed: bool,
}

impl Reserved {
    pub fn reservation(&self) -> &Reservation {
        &self.reservation
    }

    /// Stale reservations dropped before this one was taken (their holders are gone): for
    /// the caller to mention.
    pub fn dropped_stale(&self) -> &[Reservation] {
        &self.stale
    }

    /// Record the VM's own process (QEMU's pid): from now on the reservation also lives as
    /// long as it runs, and its resident memory is counted as already claimed.
    pub fn vm_started(&mut self, pid: u32) -> Result<(), ReserveError> {
        let not_running = || ReserveError::NotRunning {
            vm: self.reservation.vm.clone(),
            pid,
        };
        let process = procs::info(pid)
            .filter(|p| !p.has_exited())
            .ok_or_else(not_running)?;
        let mut updated = self.reservation.clone();
        updated.vm_process = Some(process.identity());
        let path = self.store.path_of(&updated.vm)?;
        let _lock = self.store.lock()?;
        write_atomically(&path, &updated)?;
        self.reservation = updated;
        Ok(())
    }

    /// Let the reservation outlive this command (`cargo xtask up` leaves the VM running):
    /// record the VM's process `pid` and hand the reservation to it. It then lives while that
    /// process runs, and `down`/`prune` release it by name ([`Reservations::release`]).
    pub fn keep_for_vm(mut self, pid: u32) -> Result<(), ReserveError> {
        self.vm_started(pid)?;
        self.armed = false;
        Ok(())
    }

    /// Release now, reporting a failure (dropping the guard releases silently).
    pub fn release(mut self) -> Result<(), ReserveError> {
        self.armed = false;
        self.store.release(&self.reservation.vm).map(|_| ())
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.armed {
            // Nothing to report to: a reservation left behind goes stale with this process.
            let _ = self.store.release(&self.reservation.vm);
        }
    }
}

#[cfg(test)]
mod tests;
