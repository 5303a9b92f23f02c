//! `cargo xtask it`: its options, which profiles, and the wiring. One profile runs in this
//! process; several run as child processes through [`boma_parallel`] (one VM, run directory,
//! lock and report each; `-j N` at once within the machine's memory and cores), and their
//! reports are combined into one — in which every selected host has its line, whatever became
//! of its child. `--shard K/N` runs the K-th of N deterministic slices, for a CI matrix.
//!
//! A name is a profile's or a fleet's (`boma_fleet::resolve_target`, ADR-027): a fleet runs
//! like a host (`boma_harness::fleet::it`), in this process when it is the one run, else as a
//! child like a host's, charged all its members' memory and vCPUs; `--all` takes every fleet
//! too. A profile that exists only to be a fleet member (`"fleet_only": true`) is refused
//! alone and left to its fleets by `--all`.
//!
//! The report files (`--report`, `--junit`) are written first, then the JSON goes to stdout and
//! the summary to stderr; the outcome is this process's own interrupt if it got one, else the
//! worst run's.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

use boma_exec::interrupt::{self, Interrupted};
use boma_exec::say;
use boma_harness::{ExitClass, HarnessError, ItOptions, RunId, Settings};
use boma_parallel::{Bounds, Charge, Children, Job, Shard};
use boma_report::{Report, RunReport, RunResult, Timestamp};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;

use crate::edge::{self, Failure, Outcome};
use crate::settings::{BackendArg, CertsArg, Checkout, ImageArgs, VaultArg};

#[derive(Args, Debug, Clone)]
pub struct ItArgs {
    /// The hosts to mirror: each profile is profiles/<HOST>.json (e.g. askari ubongo), and a
    /// fleet's name (fleets/<NAME>.json) runs every member of it together. A name given twice
    /// runs once.
    pub hosts: Vec<String>,
    /// Every profile and every fleet, RED ones (with `expect`) included: each of those passes
    /// only by failing exactly as it expects. Profiles that exist only as fleet members
    /// (`"fleet_only": true`) are left to their fleets.
    #[arg(long)]
    pub all: bool,
    /// How many VMs run at once (bounded by memory: each profile's mem_mib plus QEMU's
    /// overhead must fit in what the machine has available less a margin; and by the cores:
    /// at most two vCPUs per host core). Each child also takes its own machine-wide memory
    /// reservation, so a child that does not fit beside other checkouts' runs is refused.
    #[arg(short = 'j', long, default_value_t = 1, value_name = "N")]
    pub jobs: usize,
    /// Run only the K-th of N slices of the selected profiles (1-based), for a CI matrix: they
    /// are sorted and every N-th is taken from the K-th, so the machines of a matrix run
    /// disjoint slices that together cover all. A slice with no profile runs nothing and
    /// passes, with no report.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub certs: CertsArg,
    /// Keep the VM running even when the run passes (and when it is interrupted); its memory
    /// stays reserved until `down` or `prune`.
    #[arg(long)]
    pub keep: bool,
    /// Check without rebooting (faster, blind to reboot-survival bugs; the report says so).
    #[arg(long)]
    pub no_reboot: bool,
    /// Skip the second apply of every step (the idempotence check).
    #[arg(long)]
    pub no_idempotence: bool,
    /// Ignore the cached disk layers: apply every step, store nothing (a clean cycle). Fleets
    /// run without layers anyway.
    #[arg(long)]
    pub fresh: bool,
    /// Remove a failed run's VM once its diagnostics bundle is written (for CI, where nobody
    /// logs in to it).
    #[arg(long, conflicts_with = "keep")]
    pub remove_failed: bool,
    /// Write the JSON report here too (stdout always has it), whatever the result; a file that
    /// cannot be written fails the run.
    #[arg(long, value_name = "PATH")]
    pub report: Option<Utf8PathBuf>,
    /// Write a JUnit XML report here (for GitLab, Jenkins, GitHub test reports), whatever the
    /// result: a suite per run, a test case per phase and per check.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<Utf8PathBuf>,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub backend: BackendArg,
    #[command(flatten)]
    pub vault: VaultArg,
    /// The run's id, chosen by a parallel run's parent for its child (8 hex digits): the
    /// parent then knows the child's VM by name, and removes it if the child is killed.
    #[arg(long, hide = true, value_name = "ID")]
    pub run_id: Option<RunId>,
    /// Keep a failed VM powered off, not running (a parallel run passes it to each child: a
    /// kept guest would take the CPU the other runs need).
    #[arg(long, hide = true)]
    pub power_off_failed: bool,
}

pub fn run(checkout: &Checkout, args: ItArgs) -> Result<Outcome, Failure> {
    let started = Instant::now();
    let started_at = Timestamp::from_system_time(SystemTime::now());
    let settings = checkout.harness(|s| {
        args.image.lay_over(s);
        args.backend.lay_over(s);
        args.vault.lay_over(s);
        if args.fresh {
            s.layers = false;
        }
    })?;
    let selection = select(&settings.repo, &args)?;
    if args.fresh && !selection.fleets.is_empty() {
        say!(
            "--fresh changes nothing for a fleet: fleets run without layers in this version (ADR-027): {}",
            selection.fleets.join(", ")
        );
    }
    let names = selection.names();
    if names.is_empty() {
        // A shard with nothing in it (more machines than profiles): nothing to prove, nothing
        // failed. No report: a report of no run would read as an error.
        return Ok(Outcome::Passed);
    }
    let (runs, error) = match names.as_slice() {
        [name] => {
            let options = options(&args, args.run_id);
            let outcome = checkout.with_ctx(&settings, |ctx| {
                if selection.fleets.contains(name) {
                    boma_harness::fleet::it(ctx, name, options)
                } else {
                    boma_harness::it(ctx, name, options)
                }
            });
            (vec![outcome.report], outcome.error)
        }
        _ => (
            parallel(checkout, &settings, &selection, &args, started_at)?,
            None,
        ),
    };
    let report = Report {
        runs,
        started_at,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    let json = boma_report::render_json(&report);
    // The files first: a stdout nobody reads any more must not cost them.
    let unwritten = write_reports(&args, &json, &report);
    // The JSON before the words: what a terminal or a CI log's tail shows at the end is the
    // verdict and why, not the end of a JSON document.
    edge::print(&json);
    boma_exec::progress::line(boma_report::render_text_summary(&report).trim_end());
    if let Some(e) = &error {
        edge::print_error(e);
        if e.class() == ExitClass::Refused {
            // A fleet needs its segment's switch too.
            let needs = if selection.fleets.is_empty() {
                boma_doctor::Needs::All
            } else {
                boma_doctor::Needs::Fleet
            };
            say_doctor_problems(checkout, &settings, needs);
        }
    }
    for e in &unwritten {
        edge::print_error(e);
    }
    Ok(verdict(
        report.result(),
        interrupt::received(),
        unwritten.is_empty(),
    ))
}

/// The outcome of an `it`: this process's own interrupt, when it got one (it stopped the runs,
/// whatever they say); else the worst run's result — a run interrupted on its own (a signal
/// sent to one child) is no pass, and this process was not interrupted, so it fails. A passing
/// run whose report files could not be written fails. Pure.
fn verdict(worst: RunResult, interrupted: Option<Interrupted>, written: bool) -> Outcome {
    if let Some(i) = interrupted {
        return Outcome::Interrupted(i);
    }
    match worst {
        RunResult::Passed | RunResult::ExpectedFailure if written => Outcome::Passed,
        RunResult::Passed
        | RunResult::ExpectedFailure
        | RunResult::Failed
        | RunResult::Error
        | RunResult::Interrupted => Outcome::Failed,
        RunResult::Refused => Outcome::Refused,
    }
}

/// `--report` and `--junit`, each written whole; the errors of those that could not be.
fn write_reports(args: &ItArgs, json: &str, report: &Report) -> Vec<HarnessError> {
    let mut unwritten = Vec::new();
    let files = [
        (&args.report, json.to_owned()),
        (&args.junit, boma_report::render_junit(report)),
    ];
    for (path, text) in files {
        if let Some(path) = path
            && let Err(e) = std::fs::write(path, text)
        {
            unwritten.push(HarnessError::io(path, e));
        }
    }
    unwritten
}

/// The options of one profile's cycle.
fn options(args: &ItArgs, run_id: Option<RunId>) -> ItOptions {
    ItOptions {
        tier: args.certs.tier,
        keep: args.keep,
        no_reboot: args.no_reboot,
        idempotence: !args.no_idempotence,
        remove_failed: args.remove_failed,
        run_id,
        power_off_failed: args.power_off_failed,
    }
}

/// What `it` runs: profiles, and fleets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Selection {
    /// Profiles to run, each alone (a name without a profile is left in: its run is refused in
    /// the report, as ever).
    profiles: Vec<String>,
    /// Fleets to run, each its members together.
    fleets: Vec<String>,
}

impl Selection {
    /// Every run, profiles first: each name is a profile's or a fleet's, never both.
    fn names(&self) -> Vec<String> {
        self.profiles.iter().chain(&self.fleets).cloned().collect()
    }
}

/// What the repository holds, as [`decide`] needs it.
#[derive(Debug, Clone, Default)]
struct Catalogue {
    profiles: Vec<String>,
    /// The profiles with `"fleet_only": true`.
    fleet_only: Vec<String>,
    /// The profiles with an `expect` (RED).
    red: Vec<String>,
    /// Each fleet, with its members as its file names them (empty when it cannot be read).
    fleets: Vec<(String, Vec<String>)>,
}

/// Which profiles and fleets to run: the named ones, each once; with `--all` every profile but
/// the fleet-only ones, and every fleet; then the shard (of profiles and fleets together).
/// Refuses an empty selection (a CI job that tests nothing must not pass), a named fleet-only
/// profile and a name that is both a profile and a fleet.
fn select(repo: &Utf8Path, args: &ItArgs) -> Result<Selection, Failure> {
    let (named, repeated) = boma_parallel::dedup(&args.hosts);
    if !repeated.is_empty() {
        say!("named more than once, run once: {}", repeated.join(", "));
    }
    let catalogue = catalogue(repo, &named, args.all)?;
    let mut selection = decide(&named, args.all, &catalogue).map_err(Failure::refused)?;
    if args.all {
        let red: Vec<&str> = catalogue
            .red
            .iter()
            .filter(|h| selection.profiles.contains(h))
            .map(String::as_str)
            .collect();
        if !red.is_empty() {
            say!(
                "--all takes the RED profiles too, each passing only by failing as it expects: {}",
                red.join(", ")
            );
        }
        if !catalogue.fleet_only.is_empty() {
            say!(
                "--all leaves the fleet-only profiles to their fleets: {}",
                catalogue.fleet_only.join(", ")
            );
        }
    }
    if let Some(shard) = args.shard {
        let slice = boma_parallel::shard_of(&selection.names(), shard);
        selection.profiles.retain(|p| slice.contains(p));
        selection.fleets.retain(|f| slice.contains(f));
        if slice.is_empty() {
            say!(
                "shard {}/{}: no profile or fleet falls in this slice",
                shard.index,
                shard.count
            );
        }
    }
    Ok(selection)
}

/// Reads what [`decide`] needs: the names of the profiles and fleets, and the profiles that are
/// named (with `all`: every profile) for their `fleet_only` and `expect`.
fn catalogue(repo: &Utf8Path, named: &[String], all: bool) -> Result<Catalogue, Failure> {
    let profiles = boma_inventory::list_profiles(repo).map_err(HarnessError::from)?;
    let fleet_names = boma_fleet::list_fleets(repo).map_err(|e| Failure::refused(e.to_string()))?;
    let mut catalogue = Catalogue {
        fleets: fleet_names
            .iter()
            .map(|name| {
                let members = boma_fleet::load_fleet(repo, name, &profiles)
                    .map(|fleet| fleet.members().to_vec())
                    .unwrap_or_default();
                (name.clone(), members)
            })
            .collect(),
        ..Catalogue::default()
    };
    for host in profiles.iter().filter(|p| all || named.contains(p)) {
        let profile = boma_inventory::load_profile(repo, host).map_err(HarnessError::from)?;
        if profile.fleet_only {
            catalogue.fleet_only.push(host.clone());
        }
        if !profile.expect.is_empty() {
            catalogue.red.push(host.clone());
        }
    }
    catalogue.profiles = profiles;
    Ok(catalogue)
}

/// The decision of [`select`] on what the repository holds. Pure.
fn decide(named: &[String], all: bool, catalogue: &Catalogue) -> Result<Selection, String> {
    let fleet_names: Vec<String> = catalogue.fleets.iter().map(|(f, _)| f.clone()).collect();
    let mut selection = Selection::default();
    for name in named {
        match boma_fleet::resolve_target(name, &catalogue.profiles, &fleet_names) {
            Ok(boma_fleet::Target::Fleet) => selection.fleets.push(name.clone()),
            Ok(boma_fleet::Target::Profile) if catalogue.fleet_only.contains(name) => {
                let fleets: Vec<&str> = catalogue
                    .fleets
                    .iter()
                    .filter(|(_, members)| members.contains(name))
                    .map(|(fleet, _)| fleet.as_str())
                    .collect();
                return Err(format!(
                    "`{name}` runs only as a fleet member (profiles/{name}.json says \"fleet_only\": true): run a fleet that names it ({})",
                    if fleets.is_empty() {
                        "none does yet".to_owned()
                    } else {
                        fleets.join(", ")
                    }
                ));
            }
            // A name without a profile is the harness's to refuse, in the run's report.
            Ok(boma_fleet::Target::Profile) | Err(boma_fleet::FleetError::NoSuchTarget { .. }) => {
                selection.profiles.push(name.clone());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    if all {
        for host in &catalogue.profiles {
            if !catalogue.fleet_only.contains(host) && !selection.profiles.contains(host) {
                selection.profiles.push(host.clone());
            }
        }
        for fleet in fleet_names {
            if !selection.fleets.contains(&fleet) {
                selection.fleets.push(fleet);
            }
        }
    }
    if selection.profiles.is_empty() && selection.fleets.is_empty() {
        return Err("name at least one host (`cargo xtask it askari`), or --all".to_owned());
    }
    Ok(selection)
}

/// Every host and fleet as a child `xtask it <name> --run-id <id>`, within `-j`, the memory and
/// the cores; what a child killed before it reported left is removed by its name.
fn parallel(
    checkout: &Checkout,
    settings: &Settings,
    selection: &Selection,
    args: &ItArgs,
    started_at: Timestamp,
) -> Result<Vec<RunReport>, Failure> {
    let hosts = &selection.names();
    // Shared, as each child takes it: `prune` is refused for the whole run, never stops a
    // child between two others.
    let _lock = boma_vm::Runs::new(&settings.runs_root)
        .lock_shared(&format!("cargo xtask it {}", hosts.join(" ")))
        .map_err(HarnessError::from)?;
    let dir = settings.runs_root.join("parallel");
    std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io(&dir, e))?;
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .ok_or_else(|| {
            Failure::refused("cannot find this program's own path to run its children")
        })?;
    // Memory this machine cannot tell: one child at a time (the first always starts).
    let available = checkout.with_ctx(settings, |ctx| ctx.machine.host().available_mib());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bounds = Bounds::new(
        args.jobs,
        available
            .unwrap_or(0)
            .saturating_sub(boma_host::judge::MARGIN_MIB),
        cores,
    );
    say!(
        "running {} {}, up to {} at once within {} MiB and {} vCPUs ({} per core of {cores}): {}",
        hosts.len(),
        if selection.fleets.is_empty() {
            "profiles"
        } else {
            "profiles and fleets"
        },
        bounds.jobs,
        bounds.mem_mib,
        bounds.vcpus,
        boma_parallel::VCPUS_PER_CORE,
        hosts.join(", ")
    );
    let jobs: Vec<Job> = hosts
        .iter()
        .map(|host| Job {
            host: host.clone(),
            charge: if selection.fleets.contains(host) {
                fleet_charge(settings, host)
            } else {
                charge(settings, host)
            },
        })
        .collect();
    // Each child's run id, chosen here: its VM's name is then known before it starts.
    let ids: Vec<(String, RunId)> = hosts.iter().map(|h| (h.clone(), RunId::random())).collect();
    let id_of = |host: &str| ids.iter().find(|(h, _)| h == host).map(|(_, id)| *id);
    let child_args = |host: &str, report: &Utf8Path| child_args(host, args, report, id_of(host));
    let leftovers = |host: &str, pid: u32| match id_of(host) {
        Some(id) => remove_leftovers(
            settings,
            host,
            selection.fleets.iter().any(|f| f == host),
            id,
            pid,
        ),
        None => Err(format!("no run id was chosen for {host}")),
    };
    let children = Children {
        exe,
        dir,
        args: &child_args,
        leftovers: &leftovers,
    };
    let turns =
        boma_parallel::run_all(&jobs, bounds, &|| interrupt::received().is_some(), &|job| {
            children.run(&job.host)
        });
    Ok(boma_parallel::combine(
        &jobs,
        turns,
        interrupt::received(),
        &args.certs.tier.to_string(),
        started_at,
    ))
}

/// Remove what `host`'s child (pid `pid`, run id `id`) left when it died before reporting — a
/// fleet's child, every member and the segment: on this thread's own shell (xshell's is not
/// shared between threads).
fn remove_leftovers(
    settings: &Settings,
    host: &str,
    fleet: bool,
    id: RunId,
    pid: u32,
) -> Result<Vec<String>, String> {
    let sh = xshell::Shell::new().map_err(|e| format!("cannot start a shell: {e}"))?;
    let machine = boma_harness::RealMachine::new(&sh, &settings.runs_root);
    let ctx = boma_harness::Ctx {
        settings,
        machine: &machine,
    };
    let removed = if fleet {
        boma_harness::fleet::remove_orphan(&ctx, host, &id.to_string(), pid)
    } else {
        let name = boma_name::VmName::mint(host, &id.to_string(), &BTreeSet::new())
            .map_err(|e| e.to_string())?;
        boma_harness::remove_orphan(&ctx, &name, pid)
    };
    removed.map_err(|e| boma_harness::error_chain(&e))
}

/// What a profile's VM takes: the memory the reservation charges it (the one rule, in
/// `boma_host::judge`), and its vCPUs.
fn charge(settings: &Settings, host: &str) -> Charge {
    let profile = boma_inventory::load_profile(&settings.repo, host).ok();
    Charge {
        mem_mib: boma_host::judge::vm_charge_mib(
            profile.as_ref().map_or(1024, |p| u64::from(p.mem_mib)),
        ),
        vcpus: profile.as_ref().map_or(2, |p| p.vcpus),
    }
}

/// What a fleet takes: every member's charge, added up (a fleet's members run at once).
fn fleet_charge(settings: &Settings, fleet: &str) -> Charge {
    let members = boma_inventory::list_profiles(&settings.repo)
        .ok()
        .and_then(|profiles| boma_fleet::load_fleet(&settings.repo, fleet, &profiles).ok())
        .map(|f| f.members().to_vec())
        .unwrap_or_default();
    members.iter().map(|member| charge(settings, member)).fold(
        Charge {
            mem_mib: 0,
            vcpus: 0,
        },
        |total, one| Charge {
            mem_mib: total.mem_mib + one.mem_mib,
            vcpus: total.vcpus + one.vcpus,
        },
    )
}

/// When a run is refused, the doctor's lines for what this machine lacks (the same lines
/// `cargo xtask doctor` prints), if it lacks anything.
fn say_doctor_problems(checkout: &Checkout, settings: &Settings, needs: boma_doctor::Needs) {
    let facts = boma_doctor::Facts::gather(
        &checkout.sh,
        &settings.repo,
        &settings.cache_dir,
        &settings.runs_root,
    );
    let diagnosis = boma_doctor::diagnose_for(&facts, needs);
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

/// A child's command line: the same options, one host, its own report file and run id. Pure.
fn child_args(host: &str, args: &ItArgs, report: &Utf8Path, run_id: Option<RunId>) -> Vec<String> {
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
    if let Some(id) = run_id {
        out.extend(["--run-id".to_owned(), id.to_string()]);
    }
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
mod tests;
