//! The layer store against real `qemu-img` on 1 MiB images in a temporary directory (no root,
//! no VM): insert, lookup, stacking, dropping damaged layers with their descendants, concurrent
//! inserts of one key, holds against prune and eviction.

use crate::support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use boma_exec::CmdExt as _;
use boma_layers::{
    Defect, FileDigest, Inserted, Layer, LayerKey, LayerStore, Lookup, Manifest, MissCause,
    NewLayer, Recipe, Removal, RepoPath, StoreConfig, StoreError, Timestamp,
};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

const T0: Timestamp = Timestamp(1_800_000_000);

struct Rig {
    _dir: tempfile::TempDir,
    root: Utf8PathBuf,
    golden: Utf8PathBuf,
    store: LayerStore,
}

fn sh() -> Shell {
    Shell::new().unwrap()
}

impl Rig {
    fn new() -> Rig {
        Rig::with_config(StoreConfig::default())
    }

    fn with_config(config: StoreConfig) -> Rig {
        let (dir, root, golden) = support::scratch_with_golden();
        let store = LayerStore::open(&root.join("cache/layers"), config).unwrap();
        Rig {
            _dir: dir,
            root,
            golden,
            store,
        }
    }

    /// A qcow2 overlay on `backing` with `pattern` written at `offset` (what an apply step
    /// leaves behind).
    fn overlay(&self, name: &str, backing: &Utf8Path, pattern: u8, offset: u32) -> Utf8PathBuf {
        let path = self.root.join(name);
        support::write_overlay(&path, backing, pattern, offset);
        path
    }

    fn new_layer(&self, recipe: &Recipe) -> NewLayer {
        NewLayer {
            recipe: recipe.clone(),
            profile: "askari".to_owned(),
            step_label: format!("step {}", recipe.step_index),
            golden: self.golden.clone(),
        }
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

fn recipe(step_index: usize, previous: Option<LayerKey>, tags: &[&str]) -> Recipe {
    Recipe {
        golden_digest: "sha512:golden".to_owned(),
        groups: vec!["offsite_hosts".to_owned()],
        step_index,
        playbook: if step_index == 0 {
            "site.yml"
        } else {
            "offsite.yml"
        }
        .to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        vars_files: vec![RepoPath::new("certs/internal.yml").unwrap()],
        manifest: Manifest::from([(
            RepoPath::new("roles/base/tasks/main.yml").unwrap(),
            FileDigest::of(format!("step {step_index}").as_bytes()),
        )]),
        run: support::run_inputs(),
        previous,
    }
}

fn inode(path: &Utf8Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).unwrap().ino()
}

fn backing_of(path: &Utf8Path) -> String {
    let sh = sh();
    let json = cmd!(sh, "qemu-img info --output=json {path}")
        .exec()
        .read()
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["backing-filename"].as_str().unwrap().to_owned()
}

/// Same guest-visible content (through both backing chains).
fn same_content(a: &Utf8Path, b: &Utf8Path) -> bool {
    let sh = sh();
    cmd!(sh, "qemu-img compare -q {a} {b}")
        .exec()
        .allow_fail()
        .run()
        .unwrap()
        .success()
}

/// The layer an insert published (panics on a lost race: the caller expects none).
fn published(inserted: Inserted) -> (Box<Layer>, Removal) {
    match inserted {
        Inserted::Published { layer, evicted } => (layer, evicted),
        Inserted::AlreadyPublished { key } => panic!("{key} was already published"),
    }
}

fn make_writable(path: &Utf8Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// What a run records of a layer whose power cycle came back having lost nothing.
fn healthy(rig: &Rig, key: &LayerKey) {
    rig.store.mark_booted(key, T0).unwrap();
    rig.store.record_verdict(key, Vec::new(), T0).unwrap();
}

/// Two stacked layers, each booted from once and healthy: step 0 on the golden image, step 1
/// on step 0.
fn two_layers(rig: &Rig) -> (Recipe, Recipe) {
    let r0 = recipe(0, None, &["base"]);
    let ov0 = rig.overlay("ov0.qcow2", &rig.golden, 0xab, 0);
    rig.store.insert(rig.new_layer(&r0), &ov0, T0).unwrap();
    healthy(rig, &r0.key());
    let r1 = recipe(1, Some(r0.key()), &["docker_host"]);
    let ov1 = rig.overlay("ov1.qcow2", &rig.store.qcow2_path(&r0.key()), 0xcd, 65536);
    rig.store.insert(rig.new_layer(&r1), &ov1, T0).unwrap();
    healthy(rig, &r1.key());
    (r0, r1)
}

#[test]
fn an_inserted_layer_is_read_only_backed_by_golden_and_found_again() {
    let rig = Rig::new();
    let r0 = recipe(0, None, &["base"]);
    let ov0 = rig.overlay("ov0.qcow2", &rig.golden, 0xab, 0);
    let (layer, _) = published(rig.store.insert(rig.new_layer(&r0), &ov0, T0).unwrap());
    let path = layer.path().to_owned();
    assert_eq!(path, rig.store.qcow2_path(&r0.key()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444);
    assert_eq!(backing_of(&path), rig.golden.as_str());
    assert!(
        same_content(&ov0, &path),
        "the layer holds what the overlay held"
    );
    assert!(ov0.exists(), "the run's overlay is copied, not taken");
    drop(layer);
    healthy(&rig, &r0.key());

    let later = Timestamp(T0.0 + 60);
    let Lookup::Found(layer) = rig.store.lookup(&r0.key(), later).unwrap() else {
        panic!("layer not found");
    };
    assert_eq!(layer.meta().last_used, later, "lookup records the use");
    assert_eq!(layer.meta().created, T0);
    assert_eq!(layer.meta().recipe, r0);
    assert!(
        rig.files().iter().all(|f| !f.ends_with(".part")),
        "{:?}",
        rig.files()
    );
}

#[test]
fn a_layer_no_guest_came_back_from_is_kept_but_never_booted() {
    let rig = Rig::new();
    let r0 = recipe(0, None, &["cat_fstab_emergency"]);
    let ov0 = rig.overlay("ov0.qcow2", &rig.golden, 0xab, 0);
    rig.store.insert(rig.new_layer(&r0), &ov0, T0).unwrap();
    // The run's reboot from it never came back: nothing marked it booted.
    assert!(matches!(
        rig.store.lookup(&r0.key(), T0).unwrap(),
        Lookup::NotBooted
    ));
    let matched = rig
        .store
        .deepest_match("askari", std::slice::from_ref(&r0), T0)
        .unwrap();
    assert!(matched.layers.is_empty(), "an unbooted layer is not reused");
    let miss = matched.miss.unwrap();
    assert_eq!(miss.cause, MissCause::NotBooted);
    assert_eq!(
        miss.to_string(),
        format!(
            "step 1: layer {} is stored, but no guest has come back from it (the boot from it failed, or its run is still under way)",
            r0.key().short()
        )
    );
    // The next run applies the step itself and stores the same key. The unproven layer is
    // held by no one (its run is over), so it is removed and this run's copy published under
    // a new inode: nothing was rewritten under a reader.
    let old_inode = inode(&rig.store.qcow2_path(&r0.key()));
    let again = rig.overlay("ov0-again.qcow2", &rig.golden, 0x5a, 0);
    let (layer, _) = published(rig.store.insert(rig.new_layer(&r0), &again, T0).unwrap());
    assert_eq!(layer.meta().booted, None, "still unproven");
    assert!(same_content(&again, layer.path()));
    assert_ne!(inode(layer.path()), old_inode);

    // While its run holds it (its VM is booting from it), a third copy of the key loses and
    // the held layer keeps its inode and bytes.
    let held_inode = inode(layer.path());
    let third = rig.overlay("ov0-third.qcow2", &rig.golden, 0x77, 0);
    let lost = rig.store.insert(rig.new_layer(&r0), &third, T0).unwrap();
    assert!(
        matches!(&lost, Inserted::AlreadyPublished { key } if *key == r0.key()),
        "{lost:?}"
    );
    assert_eq!(inode(layer.path()), held_inode);
    assert!(same_content(&again, layer.path()));
    drop(layer);
    assert_eq!(rig.store.list().unwrap().len(), 1, "kept, as cache");

    // A guest that comes back from it is not enough: its power cycle must be judged.
    let later = Timestamp(T0.0 + 60);
    rig.store.mark_booted(&r0.key(), later).unwrap();
    assert!(matches!(
        rig.store.lookup(&r0.key(), later).unwrap(),
        Lookup::NotJudged
    ));
    // Judged, having lost nothing: a layer runs start from.
    rig.store
        .record_verdict(&r0.key(), Vec::new(), later)
        .unwrap();
    let Lookup::Found(layer) = rig.store.lookup(&r0.key(), later).unwrap() else {
        panic!("a booted layer is found");
    };
    assert_eq!(layer.meta().booted, Some(later));
    drop(layer);
    rig.store
        .mark_booted(&r0.key(), Timestamp(T0.0 + 120))
        .unwrap();
    let Lookup::Found(layer) = rig.store.lookup(&r0.key(), later).unwrap() else {
        panic!("still found");
    };
    assert_eq!(
        layer.meta().booted,
        Some(later),
        "the first boot is what is kept"
    );
}

#[test]
fn a_layer_whose_power_cycle_lost_state_is_never_booted_and_replaced_only_once_unheld() {
    let rig = Rig::new();
    let r0 = recipe(0, None, &["cat_first_step"]);
    let ov0 = rig.overlay("ov0.qcow2", &rig.golden, 0xab, 0);
    // The run that made it still holds it (its VM is kept).
    let made = rig.store.insert(rig.new_layer(&r0), &ov0, T0).unwrap();
    rig.store.mark_booted(&r0.key(), T0).unwrap();
    let lost = vec!["unit_inactive boma-cat-first.service".to_owned()];
    rig.store
        .record_verdict(&r0.key(), lost.clone(), T0)
        .unwrap();
    // A later verdict does not overwrite the first.
    rig.store.record_verdict(&r0.key(), Vec::new(), T0).unwrap();
    assert!(matches!(
        rig.store.lookup(&r0.key(), T0).unwrap(),
        Lookup::LostState { lost: found } if found == lost
    ));
    let matched = rig
        .store
        .deepest_match("askari", std::slice::from_ref(&r0), T0)
        .unwrap();
    assert!(matched.layers.is_empty(), "never booted as healthy");
    let miss = matched.miss.unwrap();
    assert_eq!(
        miss.to_string(),
        format!(
            "step 1: layer {} lost state at the power cycle that stored it (unit_inactive boma-cat-first.service): the step is applied again, so this run shows it",
            r0.key().short()
        )
    );
    // While its run holds it, the next run's copy of the step does not replace it: that run
    // keeps its own disk.
    let published = inode(&rig.store.qcow2_path(&r0.key()));
    let again = rig.overlay("again.qcow2", &rig.golden, 0x5a, 0);
    assert!(matches!(
        rig.store.insert(rig.new_layer(&r0), &again, T0).unwrap(),
        Inserted::AlreadyPublished { .. }
    ));
    assert_eq!(published, inode(&rig.store.qcow2_path(&r0.key())));
    let listed = rig.store.list().unwrap();
    assert_eq!(listed[0].lost.as_deref(), Some(lost.as_slice()));
    // Once no one holds it, a new copy replaces it, with no verdict yet: its own power cycle
    // judges it (a lossy layer would otherwise keep its key from ever being healthy).
    drop(made);
    let Inserted::Published { layer, .. } =
        rig.store.insert(rig.new_layer(&r0), &again, T0).unwrap()
    else {
        panic!("an unheld lossy layer is replaced");
    };
    assert_ne!(published, inode(layer.path()));
    drop(layer);
    let listed = rig.store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].lost, None);
}

#[test]
fn a_second_layer_stacks_on_the_first_and_the_chain_matches_to_its_end() {
    let rig = Rig::new();
    let (r0, r1) = two_layers(&rig);
    let layer1 = rig.store.qcow2_path(&r1.key());
    assert_eq!(
        backing_of(&layer1),
        rig.store.qcow2_path(&r0.key()).as_str()
    );
    assert!(same_content(&rig.root.join("ov1.qcow2"), &layer1));

    let matched = rig
        .store
        .deepest_match("askari", &[r0.clone(), r1.clone()], T0)
        .unwrap();
    let (index, deepest) = matched.deepest().unwrap();
    assert_eq!((index, deepest.key()), (1, &r1.key()));
    assert_eq!(matched.miss, None);
}

#[test]
fn a_changed_step_stops_the_chain_and_says_what_changed() {
    let rig = Rig::new();
    let (r0, _) = two_layers(&rig);
    let r1_retagged = recipe(1, Some(r0.key()), &["docker_host", "reverse_proxy"]);
    let r2 = recipe(2, Some(r1_retagged.key()), &[]);
    let matched = rig
        .store
        .deepest_match("askari", &[r0.clone(), r1_retagged.clone(), r2], T0)
        .unwrap();
    assert_eq!(
        matched.deepest().map(|(i, l)| (i, l.key().clone())),
        Some((0, r0.key()))
    );
    let miss = matched.miss.unwrap();
    assert_eq!(miss.step_index, 1);
    assert_eq!(
        miss.to_string(),
        format!(
            "step 2: layer {} is for other inputs: tags changed: docker_host -> docker_host,reverse_proxy",
            recipe(1, Some(r0.key()), &["docker_host"]).key().short()
        )
    );

    // Another profile has no layer for the step at all.
    let matched = rig
        .store
        .deepest_match("other", &[r0, r1_retagged], T0)
        .unwrap();
    assert_eq!(matched.miss.unwrap().cause, MissCause::NeverBuilt);
}

#[test]
fn a_truncated_layer_is_dropped_with_its_descendant() {
    let rig = Rig::new();
    let (r0, r1) = two_layers(&rig);
    let layer0 = rig.store.qcow2_path(&r0.key());
    make_writable(&layer0);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&layer0)
        .unwrap();
    file.set_len(file.metadata().unwrap().len() / 2).unwrap();

    let matched = rig
        .store
        .deepest_match("askari", &[r0.clone(), r1.clone()], T0)
        .unwrap();
    assert!(
        matched.layers.is_empty(),
        "a damaged layer is never returned"
    );
    let miss = matched.miss.unwrap();
    assert_eq!(miss.step_index, 0);
    let MissCause::Dropped(dropped) = &miss.cause else {
        panic!("expected a drop: {miss}");
    };
    assert!(
        matches!(dropped.defect, Defect::SizeChanged { .. }),
        "{}",
        dropped.defect
    );
    assert_eq!(dropped.removed, [r1.key(), r0.key()], "children go first");
    assert!(
        miss.to_string().contains("truncated or rewritten"),
        "{miss}"
    );
    assert!(
        rig.files().iter().all(|f| f == ".lock"),
        "every file of both layers is gone: {:?}",
        rig.files()
    );
}

#[test]
fn a_layer_whose_backing_pointer_changed_is_dropped_and_its_parent_kept() {
    let rig = Rig::new();
    let (r0, r1) = two_layers(&rig);
    let layer1 = rig.store.qcow2_path(&r1.key());
    make_writable(&layer1);
    let golden = &rig.golden;
    let sh = sh();
    cmd!(sh, "qemu-img rebase -u -F qcow2 -b {golden} {layer1}")
        .exec()
        .run()
        .unwrap();

    let Lookup::Dropped(dropped) = rig.store.lookup(&r1.key(), T0).unwrap() else {
        panic!("a re-pointed layer must be dropped");
    };
    assert_eq!(
        dropped.defect,
        Defect::BackingChanged {
            expected: rig.store.qcow2_path(&r0.key()),
            found: Some(golden.to_string()),
        }
    );
    assert_eq!(dropped.removed, [r1.key()]);
    assert!(!layer1.exists());
    assert!(matches!(
        rig.store.lookup(&r0.key(), T0).unwrap(),
        Lookup::Found(_)
    ));
}

#[test]
fn qemu_img_check_catches_damage_that_keeps_the_size() {
    let rig = Rig::new();
    let (r0, r1) = two_layers(&rig);
    let layer0 = rig.store.qcow2_path(&r0.key());
    make_writable(&layer0);
    // Point the first L1 entry far past the end of the file (the header's l1_table_offset is
    // the big-endian u64 at byte 40).
    let mut bytes = std::fs::read(&layer0).unwrap();
    let l1 = u64::from_be_bytes(bytes[40..48].try_into().unwrap()) as usize;
    bytes[l1..l1 + 8].copy_from_slice(&0x8000_0000_7f00_0000_u64.to_be_bytes());
    std::fs::write(&layer0, &bytes).unwrap();

    let matched = rig
        .store
        .deepest_match("askari", &[r0.clone(), r1.clone()], T0)
        .unwrap();
    let miss = matched.miss.unwrap();
    let MissCause::Dropped(dropped) = &miss.cause else {
        panic!("expected a drop: {miss}");
    };
    let Defect::CheckFailed { output } = &dropped.defect else {
        panic!("expected qemu-img check to fail: {}", dropped.defect);
    };
    assert!(output.contains("ERROR"), "{output}");
    assert_eq!(dropped.removed, [r1.key(), r0.key()]);
}

#[test]
fn a_layer_whose_parent_is_gone_is_dropped() {
    let rig = Rig::new();
    let (r0, r1) = two_layers(&rig);
    std::fs::remove_file(rig.store.qcow2_path(&r0.key())).unwrap();
    let Lookup::Dropped(dropped) = rig.store.lookup(&r1.key(), T0).unwrap() else {
        panic!("a layer without its parent must be dropped");
    };
    assert_eq!(
        dropped.defect,
        Defect::ParentMissing {
            parent: rig.store.qcow2_path(&r0.key())
        }
    );
}

#[test]
fn two_runs_inserting_one_key_end_with_one_valid_layer_and_no_second_copy() {
    let rig = Rig::new();
    let r0 = recipe(0, None, &["base"]);
    let overlays = [
        rig.overlay("ov-a.qcow2", &rig.golden, 0xab, 0),
        rig.overlay("ov-b.qcow2", &rig.golden, 0xab, 0),
    ];
    let barrier = Arc::new(Barrier::new(2));
    let dir = rig.store.dir().to_owned();
    // Each run keeps what it got (and so its hold) until both are done, as two VMs would.
    let results: Vec<Inserted> = std::thread::scope(|scope| {
        let handles: Vec<_> = overlays
            .iter()
            .map(|overlay| {
                let barrier = Arc::clone(&barrier);
                let new = rig.new_layer(&r0);
                let dir = dir.clone();
                scope.spawn(move || {
                    // Each run opens the store itself, as two harness processes would.
                    let store = LayerStore::open(&dir, StoreConfig::default()).unwrap();
                    barrier.wait();
                    store.insert(new, overlay, T0).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The first holds what it published while its VM runs, so the second loses and keeps its
    // own disk: exactly one publishes.
    let stored = results
        .iter()
        .filter(|r| matches!(r, Inserted::Published { .. }))
        .count();
    assert_eq!(stored, 1, "one run publishes the layer: {results:?}");
    drop(results);
    let key = r0.key();
    assert_eq!(
        rig.files(),
        [
            ".lock".to_owned(),
            format!("{key}.json"),
            format!("{key}.lock"),
            format!("{key}.qcow2")
        ],
        "one layer (and its hold lock file), no second copy, no part file"
    );
    healthy(&rig, &key);
    assert!(matches!(
        rig.store.lookup(&key, T0).unwrap(),
        Lookup::Found(_)
    ));
}

#[test]
fn held_layers_survive_prune_and_eviction_with_their_ancestors() {
    let rig = Rig::new();
    let (r0, r1) = two_layers(&rig);
    let hold = rig.store.hold(&r1.key()).unwrap();

    let removal = rig.store.prune_all().unwrap();
    assert!(removal.removed.is_empty());
    assert_eq!(
        removal.spared_busy.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&r0.key(), &r1.key()])
    );
    let removal = rig.store.evict_lru(0).unwrap();
    assert!(removal.removed.is_empty());
    assert_eq!(rig.store.list().unwrap().len(), 2);

    drop(hold);
    let removal = rig.store.prune_all().unwrap();
    assert_eq!(removal.removed, [r1.key(), r0.key()]);
    assert!(removal.freed_bytes > 0);
    assert_eq!(rig.files(), [".lock"]);
}

#[test]
fn prune_by_age_uses_the_last_use() {
    let rig = Rig::new();
    let (r0, r1) = two_layers(&rig);
    let week = Duration::from_secs(7 * 24 * 3600);
    // Used again three days later: the chain is younger than a week at T0 + 8 days.
    let three_days = Timestamp(T0.0 + 3 * 24 * 3600);
    drop(rig.store.lookup(&r1.key(), three_days).unwrap());
    let eight_days = Timestamp(T0.0 + 8 * 24 * 3600);
    assert!(
        rig.store
            .prune_older_than(week, eight_days)
            .unwrap()
            .removed
            .is_empty()
    );
    let eleven_days = Timestamp(T0.0 + 11 * 24 * 3600);
    let removal = rig.store.prune_older_than(week, eleven_days).unwrap();
    assert_eq!(removal.removed, [r1.key(), r0.key()]);
}

#[test]
fn the_size_bound_evicts_after_insert_but_never_the_new_layer() {
    let rig = Rig::with_config(StoreConfig { max_total_bytes: 1 });
    let first = recipe(0, None, &["base"]);
    let ov_first = rig.overlay("ov-first.qcow2", &rig.golden, 0xab, 0);
    let (layer, evicted) = published(
        rig.store
            .insert(rig.new_layer(&first), &ov_first, T0)
            .unwrap(),
    );
    // Over the bound, but the caller holds it.
    assert!(evicted.removed.is_empty());
    assert_eq!(evicted.spared_busy, [first.key()]);
    drop(layer);

    let second = recipe(0, None, &["base", "ssh"]);
    let ov_second = rig.overlay("ov-second.qcow2", &rig.golden, 0xef, 0);
    let later = Timestamp(T0.0 + 10);
    let (_layer, evicted) = published(
        rig.store
            .insert(rig.new_layer(&second), &ov_second, later)
            .unwrap(),
    );
    assert_eq!(evicted.removed, [first.key()]);
    let listed: Vec<LayerKey> = rig
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(listed, [second.key()]);
}

#[test]
fn an_overlay_on_another_base_is_refused() {
    let rig = Rig::new();
    let (r0, _) = two_layers(&rig);
    // Step 1's overlay must sit on step 0's layer; one on the golden image would make the
    // unsafe rebase lie about its content.
    let wrong = rig.overlay("wrong.qcow2", &rig.golden, 0x11, 0);
    let r1 = recipe(1, Some(r0.key()), &["other"]);
    let err = rig
        .store
        .insert(rig.new_layer(&r1), &wrong, T0)
        .unwrap_err();
    assert!(matches!(err, StoreError::OverlayBacking { .. }), "{err}");
    assert!(rig.files().iter().all(|f| !f.ends_with(".part")));
}

#[test]
fn prune_sweeps_what_interrupted_inserts_left_but_not_a_copy_in_progress() {
    let rig = Rig::new();
    let (r0, _) = two_layers(&rig);
    let dir = rig.store.dir();
    let orphan = LayerKey::parse(&"a".repeat(64)).unwrap();
    std::fs::write(dir.join(format!("{orphan}.qcow2")), b"no metadata").unwrap();
    std::fs::write(
        dir.join(format!("{}.qcow2.999-0.part", r0.key())),
        b"half a copy",
    )
    .unwrap();
    // A copy still being written is locked by its writer and stays.
    let writing = dir.join(format!("{}.qcow2.999-1.part", r0.key()));
    let writer = std::fs::File::create(&writing).unwrap();
    writer.try_lock().unwrap();
    // Held: a run still holds step 0, so the sweep leaves the layers and takes only leftovers.
    let _hold = rig.store.hold(&r0.key()).unwrap();
    rig.store.prune_all().unwrap();
    let files = rig.files();
    assert!(
        !files.iter().any(|f| f.starts_with(orphan.as_str())),
        "{files:?}"
    );
    let parts: Vec<&String> = files.iter().filter(|f| f.ends_with(".part")).collect();
    assert_eq!(parts, [&format!("{}.qcow2.999-1.part", r0.key())]);
    assert!(files.contains(&format!("{}.qcow2", r0.key())), "{files:?}");
    drop(writer);
}

#[test]
fn an_absent_key_is_a_plain_miss_and_leaves_no_lock_file() {
    let rig = Rig::new();
    let key = recipe(0, None, &[]).key();
    assert!(matches!(
        rig.store.lookup(&key, T0).unwrap(),
        Lookup::Absent
    ));
    assert_eq!(rig.files(), [".lock"]);
}
