//! Finding the hypervisor processes of test VMs from `/proc`, without trusting any record:
//! after a crash the run files may be gone, but the QEMU process still carries its `-name`.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::NAME_PREFIX;

/// A QEMU process running a test VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmProcess {
    pub pid: u32,
    pub name: String,
}

/// The test VM name in a QEMU command line (`-name boma-it-x` or libvirt's
/// `-name guest=boma-it-x,debug-threads=on`), if it is a QEMU running one.
pub fn vm_name_in_cmdline(args: &[String]) -> Option<String> {
    let program = args.first()?;
    if !program.rsplit('/').next()?.starts_with("qemu-system") {
        return None;
    }
    let value = args.iter().skip_while(|a| *a != "-name").nth(1)?;
    let first = value.split(',').next()?;
    let name = first.strip_prefix("guest=").unwrap_or(first);
    name.starts_with(NAME_PREFIX).then(|| name.to_owned())
}

/// Every QEMU process on this machine running a `boma-it-` VM.
pub fn vm_processes() -> Vec<VmProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<VmProcess> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            vm_name_in_cmdline(&args).map(|name| VmProcess { pid, name })
        })
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

/// A process the harness started that outlived it (the harness was SIGKILLed): an
/// `ansible-playbook` or `ssh` still aimed at a test VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub pid: u32,
    pub cmdline: String,
}

/// Whether a command line belongs to the harness's work on a test VM: it names the run
/// directory of a VM (the transient inventory) or the harness's own SSH key. Pure.
pub fn is_harness_child(cmdline: &str, markers: &[&str]) -> bool {
    !cmdline.is_empty() && markers.iter().any(|m| !m.is_empty() && cmdline.contains(m))
}

/// Every process (but this one and its parent) whose command line carries one of `markers`.
pub fn orphans(markers: &[&str]) -> Vec<Orphan> {
    let me = std::process::id();
    let parent = std::os::unix::process::parent_id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<Orphan> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            if pid == me || pid == parent {
                return None;
            }
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = raw
                .split(|b| *b == 0)
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(" ");
            let cmdline = cmdline.trim().to_owned();
            is_harness_child(&cmdline, markers).then_some(Orphan { pid, cmdline })
        })
        .collect();
    found.sort_by_key(|o| o.pid);
    found
}

/// SIGKILL `pid` if its command line still carries one of `markers` (it was not recycled).
pub fn kill_orphan(orphan: &Orphan, markers: &[&str]) -> bool {
    let still = std::fs::read(format!("/proc/{}/cmdline", orphan.pid))
        .ok()
        .is_some_and(|raw| {
            let cmdline = raw
                .split(|b| *b == 0)
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(" ");
            is_harness_child(&cmdline, markers)
        });
    still && kill(Pid::from_raw(orphan.pid as i32), Signal::SIGKILL).is_ok()
}

/// The pids of processes whose command name is `comm`.
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (name.trim() == comm).then_some(pid)
        })
        .collect()
}

/// Whether `pid` is alive and still the QEMU of VM `name` (a recycled pid is not).
pub fn is_vm_process(pid: u32, name: &str) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // A zombie has an empty cmdline: it is dead for our purposes.
    vm_name_in_cmdline(&args).as_deref() == Some(name)
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
            Some("boma-it-askari-1a".into())
        );
        assert_eq!(
            vm_name_in_cmdline(&args(
                "/usr/bin/qemu-system-x86_64 -name guest=boma-it-askari-2b,debug-threads=on"
            )),
            Some("boma-it-askari-2b".into())
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
        let ansible = "/repo/.venv/bin/python3 /repo/.venv/bin/ansible-playbook -i /repo/tests/integration/.run/boma-it-askari-1/inventory/ site.yml";
        let ssh = "ssh -o IdentityFile=\"/root/.local/state/boma-it/ssh/id_ed25519\" -p 40022 ansible@127.0.0.1";
        assert!(is_harness_child(ansible, &markers));
        assert!(is_harness_child(ssh, &markers));
        assert!(!is_harness_child("ssh ops@askari.example", &markers));
        assert!(!is_harness_child("", &markers));
        assert!(!is_harness_child("anything", &[""]));
    }

    #[test]
    fn a_dead_pid_is_not_a_vm() {
        assert!(!is_vm_process(u32::MAX - 1, "boma-it-x"));
        assert!(!is_vm_process(std::process::id(), "boma-it-x"));
    }
}
