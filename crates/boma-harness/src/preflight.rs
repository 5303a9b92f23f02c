//! Everything checked before anything is created: one clear line per problem, exit status 2.

use std::collections::BTreeSet;
use std::net::IpAddr;

use boma_inventory::{CertTier, Profile, VERIFY_PLAYBOOK};
use camino::Utf8PathBuf;

use crate::{Ctx, HarnessError};

/// A run's validated inputs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub host: String,
    pub profile: Profile,
    pub tier: CertTier,
    /// Host names of the real inventory: none may ever be the test VM.
    pub real_hosts: BTreeSet<String>,
    /// The real fleet's addresses: the test VM gets no route to any of them.
    pub fleet_addresses: Vec<IpAddr>,
    /// Real hosts reached through a DNS name (host, name): no route can stand for them.
    pub fleet_named_only: Vec<(String, String)>,
    pub vault_password_file: Option<Utf8PathBuf>,
}

/// Which tools a step needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Boot a VM.
    Vm,
    /// Run playbooks against a live VM.
    Ansible,
    /// Both (the full cycle).
    All,
}

/// Validate `host`'s profile, the tier, every file they name, the vault secret and the tools.
pub fn plan(ctx: &Ctx, host: &str, tier: CertTier, needs: Needs) -> Result<Plan, HarnessError> {
    let repo = ctx.repo();
    let profile =
        boma_inventory::load_profile(repo, host).map_err(|e| HarnessError::Usage(e.to_string()))?;
    let profile_file = format!("profiles/{host}.json");
    for file in &profile.extra_vars_files {
        if !repo.join(file).is_file() {
            return Err(HarnessError::Usage(format!(
                "{profile_file} names the variable file {file}, which does not exist: create it or fix extra_vars_files"
            )));
        }
    }
    for apply in &profile.applies {
        let playbook = format!("playbooks/{}", apply.playbook);
        if !repo.join(&playbook).is_file() {
            return Err(HarnessError::Usage(format!(
                "{profile_file} applies {playbook}, which does not exist: fix the playbook name in applies"
            )));
        }
    }
    let tier_file = tier.vars_file();
    if !repo.join(&tier_file).is_file() {
        return Err(HarnessError::Usage(format!(
            "the cert tier {tier} needs {tier_file}, which does not exist: restore it from git"
        )));
    }
    if !repo.join(VERIFY_PLAYBOOK).is_file() {
        return Err(HarnessError::Usage(format!(
            "the verify playbook {VERIFY_PLAYBOOK} does not exist"
        )));
    }
    mesh_stays_off(ctx, &profile, &profile_file, tier)?;
    let vault_password_file = vault_secret(ctx, tier)?;
    let fleet = boma_inventory::read_real_fleet(repo)
        .map_err(|e| HarnessError::Usage(format!("reading the real inventory: {e}")))?;
    let real_hosts = fleet.names();
    if real_hosts.is_empty() {
        return Err(HarnessError::Usage(
            "the real inventory (inventories/production/) lists no hosts: the harness cannot prove the test VM is none of them".into(),
        ));
    }
    check_tools(ctx, needs)?;
    Ok(Plan {
        host: host.to_owned(),
        profile,
        tier,
        real_hosts,
        fleet_addresses: fleet.addresses().into_iter().collect(),
        fleet_named_only: fleet.named_only(),
        vault_password_file,
    })
}

/// A test VM must never join the real mesh: the variable files the run applies (the
/// profile's, then the tier's, as Ansible orders `-e` files) must end with the mesh off.
fn mesh_stays_off(
    ctx: &Ctx,
    profile: &Profile,
    profile_file: &str,
    tier: CertTier,
) -> Result<(), HarnessError> {
    let files: Vec<Utf8PathBuf> = profile
        .extra_vars_files
        .iter()
        .cloned()
        .chain([tier.vars_file()])
        .collect();
    let mut texts = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(ctx.repo().join(file))
            .map_err(|e| HarnessError::Usage(format!("cannot read {file}: {e}")))?;
        texts.push((file.to_string(), text));
    }
    let setting = boma_inventory::mesh_setting(texts.iter().map(|(f, t)| (f.as_str(), t.as_str())))
        .map_err(HarnessError::Usage)?;
    match setting {
        Some(false) => Ok(()),
        _ => Err(HarnessError::Usage(format!(
            "{profile_file}: its variable files do not end with `{}: false`; a test VM must never join the real mesh: set it in the profile's override file",
            boma_inventory::MESH_VARIABLE
        ))),
    }
}

/// The vault password file, when the tier needs a secret: given, readable, non-empty. Its
/// content is registered for redaction at once.
fn vault_secret(ctx: &Ctx, tier: CertTier) -> Result<Option<Utf8PathBuf>, HarnessError> {
    if !tier.needs_vault_secret() {
        return Ok(None);
    }
    let Some(file) = &ctx.settings.vault_password_file else {
        return Err(HarnessError::Usage(format!(
            "the cert tier {tier} needs the Gandi DNS token from the ansible-vault, and no vault password file was given: pass --vault-password-file <file> (or set BOMA_VAULT_PASSWORD_FILE), or use --certs internal"
        )));
    };
    let password = std::fs::read_to_string(file).map_err(|e| {
        HarnessError::Usage(format!(
            "the vault password file {file} cannot be read ({e}): the cert tier {tier} needs it"
        ))
    })?;
    if password.trim().is_empty() {
        return Err(HarnessError::Usage(format!(
            "the vault password file {file} is empty"
        )));
    }
    boma_exec::redact::register(password.trim());
    Ok(Some(file.clone()))
}

/// The first tool of `needs` that is missing, with its package, as a usage error.
fn check_tools(ctx: &Ctx, needs: Needs) -> Result<(), HarnessError> {
    let vm: &[&str] = &[
        "qemu-system-x86_64",
        "qemu-img",
        "cloud-localds",
        "ssh",
        "ssh-keygen",
    ];
    if matches!(needs, Needs::Vm | Needs::All) {
        for tool in vm {
            if ctx.machine.tool_missing(tool) {
                return Err(missing(tool));
            }
        }
    }
    if matches!(needs, Needs::Ansible | Needs::All)
        && !ctx.repo().join(".venv/bin/ansible-playbook").is_file()
        && ctx.machine.tool_missing("ansible-playbook")
    {
        return Err(missing("ansible-playbook"));
    }
    Ok(())
}

fn missing(tool: &str) -> HarnessError {
    let hint = boma_exec::package_hint(tool).unwrap_or("install it");
    HarnessError::Usage(format!("`{tool}` is not installed: {hint}"))
}

/// Whether `tool` is absent from every directory of `PATH`.
pub fn tool_missing(tool: &str) -> bool {
    !boma_exec::on_path(tool)
}
