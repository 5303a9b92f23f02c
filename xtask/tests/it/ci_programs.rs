//! Every program CI's scripts call is installed before it is used: by the `integration_test`
//! role (which the first `make test-integration` applies), by `.ci/run`'s prerequisite step, or
//! by Debian's base system. The tables below are the line-by-line reading of `.ci/run` and
//! `.ci/libvirt-netns`; a program added to a script belongs in its table.

use crate::support::*;

/// Where a program comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A package of the integration_test role.
    Role(&'static str),
    /// A package `.ci/run` installs before its first `make`.
    CiRun(&'static str),
    /// A package of every Debian system (Essential or Priority required).
    Base(&'static str),
    /// Built by cargo from this repository, or part of it.
    Repo,
    /// Given on the machine: Rust through rustup (Debian's cargo is too old for edition 2024).
    Rustup,
}

use Source::{Base, CiRun, Repo, Role, Rustup};

/// `.ci/run`, line by line (bash itself, from Debian's base system, and its builtins left out).
const CI_RUN: &[(&str, Source)] = &[
    ("dirname", Base("coreutils")),
    ("ip", Role("iproute2")),
    ("awk", Base("mawk")),
    ("apt-get", Base("apt")),
    ("make", CiRun("make")),
    ("cargo", Rustup),
    ("pgrep", Role("procps")),
    ("ls", Base("coreutils")),
    (".ci/libvirt-netns", Repo),
    ("target/debug/xtask", Repo),
    ("target/debug/vm-suite", Repo),
];

/// `.ci/libvirt-netns`, line by line (bash itself and its builtins left out). libvirtd itself runs
/// dnsmasq (dnsmasq-base) and iptables (iptables) for its NAT network: both in the role.
const LIBVIRT_NETNS: &[(&str, Source)] = &[
    ("ip", Role("iproute2")),
    ("mkdir", Base("coreutils")),
    ("cp", Base("coreutils")),
    ("cat", Base("coreutils")),
    ("rm", Base("coreutils")),
    ("seq", Base("coreutils")),
    ("sleep", Base("coreutils")),
    ("grep", Base("grep")),
    ("sysctl", Role("procps")),
    ("nft", Role("nftables")),
    ("virtlogd", Role("libvirt-daemon-system")),
    ("libvirtd", Role("libvirt-daemon-system")),
    ("virsh", Role("libvirt-clients")),
];

/// Debian's packages that every installation has (Essential: yes, or Priority: required),
/// even a minimal container: the only ones a script may use without installing them.
const DEBIAN_BASE: &[&str] = &["bash", "coreutils", "grep", "apt", "mawk"];

fn ci_run_packages() -> Vec<String> {
    read(".ci/run")
        .lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("apt-get install"))
        .flat_map(|rest| rest.split_whitespace().filter(|w| !w.starts_with('-')))
        .map(str::to_owned)
        .collect()
}

/// Whether `program` occurs as a word in the code (not the comments) of `script`.
fn calls(script: &str, program: &str) -> bool {
    let boundary =
        |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || "-_./".contains(c)));
    script
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .any(|line| {
            line.match_indices(program).any(|(at, _)| {
                boundary(line[..at].chars().next_back())
                    && boundary(line[at + program.len()..].chars().next())
            })
        })
}

fn check(script_path: &str, table: &[(&str, Source)]) {
    let script = read(script_path);
    let role = role_packages();
    let ci_run = ci_run_packages();
    for (program, from) in table {
        assert!(
            calls(&script, program),
            "{script_path} no longer calls {program}: remove it from the table"
        );
        match from {
            Role(package) => assert!(
                role.iter().any(|p| p == package),
                "{script_path} calls {program}, from {package}, which the integration_test role does not install"
            ),
            CiRun(package) => assert!(
                ci_run.iter().any(|p| p == package),
                "{script_path} calls {program}, from {package}, which .ci/run does not install"
            ),
            Base(package) => assert!(
                DEBIAN_BASE.contains(package),
                "{script_path} calls {program}, from {package}, which not every Debian machine has: install it in the integration_test role"
            ),
            Repo | Rustup => {}
        }
    }
}

#[test]
fn every_program_of_ci_run_is_installed_before_use() {
    check(".ci/run", CI_RUN);
}

#[test]
fn every_program_of_libvirt_netns_is_installed_before_use() {
    check(".ci/libvirt-netns", LIBVIRT_NETNS);
}

#[test]
fn libvirt_netns_checks_for_what_the_role_installs_before_changing_anything() {
    let script = read(".ci/libvirt-netns");
    let require = script
        .lines()
        .find(|l| l.trim_start().starts_with("require "))
        .expect("`up` checks its programs first");
    for (program, from) in LIBVIRT_NETNS {
        if matches!(from, Role(_)) {
            assert!(
                require.split_whitespace().any(|w| w == *program),
                "`up` does not check for {program} before it starts: {require}"
            );
        }
    }
    assert!(
        script.contains("set -euo pipefail"),
        "it must stop at its first failure"
    );
}

#[test]
fn a_word_match_ignores_comments_and_longer_names() {
    let script = "# nft in a comment\nrun sysctl -qw x\nvirshx list\n";
    assert!(calls(script, "sysctl"));
    assert!(!calls(script, "nft"));
    assert!(!calls(script, "virsh"));
}
