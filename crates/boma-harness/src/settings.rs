//! Where things are and which choices the operator made, gathered once at the edge. Plain
//! data: what acts on them is [`crate::ctx::Ctx`].

use std::time::Duration;

use boma_vm::Accel;
use boma_vm::lifecycle::Waits;
use camino::{Utf8Path, Utf8PathBuf};

use crate::backend::BackendChoice;

/// Where the golden image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A verified cached image, else download, else build when the download host cannot be
    /// reached (saying so).
    Auto,
    Download,
    Build,
    /// An image file the operator gave: hashed, pinned and recorded in the report.
    File(Utf8PathBuf),
}

impl std::str::FromStr for ImageSource {
    type Err = std::convert::Infallible;

    /// `auto`, `download`, `build`, or a path to a qcow2 file.
    fn from_str(s: &str) -> Result<ImageSource, Self::Err> {
        Ok(match s {
            "auto" => ImageSource::Auto,
            "download" => ImageSource::Download,
            "build" => ImageSource::Build,
            path => ImageSource::File(Utf8PathBuf::from(path)),
        })
    }
}

/// The operator's overrides of how long to wait (`BOMA_IT_BOOT_TIMEOUT` …), read at the edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitOverrides {
    pub boot: Option<Duration>,
    pub reboot: Option<Duration>,
    /// How often a wait looks again (tests make it fast).
    pub poll: Option<Duration>,
}

impl WaitOverrides {
    /// The lifecycle's waits for `accel`, with these overrides applied. Pure.
    pub fn waits(&self, accel: Accel) -> Waits {
        let default = Waits::for_accel(accel);
        Waits {
            boot: self.boot.unwrap_or(default.boot),
            reboot: self.reboot.unwrap_or(default.reboot),
            poll: self.poll.unwrap_or(default.poll),
        }
    }
}

/// Everything the steps need to know about this machine and this invocation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The repository root (found at run time by the edge, never baked in at compile time).
    pub repo: Utf8PathBuf,
    /// The live runs' files: `<repo>/tests/integration/.run`.
    pub runs_root: Utf8PathBuf,
    /// The image cache (`BOMA_IT_CACHE`, default `/var/lib/boma-integration`).
    pub cache_dir: Utf8PathBuf,
    /// The harness's own state: its SSH key pair.
    pub state_dir: Utf8PathBuf,
    /// Where diagnostics bundles go (`~/integration-runs`).
    pub diagnostics_root: Utf8PathBuf,
    pub backend: BackendChoice,
    pub image: ImageSource,
    /// Overrides of the download source (a mirror, a local file).
    pub image_url: Option<String>,
    pub sums_url: Option<String>,
    /// The ansible-vault password file, for tiers that need a secret.
    pub vault_password_file: Option<Utf8PathBuf>,
    pub waits: WaitOverrides,
    /// How long one `ansible-playbook` run may take (None: the default, fitted to TCG).
    pub step_timeout: Option<Duration>,
    /// Show Ansible's output as it comes (`-v`) instead of folding it under the phase line.
    pub verbose: bool,
    /// Reuse and store disk layers (off with `--fresh`).
    pub layers: bool,
}

impl Settings {
    /// Where a repository keeps its live runs.
    pub fn default_runs_root(repo: &Utf8Path) -> Utf8PathBuf {
        repo.join("tests/integration/.run")
    }

    pub fn key_dir(&self) -> Utf8PathBuf {
        self.state_dir.join("ssh")
    }

    /// How long one `ansible-playbook` run may take: the operator's setting, else generous for
    /// TCG (askari's longest step takes 3½–10 minutes there), scaled for KVM. Pure.
    pub fn playbook_timeout(&self, accel: Accel) -> Duration {
        self.step_timeout
            .unwrap_or_else(|| accel.scale(Duration::from_secs(40 * 60)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_set() {
        let tcg = Waits::for_accel(Accel::Tcg);
        let none = WaitOverrides::default();
        assert_eq!(none.waits(Accel::Tcg), tcg);
        let boot = WaitOverrides {
            boot: Some(Duration::from_secs(7)),
            ..WaitOverrides::default()
        };
        let waits = boot.waits(Accel::Tcg);
        assert_eq!(waits.boot, Duration::from_secs(7));
        assert_eq!(waits.reboot, tcg.reboot);
    }

    #[test]
    fn image_sources_parse() {
        assert_eq!("auto".parse(), Ok(ImageSource::Auto));
        assert_eq!("build".parse(), Ok(ImageSource::Build));
        assert_eq!(
            "/x/y.qcow2".parse(),
            Ok(ImageSource::File("/x/y.qcow2".into()))
        );
    }
}
