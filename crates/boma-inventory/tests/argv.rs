//! Snapshots of the `ansible-playbook` argv for the apply and verify steps.

use std::collections::BTreeSet;

use boma_inventory::{Apply, CertTier, PlaybookRun, VmName, apply_argv, playbook_argv};
use camino::{Utf8Path, Utf8PathBuf};

const VM: &str = "boma-it-20261125-0312-askari";

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

#[test]
fn verify_argv_snapshot() {
    let vm = vm();
    let files = [Utf8PathBuf::from("overrides/askari.yml")];
    let argv = playbook_argv(
        &run(&vm, &files),
        camino::Utf8Path::new("/repo/tests/verify/askari.yml"),
    );
    assert!(!argv.contains(&"--tags".to_owned()));
    insta::assert_snapshot!("verify_argv", lines(&argv));
}
