//! Spawning, logging, bounding and explaining one external command.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::interrupt::{self, Interrupted};
use crate::journal::{self, JournalError};
use crate::redact::redact;
use crate::tools::package_hint;

/// How many lines of output an error message quotes.
const TAIL_LINES: usize = 25;
/// How long a stopped command gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("`{program}` is not installed or not on PATH{}", hint_suffix(.program))]
    NotFound { program: String },
    #[error("could not start `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed with {}{}", describe_status(*.status), tail_block(.tail))]
    Failed {
        cmd: String,
        status: ExitStatus,
        tail: String,
    },
    #[error("`{cmd}` did not finish within {}s and was stopped{}", .after.as_secs(), tail_block(.tail))]
    TimedOut {
        cmd: String,
        after: Duration,
        tail: String,
    },
    #[error("`{cmd}` was stopped: {interrupted}")]
    Interrupted {
        cmd: String,
        #[source]
        interrupted: Interrupted,
    },
    #[error(
        "`{cmd}` was stopped as soon as it started: {source}; unrecorded, `cargo xtask prune` could not find it after a crash (check that the run directory is writable)"
    )]
    Journal {
        cmd: String,
        #[source]
        source: JournalError,
    },
}

impl ExecError {
    /// The interrupt that stopped the command, if that is what happened.
    pub fn interrupted(&self) -> Option<Interrupted> {
        match self {
            ExecError::Interrupted { interrupted, .. } => Some(*interrupted),
            _ => None,
        }
    }

    /// The exit code, when the command ran to completion and failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ExecError::Failed { status, .. } => status.code(),
            _ => None,
        }
    }
}

fn hint_suffix(program: &str) -> String {
    package_hint(program)
        .map(|h| format!(": {h}"))
        .unwrap_or_default()
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "an unknown status".to_owned(),
    }
}

fn tail_block(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        let indented: Vec<String> = tail.lines().map(|l| format!("    {l}")).collect();
        format!("; last output:\n{}", indented.join("\n"))
    }
}

/// What a finished command printed. In streaming mode `stdout`/`stderr` hold only the tail.
#[derive(Debug, Clone)]
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The last lines this command printed (stdout's, then stderr's; blank lines left out;
    /// secrets masked): its own, whatever else the process runs meanwhile.
    pub fn tail(&self) -> Vec<String> {
        tail_of(&self.stdout, &self.stderr)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A command about to run, with how to run it.
#[must_use = "a Run does nothing until .run() or .read()"]
pub struct Run {
    command: Command,
    program: String,
    display: String,
    timeout: Option<Duration>,
    stream: bool,
    log: bool,
    check: bool,
    interruptible: bool,
    /// On an interrupt, pass the signal on to the command and wait for it (it cleans up).
    forward: bool,
    stdin: Option<Vec<u8>>,
    /// Where stderr goes instead of being captured ([`Run::stderr_to`]).
    stderr_file: Option<std::fs::File>,
    /// Told the pid once the command started ([`Run::on_spawn`]).
    on_spawn: Option<Box<dyn FnOnce(u32)>>,
}

/// Turn an `xshell::Cmd` into a [`Run`].
pub trait CmdExt {
    fn exec(self) -> Run;
}

impl CmdExt for xshell::Cmd<'_> {
    fn exec(self) -> Run {
        // xshell renders a `.secret()` command as `<secret>`; anything else is shown whole
        // (minus registered secrets).
        let display = redact(&self.to_string());
        let command: Command = self.into();
        Run::from_command(command, display)
    }
}

impl CmdExt for Command {
    fn exec(self) -> Run {
        let mut display = self.get_program().to_string_lossy().into_owned();
        for arg in self.get_args() {
            let arg = arg.to_string_lossy();
            if arg.chars().any(|c| c.is_ascii_whitespace()) || arg.is_empty() {
                display.push_str(&format!(" {arg:?}"));
            } else {
                display.push(' ');
                display.push_str(&arg);
            }
        }
        let display = redact(&display);
        Run::from_command(self, display)
    }
}

impl Run {
    fn from_command(command: Command, display: String) -> Run {
        let program = command.get_program().to_string_lossy().into_owned();
        Run {
            command,
            program,
            display,
            timeout: None,
            stream: false,
            log: true,
            check: true,
            interruptible: true,
            forward: false,
            stdin: None,
            stderr_file: None,
            on_spawn: None,
        }
    }

    /// Stop the command (and its process group) after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Run {
        self.timeout = Some(timeout);
        self
    }

    /// Echo the command's output to stderr as it arrives (long steps such as
    /// `ansible-playbook`); stdout is still kept whole in [`Captured`] (it is data), stderr
    /// only its tail.
    pub fn stream(mut self) -> Run {
        self.stream = true;
        self
    }

    /// Write the command's stderr straight into `file` as it comes (a parallel run's child: its
    /// log can be followed with `tail -f` while it runs); [`Captured::stderr`] is then empty.
    pub fn stderr_to(mut self, file: std::fs::File) -> Run {
        self.stderr_file = Some(file);
        self
    }

    /// Tell `seen` the command's pid as soon as it started (a parallel run's parent: what a
    /// child killed by a signal left running is found in the spawn journal by who started it).
    pub fn on_spawn(mut self, seen: impl FnOnce(u32) + 'static) -> Run {
        self.on_spawn = Some(Box::new(seen));
        self
    }

    /// Do not log the `+ cmd` line: for tight polling loops whose caller logs the command once.
    pub fn quiet(mut self) -> Run {
        self.log = false;
        self
    }

    /// Run even when an interrupt is pending, and do not stop for one: for the short cleanup
    /// commands (unmount, detach, destroy) that must still run after Ctrl-C.
    pub fn uninterruptible(mut self) -> Run {
        self.interruptible = false;
        self
    }

    /// For a command that is itself a harness (a parallel run's child): on Ctrl-C or SIGTERM,
    /// send the same signal to its process group once and keep waiting, so that it tears down
    /// what it created, instead of stopping it with SIGKILL after a grace period.
    pub fn forward_interrupt(mut self) -> Run {
        self.forward = true;
        self.interruptible = false;
        self
    }

    /// Return the [`Captured`] result instead of an error when the command exits non-zero.
    pub fn allow_fail(mut self) -> Run {
        self.check = false;
        self
    }

    /// Feed `bytes` to the command's standard input.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Run {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command's whole environment is `vars`: nothing is inherited, and what was set
    /// before is forgotten (for a program that must not see the caller's environment).
    pub fn env_exactly<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Run
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        self.command.env_clear();
        self.command.envs(vars);
        self
    }

    /// Set an environment variable for this command only.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Run {
        self.command.env(key.into(), value.into());
        self
    }

    /// The command line as it is logged.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Run and return standard output, trimmed.
    pub fn read(self) -> Result<String, ExecError> {
        Ok(self.run()?.stdout.trim().to_owned())
    }

    /// Start the command in the background, its output going to this process's stdout and
    /// stderr, and return at once: for a caller that must act on the running command itself
    /// (the VM suite signals a running harness, as a terminal's Ctrl-C would). Logged
    /// (`+ cmd &`), in its own process group, recorded in the spawn journal.
    pub fn start(mut self) -> Result<Started, ExecError> {
        if self.log {
            crate::progress::command(&format!("{} &", self.display));
        }
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let child = self.spawn_child()?;
        Ok(Started {
            child,
            display: self.display,
        })
    }

    /// The one place boma spawns a process: in its own process group (a timeout or an
    /// interrupt stops the command and everything it started, such as ansible's ssh
    /// connections, and a terminal's Ctrl-C reaches only the harness, which then stops the
    /// command in order), and recorded in the spawn journal before anything else can fail or
    /// wait, so that a harness killed with SIGKILL leaves a process `prune` can name by pid and
    /// start time.
    #[allow(clippy::disallowed_methods)]
    fn spawn_child(&mut self) -> Result<Child, ExecError> {
        self.command.process_group(0);
        let mut child = match spawn_past_busy_text(&mut self.command) {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ExecError::NotFound {
                    program: self.program.clone(),
                });
            }
            Err(source) => {
                return Err(ExecError::Spawn {
                    cmd: self.display.clone(),
                    source,
                });
            }
        };
        if let Err(source) = journal::record_spawn(child.id(), &self.display) {
            stop(&mut child);
            return Err(ExecError::Journal {
                cmd: self.display.clone(),
                source,
            });
        }
        Ok(child)
    }

    /// Run to completion (or timeout, or interrupt).
    pub fn run(mut self) -> Result<Captured, ExecError> {
        if let Some(interrupted) = interrupt::pending().filter(|_| self.interruptible) {
            return Err(ExecError::Interrupted {
                cmd: self.display,
                interrupted,
            });
        }
        if self.log {
            crate::progress::command(&self.display);
        }
        if self.stream {
            crate::progress::clear_tail();
        }
        self.command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(match self.stderr_file.take() {
                Some(file) => Stdio::from(file),
                None => Stdio::piped(),
            });
        let mut child = self.spawn_child()?;
        if let Some(seen) = self.on_spawn.take() {
            seen(child.id());
        }
        if let Some(bytes) = self.stdin.take() {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            // A writer thread: a command that does not read all its input must not block us.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let out = Collector::start(child.stdout.take().expect("piped"), self.stream, false);
        let err = child
            .stderr
            .take()
            .map(|pipe| Collector::start(pipe, self.stream, true));

        let started = Instant::now();
        let mut forwarded = false;
        let outcome = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(source) => {
                    break Err(ExecError::Spawn {
                        cmd: self.display.clone(),
                        source,
                    });
                }
            }
            if self.forward
                && !forwarded
                && let Some(interrupted) = interrupt::received()
            {
                forwarded = true;
                if let Ok(signal) = Signal::try_from(interrupted.signal) {
                    let _ = killpg(Pid::from_raw(child.id() as i32), signal);
                }
            }
            if let Some(interrupted) = interrupt::pending().filter(|_| self.interruptible) {
                stop(&mut child);
                break Err(ExecError::Interrupted {
                    cmd: self.display.clone(),
                    interrupted,
                });
            }
            if let Some(limit) = self.timeout
                && started.elapsed() >= limit
            {
                stop(&mut child);
                break Err(ExecError::TimedOut {
                    cmd: self.display.clone(),
                    after: limit,
                    tail: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = out.finish();
        let stderr = err.map(Collector::finish).unwrap_or_default();
        match outcome {
            Ok(status) if status.success() || !self.check => Ok(Captured {
                status,
                stdout,
                stderr,
            }),
            Ok(status) => Err(ExecError::Failed {
                cmd: self.display,
                status,
                tail: tail_of(&stdout, &stderr),
            }),
            Err(ExecError::TimedOut { cmd, after, .. }) => Err(ExecError::TimedOut {
                cmd,
                after,
                tail: tail_of(&stdout, &stderr),
            }),
            Err(e) => Err(e),
        }
    }
}

/// A command started in the background ([`Run::start`]).
#[derive(Debug)]
pub struct Started {
    child: Child,
    display: String,
}

impl Started {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if it has finished.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ExecError> {
        self.child.try_wait().map_err(|source| ExecError::Spawn {
            cmd: self.display.clone(),
            source,
        })
    }

    /// Stop it (SIGTERM to its group, SIGKILL after a grace period) and reap it.
    pub fn stop(mut self) {
        stop(&mut self.child);
    }
}

/// SIGTERM the command's process group, then SIGKILL what is left after a grace period.
fn stop(child: &mut Child) {
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + KILL_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            // The leader is gone; make sure nothing it started lingers.
            let _ = killpg(group, Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
}

/// The last lines of a failed command's output, stderr after stdout, secrets masked.
fn tail_of(stdout: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    redact(&lines[start..].join("\n"))
}

/// How often a spawn is tried again when the program's file is busy (`ETXTBSY`), and how long
/// it waits between tries.
const BUSY_TEXT_TRIES: u32 = 20;
const BUSY_TEXT_PAUSE: Duration = Duration::from_millis(25);

/// Spawn `command`, trying again while its program's file is "busy": a script written a moment
/// ago by a thread of this process (a test's stand-in, a run's shim) is still open in a child
/// another thread forked and has not exec'd yet, and the kernel refuses to run an executable
/// open for writing. The child's copy closes at its exec, so a short wait ends it.
#[allow(clippy::disallowed_methods)]
fn spawn_past_busy_text(command: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < BUSY_TEXT_TRIES => {
                tries += 1;
                std::thread::sleep(BUSY_TEXT_PAUSE);
            }
            spawned => return spawned,
        }
    }
}

/// Reads one pipe on its own thread so that neither pipe can fill up and stall the command.
struct Collector {
    handle: JoinHandle<()>,
    buffer: Arc<Mutex<Lines>>,
}

enum Lines {
    All(String),
    Tail(VecDeque<String>),
}

impl Collector {
    fn start(pipe: impl Read + Send + 'static, stream: bool, is_stderr: bool) -> Collector {
        let buffer = Arc::new(Mutex::new(if stream && is_stderr {
            Lines::Tail(VecDeque::new())
        } else {
            Lines::All(String::new())
        }));
        let sink = Arc::clone(&buffer);
        let handle = std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&raw);
                let mut buffer = sink.lock().unwrap_or_else(|e| e.into_inner());
                if stream {
                    // Streamed output goes to stderr (or is folded) either way: the harness's
                    // stdout is data.
                    crate::progress::output(line.trim_end_matches(['\n', '\r']));
                }
                match &mut *buffer {
                    Lines::All(text) => text.push_str(&line),
                    Lines::Tail(tail) => {
                        let line = redact(line.trim_end_matches(['\n', '\r']));
                        tail.push_back(line);
                        if tail.len() > TAIL_LINES {
                            tail.pop_front();
                        }
                    }
                }
            }
        });
        Collector { handle, buffer }
    }

    fn finish(self) -> String {
        // The pipe closes when the process group is gone; a grandchild that escaped the group
        // and kept the pipe open would block here, which `stop` rules out by SIGKILLing it.
        let _ = self.handle.join();
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        match &*buffer {
            Lines::All(text) => text.clone(),
            Lines::Tail(tail) => tail.iter().map(|l| format!("{l}\n")).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xshell::{Shell, cmd};

    fn sh() -> Shell {
        Shell::new().unwrap()
    }

    #[test]
    fn read_returns_trimmed_stdout() {
        let sh = sh();
        assert_eq!(cmd!(sh, "echo hello").exec().read().unwrap(), "hello");
    }

    #[test]
    fn failure_names_command_status_and_tail() {
        let sh = sh();
        let err = cmd!(sh, "sh -c 'echo first; echo boom >&2; exit 3'")
            .exec()
            .run()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c"), "{text}");
        assert!(text.contains("exit status 3"), "{text}");
        assert!(text.contains("boom"), "{text}");
        assert_eq!(err.exit_code(), Some(3));
    }

    #[test]
    fn stderr_goes_to_the_file_not_the_capture() {
        let sh = sh();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("child.log");
        let file = std::fs::File::create(&path).unwrap();
        let out = cmd!(
            sh,
            "sh -c 'echo early >&2; sleep 0.5; echo data; echo late >&2'"
        )
        .exec()
        .stderr_to(file)
        .run()
        .unwrap();
        assert_eq!(out.stdout, "data\n");
        assert_eq!(out.stderr, "", "stderr went to the file, not the capture");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "early\nlate\n");
    }

    #[test]
    fn on_spawn_is_told_the_commands_own_pid() {
        let sh = sh();
        let seen = std::rc::Rc::new(std::cell::Cell::new(0));
        let told = std::rc::Rc::clone(&seen);
        let out = cmd!(sh, "sh -c 'echo $$'")
            .exec()
            .on_spawn(move |pid| told.set(pid))
            .read()
            .unwrap();
        assert_eq!(out, seen.get().to_string());
    }

    #[test]
    fn allow_fail_returns_status() {
        let sh = sh();
        let out = cmd!(sh, "sh -c 'exit 4'")
            .exec()
            .allow_fail()
            .run()
            .unwrap();
        assert_eq!(out.status.code(), Some(4));
    }

    #[test]
    fn missing_program_names_the_package() {
        let sh = sh();
        let err = cmd!(sh, "/nonexistent/cloud-localds x")
            .exec()
            .run()
            .unwrap_err();
        assert!(matches!(err, ExecError::NotFound { .. }), "{err}");
        let err = cmd!(sh, "cloud-localds-not-here").exec().run().unwrap_err();
        assert!(err.to_string().contains("not installed"), "{err}");
    }

    #[test]
    fn not_found_hint_for_known_tool() {
        let err = ExecError::NotFound {
            program: "cloud-localds".into(),
        };
        assert!(err.to_string().contains("cloud-image-utils"), "{err}");
    }

    #[test]
    fn timeout_stops_the_whole_process_group() {
        let sh = sh();
        let dir = tempfile::tempdir().unwrap();
        let marker = format!("{}/grandchild-survived", dir.path().display());
        // The grandchild would create the marker after 2 s if it were not killed with its group.
        let script = format!("(sleep 2; touch {marker}) & sleep 30");
        let started = Instant::now();
        let err = cmd!(sh, "sh -c {script}")
            .exec()
            .timeout(Duration::from_millis(300))
            .run()
            .unwrap_err();
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            !std::path::Path::new(&marker).exists(),
            "grandchild outlived the timeout"
        );
    }

    #[test]
    fn an_exact_environment_holds_only_what_it_names() {
        let sh = sh();
        let out = cmd!(sh, "/usr/bin/env")
            .env("BOMA_EXEC_BEFORE", "1")
            .exec()
            .env("BOMA_EXEC_FORGOTTEN", "1")
            .env_exactly([("BOMA_EXEC_KEPT", "yes")])
            .read()
            .unwrap();
        assert_eq!(out, "BOMA_EXEC_KEPT=yes");
    }

    #[test]
    fn stdin_is_fed() {
        let sh = sh();
        assert_eq!(
            cmd!(sh, "cat").exec().stdin("piped in").read().unwrap(),
            "piped in"
        );
    }

    #[test]
    fn registered_secret_is_masked_in_log_and_error() {
        crate::redact::register("tok-9f8e7d6c5b");
        let sh = sh();
        let secret = "tok-9f8e7d6c5b";
        let run = cmd!(sh, "sh -c 'echo {secret}; exit 1' ignored {secret}").exec();
        assert!(!run.display().contains(secret), "{}", run.display());
        let err = run.run().unwrap_err().to_string();
        assert!(!err.contains(secret), "{err}");
        assert!(err.contains("<redacted>"), "{err}");
    }

    #[test]
    fn streamed_stdout_is_kept_whole_and_stderr_only_its_tail() {
        let sh = sh();
        let out = cmd!(sh, "sh -c 'seq 1 200; seq 1 200 >&2'")
            .exec()
            .stream()
            .run()
            .unwrap();
        assert_eq!(out.stdout.lines().count(), 200);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last(), Some(&"200"));
    }

    #[test]
    fn a_commands_tail_is_its_own_whatever_ran_beside_it() {
        let sh = sh();
        let first = cmd!(sh, "sh -c 'seq 1 30; echo first-err >&2'")
            .exec()
            .stream()
            .run()
            .unwrap();
        // Another command in between: the process-wide tail now holds its lines.
        let _other = cmd!(sh, "sh -c 'echo other'")
            .exec()
            .stream()
            .run()
            .unwrap();
        let tail = first.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.first().map(String::as_str), Some("7"));
        assert_eq!(tail.last().map(String::as_str), Some("first-err"));
        assert!(!tail.iter().any(|l| l == "other"), "{tail:?}");
    }

    #[test]
    fn a_program_still_open_for_writing_is_run_once_it_is_closed() {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let script = format!("{}/busy.sh", dir.path().display());
        let mut file = std::fs::File::create(&script).unwrap();
        file.write_all(b"#!/bin/sh\necho ran\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Open for writing while the spawn starts: the kernel refuses with ETXTBSY, as it does
        // when another thread's freshly forked child still holds the file.
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(file);
        });
        let sh = sh();
        let out = cmd!(sh, "{script}").exec().read().unwrap();
        closer.join().unwrap();
        assert_eq!(out.trim(), "ran");
    }
}
