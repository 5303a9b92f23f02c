//! `kept`: a run of several profiles keeps each failed VM powered off, not running — no guest
//! left burning the CPU the next runs need — with its disk, record and bundle, and says how to
//! start it again; `xtask start <vm>` then boots that same disk again, as the current VM.

use anyhow::{Context, ensure};

use super::{
    Suite, current, ensure_image, guest_run, it, remove_bundle, require_no_leftovers, step,
};
use crate::{leftovers, verdict};

/// Two catalogue REDs (caught by the reboot diff, 1 GiB guests), at once. Each is an expected
/// failure, so the invocation exits 0; each VM is kept powered off.
const REDS: [&str; 2] = ["cat-not-enabled-red", "cat-lost-route-red"];

pub fn kept(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "kept";
    ensure_image(suite, S)?;
    let repo = suite.repo.clone();
    let mut args: Vec<&str> = REDS.to_vec();
    args.extend(["-j", "2", "--fresh", "--no-idempotence"]);
    let run = it(suite, S, &repo, &args, verdict::EXIT_AS_EXPECTED)?;
    let mut vms = Vec::new();
    let mut problems = Vec::new();
    for host in REDS {
        let report = verdict::run_of(&run.report, host).map_err(anyhow::Error::msg)?;
        let expect = boma_inventory::load_profile(&repo, host)?.expect;
        problems.extend(verdict::red_problems(report, &expect));
        let vm = report
            .vm
            .clone()
            .with_context(|| format!("{host}: the report names no VM"))?;
        let log = repo.join(format!("tests/integration/.run/parallel/{host}.log"));
        let text = std::fs::read_to_string(&log).with_context(|| format!("cannot read {log}"))?;
        if !text.contains(&format!("{vm} is kept powered off (one run of several"))
            || !text.contains(&format!("`cargo xtask start {vm}` boots it again"))
        {
            problems.push(format!(
                "{log} does not say {vm} is kept powered off and how to start it"
            ));
        }
        let cache =
            std::env::var("BOMA_IT_CACHE").unwrap_or_else(|_| "/var/lib/boma-integration".into());
        let reservation = format!("{cache}/reservations/{vm}.json");
        if std::path::Path::new(&reservation).exists() {
            problems.push(format!(
                "{vm} is powered off yet holds memory: {reservation}"
            ));
        }
        if let Some(bundle) = &report.diagnostics {
            remove_bundle(camino::Utf8Path::new(bundle));
        } else {
            problems.push(format!("{host}: no diagnostics bundle"));
        }
        vms.push(vm);
    }
    let left = leftovers::count(&repo);
    eprintln!("after the run of several: {}", left.describe());
    if !left.processes.is_empty() {
        problems.push(format!("guests still running: {:?}", left.processes));
    }
    if left.run_dirs.len() != REDS.len() {
        problems.push(format!(
            "expected {} kept run directories, found {:?}",
            REDS.len(),
            left.run_dirs
        ));
    }
    ensure!(
        problems.is_empty(),
        "`{}` did not keep its failed VMs powered off: {}",
        run.label,
        problems.join("; ")
    );

    // The first one again: the same disk (the planted unit is there), now current.
    let started = step(suite, S, &["start", &vms[0]], 0)?;
    ensure!(
        started.trim() == vms[0],
        "`xtask start {}` printed {started:?}",
        vms[0]
    );
    let record = current(suite)?;
    ensure!(
        record.name.as_str() == vms[0],
        "the started VM is not current"
    );
    guest_run(&record, "systemctl cat boma-cat-web.service >/dev/null")
        .context("the started guest is not the disk the run kept")?;
    eprintln!("{} started again from its record and answers", vms[0]);
    step(suite, S, &["down"], 0)?;
    step(suite, S, &["prune"], 0)?;
    require_no_leftovers(suite, "`start`, `down` and `prune` of the kept VMs")
}
