//! The effect: find the substrate's missing programs, run the role (its output streamed to
//! stderr), check again. A no-op when everything is present.

use std::io::IsTerminal as _;
use std::time::Duration;

use boma_exec::{CmdExt as _, ExecError, say};
use camino::Utf8Path;
use nix::unistd::{Group, Uid, User};
use xshell::{Shell, cmd};

use crate::SubstrateError;
use crate::plan::{self, Become, PLAYBOOK, Privilege};

/// The groups the role gives a user: the image cache is `root:libvirt 2775`, `/dev/kvm` the
/// kvm group's.
const GROUPS: [&str; 2] = ["libvirt", "kvm"];
/// `sudo -n true` answers at once, or fails at once wanting a password.
const SUDO_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubstrateOutcome {
    /// Every program was already there: nothing was installed.
    Present,
    /// The role ran and every program is there now.
    Installed {
        /// The Debian packages that were missing.
        packages: Vec<String>,
        /// The user the role just added to the libvirt and kvm groups, which this login
        /// does not have yet: the cycle cannot write the image cache before a new login.
        relogin: Option<String>,
    },
}

/// Install the substrate when a program of it is missing; say what and why, run the role,
/// check again.
pub fn ensure(sh: &Shell, repo: &Utf8Path) -> Result<SubstrateOutcome, SubstrateError> {
    let codename = boma_doctor::debian_codename();
    let missing = boma_doctor::missing_substrate(&boma_doctor::locate_tools(), codename.as_deref());
    if missing.is_empty() {
        return Ok(SubstrateOutcome::Present);
    }
    for tool in &missing {
        say!(
            "substrate: {} is missing ({}): {}",
            tool.program,
            tool.package,
            tool.why
        );
    }
    let program = repo.join(boma_doctor::VENV_ANSIBLE_PLAYBOOK);
    if !program.is_file() {
        return Err(SubstrateError::NoVenv);
    }
    let user = current_user();
    let escalation =
        plan::plan_become(privilege(sh)?, std::io::stdin().is_terminal(), repo, &user)?;
    say!(
        "installing the VM substrate by applying the integration_test role to this machine ({PLAYBOOK}) …"
    );
    let args = plan::playbook_args(&escalation);
    let _dir = sh.push_dir(repo);
    let out = cmd!(sh, "{program} {args...}")
        .exec()
        .stream()
        .allow_fail()
        // The repository's config (roles_path) whatever the caller's environment says.
        .env("ANSIBLE_CONFIG", repo.join("ansible.cfg"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    if !out.success() {
        return Err(SubstrateError::Playbook {
            code: out.status.code(),
        });
    }
    let still = boma_doctor::missing_substrate(&boma_doctor::locate_tools(), codename.as_deref());
    if !still.is_empty() {
        return Err(SubstrateError::StillMissing { missing: still });
    }
    let mut packages: Vec<String> = Vec::new();
    for tool in missing {
        if !packages.contains(&tool.package) {
            packages.push(tool.package);
        }
    }
    let relogin = match escalation {
        Become::Sudo { user } if !GROUPS.iter().all(|g| in_group(g)) => Some(user),
        _ => None,
    };
    Ok(SubstrateOutcome::Installed { packages, relogin })
}

/// How this process can get root: it is root, or sudo works without a password, or sudo
/// wants one, or there is no sudo.
fn privilege(sh: &Shell) -> Result<Privilege, ExecError> {
    if Uid::effective().is_root() {
        return Ok(Privilege::Root);
    }
    if !boma_exec::on_path("sudo") {
        return Ok(Privilege::NoSudo);
    }
    let out = cmd!(sh, "sudo -n true")
        .exec()
        .quiet()
        .allow_fail()
        .timeout(SUDO_CHECK_TIMEOUT)
        .run();
    match out {
        Ok(out) if out.success() => Ok(Privilege::PasswordlessSudo),
        Err(e) if e.interrupted().is_some() => Err(e),
        _ => Ok(Privilege::SudoNeedsPassword),
    }
}

fn current_user() -> String {
    let uid = Uid::current();
    User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// Whether this process already holds group `name` (a group added by the role applies only
/// from the next login).
fn in_group(name: &str) -> bool {
    let Some(group) = Group::from_name(name).ok().flatten() else {
        return false;
    };
    nix::unistd::getgroups().is_ok_and(|gids| gids.contains(&group.gid))
        || nix::unistd::getegid() == group.gid
}
