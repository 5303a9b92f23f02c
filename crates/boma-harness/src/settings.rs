//! Where things are and which choices the operator made, gathered once at the edge.

use crate::Machine;
use camino::{Utf8Path, Utf8PathBuf};

/// Which hypervisor backend runs the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// libvirt when `virsh` reaches a daemon, else QEMU.
    Auto,
    Qemu,
    Libvirt,
}

/// Where the golden image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A verified cached image, else download, else build when the download host cannot be
    /// reached (saying so).
    Auto,
    Download,
    Build,
    File(Utf8PathBuf),
}

/// Everything the steps need to know about this machine and this invocation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The repository root (from the binary's manifest dir, never the cwd).
    pub repo: Utf8PathBuf,
    /// The live run's files: `<repo>/tests/integration/.run`.
    pub runs_root: Utf8PathBuf,
    /// The image cache (`BOMA_IT_CACHE`, default `/var/lib/boma-integration`).
    pub cache_dir: Utf8PathBuf,
    /// The harness's own state: its SSH key pair.
    pub state_dir: Utf8PathBuf,
    /// Where diagnostics bundles go (`~/integration-runs`).
    pub diagnostics_root: Utf8PathBuf,
    pub backend: BackendChoice,
    pub image: ImageSource,
    /// Overrides of the download source (a mirror, a local file).
    pub image_url: Option<String>,
    pub sums_url: Option<String>,
    /// The ansible-vault password file, for tiers that need a secret.
    pub vault_password_file: Option<Utf8PathBuf>,
    /// Overrides of how long to wait for the first boot and for a reboot (default: fitted to
    /// the accelerator).
    pub boot_timeout: Option<std::time::Duration>,
    pub reboot_timeout: Option<std::time::Duration>,
}

impl Settings {
    /// Where a repository keeps its live run.
    pub fn default_runs_root(repo: &Utf8Path) -> Utf8PathBuf {
        repo.join("tests/integration/.run")
    }

    pub fn key_dir(&self) -> Utf8PathBuf {
        self.state_dir.join("ssh")
    }
}

/// The settings and the machine's effects: what every step takes.
pub struct Ctx<'a> {
    pub settings: &'a Settings,
    pub machine: &'a dyn Machine,
}

impl Ctx<'_> {
    pub fn repo(&self) -> &Utf8Path {
        &self.settings.repo
    }
}
