//! What the doctor knows about this machine: plain values, filled in by [`Facts::gather`]
//! (`gather.rs`) and judged by [`crate::diagnose`]. Tests build them by hand.

use boma_image::Origin;
use boma_vm::Accel;
use camino::Utf8PathBuf;

use crate::tools::Tool;

/// Everything `diagnose` decides from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// One entry per [`crate::TOOLS`] entry, in that order.
    pub tools: Vec<ToolFact>,
    /// `VERSION_CODENAME` from `/etc/os-release` (`bookworm`, `trixie`), when readable: it
    /// picks a package's name.
    pub debian_codename: Option<String>,
    /// Whether this process runs as root (the golden image build needs it).
    pub is_root: bool,
    pub kvm: KvmFacts,
    pub memory: MemoryFacts,
    pub disk: DiskFacts,
    pub libvirt: LibvirtFacts,
    pub image_cache: ImageCacheFacts,
    pub venv: VenvFacts,
}

/// One program and what was found of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolFact {
    pub tool: Tool,
    pub state: ToolState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolState {
    /// In no directory of `PATH` nor in the sbin directories.
    Missing,
    Present {
        path: Utf8PathBuf,
        version: Version,
    },
}

impl ToolState {
    pub fn is_present(&self) -> bool {
        matches!(self, ToolState::Present { .. })
    }
}

/// What a present program said about its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// The first line it printed.
    Reported(String),
    /// It has no version flag ([`Tool::version_args`] is `None`).
    NoFlag,
    /// Its version was not asked for (the cheap presence check of `substrate`).
    NotProbed,
    /// It printed nothing usable or did not finish in time.
    Unreadable,
}

/// Hardware virtualisation: the CPU flag, the device, and the harness's own probe verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmFacts {
    /// `vmx` (Intel) or `svm` (AMD) among the flags of `/proc/cpuinfo`.
    pub cpu_flag: Option<String>,
    pub device: KvmDevice,
    /// The verdict file `it` writes (`<cache>/kvm-probe.json`).
    pub probe_file: Utf8PathBuf,
    pub probe: ProbeCache,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmDevice {
    Missing,
    /// It exists, but this process may not open it for reading and writing.
    Inaccessible {
        owner: String,
        group: String,
        mode: u32,
    },
    Accessible,
}

/// The cached KVM verdict, read (never made: the doctor boots no probe VM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeCache {
    /// No verdict file: `it` probes once and writes it.
    Absent,
    /// The file exists but is not a verdict.
    Unreadable,
    Cached(CachedProbe),
}

/// A verdict and whether it still holds: `it` re-probes when the host rebooted, QEMU
/// changed, or the golden image is another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedProbe {
    pub accel: Accel,
    /// Why the probe decided so, when the verdict file says.
    pub reason: Option<String>,
    pub same_boot: bool,
    pub same_qemu: bool,
    pub same_image: bool,
}

impl CachedProbe {
    /// Whether `it` would use this verdict without probing again.
    pub fn current(&self) -> bool {
        self.same_boot && self.same_qemu && self.same_image
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryFacts {
    /// `MemAvailable` from `/proc/meminfo`, in MiB.
    pub available_mib: Option<u64>,
    /// Every profile, sorted by host.
    pub profiles: Vec<ProfileMemory>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileMemory {
    pub host: String,
    /// The profile's `mem_mib`, or why it could not be read.
    pub mem_mib: Result<u64, String>,
}

/// Free space where runs and the image cache are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFacts {
    pub runs: Space,
    pub cache: Space,
}

/// The filesystem holding `dir` (measured at its nearest existing ancestor, as the harness
/// creates it on first use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    pub dir: Utf8PathBuf,
    /// The filesystem's device number: equal for two directories on one filesystem.
    pub device: Option<u64>,
    /// Free MiB for an unprivileged writer; `None` when it could not be measured.
    pub free_mib: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtFacts {
    /// `virsh --connect qemu:///system uri` succeeded.
    pub daemon_answers: bool,
    /// Every running `libvirtd`.
    pub daemons: Vec<Daemon>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    pub pid: u32,
    /// Whether it shares this process's network namespace; `None` when its namespace cannot
    /// be read (another user's process).
    pub same_namespace: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCacheFacts {
    pub dir: Utf8PathBuf,
    pub exists: bool,
    /// Whether this process can write there (or create it, when it does not exist yet).
    pub writable: bool,
    /// The golden images present, in the order `it` prefers them.
    pub images: Vec<ImageFact>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFact {
    pub name: String,
    pub check: ImageCheck,
    pub origin: Option<Origin>,
    /// Seconds since the file was last written.
    pub age_secs: Option<u64>,
}

/// The image re-hashed against the cache's `SHA512SUMS`, as `it` does before using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageCheck {
    Verified,
    Mismatch,
    /// `SHA512SUMS` has no entry for it.
    NoEntry,
    /// It could not be read.
    Unreadable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenvFacts {
    /// What `.venv/bin/ansible-playbook --version` said.
    pub ansible: VenvAnsible,
    /// The `ansible-core==` pin of `requirements.txt`.
    pub pinned_core: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VenvAnsible {
    Missing,
    /// It exists but did not report an ansible-core version.
    Broken,
    /// The ansible-core version it reported.
    Core(String),
}
