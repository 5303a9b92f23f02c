//! The diagnostics bundle written when a run fails after boot: what an operator reads first.

use boma_exec::say;
use std::time::Duration;

use boma_exec::redact::redact;
use camino::{Utf8Path, Utf8PathBuf};

use crate::{Guest, RunRecord, VmError};

/// File name → command run on the guest (as root).
pub const COLLECTED: &[(&str, &str)] = &[
    ("nft-ruleset.txt", "sudo nft list ruleset"),
    ("docker-ps.txt", "sudo docker ps -a"),
    ("ss-tlnp.txt", "sudo ss -tlnp"),
    ("journal-boot.txt", "sudo journalctl -b --no-pager"),
    ("critical-chain.txt", "sudo systemd-analyze critical-chain"),
    ("cloud-init-status.txt", "sudo cloud-init status --long"),
];

/// Where the bundle of `vm` goes: `~/integration-runs/<vm>/`.
pub fn bundle_dir(home: &Utf8Path, vm: &str) -> Utf8PathBuf {
    home.join("integration-runs").join(vm)
}

/// Collect the bundle into `out`: each command's output (or why it could not run), the serial
/// console and the run record. Never fails half-way: a guest that is unreachable still gets its
/// console copied. Returns the directory.
pub fn collect(
    guest: &dyn Guest,
    record: &RunRecord,
    out: &Utf8Path,
) -> Result<Utf8PathBuf, VmError> {
    std::fs::create_dir_all(out).map_err(|e| VmError::io(out, e))?;
    say!("collecting diagnostics into {out}");
    let mut reachable = true;
    for (file, command) in COLLECTED {
        let text = if reachable {
            match guest.run(&record.ssh, command, Duration::from_secs(60), false) {
                Ok(o) if o.status.code() == Some(crate::guest::ssh::SSH_FAILED) => {
                    reachable = false;
                    format!(
                        "$ {command}\n(ssh failed: the guest is unreachable)\n{}",
                        o.stderr
                    )
                }
                Ok(o) => format!(
                    "$ {command}\n(exit status {})\n{}{}",
                    o.status
                        .code()
                        .map_or("unknown".to_owned(), |c| c.to_string()),
                    o.stdout,
                    o.stderr
                ),
                Err(e) => format!("$ {command}\n(could not run: {e})\n"),
            }
        } else {
            format!("$ {command}\n(skipped: the guest is unreachable over ssh)\n")
        };
        write(out, file, &text)?;
    }
    match std::fs::read(record.console_log()) {
        Ok(bytes) => write(out, "console.log", &String::from_utf8_lossy(&bytes))?,
        Err(e) => write(
            out,
            "console.log",
            &format!("(no serial console at {}: {e})\n", record.console_log()),
        )?,
    }
    let run = serde_json::to_string_pretty(record).expect("a run record serialises");
    write(out, "run.json", &run)?;
    Ok(out.to_owned())
}

fn write(dir: &Utf8Path, file: &str, text: &str) -> Result<(), VmError> {
    let path = dir.join(file);
    std::fs::write(&path, redact(text)).map_err(|e| VmError::io(&path, e))
}
