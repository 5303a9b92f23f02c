//! `cargo xtask lint` and `cargo xtask check-tags`: the repository's checks, each run by name
//! and reported with its result; a failed check does not stop the ones after it.

use std::ffi::OsString;
use std::time::Duration;

use boma_exec::interrupt::{self, Interrupted};
use boma_exec::{CmdExt, progress, say};
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::edge::{self, Failure, Outcome};
use crate::settings::Checkout;

/// `cargo xtask check-tags`: findings and the summary on stdout (they are the result); failed
/// on any finding, or when the vocabulary or a file cannot be read.
pub fn check_tags(checkout: &Checkout) -> Result<Outcome, Failure> {
    match tags_outcome(&checkout.repo, |line| edge::print(&format!("{line}\n"))) {
        Check::Passed => Ok(Outcome::Passed),
        Check::Failed(why) => Err(Failure::failed(why)),
        Check::Interrupted(i) => Err(i.into()),
    }
}

/// Run check-tags, hand each output line to `print`.
fn tags_outcome(repo: &Utf8Path, print: impl Fn(&str)) -> Check {
    match boma_tags::check_repo(repo) {
        Ok(report) => {
            for finding in &report.findings {
                print(&finding.to_string());
            }
            print(&report.summary());
            match report.findings.len() {
                0 => Check::Passed,
                n => Check::Failed(format!("{n} unknown tag(s)")),
            }
        }
        Err(e) => Check::Failed(format!(
            "cannot check the tags: {}",
            boma_harness::error_chain(&e)
        )),
    }
}

/// How one check ended.
enum Check {
    Passed,
    /// Why, in a few words (the tool's own output above says the rest).
    Failed(String),
    Interrupted(Interrupted),
}

/// One check of `lint`.
enum Step<'a> {
    CheckTags,
    Command { name: String, cmd: xshell::Cmd<'a> },
}

impl Step<'_> {
    fn name(&self) -> &str {
        match self {
            Step::CheckTags => "check-tags",
            Step::Command { name, .. } => name,
        }
    }
}

/// `cargo xtask lint`: every check in order, each announced (`==> name`) and closed with its
/// result and time; then a summary table on stdout. Failed if any check failed, interrupted
/// when a signal came (the remaining checks are skipped).
pub fn lint(checkout: &Checkout) -> Result<Outcome, Failure> {
    let (sh, repo) = (&checkout.sh, checkout.repo.as_path());
    sh.change_dir(repo);
    let steps = steps(sh, repo).map_err(Failure::failed)?;
    let mut results: Vec<(String, Result<(), String>, Duration)> = Vec::new();
    let mut interrupted = None;
    let total = steps.len();
    for step in steps {
        if let Some(i) = interrupt::pending() {
            interrupted = Some(i);
            break;
        }
        let name = step.name().to_owned();
        let phase = progress::phase(&name);
        let outcome = match step {
            // Its findings and summary line already say why it failed.
            Step::CheckTags => tags_outcome(repo, |line| say!("  {line}")),
            Step::Command { cmd, .. } => {
                let outcome = run_step(cmd);
                if let Check::Failed(why) = &outcome {
                    say!("  {name}: {why}");
                }
                outcome
            }
        };
        let (result, elapsed) = match outcome {
            Check::Passed => (Ok(()), phase.done()),
            Check::Failed(why) => (Err(why), phase.failed()),
            Check::Interrupted(i) => {
                phase.failed();
                interrupted = Some(i);
                break;
            }
        };
        results.push((name, result, elapsed));
    }

    let failed = results.iter().filter(|(_, r, _)| r.is_err()).count();
    let width = results.iter().map(|(n, ..)| n.len()).max().unwrap_or(0);
    edge::print("lint summary:\n");
    for (name, result, elapsed) in &results {
        let (status, why) = match result {
            Ok(()) => ("ok", ""),
            Err(why) => ("FAILED", why.as_str()),
        };
        let time = progress::human(*elapsed);
        let row = format!("  {name:<width$}  {status:<6}  {time:>6}  {why}");
        edge::print(&format!("{}\n", row.trim_end()));
    }
    if let Some(i) = interrupted {
        edge::print(&format!(
            "lint: {i}; {} of {total} checks skipped\n",
            total - results.len()
        ));
        return Ok(Outcome::Interrupted(i));
    }
    if failed == 0 {
        edge::print(&format!("lint: all {total} checks passed\n"));
        Ok(Outcome::Passed)
    } else {
        edge::print(&format!("lint: {failed} of {total} checks failed\n"));
        Ok(Outcome::Failed)
    }
}

/// The checks, in order. Ansible's tools come from the repo's `.venv` (`make venv`) when it is
/// there, else from PATH; `.venv/bin` is also first on their PATH so that ansible-lint finds
/// the matching `ansible-playbook` and `ansible-galaxy`.
fn steps<'a>(sh: &'a Shell, repo: &Utf8Path) -> Result<Vec<Step<'a>>, String> {
    let venv_bin = repo.join(".venv/bin");
    let tool = |name: &str| -> String {
        let path = venv_bin.join(name);
        if path.is_file() {
            path.into_string()
        } else {
            name.to_owned()
        }
    };
    let mut path: OsString = venv_bin.as_os_str().to_owned();
    if let Some(inherited) = std::env::var_os("PATH") {
        path.push(":");
        path.push(inherited);
    }
    let (yamllint, ansible_lint, ansible_playbook) = (
        tool("yamllint"),
        tool("ansible-lint"),
        tool("ansible-playbook"),
    );

    let mut steps = vec![
        Step::CheckTags,
        Step::Command {
            name: "cargo fmt --all --check".into(),
            cmd: cmd!(sh, "cargo fmt --all --check"),
        },
        Step::Command {
            name: "cargo clippy --workspace --all-targets -- -D warnings".into(),
            cmd: cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings"),
        },
        Step::Command {
            name: "yamllint --strict .".into(),
            cmd: cmd!(sh, "{yamllint} --strict .").env("PATH", &path),
        },
        Step::Command {
            name: "ansible-lint".into(),
            cmd: cmd!(sh, "{ansible_lint}").env("PATH", &path),
        },
    ];
    for playbook in playbooks(repo)? {
        steps.push(Step::Command {
            name: format!("syntax-check {playbook}"),
            cmd: cmd!(
                sh,
                "{ansible_playbook} --syntax-check -i inventories/production/ {playbook}"
            )
            .env("PATH", &path),
        });
    }
    Ok(steps)
}

/// `playbooks/*.yml` and every profile's verify and catalogue playbooks, sorted; relative to
/// the repo root.
fn playbooks(repo: &Utf8Path) -> Result<Vec<String>, String> {
    let dir = repo.join("playbooks");
    let entries = dir
        .read_dir_utf8()
        .map_err(|e| format!("cannot read {dir}: {e}"))?;
    let mut playbooks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {dir}: {e}"))?;
        if entry.path().extension() == Some("yml") {
            playbooks.push(format!("playbooks/{}", entry.file_name()));
        }
    }
    for host in boma_inventory::list_profiles(repo).map_err(|e| e.to_string())? {
        let profile = boma_inventory::load_profile(repo, &host).map_err(|e| e.to_string())?;
        let applied = profile
            .applies
            .iter()
            .map(|a| a.playbook_path().to_string());
        let verify = profile.verify.iter().map(|v| v.to_string());
        for playbook in applied.chain(verify) {
            if !playbooks.contains(&playbook) {
                playbooks.push(playbook);
            }
        }
    }
    playbooks.sort();
    Ok(playbooks)
}

/// Run one command, its output streamed; a missing tool is a failed check, named with its fix.
fn run_step(cmd: xshell::Cmd<'_>) -> Check {
    match cmd.exec().stream().allow_fail().run() {
        Ok(done) if done.success() => Check::Passed,
        Ok(done) => Check::Failed(match done.status.code() {
            Some(code) => format!("exit status {code}"),
            None => format!("stopped ({})", done.status),
        }),
        Err(e) => match e.interrupted() {
            Some(i) => Check::Interrupted(i),
            // NotFound says "`yamllint` is not installed or not on PATH: run `make venv` …".
            None => Check::Failed(e.to_string()),
        },
    }
}
