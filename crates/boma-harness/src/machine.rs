//! The machine the harness runs on, as a few narrow effects. The steps decide; the machine
//! acts. No policy lives here: which backend, whether memory, disk or the programs suffice,
//! KVM or TCG are decided from what these probes return (`boma_host::judge`,
//! `backend::resolve`, `preflight`); which golden image to take, and what to do when a step
//! finds none, is the pure plan of `golden::plan`, run by the harness one step at a time;
//! which processes to stop is the spawn journal's and the caller's. So the fake machine the
//! tests use replaces only effects.

use std::time::Duration;

use boma_host::facts::{LibvirtFacts, Space, ToolFact};
use boma_host::reserve::{
    Budget, Reservation, ReservationRequest, Reservations, ReserveError, Reserved,
};
use boma_host::stop::{StopAction, StopError, Stopped};
use boma_host::{gather, judge};
use boma_name::VmName;
use boma_vm::guest::keys;
use boma_vm::host::accel;
use boma_vm::hypervisor::libvirt::LibvirtBackend;
use boma_vm::hypervisor::qemu::QemuBackend;
use boma_vm::lifecycle::{Disks, Hypervisors, RealDisks};
use boma_vm::{Accel, BackendKind, Guest, Hypervisor, OpenSsh};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::Shell;

use crate::error::HarnessError;
use crate::golden::{self, ImageStep, StepResult};
use crate::probe::{PortTarget, ProbeOutcome};
use crate::run_id::RunId;
use crate::{ansible, real_inventory};

/// What this machine has: read-only looks at the control node's facts (`boma_host::gather`).
/// What they mean is `boma_host::judge`'s, the same rules the doctor words.
pub trait HostProbe {
    /// Where `program` is (a directory of `PATH`, then the sbin directories).
    fn locate(&self, program: &str) -> Option<Utf8PathBuf>;
    /// libvirt from this network namespace: whether the system daemon answers, and where
    /// every `libvirtd` runs.
    fn libvirt_facts(&self) -> LibvirtFacts;
    /// `MemAvailable`, in MiB, when it can be read.
    fn available_mib(&self) -> Option<u64>;
    /// The filesystem that holds, or will hold, `dir`.
    fn space(&self, dir: &Utf8Path) -> Space;
    /// A fresh run id, from the kernel's randomness.
    fn fresh_run_id(&self) -> RunId;

    /// Every program of `boma_host::TOOLS`, located, without running any.
    fn tools(&self) -> Vec<ToolFact> {
        gather::tools_located_by(|program| self.locate(program))
    }

    /// Whether the libvirt backend can be used from here.
    fn libvirt(&self) -> judge::Libvirt {
        judge::libvirt(&self.tools(), &self.libvirt_facts())
    }
}

/// This machine's processes, as the harness acts on them: the hypervisor process a VM runs
/// in, and what the spawn journal recorded (stopped by pid, start time, user and program:
/// never a process the harness did not start).
pub trait Processes {
    /// The pid of the QEMU that runs the VM `name`, found among this machine's processes
    /// (libvirt's, whose pid no run record holds).
    fn vm_pid(&self, name: &VmName) -> Option<u32>;
    /// What the spawn journal at `journal` recorded that still runs, each as the action that
    /// stops it.
    fn journaled(&self, journal: &Utf8Path) -> Result<Vec<StopAction>, StopError>;
    /// Stop the processes of `actions`: SIGTERM, then SIGKILL after a grace period.
    fn stop(&self, actions: &[StopAction]) -> Vec<Stopped>;
    /// Drop the lines of the spawn journal at `journal` whose processes have exited.
    fn forget_exited(&self, journal: &Utf8Path);
}

/// The machine-wide reservations of test VMs' memory, kept in the image cache `cache_dir`
/// under a lock, so that every checkout and parallel run on this machine counts them.
pub trait MemoryReservations {
    /// Reserve every one of `requests`' memory within `budget` (a fleet's members; one VM's is
    /// a list of one), all or none, or refuse saying which reservations leave no room
    /// (`boma_host::reserve::decide_all`). The guards come in the order of `requests`.
    fn reserve_all(
        &self,
        cache_dir: &Utf8Path,
        requests: &[ReservationRequest],
        budget: &Budget,
    ) -> Result<Vec<Reserved>, ReserveError>;
    /// The reservations that are live.
    fn live(&self, cache_dir: &Utf8Path) -> Result<Vec<Reservation>, ReserveError>;
    /// Release the VM `vm`'s reservation; whether there was one.
    fn release(&self, cache_dir: &Utf8Path, vm: &VmName) -> Result<bool, ReserveError>;
}

/// What a VM boots from, and how it is reached.
pub trait Provisioner {
    /// Carry out one step of the golden image's plan ([`golden::plan`]): look in the cache
    /// `cache_dir`, download, build, or hash a given file. Never an image that failed
    /// verification.
    fn image_step(
        &self,
        step: &ImageStep,
        cache_dir: &Utf8Path,
    ) -> Result<StepResult, HarnessError>;
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
    fn processes(&self) -> &dyn Processes;
    fn reservations(&self) -> &dyn MemoryReservations;
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
    fn processes(&self) -> &dyn Processes {
        self
    }
    fn reservations(&self) -> &dyn MemoryReservations {
        &ReservationStore
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
    fn locate(&self, program: &str) -> Option<Utf8PathBuf> {
        gather::locate(program)
    }

    fn libvirt_facts(&self) -> LibvirtFacts {
        gather::libvirt(self.sh, gather::locate("virsh").as_deref())
    }

    fn available_mib(&self) -> Option<u64> {
        gather::available_mib()
    }

    fn space(&self, dir: &Utf8Path) -> Space {
        gather::space(dir)
    }

    fn fresh_run_id(&self) -> RunId {
        RunId::random()
    }
}

impl Processes for RealMachine<'_> {
    fn vm_pid(&self, name: &VmName) -> Option<u32> {
        boma_vm::host::procs::vm_processes()
            .into_iter()
            .find(|p| p.name == *name)
            .map(|p| p.pid)
    }

    fn journaled(&self, journal: &Utf8Path) -> Result<Vec<StopAction>, StopError> {
        boma_host::stop::plan_from_journal(journal.as_std_path())
    }

    fn stop(&self, actions: &[StopAction]) -> Vec<Stopped> {
        boma_host::stop::stop(actions, boma_host::stop::GRACE)
    }

    fn forget_exited(&self, journal: &Utf8Path) {
        let _ = boma_host::stop::forget_exited(journal.as_std_path());
    }
}

/// The reservations as `boma_host::reserve` keeps them in an image cache (a file per VM, under
/// a lock): this machine's, and a test sandbox's in its own cache.
pub struct ReservationStore;

impl MemoryReservations for ReservationStore {
    fn reserve_all(
        &self,
        cache_dir: &Utf8Path,
        requests: &[ReservationRequest],
        budget: &Budget,
    ) -> Result<Vec<Reserved>, ReserveError> {
        Reservations::open(cache_dir)?.reserve_all(requests, budget)
    }

    fn live(&self, cache_dir: &Utf8Path) -> Result<Vec<Reservation>, ReserveError> {
        Reservations::open(cache_dir)?.live()
    }

    fn release(&self, cache_dir: &Utf8Path, vm: &VmName) -> Result<bool, ReserveError> {
        Reservations::open(cache_dir)?.release(vm.as_str())
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
    fn image_step(
        &self,
        step: &ImageStep,
        cache_dir: &Utf8Path,
    ) -> Result<StepResult, HarnessError> {
        golden::image_step(self.sh, step, cache_dir)
    }

    fn accel(
        &self,
        golden: &Utf8Path,
        cache_dir: &Utf8Path,
        scratch: &Utf8Path,
    ) -> Result<Accel, HarnessError> {
        Ok(accel::detect(self.sh, scratch, golden, cache_dir)?)
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
