//! `fleet`: the fleet catalogue (`fleets/catf-*.json`, ADR-027) in one `xtask it -j 2`, two
//! fleets at a time (four small guests on two cores, as CI packs its fleet REDs beside the
//! catalogue's), judged run by run: a RED fleet ends `expected_failure` with exactly its
//! `expect` — the round that broke it and the member it broke — and a GREEN passes every
//! round. Prints the table, checks the JUnit file, and nothing may be left: no member, no
//! switch, no fleet directory.

use std::collections::BTreeMap;

use anyhow::ensure;

use super::catalogue::{conclude, judge};
use super::{Suite, ensure_image, it_any_exit};
use crate::{catalogue, fleets, leftovers};

/// Run the suite's fleet set (`--fleet-set`) in one invocation and judge every run.
pub fn fleet(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "fleet";
    ensure_image(suite, S)?;
    let repo = suite.repo.clone();
    let all = boma_fleet::list_fleets(&repo)?;
    let names = fleets::select(suite.fleet_set, &all).map_err(anyhow::Error::msg)?;
    let profiles = boma_inventory::list_profiles(&repo)?;
    let mut expects = BTreeMap::new();
    for name in &names {
        let fleet = boma_fleet::load_fleet(&repo, name, &profiles)?;
        expects.insert(name.clone(), fleet.expect().to_vec());
    }
    eprintln!("fleet set `{}`: {}", suite.fleet_set, names.join(", "));
    let junit = suite.work.join("fleet.junit.xml");
    let _ = std::fs::remove_file(&junit);
    let mut args: Vec<&str> = names.iter().map(String::as_str).collect();
    args.extend(["-j", "2", "--remove-failed", "--junit", junit.as_str()]);
    let run = it_any_exit(suite, S, &repo, &args)?;
    let rows = judge(suite, S, &run, &names, &expects);
    eprintln!("\n{}", catalogue::render_table(&rows));
    // Every fleet removed itself (passed, or --remove-failed): its members, switch and
    // directory are gone before the prune that `conclude` runs.
    let left = leftovers::count(&suite.repo);
    conclude(suite, S, &run, &rows, &junit)?;
    ensure!(
        left.total() == 0,
        "the fleets left things behind before prune: {}",
        left.describe()
    );
    Ok(())
}
