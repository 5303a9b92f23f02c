//! A fleet run's members as VMs: reserved all at once, booted side by side on the fleet's
//! segment, their inventory, connection and verify variables written, and at the end torn
//! down, kept running, or kept powered off — always all of them, and the segment with them. On
//! failure, one diagnostics bundle holds every member's.

use boma_exec::progress::phase;
use boma_exec::say;
use boma_host::reserve::{ReservationRequest, Reserved};
use boma_vm::lifecycle::{self, BaseImage, MembersUpFailure, UpRequest};
use boma_vm::run::diagnostics;
use boma_vm::{Accel, FleetNic, RunDir, RunRecord};
use camino::{Utf8Path, Utf8PathBuf};

use super::preflight::FleetInputs;
use crate::connect::{FleetMember, FleetSetup};
use crate::files;
use crate::playbooks::{connection_programs, harness_vars};
use crate::{Ctx, HarnessError};

/// A fleet run's directory and its members' VMs, in fleet order.
#[derive(Debug, Clone)]
pub struct Running {
    /// The fleet run's directory: the members' inventory, the connection, the segment's switch,
    /// the logs, the golden image the members' overlays stand on.
    pub dir: Utf8PathBuf,
    pub records: Vec<RunRecord>,
}

impl Running {
    /// The fleet run's own files.
    pub fn run_dir(&self) -> RunDir {
        RunDir::new(&self.dir)
    }
}

/// Reserve every member's memory at once, machine-wide: all or none, so a fleet that half fits
/// never boots half its members.
pub fn reserve(ctx: &Ctx, inputs: &FleetInputs, what: &str) -> Result<Vec<Reserved>, HarnessError> {
    let requests: Vec<ReservationRequest> = inputs
        .members
        .iter()
        .map(|m| ReservationRequest {
            vm: m.vm.to_string(),
            mem_mib: u64::from(m.inputs.profile.mem_mib),
            vcpus: m.inputs.profile.vcpus,
            checkout: ctx.settings.repo.clone(),
            what: what.to_owned(),
        })
        .collect();
    crate::boot::reserve_all(ctx, &requests, inputs.available_mib)
}

/// Bring the segment up and boot every member on it from `base` (the golden image pinned in the
/// fleet's directory), side by side. On failure, the members booted are handed back.
pub fn boot(
    ctx: &Ctx,
    inputs: &FleetInputs,
    accel: Accel,
    base: &Utf8Path,
) -> Result<Vec<RunRecord>, (HarnessError, Vec<RunRecord>)> {
    let (key, public_key) = ctx
        .machine
        .provisioner()
        .keypair(&ctx.settings.key_dir())
        .map_err(|e| (e, Vec::new()))?;
    let mut requests = Vec::new();
    for member in &inputs.members {
        let mac = boma_vm::mac_for(member.vm.as_str());
        let seed =
            crate::boot::seed_documents(&member.inputs, &public_key, member.vm.as_str(), &mac)
                .map_err(|e| (e, Vec::new()))?;
        let cidr = member.nic.cidr();
        let network_config = boma_cloudinit::fleet_network_config(
            &boma_cloudinit::NetworkConfig {
                mac: &mac,
                unreachable: &inputs.real_addresses,
            },
            &boma_cloudinit::FleetNic {
                mac: &member.nic.mac,
                address: &cidr,
            },
        );
        let profile = &member.inputs.profile;
        let request = UpRequest {
            host: member.name.to_string(),
            name: member.vm.clone(),
            mac,
            base_image: base.to_owned(),
            base: BaseImage::Golden,
            mem_mib: profile.mem_mib,
            vcpus: profile.vcpus,
            published_ports: profile.ports(),
            accel,
            user_data: seed.user_data,
            meta_data: seed.meta_data,
            network_config,
            user: boma_cloudinit::DEFAULT_USER.to_owned(),
            key: key.clone(),
            exclusive: false,
        };
        requests.push((request, FleetNic::new(&member.nic, inputs.segment.clone())));
    }
    let names: Vec<String> = inputs.members.iter().map(|m| m.name.to_string()).collect();
    say!(
        "fleet {}: booting {} side by side on {}",
        inputs.name(),
        names.join(", "),
        inputs.segment
    );
    ctx.with_effects(inputs.backend.kind, accel, |fx| {
        lifecycle::segment_up(fx, &inputs.segment).map_err(|e| (e.into(), Vec::new()))?;
        lifecycle::up_members(fx, &requests)
            .map_err(|MembersUpFailure { error, records }| (error.into(), records))
    })
}

/// Write what every playbook run reads: the members' inventory, the fleet's connection (its
/// wrapper's table maps each member's name and fleet address to its VM), and the verify
/// playbooks' variables (each member's, and the fleet's). Written again after every round: a
/// new lease may move a member (libvirt).
pub fn write_files(ctx: &Ctx, inputs: &FleetInputs, running: &Running) -> Result<(), HarnessError> {
    let files = running.run_dir();
    super::preflight::write_inventory(ctx, inputs, &files.inventory())?;
    let (wrapper, ssh) = connection_programs()?;
    let members: Vec<FleetMember<'_>> = inputs
        .members
        .iter()
        .zip(&running.records)
        .map(|(member, record)| FleetMember {
            vm: &record.name,
            name: &member.name,
            address: member.nic.address,
            target: &record.ssh,
        })
        .collect();
    crate::connect::write_fleet_connection(
        &files,
        &FleetSetup {
            members: &members,
            wrapper: &wrapper,
            ssh: &ssh,
        },
    )?;
    for (member, record) in inputs.members.iter().zip(&running.records) {
        let own = record.run_dir();
        for index in 0..member.inputs.profile.verify.len() {
            write_vars(
                &own.harness_vars(index),
                member.name.as_str(),
                inputs,
                index,
            )?;
        }
    }
    let everyone: Vec<&str> = inputs.members.iter().map(|m| m.name.as_str()).collect();
    for index in 0..inputs.fleet.verify().len() {
        write_vars(
            &files.harness_vars(index),
            &everyone.join(","),
            inputs,
            index,
        )?;
    }
    Ok(())
}

fn write_vars(
    path: &Utf8Path,
    hosts: &str,
    inputs: &FleetInputs,
    index: usize,
) -> Result<(), HarnessError> {
    let vars = harness_vars(
        hosts,
        &inputs.real_addresses,
        &super::playbooks::results_on_guest(index),
    );
    files::write(path, &serde_json::to_string_pretty(&vars).expect("json"))
}

/// Remove every member, then the segment, then the fleet's directory. Every removal is tried;
/// the first error is returned.
pub fn teardown(ctx: &Ctx, inputs: &FleetInputs, running: &Running) -> Result<(), HarnessError> {
    let step = phase("down");
    let mut first: Option<HarnessError> = None;
    for record in &running.records {
        let removed = ctx.with_effects(record.backend, record.accel, |fx| {
            lifecycle::remove(fx, &record.name, Some(record))
        });
        if let Err(e) = removed {
            say!("could not remove {}: {e}", record.name);
            first.get_or_insert(e.into());
        }
    }
    let down = ctx.with_effects(inputs.segment.kind(), Accel::Tcg, |fx| {
        lifecycle::segment_down(fx, &inputs.segment)
    });
    if let Err(e) = down {
        say!("could not take down the {}: {e}", inputs.segment);
        first.get_or_insert(e.into());
    }
    if let Err(e) = files::empty_dir(&running.dir) {
        first.get_or_insert(e);
    }
    match first {
        None => {
            step.done();
            Ok(())
        }
        Some(e) => {
            step.failed();
            Err(e)
        }
    }
}

/// Keep a failed fleet powered off (a run of several: running guests would take the CPU the
/// next runs need): every member powered off with its disk and record, the segment taken down
/// (`cargo xtask start <member>` brings it up again), the fleet's directory kept (the members'
/// overlays stand on the golden image pinned there). Whether every member is off.
pub fn keep_powered_off(ctx: &Ctx, inputs: &FleetInputs, running: &Running) -> bool {
    let mut all_off = true;
    for record in &running.records {
        let off = ctx.with_effects(record.backend, record.accel, |fx| {
            lifecycle::keep_powered_off(fx, record)
        });
        if let Err(e) = off {
            all_off = false;
            say!(
                "could not power {} off: {e}; it keeps running (`cargo xtask prune` removes it)",
                record.name
            );
        }
    }
    if all_off {
        let _ = ctx.with_effects(inputs.segment.kind(), Accel::Tcg, |fx| {
            lifecycle::segment_down(fx, &inputs.segment)
        });
    }
    all_off
}

/// The one failure policy for a fleet whose members booted: an interrupt removes them all with
/// the segment (unless `keep`); any other failure collects one bundle holding every member's
/// and keeps them, saying how to inspect and clean up. Returns the bundle's path.
pub fn after_failure(
    ctx: &Ctx,
    inputs: &FleetInputs,
    running: &Running,
    error: &HarnessError,
    keep: bool,
) -> Option<Utf8PathBuf> {
    let fleet = format!("the fleet {}", inputs.name());
    let interrupted = crate::fate::on_interrupt(
        error,
        keep,
        &fleet,
        || shell_hints(inputs, running),
        || teardown(ctx, inputs, running),
    );
    if interrupted {
        return None;
    }
    say!("failed after boot: collecting diagnostics of every member, keeping them");
    // The error names the member that never answered; each member's console end is cheap.
    for (member, record) in inputs.members.iter().zip(&running.records) {
        crate::fate::show_console_tail(error, record, Some(member.name.as_str()));
    }
    let bundle = collect_diagnostics(ctx, inputs, running);
    say!("");
    say!("the fleet {} is kept for inspection:", inputs.name());
    for (member, record) in inputs.members.iter().zip(&running.records) {
        say!("  {}: {}", member.name, record.ssh.shell_hint());
        say!("  {}: console {}", member.name, record.console_log());
    }
    match &bundle {
        Some(dir) => say!("  diagnostics:  {dir}"),
        None => say!("  diagnostics:  could not be collected (see above)"),
    }
    say!("  clean up:     cargo xtask prune   (every test VM, the fleet's network with them)");
    bundle
}

fn shell_hints(inputs: &FleetInputs, running: &Running) -> String {
    let hints: Vec<String> = inputs
        .members
        .iter()
        .zip(&running.records)
        .map(|(m, r)| format!("{}: {}", m.name, r.ssh.shell_hint()))
        .collect();
    hints.join("; ")
}

/// The fleet's bundle, `<diagnostics root>/<fleet run>/`: the fleet's own files (the command
/// log, the folded Ansible log, the idempotence records, the peer probes) and, per member in
/// `<member>/`, its guest's evidence and serial console (boma-vm), its captures and reboot
/// diffs of every phase (`after-apply/`, `after-round-N/`) and its verify results.
pub fn collect_diagnostics(
    ctx: &Ctx,
    inputs: &FleetInputs,
    running: &Running,
) -> Option<Utf8PathBuf> {
    let out = ctx.settings.diagnostics_root.join(inputs.dir_name.as_str());
    let step = phase("diagnostics");
    if let Err(e) = files::create_dir(&out) {
        step.failed();
        say!("could not collect diagnostics: {e}");
        return None;
    }
    files::copy_run_evidence(&running.dir, &out);
    let mut complete = true;
    for (member, record) in inputs.members.iter().zip(&running.records) {
        let dir = out.join(member.name.as_str());
        match diagnostics::collect(ctx.machine.guest(), record, &dir) {
            Ok(dir) => files::copy_run_evidence(&record.dir, &dir),
            Err(e) => {
                complete = false;
                say!("could not collect the diagnostics of {}: {e}", member.name);
            }
        }
    }
    if complete {
        step.done();
    } else {
        step.failed();
    }
    Some(out)
}
