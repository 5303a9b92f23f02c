//! `vm-suite bench`: what the layers, the per-task measures and parallel runs buy, measured on
//! real guests — medians of several runs, variants interleaved so that a noisy neighbour
//! weighs on all alike, ratios against a baseline run in the same go. Figures, not assertions:
//! it prints a table and writes JSON; nothing here fails on a slow number.
//!
//! The groups (`make bench BENCH_GROUPS=…`): `layers`, on askari, after one unmeasured run that
//! stores (or reuses) the layers of the real inputs, each round a full cycle with `--fresh`
//! (the baseline), an unchanged re-run, a run after a change only the last step reads (a
//! comment appended to `roles/reverse_proxy/defaults/main.yml`) and one after a change only the
//! first step reads (`roles/base/defaults/main.yml`), each file restored as soon as its run
//! ends so the real chain stays stored; `reboot`, a raw guest reboot to a new boot_id against
//! `xtask reboot` on one VM; `per-task`, the applies alone (`--fresh --no-reboot
//! --no-idempotence`) with facts per playbook (`BOMA_IT_FACT_CACHE=off`), with the per-boot
//! fact cache, and with Mitogen's strategy (`BOMA_IT_MITOGEN=1`); `parallel`, two catalogue
//! profiles one after the other against `-j 2`. Every run uses the QEMU backend; each run's
//! figure is printed as it ends, so a bench cut short still shows what it measured. After an
//! interrupted bench, `git status` shows a file it could not restore. The figures measured on
//! 2026-11-29 are in ADR-026, "Measured".

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use boma_exec::CmdExt;
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::cli::BenchGroup;

/// One measured variant: its name and each run's wall time (and the report's phases).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Series {
    pub name: String,
    pub seconds: Vec<f64>,
    /// Per run: phase name → seconds (from the harness's report), where there is one.
    pub phases: Vec<Vec<(String, f64)>>,
    /// Runs that failed: not counted in the figures, and said in the table.
    pub failed: usize,
}

impl Series {
    fn new(name: &str) -> Series {
        Series {
            name: name.to_owned(),
            seconds: Vec::new(),
            phases: Vec::new(),
            failed: 0,
        }
    }

    pub fn median(&self) -> f64 {
        median(&self.seconds)
    }

    /// Add one run, and say it at once: a bench cut short (a session's end, a failure in a
    /// later variant) still leaves every finished run's figure in its log.
    fn record(&mut self, (seconds, phases): (f64, Vec<(String, f64)>)) {
        println!(
            "bench: {} — run {}: {seconds:.1} s",
            self.name,
            self.seconds.len() + 1
        );
        self.seconds.push(seconds);
        self.phases.push(phases);
    }
}

/// The median of `values` (the mean of the two middle ones for an even count). Pure.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// The table: each series' median, min, max and its ratio to `baseline`'s median. Pure.
pub fn table(series: &[Series], baseline: &str) -> String {
    let base = series
        .iter()
        .find(|s| s.name == baseline)
        .map(Series::median)
        .unwrap_or(f64::NAN);
    let mut out = format!(
        "{:<52} {:>9} {:>9} {:>9} {:>7}  runs\n",
        "variant", "median s", "min s", "max s", "ratio"
    );
    for s in series {
        let min = s.seconds.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.seconds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let runs = match s.failed {
            0 => s.seconds.len().to_string(),
            failed => format!("{} ({failed} failed, not counted)", s.seconds.len()),
        };
        out.push_str(&format!(
            "{:<52} {:>9.1} {:>9.1} {:>9.1} {:>7.2}  {runs}\n",
            s.name,
            s.median(),
            min,
            max,
            s.median() / base,
        ));
    }
    out
}

/// Where the bench runs the harness, and how often.
pub struct Bench<'a> {
    repo: &'a Utf8Path,
    xtask: &'a Utf8Path,
    runs: usize,
    /// Failed runs in a row: two end the group (something is broken, not flaky).
    failed_in_a_row: std::cell::Cell<usize>,
}

impl<'a> Bench<'a> {
    pub fn new(repo: &'a Utf8Path, xtask: &'a Utf8Path, runs: usize) -> Self {
        Bench {
            repo,
            xtask,
            runs,
            failed_in_a_row: std::cell::Cell::new(0),
        }
    }

    /// One run of `xtask args…` into `series`. A failed run (a guest that did not come back
    /// under TCG is not always the change's fault) is said, not counted, and its kept VM
    /// removed so it does not slow the runs after it; the second failure in a row ends the
    /// group.
    fn measure(
        &self,
        series: &mut Series,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        match self.timed(args, env) {
            Ok(run) => {
                self.failed_in_a_row.set(0);
                series.record(run);
                Ok(())
            }
            Err(e) => {
                series.failed += 1;
                println!("bench: {} — a run failed, not counted: {e:#}", series.name);
                let _ = self.timed(&["prune"], &[]);
                let failed = self.failed_in_a_row.get() + 1;
                self.failed_in_a_row.set(failed);
                ensure!(failed < 2, "two runs in a row failed: {e:#}");
                Ok(())
            }
        }
    }

    /// Run `xtask args…` with `env`, require success; the wall time and the report's phases.
    fn timed(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<(f64, Vec<(String, f64)>)> {
        let sh = Shell::new()?;
        sh.change_dir(self.repo);
        let program = self.xtask;
        let mut command = cmd!(sh, "{program} {args...}").env("BOMA_IT_BACKEND", "qemu");
        for (k, v) in env {
            command = command.env(k, v);
        }
        let started = Instant::now();
        let out = command.exec().stream().allow_fail().run()?;
        let took = started.elapsed().as_secs_f64();
        let code = out.status.code().unwrap_or(-1);
        ensure!(code == 0, "`xtask {}` exited {code}", args.join(" "));
        Ok((took, phases_of(&out.stdout)))
    }

    /// [`Bench::measure`] with a comment carrying `nonce` appended to `file`, restored
    /// afterwards whatever the run did.
    fn measure_changed(
        &self,
        series: &mut Series,
        file: &Utf8Path,
        nonce: &str,
        args: &[&str],
    ) -> anyhow::Result<()> {
        let path = self.repo.join(file);
        let original = touch_comment(&path, nonce)?;
        let measured = self.measure(series, args, &[]);
        std::fs::write(&path, original).with_context(|| format!("cannot restore {path}"))?;
        measured
    }
}

/// The phases of the (first) run in a report on stdout, when it is one. Pure.
pub fn phases_of(report: &str) -> Vec<(String, f64)> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(report) else {
        return Vec::new();
    };
    value["runs"][0]["phases"]
        .as_array()
        .map(|phases| {
            phases
                .iter()
                .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["seconds"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Append a comment with `nonce` to `file`: its content (so every key that reads it) changes,
/// what Ansible does with it does not. Returns the original bytes, to restore.
fn touch_comment(file: &Utf8Path, nonce: &str) -> anyhow::Result<Vec<u8>> {
    let original = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    let mut changed = original.clone();
    if !changed.ends_with(b"\n") {
        changed.push(b'\n');
    }
    changed.extend_from_slice(format!("# bench {nonce}\n").as_bytes());
    std::fs::write(file, changed)?;
    Ok(original)
}

/// The layer figures for `profile`: a full cycle without layers (the baseline), an unchanged
/// re-run, a re-run after a change in the last step's inputs, and a cycle after a change in
/// the first step's inputs (everything applied again, every layer stored: what the machinery
/// costs). `first_file` and `last_file` are files only the first and only the last step read.
///
/// One unmeasured run first stores (or reuses) the chain for the real inputs. A changed run
/// stores its layers under other keys and the file is restored at once, so that chain stays
/// and each round's unchanged re-run finds it without a run spent on rebuilding it.
pub fn layers(
    bench: &Bench,
    profile: &str,
    first_file: &Utf8Path,
    last_file: &Utf8Path,
) -> anyhow::Result<Vec<Series>> {
    let mut full = Series::new(&format!("{profile}: full cycle (--fresh, no layers)"));
    let mut unchanged = Series::new(&format!("{profile}: unchanged re-run"));
    let mut last = Series::new(&format!("{profile}: last step's role changed"));
    let mut first = Series::new(&format!("{profile}: first step's role changed"));
    let nonce = |which: &str, run: usize| format!("{which}-{run}-{}", std::process::id());
    let it = ["it", profile];
    bench.measure(&mut Series::new(&format!("{profile}: warm-up")), &it, &[])?;
    for run in 0..bench.runs {
        bench.measure(&mut full, &["it", profile, "--fresh"], &[])?;
        bench.measure(&mut unchanged, &it, &[])?;
        bench.measure_changed(&mut last, last_file, &nonce("last", run), &it)?;
        bench.measure_changed(&mut first, first_file, &nonce("first", run), &it)?;
    }
    Ok(vec![full, unchanged, last, first])
}

/// The per-task measures: a fresh cycle without reboot or idempotence (so mostly applies)
/// with plain Ansible (facts gathered per playbook), with the fact cache (the default), and
/// with Mitogen's strategy on top.
pub fn per_task(bench: &Bench, profile: &str) -> anyhow::Result<Vec<Series>> {
    let args = ["it", profile, "--fresh", "--no-reboot", "--no-idempotence"];
    let mut plain = Series::new(&format!("{profile}: applies, facts per playbook"));
    let mut cached = Series::new(&format!("{profile}: applies, fact cache (default)"));
    let mut mitogen = Series::new(&format!("{profile}: applies, fact cache + Mitogen"));
    for _ in 0..bench.runs {
        for (series, env) in [
            (&mut plain, vec![("BOMA_IT_FACT_CACHE", "off")]),
            (&mut cached, vec![]),
            (&mut mitogen, vec![("BOMA_IT_MITOGEN", "1")]),
        ] {
            bench.measure(series, &args, &env)?;
        }
    }
    Ok(vec![plain, cached, mitogen])
}

/// Two profiles one after the other, and at once (`-j 2`).
pub fn parallel(bench: &Bench, a: &str, b: &str) -> anyhow::Result<Vec<Series>> {
    let mut serial = Series::new(&format!("{a} + {b}: one after the other (-j 1)"));
    let mut both = Series::new(&format!("{a} + {b}: at once (-j 2)"));
    for _ in 0..bench.runs {
        bench.measure(&mut serial, &["it", a, b, "--fresh", "-j", "1"], &[])?;
        bench.measure(&mut both, &["it", a, b, "--fresh", "-j", "2"], &[])?;
    }
    Ok(vec![serial, both])
}

/// A raw guest reboot (`ssh … sudo systemctl reboot`, then ssh until a new boot_id) against
/// `xtask reboot`, alternately on one VM that `xtask up` booted.
pub fn reboots(bench: &Bench, profile: &str) -> anyhow::Result<Vec<Series>> {
    let mut raw = Series::new("raw guest reboot to a new boot_id");
    let mut harness = Series::new("xtask reboot");
    bench.timed(&["up", profile], &[])?;
    let result = (|| -> anyhow::Result<()> {
        let runs = boma_vm::Runs::new(bench.repo.join("tests/integration/.run"));
        for _ in 0..bench.runs {
            let record = runs.current()?.context("no current run")?;
            raw.record((raw_reboot(&record)?.as_secs_f64(), Vec::new()));
            harness.record(bench.timed(&["reboot"], &[])?);
        }
        Ok(())
    })();
    let down = bench.timed(&["down"], &[]);
    result?;
    down?;
    Ok(vec![raw, harness])
}

fn raw_reboot(record: &boma_vm::RunRecord) -> anyhow::Result<Duration> {
    let sh = Shell::new()?;
    let options = &record.ssh.options()?;
    let destination = record.ssh.destination();
    let before = cmd!(
        sh,
        "ssh {options...} {destination} cat /proc/sys/kernel/random/boot_id"
    )
    .exec()
    .read()?;
    let started = Instant::now();
    let _ = cmd!(sh, "ssh {options...} {destination} sudo systemctl reboot")
        .exec()
        .allow_fail()
        .run()?;
    while started.elapsed() < Duration::from_secs(600) {
        let out = cmd!(
            sh,
            "ssh {options...} {destination} cat /proc/sys/kernel/random/boot_id"
        )
        .exec()
        .quiet()
        .allow_fail()
        .timeout(Duration::from_secs(30))
        .run()?;
        let id = out.stdout.trim();
        if out.success() && !id.is_empty() && id != before {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    anyhow::bail!("the raw reboot never came back with a new boot_id")
}

/// The bench's groups (`--bench-groups`, default all), `--baseline-runs` times each (medians of at least 3 are the record): on
/// askari, the layer variants (base's defaults are read only by the first step, reverse_proxy's
/// only by the last), the per-task measures and the reboots; `-j 2` on two small catalogue
/// profiles. Prints the tables and writes them as JSON into the scratch space and
/// `target/bench.json`.
pub fn run(suite: &mut crate::scenarios::Suite) -> anyhow::Result<()> {
    let bench = Bench::new(&suite.repo, &suite.xtask, suite.baseline_runs);
    let mut groups: Vec<(String, Vec<Series>, String)> = Vec::new();
    for group in &suite.bench_groups {
        let (series, baseline) = match group {
            BenchGroup::Layers => (
                layers(
                    &bench,
                    "askari",
                    Utf8Path::new("roles/base/defaults/main.yml"),
                    Utf8Path::new("roles/reverse_proxy/defaults/main.yml"),
                )?,
                "askari: full cycle (--fresh, no layers)",
            ),
            BenchGroup::Reboot => (
                reboots(&bench, "askari")?,
                "raw guest reboot to a new boot_id",
            ),
            BenchGroup::PerTask => (
                per_task(&bench, "askari")?,
                "askari: applies, facts per playbook",
            ),
            BenchGroup::Parallel => (
                parallel(&bench, "cat-not-enabled", "cat-lost-route")?,
                "cat-not-enabled + cat-lost-route: one after the other (-j 1)",
            ),
        };
        println!("\n{}:\n{}", group.name(), table(&series, baseline));
        groups.push((group.name().to_owned(), series, baseline.to_owned()));
    }
    let mut json = serde_json::Map::new();
    for (name, series, baseline) in &groups {
        json.insert(
            name.clone(),
            serde_json::json!({"baseline": baseline, "series": series}),
        );
    }
    let text = serde_json::to_string_pretty(&json)?;
    std::fs::write(suite.work.join("bench.json"), &text)?;
    let target = suite.repo.join("target");
    std::fs::create_dir_all(&target)?;
    std::fs::write(target.join("bench.json"), &text)?;
    println!("bench figures written to {}", target.join("bench.json"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_the_table() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        let series = vec![
            Series {
                name: "full".into(),
                seconds: vec![100.0, 110.0, 90.0],
                phases: vec![],
                failed: 0,
            },
            Series {
                name: "rerun".into(),
                seconds: vec![25.0, 20.0, 30.0],
                phases: vec![],
                failed: 1,
            },
        ];
        let text = table(&series, "full");
        assert!(text.contains("full") && text.contains("   1.00"), "{text}");
        assert!(text.contains("   0.25"), "{text}");
        assert!(text.contains("  3 (1 failed, not counted)"), "{text}");
        assert!(
            !text.lines().nth(1).unwrap_or("").contains("failed"),
            "{text}"
        );
    }

    #[test]
    fn phases_come_from_the_first_run_of_a_report() {
        let report = r#"{"result":"passed","runs":[{"phases":[{"name":"up","seconds":61.5},{"name":"reboot","seconds":80.0}]}]}"#;
        assert_eq!(
            phases_of(report),
            vec![("up".to_owned(), 61.5), ("reboot".to_owned(), 80.0)]
        );
        assert!(phases_of("not json").is_empty());
    }
}
