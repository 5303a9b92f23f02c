//! `libvirt`: the libvirt backend, run inside the namespace `.ci/libvirt-netns` made, in one
//! `xtask it -j 2`: the catalogue's cheapest RED (mode 2, a 1 GiB guest, caught by the reboot
//! diff) fails with exactly its `expect`, while a fleet GREEN (two members on the run's isolated
//! libvirt network, every round, probing each other) passes beside it. Nothing is left — no
//! domain, no network, no directory — and the shared golden image was not chowned by libvirt.
//! (The single-host GREEN path on libvirt is the fleet's: each member is booted, applied,
//! rebooted and removed as a host's VM is; `make test-vm VM_SCENARIOS=libvirt` is the same.)

use anyhow::ensure;
use camino::Utf8Path;
use xshell::Shell;

use super::{Suite, ensure_image, golden_image, it, owner, remove_bundle, require_no_leftovers};
use crate::verdict;

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
            RED,
            FLEET,
            "--backend",
            "libvirt",
            "--remove-failed",
            "-j",
            "2",
        ],
        verdict::EXIT_AS_EXPECTED,
    )?;
    let mut problems = Vec::new();
    for name in [RED, FLEET] {
        match verdict::run_of(&run.report, name) {
            Ok(report) => {
                if report.backend.as_deref() != Some("libvirt") {
                    problems.push(format!("{name} ran on {:?}, not libvirt", report.backend));
                }
                problems.extend(if name == RED {
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
    require_no_leftovers(
        suite,
        "a RED and a fleet GREEN on libvirt with --remove-failed",
    )?;
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
    Ok(())
}
