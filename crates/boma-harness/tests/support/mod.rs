//! A fake machine and a throwaway copy of the repository's harness inputs, for driving every
//! step of the harness (and every way it can fail) without a VM.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};

use boma_harness::{BackendChoice, HarnessError, ImageSource, Machine, Settings};
use boma_vm::fake::{FakeBackend, FakeDisks, FakeGuest, World};
use std::time::Duration;

use boma_vm::lifecycle::{Disks, Waits};
use boma_vm::{Accel, Backend, BackendKind, Guest};
use camino::{Utf8Path, Utf8PathBuf};

/// The interrupt flag is process-wide: tests that touch it (and all that run the harness,
/// which reads it) take turns.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    boma_exec::interrupt::reset();
    guard
}

/// What the fake `ansible-playbook` does for one step.
pub type Playbook = Box<dyn FnMut(&str, &[String]) -> Result<(), HarnessError>>;

pub struct FakeMachine {
    pub world: Rc<RefCell<World>>,
    guest: FakeGuest,
    disks: FakeDisks,
    pub available_mib: Cell<u64>,
    pub missing_tools: RefCell<Vec<String>>,
    pub playbook: RefCell<Playbook>,
    pub playbook_calls: RefCell<Vec<String>>,
    /// How often the golden image was asked for (fetched or built, on a real machine).
    pub golden_asked: Cell<u32>,
    golden: Utf8PathBuf,
}

impl FakeMachine {
    pub fn new(golden: Utf8PathBuf) -> FakeMachine {
        let world = World::shared();
        FakeMachine {
            guest: FakeGuest {
                world: Rc::clone(&world),
            },
            disks: FakeDisks {
                fail_overlay: false,
            },
            world,
            available_mib: Cell::new(16_000),
            missing_tools: RefCell::new(Vec::new()),
            playbook: RefCell::new(verify_passes()),
            playbook_calls: RefCell::new(Vec::new()),
            golden_asked: Cell::new(0),
            golden,
        }
    }
}

impl Machine for FakeMachine {
    fn choose_backend(&self) -> Result<BackendKind, HarnessError> {
        Ok(BackendKind::Qemu)
    }

    fn backend(&self, kind: BackendKind) -> Box<dyn Backend + '_> {
        Box::new(FakeBackend {
            world: Rc::clone(&self.world),
            kind,
        })
    }

    fn guest(&self) -> &dyn Guest {
        &self.guest
    }

    fn disks(&self) -> &dyn Disks {
        &self.disks
    }

    fn golden_image(&self) -> Result<Utf8PathBuf, HarnessError> {
        self.golden_asked.set(self.golden_asked.get() + 1);
        Ok(self.golden.clone())
    }

    fn accel(&self, _golden: &Utf8Path) -> Result<Accel, HarnessError> {
        Ok(Accel::Tcg)
    }

    fn keypair(&self) -> Result<(Utf8PathBuf, String), HarnessError> {
        Ok((
            "/fake/id_ed25519".into(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKE boma".into(),
        ))
    }

    fn available_mib(&self) -> u64 {
        self.available_mib.get()
    }

    fn guard_disk(&self, _dir: &Utf8Path) -> Result<(), HarnessError> {
        Ok(())
    }

    fn tool_missing(&self, tool: &str) -> bool {
        self.missing_tools.borrow().iter().any(|t| t == tool)
    }

    fn waits(&self, _accel: Accel) -> Waits {
        Waits {
            boot: Duration::from_millis(300),
            reboot: Duration::from_millis(300),
            poll: Duration::from_millis(1),
        }
    }

    fn run_playbook(&self, step: &str, args: &[String]) -> Result<(), HarnessError> {
        self.playbook_calls.borrow_mut().push(step.to_owned());
        (self.playbook.borrow_mut())(step, args)
    }
}

/// The results file the harness asked verify to write, from the `-e @harness-vars.json` arg.
pub fn results_file(args: &[String]) -> Utf8PathBuf {
    let vars = args
        .iter()
        .find_map(|a| {
            a.strip_prefix('@')
                .filter(|p| p.ends_with("harness-vars.json"))
        })
        .expect("verify gets the harness vars");
    let vars: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vars).unwrap()).unwrap();
    Utf8PathBuf::from(vars["boma_it_results_file"].as_str().unwrap())
}

fn write_results(args: &[String], forward_ok: bool, https_ok: bool) {
    let results = serde_json::json!({"checks": [
        {"name": "docker_active", "ok": true, "reason": "ok"},
        {"name": "forward_chain_accepts_containers", "ok": forward_ok, "reason": if forward_ok {"ok"} else {"pure_drop"}},
        {"name": "https_443_from_controller", "ok": https_ok, "reason": if https_ok {"ok"} else {"timeout"}},
    ]});
    std::fs::write(results_file(args), results.to_string()).unwrap();
}

/// Applies succeed; verify passes.
pub fn verify_passes() -> Playbook {
    Box::new(|step, args| {
        if step == "verify" {
            write_results(args, true, true);
        }
        Ok(())
    })
}

/// Applies succeed; verify fails the way the RED case does.
pub fn verify_fails_red() -> Playbook {
    Box::new(|step, args| {
        if step == "verify" {
            write_results(args, false, false);
            return Err(HarnessError::Playbook {
                step: step.to_owned(),
                code: Some(2),
            });
        }
        Ok(())
    })
}

/// The step whose name contains `during` is interrupted by `signal`.
pub fn interrupted_during(during: &'static str, signal: i32) -> Playbook {
    Box::new(move |step, args| {
        if step.contains(during) {
            boma_exec::interrupt::simulate(signal);
            return Err(boma_exec::interrupt::Interrupted { signal }.into());
        }
        if step == "verify" {
            write_results(args, true, true);
        }
        Ok(())
    })
}

/// A copy of the repository's harness inputs (profiles, overrides, certs, playbooks, the
/// verify playbook, the real inventory) that a test may break, plus empty run, state and
/// diagnostics directories.
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
        ] {
            copy_tree(&real.join(dir), &repo.join(dir));
        }
        std::fs::create_dir_all(repo.join("tests/integration")).unwrap();
        std::fs::copy(
            real.join("tests/integration/verify.yml"),
            repo.join("tests/integration/verify.yml"),
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
            boot_timeout: None,
            reboot_timeout: None,
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
