//! What the doctor knows: the control node's facts (`boma_host::facts`) with the repository's
//! (profiles, the image cache, the Ansible venv), filled in by [`Facts::gather`] (`gather.rs`)
//! and judged by [`crate::diagnose`]. Tests build them by hand.

use boma_host::facts::{KvmFacts, LibvirtFacts, Space, ToolFact};
use boma_image::Origin;
use camino::Utf8PathBuf;

/// Everything `diagnose` decides from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// One entry per [`boma_host::TOOLS`] entry, in that order.
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
