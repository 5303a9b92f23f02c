//! The whole cycle, as an operator runs it, on the real hosts' profiles: `askari` (a full pass
//! with every kind of check, then a repeat standing on its layers), `red` (the incident: fails
//! with exactly its `expect`, the bundle shows why), `ubongo` (the control node passes).

use anyhow::ensure;
use camino::Utf8Path;

use super::{
    ItRun, Suite, ensure_image, it, it_any_exit, layers_on, remove_bundle, require_no_leftovers,
};
use crate::{timing, verdict};

/// The files a failed run's diagnostics bundle must hold for the reboot diff to be read after
/// the VM is gone.
const BUNDLE_FILES: [&str; 5] = [
    "reboot-diff.txt",
    "state-before.json",
    "state-after.json",
    "report.json",
    "nft-ruleset.txt",
];

/// `host`'s run in an `it` report, its figures and reboot diff printed, its timings kept.
fn judged_run<'a>(
    suite: &mut Suite,
    scenario: &'static str,
    label: &str,
    run: &'a ItRun,
    host: &str,
) -> anyhow::Result<&'a boma_report::RunReport> {
    let report = verdict::run_of(&run.report, host).map_err(anyhow::Error::msg)?;
    eprint!("{}", timing::run_figures(label, report));
    eprintln!(
        "{label}: the reboot diff:\n{}",
        indent(&verdict::reboot_diff_evidence(report))
    );
    suite
        .timings
        .extend(timing::run_timings(scenario, label, report));
    Ok(report)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `it askari` passes with every kind of check (the reboot diff empty: nothing lost), and
/// removes its VM; run again, it passes standing on its layers: every step reused (none with
/// `BOMA_IT_LAYERS=off`). When the first run already reused every step, it is the proof and
/// there is no second run.
pub fn askari(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "askari";
    ensure_image(suite, S)?;
    let repo = suite.repo.clone();
    let steps = boma_inventory::load_profile(&repo, "askari")?.applies.len();
    for (index, label) in ["run 1", "run 2"].into_iter().enumerate() {
        let run = it(suite, S, &repo, &["askari"], 0)?;
        let report = judged_run(suite, S, label, &run, "askari")?;
        for layer in &report.layers {
            eprintln!(
                "{label}: layer {}: {}",
                layer.step,
                if layer.reused {
                    "reused".to_owned()
                } else {
                    format!(
                        "applied ({})",
                        layer.why_not.as_deref().unwrap_or("no reason given")
                    )
                }
            );
        }
        let mut problems = verdict::askari_problems(report);
        let layer_problems = verdict::layers_problems(&report.layers, steps, layers_on());
        // A first run that already stood on every layer (an earlier run on this machine, e.g.
        // CI's quick start, stored them) proves the reuse the second run is there to prove.
        let reuse_proven = index == 0 && layers_on() && layer_problems.is_empty();
        if index == 1 {
            problems.extend(layer_problems);
        }
        ensure!(
            problems.is_empty(),
            "`xtask it askari` ({label}): {}",
            problems.join("; ")
        );
        require_no_leftovers(suite, &format!("a passing `it askari` ({label})"))?;
        if reuse_proven {
            eprintln!("{label} reused every layer: the reuse is proven, no second run");
            break;
        }
    }
    Ok(())
}

/// `it askari-red --remove-failed` fails with exactly the profile's `expect`; its bundle holds
/// the reboot diff, both states, the report and an nft ruleset whose forward chain is a pure
/// drop; nothing is left. `--fresh --no-idempotence`: what is judged is the failure, not the
/// layers (none of RED's would be reused) nor a second apply (the GREEN runs prove both), and
/// the two cost 4 minutes under TCG.
pub fn red(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "red";
    ensure_image(suite, S)?;
    let repo = suite.repo.clone();
    let expect = boma_inventory::load_profile(&repo, "askari-red")?.expect;
    let run = it_any_exit(
        suite,
        S,
        &repo,
        &[
            "askari-red",
            "--remove-failed",
            "--fresh",
            "--no-idempotence",
        ],
    )?;
    let report = judged_run(suite, S, "RED", &run, "askari-red")?;
    let mut problems: Vec<String> = run
        .exit_problem(verdict::EXIT_AS_EXPECTED)
        .into_iter()
        .collect();
    problems.extend(verdict::red_problems(report, &expect));
    let bundle = report.diagnostics.as_deref().map(Utf8Path::new);
    match bundle {
        Some(bundle) => problems.extend(bundle_problems(bundle)),
        None => problems.push("the failed run wrote no diagnostics bundle".into()),
    }
    ensure!(
        problems.is_empty(),
        "`xtask it askari-red` did not fail for the right reasons (bundle kept: {}): {}",
        bundle.map_or("none".into(), |b| b.to_string()),
        problems.join("; ")
    );
    eprintln!(
        "RED failed for the right reasons: exactly {}; the bundle's forward chain is a pure drop",
        expect.join(", ")
    );
    require_no_leftovers(suite, "a RED run with --remove-failed")?;
    if let Some(bundle) = bundle {
        remove_bundle(bundle);
    }
    Ok(())
}

/// What the bundle of askari-red lacks: a file of [`BUNDLE_FILES`], or the pure-drop forward
/// chain in its ruleset.
fn bundle_problems(bundle: &Utf8Path) -> Vec<String> {
    let mut problems: Vec<String> = BUNDLE_FILES
        .iter()
        .filter(|f| !bundle.join(f).is_file())
        .map(|f| format!("the bundle {bundle} has no {f}"))
        .collect();
    if let Ok(ruleset) = std::fs::read_to_string(bundle.join("nft-ruleset.txt"))
        && !verdict::pure_drop_forward(&ruleset)
    {
        problems.push(format!(
            "the bundle's nft-ruleset.txt does not show a pure-drop forward chain:\n{ruleset}"
        ));
    }
    problems
}

/// `it ubongo` passes across a real reboot with every check ok, and removes its VM.
pub fn ubongo(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "ubongo";
    ensure_image(suite, S)?;
    let repo = suite.repo.clone();
    let run = it(suite, S, &repo, &["ubongo"], 0)?;
    let report = judged_run(suite, S, "run", &run, "ubongo")?;
    let problems = verdict::green_problems(report);
    ensure!(
        problems.is_empty(),
        "`xtask it ubongo`: {}",
        problems.join("; ")
    );
    require_no_leftovers(suite, "a passing `it ubongo`")
}
