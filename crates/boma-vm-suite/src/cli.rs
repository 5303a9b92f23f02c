//! The suite's command line: `vm-suite [--xtask PATH] [--baseline-runs N] [--catalogue-set
//! ci|all|rest] [--bench-groups G,…] [--timings PATH] <scenario>...`, read into a plan. Pure:
//! the arguments come from the caller.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};
use camino::Utf8PathBuf;

use crate::catalogue::CatalogueSet;

/// One scenario of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// A raw QEMU boot against the harness's `up`, interleaved, medians and their ratio.
    Baseline,
    /// `up`, `reboot`, `reboot --hard`, `down`; a SIGKILLed VM and `prune`.
    Lifecycle,
    /// `it askari` twice: a full pass with every kind of check, then every layer reused.
    Askari,
    /// `it askari-red`: fails with exactly its `expect`, the bundle shows the pure-drop chain.
    Red,
    /// `it ubongo` passes.
    Ubongo,
    /// The failure catalogue in one parallel `it`: REDs fail as expected, GREENs pass.
    Catalogue,
    /// Hostile connection variables in group_vars cannot move the connection; in extra vars
    /// they are refused before anything is created.
    Safety,
    /// Interrupts and kills at the worst moments; prune stops only what the harness spawned.
    Faults,
    /// A run of several keeps each failed VM powered off; `start` boots one again.
    Kept,
    /// The libvirt backend (inside `.ci/libvirt-netns`).
    Libvirt,
    /// Figures, not a pass/fail: layers, per-task measures, `-j 2`, reboots (`make bench`).
    Bench,
}

/// `all`: every scenario of the QEMU backend, cheapest proof first. `libvirt` needs the
/// namespace `.ci/libvirt-netns` makes, so it is named on its own.
pub const ALL: [Scenario; 8] = [
    Scenario::Baseline,
    Scenario::Lifecycle,
    Scenario::Askari,
    Scenario::Red,
    Scenario::Ubongo,
    Scenario::Catalogue,
    Scenario::Safety,
    Scenario::Faults,
];

const KNOWN: [Scenario; 11] = [
    Scenario::Baseline,
    Scenario::Lifecycle,
    Scenario::Askari,
    Scenario::Red,
    Scenario::Ubongo,
    Scenario::Catalogue,
    Scenario::Safety,
    Scenario::Faults,
    Scenario::Kept,
    Scenario::Libvirt,
    Scenario::Bench,
];

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::Lifecycle => "lifecycle",
            Scenario::Askari => "askari",
            Scenario::Red => "red",
            Scenario::Ubongo => "ubongo",
            Scenario::Catalogue => "catalogue",
            Scenario::Safety => "safety",
            Scenario::Faults => "faults",
            Scenario::Kept => "kept",
            Scenario::Libvirt => "libvirt",
            Scenario::Bench => "bench",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Scenario, String> {
        KNOWN.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let hint = match s {
                "it" => " (`it` is now `askari`)",
                "red-green" => " (`red-green` is gone: `red` and `askari` prove both outcomes through the whole cycle)",
                _ => "",
            };
            format!("unknown scenario `{s}`{hint}; known: {}, all", names(&KNOWN))
        })
    }
}

fn names(list: &[Scenario]) -> String {
    list.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
}

/// A part of the bench, run on its own with `--bench-groups` (`make bench BENCH_GROUPS=…`):
/// the whole bench takes hours under TCG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchGroup {
    /// askari's full cycle against its re-runs (unchanged, last step changed, first step changed).
    Layers,
    /// A raw guest reboot against `xtask reboot`.
    Reboot,
    /// Applies with facts per playbook, with the fact cache, with Mitogen.
    PerTask,
    /// Two catalogue profiles one after the other against `-j 2`.
    Parallel,
}

/// Every group, in the order the bench runs them.
pub const GROUPS: [BenchGroup; 4] = [
    BenchGroup::Layers,
    BenchGroup::Reboot,
    BenchGroup::PerTask,
    BenchGroup::Parallel,
];

impl BenchGroup {
    pub fn name(self) -> &'static str {
        match self {
            BenchGroup::Layers => "layers",
            BenchGroup::Reboot => "reboot",
            BenchGroup::PerTask => "per-task",
            BenchGroup::Parallel => "parallel",
        }
    }
}

impl FromStr for BenchGroup {
    type Err = String;

    fn from_str(s: &str) -> Result<BenchGroup, String> {
        GROUPS.into_iter().find(|g| g.name() == s).ok_or_else(|| {
            let known: Vec<&str> = GROUPS.iter().map(|g| g.name()).collect();
            format!("`{s}` is not a bench group; known: {}", known.join(", "))
        })
    }
}

/// What to run, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `--xtask`: the harness binary (default: the build's `debug/xtask`).
    pub xtask: Option<Utf8PathBuf>,
    /// `--baseline-runs`: raw boots and `up`s the baseline takes the median of.
    pub baseline_runs: usize,
    /// The scenarios in the order named, each once.
    pub scenarios: Vec<Scenario>,
    /// The catalogue's set: `--catalogue-set` when given; otherwise `ci` when the catalogue
    /// came in through `all` (what CI runs: its cost stays bounded), `all` when it was named.
    pub catalogue_set: CatalogueSet,
    /// `--timings`: where the timings go as JSON too.
    pub timings: Option<Utf8PathBuf>,
    /// `--bench-groups a,b`: the parts of the bench to run (default: all).
    pub bench_groups: Vec<BenchGroup>,
}

/// The usage line.
pub fn usage() -> String {
    format!(
        "usage: vm-suite [--xtask PATH] [--baseline-runs N] [--catalogue-set ci|all|rest] [--bench-groups layers,reboot,per-task,parallel] [--timings PATH] <scenario>...\n\
         scenarios: {} (inside .ci/libvirt-netns), or all = {}\n\
         the catalogue runs its `all` set when named, its `ci` set when it comes through `all`; --catalogue-set overrides both",
        names(&KNOWN),
        names(&ALL),
    )
}

/// Read the arguments (without the program name). `Ok(None)`: help was asked for.
pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Option<Plan>> {
    let mut args = args.into_iter();
    let mut xtask = None;
    let mut baseline_runs = 1;
    let mut catalogue_set = None;
    let mut timings = None;
    let mut bench_groups = GROUPS.to_vec();
    // (scenario, whether it came in through `all`)
    let mut wanted: Vec<(Scenario, bool)> = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .with_context(|| format!("{flag} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--xtask" => xtask = Some(Utf8PathBuf::from(value("--xtask")?)),
            "--timings" => timings = Some(Utf8PathBuf::from(value("--timings")?)),
            "--baseline-runs" => {
                let text = value("--baseline-runs")?;
                baseline_runs = text.parse().ok().filter(|n| *n >= 1).with_context(|| {
                    format!("--baseline-runs {text}: give a whole number of runs, 1 or more")
                })?;
            }
            "--catalogue-set" => {
                catalogue_set = Some(
                    value("--catalogue-set")?
                        .parse::<CatalogueSet>()
                        .map_err(anyhow::Error::msg)?,
                );
            }
            "--bench-groups" => {
                bench_groups = value("--bench-groups")?
                    .split(',')
                    .map(|g| g.trim().parse::<BenchGroup>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?;
                bench_groups.dedup();
            }
            "-h" | "--help" => return Ok(None),
            "all" => wanted.extend(ALL.iter().map(|s| (*s, true))),
            flag if flag.starts_with('-') => bail!("unknown option `{flag}`\n{}", usage()),
            name => wanted.push((name.parse().map_err(anyhow::Error::msg)?, false)),
        }
    }
    if wanted.is_empty() {
        bail!("name the scenarios to run\n{}", usage());
    }
    // Named on its own, the catalogue is the whole catalogue; through `all`, the CI set.
    let catalogue_named = wanted
        .iter()
        .any(|(s, via_all)| *s == Scenario::Catalogue && !via_all);
    let catalogue_set = catalogue_set.unwrap_or(if catalogue_named {
        CatalogueSet::All
    } else {
        CatalogueSet::Ci
    });
    let mut scenarios = Vec::new();
    for (scenario, _) in wanted {
        if !scenarios.contains(&scenario) {
            scenarios.push(scenario);
        }
    }
    Ok(Some(Plan {
        xtask,
        baseline_runs,
        scenarios,
        catalogue_set,
        timings,
        bench_groups,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> anyhow::Result<Option<Plan>> {
        parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn all_expands_to_every_qemu_scenario_with_the_ci_catalogue() {
        let p = plan(&["all"]).unwrap().unwrap();
        assert_eq!(p.scenarios, ALL);
        assert!(!p.scenarios.contains(&Scenario::Libvirt));
        assert_eq!(p.catalogue_set, CatalogueSet::Ci);
        assert_eq!(p.baseline_runs, 1);
        assert_eq!(p.timings, None);
        assert_eq!(p.bench_groups, GROUPS);
    }

    #[test]
    fn bench_groups_are_chosen_by_name() {
        let p = plan(&["--bench-groups", "per-task,reboot", "bench"])
            .unwrap()
            .unwrap();
        assert_eq!(p.bench_groups, [BenchGroup::PerTask, BenchGroup::Reboot]);
        let err = plan(&["--bench-groups", "per-task,speed", "bench"]).unwrap_err();
        assert!(
            err.to_string().contains("`speed` is not a bench group"),
            "{err}"
        );
    }

    #[test]
    fn a_named_catalogue_is_the_whole_catalogue_unless_told() {
        let p = plan(&["catalogue"]).unwrap().unwrap();
        assert_eq!(p.catalogue_set, CatalogueSet::All);
        let p = plan(&["all", "catalogue"]).unwrap().unwrap();
        assert_eq!(p.catalogue_set, CatalogueSet::All);
        assert_eq!(p.scenarios, ALL, "each scenario runs once");
        let p = plan(&["--catalogue-set", "ci", "catalogue"])
            .unwrap()
            .unwrap();
        assert_eq!(p.catalogue_set, CatalogueSet::Ci);
        let p = plan(&["all", "--catalogue-set", "all"]).unwrap().unwrap();
        assert_eq!(p.catalogue_set, CatalogueSet::All);
    }

    #[test]
    fn options_take_their_values() {
        let p = plan(&[
            "--xtask",
            "/t/debug/xtask",
            "--baseline-runs",
            "3",
            "--timings",
            "/t/timings.json",
            "libvirt",
            "red",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            p.xtask.as_deref(),
            Some(camino::Utf8Path::new("/t/debug/xtask"))
        );
        assert_eq!(p.baseline_runs, 3);
        assert_eq!(
            p.timings.as_deref(),
            Some(camino::Utf8Path::new("/t/timings.json"))
        );
        assert_eq!(p.scenarios, [Scenario::Libvirt, Scenario::Red]);
        assert_eq!(plan(&["--help", "frobnicate"]).unwrap(), None);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |args: &[&str]| plan(args).unwrap_err().to_string();
        assert!(err(&[]).contains("name the scenarios"));
        assert!(err(&["it"]).contains("`it` is now `askari`"));
        assert!(err(&["red-green"]).contains("is gone"));
        assert!(err(&["frobnicate"]).contains("known: baseline, lifecycle"));
        assert!(err(&["--baseline-runs", "0", "baseline"]).contains("1 or more"));
        assert!(err(&["--baseline-runs"]).contains("needs a value"));
        assert!(err(&["--catalogue-set", "most", "catalogue"]).contains("not a catalogue set"));
        assert!(err(&["--fast", "all"]).contains("unknown option `--fast`"));
    }

    #[test]
    fn every_scenario_name_reads_back() {
        for scenario in KNOWN {
            assert_eq!(scenario.name().parse(), Ok(scenario));
        }
    }
}
