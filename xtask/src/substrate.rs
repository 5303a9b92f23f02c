//! `cargo xtask substrate`: install what the integration cycle needs on this machine, the
//! first time — by applying the `integration_test` role to it, exactly as CI did by hand
//! (`.venv/bin/ansible-playbook -i inventories/ci/hosts.yml playbooks/workstation.yml`) — and
//! nothing at all once everything is there. `make test-integration` runs it before the cycle;
//! nothing else installs anything (`cargo xtask doctor` only looks).

use boma_exec::say;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use boma_doctor::MissingTool;
use boma_exec::{CmdExt as _, ExecError};
use camino::Utf8Path;
use nix::unistd::{Group, Uid, User};
use xshell::{Shell, cmd};

/// The inventory that targets the machine it runs on (`localhost`, local connection).
pub const INVENTORY: &str = "inventories/ci/hosts.yml";
/// The play that applies the `integration_test` role to the `control` group.
pub const PLAYBOOK: &str = "playbooks/workstation.yml";
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

#[derive(Debug, thiserror::Error)]
pub enum SubstrateError {
    #[error(
        "the Ansible venv is missing, and the substrate is installed by an Ansible role: run `make venv` first (`make test-integration` does)"
    )]
    NoVenv,
    #[error(
        "installing the VM substrate needs root, and this user is neither root nor has sudo: as root, run: {command}"
    )]
    NoSudo { command: String },
    #[error(
        "installing the VM substrate needs root, and sudo asks for a password with no terminal to type it into: run by hand: {command}"
    )]
    SudoNeedsPasswordNoTerminal { command: String },
    #[error(
        "installing the VM substrate needs root, and sudo asks for a password, which this command cannot type for you: run `sudo -v` (sudo then remembers it for a while) and run this again, or run by hand: {command}"
    )]
    SudoNeedsPassword { command: String },
    #[error(
        "applying the integration_test role failed ({}): its output is above; fix the cause and run `cargo xtask substrate` again",
        describe_code(*.code)
    )]
    Playbook { code: Option<i32> },
    #[error(
        "the integration_test role ran, yet {} still missing: add the package to integration_test__packages (roles/integration_test/defaults/main.yml)",
        describe_missing(.missing)
    )]
    StillMissing { missing: Vec<MissingTool> },
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl SubstrateError {
    /// 2 when nothing was changed (a prerequisite is missing), 128+n when interrupted, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            SubstrateError::NoVenv
            | SubstrateError::NoSudo { .. }
            | SubstrateError::SudoNeedsPasswordNoTerminal { .. }
            | SubstrateError::SudoNeedsPassword { .. } => 2,
            SubstrateError::Exec(e) => e.interrupted().map_or(1, |i| i.exit_code()),
            SubstrateError::Playbook { .. } | SubstrateError::StillMissing { .. } => 1,
        }
    }
}

fn describe_code(code: Option<i32>) -> String {
    code.map_or_else(
        || "killed by a signal".to_owned(),
        |c| format!("exit status {c}"),
    )
}

fn describe_missing(missing: &[MissingTool]) -> String {
    let programs: Vec<String> = missing
        .iter()
        .map(|m| format!("{} ({})", m.program, m.package))
        .collect();
    let verb = if missing.len() == 1 { "is" } else { "are" };
    format!("{} {verb}", programs.join(", "))
}

/// How this process can become root for the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Root,
    PasswordlessSudo,
    SudoNeedsPassword,
    NoSudo,
}

/// How the playbook runs, once it is clear that it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Become {
    /// As root: the play's `become` needs no sudo.
    AsRoot,
    /// As `user`, through passwordless sudo; the role gives `user` the libvirt and kvm groups.
    Sudo { user: String },
}

/// Whether and how the role can run, from how this process can get root and whether a
/// terminal is attached. A refusal carries the exact command to run by hand. Pure.
pub fn plan_become(
    privilege: Privilege,
    terminal: bool,
    repo: &Utf8Path,
    user: &str,
) -> Result<Become, SubstrateError> {
    let by_hand = |extra: &[&str]| {
        let mut args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        args.extend(users_var(user).iter().map(|a| shell_word(a)));
        args.extend(["-i".to_owned(), INVENTORY.to_owned(), PLAYBOOK.to_owned()]);
        format!(
            "cd {} && .venv/bin/ansible-playbook {}",
            shell_word(repo.as_str()),
            args.join(" ")
        )
    };
    match privilege {
        Privilege::Root => Ok(Become::AsRoot),
        Privilege::PasswordlessSudo => Ok(Become::Sudo {
            user: user.to_owned(),
        }),
        Privilege::NoSudo => Err(SubstrateError::NoSudo {
            command: by_hand(&[]),
        }),
        Privilege::SudoNeedsPassword if terminal => Err(SubstrateError::SudoNeedsPassword {
            command: by_hand(&["--become", "--ask-become-pass"]),
        }),
        Privilege::SudoNeedsPassword => Err(SubstrateError::SudoNeedsPasswordNoTerminal {
            command: by_hand(&["--become", "--ask-become-pass"]),
        }),
    }
}

/// The extra variable that gives `user` the libvirt and kvm groups (the role's default list
/// names the project's own users; a newcomer is not among them).
fn users_var(user: &str) -> Vec<String> {
    let value = serde_json::json!({ "integration_test__users": [user] });
    vec!["-e".to_owned(), value.to_string()]
}

/// `ansible-playbook`'s arguments for running the role with `escalation`. Pure.
pub fn playbook_args(escalation: &Become) -> Vec<String> {
    let mut args = Vec::new();
    if let Become::Sudo { user } = escalation {
        args.push("--become".to_owned());
        args.extend(users_var(user));
    }
    args.extend(["-i".to_owned(), INVENTORY.to_owned(), PLAYBOOK.to_owned()]);
    args
}

/// `word` quoted for a POSIX shell when it needs it, for commands printed to copy.
fn shell_word(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c));
    if plain && !word.is_empty() {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Install the substrate when a program of it is missing; say what and why, run the role
/// (its output streamed to stderr), check again. A no-op when everything is present.
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
    let escalation = plan_become(privilege(sh)?, std::io::stdin().is_terminal(), repo, &user)?;
    say!(
        "installing the VM substrate by applying the integration_test role to this machine ({PLAYBOOK}) …"
    );
    let args = playbook_args(&escalation);
    let _dir = sh.push_dir(repo);
    let out = xshell::cmd!(sh, "{program} {args...}")
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

/// `cargo xtask substrate`: [`ensure`], said on stderr; exit 0 when the substrate is there
/// and usable by this login, 2 when a prerequisite (or a new login) is missing, 1 when the
/// role failed.
pub fn substrate(sh: &Shell, repo: &Utf8Path) -> ExitCode {
    match ensure(sh, repo) {
        Ok(SubstrateOutcome::Present) => {
            say!("substrate: present, nothing to install");
            ExitCode::SUCCESS
        }
        Ok(SubstrateOutcome::Installed { packages, relogin }) => {
            say!("substrate: installed ({})", packages.join(" "));
            match relogin {
                None => ExitCode::SUCCESS,
                Some(user) => {
                    say!(
                        "substrate: {user} now belongs to the libvirt and kvm groups, which apply from the next login (the image cache is root:libvirt): log out and in again, then run the same command again"
                    );
                    ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            say!("error: {}", boma_exec::redact::redact(&e.to_string()));
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "/home/ada/src/boma";

    #[test]
    fn root_runs_the_role_as_ci_did() {
        let escalation = plan_become(Privilege::Root, false, Utf8Path::new(REPO), "root").unwrap();
        assert_eq!(escalation, Become::AsRoot);
        assert_eq!(
            playbook_args(&escalation),
            [
                "-i",
                "inventories/ci/hosts.yml",
                "playbooks/workstation.yml"
            ]
        );
    }

    #[test]
    fn passwordless_sudo_becomes_root_and_gives_the_user_the_groups() {
        let escalation = plan_become(
            Privilege::PasswordlessSudo,
            false,
            Utf8Path::new(REPO),
            "ada",
        )
        .unwrap();
        assert_eq!(
            playbook_args(&escalation),
            [
                "--become",
                "-e",
                r#"{"integration_test__users":["ada"]}"#,
                "-i",
                "inventories/ci/hosts.yml",
                "playbooks/workstation.yml"
            ]
        );
    }

    #[test]
    fn a_sudo_password_without_a_terminal_is_refused_with_the_command_to_run() {
        let err = plan_become(
            Privilege::SudoNeedsPassword,
            false,
            Utf8Path::new(REPO),
            "ada",
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(!text.contains('\n'), "one line: {text}");
        assert!(
            text.ends_with(
                r#"run by hand: cd /home/ada/src/boma && .venv/bin/ansible-playbook --become --ask-become-pass -e '{"integration_test__users":["ada"]}' -i inventories/ci/hosts.yml playbooks/workstation.yml"#
            ),
            "{text}"
        );
    }

    #[test]
    fn a_sudo_password_at_a_terminal_suggests_sudo_v_too() {
        let err = plan_become(
            Privilege::SudoNeedsPassword,
            true,
            Utf8Path::new(REPO),
            "ada",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("run `sudo -v`"), "{text}");
        assert!(text.contains("--ask-become-pass"), "{text}");
    }

    #[test]
    fn no_sudo_asks_for_root() {
        let err = plan_become(
            Privilege::NoSudo,
            true,
            Utf8Path::new("/src/my boma"),
            "ada",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("as root, run: cd '/src/my boma' && .venv/bin/ansible-playbook -e"),
            "{text}"
        );
        assert!(!text.contains("--become"), "{text}");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(
            shell_word("inventories/ci/hosts.yml"),
            "inventories/ci/hosts.yml"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn still_missing_names_programs_and_packages() {
        let err = SubstrateError::StillMissing {
            missing: vec![MissingTool {
                program: "nft",
                package: "nftables".into(),
                why: "",
            }],
        };
        assert!(
            err.to_string().contains("nft (nftables) is still missing"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 1);
    }
}
