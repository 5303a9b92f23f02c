//! What the layer tests share: a run's inputs besides the repository, overlays made with the
//! real `qemu-img`, the check that no step of a chain is in doubt.

// Each test module uses its own part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use boma_exec::CmdExt as _;
use boma_layers::{FileDigest, RunInputs, StepRecipe};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

/// The inputs of a plain run: askari's lineage, a small environment, the pinned Ansible.
pub fn run_inputs() -> RunInputs {
    RunInputs {
        lineage: BTreeMap::from([(
            "offsite_hosts".to_owned(),
            BTreeSet::from(["hosts".to_owned()]),
        )]),
        ansible_env: RunInputs::digest_env(&BTreeMap::from([(
            "LANG".to_owned(),
            "C.UTF-8".to_owned(),
        )])),
        installed: BTreeMap::from([
            ("ansible_core".to_owned(), "2.18.12".to_owned()),
            ("python".to_owned(), "3.11.2".to_owned()),
        ]),
        controller_files: BTreeMap::new(),
        seed: FileDigest::of(b"#cloud-config\n"),
        connection: FileDigest::of(b"ssh -F harness"),
    }
}

/// A qcow2 overlay at `path` on `backing` with `pattern` written over 64 KiB at `offset`
/// (what an apply step leaves behind).
pub fn write_overlay(path: &Utf8Path, backing: &Utf8Path, pattern: u8, offset: u32) {
    let sh = Shell::new().unwrap();
    cmd!(
        sh,
        "qemu-img create -q -f qcow2 -F qcow2 -b {backing} {path}"
    )
    .exec()
    .run()
    .unwrap();
    let write = format!("write -P {pattern} {offset} 64k");
    cmd!(sh, "qemu-io -c {write} {path}").exec().run().unwrap();
}

/// No step's reach had to take the whole repository: every path was resolved.
pub fn assert_not_in_doubt(steps: &[StepRecipe], what: &str) {
    for step in steps {
        assert!(
            step.reach
                .notes
                .iter()
                .all(|n| !n.contains("whole repository")),
            "{what}: {:?}",
            step.reach.notes
        );
    }
}

/// A scratch directory (canonical: layers name their parents by absolute path) holding a
/// 1 MiB qcow2 golden image: the directory, its path, the image's path.
pub fn scratch_with_golden() -> (tempfile::TempDir, Utf8PathBuf, Utf8PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::try_from(tmp.path().canonicalize().unwrap()).unwrap();
    let golden = root.join("golden.qcow2");
    let sh = Shell::new().unwrap();
    cmd!(sh, "qemu-img create -q -f qcow2 {golden} 1M")
        .exec()
        .run()
        .expect("qemu-img is needed for these tests: install the Debian package qemu-utils");
    (tmp, root, golden)
}
