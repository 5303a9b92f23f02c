//! The arguments of `ansible-playbook` (the program name excluded) for the profile's playbook
//! runs and for any other playbook run against the test VM (a verify playbook). `--limit` is
//! always the test VM, taken from the checked [`VmName`], so that even an inventory mix-up
//! cannot widen a run beyond it, and the harness's connection file is always the last `-e`.

use camino::{Utf8Path, Utf8PathBuf};

use crate::cert::CertTier;
use crate::profile::Apply;
use boma_name::VmName;

/// Where profile playbooks live, relative to the repo root.
pub const PLAYBOOKS_DIR: &str = "playbooks";

/// What every `ansible-playbook` run of one test shares.
#[derive(Debug, Clone, Copy)]
pub struct PlaybookRun<'a> {
    pub repo_root: &'a Utf8Path,
    /// The transient inventory directory (`hosts.yml` + `group_vars`).
    pub inventory_dir: &'a Utf8Path,
    pub vm: &'a VmName,
    /// The profile's variable files, relative to the repo root.
    pub extra_vars_files: &'a [Utf8PathBuf],
    pub cert_tier: CertTier,
    /// Variables of this run (a JSON file), applied after the profile's and the tier's.
    pub run_extra_vars: Option<&'a Utf8Path>,
    pub vault_password_file: Option<&'a Utf8Path>,
    /// The harness's connection file ([`crate::render_connection_vars`]): always the last
    /// `-e @file`, so it outranks every variable of the run, every host's included.
    pub connection_vars: &'a Utf8Path,
}

/// `ansible-playbook` arguments for one of the profile's playbook runs.
pub fn apply_argv(run: &PlaybookRun<'_>, apply: &Apply) -> Vec<String> {
    let playbook = run.repo_root.join(apply.playbook_path());
    let tags = (!apply.tags.is_empty()).then(|| apply.tags.join(","));
    argv(run, &playbook, tags)
}

/// `ansible-playbook` arguments for the whole of `playbook` (relative to the repo root), such
/// as a profile's verify playbook.
pub fn playbook_argv(run: &PlaybookRun<'_>, playbook: &Utf8Path) -> Vec<String> {
    argv(run, &run.repo_root.join(playbook), None)
}

fn argv(run: &PlaybookRun<'_>, playbook: &Utf8Path, tags: Option<String>) -> Vec<String> {
    // A trailing `/` says "this inventory source is a directory" (hosts.yml plus group_vars).
    let inventory = format!("{}/", run.inventory_dir.as_str().trim_end_matches('/'));
    let mut args = vec!["-i".to_owned(), inventory, playbook.to_string()];
    args.extend(["--limit".to_owned(), run.vm.to_string()]);
    if let Some(tags) = tags {
        args.extend(["--tags".to_owned(), tags]);
    }
    // Later `-e` files win: profile overrides, then the cert tier, then this run's own values,
    // then, last of all, the harness's connection.
    let var_files = run
        .extra_vars_files
        .iter()
        .map(|f| run.repo_root.join(f))
        .chain([run.repo_root.join(run.cert_tier.vars_file())])
        .chain(run.run_extra_vars.map(Utf8Path::to_owned))
        .chain([run.connection_vars.to_owned()]);
    for file in var_files {
        args.extend(["-e".to_owned(), format!("@{file}")]);
    }
    if let Some(file) = run.vault_password_file {
        args.extend(["--vault-password-file".to_owned(), file.to_string()]);
    }
    args
}
