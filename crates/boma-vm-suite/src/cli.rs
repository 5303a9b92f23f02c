//! The suite's command line, read by clap into a [`Plan`]: `vm-suite [--xtask PATH]
//! [--baseline-runs N] [--catalogue-set ci|all|rest] [--fleet-set ci|all] [--bench-groups G,…]
//! [--timings PATH] <scenario>...`. The scenarios are one enum, [`Scenario`]: its variants are the list, `all`
//! takes those [`Scenario::in_all`] says.

use std::ffi::OsStr;
use std::fmt;
use std::sync::LazyLock;

use camino::Utf8PathBuf;
use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Parser, ValueEnum};

use crate::catalogue::CatalogueSet;
use crate::fleets::FleetSet;

/// The VM suite: drives the real `xtask` binary against real guests (root, QEMU under TCG,
/// minutes per scenario) and counts what is left behind. Not part of `cargo test`.
#[derive(Parser, Debug)]
#[command(
    name = "vm-suite",
    after_help = "The catalogue and the fleets run their `all` set when named, their `ci` set when they come through `all`; --catalogue-set and --fleet-set override both. libvirt runs inside .ci/libvirt-netns."
)]
pub struct Cli {
    /// The harness binary (default: the build's `debug/xtask`).
    #[arg(long, value_name = "PATH")]
    xtask: Option<Utf8PathBuf>,
    /// Raw boots and `up`s the baseline takes the median of.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    baseline_runs: u64,
    /// The catalogue's profiles: ci (the REDs CI runs), rest (what CI leaves out) or all.
    #[arg(long, value_name = "SET", value_parser = parse_catalogue_set)]
    catalogue_set: Option<CatalogueSet>,
    /// The fleet catalogue's fleets: ci (its REDs) or all (REDs and GREENs).
    #[arg(long, value_name = "SET", value_parser = parse_fleet_set)]
    fleet_set: Option<FleetSet>,
    /// Where the timings go as JSON too.
    #[arg(long, value_name = "PATH")]
    timings: Option<Utf8PathBuf>,
    /// The parts of the bench to run, comma-separated (default: all of them).
    #[arg(long, value_name = "GROUP,…", value_enum, value_delimiter = ',')]
    bench_groups: Vec<BenchGroup>,
    /// The scenarios to run, in order, each once.
    #[arg(required = true, value_name = "SCENARIO", value_parser = WantedParser)]
    scenarios: Vec<Wanted>,
}

fn parse_catalogue_set(text: &str) -> Result<CatalogueSet, String> {
    text.parse()
}

fn parse_fleet_set(text: &str) -> Result<FleetSet, String> {
    text.parse()
}

/// One scenario of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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
    /// The fleet catalogue, two fleets at a time: REDs fail with exactly their `expect`, GREENs
    /// pass every round, nothing is left.
    Fleet,
    /// Hostile connection variables in group_vars cannot move the connection; in extra vars
    /// they are refused before anything is created.
    Safety,
    /// Interrupts and kills at the worst moments; prune stops only what the harness spawned.
    Faults,
    /// A run of several keeps each failed VM powered off; `start` boots one again (not in
    /// `all`).
    Kept,
    /// The libvirt backend (inside `.ci/libvirt-netns`; not in `all`).
    Libvirt,
    /// A fleet's network on real guests: two members on one `vde_switch` reach each other, a
    /// `together` round and a rolling reboot keep them so, nothing is left (not in `all`).
    FleetNet,
    /// Figures, not a pass/fail: layers, per-task measures, `-j 2`, reboots (`make bench`; not
    /// in `all`).
    Bench,
}

impl Scenario {
    /// Whether `all` takes it: every scenario of the QEMU backend that passes or fails. The
    /// libvirt one needs the namespace `.ci/libvirt-netns` makes; the bench gives figures.
    pub fn in_all(self) -> bool {
        !matches!(
            self,
            Scenario::Kept | Scenario::Libvirt | Scenario::Bench | Scenario::FleetNet
        )
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.to_possible_value().expect("no scenario is skipped");
        f.write_str(value.get_name())
    }
}

/// A scenario as named on the command line: one, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    All,
    One(Scenario),
}

/// `all` and every scenario, in the order clap lists them.
static WANTED: LazyLock<Vec<Wanted>> = LazyLock::new(|| {
    std::iter::once(Wanted::All)
        .chain(Scenario::value_variants().iter().map(|s| Wanted::One(*s)))
        .collect()
});

impl ValueEnum for Wanted {
    fn value_variants<'a>() -> &'a [Self] {
        &WANTED
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            Wanted::All => Some(
                PossibleValue::new("all")
                    .help("Every scenario but libvirt and bench, cheapest proof first"),
            ),
            Wanted::One(scenario) => scenario.to_possible_value(),
        }
    }
}

/// Reads a [`Wanted`], naming what became of a scenario's old name.
#[derive(Debug, Clone, Copy)]
struct WantedParser;

impl TypedValueParser for WantedParser {
    type Value = Wanted;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Wanted, clap::Error> {
        let renamed = match value.to_str() {
            Some("it") => Some("`it` is now `askari`"),
            Some("red-green") => Some(
                "`red-green` is gone: `red` and `askari` prove both outcomes through the whole cycle",
            ),
            _ => None,
        };
        match renamed {
            Some(why) => Err(cmd.clone().error(ErrorKind::InvalidValue, why)),
            None => clap::builder::EnumValueParser::<Wanted>::new().parse_ref(cmd, arg, value),
        }
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            Wanted::value_variants()
                .iter()
                .filter_map(ValueEnum::to_possible_value),
        ))
    }
}

/// A part of the bench, run on its own with `--bench-groups` (`make bench BENCH_GROUPS=…`):
/// the whole bench takes hours under TCG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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

impl BenchGroup {
    /// Every group, in the order the bench runs them.
    pub fn all() -> Vec<BenchGroup> {
        BenchGroup::value_variants().to_vec()
    }

    /// Its name on the command line (`per-task`).
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
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
    /// The fleets' set, chosen as the catalogue's is (`--fleet-set`).
    pub fleet_set: FleetSet,
    /// When both the catalogue and the fleets are asked for, the catalogue's one parallel `it`
    /// runs the fleets too (and `fleet` is not run on its own): the scheduler packs a fleet's
    /// two small guests beside a catalogue guest instead of leaving a core idle at each end.
    pub fleets_with_catalogue: bool,
    /// `--timings`: where the timings go as JSON too.
    pub timings: Option<Utf8PathBuf>,
    /// `--bench-groups a,b`: the parts of the bench to run (default: all).
    pub bench_groups: Vec<BenchGroup>,
}

impl Cli {
    /// The plan the arguments ask for. Pure.
    pub fn plan(self) -> Plan {
        // Named on its own, the catalogue is the whole catalogue; through `all`, the CI set.
        let catalogue_named = self.scenarios.contains(&Wanted::One(Scenario::Catalogue));
        let catalogue_set = self.catalogue_set.unwrap_or(if catalogue_named {
            CatalogueSet::All
        } else {
            CatalogueSet::Ci
        });
        let fleet_named = self.scenarios.contains(&Wanted::One(Scenario::Fleet));
        let fleet_set = self.fleet_set.unwrap_or(if fleet_named {
            FleetSet::All
        } else {
            FleetSet::Ci
        });
        let mut scenarios: Vec<Scenario> = Vec::new();
        for wanted in self.scenarios {
            let named: Vec<Scenario> = match wanted {
                Wanted::All => Scenario::value_variants()
                    .iter()
                    .copied()
                    .filter(|s| s.in_all())
                    .collect(),
                Wanted::One(scenario) => vec![scenario],
            };
            for scenario in named {
                if !scenarios.contains(&scenario) {
                    scenarios.push(scenario);
                }
            }
        }
        let fleets_with_catalogue =
            scenarios.contains(&Scenario::Catalogue) && scenarios.contains(&Scenario::Fleet);
        if fleets_with_catalogue {
            scenarios.retain(|s| *s != Scenario::Fleet);
        }
        let mut bench_groups = if self.bench_groups.is_empty() {
            BenchGroup::all()
        } else {
            self.bench_groups
        };
        bench_groups.dedup();
        Plan {
            xtask: self.xtask,
            baseline_runs: usize::try_from(self.baseline_runs).unwrap_or(usize::MAX),
            scenarios,
            catalogue_set,
            fleet_set,
            fleets_with_catalogue,
            timings: self.timings,
            bench_groups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_fleets_join_the_catalogues_run_when_both_are_asked_for() {
        let both = plan(&["catalogue", "safety", "fleet"]).unwrap();
        assert!(both.fleets_with_catalogue);
        assert_eq!(both.scenarios, [Scenario::Catalogue, Scenario::Safety]);
        let all = plan(&["all"]).unwrap();
        assert!(all.fleets_with_catalogue);
        assert!(!all.scenarios.contains(&Scenario::Fleet));
        let alone = plan(&["fleet"]).unwrap();
        assert!(!alone.fleets_with_catalogue);
        assert_eq!(alone.scenarios, [Scenario::Fleet]);
        assert!(!plan(&["catalogue"]).unwrap().fleets_with_catalogue);
    }

    fn plan(args: &[&str]) -> Result<Plan, clap::Error> {
        Cli::try_parse_from(std::iter::once("vm-suite").chain(args.iter().copied())).map(Cli::plan)
    }

    fn every_qemu_scenario() -> Vec<Scenario> {
        use Scenario::*;
        vec![
            // `fleet` runs inside the catalogue's run when both come through `all`.
            Baseline, Lifecycle, Askari, Red, Ubongo, Catalogue, Safety, Faults,
        ]
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn all_expands_to_every_qemu_scenario_with_the_ci_catalogue() {
        let p = plan(&["all"]).unwrap();
        assert_eq!(p.scenarios, every_qemu_scenario());
        assert_eq!(p.catalogue_set, CatalogueSet::Ci);
        assert_eq!(p.fleet_set, FleetSet::Ci);
        assert_eq!(p.baseline_runs, 1);
        assert_eq!(p.timings, None);
        assert_eq!(p.bench_groups, BenchGroup::all());
    }

    /// The command lines the Makefile (`make -n test-vm`, `test-catalogue`, `bench`) and
    /// `.ci/run` give it, as they expand.
    #[test]
    fn the_makefiles_and_cis_command_lines_read_as_before() {
        let p = plan(&[
            "--xtask",
            "target/debug/xtask",
            "--baseline-runs",
            "3",
            "all",
        ])
        .unwrap();
        assert_eq!(p.scenarios, every_qemu_scenario());
        assert_eq!(p.baseline_runs, 3);
        let p = plan(&[
            "--xtask",
            "target/debug/xtask",
            "--baseline-runs",
            "3",
            "--timings",
            "target/vm-suite-timings.json",
            "--catalogue-set",
            "ci",
            "askari",
            "red",
            "catalogue",
            "safety",
            "faults",
        ])
        .unwrap();
        use Scenario::*;
        assert_eq!(p.scenarios, [Askari, Red, Catalogue, Safety, Faults]);
        assert_eq!(p.catalogue_set, CatalogueSet::Ci);
        assert_eq!(
            p.timings.as_deref(),
            Some(camino::Utf8Path::new("target/vm-suite-timings.json"))
        );
        let p = plan(&[
            "--xtask",
            "target/debug/xtask",
            "--catalogue-set",
            "rest",
            "catalogue",
        ])
        .unwrap();
        assert_eq!(p.catalogue_set, CatalogueSet::Rest);
        let p = plan(&[
            "--xtask",
            "target/debug/xtask",
            "--baseline-runs",
            "3",
            "--bench-groups",
            "per-task,reboot",
            "bench",
        ])
        .unwrap();
        assert_eq!(p.scenarios, [Bench]);
        assert_eq!(p.bench_groups, [BenchGroup::PerTask, BenchGroup::Reboot]);
        let p = plan(&[
            "--xtask",
            "target/debug/xtask",
            "--timings",
            "target/vm-suite-libvirt-timings.json",
            "libvirt",
        ])
        .unwrap();
        assert_eq!(p.scenarios, [Libvirt]);
    }

    #[test]
    fn a_named_catalogue_is_the_whole_catalogue_unless_told() {
        assert_eq!(
            plan(&["catalogue"]).unwrap().catalogue_set,
            CatalogueSet::All
        );
        let p = plan(&["all", "catalogue"]).unwrap();
        assert_eq!(p.catalogue_set, CatalogueSet::All);
        assert_eq!(
            p.scenarios,
            every_qemu_scenario(),
            "each scenario runs once"
        );
        let p = plan(&["--catalogue-set", "ci", "catalogue"]).unwrap();
        assert_eq!(p.catalogue_set, CatalogueSet::Ci);
        let p = plan(&["all", "--catalogue-set", "all"]).unwrap();
        assert_eq!(p.catalogue_set, CatalogueSet::All);
    }

    /// The fleets are chosen as the catalogue's profiles are: all when named, the REDs through
    /// `all`, `--fleet-set` over both.
    #[test]
    fn a_named_fleet_scenario_runs_every_fleet_unless_told() {
        assert_eq!(plan(&["fleet"]).unwrap().fleet_set, FleetSet::All);
        assert_eq!(plan(&["all"]).unwrap().fleet_set, FleetSet::Ci);
        assert_eq!(
            plan(&["--fleet-set", "ci", "fleet"]).unwrap().fleet_set,
            FleetSet::Ci
        );
        let p = plan(&["--fleet-set", "all", "libvirt"]).unwrap();
        assert_eq!(p.fleet_set, FleetSet::All);
        let err = plan(&["--fleet-set", "most", "fleet"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a fleet set"), "{err}");
    }

    #[test]
    fn scenarios_run_in_the_order_named_each_once() {
        use Scenario::*;
        assert_eq!(
            plan(&["libvirt", "red", "libvirt"]).unwrap().scenarios,
            [Libvirt, Red]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = |args: &[&str]| plan(args).unwrap_err().to_string();
        assert!(err(&[]).contains("<SCENARIO>"), "{}", err(&[]));
        assert!(err(&["it"]).contains("`it` is now `askari`"));
        assert!(err(&["red-green"]).contains("is gone"));
        let unknown = err(&["frobnicate"]);
        assert!(
            unknown.contains("all, baseline, lifecycle, askari, red"),
            "{unknown}"
        );
        assert!(err(&["--baseline-runs", "0", "baseline"]).contains("--baseline-runs"));
        assert!(err(&["--baseline-runs"]).contains("a value is required"));
        assert!(
            err(&["--catalogue-set", "most", "catalogue"]).contains("not a catalogue set"),
            "{}",
            err(&["--catalogue-set", "most", "catalogue"])
        );
        assert!(err(&["--fast", "all"]).contains("--fast"));
        let groups = err(&["--bench-groups", "per-task,speed", "bench"]);
        assert!(groups.contains("speed"), "{groups}");
        assert!(
            groups.contains("layers, reboot, per-task, parallel"),
            "{groups}"
        );
    }

    #[test]
    fn every_scenario_name_reads_back() {
        for scenario in Scenario::value_variants() {
            let p = plan(&[&scenario.to_string()]).unwrap();
            assert_eq!(p.scenarios, [*scenario]);
        }
        assert_eq!(
            plan(&["--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
    }
}
