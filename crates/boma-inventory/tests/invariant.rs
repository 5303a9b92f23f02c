//! The invariant the harness rests on, checked over arbitrary inputs: the transient inventory
//! holds exactly one host, the test VM, which is none of the real hosts, and every playbook run is
//! limited to it.

use std::collections::BTreeSet;

use boma_inventory::{
    Apply, CertTier, ConnectionPin, PlaybookRun, TransientHost, VmName, apply_argv, host_names,
    playbook_argv, render_hosts_yml,
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

/// Every host key in the rendered YAML, read with saphyr directly rather than through the
/// crate's own inventory reader, and the number of places a host is defined with its vars.
fn hosts_in(text: &str) -> (BTreeSet<String>, usize) {
    let docs = Yaml::load_from_str(text).unwrap();
    assert_eq!(docs.len(), 1);
    let top = docs[0].as_mapping().unwrap();
    assert_eq!(top.len(), 1, "only `all` at the top");
    let all = docs[0].as_mapping_get("all").unwrap();
    let mut names = BTreeSet::new();
    let defined = all.as_mapping_get("hosts").unwrap().as_mapping().unwrap();
    for key in defined.keys() {
        names.insert(key.as_str().unwrap().to_owned());
    }
    if let Some(children) = all.as_mapping_get("children") {
        for group in children.as_mapping().unwrap().values() {
            assert!(group.as_mapping_get("children").is_none());
            for key in group
                .as_mapping_get("hosts")
                .unwrap()
                .as_mapping()
                .unwrap()
                .keys()
            {
                names.insert(key.as_str().unwrap().to_owned());
            }
        }
    }
    (names, defined.len())
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
    ) {
        let vm = if suffix_host { format!("boma-it-{run}-{profile_host}") } else { format!("boma-it-{run}") };
        let mut real = real;
        // The profile is named like a real host, and sometimes the VM collides with one too.
        real.insert(profile_host.to_owned());
        if collide {
            real.insert(vm.to_uppercase());
        }
        let groups_vec: Vec<String> = groups.iter().cloned().collect();
        let checked = VmName::checked(&vm, &real);
        prop_assert_eq!(checked.is_ok(), acceptable(&vm, &real, &BTreeSet::new()), "{:?}", checked);
        let Ok(checked) = checked else { return Ok(()) };
        let host = TransientHost {
            vm: &checked,
            groups: &groups_vec,
            ansible_host: "127.0.0.1",
            ansible_port: 40022,
            ansible_user: "ansible",
            ssh_private_key_file: Utf8Path::new("/keys/id_ed25519"),
        };

        let rendered = render_hosts_yml(&host);
        prop_assert_eq!(rendered.is_ok(), acceptable(&vm, &real, &groups), "{:?}", rendered);
        let Ok(hosts) = rendered else { return Ok(()) };

        let (names, defined) = hosts_in(hosts.as_str());
        prop_assert_eq!(&names, &BTreeSet::from([vm.clone()]));
        prop_assert_eq!(defined, 1);
        prop_assert_eq!(host_names("hosts.yml", hosts.as_str()).unwrap(), names);
        prop_assert!(!real.iter().any(|h| h.eq_ignore_ascii_case(&vm)));

        let files = [Utf8PathBuf::from("overrides/x.yml")];
        let run = PlaybookRun {
            repo_root: Utf8Path::new("/repo"),
            inventory_dir: Utf8Path::new("/repo/inv"),
            vm: hosts.vm(),
            extra_vars_files: &files,
            cert_tier: CertTier::Internal,
            run_extra_vars: None,
            vault_password_file: None,
            connection: ConnectionPin::LastExtraVars(Utf8Path::new("/repo/run/connection.json")),
        };
        let verify = PlaybookRun { connection: ConnectionPin::HostVars, ..run };
        let apply = Apply { playbook: "site.yml".into(), tags: vec!["base".into()] };
        for argv in [apply_argv(&run, &apply), playbook_argv(&verify, Utf8Path::new("tests/verify/askari.yml"))] {
            let limits: Vec<_> = argv.iter().enumerate().filter(|(_, a)| *a == "--limit").collect();
            prop_assert_eq!(limits.len(), 1);
            prop_assert_eq!(&argv[limits[0].0 + 1], &vm);
        }
    }
}
