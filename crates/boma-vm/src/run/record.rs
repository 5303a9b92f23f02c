//! The run directory (`tests/integration/.run/`): what is live, where its files are, and the
//! lock that keeps two harness commands from acting at once.
//!
//! Layout: `current` names the live VM; `<vm>/` holds everything that VM owns (its files are
//! named by [`RunDir`]); `.lock` is held (flock) by the harness command acting now, and names
//! it; the spawn journal ([`JOURNAL`]) records every process the harness started.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;

use camino::{Utf8Path, Utf8PathBuf};

use boma_name::VmName;

use crate::hypervisor::FleetNic;
use crate::run::dir::{JOURNAL, RunDir};
use crate::{Accel, BackendKind, Endpoint, SshTarget, VmError};

/// What `up` recorded about the live VM; every later step starts from it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// Checked again when a record is read: a record cannot smuggle in another name.
    pub name: VmName,
    /// The profile (real host) this VM mirrors.
    pub host: String,
    pub backend: BackendKind,
    pub accel: Accel,
    pub dir: Utf8PathBuf,
    pub ssh: SshTarget,
    /// Guest port → where the controller reaches it.
    pub published: BTreeMap<u16, Endpoint>,
    /// QEMU's pid (QEMU backend).
    pub pid: Option<u32>,
    pub mem_mib: u32,
    pub vcpus: u32,
    /// The NIC's MAC (a power cycle starts the VM with the same one).
    #[serde(default)]
    pub mac: String,
    /// The guest's boot_id when last seen, to prove a reboot happened.
    pub boot_id: Option<String>,
    /// A fleet member's second NIC and the segment it is plugged into (absent for a single VM,
    /// whose record is then exactly what it always was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_nic: Option<FleetNic>,
}

impl RunRecord {
    /// The VM's run directory, whose layout names its files.
    pub fn run_dir(&self) -> RunDir {
        RunDir::new(&self.dir)
    }

    pub fn console_log(&self) -> Utf8PathBuf {
        self.run_dir().console_log()
    }
}

/// The run directory.
#[derive(Debug, Clone)]
pub struct Runs {
    root: Utf8PathBuf,
}

/// Held while a harness command acts; released by the kernel if the process dies.
#[derive(Debug)]
pub struct RunsLock {
    file: File,
    /// A shared holder's own file, removed with the lock.
    holder: Option<Utf8PathBuf>,
}

impl Drop for RunsLock {
    fn drop(&mut self) {
        match &self.holder {
            Some(holder) => {
                let _ = std::fs::remove_file(holder);
            }
            // The exclusive holder's line goes with it: nobody may be named after leaving.
            None => {
                let _ = self.file.set_len(0);
            }
        }
    }
}

/// Whether a holder's line (`pid 123: cargo xtask prune`) names a live process.
fn holder_alive(line: &str) -> bool {
    line.strip_prefix("pid ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| Utf8Path::new("/proc").join(pid.to_string()).exists())
}

impl Runs {
    pub fn new(root: impl Into<Utf8PathBuf>) -> Runs {
        Runs { root: root.into() }
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    /// Take the run lock exclusively, without waiting: a second harness command is refused,
    /// naming the first (or the runs that hold it shared). flock dies with its process, so a
    /// crash never leaves it stale. For commands that act on the current run or on every run
    /// (`up`, `apply`, `reboot`, `assert`, `down`, `prune`).
    pub fn lock(&self, what: &str) -> Result<RunsLock, VmError> {
        self.take(what, false)
    }

    /// Take the run lock shared: several `it` runs (each with its own VM) may hold it at once,
    /// while a command that needs it exclusively (`prune`) waits for none of them and is
    /// refused instead.
    pub fn lock_shared(&self, what: &str) -> Result<RunsLock, VmError> {
        self.take(what, true)
    }

    fn take(&self, what: &str, shared: bool) -> Result<RunsLock, VmError> {
        std::fs::create_dir_all(&self.root).map_err(|e| VmError::io(&self.root, e))?;
        let path = self.root.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| VmError::io(&path, e))?;
        let taken = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match taken {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holders = self.holders();
                if !shared {
                    let exclusive = std::fs::read_to_string(&path).unwrap_or_default();
                    // A line left by a holder that died without unlocking names nobody.
                    if holder_alive(exclusive.trim()) {
                        holders.push(exclusive.trim().to_owned());
                    }
                }
                return Err(VmError::Preflight(format!(
                    "another boma harness command is running in this checkout ({}); wait for it, or stop it with Ctrl-C",
                    if holders.is_empty() {
                        "a run".to_owned()
                    } else {
                        holders.join("; ")
                    }
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(VmError::io(&path, e)),
        }
        let me = format!("pid {}: {what}", std::process::id());
        let holder = if shared {
            // Each shared holder says who it is in its own file.
            let dir = self.root.join(".holders");
            std::fs::create_dir_all(&dir).map_err(|e| VmError::io(&dir, e))?;
            let holder = dir.join(std::process::id().to_string());
            std::fs::write(&holder, &me).map_err(|e| VmError::io(&holder, e))?;
            Some(holder)
        } else {
            file.set_len(0).map_err(|e| VmError::io(&path, e))?;
            write!(file, "{me}").map_err(|e| VmError::io(&path, e))?;
            None
        };
        Ok(RunsLock { file, holder })
    }

    /// What the shared holders say about themselves (stale files of dead pids skipped).
    fn holders(&self) -> Vec<String> {
        let Ok(entries) = self.root.join(".holders").read_dir_utf8() else {
            return Vec::new();
        };
        let mut found: Vec<String> = entries
            .flatten()
            .filter(|e| Utf8Path::new("/proc").join(e.file_name()).exists())
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        found.sort();
        found
    }

    /// Where a VM's files live.
    pub fn vm_dir(&self, name: &VmName) -> Utf8PathBuf {
        self.root.join(name.as_str())
    }

    /// The run directory of the VM `name`, whose layout names its files.
    pub fn run_dir(&self, name: &VmName) -> RunDir {
        RunDir::new(self.vm_dir(name))
    }

    /// The spawn journal of the harness commands acting on this run directory.
    pub fn journal(&self) -> Utf8PathBuf {
        self.root.join(JOURNAL)
    }

    fn current_path(&self) -> Utf8PathBuf {
        self.root.join("current")
    }

    /// The live run's record, if `up` recorded one.
    pub fn current(&self) -> Result<Option<RunRecord>, VmError> {
        let path = self.current_path();
        let name = match std::fs::read_to_string(&path) {
            Ok(name) => VmName::parse(name.trim())
                .map_err(|e| VmError::Backend(format!("{path}: {e}; run `cargo xtask prune`")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(VmError::io(&path, e)),
        };
        // `current` without a record: a crash between the two writes; treat as no run.
        self.record(&name)
    }

    /// The record of the VM `name`, current or not (a kept VM of a parallel run), if its
    /// directory holds one.
    pub fn record(&self, name: &VmName) -> Result<Option<RunRecord>, VmError> {
        let record = self.run_dir(name).record();
        match std::fs::read_to_string(&record) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                VmError::Backend(format!(
                    "{record} is not a run record ({e}); run `cargo xtask prune`"
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(VmError::io(&record, e)),
        }
    }

    /// The live run, or [`VmError::NoRun`].
    pub fn require_current(&self) -> Result<RunRecord, VmError> {
        self.current()?.ok_or(VmError::NoRun)
    }

    /// Write the record (atomically) and make it current.
    pub fn save(&self, record: &RunRecord) -> Result<(), VmError> {
        let dir = self.vm_dir(&record.name);
        std::fs::create_dir_all(&dir).map_err(|e| VmError::io(&dir, e))?;
        let text = serde_json::to_string_pretty(record).expect("a run record serialises");
        write_atomically(&RunDir::new(&dir).record(), &text)?;
        write_atomically(&self.current_path(), &format!("{}\n", record.name))
    }

    /// Forget the current run (its files are removed separately).
    pub fn clear_current(&self) -> Result<(), VmError> {
        let path = self.current_path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VmError::io(&path, e)),
        }
    }

    /// Every VM directory in the run directory, recorded or not.
    pub fn vm_dirs(&self) -> Result<Vec<Utf8PathBuf>, VmError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(VmError::io(&self.root, e)),
        };
        let mut dirs: Vec<Utf8PathBuf> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| Utf8PathBuf::from_path_buf(entry.path()).ok())
            .filter(|path| {
                path.file_name().is_some_and(|n| VmName::parse(n).is_ok()) && path.is_dir()
            })
            .collect();
        dirs.sort();
        Ok(dirs)
    }
}

fn write_atomically(path: &Utf8Path, text: &str) -> Result<(), VmError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| VmError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| VmError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dir: &Utf8Path) -> RunRecord {
        RunRecord {
            name: crate::fake::vm("boma-it-askari-1"),
            host: "askari".into(),
            backend: BackendKind::Qemu,
            accel: Accel::Tcg,
            dir: dir.join("boma-it-askari-1"),
            ssh: SshTarget {
                host: "127.0.0.1".into(),
                port: 2222,
                user: "ansible".into(),
                key: "/k".into(),
            },
            published: BTreeMap::from([(
                443,
                Endpoint {
                    host: "127.0.0.1".into(),
                    port: 4443,
                },
            )]),
            pid: Some(42),
            mem_mib: 3072,
            vcpus: 2,
            mac: "52:54:00:00:00:01".into(),
            boot_id: None,
            fleet_nic: None,
        }
    }

    #[test]
    fn save_then_current_round_trips_and_clear_forgets() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let runs = Runs::new(&root);
        assert!(runs.current().unwrap().is_none());
        assert!(matches!(runs.require_current(), Err(VmError::NoRun)));
        let rec = record(&root);
        runs.save(&rec).unwrap();
        assert_eq!(runs.current().unwrap(), Some(rec.clone()));
        assert_eq!(runs.vm_dirs().unwrap(), vec![rec.dir.clone()]);
        runs.clear_current().unwrap();
        assert!(runs.current().unwrap().is_none());
    }

    #[test]
    fn shared_holders_coexist_and_keep_an_exclusive_taker_out_naming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = Runs::new(Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap());
        let first = runs.lock_shared("cargo xtask it askari").unwrap();
        let second = runs.lock_shared("cargo xtask it ubongo").unwrap();
        let err = runs.lock("cargo xtask prune").unwrap_err().to_string();
        assert!(err.contains("cargo xtask it"), "{err}");
        drop(first);
        drop(second);
        let prune = runs.lock("cargo xtask prune").unwrap();
        drop(prune);
        // A later shared holder keeps an exclusive taker out naming itself only, never the
        // exclusive holder that left (nor one that died holding it, pid 0 here).
        let third = runs.lock_shared("cargo xtask it cat-a").unwrap();
        let err = runs.lock("cargo xtask up askari").unwrap_err().to_string();
        assert!(err.contains("cargo xtask it cat-a"), "{err}");
        assert!(!err.contains("prune"), "{err}");
        drop(third);
        std::fs::write(runs.root().join(".lock"), "pid 0: cargo xtask down").unwrap();
        let _shared = runs.lock_shared("cargo xtask it cat-b").unwrap();
        let err = runs.lock("cargo xtask up askari").unwrap_err().to_string();
        assert!(!err.contains("cargo xtask down"), "{err}");
    }

    #[test]
    fn second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = Runs::new(Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap());
        let held = runs.lock("cargo xtask up askari").unwrap();
        let err = runs.lock("cargo xtask up askari").unwrap_err().to_string();
        assert!(err.contains("cargo xtask up askari"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        runs.lock("again").unwrap();
    }
}
