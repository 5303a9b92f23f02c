//! Booting a run's VM and the one failure policy for a booted VM, shared by `up` and `it`.

use std::time::Duration;

use boma_exec::progress::phase;
use boma_exec::{interrupt, say};
use boma_vm::lifecycle::{self, BaseImage, Effects, UpFailure, UpRequest};
use boma_vm::run::diagnostics;
use boma_vm::{Accel, BackendKind, RunRecord, Runs};
use camino::Utf8PathBuf;

use boma_host::reserve::{Budget, ReservationRequest, Reservations, ReserveError, Reserved};

use crate::files::RunFiles;
use crate::golden::{Golden, ImageRequest};
use crate::preflight::{Inputs, NewVm};
use crate::{Ctx, HarnessError};

pub fn runs(ctx: &Ctx) -> Runs {
    Runs::new(&ctx.settings.runs_root)
}

/// Run `f` with the lifecycle's effects; new VMs get `kind`, waits fitted to `accel`.
pub fn with_effects<T>(
    ctx: &Ctx,
    kind: BackendKind,
    accel: Accel,
    f: impl FnOnce(&Effects) -> T,
) -> T {
    let runs = runs(ctx);
    let fx = Effects {
        runs: &runs,
        hypervisors: ctx.machine.hypervisors(),
        kind,
        guest: ctx.machine.guest(),
        disks: ctx.machine.disks(),
        waits: ctx.settings.waits.waits(accel),
    };
    f(&fx)
}

/// A run id: 8 hex digits from the kernel's random UUID.
pub fn new_run_id() -> String {
    RunId::random().to_string()
}

/// A run's id, the last part of its VM's name (`boma-it-askari-0a1b2c3d`): 8 hex digits. A
/// parallel run's parent chooses its children's ids, so that it knows each child's VM by name
/// and can remove it if the child is killed before it cleans up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId(u32);

impl RunId {
    /// A fresh id, from the kernel's random UUID (the pid if that cannot be read).
    pub fn random() -> RunId {
        std::fs::read_to_string("/proc/sys/kernel/random/uuid")
            .ok()
            .and_then(|uuid| u32::from_str_radix(uuid.get(..8)?, 16).ok())
            .map_or(RunId(std::process::id()), RunId)
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl std::str::FromStr for RunId {
    type Err = String;

    /// Exactly 8 lowercase hex digits, as [`RunId`]'s `Display` writes them.
    fn from_str(s: &str) -> Result<RunId, String> {
        let hex = s.len() == 8
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex.then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
            .map(RunId)
            .ok_or_else(|| {
                format!("`{s}` is not a run id: write 8 lowercase hex digits, e.g. 0a1b2c3d")
            })
    }
}

/// Say which real hosts the VM is given no route to, and which it cannot be (a host reached by
/// a DNS name has no fixed address to route away).
fn say_fleet_isolation(inputs: &Inputs) {
    let addresses: Vec<String> = inputs
        .fleet_addresses
        .iter()
        .map(|a| a.to_string())
        .collect();
    if addresses.is_empty() {
        say!("real fleet: no host has a literal address, so no route is taken away");
    } else {
        say!(
            "real fleet: the VM gets no route to {} (unreachable routes in its network-config)",
            addresses.join(", ")
        );
    }
    if !inputs.fleet_named_only.is_empty() {
        let named: Vec<String> = inputs
            .fleet_named_only
            .iter()
            .map(|(host, name)| {
                if host == name {
                    host.clone()
                } else {
                    format!("{host} ({name})")
                }
            })
            .collect();
        say!(
            "real fleet: reached by name, so not routed away: {}",
            named.join(", ")
        );
    }
}

/// What `up` found and made before the VM booted.
pub struct Prepared {
    pub golden: Golden,
    pub accel: Accel,
    /// The machine-wide reservation of this VM's memory: held while the run lasts.
    pub reservation: Reserved,
}

/// The VM's machine-wide reservation, the current run's state, then the golden image and the
/// KVM verdict — in that order, so a refusal fetches, builds and probes nothing. `exclusive`:
/// the VM is to become the checkout's one current VM (`up`).
pub fn prepare(
    ctx: &Ctx,
    inputs: &Inputs,
    new: &NewVm,
    what: &str,
    exclusive: bool,
) -> Result<Prepared, HarnessError> {
    let reservation = reserve(ctx, inputs, new, what)?;
    clear_stale_current(ctx, new.backend.kind, exclusive)?;
    say!("backend: {} ({})", new.backend.kind, new.backend.why);
    let (golden, accel) = golden_and_accel(ctx)?;
    Ok(Prepared {
        golden,
        accel,
        reservation,
    })
}

/// Before anything is created: clear away a stale current run (one no live reservation holds),
/// and for a VM that is to become the checkout's one current VM (`exclusive`), refuse while
/// the current one is live (`lifecycle::preflight`).
pub fn clear_stale_current(
    ctx: &Ctx,
    kind: BackendKind,
    exclusive: bool,
) -> Result<(), HarnessError> {
    let live: Vec<String> = Reservations::open(&ctx.settings.cache_dir)
        .and_then(|store| store.live())
        .map(|live| live.into_iter().map(|r| r.vm).collect())
        .unwrap_or_default();
    let in_use = |name: &boma_name::VmName| live.iter().any(|vm| vm == name.as_str());
    with_effects(ctx, kind, Accel::Tcg, |fx| {
        lifecycle::preflight(fx, exclusive, &in_use)
    })?;
    Ok(())
}

/// The verified golden image (cache, download, build, as the settings say) and the
/// acceleration this machine gives its guests, each said on stderr.
pub(crate) fn golden_and_accel(ctx: &Ctx) -> Result<(Golden, Accel), HarnessError> {
    let request = ImageRequest::from_settings(ctx.settings);
    let golden = ctx.machine.provisioner().golden_image(&request)?;
    say!(
        "golden image: {} (sha512 {}…, {})",
        golden.path,
        &golden.sha512[..16.min(golden.sha512.len())],
        golden.origin
    );
    std::fs::create_dir_all(&ctx.settings.runs_root)
        .map_err(|e| HarnessError::io(&ctx.settings.runs_root, e))?;
    let accel = ctx.machine.provisioner().accel(
        &golden.path,
        &ctx.settings.cache_dir,
        &ctx.settings.runs_root,
    )?;
    say!("acceleration: {}", accel.describe());
    Ok((golden, accel))
}

/// Reserve the VM's memory machine-wide (race-free, across checkouts and parallel runs), by
/// the one memory rule (`boma_host::judge`): its `mem_mib` plus QEMU's overhead under TCG (the
/// translation cache alone is 1 GiB), within what the machine has available less a margin.
fn reserve(ctx: &Ctx, inputs: &Inputs, new: &NewVm, what: &str) -> Result<Reserved, HarnessError> {
    let request = ReservationRequest {
        vm: new.name.to_string(),
        mem_mib: u64::from(inputs.profile.mem_mib),
        vcpus: inputs.profile.vcpus,
        checkout: ctx.settings.repo.clone(),
        what: what.to_owned(),
    };
    reserve_within(ctx, &request, new.available_mib)
}

/// Reserve `request` within `available_mib` (MemAvailable now), saying which stale
/// reservations were dropped on the way.
fn reserve_within(
    ctx: &Ctx,
    request: &ReservationRequest,
    available_mib: u64,
) -> Result<Reserved, HarnessError> {
    let store = Reservations::open(&ctx.settings.cache_dir).map_err(reserve_error)?;
    let budget = Budget {
        available_mib,
        max_vms: usize::MAX,
    };
    let reserved = store.reserve(request, &budget).map_err(reserve_error)?;
    for stale in reserved.dropped_stale() {
        say!("dropped a stale reservation: {}", stale.describe());
    }
    Ok(reserved)
}

/// A refusal is "nothing was created" (exit 2); a broken store is a failure.
pub fn reserve_error(e: ReserveError) -> HarnessError {
    match e {
        ReserveError::Refused(refusal) => HarnessError::Refused(refusal.to_string()),
        other => HarnessError::Refused(format!(
            "the VM reservations in the image cache cannot be used: {other}"
        )),
    }
}

/// The VM's hypervisor process: QEMU's pid (recorded), or libvirt's QEMU found by name.
pub fn vm_pid(record: &RunRecord) -> Option<u32> {
    record.pid.or_else(|| {
        boma_vm::host::procs::vm_processes()
            .into_iter()
            .find(|p| p.name == record.name)
            .map(|p| p.pid)
    })
}

/// Reserve again the memory of a recorded VM about to start (machine-wide, as a new run's):
/// its record says how much.
pub fn reserve_again(ctx: &Ctx, record: &RunRecord, what: &str) -> Result<Reserved, HarnessError> {
    let available_mib = ctx.machine.host().available_mib().ok_or_else(|| {
        HarnessError::Refused(
            "MemAvailable cannot be read from /proc/meminfo: the VM's memory cannot be reserved"
                .into(),
        )
    })?;
    let request = ReservationRequest {
        vm: record.name.to_string(),
        mem_mib: u64::from(record.mem_mib),
        vcpus: record.vcpus,
        checkout: ctx.settings.repo.clone(),
        what: what.to_owned(),
    };
    reserve_within(ctx, &request, available_mib)
}

/// Release the reservation of a VM that is gone (`down`, `prune`).
pub fn release(ctx: &Ctx, name: &boma_name::VmName) {
    if let Ok(store) = Reservations::open(&ctx.settings.cache_dir) {
        let _ = store.release(name.as_str());
    }
}

/// Pin the golden image in the new VM's run directory: the run boots bytes that were verified
/// and cannot change under it.
pub fn pin_for_run(ctx: &Ctx, new: &NewVm, golden: &Golden) -> Result<Utf8PathBuf, HarnessError> {
    let run_dir = ctx.settings.runs_root.join(new.name.as_str());
    let pinned = ctx
        .machine
        .provisioner()
        .pin(golden, &run_dir, &ctx.settings.cache_dir)?;
    say!(
        "pinned for this run: {} (sha512 {}…)",
        pinned.path,
        &pinned.sha512[..16.min(pinned.sha512.len())]
    );
    Ok(pinned.path)
}

/// The NoCloud seed's documents of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedDocuments {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
}

/// The seed of the VM `name` whose NIC is `mac`, letting in `public_key`. Pure: the layer key
/// renders it too, with stand-ins for the per-run name and MAC.
pub fn seed_documents(
    inputs: &Inputs,
    public_key: &str,
    name: &str,
    mac: &str,
) -> Result<SeedDocuments, HarnessError> {
    let keys = [public_key.to_owned()];
    let user_data = boma_cloudinit::user_data(&boma_cloudinit::UserData::new(&keys))
        .map_err(|e| HarnessError::Refused(format!("cannot render user-data: {e}")))?;
    let instance_id = format!("iid-{name}");
    let meta_data = boma_cloudinit::meta_data(&boma_cloudinit::MetaData {
        instance_id: &instance_id,
        local_hostname: name,
    });
    let network_config = boma_cloudinit::network_config(&boma_cloudinit::NetworkConfig {
        mac,
        unreachable: &inputs.fleet_addresses,
    });
    Ok(SeedDocuments {
        user_data,
        meta_data,
        network_config,
    })
}

/// Boot the VM from `base` (the golden image or a cached layer, as `base_kind` says). A failure
/// after boot keeps the VM (diagnostics collected) and hands it back; an interrupt removes it
/// unless `keep`.
pub fn boot(
    ctx: &Ctx,
    inputs: &Inputs,
    new: &NewVm,
    accel: Accel,
    (base, base_kind): (&camino::Utf8Path, BaseImage),
    exclusive: bool,
) -> Result<RunRecord, (HarnessError, Option<Box<RunRecord>>)> {
    let (key, public_key) = ctx
        .machine
        .provisioner()
        .keypair(&ctx.settings.key_dir())
        .map_err(|e| (e, None))?;
    let mac = boma_vm::mac_for(&new.run_id);
    let SeedDocuments {
        user_data,
        meta_data,
        network_config,
    } = seed_documents(inputs, &public_key, new.name.as_str(), &mac).map_err(|e| (e, None))?;
    say_fleet_isolation(inputs);
    let run_dir = ctx.settings.runs_root.join(new.name.as_str());
    let request = UpRequest {
        host: inputs.host.clone(),
        name: new.name.clone(),
        mac,
        base_image: base.to_owned(),
        base: base_kind,
        mem_mib: inputs.profile.mem_mib,
        vcpus: inputs.profile.vcpus,
        published_ports: inputs.profile.ports(),
        accel,
        user_data,
        meta_data,
        network_config,
        user: boma_cloudinit::DEFAULT_USER.to_owned(),
        key,
        exclusive,
    };
    with_effects(ctx, new.backend.kind, accel, |fx| {
        lifecycle::up(fx, &request)
    })
    .map_err(|UpFailure { error, record }| {
        if record.is_none() {
            // Refused or failed before boot: not even the pin stays.
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        (error.into(), record)
    })
}

/// How much of the serial console a failure whose guest never answered shows.
const CONSOLE_LINES: usize = 15;

/// The single failure policy for a booted VM: an interrupt removes it (unless `keep`); any
/// other failure collects diagnostics and keeps it, saying how to inspect and clean up.
/// Returns the diagnostics bundle's path, when one was written.
pub fn after_failure(
    ctx: &Ctx,
    record: &RunRecord,
    error: &HarnessError,
    keep: bool,
) -> Option<Utf8PathBuf> {
    if error.interrupted().is_some() {
        interrupt::begin_cleanup();
        say!("interrupted: {error}");
        if keep {
            say!(
                "keeping {} as asked (--keep): {}",
                record.name,
                record.ssh.shell_hint()
            );
        } else if let Err(e) = with_effects(ctx, record.backend, record.accel, |fx| {
            lifecycle::down(fx, record)
        }) {
            say!(
                "could not remove {} after the interrupt: {e}; run `cargo xtask prune`",
                record.name
            );
        }
        return None;
    }
    say!("failed after boot: collecting diagnostics, keeping the VM");
    // A guest that never answered can say why only on its console: show its end now.
    if matches!(
        error,
        HarnessError::Vm(
            boma_vm::VmError::Timeout { .. }
                | boma_vm::VmError::BootFailed { .. }
                | boma_vm::VmError::GuestGone { .. }
        )
    ) {
        let console = std::fs::read(record.console_log()).unwrap_or_default();
        let tail = diagnostics::console_tail(&String::from_utf8_lossy(&console), CONSOLE_LINES);
        if !tail.is_empty() {
            say!("the end of the serial console:");
            for line in tail {
                say!("  | {line}");
            }
        }
    }
    let bundle = collect_diagnostics(ctx, record);
    say!("");
    say!("the VM {} is kept for inspection:", record.name);
    say!("  shell:        {}", record.ssh.shell_hint());
    say!(
        "  console:      cargo xtask console   (or {})",
        record.console_log()
    );
    match &bundle {
        Some(dir) => say!("  diagnostics:  {dir}"),
        None => say!("  diagnostics:  could not be collected (see above)"),
    }
    say!("  clean up:     cargo xtask down      (or `cargo xtask prune` for every test VM)");
    bundle
}

/// The bundle: the guest's evidence (boma-vm) and the run's own files (results, states, the
/// reboot diff, the folded Ansible log).
pub fn collect_diagnostics(ctx: &Ctx, record: &RunRecord) -> Option<Utf8PathBuf> {
    let out = ctx.settings.diagnostics_root.join(record.name.as_str());
    let step = phase("diagnostics");
    match diagnostics::collect(ctx.machine.guest(), record, &out) {
        Ok(dir) => {
            for file in RunFiles::of(record).evidence() {
                if let Some(name) = file.file_name()
                    && file.is_file()
                {
                    let text = std::fs::read_to_string(&file).unwrap_or_default();
                    let _ = std::fs::write(dir.join(name), boma_exec::redact::redact(&text));
                }
            }
            step.done();
            Some(dir)
        }
        Err(e) => {
            step.failed();
            say!("could not collect diagnostics: {e}");
            None
        }
    }
}

/// How long one `ansible-playbook` run may take: the operator's setting, else generous for
/// TCG (askari's longest step takes 3½–10 minutes there), scaled for KVM.
pub fn step_timeout(ctx: &Ctx, accel: Accel) -> Duration {
    ctx.settings
        .step_timeout
        .unwrap_or_else(|| accel.scale(Duration::from_secs(40 * 60)))
}
