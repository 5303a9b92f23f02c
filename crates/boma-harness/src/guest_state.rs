//! The guest's state as the harness reads it: captured (one ssh round trip) with the
//! controller's probes of every published port, saved, and two captures compared with
//! `boma-state`'s pure diff, what was lost becoming failed checks; and the built-in look for a
//! route to the real fleet. Always captured in this run — never taken from a cache.

use std::time::Duration;

use boma_exec::progress::{self, phase};
use boma_exec::say;
use boma_report::CheckRecord;
use boma_state::{Ignore, ProbeResult, Snapshot};
use boma_vm::{RunDir, RunRecord};
use camino::{Utf8Path, Utf8PathBuf};

use crate::checks;
use crate::ctx::Ctx;
use crate::error::HarnessError;
use crate::files;
use crate::guest_file::{self, GuestFile};
use crate::preflight::Inputs;
use crate::probe::{CA_FILE, CaFile, PortTarget, ProbeOutcome};

/// One capture: the snapshot the diff compares, and what the checks read from it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub snapshot: Snapshot,
    pub probes: Vec<ProbeOutcome>,
    /// `systemctl is-system-running` (`unknown` when it could not be read).
    pub system_state: String,
    pub failed_units: Vec<String>,
}

/// How long the capture may take: its wait for the boot to finish (at most 120 s), its wait
/// for systemd's jobs and restart loops to settle, and a dozen commands under TCG. A capture
/// cut short by this loses the sections it did not reach (`section_lost`).
const CAPTURE_TIMEOUT: Duration =
    Duration::from_secs(120 + boma_state::SETTLE_WITHIN_SECONDS as u64 + 90);
/// How long a probe keeps trying (services may still be starting after a boot).
const PROBE_WITHIN: Duration = Duration::from_secs(45);

/// Capture the guest's state and probe every published port; save the snapshot to `save_to`.
pub fn capture(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &RunRecord,
    save_to: &Utf8Path,
    when: &str,
) -> Result<Captured, HarnessError> {
    let step = phase(format!("capture state {when}"));
    let captured = step.close(capture_inner(ctx, inputs, record, save_to))?;
    Ok(captured)
}

fn capture_inner(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &RunRecord,
    save_to: &Utf8Path,
) -> Result<Captured, HarnessError> {
    let out =
        ctx.machine
            .guest()
            .run_script(&record.ssh, boma_state::CAPTURE_SCRIPT, CAPTURE_TIMEOUT)?;
    if out.status.code() == Some(boma_vm::guest::ssh::SSH_FAILED) {
        return Err(HarnessError::Vm(boma_vm::VmError::Backend(format!(
            "cannot capture the state of {}: ssh failed: {}",
            record.name,
            out.stderr.trim()
        ))));
    }
    let guest = boma_state::parse_capture(&out.stdout).map_err(|e| {
        HarnessError::Vm(boma_vm::VmError::Backend(format!(
            "cannot read the state capture of {}: {e}",
            record.name
        )))
    })?;
    let probes = probe_ports(ctx, inputs, record, PROBE_WITHIN)?;
    let system_state = guest
        .system
        .available()
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let failed_units = guest
        .failed_units
        .available()
        .map(|set| set.iter().cloned().collect())
        .unwrap_or_default();
    let snapshot = Snapshot {
        guest,
        probes: probes
            .iter()
            .map(|p| ProbeResult {
                port: p.port,
                kind: p.kind.clone(),
                ok: p.ok,
                reason: p.reason.clone(),
            })
            .collect(),
    };
    files::write(
        save_to,
        &serde_json::to_string_pretty(&snapshot).expect("a snapshot serialises"),
    )?;
    for p in &probes {
        say!(
            "    probe {}/{} from the controller: {} ({})",
            p.port,
            p.kind,
            p.reason,
            p.detail
        );
    }
    Ok(Captured {
        snapshot,
        probes,
        system_state,
        failed_units,
    })
}

/// Probe each published port from the controller, as the profile says; an https port with a
/// `ca` first has its CA read from the guest and kept in the run directory.
fn probe_ports(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &RunRecord,
    within: Duration,
) -> Result<Vec<ProbeOutcome>, HarnessError> {
    let run_dir = record.run_dir();
    let mut outcomes = Vec::new();
    for port in &inputs.profile.published_ports {
        let Some(endpoint) = record.published.get(&port.port) else {
            continue;
        };
        let ca = match &port.ca {
            Some(guest_path) => Some(CaFile {
                guest_path: guest_path.clone(),
                local: keep_ca(ctx, record, &run_dir.probe_ca(port.port), guest_path)?,
            }),
            None => None,
        };
        let target = PortTarget {
            port: port.port,
            kind: port.probe,
            name: port.name.clone(),
            host: endpoint.host.clone(),
            endpoint_port: endpoint.port,
            ca,
            server: port.server.clone(),
        };
        outcomes.push(ctx.machine.ports().probe(&target, within));
    }
    Ok(outcomes)
}

/// Copy the guest's CA at `guest_path` alone into `dir` (emptied first); `None` when the guest
/// has no such file.
fn keep_ca(
    ctx: &Ctx,
    record: &RunRecord,
    dir: &Utf8Path,
    guest_path: &str,
) -> Result<Option<Utf8PathBuf>, HarnessError> {
    files::empty_dir(dir)?;
    let GuestFile::Present(text) = guest_file::read(ctx.machine.guest(), record, guest_path)?
    else {
        return Ok(None);
    };
    files::write_into(dir, CA_FILE, &text).map(Some)
}

/// Compare the two captures and judge the diff ([`checks::from_reboot_diff`]). Writes
/// `reboot-diff.txt` (with how many findings each profile pattern hid) and `reboot-diff.json`,
/// and prints the text.
pub fn compare(
    before: &Captured,
    after: &Captured,
    ignore_patterns: &[String],
    files: &RunDir,
) -> Result<Vec<CheckRecord>, HarnessError> {
    let ignore = Ignore::with_patterns(ignore_patterns)
        .map_err(|e| HarnessError::Refused(format!("reboot_diff_ignore: {e}")))?;
    let diff = boma_state::diff(&before.snapshot, &after.snapshot, &ignore);
    let text = boma_state::render_text(&diff);
    files::write(&files.reboot_diff(), &text)?;
    files::write(
        &files.reboot_diff_json(),
        &serde_json::to_string_pretty(&diff).expect("a diff serialises"),
    )?;
    progress::line(text.trim_end());
    Ok(checks::from_reboot_diff(&diff))
}

/// The built-in checks every host gets, into `found`: the system is running in the state
/// `now` captured (`system_running`), and no real host's address has a route from the guest
/// (`no_route_to_fleet`). Each is kept as soon as it is judged.
pub fn builtin_checks(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &RunRecord,
    now: &Captured,
    found: &mut Vec<CheckRecord>,
) -> Result<(), HarnessError> {
    found.push(checks::system_running(&now.system_state, &now.failed_units));
    found.push(fleet_routes(ctx, inputs, record)?);
    Ok(())
}

/// The built-in `no_route_to_fleet`: after everything the playbooks did and the reboot, each
/// real host's address must have no route from the guest.
fn fleet_routes(
    ctx: &Ctx,
    inputs: &Inputs,
    record: &RunRecord,
) -> Result<CheckRecord, HarnessError> {
    if inputs.fleet_addresses.is_empty() {
        return Ok(checks::no_route_to_fleet(&[], ""));
    }
    let command = checks::fleet_route_command(&inputs.fleet_addresses);
    let out = ctx
        .machine
        .guest()
        .run(&record.ssh, &command, Duration::from_secs(60), false)?;
    Ok(checks::no_route_to_fleet(
        &inputs.fleet_addresses,
        &out.stdout,
    ))
}
