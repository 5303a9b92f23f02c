//! Reach and recipes on this repository's real playbooks and profiles.

use crate::support;

use boma_inventory::{CertTier, load_profile};
use boma_layers::{DiskTree, Reach, StepFiles, reach, step_recipes};
use camino::{Utf8Path, Utf8PathBuf};

fn repo_root() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reach_of(playbook: &str) -> Reach {
    let extra = [Utf8PathBuf::from("overrides/askari.yml")];
    reach(
        &DiskTree::new(&repo_root()),
        &StepFiles {
            playbook,
            extra_vars_files: &extra,
            cert_tier: CertTier::Internal,
        },
    )
    .unwrap()
}

fn has_under(reach: &Reach, dir: &str) -> bool {
    reach
        .files
        .iter()
        .any(|r| r.path.as_str().starts_with(&format!("{dir}/")))
}

/// Every file of `dir` on disk is in the reach.
fn has_all_of(reach: &Reach, dir: &str) -> bool {
    let tree = DiskTree::new(&repo_root());
    let files =
        boma_layers::RepoTree::files_under(&tree, &boma_layers::RepoPath::new(dir).unwrap())
            .unwrap();
    !files.is_empty()
        && files
            .iter()
            .all(|f| reach.files.iter().any(|r| &r.path == f))
}

#[test]
fn site_yml_for_tags_base_reads_base_docker_host_and_the_inventory_vars() {
    // `--tags base` does not narrow what is read: site.yml's second play names docker_host, and
    // Ansible loads that role (its defaults, handlers, static imports) whatever the tags; a task
    // of it tagged `always` would even run. So docker_host is in, and reverse_proxy, which
    // neither site.yml nor any `meta` dependency of base or docker_host names, is not.
    let reach = reach_of("site.yml");
    assert!(has_all_of(&reach, "roles/base"));
    assert!(has_all_of(&reach, "roles/docker_host"));
    assert!(has_all_of(&reach, "inventories/production/group_vars"));
    assert!(!has_under(&reach, "roles/reverse_proxy"));
    assert!(!has_under(&reach, "roles/integration_test"));
    let paths: Vec<&str> = reach.files.iter().map(|r| r.path.as_str()).collect();
    for file in [
        "playbooks/site.yml",
        "overrides/askari.yml",
        "certs/internal.yml",
        "ansible.cfg",
        "requirements.txt",
    ] {
        assert!(paths.contains(&file), "{file} missing");
    }
    // Other playbooks, the real hosts and the harness are not read by the step.
    for file in [
        "playbooks/offsite.yml",
        "inventories/production/offsite.yml",
        "Cargo.toml",
    ] {
        assert!(!paths.contains(&file), "{file} should not be read");
    }
    assert!(reach.notes.is_empty(), "{:?}", reach.notes);
}

#[test]
fn offsite_yml_reads_reverse_proxy_and_docker_host_but_not_base() {
    let reach = reach_of("offsite.yml");
    assert!(has_all_of(&reach, "roles/reverse_proxy"));
    assert!(has_all_of(&reach, "roles/docker_host"));
    assert!(!has_under(&reach, "roles/base"));
}

#[test]
fn roles_dir_is_the_roles_path_of_ansible_cfg() {
    let cfg = std::fs::read_to_string(repo_root().join(boma_layers::reach::ANSIBLE_CFG)).unwrap();
    let roles_path = cfg
        .lines()
        .find_map(|line| line.trim().strip_prefix("roles_path"))
        .and_then(|rest| rest.trim().strip_prefix('='))
        .map(str::trim);
    assert_eq!(
        roles_path,
        Some(boma_layers::reach::ROLES_DIR),
        "reach.rs looks for roles where ansible.cfg says they are: update ROLES_DIR"
    );
}

#[test]
fn every_profile_gives_a_chain_of_distinct_keys() {
    let root = repo_root();
    for host in boma_inventory::list_profiles(&root).unwrap() {
        let profile = load_profile(&root, &host).unwrap();
        let steps = step_recipes(
            &DiskTree::new(&root),
            &profile,
            CertTier::Internal,
            "sha512:x",
            &support::run_inputs(),
        )
        .unwrap();
        assert_eq!(steps.len(), profile.applies.len());
        for pair in steps.windows(2) {
            assert_eq!(
                pair[1].recipe.previous,
                Some(pair[0].recipe.key()),
                "{host}"
            );
        }
        assert_eq!(steps[0].label, profile.applies[0].label(), "{host}");
        // Every path our roles reach is resolved: none takes the whole repository.
        support::assert_not_in_doubt(&steps, &host);
    }
}
