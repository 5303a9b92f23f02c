//! The lifecycle of one test VM: up, proven reboot, down, prune.
//!
//! Backend- and SSH-agnostic: effects arrive through [`Effects`], so every decision here (when
//! to refuse, when a wait has failed, what proves a reboot, what prune removes) is unit-tested
//! against fakes, and proven against QEMU, libvirt and a real guest by the VM suite.

use std::time::{Duration, Instant};

use boma_exec::progress::{human, phase};
use boma_exec::{CmdExt, interrupt};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use crate::ssh::SSH_FAILED;
use crate::{
    Accel, Backend, BootSpec, Guest, RebootHow, RunRecord, Runs, SshTarget, VmError, memory, prune,
};

/// Fresh overlay to SSH and cloud-init done: ~45 s measured under TCG; generous for a loaded host.
pub const BOOT_TIMEOUT_TCG: Duration = Duration::from_secs(420);
/// Reboot to SSH with a new boot_id: 55-90 s measured under TCG (longer with Docker).
pub const REBOOT_TIMEOUT_TCG: Duration = Duration::from_secs(420);
/// How often a wait looks again.
const POLL: Duration = Duration::from_secs(3);

/// How long the lifecycle waits, fitted to the accelerator.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    pub boot: Duration,
    pub reboot: Duration,
    pub poll: Duration,
}

impl Waits {
    pub fn for_accel(accel: Accel) -> Waits {
        Waits {
            boot: accel.scale(BOOT_TIMEOUT_TCG),
            reboot: accel.scale(REBOOT_TIMEOUT_TCG),
            poll: POLL,
        }
    }
}
/// Virtual size of each run's overlay; cloud-init grows the root filesystem to it.
const OVERLAY_SIZE: &str = "10G";

/// Creating disks: the effects of `up` that are not the hypervisor.
pub trait Disks {
    /// A copy-on-write overlay of `golden` at `overlay`.
    fn create_overlay(&self, golden: &Utf8Path, overlay: &Utf8Path) -> Result<(), VmError>;
    /// A NoCloud seed image at `seed` from the documents' files.
    fn create_seed(&self, seed: &Utf8Path, files: &SeedFiles<'_>) -> Result<(), VmError>;
}

/// The files of a NoCloud seed's documents.
#[derive(Debug, Clone, Copy)]
pub struct SeedFiles<'a> {
    pub user_data: &'a Utf8Path,
    pub meta_data: &'a Utf8Path,
    pub network_config: &'a Utf8Path,
}

/// `qemu-img` and `cloud-localds`.
pub struct RealDisks<'a> {
    pub sh: &'a Shell,
}

impl Disks for RealDisks<'_> {
    fn create_overlay(&self, golden: &Utf8Path, overlay: &Utf8Path) -> Result<(), VmError> {
        let sh = self.sh;
        cmd!(
            sh,
            "qemu-img create -q -f qcow2 -F qcow2 -b {golden} {overlay} {OVERLAY_SIZE}"
        )
        .exec()
        .run()?;
        Ok(())
    }

    fn create_seed(&self, seed: &Utf8Path, files: &SeedFiles<'_>) -> Result<(), VmError> {
        let sh = self.sh;
        let SeedFiles {
            user_data,
            meta_data,
            network_config,
        } = *files;
        cmd!(
            sh,
            "cloud-localds --network-config={network_config} {seed} {user_data} {meta_data}"
        )
        .exec()
        .run()?;
        Ok(())
    }
}

/// The format `qemu-img info` reports for an image file (`qcow2`, `raw` …).
pub fn image_format(sh: &Shell, path: &Utf8Path) -> Result<String, VmError> {
    let info = cmd!(sh, "qemu-img info --output=json {path}")
        .exec()
        .read()?;
    Ok(serde_json::from_str::<serde_json::Value>(&info)
        .ok()
        .and_then(|v| v["format"].as_str().map(str::to_owned))
        .unwrap_or_default())
}

/// The effects the lifecycle acts through.
pub struct Effects<'a> {
    pub runs: &'a Runs,
    pub backend: &'a dyn Backend,
    pub guest: &'a dyn Guest,
    pub disks: &'a dyn Disks,
    pub waits: Waits,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct UpRequest {
    pub host: String,
    pub name: String,
    pub mac: String,
    pub golden: Utf8PathBuf,
    pub mem_mib: u32,
    pub vcpus: u32,
    pub published_ports: Vec<u16>,
    pub accel: Accel,
    /// Rendered cloud-init documents.
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
    /// The user and harness key cloud-init installs.
    pub user: String,
    pub key: Utf8PathBuf,
    /// Memory available on the host (MiB), read by the caller, for the guard.
    pub available_mib: u64,
}

/// Why `up` did not finish, and whether a VM exists that the caller must keep or remove.
#[derive(Debug)]
pub struct UpFailure {
    pub error: VmError,
    /// The VM, when the failure came after it was booted.
    pub record: Option<Box<RunRecord>>,
}

/// Refuse or clean up before creating anything: one run at a time, memory, disk.
pub fn preflight(
    fx: &Effects,
    name: &str,
    mem_mib: u32,
    available_mib: u64,
) -> Result<(), VmError> {
    if let Some(current) = fx.runs.current()? {
        if fx.backend.kind() == current.backend && fx.backend.is_running(&current)? {
            return Err(VmError::Preflight(format!(
                "a test VM is already live: {} (mirrors {}); one at a time — stop it with `cargo xtask down`, or remove every test VM with `cargo xtask prune`",
                current.name, current.host
            )));
        }
        // The process is gone (a crash, a SIGKILL): the run is stale, clear it away.
        eprintln!(
            "removing the stale run {} (its VM is no longer running)",
            current.name
        );
        remove_vm(fx, &current.name, Some(&current))?;
    }
    let others = fx.backend.leftovers()?;
    if !others.is_empty() {
        return Err(VmError::Preflight(format!(
            "test VM(s) already running on this machine: {}; one at a time — `cargo xtask prune` removes them",
            others.join(", ")
        )));
    }
    memory::check_memory(name, u64::from(mem_mib), available_mib)?;
    Ok(())
}

/// Boot a VM for `req` and wait until SSH answers and cloud-init is done.
pub fn up(fx: &Effects, req: &UpRequest) -> Result<RunRecord, UpFailure> {
    let no_vm = |error| UpFailure {
        error,
        record: None,
    };
    preflight(fx, &req.name, req.mem_mib, req.available_mib).map_err(no_vm)?;
    let dir = fx.runs.vm_dir(&req.name);
    std::fs::create_dir_all(&dir).map_err(|e| no_vm(VmError::io(&dir, e)))?;
    // From here on files exist: a failure before boot removes them.
    let prepared = prepare_disks(fx, req, &dir);
    let spec = match prepared {
        Ok(spec) => spec,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(no_vm(error));
        }
    };

    let boot = phase(format!(
        "boot {} ({}, {})",
        req.name,
        fx.backend.kind(),
        req.accel.qemu_accel()
    ));
    let booted = match fx.backend.boot(&spec) {
        Ok(booted) => booted,
        Err(error) => {
            boot.failed();
            // Whatever the backend half-created goes too: nothing to inspect yet.
            let _ = remove_vm(fx, &req.name, None);
            return Err(no_vm(error));
        }
    };
    boot.done();
    let mut record = RunRecord {
        name: req.name.clone(),
        host: req.host.clone(),
        backend: fx.backend.kind(),
        accel: req.accel,
        dir: dir.clone(),
        ssh: SshTarget {
            host: booted.ssh.host,
            port: booted.ssh.port,
            user: req.user.clone(),
            key: req.key.clone(),
        },
        published: booted.published,
        pid: booted.pid,
        mem_mib: req.mem_mib,
        vcpus: req.vcpus,
        boot_id: None,
    };
    // Recorded before waiting, so that `down`, `prune` and diagnostics find it whatever happens.
    if let Err(error) = fx.runs.save(&record) {
        return Err(UpFailure {
            error,
            record: Some(Box::new(record)),
        });
    }

    let wait = phase(format!(
        "wait for SSH and cloud-init (up to {})",
        human(fx.waits.boot)
    ));
    let ready = fx.backend.wait_address(&record).and_then(|addr| {
        record.ssh.host = addr.ssh.host;
        record.ssh.port = addr.ssh.port;
        record.published = addr.published;
        fx.runs.save(&record)?;
        wait_first_boot(fx, &record)
    });
    match ready {
        Ok(boot_id) => {
            wait.done();
            record.boot_id = Some(boot_id);
            fx.runs.save(&record).map_err(|error| UpFailure {
                error,
                record: Some(Box::new(record.clone())),
            })?;
            eprintln!("{} is up: {}", record.name, record.ssh.shell_hint());
            Ok(record)
        }
        Err(error) => {
            wait.failed();
            Err(UpFailure {
                error,
                record: Some(Box::new(record)),
            })
        }
    }
}

fn prepare_disks(fx: &Effects, req: &UpRequest, dir: &Utf8Path) -> Result<BootSpec, VmError> {
    let step = phase("overlay and cloud-init seed");
    let overlay = dir.join("overlay.qcow2");
    let seed = dir.join("seed.img");
    let user_data = dir.join("user-data");
    let meta_data = dir.join("meta-data");
    let network_config = dir.join("network-config");
    let result = (|| {
        fx.disks.create_overlay(&req.golden, &overlay)?;
        for (path, text) in [
            (&user_data, &req.user_data),
            (&meta_data, &req.meta_data),
            (&network_config, &req.network_config),
        ] {
            std::fs::write(path, text).map_err(|e| VmError::io(path, e))?;
        }
        let files = SeedFiles {
            user_data: &user_data,
            meta_data: &meta_data,
            network_config: &network_config,
        };
        fx.disks.create_seed(&seed, &files)
    })();
    match result {
        Ok(()) => step.done(),
        Err(e) => {
            step.failed();
            return Err(e);
        }
    };
    Ok(BootSpec {
        name: req.name.clone(),
        dir: dir.to_owned(),
        overlay,
        seed,
        console: dir.join("console.log"),
        mac: req.mac.clone(),
        mem_mib: req.mem_mib,
        vcpus: req.vcpus,
        accel: req.accel,
        published_ports: req.published_ports.clone(),
    })
}

/// What the guest answers when it is ready: cloud-init's verdict and this boot's id.
const READY_PROBE: &str = "cloud-init status --wait >/dev/null 2>&1; echo \"cloud-init=$?\"; cat /proc/sys/kernel/random/boot_id";

/// Parse [`READY_PROBE`]'s answer into (cloud-init exit status, boot_id).
pub fn parse_ready(stdout: &str) -> Option<(i32, String)> {
    let mut status = None;
    let mut boot_id = None;
    for line in stdout.lines().map(str::trim) {
        if let Some(code) = line.strip_prefix("cloud-init=") {
            status = code.parse().ok();
        } else if is_boot_id(line) {
            boot_id = Some(line.to_owned());
        }
    }
    Some((status?, boot_id?))
}

fn is_boot_id(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Wait for the first boot: SSH answers (retried: cloud-init restarts sshd moments after it
/// first listens) and cloud-init has finished. Returns the boot_id.
fn wait_first_boot(fx: &Effects, record: &RunRecord) -> Result<String, VmError> {
    let limit = fx.waits.boot;
    let deadline = Instant::now() + limit;
    eprintln!(
        "    polling: ssh {} -- {READY_PROBE}",
        record.ssh.destination()
    );
    loop {
        interrupt::check()?;
        ensure_running(fx, record)?;
        let answer = fx
            .guest
            .run(&record.ssh, READY_PROBE, Duration::from_secs(120), true);
        if let Ok(out) = &answer
            && out.status.code() != Some(SSH_FAILED)
        {
            match parse_ready(&out.stdout) {
                Some((0, boot_id)) => return Ok(boot_id),
                Some((2, boot_id)) => {
                    eprintln!(
                        "    warning: cloud-init finished with recoverable errors (degraded); continuing"
                    );
                    return Ok(boot_id);
                }
                Some((_, _)) => {
                    let detail = fx
                        .guest
                        .run(
                            &record.ssh,
                            "cloud-init status --long",
                            Duration::from_secs(30),
                            false,
                        )
                        .map(|o| o.stdout)
                        .unwrap_or_default();
                    return Err(VmError::CloudInit {
                        name: record.name.clone(),
                        detail,
                    });
                }
                // Connected but the answer was cut off (sshd restarted under us): try again.
                None => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(VmError::Timeout {
                what: format!("SSH to {} with cloud-init done", record.name),
                after: limit,
                hint: format!(
                    "the guest never became reachable; its serial console is {}",
                    record.console_log()
                ),
            });
        }
        interrupt::sleep(fx.waits.poll)?;
    }
}

fn ensure_running(fx: &Effects, record: &RunRecord) -> Result<(), VmError> {
    if fx.backend.is_running(record)? {
        Ok(())
    } else {
        Err(VmError::GuestGone {
            name: record.name.clone(),
            console: record.console_log(),
        })
    }
}

/// Read the guest's current boot_id.
pub fn boot_id(fx: &Effects, record: &RunRecord) -> Result<String, VmError> {
    let out = fx.guest.run(
        &record.ssh,
        "cat /proc/sys/kernel/random/boot_id",
        Duration::from_secs(30),
        false,
    )?;
    let id = out.stdout.trim();
    if out.status.success() && is_boot_id(id) {
        Ok(id.to_owned())
    } else {
        Err(VmError::Backend(format!(
            "cannot read the boot_id of {}: {}",
            record.name,
            out.stderr.trim()
        )))
    }
}

/// Reboot for real and prove it: succeed only when SSH answers with a different boot_id and
/// systemd has finished booting.
pub fn reboot(fx: &Effects, record: &mut RunRecord, how: RebootHow) -> Result<Duration, VmError> {
    let label = match how {
        RebootHow::Guest => "reboot (guest-initiated)",
        RebootHow::Hard => "reboot (hardware reset)",
    };
    let step = phase(format!("{label} {}", record.name));
    let result = reboot_inner(fx, record, how);
    match result {
        Ok(()) => Ok(step.done()),
        Err(e) => {
            step.failed();
            Err(e)
        }
    }
}

fn reboot_inner(fx: &Effects, record: &mut RunRecord, how: RebootHow) -> Result<(), VmError> {
    let before = boot_id(fx, record)?;
    eprintln!("    boot_id before: {before}");
    if !fx.backend.reboot(record, how)? {
        // Guest-initiated through SSH: the connection may drop before systemctl returns (255).
        let out = fx.guest.run(
            &record.ssh,
            "sudo systemctl reboot",
            Duration::from_secs(60),
            false,
        )?;
        if !(out.status.success() || out.status.code() == Some(SSH_FAILED)) {
            return Err(VmError::Backend(format!(
                "`sudo systemctl reboot` failed on {}: {}",
                record.name,
                out.stderr.trim()
            )));
        }
    }
    let limit = fx.waits.reboot;
    let deadline = Instant::now() + limit;
    eprintln!(
        "    polling: ssh {} -- cat /proc/sys/kernel/random/boot_id (up to {})",
        record.ssh.destination(),
        human(limit)
    );
    let after = loop {
        interrupt::check()?;
        ensure_running(fx, record)?;
        // A check right after the reboot command can still reach the old boot: only a
        // different boot_id proves the reboot.
        if let Ok(out) = fx.guest.run(
            &record.ssh,
            "cat /proc/sys/kernel/random/boot_id",
            Duration::from_secs(30),
            true,
        ) {
            let id = out.stdout.trim();
            if out.status.success() && is_boot_id(id) && id != before {
                break id.to_owned();
            }
        }
        if Instant::now() >= deadline {
            return Err(VmError::Timeout {
                what: format!(
                    "{} coming back with a new boot_id after the reboot",
                    record.name
                ),
                after: limit,
                hint: format!(
                    "the guest did not return; its serial console is {}",
                    record.console_log()
                ),
            });
        }
        interrupt::sleep(fx.waits.poll)?;
    };
    eprintln!("    boot_id after:  {after}");
    record.boot_id = Some(after);
    fx.runs.save(record)?;
    // SSH can answer before the boot is over (Docker, containers): wait for systemd to settle.
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(60));
    let state = fx.guest.run(
        &record.ssh,
        "systemctl is-system-running --wait",
        remaining,
        false,
    )?;
    eprintln!("    system state: {}", state.stdout.trim());
    Ok(())
}

/// Remove the VM and its files.
pub fn down(fx: &Effects, record: &RunRecord) -> Result<(), VmError> {
    let step = phase(format!("down {}", record.name));
    match remove_vm(fx, &record.name, Some(record)) {
        Ok(()) => {
            step.done();
            Ok(())
        }
        Err(e) => {
            step.failed();
            Err(e)
        }
    }
}

/// Stop the VM but keep its files (overlay, console, record) for a post-mortem; the next `up`
/// or `prune` removes them.
pub fn power_off(fx: &Effects, record: &RunRecord) -> Result<(), VmError> {
    fx.backend.destroy(&record.name, Some(record))
}

/// Stop and undefine one VM, then delete its directory and, if it was current, the record.
/// The files go even when the backend reports an error, as long as the VM is no longer
/// running: a half-created VM (a boot killed mid-definition) must not leave them behind.
fn remove_vm(fx: &Effects, name: &str, record: Option<&RunRecord>) -> Result<(), VmError> {
    let destroyed = fx.backend.destroy(name, record);
    if destroyed.is_err() && fx.backend.leftovers()?.iter().any(|n| n == name) {
        return destroyed;
    }
    let dir = fx.runs.vm_dir(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(VmError::io(&dir, e)),
    }
    if fx.runs.current()?.is_none_or(|c| c.name == name) {
        fx.runs.clear_current()?;
    }
    destroyed
}

/// What `prune` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub vms: Vec<String>,
    pub dirs: usize,
}

/// Remove every test VM and every run file, recorded or not, also after a crash.
pub fn prune(fx: &Effects) -> Result<PruneReport, VmError> {
    let current = fx.runs.current().ok().flatten();
    let dirs = fx.runs.vm_dirs()?;
    let live = fx.backend.leftovers()?;
    let plan = prune::plan(&live, &dirs, current.as_ref());
    let mut report = PruneReport::default();
    for name in &plan.destroy {
        let record = current.as_ref().filter(|c| &c.name == name);
        fx.backend.destroy(name, record)?;
        report.vms.push(name.clone());
    }
    for dir in &plan.remove_dirs {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => report.dirs += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(VmError::io(dir, e)),
        }
    }
    fx.runs.clear_current()?;
    Ok(report)
}

#[cfg(test)]
mod tests;
