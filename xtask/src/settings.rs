//! What every subcommand starts from: the checkout it works on, a shell, and the harness's
//! settings — read from the environment once, here, with the options a command shares
//! (`--certs`, `--image`, `--backend`, `--vault-password-file`) laid over them.

use std::time::Duration;

use boma_harness::{
    BackendChoice, Ctx, HarnessError, ImageSource, RealMachine, Settings, WaitOverrides,
};
use boma_inventory::CertTier;
use camino::Utf8PathBuf;
use clap::Args;
use xshell::Shell;

use crate::edge::{self, Failure};

/// The checkout this invocation works on, and a shell to act in it.
pub struct Checkout {
    pub repo: Utf8PathBuf,
    pub sh: Shell,
    /// `--verbose`: Ansible's output as it comes.
    pub verbose: bool,
}

impl Checkout {
    /// The checkout of the working directory (see [`edge::repo_root`]).
    pub fn here(verbose: bool) -> Result<Checkout, Failure> {
        let repo = edge::repo_root()?;
        let sh =
            Shell::new().map_err(|e| Failure::refused(format!("cannot start a shell: {e}")))?;
        Ok(Checkout { repo, sh, verbose })
    }

    /// The harness's settings for this checkout, from the environment. Reads only: nothing
    /// is created (`doctor` creates nothing).
    pub fn settings(&self) -> Result<Settings, Failure> {
        let home = std::env::var("HOME")
            .map(Utf8PathBuf::from)
            .unwrap_or_else(|_| Utf8PathBuf::from("/root"));
        let state_dir = std::env::var("XDG_STATE_HOME")
            .map(Utf8PathBuf::from)
            .unwrap_or_else(|_| home.join(".local/state"))
            .join("boma-it");
        Ok(Settings {
            runs_root: Settings::default_runs_root(&self.repo),
            repo: self.repo.clone(),
            cache_dir: boma_image::default_dir().map_err(HarnessError::from)?,
            state_dir,
            diagnostics_root: home.join("integration-runs"),
            backend: BackendChoice::Auto,
            image: ImageSource::Auto,
            image_url: None,
            sums_url: None,
            vault_password_file: None,
            waits: WaitOverrides {
                boot: seconds_from_env("BOMA_IT_BOOT_TIMEOUT")?,
                reboot: seconds_from_env("BOMA_IT_REBOOT_TIMEOUT")?,
                poll: None,
            },
            step_timeout: seconds_from_env("BOMA_IT_STEP_TIMEOUT")?,
            verbose: self.verbose,
            // `BOMA_IT_LAYERS=off` turns them off everywhere (e.g. a CI job that must prove a
            // clean cycle); `--fresh` for one run.
            layers: std::env::var("BOMA_IT_LAYERS").as_deref() != Ok("off"),
        })
    }

    /// [`Checkout::settings`] with the command's own choices laid over them, for a command
    /// that acts: from here on every process the harness spawns is recorded in the run
    /// directory's journal, so that `prune` can later stop exactly those (by pid and start
    /// time), never an operator's.
    pub fn harness(&self, choose: impl FnOnce(&mut Settings)) -> Result<Settings, Failure> {
        let mut settings = self.settings()?;
        choose(&mut settings);
        let journal = boma_vm::Runs::new(&settings.runs_root).journal();
        std::fs::create_dir_all(&settings.runs_root)
            .map_err(|e| HarnessError::io(&settings.runs_root, e))?;
        boma_exec::journal::record_into(journal.as_std_path()).map_err(|e| {
            Failure::refused(format!("cannot record spawned processes in {journal}: {e}"))
        })?;
        Ok(settings)
    }

    /// `f` with the harness's context: these settings and this machine.
    pub fn with_ctx<T>(&self, settings: &Settings, f: impl FnOnce(&Ctx) -> T) -> T {
        let machine = RealMachine::new(&self.sh, &settings.runs_root);
        f(&Ctx {
            settings,
            machine: &machine,
        })
    }
}

/// `--certs`: how the VM's certificates are issued.
#[derive(Args, Debug, Clone)]
pub struct CertsArg {
    /// Certificate tier: internal (self-signed, no secret), le-staging, le-prod-wildcard
    /// (both Let's Encrypt tiers need the vault password and a profile whose Caddy image has the
    /// Gandi DNS module).
    #[arg(long = "certs", default_value = "internal", value_name = "TIER")]
    pub tier: CertTier,
}

/// Where the golden image comes from.
#[derive(Args, Debug, Clone)]
pub struct ImageArgs {
    /// auto (cache, else download, else build), download, build, or a path to a qcow2 file.
    #[arg(long, default_value = "auto", value_name = "SOURCE")]
    pub image: ImageSource,
    /// Download the image from this URL (a mirror, file:// or a path) instead of Debian's site.
    #[arg(long, env = "BOMA_IT_IMAGE_URL", value_name = "URL")]
    pub image_url: Option<String>,
    /// The SHA512SUMS to check it against (default: beside the image URL).
    #[arg(long, env = "BOMA_IT_SUMS_URL", value_name = "URL")]
    pub sums_url: Option<String>,
}

impl ImageArgs {
    pub fn lay_over(&self, settings: &mut Settings) {
        settings.image = self.image.clone();
        settings.image_url = self.image_url.clone();
        settings.sums_url = self.sums_url.clone();
    }
}

#[derive(Args, Debug, Clone)]
pub struct BackendArg {
    /// Which hypervisor runs the VM: libvirt (virt-install on the isolated `boma-it` NAT
    /// network), qemu (qemu-system directly, ports forwarded to 127.0.0.1), or auto (libvirt
    /// when virsh reaches a daemon in this network namespace, else qemu).
    #[arg(
        long,
        env = "BOMA_IT_BACKEND",
        default_value = "auto",
        value_name = "BACKEND"
    )]
    pub backend: BackendChoice,
}

impl BackendArg {
    pub fn lay_over(&self, settings: &mut Settings) {
        settings.backend = self.backend;
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct VaultArg {
    /// The ansible-vault password file (needed by the Let's Encrypt cert tiers only).
    #[arg(long, env = "BOMA_VAULT_PASSWORD_FILE", value_name = "FILE")]
    pub vault_password_file: Option<Utf8PathBuf>,
}

impl VaultArg {
    pub fn lay_over(&self, settings: &mut Settings) {
        settings.vault_password_file = self.vault_password_file.clone();
    }
}

/// A duration override in whole seconds from the environment.
fn seconds_from_env(name: &str) -> Result<Option<Duration>, Failure> {
    parse_seconds(name, std::env::var(name).ok().as_deref()).map_err(Failure::refused)
}

/// `None` when unset; a positive whole number of seconds; anything else refused. Pure.
fn parse_seconds(name: &str, value: Option<&str>) -> Result<Option<Duration>, String> {
    match value {
        None => Ok(None),
        Some(value) => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(|s| Some(Duration::from_secs(s)))
            .ok_or_else(|| {
                format!(
                    "{name}={value:?} is not a number of seconds: set it to a whole number above 0, or unset it"
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_overrides_are_whole_positive_seconds() {
        assert_eq!(parse_seconds("X", None).unwrap(), None);
        assert_eq!(
            parse_seconds("X", Some(" 90 ")).unwrap(),
            Some(Duration::from_secs(90))
        );
        for bad in ["0", "-3", "1.5", "soon"] {
            let err = parse_seconds("BOMA_IT_BOOT_TIMEOUT", Some(bad)).unwrap_err();
            assert!(err.contains("BOMA_IT_BOOT_TIMEOUT"), "{err}");
        }
    }
}
