//! The arguments of `ansible-playbook` (the program name excluded) for the profile's playbook
//! runs and for any other playbook run against the test VM (a verify playbook). `--limit` is
//! always the test VM, taken from the checked [`VmName`], so that even an inventory mix-up
//! cannot widen a run beyond it, and the harness's connection file is always the last `-e`.
//! A fleet run's are the same over its members ([`fleet_apply_argv`]): `--limit` is the
//! members a step is for, each a checked [`MemberName`].

use camino::{Utf8Path, Utf8PathBuf};

use crate::cert::CertTier;
use crate::profile::Apply;
use crate::transient::MemberName;
use boma_name::VmName;

/// Where profile playbooks live, relative to the repo root.
pub const PLAYBOOKS_DIR: &str = "playbooks";

/// What every `ansible-playbook` run of one test shares.
#[derive(Debug, Clone, Copy)]
pub struct PlaybookRun<'a> {
    pub repo_root: &'a Utf8Path,
    /// The transient inventory directory (`hosts.yml` + `group_vars`).
    pub inventory_dir: &'a Utf8Path,
    pub vm: &'a VmName,
    /// The profile's variable files, relative to the repo root.
    pub extra_vars_files: &'a [Utf8PathBuf],
    pub cert_tier: CertTier,
    /// Variables of this run (a JSON file), applied after the profile's and the tier's.
    pub run_extra_vars: Option<&'a Utf8Path>,
    pub vault_password_file: Option<&'a Utf8Path>,
    /// The harness's connection file ([`crate::render_connection_vars`]): always the last
    /// `-e @file`, so it outranks every variable of the run, every host's included.
    pub connection_vars: &'a Utf8Path,
}

/// What every `ansible-playbook` run of a fleet shares: as [`PlaybookRun`], with the members
/// instead of the VM (each run names the members it is for).
#[derive(Debug, Clone, Copy)]
pub struct FleetPlaybookRun<'a> {
    pub repo_root: &'a Utf8Path,
    /// The transient inventory directory (the members' `hosts.yml` + `group_vars`).
    pub inventory_dir: &'a Utf8Path,
    /// The fleet's variable files (the members' then the fleet's), relative to the repo root.
    pub extra_vars_files: &'a [Utf8PathBuf],
    pub cert_tier: CertTier,
    pub run_extra_vars: Option<&'a Utf8Path>,
    pub vault_password_file: Option<&'a Utf8Path>,
    /// The fleet's connection file ([`crate::render_fleet_connection_vars`]): always last.
    pub connection_vars: &'a Utf8Path,
}

/// `ansible-playbook` arguments for one of the profile's playbook runs.
pub fn apply_argv(run: &PlaybookRun<'_>, apply: &Apply) -> Vec<String> {
    argv(
        &Shared::of(run),
        run.vm.as_str(),
        apply_playbook(run.repo_root, apply),
    )
}

/// `ansible-playbook` arguments for the whole of `playbook` (relative to the repo root), such
/// as a profile's verify playbook.
pub fn playbook_argv(run: &PlaybookRun<'_>, playbook: &Utf8Path) -> Vec<String> {
    let whole = (run.repo_root.join(playbook), None);
    argv(&Shared::of(run), run.vm.as_str(), whole)
}

/// `ansible-playbook` arguments for one step of a fleet (an apply the members in `limit` list),
/// limited to those members. `limit` holds at least one member (a step is for the members that
/// list it; Ansible refuses a run limited to none).
pub fn fleet_apply_argv(
    run: &FleetPlaybookRun<'_>,
    apply: &Apply,
    limit: &[MemberName],
) -> Vec<String> {
    let playbook = apply_playbook(run.repo_root, apply);
    argv(&Shared::of_fleet(run), &limit_of(limit), playbook)
}

/// `ansible-playbook` arguments for the whole of `playbook` over the members in `limit` (the
/// fleet's verify playbooks: every member).
pub fn fleet_playbook_argv(
    run: &FleetPlaybookRun<'_>,
    playbook: &Utf8Path,
    limit: &[MemberName],
) -> Vec<String> {
    let whole = (run.repo_root.join(playbook), None);
    argv(&Shared::of_fleet(run), &limit_of(limit), whole)
}

/// `a,b`: a list of names (each a plain name, never an Ansible pattern).
fn limit_of(members: &[MemberName]) -> String {
    let names: Vec<&str> = members.iter().map(MemberName::as_str).collect();
    names.join(",")
}

/// The playbook and `--tags` of an apply.
fn apply_playbook(repo_root: &Utf8Path, apply: &Apply) -> (Utf8PathBuf, Option<String>) {
    let tags = (!apply.tags.is_empty()).then(|| apply.tags.join(","));
    (repo_root.join(apply.playbook_path()), tags)
}

/// What a single run's and a fleet's playbook runs share.
struct Shared<'a> {
    repo_root: &'a Utf8Path,
    inventory_dir: &'a Utf8Path,
    extra_vars_files: &'a [Utf8PathBuf],
    cert_tier: CertTier,
    run_extra_vars: Option<&'a Utf8Path>,
    vault_password_file: Option<&'a Utf8Path>,
    connection_vars: &'a Utf8Path,
}

impl<'a> Shared<'a> {
    fn of(run: &PlaybookRun<'a>) -> Shared<'a> {
        Shared {
            repo_root: run.repo_root,
            inventory_dir: run.inventory_dir,
            extra_vars_files: run.extra_vars_files,
            cert_tier: run.cert_tier,
            run_extra_vars: run.run_extra_vars,
            vault_password_file: run.vault_password_file,
            connection_vars: run.connection_vars,
        }
    }

    fn of_fleet(run: &FleetPlaybookRun<'a>) -> Shared<'a> {
        Shared {
            repo_root: run.repo_root,
            inventory_dir: run.inventory_dir,
            extra_vars_files: run.extra_vars_files,
            cert_tier: run.cert_tier,
            run_extra_vars: run.run_extra_vars,
            vault_password_file: run.vault_password_file,
            connection_vars: run.connection_vars,
        }
    }
}

fn argv(
    run: &Shared<'_>,
    limit: &str,
    (playbook, tags): (Utf8PathBuf, Option<String>),
) -> Vec<String> {
    // A trailing `/` says "this inventory source is a directory" (hosts.yml plus group_vars).
    let inventory = format!("{}/", run.inventory_dir.as_str().trim_end_matches('/'));
    let mut args = vec!["-i".to_owned(), inventory, playbook.to_string()];
    args.extend(["--limit".to_owned(), limit.to_owned()]);
    if let Some(tags) = tags {
        args.extend(["--tags".to_owned(), tags]);
    }
    // Later `-e` files win: profile overrides, then the cert tier, then this run's own values,
    // then, last of all, the harness's connection.
    let var_files = run
        .extra_vars_files
        .iter()
        .map(|f| run.repo_root.join(f))
        .chain([run.repo_root.join(run.cert_tier.vars_file())])
        .chain(run.run_extra_vars.map(Utf8Path::to_owned))
        .chain([run.connection_vars.to_owned()]);
    for file in var_files {
        args.extend(["-e".to_owned(), format!("@{file}")]);
    }
    if let Some(file) = run.vault_password_file {
        args.extend(["--vault-password-file".to_owned(), file.to_string()]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<MemberName> {
        names
            .iter()
            .map(|n| MemberName::checked(n).unwrap())
            .collect()
    }

    /// A fleet step: the same arguments as a single run's, limited to the members it is for, the
    /// fleet's connection file last.
    #[test]
    fn a_fleet_step_is_limited_to_its_members_with_the_connection_file_last() {
        let files = [
            Utf8PathBuf::from("overrides/catalogue.yml"),
            Utf8PathBuf::from("overrides/web-fleet.yml"),
        ];
        let run = FleetPlaybookRun {
            repo_root: Utf8Path::new("/repo"),
            inventory_dir: Utf8Path::new("/repo/.run/boma-it-web-1/inventory"),
            extra_vars_files: &files,
            cert_tier: CertTier::Internal,
            run_extra_vars: Some(Utf8Path::new("/repo/.run/boma-it-web-1/run-vars.json")),
            vault_password_file: None,
            connection_vars: Utf8Path::new("/repo/.run/boma-it-web-1/connection-vars.json"),
        };
        let apply = Apply {
            playbook: "site.yml".into(),
            tags: vec!["base".into(), "web".into()],
        };
        let args = fleet_apply_argv(&run, &apply, &members(&["web-a", "web-b"]));
        assert_eq!(
            args,
            [
                "-i",
                "/repo/.run/boma-it-web-1/inventory/",
                "/repo/playbooks/site.yml",
                "--limit",
                "web-a,web-b",
                "--tags",
                "base,web",
                "-e",
                "@/repo/overrides/catalogue.yml",
                "-e",
                "@/repo/overrides/web-fleet.yml",
                "-e",
                "@/repo/certs/internal.yml",
                "-e",
                "@/repo/.run/boma-it-web-1/run-vars.json",
                "-e",
                "@/repo/.run/boma-it-web-1/connection-vars.json",
            ]
        );
        let verify = fleet_playbook_argv(
            &run,
            Utf8Path::new("tests/verify/web-fleet.yml"),
            &members(&["web-b"]),
        );
        assert_eq!(verify[2], "/repo/tests/verify/web-fleet.yml");
        assert_eq!(verify[3..5], ["--limit", "web-b"]);
        assert!(!verify.contains(&"--tags".to_owned()));
    }
}
