//! A fake machine and a throwaway copy of the repository's harness inputs, for driving every
//! step of the harness (and every way it can fail) without a VM. [`Rig`] is the preamble every
//! fault test shares: a sandbox, a machine, a context.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use boma_harness::golden::{Golden, ImageFile, ImageStep, StepResult};
use boma_harness::probe::{PortTarget, ProbeOutcome};
use boma_harness::{
    Ansible, BackendChoice, Ctx, HarnessError, HostProbe, ImageSource, ItOptions, Machine,
    MemoryReservations, PlaybookCall, PortProber, Processes, Provisioner, ReservationStore, RunId,
    RunOutcome, Settings, WaitOverrides,
};
use boma_host::facts::{LibvirtFacts, Space};
use boma_host::stop::{How, StopAction, StopError, Stopped};
use boma_inventory::CertTier;
use boma_name::VmName;
use boma_vm::fake::{FakeDisks, FakeGuest, FakeHypervisors, World};
use boma_vm::lifecycle::{Disks, Hypervisors, RealDisks, SeedFiles};
use boma_vm::{Accel, Guest};
use camino::{Utf8Path, Utf8PathBuf};

/// The interrupt flag is process-wide: tests that touch it (and all that run the harness,
/// which reads it) take turns ([`serial`]); tests that only run commands, which obey it, run
/// alongside each other but never beside one of those ([`no_interrupts`]).
static SERIAL: RwLock<()> = RwLock::new(());

pub fn serial() -> RwLockWriteGuard<'static, ()> {
    let guard = SERIAL.write().unwrap_or_else(|e| e.into_inner());
    boma_exec::interrupt::reset();
    guard
}

/// For a test that runs real commands but neither raises nor awaits an interrupt: no test
/// that may raise the flag runs while it holds this.
pub fn no_interrupts() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

/// Real captures of a healthy askari before and after a real reboot (boma-state's fixtures).
pub const ASKARI_BEFORE: &str =
    include_str!("../../../boma-state/tests/fixtures/askari/before.txt");
pub const ASKARI_AFTER: &str = include_str!("../../../boma-state/tests/fixtures/askari/after.txt");

/// This repo's real inventory as the venv's `ansible-inventory --list` printed it.
pub const PRODUCTION_LIST: &str =
    include_str!("../../../boma-inventory/tests/fixtures/inventories/production.json");

/// What the fake `ansible-playbook` does for one run.
pub type Playbook = Box<dyn FnMut(&PlaybookCall) -> Result<(), HarnessError>>;

pub struct FakeMachine {
    pub world: Rc<RefCell<World>>,
    guest: FakeGuest,
    disks: FakeDisks,
    hypervisors: FakeHypervisors,
    /// `MemAvailable`, in MiB.
    pub available_mib: Cell<u64>,
    /// Programs `locate` does not find (every other one is in /usr/bin).
    pub missing_tools: RefCell<Vec<String>>,
    /// libvirt as this machine sees it: by default no daemon answers, so `auto` is QEMU.
    pub libvirt: RefCell<LibvirtFacts>,
    pub playbook: RefCell<Playbook>,
    /// The label of every playbook run, in order.
    pub playbook_calls: RefCell<Vec<String>>,
    /// The arguments of every playbook run, in order.
    pub playbook_args: RefCell<Vec<Vec<String>>>,
    /// Every step of the golden image's plan the harness asked the machine to carry out, in
    /// order (a look in the cache, a download, a build, a given file's hash).
    pub image_steps: RefCell<Vec<ImageStep>>,
    /// What the image cache holds and how a download goes.
    pub images: Cell<FakeImages>,
    /// How many run ids the machine has minted (each is the next number).
    pub run_ids: Cell<u32>,
    /// What the spawn journal recorded that still runs, as the machine reads it.
    pub journaled: RefCell<Vec<StopAction>>,
    /// The pids of every process the harness asked the machine to stop, in order.
    pub stopped: RefCell<Vec<u32>>,
    /// Ports whose probe fails after the first boot (the forward-drop signature: a timeout).
    pub ports_dead_after_reboot: RefCell<Vec<u16>>,
    /// Published ports nothing answers on (yet): a playbook closure may serve one by removing
    /// it, as an apply that starts the service does.
    pub ports_unserved: Rc<RefCell<Vec<u16>>>,
    /// What the vault holds (decrypted), as the real machine would read it.
    pub vault: RefCell<Vec<String>>,
    /// What `ansible-inventory --list` prints for the real inventory (an error: it fails).
    pub inventory_list: RefCell<Result<String, String>>,
    /// The guest's files the harness reads and removes itself (path → text): what a verify
    /// playbook wrote on the VM, a CA certificate.
    pub guest_files: RefCell<BTreeMap<String, String>>,
    /// Every target the controller probed, in order.
    pub probed: RefCell<Vec<PortTarget>>,
    /// The `boma_changes` callback never runs (not loaded): runs asked to record changes write
    /// nothing, not even its start and end marks.
    pub callback_silent: Cell<bool>,
    /// Real qcow2 overlays (for the layer store, which reads them with qemu-img), when set.
    pub qcow2: Option<Qcow2Disks>,
    /// A fleet member's files on its own VM ((VM name, path) → text), read before
    /// [`FakeMachine::guest_files`]: what a fleet's verify playbook wrote on each member.
    pub vm_files: RefCell<BTreeMap<(String, String), String>>,
    /// Variables `ansible-inventory --list` gives a fleet member besides its inventory's (as a
    /// `group_vars` file would), by member.
    pub member_vars: RefCell<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    /// Peer probes of (member, port) that time out once that member has rebooted (its firewall
    /// lost what the apply added).
    pub peers_dead_after_reboot: RefCell<Vec<(String, u16)>>,
    golden: Utf8PathBuf,
}

/// The fake image cache and download host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeImages {
    /// The cache holds a verified download (of any URL).
    pub cached_download: bool,
    /// The cache holds a verified built image.
    pub cached_build: bool,
    pub download: FakeDownload,
}

/// How a download goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeDownload {
    Succeeds,
    /// The host cannot be reached at all.
    Unreachable,
    /// The host answers with an error.
    Fails,
}

impl Default for FakeImages {
    /// A verified download in the cache, as on a machine that ran before.
    fn default() -> FakeImages {
        FakeImages {
            cached_download: true,
            cached_build: false,
            download: FakeDownload::Succeeds,
        }
    }
}

/// What the fake says when the download host cannot be reached.
pub const UNREACHABLE: &str = "fake: cannot reach the download host";

/// Overlays made by the real `qemu-img` (seeds stay fake): what the layer store needs to read.
/// The overlay number `fail_from` and every later one fail, as a full disk would.
pub struct Qcow2Disks {
    pub made: Cell<usize>,
    pub fail_from: Cell<Option<usize>>,
}

impl Disks for Qcow2Disks {
    fn create_overlay(&self, base: &Utf8Path, overlay: &Utf8Path) -> Result<(), boma_vm::VmError> {
        let number = self.made.get() + 1;
        self.made.set(number);
        if self.fail_from.get().is_some_and(|from| number >= from) {
            return Err(boma_vm::VmError::Backend(
                "fake: no space left on device".into(),
            ));
        }
        let sh = xshell::Shell::new().unwrap();
        RealDisks { sh: &sh }.create_overlay(base, overlay)
    }

    fn create_seed(&self, seed: &Utf8Path, _files: &SeedFiles<'_>) -> Result<(), boma_vm::VmError> {
        std::fs::write(seed, "seed").map_err(|e| boma_vm::VmError::io(seed, e))
    }
}

impl FakeMachine {
    pub fn new(golden: Utf8PathBuf) -> FakeMachine {
        let world = World::shared();
        world.borrow_mut().captures = vec![ASKARI_BEFORE.into(), ASKARI_AFTER.into()];
        FakeMachine {
            guest: FakeGuest {
                world: Rc::clone(&world),
            },
            disks: FakeDisks {
                fail_overlay: false,
            },
            hypervisors: FakeHypervisors {
                world: Rc::clone(&world),
            },
            world,
            available_mib: Cell::new(16_000),
            missing_tools: RefCell::new(Vec::new()),
            libvirt: RefCell::new(LibvirtFacts::default()),
            playbook: RefCell::new(verify_passes()),
            playbook_calls: RefCell::new(Vec::new()),
            playbook_args: RefCell::new(Vec::new()),
            image_steps: RefCell::new(Vec::new()),
            images: Cell::new(FakeImages::default()),
            run_ids: Cell::new(0),
            journaled: RefCell::new(Vec::new()),
            stopped: RefCell::new(Vec::new()),
            ports_dead_after_reboot: RefCell::new(Vec::new()),
            ports_unserved: Rc::new(RefCell::new(Vec::new())),
            vault: RefCell::new(Vec::new()),
            inventory_list: RefCell::new(Ok(PRODUCTION_LIST.to_owned())),
            guest_files: RefCell::new(BTreeMap::new()),
            probed: RefCell::new(Vec::new()),
            callback_silent: Cell::new(false),
            qcow2: None,
            vm_files: RefCell::new(BTreeMap::new()),
            member_vars: RefCell::new(BTreeMap::new()),
            peers_dead_after_reboot: RefCell::new(Vec::new()),
            golden,
        }
    }
}

impl FakeMachine {
    /// The name of the VM answering on ssh port `port` (empty when none does).
    fn vm_at(&self, port: u16) -> String {
        self.world
            .borrow()
            .by_port
            .get(&port)
            .map(|n| n.to_string())
            .unwrap_or_default()
    }

    /// The VM booted for fleet member `member` (`boma-it-<member>-<run id>`).
    pub fn vm_of(&self, member: &str) -> Option<String> {
        let prefix = format!("boma-it-{member}-");
        self.world
            .borrow()
            .booted
            .iter()
            .map(|n| n.to_string())
            .find(|n| n.strip_prefix(&prefix).is_some_and(|id| id.len() == 8))
    }

    /// How many times the VM `name` has booted.
    fn boots_of(&self, name: &boma_inventory::VmName) -> u32 {
        self.world.borrow().boots.get(name).copied().unwrap_or(0)
    }

    /// What the peer-probe program prints for `script`: every probe answers, but those of
    /// [`FakeMachine::peers_dead_after_reboot`] once their target rebooted.
    fn peer_probe_answers(&self, script: &str) -> String {
        let list = script
            .lines()
            .find_map(|l| l.strip_prefix(PROBES_START))
            .and_then(|l| l.strip_suffix(PROBES_END))
            .expect("the probe program lists its probes");
        let probes: Vec<serde_json::Value> = serde_json::from_str(list).unwrap();
        let dead = self.peers_dead_after_reboot.borrow();
        let mut out = String::new();
        for (index, probe) in probes.iter().enumerate() {
            let address: std::net::Ipv4Addr = probe[0].as_str().unwrap().parse().unwrap();
            let port = probe[1].as_u64().unwrap() as u16;
            let target = self.world.borrow().fleet_addresses.get(&address).cloned();
            let gone = target.as_ref().is_some_and(|vm| {
                self.boots_of(vm) > 1
                    && dead.iter().any(|(member, p)| {
                        *p == port && vm.as_str().starts_with(&format!("boma-it-{member}-"))
                    })
            });
            if gone {
                out.push_str(&format!(
                    "boma-peer-probe {index} timeout 9 no answer to the connection within 8s\n"
                ));
            } else {
                out.push_str(&format!("boma-peer-probe {index} ok 1 open\n"));
            }
        }
        out
    }
}

/// The line of the peer-probe program that lists its probes, around the JSON list.
const PROBES_START: &str = "PROBES = json.loads(r'''";
const PROBES_END: &str = "''')";

impl Machine for FakeMachine {
    fn host(&self) -> &dyn HostProbe {
        self
    }
    fn processes(&self) -> &dyn Processes {
        self
    }
    /// The sandbox's own reservation store, in its image cache: the machine-wide rule is
    /// `boma_host`'s, judged against the fake's `MemAvailable`.
    fn reservations(&self) -> &dyn MemoryReservations {
        &ReservationStore
    }
    fn hypervisors(&self) -> &dyn Hypervisors {
        &self.hypervisors
    }
    fn guest(&self) -> &dyn Guest {
        self
    }
    fn disks(&self) -> &dyn Disks {
        match &self.qcow2 {
            Some(qcow2) => qcow2,
            None => &self.disks,
        }
    }
    fn provisioner(&self) -> &dyn Provisioner {
        self
    }
    fn ansible(&self) -> &dyn Ansible {
        self
    }
    fn ports(&self) -> &dyn PortProber {
        self
    }
}

impl HostProbe for FakeMachine {
    fn locate(&self, program: &str) -> Option<Utf8PathBuf> {
        let missing = self.missing_tools.borrow().iter().any(|t| t == program);
        (!missing).then(|| Utf8PathBuf::from("/usr/bin").join(program))
    }
    fn libvirt_facts(&self) -> LibvirtFacts {
        self.libvirt.borrow().clone()
    }
    fn available_mib(&self) -> Option<u64> {
        Some(self.available_mib.get())
    }
    fn space(&self, dir: &Utf8Path) -> Space {
        Space {
            dir: dir.to_owned(),
            device: Some(1),
            free_mib: Some(100_000),
        }
    }
    fn fresh_run_id(&self) -> RunId {
        let next = self.run_ids.get() + 1;
        self.run_ids.set(next);
        format!("{next:08x}").parse().unwrap()
    }
}

/// Every VM the fake hypervisors start has its pid recorded, so none is looked for here; the
/// spawn journal is [`FakeMachine::journaled`], and stopping a process records its pid.
impl Processes for FakeMachine {
    fn vm_pid(&self, _name: &VmName) -> Option<u32> {
        None
    }
    fn journaled(&self, _journal: &Utf8Path) -> Result<Vec<StopAction>, StopError> {
        Ok(self.journaled.borrow().clone())
    }
    fn stop(&self, actions: &[StopAction]) -> Vec<Stopped> {
        actions
            .iter()
            .map(|a| {
                self.stopped.borrow_mut().push(a.recorded.pid);
                Stopped {
                    pid: a.recorded.pid,
                    pgid: None,
                    cmdline: a.recorded.cmdline.clone(),
                    how: How::Term,
                    spawned_by: a.recorded.spawned_by,
                }
            })
            .collect()
    }
    fn forget_exited(&self, _journal: &Utf8Path) {}
}

impl Provisioner for FakeMachine {
    fn image_step(
        &self,
        step: &ImageStep,
        _cache_dir: &Utf8Path,
    ) -> Result<StepResult, HarnessError> {
        self.image_steps.borrow_mut().push(step.clone());
        let images = self.images.get();
        let golden = |path: &Utf8Path| {
            StepResult::Found(ImageFile {
                path: path.to_owned(),
                sha512: "ab".repeat(64),
            })
        };
        Ok(match step {
            ImageStep::Given(path) => golden(path),
            ImageStep::CachedDownload(_) if images.cached_download => golden(&self.golden),
            ImageStep::CachedBuild if images.cached_build => golden(&self.golden),
            ImageStep::CachedDownload(_) | ImageStep::CachedBuild => StepResult::NotCached,
            ImageStep::Download(source) => match images.download {
                FakeDownload::Succeeds => golden(&self.golden),
                FakeDownload::Unreachable => StepResult::Unreachable(HarnessError::io(
                    source.image_url.as_str(),
                    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, UNREACHABLE),
                )),
                FakeDownload::Fails => {
                    return Err(HarnessError::Image(boma_image::CacheError::HttpStatus {
                        url: source.image_url.clone(),
                        status: 503,
                    }));
                }
            },
            ImageStep::Build => golden(&self.golden),
        })
    }
    fn accel(
        &self,
        _golden: &Utf8Path,
        _cache: &Utf8Path,
        _scratch: &Utf8Path,
    ) -> Result<Accel, HarnessError> {
        Ok(Accel::Tcg)
    }
    fn pin(
        &self,
        golden: &Golden,
        run_dir: &Utf8Path,
        _cache: &Utf8Path,
    ) -> Result<Golden, HarnessError> {
        // As the real pin does, the run directory exists from here on, and it holds the
        // image's bytes.
        std::fs::create_dir_all(run_dir).unwrap();
        std::fs::copy(&golden.path, run_dir.join("golden.qcow2")).unwrap();
        Ok(Golden {
            path: run_dir.join("golden.qcow2"),
            ..golden.clone()
        })
    }
    fn keypair(&self, _key_dir: &Utf8Path) -> Result<(Utf8PathBuf, String), HarnessError> {
        Ok((
            "/fake/id_ed25519".into(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKE boma".into(),
        ))
    }
}

/// The guest as the lifecycle sees it ([`FakeGuest`]), plus the files the harness reads and
/// removes with its own scripts (`# boma-it read <path>` / `# boma-it remove <path>`), kept in
/// [`FakeMachine::guest_files`].
impl Guest for FakeMachine {
    fn run(
        &self,
        target: &boma_vm::SshTarget,
        command: &str,
        timeout: Duration,
        quiet: bool,
    ) -> Result<boma_exec::Captured, boma_exec::ExecError> {
        self.guest.run(target, command, timeout, quiet)
    }

    fn run_script(
        &self,
        target: &boma_vm::SshTarget,
        script: &str,
        timeout: Duration,
    ) -> Result<boma_exec::Captured, boma_exec::ExecError> {
        let first = script.lines().next().unwrap_or_default();
        let vm = self.vm_at(target.port);
        let answer = if let Some(path) = first.strip_prefix("# boma-it read ") {
            let own = self
                .vm_files
                .borrow()
                .get(&(vm.clone(), path.to_owned()))
                .cloned();
            match own.or_else(|| self.guest_files.borrow().get(path).cloned()) {
                Some(text) => format!("present\n{text}"),
                None => "absent\n".to_owned(),
            }
        } else if let Some(path) = first.strip_prefix("# boma-it remove ") {
            self.vm_files.borrow_mut().remove(&(vm, path.to_owned()));
            self.guest_files.borrow_mut().remove(path);
            String::new()
        } else if first.starts_with("# boma peer probes") {
            // Through the fake guest first: an interrupt at this moment is its to deliver.
            let mut out = self.guest.run_script(target, script, timeout)?;
            out.stdout = self.peer_probe_answers(script);
            return Ok(out);
        } else {
            return self.guest.run_script(target, script, timeout);
        };
        self.world
            .borrow_mut()
            .commands
            .push(format!("script: {first}"));
        Ok(boma_exec::Captured {
            status: std::os::unix::process::ExitStatusExt::from_raw(0),
            stdout: answer,
            stderr: String::new(),
        })
    }
}

impl Ansible for FakeMachine {
    fn run_playbook(&self, call: &PlaybookCall) -> Result<(), HarnessError> {
        self.playbook_calls.borrow_mut().push(call.label.clone());
        self.playbook_args.borrow_mut().push(call.args.clone());
        // As the real callback does around a run: a start mark, then (after the playbook's own
        // changed lines) an end mark counting what it saw on the VM.
        let callback = call
            .changes_file
            .as_ref()
            .filter(|_| !self.callback_silent.get());
        if let Some(file) = callback {
            append_line(
                file,
                &serde_json::json!({"event": "start", "playbook": call.label}),
            );
        }
        let played = (self.playbook.borrow_mut())(call);
        if let Some(file) = callback {
            let text = std::fs::read_to_string(file).unwrap();
            let this_run = &text[text.rfind(r#"{"event":"start""#).unwrap()..];
            // A fleet's run is limited to several hosts (`a,b`): the callback counts each.
            let mut hosts = serde_json::Map::new();
            for host in limit_of(&call.args).split(',') {
                let changed = this_run
                    .lines()
                    .filter(|l| l.contains(r#""status":"changed""#) && l.contains(host))
                    .count();
                hosts.insert(
                    host.to_owned(),
                    serde_json::json!({"results": 3, "changed": changed}),
                );
            }
            append_line(file, &serde_json::json!({"event": "end", "hosts": hosts}));
        }
        // What the fake playbook wrote "on the VM" (see [`results_file`]) lands on the guest:
        // a single run's VM, or each fleet member the run is limited to.
        if let Some(on_guest) = guest_results_path(&call.args) {
            let written = results_file(&call.args);
            if let Ok(text) = std::fs::read_to_string(&written) {
                std::fs::remove_file(&written).unwrap();
                let limit = limit_of(&call.args);
                if limit.starts_with("boma-it-") {
                    self.guest_files.borrow_mut().insert(on_guest, text);
                } else {
                    for member in limit.split(',') {
                        let vm = self.vm_of(member).expect("a member's VM runs");
                        self.vm_files
                            .borrow_mut()
                            .insert((vm, on_guest.clone()), text.clone());
                    }
                }
            }
        }
        played
    }
    fn list_inventory(
        &self,
        _repo: &Utf8Path,
        inventory: &Utf8Path,
        _vault_password_file: Option<&Utf8Path>,
    ) -> Result<String, HarnessError> {
        if inventory.ends_with(boma_inventory::PRODUCTION_DIR) {
            return self
                .inventory_list
                .borrow()
                .clone()
                .map_err(HarnessError::Refused);
        }
        // A fleet's members: their inventory's host variables, and what the test adds.
        let hosts = std::fs::read_to_string(inventory.join("hosts.yml")).unwrap();
        let mut hostvars = serde_json::Map::new();
        for (member, mut vars) in members_of(&hosts) {
            if let Some(extra) = self.member_vars.borrow().get(&member) {
                vars.extend(extra.clone());
            }
            hostvars.insert(member, serde_json::Value::Object(vars));
        }
        Ok(serde_json::json!({"_meta": {"hostvars": hostvars}}).to_string())
    }
    fn vault_values(
        &self,
        _repo: &Utf8Path,
        _password_file: &Utf8Path,
        _files: &[Utf8PathBuf],
    ) -> Result<Vec<String>, HarnessError> {
        Ok(self.vault.borrow().clone())
    }
}

impl PortProber for FakeMachine {
    fn probe(&self, target: &PortTarget, _within: Duration) -> ProbeOutcome {
        self.probed.borrow_mut().push(target.clone());
        let vm = self
            .world
            .borrow()
            .published_by
            .get(&target.endpoint_port)
            .cloned();
        let rebooted = vm.is_some_and(|vm| self.boots_of(&vm) > 1);
        let dead = (rebooted && self.ports_dead_after_reboot.borrow().contains(&target.port))
            || self.ports_unserved.borrow().contains(&target.port);
        ProbeOutcome {
            port: target.port,
            kind: target.kind.to_string(),
            ok: !dead,
            reason: if dead { "timeout" } else { "ok" }.into(),
            detail: "fake probe".into(),
        }
    }
}

/// The harness vars file of a verify run (its `-e @harness-vars-N.json`), if it is one.
fn harness_vars_file(args: &[String]) -> Option<&str> {
    args.iter()
        .find_map(|a| a.strip_prefix('@').filter(|p| p.contains("harness-vars-")))
}

/// Where on the guest a verify run was told to write its results (`boma_it_results_file`).
pub fn guest_results_path(args: &[String]) -> Option<String> {
    let vars = harness_vars_file(args)?;
    let vars: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vars).unwrap()).unwrap();
    Some(vars["boma_it_results_file"].as_str()?.to_owned())
}

/// Where a fake verify playbook writes its results: a file beside its harness vars that the
/// fake machine moves to the guest's [`guest_results_path`] when the playbook ends (a real
/// playbook writes them on the VM).
pub fn results_file(args: &[String]) -> Utf8PathBuf {
    let vars = harness_vars_file(args).expect("verify gets the harness vars");
    Utf8PathBuf::from(vars.replace("harness-vars-", "fake-guest-results-"))
}

fn write_results(args: &[String], forward_ok: bool) {
    let results = serde_json::json!({"checks": [
        {"name": "docker_active", "ok": true, "reason": "ok"},
        {"name": "forward_chain_accepts_containers", "ok": forward_ok, "reason": if forward_ok {"ok"} else {"pure_drop"}},
    ]});
    std::fs::write(results_file(args), results.to_string()).unwrap();
}

/// Applies succeed; verify passes.
pub fn verify_passes() -> Playbook {
    Box::new(|call| {
        if call.label.starts_with("verify") {
            write_results(&call.args, true);
        }
        Ok(())
    })
}

/// Applies succeed; verify fails the way the RED case does.
pub fn verify_fails_red() -> Playbook {
    Box::new(|call| {
        if call.label.starts_with("verify") {
            write_results(&call.args, false);
            return Err(HarnessError::Playbook {
                step: call.label.clone(),
                code: Some(2),
                tail: vec![],
            });
        }
        Ok(())
    })
}

/// The members of a fleet's `hosts.yml` (`boma_inventory::render_members_yml`'s shape) with
/// their host variables.
fn members_of(hosts_yml: &str) -> Vec<(String, serde_json::Map<String, serde_json::Value>)> {
    let mut members: Vec<(String, serde_json::Map<String, serde_json::Value>)> = Vec::new();
    let unquote = |text: &str| text.trim().trim_matches('"').to_owned();
    for line in hosts_yml.lines() {
        if line == "  children:" {
            break;
        }
        if let Some(name) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let name = name.trim_end_matches(" {}").trim_end_matches(':');
            members.push((unquote(name), serde_json::Map::new()));
        } else if let Some(var) = line.strip_prefix("      ")
            && let Some((key, value)) = var.split_once(": ")
            && let Some((_, vars)) = members.last_mut()
        {
            vars.insert(key.to_owned(), serde_json::Value::String(unquote(value)));
        }
    }
    members
}

/// The VM a playbook run is limited to (`--limit`).
fn limit_of(args: &[String]) -> String {
    args.iter()
        .skip_while(|a| *a != "--limit")
        .nth(1)
        .expect("every run is limited to the VM")
        .clone()
}

/// Append one JSON line to `file`, as the callback does.
fn append_line(file: &Utf8Path, line: &serde_json::Value) {
    use std::io::Write as _;
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .unwrap();
    writeln!(out, "{line}").unwrap();
}

/// The second apply of a step reports a task as changed (a role that is not idempotent).
pub fn not_idempotent() -> Playbook {
    Box::new(|call| {
        if let Some(file) = &call.changes_file
            && call.label.contains("site.yml")
        {
            let vm = limit_of(&call.args);
            let path = format!("{}/roles/base/tasks/main.yml:7", call.repo);
            let line = serde_json::json!({"host": vm, "task": "Add the route", "role": "base",
                "path": path, "status": "changed"});
            append_line(file, &line);
        }
        if call.label.starts_with("verify") {
            write_results(&call.args, true);
        }
        Ok(())
    })
}

/// The run whose label contains `during` is interrupted by `signal`.
pub fn interrupted_during(during: &'static str, signal: i32) -> Playbook {
    Box::new(move |call| {
        if call.label.contains(during) {
            boma_exec::interrupt::simulate(signal);
            return Err(boma_exec::interrupt::Interrupted { signal }.into());
        }
        if call.label.starts_with("verify") {
            write_results(&call.args, true);
        }
        Ok(())
    })
}

/// A copy of the repository's harness inputs (profiles, overrides, certs, playbooks, verify
/// playbooks, the policy, the real inventory) that a test may break, plus empty run, state
/// and diagnostics directories.
pub struct Sandbox {
    _tmp: tempfile::TempDir,
    pub root: Utf8PathBuf,
    pub settings: Settings,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let real = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let repo = root.join("repo");
        for dir in [
            "profiles",
            "overrides",
            "certs",
            "playbooks",
            "inventories/production",
            "tests/verify",
            "tests/catalogue",
            "fleets",
        ] {
            if real.join(dir).is_dir() {
                copy_tree(&real.join(dir), &repo.join(dir));
            }
        }
        std::fs::create_dir_all(repo.join("tests/integration")).unwrap();
        std::fs::copy(
            real.join("tests/integration/policy.yml"),
            repo.join("tests/integration/policy.yml"),
        )
        .unwrap();
        let golden = root.join("cache/golden.qcow2");
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, "golden").unwrap();
        let settings = Settings {
            runs_root: Settings::default_runs_root(&repo),
            repo,
            cache_dir: root.join("cache"),
            state_dir: root.join("state"),
            diagnostics_root: root.join("integration-runs"),
            backend: BackendChoice::Auto,
            image: ImageSource::Auto,
            image_url: None,
            sums_url: None,
            vault_password_file: None,
            waits: WaitOverrides {
                boot: Some(Duration::from_millis(300)),
                reboot: Some(Duration::from_millis(300)),
                poll: Some(Duration::from_millis(1)),
            },
            step_timeout: None,
            verbose: false,
            // Layers need real qemu-img images: the VM suite proves them.
            layers: false,
        };
        Sandbox {
            _tmp: tmp,
            root,
            settings,
        }
    }

    pub fn golden(&self) -> Utf8PathBuf {
        self.root.join("cache/golden.qcow2")
    }

    pub fn machine(&self) -> FakeMachine {
        FakeMachine::new(self.golden())
    }

    /// VM directories in the run directory.
    pub fn vm_dirs(&self) -> Vec<String> {
        let Ok(entries) = self.settings.runs_root.read_dir_utf8() else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.starts_with("boma-it-"))
            .collect()
    }

    pub fn has_current(&self) -> bool {
        self.settings.runs_root.join("current").exists()
    }

    /// Write `text` to a file of the sandbox's repository.
    pub fn write(&self, path: &str, text: &str) {
        let path = self.settings.repo.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// The preamble of every fault test: a sandbox, its fake machine, and the options of a
/// default cycle.
pub struct Rig {
    pub sandbox: Sandbox,
    pub machine: FakeMachine,
}

impl Rig {
    pub fn new() -> Rig {
        let sandbox = Sandbox::new();
        let machine = sandbox.machine();
        Rig { sandbox, machine }
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            settings: &self.sandbox.settings,
            machine: &self.machine,
        }
    }

    /// A rig whose runs use disk layers: a real qcow2 golden image, overlays made by the real
    /// `qemu-img`, and a venv the key can read.
    pub fn with_layers() -> Rig {
        let mut sandbox = Sandbox::new();
        sandbox.settings.layers = true;
        let golden = sandbox.golden();
        std::fs::remove_file(&golden).unwrap();
        let sh = xshell::Shell::new().unwrap();
        boma_exec::CmdExt::exec(xshell::cmd!(sh, "qemu-img create -q -f qcow2 {golden} 1M"))
            .run()
            .expect("qemu-img is needed for the layer tests: install qemu-utils");
        sandbox.write(".venv/pyvenv.cfg", "home = /usr/bin\nversion = 3.11.2\n");
        sandbox.write(
            ".venv/lib/python3.11/site-packages/ansible_core-2.18.12.dist-info/METADATA",
            "Name: ansible-core\n",
        );
        let mut machine = sandbox.machine();
        machine.qcow2 = Some(Qcow2Disks {
            made: Cell::new(0),
            fail_from: Cell::new(None),
        });
        Rig { sandbox, machine }
    }

    /// The cycle for `host` with these options.
    pub fn it_with(&self, host: &str, options: ItOptions) -> RunOutcome {
        boma_harness::it(&self.ctx(), host, options)
    }

    /// The cycle for askari with the default options.
    pub fn it(&self) -> RunOutcome {
        self.it_with("askari", options())
    }

    /// Nothing of the run is left: no VM, no run directory, no record, and the lock is free.
    pub fn assert_nothing_left(&self) {
        assert!(
            self.machine.world.borrow().running.is_empty(),
            "a VM is still running"
        );
        assert!(
            self.sandbox.vm_dirs().is_empty(),
            "run dirs left: {:?}",
            self.sandbox.vm_dirs()
        );
        assert!(!self.sandbox.has_current(), "the run record is left");
        boma_vm::Runs::new(&self.sandbox.settings.runs_root)
            .lock("test")
            .expect("the lock is free");
    }
}

pub fn options() -> ItOptions {
    ItOptions {
        tier: CertTier::Internal,
        keep: false,
        no_reboot: false,
        idempotence: true,
        remove_failed: false,
        run_id: None,
        power_off_failed: false,
    }
}

fn copy_tree(from: &Utf8Path, to: &Utf8Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in from.read_dir_utf8().unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
