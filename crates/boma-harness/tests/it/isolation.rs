//! A test VM gets no route to the real fleet: `up` gives every literal address of the real
//! inventory (as `ansible-inventory --list` prints it) an unreachable route in the seed's
//! network-config, and hands the same addresses to the verify playbook.

use crate::support::{FakeMachine, PRODUCTION_LIST, Sandbox, serial};
use boma_harness::Ctx;

/// The real inventory's listing with a group `home` of these hosts (name, `ansible_host`).
fn with_more_hosts(machine: &FakeMachine, hosts: &[(&str, Option<&str>)]) {
    let mut list: serde_json::Value = serde_json::from_str(PRODUCTION_LIST).unwrap();
    list["all"]["children"]
        .as_array_mut()
        .unwrap()
        .push("home".into());
    list["home"] = serde_json::json!({"hosts": hosts.iter().map(|(h, _)| h).collect::<Vec<_>>()});
    for (host, address) in hosts {
        if let Some(address) = address {
            list["_meta"]["hostvars"][host] = serde_json::json!({"ansible_host": address});
        }
    }
    *machine.inventory_list.borrow_mut() = Ok(list.to_string());
}

fn fleet_addresses(vars: &serde_json::Value) -> Vec<String> {
    vars["boma_it_fleet_addresses"]
        .as_array()
        .expect("boma_it_fleet_addresses is a list")
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_real_address_is_unreachable_from_the_vm_and_checked_by_verify() {
    let _serial = serial();
    // More of a fleet than the repo's: an address, a literal-address name, an IPv6 one, a
    // host reached by DNS name (which no route can cover).
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    with_more_hosts(
        &machine,
        &[
            ("kiboko", Some("192.0.2.10")),
            ("198.51.100.7", None),
            ("nyati", Some("2001:db8::5")),
            ("simba", Some("simba.example.net")),
        ],
    );
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    let record = boma_harness::up(&ctx, "askari").unwrap();

    let run_id = record.name.as_str().rsplit('-').next().unwrap();
    let network = std::fs::read_to_string(record.dir.join("network-config")).unwrap();
    let expected = ["192.0.2.10", "198.51.100.7", "77.42.120.136", "2001:db8::5"];
    for address in expected {
        let prefix = if address.contains(':') { 128 } else { 32 };
        let route = format!("- to: \"{address}/{prefix}\"\n          type: unreachable\n");
        assert!(
            network.contains(&route),
            "{address} is not routed away:\n{network}"
        );
    }
    assert!(
        network.contains(&format!("macaddress: \"{}\"", boma_vm::mac_for(run_id))),
        "the config matches the VM's NIC:\n{network}"
    );
    assert!(!network.contains("simba"), "{network}");

    let vars: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(record.dir.join("harness-vars-0.json")).unwrap(),
    )
    .unwrap();
    let mut given = fleet_addresses(&vars);
    given.sort();
    let mut want: Vec<String> = expected.iter().map(|a| a.to_string()).collect();
    want.sort();
    assert_eq!(given, want, "verify checks every routed-away address");
    boma_harness::down(&ctx, false).unwrap();
}

#[test]
fn a_real_address_inside_the_guest_network_is_refused_before_anything_is_created() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    with_more_hosts(&machine, &[("kiboko", Some("10.0.2.2"))]);
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine: &machine,
    };
    let err = boma_harness::up(&ctx, "askari").unwrap_err();
    assert_eq!(err.class(), boma_harness::ExitClass::Refused, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("10.0.2.2") && message.contains("--backend libvirt"),
        "{message}"
    );
    assert!(sandbox.vm_dirs().is_empty(), "{:?}", sandbox.vm_dirs());
    assert!(machine.world.borrow().running.is_empty());
}
