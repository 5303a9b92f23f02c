//! `cargo xtask layers …`: the disk layers `it` keeps in the image cache — a cache, so `prune`
//! never touches them; these commands do. Each holds the run lock shared, as an `it` run does:
//! `prune` is refused while one acts.

use std::time::{Duration, SystemTime};

use boma_harness::{HarnessError, Settings};
use boma_layers::{LAYERS_DIR, LayerStore, StoreConfig, Timestamp};
use clap::Subcommand;

use crate::edge::{self, Failure, Outcome};
use crate::settings::Checkout;

#[derive(Subcommand, Debug)]
pub enum LayersCommand {
    /// Every stored layer: key, profile, step, size, age, last use, and why a run would not start
    /// from it: no guest came back from it, or its power cycle lost state (or was never judged).
    List,
    /// Remove layers (all, or those not used for longer than --older-than); layers a live run
    /// is using are kept.
    Prune {
        /// Only layers unused for this long: `3d`, `12h`, `90m`.
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<Duration>,
    },
}

/// `3d`, `12h`, `90m`, `45s`. Pure.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not an age: write e.g. 3d, 12h, 90m"))?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" => n,
        _ => return Err(format!("`{text}` is not an age: write e.g. 3d, 12h, 90m")),
    };
    Ok(Duration::from_secs(secs))
}

/// Why no run starts from a layer, in `layers list`'s last column (empty: runs reuse it). Pure.
fn verdict_note(booted: bool, lost: Option<&[String]>) -> String {
    match (booted, lost) {
        (false, _) => "  (never booted: not reused)".to_owned(),
        (true, None) => "  (its power cycle was never judged: not reused)".to_owned(),
        (true, Some([])) => String::new(),
        (true, Some(lost)) => format!("  (its power cycle lost {}: not reused)", lost.join(", ")),
    }
}

fn store_error(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Refused(format!("the layer store: {e}"))
}

pub fn run(checkout: &Checkout, command: LayersCommand) -> Result<Outcome, Failure> {
    let settings = checkout.harness(|_| {})?;
    let what = match command {
        LayersCommand::List => "cargo xtask layers list",
        LayersCommand::Prune { .. } => "cargo xtask layers prune",
    };
    let _lock = boma_vm::Runs::new(&settings.runs_root)
        .lock_shared(what)
        .map_err(HarnessError::from)?;
    act(&settings, command)?;
    Ok(Outcome::Passed)
}

fn act(settings: &Settings, command: LayersCommand) -> Result<(), HarnessError> {
    let store = LayerStore::open(&settings.cache_dir.join(LAYERS_DIR), StoreConfig::default())
        .map_err(store_error)?;
    let now = Timestamp::from_system(SystemTime::now());
    match command {
        LayersCommand::List => {
            let layers = store.list().map_err(store_error)?;
            edge::print(&format!(
                "{:<16} {:<22} {:>4} {:>9} {:>8} {:>9}  step\n",
                "key", "profile", "#", "size", "age", "last use"
            ));
            let mut total = 0;
            for l in &layers {
                total += l.size_bytes;
                edge::print(&format!(
                    "{:<16} {:<22} {:>4} {:>9} {:>8} {:>9}  {}{}\n",
                    l.key.short(),
                    l.profile,
                    l.step_index + 1,
                    format!("{} MiB", l.size_bytes / (1024 * 1024)),
                    boma_exec::progress::human(l.created.age(now)),
                    boma_exec::progress::human(l.last_used.age(now)),
                    l.step_label,
                    verdict_note(l.booted, l.lost.as_deref())
                ));
            }
            edge::print(&format!(
                "{} layer(s), {} MiB of at most {} MiB\n",
                layers.len(),
                total / (1024 * 1024),
                store.config().max_total_bytes / (1024 * 1024)
            ));
        }
        LayersCommand::Prune { older_than } => {
            let removal = match older_than {
                Some(age) => store.prune_older_than(age, now),
                None => store.prune_all(),
            }
            .map_err(store_error)?;
            edge::print(&format!(
                "removed {} layer(s), {} MiB freed{}\n",
                removal.removed.len(),
                removal.freed_bytes / (1024 * 1024),
                if removal.spared_busy.is_empty() {
                    String::new()
                } else {
                    format!("; kept {} in use by a live run", removal.spared_busy.len())
                }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_no_run_starts_from_says_why() {
        assert_eq!(verdict_note(true, Some(&[])), "");
        assert!(verdict_note(false, Some(&[])).contains("never booted"));
        assert!(verdict_note(true, None).contains("never judged"));
        let lost = ["unit_inactive boma-cat-handler.service".to_owned()];
        assert_eq!(
            verdict_note(true, Some(&lost)),
            "  (its power cycle lost unit_inactive boma-cat-handler.service: not reused)"
        );
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_age("3 days").unwrap_err().contains("3d, 12h, 90m"));
        assert!(parse_age("").is_err());
    }
}
