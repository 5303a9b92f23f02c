//! One child: the harness binary run for one host, its stderr in `<dir>/<host>.log` (follow it
//! with `tail -f` while it runs), its report in `<dir>/<host>.json`, the parent's interrupt
//! forwarded to it. A child that ended without a report — killed by a signal (the OOM killer,
//! SIGKILL) or crashed — could not tear down what it made: the parent removes it through the
//! caller's `leftovers`, told the child's pid (what it started is recorded under it).

use std::cell::Cell;
use std::os::unix::process::ExitStatusExt as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use boma_exec::{CmdExt as _, say};
use boma_report::Report;
use camino::{Utf8Path, Utf8PathBuf};

/// What the parent removed after a child that could not clean up (one line per thing), or why
/// it could not.
pub type Cleanup = Result<Vec<String>, String>;

/// How to run the children, and how to clean up after one that could not.
pub struct Children<'a> {
    /// The harness binary each child runs (the parent's own).
    pub exe: Utf8PathBuf,
    /// Where each child's log and report go.
    pub dir: Utf8PathBuf,
    /// A child's arguments, from its host and the report file it is to write.
    pub args: &'a (dyn Fn(&str, &Utf8Path) -> Vec<String> + Sync),
    /// Remove what a child that ended without a report left, from its host and pid: one line
    /// per thing removed, or why it could not be.
    pub leftovers: &'a (dyn Fn(&str, u32) -> Cleanup + Sync),
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status (its own edge chose it).
    Exited(i32),
    /// A signal killed it before it could exit.
    Killed(i32),
    /// It could not be started, and why.
    NotRun(String),
}

/// One child's run.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRun {
    pub host: String,
    pub ended: Ended,
    /// Its report, when it wrote one that reads as a report.
    pub report: Option<Report>,
    pub log: Utf8PathBuf,
    pub took: Duration,
    /// What the parent removed after a child that ended without a report; `None` when there
    /// was nothing to do (it reported, or it never started).
    pub cleanup: Option<Cleanup>,
}

impl Children<'_> {
    /// Run `host`'s child to its end, then clean up after it if it could not.
    pub fn run(&self, host: &str) -> ChildRun {
        let report = self.dir.join(format!("{host}.json"));
        let log = self.dir.join(format!("{host}.log"));
        // A report left by an earlier run must not stand for this one.
        let _ = std::fs::remove_file(&report);
        let args = (self.args)(host, &report);
        say!("==> {host} started (log: {log})");
        let started = Instant::now();
        let pid = Rc::new(Cell::new(None));
        let ended = self.spawn(&args, &log, &pid);
        let took = started.elapsed();
        let parsed = std::fs::read_to_string(&report)
            .ok()
            .and_then(|text| serde_json::from_str::<Report>(&text).ok());
        say!(
            "<== {host} {} in {}",
            ended_line(&ended, parsed.as_ref()),
            boma_exec::progress::human(took)
        );
        let cleanup = match (&parsed, pid.get()) {
            (None, Some(pid)) => {
                say!("{host}: its child ended without a report: removing what it left");
                Some((self.leftovers)(host, pid))
            }
            _ => None,
        };
        if ended != Ended::Exited(0) {
            say_tail(host, &log);
        }
        ChildRun {
            host: host.to_owned(),
            ended,
            report: parsed,
            log,
            took,
            cleanup,
        }
    }

    fn spawn(&self, args: &[String], log: &Utf8Path, pid: &Rc<Cell<Option<u32>>>) -> Ended {
        // A shell per child: xshell's is not shared between threads.
        let sh = match xshell::Shell::new() {
            Ok(sh) => sh,
            Err(e) => return Ended::NotRun(format!("cannot start a shell: {e}")),
        };
        let log_file = match std::fs::File::create(log) {
            Ok(file) => file,
            Err(e) => return Ended::NotRun(format!("cannot create its log {log}: {e}")),
        };
        let exe = &self.exe;
        let seen = Rc::clone(pid);
        // The child's stderr goes straight to its log: `tail -f` follows it.
        let run = xshell::cmd!(sh, "{exe} {args...}")
            .exec()
            .forward_interrupt()
            .allow_fail()
            .quiet()
            .stderr_to(log_file)
            .on_spawn(move |child| seen.set(Some(child)))
            .run();
        match run {
            Ok(out) => match (out.status.code(), out.status.signal()) {
                (Some(code), _) => Ended::Exited(code),
                (None, Some(signal)) => Ended::Killed(signal),
                (None, None) => Ended::NotRun(format!("ended with {}", out.status)),
            },
            Err(e) => Ended::NotRun(e.to_string()),
        }
    }
}

/// How a child ended, as its parent's line says it: the result its report gives (an exit 0 is
/// also a RED that failed exactly as its `expect` says, which must not read as a pass), else
/// how the process ended. Pure.
pub fn ended_line(ended: &Ended, report: Option<&Report>) -> String {
    match (ended, report) {
        (Ended::Exited(code), Some(report)) => {
            format!(
                "{} (exit {code})",
                report.result().as_str().replace('_', " ")
            )
        }
        _ => describe(ended),
    }
}

/// How a child ended, in a few words.
pub fn describe(ended: &Ended) -> String {
    match ended {
        Ended::Exited(0) => "passed".to_owned(),
        Ended::Exited(code) => format!("exited {code}"),
        Ended::Killed(signal) => format!("was killed by {}", signal_name(*signal)),
        Ended::NotRun(why) => format!("could not run: {why}"),
    }
}

/// `SIGKILL`, or `signal 77` for one without a name.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}

/// The end of a child's log, where it says why it failed.
fn say_tail(host: &str, log: &Utf8Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    say!("--- {host}: the end of {log}");
    for line in tail.into_iter().rev() {
        say!("    {line}");
    }
}

#[cfg(test)]
mod tests;
