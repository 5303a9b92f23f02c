//! The invariant the harness rests on, checked over arbitrary inputs: the transient inventory
//! holds exactly one host, the test VM, which is none of the real hosts, and every playbook run is
//! limited to it. And the VM is in the groups the real host is in: its profile's groups and their
//! ancestors in the real inventory, each under the parents it has there.

use std::collections::{BTreeMap, BTreeSet};

use boma_inventory::{
    Apply, CertTier, Fleet, PlaybookRun, TransientHost, VmName, apply_argv, playbook_argv,
    render_hosts_yml,
};
use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use saphyr::{LoadableYamlNode, Yaml};

/// Host names as real inventories have them, plus some named like test VMs.
fn real_host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("askari".to_owned()),
        Just("kiboko".to_owned()),
        "[a-z][a-z0-9.-]{0,15}",
        "boma-it-[a-z0-9-]{1,10}",
        "(?i)boma-it-[a-z0-9]{1,3}-askari",
    ]
}

fn run_id() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z0-9][a-z0-9-]{0,24}",
        1 => "[A-Za-z0-9,:*!&\\[\\] ._-]{0,12}",
        1 => any::<String>(),
    ]
}

/// What the renderer must accept; everything else it must refuse.
fn acceptable(vm: &str, real: &BTreeSet<String>, groups: &BTreeSet<String>) -> bool {
    let suffix = &vm["boma-it-".len()..];
    !real.iter().any(|h| h.eq_ignore_ascii_case(vm))
        && !suffix.is_empty()
        && vm.len() <= 63
        && !vm.ends_with('-')
        && vm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !groups
            .iter()
            .any(|g| g == "all" || g == "ungrouped" || g == vm)
}

/// What the rendered YAML says, read with saphyr directly rather than through the crate's own
/// inventory reader.
#[derive(Default)]
struct Rendered {
    /// Every host key, wherever it appears.
    hosts: BTreeSet<String>,
    /// How many hosts are defined with their vars (under `all.hosts`).
    defined: usize,
    /// The groups that list a host under `hosts`.
    listing: BTreeSet<String>,
    /// (parent, child) for every `children` entry; `all` for the top ones.
    edges: BTreeSet<(String, String)>,
}

fn read_rendered(text: &str) -> Rendered {
    let docs = Yaml::load_from_str(text).unwrap();
    assert_eq!(docs.len(), 1);
    let top = docs[0].as_mapping().unwrap();
    assert_eq!(top.len(), 1, "only `all` at the top");
    let all = docs[0].as_mapping_get("all").unwrap();
    let mut out = Rendered::default();
    let defined = all.as_mapping_get("hosts").unwrap().as_mapping().unwrap();
    for key in defined.keys() {
        out.hosts.insert(key.as_str().unwrap().to_owned());
    }
    out.defined = defined.len();
    walk_children("all", all, &mut out);
    out
}

fn walk_children(parent: &str, group: &Yaml<'_>, out: &mut Rendered) {
    let Some(children) = group.as_mapping_get("children") else {
        return;
    };
    for (name, child) in children.as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        out.edges.insert((parent.to_owned(), name.to_owned()));
        if let Some(hosts) = child.as_mapping_get("hosts") {
            out.listing.insert(name.to_owned());
            for key in hosts.as_mapping().unwrap().keys() {
                out.hosts.insert(key.as_str().unwrap().to_owned());
            }
        }
        walk_children(name, child, out);
    }
}

/// Groups of a small pool, so that generated hierarchies overlap the profile's groups.
fn pool_group() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["g0", "g1", "g2", "g3", "g4", "g5"]).prop_map(str::to_owned)
}

/// A real inventory with these (child, parent) edges and one host, as `ansible-inventory
/// --list` prints it: each group once, with its `children`.
fn real_inventory(edges: &BTreeSet<(String, String)>) -> String {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (child, parent) in edges {
        groups.entry(parent).or_default().push(child);
    }
    let mut list = serde_json::json!({"_meta": {"hostvars": {}}, "ungrouped": {"hosts": ["h"]}});
    for (parent, children) in groups {
        list[parent] = serde_json::json!({ "children": children });
    }
    list.to_string()
}

/// The groups above `group` through `edges` (`all` left out), by a fixpoint rather than the
/// crate's walk; it holds `group` when `group` is on a cycle.
fn above(edges: &BTreeSet<(String, String)>, group: &str) -> BTreeSet<String> {
    let mut found: BTreeSet<String> = BTreeSet::new();
    loop {
        let before = found.len();
        for (child, parent) in edges {
            if parent != "all" && (child == group || found.contains(child)) {
                found.insert(parent.clone());
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn transient_inventory_holds_only_the_vm(
        real in prop::collection::btree_set(real_host(), 0..24),
        run in run_id(),
        profile_host in prop_oneof![Just("askari"), Just("kiboko"), Just("twiga")],
        suffix_host in any::<bool>(),
        collide in any::<bool>(),
        groups in prop::collection::btree_set("[a-z_][a-z0-9_]{0,10}", 0..4),
        pool_groups in prop::collection::btree_set(pool_group(), 0..3),
        edges in prop::collection::btree_set(
            (pool_group(), prop_oneof![4 => pool_group(), 1 => Just("all".to_owned())]),
            0..8,
        ),
    ) {
        let vm = if suffix_host { format!("boma-it-{run}-{profile_host}") } else { format!("boma-it-{run}") };
        let mut real = real;
        // The profile is named like a real host, and sometimes the VM collides with one too.
        real.insert(profile_host.to_owned());
        if collide {
            real.insert(vm.to_uppercase());
        }
        let mut groups = groups;
        groups.extend(pool_groups);
        let groups_vec: Vec<String> = groups.iter().cloned().collect();
        let real_fleet = Fleet::from_ansible_list(&real_inventory(&edges)).unwrap();
        let lineage = real_fleet.lineage(&groups_vec);
        let checked = VmName::checked(&vm, &real);
        prop_assert_eq!(checked.is_ok(), acceptable(&vm, &real, &BTreeSet::new()), "{:?}", checked);
        let Ok(checked) = checked else { return Ok(()) };
        let host = TransientHost {
            vm: &checked,
            groups: &groups_vec,
            group_parents: &lineage,
        };

        // The profile's groups and, for each, the groups above it in the real inventory.
        let mut placed = groups.clone();
        for group in &groups {
            placed.extend(above(&edges, group));
        }
        let cycle = placed.iter().any(|g| above(&edges, g).contains(g));

        let rendered = render_hosts_yml(&host);
        prop_assert_eq!(
            rendered.is_ok(),
            acceptable(&vm, &real, &groups) && !cycle,
            "{:?}",
            rendered
        );
        let Ok(hosts) = rendered else { return Ok(()) };

        let out = read_rendered(hosts.as_str());
        prop_assert_eq!(&out.hosts, &BTreeSet::from([vm.clone()]));
        prop_assert_eq!(out.defined, 1);
        prop_assert!(!real.iter().any(|h| h.eq_ignore_ascii_case(&vm)));

        // Only the profile's groups list the VM; every ancestor appears, under exactly the
        // parents the real inventory gives it (or `all`, when it gives none), so the VM is in
        // the same groups at the same depths.
        prop_assert_eq!(&out.listing, &groups);
        let mut expected = BTreeSet::new();
        for group in &placed {
            let parents: BTreeSet<&String> = edges
                .iter()
                .filter(|(child, parent)| child == group && parent != "all")
                .map(|(_, parent)| parent)
                .collect();
            if parents.is_empty() {
                expected.insert(("all".to_owned(), group.clone()));
            }
            for parent in parents {
                expected.insert((parent.clone(), group.clone()));
            }
        }
        prop_assert_eq!(&out.edges, &expected, "{}", hosts.as_str());

        let files = [Utf8PathBuf::from("overrides/x.yml")];
        let run = PlaybookRun {
            repo_root: Utf8Path::new("/repo"),
            inventory_dir: Utf8Path::new("/repo/inv"),
            vm: hosts.vm(),
            extra_vars_files: &files,
            cert_tier: CertTier::Internal,
            run_extra_vars: None,
            vault_password_file: None,
            connection_vars: Utf8Path::new("/repo/run/connection.json"),
        };
        let verify = run;
        let apply = Apply { playbook: "site.yml".into(), tags: vec!["base".into()] };
        for argv in [apply_argv(&run, &apply), playbook_argv(&verify, Utf8Path::new("tests/verify/askari.yml"))] {
            let limits: Vec<_> = argv.iter().enumerate().filter(|(_, a)| *a == "--limit").collect();
            prop_assert_eq!(limits.len(), 1);
            prop_assert_eq!(&argv[limits[0].0 + 1], &vm);
        }
    }
}
