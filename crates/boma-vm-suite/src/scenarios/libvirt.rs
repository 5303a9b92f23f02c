//! `libvirt`: the libvirt backend, run inside the namespace `.ci/libvirt-netns` made, on the
//! catalogue's cheapest pair (mode 2, 1 GiB guests, caught by the reboot diff), both at once
//! (`-j 2`): the GREEN passes, the RED fails with exactly its `expect`, nothing is left, and the
//! shared golden image was not chowned by libvirt. Then a fleet GREEN (two members on the run's
//! isolated libvirt network, every round): it passes, and neither its members nor its network
//! stay.

use anyhow::ensure;
use camino::Utf8Path;
use xshell::Shell;

use super::{Suite, ensure_image, golden_image, it, owner, remove_bundle, require_no_leftovers};
use crate::verdict;

const GREEN: &str = "cat-not-enabled";
const RED: &str = "cat-not-enabled-red";
/// The fleet GREEN whose members probe each other: the segment is proven to carry traffic.
const FLEET: &str = "catf-peer-admit";

pub fn libvirt(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "libvirt";
    ensure!(
        boma_vm::hypervisor::libvirt::reachable(&Shell::new()?),
        "no libvirt daemon reachable: run the libvirt scenario through `.ci/libvirt-netns exec`"
    );
    ensure_image(suite, S)?;
    let golden = golden_image(suite)?;
    let owner_before = owner(&golden)?;
    let repo = suite.repo.clone();
    let expect = boma_inventory::load_profile(&repo, RED)?.expect;
    let run = it(
        suite,
        S,
        &repo,
        &[
            GREEN,
            RED,
            "--backend",
            "libvirt",
            "--remove-failed",
            "-j",
            "2",
        ],
        verdict::EXIT_AS_EXPECTED,
    )?;
    let mut problems = Vec::new();
    for host in [GREEN, RED] {
        match verdict::run_of(&run.report, host) {
            Ok(report) => {
                if report.backend.as_deref() != Some("libvirt") {
                    problems.push(format!("{host} ran on {:?}, not libvirt", report.backend));
                }
                problems.extend(if host == RED {
                    verdict::red_problems(report, &expect)
                } else {
                    verdict::green_problems(report)
                });
            }
            Err(missing) => problems.push(missing),
        }
    }
    ensure!(
        problems.is_empty(),
        "`{}`: {}",
        run.label,
        problems.join("; ")
    );
    require_no_leftovers(suite, "the libvirt pair with --remove-failed")?;
    if let Some(bundle) = verdict::run_of(&run.report, RED)
        .ok()
        .and_then(|r| r.diagnostics.as_deref())
    {
        remove_bundle(Utf8Path::new(bundle));
    }
    let owner_after = owner(&golden)?;
    ensure!(
        owner_before == owner_after,
        "libvirt changed the golden image's owner: {owner_before:?} -> {owner_after:?}"
    );
    fleet_green(suite, &repo)
}

/// A fleet GREEN on libvirt: both members on the fleet's isolated network, every round passed,
/// and nothing left (members, network, directory).
fn fleet_green(suite: &mut Suite, repo: &Utf8Path) -> anyhow::Result<()> {
    const S: &str = "libvirt";
    let run = it(
        suite,
        S,
        repo,
        &[FLEET, "--backend", "libvirt", "--remove-failed"],
        verdict::EXIT_AS_EXPECTED,
    )?;
    let report = verdict::run_of(&run.report, FLEET).map_err(anyhow::Error::msg)?;
    let mut problems = verdict::green_problems(report);
    if report.backend.as_deref() != Some("libvirt") {
        problems.push(format!("{FLEET} ran on {:?}, not libvirt", report.backend));
    }
    ensure!(
        problems.is_empty(),
        "`{}`: {}",
        run.label,
        problems.join("; ")
    );
    require_no_leftovers(suite, "the libvirt fleet GREEN")
}
