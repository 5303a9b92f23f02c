//! What the layer tests share: a run's inputs besides the repository.

use std::collections::{BTreeMap, BTreeSet};

use boma_layers::{FileDigest, RunInputs};

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
