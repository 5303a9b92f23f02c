//! Which inputs change a layer's key: each one alone does, an unrelated file does not, any
//! combination of them does exactly what its parts do, and a miss is explained in words.

use crate::support;

use std::collections::BTreeSet;

use boma_inventory::{CertTier, Profile, parse_profile};
use boma_layers::{
    FileDigest, LayerKey, MemoryTree, Recipe, RunInputs, explain_miss, step_recipes,
};
use proptest::prelude::*;

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
    step_recipes(tree, profile, tier, golden, &support::run_inputs())
        .unwrap()
        .iter()
        .map(|s| s.recipe.key())
        .collect()
}

fn keys(tree: &MemoryTree) -> Vec<LayerKey> {
    keys_with(tree, &askari(), CertTier::Internal, GOLDEN)
}

fn recipes(tree: &MemoryTree) -> Vec<Recipe> {
    step_recipes(
        tree,
        &askari(),
        CertTier::Internal,
        GOLDEN,
        &support::run_inputs(),
    )
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
    let wanted: Vec<Recipe> = step_recipes(
        &tree,
        &profile,
        CertTier::Internal,
        GOLDEN,
        &support::run_inputs(),
    )
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

/// A repo whose roles reach outside their directories in each way Ansible allows, so that a
/// change to what they reach can be told from a change to anything else.
fn reaching_repo() -> MemoryTree {
    let mut tree = repo();
    tree.set(
        "roles/base/tasks/main.yml",
        concat!(
            "- ansible.builtin.copy:\n",
            "    src: \"{{ role_path }}/../../common/motd\"\n",
            "    dest: /etc/motd\n",
            "- ansible.builtin.copy:\n",
            "    src: \"{{ playbook_dir }}/../common/banner.txt\"\n",
            "    dest: /etc/issue\n",
            "- ansible.builtin.include_vars: ../../../common/base-vars.yml\n",
        ),
    );
    tree.set("common/motd", "hello\n");
    tree.set("common/banner.txt", "banner\n");
    tree.set("common/base-vars.yml", "x: 1\n");
    tree.set(
        "roles/reverse_proxy/tasks/main.yml",
        concat!(
            "- ansible.builtin.copy:\n",
            "    content: \"{{ lookup('ansible.builtin.template', '../../../templates-common/site.j2') }}\"\n",
            "    dest: /etc/caddy/site\n",
            "- ansible.builtin.debug:\n",
            "    msg: \"{{ lookup('file', 'keys/deploy.pub') }}\"\n",
        ),
    );
    tree.set("templates-common/site.j2", ":443\n");
    // Found beside the playbook by the lookup's search path.
    tree.set("playbooks/keys/deploy.pub", "ssh-ed25519 AAAA\n");
    tree
}

/// Everything a step's key is computed from.
#[derive(Clone)]
struct Fixture {
    tree: MemoryTree,
    profile: Profile,
    run: RunInputs,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            tree: reaching_repo(),
            profile: askari(),
            run: support::run_inputs(),
        }
    }

    fn keys(&self) -> Vec<LayerKey> {
        let steps = step_recipes(
            &self.tree,
            &self.profile,
            CertTier::Internal,
            GOLDEN,
            &self.run,
        )
        .unwrap();
        support::assert_not_in_doubt(&steps, "nothing here is in doubt");
        steps.iter().map(|s| s.recipe.key()).collect()
    }
}

/// Which keys a change must move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Moves {
    /// Every step's (a change to what the first step reads moves the chain after it).
    All,
    /// Only the second step's.
    Second,
    /// None.
    Nothing,
}

/// One change to a fixture: a file of the repository set to a text, or anything else.
#[derive(Clone, Copy)]
enum Edit {
    Set(&'static str, &'static str),
    Run(fn(&mut Fixture)),
}

impl Edit {
    fn apply(self, fixture: &mut Fixture) {
        match self {
            Edit::Set(path, text) => fixture.tree.set(path, text),
            Edit::Run(change) => change(fixture),
        }
    }
}

type Change = (&'static str, Moves, Edit);

/// One change per input, and changes to what no step reads.
const CHANGES: &[Change] = &[
    (
        "a parent group of the VM in the real inventory",
        Moves::All,
        Edit::Run(|f| {
            f.run
                .lineage
                .entry("offsite_hosts".to_owned())
                .or_default()
                .insert("europe".to_owned());
        }),
    ),
    (
        "a new variable in ansible's environment",
        Moves::All,
        Edit::Run(|f| {
            f.run.ansible_env.insert(
                "ANSIBLE_ROLES_PATH".to_owned(),
                FileDigest::of(b"/other/checkout/roles"),
            );
        }),
    ),
    (
        "a variable's value in ansible's environment",
        Moves::All,
        Edit::Run(|f| {
            f.run
                .ansible_env
                .insert("LANG".to_owned(), FileDigest::of(b"de_DE.UTF-8"));
        }),
    ),
    (
        "the installed ansible-core",
        Moves::All,
        Edit::Run(|f| {
            f.run
                .installed
                .insert("ansible_core".to_owned(), "2.18.13".to_owned());
        }),
    ),
    (
        "a collection installed on the controller",
        Moves::All,
        Edit::Run(|f| {
            f.run.controller_files.insert(
                "/home/ci/.ansible/collections/ansible_collections/x/y/MANIFEST.json".to_owned(),
                FileDigest::of(b"{}"),
            );
        }),
    ),
    (
        "the harness's seed",
        Moves::All,
        Edit::Run(|f| f.run.seed = FileDigest::of(b"#cloud-config\nssh_pwauth: true\n")),
    ),
    (
        "the harness's connection setup",
        Moves::All,
        Edit::Run(|f| f.run.connection = FileDigest::of(b"ssh -F harness -o IdentitiesOnly=yes")),
    ),
    (
        "a file a role reaches through role_path",
        Moves::All,
        Edit::Set("common/motd", "hello, edited\n"),
    ),
    (
        "a file a role reaches through playbook_dir",
        Moves::All,
        Edit::Set("common/banner.txt", "banner, edited\n"),
    ),
    (
        "a vars file a role includes from outside it",
        Moves::All,
        Edit::Set("common/base-vars.yml", "x: 2\n"),
    ),
    (
        "a template a lookup climbs out of its role to",
        Moves::Second,
        Edit::Set("templates-common/site.j2", ":8443\n"),
    ),
    (
        "a file a lookup finds beside the playbook",
        Moves::Second,
        Edit::Set("playbooks/keys/deploy.pub", "ssh-ed25519 BBBB\n"),
    ),
    (
        "a connection plugin beside the playbooks",
        Moves::All,
        Edit::Set("playbooks/connection_plugins/ssh.py", "#\n"),
    ),
    (
        "a become plugin beside the playbooks",
        Moves::All,
        Edit::Set("playbooks/become_plugins/sudo.py", "#\n"),
    ),
    (
        "a strategy plugin beside the playbooks",
        Moves::All,
        Edit::Set("playbooks/strategy_plugins/linear.py", "#\n"),
    ),
    (
        "a shell plugin beside the playbooks",
        Moves::All,
        Edit::Set("playbooks/shell_plugins/sh.py", "#\n"),
    ),
    (
        "a cache plugin beside the playbooks",
        Moves::All,
        Edit::Set("playbooks/cache_plugins/jsonfile.py", "#\n"),
    ),
    (
        "a plugin of a type nobody listed",
        Moves::All,
        Edit::Set("playbooks/netconf_plugins/x.py", "#\n"),
    ),
    (
        "a doc fragment beside the playbooks",
        Moves::All,
        Edit::Set("playbooks/doc_fragments/x.py", "#\n"),
    ),
    (
        "a module beside the playbooks",
        Moves::All,
        Edit::Set("playbooks/library/x.py", "#\n"),
    ),
    (
        "a module util beside the playbooks",
        Moves::All,
        Edit::Set("playbooks/module_utils/x.py", "#\n"),
    ),
    (
        "a filter plugin beside the playbooks",
        Moves::All,
        Edit::Set("playbooks/filter_plugins/x.py", "#\n"),
    ),
    (
        "a lookup plugin beside the playbooks",
        Moves::All,
        Edit::Set("playbooks/lookup_plugins/x.py", "#\n"),
    ),
    (
        "a module in a library ansible.cfg names",
        Moves::All,
        Edit::Run(|f| {
            f.tree.set(
                "ansible.cfg",
                "[defaults]\nroles_path = roles\nlibrary = ./lib\n",
            );
            f.tree.set("lib/x.py", "#\n");
        }),
    ),
    (
        "the README",
        Moves::Nothing,
        Edit::Set("README.md", "# boma, edited\n"),
    ),
    (
        "a role no step names",
        Moves::Nothing,
        Edit::Set(
            "roles/integration_test/tasks/main.yml",
            "- ansible.builtin.fail: {}\n",
        ),
    ),
    (
        "the real inventory's hosts (not its vars)",
        Moves::Nothing,
        Edit::Set("inventories/production/offsite.yml", "offsite_hosts: {}\n"),
    ),
    (
        "the harness's source",
        Moves::Nothing,
        Edit::Set("crates/boma-harness/src/x.rs", "fn main() {}\n"),
    ),
    (
        "a file beside the common ones no role names",
        Moves::Nothing,
        Edit::Set("common/unrelated.txt", "x\n"),
    ),
];

fn moved(before: &[LayerKey], after: &[LayerKey]) -> Moves {
    match (before[0] != after[0], before[1] != after[1]) {
        (true, true) => Moves::All,
        (false, true) => Moves::Second,
        (false, false) => Moves::Nothing,
        (true, false) => panic!("the first step moved but not the chain after it"),
    }
}

#[test]
fn each_input_in_turn_moves_the_keys_it_must_and_no_other() {
    let before = Fixture::new().keys();
    for (what, expected, edit) in CHANGES {
        let mut fixture = Fixture::new();
        edit.apply(&mut fixture);
        assert_eq!(
            moved(&before, &fixture.keys()),
            *expected,
            "changing {what}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any set of changes moves a step's key exactly when one of them would alone.
    #[test]
    fn any_set_of_changes_moves_exactly_what_its_parts_move(
        chosen in proptest::collection::btree_set(0..CHANGES.len(), 0..6)
    ) {
        let before = Fixture::new().keys();
        let mut fixture = Fixture::new();
        for &i in &chosen {
            CHANGES[i].2.apply(&mut fixture);
        }
        let expected: BTreeSet<Moves> = chosen.iter().map(|&i| CHANGES[i].1).collect();
        let want = if expected.contains(&Moves::All) {
            Moves::All
        } else if expected.contains(&Moves::Second) {
            Moves::Second
        } else {
            Moves::Nothing
        };
        let names: Vec<&str> = chosen.iter().map(|&i| CHANGES[i].0).collect();
        prop_assert_eq!(moved(&before, &fixture.keys()), want, "{:?}", names);
    }
}

#[test]
fn in_doubt_the_key_takes_the_whole_repository_and_says_so() {
    let mut tree = reaching_repo();
    tree.set(
        "roles/base/tasks/extra.yml",
        "- ansible.builtin.debug:\n    msg: \"{{ lookup('pipe', 'cat /srv/x') }}\"\n",
    );
    let keys = |tree: &MemoryTree| -> Vec<LayerKey> {
        step_recipes(
            tree,
            &askari(),
            CertTier::Internal,
            GOLDEN,
            &support::run_inputs(),
        )
        .unwrap()
        .iter()
        .map(|s| s.recipe.key())
        .collect()
    };
    let steps = step_recipes(
        &tree,
        &askari(),
        CertTier::Internal,
        GOLDEN,
        &support::run_inputs(),
    )
    .unwrap();
    assert_eq!(
        steps[0].reach.notes,
        [
            "roles/base/tasks/extra.yml: lookup `pipe` may read anything on the controller: took the whole repository but .git, target, .venv, tests/integration/.run"
        ]
    );
    let before = keys(&tree);
    // Now anything Ansible could see moves the key: the README, a role no step names.
    for (path, text) in [
        ("README.md", "edited\n"),
        ("roles/integration_test/tasks/main.yml", "[]\n"),
        ("docs/notes.md", "new\n"),
    ] {
        let mut changed = tree.clone();
        changed.set(path, text);
        assert_ne!(keys(&changed)[0], before[0], "{path}");
    }
    // What Ansible never reads does not.
    for path in [
        ".git/index",
        "target/debug/x",
        ".venv/bin/python",
        "tests/integration/.run/x/state.json",
    ] {
        let mut changed = tree.clone();
        changed.set(path, "x\n");
        assert_eq!(keys(&changed), before, "{path}");
    }
}
