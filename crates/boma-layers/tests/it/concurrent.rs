//! Runs that compute the same key at once, as separate processes (two pipelines of one commit on
//! one machine, two checkouts sharing the cache, `it askari askari`): real `qemu-img`, real
//! processes (this test binary, run again as each child), 1 MiB images in a temporary
//! directory. One run publishes the layer; the others keep booting their own disks; no
//! published file is ever replaced; a VM whose run has ended keeps its chain.

use crate::support;

use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use boma_exec::CmdExt as _;
use boma_layers::{
    FileDigest, Inserted, LayerStore, Manifest, NewLayer, Recipe, RepoPath, StoreConfig, Timestamp,
};
use boma_name::VmName;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

const T0: Timestamp = Timestamp(1_800_000_000);
/// Set (to a JSON [`ChildSpec`]) in a child's environment: which run it plays.
const CHILD_ENV: &str = "BOMA_LAYERS_CONCURRENT_CHILD";
/// The child's test by its full name in this binary (`concurrent::concurrent_insert_child`):
/// `--exact` matches the module path too.
fn child_test() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::concurrent_insert_child")
}
/// How long a child or the parent waits for the other side before failing.
const PATIENCE: Duration = Duration::from_secs(60);

fn sh() -> Shell {
    Shell::new().unwrap()
}

/// What one child run does.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildSpec {
    store: Utf8PathBuf,
    golden: Utf8PathBuf,
    /// The run's overlay: its VM's disk, shut down after the step.
    overlay: Utf8PathBuf,
    /// Where the run's VM boots next (a fresh overlay on the layer, when it publishes).
    next_disk: Utf8PathBuf,
    /// Created by the parent: start inserting.
    go: Utf8PathBuf,
    /// Created by the parent: the checks are done, the VMs may stop (holds released).
    done: Utf8PathBuf,
    result: Utf8PathBuf,
    /// The VM and run directory of a run that ends with its VM kept (then the child exits at
    /// once, leaving only its keep record).
    kept: Option<(String, Utf8PathBuf)>,
}

/// What a child saw, written for the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildResult {
    published: bool,
    /// The disk its VM boots after the power cycle.
    boots: Utf8PathBuf,
    /// The published layer's inode and content right after this run's insert.
    layer_inode: u64,
    layer_sha256: String,
}

fn recipe() -> Recipe {
    Recipe {
        golden_digest: "sha512:golden".to_owned(),
        groups: vec!["offsite_hosts".to_owned()],
        step_index: 0,
        playbook: "site.yml".to_owned(),
        tags: vec!["base".to_owned()],
        vars_files: vec![RepoPath::new("certs/internal.yml").unwrap()],
        manifest: Manifest::from([(
            RepoPath::new("roles/base/tasks/main.yml").unwrap(),
            FileDigest::of(b"- debug: {}\n"),
        )]),
        run: support::run_inputs(),
        previous: None,
    }
}

fn wait_for(path: &Utf8Path) {
    let deadline = Instant::now() + PATIENCE;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{path} never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn file_sha256(path: &Utf8Path) -> String {
    FileDigest::of(&std::fs::read(path).unwrap())
        .as_str()
        .to_owned()
}

/// Whether `disk`, read through its whole backing chain, holds `pattern` in its first 64 KiB.
fn holds_pattern(disk: &Utf8Path, pattern: u8) -> bool {
    let sh = sh();
    let read = format!("read -P {pattern} 0 64k");
    let out = cmd!(sh, "qemu-io -r -c {read} {disk}")
        .exec()
        .allow_fail()
        .run()
        .unwrap();
    out.success() && !out.stdout.contains("Pattern verification failed")
}

fn check_clean(disk: &Utf8Path) {
    let sh = sh();
    let out = cmd!(sh, "qemu-img check {disk}")
        .exec()
        .allow_fail()
        .run()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "qemu-img check {disk}: {}{}",
        out.stdout,
        out.stderr
    );
    // The whole chain opens, down to the golden image.
    cmd!(sh, "qemu-img info --backing-chain {disk}")
        .exec()
        .quiet()
        .run()
        .unwrap();
}

/// Not a test of its own: the body of each child process of the tests below, which run this
/// binary again with [`CHILD_ENV`] set. Run directly, it has nothing to do.
#[test]
fn concurrent_insert_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: ChildSpec = serde_json::from_str(&spec).unwrap();
    let store = LayerStore::open(&spec.store, StoreConfig::default()).unwrap();
    let new = NewLayer {
        recipe: recipe(),
        profile: "askari".to_owned(),
        step_label: "site.yml --tags base".to_owned(),
        golden: spec.golden.clone(),
    };
    wait_for(&spec.go);
    let inserted = store.insert(new, &spec.overlay, T0).unwrap();
    let key = recipe().key();
    let layer_path = store.qcow2_path(&key);
    let (published, boots) = match &inserted {
        // The VM boots next from a fresh overlay on the layer it published.
        Inserted::Published { layer, .. } => {
            let sh = sh();
            let (layer, next) = (layer.path(), &spec.next_disk);
            cmd!(sh, "qemu-img create -q -f qcow2 -F qcow2 -b {layer} {next}")
                .exec()
                .run()
                .unwrap();
            (true, spec.next_disk.clone())
        }
        // Another run was first: the VM keeps its own disk, untouched.
        Inserted::AlreadyPublished { key: lost } => {
            assert_eq!(*lost, key);
            (false, spec.overlay.clone())
        }
    };
    // What was published, as this run saw it right after its insert.
    let layer_inode = std::fs::metadata(&layer_path).unwrap().ino();
    let layer_sha256 = file_sha256(&layer_path);
    if let Some((vm, run_dir)) = &spec.kept
        && let Inserted::Published { layer, .. } = &inserted
    {
        store
            .keep_for(&VmName::parse(vm).unwrap(), run_dir, [layer.key().clone()])
            .unwrap();
    }
    let result = ChildResult {
        published,
        boots,
        layer_inode,
        layer_sha256,
    };
    // Written whole, then renamed: the parent reads it as soon as the name exists.
    let partial = spec.result.with_extension("partial");
    std::fs::write(&partial, serde_json::to_string(&result).unwrap()).unwrap();
    std::fs::rename(&partial, &spec.result).unwrap();
    if spec.kept.is_none() {
        // The VM runs (the hold stays) until the parent has looked.
        wait_for(&spec.done);
    }
    drop(inserted);
}

struct Runs {
    _tmp: tempfile::TempDir,
    root: Utf8PathBuf,
    golden: Utf8PathBuf,
    store_dir: Utf8PathBuf,
}

impl Runs {
    fn new() -> Runs {
        let (tmp, root, golden) = support::scratch_with_golden();
        let store_dir = root.join("cache/layers");
        Runs {
            _tmp: tmp,
            root,
            golden,
            store_dir,
        }
    }

    fn spec(&self, run: usize, kept: Option<(String, Utf8PathBuf)>) -> ChildSpec {
        let overlay = self.root.join(format!("run-{run}/overlay.qcow2"));
        std::fs::create_dir_all(overlay.parent().unwrap()).unwrap();
        // Each run's disk differs, as two real runs' disks do.
        support::write_overlay(&overlay, &self.golden, pattern(run), 0);
        ChildSpec {
            store: self.store_dir.clone(),
            golden: self.golden.clone(),
            overlay,
            next_disk: self.root.join(format!("run-{run}/next.qcow2")),
            go: self.root.join("go"),
            done: self.root.join("done"),
            result: self.root.join(format!("run-{run}/result.json")),
            kept,
        }
    }
}

fn pattern(run: usize) -> u8 {
    0x10 + run as u8
}

/// Runs the child for `spec` to completion (in a thread of the caller's).
fn child(spec: &ChildSpec) {
    let exe = Utf8PathBuf::try_from(std::env::current_exe().unwrap()).unwrap();
    let child_test = child_test();
    let sh = sh();
    cmd!(
        sh,
        "{exe} --exact {child_test} --nocapture --test-threads 1"
    )
    .exec()
    .quiet()
    .env(CHILD_ENV, serde_json::to_string(spec).unwrap())
    .timeout(PATIENCE * 2)
    .run()
    .unwrap();
}

/// Lets the children stop when dropped, also when an assertion fails first: they must not wait
/// out their patience.
struct ReleaseOnDrop<'a>(&'a Utf8Path);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0, "");
    }
}

fn read_result(spec: &ChildSpec) -> ChildResult {
    serde_json::from_str(&std::fs::read_to_string(&spec.result).unwrap()).unwrap()
}

#[test]
fn runs_inserting_one_key_at_once_publish_once_and_each_boots_its_own_bytes() {
    let runs = Runs::new();
    const RUNS: usize = 4;
    let specs: Vec<ChildSpec> = (0..RUNS).map(|run| runs.spec(run, None)).collect();
    let key = recipe().key();
    let layer_path = runs.store_dir.join(format!("{key}.qcow2"));
    std::thread::scope(|scope| {
        for spec in &specs {
            scope.spawn(move || child(spec));
        }
        let _release = ReleaseOnDrop(&specs[0].done);
        std::fs::write(&specs[0].go, "").unwrap();
        for spec in &specs {
            wait_for(&spec.result);
        }
        // Every VM is still running here (each child holds what it got).
        let results: Vec<ChildResult> = specs.iter().map(read_result).collect();
        let winners: Vec<usize> = (0..RUNS).filter(|&i| results[i].published).collect();
        assert_eq!(winners.len(), 1, "exactly one run publishes: {results:?}");
        let winner = winners[0];

        // The published file is the one every run saw right after its insert: never replaced,
        // never rewritten, whoever came later.
        let inode = std::fs::metadata(&layer_path).unwrap().ino();
        let sha = file_sha256(&layer_path);
        for (run, result) in results.iter().enumerate() {
            assert_eq!(result.layer_inode, inode, "run {run} saw another inode");
            assert_eq!(result.layer_sha256, sha, "run {run} saw other bytes");
        }
        assert!(holds_pattern(&layer_path, pattern(winner)));

        // Each VM boots a valid chain holding its own run's bytes, never another run's.
        for (run, result) in results.iter().enumerate() {
            check_clean(&result.boots);
            assert!(
                holds_pattern(&result.boots, pattern(run)),
                "run {run}'s VM would boot another run's disk ({})",
                result.boots
            );
            let own = run == winner;
            assert_eq!(
                result.boots == specs[run].overlay,
                !own,
                "a losing run keeps its own overlay"
            );
        }
    });
    // No part file, no second copy: one layer.
    let mut names: Vec<String> = std::fs::read_dir(&runs.store_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    names.sort();
    assert_eq!(names, [format!("{key}.json"), format!("{key}.qcow2")]);
    check_clean(&layer_path);
}

#[test]
fn a_kept_vm_keeps_its_chain_after_its_process_is_gone() {
    let runs = Runs::new();
    let run_dir = runs.root.join("run-0");
    let vm = "boma-it-askari-0badcafe".to_owned();
    let spec = runs.spec(0, Some((vm, run_dir.clone())));
    std::fs::write(&spec.go, "").unwrap();
    // The run ends (its process exits, its flocks with it), its VM kept.
    child(&spec);
    assert!(read_result(&spec).published);
    let store = LayerStore::open(&runs.store_dir, StoreConfig::default()).unwrap();
    let key = recipe().key();
    let layer = store.qcow2_path(&key);
    let inode = std::fs::metadata(&layer).unwrap().ino();

    let pruned = store.prune_all().unwrap();
    assert!(pruned.removed.is_empty(), "{pruned:?}");
    assert_eq!(pruned.spared_busy, std::slice::from_ref(&key));
    assert!(store.evict_lru(0).unwrap().removed.is_empty());
    // Nor does another run of the same key replace it: it loses and keeps its own disk.
    let other = runs.root.join("other.qcow2");
    support::write_overlay(&other, &runs.golden, 0x77, 0);
    let new = NewLayer {
        recipe: recipe(),
        profile: "askari".to_owned(),
        step_label: "site.yml --tags base".to_owned(),
        golden: runs.golden.clone(),
    };
    let again = store.insert(new, &other, T0).unwrap();
    assert!(
        matches!(again, Inserted::AlreadyPublished { .. }),
        "{again:?}"
    );
    drop(again);
    assert_eq!(std::fs::metadata(&layer).unwrap().ino(), inode);
    check_clean(&spec.next_disk);

    // `down` removes the run directory: the chain is free again.
    std::fs::remove_dir_all(&run_dir).unwrap();
    assert_eq!(store.prune_all().unwrap().removed, [key]);
    assert!(!layer.exists());
}
