//! `cargo xtask`: the thin command line over boma's crates. Parses, wires settings, prints the
//! outcome and picks the exit status: 0 passed, 1 failed, 2 usage or preflight, 128+n when
//! interrupted by signal n.

use std::process::ExitCode;

use boma_harness::{
    BackendChoice, Ctx, HarnessError, ImageSource, ItOptions, RealMachine, Settings,
};
use boma_inventory::CertTier;
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod image;
mod lint;

/// boma's integration harness: prove a change survives a real reboot on a throwaway VM that
/// mirrors a real host, before it reaches the real host.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole cycle: boot a VM mirroring HOST, apply its playbooks, reboot it for real,
    /// verify from the controller, tear down. A failed run keeps its VM and says how to
    /// inspect it.
    It {
        /// The host to mirror: its profile is profiles/<HOST>.json (e.g. askari).
        host: String,
        #[command(flatten)]
        certs: CertsArg,
        /// Keep the VM even when the run passes.
        #[arg(long)]
        keep: bool,
        /// Verify without rebooting (faster, blind to reboot-survival bugs).
        #[arg(long)]
        no_reboot: bool,
        #[command(flatten)]
        image: ImageArgs,
        #[command(flatten)]
        backend: BackendArg,
        #[command(flatten)]
        vault: VaultArg,
    },
    /// Boot a VM mirroring HOST and wait until SSH answers and cloud-init is done.
    Up {
        /// The host to mirror: its profile is profiles/<HOST>.json (e.g. askari).
        host: String,
        #[command(flatten)]
        image: ImageArgs,
        #[command(flatten)]
        backend: BackendArg,
    },
    /// Apply HOST's profile (its playbooks, overrides and cert tier) to the current VM.
    Apply {
        /// The host to mirror: its profile is profiles/<HOST>.json (e.g. askari).
        host: String,
        #[command(flatten)]
        certs: CertsArg,
        #[command(flatten)]
        vault: VaultArg,
    },
    /// Reboot the current VM for real; succeeds only when it answers with a new boot_id.
    Reboot {
        /// A hardware reset instead of a guest-initiated reboot.
        #[arg(long)]
        hard: bool,
    },
    /// Run the verify playbook against the current VM (from the controller).
    Assert {
        /// The host to mirror: its profile is profiles/<HOST>.json (e.g. askari).
        host: String,
        #[command(flatten)]
        certs: CertsArg,
        #[command(flatten)]
        vault: VaultArg,
    },
    /// Remove the current VM and its files.
    Down {
        /// Only power the VM off; keep its overlay, console log and record for a post-mortem.
        #[arg(long)]
        keep: bool,
    },
    /// Print the current VM's serial console log.
    Console {
        /// Print the log's path instead of its content.
        #[arg(long)]
        path: bool,
    },
    /// Remove every test VM (`boma-it-*`), its process, overlay, seed, socket and run files,
    /// also after a crash.
    Prune,
    /// The golden image cache: fetch, build, verify, list.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Check that every tag in playbooks/ and in roles' tasks/ and handlers/ is a role name or
    /// a concern listed in tests/tags.yml; lists every unknown tag as path:line and exits 1.
    CheckTags,
    /// Run every repository check in order, past failures: check-tags, cargo fmt, clippy,
    /// yamllint, ansible-lint, ansible-playbook --syntax-check of each playbook. Exits 1 if any
    /// failed.
    Lint,
}

/// `--certs`: how the VM's certificates are issued.
#[derive(Args)]
struct CertsArg {
    /// Certificate tier: internal (self-signed, no secret), le-staging, le-prod-wildcard
    /// (on explicit request only: uses the production DNS token).
    #[arg(long = "certs", value_enum, default_value_t = Tier::Internal)]
    tier: Tier,
}

#[derive(Clone, Copy, ValueEnum)]
enum Tier {
    Internal,
    LeStaging,
    LeProdWildcard,
}

impl From<Tier> for CertTier {
    fn from(t: Tier) -> CertTier {
        match t {
            Tier::Internal => CertTier::Internal,
            Tier::LeStaging => CertTier::LeStaging,
            Tier::LeProdWildcard => CertTier::LeProdWildcard,
        }
    }
}

/// Where the golden image comes from.
#[derive(Args, Default)]
struct ImageArgs {
    /// auto (cache, else download, else build), download, build, or a path to a qcow2 file.
    #[arg(long, default_value = "auto", value_name = "SOURCE")]
    image: String,
    /// Download the image from this URL (a mirror, file:// or a path) instead of Debian's site.
    #[arg(long, env = "BOMA_IT_IMAGE_URL", value_name = "URL")]
    image_url: Option<String>,
    /// The SHA512SUMS to check it against (default: beside the image URL).
    #[arg(long, env = "BOMA_IT_SUMS_URL", value_name = "URL")]
    sums_url: Option<String>,
}

#[derive(Args)]
struct BackendArg {
    /// Which hypervisor runs the VM: libvirt (virt-install on the isolated `boma-it` NAT
    /// network), qemu (qemu-system directly, ports forwarded to 127.0.0.1), or auto (libvirt
    /// when virsh reaches a daemon, else qemu).
    #[arg(long, value_enum, env = "BOMA_IT_BACKEND", default_value_t = Backend::Auto)]
    backend: Backend,
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Auto,
    Qemu,
    Libvirt,
}

impl From<Backend> for BackendChoice {
    fn from(b: Backend) -> BackendChoice {
        match b {
            Backend::Auto => BackendChoice::Auto,
            Backend::Qemu => BackendChoice::Qemu,
            Backend::Libvirt => BackendChoice::Libvirt,
        }
    }
}

#[derive(Args, Default)]
struct VaultArg {
    /// The ansible-vault password file (needed by the Let's Encrypt cert tiers only).
    #[arg(long, env = "BOMA_VAULT_PASSWORD_FILE", value_name = "FILE")]
    vault_password_file: Option<Utf8PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = boma_exec::interrupt::install() {
        eprintln!("error: cannot install the signal handlers: {e}");
        return ExitCode::from(2);
    }
    let sh = match xshell::Shell::new() {
        Ok(sh) => sh,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The checks need no harness settings (no image cache, no VM state).
    let command = match cli.command {
        Command::CheckTags => return lint::check_tags(),
        Command::Lint => return lint::lint(&sh),
        command => command,
    };
    match run(&sh, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e);
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

fn print_error(e: &HarnessError) {
    let mut message = format!("error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{}", boma_exec::redact::redact(&message));
}

fn run(sh: &xshell::Shell, command: Command) -> Result<(), HarnessError> {
    let mut settings = settings()?;
    // Per-command settings first, then one machine and one context for the step.
    match &command {
        Command::It {
            image,
            vault,
            backend,
            ..
        } => {
            apply_image_args(&mut settings, image);
            settings.backend = backend.backend.into();
            settings.vault_password_file = vault.vault_password_file.clone();
        }
        Command::Up { image, backend, .. } => {
            apply_image_args(&mut settings, image);
            settings.backend = backend.backend.into();
        }
        Command::Apply { vault, .. } | Command::Assert { vault, .. } => {
            settings.vault_password_file = vault.vault_password_file.clone();
        }
        _ => {}
    }
    if let Command::Image(command) = command {
        return image::run(sh, &settings, command);
    }
    let machine = RealMachine::new(sh, &settings);
    let ctx = Ctx {
        settings: &settings,
        machine: &machine,
    };
    match command {
        Command::It {
            host,
            certs,
            keep,
            no_reboot,
            ..
        } => {
            let options = ItOptions {
                tier: certs.tier.into(),
                keep,
                no_reboot,
            };
            boma_harness::it(&ctx, &host, options).map(|_| ())
        }
        Command::Up { host, .. } => {
            boma_harness::up(&ctx, &host).map(|record| println!("{}", record.name))
        }
        Command::Apply { host, certs, .. } => boma_harness::apply(&ctx, &host, certs.tier.into()),
        Command::Reboot { hard } => boma_harness::reboot(&ctx, hard),
        Command::Assert { host, certs, .. } => {
            boma_harness::assert(&ctx, &host, certs.tier.into()).map(|_| ())
        }
        Command::Down { keep } => boma_harness::down(&ctx, keep),
        Command::Console { path } => {
            let log = boma_harness::console(&ctx)?;
            if path {
                println!("{log}");
            } else {
                let text = std::fs::read(&log)
                    .map_err(|e| HarnessError::Usage(format!("cannot read {log}: {e}")))?;
                print!("{}", String::from_utf8_lossy(&text));
            }
            Ok(())
        }
        Command::Prune => boma_harness::prune(&ctx),
        Command::Image(_) => unreachable!("handled above"),
        Command::CheckTags | Command::Lint => unreachable!("dispatched in main"),
    }
}

fn apply_image_args(settings: &mut Settings, image: &ImageArgs) {
    settings.image = match image.image.as_str() {
        "auto" => ImageSource::Auto,
        "download" => ImageSource::Download,
        "build" => ImageSource::Build,
        path => ImageSource::File(Utf8PathBuf::from(path)),
    };
    settings.image_url = image.image_url.clone();
    settings.sums_url = image.sums_url.clone();
}

/// Settings from the environment, read once here at the edge.
fn settings() -> Result<Settings, HarnessError> {
    // The repository root from the manifest, never the cwd: `cargo xtask` works from any
    // subdirectory.
    let repo = Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_owned();
    let home = std::env::var("HOME")
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|_| Utf8PathBuf::from("/root"));
    let state_dir = std::env::var("XDG_STATE_HOME")
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|_| home.join(".local/state"))
        .join("boma-it");
    let cache_dir = boma_image::default_dir()?;
    Ok(Settings {
        runs_root: Settings::default_runs_root(&repo),
        repo,
        cache_dir,
        state_dir,
        diagnostics_root: home.join("integration-runs"),
        backend: BackendChoice::Auto,
        image: ImageSource::Auto,
        image_url: None,
        sums_url: None,
        vault_password_file: None,
        boot_timeout: seconds_from_env("BOMA_IT_BOOT_TIMEOUT")?,
        reboot_timeout: seconds_from_env("BOMA_IT_REBOOT_TIMEOUT")?,
    })
}

/// A wait override in whole seconds from the environment.
fn seconds_from_env(name: &str) -> Result<Option<std::time::Duration>, HarnessError> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(value) => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(|s| Some(std::time::Duration::from_secs(s)))
            .ok_or_else(|| {
                HarnessError::Usage(format!("{name}={value:?} is not a number of seconds"))
            }),
    }
}
