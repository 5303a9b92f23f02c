//! The real inventory as Ansible itself reads it. With the venv's `ansible-inventory`, through
//! the harness's own runner: small inventories (INI with `:children` and `:vars`, YAML, host
//! ranges, a `constructed` plugin, a host in two files, `ansible_ssh_host`, an inline vault
//! value) list exactly as their captured fixtures, which boma-inventory's tests read; what
//! Ansible cannot parse is refused. On the fake machine: preflight refuses before anything is
//! created when the listing fails or names a host like a test VM.

use crate::support;

use crate::support::{Sandbox, no_interrupts, serial};
use boma_exec::CmdExt;
use boma_harness::{Ctx, ExitClass, RealMachine};
use boma_inventory::{Fleet, HostsYml, TransientHost, VmName, render_hosts_yml};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

/// The repository (its venv and `ansible.cfg`).
fn repo() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> Utf8PathBuf {
    repo().join("crates/boma-inventory/tests/fixtures/inventories")
}

fn venv() {
    assert!(
        repo().join(".venv/bin/ansible-inventory").is_file(),
        "this test needs the Ansible venv: run `make venv` (`make test` does)"
    );
}

/// `ansible-inventory --list` of `inventory` through the real machine, as preflight runs it.
fn list(
    inventory: &Utf8Path,
    vault: Option<&Utf8Path>,
) -> Result<String, boma_harness::HarnessError> {
    let sh = Shell::new().unwrap();
    let runs = tempfile::tempdir().unwrap();
    let machine = RealMachine::new(&sh, Utf8Path::from_path(runs.path()).unwrap());
    boma_harness::Machine::ansible(&machine).list_inventory(&repo(), inventory, vault)
}

#[test]
fn each_small_inventory_lists_as_its_captured_fixture() {
    let _shared = no_interrupts();
    venv();
    let cases = ["sample", "ini", "constructed", "two-files", "named-like-vm"];
    // One Ansible start each, side by side.
    let listed: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .map(|case| scope.spawn(move || list(&fixtures().join(case), None).unwrap()))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for (case, listed) in cases.iter().zip(listed) {
        let captured = std::fs::read_to_string(fixtures().join(format!("{case}.json"))).unwrap();
        // The fixtures boma-inventory's tests read are what this Ansible prints: when it
        // prints something else, recapture them (fixtures/inventories/README.md).
        assert_eq!(listed.trim_end(), captured.trim_end(), "{case}");
    }
}

#[test]
fn the_repos_production_inventory_lists_and_makes_a_fleet() {
    let _shared = no_interrupts();
    venv();
    let listed = list(&repo().join("inventories/production"), None).unwrap();
    let fleet = Fleet::from_ansible_list(&listed).unwrap();
    assert!(fleet.names().contains("askari"), "{:?}", fleet.names());
    assert!(
        fleet
            .addresses()
            .contains(&"77.42.120.136".parse().unwrap()),
        "{:?}",
        fleet.addresses()
    );
    assert_eq!(
        fleet.ancestors("offsite_hosts"),
        ["docker_hosts".to_owned()].into()
    );
}

/// Why `--list` and not `--list --export`: exported, a group's variables stay on the group, so
/// an address given to a group (`[web:vars]` here) would not be a host's, and its hosts would
/// get no route.
#[test]
fn export_would_hide_a_groups_address_from_its_hosts() {
    let _shared = no_interrupts();
    venv();
    let sh = Shell::new().unwrap();
    let program = repo().join(".venv/bin/ansible-inventory");
    let inventory = fixtures().join("ini");
    let config = repo().join("ansible.cfg");
    let exported = cmd!(sh, "{program} -i {inventory} --list --export")
        .exec()
        .env("ANSIBLE_CONFIG", config)
        .read()
        .unwrap();
    let exported = Fleet::from_ansible_list(&exported).unwrap();
    let listed = Fleet::from_ansible_list(&list(&inventory, None).unwrap()).unwrap();
    let web = "192.0.2.70".parse().unwrap();
    assert!(listed.addresses().contains(&web));
    assert!(!exported.addresses().contains(&web));
    assert!(
        exported
            .named_only()
            .contains(&("web01".to_owned(), "web01".to_owned()))
    );
}

/// Ansible itself only warns about a file it cannot parse and lists the rest: a real host in
/// that file would get no route. The harness makes it a refusal naming the file.
#[test]
fn a_file_ansible_cannot_parse_is_refused_not_skipped() {
    let _shared = no_interrupts();
    venv();
    let tmp = tempfile::tempdir().unwrap();
    let inventory = Utf8Path::from_path(tmp.path()).unwrap();
    std::fs::write(inventory.join("hosts.yml"), "web:\n  hosts:\n    w1:\n").unwrap();
    std::fs::write(inventory.join("broken"), "this is [not an inventory\n").unwrap();
    let err = list(inventory, None).unwrap_err();
    assert_eq!(err.class(), ExitClass::Refused, "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("ansible-inventory cannot read the real inventory")
            && message.contains("broken"),
        "{message}"
    );
}

/// A whole-file vault in the inventory's `group_vars` needs the password to be listed (the
/// run's playbooks need it too); an inline vault value does not, and stays encrypted.
#[test]
fn a_whole_file_vault_needs_the_runs_password() {
    let _shared = no_interrupts();
    venv();
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap();
    let inventory = dir.join("inventory");
    std::fs::create_dir_all(inventory.join("group_vars/web")).unwrap();
    std::fs::write(inventory.join("hosts.yml"), "web:\n  hosts:\n    w1:\n").unwrap();
    let vars = inventory.join("group_vars/web/vault.yml");
    std::fs::write(&vars, "ansible_host: 192.0.2.80\n").unwrap();
    let password = dir.join("password");
    std::fs::write(&password, "inventory-test-password\n").unwrap();
    let sh = Shell::new().unwrap();
    let vault = repo().join(".venv/bin/ansible-vault");
    cmd!(
        sh,
        "{vault} encrypt --vault-password-file {password} {vars}"
    )
    .exec()
    .quiet()
    .run()
    .unwrap();

    let err = list(&inventory, None).unwrap_err();
    assert_eq!(err.class(), ExitClass::Refused, "{err}");
    assert!(err.to_string().contains("no vault secrets"), "{err}");
    let fleet = Fleet::from_ansible_list(&list(&inventory, Some(&password)).unwrap()).unwrap();
    assert_eq!(
        fleet.addresses(),
        ["192.0.2.80".parse().unwrap()].into(),
        "decrypted, the group's address is routed"
    );
}

/// The transient inventory, as Ansible lists it: the VM is its only host, in the profile's
/// group, nested under the real group above it.
#[test]
fn ansible_sees_only_the_vm_in_the_transient_inventory() {
    let _shared = no_interrupts();
    venv();
    let real = Fleet::from_ansible_list(support::PRODUCTION_LIST).unwrap();
    let vm = VmName::checked("boma-it-20261125-0312-askari", &real.names()).unwrap();
    let groups = ["offsite_hosts".to_owned()];
    let lineage = real.lineage(&groups);
    let hosts: HostsYml = render_hosts_yml(&TransientHost {
        vm: &vm,
        groups: &groups,
        group_parents: &lineage,
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let inventory = Utf8Path::from_path(tmp.path()).unwrap();
    std::fs::write(inventory.join("hosts.yml"), hosts.as_str()).unwrap();
    let listed: serde_json::Value = serde_json::from_str(&list(inventory, None).unwrap()).unwrap();
    // The VM has no host vars (the connection is the last `-e` file's), so the hosts are the
    // groups' members.
    let mut hosts: Vec<&str> = listed
        .as_object()
        .unwrap()
        .values()
        .filter_map(|group| group["hosts"].as_array())
        .flatten()
        .filter_map(|host| host.as_str())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    assert_eq!(hosts, [vm.as_str()]);
    assert_eq!(
        listed["offsite_hosts"]["hosts"],
        serde_json::json!([vm.as_str()])
    );
    assert_eq!(
        listed["docker_hosts"]["children"],
        serde_json::json!(["offsite_hosts"])
    );
    // A fleet of it is refused: its one host is named like a test VM.
    assert!(Fleet::from_ansible_list(&listed.to_string()).is_err());
}

fn refused_up(sandbox: &Sandbox, machine: &support::FakeMachine) -> String {
    let ctx = Ctx {
        settings: &sandbox.settings,
        machine,
    };
    let err = boma_harness::up(&ctx, "askari").unwrap_err();
    assert_eq!(err.class(), ExitClass::Refused, "{err}");
    assert!(
        machine.world.borrow().booted.is_empty(),
        "booted despite: {err}"
    );
    assert!(sandbox.vm_dirs().is_empty(), "{:?}", sandbox.vm_dirs());
    assert!(machine.image_steps.borrow().is_empty(), "{err}");
    err.to_string()
}

#[test]
fn preflight_refuses_when_ansible_cannot_list_the_real_inventory() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let machine = sandbox.machine();
    *machine.inventory_list.borrow_mut() =
        Err("ansible-inventory cannot read the real inventory x: broken".into());
    let message = refused_up(&sandbox, &machine);
    assert!(message.contains("broken"), "{message}");
}

#[test]
fn preflight_refuses_a_real_host_named_like_a_test_vm_and_an_empty_fleet() {
    let _serial = serial();
    for (listing, says) in [
        (
            include_str!("../../../boma-inventory/tests/fixtures/inventories/named-like-vm.json"),
            "host `Boma-IT-old-canary` is named like a test vm",
        ),
        (
            r#"{"_meta": {"hostvars": {}}, "all": {"children": ["ungrouped"]}}"#,
            "ansible lists no hosts in inventories/production/",
        ),
    ] {
        let sandbox = Sandbox::new();
        let machine = sandbox.machine();
        *machine.inventory_list.borrow_mut() = Ok(listing.to_owned());
        let message = refused_up(&sandbox, &machine);
        assert!(
            message.starts_with("reading the real inventory: ") && message.contains(says),
            "{message}"
        );
    }
}
