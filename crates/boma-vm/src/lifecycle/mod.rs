//! The lifecycle of one test VM: up, proven reboot, down, prune.
//!
//! Hypervisor- and SSH-agnostic: effects arrive through [`Effects`], so every decision here
//! (when to refuse, when a wait has failed, what proves a reboot, what prune removes) is
//! unit-tested against fakes, and proven against QEMU, libvirt and a real guest by the VM suite.
//! A recorded VM is always handled by the backend that runs it (its record says which), never
//! by the backend a new run would choose.

mod disks;
mod together;
mod wait;
mod watch;

use std::time::{Duration, Instant};

use boma_exec::progress::{human, phase};
use boma_exec::say;
use boma_name::VmName;
use camino::{Utf8Path, Utf8PathBuf};

pub use disks::{Disks, RealDisks, SeedFiles, image_format, replace_overlay};
pub use together::{TogetherStep, plan_together, together};
pub use wait::{Waits, poll_until};

use watch::{ConsoleWatch, Resettable, console_len, first_boot_resettable};

use crate::guest::ssh::SSH_FAILED;
use crate::hypervisor::{FleetNic, Segment};
use crate::run::prune;
use crate::{
    Accel, BackendKind, BootSpec, Guest, Hypervisor, RebootHow, RunDir, RunRecord, Runs, SshTarget,
    VmError,
};

/// The hypervisor backends, by kind: a recorded VM is asked about and removed by its own.
pub trait Hypervisors {
    fn get(&self, kind: BackendKind) -> Box<dyn Hypervisor + '_>;
}

/// The effects the lifecycle acts through.
pub struct Effects<'a> {
    pub runs: &'a Runs,
    pub hypervisors: &'a dyn Hypervisors,
    /// The backend new VMs are booted with.
    pub kind: BackendKind,
    pub guest: &'a dyn Guest,
    pub disks: &'a dyn Disks,
    pub waits: Waits,
}

impl Effects<'_> {
    fn hypervisor(&self, kind: BackendKind) -> Box<dyn Hypervisor + '_> {
        self.hypervisors.get(kind)
    }
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct UpRequest {
    /// The profile (real host) the VM mirrors.
    pub host: String,
    pub name: VmName,
    pub mac: String,
    /// The disk the overlay is made on: the golden image or a cached layer.
    pub base_image: Utf8PathBuf,
    /// Which of the two it is: it decides what a kernel panic in the first boot may be reset
    /// for.
    pub base: BaseImage,
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
    /// Whether this VM becomes the checkout's one current VM (see [`preflight`]).
    pub exclusive: bool,
}

/// What a VM's first boot boots from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseImage {
    /// The golden image: nothing of the run is on it yet.
    Golden,
    /// A cached disk layer: it carries the steps applied to it, the change under test.
    Layer,
}

/// Why `up` did not finish, and whether a VM exists that the caller must keep or remove.
#[derive(Debug)]
pub struct UpFailure {
    pub error: VmError,
    /// The VM, when the failure came after it was booted.
    pub record: Option<Box<RunRecord>>,
}

/// Before creating anything: clear away a stale current run (its VM is gone), and, when the
/// new VM is to become the checkout's one current VM (`exclusive`: `cargo xtask up`), refuse
/// while the current one is live. How many VMs the machine runs at once is not decided here:
/// the caller holds a machine-wide reservation (memory) for this VM.
pub fn preflight(
    fx: &Effects,
    exclusive: bool,
    in_use: &dyn Fn(&VmName) -> bool,
) -> Result<(), VmError> {
    let Some(current) = fx.runs.current()? else {
        return Ok(());
    };
    // A live harness still drives it (a parallel run, powered off for a moment while it
    // stores a layer): not stale, whatever its process says.
    if !exclusive && in_use(&current.name) {
        return Ok(());
    }
    // Asked of the backend that runs it: another kind cannot see it, and would call a live VM
    // stale.
    let own = fx.hypervisor(current.backend);
    if own.is_running(&current)? {
        if exclusive {
            return Err(VmError::Preflight(format!(
                "a test VM is already live: {} (mirrors {}, {} backend); one at a time — stop it with `cargo xtask down`, or remove every test VM with `cargo xtask prune`",
                current.name, current.host, current.backend
            )));
        }
        return Ok(());
    }
    // Its process is gone (a crash, a SIGKILL): the run is stale, clear it away.
    say!(
        "removing the stale run {} (its VM is no longer running)",
        current.name
    );
    remove_vm(fx, &current.name, Some(&current))
}

/// Boot a VM for `req` and wait until SSH answers and cloud-init is done.
pub fn up(fx: &Effects, req: &UpRequest) -> Result<RunRecord, UpFailure> {
    up_with(fx, req, None)
}

/// [`up`] for a fleet member: the VM gets a second NIC, `nic`, on the fleet's segment (which
/// must be up, and be the segment of the backend new VMs get), and its record keeps it, so that
/// `start` plugs it in again and `prune` knows the segment.
pub fn up_member(fx: &Effects, req: &UpRequest, nic: &FleetNic) -> Result<RunRecord, UpFailure> {
    same_backend(fx, req, nic).map_err(|error| UpFailure {
        error,
        record: None,
    })?;
    up_with(fx, req, Some(nic))
}

/// A member's NIC must be on the segment of the backend new VMs get.
fn same_backend(fx: &Effects, req: &UpRequest, nic: &FleetNic) -> Result<(), VmError> {
    if nic.segment.kind() == fx.kind {
        return Ok(());
    }
    Err(VmError::Preflight(format!(
        "{} is to join the {} but new VMs get the {} backend: a fleet's members and segment share one backend",
        req.name, nic.segment, fx.kind
    )))
}

/// Why a fleet's members did not all come up: the error, and every member booted before it
/// (each with its record, for the caller to keep or remove).
#[derive(Debug)]
pub struct MembersUpFailure {
    pub error: VmError,
    pub records: Vec<RunRecord>,
}

/// [`up_member`] for every member of a fleet, in the order given: each is booted without
/// waiting, then each is waited for in turn (SSH, cloud-init, its first boot judged on its
/// console), so that the guests boot side by side instead of one after another. A member that
/// cannot be booted stops the launches (those booted are handed back); a member that does not
/// come up fails the whole, after the others were booted.
pub fn up_members(
    fx: &Effects,
    members: &[(UpRequest, FleetNic)],
) -> Result<Vec<RunRecord>, MembersUpFailure> {
    for (req, nic) in members {
        same_backend(fx, req, nic).map_err(|error| MembersUpFailure {
            error,
            records: Vec::new(),
        })?;
    }
    let mut records: Vec<RunRecord> = Vec::with_capacity(members.len());
    for (req, nic) in members {
        match launch(fx, req, Some(nic)) {
            Ok(record) => records.push(record),
            Err(UpFailure { error, record }) => {
                records.extend(record.map(|r| *r));
                return Err(MembersUpFailure { error, records });
            }
        }
    }
    for (record, (req, _)) in records.iter_mut().zip(members) {
        if let Err(error) = await_ready(fx, record, req.base) {
            return Err(MembersUpFailure { error, records });
        }
    }
    Ok(records)
}

fn up_with(
    fx: &Effects,
    req: &UpRequest,
    fleet_nic: Option<&FleetNic>,
) -> Result<RunRecord, UpFailure> {
    let mut record = launch(fx, req, fleet_nic)?;
    match await_ready(fx, &mut record, req.base) {
        Ok(()) => Ok(record),
        Err(error) => Err(UpFailure {
            error,
            record: Some(Box::new(record)),
        }),
    }
}

/// Create the VM's disks and seed, boot it and record it; return as soon as the hypervisor runs
/// it (not when SSH answers: [`await_ready`]).
fn launch(
    fx: &Effects,
    req: &UpRequest,
    fleet_nic: Option<&FleetNic>,
) -> Result<RunRecord, UpFailure> {
    let no_vm = |error| UpFailure {
        error,
        record: None,
    };
    // Checked again right before creating anything, for a run that is to become the checkout's
    // one current VM (its command holds the checkout's lock exclusively, so no parallel run is
    // mid power cycle here). Parallel runs were checked by their caller, which knows the live
    // reservations.
    if req.exclusive {
        preflight(fx, true, &|_| false).map_err(no_vm)?;
    }
    let dir = fx.runs.vm_dir(&req.name);
    std::fs::create_dir_all(&dir).map_err(|e| no_vm(VmError::io(&dir, e)))?;
    // From here on files exist: a failure before boot removes them.
    let spec = match prepare_disks(fx, req, &dir, fleet_nic) {
        Ok(spec) => spec,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(no_vm(error));
        }
    };

    let hypervisor = fx.hypervisor(fx.kind);
    say!("booting with {} ({})", fx.kind, req.accel.qemu_accel());
    let boot = phase("boot");
    let booted = match boot.close(hypervisor.boot(&spec)) {
        Ok(booted) => booted,
        Err(error) => {
            // Whatever the backend half-created goes too: nothing to inspect yet.
            let _ = remove_vm(fx, &req.name, None);
            return Err(no_vm(error));
        }
    };
    let record = RunRecord {
        name: req.name.clone(),
        host: req.host.clone(),
        backend: fx.kind,
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
        mac: req.mac.clone(),
        boot_id: None,
        fleet_nic: fleet_nic.cloned(),
    };
    // Recorded before waiting, so that `down`, `prune` and diagnostics find it whatever happens.
    if let Err(error) = fx.runs.save(&record) {
        return Err(UpFailure {
            error,
            record: Some(Box::new(record)),
        });
    }

    Ok(record)
}

/// Wait until the launched VM answers on SSH and cloud-init is done (its first boot judged on
/// its console), and record its boot_id.
fn await_ready(fx: &Effects, record: &mut RunRecord, base: BaseImage) -> Result<(), VmError> {
    say!(
        "waiting for SSH and cloud-init on {} (up to {})",
        record.name,
        human(fx.waits.boot)
    );
    let wait = phase("wait for SSH and cloud-init");
    let deadline = Instant::now() + fx.waits.boot;
    let ready = refresh_address(fx, record, deadline)
        .and_then(|()| wait_first_boot(fx, record, base, deadline));
    let boot_id = wait.close(ready)?;
    record.boot_id = Some(boot_id);
    fx.runs.save(record)?;
    say!("{} is up: {}", record.name, record.ssh.shell_hint());
    Ok(())
}

fn prepare_disks(
    fx: &Effects,
    req: &UpRequest,
    dir: &Utf8Path,
    fleet_nic: Option<&FleetNic>,
) -> Result<BootSpec, VmError> {
    let step = phase("overlay and cloud-init seed");
    let files = RunDir::new(dir);
    let overlay = files.overlay();
    let seed = files.seed();
    let user_data = files.user_data();
    let meta_data = files.meta_data();
    let network_config = files.network_config();
    step.close((|| {
        fx.disks.create_overlay(&req.base_image, &overlay)?;
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
    })())?;
    Ok(BootSpec {
        name: req.name.clone(),
        dir: dir.to_owned(),
        overlay,
        seed,
        console: files.console_log(),
        mac: req.mac.clone(),
        mem_mib: req.mem_mib,
        vcpus: req.vcpus,
        accel: req.accel,
        published_ports: req.published_ports.clone(),
        fleet_nic: fleet_nic.cloned(),
    })
}

/// Where the guest is reachable now: fixed at boot for QEMU, a DHCP lease for libvirt (which
/// a reboot may renew with another address). Waits for an address until `deadline`, and saves
/// the record when it changed.
fn refresh_address(fx: &Effects, record: &mut RunRecord, deadline: Instant) -> Result<(), VmError> {
    let hypervisor = fx.hypervisor(record.backend);
    let found = poll_until(
        &fx.waits,
        deadline,
        format!("an address for {}", record.name),
        format!("serial console: {}", record.console_log()),
        || {
            ensure_running(hypervisor.as_ref(), record)?;
            hypervisor.address(record)
        },
    )?;
    let changed = found.ssh.host != record.ssh.host
        || found.ssh.port != record.ssh.port
        || found.published != record.published;
    if changed {
        if record.ssh.host.is_empty() {
            say!("    address: {} (from the DHCP lease)", found.ssh.host);
        } else {
            say!(
                "    {} is now at {} (was {})",
                record.name,
                found.ssh.host,
                record.ssh.host
            );
        }
        record.ssh.host = found.ssh.host;
        record.ssh.port = found.ssh.port;
        record.published = found.published;
        fx.runs.save(record)?;
    }
    Ok(())
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
fn wait_first_boot(
    fx: &Effects,
    record: &RunRecord,
    base: BaseImage,
    deadline: Instant,
) -> Result<String, VmError> {
    let hypervisor = fx.hypervisor(record.backend);
    say!(
        "    polling: ssh {} -- {READY_PROBE}",
        record.ssh.destination()
    );
    let mut console = ConsoleWatch::new(0, "its first boot", first_boot_resettable(base));
    let boot_id = poll_until(
        &fx.waits,
        deadline,
        format!("SSH to {} with cloud-init done", record.name),
        format!(
            "the guest never became reachable; its serial console is {}",
            record.console_log()
        ),
        || {
            ensure_running(hypervisor.as_ref(), record)?;
            console.check(hypervisor.as_ref(), record)?;
            let answer = fx
                .guest
                .run(&record.ssh, READY_PROBE, Duration::from_secs(120), true);
            let Ok(out) = answer else { return Ok(None) };
            if out.status.code() == Some(SSH_FAILED) {
                return Ok(None);
            }
            match parse_ready(&out.stdout) {
                Some((0, boot_id)) => Ok(Some(boot_id)),
                Some((2, boot_id)) => {
                    say!(
                        "    warning: cloud-init finished with recoverable errors (degraded); continuing"
                    );
                    Ok(Some(boot_id))
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
                    Err(VmError::CloudInit {
                        name: record.name.to_string(),
                        detail,
                    })
                }
                // Connected but the answer was cut off (sshd restarted under us): try again.
                None => Ok(None),
            }
        },
    )?;
    // A boot that failed before this one answered (a panic the guest restarted past).
    console.confirm(record)?;
    Ok(boot_id)
}

fn ensure_running(hypervisor: &dyn Hypervisor, record: &RunRecord) -> Result<(), VmError> {
    if hypervisor.is_running(record)? {
        Ok(())
    } else {
        Err(VmError::GuestGone {
            name: record.name.to_string(),
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

/// What a finished reboot found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebooted {
    pub took: Duration,
    /// `systemctl is-system-running --wait` once the new boot settled (`running`, `degraded` …).
    pub system_state: String,
}

/// Reboot for real and prove it: succeed only when SSH answers with a different boot_id and
/// systemd has finished booting.
pub fn reboot(fx: &Effects, record: &mut RunRecord, how: RebootHow) -> Result<Rebooted, VmError> {
    say!(
        "rebooting {}",
        match how {
            RebootHow::Guest => "from inside the guest",
            RebootHow::Hard => "by a hardware reset",
        }
    );
    let step = phase("reboot");
    let state = step.close(reboot_inner(fx, record, how))?;
    Ok(Rebooted {
        took: last_phase_took(),
        system_state: state,
    })
}

/// How long the phase just closed took (its progress record).
fn last_phase_took() -> Duration {
    boma_exec::progress::records()
        .last()
        .map(|r| r.took)
        .unwrap_or_default()
}

fn reboot_inner(fx: &Effects, record: &mut RunRecord, how: RebootHow) -> Result<String, VmError> {
    let hypervisor = fx.hypervisor(record.backend);
    let before = boot_id(fx, record)?;
    say!("    boot_id before: {before}");
    let console_from = console_len(record);
    if !hypervisor.reboot(record, how)? {
        going_down(fx, record, "sudo systemctl reboot")?;
    }
    wait_rebooted(fx, record, &before, console_from)
}

/// How a wait names the boot after a reboot or a power cycle.
const AFTER_REBOOT: &str = "the boot after the reboot";

/// Ask the guest to go down (`command`: reboot or poweroff, as an operator would). The
/// connection may drop before systemctl returns: ssh's own failure (255) is not an error.
fn going_down(fx: &Effects, record: &RunRecord, command: &str) -> Result<(), VmError> {
    let out = fx
        .guest
        .run(&record.ssh, command, Duration::from_secs(60), false)?;
    if out.status.success() || out.status.code() == Some(SSH_FAILED) {
        Ok(())
    } else {
        Err(VmError::Backend(format!(
            "`{command}` failed on {}: {}",
            record.name,
            out.stderr.trim()
        )))
    }
}

/// A power cycle that is a real reboot too (a full shutdown, a new boot_id): the guest powers
/// itself off cleanly, `between` runs on the stopped VM's disks (a layer is taken there, from a
/// cleanly shut-down guest, never a crash-consistent disk), then the VM is started again.
pub fn power_cycle(
    fx: &Effects,
    record: &mut RunRecord,
    label: &str,
    between: &mut dyn FnMut(&RunRecord) -> Result<(), VmError>,
) -> Result<Rebooted, VmError> {
    say!("power cycle: the guest powers itself off, then starts again");
    let step = phase(label);
    let state = step.close(power_cycle_inner(fx, record, between))?;
    Ok(Rebooted {
        took: last_phase_took(),
        system_state: state,
    })
}

fn power_cycle_inner(
    fx: &Effects,
    record: &mut RunRecord,
    between: &mut dyn FnMut(&RunRecord) -> Result<(), VmError>,
) -> Result<String, VmError> {
    let hypervisor = fx.hypervisor(record.backend);
    let before = boot_id(fx, record)?;
    say!("    boot_id before: {before}");
    let console_from = console_len(record);
    going_down(fx, record, "sudo systemctl poweroff")?;
    let deadline = Instant::now() + fx.waits.reboot;
    poll_until(
        &fx.waits,
        deadline,
        format!("{} powering off", record.name),
        format!("its serial console is {}", record.console_log()),
        || Ok((!hypervisor.is_running(record)?).then_some(())),
    )?;
    between(record)?;
    let booted = hypervisor.start(record)?;
    record.pid = booted.pid;
    fx.runs.save(record)?;
    wait_rebooted(fx, record, &before, console_from)
}

/// [`wait_new_boot`] after a reboot or a power cycle of one VM: within the reboot's wait, the
/// boot settled wholly.
fn wait_rebooted(
    fx: &Effects,
    record: &mut RunRecord,
    before: &str,
    console_from: u64,
) -> Result<String, VmError> {
    let deadline = Instant::now() + fx.waits.reboot;
    wait_new_boot(
        fx,
        record,
        before,
        console_from,
        AFTER_REBOOT,
        deadline,
        Settle::Whole,
    )
}

/// After a reboot was started: wait for SSH to answer with a boot_id other than `before`
/// (re-reading the address, which a new lease may move), then for systemd to settle. The
/// console from byte `console_from` on (its length when the reboot was asked) is the new boot's:
/// a panic or emergency mode there ends the wait at once, but the emulator's known fault, which
/// is reset once.
fn wait_new_boot(
    fx: &Effects,
    record: &mut RunRecord,
    before: &str,
    console_from: u64,
    during: &'static str,
    deadline: Instant,
    settle: Settle,
) -> Result<String, VmError> {
    let hypervisor = fx.hypervisor(record.backend);
    let limit = deadline.saturating_duration_since(Instant::now());
    say!(
        "    polling: ssh {} -- cat /proc/sys/kernel/random/boot_id (up to {})",
        record.ssh.destination(),
        human(limit)
    );
    let what = format!(
        "{} coming back with a new boot_id after the reboot",
        record.name
    );
    let hint = format!(
        "the guest did not return; its serial console is {}",
        record.console_log()
    );
    let mut console = ConsoleWatch::new(console_from, during, Resettable::EmulatorFault);
    let after = poll_until(&fx.waits, deadline, what, hint, || {
        ensure_running(hypervisor.as_ref(), record)?;
        // The reboot is the test: a panic or emergency mode here is its verdict. Only the
        // emulator's own fault is reset, once.
        console.check(hypervisor.as_ref(), record)?;
        // A new DHCP lease may move the guest (libvirt): ask where it is before asking it.
        if let Some(found) = hypervisor.address(record)?
            && found.ssh.host != record.ssh.host
            && !found.ssh.host.is_empty()
        {
            say!("    {} is now at {}", record.name, found.ssh.host);
            record.ssh.host = found.ssh.host;
            record.ssh.port = found.ssh.port;
            record.published = found.published;
        }
        // A check right after the reboot command can still reach the old boot: only a
        // different boot_id proves the reboot.
        let answer = fx.guest.run(
            &record.ssh,
            "cat /proc/sys/kernel/random/boot_id",
            Duration::from_secs(30),
            true,
        );
        Ok(answer.ok().and_then(|out| {
            let id = out.stdout.trim();
            (out.status.success() && is_boot_id(id) && id != before).then(|| id.to_owned())
        }))
    })?;
    say!("    boot_id after:  {after}");
    record.boot_id = Some(after);
    fx.runs.save(record)?;
    let state = settle_boot(fx, record, settle, deadline)?;
    // Every boot since the reboot was asked, judged once more now that one answered: a panic
    // the guest restarted past (`kernel.panic=N`) is the reboot's verdict all the same.
    console.confirm(record)?;
    Ok(state)
}

/// How long a new boot may take to settle (`systemctl is-system-running --wait`) before its
/// state is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Until the wait's deadline, and at least a minute: SSH can answer before the boot is over
    /// (Docker, containers), and what is captured next must be the settled boot.
    Whole,
    /// At most this long (a together round's boot-order gate, ADR-027): a boot that waits for a
    /// peer not started yet never settles, and its state then (`starting`) is what is read.
    AtMost(Duration),
}

/// Whether a state read after [`Settle::AtMost`] is a boot the bound cut short (still starting),
/// not a settled one (`running`, `degraded`, …). Pure.
pub fn cut_short(state: &str) -> bool {
    matches!(state, "initializing" | "starting" | "")
}

/// Wait for the guest's boot to settle as `settle` says, and return systemd's state.
fn settle_boot(
    fx: &Effects,
    record: &RunRecord,
    settle: Settle,
    deadline: Instant,
) -> Result<String, VmError> {
    let (command, limit) = match settle {
        Settle::Whole => (
            "systemctl is-system-running --wait".to_owned(),
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(60)),
        ),
        // The guest bounds the wait itself and then says where the boot is; ssh gets a margin.
        Settle::AtMost(bound) => (
            format!(
                "timeout {} systemctl is-system-running --wait >/dev/null 2>&1; systemctl is-system-running",
                bound.as_secs()
            ),
            bound + Duration::from_secs(30),
        ),
    };
    let state = fx.guest.run(&record.ssh, &command, limit, false)?;
    let state = state.stdout.trim().to_owned();
    say!("    system state: {state}");
    Ok(state)
}

/// Remove the VM and its files.
pub fn down(fx: &Effects, record: &RunRecord) -> Result<(), VmError> {
    let step = phase("down");
    step.close(remove_vm(fx, &record.name, Some(record)))
}

/// Stop the VM but keep its files (overlay, console, record) for a post-mortem; the next `up`
/// or `prune` removes them. Nothing runs in the guest first: its disk stays as it was.
pub fn power_off(fx: &Effects, record: &RunRecord) -> Result<(), VmError> {
    fx.hypervisor(record.backend).stop(record)
}

/// Keep a failed run's VM powered off, for [`start`] to boot it again: powered off as
/// [`power_off`] does, and no longer the current run, so that the next run does not take it
/// for a stale one and remove it (only `prune` does).
pub fn keep_powered_off(fx: &Effects, record: &RunRecord) -> Result<(), VmError> {
    power_off(fx, record)?;
    if fx.runs.current()?.is_some_and(|c| c.name == record.name) {
        fx.runs.clear_current()?;
    }
    Ok(())
}

/// Boot a kept, powered-off VM again from its record: the same overlay, seed, forwards and
/// console (as the second half of a power cycle), waiting for SSH with a new boot_id while its
/// console is judged as after a reboot (its disk carries the change under test: only the
/// emulator's fault is reset). It becomes the current run. A VM already running is left as it
/// is, and made current.
pub fn start(fx: &Effects, record: &mut RunRecord) -> Result<(), VmError> {
    let hypervisor = fx.hypervisor(record.backend);
    if hypervisor.is_running(record)? {
        say!("{} is already running", record.name);
        return fx.runs.save(record);
    }
    say!("starting {} again from its record", record.name);
    let step = phase("start");
    step.close((|| {
        // A VM that never answered has no boot_id: any answer is a new boot.
        let before = record.boot_id.clone().unwrap_or_default();
        let console_from = console_len(record);
        let booted = hypervisor.start(record)?;
        record.pid = booted.pid;
        fx.runs.save(record)?;
        let deadline = Instant::now() + fx.waits.reboot;
        wait_new_boot(
            fx,
            record,
            &before,
            console_from,
            "its boot after the start",
            deadline,
            Settle::Whole,
        )
        .map(|_| ())
    })())
}

/// Remove one VM by name, in whatever state a harness killed mid-run left it (booting, with or
/// without its record): stopped, undefined, its files deleted. Whether the hypervisor still
/// had it.
pub fn remove(fx: &Effects, name: &VmName, record: Option<&RunRecord>) -> Result<bool, VmError> {
    let kind = record.map_or(fx.kind, |r| r.backend);
    // Only for the answer: a hypervisor that cannot list its VMs must not stop the removal.
    let had = fx
        .hypervisor(kind)
        .leftovers()
        .is_ok_and(|live| live.contains(name));
    remove_vm(fx, name, record)?;
    Ok(had)
}

/// Stop and undefine one VM, then delete its directory and, if it was current, the record.
/// The files go even when the backend reports an error, as long as the VM is no longer
/// running: a half-created VM (a boot killed mid-definition) must not leave them behind.
fn remove_vm(fx: &Effects, name: &VmName, record: Option<&RunRecord>) -> Result<(), VmError> {
    let kind = record.map_or(fx.kind, |r| r.backend);
    let hypervisor = fx.hypervisor(kind);
    let destroyed = hypervisor.destroy(name, record);
    if destroyed.is_err() && hypervisor.leftovers()?.iter().any(|n| n == name) {
        return destroyed;
    }
    let dir = fx.runs.vm_dir(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(VmError::io(&dir, e)),
    }
    if fx.runs.current()?.is_none_or(|c| &c.name == name) {
        fx.runs.clear_current()?;
    }
    destroyed
}

/// Bring a fleet run's segment up, on its own backend, before its members boot
/// ([`up_member`]). Whatever this created, [`segment_down`] removes.
pub fn segment_up(fx: &Effects, segment: &Segment) -> Result<(), VmError> {
    let step = phase("fleet network");
    say!("bringing up the fleet's {segment}");
    step.close(fx.hypervisor(segment.kind()).segments().create(segment))
}

/// Take a fleet run's segment down once its members are down (or kept powered off: a kept
/// member's `start` brings its segment up again with [`segment_up`]). Idempotent.
pub fn segment_down(fx: &Effects, segment: &Segment) -> Result<(), VmError> {
    fx.hypervisor(segment.kind()).segments().destroy(segment)
}

/// What `prune` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub vms: Vec<VmName>,
    pub dirs: usize,
    /// Fleet segments taken down (a switch, a network).
    pub segments: Vec<Segment>,
    /// `boma-fleet-*` networks found that no run of this checkout names: left alone.
    pub foreign_segments: Vec<Segment>,
}

/// Remove every test VM `hypervisor` knows and every run file, recorded or not, also after a
/// crash, and the fleet segments of this checkout's runs (after their VMs). The current run is
/// removed by its own backend.
pub fn prune(fx: &Effects, kind: BackendKind) -> Result<PruneReport, VmError> {
    let current = fx.runs.current().ok().flatten();
    let dirs = fx.runs.vm_dirs()?;
    let hypervisor = fx.hypervisor(kind);
    let live = hypervisor.leftovers()?;
    // The current run belongs to this pass only if this is its backend.
    let own_current = current.as_ref().filter(|c| c.backend == kind);
    let plan = prune::plan(&live, &dirs, own_current);
    // Read before the directories go: the segments their members were plugged into.
    let recorded: Vec<Segment> = plan
        .destroy
        .iter()
        .filter_map(|name| fx.runs.record(name).ok().flatten())
        .filter_map(|record| record.fleet_nic.map(|nic| nic.segment))
        .collect();
    let mut report = PruneReport::default();
    for name in &plan.destroy {
        let record = own_current.filter(|c| &c.name == name);
        hypervisor.destroy(name, record)?;
        report.vms.push(name.clone());
    }
    let segments = hypervisor.segments();
    let found = segments.leftovers()?;
    let segment_plan = prune::plan_segments(&found, fx.runs.root(), &dirs, &recorded);
    for segment in segment_plan.destroy {
        say!("taking down the {segment}");
        segments.destroy(&segment)?;
        report.segments.push(segment);
    }
    for segment in segment_plan.foreign {
        say!(
            "left alone: the {segment}, which no run of this checkout names (another checkout's fleet, or one whose run directory is gone: if no fleet run uses it, `virsh --connect qemu:///system net-destroy` it)"
        );
        report.foreign_segments.push(segment);
    }
    for dir in &plan.remove_dirs {
        // A fleet switch killed with SIGKILL left its socket directory under /tmp: it goes with
        // its run (a directory that is not this user's stays).
        crate::hypervisor::vde::remove_stale_socket_dir(&boma_fleet::switch_paths(dir).dir)?;
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
