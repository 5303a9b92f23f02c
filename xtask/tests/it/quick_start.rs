//! The README's quick start is what CI runs: its two commands, in order, in `.ci/run`, with no
//! other step there installing the VM substrate — the first command installs it, as it does
//! on any fresh machine.

use crate::support::*;
use boma_exec::CmdExt as _;

/// The commands of the first `sh` block under `## Quick start`, trailing comments removed.
fn quick_start(readme: &str) -> Vec<String> {
    let section = readme
        .split_once("\n## Quick start\n")
        .expect("README.md has a `## Quick start` section")
        .1;
    let section = section.split("\n## ").next().unwrap_or_default();
    let block = section
        .split_once("```sh\n")
        .expect("the quick start has a ```sh block")
        .1
        .split_once("```")
        .expect("the block is closed")
        .0;
    block
        .lines()
        .map(|line| {
            line.split(" #")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// The lines of a shell script that are code: trimmed, without comment lines.
fn code_lines(script: &str) -> Vec<String> {
    script
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The packages of every `apt-get install` line of `.ci/run`.
fn ci_run_apt_installs() -> Vec<String> {
    code_lines(&read(".ci/run"))
        .iter()
        .filter_map(|line| line.strip_prefix("apt-get install"))
        .flat_map(|rest| rest.split_whitespace().filter(|w| !w.starts_with('-')))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_quick_start_is_two_commands_the_cycle_then_the_fast_tests() {
    let commands = quick_start(&read("README.md"));
    assert_eq!(commands, ["make test-integration HOST=askari", "make test"]);
}

#[test]
fn ci_runs_the_quick_start_commands_in_order() {
    let commands = quick_start(&read("README.md"));
    let ci = code_lines(&read(".ci/run"));
    let mut after = 0;
    for command in &commands {
        let at = ci
            .iter()
            .position(|line| line == command)
            .unwrap_or_else(|| panic!(".ci/run does not run the README's `{command}`"));
        assert!(
            at >= after,
            ".ci/run runs `{command}` before the command the README puts first"
        );
        assert_eq!(
            ci.iter().filter(|line| *line == command).count(),
            1,
            ".ci/run runs `{command}` more than once"
        );
        after = at + 1;
    }
}

#[test]
fn ci_installs_no_substrate_besides_the_quick_start() {
    let ci = code_lines(&read(".ci/run"));
    for line in &ci {
        for step in [
            "workstation.yml",
            "integration_test",
            "ansible-playbook",
            "xtask substrate",
        ] {
            assert!(
                !line.contains(step),
                ".ci/run installs the substrate itself ({step}): `{line}`; the quick start's first command does it"
            );
        }
    }
    let role = role_packages();
    assert!(role.contains(&"qemu-system-x86".to_owned()), "{role:?}");
    for package in ci_run_apt_installs() {
        assert!(
            !role.contains(&package),
            ".ci/run installs {package}, a package of the integration_test role: leave it to `make test-integration`"
        );
    }
}

#[test]
fn ci_installs_the_quick_starts_prerequisites_before_the_first_make() {
    let ci = code_lines(&read(".ci/run"));
    let install = ci
        .iter()
        .position(|line| line.starts_with("apt-get install"))
        .expect(".ci/run installs make");
    let first_make = ci
        .iter()
        .position(|line| line.starts_with("make "))
        .expect(".ci/run runs make");
    assert!(install < first_make);
    let packages = ci_run_apt_installs();
    assert!(packages.contains(&"make".to_owned()), "{packages:?}");
    assert!(
        packages.contains(&"python3-venv".to_owned()),
        "{packages:?}"
    );
}

/// What `make -n` would run for `target` and `vars`: the Makefile's own answer.
fn make_dry_run(args: &[&str]) -> Vec<String> {
    let sh = xshell::Shell::new().unwrap();
    let repo = repo();
    let out = xshell::cmd!(sh, "make --no-print-directory -n -C {repo} {args...}")
        .exec()
        .quiet()
        .read()
        .unwrap();
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn the_first_command_installs_the_substrate_before_the_cycle_and_the_second_does_not() {
    let commands = quick_start(&read("README.md"));
    let first: Vec<&str> = commands[0].split_whitespace().skip(1).collect();
    let mut args = first.clone();
    args.extend(["JUNIT=out/junit.xml", "REPORT=out/report.json"]);
    let lines = make_dry_run(&args);
    let substrate = lines.iter().position(|l| l == "cargo xtask substrate");
    let cycle = lines
        .iter()
        .position(|l| l == "cargo xtask it askari --junit out/junit.xml --report out/report.json");
    match (substrate, cycle) {
        (Some(s), Some(c)) => assert!(s < c, "{lines:#?}"),
        _ => panic!(
            "`make -n {}` runs neither or not both: {lines:#?}",
            args.join(" ")
        ),
    }
    let plain = make_dry_run(&first);
    assert!(
        plain.contains(&"cargo xtask it askari".to_owned()),
        "{plain:#?}"
    );
    let second: Vec<&str> = commands[1].split_whitespace().skip(1).collect();
    let tests = make_dry_run(&second);
    assert!(
        tests.iter().any(|l| l.starts_with("cargo test")),
        "{tests:#?}"
    );
    assert!(!tests.iter().any(|l| l.contains("substrate")), "{tests:#?}");
}

#[test]
fn the_quick_start_parser_skips_comments_and_prose() {
    let readme = "# t\n\n## Quick start\n\nProse.\n\n```sh\n# a comment\nmake a X=1   # why\n\nmake b\n```\n\n```sh\nnot this\n```\n## Next\n";
    assert_eq!(quick_start(readme), ["make a X=1", "make b"]);
}
