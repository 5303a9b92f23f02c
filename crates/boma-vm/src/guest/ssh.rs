//! Reaching the guest: the harness's own key, the test VM's throwaway host keys, one way to
//! run a command there.

use std::time::Duration;

use boma_exec::{Captured, CmdExt, ExecError};
use camino::Utf8PathBuf;
use xshell::{Shell, cmd};

/// Where and as whom to reach a guest over SSH.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The harness-owned private key (never the operator's `~/.ssh` key).
    pub key: Utf8PathBuf,
}

impl SshTarget {
    /// The options every connection to a test VM uses. Host keys are not checked or stored:
    /// each VM is new, lives minutes, and is reached only over loopback or a namespace the
    /// harness made.
    pub fn options(&self) -> Vec<String> {
        [
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
        ]
        .into_iter()
        .map(String::from)
        .chain([
            "-i".to_owned(),
            self.key.to_string(),
            "-p".to_owned(),
            self.port.to_string(),
        ])
        .collect()
    }

    /// `user@host`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// A command an operator can paste to get a shell on the VM.
    pub fn shell_hint(&self) -> String {
        format!(
            "ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {}",
            self.key,
            self.port,
            self.destination()
        )
    }
}

/// Running a command on the guest: the narrow effect the lifecycle needs from SSH.
pub trait Guest {
    /// Run `command` (a shell command line, run by the login shell on the guest). A result with
    /// exit status 255 means SSH itself failed (refused, reset, timed out).
    fn run(
        &self,
        target: &SshTarget,
        command: &str,
        timeout: Duration,
        quiet: bool,
    ) -> Result<Captured, ExecError>;

    /// Run `script` with `sh` as root on the guest, the script on standard input: one round
    /// trip whatever its length, and no quoting of the script through ssh's command line.
    fn run_script(
        &self,
        target: &SshTarget,
        script: &str,
        timeout: Duration,
    ) -> Result<Captured, ExecError>;
}

/// The real thing: OpenSSH's client.
pub struct OpenSsh<'a> {
    sh: &'a Shell,
}

impl<'a> OpenSsh<'a> {
    pub fn new(sh: &'a Shell) -> OpenSsh<'a> {
        OpenSsh { sh }
    }
}

impl Guest for OpenSsh<'_> {
    fn run(
        &self,
        target: &SshTarget,
        command: &str,
        timeout: Duration,
        quiet: bool,
    ) -> Result<Captured, ExecError> {
        let sh = self.sh;
        let options = target.options();
        let destination = target.destination();
        let run = cmd!(sh, "ssh {options...} {destination} {command}")
            .exec()
            .allow_fail()
            .timeout(timeout);
        if quiet { run.quiet().run() } else { run.run() }
    }

    fn run_script(
        &self,
        target: &SshTarget,
        script: &str,
        timeout: Duration,
    ) -> Result<Captured, ExecError> {
        let sh = self.sh;
        let options = target.options();
        let destination = target.destination();
        cmd!(sh, "ssh {options...} {destination} sudo sh -s")
            .exec()
            .stdin(script.as_bytes().to_vec())
            .allow_fail()
            .timeout(timeout)
            .run()
    }
}

/// Exit status OpenSSH uses for its own failures (as opposed to the remote command's).
pub const SSH_FAILED: i32 = 255;
