//! Counting what a run left behind: QEMU processes, run directories, sockets (and a fleet
//! switch's socket directory under `/tmp`), the record,
//! libvirt domains, pools and fleet networks, and processes still aimed at a test VM (a fleet's
//! `vde_switch` among them: its command line names its run directory). Looked at from outside,
//! without trusting any record: `prune` stops only what the spawn journal recorded, but the
//! suite counts by what a command line names, so that a process the journal missed shows up.

use std::os::unix::fs::FileTypeExt;

use boma_exec::CmdExt;
use camino::{Utf8Path, Utf8PathBuf};

/// Everything of the harness's still on the machine.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub processes: Vec<String>,
    pub run_dirs: Vec<Utf8PathBuf>,
    pub sockets: Vec<Utf8PathBuf>,
    pub current: bool,
    /// libvirt domains named `boma-it-*` and storage pools pointing into the run directory
    /// (only looked for where a daemon answers).
    pub domains: Vec<String>,
    pub pools: Vec<String>,
    /// libvirt networks named `boma-fleet-*` (a fleet run's segment).
    pub networks: Vec<String>,
    /// Processes whose command line names a VM's run directory, the parallel runs' directory or
    /// the harness's SSH key: the `ansible-playbook`, `ssh` and child `xtask it` a killed
    /// harness left.
    pub orphans: Vec<String>,
}

impl Leftovers {
    pub fn total(&self) -> usize {
        self.processes.len()
            + self.run_dirs.len()
            + self.sockets.len()
            + usize::from(self.current)
            + self.domains.len()
            + self.pools.len()
            + self.networks.len()
            + self.orphans.len()
    }

    pub fn describe(&self) -> String {
        format!(
            "{} process(es) {:?}, {} run dir(s) {:?}, {} socket(s) {:?}, current record: {}, {} domain(s) {:?}, {} storage pool(s) {:?}, {} fleet network(s) {:?}, {} orphan process(es) {:?}",
            self.processes.len(),
            self.processes,
            self.run_dirs.len(),
            self.run_dirs,
            self.sockets.len(),
            self.sockets,
            if self.current { "present" } else { "absent" },
            self.domains.len(),
            self.domains,
            self.pools.len(),
            self.pools,
            self.networks.len(),
            self.networks,
            self.orphans.len(),
            self.orphans
        )
    }
}

/// Look, without trusting any record.
pub fn count(repo: &Utf8Path) -> Leftovers {
    let run = repo.join("tests/integration/.run");
    let processes = boma_vm::host::procs::vm_processes()
        .into_iter()
        .map(|p| format!("{} (pid {})", p.name, p.pid))
        .collect();
    let mut run_dirs = Vec::new();
    let mut sockets = Vec::new();
    if let Ok(entries) = run.read_dir_utf8() {
        for entry in entries.flatten() {
            if entry.file_name().starts_with(boma_name::PREFIX) {
                run_dirs.push(entry.path().to_owned());
            }
        }
    }
    walk_sockets(&run, &mut sockets);
    // A fleet switch's sockets live in `/tmp/boma-vde-<hash>` (boma_fleet::switch_paths): its
    // directory outlives a switch that was not stopped, whatever its run directory became. The
    // suite owns the machine while it runs, so any such directory is a leftover.
    if let Ok(entries) = Utf8Path::new(boma_fleet::SWITCH_PARENT).read_dir_utf8() {
        for entry in entries.flatten() {
            if entry.file_name().starts_with(boma_fleet::SWITCH_DIR_PREFIX) {
                sockets.push(entry.path().to_owned());
            }
        }
    }
    let (domains, pools, networks) = libvirt_leftovers(&run);
    let markers = markers(&run, &key_dir());
    let markers: Vec<&str> = markers.iter().map(String::as_str).collect();
    let orphans = boma_vm::host::procs::orphans(&markers)
        .into_iter()
        .map(|o| format!("{} (pid {})", o.cmdline, o.pid))
        .collect();
    Leftovers {
        processes,
        run_dirs,
        sockets,
        current: run.join("current").exists(),
        domains,
        pools,
        networks,
        orphans,
    }
}

/// What a harness process's command line names: a VM's run directory (the transient
/// inventory, the console), the directory of the parallel runs' reports and logs (a child
/// `xtask it --report`), the harness's SSH key. Pure.
pub fn markers(run: &Utf8Path, key_dir: &Utf8Path) -> [String; 3] {
    [
        format!("{run}/{}", boma_name::PREFIX),
        format!("{run}/parallel/"),
        format!("{key_dir}/"),
    ]
}

/// The harness's SSH key directory, as xtask computes it.
fn key_dir() -> Utf8PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let state = std::env::var("XDG_STATE_HOME").unwrap_or_else(|_| format!("{home}/.local/state"));
    Utf8PathBuf::from(state).join("boma-it/ssh")
}

fn libvirt_leftovers(run: &Utf8Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let Ok(sh) = xshell::Shell::new() else {
        return (Vec::new(), Vec::new(), Vec::new());
    };
    if !boma_vm::hypervisor::libvirt::reachable(&sh) {
        return (Vec::new(), Vec::new(), Vec::new());
    }
    let virsh = |args: &[&str]| -> String {
        let uri = boma_host::gather::LIBVIRT_URI;
        xshell::cmd!(sh, "virsh --connect {uri} {args...}")
            .exec()
            .quiet()
            .allow_fail()
            .run()
            .map(|o| o.stdout)
            .unwrap_or_default()
    };
    let domains = virsh(&["list", "--all", "--name"])
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with(boma_name::PREFIX))
        .map(str::to_owned)
        .collect();
    let pools = virsh(&["pool-list", "--all", "--name"])
        .lines()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter(|p| {
            boma_vm::hypervisor::libvirt::pool_path(&virsh(&["pool-dumpxml", p]))
                .is_some_and(|path| Utf8Path::new(path).starts_with(run))
        })
        .map(str::to_owned)
        .collect();
    let networks = virsh(&["net-list", "--all", "--name"])
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with(boma_vm::hypervisor::segment::NETWORK_PREFIX))
        .map(str::to_owned)
        .collect();
    (domains, pools, networks)
}

fn walk_sockets(dir: &Utf8Path, found: &mut Vec<Utf8PathBuf>) {
    let Ok(entries) = dir.read_dir_utf8() else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_socket() {
            found.push(entry.path().to_owned());
        } else if kind.is_dir() && !kind.is_symlink() {
            walk_sockets(entry.path(), found);
        }
    }
}

/// What an image build under `cache` could leave: mounts and processes (mmdebstrap's, a
/// chroot's) under it, loop devices backed by a file in it, scratch files, an unverified image.
///
/// Read from the kernel here rather than through `boma-golden`'s teardown, which asks the
/// same questions: the check must not share the code it checks.
pub fn build_leftovers(cache: &Utf8Path) -> Vec<String> {
    let cache = canonical(cache);
    let under = |p: &str| Utf8Path::new(p).starts_with(&cache);
    // mountinfo: the fifth field is the mount point (octal escapes are irrelevant here: the
    // cache path has no spaces).
    let mut found: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).filter(|p| under(p)))
        .map(|point| format!("mount {point}"))
        .collect();
    found.extend(loop_devices(&cache));
    // A chrooted process's command line no longer names the cache; its root does.
    let me = std::process::id();
    for process in boma_host::procs::all() {
        let pid = process.pid;
        let root = std::fs::read_link(format!("/proc/{pid}/root"))
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cmdline = process.cmdline();
        if pid != me && (cmdline.contains(cache.as_str()) || under(&root)) {
            found.push(format!("process {pid}: {cmdline}"));
        }
    }
    let entries = |dir: Utf8PathBuf| -> Vec<Utf8PathBuf> {
        dir.read_dir_utf8()
            .map(|it| it.flatten().map(|e| e.path().to_owned()).collect())
            .unwrap_or_default()
    };
    found.extend(
        entries(cache.join("tmp"))
            .into_iter()
            .map(|p| format!("scratch {p}")),
    );
    found.extend(
        entries(cache.clone())
            .into_iter()
            .filter(|p| p.extension() == Some("qcow2"))
            .map(|p| format!("image {p}")),
    );
    found
}

/// The loop devices backed by a file under `cache` (canonical), as `loop device <dev> on <file>`.
fn loop_devices(cache: &Utf8Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let file = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            let file = file.trim();
            Utf8Path::new(file).starts_with(cache).then(|| {
                format!(
                    "loop device {} on {file}",
                    entry.file_name().to_string_lossy()
                )
            })
        })
        .collect()
}

fn canonical(path: &Utf8Path) -> Utf8PathBuf {
    path.canonicalize_utf8().unwrap_or_else(|_| path.to_owned())
}

/// Whether a build under `cache` has attached its disk to a loop device yet.
pub fn build_has_loop_device(cache: &Utf8Path) -> bool {
    !loop_devices(&canonical(cache)).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_run_dirs_parallel_children_and_the_key() {
        let run = Utf8Path::new("/r/tests/integration/.run");
        let markers = markers(run, Utf8Path::new("/root/.local/state/boma-it/ssh"));
        let hit = |cmdline: &str| {
            let args: Vec<String> = cmdline.split(' ').map(String::from).collect();
            let markers: Vec<&str> = markers.iter().map(String::as_str).collect();
            boma_vm::host::procs::is_harness_child(&args, &markers)
        };
        assert!(hit(
            "ansible-playbook -i /r/tests/integration/.run/boma-it-askari-1a/inventory site.yml"
        ));
        assert!(hit(
            "/t/debug/xtask it cat-a --report /r/tests/integration/.run/parallel/cat-a.json"
        ));
        assert!(hit(
            "ssh -i /root/.local/state/boma-it/ssh/id_ed25519 ansible@127.0.0.1"
        ));
        // The VM's own QEMU is counted as a VM, not as an orphan; other processes not at all.
        assert!(!hit(
            "qemu-system-x86_64 -name boma-it-askari-1a -drive file=/r/tests/integration/.run/boma-it-askari-1a/overlay.qcow2"
        ));
        assert!(!hit("tail -f /r/tests/integration/.run/spawned.jsonl"));
    }
}
