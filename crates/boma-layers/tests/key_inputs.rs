//! Which inputs change a layer's key: each one alone does, an unrelated file does not, and a
//! miss is explained in words.

use boma_inventory::{CertTier, Profile, parse_profile};
use boma_layers::{LayerKey, MemoryTree, Recipe, explain_miss, step_recipes};

const GOLDEN: &str = "sha512:9f2c";

fn profile(json: &str) -> Profile {
    parse_profile("profiles/askari.json", json).unwrap()
}

fn askari() -> Profile {
    profile(
        r#"{
  "groups": ["offsite_hosts"],
  "applies": [
    {"playbook": "site.yml", "tags": ["base"]},
    {"playbook": "offsite.yml", "tags": ["docker_host", "reverse_proxy"]}
  ],
  "extra_vars_files": ["overrides/askari.yml", "overrides/local.yml"],
  "mem_mib": 3072, "vcpus": 2, "published_ports": [443]
}"#,
    )
}

/// A small repo shaped like boma's.
fn repo() -> MemoryTree {
    MemoryTree::new([
        ("ansible.cfg", "[defaults]\nroles_path = roles\n"),
        ("requirements.txt", "ansible-core==2.18.12\n"),
        ("certs/internal.yml", "tier: internal\n"),
        ("certs/le-staging.yml", "tier: staging\n"),
        ("overrides/askari.yml", "base__firewall_apply: true\n"),
        ("overrides/local.yml", "x: 1\n"),
        ("inventories/production/group_vars/all/vars.yml", "a: 1\n"),
        (
            "inventories/production/offsite.yml",
            "offsite_hosts: {hosts: {askari: {}}}\n",
        ),
        (
            "playbooks/site.yml",
            "- hosts: all\n  roles: [{role: base, tags: [base]}]\n",
        ),
        (
            "playbooks/offsite.yml",
            "- hosts: offsite_hosts\n  roles: [docker_host, reverse_proxy]\n",
        ),
        ("roles/base/tasks/main.yml", "- ansible.builtin.debug: {}\n"),
        (
            "roles/docker_host/tasks/main.yml",
            "- ansible.builtin.debug: {}\n",
        ),
        (
            "roles/reverse_proxy/tasks/main.yml",
            "- ansible.builtin.debug: {}\n",
        ),
        ("roles/reverse_proxy/templates/Caddyfile.j2", ":443 {\n}\n"),
        (
            "roles/integration_test/tasks/main.yml",
            "- ansible.builtin.debug: {}\n",
        ),
        ("README.md", "# boma\n"),
    ])
}

fn keys_with(tree: &MemoryTree, profile: &Profile, tier: CertTier, golden: &str) -> Vec<LayerKey> {
    step_recipes(tree, profile, tier, golden)
        .unwrap()
        .iter()
        .map(|s| s.recipe.key())
        .collect()
}

fn keys(tree: &MemoryTree) -> Vec<LayerKey> {
    keys_with(tree, &askari(), CertTier::Internal, GOLDEN)
}

fn recipes(tree: &MemoryTree) -> Vec<Recipe> {
    step_recipes(tree, &askari(), CertTier::Internal, GOLDEN)
        .unwrap()
        .into_iter()
        .map(|s| s.recipe)
        .collect()
}

#[test]
fn steps_are_chained_by_key() {
    let recipes = recipes(&repo());
    assert_eq!(recipes[0].previous, None);
    assert_eq!(recipes[1].previous, Some(recipes[0].key()));
    assert_ne!(recipes[0].key(), recipes[1].key());
}

#[test]
fn one_byte_of_a_role_file_changes_its_step_and_every_later_one() {
    let before = keys(&repo());
    let mut tree = repo();
    tree.set(
        "roles/base/tasks/main.yml",
        "- ansible.builtin.debug: {}\n ",
    );
    let after = keys(&tree);
    assert_ne!(before[0], after[0]);
    assert_ne!(before[1], after[1], "step 1 starts from step 0's layer");

    // A file of a role only step 1 reads leaves step 0's layer usable.
    let mut tree = repo();
    tree.set("roles/reverse_proxy/templates/Caddyfile.j2", ":443 {\n }\n");
    let after = keys(&tree);
    assert_eq!(before[0], after[0]);
    assert_ne!(before[1], after[1]);
}

#[test]
fn a_new_file_in_a_role_changes_the_key() {
    let before = keys(&repo());
    let mut tree = repo();
    tree.set("roles/docker_host/tasks/new.yml", "[]\n");
    assert_ne!(before[1], keys(&tree)[1]);
}

#[test]
fn unrelated_files_do_not_change_any_key() {
    let before = keys(&repo());
    let mut tree = repo();
    tree.set("README.md", "# boma, edited\n");
    tree.set(
        "roles/integration_test/tasks/main.yml",
        "- ansible.builtin.fail: {}\n",
    );
    tree.set("inventories/production/offsite.yml", "offsite_hosts: {}\n");
    tree.set("docs/notes.md", "new\n");
    assert_eq!(before, keys(&tree));
}

#[test]
fn each_step_input_changes_the_key() {
    let tree = repo();
    let base = keys(&tree);

    let mut retagged = askari();
    retagged.applies[0].tags = vec!["base".to_owned(), "ssh".to_owned()];
    assert_ne!(
        base[0],
        keys_with(&tree, &retagged, CertTier::Internal, GOLDEN)[0]
    );

    assert_ne!(
        base[0],
        keys_with(&tree, &askari(), CertTier::Internal, "sha512:0000")[0]
    );
    assert_ne!(
        base[0],
        keys_with(&tree, &askari(), CertTier::LeStaging, GOLDEN)[0]
    );

    let mut regrouped = askari();
    regrouped.groups = vec!["offsite_hosts".to_owned(), "docker_hosts".to_owned()];
    assert_ne!(
        base[0],
        keys_with(&tree, &regrouped, CertTier::Internal, GOLDEN)[0]
    );

    // The same files in another order: the later one wins in Ansible, so the key differs.
    let mut reordered = askari();
    reordered.extra_vars_files.reverse();
    assert_ne!(
        base[0],
        keys_with(&tree, &reordered, CertTier::Internal, GOLDEN)[0]
    );

    let mut recipe = recipes(&tree)[1].clone();
    recipe.previous = Some(LayerKey::parse(&"1".repeat(64)).unwrap());
    assert_ne!(base[1], recipe.key());
}

#[test]
fn a_miss_is_explained_file_by_file() {
    let cached = recipes(&repo());
    let mut tree = repo();
    tree.set(
        "roles/reverse_proxy/templates/Caddyfile.j2",
        ":443 {\n  respond 200\n}\n",
    );
    tree.set("roles/reverse_proxy/tasks/new.yml", "[]\n");
    tree.remove("overrides/local.yml");
    let mut profile = askari();
    profile.extra_vars_files.pop();
    let wanted: Vec<Recipe> = step_recipes(&tree, &profile, CertTier::Internal, GOLDEN)
        .unwrap()
        .into_iter()
        .map(|s| s.recipe)
        .collect();
    let step0 = explain_miss(&wanted[0], &cached[0], 10);
    let step1 = explain_miss(&wanted[1], &cached[1], 10);
    insta::assert_snapshot!(
        "explain_miss_after_edits",
        format!(
            "step 0:\n{}\n\nstep 1:\n{}\n",
            step0.join("\n"),
            step1.join("\n")
        )
    );
}
