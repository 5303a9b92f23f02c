//! What legitimately differs between two boots of a healthy host, as glob patterns over a
//! finding's display text (`unit_inactive apt-daily.service`), each with why; and a profile's
//! own patterns on top.

use crate::finding::{Finding, Reason};
use crate::model::{ListenAddress, PortRange};

/// One built-in pattern and why it is safe to ignore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinIgnore {
    pub pattern: &'static str,
    pub why: &'static str,
}

/// Differences between two boots of a healthy Debian 13 host, from real captures (the
/// fixtures under `tests/fixtures/`). Each is as narrow as what a healthy boot really
/// changes: a pattern that also matched something a unit's configuration makes (a data mount,
/// WireGuard's port, the main interface's link-local route) would hide its loss. Two further
/// rules are about the state rather than its text and live in the diff itself: the loopback
/// sockets of [`RANDOM_PORT_HOLDERS`] bound in their random range, and routes learned with
/// a lifetime (router advertisements).
pub const BUILTIN_IGNORES: &[BuiltinIgnore] = &[
    // Logins: the capture itself arrives over SSH, so a session exists at both captures, under
    // a new number each boot.
    BuiltinIgnore {
        pattern: "unit_* session-*.scope",
        why: "login sessions are numbered anew on every boot",
    },
    BuiltinIgnore {
        pattern: "unit_* user@*.service",
        why: "a user's service manager runs while that user is logged in",
    },
    BuiltinIgnore {
        pattern: "unit_* user-runtime-dir@*.service",
        why: "a user's /run/user directory exists while that user is logged in",
    },
    BuiltinIgnore {
        pattern: "mount_* /run/user/*",
        why: "a user's runtime directory is mounted while that user is logged in",
    },
    // Units a timer starts: they run for a while, then are inactive until the next time.
    BuiltinIgnore {
        pattern: "unit_* apt-daily.service",
        why: "started by apt-daily.timer; the timer itself is compared",
    },
    BuiltinIgnore {
        pattern: "unit_* apt-daily-upgrade.service",
        why: "started by apt-daily-upgrade.timer; the timer itself is compared",
    },
    BuiltinIgnore {
        pattern: "unit_* dpkg-db-backup.service",
        why: "started by dpkg-db-backup.timer",
    },
    BuiltinIgnore {
        pattern: "unit_* e2scrub_all.service",
        why: "started by e2scrub_all.timer",
    },
    BuiltinIgnore {
        pattern: "unit_* e2scrub_reap.service",
        why: "runs once at boot to remove stale e2scrub snapshots, then exits",
    },
    BuiltinIgnore {
        pattern: "unit_* fstrim.service",
        why: "started by fstrim.timer",
    },
    BuiltinIgnore {
        pattern: "unit_* logrotate.service",
        why: "started by logrotate.timer",
    },
    BuiltinIgnore {
        pattern: "unit_* man-db.service",
        why: "started by man-db.timer and by package installs",
    },
    BuiltinIgnore {
        pattern: "unit_* systemd-tmpfiles-clean.service",
        why: "started by systemd-tmpfiles-clean.timer",
    },
    BuiltinIgnore {
        pattern: "unit_* phpsessionclean.service",
        why: "started by phpsessionclean.timer",
    },
    // D-Bus-activated daemons that exit after about 30 s idle: whether one is up at a capture
    // says only whether something asked it a question just before (Ansible's `hostname`
    // fact, `hostnamectl`). Only coming and going is ignored: a failure of one still shows.
    BuiltinIgnore {
        pattern: "unit_inactive systemd-hostnamed.service",
        why: "started on demand over D-Bus and exits when idle",
    },
    BuiltinIgnore {
        pattern: "unit_appeared systemd-hostnamed.service",
        why: "started on demand over D-Bus and exits when idle",
    },
    BuiltinIgnore {
        pattern: "unit_inactive systemd-localed.service",
        why: "started on demand over D-Bus and exits when idle, like systemd-hostnamed",
    },
    BuiltinIgnore {
        pattern: "unit_appeared systemd-localed.service",
        why: "started on demand over D-Bus and exits when idle, like systemd-hostnamed",
    },
    BuiltinIgnore {
        pattern: "unit_inactive systemd-timedated.service",
        why: "started on demand over D-Bus and exits when idle, like systemd-hostnamed",
    },
    BuiltinIgnore {
        pattern: "unit_appeared systemd-timedated.service",
        why: "started on demand over D-Bus and exits when idle, like systemd-hostnamed",
    },
    // Units that run only when something changed, or only on the first boot.
    BuiltinIgnore {
        pattern: "unit_* ldconfig.service",
        why: "runs only when /usr is newer than /etc/.updated (ConditionNeedsUpdate): on the first boot of a new image, not the next",
    },
    BuiltinIgnore {
        pattern: "unit_* systemd-hwdb-update.service",
        why: "runs only when /usr is newer than /etc/.updated (ConditionNeedsUpdate), like ldconfig.service",
    },
    BuiltinIgnore {
        pattern: "unit_* systemd-journal-catalog-update.service",
        why: "runs only when /usr is newer than /var/.updated (ConditionNeedsUpdate), like ldconfig.service",
    },
    BuiltinIgnore {
        pattern: "unit_* systemd-sysusers.service",
        why: "runs only when /usr is newer than /etc/.updated (ConditionNeedsUpdate), like ldconfig.service",
    },
    BuiltinIgnore {
        pattern: "unit_* systemd-update-done.service",
        why: "runs only when /usr is newer than /etc/.updated or /var/.updated (ConditionNeedsUpdate), like ldconfig.service",
    },
    BuiltinIgnore {
        pattern: "unit_* systemd-machine-id-commit.service",
        why: "runs only while /etc/machine-id is still transient, on the first boot",
    },
    BuiltinIgnore {
        pattern: "unit_* systemd-firstboot.service",
        why: "runs only on the first boot (ConditionFirstBoot)",
    },
    BuiltinIgnore {
        pattern: "unit_* first-boot-complete.target",
        why: "reached only on the first boot (ConditionFirstBoot)",
    },
    BuiltinIgnore {
        pattern: "unit_* systemd-fsck@*.service",
        why: "file system checks run when the boot needs them",
    },
    BuiltinIgnore {
        pattern: "unit_* systemd-fsck-root.service",
        why: "the root file system check runs when the boot needs it",
    },
    // Mounts that follow something the diff already compares.
    BuiltinIgnore {
        pattern: "mount_* /run/credentials/*",
        why: "a service's credentials are mounted while the service runs; the service is compared",
    },
    BuiltinIgnore {
        pattern: "mount_* /proc/sys/fs/binfmt_misc binfmt_misc",
        why: "mounted on first access by its automount, which is compared",
    },
    // Docker: per-container state the container itself stands for. Only what Docker mounts
    // itself: a data mount under /var/lib/docker (a volume on its own disk) is compared.
    BuiltinIgnore {
        pattern: "mount_* /run/docker/netns/* nsfs",
        why: "a container's network namespace, named anew each time it starts (askari: /run/docker/netns/371a9e81f5be before, 4fc0a952b2b5 after)",
    },
    BuiltinIgnore {
        pattern: "mount_* /var/lib/docker/overlay2/*/merged overlay",
        why: "a container's root file system, mounted by Docker while the container runs; the container is compared",
    },
    // Links: what the kernel derives from an interface's state, not from configuration. Only
    // Docker's interfaces: the main interface's link-local route is there on every boot, and
    // its loss is a loss.
    BuiltinIgnore {
        pattern: "route_* fe80::/64 dev docker0",
        why: "docker0 has its IPv6 link-local route only once a container has used it (askari: before the reboot, linkdown; not after)",
    },
    BuiltinIgnore {
        pattern: "route_* fe80::/64 dev br-*",
        why: "a Docker network's bridge has its IPv6 link-local route only once a container has used it, like docker0",
    },
    BuiltinIgnore {
        pattern: "route_* fe80::/64 dev veth*",
        why: "a container's veth is named anew each time it starts (askari: veth395b6c9 before, veth4a397a5 after)",
    },
    BuiltinIgnore {
        pattern: "listener_* udp/68 *",
        why: "the DHCP client's socket is bound to the leased address, which the network may change",
    },
    BuiltinIgnore {
        pattern: "listener_* udp/546 *",
        why: "the DHCPv6 client's socket is bound to the interface's current address",
    },
];

/// A program that binds a listening socket at a port picked at random, a new one each start,
/// and why its port is not part of the host's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomPortHolder {
    /// The process name `ss` shows.
    pub process: &'static str,
    /// Where its port is picked from.
    pub range: RandomRange,
    pub why: &'static str,
}

/// Where a [`RandomPortHolder`] gets its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomRange {
    /// The kernel's ephemeral range (`net.ipv4.ip_local_port_range`, as the capture read it).
    Ephemeral,
    /// A free privileged port from `bindresvport(3)`: libtirpc tries 600–1023, then 512–599.
    Reserved,
}

impl RandomRange {
    /// libtirpc's `bindresvport` range, both halves.
    pub const RESERVED: PortRange = PortRange {
        low: 512,
        high: 1023,
    };
}

/// The only sockets the diff skips for their port, and only on a loopback address: any other
/// listener in these ranges (WireGuard's 51820, a port a unit's configuration names, statd on
/// a public address) is compared like any other.
pub const RANDOM_PORT_HOLDERS: &[RandomPortHolder] = &[
    RandomPortHolder {
        process: "containerd",
        range: RandomRange::Ephemeral,
        why: "its streaming server listens on 127.0.0.1 at a port the kernel picks (askari: 45611 before, 37759 after)",
    },
    RandomPortHolder {
        process: "rpc.statd",
        range: RandomRange::Reserved,
        why: "NFS's status daemon binds its loopback notify socket with bindresvport (a fleet's NFS server: udp/700 before, udp/671 after)",
    },
];

/// Whether a listener of `processes` on `addresses` at `port` got its port at random: one of
/// [`RANDOM_PORT_HOLDERS`], alone, on loopback addresses only, in its range (`ephemeral` is
/// the kernel's range as the capture read it).
pub(crate) fn takes_a_random_port(
    processes: &[String],
    addresses: &[&ListenAddress],
    port: u16,
    ephemeral: PortRange,
) -> bool {
    let loopback = |address: &&ListenAddress| match address {
        ListenAddress::One(one) => one.starts_with("127.") || one == "::1",
        _ => false,
    };
    let [process] = processes else {
        return false;
    };
    RANDOM_PORT_HOLDERS.iter().any(|holder| {
        holder.process == process
            && match holder.range {
                RandomRange::Ephemeral => ephemeral.contains(port),
                RandomRange::Reserved => RandomRange::RESERVED.contains(port),
            }
    }) && addresses.iter().all(loopback)
}

/// The patterns a diff skips: built-in, plus a profile's `reboot_diff_ignore`.
#[derive(Debug, Clone)]
pub struct Ignore {
    builtin: Vec<Glob>,
    /// The profile's patterns, in its order, as written and compiled.
    profile: Vec<(String, Glob)>,
}

/// A pattern's characters, ready for [`glob_match`].
type Glob = Vec<char>;

/// Which pattern skipped a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoredBy {
    Builtin,
    /// The profile's pattern at this index of its `reboot_diff_ignore`.
    Profile(usize),
}

/// A profile's `reboot_diff_ignore` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error(
        "reboot_diff_ignore pattern {pattern:?} is blank: remove it, or write one like \"unit_inactive foo.service\""
    )]
    Blank { pattern: String },
    #[error(
        "reboot_diff_ignore pattern {pattern:?} contains {found:?}, which is not supported: only `*` and `?` are wildcards"
    )]
    Unsupported { pattern: String, found: char },
    #[error(
        "reboot_diff_ignore pattern {pattern:?} starts with {word:?}, which names no reason: start with one of {reasons}"
    )]
    UnknownReason {
        pattern: String,
        word: String,
        reasons: String,
    },
    /// A pattern that would silence a whole reason (`*`, `unit_*`, `listener_lost *`): the
    /// diff would pass whatever the reboot lost of that kind.
    #[error(
        "reboot_diff_ignore pattern {pattern:?} matches every finding of {}, whatever it is about: name what to ignore after the reason, like {example:?}",
        reasons_text(.swallowed)
    )]
    CatchAll {
        pattern: String,
        /// The reasons it silences, in [`Reason::ALL`]'s order.
        swallowed: Vec<Reason>,
        /// A pattern that names one thing, for one of them.
        example: String,
    },
}

/// `listener_lost`, `unit_failed, unit_inactive and unit_enabled`, `every reason`.
fn reasons_text(reasons: &[Reason]) -> String {
    let names: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
    match names.as_slice() {
        _ if reasons.len() == Reason::ALL.len() => "every reason".to_owned(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        [] => "no reason".to_owned(),
    }
}

impl Ignore {
    /// Only [`BUILTIN_IGNORES`].
    pub fn builtin() -> Ignore {
        Ignore {
            builtin: BUILTIN_IGNORES
                .iter()
                .map(|b| b.pattern.chars().collect())
                .collect(),
            profile: Vec::new(),
        }
    }

    /// [`BUILTIN_IGNORES`] and a profile's patterns, checked: each must be a glob (`*` any
    /// text, `?` one character) whose first word matches a reason name, and must not match
    /// every finding of a reason.
    pub fn with_patterns(patterns: &[String]) -> Result<Ignore, IgnoreError> {
        let mut ignore = Ignore::builtin();
        for pattern in patterns {
            ignore.profile.push((pattern.clone(), check(pattern)?));
        }
        Ok(ignore)
    }

    /// The profile's patterns, in its order.
    pub fn profile_patterns(&self) -> impl Iterator<Item = &str> {
        self.profile.iter().map(|(text, _)| text.as_str())
    }

    /// Which pattern matches the finding's display text, the built-in list first.
    pub fn matching(&self, finding: &Finding) -> Option<IgnoredBy> {
        let text: Vec<char> = finding.to_string().chars().collect();
        if self.builtin.iter().any(|glob| glob_match(glob, &text)) {
            return Some(IgnoredBy::Builtin);
        }
        self.profile
            .iter()
            .position(|(_, glob)| glob_match(glob, &text))
            .map(IgnoredBy::Profile)
    }

    /// Whether the finding's display text matches a pattern.
    pub fn matches(&self, finding: &Finding) -> bool {
        self.matching(finding).is_some()
    }
}

fn check(pattern: &str) -> Result<Glob, IgnoreError> {
    if pattern.trim().is_empty() {
        return Err(IgnoreError::Blank {
            pattern: pattern.to_owned(),
        });
    }
    // Character classes, braces and escapes would be read literally: refuse them rather than
    // match nothing silently.
    if let Some(found) = pattern
        .chars()
        .find(|c| matches!(c, '[' | ']' | '{' | '}' | '\\') || c.is_control())
    {
        return Err(IgnoreError::Unsupported {
            pattern: pattern.to_owned(),
            found,
        });
    }
    let word = pattern.split(' ').next().unwrap_or_default();
    let named: Vec<Reason> = reasons_named_by(word).collect();
    if named.is_empty() {
        let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        return Err(IgnoreError::UnknownReason {
            pattern: pattern.to_owned(),
            word: word.to_owned(),
            reasons: reasons.join(", "),
        });
    }
    let glob: Glob = pattern.chars().collect();
    // A subject part with no letter or digit names nothing: `route_lost * *`,
    // `listener_lost */*`, `mount_lost / *` each take every finding of their reasons.
    let names_nothing = pattern
        .split_once(' ')
        .is_some_and(|(_, subject)| !subject.chars().any(char::is_alphanumeric));
    let swallowed = if names_nothing {
        named
    } else {
        swallowed_reasons(&glob)
    };
    // The example names a unit rather than a degraded system where it can: the commonest case.
    if let Some(reason) = swallowed
        .iter()
        .copied()
        .find(|r| *r != Reason::Degraded)
        .or(swallowed.first().copied())
    {
        let example = Finding::new(reason, example_subject(reason), None).to_string();
        return Err(IgnoreError::CatchAll {
            pattern: pattern.to_owned(),
            swallowed,
            example,
        });
    }
    Ok(glob)
}

/// The reasons a pattern's first word matches (`unit_*`: every `unit_…`; `degraded:` too).
fn reasons_named_by(word: &str) -> impl Iterator<Item = Reason> {
    let word_glob: Glob = word.trim_end_matches(':').chars().collect();
    Reason::ALL
        .into_iter()
        .filter(move |r| glob_match(&word_glob, &r.as_str().chars().collect::<Vec<_>>()))
}

/// The reasons every finding of which `glob` matches, whatever the finding is about.
///
/// Tried on a subject made of a character no pattern can hold (patterns refuse control
/// characters), so only `*` and `?` can take it; a subject longer than the pattern's `?`s
/// needs a `*` to take some of it, and that `*` takes a subject of any length and text. So a
/// pattern that matches this one subject matches every subject at least as long: every
/// finding of the reason. This catches what has no space to split on: `*`, `unit_*`,
/// `listener_lost*`.
fn swallowed_reasons(glob: &[char]) -> Vec<Reason> {
    let question_marks = glob.iter().filter(|c| **c == '?').count();
    let subject = std::iter::repeat_n('\u{1}', question_marks + 1);
    Reason::ALL
        .into_iter()
        .filter(|reason| {
            let finding = Finding::new(*reason, String::new(), None).to_string();
            let text: Vec<char> = finding.chars().chain(subject.clone()).collect();
            glob_match(glob, &text)
        })
        .collect()
}

/// A subject a reason's findings have, for the refusal's example: a pattern that names it
/// silences one thing.
fn example_subject(reason: Reason) -> &'static str {
    match reason {
        Reason::Degraded => "foo.service failed",
        Reason::UnitFailed
        | Reason::UnitInactive
        | Reason::UnitDisabled
        | Reason::UnitRestarting
        | Reason::UnitAppeared
        | Reason::UnitEnabled => "foo.service",
        Reason::ListenerLost | Reason::ListenerAppeared => "tcp/9100 node_exporter",
        Reason::TableLost | Reason::TableAppeared => "inet foo",
        Reason::ChainLost | Reason::ChainChanged | Reason::ChainAppeared => "inet filter foo",
        Reason::RuleLost | Reason::RuleAppeared => "inet filter input: tcp dport 9100 accept",
        Reason::RouteLost | Reason::RouteAppeared => "198.51.100.0/24 via 10.0.2.2 dev ens2",
        Reason::MountLost | Reason::MountAppeared => "/srv/scratch tmpfs",
        Reason::ContainerLost
        | Reason::ContainerNotRunning
        | Reason::ContainerRestarting
        | Reason::ContainerAppeared => "foo",
        Reason::ProbeFailed | Reason::ProbeRecovered => "8080 refused",
        Reason::SectionLost => "containers",
    }
}

/// `*` matches any text (spaces and `/` included), `?` one character, anything else itself.
fn glob_match(glob: &[char], text: &[char]) -> bool {
    let (mut g, mut t) = (0, 0);
    // Where the last `*` was, and how much text it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((star_g, star_t)) => {
                    g = star_g + 1;
                    t = star_t + 1;
                    star = Some((star_g, star_t + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(glob: &str, text: &str) -> bool {
        glob_match(
            &glob.chars().collect::<Vec<_>>(),
            &text.chars().collect::<Vec<_>>(),
        )
    }

    fn finding(reason: Reason, subject: &str) -> Finding {
        Finding {
            reason,
            subject: subject.to_owned(),
            detail: None,
        }
    }

    #[test]
    fn globs_match_any_text_or_one_character() {
        assert!(matches(
            "unit_* session-*.scope",
            "unit_inactive session-3.scope"
        ));
        assert!(matches(
            "route_* * dev veth*",
            "route_lost fe80::/64 dev veth1a2b3c"
        ));
        assert!(matches("listener_lost udp/6?", "listener_lost udp/68"));
        assert!(matches("*", ""));
        assert!(!matches("listener_lost udp/6?", "listener_lost udp/680"));
        assert!(!matches(
            "unit_* session-*.scope",
            "unit_inactive session-3.service"
        ));
        assert!(!matches("a*b*c", "abxbx"));
    }

    #[test]
    fn builtin_patterns_are_valid() {
        for builtin in BUILTIN_IGNORES {
            assert!(check(builtin.pattern).is_ok(), "{}", builtin.pattern);
        }
    }

    #[test]
    fn an_idle_exit_of_hostnamed_is_ignored_but_its_failure_is_not() {
        // Seen in CI: a fleet peer that did not reboot lost hostnamed between two captures,
        // 30 s after Ansible's facts had woken it.
        let ignore = Ignore::builtin();
        assert!(ignore.matches(&finding(Reason::UnitInactive, "systemd-hostnamed.service")));
        assert!(ignore.matches(&finding(Reason::UnitAppeared, "systemd-hostnamed.service")));
        assert!(!ignore.matches(&finding(Reason::UnitFailed, "systemd-hostnamed.service")));
        assert!(!ignore.matches(&finding(Reason::UnitInactive, "systemd-networkd.service")));
    }

    #[test]
    fn profile_patterns_extend_the_builtin_list() {
        let custom = finding(Reason::ListenerLost, "tcp/9100 node_exporter");
        assert!(!Ignore::builtin().matches(&custom));
        let ignore = Ignore::with_patterns(&["listener_lost tcp/9100 *".to_owned()]).unwrap();
        assert!(ignore.matches(&custom));
        assert!(ignore.matches(&finding(Reason::UnitInactive, "session-4.scope")));
        assert!(!ignore.matches(&finding(Reason::ListenerLost, "tcp/9101 other")));
    }

    #[test]
    fn a_degraded_finding_matches_by_its_display() {
        let ignore = Ignore::with_patterns(&["degraded: flaky.service failed".to_owned()]).unwrap();
        assert!(ignore.matches(&finding(Reason::Degraded, "flaky.service failed")));
    }

    #[test]
    fn a_pattern_matching_every_finding_of_a_reason_is_refused() {
        for (pattern, reason) in [
            ("*", Reason::Degraded),
            ("* *", Reason::Degraded),
            ("**", Reason::Degraded),
            ("?*", Reason::Degraded),
            ("unit_*", Reason::UnitFailed),
            ("unit_inactive *", Reason::UnitInactive),
            ("unit_inactive*", Reason::UnitInactive),
            ("listener_lost *", Reason::ListenerLost),
            ("listener_lost ?*", Reason::ListenerLost),
            ("listener_lost ??*", Reason::ListenerLost),
            ("listener_* *", Reason::ListenerLost),
            ("*_lost *", Reason::ListenerLost),
            ("route_lost * *", Reason::RouteLost),
            ("listener_lost */*", Reason::ListenerLost),
            ("mount_lost / *", Reason::MountLost),
            ("listener_lost ??", Reason::ListenerLost),
            ("unit_* *.*", Reason::UnitFailed),
            ("section_lost *", Reason::SectionLost),
            ("degraded: *", Reason::Degraded),
            ("degraded*", Reason::Degraded),
            ("probe_failed *", Reason::ProbeFailed),
        ] {
            let err = Ignore::with_patterns(&[pattern.to_owned()]).unwrap_err();
            assert!(
                matches!(&err, IgnoreError::CatchAll { swallowed, .. } if swallowed.first() == Some(&reason)),
                "{pattern}: {err}"
            );
        }
    }

    #[test]
    fn a_pattern_that_names_what_it_ignores_is_accepted() {
        for pattern in [
            "listener_lost tcp/9100 *",
            "listener_lost tcp/*",
            "unit_inactive foo*.service",
            "unit_* session-*.scope",
            "* foo.service",
            "route_lost * dev wg0",
            "mount_lost /srv/scratch *",
            "degraded: flaky.service failed",
            "listener_lost */53 *",
        ] {
            assert!(
                Ignore::with_patterns(&[pattern.to_owned()]).is_ok(),
                "{pattern}"
            );
        }
    }

    /// Every refusal is one line that names the pattern and how to fix it, and none suggests
    /// `*` (the old text for an unknown reason did: "or `*`").
    #[test]
    fn a_refusal_is_one_line_and_never_suggests_a_star() {
        for pattern in ["*", "unit_*", "foo *", "unit_inactive foo[1].service", " "] {
            let err = Ignore::with_patterns(&[pattern.to_owned()]).unwrap_err();
            let text = err.to_string();
            let quoted = format!("{pattern:?}");
            assert!(text.contains(&quoted), "{text}");
            assert!(!text.contains('\n'), "{text}");
            let rest = text.replacen(&quoted, "", 1);
            let unsupported = rest.contains("only `*` and `?` are wildcards");
            assert!(
                unsupported || !rest.contains('*'),
                "suggests a star: {text}"
            );
        }
        let refusal = |pattern: &str| {
            Ignore::with_patterns(&[pattern.to_owned()])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refusal("listener_lost *"),
            "reboot_diff_ignore pattern \"listener_lost *\" matches every finding of \
             listener_lost, whatever it is about: name what to ignore after the reason, like \
             \"listener_lost tcp/9100 node_exporter\""
        );
        assert_eq!(
            refusal("*"),
            "reboot_diff_ignore pattern \"*\" matches every finding of every reason, whatever \
             it is about: name what to ignore after the reason, like \"unit_failed foo.service\""
        );
        assert_eq!(
            refusal("degraded*"),
            "reboot_diff_ignore pattern \"degraded*\" matches every finding of degraded, \
             whatever it is about: name what to ignore after the reason, like \
             \"degraded: foo.service failed\""
        );
        assert!(
            refusal("unit_*").contains(
                "every finding of unit_failed, unit_inactive, unit_disabled, unit_restarting, \
                 unit_appeared and unit_enabled,"
            ),
            "{}",
            refusal("unit_*")
        );
    }

    #[test]
    fn matching_names_the_profile_pattern_and_prefers_the_builtin_list() {
        let ignore = Ignore::with_patterns(&[
            "unit_inactive web.service".to_owned(),
            "unit_inactive session-*.scope".to_owned(),
        ])
        .unwrap();
        assert_eq!(
            ignore.matching(&finding(Reason::UnitInactive, "web.service")),
            Some(IgnoredBy::Profile(0))
        );
        assert_eq!(
            ignore.matching(&finding(Reason::UnitInactive, "session-2.scope")),
            Some(IgnoredBy::Builtin)
        );
        assert_eq!(
            ignore.matching(&finding(Reason::UnitInactive, "db.service")),
            None
        );
    }

    #[test]
    fn unusable_patterns_are_refused_by_name() {
        let refused = |p: &str| Ignore::with_patterns(&[p.to_owned()]).unwrap_err();
        assert_eq!(
            refused("  "),
            IgnoreError::Blank {
                pattern: "  ".to_owned()
            }
        );
        assert_eq!(
            refused("unit_inactive foo[12].service"),
            IgnoreError::Unsupported {
                pattern: "unit_inactive foo[12].service".to_owned(),
                found: '['
            }
        );
        let err = refused("unit_inactiv foo.service");
        assert!(matches!(&err, IgnoreError::UnknownReason { word, .. } if word == "unit_inactiv"));
        assert!(
            err.to_string().contains("\"unit_inactiv foo.service\""),
            "{err}"
        );
        assert!(Ignore::with_patterns(&["* foo.service".to_owned()]).is_ok());
    }
}
