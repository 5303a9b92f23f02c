//! Telling test VMs' hypervisor processes apart in `/proc` (read by `boma_host::procs`, the one
//! walker), without trusting any record: after a crash the run files may be gone, but the QEMU
//! process still carries its `-name`, and the paths of its disks say whose run it is.

use camino::Utf8Path;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use boma_name::VmName;

/// A QEMU process running a test VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmProcess {
    pub pid: u32,
    pub name: VmName,
    /// Started by libvirt (`-name guest=…`): libvirt's to stop, not ours.
    pub libvirt: bool,
    /// Its arguments, which name its disks, console, pidfile and QMP socket (and so the run
    /// directory they live in).
    pub args: Vec<String>,
}

impl VmProcess {
    /// Whether it runs a VM of the run directory `root` (a checkout's): see [`runs_from`].
    pub fn runs_from(&self, root: &Utf8Path) -> bool {
        runs_from(&self.args, &self.name, root)
    }
}

/// Whether the QEMU with `args`, running the VM `name`, runs it from the run directory `root`:
/// one of the files it names lies directly in `root/<name>/`. Paths are compared component by
/// component, never as text, so the checkout `/srv/boma` owns none of `/home/ci/srv/boma`'s
/// VMs, nor `/srv/boma-old`'s. Pure.
pub fn runs_from(args: &[String], name: &VmName, root: &Utf8Path) -> bool {
    let vm_dir = root.join(name.as_str());
    paths_in(args).any(|path| path.parent() == Some(vm_dir.as_path()))
}

/// The absolute paths in QEMU arguments: `file=/…,if=virtio`, `path=/…`, `unix:/…,server=on`,
/// a bare `/…`, and libvirt's JSON `"filename":"/…"`. Pure.
fn paths_in(args: &[String]) -> impl Iterator<Item = &Utf8Path> {
    args.iter()
        .flat_map(|arg| arg.split([',', '"']))
        .map(|piece| piece.split_once('=').map_or(piece, |(_, value)| value))
        .map(|value| value.strip_prefix("unix:").unwrap_or(value))
        .filter(|value| value.starts_with('/'))
        .map(Utf8Path::new)
}

/// The test VM name in a QEMU command line (`-name boma-it-x` or libvirt's
/// `-name guest=boma-it-x,debug-threads=on`), if it is a QEMU running one.
pub fn vm_name_in_cmdline(args: &[String]) -> Option<VmName> {
    let program = args.first()?;
    if !program.rsplit('/').next()?.starts_with("qemu-system") {
        return None;
    }
    let first = name_argument(args)?.split(',').next()?;
    let name = first.strip_prefix("guest=").unwrap_or(first);
    VmName::parse(name).ok()
}

/// The value of `-name`.
fn name_argument(args: &[String]) -> Option<&str> {
    args.iter()
        .skip_while(|a| *a != "-name")
        .nth(1)
        .map(String::as_str)
}

/// The test VM a process runs, if it is a QEMU running one.
fn as_vm_process(process: boma_host::procs::ProcInfo) -> Option<VmProcess> {
    if process.has_exited() {
        return None;
    }
    let name = vm_name_in_cmdline(&process.args)?;
    let libvirt = name_argument(&process.args).is_some_and(|v| v.starts_with("guest="));
    Some(VmProcess {
        pid: process.pid,
        name,
        libvirt,
        args: process.args,
    })
}

/// Every QEMU process on this machine running a `boma-it-` VM.
pub fn vm_processes() -> Vec<VmProcess> {
    boma_host::procs::all()
        .into_iter()
        .filter_map(as_vm_process)
        .collect()
}

/// A process the harness started that outlived it (the harness was SIGKILLed): an
/// `ansible-playbook` or `ssh` still aimed at a test VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub pid: u32,
    pub cmdline: String,
}

/// Whether a command line belongs to the harness's work on a test VM: it names the run
/// directory of a VM (the transient inventory) or the harness's own SSH key, and is not the
/// VM's QEMU itself (the backends stop that one, politely). Pure. (The VM suite's leftover
/// check; `prune` itself stops only what the spawn journal recorded.)
pub fn is_harness_child(args: &[String], markers: &[&str]) -> bool {
    let cmdline = args.join(" ");
    !cmdline.is_empty()
        && vm_name_in_cmdline(args).is_none()
        && markers.iter().any(|m| !m.is_empty() && cmdline.contains(m))
}

/// Every process (but this one and its parent) whose command line carries one of `markers`.
pub fn orphans(markers: &[&str]) -> Vec<Orphan> {
    let me = std::process::id();
    let parent = std::os::unix::process::parent_id();
    boma_host::procs::all()
        .into_iter()
        .filter(|p| p.pid != me && p.pid != parent && is_harness_child(&p.args, markers))
        .map(|p| Orphan {
            pid: p.pid,
            cmdline: p.cmdline(),
        })
        .collect()
}

/// Whether `pid` is alive and still the QEMU of VM `name` (a recycled pid is not; a zombie,
/// with its empty command line, is dead for our purposes).
pub fn is_vm_process(pid: u32, name: &str) -> bool {
    boma_host::procs::info(pid)
        .and_then(as_vm_process)
        .is_some_and(|p| p.name.as_str() == name)
}

/// Send `signal` to `pid` only if it is still the QEMU of `name`.
pub fn signal_vm(pid: u32, name: &str, signal: Signal) -> bool {
    is_vm_process(pid, name) && kill(Pid::from_raw(pid as i32), signal).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(String::from).collect()
    }

    #[test]
    fn recognises_our_qemu_and_libvirts() {
        assert_eq!(
            vm_name_in_cmdline(&args("qemu-system-x86_64 -name boma-it-askari-1a -m 3072")),
            Some(crate::fake::vm("boma-it-askari-1a"))
        );
        assert_eq!(
            vm_name_in_cmdline(&args(
                "/usr/bin/qemu-system-x86_64 -name guest=boma-it-askari-2b,debug-threads=on"
            )),
            Some(crate::fake::vm("boma-it-askari-2b"))
        );
    }

    #[test]
    fn ignores_other_vms_and_other_programs() {
        assert_eq!(
            vm_name_in_cmdline(&args("qemu-system-x86_64 -name prod-db -m 1")),
            None
        );
        assert_eq!(
            vm_name_in_cmdline(&args("bash -c qemu-system-x86_64 -name boma-it-x")),
            None
        );
        assert_eq!(vm_name_in_cmdline(&args("qemu-system-x86_64 -m 1")), None);
    }

    #[test]
    fn harness_children_are_recognised_by_run_dir_or_key() {
        let markers = [
            "/repo/tests/integration/.run/boma-it-",
            "/root/.local/state/boma-it/ssh/",
        ];
        let ansible = args(
            "/repo/.venv/bin/python3 /repo/.venv/bin/ansible-playbook -i /repo/tests/integration/.run/boma-it-askari-1/inventory/ site.yml",
        );
        let ssh = args(
            "ssh -o IdentityFile=/root/.local/state/boma-it/ssh/id_ed25519 -p 40022 ansible@127.0.0.1",
        );
        let qemu = args(
            "qemu-system-x86_64 -name boma-it-askari-1 -qmp unix:/repo/tests/integration/.run/boma-it-askari-1/qmp.sock",
        );
        assert!(is_harness_child(&ansible, &markers));
        assert!(is_harness_child(&ssh, &markers));
        assert!(
            !is_harness_child(&qemu, &markers),
            "the VM is the backends' to stop"
        );
        assert!(!is_harness_child(&args("ssh ops@askari.example"), &markers));
        assert!(!is_harness_child(&[], &markers));
        assert!(!is_harness_child(&args("anything"), &[""]));
    }

    /// Our own QEMU's arguments for a VM whose run directory is `dir` (what `qemu_args` makes).
    fn our_qemu(dir: &str) -> Vec<String> {
        let spec = crate::BootSpec {
            dir: dir.into(),
            overlay: format!("{dir}/overlay.qcow2").into(),
            seed: format!("{dir}/seed.img").into(),
            console: format!("{dir}/console.log").into(),
            ..crate::BootSpec::example()
        };
        let ports = crate::hypervisor::qemu::ForwardedPorts {
            ssh: 40022,
            published: Default::default(),
        };
        let mut args = vec!["qemu-system-x86_64".to_owned()];
        args.extend(crate::hypervisor::qemu::qemu_args(&spec, &ports).unwrap());
        args
    }

    #[test]
    fn a_vm_belongs_to_the_checkout_whose_run_directory_holds_its_files() {
        let name = crate::BootSpec::example().name;
        let root = "/repo/tests/integration/.run";
        let process = VmProcess {
            pid: 1,
            name: name.clone(),
            libvirt: false,
            args: our_qemu(&format!("{root}/{name}")),
        };
        assert!(process.runs_from(Utf8Path::new(root)));
        assert!(process.runs_from(Utf8Path::new("/repo/tests/integration/.run/")));
        assert!(!process.runs_from(Utf8Path::new("/other/tests/integration/.run")));
        assert!(!process.runs_from(Utf8Path::new("/repo/tests/integration")));
    }

    /// The pair that a substring match got wrong: the checkout `/srv/boma` pruned the VMs of
    /// the checkout `/home/ci/srv/boma`, whose run directory's path contains its own.
    #[test]
    fn a_checkout_owns_no_vm_of_a_checkout_whose_path_merely_contains_its_own() {
        let name = crate::BootSpec::example().name;
        let theirs = VmProcess {
            pid: 1,
            name: name.clone(),
            libvirt: false,
            args: our_qemu(&format!("/home/ci/srv/boma/tests/integration/.run/{name}")),
        };
        assert!(!theirs.runs_from(Utf8Path::new("/srv/boma/tests/integration/.run")));
        assert!(theirs.runs_from(Utf8Path::new("/home/ci/srv/boma/tests/integration/.run")));
        // Nor a sibling whose name starts like it, nor a file of another VM's directory.
        let sibling = VmProcess {
            args: our_qemu(&format!("/srv/boma-old/tests/integration/.run/{name}")),
            ..theirs.clone()
        };
        assert!(!sibling.runs_from(Utf8Path::new("/srv/boma/tests/integration/.run")));
        let elsewhere = VmProcess {
            args: our_qemu("/srv/boma/tests/integration/.run/boma-it-other-1"),
            ..theirs
        };
        assert!(!elsewhere.runs_from(Utf8Path::new("/srv/boma/tests/integration/.run")));
    }

    #[test]
    fn libvirts_qemu_is_placed_by_its_block_device_files() {
        let args = args(
            r#"/usr/bin/qemu-system-x86_64 -name guest=boma-it-a-1,debug-threads=on -blockdev {"driver":"file","filename":"/srv/boma/tests/integration/.run/boma-it-a-1/overlay.qcow2","node-name":"libvirt-2-storage"}"#,
        );
        let name = crate::fake::vm("boma-it-a-1");
        assert!(runs_from(
            &args,
            &name,
            Utf8Path::new("/srv/boma/tests/integration/.run")
        ));
        assert!(!runs_from(
            &args,
            &name,
            Utf8Path::new("/boma/tests/integration/.run")
        ));
    }

    #[test]
    fn a_dead_pid_is_not_a_vm() {
        assert!(!is_vm_process(u32::MAX - 1, "boma-it-x"));
        assert!(!is_vm_process(std::process::id(), "boma-it-x"));
    }
}
