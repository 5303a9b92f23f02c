//! Preflight's inputs: the `-e` files read as values, their conflicts, and the real addresses
//! still held by the members' variables (on real `ansible-inventory --list` output).

use std::collections::BTreeSet;
use std::net::IpAddr;

use boma_fleet::{
    VarSource, addresses_in, conflicts, read_vars_file, scan_inventory_list, scan_vars,
};
use camino::Utf8PathBuf;
use serde_json::json;

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn addresses_are_found_wherever_they_are_written() {
    let cases: &[(&str, &[&str])] = &[
        ("77.42.120.136", &["77.42.120.136"]),
        ("77.42.120.136:51820", &["77.42.120.136"]),
        ("https://77.42.120.136/api", &["77.42.120.136"]),
        ("77.42.120.0/24", &["77.42.120.0"]),
        ("allow 77.42.120.136.", &["77.42.120.136"]),
        ("[2001:db8::7]:51820", &["2001:db8::7"]),
        ("2001:db8::7/128", &["2001:db8::7"]),
        (
            "::ffff:77.42.120.136",
            &["77.42.120.136", "::ffff:77.42.120.136"],
        ),
        ("fe80::1%eth0", &["fe80::1"]),
        ("peers: 10.0.0.1, 10.0.0.2", &["10.0.0.1", "10.0.0.2"]),
        ("dead77.42.120.136", &["77.42.120.136"]),
        // Not addresses: versions, times, a MAC, too many parts, out of range.
        (
            "1.2.3 12:30:00 52:54:00:ab:cd:ef 1.2.3.4.5 256.1.1.1 a:b",
            &[],
        ),
    ];
    for (text, expected) in cases {
        let mut found = addresses_in(text);
        found.sort();
        let mut expected = ips(expected);
        expected.sort();
        assert_eq!(found, expected, "{text}");
    }
}

fn real() -> BTreeSet<IpAddr> {
    ips(&[
        "77.42.120.136",
        "77.42.120.137",
        "77.42.120.138",
        "2001:db8::7",
    ])
    .into_iter()
    .collect()
}

/// The fixture is `ansible-inventory --list` over an inventory whose `group_vars` still list
/// real peers (see `fixtures/README.md`).
#[test]
fn every_real_address_in_the_members_variables_is_named_with_its_path() {
    let list = include_str!("../fixtures/inventory-list.json");
    let members = vec!["web-a".to_owned(), "web-b".to_owned()];
    let found = scan_inventory_list(list, &members, &real()).unwrap();
    let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("real_addresses_in_members", lines.join("\n"));
    // The fleet's own addresses and a template that resolves to one are not real.
    assert!(found.iter().all(|f| !f.path.starts_with("ansible_host")));
    assert!(found.iter().all(|f| f.path != "peer_template"));
}

#[test]
fn a_member_missing_from_the_list_or_a_list_without_hostvars_is_an_error() {
    let list = include_str!("../fixtures/inventory-list.json");
    let err = scan_inventory_list(list, &["web-c".to_owned()], &real()).unwrap_err();
    assert!(
        err.to_string().contains("no variables for member `web-c`"),
        "{err}"
    );
    assert!(scan_inventory_list("{}", &[], &real()).is_err());
    assert!(scan_inventory_list("not json", &[], &real()).is_err());
}

#[test]
fn an_extra_vars_file_is_scanned_as_its_own_source() {
    let vars = read_vars_file(
        "overrides/web.yml",
        "---\nbackup_target: 77.42.120.137\nfine: 10.231.0.11\n",
    )
    .unwrap();
    let found = scan_vars(
        &VarSource::ExtraVars(Utf8PathBuf::from("overrides/web.yml")),
        &vars,
        &real(),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].to_string(),
        "overrides/web.yml: `backup_target` holds 77.42.120.137, a real host's address: override it for the fleet (a fleet `extra_vars_files` entry) with the member's fleet address (`hostvars[peer].ansible_host`)"
    );
}

#[test]
fn vars_files_read_as_ansible_sees_their_structure() {
    let vars = read_vars_file(
        "f.yml",
        "---\ndefaults: &d\n  port: 80\n  host: a\nsite:\n  <<: *d\n  host: b\nsecret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\nlist: [1, 2.5, true, null]\n",
    )
    .unwrap();
    assert_eq!(vars["site"], json!({"host": "b", "port": 80}));
    assert_eq!(vars["secret"], json!("$ANSIBLE_VAULT;1.1;AES256\n6162\n"));
    assert_eq!(vars["list"], json!([1, 2.5, true, null]));
    assert!(read_vars_file("e.yml", "").unwrap().is_empty());
    assert!(read_vars_file("e.yml", "---\n").unwrap().is_empty());
    let not_a_map = read_vars_file("l.yml", "- a\n").unwrap_err();
    assert_eq!(
        not_a_map.to_string(),
        "l.yml: extra vars must be a yaml mapping"
    );
    assert!(
        read_vars_file("b.yml", "a: [\n")
            .unwrap_err()
            .to_string()
            .starts_with("b.yml: malformed yaml")
    );
}

#[test]
fn two_files_setting_one_variable_to_two_values_conflict() {
    let file =
        |name: &str, text: &str| (Utf8PathBuf::from(name), read_vars_file(name, text).unwrap());
    let files = [
        file(
            "overrides/catalogue.yml",
            "base__mesh_enabled: false\nshared: [1, 2]\n",
        ),
        file("overrides/a.yml", "role_a__port: 8080\nshared: [1, 2]\n"),
        file(
            "overrides/b.yml",
            "role_a__port: 8081\nbase__mesh_enabled: false\n",
        ),
    ];
    let found = conflicts(&files);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].to_string(),
        "`role_a__port` is 8080 in overrides/a.yml and 8081 in overrides/b.yml: extra vars reach every member, so every member would get the second; set it in one file, or per member in the inventory"
    );
    assert!(conflicts(&files[..2]).is_empty());
}
