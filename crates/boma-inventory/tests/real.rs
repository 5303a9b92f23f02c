//! The real inventory directory as Ansible reads it: every file Ansible would take hosts from
//! is read (YAML and INI) or refused, the files Ansible ignores stay ignored, and a real host
//! named like a test VM is refused.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use boma_inventory::{Fleet, InventoryError, host_names, read_real_fleet, read_real_host_names};
use camino::{Utf8Path, Utf8PathBuf};

struct Repo {
    _tmp: tempfile::TempDir,
    root: Utf8PathBuf,
    prod: Utf8PathBuf,
}

/// A repo whose real inventory is the YAML file askari lives in, plus `group_vars`.
fn repo() -> Repo {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::try_from(tmp.path().to_owned()).unwrap();
    let prod = root.join("inventories/production");
    fs::create_dir_all(prod.join("group_vars/all")).unwrap();
    fs::write(prod.join("group_vars/all/vars.yml"), "x: 1\n").unwrap();
    fs::write(
        prod.join("offsite.yml"),
        "offsite_hosts:\n  hosts:\n    askari:\n      ansible_host: 77.42.120.136\n",
    )
    .unwrap();
    Repo {
        _tmp: tmp,
        root,
        prod,
    }
}

fn write(path: &Utf8Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn read(repo: &Repo) -> Fleet {
    read_real_fleet(&repo.root).unwrap()
}

fn addresses(fleet: &Fleet) -> Vec<String> {
    fleet.addresses().iter().map(|a| a.to_string()).collect()
}

fn refusal(repo: &Repo) -> String {
    read_real_fleet(&repo.root).unwrap_err().to_string()
}

#[test]
fn an_ini_inventory_file_is_read_not_skipped() {
    let repo = repo();
    write(
        &repo.prod.join("hosts.ini"),
        "[home_hosts]\nkiboko ansible_host=192.0.2.50\n",
    );
    let fleet = read(&repo);
    assert_eq!(
        fleet.names(),
        BTreeSet::from(["askari".to_owned(), "kiboko".to_owned()])
    );
    assert_eq!(addresses(&fleet), ["77.42.120.136", "192.0.2.50"]);
}

#[test]
fn a_real_host_named_like_a_test_vm_is_refused() {
    let repo = repo();
    write(
        &repo.prod.join("lab.yml"),
        "lab:\n  hosts:\n    Boma-IT-old-canary:\n      ansible_host: 192.0.2.60\n",
    );
    let err = refusal(&repo);
    assert!(err.contains("Boma-IT-old-canary"), "{err}");
    assert!(err.contains("inventories/production/lab.yml:3"), "{err}");
}

#[test]
fn an_extensionless_ini_file_and_a_subdirectory_are_read() {
    let repo = repo();
    // The classic `hosts` file, and a nested directory: Ansible reads both.
    write(&repo.prod.join("hosts"), "simba ansible_host=192.0.2.51\n");
    write(
        &repo.prod.join("lab/more.yml"),
        "lab:\n  hosts:\n    twiga: {ansible_host: 192.0.2.52}\n",
    );
    let fleet = read(&repo);
    assert_eq!(
        addresses(&fleet),
        ["77.42.120.136", "192.0.2.51", "192.0.2.52"]
    );
}

#[test]
fn only_the_production_dir_is_read_and_group_or_host_vars_never() {
    let repo = repo();
    let sample = include_str!("fixtures/production.yml");
    write(&repo.prod.join("hosts.yml"), sample);
    write(
        &repo.prod.join("extra.yaml"),
        "edge:\n  hosts:\n    mlinzi:\n",
    );
    write(
        &repo.prod.join("notes.txt"),
        "all:\n  hosts:\n    not_a_host:\n",
    );
    write(
        &repo.prod.join("host_vars/askari.yml"),
        "all:\n  hosts:\n    nope:\n",
    );
    write(
        &repo.prod.join("group_vars/edge.yml"),
        "all:\n  hosts:\n    nope2:\n",
    );
    write(
        &repo.prod.join("sub/group_vars/x.yml"),
        "all:\n  hosts:\n    nope3:\n",
    );
    write(
        &repo.root.join("inventories/ci/hosts.yml"),
        "all:\n  hosts:\n    nope4:\n",
    );

    // The sample holds `boma-it-canary`: a real inventory may not.
    let err = read_real_fleet(&repo.root).unwrap_err();
    assert!(
        matches!(&err, InventoryError::NamedLikeTestVm { host, at }
            if host == "boma-it-canary" && at == "inventories/production/hosts.yml:20"),
        "{err}"
    );
    write(
        &repo.prod.join("hosts.yml"),
        &sample.replace("        boma-it-canary:\n", ""),
    );
    let names = read_real_host_names(&repo.root).unwrap();
    let mut expected = host_names("sample", sample).unwrap();
    expected.remove("boma-it-canary");
    expected.insert("mlinzi".to_owned());
    assert_eq!(names, expected);
}

#[test]
fn an_inventory_dir_without_inventory_files_is_refused() {
    let repo = repo();
    fs::remove_file(repo.prod.join("offsite.yml")).unwrap();
    write(&repo.prod.join("README.md"), "# the inventory\n");
    assert!(refusal(&repo).starts_with("no inventory files"));
}

#[test]
fn files_ansible_ignores_stay_ignored() {
    let repo = repo();
    let broken = "this is [not an inventory\n";
    for name in [
        "hosts.ini~",
        "hosts~",
        "hosts.orig",
        "old.retry",
        "ec2.cfg",
        "notes.txt",
        "README.md",
        ".hosts.swp",
        "hosts.bak",
        ".hidden/hosts",
    ] {
        write(&repo.prod.join(name), broken);
    }
    assert_eq!(read(&repo).names(), BTreeSet::from(["askari".to_owned()]));
}

#[test]
fn a_file_the_harness_cannot_read_is_refused_with_its_name() {
    let repo = repo();
    write(&repo.prod.join("README"), "The production inventory.\n");
    assert_eq!(
        refusal(&repo),
        "inventories/production/README:1: expected key=value host variable assignment, got `production`"
    );

    let repo = self::repo();
    let script = repo.prod.join("cloud");
    write(&script, "[all]\nsimba\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let err = refusal(&repo);
    assert!(
        err.starts_with("inventories/production/cloud is executable"),
        "{err}"
    );

    let repo = self::repo();
    write(&repo.prod.join("hosts.toml"), "[all.hosts.simba]\n");
    assert!(refusal(&repo).contains("hosts.toml is a TOML inventory"));

    let repo = self::repo();
    write(&repo.prod.join("hosts.ini"), "[web]\nweb[1:]\n");
    assert_eq!(
        refusal(&repo),
        "inventories/production/hosts.ini:2: host `web[1:]`: `[1:]` is not a host range (begin:end or begin:end:step)"
    );
}

#[test]
fn a_realistic_ini_inventory_beside_the_yaml_one() {
    let repo = repo();
    write(
        &repo.prod.join("home.ini"),
        include_str!("fixtures/ini/home.ini"),
    );
    let fleet = read(&repo);
    assert_eq!(
        fleet.names().into_iter().collect::<Vec<_>>(),
        ["askari", "kiboko", "nas01", "nas02", "simba", "ubongo"]
    );
    assert_eq!(
        addresses(&fleet),
        [
            "77.42.120.136",
            "192.0.2.50",
            "192.0.2.61",
            "192.0.2.62",
            "2001:db8::5"
        ]
    );
    // Ansible keeps the last `ansible_host` kiboko is given (2001:db8::5); both get a route here,
    // which costs nothing and holds whichever Ansible uses. simba is reached by name only.
    assert_eq!(
        fleet.named_only(),
        [("simba".to_owned(), "simba.lan".to_owned())]
    );
}
