//! Reaching the guest: the harness's own key, the test VM's throwaway host keys, one way to
//! run a command there, with the options [`boma_ssh::pinned_options`] decides.

use std::time::Duration;

use boma_exec::{Captured, CmdExt, ExecError};
use boma_ssh::{Endpoint, EndpointError, EndpointSpec};
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
    /// The guest as [`boma_ssh`] pins it: no master connection (a probe across a reboot must
    /// never be answered by a master connected to the boot that ended), the address as its
    /// alias.
    pub fn endpoint(&self) -> Result<Endpoint, EndpointError> {
        let address = self
            .host
            .parse()
            .map_err(|_| EndpointError::Alias(self.host.clone()))?;
        Endpoint::new(EndpointSpec {
            alias: self.host.clone(),
            address,
            port: self.port,
            user: self.user.clone(),
            identity_file: self.key.clone(),
            control_dir: None,
        })
    }

    /// The options every connection of the harness's own to a test VM uses, before anything
    /// else on ssh's command line: [`boma_ssh::pinned_options`] (no ssh config file, the
    /// harness's key only, no agent, no proxy, host keys neither checked nor stored: each VM is
    /// new, lives minutes, and is reached only over loopback or a namespace the harness made).
    pub fn options(&self) -> Result<Vec<String>, EndpointError> {
        Ok(boma_ssh::pinned_options(&self.endpoint()?))
    }

    /// `user@host`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// A command an operator can paste to get a shell on the VM (no ssh config file of theirs,
    /// no agent key: the harness's key only).
    pub fn shell_hint(&self) -> String {
        let key = self.key.as_str();
        let key = if key.contains(' ') {
            format!("'{key}'")
        } else {
            key.to_owned()
        };
        format!(
            "ssh -F /dev/null -i {key} -p {} -o IdentitiesOnly=yes -o IdentityAgent=none -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {}",
            self.port,
            self.destination()
        )
    }

    /// ssh's arguments for `command` on the guest: the pinned options, then `--`, the
    /// destination and the command (nothing after `--` is read as an option).
    fn argv(&self, command: &[&str]) -> Result<Vec<String>, ExecError> {
        let mut argv = self.options().map_err(|e| ExecError::Spawn {
            cmd: format!("ssh {}", self.destination()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        argv.push("--".to_owned());
        argv.push(self.destination());
        argv.extend(command.iter().map(|part| (*part).to_owned()));
        Ok(argv)
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
        let argv = target.argv(&[command])?;
        let run = cmd!(sh, "ssh {argv...}")
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
        let argv = target.argv(&["sudo", "sh", "-s"])?;
        cmd!(sh, "ssh {argv...}")
            .exec()
            .stdin(script.as_bytes().to_vec())
            .allow_fail()
            .timeout(timeout)
            .run()
    }
}

/// Exit status OpenSSH uses for its own failures (as opposed to the remote command's).
pub const SSH_FAILED: i32 = 255;

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str) -> SshTarget {
        SshTarget {
            host: host.into(),
            port: 40022,
            user: "ansible".into(),
            key: "/var/lib/boma/ssh/id_ed25519".into(),
        }
    }

    #[test]
    fn the_harness_ssh_opens_with_the_pinned_options_and_no_master() {
        let target = target("127.0.0.1");
        let argv = target
            .argv(&["cat /proc/sys/kernel/random/boot_id"])
            .unwrap();
        let pinned = boma_ssh::pinned_options(&target.endpoint().unwrap());
        assert_eq!(argv[..pinned.len()], pinned[..]);
        assert_eq!(
            argv[pinned.len()..],
            [
                "--",
                "ansible@127.0.0.1",
                "cat /proc/sys/kernel/random/boot_id"
            ]
        );
        assert!(argv.contains(&"ControlMaster=no".to_owned()));
        assert!(argv.contains(&"IdentityAgent=none".to_owned()));
    }

    #[test]
    fn a_host_that_is_no_address_is_refused_before_ssh_runs() {
        let err = target("askari.example.org").argv(&["true"]).unwrap_err();
        assert!(err.to_string().contains("askari.example.org"), "{err}");
    }
}
