//! The machine the harness runs on, as a few narrow effects. The steps decide; the machine
//! acts. No policy lives here: which backend, how long to wait, whether memory suffices are
//! pure functions of what these probes return (`backend::resolve`, `preflight`), so that the
//! fake machine the tests use replaces only effects.

use std::time::Duration;

use boma_vm::guest::keys;
use boma_vm::host::{accel, memory};
use boma_vm::hypervisor::libvirt::{self, LibvirtBackend};
use boma_vm::hypervisor::qemu::QemuBackend;
use boma_vm::lifecycle::{Disks, Hypervisors, RealDisks};
use boma_vm::{Accel, BackendKind, Guest, Hypervisor, OpenSsh};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::Shell;

use crate::backend::LibvirtProbe;
use crate::probe::{PortTarget, ProbeOutcome};
use crate::{HarnessError, ansible, golden, real_inventory};

/// What this machine has: read-only probes.
pub trait HostProbe {
    /// Whether libvirt is installed and usable from here.
    fn libvirt(&self) -> LibvirtProbe;
    /// `MemAvailable`, in MiB.
    fn available_mib(&self) -> u64;
    /// Free space on the filesystem holding `dir`, in MiB.
    fn free_disk_mib(&self, dir: &Utf8Path) -> Result<u64, HarnessError>;
    /// Whether a tool is missing from PATH.
    fn tool_missing(&self, tool: &str) -> bool;
}

/// What a VM boots from, and how it is reached.
pub trait Provisioner {
    /// The verified golden image, as the request says (cache, download, build, a given file).
    fn golden_image(&self, request: &golden::ImageRequest) -> Result<golden::Golden, HarnessError>;
    /// KVM if a probe proves it works, else TCG (the verdict cached in `cache_dir`).
    fn accel(
        &self,
        golden: &Utf8Path,
        cache_dir: &Utf8Path,
        scratch: &Utf8Path,
    ) -> Result<Accel, HarnessError>;
    /// Pin `golden` for one run in `run_dir` (see [`golden::pin`]).
    fn pin(
        &self,
        golden: &golden::Golden,
        run_dir: &Utf8Path,
        cache_dir: &Utf8Path,
    ) -> Result<golden::Golden, HarnessError>;
    /// The harness's SSH key pair in `key_dir`: (private key path, public key).
    fn keypair(&self, key_dir: &Utf8Path) -> Result<(Utf8PathBuf, String), HarnessError>;
}

/// Running `ansible-playbook`, listing an inventory, and reading the vault.
pub trait Ansible {
    /// Run one playbook; a failed play is [`HarnessError::Playbook`].
    fn run_playbook(&self, call: &ansible::PlaybookCall) -> Result<(), HarnessError>;
    /// What `ansible-inventory -i <inventory> --list` prints, run in `repo` (the JSON text,
    /// for [`boma_inventory::Fleet::from_ansible_list`]); a source Ansible cannot parse is a
    /// refusal.
    fn list_inventory(
        &self,
        repo: &Utf8Path,
        inventory: &Utf8Path,
        vault_password_file: Option<&Utf8Path>,
    ) -> Result<String, HarnessError>;
    /// Every value the vault holds in `files`, decrypted with `password_file`: the harness
    /// masks each in everything it prints or keeps.
    fn vault_values(
        &self,
        repo: &Utf8Path,
        password_file: &Utf8Path,
        files: &[Utf8PathBuf],
    ) -> Result<Vec<String>, HarnessError>;
}

/// The controller's own view of the guest: probing published ports from outside the VM.
pub trait PortProber {
    /// Probe `target`, trying again for up to `within` while it does not answer.
    fn probe(&self, target: &PortTarget, within: Duration) -> ProbeOutcome;
}

/// The machine, as the steps see it.
pub trait Machine {
    fn host(&self) -> &dyn HostProbe;
    fn hypervisors(&self) -> &dyn Hypervisors;
    fn guest(&self) -> &dyn Guest;
    fn disks(&self) -> &dyn Disks;
    fn provisioner(&self) -> &dyn Provisioner;
    fn ansible(&self) -> &dyn Ansible;
    fn ports(&self) -> &dyn PortProber;
}

/// This machine, for real.
pub struct RealMachine<'a> {
    sh: &'a Shell,
    /// Where libvirt's storage pools for run directories live (they are ours to remove).
    runs_root: Utf8PathBuf,
    guest: OpenSsh<'a>,
    disks: RealDisks<'a>,
}

impl<'a> RealMachine<'a> {
    pub fn new(sh: &'a Shell, runs_root: &Utf8Path) -> RealMachine<'a> {
        RealMachine {
            sh,
            runs_root: runs_root.to_owned(),
            guest: OpenSsh::new(sh),
            disks: RealDisks { sh },
        }
    }
}

impl Machine for RealMachine<'_> {
    fn host(&self) -> &dyn HostProbe {
        self
    }
    fn hypervisors(&self) -> &dyn Hypervisors {
        self
    }
    fn guest(&self) -> &dyn Guest {
        &self.guest
    }
    fn disks(&self) -> &dyn Disks {
        &self.disks
    }
    fn provisioner(&self) -> &dyn Provisioner {
        self
    }
    fn ansible(&self) -> &dyn Ansible {
        self
    }
    fn ports(&self) -> &dyn PortProber {
        self
    }
}

impl HostProbe for RealMachine<'_> {
    fn libvirt(&self) -> LibvirtProbe {
        for tool in ["virsh", "virt-install"] {
            if !boma_exec::on_path(tool) {
                return LibvirtProbe::NotInstalled { tool };
            }
        }
        match libvirt::usable(self.sh) {
            Ok(()) => LibvirtProbe::Usable,
            Err(why) => LibvirtProbe::Unusable(why),
        }
    }

    fn available_mib(&self) -> u64 {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        memory::available_mib(&meminfo).unwrap_or(0)
    }

    fn free_disk_mib(&self, dir: &Utf8Path) -> Result<u64, HarnessError> {
        Ok(memory::free_disk_mib(dir)?)
    }

    fn tool_missing(&self, tool: &str) -> bool {
        !boma_exec::on_path(tool)
    }
}

impl Hypervisors for RealMachine<'_> {
    fn get(&self, kind: BackendKind) -> Box<dyn Hypervisor + '_> {
        match kind {
            BackendKind::Qemu => Box::new(QemuBackend::new(self.sh, &self.runs_root)),
            BackendKind::Libvirt => Box::new(LibvirtBackend::new(self.sh, &self.runs_root)),
        }
    }
}

impl Provisioner for RealMachine<'_> {
    fn golden_image(&self, request: &golden::ImageRequest) -> Result<golden::Golden, HarnessError> {
        golden::resolve(self.sh, request)
    }

    fn accel(
        &self,
        golden: &Utf8Path,
        cache_dir: &Utf8Path,
        scratch: &Utf8Path,
    ) -> Result<Accel, HarnessError> {
        let cache = cache_dir.join("kvm-probe.json");
        Ok(accel::detect(self.sh, scratch, golden, &cache)?)
    }

    fn pin(
        &self,
        golden: &golden::Golden,
        run_dir: &Utf8Path,
        cache_dir: &Utf8Path,
    ) -> Result<golden::Golden, HarnessError> {
        golden::pin(golden, run_dir, cache_dir)
    }

    fn keypair(&self, key_dir: &Utf8Path) -> Result<(Utf8PathBuf, String), HarnessError> {
        Ok(keys::ensure_keypair(self.sh, key_dir)?)
    }
}

impl Ansible for RealMachine<'_> {
    fn run_playbook(&self, call: &ansible::PlaybookCall) -> Result<(), HarnessError> {
        ansible::run(self.sh, call)
    }

    fn list_inventory(
        &self,
        repo: &Utf8Path,
        inventory: &Utf8Path,
        vault_password_file: Option<&Utf8Path>,
    ) -> Result<String, HarnessError> {
        real_inventory::list(self.sh, repo, inventory, vault_password_file)
    }

    fn vault_values(
        &self,
        repo: &Utf8Path,
        password_file: &Utf8Path,
        files: &[Utf8PathBuf],
    ) -> Result<Vec<String>, HarnessError> {
        ansible::vault_values(self.sh, repo, password_file, files)
    }
}

impl PortProber for RealMachine<'_> {
    fn probe(&self, target: &PortTarget, within: Duration) -> ProbeOutcome {
        crate::probe::probe(self.sh, target, within)
    }
}
