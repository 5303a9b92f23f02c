//! The harness's own files — the run's records in its VM directory (the transient inventory,
//! the variable files every `ansible-playbook` gets, the checks' results, the folded Ansible
//! log, the captured states, the reboot diff), the bundle's copies of them, the layers'
//! idempotence verdicts — written, read back and removed through here.
//!
//! They are the run's records, not effects on the machine under test, so the harness writes
//! them itself; the renderers that produce their contents are pure and live in the crates.
//! Where each file lies is [`boma_vm::RunDir`]'s to say.

use boma_vm::{RunDir, RunRecord};
use camino::{Utf8Path, Utf8PathBuf};

use crate::error::HarnessError;

/// Write `text` to `path`.
pub fn write(path: &Utf8Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text).map_err(|e| HarnessError::io(path, e))
}

/// Make `dir` and its parents.
pub fn create_dir(dir: &Utf8Path) -> Result<(), HarnessError> {
    std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(dir, e))
}

/// The text of `path`; `None` when there is no such file.
pub fn read_if_present(path: &Utf8Path) -> Result<Option<String>, HarnessError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HarnessError::io(path, e)),
    }
}

/// Remove the file at `path`: a file left from before must not pass for this run's. One that
/// is not there is no error.
pub fn remove_if_present(path: &Utf8Path) -> Result<(), HarnessError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HarnessError::io(path, e)),
    }
}

/// Forget the cached facts of `run`'s VM: the guest rebooted, so they describe a boot that is
/// over.
pub fn forget_facts(run: &RunDir) {
    let _ = std::fs::remove_dir_all(run.facts());
}

/// Write `text` as `file_name` in `dir`, made first. Returns the file's path.
pub fn write_into(
    dir: &Utf8Path,
    file_name: &str,
    text: &str,
) -> Result<Utf8PathBuf, HarnessError> {
    create_dir(dir)?;
    let file = dir.join(file_name);
    write(&file, text)?;
    Ok(file)
}

/// Remove `dir` and everything in it; one that is not there is no error.
pub fn empty_dir(dir: &Utf8Path) -> Result<(), HarnessError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HarnessError::io(dir, e)),
        _ => Ok(()),
    }
}

/// Remove a run directory whose VM never booted (refused or failed before boot): not even the
/// pinned image stays. A cleanup: what cannot be removed is left.
pub fn remove_unbooted(run_dir: &Utf8Path) {
    let _ = std::fs::remove_dir_all(run_dir);
}

/// The serial console of `record`'s VM as text (empty when it cannot be read).
pub fn console_text(record: &RunRecord) -> String {
    let console = std::fs::read(record.console_log()).unwrap_or_default();
    String::from_utf8_lossy(&console).into_owned()
}

/// Copy the run's records into the diagnostics bundle `bundle`, each masked, those that exist:
/// its logs, captures and diff ([`RunDir::evidence`]) and every verify playbook's results.
pub fn copy_evidence(run: &RunDir, bundle: &Utf8Path) {
    let mut results: Vec<Utf8PathBuf> = run
        .path()
        .read_dir_utf8()
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().to_owned())
                .filter(|p| p.file_name().is_some_and(RunDir::is_verify_results))
                .collect()
        })
        .unwrap_or_default();
    results.sort();
    for file in run.evidence().into_iter().chain(results) {
        if let Some(name) = file.file_name()
            && file.is_file()
        {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let _ = std::fs::write(bundle.join(name), boma_exec::redact::redact(&text));
        }
    }
}

/// Copy a fleet run's (or a member's) records from `from` into the bundle's `to`, each masked:
/// its logs, records, states, diffs and results (`.txt`, `.json`, `.jsonl`, `.log`, not its
/// run record, console, connection or disks), and each phase's directory (`after-apply/`,
/// `after-round-N/`) the same way.
pub fn copy_run_evidence(from: &Utf8Path, to: &Utf8Path) {
    copy_evidence_files(from, to, true);
}

fn copy_evidence_files(from: &Utf8Path, to: &Utf8Path, phases: bool) {
    let Ok(entries) = from.read_dir_utf8() else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by(|a, b| a.file_name().cmp(b.file_name()));
    for entry in entries {
        let name = entry.file_name();
        let path = entry.path();
        if path.is_dir() {
            if phases && name.starts_with("after-") {
                let into = to.join(name);
                if std::fs::create_dir_all(&into).is_ok() {
                    copy_evidence_files(path, &into, false);
                }
            }
            continue;
        }
        let evidence = [".txt", ".json", ".jsonl", ".log"]
            .iter()
            .any(|ext| name.ends_with(ext))
            && !matches!(name, "run.json" | "console.log" | "connection-vars.json");
        if evidence {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let _ = std::fs::write(to.join(name), boma_exec::redact::redact(&text));
        }
    }
}

/// Put `text` (the run's report) into the diagnostics bundle `bundle`, as `report.json`.
pub fn add_report_to_bundle(bundle: &Utf8Path, text: &str) {
    let _ = std::fs::write(bundle.join("report.json"), text);
}
