//! Creating a run's disks: the copy-on-write overlay and the NoCloud seed.

use boma_exec::CmdExt;
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::VmError;

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
