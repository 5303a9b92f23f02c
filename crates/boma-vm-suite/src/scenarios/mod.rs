//! The scenarios: each drives the real `xtask` binary, checks real outcomes on real guests and
//! counts what is left. This module holds what they share: running xtask (and `xtask it` with
//! its report read back), timing steps, the leftover checks, the golden image, SSH into a kept
//! VM, and signalling a running harness.

mod baseline;
mod catalogue;
mod cycle;
mod faults;
mod fleet;
mod fleet_net;
mod kept;
mod libvirt;
mod lifecycle;
mod safety;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use boma_exec::CmdExt;
use boma_report::Report;
use boma_vm::{Guest, OpenSsh, RunRecord};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

pub use baseline::baseline;
pub use catalogue::catalogue;
pub use cycle::{askari, red, ubongo};
pub use faults::faults;
pub use fleet::fleet;
pub use fleet_net::fleet_net;
pub use kept::kept;
pub use libvirt::libvirt;
pub use lifecycle::lifecycle;
pub use safety::safety;

use crate::catalogue::CatalogueSet;
use crate::fleets::FleetSet;
use crate::leftovers;
use crate::timing::Timing;
use crate::verdict;

/// What every scenario needs.
pub struct Suite {
    /// The checkout under test.
    pub repo: Utf8PathBuf,
    /// The harness binary.
    pub xtask: Utf8PathBuf,
    pub baseline_runs: usize,
    pub catalogue_set: CatalogueSet,
    /// The fleet catalogue's set.
    pub fleet_set: FleetSet,
    /// Whether the catalogue's run takes the fleet set too ([`crate::cli::Plan`]).
    pub fleets_with_catalogue: bool,
    /// The parts of the bench to run.
    pub bench_groups: Vec<crate::cli::BenchGroup>,
    /// The suite's scratch space (reports, keys, a scratch worktree), kept when a scenario
    /// failed.
    pub work: Utf8PathBuf,
    pub timings: Vec<Timing>,
    /// How many `it` reports were written so far (their file names).
    reports: usize,
    /// Environment for the next `it` runs (a scenario sets and clears it).
    it_env: Vec<(String, String)>,
}

impl Suite {
    pub fn new(
        repo: Utf8PathBuf,
        xtask: Utf8PathBuf,
        baseline_runs: usize,
        catalogue_set: CatalogueSet,
        work: Utf8PathBuf,
    ) -> Suite {
        Suite {
            repo,
            xtask,
            baseline_runs,
            catalogue_set,
            fleet_set: FleetSet::Ci,
            fleets_with_catalogue: false,
            bench_groups: crate::cli::BenchGroup::all(),
            work,
            timings: Vec::new(),
            reports: 0,
            it_env: Vec::new(),
        }
    }

    /// A fresh directory of the scratch space.
    fn scratch(&self, label: &str) -> anyhow::Result<Utf8PathBuf> {
        let dir = self.work.join(label);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
        Ok(dir)
    }

    fn time(&mut self, scenario: &'static str, step: impl Into<String>, took: Duration) {
        self.timings.push(Timing {
            scenario,
            step: step.into(),
            took,
        });
    }
}

/// The xtask binary, run in `cwd`: on the QEMU backend unless a scenario passes `--backend`
/// (the flag wins over the environment), and with the repository found from `cwd` — never from
/// a `CARGO_MANIFEST_DIR` that `cargo run` of the suite would hand down (xtask would take the
/// suite's crate directory for the repository).
fn xtask_command(
    suite: &Suite,
    cwd: &Utf8Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<boma_exec::Run> {
    let sh = Shell::new()?;
    sh.change_dir(cwd);
    let program = &suite.xtask;
    let mut command = cmd!(sh, "{program} {args...}")
        .env("BOMA_IT_BACKEND", "qemu")
        .env_remove("CARGO_MANIFEST_DIR");
    for (key, value) in env {
        command = command.env(key, value);
    }
    Ok(command.exec())
}

/// The exit status as a shell reports it: the code, or 128+n for death by signal n.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Run xtask in `cwd` with its output streamed; what it printed (stderr: the tail).
fn xtask_in(
    suite: &Suite,
    cwd: &Utf8Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<boma_exec::Captured> {
    Ok(xtask_command(suite, cwd, args, env)?
        .stream()
        .allow_fail()
        .run()?)
}

/// Run xtask in the repository; its exit status and stdout.
fn xtask(suite: &Suite, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let out = xtask_in(suite, &suite.repo, args, &[])?;
    Ok((exit_code(out.status), out.stdout))
}

/// Run xtask in the repository, require `expected` as its exit status, and time it.
fn step(
    suite: &mut Suite,
    scenario: &'static str,
    args: &[&str],
    expected: i32,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let (code, stdout) = xtask(suite, args)?;
    let label = format!("xtask {}", args.join(" "));
    suite.time(scenario, &label, started.elapsed());
    ensure!(
        code == expected,
        "`{label}` exited with {code}, expected {expected}"
    );
    Ok(stdout)
}

/// One `xtask it` as a scenario saw it.
struct ItRun {
    /// `xtask it …` as run (without the report path).
    label: String,
    code: i32,
    report: Report,
    /// The last lines of its stderr (the error line of a refused run is among them).
    stderr_tail: String,
}

/// `xtask it <args> --report <file>` in `cwd`, timed. The report is read back from the file
/// (stdout has the same JSON); its exit status is for the caller to judge.
fn it_any_exit(
    suite: &mut Suite,
    scenario: &'static str,
    cwd: &Utf8Path,
    args: &[&str],
) -> anyhow::Result<ItRun> {
    suite.reports += 1;
    let report_path = suite
        .work
        .join(format!("{scenario}-{}.report.json", suite.reports));
    let _ = std::fs::remove_file(&report_path);
    let mut full: Vec<&str> = vec!["it"];
    full.extend_from_slice(args);
    let label = format!("xtask {}", full.join(" "));
    full.extend_from_slice(&["--report", report_path.as_str()]);
    let started = Instant::now();
    let env: Vec<(&str, &str)> = suite
        .it_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = xtask_in(suite, cwd, &full, &env)?;
    suite.time(scenario, &label, started.elapsed());
    let code = exit_code(out.status);
    let text = std::fs::read_to_string(&report_path).unwrap_or_else(|_| out.stdout.clone());
    let report = verdict::parse_report(&text).with_context(|| {
        format!(
            "`{label}` (exit {code}) wrote no readable report to {report_path}; its last lines:\n{}",
            out.stderr.trim_end()
        )
    })?;
    Ok(ItRun {
        label,
        code,
        report,
        stderr_tail: out.stderr,
    })
}

/// [`it_any_exit`], whose exit status must be `expected`.
fn it(
    suite: &mut Suite,
    scenario: &'static str,
    cwd: &Utf8Path,
    args: &[&str],
    expected: i32,
) -> anyhow::Result<ItRun> {
    let run = it_any_exit(suite, scenario, cwd, args)?;
    if let Some(problem) = run.exit_problem(expected) {
        anyhow::bail!(problem);
    }
    Ok(run)
}

impl ItRun {
    /// Why the exit status is not `expected`, with each run's result and error.
    fn exit_problem(&self, expected: i32) -> Option<String> {
        (self.code != expected).then(|| {
            format!(
                "`{}` exited with {}, expected {expected}: {}",
                self.label,
                self.code,
                verdict::outcomes(&self.report)
            )
        })
    }
}

/// `xtask prune` in the repository, then require that nothing is left.
pub fn prune_and_count(suite: &Suite) -> anyhow::Result<()> {
    let (code, _) = xtask(suite, &["prune"])?;
    ensure!(code == 0, "`xtask prune` exited with {code}");
    let left = leftovers::count(&suite.repo);
    eprintln!("leftovers after prune: {}", left.describe());
    ensure!(
        left.total() == 0,
        "prune left things behind: {}",
        left.describe()
    );
    Ok(())
}

/// Require that nothing of the harness is left in `repo`'s run directory or on the machine.
fn require_nothing_left(repo: &Utf8Path, after: &str) -> anyhow::Result<()> {
    // A killed QEMU may take a moment to be reaped.
    std::thread::sleep(Duration::from_millis(500));
    let left = leftovers::count(repo);
    eprintln!("leftovers after {after}: {}", left.describe());
    ensure!(
        left.total() == 0,
        "{after} left things behind: {}",
        left.describe()
    );
    Ok(())
}

fn require_no_leftovers(suite: &Suite, after: &str) -> anyhow::Result<()> {
    require_nothing_left(&suite.repo, after)
}

/// The golden image, built when nothing verified is cached.
fn ensure_image(suite: &mut Suite, scenario: &'static str) -> anyhow::Result<()> {
    let (_, verdicts) = xtask(suite, &["image", "verify"])?;
    if !verdicts.lines().any(|l| l.ends_with(": ok")) {
        step(suite, scenario, &["image", "build"], 0)?;
    }
    Ok(())
}

/// The cached golden image's path.
fn golden_image(suite: &Suite) -> anyhow::Result<Utf8PathBuf> {
    let (_, verdicts) = xtask(suite, &["image", "verify"])?;
    let name = verdicts
        .lines()
        .find_map(|l| l.strip_suffix(": ok"))
        .context("no verified golden image in the cache")?
        .to_owned();
    let cache =
        std::env::var("BOMA_IT_CACHE").unwrap_or_else(|_| "/var/lib/boma-integration".into());
    Ok(Utf8PathBuf::from(cache).join(name))
}

/// The live run `repo`'s harness recorded (`tests/integration/.run/current`).
fn current_in(repo: &Utf8Path) -> anyhow::Result<RunRecord> {
    let runs = boma_vm::Runs::new(repo.join("tests/integration/.run"));
    runs.current()?
        .with_context(|| format!("no current run recorded under {repo}"))
}

fn current(suite: &Suite) -> anyhow::Result<RunRecord> {
    current_in(&suite.repo)
}

/// Run `command` on the guest over the harness's SSH; its trimmed stdout.
fn guest_run(record: &RunRecord, command: &str) -> anyhow::Result<String> {
    let sh = Shell::new()?;
    let out = OpenSsh::new(&sh).run(&record.ssh, command, Duration::from_secs(60), false)?;
    ensure!(
        out.success(),
        "`{command}` failed on the guest: {}",
        out.stderr.trim()
    );
    Ok(out.stdout.trim().to_owned())
}

fn boot_id(record: &RunRecord) -> anyhow::Result<String> {
    guest_run(record, "cat /proc/sys/kernel/random/boot_id")
}

/// Remove a diagnostics bundle the scenario has judged (a kept one is evidence of a failure).
fn remove_bundle(bundle: &Utf8Path) {
    if let Err(e) = std::fs::remove_dir_all(bundle) {
        eprintln!("could not remove the bundle {bundle}: {e}");
    }
}

/// Whether the harness the suite runs keeps and reuses disk layers (`BOMA_IT_LAYERS=off` in the
/// suite's environment, which its xtask inherits, turns them off everywhere).
fn layers_on() -> bool {
    std::env::var("BOMA_IT_LAYERS").as_deref() != Ok("off")
}

/// Start xtask in the background, to act on it while it runs.
fn spawn(suite: &Suite, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<boma_exec::Started> {
    Ok(xtask_command(suite, &suite.repo, args, env)?.start()?)
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
    eprintln!(
        "+ kill -{} {pid}",
        signal.as_str().trim_start_matches("SIG")
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
    Ok(())
}

/// Wait for a background command to exit; its exit status.
fn wait_exit(child: &mut boma_exec::Started, limit: Duration) -> anyhow::Result<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(exit_code(status));
        }
        ensure!(
            Instant::now() < deadline,
            "the command did not exit within {}s",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !ready() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        boma_exec::interrupt::check()?;
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// The owner of a file (uid, gid).
fn owner(path: &Utf8Path) -> anyhow::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {path}"))?;
    Ok((meta.uid(), meta.gid()))
}
