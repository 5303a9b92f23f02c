//! What this machine has, as plain values: filled in by [`crate::gather`], judged by
//! [`crate::judge`]. Tests build them by hand.

use camino::Utf8PathBuf;

use crate::kvm::ProbeCache;
use crate::tools::Tool;

/// One program and what was found of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolFact {
    pub tool: Tool,
    pub state: ToolState,
}

impl ToolFact {
    /// The first line its version flag printed, when it did.
    pub fn version_line(&self) -> Option<&str> {
        match &self.state {
            ToolState::Present {
                version: Version::Reported(line),
                ..
            } => Some(line),
            _ => None,
        }
    }
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
    /// Its version was not asked for (the cheap presence check of preflight and `substrate`).
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
    /// The verdict, read (never made: reading boots no probe VM).
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

/// libvirt as seen from this process's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
