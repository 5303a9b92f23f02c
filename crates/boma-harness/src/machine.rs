//! The machine the harness runs on, as one narrow trait: hypervisor backends, SSH, disks,
//! the golden image, the KVM verdict, Ansible. The steps decide; the machine acts. Tests swap
//! in a fake machine to drive every failure and interrupt path without a VM.

use boma_vm::libvirt::{self, LibvirtBackend};
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
    /// The backends that may hold test VMs here, libvirt first (`prune` asks each).
    fn backends_present(&self) -> Vec<BackendKind> {
        vec![BackendKind::Qemu]
    }
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
    /// Kill what a SIGKILLed harness left running (`ansible-playbook`, `ssh` aimed at a test
    /// VM); returns their command lines.
    fn kill_orphans(&self) -> Vec<String> {
        Vec::new()
    }
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
            BackendChoice::Qemu => Ok(BackendKind::Qemu),
            BackendChoice::Libvirt => {
                for tool in ["virsh", "virt-install"] {
                    if !boma_exec::on_path(tool) {
                        let hint = boma_exec::package_hint(tool).unwrap_or("install it");
                        return Err(HarnessError::Usage(format!(
                            "the libvirt backend needs `{tool}`: {hint}"
                        )));
                    }
                }
                if let Err(why) = libvirt::usable(self.sh) {
                    return Err(HarnessError::Usage(format!(
                        "the libvirt backend is not usable here: {why}; or use --backend qemu"
                    )));
                }
                Ok(BackendKind::Libvirt)
            }
            BackendChoice::Auto => {
                let kind = if libvirt::reachable(self.sh) {
                    BackendKind::Libvirt
                } else {
                    BackendKind::Qemu
                };
                eprintln!(
                    "backend: {kind} ({})",
                    match kind {
                        BackendKind::Libvirt => "virsh reaches a libvirt daemon",
                        BackendKind::Qemu => "no libvirt daemon reachable: QEMU directly",
                    }
                );
                Ok(kind)
            }
        }
    }

    fn backend(&self, kind: BackendKind) -> Box<dyn Backend + '_> {
        match kind {
            BackendKind::Qemu => Box::new(QemuBackend::new(self.sh)),
            BackendKind::Libvirt => {
                Box::new(LibvirtBackend::new(self.sh, &self.settings.runs_root))
            }
        }
    }

    fn backends_present(&self) -> Vec<BackendKind> {
        let mut kinds = Vec::new();
        if libvirt::reachable(self.sh) {
            kinds.push(BackendKind::Libvirt);
        }
        kinds.push(BackendKind::Qemu);
        kinds
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

    fn kill_orphans(&self) -> Vec<String> {
        // Only the harness's own work carries these: a VM's run directory (the transient
        // inventory every ansible-playbook gets) or the harness's SSH key.
        let runs = format!("{}/{}", self.settings.runs_root, boma_vm::NAME_PREFIX);
        let keys = format!("{}/", self.settings.key_dir());
        let markers = [runs.as_str(), keys.as_str()];
        boma_vm::procs::orphans(&markers)
            .into_iter()
            .filter(|orphan| boma_vm::procs::kill_orphan(orphan, &markers))
            .map(|orphan| {
                eprintln!(
                    "+ kill -KILL {}  # left by a killed harness: {}",
                    orphan.pid, orphan.cmdline
                );
                orphan.cmdline
            })
            .collect()
    }

    fn waits(&self, accel: Accel) -> Waits {
        let mut waits = Waits::for_accel(accel);
        if let Some(boot) = self.settings.boot_timeout {
            waits.boot = boot;
        }
        if let Some(reboot) = self.settings.reboot_timeout {
            waits.reboot = reboot;
        }
        waits
    }
}
