//! The real inventory as Ansible itself reads it: `ansible-inventory --list` from the
//! repository's venv, whose JSON [`boma_inventory::Fleet::from_ansible_list`] turns into the
//! fleet (names, addresses routed away, the group hierarchy). No parser of ours stands between
//! Ansible and the routes.
//!
//! Ansible skips, with a warning and exit 0, an inventory source none of its plugins can parse;
//! here that is fatal ([`UNPARSED_IS_FATAL`]): a file that hides its hosts from the harness could
//! hide a production host from the routes.

use std::time::Duration;

use boma_exec::CmdExt;
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use crate::error::HarnessError;

/// Settings that make an inventory source Ansible cannot parse an error instead of a warning.
pub const UNPARSED_IS_FATAL: [(&str, &str); 2] = [
    ("ANSIBLE_INVENTORY_UNPARSED_FAILED", "True"),
    ("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "True"),
];

/// A dynamic inventory (a script, a cloud's plugin) may take a while; a static one takes
/// well under a second.
const LIST_TIMEOUT: Duration = Duration::from_secs(120);

/// `ansible-inventory` beside the `ansible-playbook` the harness runs (the venv's, else
/// whatever is on PATH): one Ansible reads the inventory and plays on it.
pub fn program(repo: &Utf8Path) -> Utf8PathBuf {
    crate::ansible::program(repo).with_file_name("ansible-inventory")
}

/// `ansible-inventory`'s arguments (the program excluded): the whole of `inventory`, its
/// variables merged per host as a play sees them (no `--export`). The vault password, when
/// the run has one, decrypts a whole-file vault in the inventory's `group_vars` as the run's
/// playbooks will; inline vault values stay encrypted in the listing either way. Pure.
pub fn list_args(inventory: &Utf8Path, vault_password_file: Option<&Utf8Path>) -> Vec<String> {
    let mut args = vec!["-i".to_owned(), inventory.to_string(), "--list".to_owned()];
    if let Some(file) = vault_password_file {
        args.extend(["--vault-password-file".to_owned(), file.to_string()]);
    }
    args
}

/// What `ansible-inventory --list` prints for `inventory`, run in `repo` with its config. A
/// failure (an unparsable source, a whole-file vault without its password) is a refusal: it
/// happens in preflight, before anything is created.
pub fn list(
    sh: &Shell,
    repo: &Utf8Path,
    inventory: &Utf8Path,
    vault_password_file: Option<&Utf8Path>,
) -> Result<String, HarnessError> {
    let program = program(repo);
    let args = list_args(inventory, vault_password_file);
    let _dir = sh.push_dir(repo);
    // The environment a sibling change scrubs for every Ansible process (an allow-list plus
    // what the harness sets) replaces these `env` calls; `UNPARSED_IS_FATAL` joins what it sets.
    let mut run = cmd!(sh, "{program} {args...}")
        .exec()
        .timeout(LIST_TIMEOUT)
        .env("ANSIBLE_CONFIG", repo.join("ansible.cfg"))
        .env("ANSIBLE_NOCOLOR", "1");
    for (key, value) in UNPARSED_IS_FATAL {
        run = run.env(key, value);
    }
    run.read().map_err(|e| match e.interrupted() {
        Some(_) => HarnessError::Exec(e),
        None => HarnessError::Refused(format!(
            "ansible-inventory cannot read the real inventory {inventory}: fix what it says \
             there, or check it with `{program} -i {inventory} --list`: {e}"
        )),
    })
}
