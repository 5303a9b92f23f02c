//! Holds that outlive the process: a VM whose run has ended (a failed run keeps its VM for
//! inspection, powered on or off) still boots from its chain of layers, but the `flock`s of
//! [`crate::LayerHold`] went with the process that took them. A keep record names the VM's run
//! directory and the layers its disk is backed by; while that directory exists, removal
//! treats those layers as busy.
//!
//! Why the run directory: it is created before the VM's disk and removed only once the VM is
//! gone (`down`, `prune`), so it is the one thing that exists exactly as long as a disk
//! backed by the chain can be started again. A record written only after its directory exists
//! therefore never reads as stale while its VM lives.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write as _};

use boma_name::VmName;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, io_err};
use crate::key::LayerKey;

/// The directory of keep records, inside the store.
pub const KEEP_DIR: &str = "kept";

/// One VM's record: `<store>/kept/<vm>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepRecord {
    /// The VM's run directory (absolute): the record is live while it exists.
    pub run_dir: Utf8PathBuf,
    /// Every layer the VM's disk is backed by.
    pub keys: BTreeSet<LayerKey>,
}

/// Writes `record` for `vm` atomically (a reader sees the old record or the new one).
pub fn write(dir: &Utf8Path, vm: &VmName, record: &KeepRecord) -> Result<(), StoreError> {
    // A VM name is a DNS label: always a plain file name.
    let name = format!("{vm}.json");
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let path = dir.join(&name);
    let part = dir.join(format!("{name}.{}.part", std::process::id()));
    let text = serde_json::to_string_pretty(record).expect("a keep record serializes");
    let mut file = File::create(&part).map_err(io_err("create", &part))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", &part))?;
    fs::rename(&part, &path).map_err(io_err("publish", &path))?;
    Ok(())
}

/// The keys every live record names; stale records (their run directory is gone) are
/// removed when `sweep` is set (the caller holds the store lock), and unreadable ones are
/// skipped (a record is only ever replaced whole, so one that does not parse is not ours).
pub fn live_keys(dir: &Utf8Path, sweep: bool) -> Result<BTreeSet<LayerKey>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut keys = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !name.ends_with(".json") {
            continue;
        }
        let path = dir.join(&name);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let Ok(record) = serde_json::from_str::<KeepRecord>(&text) else {
            continue;
        };
        if record.run_dir.is_dir() {
            keys.extend(record.keys);
        } else if sweep {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_live_while_its_run_directory_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        let dir = root.join(KEEP_DIR);
        let run_dir = root.join("run/boma-it-a-1");
        fs::create_dir_all(&run_dir).unwrap();
        let key = LayerKey::parse(&"a".repeat(64)).unwrap();
        let record = KeepRecord {
            run_dir: run_dir.clone(),
            keys: BTreeSet::from([key.clone()]),
        };
        write(&dir, &VmName::parse("boma-it-a-1").unwrap(), &record).unwrap();
        assert_eq!(live_keys(&dir, true).unwrap(), BTreeSet::from([key]));
        fs::remove_dir_all(&run_dir).unwrap();
        assert!(live_keys(&dir, false).unwrap().is_empty());
        assert!(dir.join("boma-it-a-1.json").exists(), "no sweep asked");
        assert!(live_keys(&dir, true).unwrap().is_empty());
        assert!(!dir.join("boma-it-a-1.json").exists(), "swept");
    }
}
