//! What every step takes: the operator's settings and the machine's effects — and, made from
//! them, the run directory and the lifecycle's effects a step hands to `boma_vm::lifecycle`.

use boma_name::VmName;
use boma_vm::lifecycle::Effects;
use boma_vm::{Accel, BackendKind, RunDir, Runs};
use camino::Utf8Path;

use crate::machine::Machine;
use crate::settings::Settings;

/// The settings and the machine's effects: what every step takes.
pub struct Ctx<'a> {
    pub settings: &'a Settings,
    pub machine: &'a dyn Machine,
}

impl Ctx<'_> {
    pub fn repo(&self) -> &Utf8Path {
        &self.settings.repo
    }

    /// The runs root: the live runs' records, their lock, their directories.
    pub fn runs(&self) -> Runs {
        Runs::new(&self.settings.runs_root)
    }

    /// The run directory of the VM `name`.
    pub fn run_dir(&self, name: &VmName) -> RunDir {
        self.runs().run_dir(name)
    }

    /// Run `f` with the lifecycle's effects; new VMs get `kind`, waits fitted to `accel`.
    pub fn with_effects<T>(
        &self,
        kind: BackendKind,
        accel: Accel,
        f: impl FnOnce(&Effects) -> T,
    ) -> T {
        let runs = self.runs();
        let fx = Effects {
            runs: &runs,
            hypervisors: self.machine.hypervisors(),
            kind,
            guest: self.machine.guest(),
            disks: self.machine.disks(),
            waits: self.settings.waits.waits(accel),
        };
        f(&fx)
    }
}
