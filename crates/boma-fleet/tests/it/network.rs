//! The private segment: addresses, MACs, the switch, QEMU's and libvirt's side, the member's
//! network-config and host vars; the refusals.

use std::net::{IpAddr, Ipv4Addr};

use boma_fleet::{
    FLEET_NETWORK, FleetNetwork, LibvirtFleetNetwork, NetworkError, member_host_vars,
    qemu_nic_args, switch_paths, vde_switch_args,
};
use camino::Utf8Path;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

#[test]
fn members_get_addresses_from_ten_and_macs_that_spell_them() {
    let nics = FLEET_NETWORK.members(&names(3)).unwrap();
    let got: Vec<(String, String, String)> = nics
        .iter()
        .map(|n| (n.name.clone(), n.cidr(), n.mac.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("m0", "10.231.0.10/24", "52:54:0a:e7:00:0a"),
            ("m1", "10.231.0.11/24", "52:54:0a:e7:00:0b"),
            ("m2", "10.231.0.12/24", "52:54:0a:e7:00:0c"),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    );
    // Never a first NIC's MAC (boma_vm::mac_for: 52:54:00:…).
    assert!(nics.iter().all(|n| !n.mac.starts_with("52:54:00:")));
}

#[test]
fn a_fleet_larger_than_its_segment_is_refused() {
    // .10 to .254: 245 members fit in a /24, the 246th would be the broadcast address.
    assert_eq!(FLEET_NETWORK.members(&names(245)).unwrap().len(), 245);
    assert_eq!(
        FLEET_NETWORK.members(&names(246)).unwrap_err(),
        NetworkError::TooManyMembers {
            members: 246,
            subnet: Ipv4Addr::new(10, 231, 0, 0),
            prefix: 24
        }
    );
    let small = FleetNetwork {
        subnet: Ipv4Addr::new(192, 0, 2, 0),
        prefix: 30,
        first_host: 1,
    };
    assert_eq!(small.address(0), Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(small.address(1), Some(Ipv4Addr::new(192, 0, 2, 2)));
    assert_eq!(small.address(2), None);
}

#[test]
fn a_real_address_inside_the_fleet_network_is_refused() {
    let real: Vec<IpAddr> = ["77.42.120.136", "10.231.0.11", "2001:db8::7", "10.231.1.1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let err = FLEET_NETWORK.refuse_real_addresses(&real).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the real inventory has 10.231.0.11 inside the fleet network 10.231.0.0/24: a member would answer to a real host's address; move the fleet network (boma_fleet::FLEET_NETWORK)"
    );
    assert!(FLEET_NETWORK.refuse_real_addresses(&real[..1]).is_ok());
    assert!(FLEET_NETWORK.refuse_real_addresses(&[]).is_ok());
}

#[test]
fn the_switch_sockets_live_in_a_short_directory_whatever_the_checkouts_path() {
    let run = "/srv/boma/tests/integration/.run/boma-it-web-1a2b";
    let paths = switch_paths(Utf8Path::new(run));
    assert_eq!(paths.pidfile, format!("{run}/fleet.switch.pid"));
    assert!(
        paths.dir.as_str().starts_with("/tmp/boma-vde-"),
        "{}",
        paths.dir
    );
    // The longest socket libvdeplug binds inside (`/.<7-digit pid>-NNNNN`) fits the 107 bytes
    // of a unix socket path, however long the run directory.
    let long = format!("/{}/boma-it-catf-peer-admit-red-1a2b3c4d", "x".repeat(200));
    let far = switch_paths(Utf8Path::new(&long));
    assert_eq!(far.dir.as_str().len(), paths.dir.as_str().len());
    assert!(far.dir.as_str().len() + "/.4194304-00000".len() <= 107);
    // One directory per run, the same for every command of the run.
    assert_ne!(far.dir, paths.dir);
    assert_eq!(switch_paths(Utf8Path::new(run)), paths);
}

#[test]
fn vde_switch_args_snapshot() {
    let paths = switch_paths(Utf8Path::new(
        "/srv/boma/tests/integration/.run/boma-it-web-1a2b",
    ));
    insta::assert_snapshot!("vde_switch_args", vde_switch_args(&paths).join("\n"));
}

#[test]
fn qemu_nic_args_snapshot() {
    let nics = FLEET_NETWORK.members(&names(2)).unwrap();
    // A `,` in the path is doubled: QEMU would read it as the next option.
    let paths = boma_fleet::SwitchPaths {
        dir: "/tmp/boma,odd".into(),
        pidfile: "/srv/boma/.run/boma-it-web-1a2b/fleet.switch.pid".into(),
    };
    let args = qemu_nic_args(&nics[1], &paths);
    assert!(args[1].ends_with("sock=/tmp/boma,,odd"), "{args:?}");
    insta::assert_snapshot!("qemu_nic_args", args.join("\n"));
}

#[test]
fn libvirt_fleet_network_snapshot() {
    let net = LibvirtFleetNetwork::new("boma-it-web-20261206-0312").unwrap();
    assert_eq!(net.name(), "boma-fleet-boma-it-web-20261206-0312");
    // Linux interface names are at most 15 bytes.
    assert!(net.bridge().len() <= 15, "{}", net.bridge());
    let xml = net.xml();
    assert!(!xml.contains("<forward") && !xml.contains("<ip"), "{xml}");
    let nics = FLEET_NETWORK.members(&names(1)).unwrap();
    let text = format!("{xml}--network {}\n", net.virt_install_network(&nics[0]));
    insta::assert_snapshot!("libvirt_fleet_network", text);
    assert_ne!(
        net.bridge(),
        LibvirtFleetNetwork::new("boma-it-web-20261206-0313")
            .unwrap()
            .bridge()
    );
}

#[test]
fn a_libvirt_run_name_that_is_not_plain_is_refused() {
    for bad in ["", "Web", "a b", "a'b", "a<b", &"x".repeat(49)] {
        assert!(
            matches!(
                LibvirtFleetNetwork::new(bad),
                Err(NetworkError::BadRunName { .. })
            ),
            "{bad:?}"
        );
    }
}

/// The member's seed: its first NIC as a single VM's, its fleet NIC from [`MemberNic`].
#[test]
fn member_network_config_snapshot() {
    let nics = FLEET_NETWORK.members(&names(2)).unwrap();
    let real: Vec<IpAddr> = vec!["77.42.120.136".parse().unwrap()];
    let cidr = nics[1].cidr();
    let text = boma_cloudinit::fleet_network_config(
        &boma_cloudinit::NetworkConfig {
            mac: "52:54:00:12:34:56",
            unreachable: &real,
        },
        &boma_cloudinit::FleetNic {
            mac: &nics[1].mac,
            address: &cidr,
        },
    );
    insta::assert_snapshot!("member_network_config", text);
}

#[test]
fn a_members_host_vars_are_its_fleet_address() {
    let nics = FLEET_NETWORK.members(&names(2)).unwrap();
    let vars = member_host_vars(&nics[1]);
    assert_eq!(
        vars.into_iter().collect::<Vec<_>>(),
        [
            ("ansible_host", "10.231.0.11".to_owned()),
            ("boma_fleet_address", "10.231.0.11".to_owned())
        ]
    );
}
