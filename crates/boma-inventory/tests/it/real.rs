//! The real fleet from what `ansible-inventory --list` printed, on output captured from the
//! venv's Ansible (`fixtures/inventories/`, how: its README): names, the addresses routed away,
//! what is reached by name only, the group hierarchy, and the refusals.

use std::collections::{BTreeMap, BTreeSet};

use boma_inventory::{Fleet, InventoryError};

fn fleet(json: &str) -> Fleet {
    Fleet::from_ansible_list(json).unwrap()
}

fn addresses(fleet: &Fleet) -> Vec<String> {
    fleet.addresses().iter().map(ToString::to_string).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn named(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(host, name)| ((*host).to_owned(), (*name).to_owned()))
        .collect()
}

#[test]
fn the_repos_production_inventory() {
    let real = fleet(include_str!("../fixtures/inventories/production.json"));
    assert_eq!(real.names(), set(&["askari", "ubongo"]));
    // ubongo is the control node (`ansible_connection: local`): no address, not named only.
    assert_eq!(addresses(&real), ["77.42.120.136"]);
    assert_eq!(real.named_only(), named(&[]));
    assert_eq!(real.ancestors("offsite_hosts"), set(&["docker_hosts"]));
    assert_eq!(real.ancestors("control"), set(&[]));
}

#[test]
fn ini_with_ranges_children_and_group_vars() {
    let real = fleet(include_str!("../fixtures/inventories/ini.json"));
    assert_eq!(
        real.names(),
        set(&[
            "kiboko", "nas01", "nas02", "simba", "ubongo", "web01", "web02", "web03"
        ])
    );
    // kiboko is given two addresses; Ansible keeps the last one it reads (the v6 group's),
    // and that is the one routed. `web[01:03]` get theirs from `[web:vars]`, as
    // `ansible_ssh_host`.
    assert_eq!(
        addresses(&real),
        ["192.0.2.61", "192.0.2.70", "2001:db8::5"]
    );
    assert_eq!(
        real.named_only(),
        named(&[("nas02", "nas02"), ("simba", "simba.lan")])
    );
    assert_eq!(real.ancestors("web"), set(&["docker_hosts"]));
    assert_eq!(real.ancestors("home_hosts"), set(&["docker_hosts"]));
}

/// A hand parser sees w1 by its DNS name and d1 by its own; the `constructed` plugin gives both
/// an address and two groups, which only Ansible knows.
#[test]
fn a_constructed_plugin_moves_addresses_and_makes_groups() {
    let real = fleet(include_str!("../fixtures/inventories/constructed.json"));
    assert_eq!(
        addresses(&real),
        ["192.0.2.20", "198.51.100.7", "198.51.100.9"]
    );
    assert_eq!(real.named_only(), named(&[]));
    let lineage = real.lineage(&["racked".to_owned(), "rack_7".to_owned()]);
    assert_eq!(
        lineage,
        BTreeMap::from([
            ("rack_7".to_owned(), set(&[])),
            ("racked".to_owned(), set(&[]))
        ])
    );
}

#[test]
fn a_host_in_two_files_and_addresses_that_are_not_literal() {
    let real = fleet(include_str!("../fixtures/inventories/two-files.json"));
    assert_eq!(
        real.names(),
        set(&["192.0.2.31", "askari", "dns", "here", "secret", "templated"])
    );
    // askari: `ansible_host` from one file, `ansible_ssh_host` from the other; ssh uses the
    // latter, both are routed. A host named by an address is reached at it. `here` runs
    // locally: its address is never connected to.
    assert_eq!(addresses(&real), ["192.0.2.30", "192.0.2.31", "192.0.2.32"]);
    assert_eq!(
        real.named_only(),
        named(&[
            ("dns", "dns.example.net"),
            ("secret", "a vaulted value"),
            ("templated", "{{ lookup('env', 'ASKARI_ADDRESS') }}"),
        ])
    );
}

#[test]
fn nested_groups_under_several_parents() {
    let real = fleet(include_str!("../fixtures/inventories/sample.json"));
    assert_eq!(
        real.names(),
        set(&[
            "askari",
            "kiboko",
            "nas01",
            "nas02",
            "simba.example.net",
            "twiga"
        ])
    );
    assert_eq!(
        real.ancestors("nas_hosts"),
        set(&["backup_hosts", "docker_hosts", "home_hosts"])
    );
    assert_eq!(real.ancestors("offsite_hosts"), set(&["docker_hosts"]));
    // Top-level groups and groups the inventory does not know have none; `all` is never one.
    assert_eq!(real.ancestors("docker_hosts"), set(&[]));
    assert_eq!(real.ancestors("catalogue"), set(&[]));
    assert_eq!(
        real.lineage(&["offsite_hosts".to_owned(), "catalogue".to_owned()]),
        BTreeMap::from([
            ("catalogue".to_owned(), set(&[])),
            ("docker_hosts".to_owned(), set(&[])),
            ("offsite_hosts".to_owned(), set(&["docker_hosts"])),
        ])
    );
}

#[test]
fn a_real_host_named_like_a_test_vm_is_refused() {
    let err = Fleet::from_ansible_list(include_str!("../fixtures/inventories/named-like-vm.json"))
        .unwrap_err();
    assert!(
        matches!(&err, InventoryError::NamedLikeTestVm { host } if host == "Boma-IT-old-canary"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "host `Boma-IT-old-canary` is named like a test vm: the `boma-it-` prefix is reserved \
         for test vms (it is how prune and the name check tell them apart); rename it in \
         inventories/production/"
    );
    // A name that merely contains the prefix is fine, and so is one that a byte-wise prefix
    // check would cut inside a character.
    let ok = r#"{"_meta": {"hostvars": {}}, "all": {"children": ["ungrouped"]},
        "ungrouped": {"hosts": ["old-boma-it-x", "boma-i", "boma-itä"]}}"#;
    assert_eq!(fleet(ok).names().len(), 3);
}

/// Ansible prints an empty inventory, with a warning and exit 0, for a directory it could not
/// parse (ansible-core 2.18 skips `*.ini` in a directory): no hosts is a refusal, never a
/// vacuous "the VM is none of them".
#[test]
fn no_hosts_and_output_that_is_no_inventory_are_refused() {
    let empty = r#"{"_meta": {"hostvars": {}}, "all": {"children": ["ungrouped"]}}"#;
    assert!(matches!(
        Fleet::from_ansible_list(empty),
        Err(InventoryError::NoHosts)
    ));
    for bad in [
        "",
        "[WARNING]: no inventory",
        "[]",
        r#"{"all": {"children": ["ungrouped"]}}"#,
        r#"{"_meta": {"hostvars": {}}, "web": ["a"]}"#,
        r#"{"_meta": {"hostvars": {}}, "web": {"hosts": "a"}}"#,
    ] {
        let err = Fleet::from_ansible_list(bad).unwrap_err();
        assert!(
            matches!(err, InventoryError::Malformed { .. }),
            "{bad}: {err}"
        );
    }
}

/// Ansible refuses a cycle of `children` itself; should one reach the fleet anyway, the walk
/// ends and a group on the cycle is not its own ancestor.
#[test]
fn a_cycle_of_children_ends_the_walk() {
    let cycle = r#"{"_meta": {"hostvars": {}}, "all": {"children": ["a"]},
        "a": {"children": ["b"]}, "b": {"children": ["a", "g"]}, "g": {"hosts": ["h"]}}"#;
    let real = fleet(cycle);
    assert_eq!(real.ancestors("a"), set(&["b"]));
    assert_eq!(real.ancestors("g"), set(&["a", "b"]));
}
