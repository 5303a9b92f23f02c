//! The arguments of `ansible-playbook` (the program name excluded) for the profile's playbook
//! runs and for any other playbook run against the test VM (a verify playbook). `--limit` is
//! always the test VM, taken from the checked [`VmName`], so that even an inventory mix-up
//! cannot widen a run beyond it.

use camino::{Utf8Path, Utf8PathBuf};

use crate::cert::CertTier;
use crate::profile::Apply;
use boma_name::VmName;

/// Where profile playbooks live, relative to the repo root.
pub const PLAYBOOKS_DIR: &str = "playbooks";

/// How a playbook run keeps Ansible's connection on the test VM.
///
/// Extra vars outrank every other variable source, so the harness's connection variables
/// (written by [`crate::render_connection_vars`]) passed as the last `-e @file` cannot be
/// overridden by anything. But extra vars bind *every* host a run connects to, the `localhost`
/// of a `delegate_to: localhost` task included: such a task would then ssh into the VM instead
/// of running on the controller (checked with ansible-core 2.18). A playbook with tasks on the
/// controller (verify, whose load-bearing probe must run there) therefore leaves the
/// connection to the transient inventory's host vars, which outrank every group var, and to
/// [`crate::refuse_connection_vars`] over the files the run passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionPin<'a> {
    /// The connection vars file, passed after every other `-e @file`: for playbooks that run
    /// no task on the controller (the profile's applies).
    LastExtraVars(&'a Utf8Path),
    /// Only the transient inventory's host vars: for playbooks with controller-side tasks.
    HostVars,
}

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
    pub connection: ConnectionPin<'a>,
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
    let pinned = match run.connection {
        ConnectionPin::LastExtraVars(file) => Some(file.to_owned()),
        ConnectionPin::HostVars => None,
    };
    let var_files = run
        .extra_vars_files
        .iter()
        .map(|f| run.repo_root.join(f))
        .chain([run.repo_root.join(run.cert_tier.vars_file())])
        .chain(run.run_extra_vars.map(Utf8Path::to_owned))
        .chain(pinned);
    for file in var_files {
        args.extend(["-e".to_owned(), format!("@{file}")]);
    }
    if let Some(file) = run.vault_password_file {
        args.extend(["--vault-password-file".to_owned(), file.to_string()]);
    }
    args
}
