//! Whether and how the role can run, and with which arguments. Pure: how this process can get
//! root, whether a terminal is attached, the repository and the user come from the caller.

use camino::Utf8Path;

use crate::SubstrateError;

/// The inventory that targets the machine it runs on (`localhost`, local connection).
pub const INVENTORY: &str = "inventories/ci/hosts.yml";
/// The play that applies the `integration_test` role to the `control` group.
pub const PLAYBOOK: &str = "playbooks/workstation.yml";

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
/// terminal is attached. A refusal carries the exact command to run by hand.
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

/// `ansible-playbook`'s arguments for running the role with `escalation`.
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
        assert!(err.refused());
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
        assert!(err.refused());
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
}
