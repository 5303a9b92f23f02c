//! Finding the hypervisor processes of test VMs from `/proc`, without trusting any record:
//! after a crash the run files may be gone, but the QEMU process still carries its `-name`.

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
    /// Its command line, which names its disks (and so the run directory they live in).
    pub cmdline: String,
}

impl VmProcess {
    /// Whether its disks live under `root` (a checkout's run directory): whether it is this
    /// checkout's VM.
    pub fn under(&self, root: &camino::Utf8Path) -> bool {
        self.cmdline
            .contains(&format!("{}/", root.as_str().trim_end_matches('/')))
    }
}

/// The test VM name in a QEMU command line (`-name boma-it-x` or libvirt's
/// `-name guest=boma-it-x,debug-threads=on`), if it is a QEMU running one.
pub fn vm_name_in_cmdline(args: &[String]) -> Option<VmName> {
    let program = args.first()?;
    if !program.rsplit('/').next()?.starts_with("qemu-system") {
        return None;
    }
    let value = args.iter().skip_while(|a| *a != "-name").nth(1)?;
    let first = value.split(',').next()?;
    let name = first.strip_prefix("guest=").unwrap_or(first);
    VmName::parse(name).ok()
}

/// A process's arguments (empty for a zombie or a kernel thread), `None` when it is gone.
fn args_of(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Every process on this machine, with its arguments, in pid order.
pub fn processes() -> Vec<(u32, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, Vec<String>)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter_map(|pid| Some((pid, args_of(pid)?)))
        .collect();
    found.sort_by_key(|(pid, _)| *pid);
    found
}

/// Every QEMU process on this machine running a `boma-it-` VM.
pub fn vm_processes() -> Vec<VmProcess> {
    processes()
        .into_iter()
        .filter_map(|(pid, args)| {
            let name = vm_name_in_cmdline(&args)?;
            let libvirt = args
                .iter()
                .skip_while(|a| *a != "-name")
                .nth(1)
                .is_some_and(|v| v.starts_with("guest="));
            Some(VmProcess {
                pid,
                name,
                libvirt,
                cmdline: args.join(" "),
            })
        })
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
/// VM's QEMU itself (the backends stop that one, politely). Pure.
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
    processes()
        .into_iter()
        .filter(|(pid, args)| *pid != me && *pid != parent && is_harness_child(args, markers))
        .map(|(pid, args)| Orphan {
            pid,
            cmdline: args.join(" "),
        })
        .collect()
}

/// The pids of processes whose command name is `comm`.
pub fn pids_named(comm: &str) -> Vec<u32> {
    processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim() == comm)
        })
        .collect()
}

/// Whether `pid` is alive and still the QEMU of VM `name` (a recycled pid is not; a zombie,
/// with its empty command line, is dead for our purposes).
pub fn is_vm_process(pid: u32, name: &str) -> bool {
    args_of(pid).is_some_and(|args| vm_name_in_cmdline(&args).is_some_and(|n| n.as_str() == name))
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

    #[test]
    fn a_vm_belongs_to_the_checkout_whose_run_directory_holds_its_disks() {
        let process = VmProcess {
            pid: 1,
            name: crate::fake::vm("boma-it-a-1"),
            libvirt: false,
            cmdline: "qemu-system-x86_64 -name boma-it-a-1 -drive file=/repo/tests/integration/.run/boma-it-a-1/overlay.qcow2,if=virtio".into(),
        };
        assert!(process.under(camino::Utf8Path::new("/repo/tests/integration/.run")));
        assert!(process.under(camino::Utf8Path::new("/repo/tests/integration/.run/")));
        assert!(!process.under(camino::Utf8Path::new("/other/tests/integration/.run")));
    }

    #[test]
    fn a_dead_pid_is_not_a_vm() {
        assert!(!is_vm_process(u32::MAX - 1, "boma-it-x"));
        assert!(!is_vm_process(std::process::id(), "boma-it-x"));
    }
}
