//! The fact gatherer: the only part of the doctor that looks at the machine. It reads files
//! under `/proc`, `/etc` and the cache, and runs each program's version flag through
//! `boma_exec` (quietly, with a short timeout). It creates nothing and boots nothing, and a
//! missing program or an unreadable file is a fact, never an error.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::time::{Duration, SystemTime};

use boma_exec::CmdExt as _;
use boma_image::{BUILT, CACHE_SUMS, GENERICCLOUD, Origin};
use camino::{Utf8Path, Utf8PathBuf};
use nix::unistd::{AccessFlags, Gid, Group, Uid, User};
use xshell::{Shell, cmd};

use crate::facts::{
    Daemon, DiskFacts, Facts, ImageCacheFacts, ImageCheck, ImageFact, KvmDevice, KvmFacts,
    LibvirtFacts, MemoryFacts, ProbeCache, ProfileMemory, Space, ToolFact, ToolState, VenvAnsible,
    VenvFacts, Version,
};
use crate::parse;
use crate::tools::{SBIN_DIRS, TOOLS, Tool};

/// A version flag answers at once; a hung one must not hold the doctor up.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// `ansible-playbook --version` starts Python and loads Ansible: seconds on a busy machine.
const ANSIBLE_VERSION_TIMEOUT: Duration = Duration::from_secs(30);
/// `virsh uri` fails at once without a daemon; the first call to a fresh daemon takes ~8 s.
const VIRSH_TIMEOUT: Duration = Duration::from_secs(20);
/// Where `it` keeps its cached KVM verdict, in the image cache.
pub const PROBE_FILE: &str = "kvm-probe.json";
/// The repository's Ansible, installed by `make venv`.
pub const VENV_ANSIBLE_PLAYBOOK: &str = ".venv/bin/ansible-playbook";

impl Facts {
    /// Look at this machine: every tool (with its version), KVM, memory, disk under
    /// `runs_root` and `cache_dir`, libvirt, the image cache in `cache_dir`, the venv and the
    /// profiles of `repo`.
    pub fn gather(
        sh: &Shell,
        repo: &Utf8Path,
        cache_dir: &Utf8Path,
        runs_root: &Utf8Path,
    ) -> Facts {
        let tools: Vec<ToolFact> = TOOLS
            .iter()
            .map(|tool| ToolFact {
                tool: *tool,
                state: match locate(tool.program) {
                    None => ToolState::Missing,
                    Some(path) => {
                        let version = probe_version(sh, tool, &path);
                        ToolState::Present { path, version }
                    }
                },
            })
            .collect();
        let image_cache = image_cache(cache_dir);
        let kvm = kvm(cache_dir, &tools, &image_cache);
        let libvirt = libvirt(sh, &tools);
        Facts {
            debian_codename: debian_codename(),
            is_root: Uid::effective().is_root(),
            kvm,
            memory: memory(repo),
            disk: DiskFacts {
                runs: space(runs_root),
                cache: space(cache_dir),
            },
            libvirt,
            image_cache,
            venv: venv(sh, repo),
            tools,
        }
    }
}

/// Where each program is, without running any: the cheap check before installing the
/// substrate. Versions are [`Version::NotProbed`].
pub fn locate_tools() -> Vec<ToolFact> {
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

/// The Debian release's codename, from `/etc/os-release`.
pub fn debian_codename() -> Option<String> {
    read("/etc/os-release").and_then(|t| parse::os_codename(&t))
}

/// `program` in a directory of `PATH`, else in an sbin directory.
fn locate(program: &str) -> Option<Utf8PathBuf> {
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

fn probe_version(sh: &Shell, tool: &Tool, path: &Utf8Path) -> Version {
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

fn kvm(cache_dir: &Utf8Path, tools: &[ToolFact], image_cache: &ImageCacheFacts) -> KvmFacts {
    let probe_file = cache_dir.join(PROBE_FILE);
    let qemu_version = tools
        .iter()
        .find(|f| f.tool.program == "qemu-system-x86_64")
        .and_then(|f| match &f.state {
            ToolState::Present {
                version: Version::Reported(line),
                ..
            } => Some(line.clone()),
            _ => None,
        })
        .unwrap_or_default();
    // The image `it` would boot, hence probe with: the first verified one it prefers.
    let image = image_cache
        .images
        .iter()
        .find(|i| i.check == ImageCheck::Verified)
        .map(|i| cache_dir.join(&i.name).to_string())
        .unwrap_or_default();
    let boot_id = read("/proc/sys/kernel/random/boot_id")
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    let probe = match std::fs::read_to_string(&probe_file) {
        Ok(text) => parse::probe_cache(&text, &boot_id, &qemu_version, &image),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ProbeCache::Absent,
        Err(_) => ProbeCache::Unreadable,
    };
    KvmFacts {
        cpu_flag: read("/proc/cpuinfo").and_then(|t| parse::virt_flag(&t)),
        device: kvm_device(Utf8Path::new("/dev/kvm")),
        probe_file,
        probe,
    }
}

fn kvm_device(path: &Utf8Path) -> KvmDevice {
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

fn memory(repo: &Utf8Path) -> MemoryFacts {
    let profiles = boma_inventory::list_profiles(repo)
        .unwrap_or_default()
        .into_iter()
        .map(|host| {
            let mem_mib = boma_inventory::load_profile(repo, &host)
                .map(|p| u64::from(p.mem_mib))
                .map_err(|e| e.to_string());
            ProfileMemory { host, mem_mib }
        })
        .collect();
    MemoryFacts {
        available_mib: read("/proc/meminfo").and_then(|t| boma_vm::host::memory::available_mib(&t)),
        profiles,
    }
}

/// The nearest existing directory at or above `dir`: where it will be created.
fn existing_ancestor(dir: &Utf8Path) -> Option<&Utf8Path> {
    dir.ancestors().find(|d| d.is_dir())
}

fn space(dir: &Utf8Path) -> Space {
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

fn libvirt(sh: &Shell, tools: &[ToolFact]) -> LibvirtFacts {
    let virsh = tools
        .iter()
        .find(|f| f.tool.program == "virsh")
        .and_then(|f| match &f.state {
            ToolState::Present { path, .. } => Some(path.clone()),
            ToolState::Missing => None,
        });
    let daemon_answers = virsh.is_some_and(|virsh| {
        cmd!(sh, "{virsh} --connect qemu:///system uri")
            .exec()
            .quiet()
            .allow_fail()
            .timeout(VIRSH_TIMEOUT)
            .run()
            .is_ok_and(|out| out.success())
    });
    let own = std::fs::read_link("/proc/self/ns/net").ok();
    let daemons = boma_host::procs::pids_named("libvirtd")
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

fn image_cache(dir: &Utf8Path) -> ImageCacheFacts {
    let writable = existing_ancestor(dir).is_some_and(|d| {
        nix::unistd::access(d.as_std_path(), AccessFlags::W_OK | AccessFlags::X_OK).is_ok()
    });
    let sums = std::fs::read_to_string(dir.join(CACHE_SUMS))
        .ok()
        .and_then(|text| boma_image::sums::parse_sums(&text).ok())
        .unwrap_or_default();
    let now = SystemTime::now();
    let images = [GENERICCLOUD, BUILT]
        .into_iter()
        .filter_map(|name| {
            let path = dir.join(name);
            let meta = path.metadata().ok().filter(|m| m.is_file())?;
            let check = match sums.get(name) {
                None => ImageCheck::NoEntry,
                Some(expected) => match boma_image::hash_file(&path) {
                    Ok((actual, _)) if actual == *expected => ImageCheck::Verified,
                    Ok(_) => ImageCheck::Mismatch,
                    Err(_) => ImageCheck::Unreadable,
                },
            };
            let origin = std::fs::read_to_string(dir.join(format!("{name}.origin")))
                .ok()
                .and_then(|text| serde_json::from_str::<Origin>(&text).ok());
            let age_secs = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .map(|d| d.as_secs());
            Some(ImageFact {
                name: name.to_owned(),
                check,
                origin,
                age_secs,
            })
        })
        .collect();
    ImageCacheFacts {
        dir: dir.to_owned(),
        exists: dir.is_dir(),
        writable,
        images,
    }
}

fn venv(sh: &Shell, repo: &Utf8Path) -> VenvFacts {
    let program = repo.join(VENV_ANSIBLE_PLAYBOOK);
    let ansible = if !program.is_file() {
        VenvAnsible::Missing
    } else {
        cmd!(sh, "{program} --version")
            .exec()
            .quiet()
            .allow_fail()
            .timeout(ANSIBLE_VERSION_TIMEOUT)
            .run()
            .ok()
            .and_then(|out| parse::ansible_core_version(&out.stdout))
            .map_or(VenvAnsible::Broken, VenvAnsible::Core)
    };
    let pinned_core = std::fs::read_to_string(repo.join("requirements.txt"))
        .ok()
        .and_then(|text| parse::pinned_core(&text));
    VenvFacts {
        ansible,
        pinned_core,
    }
}
