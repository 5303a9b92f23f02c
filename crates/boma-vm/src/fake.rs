//! In-memory stand-ins for a hypervisor, a guest and disk tools, for fast tests of the logic
//! that drives them. They never prove a feature works: the VM suite does that.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::rc::Rc;
use std::time::Duration;

use boma_exec::{Captured, ExecError};
use boma_name::VmName;
use camino::{Utf8Path, Utf8PathBuf};

use crate::guest::ssh::SSH_FAILED;
use crate::hypervisor::{
    BackendKind, BootSpec, Booted, Endpoint, Hypervisor, RebootHow, Segment, Segments,
};
use crate::lifecycle::{Disks, SeedFiles};
use crate::{Guest, RunRecord, SshTarget, VmError};

/// The simulated machine and guest, shared by the fakes.
#[derive(Debug, Default)]
pub struct World {
    /// VMs the fake hypervisors run.
    pub running: BTreeSet<VmName>,
    /// Which backend runs a VM (absent: QEMU): a fake backend sees only its own VMs.
    pub kinds: BTreeMap<VmName, BackendKind>,
    /// Increments with every boot; rendered as a boot_id.
    pub boot_count: u32,
    /// SSH attempts that fail (exit 255) before the guest answers.
    pub unreachable_polls: u32,
    /// After a reboot, how many answers still come from the old boot before it goes down.
    pub stale_after_reboot: u32,
    stale_remaining: u32,
    /// cloud-init's `status --wait` exit status.
    pub cloud_init_status: i32,
    /// The guest never answers SSH again after a reboot.
    pub never_returns: bool,
    /// What the fake writes to the serial console file at each boot (a real QEMU writes the
    /// guest's boot messages there).
    pub console_text: String,
    /// What the guest prints on its console in the boots after reboots or resets, in order
    /// (appended, as a real console across boots); the last entry repeats.
    pub console_after_reboot: Vec<String>,
    reboots: usize,
    /// Each VM's serial console file.
    pub consoles: BTreeMap<VmName, Utf8PathBuf>,
    /// The VM process dies on the next `is_running` check.
    pub dies: bool,
    /// `boot` fails.
    pub boot_fails: bool,
    /// `destroy` fails (the VM stays).
    pub destroy_fails: bool,
    /// After the first reboot the guest answers only at this address (a new DHCP lease, as
    /// libvirt's network can hand out), and the backend reports it there.
    pub moves_to_after_reboot: Option<String>,
    /// Deliver this signal (as `boma_exec::interrupt::simulate` does) when the guest is asked to
    /// run a command containing the text: an interrupt at a precise moment.
    pub interrupt_on: Option<(String, i32)>,
    /// Text the guest prints with every root command's answer (to check redaction).
    pub says: Option<String>,
    /// What the guest prints for a script containing the marker (the first that matches).
    pub script_answers: Vec<(String, String)>,
    /// What a state capture prints in each boot (the first boot is index 0; the last entry
    /// answers for every later boot).
    pub captures: Vec<String>,
    /// The guest has a route to the real fleet (the unreachable routes were lost).
    pub routed: bool,
    /// Which VM answers on which ssh port.
    pub by_port: BTreeMap<u16, VmName>,
    /// Every command the fake guest was asked to run.
    pub commands: Vec<String>,
    pub destroyed: Vec<VmName>,
    /// VMs powered off and kept (`stop`), in order.
    pub stopped: Vec<VmName>,
    /// VMs started again after they were powered off (`start`), in order.
    pub started: Vec<VmName>,
    /// Which backend removed each VM of `destroyed`, in the same order.
    pub destroyed_by: Vec<BackendKind>,
    pub booted: Vec<VmName>,
    /// Each VM's boot (its value of `boot_count` when it last booted): a VM answers with its
    /// own boot_id, so that several VMs reboot apart.
    pub boot_of: BTreeMap<VmName, u32>,
    /// Frozen VMs (`suspend`): their guests answer nothing until `resume`.
    pub frozen: BTreeSet<VmName>,
    /// What the hypervisors did to whom, in order (`boot x`, `suspend x`, `reset x`, `resume x`),
    /// when a first boot was asked whether it is ready (`ready? x`), and
    /// each guest's settled state when asked (`settle x (at most): starting`).
    pub events: Vec<String>,
    /// What `systemctl is-system-running` answers in a VM, in order (the last repeats); absent:
    /// `running`.
    pub system_states: BTreeMap<VmName, Vec<String>>,
    /// The fleet segments up now.
    pub segments: BTreeSet<Segment>,
    /// Segments found on the machine that no run of this test created (a crash's, another
    /// checkout's).
    pub foreign_segments: BTreeSet<Segment>,
    /// Every segment created, then destroyed, in order.
    pub segments_created: Vec<Segment>,
    pub segments_destroyed: Vec<Segment>,
    /// How many times each VM has booted (its first boot, reboots, resets and starts).
    pub boots: BTreeMap<VmName, u32>,
    /// Which VM has which fleet address (its fleet NIC's, at boot).
    pub fleet_addresses: BTreeMap<std::net::Ipv4Addr, VmName>,
    /// Which VM a published port's endpoint (on the controller) forwards to.
    pub published_by: BTreeMap<u16, VmName>,
    /// What a state capture prints in the VMs whose name contains the text, by that VM's own
    /// boot (its first boot is index 0; the last entry answers for every later boot): several
    /// VMs, each its own story. A VM no entry names answers from [`World::captures`].
    pub captures_by: Vec<(String, Vec<String>)>,
}

impl World {
    pub fn shared() -> Rc<RefCell<World>> {
        Rc::new(RefCell::new(World::default()))
    }

    pub fn boot_id(&self) -> String {
        format!("00000000-0000-0000-0000-{:012x}", self.boot_count)
    }

    /// The boot_id of the VM answering on ssh port `port`: its own boot's, or (a VM the fake
    /// does not tell apart) the machine's last.
    pub fn boot_id_at(&self, port: u16) -> String {
        let boot = self
            .by_port
            .get(&port)
            .and_then(|name| self.boot_of.get(name))
            .copied()
            .unwrap_or(self.boot_count);
        format!("00000000-0000-0000-0000-{boot:012x}")
    }
}

fn status(code: i32) -> ExitStatus {
    ExitStatus::from_raw(code << 8)
}

fn captured(code: i32, stdout: impl Into<String>) -> Captured {
    Captured {
        status: status(code),
        stdout: stdout.into(),
        stderr: String::new(),
    }
}

/// Both backends, faked over one [`World`].
pub struct FakeHypervisors {
    pub world: Rc<RefCell<World>>,
}

impl crate::lifecycle::Hypervisors for FakeHypervisors {
    fn get(&self, kind: BackendKind) -> Box<dyn Hypervisor + '_> {
        Box::new(FakeBackend {
            world: Rc::clone(&self.world),
            kind,
        })
    }
}

/// A test VM name for fakes and tests.
pub fn vm(name: &str) -> VmName {
    VmName::parse(name).expect("a test vm name")
}

/// A hypervisor that runs nothing.
pub struct FakeBackend {
    pub world: Rc<RefCell<World>>,
    pub kind: BackendKind,
}

impl Hypervisor for FakeBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn boot(&self, spec: &BootSpec) -> Result<Booted, VmError> {
        let mut w = self.world.borrow_mut();
        if w.boot_fails {
            return Err(VmError::Backend("fake boot failure".into()));
        }
        w.running.insert(spec.name.clone());
        w.kinds.insert(spec.name.clone(), self.kind);
        w.booted.push(spec.name.clone());
        w.events.push(format!("boot {}", spec.name));
        w.consoles.insert(spec.name.clone(), spec.console.clone());
        if !w.console_text.is_empty() {
            std::fs::write(&spec.console, &w.console_text)
                .map_err(|e| VmError::io(&spec.console, e))?;
        }
        w.boot_count += 1;
        let boot = w.boot_count;
        w.boot_of.insert(spec.name.clone(), boot);
        *w.boots.entry(spec.name.clone()).or_default() += 1;
        if let Some(nic) = &spec.fleet_nic {
            w.fleet_addresses.insert(nic.address, spec.name.clone());
        }
        // Each VM its own endpoints (the first VM's at 40000 + port): a fake prober tells the
        // VMs apart by them.
        let offset = 1000 * (w.booted.len() as u16 - 1);
        let published: BTreeMap<u16, Endpoint> = spec
            .published_ports
            .iter()
            .map(|p| {
                (
                    *p,
                    Endpoint {
                        host: "127.0.0.1".into(),
                        port: 40000 + p + offset,
                    },
                )
            })
            .collect();
        for endpoint in published.values() {
            w.published_by.insert(endpoint.port, spec.name.clone());
        }
        // Each VM its own ssh port: the fake guest tells them apart by it.
        let port = 2222 + w.booted.len() as u16;
        w.by_port.insert(port, spec.name.clone());
        Ok(Booted {
            ssh: Endpoint {
                host: "127.0.0.1".into(),
                port,
            },
            published,
            // A live process (the test itself), as a QEMU pid would be.
            pid: Some(std::process::id()),
        })
    }

    fn address(&self, record: &RunRecord) -> Result<Option<Booted>, VmError> {
        let w = self.world.borrow();
        let host = match &w.moves_to_after_reboot {
            Some(new) if w.boot_count > 1 => new.clone(),
            _ => record.ssh.host.clone(),
        };
        Ok(Some(Booted {
            ssh: Endpoint {
                host,
                port: record.ssh.port,
            },
            published: record.published.clone(),
            pid: record.pid,
        }))
    }

    fn reboot(&self, record: &RunRecord, how: RebootHow) -> Result<bool, VmError> {
        match how {
            RebootHow::Guest => Ok(false),
            RebootHow::Hard => {
                let mut w = self.world.borrow_mut();
                w.events.push(format!("reset {}", record.name));
                w.reboot(Some(&record.name));
                Ok(true)
            }
        }
    }

    fn start(&self, record: &RunRecord) -> Result<Booted, VmError> {
        let mut w = self.world.borrow_mut();
        w.running.insert(record.name.clone());
        w.started.push(record.name.clone());
        w.kinds.insert(record.name.clone(), self.kind);
        // A start is a boot: the guest prints it on the console, as after a reboot.
        w.print_next_boot(&record.name);
        w.boot_count += 1;
        let boot = w.boot_count;
        w.boot_of.insert(record.name.clone(), boot);
        *w.boots.entry(record.name.clone()).or_default() += 1;
        w.unreachable_polls = if w.never_returns { u32::MAX } else { 2 };
        Ok(Booted {
            ssh: Endpoint {
                host: record.ssh.host.clone(),
                port: record.ssh.port,
            },
            published: record.published.clone(),
            pid: record.pid,
        })
    }

    fn is_running(&self, record: &RunRecord) -> Result<bool, VmError> {
        let mut w = self.world.borrow_mut();
        if w.dies {
            w.running.remove(&record.name);
        }
        Ok(w.running.contains(&record.name) && w.kind_of(&record.name) == self.kind)
    }

    fn suspend(&self, record: &RunRecord) -> Result<(), VmError> {
        let mut w = self.world.borrow_mut();
        w.events.push(format!("suspend {}", record.name));
        w.frozen.insert(record.name.clone());
        Ok(())
    }

    fn resume(&self, record: &RunRecord) -> Result<(), VmError> {
        let mut w = self.world.borrow_mut();
        w.events.push(format!("resume {}", record.name));
        w.frozen.remove(&record.name);
        Ok(())
    }

    fn stop(&self, record: &RunRecord) -> Result<(), VmError> {
        let mut w = self.world.borrow_mut();
        if w.kind_of(&record.name) == self.kind {
            w.running.remove(&record.name);
            w.stopped.push(record.name.clone());
        }
        Ok(())
    }

    fn destroy(&self, name: &VmName, _record: Option<&RunRecord>) -> Result<(), VmError> {
        let mut w = self.world.borrow_mut();
        // Another backend cannot remove what it does not run.
        if w.running.contains(name) && w.kind_of(name) != self.kind {
            return Ok(());
        }
        if w.destroy_fails {
            return Err(VmError::Backend("fake destroy failure".into()));
        }
        w.running.remove(name);
        w.destroyed.push(name.clone());
        w.destroyed_by.push(self.kind);
        Ok(())
    }

    fn leftovers(&self) -> Result<Vec<VmName>, VmError> {
        let w = self.world.borrow();
        Ok(w.running
            .iter()
            .filter(|n| w.kind_of(n) == self.kind)
            .cloned()
            .collect())
    }

    fn segments(&self) -> Box<dyn Segments + '_> {
        Box::new(FakeSegments {
            world: Rc::clone(&self.world),
            kind: self.kind,
        })
    }
}

/// A backend's segments, in [`World`]: each backend sees only its own kind of segment.
pub struct FakeSegments {
    pub world: Rc<RefCell<World>>,
    pub kind: BackendKind,
}

impl FakeSegments {
    fn own(&self, segment: &Segment) -> Result<(), VmError> {
        if segment.kind() == self.kind {
            Ok(())
        } else {
            Err(VmError::Backend(format!(
                "the fake {} backend has no {segment}",
                self.kind
            )))
        }
    }
}

impl Segments for FakeSegments {
    fn create(&self, segment: &Segment) -> Result<(), VmError> {
        self.own(segment)?;
        let mut w = self.world.borrow_mut();
        if w.segments.insert(segment.clone()) {
            w.segments_created.push(segment.clone());
        }
        Ok(())
    }

    fn destroy(&self, segment: &Segment) -> Result<(), VmError> {
        self.own(segment)?;
        let mut w = self.world.borrow_mut();
        let was = w.segments.remove(segment) | w.foreign_segments.remove(segment);
        if was {
            w.segments_destroyed.push(segment.clone());
        }
        Ok(())
    }

    fn leftovers(&self) -> Result<Vec<Segment>, VmError> {
        let w = self.world.borrow();
        Ok(w.segments
            .iter()
            .chain(&w.foreign_segments)
            .filter(|s| s.kind() == self.kind)
            .cloned()
            .collect())
    }
}

impl World {
    /// The backend that runs `name` (QEMU unless said otherwise).
    pub fn kind_of(&self, name: &VmName) -> BackendKind {
        self.kinds.get(name).copied().unwrap_or(BackendKind::Qemu)
    }

    /// Append the next of [`World::console_after_reboot`] to `name`'s console.
    fn print_next_boot(&mut self, name: &VmName) {
        let text = self
            .console_after_reboot
            .get(self.reboots)
            .or(self.console_after_reboot.last());
        self.reboots += 1;
        if let Some(text) = text
            && let Some(console) = self.consoles.get(name)
        {
            use std::io::Write as _;
            let appended = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(console)
                .and_then(|mut f| f.write_all(text.as_bytes()));
            appended.expect("the fake console is writable");
        }
    }

    fn reboot(&mut self, name: Option<&VmName>) {
        if let Some(name) = name {
            self.print_next_boot(name);
        } else {
            self.reboots += 1;
        }
        self.boot_count += 1;
        if let Some(name) = name {
            self.boot_of.insert(name.clone(), self.boot_count);
            *self.boots.entry(name.clone()).or_default() += 1;
        }
        self.unreachable_polls = if self.never_returns { u32::MAX } else { 2 };
        self.stale_remaining = self.stale_after_reboot;
    }
}

/// A guest that answers the lifecycle's commands from [`World`].
pub struct FakeGuest {
    pub world: Rc<RefCell<World>>,
}

impl Guest for FakeGuest {
    fn run(
        &self,
        target: &SshTarget,
        command: &str,
        _timeout: Duration,
        _quiet: bool,
    ) -> Result<Captured, ExecError> {
        let mut w = self.world.borrow_mut();
        w.commands.push(command.to_owned());
        let vm = w.by_port.get(&target.port).cloned();
        if vm.as_ref().is_some_and(|vm| w.frozen.contains(vm)) {
            // A frozen guest answers nothing: ssh gives up.
            return Ok(captured(SSH_FAILED, ""));
        }
        if let Some(new) = &w.moves_to_after_reboot
            && w.boot_count > 1
            && w.stale_remaining == 0
            && target.host != *new
        {
            // Nobody answers at the old address any more.
            return Ok(captured(255, ""));
        }
        if let Some((text, signal)) = &w.interrupt_on
            && command.contains(text.as_str())
        {
            // As boma-exec does: the signal stops the ssh command in flight.
            boma_exec::interrupt::simulate(*signal);
            let interrupted = boma_exec::interrupt::Interrupted { signal: *signal };
            return Err(ExecError::Interrupted {
                cmd: format!("ssh {command}"),
                interrupted,
            });
        }
        if w.stale_remaining > 0 && command.contains("boot_id") && !command.contains("cloud-init") {
            w.stale_remaining -= 1;
            // Still the old boot: the id before the increment.
            return Ok(captured(
                0,
                format!("00000000-0000-0000-0000-{:012x}\n", w.boot_count - 1),
            ));
        }
        if w.unreachable_polls > 0 {
            w.unreachable_polls = w.unreachable_polls.saturating_sub(1);
            return Ok(captured(SSH_FAILED, ""));
        }
        let out = match command {
            "sudo systemctl reboot" => {
                let name = w.by_port.get(&target.port).cloned();
                w.reboot(name.as_ref());
                captured(0, "")
            }
            "sudo systemctl poweroff" => {
                // The guest shuts down and its hypervisor process ends.
                if let Some(name) = w.by_port.get(&target.port).cloned() {
                    w.running.remove(&name);
                }
                captured(SSH_FAILED, "")
            }
            "cat /proc/sys/kernel/random/boot_id" => {
                captured(0, format!("{}\n", w.boot_id_at(target.port)))
            }
            c if c.contains("systemctl is-system-running") => {
                let state = vm
                    .as_ref()
                    .and_then(|vm| w.system_states.get_mut(vm))
                    .and_then(|states| {
                        if states.len() > 1 {
                            Some(states.remove(0))
                        } else {
                            states.first().cloned()
                        }
                    })
                    .unwrap_or_else(|| "running".to_owned());
                if let Some(vm) = &vm {
                    let how = if c.starts_with("timeout ") {
                        "at most"
                    } else {
                        "whole"
                    };
                    w.events.push(format!("settle {vm} ({how}): {state}"));
                }
                captured(0, format!("{state}\n"))
            }
            c if c.starts_with("for a in ") => {
                // The fleet route check: each address answered as unreachable (or routed).
                let list = c["for a in ".len()..].split(';').next().unwrap_or("");
                let rc = if w.routed { 0 } else { 2 };
                let text: String = list
                    .split_whitespace()
                    .map(|a| format!("{a} {rc} RTNETLINK answers: No route to host\n"))
                    .collect();
                captured(0, text)
            }
            "cloud-init status --long" => captured(1, "status: error\nerrors: bad seed\n"),
            c if c.starts_with("cloud-init status --wait") => {
                if let Some(vm) = &vm {
                    w.events.push(format!("ready? {vm}"));
                }
                captured(
                    0,
                    format!(
                        "cloud-init={}\n{}\n",
                        w.cloud_init_status,
                        w.boot_id_at(target.port)
                    ),
                )
            }
            _ => captured(0, format!("output of {command}\n")),
        };
        let mut out = out;
        // What root commands print (the diagnostics) may carry whatever the guest holds.
        if let Some(says) = &w.says
            && command.starts_with("sudo ")
        {
            out.stdout.push_str(says);
            out.stdout.push('\n');
        }
        Ok(out)
    }

    fn run_script(
        &self,
        target: &SshTarget,
        script: &str,
        _timeout: Duration,
    ) -> Result<Captured, ExecError> {
        if let Some((text, signal)) = self.world.borrow().interrupt_on.clone()
            && script.contains(text.as_str())
        {
            boma_exec::interrupt::simulate(signal);
            return Err(ExecError::Interrupted {
                cmd: "ssh sudo sh -s".into(),
                interrupted: boma_exec::interrupt::Interrupted { signal },
            });
        }
        Ok(self.answer_script(target, script))
    }
}

impl FakeGuest {
    /// The fake's answer to a script: what `World::script_answers` holds for the first line
    /// the script contains, else an empty success.
    fn answer_script(&self, target: &SshTarget, script: &str) -> Captured {
        let mut w = self.world.borrow_mut();
        w.commands
            .push(format!("script: {}", script.lines().next().unwrap_or("")));
        let vm = w.by_port.get(&target.port).cloned();
        let own = vm.as_ref().and_then(|vm| {
            let (_, captures) = w
                .captures_by
                .iter()
                .find(|(named, _)| vm.as_str().contains(named.as_str()))?;
            let boot = w.boots.get(vm).copied().unwrap_or(1) as usize;
            captures.get(boot.saturating_sub(1).min(captures.len().checked_sub(1)?))
        });
        if script.contains("reboot-diff capture")
            && let Some(capture) = own
        {
            return captured(0, capture.clone());
        }
        if script.contains("reboot-diff capture") && !w.captures.is_empty() {
            let boot = (w.boot_count as usize)
                .saturating_sub(1)
                .min(w.captures.len() - 1);
            return captured(0, w.captures[boot].clone());
        }
        let answer = w
            .script_answers
            .iter()
            .find(|(marker, _)| script.contains(marker.as_str()))
            .map(|(_, answer)| answer.clone());
        captured(0, answer.unwrap_or_default())
    }
}

/// Disk tools that write placeholder files.
pub struct FakeDisks {
    pub fail_overlay: bool,
}

impl Disks for FakeDisks {
    fn create_overlay(&self, _golden: &Utf8Path, overlay: &Utf8Path) -> Result<(), VmError> {
        if self.fail_overlay {
            return Err(VmError::Backend("fake qemu-img failure".into()));
        }
        std::fs::write(overlay, "overlay").map_err(|e| VmError::io(overlay, e))
    }

    fn create_seed(&self, seed: &Utf8Path, _files: &SeedFiles<'_>) -> Result<(), VmError> {
        std::fs::write(seed, "seed").map_err(|e| VmError::io(seed, e))
    }
}
