//! Everything checked before anything is fetched, built, probed or created: one clear line per
//! problem, exit status 2. A run's VM name is minted here, first, so that a bad name costs
//! nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use boma_exec::say;
use boma_host::judge::{self, Disk};
use boma_inventory::{CertTier, Fleet, POLICY_FILE, Policy, Profile, VmName};
use boma_vm::BackendKind;
use camino::Utf8PathBuf;

use crate::backend::{self, Resolved};
use crate::ctx::Ctx;
use crate::error::HarnessError;

/// A run's validated inputs: what any step that runs playbooks needs.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub host: String,
    pub profile: Profile,
    pub tier: CertTier,
    /// Host names of the real inventory: none may ever be the test VM.
    pub real_hosts: BTreeSet<String>,
    /// The real fleet's addresses: the test VM gets no route to any of them.
    pub fleet_addresses: Vec<IpAddr>,
    /// Real hosts reached through a DNS name (host, name): no route can stand for them.
    pub fleet_named_only: Vec<(String, String)>,
    /// The real inventory's hierarchy above the profile's groups (group → its parent groups,
    /// [`boma_inventory::Fleet::lineage`]): the VM is in every group the real host is in.
    pub group_parents: BTreeMap<String, BTreeSet<String>>,
    pub vault_password_file: Option<Utf8PathBuf>,
}

/// What a new VM needs on top of the inputs.
#[derive(Debug, Clone)]
pub struct NewVm {
    pub name: VmName,
    pub run_id: String,
    pub backend: Resolved,
    pub available_mib: u64,
}

/// Which part of the cycle a step runs, hence which programs it cannot start without
/// (`boma_host::tools`: the one list, which the doctor judges too).
pub use boma_host::Needs;

/// Validate `host`'s profile, the tier, every file they name, the repo policy, the vault
/// secret, the real inventory and the tools.
pub fn inputs(ctx: &Ctx, host: &str, tier: CertTier, needs: Needs) -> Result<Inputs, HarnessError> {
    let profile = checked_profile(ctx, host, tier)?;
    follows_policy(ctx, &profile.extra_vars_files, tier)?;
    let vault_password_file = vault_secret(ctx, tier)?;
    let fleet = real_inventory(ctx, vault_password_file.as_deref())?;
    check_tools(ctx, needs)?;
    if needs != Needs::Vm {
        say_connection_notes(ctx, &playbooks_of(&profile));
    }
    Ok(Inputs::of(host, profile, tier, &fleet, vault_password_file))
}

impl Inputs {
    /// The inputs of `host`'s run: its checked profile, beside the real inventory as Ansible
    /// lists it.
    pub(crate) fn of(
        host: &str,
        profile: Profile,
        tier: CertTier,
        fleet: &Fleet,
        vault_password_file: Option<Utf8PathBuf>,
    ) -> Inputs {
        let group_parents = fleet.lineage(&profile.groups);
        Inputs {
            host: host.to_owned(),
            profile,
            tier,
            real_hosts: fleet.names(),
            fleet_addresses: fleet.addresses().into_iter().collect(),
            fleet_named_only: fleet.named_only(),
            group_parents,
            vault_password_file,
        }
    }
}

/// `host`'s profile, checked against the repository: every file it names exists, its
/// `reboot_diff_ignore` patterns are valid, its verify playbooks run on the VM, the tier's
/// variable file exists.
pub(crate) fn checked_profile(
    ctx: &Ctx,
    host: &str,
    tier: CertTier,
) -> Result<Profile, HarnessError> {
    let repo = ctx.repo();
    let profile = boma_inventory::load_profile(repo, host)?;
    let profile_file = format!("profiles/{host}.json");
    for file in &profile.extra_vars_files {
        if !repo.join(file).is_file() {
            return Err(HarnessError::Refused(format!(
                "{profile_file} names the variable file {file}, which does not exist: create it or fix extra_vars_files"
            )));
        }
    }
    for apply in &profile.applies {
        let playbook = apply.playbook_path();
        if !repo.join(&playbook).is_file() {
            return Err(HarnessError::Refused(format!(
                "{profile_file} applies {playbook}, which does not exist: fix the playbook in applies"
            )));
        }
    }
    if let Err(e) = boma_state::Ignore::with_patterns(&profile.reboot_diff_ignore) {
        return Err(HarnessError::Refused(format!(
            "{profile_file}: reboot_diff_ignore: {e}"
        )));
    }
    for playbook in &profile.verify {
        if !repo.join(playbook).is_file() {
            return Err(HarnessError::Refused(format!(
                "{profile_file} names the verify playbook {playbook}, which does not exist: create it or fix verify"
            )));
        }
    }
    verify_runs_on_the_vm(ctx, &profile.verify, &profile.extra_vars_files, tier)?;
    let tier_file = tier.vars_file();
    if !repo.join(&tier_file).is_file() {
        return Err(HarnessError::Refused(format!(
            "the cert tier {tier} needs {tier_file}, which does not exist: restore it from git"
        )));
    }
    Ok(profile)
}

/// The real inventory as Ansible itself reads it: the routes taken away, the names the VM may
/// not have and the groups it nests in are exactly what a production run would see.
pub(crate) fn real_inventory(
    ctx: &Ctx,
    vault_password_file: Option<&camino::Utf8Path>,
) -> Result<Fleet, HarnessError> {
    let repo = ctx.repo();
    let listed = ctx.machine.ansible().list_inventory(
        repo,
        &repo.join(boma_inventory::PRODUCTION_DIR),
        vault_password_file,
    )?;
    Fleet::from_ansible_list(&listed).map_err(HarnessError::RealInventory)
}

/// Every playbook a profile's run plays: its applies, then its verify playbooks.
fn playbooks_of(profile: &Profile) -> Vec<Utf8PathBuf> {
    profile
        .applies
        .iter()
        .map(|a| a.playbook_path())
        .chain(profile.verify.iter().cloned())
        .collect()
}

/// Refuse a verify playbook written for the controller: a play or task in it, or in any file
/// it reaches (what `boma_layers::reach` follows: imported playbooks, `vars_files`, task and
/// vars includes with a literal path, roles and their dependencies), with `delegate_to`,
/// `local_action`, `connection`, or `hosts` naming the controller. The run pins the connection
/// to the VM, so such a task would quietly check the VM instead of what its author meant.
pub(crate) fn verify_runs_on_the_vm(
    ctx: &Ctx,
    verify: &[Utf8PathBuf],
    extra_vars_files: &[Utf8PathBuf],
    tier: CertTier,
) -> Result<(), HarnessError> {
    let repo = ctx.repo();
    let tree = boma_layers::DiskTree::new(repo);
    let mut scanned = BTreeSet::new();
    let mut found = Vec::new();
    for playbook in verify {
        let step = boma_layers::StepFiles {
            playbook: playbook.as_str(),
            extra_vars_files,
            cert_tier: tier,
        };
        let reach = boma_layers::reach(&tree, &step)
            .map_err(|e| HarnessError::Refused(format!("verify playbook {playbook}: {e}")))?;
        for reached in reach.files.iter().filter(|r| holds_plays_or_tasks(r)) {
            if !scanned.insert(reached.path.clone()) {
                continue;
            }
            let file = reached.path.as_str();
            let text = std::fs::read_to_string(repo.join(file))
                .map_err(|e| HarnessError::Refused(format!("cannot read {file}: {e}")))?;
            found.extend(
                crate::verify::controller_side(file, &text).map_err(HarnessError::Refused)?,
            );
        }
    }
    match found.split_first() {
        None => Ok(()),
        Some((first, [])) => Err(HarnessError::Refused(first.to_string())),
        Some((first, rest)) => {
            let rest: Vec<String> = rest
                .iter()
                .map(|c| format!("{}:{}: {}", c.file, c.line, c.what))
                .collect();
            Err(HarnessError::Refused(format!(
                "{first} (also {})",
                rest.join(", ")
            )))
        }
    }
}

/// Whether a file a verify playbook reaches can hold plays or tasks: a playbook, a file a play
/// names, or a YAML file under a `tasks/` or `handlers/` directory (of a role, or beside the
/// playbook). A role's vars, defaults, templates and files hold none.
fn holds_plays_or_tasks(reached: &boma_layers::Reached) -> bool {
    use boma_layers::Why;
    let path = reached.path.as_str();
    if !(path.ends_with(".yml") || path.ends_with(".yaml")) {
        return false;
    }
    match reached.why {
        Why::Playbook | Why::ImportedPlaybook { .. } | Why::NamedByPlay { .. } => true,
        Why::Role { .. }
        | Why::BesidePlaybook { .. }
        | Why::ReachedFrom { .. }
        | Why::InDoubt { .. } => path
            .split('/')
            .rev()
            .skip(1)
            .any(|dir| dir == "tasks" || dir == "handlers"),
        Why::InventoryVars
        | Why::ExtraVars
        | Why::CertTier
        | Why::AnsibleConfig
        | Why::AnsibleVersion => false,
    }
}

/// What Ansible will not see of this environment (one line per variable that could have
/// changed what it does), and the connection plugins `playbooks` make it load but never use.
pub(crate) fn say_connection_notes(ctx: &Ctx, playbooks: &[Utf8PathBuf]) {
    let plan = crate::ansible::EnvPlan {
        repo: ctx.repo(),
        tools_dir: &ctx.repo().join(".venv/bin"),
        connect_dir: None,
        set: Vec::new(),
    };
    let env = crate::ansible::ansible_env(crate::ansible::inherited_env(), &plan);
    for line in crate::ansible::dropped_lines(&env.dropped) {
        say!("{line}");
    }
    let plugins = crate::connect::connection_plugin_files(ctx.repo(), playbooks);
    if let Some(note) = crate::connect::connection_plugin_note(&plugins) {
        say!("{note}");
    }
}

/// Mint the new VM's name, resolve the backend, and refuse what this machine cannot run — all
/// before the golden image is fetched or built.
pub fn new_vm(ctx: &Ctx, inputs: &Inputs, run_id: &str) -> Result<NewVm, HarnessError> {
    let name = VmName::mint(&inputs.host, run_id, &inputs.real_hosts)?;
    let backend = backend(ctx)?;
    fleet_outside_guest_network(&inputs.fleet_addresses, backend.kind)?;
    enough_disk(ctx, judge::RUN_DISK_MIB)?;
    Ok(NewVm {
        name,
        run_id: run_id.to_owned(),
        backend,
        available_mib: available_mib(ctx)?,
    })
}

/// The backend new VMs get, resolved from the operator's choice and libvirt's verdict.
pub(crate) fn backend(ctx: &Ctx) -> Result<Resolved, HarnessError> {
    backend::resolve(ctx.settings.backend, &ctx.machine.host().libvirt())
        .map_err(HarnessError::Refused)
}

/// Refuse a run directory without `need_mib` free (the overlays' growth).
pub(crate) fn enough_disk(ctx: &Ctx, need_mib: u64) -> Result<(), HarnessError> {
    let runs = &ctx.settings.runs_root;
    match judge::disk(&ctx.machine.host().space(runs), need_mib) {
        Disk::Enough { .. } => Ok(()),
        Disk::Short { free_mib, need_mib } => Err(HarnessError::Refused(format!(
            "not enough disk for a run in {runs}: {free_mib} MiB free, a run needs {need_mib} MiB (overlay growth); free some space (`cargo xtask prune` removes leftover runs)"
        ))),
        Disk::Unmeasured => Err(HarnessError::Refused(format!(
            "the free space for a run in {runs} cannot be measured: check that the directory (or its nearest existing parent) is readable"
        ))),
    }
}

/// `MemAvailable` now: the memory itself is judged by the reservation, against every VM
/// reserved beside it.
pub(crate) fn available_mib(ctx: &Ctx) -> Result<u64, HarnessError> {
    ctx.machine.host().available_mib().ok_or_else(|| {
        HarnessError::Refused(
            "MemAvailable cannot be read from /proc/meminfo: the VM's memory cannot be reserved"
                .into(),
        )
    })
}

/// Refuse a real host whose address lies inside the guest's own network: its unreachable
/// route would cut the VM off its gateway or DNS, and the VM could not tell it from a neighbour.
pub(crate) fn fleet_outside_guest_network(
    fleet_addresses: &[IpAddr],
    kind: BackendKind,
) -> Result<(), HarnessError> {
    let inside = kind.inside_guest_network(fleet_addresses);
    if inside.is_empty() {
        return Ok(());
    }
    let (network, prefix) = kind.guest_network();
    let list: Vec<String> = inside.iter().map(|a| a.to_string()).collect();
    let other = match kind {
        BackendKind::Qemu => BackendKind::Libvirt,
        BackendKind::Libvirt => BackendKind::Qemu,
    };
    Err(HarnessError::Refused(format!(
        "the real inventory has {} inside the {kind} backend's guest network {network}/{prefix}: routing it away would cut the VM off its own network; use --backend {other}",
        list.join(", ")
    )))
}

/// The run's variable files (`extra_vars_files`, then the tier's, as Ansible orders `-e` files)
/// must follow the repo policy (`tests/integration/policy.yml`).
pub(crate) fn follows_policy(
    ctx: &Ctx,
    extra_vars_files: &[Utf8PathBuf],
    tier: CertTier,
) -> Result<(), HarnessError> {
    let policy_path = ctx.repo().join(POLICY_FILE);
    let policy = match std::fs::read_to_string(&policy_path) {
        Ok(text) => {
            Policy::parse(POLICY_FILE, &text).map_err(|e| HarnessError::Refused(e.to_string()))?
        }
        Err(e) => {
            return Err(HarnessError::Refused(format!(
                "cannot read the repo policy {POLICY_FILE} ({e}): restore it from git"
            )));
        }
    };
    let files: Vec<Utf8PathBuf> = extra_vars_files
        .iter()
        .cloned()
        .chain([tier.vars_file()])
        .collect();
    let mut texts = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(ctx.repo().join(file))
            .map_err(|e| HarnessError::Refused(format!("cannot read {file}: {e}")))?;
        texts.push((file.to_string(), text));
    }
    // The harness alone says how Ansible reaches the VM: a connection variable in a file that
    // is passed as `-e` (extra vars beat everything) could aim the run at a real host.
    boma_inventory::refuse_connection_vars(texts.iter().map(|(f, t)| (f.as_str(), t.as_str())))
        .map_err(|e| HarnessError::Refused(e.to_string()))?;
    let values =
        boma_inventory::effective_values(texts.iter().map(|(f, t)| (f.as_str(), t.as_str())))
            .map_err(|e| HarnessError::Refused(e.to_string()))?;
    match boma_inventory::violations(&policy, &values)
        .into_iter()
        .next()
    {
        None => Ok(()),
        Some(first) => Err(HarnessError::Refused(first)),
    }
}

/// The vault password file, when the tier needs a secret: given, readable, non-empty. Its
/// content is registered for redaction at once.
pub(crate) fn vault_secret(ctx: &Ctx, tier: CertTier) -> Result<Option<Utf8PathBuf>, HarnessError> {
    if !tier.needs_vault_secret() {
        return Ok(None);
    }
    let Some(file) = &ctx.settings.vault_password_file else {
        return Err(HarnessError::Refused(format!(
            "the cert tier {tier} needs the Gandi DNS token from the ansible-vault, and no vault password file was given: pass --vault-password-file <file> (or set BOMA_VAULT_PASSWORD_FILE), or use --certs internal"
        )));
    };
    let password = std::fs::read_to_string(file).map_err(|e| {
        HarnessError::Refused(format!(
            "the vault password file {file} cannot be read ({e}): the cert tier {tier} needs it"
        ))
    })?;
    if password.trim().is_empty() {
        return Err(HarnessError::Refused(format!(
            "the vault password file {file} is empty"
        )));
    }
    boma_exec::redact::register(password.trim());
    // What the vault holds (the DNS token) is masked too: a failing task, a container's
    // environment in a bundle, a verify playbook's output can carry it.
    let vaulted = vault_files(
        &ctx.repo()
            .join(boma_inventory::PRODUCTION_DIR)
            .join("group_vars"),
    );
    let values = ctx
        .machine
        .ansible()
        .vault_values(ctx.repo(), file, &vaulted)
        .map_err(|e| {
            HarnessError::Refused(format!(
                "the vault password file {file} does not decrypt the vault ({}): check the password, or use --certs internal",
                e.to_string().lines().next().unwrap_or_default()
            ))
        })?;
    for value in values {
        boma_exec::redact::register(&value);
    }
    Ok(Some(file.clone()))
}

/// The variable files under `dir` that hold vault values (whole or inline).
fn vault_files(dir: &camino::Utf8Path) -> Vec<Utf8PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = dir.read_dir_utf8() else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path().to_owned();
        if path.is_dir() {
            found.extend(vault_files(&path));
        } else if std::fs::read_to_string(&path).is_ok_and(|t| t.contains("$ANSIBLE_VAULT")) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The first program `needs` requires that is missing, with its package, as a refusal; and
/// an Ansible to run, from the repository's venv or `PATH`.
pub(crate) fn check_tools(ctx: &Ctx, needs: Needs) -> Result<(), HarnessError> {
    let host = ctx.machine.host();
    if let Some(missing) = judge::missing_required(needs, &host.tools()).first() {
        let tool = missing.tool;
        return Err(HarnessError::Refused(format!(
            "`{}` is not installed ({}): install the Debian package {} (`cargo xtask doctor` lists everything this machine lacks)",
            tool.program,
            tool.purpose.why(),
            tool.package.name(None)
        )));
    }
    if needs.ansible()
        && !ctx.repo().join(".venv/bin/ansible-playbook").is_file()
        && host.locate("ansible-playbook").is_none()
    {
        let hint = boma_exec::package_hint("ansible-playbook").unwrap_or("install it");
        return Err(HarnessError::Refused(format!(
            "`ansible-playbook` is not installed: {hint}"
        )));
    }
    Ok(())
}
