//! `catalogue`: the reboot failure catalogue's profiles in one `xtask it` on the parallel
//! machinery (`-j 2`, the machine's two cores), judged run by run: a RED fails with exactly its
//! `expect`, a GREEN passes. When the fleets are asked for too (`all`, or `catalogue fleet`),
//! the fleet set joins the same run, each fleet judged by its own `expect`. Prints the table,
//! checks the JUnit file, leaves nothing.

use std::collections::BTreeMap;

use anyhow::ensure;
use camino::Utf8Path;

use super::{ItRun, Suite, ensure_image, it_any_exit, remove_bundle, require_no_leftovers, step};
use crate::catalogue::{self, Row, Want};
use crate::{fleets, leftovers, timing, verdict};

/// Run the suite's catalogue set (`--catalogue-set`) in one invocation and judge every run.
pub fn catalogue(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "catalogue";
    ensure_image(suite, S)?;
    let repo = suite.repo.clone();
    let profiles = boma_inventory::list_profiles(&repo)?;
    let hosts = catalogue::select(suite.catalogue_set, &profiles).map_err(anyhow::Error::msg)?;
    let mut expects = BTreeMap::new();
    for host in &hosts {
        expects.insert(
            host.clone(),
            boma_inventory::load_profile(&repo, host)?.expect,
        );
    }
    eprintln!(
        "catalogue set `{}`: {}",
        suite.catalogue_set,
        hosts.join(", ")
    );
    let mut names = hosts.clone();
    if suite.fleets_with_catalogue {
        let fleets = fleets::select(suite.fleet_set, &boma_fleet::list_fleets(&repo)?)
            .map_err(anyhow::Error::msg)?;
        for name in &fleets {
            let fleet = boma_fleet::load_fleet(&repo, name, &profiles)?;
            expects.insert(name.clone(), fleet.expect().to_vec());
        }
        eprintln!(
            "fleet set `{}`, in the same run: {}",
            suite.fleet_set,
            fleets.join(", ")
        );
        names.extend(fleets);
    }
    let junit = suite.work.join("catalogue.junit.xml");
    let _ = std::fs::remove_file(&junit);
    let mut args: Vec<&str> = names.iter().map(String::as_str).collect();
    args.extend(["-j", "2", "--remove-failed", "--junit", junit.as_str()]);
    // Mode 6 never comes back and waits out its whole bounded wait: bound it at 5 minutes, not
    // the default 7. A healthy catalogue guest is back in 1-2 under TCG, but two at once on 2
    // cores with a build beside them took over 4 (seen: a healthy RED's reboot timed out at
    // 240 s), so the bound is set only when mode 6 runs (mode 7 ends at once: its console shows
    // emergency mode), and a fleet's members beside a catalogue guest keep the default.
    if hosts.iter().any(|h| catalogue::mode_of(h) == Some(6)) {
        suite.it_env = vec![("BOMA_IT_REBOOT_TIMEOUT".into(), "300".into())];
    }
    let run = it_any_exit(suite, S, &repo, &args);
    suite.it_env.clear();
    let run = run?;

    let rows = judge(suite, S, &run, &names, &expects);
    eprintln!("\n{}", catalogue::render_table(&rows));
    conclude(suite, S, &run, &rows, &junit)
}

/// Each of `hosts`' runs in `run`'s report as a table row, judged by its `expect` (a RED must
/// fail with exactly it, a GREEN pass), its time recorded.
pub(super) fn judge(
    suite: &mut Suite,
    scenario: &'static str,
    run: &ItRun,
    hosts: &[String],
    expects: &BTreeMap<String, Vec<String>>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for host in hosts {
        let expect = &expects[host];
        let want = Want::of(expect);
        let row = match verdict::run_of(&run.report, host) {
            Ok(report) => {
                suite.time(
                    scenario,
                    format!("{host} (run total)"),
                    timing::seconds(report.total_seconds),
                );
                Row {
                    profile: host.clone(),
                    want,
                    result: report.result.to_string(),
                    failures: verdict::failed_checks(report)
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                    took: Some(timing::seconds(report.total_seconds)),
                    problems: match want {
                        Want::Red => verdict::red_problems(report, expect),
                        Want::Green => verdict::green_problems(report),
                    },
                }
            }
            Err(missing) => Row {
                profile: host.clone(),
                want,
                result: "no report".into(),
                failures: Vec::new(),
                took: None,
                problems: vec![missing],
            },
        };
        rows.push(row);
    }
    rows
}

/// The end of a run of several judged runs: its exit status, every row's problems and the
/// JUnit file's; each judged bundle removed (a wrong run's kept as evidence); then `prune`, after
/// which nothing may be left.
pub(super) fn conclude(
    suite: &mut Suite,
    scenario: &'static str,
    run: &ItRun,
    rows: &[Row],
    junit: &Utf8Path,
) -> anyhow::Result<()> {
    let mut problems: Vec<String> = run
        .exit_problem(verdict::EXIT_AS_EXPECTED)
        .into_iter()
        .collect();
    problems.extend(rows.iter().flat_map(|r| {
        r.problems
            .iter()
            .map(move |p| format!("{}: {p}", r.profile))
    }));
    problems.extend(junit_problem(junit, rows.len()));
    // A judged bundle goes; one of a run that was wrong stays as evidence.
    for row in rows {
        let bundle = verdict::run_of(&run.report, &row.profile)
            .ok()
            .and_then(|r| r.diagnostics.as_deref());
        match bundle {
            Some(bundle) if row.problems.is_empty() => remove_bundle(Utf8Path::new(bundle)),
            Some(bundle) => eprintln!("{}: bundle kept: {bundle}", row.profile),
            None => {}
        }
    }

    let before = leftovers::count(&suite.repo);
    eprintln!(
        "left by the {scenario} before prune (--remove-failed: expected nothing): {}",
        before.describe()
    );
    step(suite, scenario, &["prune"], 0)?;
    require_no_leftovers(suite, &format!("the {scenario} and prune"))?;
    ensure!(
        problems.is_empty(),
        "the {scenario} is not as its files say:\n  {}",
        problems.join("\n  ")
    );
    Ok(())
}

/// The JUnit file must exist and hold a test suite per run.
fn junit_problem(path: &Utf8Path, runs: usize) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Some(format!("the JUnit file {path} is empty")),
        Ok(text) => {
            let suites = text.matches("<testsuite ").count();
            (suites != runs).then(|| {
                format!("the JUnit file {path} holds {suites} <testsuite> for {runs} run(s)")
            })
        }
        Err(e) => Some(format!("no JUnit file at {path}: {e}")),
    }
}
