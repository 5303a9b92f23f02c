//! `cargo xtask lint` and `cargo xtask check-tags`: the repository's checks, each run by name
//! and reported with its result; a failed check does not stop the ones after it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::time::Duration;

use boma_exec::interrupt::{self, Interrupted};
use boma_exec::{CmdExt, progress, say};
use camino::{Utf8Path, Utf8PathBuf};
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
    Command {
        name: String,
        cmd: xshell::Cmd<'a>,
    },
    /// The workspace's tests (`cmd`), insta listing in `references` every snapshot file an
    /// assertion read; then no `.snap` that none read, and none pending review.
    Snapshots {
        cmd: xshell::Cmd<'a>,
        references: Utf8PathBuf,
    },
}

/// What `cargo insta test --check --unreferenced=reject` checks, without installing
/// cargo-insta: the tests pass against the reviewed snapshots, none is orphaned or pending.
const SNAPSHOTS: &str = "cargo test --workspace, no orphaned or pending snapshot";

impl Step<'_> {
    fn name(&self) -> &str {
        match self {
            Step::CheckTags => "check-tags",
            Step::Command { name, .. } => name,
            Step::Snapshots { .. } => SNAPSHOTS,
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
            Step::Snapshots { cmd, references } => {
                let outcome = snapshots_outcome(repo, cmd, &references);
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
            cmd: without_package_env(cmd!(
                sh,
                "cargo clippy --workspace --all-targets -- -D warnings"
            )),
        },
        snapshots_step(sh, repo),
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

/// The workspace's tests with every snapshot file they assert recorded (insta appends each to
/// `INSTA_SNAPSHOT_REFERENCES_FILE`, as for cargo-insta's `--unreferenced`). `INSTA_UPDATE=no`:
/// a changed value fails and nothing is written; `INSTA_FORCE_PASS=0`: nothing passes unseen.
fn snapshots_step<'a>(sh: &'a Shell, repo: &Utf8Path) -> Step<'a> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo.join(Utf8PathBuf::from(dir.to_string_lossy().into_owned())),
        None => repo.join("target"),
    };
    let references = target.join("insta-references.txt");
    Step::Snapshots {
        cmd: without_package_env(cmd!(sh, "cargo test --workspace --no-fail-fast"))
            .env("INSTA_UPDATE", "no")
            .env("INSTA_FORCE_PASS", "0")
            .env("INSTA_SNAPSHOT_REFERENCES_FILE", &references),
        references,
    }
}

/// `cmd` (a cargo that builds) without what `cargo xtask` (a `cargo run`) set for the xtask
/// package: build scripts that watch those variables (ring's `rerun-if-env-changed` lists
/// `CARGO_MANIFEST_DIR` and `CARGO_PKG_NAME`) would see them change and rebuild, here and again
/// in the next plain `cargo test`.
fn without_package_env(mut cmd: xshell::Cmd<'_>) -> xshell::Cmd<'_> {
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&&*name)
        {
            cmd = cmd.env_remove(&key);
        }
    }
    cmd
}

/// Run the tests, then judge every snapshot file under `crates/` and `xtask/`: a failed test
/// run fails the check (its output says why; the list of asserted files is then incomplete),
/// and so does each orphaned or pending file, named with its fix.
fn snapshots_outcome(repo: &Utf8Path, cmd: xshell::Cmd<'_>, references: &Utf8Path) -> Check {
    // A list left by an earlier run would vouch for a snapshot no test asserts any more.
    if let Err(e) = std::fs::remove_file(references)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Check::Failed(format!("cannot remove {references}: {e}"));
    }
    match run_step(cmd) {
        Check::Passed => {}
        other => return other,
    }
    let asserted: BTreeSet<Utf8PathBuf> = match std::fs::read_to_string(references) {
        Ok(text) => text.lines().map(|line| in_repo(repo, line)).collect(),
        // No test asserted a snapshot: every snapshot file is an orphan.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Check::Failed(format!("cannot read {references}: {e}")),
    };
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        if let Err(e) = snapshot_files(repo, &repo.join(dir), &mut files) {
            return Check::Failed(e);
        }
    }
    let findings = snapshot_findings(&files, &asserted);
    for finding in &findings {
        say!("  {finding}");
    }
    match findings.len() {
        0 => Check::Passed,
        n => Check::Failed(format!("{n} snapshot file(s) orphaned or pending")),
    }
}

/// `path` (as insta wrote it: absolute, under the workspace root cargo reported) relative to
/// the repository, through symlinks; as written when it is elsewhere or gone.
fn in_repo(repo: &Utf8Path, path: &str) -> Utf8PathBuf {
    let real = |p: &Utf8Path| p.canonicalize_utf8().unwrap_or_else(|_| p.to_owned());
    let (repo, path) = (real(repo), real(Utf8Path::new(path)));
    path.strip_prefix(&repo)
        .map_or_else(|_| path.clone(), Utf8Path::to_owned)
}

/// Every snapshot file under `dir` (reviewed `.snap`, pending `.snap.new` and `.pending-snap`),
/// relative to `repo` (insta hides a pending inline one: `.name.pending-snap`); build output and
/// hidden directories are skipped.
fn snapshot_files(
    repo: &Utf8Path,
    dir: &Utf8Path,
    found: &mut Vec<Utf8PathBuf>,
) -> Result<(), String> {
    let entries = dir
        .read_dir_utf8()
        .map_err(|e| format!("cannot read {dir}: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {dir}: {e}"))?;
        let (name, path) = (entry.file_name(), entry.path());
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                snapshot_files(repo, path, found)?;
            }
        } else if [".snap", ".snap.new", ".pending-snap"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            found.push(path.strip_prefix(repo).unwrap_or(path).to_owned());
        }
    }
    Ok(())
}

/// What is wrong with the snapshot files (relative to the repository), one line each naming
/// the file and the fix: a `.snap` no test asserted (a renamed or deleted test left it, and it
/// can never fail again) and a snapshot pending review (`.snap.new`, `.pending-snap`). Pure.
fn snapshot_findings(files: &[Utf8PathBuf], asserted: &BTreeSet<Utf8PathBuf>) -> Vec<String> {
    let mut findings: Vec<String> = files
        .iter()
        .filter_map(|file| {
            if file.as_str().ends_with(".snap") {
                (!asserted.contains(file)).then(|| {
                    format!(
                        "{file}: no test asserts this snapshot: delete it (`git rm {file}`) or restore the test that did"
                    )
                })
            } else {
                Some(format!(
                    "{file}: a snapshot pending review: accept it into its `.snap` (`cargo insta review`) or delete it"
                ))
            }
        })
        .collect();
    findings.sort();
    findings
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

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<Utf8PathBuf> {
        list.iter().map(Utf8PathBuf::from).collect()
    }

    #[test]
    fn a_snapshot_no_test_asserted_is_an_orphan_named_with_its_fix() {
        let files = paths(&[
            "crates/a/tests/it/snapshots/it__render__kept.snap",
            "crates/a/tests/it/snapshots/it__render__gone.snap",
        ]);
        let asserted = paths(&["crates/a/tests/it/snapshots/it__render__kept.snap"])
            .into_iter()
            .collect();
        assert_eq!(
            snapshot_findings(&files, &asserted),
            [
                "crates/a/tests/it/snapshots/it__render__gone.snap: no test asserts this snapshot: \
              delete it (`git rm crates/a/tests/it/snapshots/it__render__gone.snap`) or restore \
              the test that did"
            ]
        );
    }

    #[test]
    fn a_pending_snapshot_is_a_finding_even_beside_an_asserted_one() {
        let files = paths(&[
            "crates/a/tests/it/snapshots/it__render__x.snap",
            "crates/a/tests/it/snapshots/it__render__x.snap.new",
            "crates/a/tests/it/snapshots/.it__render__y.pending-snap",
        ]);
        let asserted = paths(&["crates/a/tests/it/snapshots/it__render__x.snap"])
            .into_iter()
            .collect();
        let findings = snapshot_findings(&files, &asserted);
        assert_eq!(findings.len(), 2, "{findings:#?}");
        assert!(
            findings.iter().all(|f| f.contains("pending review")),
            "{findings:#?}"
        );
    }

    #[test]
    fn every_asserted_snapshot_is_no_finding() {
        let files = paths(&["xtask/tests/it/snapshots/it__a__b.snap"]);
        let asserted = files.iter().cloned().collect();
        assert!(snapshot_findings(&files, &asserted).is_empty());
    }
}
