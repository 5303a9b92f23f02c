//! The fact gatherer: the only part of the doctor that looks. The control node's facts come
//! from `boma_host::gather`, as `it` reads them; this adds the repository's (profiles, the
//! image cache, the venv). It creates nothing and boots nothing, and a missing program or an
//! unreadable file is a fact, never an error.

use std::time::{Duration, SystemTime};

use boma_exec::CmdExt as _;
use boma_host::gather;
use boma_image::{BUILT, CACHE_SUMS, GENERICCLOUD, Origin};
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::facts::{
    DiskFacts, Facts, ImageCacheFacts, ImageCheck, ImageFact, MemoryFacts, ProfileMemory,
    VenvAnsible, VenvFacts,
};
use crate::parse;

/// `ansible-playbook --version` starts Python and loads Ansible: seconds on a busy machine.
const ANSIBLE_VERSION_TIMEOUT: Duration = Duration::from_secs(30);
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
        let tools = gather::tools_with_versions(sh);
        let image_cache = image_cache(cache_dir);
        // The image `it` would boot, hence probe with: the first verified one it prefers.
        let image = image_cache
            .images
            .iter()
            .find(|i| i.check == ImageCheck::Verified)
            .map(|i| cache_dir.join(&i.name).to_string())
            .unwrap_or_default();
        let qemu = tools
            .iter()
            .find(|f| f.tool.program == "qemu-system-x86_64")
            .expect("QEMU is a tool");
        let kvm = gather::kvm(cache_dir, &gather::probe_key(qemu, &image));
        let libvirt = gather::libvirt(sh, gather::path_of(&tools, "virsh"));
        Facts {
            debian_codename: gather::debian_codename(),
            is_root: gather::is_root(),
            kvm,
            memory: memory(repo),
            disk: DiskFacts {
                runs: gather::space(runs_root),
                cache: gather::space(cache_dir),
            },
            libvirt,
            image_cache,
            venv: venv(sh, repo),
            tools,
        }
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
        available_mib: gather::available_mib(),
        profiles,
    }
}

fn image_cache(dir: &Utf8Path) -> ImageCacheFacts {
    let writable = gather::writable(dir);
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
