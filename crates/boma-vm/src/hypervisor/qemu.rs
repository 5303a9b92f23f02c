//! The QEMU backend: `qemu-system-x86_64` driven directly, no daemon.
//!
//! User-mode networking forwards SSH and every published guest port to 127.0.0.1 (the host
//! talks to the guest only over loopback); QMP on a unix socket resets, stops and queries it;
//! the serial console goes to a file; `-daemonize -pidfile` detaches it from the harness, so
//! a Ctrl-C in the terminal reaches the harness (which then decides) and not the VM.

use boma_exec::say;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use boma_exec::CmdExt;
use boma_name::VmName;
use camino::Utf8Path;
use nix::sys::signal::Signal;
use xshell::{Shell, cmd};

use crate::host::{ports, procs};
use crate::hypervisor::qmp;
use crate::hypervisor::vde::VdeSwitches;
use crate::hypervisor::{BackendKind, BootSpec, Booted, Endpoint, Hypervisor, RebootHow, Segments};
use crate::run::dir::{PIDFILE, QMP_SOCKET};
use crate::{RunRecord, VmError};

/// Unix socket paths are limited to 108 bytes; QEMU fails obscurely past that.
const SOCKET_PATH_MAX: usize = 107;
/// Attempts at binding freshly probed ports (another process may take one in between).
const BOOT_ATTEMPTS: usize = 3;

/// The loopback ports one VM gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedPorts {
    pub ssh: u16,
    /// Guest port → host port.
    pub published: BTreeMap<u16, u16>,
}

/// QEMU's arguments for `spec` (program name excluded): a fleet member's second NIC, on its
/// switch, right after the first. Refused when the member's segment is not a switch. Pure.
pub fn qemu_args(spec: &BootSpec, ports: &ForwardedPorts) -> Result<Vec<String>, VmError> {
    let fleet_nic = match &spec.fleet_nic {
        Some(nic) => nic.qemu_args()?,
        None => Vec::new(),
    };
    let dir = &spec.dir;
    let mut netdev = format!("user,id=n0,hostfwd=tcp:127.0.0.1:{}-:22", ports.ssh);
    for (guest, host) in &ports.published {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    let args = [
        "-name".to_owned(),
        spec.name.to_string(),
        "-machine".to_owned(),
        "pc".to_owned(),
        "-accel".to_owned(),
        spec.accel.qemu_accel().to_owned(),
        "-cpu".to_owned(),
        spec.accel.qemu_cpu().to_owned(),
        "-smp".to_owned(),
        spec.vcpus.to_string(),
        "-m".to_owned(),
        spec.mem_mib.to_string(),
        "-nodefaults".to_owned(),
        "-display".to_owned(),
        "none".to_owned(),
        // cache=unsafe: the overlay is thrown away; ignoring guest flushes makes TCG disk I/O
        // markedly faster, and a guest reset cannot lose data the QEMU process still holds.
        "-drive".to_owned(),
        format!(
            "file={},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            spec.overlay
        ),
        "-drive".to_owned(),
        format!("file={},if=virtio,format=raw,readonly=on", spec.seed),
        "-netdev".to_owned(),
        netdev,
        "-device".to_owned(),
        format!("virtio-net-pci,netdev=n0,mac={}", spec.mac),
    ];
    let rest = [
        // Entropy for early-boot key generation (sshd host keys) without waiting on jitter.
        "-device".to_owned(),
        "virtio-rng-pci".to_owned(),
        // Appended, so that a power cycle's second QEMU adds to the console log of the first.
        "-chardev".to_owned(),
        format!("file,id=console,path={},append=on", spec.console),
        "-serial".to_owned(),
        "chardev:console".to_owned(),
        "-qmp".to_owned(),
        format!("unix:{dir}/{QMP_SOCKET},server=on,wait=off"),
        "-pidfile".to_owned(),
        format!("{dir}/{PIDFILE}"),
        "-daemonize".to_owned(),
    ];
    Ok(args.into_iter().chain(fleet_nic).chain(rest).collect())
}

/// Drives `qemu-system-x86_64`.
pub struct QemuBackend<'a> {
    sh: &'a Shell,
    /// This checkout's run directory: its VMs are the ones whose disks live there.
    runs_root: &'a Utf8Path,
}

impl<'a> QemuBackend<'a> {
    pub fn new(sh: &'a Shell, runs_root: &'a Utf8Path) -> QemuBackend<'a> {
        QemuBackend { sh, runs_root }
    }

    fn pid_of(&self, name: &VmName, record: Option<&RunRecord>) -> Option<u32> {
        record
            .and_then(|r| r.pid)
            .filter(|pid| procs::is_vm_process(*pid, name.as_str()))
            .or_else(|| {
                // Never libvirt's QEMU of the same name: that one is libvirt's to stop.
                procs::vm_processes()
                    .into_iter()
                    .find(|p| &p.name == name && !p.libvirt)
                    .map(|p| p.pid)
            })
    }
}

impl Hypervisor for QemuBackend<'_> {
    fn kind(&self) -> BackendKind {
        BackendKind::Qemu
    }

    fn boot(&self, spec: &BootSpec) -> Result<Booted, VmError> {
        let socket = spec.dir.join(QMP_SOCKET);
        if socket.as_str().len() > SOCKET_PATH_MAX {
            return Err(VmError::Preflight(format!(
                "the QMP socket path {socket} is longer than a unix socket allows ({SOCKET_PATH_MAX} bytes); clone the repository to a shorter path"
            )));
        }
        let sh = self.sh;
        let mut last_error = None;
        for _ in 0..BOOT_ATTEMPTS {
            let probed = ports::free_loopback_ports(1 + spec.published_ports.len())?;
            let forwarded = ForwardedPorts {
                ssh: probed[0],
                published: spec
                    .published_ports
                    .iter()
                    .copied()
                    .zip(probed[1..].iter().copied())
                    .collect(),
            };
            let args = qemu_args(spec, &forwarded)?;
            match cmd!(sh, "qemu-system-x86_64 {args...}")
                .exec()
                .timeout(Duration::from_secs(60))
                .run()
            {
                Ok(_) => {
                    let pidfile = spec.dir.join(PIDFILE);
                    let pid = read_pid(&pidfile)?;
                    let endpoint = |port| Endpoint {
                        host: "127.0.0.1".to_owned(),
                        port,
                    };
                    return Ok(Booted {
                        ssh: endpoint(forwarded.ssh),
                        published: forwarded
                            .published
                            .iter()
                            .map(|(g, h)| (*g, endpoint(*h)))
                            .collect(),
                        pid: Some(pid),
                    });
                }
                // Lost a race for a probed port: probe again.
                Err(e) if e.to_string().contains("host forwarding rule") => last_error = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_error.expect("at least one attempt").into())
    }

    fn address(&self, record: &RunRecord) -> Result<Option<Booted>, VmError> {
        // User-mode networking: the addresses were fixed at boot.
        Ok(Some(Booted {
            ssh: endpoint_of(record),
            published: record.published.clone(),
            pid: record.pid,
        }))
    }

    fn reboot(&self, record: &RunRecord, how: RebootHow) -> Result<bool, VmError> {
        match how {
            RebootHow::Guest => Ok(false),
            RebootHow::Hard => {
                qmp::execute(&record.dir.join(QMP_SOCKET), "system_reset")?;
                Ok(true)
            }
        }
    }

    fn start(&self, record: &RunRecord) -> Result<Booted, VmError> {
        // The same ports as the first boot: the record, the inventory and the probes name them.
        let spec = BootSpec::of_record(record);
        let forwarded = ForwardedPorts {
            ssh: record.ssh.port,
            published: record
                .published
                .iter()
                .map(|(guest, ep)| (*guest, ep.port))
                .collect(),
        };
        let args = qemu_args(&spec, &forwarded)?;
        let sh = self.sh;
        cmd!(sh, "qemu-system-x86_64 {args...}")
            .exec()
            .timeout(Duration::from_secs(60))
            .run()?;
        let pid = read_pid(&spec.dir.join(PIDFILE))?;
        Ok(Booted {
            ssh: endpoint_of(record),
            published: record.published.clone(),
            pid: Some(pid),
        })
    }

    fn is_running(&self, record: &RunRecord) -> Result<bool, VmError> {
        Ok(record
            .pid
            .is_some_and(|pid| procs::is_vm_process(pid, record.name.as_str())))
    }

    fn suspend(&self, record: &RunRecord) -> Result<(), VmError> {
        qmp::execute(&record.dir.join(QMP_SOCKET), "stop").map(|_| ())
    }

    fn resume(&self, record: &RunRecord) -> Result<(), VmError> {
        qmp::execute(&record.dir.join(QMP_SOCKET), "cont").map(|_| ())
    }

    fn stop(&self, record: &RunRecord) -> Result<(), VmError> {
        // QEMU has no definition beyond its process: its files in the run directory are all
        // `start` needs.
        self.destroy(&record.name, Some(record))
    }

    fn destroy(&self, name: &VmName, record: Option<&RunRecord>) -> Result<(), VmError> {
        let Some(pid) = self.pid_of(name, record) else {
            return Ok(());
        };
        let name = name.as_str();
        let socket = record.map(|r| r.dir.join(QMP_SOCKET));
        // Politely first (QMP quit), then SIGTERM, then SIGKILL: each given a few seconds.
        if let Some(socket) = socket.filter(|s| s.exists()) {
            if let Err(e) = qmp::execute(&socket, "quit") {
                say!("    QMP quit failed ({e}); signalling pid {pid}");
            }
            if wait_gone(pid, name, Duration::from_secs(5)) {
                return Ok(());
            }
        }
        say!("+ kill -TERM {pid}  # {name}");
        procs::signal_vm(pid, name, Signal::SIGTERM);
        if wait_gone(pid, name, Duration::from_secs(5)) {
            return Ok(());
        }
        say!("+ kill -KILL {pid}  # {name}");
        procs::signal_vm(pid, name, Signal::SIGKILL);
        if wait_gone(pid, name, Duration::from_secs(5)) {
            Ok(())
        } else {
            Err(VmError::Backend(format!(
                "QEMU pid {pid} of {name} survived SIGKILL"
            )))
        }
    }

    fn leftovers(&self) -> Result<Vec<VmName>, VmError> {
        // This checkout's own, started by us: another checkout's runs and libvirt's guests
        // are not ours to stop.
        Ok(procs::vm_processes()
            .into_iter()
            .filter(|p| !p.libvirt && p.runs_from(self.runs_root))
            .map(|p| p.name)
            .collect())
    }

    fn segments(&self) -> Box<dyn Segments + '_> {
        Box::new(VdeSwitches::new(self.sh, self.runs_root))
    }
}

fn endpoint_of(record: &RunRecord) -> Endpoint {
    Endpoint {
        host: record.ssh.host.clone(),
        port: record.ssh.port,
    }
}

fn read_pid(pidfile: &Utf8Path) -> Result<u32, VmError> {
    let text = std::fs::read_to_string(pidfile).map_err(|e| VmError::io(pidfile, e))?;
    text.trim()
        .parse()
        .map_err(|_| VmError::Backend(format!("{pidfile} does not hold a pid: {text:?}")))
}

/// Wait until `pid` is no longer the QEMU of `name`. Not interruptible on purpose: it runs
/// during cleanup, which must finish.
fn wait_gone(pid: u32, name: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !procs::is_vm_process(pid, name) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    !procs::is_vm_process(pid, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_snapshot() {
        let spec = BootSpec::example();
        let ports = ForwardedPorts {
            ssh: 40022,
            published: BTreeMap::from([(443, 40443)]),
        };
        insta::assert_snapshot!(
            "qemu_args_tcg",
            qemu_args(&spec, &ports).unwrap().join("\n")
        );
    }

    /// A fleet member: the single VM's command line with the second NIC, on the run's switch,
    /// right after the first.
    #[test]
    fn fleet_member_command_line_snapshot() {
        let ports = ForwardedPorts {
            ssh: 40022,
            published: BTreeMap::from([(443, 40443)]),
        };
        let single = qemu_args(&BootSpec::example(), &ports).unwrap();
        let member = qemu_args(&BootSpec::fleet_example(BackendKind::Qemu), &ports).unwrap();
        insta::assert_snapshot!("qemu_args_fleet_member", member.join("\n"));
        let at = member
            .iter()
            .position(|a| a.starts_with("vde,id=fleet0,"))
            .expect("the fleet netdev")
            - 1;
        let mut without = member.clone();
        let nic: Vec<String> = without.drain(at..at + 4).collect();
        assert_eq!(without, single, "only the fleet NIC is added");
        assert_eq!(nic[2], "-device");
        assert!(nic[3].starts_with("virtio-net-pci,netdev=fleet0,mac=52:54:0a:e7:00:0a"));
        let on_network = qemu_args(&BootSpec::fleet_example(BackendKind::Libvirt), &ports);
        assert!(on_network.is_err());
    }
}
