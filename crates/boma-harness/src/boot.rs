//! Booting a run's VM: the machine-wide reservation of its memory, the golden image and the
//! KVM verdict (in that order, so a refusal fetches, builds and probes nothing), the image
//! pinned for the run, the NoCloud seed, and `boma_vm::lifecycle::up`. Shared by `up` and `it`.

use boma_exec::say;
use boma_host::reserve::{Budget, ReservationRequest, ReserveError, Reserved};
use boma_name::VmName;
use boma_vm::lifecycle::{self, BaseImage, UpFailure, UpRequest};
use boma_vm::{Accel, RunRecord};
use camino::{Utf8Path, Utf8PathBuf};

use crate::ctx::Ctx;
use crate::error::HarnessError;
use crate::files;
use crate::golden::{self, Golden, ImageRequest, ImageStep, StepResult};
use crate::machine::Provisioner;
use crate::preflight::{Inputs, NewVm};

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
    kind: boma_vm::BackendKind,
    exclusive: bool,
) -> Result<(), HarnessError> {
    let live: Vec<String> = ctx
        .machine
        .reservations()
        .live(&ctx.settings.cache_dir)
        .map(|live| live.into_iter().map(|r| r.vm).collect())
        .unwrap_or_default();
    let in_use = |name: &VmName| live.iter().any(|vm| vm == name.as_str());
    ctx.with_effects(kind, Accel::Tcg, |fx| {
        lifecycle::preflight(fx, exclusive, &in_use)
    })?;
    Ok(())
}

/// The verified golden image (its plan carried out: cache, download, build, as the settings
/// say) and the acceleration this machine gives its guests, each said on stderr.
pub fn golden_and_accel(ctx: &Ctx) -> Result<(Golden, Accel), HarnessError> {
    let golden = golden_image(
        ctx.machine.provisioner(),
        &ImageRequest::from_settings(ctx.settings),
    )?;
    say!(
        "golden image: {} (sha512 {}…, {})",
        golden.path,
        &golden.sha512[..16.min(golden.sha512.len())],
        golden.origin
    );
    files::create_dir(&ctx.settings.runs_root)?;
    let accel = ctx.machine.provisioner().accel(
        &golden.path,
        &ctx.settings.cache_dir,
        &ctx.settings.runs_root,
    )?;
    say!("acceleration: {}", accel.describe());
    Ok((golden, accel))
}

/// The golden image the request asks for: [`golden::plan`]'s steps, carried out one at a time
/// until one finds it. A step that finds nothing in the cache goes on to the next; a download
/// host that cannot be reached at all goes on to the build the plan holds next (saying so), and
/// is the error when none follows. Any other failure is the error.
fn golden_image(
    provisioner: &dyn Provisioner,
    request: &ImageRequest,
) -> Result<Golden, HarnessError> {
    let mut steps = golden::plan(request).into_iter().peekable();
    while let Some(step) = steps.next() {
        match provisioner.image_step(&step, &request.cache_dir)? {
            StepResult::Found(file) => return Ok(step.golden(file)),
            StepResult::NotCached => {}
            StepResult::Unreachable(e) => match steps.peek() {
                Some(ImageStep::Build) => say!(
                    "the image download host cannot be reached ({e}); building the golden image from Debian packages instead"
                ),
                _ => return Err(e),
            },
        }
    }
    Err(HarnessError::Refused(
        "no golden image was found or made: run `cargo xtask image verify`".into(),
    ))
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
    let mut reserved = reserve_all(ctx, std::slice::from_ref(request), available_mib)?;
    Ok(reserved.pop().expect("one reservation per request"))
}

/// Reserve every one of `requests` or none (a fleet's members) within `available_mib`, saying
/// which stale reservations were dropped on the way.
pub fn reserve_all(
    ctx: &Ctx,
    requests: &[ReservationRequest],
    available_mib: u64,
) -> Result<Vec<Reserved>, HarnessError> {
    let budget = Budget {
        available_mib,
        max_vms: usize::MAX,
    };
    let reserved = ctx
        .machine
        .reservations()
        .reserve_all(&ctx.settings.cache_dir, requests, &budget)
        .map_err(reserve_error)?;
    for stale in reserved
        .first()
        .map(Reserved::dropped_stale)
        .unwrap_or_default()
    {
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
pub fn vm_pid(ctx: &Ctx, record: &RunRecord) -> Option<u32> {
    record
        .pid
        .or_else(|| ctx.machine.processes().vm_pid(&record.name))
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

/// Release the reservation of a VM that is gone (`down`, `prune`, a killed run's leftovers);
/// whether it had one.
pub fn release(ctx: &Ctx, name: &VmName) -> bool {
    matches!(
        ctx.machine
            .reservations()
            .release(&ctx.settings.cache_dir, name),
        Ok(true)
    )
}

/// Pin the golden image in the new VM's run directory: the run boots bytes that were verified
/// and cannot change under it.
pub fn pin_for_run(ctx: &Ctx, new: &NewVm, golden: &Golden) -> Result<Utf8PathBuf, HarnessError> {
    let run_dir = ctx.run_dir(&new.name);
    let pinned = ctx
        .machine
        .provisioner()
        .pin(golden, run_dir.path(), &ctx.settings.cache_dir)?;
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
    (base, base_kind): (&Utf8Path, BaseImage),
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
    ctx.with_effects(new.backend.kind, accel, |fx| lifecycle::up(fx, &request))
        .map_err(|UpFailure { error, record }| {
            if record.is_none() {
                // Refused or failed before boot: not even the pin stays.
                files::remove_unbooted(ctx.run_dir(&new.name).path());
            }
            (error.into(), record)
        })
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
