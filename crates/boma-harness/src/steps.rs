//! The steps (`up`, `apply`, `reboot`, `assert`, `down`, `console`, `prune`) and the cycle
//! that chains them (`it`), with one policy for failures: after boot, a failure collects the
//! diagnostics bundle and keeps the VM for inspection; an interrupt removes what this command
//! created (unless asked to keep it).

use std::collections::BTreeMap;
use std::time::Instant;

use boma_exec::interrupt;
use boma_exec::progress::{self, human, phase};
use boma_inventory::{CertTier, PlaybookRun, TransientHost, VmName};
use boma_vm::lifecycle::{self, Effects, UpFailure, UpRequest};
use boma_vm::{Accel, BackendKind, RebootHow, RunRecord, Runs, diagnostics};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;

use crate::preflight::{self, Needs, Plan};
use crate::verify::VerifyResults;
use crate::{Ctx, HarnessError};

/// Options of the full cycle.
#[derive(Debug, Clone, Copy)]
pub struct ItOptions {
    pub tier: CertTier,
    /// Keep the VM even when the run passes.
    pub keep: bool,
    /// Verify without rebooting (faster, and blind to exactly the bugs this exists for).
    pub no_reboot: bool,
}

/// The transient inventory's directory inside a VM's run directory.
const INVENTORY_DIR: &str = "inventory";
/// The run's own variables for the verify playbook.
const HARNESS_VARS: &str = "harness-vars.json";
/// Where the verify playbook writes its findings.
const RESULTS_FILE: &str = "verify-results.json";

fn runs(ctx: &Ctx) -> Runs {
    Runs::new(&ctx.settings.runs_root)
}

/// Run `f` with the lifecycle's effects for a VM of `kind` under `accel`.
fn with_effects<T>(ctx: &Ctx, kind: BackendKind, accel: Accel, f: impl FnOnce(&Effects) -> T) -> T {
    let runs = runs(ctx);
    let backend = ctx.machine.backend(kind);
    let fx = Effects {
        runs: &runs,
        backend: backend.as_ref(),
        guest: ctx.machine.guest(),
        disks: ctx.machine.disks(),
        waits: ctx.machine.waits(accel),
    };
    f(&fx)
}

/// Say which real hosts the VM is given no route to, and which it cannot be (a host reached by
/// a DNS name has no fixed address to route away).
fn say_fleet_isolation(plan: &Plan) {
    let addresses: Vec<String> = plan.fleet_addresses.iter().map(|a| a.to_string()).collect();
    if addresses.is_empty() {
        eprintln!("real fleet: no host has a literal address, so no route is taken away");
    } else {
        eprintln!(
            "real fleet: the VM gets no route to {} (unreachable routes in its network-config)",
            addresses.join(", ")
        );
    }
    if !plan.fleet_named_only.is_empty() {
        let named: Vec<String> = plan
            .fleet_named_only
            .iter()
            .map(|(host, name)| {
                if host == name {
                    host.clone()
                } else {
                    format!("{host} ({name})")
                }
            })
            .collect();
        eprintln!(
            "real fleet: reached by name, so not routed away: {}",
            named.join(", ")
        );
    }
}

/// Refuse a real host whose address lies inside the guest's own network: its unreachable
/// route would cut the VM off its gateway or DNS, and the VM could not tell it from a neighbour.
fn fleet_outside_guest_network(plan: &Plan, kind: BackendKind) -> Result<(), HarnessError> {
    let inside = kind.inside_guest_network(&plan.fleet_addresses);
    if inside.is_empty() {
        return Ok(());
    }
    let (network, prefix) = kind.guest_network();
    let list: Vec<String> = inside.iter().map(|a| a.to_string()).collect();
    let other = match kind {
        BackendKind::Qemu => BackendKind::Libvirt,
        BackendKind::Libvirt => BackendKind::Qemu,
    };
    Err(HarnessError::Usage(format!(
        "the real inventory has {} inside the {kind} backend's guest network {network}/{prefix}: routing it away would cut the VM off its own network; use --backend {other}",
        list.join(", ")
    )))
}

/// `boma-it-<host>-<8 hex>`: unique per run.
fn new_run_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|uuid| uuid.trim().replace('-', "")[..8].to_owned())
        .unwrap_or_else(|_| format!("{:08x}", std::process::id()))
}

/// Boot a VM mirroring `host` and wait until it is ready.
pub fn up(ctx: &Ctx, host: &str) -> Result<RunRecord, HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock(&format!("cargo xtask up {host}"))?;
    let plan = preflight::plan(ctx, host, CertTier::Internal, Needs::Vm)?;
    let record = up_planned(ctx, &plan, false)?;
    write_inventory(ctx, &plan, &record)?;
    Ok(record)
}

/// `up` after preflight. A failure after boot keeps the VM (diagnostics collected); an
/// interrupt removes it unless `keep`.
fn up_planned(ctx: &Ctx, plan: &Plan, keep: bool) -> Result<RunRecord, HarnessError> {
    let kind = ctx.machine.choose_backend()?;
    fleet_outside_guest_network(plan, kind)?;
    let runs = runs(ctx);
    std::fs::create_dir_all(runs.root()).map_err(|e| boma_vm::VmError::io(runs.root(), e))?;
    ctx.machine.guard_disk(runs.root())?;
    let run_id = new_run_id();
    let name = boma_vm::vm_name(&plan.host, &run_id);
    // One at a time, and memory, before the image is fetched or built: a refusal creates
    // nothing. (`lifecycle::up` checks again, right before booting.)
    let available_mib = ctx.machine.available_mib();
    with_effects(ctx, kind, Accel::Tcg, |fx| {
        lifecycle::preflight(fx, &name, plan.profile.mem_mib, available_mib)
    })?;
    let golden = ctx.machine.golden_image()?;
    let accel = ctx.machine.accel(&golden)?;
    eprintln!("acceleration: {}", accel.describe());
    let (key, public_key) = ctx.machine.keypair()?;

    // The safety invariant, checked again where the name is born.
    VmName::checked(&name, &plan.real_hosts).map_err(|e| HarnessError::Usage(e.to_string()))?;
    let keys = [public_key];
    let user_data = boma_cloudinit::user_data(&boma_cloudinit::UserData::new(&keys))
        .map_err(|e| HarnessError::Usage(format!("cannot render user-data: {e}")))?;
    let instance_id = format!("iid-{name}");
    let meta_data = boma_cloudinit::meta_data(&boma_cloudinit::MetaData {
        instance_id: &instance_id,
        local_hostname: &name,
    });
    let mac = boma_vm::mac_for(&run_id);
    let network_config = boma_cloudinit::network_config(&boma_cloudinit::NetworkConfig {
        mac: &mac,
        unreachable: &plan.fleet_addresses,
    });
    say_fleet_isolation(plan);
    let request = UpRequest {
        host: plan.host.clone(),
        name: name.clone(),
        mac,
        golden,
        mem_mib: plan.profile.mem_mib,
        vcpus: plan.profile.vcpus,
        published_ports: plan.profile.published_ports.clone(),
        accel,
        user_data,
        meta_data,
        network_config,
        user: boma_cloudinit::DEFAULT_USER.to_owned(),
        key,
        available_mib,
    };
    match with_effects(ctx, kind, accel, |fx| lifecycle::up(fx, &request)) {
        Ok(record) => Ok(record),
        Err(UpFailure {
            error,
            record: Some(record),
        }) => Err(after_boot_failure(ctx, &record, error.into(), keep)),
        Err(UpFailure {
            error,
            record: None,
        }) => Err(error.into()),
    }
}

/// The single failure policy for a booted VM: an interrupt removes it (unless `keep`); any
/// other failure collects diagnostics and keeps it, saying how to inspect and clean up.
fn after_boot_failure(
    ctx: &Ctx,
    record: &RunRecord,
    error: HarnessError,
    keep: bool,
) -> HarnessError {
    if error.interrupted().is_some() {
        interrupt::begin_cleanup();
        eprintln!("interrupted: {error}");
        if keep {
            eprintln!(
                "keeping {} as asked (--keep): {}",
                record.name,
                record.ssh.shell_hint()
            );
        } else if let Err(e) = with_effects(ctx, record.backend, record.accel, |fx| {
            lifecycle::down(fx, record)
        }) {
            eprintln!(
                "could not remove {} after the interrupt: {e}; run `cargo xtask prune`",
                record.name
            );
        }
        return error;
    }
    eprintln!("failed after boot: collecting diagnostics, keeping the VM");
    let bundle = collect_diagnostics(ctx, record);
    eprintln!();
    eprintln!("the VM {} is kept for inspection:", record.name);
    eprintln!("  shell:        {}", record.ssh.shell_hint());
    eprintln!(
        "  console:      cargo xtask console   (or {})",
        record.console_log()
    );
    match bundle {
        Some(dir) => eprintln!("  diagnostics:  {dir}"),
        None => eprintln!("  diagnostics:  could not be collected (see above)"),
    }
    eprintln!("  clean up:     cargo xtask down      (or `cargo xtask prune` for every test VM)");
    error
}

fn collect_diagnostics(ctx: &Ctx, record: &RunRecord) -> Option<Utf8PathBuf> {
    let out = ctx.settings.diagnostics_root.join(&record.name);
    match diagnostics::collect(ctx.machine.guest(), record, &out) {
        Ok(dir) => {
            // The verify playbook's findings belong with the evidence.
            let results = record.dir.join(RESULTS_FILE);
            if results.is_file() {
                let _ = std::fs::copy(&results, dir.join(RESULTS_FILE));
            }
            eprintln!("diagnostics: {dir}");
            Some(dir)
        }
        Err(e) => {
            eprintln!("could not collect diagnostics: {e}");
            None
        }
    }
}

/// Render the transient inventory and the run's variables into the VM's directory.
fn write_inventory(ctx: &Ctx, plan: &Plan, record: &RunRecord) -> Result<(), HarnessError> {
    let host = TransientHost {
        vm_name: &record.name,
        groups: &plan.profile.groups,
        ansible_host: &record.ssh.host,
        ansible_port: record.ssh.port,
        ansible_user: &record.ssh.user,
        ssh_private_key_file: &record.ssh.key,
    };
    let hosts = boma_inventory::render_hosts_yml(&host, &plan.real_hosts)
        .map_err(|e| HarnessError::Usage(e.to_string()))?;
    let dir = record.dir.join(INVENTORY_DIR);
    boma_inventory::write_inventory_dir(&dir, ctx.repo(), &hosts)
        .map_err(|e| HarnessError::Usage(e.to_string()))?;
    let vars = harness_vars(record, &plan.fleet_addresses);
    let path = record.dir.join(HARNESS_VARS);
    std::fs::write(&path, serde_json::to_string_pretty(&vars).expect("json"))
        .map_err(|e| boma_vm::VmError::io(&path, e))?;
    Ok(())
}

/// The verify playbook's inputs: the VM, where the controller reaches each published port,
/// the real fleet's addresses (the VM must have no route to them), and where to write the
/// results.
pub fn harness_vars(record: &RunRecord, fleet: &[std::net::IpAddr]) -> serde_json::Value {
    let endpoints: BTreeMap<String, serde_json::Value> = record
        .published
        .iter()
        .map(|(port, ep)| (port.to_string(), json!({"host": ep.host, "port": ep.port})))
        .collect();
    json!({
        "boma_it_vm_name": record.name,
        "boma_it_endpoints": endpoints,
        "boma_it_fleet_addresses": fleet.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "boma_it_results_file": record.dir.join(RESULTS_FILE),
    })
}

fn playbook_run<'a>(
    ctx: &'a Ctx,
    plan: &'a Plan,
    vm: &'a VmName,
    inventory: &'a Utf8Path,
    vars: Option<&'a Utf8Path>,
) -> PlaybookRun<'a> {
    PlaybookRun {
        repo_root: ctx.repo(),
        inventory_dir: inventory,
        vm,
        extra_vars_files: &plan.profile.extra_vars_files,
        cert_tier: plan.tier,
        run_extra_vars: vars,
        vault_password_file: plan.vault_password_file.as_deref(),
    }
}

/// The current run. Applying another host's profile to it is allowed (the RED→GREEN cycle
/// applies the fix to the VM booted for the RED case) and said out loud.
fn current_for(ctx: &Ctx, host: &str) -> Result<RunRecord, HarnessError> {
    let record = runs(ctx).require_current()?;
    if record.host != host {
        eprintln!(
            "note: the current run {} was booted for {}; using the profile of {host} on it",
            record.name, record.host
        );
    }
    Ok(record)
}

/// Apply the profile's playbooks to the current VM.
pub fn apply(ctx: &Ctx, host: &str, tier: CertTier) -> Result<(), HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock(&format!("cargo xtask apply {host}"))?;
    let record = current_for(ctx, host)?;
    let plan = preflight::plan(ctx, host, tier, Needs::Ansible)?;
    apply_planned(ctx, &plan, &record).map_err(|e| standalone_failure(ctx, &record, e))
}

fn apply_planned(ctx: &Ctx, plan: &Plan, record: &RunRecord) -> Result<(), HarnessError> {
    write_inventory(ctx, plan, record)?;
    let vm = VmName::checked(&record.name, &plan.real_hosts)
        .map_err(|e| HarnessError::Usage(e.to_string()))?;
    let inventory = record.dir.join(INVENTORY_DIR);
    let run = playbook_run(ctx, plan, &vm, &inventory, None);
    for apply in &plan.profile.applies {
        let label = match apply.tags.is_empty() {
            true => format!("apply playbooks/{}", apply.playbook),
            false => format!(
                "apply playbooks/{} --tags {}",
                apply.playbook,
                apply.tags.join(",")
            ),
        };
        let step = phase(&label);
        let args = boma_inventory::apply_argv(&run, apply);
        match ctx.machine.run_playbook(&label, &args) {
            Ok(()) => step.done(),
            Err(e) => {
                step.failed();
                return Err(e);
            }
        };
    }
    Ok(())
}

/// A failed standalone step on a VM that `up` made: diagnostics and keep, or, when
/// interrupted, leave the VM to the operator who started it.
fn standalone_failure(ctx: &Ctx, record: &RunRecord, error: HarnessError) -> HarnessError {
    if error.interrupted().is_some() {
        eprintln!(
            "interrupted: {error}; the VM {} stays up (`up` started it): `cargo xtask down` removes it",
            record.name
        );
        return error;
    }
    after_boot_failure(ctx, record, error, true)
}

/// Reboot the current VM for real; `hard` resets it instead of asking the guest.
pub fn reboot(ctx: &Ctx, hard: bool) -> Result<(), HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock("cargo xtask reboot")?;
    let mut record = runs.require_current()?;
    let how = if hard {
        RebootHow::Hard
    } else {
        RebootHow::Guest
    };
    reboot_record(ctx, &mut record, how).map_err(|e| standalone_failure(ctx, &record, e))
}

fn reboot_record(ctx: &Ctx, record: &mut RunRecord, how: RebootHow) -> Result<(), HarnessError> {
    with_effects(ctx, record.backend, record.accel, |fx| {
        lifecycle::reboot(fx, record, how)
    })?;
    Ok(())
}

/// Run the verify playbook against the current VM.
pub fn assert(ctx: &Ctx, host: &str, tier: CertTier) -> Result<VerifyResults, HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock(&format!("cargo xtask assert {host}"))?;
    let record = current_for(ctx, host)?;
    let plan = preflight::plan(ctx, host, tier, Needs::Ansible)?;
    assert_planned(ctx, &plan, &record).map_err(|e| standalone_failure(ctx, &record, e))
}

fn assert_planned(
    ctx: &Ctx,
    plan: &Plan,
    record: &RunRecord,
) -> Result<VerifyResults, HarnessError> {
    write_inventory(ctx, plan, record)?;
    let vm = VmName::checked(&record.name, &plan.real_hosts)
        .map_err(|e| HarnessError::Usage(e.to_string()))?;
    let inventory = record.dir.join(INVENTORY_DIR);
    let vars = record.dir.join(HARNESS_VARS);
    let results_file = record.dir.join(RESULTS_FILE);
    let _ = std::fs::remove_file(&results_file);
    let run = playbook_run(ctx, plan, &vm, &inventory, Some(&vars));
    let step = phase("verify (tests/integration/verify.yml)");
    let played = ctx
        .machine
        .run_playbook("verify", &boma_inventory::verify_argv(&run));
    let results = std::fs::read_to_string(&results_file)
        .ok()
        .and_then(|t| VerifyResults::parse(&t).ok());
    match (played, results) {
        (Ok(()), Some(results)) if results.passed() => {
            step.done();
            eprint!("{}", results.summary());
            Ok(results)
        }
        (played, Some(results)) => {
            step.failed();
            eprint!("{}", results.summary());
            if let Err(e) = played
                && e.interrupted().is_some()
            {
                return Err(e);
            }
            Err(HarnessError::VerifyFailed {
                failed: results.failed(),
            })
        }
        (Err(e), None) => {
            step.failed();
            Err(e)
        }
        (Ok(()), None) => {
            step.failed();
            Err(HarnessError::Usage(format!(
                "the verify playbook passed but wrote no results to {results_file}: it is not the harness's verify playbook"
            )))
        }
    }
}

/// Remove the current VM and its files; with `keep`, only power it off and keep its files.
pub fn down(ctx: &Ctx, keep: bool) -> Result<(), HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock("cargo xtask down")?;
    let Some(record) = runs.current()? else {
        eprintln!(
            "no current run: nothing to take down (`cargo xtask prune` removes leftovers of crashed runs)"
        );
        return Ok(());
    };
    with_effects(ctx, record.backend, record.accel, |fx| {
        if keep {
            lifecycle::power_off(fx, &record)?;
            eprintln!(
                "{} is powered off; its files stay in {} (overlay, console.log); `cargo xtask prune` removes them",
                record.name, record.dir
            );
            Ok(())
        } else {
            lifecycle::down(fx, &record)
        }
    })?;
    Ok(())
}

/// The current (or last) VM's serial console.
pub fn console(ctx: &Ctx) -> Result<Utf8PathBuf, HarnessError> {
    let record = runs(ctx).require_current()?;
    Ok(record.console_log())
}

/// Remove every test VM, process and run file on this machine's run directory.
pub fn prune(ctx: &Ctx) -> Result<(), HarnessError> {
    let runs = runs(ctx);
    let _lock = runs.lock("cargo xtask prune")?;
    let step = phase("prune");
    let orphans = ctx.machine.kill_orphans();
    let mut removed = Vec::new();
    let mut dirs = 0;
    for kind in ctx.machine.backends_present() {
        let report = with_effects(ctx, kind, Accel::Tcg, lifecycle::prune)?;
        removed.extend(report.vms);
        dirs += report.dirs;
    }
    removed.sort();
    removed.dedup();
    step.done();
    if !orphans.is_empty() {
        eprintln!(
            "killed {} process(es) a killed harness left behind",
            orphans.len()
        );
    }
    if removed.is_empty() && dirs == 0 {
        eprintln!("nothing to prune: no test VM, no run files");
    } else {
        eprintln!(
            "pruned {} VM(s) ({}) and {dirs} run director(ies)",
            removed.len(),
            removed.join(", ")
        );
    }
    Ok(())
}

/// The full cycle: up → apply → reboot → assert → down. Prints a JSON report on stdout.
pub fn it(ctx: &Ctx, host: &str, options: ItOptions) -> Result<VerifyResults, HarnessError> {
    let started = Instant::now();
    let runs = runs(ctx);
    let _lock = runs.lock(&format!("cargo xtask it {host}"))?;
    let plan = preflight::plan(ctx, host, options.tier, Needs::All)?;
    let mut record = match up_planned(ctx, &plan, options.keep) {
        Ok(record) => record,
        Err(e) => {
            print_report(&plan, None, Err(&e), started);
            return Err(e);
        }
    };
    let outcome = (|| {
        apply_planned(ctx, &plan, &record)?;
        if options.no_reboot {
            eprintln!("--no-reboot: verifying without a reboot (blind to reboot-survival bugs)");
        } else {
            reboot_record(ctx, &mut record, RebootHow::Guest)?;
        }
        assert_planned(ctx, &plan, &record)
    })();
    match outcome {
        Ok(results) => {
            if options.keep {
                eprintln!(
                    "passed; keeping {} as asked (--keep): {}",
                    record.name,
                    record.ssh.shell_hint()
                );
            } else {
                with_effects(ctx, record.backend, record.accel, |fx| {
                    lifecycle::down(fx, &record)
                })?;
            }
            print_report(&plan, Some(&record), Ok(&results), started);
            Ok(results)
        }
        Err(e) => {
            let e = after_boot_failure(ctx, &record, e, options.keep);
            print_report(&plan, Some(&record), Err(&e), started);
            Err(e)
        }
    }
}

/// The run's report: stdout is data.
fn print_report(
    plan: &Plan,
    record: Option<&RunRecord>,
    outcome: Result<&VerifyResults, &HarnessError>,
    started: Instant,
) {
    let phases: Vec<serde_json::Value> = progress::timings()
        .into_iter()
        .map(|(name, d)| json!({"phase": name, "seconds": (d.as_secs_f64() * 10.0).round() / 10.0}))
        .collect();
    let (result, checks, error) = match outcome {
        Ok(results) => ("passed", Some(results.checks.clone()), None),
        Err(e) if e.interrupted().is_some() => ("interrupted", None, Some(e.to_string())),
        Err(HarnessError::VerifyFailed { .. }) => ("failed", None, None),
        Err(e) => ("error", None, Some(e.to_string())),
    };
    let checks = checks.or_else(|| {
        let path = record?.dir.join(RESULTS_FILE);
        VerifyResults::parse(&std::fs::read_to_string(path).ok()?)
            .ok()
            .map(|r| r.checks)
    });
    let report = json!({
        "host": plan.host,
        "vm": record.map(|r| r.name.clone()),
        "backend": record.map(|r| r.backend.to_string()),
        "accel": record.map(|r| r.accel),
        "cert_tier": plan.tier.to_string(),
        "result": result,
        "error": error,
        "checks": checks,
        "phases": phases,
        "total_seconds": started.elapsed().as_secs(),
    });
    eprintln!();
    eprintln!("phase timings:");
    for (name, d) in progress::timings() {
        eprintln!("  {:>8}  {name}", human(d));
    }
    eprintln!("  {:>8}  total", human(started.elapsed()));
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
