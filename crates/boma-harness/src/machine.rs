//! The machine the harness runs on, as one narrow trait: hypervisor backends, SSH, disks,
//! the golden image, the KVM verdict, Ansible. The steps decide; the machine acts. Tests swap
//! in a fake machine to drive every failure and interrupt path without a VM.

use boma_exec::CmdExt;
use boma_vm::lifecycle::{Disks, RealDisks, Waits};
use boma_vm::qemu::QemuBackend;
use boma_vm::{Accel, Backend, BackendKind, Guest, OpenSsh};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::Shell;

use crate::{BackendChoice, HarnessError, Settings, ansible, golden, preflight};

pub trait Machine {
    /// The backend a new run uses, as the operator chose (resolving `auto`).
    fn choose_backend(&self) -> Result<BackendKind, HarnessError>;
    /// A backend of `kind`.
    fn backend(&self, kind: BackendKind) -> Box<dyn Backend + '_>;
    fn guest(&self) -> &dyn Guest;
    fn disks(&self) -> &dyn Disks;
    /// The verified golden image to boot.
    fn golden_image(&self) -> Result<Utf8PathBuf, HarnessError>;
    /// KVM if a probe proves it works, else TCG.
    fn accel(&self, golden: &Utf8Path) -> Result<Accel, HarnessError>;
    /// The harness's SSH key pair: (private key path, public key).
    fn keypair(&self) -> Result<(Utf8PathBuf, String), HarnessError>;
    /// `MemAvailable`, in MiB.
    fn available_mib(&self) -> u64;
    /// Refuse when the run directory's filesystem is too full for a run.
    fn guard_disk(&self, dir: &Utf8Path) -> Result<(), HarnessError>;
    /// Whether a tool is missing from PATH.
    fn tool_missing(&self, tool: &str) -> bool;
    /// Run `ansible-playbook` with `args`; a failed play is [`HarnessError::Playbook`].
    fn run_playbook(&self, step: &str, args: &[String]) -> Result<(), HarnessError>;
    /// How long the lifecycle waits for a guest under `accel`.
    fn waits(&self, accel: Accel) -> Waits {
        Waits::for_accel(accel)
    }
}

/// This machine, for real.
pub struct RealMachine<'a> {
    sh: &'a Shell,
    settings: &'a Settings,
    guest: OpenSsh<'a>,
    disks: RealDisks<'a>,
}

impl<'a> RealMachine<'a> {
    pub fn new(sh: &'a Shell, settings: &'a Settings) -> RealMachine<'a> {
        RealMachine {
            sh,
            settings,
            guest: OpenSsh::new(sh),
            disks: RealDisks { sh },
        }
    }
}

impl Machine for RealMachine<'_> {
    fn choose_backend(&self) -> Result<BackendKind, HarnessError> {
        match self.settings.backend {
            BackendChoice::Qemu | BackendChoice::Auto => Ok(BackendKind::Qemu),
            BackendChoice::Libvirt => Err(HarnessError::Usage(
                "the libvirt backend is not available in this build; use --backend qemu".into(),
            )),
        }
    }

    fn backend(&self, kind: BackendKind) -> Box<dyn Backend + '_> {
        match kind {
            BackendKind::Qemu | BackendKind::Libvirt => Box::new(QemuBackend::new(self.sh)),
        }
    }

    fn guest(&self) -> &dyn Guest {
        &self.guest
    }

    fn disks(&self) -> &dyn Disks {
        &self.disks
    }

    fn golden_image(&self) -> Result<Utf8PathBuf, HarnessError> {
        golden::resolve(self.sh, self.settings)
    }

    fn accel(&self, golden: &Utf8Path) -> Result<Accel, HarnessError> {
        let cache = self.settings.cache_dir.join("kvm-probe.json");
        Ok(boma_vm::accel::detect(
            self.sh,
            &self.settings.runs_root,
            golden,
            &cache,
        )?)
    }

    fn keypair(&self) -> Result<(Utf8PathBuf, String), HarnessError> {
        Ok(boma_vm::keys::ensure_keypair(
            self.sh,
            &self.settings.key_dir(),
        )?)
    }

    fn available_mib(&self) -> u64 {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        boma_vm::memory::available_mib(&meminfo).unwrap_or(0)
    }

    fn guard_disk(&self, dir: &Utf8Path) -> Result<(), HarnessError> {
        Ok(boma_vm::memory::guard_disk(dir)?)
    }

    fn tool_missing(&self, tool: &str) -> bool {
        preflight::tool_missing(tool)
    }

    fn run_playbook(&self, step: &str, args: &[String]) -> Result<(), HarnessError> {
        ansible::run(&self.settings.repo, step, args)
    }
}

/// `qemu-img info`'s format of a file.
pub(crate) fn image_format(sh: &Shell, path: &Utf8Path) -> Result<String, HarnessError> {
    let info = xshell::cmd!(sh, "qemu-img info --output=json {path}")
        .exec()
        .read()?;
    Ok(serde_json::from_str::<serde_json::Value>(&info)
        .ok()
        .and_then(|v| v["format"].as_str().map(str::to_owned))
        .unwrap_or_default())
}
