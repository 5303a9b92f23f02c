//! The fleet catalogue as the suite runs it (`tests/catalogue/README.md`, "The fleet
//! catalogue"): which `catf-*` fleets a set names, and each fleet's mode. Pure: the fleet names
//! come from the caller.

use std::fmt;
use std::str::FromStr;

/// The fleet catalogue's modes by number: the fleet `catf-<slug>` (GREEN) and
/// `catf-<slug>-red` (RED) are mode N.
pub const FLEET_MODES: [(u8, &str); 3] = [(1, "boot-order"), (2, "peer-admit"), (3, "peer-mount")];

/// Which catalogue fleets a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetSet {
    /// The REDs: each proves the harness catches a failure between hosts (what CI runs).
    Ci,
    /// Every `catf-*` fleet, RED and GREEN.
    All,
}

impl FromStr for FleetSet {
    type Err = String;

    fn from_str(s: &str) -> Result<FleetSet, String> {
        match s {
            "ci" => Ok(FleetSet::Ci),
            "all" => Ok(FleetSet::All),
            other => Err(format!(
                "`{other}` is not a fleet set: use `ci` (the catalogue's RED fleets) or `all` (REDs and GREENs)"
            )),
        }
    }
}

impl fmt::Display for FleetSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FleetSet::Ci => "ci",
            FleetSet::All => "all",
        })
    }
}

/// The fleets of `set`, from the names of every fleet in the repository (`fleets/`), sorted; an
/// error when it has none.
pub fn select(set: FleetSet, fleets: &[String]) -> Result<Vec<String>, String> {
    let mut chosen: Vec<String> = fleets
        .iter()
        .filter(|f| f.starts_with("catf-"))
        .filter(|f| set == FleetSet::All || f.ends_with("-red"))
        .cloned()
        .collect();
    chosen.sort();
    chosen.dedup();
    if chosen.is_empty() {
        return Err(format!(
            "no catalogue fleet (`fleets/catf-*.json`) in the `{set}` set to run"
        ));
    }
    Ok(chosen)
}

/// The mode a fleet belongs to (`catf-peer-admit-red` → 2), if it is one of [`FLEET_MODES`].
pub fn mode_of(fleet: &str) -> Option<u8> {
    let base = fleet.strip_suffix("-red").unwrap_or(fleet);
    let slug = base.strip_prefix("catf-")?;
    FLEET_MODES
        .iter()
        .find(|(_, s)| *s == slug)
        .map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ci_takes_the_red_fleets_and_all_every_catalogue_fleet() {
        let fleets = names(&["web", "catf-a-red", "catf-a", "catf-b-red"]);
        assert_eq!(
            select(FleetSet::Ci, &fleets).unwrap(),
            ["catf-a-red", "catf-b-red"]
        );
        assert_eq!(
            select(FleetSet::All, &fleets).unwrap(),
            ["catf-a", "catf-a-red", "catf-b-red"]
        );
        let err = select(FleetSet::Ci, &names(&["web", "catf-a"])).unwrap_err();
        assert!(err.contains("`ci`"), "{err}");
        assert_eq!("ci".parse(), Ok(FleetSet::Ci));
        assert_eq!("all".parse(), Ok(FleetSet::All));
        assert!("rest".parse::<FleetSet>().unwrap_err().contains("`all`"));
    }

    /// The repository's own fleets: every `catf-*` one has a mode, each mode a RED (with an
    /// `expect`) and a GREEN (without). Reads `fleets/` and `profiles/` only.
    #[test]
    fn the_repository_fleet_catalogue_has_a_red_and_a_green_per_mode() {
        let repo = camino::Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let fleets = boma_fleet::list_fleets(&repo).unwrap();
        let profiles = boma_inventory::list_profiles(&repo).unwrap();
        let all = select(FleetSet::All, &fleets).unwrap();
        for (mode, slug) in FLEET_MODES {
            let green = format!("catf-{slug}");
            let red = format!("{green}-red");
            for (name, is_red) in [(&green, false), (&red, true)] {
                assert!(all.contains(name), "mode {mode} has no fleet {name}");
                assert_eq!(mode_of(name), Some(mode));
                let fleet = boma_fleet::load_fleet(&repo, name, &profiles).unwrap();
                assert_eq!(!fleet.expect().is_empty(), is_red, "{name}");
            }
        }
        assert_eq!(all.len(), 2 * FLEET_MODES.len());
        assert_eq!(mode_of("catf-unknown"), None);
        assert_eq!(mode_of("cat-not-enabled"), None);
    }
}
