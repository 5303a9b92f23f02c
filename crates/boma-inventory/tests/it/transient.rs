//! The transient inventory: snapshots, its refusals, the real group hierarchy it mirrors, and the
//! directory it is written to.

use std::collections::{BTreeMap, BTreeSet};

use boma_inventory::{
    Fleet, HostsYml, NameRefusal, Refusal, TransientHost, VmName, WriteError, render_hosts_yml,
    write_inventory_dir,
};
use camino::{Utf8Path, Utf8PathBuf};
use saphyr::{LoadableYamlNode as _, Yaml};

/// A sample real inventory as `ansible-inventory --list` prints it (nested groups, a group
/// under two parents, a host range, a `host:port`).
const SAMPLE: &str = include_str!("../fixtures/inventories/sample.json");
/// This repo's own production inventory, as `ansible-inventory --list` printed it.
const PRODUCTION: &str = include_str!("../fixtures/inventories/production.json");
const VM: &str = "boma-it-20261125-0312-askari";

fn sample() -> Fleet {
    Fleet::from_ansible_list(SAMPLE).unwrap()
}

/// The sample's hosts, and one named like a test VM: reading a real inventory refuses such a
/// host (`real.rs`), so `VmName::checked`'s own "is a real host" refusal is exercised
/// with it here.
fn real_hosts() -> BTreeSet<String> {
    let mut hosts = sample().names();
    hosts.insert("boma-it-canary".to_owned());
    hosts
}

fn host<'a>(
    vm: &'a VmName,
    groups: &'a [String],
    group_parents: &'a BTreeMap<String, BTreeSet<String>>,
) -> TransientHost<'a> {
    TransientHost {
        vm,
        groups,
        group_parents,
    }
}

fn strings(groups: &[&str]) -> Vec<String> {
    groups.iter().map(|g| (*g).to_owned()).collect()
}

/// `hosts.yml` for a VM in `groups`, placed in `real`'s hierarchy.
fn render_in(real: &Fleet, groups: &[&str]) -> HostsYml {
    let groups = strings(groups);
    let vm = VmName::checked(VM, &real_hosts()).unwrap();
    render_hosts_yml(&host(&vm, &groups, &real.lineage(&groups))).unwrap()
}

/// `hosts.yml` for a VM in `groups`, placed in the sample inventory's hierarchy.
fn render(groups: &[&str]) -> HostsYml {
    render_in(&sample(), groups)
}

/// The node at `path` (mapping keys) in the rendered inventory, if there is one.
fn node_at(hosts: &HostsYml, path: &[&str]) -> Option<Yaml<'static>> {
    let docs = Yaml::load_from_str(hosts.as_str()).unwrap();
    let mut node = docs.into_iter().next()?;
    for key in path {
        node = node.as_mapping_get(key)?.clone();
    }
    Some(node)
}

/// Whether the group at `path` lists the VM under its `hosts`.
fn lists_vm(hosts: &HostsYml, path: &[&str]) -> bool {
    let hosts_path: Vec<&str> = path.iter().copied().chain(["hosts", VM]).collect();
    node_at(hosts, &hosts_path).is_some()
}

#[test]
fn hosts_yml_one_group() {
    let hosts = render(&["offsite_hosts"]);
    assert_eq!(hosts.vm().as_str(), VM);
    insta::assert_snapshot!("hosts_yml_one_group", hosts.as_str());
}

#[test]
fn hosts_yml_two_groups() {
    insta::assert_snapshot!(
        "hosts_yml_two_groups",
        render(&["offsite_hosts", "docker_hosts"]).as_str()
    );
}

#[test]
fn hosts_yml_nested_groups() {
    // nas_hosts is under home_hosts (itself under docker_hosts) and under backup_hosts.
    insta::assert_snapshot!("hosts_yml_nested_groups", render(&["nas_hosts"]).as_str());
}

#[test]
fn a_group_the_real_inventory_does_not_know_sits_under_all() {
    let hosts = render(&["catalogue"]);
    assert!(lists_vm(&hosts, &["all", "children", "catalogue"]));
    let top = node_at(&hosts, &["all", "children"]).unwrap();
    assert_eq!(top.as_mapping().unwrap().len(), 1, "{}", hosts.as_str());
}

/// This repo's own inventory: askari's profile puts it in `offsite_hosts`, and
/// `docker_hosts.yml` makes that a child of `docker_hosts`, which `site.yml` plays on.
#[test]
fn askari_is_in_docker_hosts_through_offsite_hosts() {
    let real = Fleet::from_ansible_list(PRODUCTION).unwrap();
    assert_eq!(
        real.ancestors("offsite_hosts"),
        BTreeSet::from(["docker_hosts".to_owned()])
    );
    let hosts = render_in(&real, &["offsite_hosts"]);
    let offsite = [
        "all",
        "children",
        "docker_hosts",
        "children",
        "offsite_hosts",
    ];
    assert!(lists_vm(&hosts, &offsite), "{}", hosts.as_str());
    // Nested, not flattened: docker_hosts lists no host of its own, and offsite_hosts is not
    // also a direct child of `all` (which would be a parent production does not give it).
    assert!(!lists_vm(&hosts, &["all", "children", "docker_hosts"]));
    assert!(node_at(&hosts, &["all", "children", "offsite_hosts"]).is_none());
}

/// The INI fixture's `[docker_hosts:children]` makes `web` a child of `docker_hosts`: the VM
/// placed in `web` is nested the same way, whatever format the real inventory is written in.
#[test]
fn a_group_from_an_ini_children_section_is_nested_the_same_way() {
    let ini = Fleet::from_ansible_list(include_str!("../fixtures/inventories/ini.json")).unwrap();
    let hosts = render_in(&ini, &["web"]);
    assert!(
        lists_vm(
            &hosts,
            &["all", "children", "docker_hosts", "children", "web"]
        ),
        "{}",
        hosts.as_str()
    );
    assert!(node_at(&hosts, &["all", "children", "web"]).is_none());
}

#[test]
fn a_cycle_of_children_is_refused_and_ends() {
    // Ansible refuses such an inventory itself; the renderer does not rely on it.
    let real = Fleet::from_ansible_list(
        r#"{"_meta": {"hostvars": {}}, "all": {"children": ["a"]},
            "a": {"children": ["b"]}, "b": {"children": ["a", "g"]}, "g": {"hosts": ["h"]}}"#,
    )
    .unwrap();
    // The walk ends; a group on the cycle is not its own ancestor.
    assert_eq!(real.ancestors("a"), BTreeSet::from(["b".to_owned()]));
    assert_eq!(
        real.ancestors("g"),
        BTreeSet::from(["a".to_owned(), "b".to_owned()])
    );
    let vm = VmName::checked(VM, &real_hosts()).unwrap();
    let groups = strings(&["g"]);
    let lineage = real.lineage(&groups);
    let refusal = render_hosts_yml(&host(&vm, &groups, &lineage)).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::GroupCycle {
            group: "a".to_owned()
        }
    );
    assert_eq!(
        refusal.to_string(),
        "refusing group `a`: the real inventory makes it a child of itself (a cycle of \
         `children`), which ansible refuses too: break the cycle in the real inventory"
    );
}

#[test]
fn rendered_inventory_holds_only_the_vm() {
    for groups in [&["offsite_hosts", "docker_hosts"][..], &["nas_hosts"]] {
        let hosts = render(groups);
        let defined = node_at(&hosts, &["all", "hosts"]).unwrap();
        let names: Vec<&str> = defined
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(|k| k.as_str())
            .collect();
        assert_eq!(names, [VM], "{}", hosts.as_str());
    }
}

#[test]
fn every_real_host_is_refused_as_the_vm() {
    let real = real_hosts();
    for name in &real {
        let refusal = VmName::checked(name, &real).unwrap_err();
        assert_eq!(
            refusal,
            NameRefusal::RealHost { name: name.clone() },
            "{name}"
        );
        // Case does not help a real host slip through.
        let upper = name.to_uppercase();
        assert!(VmName::checked(&upper, &real).is_err(), "{upper}");
    }
    insta::assert_snapshot!(
        "refused_real_host",
        VmName::checked("boma-it-canary", &real)
            .unwrap_err()
            .to_string()
    );
}

#[test]
fn names_that_are_not_test_vms_are_refused() {
    let real = real_hosts();
    let not_test = |name: &str| NameRefusal::NotTestVm {
        name: name.to_owned(),
    };
    let not_host = |name: &str| NameRefusal::NotHostName {
        name: name.to_owned(),
    };
    assert_eq!(VmName::checked("giraffe", &real), Err(not_test("giraffe")));
    assert_eq!(
        VmName::checked("it-boma-1", &real),
        Err(not_test("it-boma-1"))
    );
    for name in [
        "boma-it-",
        "boma-it-a,askari",
        "boma-it-a:b",
        "boma-it-*",
        "boma-it-x!",
        "boma-it-Upper",
        "boma-it-a b",
        "boma-it-trailing-",
        "boma-it-ünï",
        &format!("boma-it-{}", "x".repeat(56)),
    ] {
        assert_eq!(VmName::checked(name, &real), Err(not_host(name)), "{name}");
    }
    assert!(VmName::checked(&format!("boma-it-{}", "x".repeat(55)), &real).is_ok());
}

#[test]
fn implicit_groups_are_refused() {
    let vm = VmName::checked(VM, &real_hosts()).unwrap();
    let no_parents = BTreeMap::new();
    for group in ["all", "ungrouped", "", VM] {
        let groups = [group.to_owned()];
        assert_eq!(
            render_hosts_yml(&host(&vm, &groups, &no_parents)),
            Err(Refusal::BadGroup {
                group: group.to_owned()
            })
        );
    }
}

struct Repo {
    _tmp: tempfile::TempDir,
    root: Utf8PathBuf,
    group_vars: Utf8PathBuf,
}

fn repo() -> Repo {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::try_from(tmp.path().to_owned()).unwrap();
    let group_vars = root.join("inventories/production/group_vars");
    std::fs::create_dir_all(&group_vars).unwrap();
    std::fs::write(group_vars.join("all.yml"), "x: 1\n").unwrap();
    Repo {
        _tmp: tmp,
        root,
        group_vars,
    }
}

#[test]
fn inventory_dir_links_group_vars_and_can_be_rewritten() {
    let repo = repo();
    let dir = repo.root.join("tests/integration/.run/r1/inventory");
    let hosts = render(&["offsite_hosts"]);
    write_inventory_dir(&dir, &repo.root, &hosts).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("hosts.yml")).unwrap(),
        hosts.as_str()
    );
    assert_eq!(
        dir.join("group_vars").read_link_utf8().unwrap(),
        repo.group_vars
    );
    assert!(dir.join("group_vars/all.yml").is_file());
    assert!(!dir.join("hosts.yml.part").exists());
    // A second write (say, a retried step) finds its own link and carries on.
    write_inventory_dir(&dir, &repo.root, &render(&["docker_hosts"])).unwrap();
    assert!(
        std::fs::read_to_string(dir.join("hosts.yml"))
            .unwrap()
            .contains("docker_hosts")
    );
}

#[test]
fn foreign_group_vars_is_refused_and_left_alone() {
    let repo = repo();
    let hosts = render(&["offsite_hosts"]);

    let copied = repo.root.join("copied");
    std::fs::create_dir_all(copied.join("group_vars")).unwrap();
    let err = write_inventory_dir(&copied, &repo.root, &hosts).unwrap_err();
    assert!(matches!(err, WriteError::ForeignGroupVars { .. }), "{err}");
    assert!(copied.join("group_vars").is_dir());
    assert!(!copied.join("hosts.yml").exists());

    let elsewhere = repo.root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink("/etc", elsewhere.join("group_vars")).unwrap();
    let err = write_inventory_dir(&elsewhere, &repo.root, &hosts).unwrap_err();
    assert!(matches!(err, WriteError::ForeignGroupVars { .. }), "{err}");
}

#[test]
fn missing_real_group_vars_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(tmp.path()).unwrap();
    let err =
        write_inventory_dir(&root.join("inv"), root, &render(&["offsite_hosts"])).unwrap_err();
    assert!(matches!(err, WriteError::NoGroupVars { .. }), "{err}");
}

/// The repo's own production inventory: none of its hosts may ever be a VM name.
#[test]
fn repo_production_inventory_hosts_are_refused() {
    let real = Fleet::from_ansible_list(PRODUCTION).unwrap().names();
    assert!(real.contains("askari"), "{real:?}");
    for name in &real {
        assert_eq!(
            VmName::checked(name, &real),
            Err(NameRefusal::RealHost { name: name.clone() })
        );
    }
}

/// The VM has no variables of its own in `hosts.yml`: its connection is the connection file's,
/// the last `-e` of every run, and nothing in the inventory competes with it.
#[test]
fn the_vm_has_no_host_vars() {
    let hosts = render(&["offsite_hosts"]);
    let docs = saphyr::Yaml::load_from_str(hosts.as_str()).unwrap();
    let vars = docs[0]["all"]["hosts"][VM].as_mapping().unwrap();
    assert!(vars.is_empty(), "{}", hosts.as_str());
}
