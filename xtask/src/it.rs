//! `cargo xtask it`: one profile runs in this process; several run as child processes (one
//! VM, run directory, lock and report each), `-j N` at once within the machine's memory and
//! cores, and their reports are combined into one (JSON on stdout and `--report`, JUnit with
//! `--junit`).
//! `--shard K/N` runs the K-th of N deterministic slices, for a CI matrix.
#![allow(clippy::print_stdout)] // The report is this command's data.

use std::io::Write as _;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::{Condvar, Mutex};
use std::time::{Instant, SystemTime};

use boma_exec::{CmdExt, say};
use boma_harness::{Ctx, ExitClass, HarnessError, ItOptions, RealMachine, Settings};
use boma_report::{Report, Timestamp};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;

use crate::{BackendArg, CertsArg, ImageArgs, VaultArg, edge};

#[derive(Args, Debug, Clone)]
pub struct ItArgs {
    /// The hosts to mirror: each profile is profiles/<HOST>.json (e.g. askari ubongo).
    pub hosts: Vec<String>,
    /// Every profile expected to pass (those without `expect`; RED profiles are named
    /// explicitly).
    #[arg(long)]
    pub all: bool,
    /// How many VMs run at once (bounded by memory: each profile's mem_mib plus QEMU's
    /// overhead must fit).
    #[arg(short = 'j', long, default_value_t = 1, value_name = "N")]
    pub jobs: usize,
    /// Run only the K-th of N slices of the selected profiles (1-based), for a CI matrix.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub certs: CertsArg,
    /// Keep the VM even when the run passes.
    #[arg(long)]
    pub keep: bool,
    /// Check without rebooting (faster, blind to reboot-survival bugs; the report says so).
    #[arg(long)]
    pub no_reboot: bool,
    /// Skip the second apply of every step (the idempotence check).
    #[arg(long)]
    pub no_idempotence: bool,
    /// Ignore the cached disk layers: apply every step, store nothing (a clean cycle).
    #[arg(long)]
    pub fresh: bool,
    /// Remove a failed run's VM once its diagnostics bundle is written (for CI, where nobody
    /// logs in to it).
    #[arg(long, conflicts_with = "keep")]
    pub remove_failed: bool,
    /// Keep a failed VM powered off, not running (a parallel run passes it to each child).
    #[arg(long, hide = true)]
    pub power_off_failed: bool,
    /// Write the JSON report here too (stdout always has it).
    #[arg(long, value_name = "PATH")]
    pub report: Option<Utf8PathBuf>,
    /// Write a JUnit XML report here (for GitLab, Jenkins, GitHub test reports).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<Utf8PathBuf>,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub backend: BackendArg,
    #[command(flatten)]
    pub vault: VaultArg,
}

/// `K/N`: the K-th (1-based) of N slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let parsed = s.split_once('/').and_then(|(k, n)| {
            Some(Shard {
                index: k.trim().parse().ok()?,
                count: n.trim().parse().ok()?,
            })
        });
        match parsed {
            Some(shard) if shard.count >= 1 && (1..=shard.count).contains(&shard.index) => {
                Ok(shard)
            }
            _ => Err(format!(
                "`{s}` is not a shard: write K/N with 1 <= K <= N, e.g. 2/4"
            )),
        }
    }
}

/// The K-th of N slices of `hosts` (sorted first, so every machine of a CI matrix computes the
/// same slices): host `i` goes to slice `i % N`. Pure.
pub fn shard_of(hosts: &[String], shard: Shard) -> Vec<String> {
    let mut sorted = hosts.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % shard.count == shard.index - 1)
        .map(|(_, h)| h)
        .collect()
}

/// Which profiles to run: the named ones, or with `--all` every profile without `expect`;
/// then the shard. Refuses an empty selection (a CI job that tests nothing must not pass).
fn select(repo: &Utf8Path, args: &ItArgs) -> Result<Vec<String>, HarnessError> {
    let mut hosts = args.hosts.clone();
    if args.all {
        for host in boma_inventory::list_profiles(repo)? {
            let profile = boma_inventory::load_profile(repo, &host)?;
            if profile.expect.is_empty() && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    if hosts.is_empty() {
        return Err(HarnessError::Refused(
            "name at least one host (`cargo xtask it askari`), or --all".into(),
        ));
    }
    if let Some(shard) = args.shard {
        hosts = shard_of(&hosts, shard);
        if hosts.is_empty() {
            say!(
                "shard {}/{}: no profile falls in this slice",
                shard.index,
                shard.count
            );
        }
    }
    Ok(hosts)
}

pub fn run(sh: &xshell::Shell, settings: &Settings, args: ItArgs) -> ExitCode {
    let started = Instant::now();
    let started_at = Timestamp::from_system_time(SystemTime::now());
    let hosts = match select(&settings.repo, &args) {
        Ok(hosts) => hosts,
        Err(e) => return edge::fail(&e),
    };
    if hosts.is_empty() {
        // A shard with nothing in it (more machines than profiles): nothing to prove, nothing
        // failed. No report: a report of no run would read as an error.
        return ExitCode::SUCCESS;
    }
    let options = ItOptions {
        tier: args.certs.tier,
        keep: args.keep,
        no_reboot: args.no_reboot,
        idempotence: !args.no_idempotence,
        remove_failed: args.remove_failed,
        // Set for the children of a parallel run ([`child_args`]): a kept guest would take the
        // CPU the other runs need.
        power_off_failed: args.power_off_failed,
    };
    let (runs, class, error) = if hosts.len() == 1 {
        let machine = RealMachine::new(sh, &settings.runs_root);
        let ctx = Ctx {
            settings,
            machine: &machine,
        };
        let outcome = boma_harness::it(&ctx, &hosts[0], options);
        let class = outcome.exit_class();
        (vec![outcome.report], class, outcome.error)
    } else {
        let (runs, class) = parallel(settings, &hosts, &args);
        (runs, class, None)
    };
    let report = Report {
        runs,
        started_at,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    // The JSON first, the words last: what a terminal or a CI log's tail shows at the end is
    // the verdict and why, not the end of a JSON document.
    let json = boma_report::render_json(&report);
    print!("{json}");
    let _ = std::io::stdout().flush();
    boma_exec::progress::line(boma_report::render_text_summary(&report).trim_end());
    if let Some(e) = &error {
        edge::print_error(e);
        if e.class() == ExitClass::Refused {
            say_doctor_problems(sh, settings);
        }
    }
    let mut class = class;
    for (path, text) in [
        (&args.report, json.clone()),
        (&args.junit, boma_report::render_junit(&report)),
    ] {
        if let Some(path) = path
            && let Err(e) = std::fs::write(path, text)
        {
            edge::print_error(&HarnessError::io(path, e));
            class = Some(worst(class, ExitClass::Failed));
        }
    }
    match class {
        None if report.result().as_expected() => ExitCode::SUCCESS,
        None => edge::exit(ExitClass::Failed),
        Some(class) => edge::exit(class),
    }
}

/// When a run is refused, the doctor's lines for what this machine lacks (the same lines
/// `cargo xtask doctor` prints), if it lacks anything.
fn say_doctor_problems(sh: &xshell::Shell, settings: &Settings) {
    let facts =
        boma_doctor::Facts::gather(sh, &settings.repo, &settings.cache_dir, &settings.runs_root);
    let diagnosis = boma_doctor::diagnose_for(&facts, boma_doctor::Needs::All);
    let problems: Vec<&boma_doctor::Line> = diagnosis.problems().collect();
    if problems.is_empty() {
        return;
    }
    say!("doctor: this machine cannot run the cycle yet:");
    for line in problems {
        let fix = line
            .fix
            .as_deref()
            .map(|f| format!(" — {f}"))
            .unwrap_or_default();
        say!("  {}: {}{fix}", line.subject, line.text);
    }
}

fn worst(a: Option<ExitClass>, b: ExitClass) -> ExitClass {
    let rank = |c: &ExitClass| match c {
        ExitClass::Failed => 1,
        ExitClass::Refused => 2,
        ExitClass::Interrupted(_) => 3,
    };
    match a {
        Some(a) if rank(&a) >= rank(&b) => a,
        _ => b,
    }
}

/// The exit class a child's status means (its own edge mapped it).
fn class_of(code: Option<i32>) -> Option<ExitClass> {
    match code {
        Some(0) => None,
        Some(2) => Some(ExitClass::Refused),
        Some(c) if c > 128 => Some(ExitClass::Interrupted(boma_exec::interrupt::Interrupted {
            signal: c - 128,
        })),
        _ => Some(ExitClass::Failed),
    }
}

/// What a profile's VM takes: its memory with QEMU's overhead (TCG's translation cache is
/// 1 GiB), and its vCPUs.
fn charge(settings: &Settings, host: &str) -> Charge {
    let profile = boma_inventory::load_profile(&settings.repo, host).ok();
    Charge {
        mem_mib: boma_host::judge::vm_charge_mib(
            profile.as_ref().map_or(1024, |p| u64::from(p.mem_mib)),
        ),
        vcpus: profile.as_ref().map_or(2, |p| p.vcpus),
    }
}

/// What one child's VM holds while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Charge {
    mem_mib: u64,
    vcpus: u32,
}

/// How many children run now, and what their VMs hold together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct InUse {
    runs: usize,
    held: Charge,
}

impl InUse {
    /// A child started, holding `charge`.
    fn take(&mut self, charge: Charge) {
        self.runs += 1;
        self.held.mem_mib += charge.mem_mib;
        self.held.vcpus += charge.vcpus;
    }

    /// A child ended (or never started), giving `charge` back.
    fn give_back(&mut self, charge: Charge) {
        self.runs -= 1;
        self.held.mem_mib -= charge.mem_mib;
        self.held.vcpus -= charge.vcpus;
    }
}

/// The bounds of `-j N`: the jobs asked for, the memory left to guests, and the vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bounds {
    jobs: usize,
    mem_mib: u64,
    vcpus: u32,
}

/// vCPUs per host core that children may hold together. A TCG vCPU is a busy host thread, and
/// a guest starved of CPU misses its waits (seen here: a reboot timeout when a `cargo` build
/// ran beside two 2-vCPU guests on 2 cores); two per core is what `-j 2` of two-vCPU guests
/// takes on a 2-core machine, and no more.
const VCPUS_PER_CORE: u32 = 2;

/// Whether a child whose VM needs `charge` may start beside `in_use`. The first always starts:
/// its own preflight refuses a VM that can never fit. Pure.
fn may_start(in_use: InUse, charge: Charge, bounds: Bounds) -> bool {
    in_use.runs == 0
        || (in_use.runs < bounds.jobs
            && in_use.held.mem_mib + charge.mem_mib <= bounds.mem_mib
            && in_use.held.vcpus + charge.vcpus <= bounds.vcpus)
}

/// The order children start in: the biggest guests first (a bigger guest is the heavier
/// profile, and starting the longest runs first shortens the whole), ties in the given order.
/// Pure; the report keeps the given order whatever this is.
fn start_order(charges: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..charges.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(charges[i]));
    order
}

/// A finished child: its host, exit code, report file and log.
type ChildRun = (String, Option<i32>, Utf8PathBuf, Utf8PathBuf);

/// Run each host as a child `xtask it <host>`, at most `jobs` at once and never more than
/// memory and cores allow ([`may_start`]); each child's stderr goes to its own log, its report
/// to a file.
fn parallel(
    settings: &Settings,
    hosts: &[String],
    args: &ItArgs,
) -> (Vec<boma_report::RunReport>, Option<ExitClass>) {
    let dir = settings.runs_root.join("parallel");
    let _ = std::fs::create_dir_all(&dir);
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .unwrap_or_else(|| Utf8PathBuf::from("cargo-xtask"));
    let available = boma_host::gather::available_mib().unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bounds = Bounds {
        jobs: args.jobs.max(1),
        mem_mib: available.saturating_sub(boma_host::judge::MARGIN_MIB),
        vcpus: u32::try_from(cores)
            .unwrap_or(u32::MAX)
            .saturating_mul(VCPUS_PER_CORE),
    };
    say!(
        "running {} profiles, up to {} at once within {} MiB and {} vCPUs ({VCPUS_PER_CORE} per core of {cores}): {}",
        hosts.len(),
        bounds.jobs,
        bounds.mem_mib,
        bounds.vcpus,
        hosts.join(", ")
    );
    // What the running children hold, and a condition to wait on for room.
    let slots = (Mutex::new(InUse::default()), Condvar::new());
    let results: Mutex<Vec<ChildRun>> = Mutex::new(Vec::new());
    let charges: Vec<Charge> = hosts.iter().map(|h| charge(settings, h)).collect();
    let release = |charge: Charge| {
        let (lock, ready) = &slots;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        state.give_back(charge);
        ready.notify_all();
    };
    let mem: Vec<u64> = charges.iter().map(|c| c.mem_mib).collect();
    std::thread::scope(|scope| {
        for index in start_order(&mem) {
            let host = &hosts[index];
            let charge = charges[index];
            {
                let (lock, ready) = &slots;
                let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !may_start(*state, charge, bounds) {
                    state = ready.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                state.take(charge);
            }
            if boma_exec::interrupt::received().is_some() {
                release(charge);
                break;
            }
            let results = &results;
            let dir = dir.clone();
            let exe = exe.clone();
            scope.spawn(move || {
                let report = dir.join(format!("{host}.json"));
                let log = dir.join(format!("{host}.log"));
                let _ = std::fs::remove_file(&report);
                let child_args = child_args(host, args, &report);
                say!("==> {host} started (log: {log})");
                let started = Instant::now();
                let log_file = std::fs::File::create(&log);
                let code = match (xshell::Shell::new(), log_file) {
                    // A shell per thread: xshell's is not shared between threads.
                    (Ok(sh), Ok(log_file)) => {
                        let sh = &sh;
                        // The child's stderr goes straight to its log: `tail -f` follows it.
                        let run = xshell::cmd!(sh, "{exe} {child_args...}")
                            .exec()
                            .forward_interrupt()
                            .allow_fail()
                            .quiet()
                            .stderr_to(log_file)
                            .run();
                        match run {
                            Ok(out) => out.status.code(),
                            Err(e) => {
                                say!("{host}: could not run: {e}");
                                None
                            }
                        }
                    }
                    (Err(e), _) => {
                        say!("{host}: cannot start a shell: {e}");
                        None
                    }
                    (_, Err(e)) => {
                        say!("{host}: cannot create its log {log}: {e}");
                        None
                    }
                };
                say!(
                    "<== {host} {} in {}",
                    match code {
                        Some(0) => "passed".to_owned(),
                        Some(c) => format!("exited {c}"),
                        None => "did not finish".to_owned(),
                    },
                    boma_exec::progress::human(started.elapsed())
                );
                results.lock().unwrap_or_else(|e| e.into_inner()).push((
                    host.clone(),
                    code,
                    report,
                    log,
                ));
                release(charge);
            });
        }
    });
    let mut collected = results.lock().unwrap_or_else(|e| e.into_inner()).clone();
    collected.sort_by_key(|(host, ..)| hosts.iter().position(|h| h == host));
    let mut runs = Vec::new();
    let mut class = None;
    for (host, code, report, log) in collected {
        if let Some(c) = class_of(code) {
            class = Some(worst(class, c));
        }
        let parsed = std::fs::read_to_string(&report)
            .ok()
            .and_then(|t| serde_json::from_str::<Report>(&t).ok());
        match parsed {
            Some(r) => runs.extend(r.runs),
            None => say!("{host}: no report (see {log})"),
        }
        if code != Some(0) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            say!("--- {host}: the end of {log}");
            for line in tail.into_iter().rev() {
                say!("    {line}");
            }
        }
    }
    (runs, class)
}

/// A child's command line: the same options, one host, its own report file.
fn child_args(host: &str, args: &ItArgs, report: &Utf8Path) -> Vec<String> {
    let mut out = vec![
        "it".to_owned(),
        host.to_owned(),
        "--certs".to_owned(),
        args.certs.tier.to_string(),
        "--report".to_owned(),
        report.to_string(),
        "--backend".to_owned(),
        args.backend.backend.to_string(),
    ];
    for (flag, on) in [
        ("--keep", args.keep),
        ("--no-reboot", args.no_reboot),
        ("--no-idempotence", args.no_idempotence),
        ("--fresh", args.fresh),
        ("--remove-failed", args.remove_failed),
        // Each child is one run of several.
        ("--power-off-failed", true),
    ] {
        if on {
            out.push(flag.to_owned());
        }
    }
    let image = match &args.image.image {
        boma_harness::ImageSource::Auto => "auto".to_owned(),
        boma_harness::ImageSource::Download => "download".to_owned(),
        boma_harness::ImageSource::Build => "build".to_owned(),
        boma_harness::ImageSource::File(path) => path.to_string(),
    };
    out.extend(["--image".to_owned(), image]);
    if let Some(url) = &args.image.image_url {
        out.extend(["--image-url".to_owned(), url.clone()]);
    }
    if let Some(url) = &args.image.sums_url {
        out.extend(["--sums-url".to_owned(), url.clone()]);
    }
    if let Some(file) = &args.vault.vault_password_file {
        out.extend(["--vault-password-file".to_owned(), file.to_string()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_child_starts_within_the_jobs_the_memory_and_the_vcpus() {
        let two_cores = Bounds {
            jobs: 4,
            mem_mib: 20_000,
            vcpus: 2 * VCPUS_PER_CORE,
        };
        let guest = Charge {
            mem_mib: 2304,
            vcpus: 2,
        };
        let running = |runs: usize| InUse {
            runs,
            held: Charge {
                mem_mib: guest.mem_mib * runs as u64,
                vcpus: guest.vcpus * runs as u32,
            },
        };
        // -j 4 of 2-vCPU guests on 2 cores: two at once, the vCPUs decide.
        assert!(may_start(running(0), guest, two_cores));
        assert!(may_start(running(1), guest, two_cores));
        assert!(!may_start(running(2), guest, two_cores));
        // The jobs decide.
        assert!(!may_start(
            running(1),
            guest,
            Bounds {
                jobs: 1,
                ..two_cores
            }
        ));
        // The memory decides.
        let small = Bounds {
            mem_mib: 4000,
            ..two_cores
        };
        assert!(!may_start(running(1), guest, small));
        // The first always starts, however big: its preflight refuses what can never fit.
        let huge = Charge {
            mem_mib: 64_000,
            vcpus: 16,
        };
        assert!(may_start(InUse::default(), huge, small));
    }

    #[test]
    fn each_child_of_a_parallel_run_keeps_a_failed_vm_powered_off() {
        use clap::Parser as _;
        let it = |argv: Vec<String>| match crate::Cli::try_parse_from(argv).unwrap().command {
            crate::Command::It(args) => args,
            other => panic!("{other:?}"),
        };
        let parent = it(hosts(&["cargo xtask", "it", "askari", "ubongo"]));
        assert!(!parent.power_off_failed, "an operator does not pass it");
        let mut argv = hosts(&["cargo xtask"]);
        argv.extend(child_args(
            "askari",
            &parent,
            Utf8Path::new("/r/askari.json"),
        ));
        let child = it(argv);
        assert_eq!(child.hosts, ["askari"]);
        assert!(child.power_off_failed);
    }

    #[test]
    fn the_biggest_guests_start_first_ties_in_order() {
        assert_eq!(start_order(&[2304, 3840, 2304, 2816]), [1, 3, 0, 2]);
        assert!(start_order(&[]).is_empty());
    }

    #[test]
    fn shards_are_deterministic_disjoint_and_complete() {
        let all = hosts(&["ubongo", "askari", "cat-a", "cat-b", "cat-c"]);
        let mut seen = Vec::new();
        for k in 1..=3 {
            let slice = shard_of(&all, Shard { index: k, count: 3 });
            // The order of the input does not matter.
            let mut reversed = all.clone();
            reversed.reverse();
            assert_eq!(slice, shard_of(&reversed, Shard { index: k, count: 3 }));
            seen.extend(slice);
        }
        seen.sort();
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(seen, expected);
        assert_eq!(
            shard_of(&all, Shard { index: 1, count: 3 }),
            hosts(&["askari", "cat-c"])
        );
    }

    #[test]
    fn shard_syntax() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "x", "1-2"] {
            assert!(bad.parse::<Shard>().unwrap_err().contains("K/N"), "{bad}");
        }
    }

    #[test]
    fn children_exit_statuses_keep_their_class_and_the_worst_wins() {
        assert_eq!(class_of(Some(0)), None);
        assert_eq!(class_of(Some(1)), Some(ExitClass::Failed));
        assert_eq!(class_of(Some(2)), Some(ExitClass::Refused));
        assert_eq!(class_of(Some(130)).map(ExitClass::code), Some(130));
        assert_eq!(class_of(None), Some(ExitClass::Failed));
        assert_eq!(
            worst(Some(ExitClass::Failed), ExitClass::Refused),
            ExitClass::Refused
        );
        assert_eq!(
            worst(Some(ExitClass::Refused), ExitClass::Failed),
            ExitClass::Refused
        );
    }
}
