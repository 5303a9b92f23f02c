//! The `ansible-playbook` argv: snapshots of the apply and verify runs, and the property that the
//! harness's connection file, when pinned as extra vars, is the last `-e @file` whatever the
//! other files are.

use std::collections::BTreeSet;

use boma_inventory::{Apply, CertTier, PlaybookRun, VmName, apply_argv, playbook_argv};
use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;

const VM: &str = "boma-it-20261125-0312-askari";
const CONNECTION: &str = "/src/boma/tests/integration/.run/r1/connection-vars.json";

fn vm() -> VmName {
    VmName::checked(VM, &BTreeSet::from(["askari".to_owned()])).unwrap()
}

fn run<'a>(vm: &'a VmName, files: &'a [Utf8PathBuf]) -> PlaybookRun<'a> {
    PlaybookRun {
        repo_root: Utf8Path::new("/src/boma"),
        inventory_dir: Utf8Path::new("/src/boma/tests/integration/.run/r1/inventory"),
        vm,
        extra_vars_files: files,
        cert_tier: CertTier::Internal,
        run_extra_vars: Some(Utf8Path::new(
            "/src/boma/tests/integration/.run/r1/run-vars.json",
        )),
        vault_password_file: None,
        connection_vars: Utf8Path::new(CONNECTION),
    }
}

fn apply(playbook: &str, tags: &[&str]) -> Apply {
    Apply {
        playbook: playbook.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn lines(argv: &[String]) -> String {
    argv.join("\n")
}

/// The values of every `-e`, in order.
fn extra_vars(argv: &[String]) -> Vec<&str> {
    argv.windows(2)
        .filter(|pair| pair[0] == "-e")
        .map(|pair| pair[1].as_str())
        .collect()
}

#[test]
fn apply_argv_with_tags() {
    let vm = vm();
    let files = [Utf8PathBuf::from("overrides/askari.yml")];
    let argv = apply_argv(
        &run(&vm, &files),
        &apply("offsite.yml", &["docker_host", "reverse_proxy"]),
    );
    insta::assert_snapshot!("apply_argv_with_tags", lines(&argv));
}

#[test]
fn apply_argv_with_vault_file() {
    let vm = vm();
    let files = [
        Utf8PathBuf::from("overrides/askari.yml"),
        Utf8PathBuf::from("overrides/tls.yml"),
    ];
    let run = PlaybookRun {
        cert_tier: CertTier::LeStaging,
        run_extra_vars: None,
        vault_password_file: Some(Utf8Path::new("/root/.config/boma/vault-pass")),
        // A trailing slash on the directory is not doubled.
        inventory_dir: Utf8Path::new("/src/boma/tests/integration/.run/r1/inventory/"),
        ..run(&vm, &files)
    };
    let argv = apply_argv(&run, &apply("site.yml", &[]));
    assert!(!argv.contains(&"--tags".to_owned()));
    insta::assert_snapshot!("apply_argv_with_vault_file", lines(&argv));
}

/// A verify playbook gets the connection file last like every run: its tasks run on the VM,
/// whatever they delegate to.
#[test]
fn playbook_argv_for_verify() {
    let vm = vm();
    let files = [Utf8PathBuf::from("overrides/askari.yml")];
    let run = run(&vm, &files);
    let argv = playbook_argv(&run, Utf8Path::new("tests/verify/askari.yml"));
    assert!(!argv.contains(&"--tags".to_owned()));
    assert_eq!(
        extra_vars(&argv).last().copied(),
        Some(format!("@{CONNECTION}").as_str())
    );
    insta::assert_snapshot!("playbook_argv_verify", lines(&argv));
}

fn var_file() -> impl Strategy<Value = Utf8PathBuf> {
    "(overrides|certs|vars)/[a-z0-9-]{1,8}\\.(yml|yaml|json)".prop_map(Utf8PathBuf::from)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever files the profile lists, in whatever order, with or without the run's own vars
    /// and a vault file, for applies and other playbooks alike: the connection file is the last
    /// `-e`, exactly once, and every other file keeps its place before it.
    #[test]
    fn the_connection_file_is_the_last_extra_vars_file(
        files in prop::collection::vec(var_file(), 0..6).prop_shuffle(),
        tier in prop::sample::select(CertTier::ALL.to_vec()),
        run_vars in prop::option::of(Just("/run/vars.json")),
        vault in prop::option::of(Just("/vault/pass")),
        connection in "/[a-z]{1,6}/[a-z-]{1,10}\\.json",
        tags in prop::collection::vec("[a-z_]{1,8}", 0..3),
    ) {
        let vm = vm();
        let run = PlaybookRun {
            cert_tier: tier,
            run_extra_vars: run_vars.map(Utf8Path::new),
            vault_password_file: vault.map(Utf8Path::new),
            connection_vars: Utf8Path::new(&connection),
            ..run(&vm, &files)
        };
        let apply = Apply { playbook: "site.yml".into(), tags };
        let pinned = format!("@{connection}");
        let mut expected: Vec<String> = files.iter().map(|f| format!("@/src/boma/{f}")).collect();
        expected.push(format!("@/src/boma/{}", tier.vars_file()));
        expected.extend(run_vars.map(|f| format!("@{f}")));
        expected.push(pinned.clone());
        for argv in [apply_argv(&run, &apply), playbook_argv(&run, Utf8Path::new("tests/x.yml"))] {
            let given = extra_vars(&argv);
            prop_assert_eq!(given.last().copied(), Some(pinned.as_str()));
            prop_assert_eq!(given.iter().filter(|v| **v == pinned).count(), 1);
            prop_assert_eq!(&given, &expected);
        }
    }
}

/// A step's playbook may live outside `playbooks/` (the failure catalogue's do): the argv
/// names it where it is.
#[test]
fn a_repo_relative_playbook_is_run_from_where_it_is() {
    let vm = vm();
    let files = [Utf8PathBuf::from("overrides/catalogue.yml")];
    let apply = Apply {
        playbook: "tests/catalogue/not-enabled.yml".into(),
        tags: vec![],
    };
    let argv = apply_argv(&run(&vm, &files), &apply);
    assert_eq!(argv[2], "/src/boma/tests/catalogue/not-enabled.yml");
}
