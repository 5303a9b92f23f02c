//! The reboot diff, run: capture the guest's state (one ssh round trip) and the controller's
//! probes of every published port, before and after the reboot; compare them with
//! `boma-state`; turn what was lost into failed checks. Always captured in this run — never
//! taken from a cache.

use std::time::Duration;

use boma_exec::progress::{self, phase};
use boma_exec::say;
use boma_report::CheckRecord;
use boma_state::{Ignore, ProbeResult, Snapshot};
use boma_vm::RunRecord;
use camino::Utf8Path;

use crate::files::{self, RunFiles};
use crate::preflight::Inputs;
use crate::probe::{PortTarget, ProbeOutcome};
use crate::{Ctx, HarnessError, checks};

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
    let probes = probe_ports(ctx, inputs, record);
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

/// Probe each published port from the controller, as the profile says.
fn probe_ports(ctx: &Ctx, inputs: &Inputs, record: &RunRecord) -> Vec<ProbeOutcome> {
    inputs
        .profile
        .published_ports
        .iter()
        .filter_map(|port| {
            let endpoint = record.published.get(&port.port)?;
            let target = PortTarget {
                port: port.port,
                kind: port.probe,
                name: port.name.clone(),
                host: endpoint.host.clone(),
                endpoint_port: endpoint.port,
            };
            Some(ctx.machine.ports().probe(&target, PROBE_WITHIN))
        })
        .collect()
}

/// Compare the two captures and judge the diff ([`checks::from_reboot_diff`]). Writes
/// `reboot-diff.txt` (with how many findings each profile pattern hid) and `reboot-diff.json`,
/// and prints the text.
pub fn compare(
    before: &Captured,
    after: &Captured,
    ignore_patterns: &[String],
    files: &RunFiles,
) -> Result<Vec<CheckRecord>, HarnessError> {
    let ignore = Ignore::with_patterns(ignore_patterns)
        .map_err(|e| HarnessError::Refused(format!("reboot_diff_ignore: {e}")))?;
    let diff = boma_state::diff(&before.snapshot, &after.snapshot, &ignore);
    let text = boma_state::render_text(&diff);
    files::write(&files.reboot_diff(), &text)?;
    files::write(
        &files.reboot_diff().with_extension("json"),
        &serde_json::to_string_pretty(&diff).expect("a diff serialises"),
    )?;
    progress::line(text.trim_end());
    Ok(checks::from_reboot_diff(&diff))
}

/// The built-in `no_route_to_fleet`: after everything the playbooks did and the reboot, each
/// real host's address must have no route from the guest.
pub fn fleet_routes(
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
