//! The fact gatherer: the only part of this crate that looks at the machine for the verdicts.
//! It reads files under `/proc`, `/etc` and `/dev`, measures filesystems, and runs a program's
//! version flag or `virsh uri` through `boma_exec` (quietly, with a short timeout). It creates
//! nothing and boots nothing, and a missing program or an unreadable file is a fact, never an
//! error.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::time::Duration;

use boma_exec::CmdExt as _;
use camino::{Utf8Path, Utf8PathBuf};
use nix::unistd::{AccessFlags, Gid, Group, Uid, User};
use xshell::{Shell, cmd};

use crate::facts::{
    Daemon, KvmDevice, KvmFacts, LibvirtFacts, Space, ToolFact, ToolState, Version,
};
use crate::kvm::{PROBE_FILE, ProbeCache, ProbeKey};
use crate::parse;
use crate::tools::{SBIN_DIRS, TOOLS, Tool};

/// A version flag answers at once; a hung one must not hold anything up.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// `virsh uri` fails at once without a daemon; the first call to a fresh daemon takes ~8 s.
const VIRSH_TIMEOUT: Duration = Duration::from_secs(20);
/// The libvirt connection every part of boma uses: the system daemon, whose guests' addresses
/// are reachable from the network namespace it runs in.
pub const LIBVIRT_URI: &str = "qemu:///system";
const KVM_DEVICE: &str = "/dev/kvm";

/// `program` in a directory of `PATH`, else in an sbin directory.
pub fn locate(program: &str) -> Option<Utf8PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .chain(SBIN_DIRS.iter().copied())
        .map(|dir| Utf8Path::new(dir).join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Where each program of [`TOOLS`] is, as `locate` finds it, without running any: the cheap
/// check of preflight and of `substrate`. Versions are [`Version::NotProbed`].
pub fn tools_located_by(locate: impl Fn(&str) -> Option<Utf8PathBuf>) -> Vec<ToolFact> {
    TOOLS
        .iter()
        .map(|tool| ToolFact {
            tool: *tool,
            state: match locate(tool.program) {
                None => ToolState::Missing,
                Some(path) => ToolState::Present {
                    path,
                    version: Version::NotProbed,
                },
            },
        })
        .collect()
}

/// [`tools_located_by`] on this machine.
pub fn locate_tools() -> Vec<ToolFact> {
    tools_located_by(locate)
}

/// Every program of [`TOOLS`] with its version, as the doctor shows them.
pub fn tools_with_versions(sh: &Shell) -> Vec<ToolFact> {
    TOOLS
        .iter()
        .map(|tool| tool_with_version(sh, tool))
        .collect()
}

/// One program, located and asked for its version.
pub fn tool_with_version(sh: &Shell, tool: &Tool) -> ToolFact {
    ToolFact {
        tool: *tool,
        state: match locate(tool.program) {
            None => ToolState::Missing,
            Some(path) => {
                let version = version(sh, tool, &path);
                ToolState::Present { path, version }
            }
        },
    }
}

fn version(sh: &Shell, tool: &Tool, path: &Utf8Path) -> Version {
    let Some(args) = tool.version_args else {
        return Version::NoFlag;
    };
    let out = cmd!(sh, "{path} {args...}")
        .exec()
        .quiet()
        .allow_fail()
        .timeout(VERSION_TIMEOUT)
        .run();
    match out {
        Ok(out) => parse::first_line(&out.stdout, &out.stderr)
            .map(|line| Version::Reported(parse::banner(&line, path.as_str(), tool.program)))
            .unwrap_or(Version::Unreadable),
        Err(_) => Version::Unreadable,
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The Debian release's codename, from `/etc/os-release`.
pub fn debian_codename() -> Option<String> {
    read("/etc/os-release").and_then(|t| parse::os_codename(&t))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// `MemAvailable` now, in MiB, from `/proc/meminfo`.
pub fn available_mib() -> Option<u64> {
    read("/proc/meminfo").and_then(|t| parse::mem_available_mib(&t))
}

/// The nearest existing directory at or above `dir`: where it will be created.
fn existing_ancestor(dir: &Utf8Path) -> Option<&Utf8Path> {
    dir.ancestors().find(|d| d.is_dir())
}

/// The filesystem that holds, or will hold, `dir`.
pub fn space(dir: &Utf8Path) -> Space {
    let measured = existing_ancestor(dir);
    let device = measured.and_then(|d| d.metadata().ok()).map(|m| m.dev());
    // The casts are no-ops on 64-bit Linux only: statvfs's field types vary by platform.
    #[allow(clippy::unnecessary_cast)]
    let free_mib = measured
        .and_then(|d| nix::sys::statvfs::statvfs(d.as_std_path()).ok())
        .map(|s| s.blocks_available() as u64 * s.fragment_size() as u64 / (1024 * 1024));
    Space {
        dir: dir.to_owned(),
        device,
        free_mib,
    }
}

/// Whether this process may create files in `dir` (or create `dir`, when it does not exist).
pub fn writable(dir: &Utf8Path) -> bool {
    existing_ancestor(dir).is_some_and(|d| {
        nix::unistd::access(d.as_std_path(), AccessFlags::W_OK | AccessFlags::X_OK).is_ok()
    })
}

/// `/dev/kvm`: there, and openable by this process?
pub fn kvm_device() -> KvmDevice {
    let path = Utf8Path::new(KVM_DEVICE);
    let Ok(meta) = path.metadata() else {
        return KvmDevice::Missing;
    };
    if nix::unistd::access(path.as_std_path(), AccessFlags::R_OK | AccessFlags::W_OK).is_ok() {
        return KvmDevice::Accessible;
    }
    let owner = User::from_uid(Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.uid().to_string(), |u| u.name);
    let group = Group::from_gid(Gid::from_raw(meta.gid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.gid().to_string(), |g| g.name);
    KvmDevice::Inaccessible {
        owner,
        group,
        mode: meta.mode() & 0o7777,
    }
}

/// What a KVM verdict made now would be keyed on: this host boot, `qemu` (the
/// `qemu-system-x86_64` fact, with its version) and the golden image `image`.
pub fn probe_key(qemu: &ToolFact, image: &str) -> ProbeKey {
    ProbeKey {
        host_boot_id: crate::procs::boot_id().unwrap_or_default(),
        qemu_version: qemu.version_line().unwrap_or_default().to_owned(),
        image: image.to_owned(),
    }
}

/// The cached verdict in `cache_dir`, read for `key`.
pub fn probe_cache(cache_dir: &Utf8Path, key: &ProbeKey) -> ProbeCache {
    match std::fs::read_to_string(cache_dir.join(PROBE_FILE)) {
        Ok(text) => ProbeCache::read(&text, key),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ProbeCache::Absent,
        Err(_) => ProbeCache::Unreadable,
    }
}

/// KVM on this machine: the CPU flag, the device, and the verdict cached in `cache_dir` for
/// `key`.
pub fn kvm(cache_dir: &Utf8Path, key: &ProbeKey) -> KvmFacts {
    KvmFacts {
        cpu_flag: read("/proc/cpuinfo").and_then(|t| parse::virt_flag(&t)),
        device: kvm_device(),
        probe_file: cache_dir.join(PROBE_FILE),
        probe: probe_cache(cache_dir, key),
    }
}

/// libvirt from this network namespace: whether the system daemon answers `virsh` (asked only
/// when `virsh` is present), and every `libvirtd` with the namespace it runs in.
pub fn libvirt(sh: &Shell, virsh: Option<&Utf8Path>) -> LibvirtFacts {
    let daemon_answers = virsh.is_some_and(|virsh| {
        cmd!(sh, "{virsh} --connect {LIBVIRT_URI} uri")
            .exec()
            .quiet()
            .allow_fail()
            .timeout(VIRSH_TIMEOUT)
            .run()
            .is_ok_and(|out| out.success())
    });
    let own = std::fs::read_link("/proc/self/ns/net").ok();
    let daemons = crate::procs::pids_named("libvirtd")
        .into_iter()
        .map(|pid| {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
            let same_namespace = match (&own, theirs) {
                (Some(own), Some(theirs)) => Some(*own == theirs),
                _ => None,
            };
            Daemon {
                pid,
                same_namespace,
            }
        })
        .collect();
    LibvirtFacts {
        daemon_answers,
        daemons,
    }
}

/// The path of a present program among `tools`.
pub fn path_of<'a>(tools: &'a [ToolFact], program: &str) -> Option<&'a Utf8Path> {
    tools
        .iter()
        .find(|f| f.tool.program == program)
        .and_then(|f| match &f.state {
            ToolState::Present { path, .. } => Some(path.as_path()),
            ToolState::Missing => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_yet_to_be_made_is_measured_where_it_will_be() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let later = root.join("a/b/c");
        let space = space(&later);
        assert_eq!(space.dir, later);
        assert!(space.free_mib.is_some());
        assert_eq!(space.device, root.metadata().ok().map(|m| m.dev()));
        assert!(writable(&later));
        assert!(!later.exists(), "measuring created nothing");
    }

    #[test]
    fn located_tools_follow_the_locator_and_probe_no_version() {
        let facts = tools_located_by(|p| (p == "ssh").then(|| "/usr/bin/ssh".into()));
        assert_eq!(facts.len(), TOOLS.len());
        for fact in &facts {
            match &fact.state {
                ToolState::Present { path, version } => {
                    assert_eq!(fact.tool.program, "ssh");
                    assert_eq!(path, "/usr/bin/ssh");
                    assert_eq!(*version, Version::NotProbed);
                }
                ToolState::Missing => assert_ne!(fact.tool.program, "ssh"),
            }
        }
        assert_eq!(path_of(&facts, "ssh"), Some(Utf8Path::new("/usr/bin/ssh")));
        assert_eq!(path_of(&facts, "virsh"), None);
    }

    #[test]
    fn this_machine_has_memory_and_a_boot() {
        assert!(available_mib().is_some_and(|m| m > 0));
        let ssh = ToolFact {
            tool: *crate::tools::tool("ssh").unwrap(),
            state: ToolState::Missing,
        };
        let key = probe_key(&ssh, "/i.qcow2");
        assert_eq!(key.host_boot_id, crate::procs::boot_id().unwrap());
        assert_eq!(key.qemu_version, "");
    }
}
