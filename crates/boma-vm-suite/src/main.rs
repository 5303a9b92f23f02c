//! The VM suite: drives the real `xtask` binary against real guests and counts what is left
//! behind. Slow (minutes per scenario under TCG) and needs root, so it is not part of
//! `cargo test`; `.ci/run` runs it after the fast tests.
//!
//! Usage: `vm-suite [--xtask <path>] [--baseline-runs N] <scenario>...` with scenarios
//! `baseline`, `lifecycle`, `red`, `red-green`, `it`, `faults`, `libvirt` (inside `.ci/libvirt-netns`), or
//! `all` (every QEMU scenario).
#![allow(clippy::print_stdout, clippy::print_stderr)] // A test runner: its report is its output.

mod bench;
mod leftovers;
mod scenarios;

use std::time::Duration;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};

/// One measured step of a scenario.
#[derive(Debug, Clone)]
pub struct Timing {
    pub scenario: &'static str,
    pub step: String,
    pub took: Duration,
}

/// What every scenario needs.
pub struct Suite {
    pub repo: Utf8PathBuf,
    pub xtask: Utf8PathBuf,
    pub baseline_runs: usize,
    pub timings: Vec<Timing>,
}

/// `all` is the QEMU backend's scenarios; `libvirt` runs inside the namespace that
/// `.ci/libvirt-netns` creates, so it is named on its own. `red-green` (RED, then the fix on
/// the same VM) is not in `all`: `red` and `it` prove the same two outcomes, each through the
/// whole cycle an operator runs, in less CI time.
const ALL: &[&str] = &["baseline", "lifecycle", "red", "it", "faults"];
const KNOWN: &[&str] = &[
    "baseline",
    "lifecycle",
    "red",
    "red-green",
    "it",
    "faults",
    "libvirt",
];

fn main() -> anyhow::Result<()> {
    boma_exec::interrupt::install()?;
    let mut args = std::env::args().skip(1);
    let repo = Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize_utf8()?;
    let mut xtask = repo.join("target/debug/xtask");
    let mut baseline_runs = 1;
    let mut wanted = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--xtask" => xtask = args.next().context("--xtask needs a path")?.into(),
            "--baseline-runs" => {
                baseline_runs = args
                    .next()
                    .context("--baseline-runs needs a number")?
                    .parse()?
            }
            "all" => wanted.extend(ALL.iter().map(|s| s.to_string())),
            "-h" | "--help" => {
                println!(
                    "usage: vm-suite [--xtask PATH] [--baseline-runs N] <{}|all>...",
                    ALL.join("|")
                );
                return Ok(());
            }
            other if KNOWN.contains(&other) => wanted.push(other.to_owned()),
            other => bail!(
                "unknown scenario `{other}`; known: {}, all",
                KNOWN.join(", ")
            ),
        }
    }
    if wanted.is_empty() {
        bail!("name the scenarios to run ({}), or all", KNOWN.join(", "));
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the VM suite needs root (golden image build, QEMU); run it as root, as .ci/run does"
        );
    }
    if !xtask.is_file() {
        bail!("{xtask} does not exist: run `cargo build -p xtask` first");
    }
    let mut suite = Suite {
        repo,
        xtask,
        baseline_runs,
        timings: Vec::new(),
    };
    let mut failures = Vec::new();
    for scenario in &wanted {
        eprintln!("\n######## scenario: {scenario}");
        let result = match scenario.as_str() {
            "baseline" => scenarios::baseline(&mut suite),
            "lifecycle" => scenarios::lifecycle(&mut suite),
            "red" => scenarios::red(&mut suite),
            "red-green" => scenarios::red_green(&mut suite),
            "it" => scenarios::it(&mut suite),
            "faults" => scenarios::faults(&mut suite),
            "libvirt" => scenarios::libvirt(&mut suite),
            _ => unreachable!("checked above"),
        };
        // Interrupted: clean up (the prune must run despite the signal) and stop here.
        let interrupted = boma_exec::interrupt::begin_cleanup_if_interrupted();
        // Whatever happened, nothing may be left for the next scenario.
        let cleanup = scenarios::prune_and_count(&suite);
        match (result, cleanup) {
            (Ok(()), Ok(())) => eprintln!("######## {scenario}: PASSED"),
            (Err(e), _) | (Ok(()), Err(e)) => {
                eprintln!("######## {scenario}: FAILED: {e:#}");
                failures.push(scenario.clone());
            }
        }
        if let Some(interrupted) = interrupted {
            bail!("VM suite {interrupted}: stopped after {scenario}, test VMs pruned");
        }
    }
    eprintln!("\nVM suite timings:");
    for t in &suite.timings {
        eprintln!(
            "  {:<10} {:>8}  {}",
            t.scenario,
            boma_exec::progress::human(t.took),
            t.step
        );
    }
    if failures.is_empty() {
        eprintln!("VM suite: all {} scenario(s) passed", wanted.len());
        Ok(())
    } else {
        bail!("VM suite: failed scenario(s): {}", failures.join(", "))
    }
}
