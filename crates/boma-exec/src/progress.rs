//! Everything boma says on stderr goes through here: progress lines ([`crate::say!`]), the
//! command log (`+ cmd …`), streamed command output and phases with their elapsed time.
//!
//! Libraries never print (a lint forbids it); they call this module, which owns the terminal.
//! Two displays:
//! - **plain** (CI, a log file, `-v`): `==> phase`, every line of command output indented,
//!   `<== phase ok in 12.3s`;
//! - **live** (stderr is a terminal): each phase is one line with a spinner and the elapsed
//!   time; streamed command output (Ansible's) is folded under it — saved to a log file when
//!   one is set ([`fold_into`]) and kept as a tail that a failure prints ([`output_tail`]).
//!
//! Phases are recorded with their status, start time and duration ([`records`]) for the
//! run's report. A [`Phase`] that is dropped without `done()` counts as failed (or
//! interrupted, when a signal is pending): an early `?` return cannot leave a phase unrecorded.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::redact::redact;

/// How many lines of folded output are kept for a failure message.
const TAIL_LINES: usize = 40;

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseStatus {
    Ok,
    Failed,
    Interrupted,
    Skipped,
}

impl PhaseStatus {
    fn word(self) -> &'static str {
        match self {
            PhaseStatus::Ok => "ok",
            PhaseStatus::Failed => "FAILED",
            PhaseStatus::Interrupted => "interrupted",
            PhaseStatus::Skipped => "skipped",
        }
    }
}

/// One finished phase, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseRecord {
    pub name: String,
    pub status: PhaseStatus,
    pub started: SystemTime,
    pub took: Duration,
}

/// Which display to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Plain lines, command output shown.
    Plain,
    /// A spinner per phase, command output folded (only on a terminal; else plain).
    Live,
}

struct State {
    display: Display,
    /// The live line of the innermost running phase.
    bar: Option<ProgressBar>,
    /// Phases running, outermost first (name, bar of the enclosing phase is replaced).
    running: Vec<String>,
    fold: Option<File>,
    /// Where every line said on stderr is also written (the run's command log).
    log: Option<File>,
    tail: VecDeque<String>,
    records: Vec<PhaseRecord>,
}

static STATE: Mutex<State> = Mutex::new(State {
    display: Display::Plain,
    bar: None,
    running: Vec::new(),
    fold: None,
    log: None,
    tail: VecDeque::new(),
    records: Vec::new(),
});

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Choose the display. `Live` falls back to plain when stderr is not a terminal.
pub fn configure(display: Display) {
    let live = display == Display::Live && std::io::stderr().is_terminal();
    state().display = if live { Display::Live } else { Display::Plain };
}

/// Whether command output is folded (live display) rather than shown.
pub fn folding() -> bool {
    state().display == Display::Live
}

/// Send streamed command output to `path` from now on (`None`: stop). The file is appended to.
pub fn fold_into(path: Option<&std::path::Path>) -> std::io::Result<()> {
    let file = match path {
        Some(p) => Some(File::options().create(true).append(true).open(p)?),
        None => None,
    };
    state().fold = file;
    Ok(())
}

/// Also write everything said from now on to `path` (`None`: stop): the run's command log,
/// kept with its diagnostics. Appended to; secrets are masked as on the terminal.
pub fn log_into(path: Option<&std::path::Path>) -> std::io::Result<()> {
    let file = match path {
        Some(p) => Some(File::options().create(true).append(true).open(p)?),
        None => None,
    };
    state().log = file;
    Ok(())
}

/// Print one line on stderr (above the live line, if there is one). Secrets are masked.
pub fn line(text: &str) {
    let text = redact(text);
    let mut st = state();
    emit(&mut st, &text);
}

#[allow(clippy::print_stderr)] // The one place that writes to the terminal.
fn emit(st: &mut State, text: &str) {
    if let Some(log) = st.log.as_mut() {
        let _ = writeln!(log, "{text}");
    }
    match &st.bar {
        Some(bar) => bar.suspend(|| eprintln!("{text}")),
        None => eprintln!("{text}"),
    }
}

/// Print one line with `say!`-style formatting: `boma_exec::say!("up: {name}")`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::progress::line(&::std::format!($($arg)*))
    };
}

/// The command log: `+ prog args…` (already redacted by the caller).
pub fn command(display: &str) {
    line(&format!("+ {display}"));
}

/// One line of a streamed command's output: shown indented (plain), or folded into the log
/// file and the live line's message (live). Always kept in the tail.
pub fn output(text: &str) {
    let text = redact(text);
    let mut st = state();
    if let Some(file) = st.fold.as_mut() {
        let _ = writeln!(file, "{text}");
    }
    if st.display == Display::Live
        && let Some(log) = st.log.as_mut()
    {
        // Folded from the terminal, but the command log keeps it.
        let _ = writeln!(log, "  {text}");
    }
    st.tail.push_back(text.clone());
    while st.tail.len() > TAIL_LINES {
        st.tail.pop_front();
    }
    match (&st.display, &st.bar) {
        (Display::Live, Some(bar)) => {
            let trimmed = text.trim();
            if !trimmed.is_empty() {
                let short: String = trimmed.chars().take(70).collect();
                bar.set_message(short);
            }
        }
        _ => emit(&mut st, &format!("  {text}")),
    }
}

/// The last lines of streamed output (folded or shown), oldest first.
pub fn output_tail(n: usize) -> Vec<String> {
    let st = state();
    let skip = st.tail.len().saturating_sub(n);
    st.tail.iter().skip(skip).cloned().collect()
}

/// Forget the output tail (a new command begins a new story).
pub fn clear_tail() {
    state().tail.clear();
}

/// A named step in progress, timed and recorded when it ends.
#[derive(Debug)]
#[must_use = "call .done() when the phase succeeds; dropping it records a failure"]
pub struct Phase {
    name: String,
    started: Instant,
    started_at: SystemTime,
    finished: bool,
}

/// Start a phase: `==> name` (plain) or a live line with a spinner.
pub fn phase(name: impl Into<String>) -> Phase {
    let name = name.into();
    let mut st = state();
    if st.display == Display::Live {
        if let Some(old) = st.bar.take() {
            old.finish_and_clear();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4}  {wide_msg:.dim}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(name.clone());
        bar.enable_steady_tick(Duration::from_millis(200));
        st.bar = Some(bar);
    } else {
        emit(&mut st, &format!("==> {name}"));
    }
    st.running.push(name.clone());
    Phase {
        name,
        started: Instant::now(),
        started_at: SystemTime::now(),
        finished: false,
    }
}

impl Phase {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The phase succeeded.
    pub fn done(mut self) -> Duration {
        self.finish(PhaseStatus::Ok)
    }

    /// The phase failed (or was interrupted, if a signal is pending): still timed.
    pub fn failed(mut self) -> Duration {
        self.finish(ended_badly())
    }

    /// Close the phase with the outcome of `result`, passing the result through.
    pub fn close<T, E>(self, result: Result<T, E>) -> Result<T, E> {
        match &result {
            Ok(_) => {
                self.done();
            }
            Err(_) => {
                self.failed();
            }
        }
        result
    }

    fn finish(&mut self, status: PhaseStatus) -> Duration {
        self.finished = true;
        let took = self.started.elapsed();
        let mut st = state();
        if let Some(pos) = st.running.iter().rposition(|n| *n == self.name) {
            st.running.remove(pos);
        }
        if let Some(bar) = st.bar.take() {
            bar.finish_and_clear();
        }
        let mark = match status {
            PhaseStatus::Ok => "<==",
            _ => "<!!",
        };
        emit(
            &mut st,
            &format!("{mark} {} {} in {}", self.name, status.word(), human(took)),
        );
        st.records.push(PhaseRecord {
            name: self.name.clone(),
            status,
            started: self.started_at,
            took,
        });
        // Back to the enclosing phase's live line, if any.
        if st.display == Display::Live
            && let Some(outer) = st.running.last().cloned()
        {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix}  {wide_msg:.dim}") {
                bar.set_style(style);
            }
            bar.set_prefix(outer);
            bar.enable_steady_tick(Duration::from_millis(200));
            st.bar = Some(bar);
        }
        took
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(ended_badly());
        }
    }
}

fn ended_badly() -> PhaseStatus {
    if crate::interrupt::pending().is_some() || crate::interrupt::cleaning_up() {
        PhaseStatus::Interrupted
    } else {
        PhaseStatus::Failed
    }
}

/// Record a phase that did not run (for the report), without printing.
pub fn skipped(name: impl Into<String>) {
    state().records.push(PhaseRecord {
        name: name.into(),
        status: PhaseStatus::Skipped,
        started: SystemTime::now(),
        took: Duration::ZERO,
    });
}

/// Every phase finished so far, in order.
pub fn records() -> Vec<PhaseRecord> {
    state().records.clone()
}

/// Forget the recorded phases (a new run begins).
pub fn reset_records() {
    state().records.clear();
}

/// `12.3s`, or `2m05s` past a minute.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_durations() {
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn phases_are_recorded_with_their_outcome_even_when_dropped() {
        {
            let p = phase("unit-test-ok");
            p.done();
        }
        {
            let _p = phase("unit-test-dropped");
        }
        let done = phase("unit-test-close");
        let _ = done.close::<(), &str>(Err("boom"));
        let records = records();
        let status = |name: &str| records.iter().find(|r| r.name == name).map(|r| r.status);
        assert_eq!(status("unit-test-ok"), Some(PhaseStatus::Ok));
        assert_eq!(status("unit-test-dropped"), Some(PhaseStatus::Failed));
        assert_eq!(status("unit-test-close"), Some(PhaseStatus::Failed));
    }

    #[test]
    fn output_tail_keeps_the_last_lines() {
        clear_tail();
        for i in 0..(TAIL_LINES + 5) {
            output(&format!("line {i}"));
        }
        let tail = output_tail(3);
        assert_eq!(
            tail,
            vec![
                format!("line {}", TAIL_LINES + 2),
                format!("line {}", TAIL_LINES + 3),
                format!("line {}", TAIL_LINES + 4)
            ]
        );
    }
}
