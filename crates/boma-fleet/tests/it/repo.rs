//! The repository's fleets are runnable as they stand: their members' steps merge, their `-e`
//! files agree, their members fit the network, and every `expect` entry names a phase the
//! fleet has and a member it has — a typo there would make a RED fail for the wrong reason.

use boma_fleet::{
    FLEET_NETWORK, Fleet, Phase, conflicts, extra_vars_files, load_fleet, merge_steps,
    read_vars_file, rounds,
};
use boma_inventory::{Profile, load_profile};
use camino::{Utf8Path, Utf8PathBuf};

fn repo() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fleets() -> Vec<(Fleet, Vec<Profile>)> {
    let repo = repo();
    let profiles = boma_inventory::list_profiles(&repo).unwrap();
    boma_fleet::list_fleets(&repo)
        .unwrap()
        .iter()
        .map(|name| {
            let fleet = load_fleet(&repo, name, &profiles).unwrap_or_else(|e| panic!("{e}"));
            let members = fleet
                .members()
                .iter()
                .map(|m| load_profile(&repo, m).unwrap_or_else(|e| panic!("{e}")))
                .collect();
            (fleet, members)
        })
        .collect()
}

#[test]
fn every_fleets_plan_holds() {
    let repo = repo();
    let fleets = fleets();
    assert!(!fleets.is_empty());
    for (fleet, profiles) in &fleets {
        let members: Vec<(&str, &Profile)> = fleet
            .members()
            .iter()
            .map(String::as_str)
            .zip(profiles)
            .collect();
        merge_steps(&members).unwrap_or_else(|e| panic!("{}: {e}", fleet.name()));
        let files = extra_vars_files(
            &profiles.iter().collect::<Vec<_>>(),
            fleet.extra_vars_files(),
        );
        let values: Vec<_> = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(repo.join(f))
                    .unwrap_or_else(|e| panic!("{}: {f}: {e}", fleet.name()));
                (f.clone(), read_vars_file(f.as_str(), &text).unwrap())
            })
            .collect();
        let found = conflicts(&values);
        assert!(found.is_empty(), "{}: {found:?}", fleet.name());
        FLEET_NETWORK.members(fleet.members()).unwrap();
    }
}

#[test]
fn every_expect_entry_names_a_phase_and_a_member_of_its_fleet() {
    for (fleet, _) in fleets() {
        let phases: Vec<String> = std::iter::once(Phase::Applied)
            .chain(rounds(&fleet).into_iter().map(Phase::After))
            .map(|p| format!("{p}: "))
            .collect();
        for entry in fleet.expect() {
            let rest = phases
                .iter()
                .find_map(|p| entry.strip_prefix(p.as_str()))
                .unwrap_or_else(|| {
                    panic!("{}: `{entry}` starts with none of {phases:?}", fleet.name())
                });
            let names_a_member = match rest.strip_prefix("peer_probe_failed ") {
                Some(probe) => fleet
                    .members()
                    .iter()
                    .any(|m| probe.starts_with(&format!("{m} → "))),
                None => fleet
                    .members()
                    .iter()
                    .any(|m| rest.starts_with(&format!("{m}: "))),
            };
            assert!(
                names_a_member,
                "{}: `{entry}` names no member",
                fleet.name()
            );
        }
    }
}

/// Each RED catalogue fleet has a GREEN twin over the same members, whose only differences are
/// the RED's switch (its `-e` file), its `expect`, and that it may run fewer rounds (those its
/// bug shows in) where the GREEN runs every one.
#[test]
fn every_red_catalogue_fleet_has_its_green_twin() {
    let fleets = fleets();
    let reds: Vec<&Fleet> = fleets
        .iter()
        .map(|(f, _)| f)
        .filter(|f| f.name().starts_with("catf-") && f.name().ends_with("-red"))
        .collect();
    assert_eq!(reds.len(), 3, "the fleet catalogue's three modes");
    for red in reds {
        assert!(!red.expect().is_empty(), "{}", red.name());
        let green_name = red.name().strip_suffix("-red").unwrap();
        let (green, _) = fleets
            .iter()
            .find(|(f, _)| f.name() == green_name)
            .unwrap_or_else(|| panic!("{} has no GREEN twin {green_name}", red.name()));
        assert!(green.expect().is_empty(), "{green_name}");
        assert_eq!(red.members(), green.members());
        assert!(
            red.reboots().iter().all(|r| green.reboots().contains(r)),
            "{}: a RED's rounds are among its GREEN's",
            red.name()
        );
        assert_eq!(
            green.reboots().len(),
            2,
            "{green_name}: a GREEN runs every kind of round"
        );
        assert_eq!(red.boot_order(), green.boot_order());
        assert_eq!(
            red.extra_vars_files(),
            [Utf8PathBuf::from(format!("overrides/{}.yml", red.name()))]
        );
        assert!(green.extra_vars_files().is_empty());
    }
}

/// A fleet run starts `vde_switch`: the substrate role installs its package, as it installs
/// every program the harness runs (`make test-integration` applies the role on a fresh
/// machine).
#[test]
fn the_substrate_role_installs_the_switch() {
    let defaults =
        std::fs::read_to_string(repo().join("roles/integration_test/defaults/main.yml")).unwrap();
    let packages: Vec<&str> = defaults
        .lines()
        .skip_while(|line| *line != "integration_test__packages:")
        .skip(1)
        .take_while(|line| line.starts_with("  - "))
        .map(|line| line.trim_start_matches("  - ").trim())
        .collect();
    assert!(
        packages.contains(&boma_fleet::VDE_SWITCH_PACKAGE),
        "{} comes from {}, which roles/integration_test/defaults/main.yml does not install: {packages:?}",
        boma_fleet::VDE_SWITCH,
        boma_fleet::VDE_SWITCH_PACKAGE
    );
}
