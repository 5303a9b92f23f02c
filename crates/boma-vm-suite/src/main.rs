//! The VM suite: drives the real `xtask` binary against real guests and counts what is left
//! behind. Slow (minutes per scenario under TCG) and needs root, so it is not part of
//! `cargo test`; `.ci/run` runs it after the fast tests (`make test-vm`).
//!
//! Usage: `vm-suite [--xtask PATH] [--baseline-runs N] [--catalogue-set ci|all|rest]
//! [--fleet-set ci|all] [--bench-groups G,…] [--timings PATH] <scenario>...`; `vm-suite
//! --help` lists the scenarios.
//!
//! The scenarios (each module of `scenarios` says what it proves): `baseline`, `lifecycle`,
//! `askari`, `red`, `ubongo`, `catalogue`, `fleet`, `safety`, `faults`, then, not in `all`,
//! `kept`, `libvirt` (inside `.ci/libvirt-netns`), `fleet-net` and `bench` (figures, not a
//! verdict; `make bench`). `all` (`make test-vm`'s default) runs the catalogue's CI set
//! (`catalogue::CI_SET`: the REDs of modes 2, 3, 4, 7 and 8); named on its own, `catalogue`
//! runs every `cat-*` profile; `--catalogue-set ci|all|rest` overrides either, and `make
//! test-catalogue` runs `rest` (what CI leaves out), so CI and it cover the whole catalogue.
//! The scenarios run the harness with layers on, but `red`, `safety` and `kept` (`--fresh`).
//!
//! When the catalogue and `fleet` are both asked for (as `all` and CI do), the fleet set joins
//! the catalogue's one `it -j 2`, and `fleet` does not run again on its own.
//!
//! CI (`.ci/run`) runs `askari red catalogue fleet safety faults` with the catalogue's and the
//! fleets' CI sets, then `libvirt`, after the quick start's `it askari` (which stores askari's
//! layers: `askari` then stands on them), `make test` and `make lint`; it must stay under 75
//! minutes on 2 cores under TCG (its limit is 90). Left to `make test-vm` and `make
//! test-catalogue` on a developer's machine: `baseline` (a figure), `lifecycle`, `ubongo`,
//! `kept`, `fleet-net`, the catalogue's `rest` set and the fleet GREENs on QEMU (`make test-vm
//! VM_SCENARIOS=fleet`).
#![allow(clippy::print_stdout, clippy::print_stderr)] // A test runner: its report is its output.

mod bench;
mod catalogue;
mod cli;
mod fleets;
mod leftovers;
mod scenarios;
mod timing;
mod verdict;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Parser as _;

use crate::cli::Scenario;
use crate::scenarios::Suite;
use crate::timing::Outcome;

fn main() -> anyhow::Result<()> {
    let plan = cli::Cli::parse().plan();
    boma_exec::interrupt::install()?;
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the VM suite needs root (golden image build, QEMU); run it as root, as .ci/run does"
        );
    }
    let repo = repo_root()?;
    let cwd = Utf8PathBuf::try_from(std::env::current_dir()?)?;
    let xtask = absolute(
        plan.xtask.clone().unwrap_or_else(|| default_xtask(&repo)),
        &cwd,
    );
    if !xtask.is_file() {
        bail!("{xtask} does not exist: run `cargo build -p xtask` first, or pass --xtask");
    }
    let work = Utf8PathBuf::from(format!("/var/tmp/boma-vm-suite-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {work}"))?;
    eprintln!("VM suite on {repo} with {xtask}; scratch space {work}");
    let mut suite = Suite::new(
        repo,
        xtask,
        plan.baseline_runs,
        plan.catalogue_set,
        work.clone(),
    );
    suite.bench_groups = plan.bench_groups.clone();
    suite.fleet_set = plan.fleet_set;
    suite.fleets_with_catalogue = plan.fleets_with_catalogue;
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    // Each failed scenario's reason, said again after the timings: CI shows only the log's tail.
    let mut reasons: Vec<String> = Vec::new();
    let mut interrupted = None;
    for scenario in &plan.scenarios {
        eprintln!("\n######## scenario: {scenario}");
        let result = run(*scenario, &mut suite);
        // Interrupted: clean up (the prune must run despite the signal) and stop here.
        interrupted = boma_exec::interrupt::begin_cleanup_if_interrupted();
        // Whatever happened, nothing may be left for the next scenario.
        let cleanup = scenarios::prune_and_count(&suite);
        let outcome = match (result, cleanup) {
            (Ok(()), Ok(())) => {
                eprintln!("######## {scenario}: PASSED");
                Outcome::Passed
            }
            (Err(e), _) | (Ok(()), Err(e)) => {
                eprintln!("######## {scenario}: FAILED: {e:#}");
                reasons.push(format!("{scenario}: {e:#}"));
                Outcome::Failed
            }
        };
        outcomes.push((scenario.to_string(), outcome));
        if interrupted.is_some() {
            break;
        }
    }
    eprint!("\n{}", timing::render_summary(&suite.timings));
    if let Some(path) = &plan.timings {
        write_timings(path, &outcomes, &suite)?;
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Failed)
        .map(|(name, _)| name.as_str())
        .collect();
    if failed.is_empty() && interrupted.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("kept the scratch space (reports, JUnit): {work}");
    }
    if let Some(interrupted) = interrupted {
        let last = outcomes.last().map_or("", |(name, _)| name.as_str());
        bail!("VM suite {interrupted}: stopped after {last}, test VMs pruned");
    }
    if failed.is_empty() {
        eprintln!("VM suite: all {} scenario(s) passed", outcomes.len());
        Ok(())
    } else {
        bail!(
            "VM suite: failed scenario(s): {}\n{}",
            failed.join(", "),
            reasons.join("\n")
        )
    }
}

fn run(scenario: Scenario, suite: &mut Suite) -> anyhow::Result<()> {
    match scenario {
        Scenario::Baseline => scenarios::baseline(suite),
        Scenario::Lifecycle => scenarios::lifecycle(suite),
        Scenario::Askari => scenarios::askari(suite),
        Scenario::Red => scenarios::red(suite),
        Scenario::Ubongo => scenarios::ubongo(suite),
        Scenario::Catalogue => scenarios::catalogue(suite),
        Scenario::Fleet => scenarios::fleet(suite),
        Scenario::Safety => scenarios::safety(suite),
        Scenario::Faults => scenarios::faults(suite),
        Scenario::Kept => scenarios::kept(suite),
        Scenario::Libvirt => scenarios::libvirt(suite),
        Scenario::FleetNet => scenarios::fleet_net(suite),
        Scenario::Bench => bench::run(suite),
    }
}

fn write_timings(
    path: &Utf8Path,
    outcomes: &[(String, Outcome)],
    suite: &Suite,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    }
    std::fs::write(path, timing::render_json(outcomes, &suite.timings))
        .with_context(|| format!("cannot write the timings to {path}"))?;
    eprintln!("timings written to {path}");
    Ok(())
}

/// The checkout under test, found at run time (a target directory shared between checkouts
/// can run this binary from another one): `cargo run`'s `CARGO_MANIFEST_DIR` (this crate's
/// directory), or else the git top level of the working directory — the way xtask finds it.
fn repo_root() -> anyhow::Result<Utf8PathBuf> {
    let cwd = Utf8PathBuf::from_path_buf(std::env::current_dir()?)
        .map_err(|p| anyhow::anyhow!("the working directory {} is not UTF-8", p.display()))?;
    let candidate = repo_candidate(std::env::var("CARGO_MANIFEST_DIR").ok().as_deref(), &cwd);
    if candidate.join("xtask/Cargo.toml").is_file() && candidate.join("profiles").is_dir() {
        Ok(candidate)
    } else {
        bail!("{candidate} is not a boma checkout: run the VM suite from inside the repository")
    }
}

/// Where the repository would be. Pure.
fn repo_candidate(manifest_dir: Option<&str>, cwd: &Utf8Path) -> Utf8PathBuf {
    match manifest_dir {
        Some(dir) => Utf8Path::new(dir)
            .ancestors()
            .nth(2)
            .unwrap_or(Utf8Path::new(dir))
            .to_owned(),
        None => cwd
            .ancestors()
            .find(|d| d.join(".git").exists())
            .unwrap_or(cwd)
            .to_owned(),
    }
}

/// The harness binary of this build: `$CARGO_TARGET_DIR/debug/xtask`, or the repository's
/// `target/debug/xtask`.
fn default_xtask(repo: &Utf8Path) -> Utf8PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|_| repo.join("target"))
        .join("debug/xtask")
}

/// `path` made absolute against `cwd`: the scenarios run the harness from other directories
/// (the safety scenario's scratch worktree), where a relative `--xtask target/debug/xtask`, as
/// the Makefile passes it, names nothing.
fn absolute(path: Utf8PathBuf, cwd: &Utf8Path) -> Utf8PathBuf {
    if path.is_absolute() {
        path
    } else {
        cwd.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_harness_path_is_taken_from_where_the_suite_was_started() {
        let cwd = Utf8Path::new("/w/boma");
        assert_eq!(
            absolute("target/debug/xtask".into(), cwd),
            "/w/boma/target/debug/xtask"
        );
        assert_eq!(absolute("/t/debug/xtask".into(), cwd), "/t/debug/xtask");
    }

    #[test]
    fn the_repository_is_two_levels_above_this_crate_or_the_git_top_level() {
        assert_eq!(
            repo_candidate(
                Some("/w/boma/crates/boma-vm-suite"),
                Utf8Path::new("/elsewhere")
            ),
            "/w/boma"
        );
        let here = Utf8Path::new(env!("CARGO_MANIFEST_DIR"));
        let top = repo_candidate(None, here);
        assert!(top.join("xtask/Cargo.toml").is_file(), "{top}");
        assert!(here.starts_with(&top));
    }
}
