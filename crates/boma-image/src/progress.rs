//! Download progress on stderr: a live bar on a terminal, a few plain lines in a log.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Without a known length, how often a plain progress line is printed.
const PLAIN_STEP_UNKNOWN: u64 = 64 * MIB;
const MIB: u64 = 1024 * 1024;

pub(crate) enum Progress {
    /// stderr is a terminal.
    Bar(ProgressBar),
    /// stderr is a log (CI, a file): a redrawn bar would fill it with control sequences.
    Plain {
        name: String,
        total: Option<u64>,
        done: u64,
        marks: u64,
    },
}

impl Progress {
    pub(crate) fn new(name: &str, total: Option<u64>) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = match total {
                Some(len) => {
                    let bar =
                        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
                    if let Ok(style) = ProgressStyle::with_template(
                        "{msg} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar
                }
                None => {
                    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                    if let Ok(style) =
                        ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                    {
                        bar.set_style(style);
                    }
                    bar
                }
            };
            bar.set_message(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(250));
            Progress::Bar(bar)
        } else {
            Progress::Plain {
                name: name.to_owned(),
                total,
                done: 0,
                marks: 0,
            }
        }
    }

    pub(crate) fn advance(&mut self, bytes: u64) {
        match self {
            Progress::Bar(bar) => bar.inc(bytes),
            Progress::Plain {
                name,
                total,
                done,
                marks,
            } => {
                *done += bytes;
                while let Some(mark) = next_mark(*total, *marks).filter(|mark| *done >= *mark) {
                    *marks += 1;
                    match total {
                        Some(total) => {
                            boma_exec::say!(
                                "  {name}: {}% ({} of {})",
                                mark * 100 / *total,
                                mib(mark),
                                mib(*total)
                            )
                        }
                        None => boma_exec::say!("  {name}: {} so far", mib(mark)),
                    }
                }
            }
        }
    }

    /// Remove the bar; the caller prints the summary line.
    pub(crate) fn finish(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The byte count that earns the next plain line, after `printed` lines: the quarter marks of
/// a known total (the end is the summary line's job), or fixed steps.
fn next_mark(total: Option<u64>, printed: u64) -> Option<u64> {
    match total {
        // Tiny files are over before a progress line could help.
        Some(total) if total < 4 * MIB => None,
        Some(total) => (printed < 3).then(|| total / 4 * (printed + 1)),
        None => Some(PLAIN_STEP_UNKNOWN * (printed + 1)),
    }
}

/// Human size in MiB: whole numbers from 10 MiB, one decimal below.
pub(crate) fn mib(bytes: u64) -> String {
    let value = bytes as f64 / MIB as f64;
    if value >= 10.0 {
        format!("{value:.0} MiB")
    } else {
        format!("{value:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(mib(330 * MIB + 1234), "330 MiB");
        assert_eq!(mib(3 * MIB / 2), "1.5 MiB");
        assert_eq!(mib(0), "0.0 MiB");
    }

    #[test]
    fn plain_marks_are_quarters_and_stop_before_the_end() {
        let total = 400 * MIB + 17;
        let marks: Vec<_> = (0..4).map(|n| next_mark(Some(total), n)).collect();
        assert_eq!(
            marks,
            [
                Some(total / 4),
                Some(total / 4 * 2),
                Some(total / 4 * 3),
                None
            ]
        );
        assert_eq!(next_mark(Some(MIB), 0), None);
        assert_eq!(next_mark(None, 1), Some(2 * PLAIN_STEP_UNKNOWN));
    }
}
