//! Everything a fleet run checks before anything is created (exit 2, one line naming the
//! problem and the fix): the fleet file and its members' profiles, every file they name, the
//! merged steps, the `-e` files' union (no two set one variable to two values, none sets a
//! connection variable, all follow the repo policy), the real inventory, the tools, the names
//! and the segment (a run directory too long for the switch's socket is refused here), and —
//! once the members' inventory is written into the fleet's directory — every member variable
//! or `-e` value that still holds a real host's address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use boma_exec::say;
use boma_fleet::{FLEET_NETWORK, FleetStep, MemberNic, RealAddressUse, VarSource};
use boma_inventory::{CertTier, MemberName, MembersYml, TransientMember, VmName};
use boma_vm::{BackendKind, Segment};
use camino::{Utf8Path, Utf8PathBuf};

use crate::backend::Resolved;
use crate::preflight::{self, Inputs, Needs};
use crate::{Ctx, HarnessError};

/// One member of a fleet run, checked.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its inventory name (= its profile's name).
    pub name: MemberName,
    /// Its profile and the real inventory, as a single run of it would have them (`host` is the
    /// member's name): what its captures, probes, checks and verify playbooks read.
    pub inputs: Inputs,
    /// Its VM: `boma-it-<member>-<run id>`, beside the fleet's directory.
    pub vm: VmName,
    /// Its place on the fleet's segment.
    pub nic: MemberNic,
}

/// A fleet run's validated inputs.
#[derive(Debug, Clone)]
pub struct FleetInputs {
    pub fleet: boma_fleet::Fleet,
    pub tier: CertTier,
    /// In fleet order.
    pub members: Vec<Member>,
    /// One `ansible-playbook` each, over the members that list it.
    pub steps: Vec<FleetStep>,
    /// Every step's `-e` files: the members' own, then the fleet's, each once.
    pub extra_vars_files: Vec<Utf8PathBuf>,
    /// The real inventory's hierarchy above every member's groups.
    pub group_parents: BTreeMap<String, BTreeSet<String>>,
    pub vault_password_file: Option<Utf8PathBuf>,
    /// The real fleet's literal addresses (no member has a route to them).
    pub real_addresses: Vec<IpAddr>,
    /// The fleet run's directory: `boma-it-<fleet>-<run id>` (prune finds it by its name).
    pub dir_name: VmName,
    pub backend: Resolved,
    pub segment: Segment,
    pub available_mib: u64,
}

impl FleetInputs {
    pub fn name(&self) -> &str {
        self.fleet.name()
    }

    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name.as_str() == name)
    }
}

/// Everything checked before the fleet's directory exists.
pub fn inputs(
    ctx: &Ctx,
    name: &str,
    tier: CertTier,
    run_id: &str,
) -> Result<FleetInputs, HarnessError> {
    let repo = ctx.repo();
    let profiles = boma_inventory::list_profiles(repo)?;
    let fleet = boma_fleet::load_fleet(repo, name, &profiles)
        .map_err(|e| HarnessError::Refused(e.to_string()))?;
    let fleet_file = format!("{}/{name}.json", boma_fleet::FLEETS_DIR);
    let mut checked = Vec::new();
    for member in fleet.members() {
        let profile = preflight::checked_profile(ctx, member, tier)?;
        if !profile.expect.is_empty() {
            return Err(HarnessError::Refused(format!(
                "profiles/{member}.json has an `expect`, which a fleet does not read: a member's failures are the fleet's; name them in {fleet_file}'s expect (as `after <round>: {member}: <check>`)"
            )));
        }
        checked.push((member.to_owned(), profile));
    }
    for (key, files) in [
        ("extra_vars_files", fleet.extra_vars_files()),
        ("verify", fleet.verify()),
    ] {
        if let Some(missing) = files.iter().find(|f| !repo.join(f).is_file()) {
            return Err(HarnessError::Refused(format!(
                "{fleet_file} names {missing} in {key}, which does not exist: create it or fix {key}"
            )));
        }
    }
    let pairs: Vec<(&str, &boma_inventory::Profile)> =
        checked.iter().map(|(m, p)| (m.as_str(), p)).collect();
    let steps = boma_fleet::merge_steps(&pairs)
        .map_err(|e| HarnessError::Refused(format!("{fleet_file}: {e}")))?;
    let profiles_only: Vec<&boma_inventory::Profile> = checked.iter().map(|(_, p)| p).collect();
    let extra_vars_files = boma_fleet::extra_vars_files(&profiles_only, fleet.extra_vars_files());
    let values = read_vars_files(ctx, &extra_vars_files)?;
    let conflicts = boma_fleet::conflicts(&values);
    if !conflicts.is_empty() {
        let all: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
        return Err(HarnessError::Refused(format!(
            "{fleet_file}: {}",
            all.join("; ")
        )));
    }
    preflight::follows_policy(ctx, &extra_vars_files, tier)?;
    preflight::verify_runs_on_the_vm(ctx, fleet.verify(), &extra_vars_files, tier)?;
    let vault_password_file = preflight::vault_secret(ctx, tier)?;
    let real = preflight::real_inventory(ctx, vault_password_file.as_deref())?;
    let real_addresses: Vec<IpAddr> = real.addresses().into_iter().collect();
    FLEET_NETWORK
        .refuse_real_addresses(&real_addresses)
        .map_err(|e| HarnessError::Refused(e.to_string()))?;
    refuse_found(&scan_extra_vars(&values, &real_addresses))?;
    let backend = preflight::backend(ctx)?;
    preflight::check_tools(
        ctx,
        match backend.kind {
            // The switch is the QEMU backend's segment; libvirt makes a network of its own.
            BackendKind::Qemu => Needs::Fleet,
            BackendKind::Libvirt => Needs::All,
        },
    )?;
    preflight::say_connection_notes(ctx, &playbooks(&checked, fleet.verify()));
    preflight::fleet_outside_guest_network(&real_addresses, backend.kind)?;

    let names: Vec<String> = fleet.members().to_vec();
    let nics = FLEET_NETWORK
        .members(&names)
        .map_err(|e| HarnessError::Refused(format!("{fleet_file}: {e}")))?;
    let dir_name = VmName::mint(name, run_id, &real.names()).map_err(|e| {
        HarnessError::Refused(format!(
            "the fleet `{name}` cannot name its run directory ({e}): rename {fleet_file} with lowercase letters, digits and `-`"
        ))
    })?;
    let fleet_dir = ctx.settings.runs_root.join(dir_name.as_str());
    let segment = Segment::for_run(backend.kind, &fleet_dir)?;
    let mut members = Vec::new();
    let mut group_parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((member, profile), nic) in checked.into_iter().zip(nics) {
        let vm = VmName::mint(&member, run_id, &real.names()).map_err(|e| {
            HarnessError::Refused(format!(
                "{fleet_file}: member `{member}` cannot name a test VM ({e}): rename profiles/{member}.json with lowercase letters, digits and `-`"
            ))
        })?;
        let name =
            MemberName::checked(&member).map_err(|e| HarnessError::Refused(e.to_string()))?;
        let inputs = Inputs::of(&member, profile, tier, &real, vault_password_file.clone());
        for (group, parents) in &inputs.group_parents {
            group_parents
                .entry(group.clone())
                .or_default()
                .extend(parents.iter().cloned());
        }
        members.push(Member {
            name,
            inputs,
            vm,
            nic,
        });
    }
    preflight::enough_disk(ctx, boma_host::judge::RUN_DISK_MIB * members.len() as u64)?;
    let available_mib = preflight::available_mib(ctx)?;
    Ok(FleetInputs {
        fleet,
        tier,
        members,
        steps,
        extra_vars_files,
        group_parents,
        vault_password_file,
        real_addresses,
        dir_name,
        backend,
        segment,
        available_mib,
    })
}

/// Every playbook the fleet plays: each member's applies and verify playbooks, then the fleet's
/// verify playbooks.
fn playbooks(
    members: &[(String, boma_inventory::Profile)],
    fleet_verify: &[Utf8PathBuf],
) -> Vec<Utf8PathBuf> {
    let mut all: Vec<Utf8PathBuf> = Vec::new();
    let every = members
        .iter()
        .flat_map(|(_, p)| {
            p.applies
                .iter()
                .map(|a| a.playbook_path())
                .chain(p.verify.iter().cloned())
        })
        .chain(fleet_verify.iter().cloned());
    for playbook in every {
        if !all.contains(&playbook) {
            all.push(playbook);
        }
    }
    all
}

/// Each `-e` file's values.
fn read_vars_files(
    ctx: &Ctx,
    files: &[Utf8PathBuf],
) -> Result<Vec<(Utf8PathBuf, boma_fleet::Vars)>, HarnessError> {
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(ctx.repo().join(file))
                .map_err(|e| HarnessError::Refused(format!("cannot read {file}: {e}")))?;
            let vars = boma_fleet::read_vars_file(file.as_str(), &text)
                .map_err(|e| HarnessError::Refused(e.to_string()))?;
            Ok((file.clone(), vars))
        })
        .collect()
}

/// The real addresses the `-e` files hold (every member gets them).
fn scan_extra_vars(
    values: &[(Utf8PathBuf, boma_fleet::Vars)],
    real: &[IpAddr],
) -> Vec<RealAddressUse> {
    let real: BTreeSet<IpAddr> = real.iter().copied().collect();
    values
        .iter()
        .flat_map(|(file, vars)| {
            boma_fleet::scan_vars(&VarSource::ExtraVars(file.clone()), vars, &real)
        })
        .collect()
}

/// A refusal naming every real address found (where, which variable, which address, the fix).
fn refuse_found(found: &[RealAddressUse]) -> Result<(), HarnessError> {
    if found.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = found.iter().map(ToString::to_string).collect();
    Err(HarnessError::Refused(all.join("; ")))
}

/// The members' transient inventory: each under its real name, in its profile's groups, with
/// its fleet address as `ansible_host` and `boma_fleet_address`.
pub fn members_yml(inputs: &FleetInputs) -> Result<MembersYml, HarnessError> {
    let vars: Vec<BTreeMap<&'static str, String>> = inputs
        .members
        .iter()
        .map(|m| boma_fleet::member_host_vars(&m.nic))
        .collect();
    let members: Vec<TransientMember<'_>> = inputs
        .members
        .iter()
        .zip(&vars)
        .map(|(m, vars)| TransientMember {
            name: &m.name,
            groups: &m.inputs.profile.groups,
            vars,
        })
        .collect();
    Ok(boma_inventory::render_members_yml(
        &members,
        &inputs.group_parents,
    )?)
}

/// Write the members' inventory into `inventory_dir`.
pub fn write_inventory(
    ctx: &Ctx,
    inputs: &FleetInputs,
    inventory_dir: &Utf8Path,
) -> Result<(), HarnessError> {
    let yml = members_yml(inputs)?;
    boma_inventory::write_members_dir(inventory_dir, ctx.repo(), &yml)?;
    Ok(())
}

/// Refuse every member variable that still holds a real host's address, as Ansible resolves the
/// members' variables (`ansible-inventory --list` of the members' inventory, written into
/// `inventory_dir` first): a role templating a peer's address from it would aim at production.
/// Nothing has booted yet.
pub fn no_real_addresses(
    ctx: &Ctx,
    inputs: &FleetInputs,
    inventory_dir: &Utf8Path,
) -> Result<(), HarnessError> {
    write_inventory(ctx, inputs, inventory_dir)
        .map_err(|e| HarnessError::Refused(format!("cannot write the members' inventory: {e}")))?;
    let listed = ctx.machine.ansible().list_inventory(
        ctx.repo(),
        inventory_dir,
        inputs.vault_password_file.as_deref(),
    )?;
    let real: BTreeSet<IpAddr> = inputs.real_addresses.iter().copied().collect();
    let names: Vec<String> = inputs.members.iter().map(|m| m.name.to_string()).collect();
    let found = boma_fleet::scan_inventory_list(&listed, &names, &real).map_err(|e| {
        HarnessError::Refused(format!("the members' inventory as Ansible reads it: {e}"))
    })?;
    refuse_found(&found)?;
    say!(
        "members' variables: no real host's address ({} member(s), {} -e file(s) searched)",
        names.len(),
        inputs.extra_vars_files.len()
    );
    Ok(())
}
