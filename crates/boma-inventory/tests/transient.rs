//! The transient inventory: snapshots, its refusals, and the directory it is written to.

use std::collections::BTreeSet;

use boma_inventory::{
    HostsYml, NameRefusal, Refusal, TransientHost, VmName, WriteError, host_names,
    render_hosts_yml, write_inventory_dir,
};
use camino::{Utf8Path, Utf8PathBuf};
use saphyr::LoadableYamlNode as _;

const SAMPLE: &str = include_str!("fixtures/production.yml");
const VM: &str = "boma-it-20261125-0312-askari";

fn real_hosts() -> BTreeSet<String> {
    host_names("fixtures/production.yml", SAMPLE).unwrap()
}

fn host<'a>(vm: &'a VmName, groups: &'a [String]) -> TransientHost<'a> {
    TransientHost {
        vm,
        groups,
        ansible_host: "127.0.0.1",
        ansible_port: 40022,
        ansible_user: "ansible",
        ssh_private_key_file: Utf8Path::new("/root/.cache/boma/it/id_ed25519"),
    }
}

fn render(groups: &[&str]) -> HostsYml {
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    let vm = VmName::checked(VM, &real_hosts()).unwrap();
    render_hosts_yml(&host(&vm, &groups)).unwrap()
}

#[test]
fn sample_inventory_host_names() {
    assert_eq!(
        real_hosts().into_iter().collect::<Vec<_>>(),
        [
            "askari",
            "boma-it-canary",
            "kiboko",
            "nas01",
            "nas02",
            "simba.example.net",
            "twiga"
        ]
    );
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
fn rendered_inventory_holds_only_the_vm() {
    let hosts = render(&["offsite_hosts", "docker_hosts"]);
    let names = host_names("hosts.yml", hosts.as_str()).unwrap();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), [VM]);
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
    for group in ["all", "ungrouped", "", VM] {
        let groups = [group.to_owned()];
        assert_eq!(
            render_hosts_yml(&host(&vm, &groups)),
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

/// The repo's own production inventory: it must stay readable by this crate, and none of its
/// hosts may ever be a VM name.
#[test]
fn repo_production_inventory_hosts_are_refused() {
    let repo = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let real = boma_inventory::read_real_host_names(&repo).unwrap();
    assert!(real.contains("askari"), "{real:?}");
    for name in &real {
        assert_eq!(
            VmName::checked(name, &real),
            Err(NameRefusal::RealHost { name: name.clone() })
        );
    }
}

/// Host vars beat every group var, so a `group_vars` file linked into the transient inventory
/// cannot move the connection: but only for the names `hosts.yml` sets, aliases included
/// (Ansible's ssh plugin takes `ansible_ssh_host` over `ansible_host` when both are set).
#[test]
fn the_vm_pins_every_connection_name_in_its_host_vars() {
    let hosts = render(&["offsite_hosts"]);
    let docs = saphyr::Yaml::load_from_str(hosts.as_str()).unwrap();
    let vars = docs[0]["all"]["hosts"][VM].as_mapping().unwrap();
    let var = |name: &str| {
        vars.get(&saphyr::Yaml::value_from_str(name))
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{name} is not set in:\n{}", hosts.as_str()))
            .to_owned()
    };
    assert_eq!(var("ansible_connection"), "ssh");
    assert_eq!(var("ansible_ssh_host"), "127.0.0.1");
    assert_eq!(var("ansible_ssh_port"), "40022");
    assert_eq!(var("ansible_ssh_user"), "ansible");
    assert_eq!(var("ansible_ssh_extra_args"), "");
    assert!(
        var("ansible_ssh_common_args")
            .ends_with("-o ServerAliveInterval=15 -o ServerAliveCountMax=4"),
        "a dead connection must not hang a run"
    );
}
