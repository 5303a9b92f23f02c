//! Creating a run's disks: the copy-on-write overlay and the NoCloud seed.

use boma_exec::CmdExt;
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::{RunDir, VmError};

/// Virtual size of each run's overlay; cloud-init grows the root filesystem to it.
const OVERLAY_SIZE: &str = "10G";

/// Creating disks: the effects of `up` that are not the hypervisor.
pub trait Disks {
    /// A copy-on-write overlay of `base` (the golden image or a layer) at `overlay`.
    fn create_overlay(&self, base: &Utf8Path, overlay: &Utf8Path) -> Result<(), VmError>;
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
    fn create_overlay(&self, base: &Utf8Path, overlay: &Utf8Path) -> Result<(), VmError> {
        let sh = self.sh;
        cmd!(
            sh,
            "qemu-img create -q -f qcow2 -F qcow2 -b {base} {overlay} {OVERLAY_SIZE}"
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

/// Give the stopped VM of `dir` a fresh overlay on `base` (a layer just stored), at the same
/// path, so the hypervisor's definition stays valid. The new overlay is made beside the old
/// one and renamed over it: at every moment the VM has a valid disk, its own until the new
/// one exists — a failure leaves the old overlay and nothing beside it.
pub fn replace_overlay(disks: &dyn Disks, base: &Utf8Path, dir: &RunDir) -> Result<(), VmError> {
    let overlay = dir.overlay();
    let fresh = dir.overlay_replacement();
    let _ = std::fs::remove_file(&fresh);
    if let Err(e) = disks.create_overlay(base, &fresh) {
        let _ = std::fs::remove_file(&fresh);
        return Err(e);
    }
    std::fs::rename(&fresh, &overlay).map_err(|e| VmError::io(&overlay, e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeDisks;

    fn run_dir() -> (tempfile::TempDir, RunDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(camino::Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap());
        std::fs::write(dir.overlay(), "the vm's own disk").unwrap();
        (tmp, dir)
    }

    #[test]
    fn a_replaced_overlay_takes_the_old_ones_path() {
        let (_tmp, dir) = run_dir();
        let disks = FakeDisks {
            fail_overlay: false,
        };
        replace_overlay(&disks, Utf8Path::new("/layers/1"), &dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.overlay()).unwrap(), "overlay");
        assert!(!dir.overlay_replacement().exists());
    }

    #[test]
    fn a_failed_replacement_keeps_the_vms_own_disk_and_leaves_nothing_beside_it() {
        let (_tmp, dir) = run_dir();
        std::fs::write(dir.overlay_replacement(), "a killed run's leftover").unwrap();
        let disks = FakeDisks { fail_overlay: true };
        replace_overlay(&disks, Utf8Path::new("/layers/1"), &dir).unwrap_err();
        assert_eq!(
            std::fs::read_to_string(dir.overlay()).unwrap(),
            "the vm's own disk"
        );
        assert!(!dir.overlay_replacement().exists());
    }
}
