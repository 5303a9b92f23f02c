//! Snapshots of the rendered seed, and proof that any value survives a real YAML parser intact.

use boma_cloudinit::{MetaData, UserData, UserDataError, meta_data, user_data};
use saphyr::{LoadableYamlNode, Yaml};

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEbomaHarnessKeyForTestsOnly0000000000000 boma-it";
const KEY_B: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCbomaSecondKey boma-it-ci";

#[test]
fn meta_data_snapshot() {
    let text = meta_data(&MetaData {
        instance_id: "boma-it-20261125-0312-askari",
        local_hostname: "boma-it-20261125-0312-askari",
    });
    insta::assert_snapshot!("meta_data", text);
}

#[test]
fn user_data_snapshot() {
    let keys = [KEY_A.to_owned(), KEY_B.to_owned()];
    let text = user_data(&UserData::new(&keys)).unwrap();
    assert!(text.starts_with("#cloud-config\n"));
    insta::assert_snapshot!("user_data", text);
}

/// Values chosen to break a renderer that splices text into YAML: quotes, `: ` and `#`, line
/// breaks (including YAML 1.1's NEL/LS/PS), indicators at the start, YAML 1.1 booleans and null,
/// controls, a BOM, and non-ASCII text.
const ADVERSARIAL: &[&str] = &[
    "plain",
    "\"double\" and 'single' quotes",
    "key: value # not a comment",
    "#starts-with-hash",
    "line one\nline two\r\nline three\r",
    "- leading dash",
    "* leading star",
    "&anchor",
    "*alias",
    "!tag",
    "|literal",
    ">folded",
    "%directive",
    "@reserved",
    "`backtick",
    "{flow: map}",
    "[flow, seq]",
    "yes",
    "no",
    "on",
    "off",
    "null",
    "~",
    "",
    " ",
    "  padded  ",
    "0777",
    "1e3",
    "true",
    "---",
    "...",
    "back\\slash \\n not a newline",
    "tab\tand\u{1}control\u{7F}del",
    "nel\u{85}ls\u{2028}ps\u{2029}",
    "c1\u{80}\u{9F} bom\u{FEFF} nonchar\u{FFFE}\u{FFFF}",
    "Jambo, dünya, 日本語, 🦒",
];

fn parse_one(text: &str) -> Yaml<'_> {
    let mut docs = Yaml::load_from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0)
}

fn string_at<'a>(node: &'a Yaml<'_>, key: &str) -> &'a str {
    node.as_mapping_get(key)
        .unwrap_or_else(|| panic!("no `{key}`"))
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string"))
}

#[test]
fn meta_data_round_trips_any_value() {
    for value in ADVERSARIAL {
        let text = meta_data(&MetaData {
            instance_id: value,
            local_hostname: value,
        });
        let doc = parse_one(&text);
        assert_eq!(string_at(&doc, "instance-id"), *value, "{text}");
        assert_eq!(string_at(&doc, "local-hostname"), *value, "{text}");
        assert_eq!(doc.as_mapping().unwrap().len(), 2, "{text}");
    }
}

#[test]
fn user_data_round_trips_any_value() {
    for value in ADVERSARIAL {
        // Keys must be one non-blank line (see `keys_that_would_lock_everyone_out_are_refused`).
        let key = format!("ssh-ed25519 AAAA {}", value.replace(['\n', '\r'], " "));
        let keys = [key.clone(), KEY_A.to_owned()];
        let user = if value.is_empty() { "x" } else { value };
        let text = user_data(&UserData {
            user,
            ssh_authorized_keys: &keys,
        })
        .unwrap();
        let doc = parse_one(&text);

        let users = doc.as_mapping_get("users").unwrap().as_vec().unwrap();
        assert_eq!(users.len(), 1, "{text}");
        let u = &users[0];
        assert_eq!(string_at(u, "name"), user, "{text}");
        assert_eq!(string_at(u, "sudo"), "ALL=(ALL) NOPASSWD:ALL");
        assert_eq!(string_at(u, "shell"), "/bin/bash");
        assert_eq!(
            u.as_mapping_get("lock_passwd").unwrap().as_bool(),
            Some(true)
        );
        let got: Vec<&str> = u
            .as_mapping_get("ssh_authorized_keys")
            .unwrap()
            .as_vec()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(got, [key.as_str(), KEY_A], "{text}");
        for flag in ["ssh_pwauth", "package_update", "package_upgrade"] {
            assert_eq!(
                doc.as_mapping_get(flag).unwrap().as_bool(),
                Some(false),
                "{flag}"
            );
        }
        assert_eq!(doc.as_mapping().unwrap().len(), 4, "{text}");
    }
}

#[test]
fn no_default_user() {
    let keys = [KEY_A.to_owned()];
    let text = user_data(&UserData::new(&keys)).unwrap();
    let doc = parse_one(&text);
    let users = doc.as_mapping_get("users").unwrap().as_vec().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(string_at(&users[0], "name"), "ansible");
    assert!(!text.contains("default"), "{text}");
}

#[test]
fn keys_that_would_lock_everyone_out_are_refused() {
    let render = |keys: &[&str]| {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        user_data(&UserData::new(&keys))
    };
    assert_eq!(render(&[]), Err(UserDataError::NoKey));
    assert_eq!(
        render(&[KEY_A, "  "]),
        Err(UserDataError::BlankKey { number: 2 })
    );
    let pub_file = format!("{KEY_A}\n");
    assert_eq!(
        render(&[&pub_file]),
        Err(UserDataError::MultiLineKey { number: 1 })
    );
    let keys = [KEY_A.to_owned()];
    assert_eq!(
        user_data(&UserData {
            user: "",
            ssh_authorized_keys: &keys
        }),
        Err(UserDataError::EmptyUser)
    );
}

#[test]
fn network_config_snapshot() {
    let fleet: Vec<std::net::IpAddr> = vec![
        "77.42.120.136".parse().unwrap(),
        "2001:db8::7".parse().unwrap(),
    ];
    let text = boma_cloudinit::network_config(&boma_cloudinit::NetworkConfig {
        mac: "52:54:00:AB:cd:01",
        unreachable: &fleet,
    });
    insta::assert_snapshot!("network_config", text);
}

#[test]
fn network_config_routes_every_fleet_address_away() {
    let fleet: Vec<std::net::IpAddr> = (1..=40)
        .map(|i| format!("203.0.113.{i}").parse().unwrap())
        .chain(["2001:db8::1".parse().unwrap()])
        .collect();
    let text = boma_cloudinit::network_config(&boma_cloudinit::NetworkConfig {
        mac: "52:54:00:00:00:01",
        unreachable: &fleet,
    });
    let doc = parse_one(&text);
    let nic = &doc["network"]["ethernets"]["boma0"];
    assert_eq!(string_at(&nic["match"], "macaddress"), "52:54:00:00:00:01");
    let routes = nic["routes"].as_vec().expect("routes is a list");
    let mut routed: Vec<String> = routes
        .iter()
        .map(|route| {
            assert_eq!(string_at(route, "type"), "unreachable");
            string_at(route, "to").to_owned()
        })
        .collect();
    routed.sort();
    let mut expected: Vec<String> = fleet
        .iter()
        .map(|a| format!("{a}/{}", if a.is_ipv4() { 32 } else { 128 }))
        .collect();
    expected.sort();
    assert_eq!(routed, expected);

    let none = boma_cloudinit::network_config(&boma_cloudinit::NetworkConfig {
        mac: "52:54:00:00:00:01",
        unreachable: &[],
    });
    let none = parse_one(&none);
    assert!(
        none["network"]["ethernets"]["boma0"]
            .as_mapping_get("routes")
            .is_none()
    );
}

#[test]
fn fleet_network_config_snapshot() {
    let fleet: Vec<std::net::IpAddr> = vec!["77.42.120.136".parse().unwrap()];
    let text = boma_cloudinit::fleet_network_config(
        &boma_cloudinit::NetworkConfig {
            mac: "52:54:00:AB:cd:01",
            unreachable: &fleet,
        },
        &boma_cloudinit::FleetNic {
            mac: "52:54:0A:E7:00:0A",
            address: "10.231.0.10/24",
        },
    );
    insta::assert_snapshot!("fleet_network_config", text);
}

/// A fleet member's first NIC is a single VM's, byte for byte: the fleet NIC only adds.
#[test]
fn fleet_network_config_keeps_the_first_nic_and_adds_a_static_second() {
    let fleet: Vec<std::net::IpAddr> = vec![
        "77.42.120.136".parse().unwrap(),
        "2001:db8::7".parse().unwrap(),
    ];
    let net = boma_cloudinit::NetworkConfig {
        mac: "52:54:00:00:00:01",
        unreachable: &fleet,
    };
    let single = boma_cloudinit::network_config(&net);
    let member = boma_cloudinit::fleet_network_config(
        &net,
        &boma_cloudinit::FleetNic {
            mac: "52:54:0a:e7:00:0b",
            address: "10.231.0.11/24",
        },
    );
    assert!(member.starts_with(&single), "{member}");

    let doc = parse_one(&member);
    let ethernets = &doc["network"]["ethernets"];
    assert_eq!(ethernets.as_mapping().unwrap().len(), 2, "{member}");
    assert_eq!(
        doc["network"]["ethernets"]["boma0"]["routes"]
            .as_vec()
            .unwrap()
            .len(),
        2
    );
    let nic = &ethernets["boma1"];
    assert_eq!(string_at(&nic["match"], "macaddress"), "52:54:0a:e7:00:0b");
    let addresses: Vec<&str> = nic["addresses"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["10.231.0.11/24"]);
    assert_eq!(nic.as_mapping_get("dhcp4").unwrap().as_bool(), Some(false));
    assert_eq!(nic.as_mapping_get("dhcp6").unwrap().as_bool(), Some(false));
    assert!(nic.as_mapping_get("routes").is_none(), "{member}");
    assert!(nic.as_mapping_get("gateway4").is_none(), "{member}");
    assert_eq!(nic["link-local"].as_vec().map(Vec::len), Some(0));
    // No default route by construction: no gateway, no routes, no DHCP, and no router
    // advertisement taken from a member that sends them.
    assert_eq!(
        nic.as_mapping_get("accept-ra").unwrap().as_bool(),
        Some(false)
    );
    assert!(nic.as_mapping_get("gateway6").is_none(), "{member}");
    assert!(nic.as_mapping_get("optional").is_none(), "{member}");
}
