//! `cargo xtask`: the thin command line over boma's crates. Parses (clap reads the library
//! types directly), wires the settings, calls one library function per subcommand, and leaves
//! printing errors and choosing the exit status to [`edge`]: 0 passed, 1 failed, 2 refused
//! (nothing was created), 128+n interrupted by signal n.
#![allow(clippy::print_stdout)] // stdout is data (a report, a path): the edge prints it.

use std::process::ExitCode;
use std::time::Duration;

use boma_harness::{
    BackendChoice, Ctx, HarnessError, ImageSource, RealMachine, Settings, WaitOverrides,
};
use boma_inventory::CertTier;
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Parser, Subcommand};

mod doctor;
mod edge;
mod image;
mod it;
mod layers;
mod lint;
mod substrate;

/// boma's integration harness: prove a change survives a real reboot on a throwaway VM that
/// mirrors a real host, before it reaches the real host.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    propagate_version = true
)]
struct Cli {
    /// Show Ansible's output as it comes instead of folding it under the phase line.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole cycle for one or more hosts: boot a VM mirroring each, apply its playbooks,
    /// apply them again (idempotence), capture its state, reboot it for real, capture again and
    /// compare (the reboot diff), probe its ports and run its checks from the controller, tear
    /// down. A failed run keeps its VM and says how to inspect it.
    It(it::ItArgs),
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
    /// Run HOST's checks against the current VM: the built-in ones (system running, no route to
    /// the real fleet, the controller's probes) and the profile's verify playbooks.
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
    /// Remove every test VM (`boma-it-*`) of this checkout, its processes, overlay, seed,
    /// socket and run files, also after a crash. Stops only what the harness spawned.
    Prune,
    /// The golden image cache: fetch, build, verify, list.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// The disk layers `it` keeps after each step (a cache, never removed by `prune`): list,
    /// prune.
    #[command(subcommand)]
    Layers(layers::LayersCommand),
    /// Check this machine for the integration cycle: every tool with its version, KVM (and why
    /// not), memory, disk, libvirt, the image cache and the Ansible venv, one line each with
    /// its fix. Installs nothing. Exits 0 when `it` can run, 2 when it cannot.
    Doctor,
    /// Install the VM substrate when a program of it is missing, by applying the
    /// integration_test role to this machine (root, or passwordless sudo); nothing when all is
    /// there. `make test-integration` runs it first.
    Substrate,
    /// Check that every tag in playbooks/ and in roles' tasks/ and handlers/ is a role name or
    /// a concern listed in tests/tags.yml; lists every unknown tag as path:line and exits 1.
    CheckTags,
    /// Run every repository check in order, past failures: check-tags, cargo fmt, clippy,
    /// yamllint, ansible-lint, ansible-playbook --syntax-check of each playbook. Exits 1 if any
    /// failed.
    Lint,
    /// Ansible's ssh for a run (its `<run>/connect/ssh` runs this): rebuilds the command line
    /// for the run's VM from TABLE and becomes ssh; anything else is refused (exit 255).
    #[command(name = "connect-ssh", hide = true)]
    ConnectSsh {
        table: Utf8PathBuf,
        /// ssh's arguments as Ansible gave them (after `--`).
        #[arg(last = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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

#[derive(Args, Debug, Clone, Default)]
pub struct VaultArg {
    /// The ansible-vault password file (needed by the Let's Encrypt cert tiers only).
    #[arg(long, env = "BOMA_VAULT_PASSWORD_FILE", value_name = "FILE")]
    pub vault_password_file: Option<Utf8PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ansible's ssh: nothing of the harness's setup (no repository, no journal), just exec.
    if let Command::ConnectSsh { table, args } = &cli.command {
        return boma_harness::connect::connect_ssh(table, args);
    }
    if let Err(e) = boma_exec::interrupt::install() {
        return edge::fail(&HarnessError::Refused(format!(
            "cannot install the signal handlers: {e}"
        )));
    }
    boma_exec::progress::configure(if cli.verbose {
        boma_exec::progress::Display::Plain
    } else {
        boma_exec::progress::Display::Live
    });
    let repo = match edge::repo_root() {
        Ok(repo) => repo,
        Err(e) => return edge::fail(&e),
    };
    let sh = match xshell::Shell::new() {
        Ok(sh) => sh,
        Err(e) => return edge::fail(&HarnessError::Refused(format!("cannot start a shell: {e}"))),
    };
    // The checks need no harness settings (no image cache, no VM state).
    let command = match cli.command {
        Command::CheckTags => return lint::check_tags(&repo),
        Command::Lint => return lint::lint(&sh, &repo),
        Command::Substrate => return substrate::substrate(&sh, &repo),
        command => command,
    };
    let settings = match settings(&repo, cli.verbose, &command) {
        Ok(settings) => settings,
        Err(e) => return edge::fail(&e),
    };
    // Every process the harness spawns from here on is recorded, so that `prune` can later
    // stop exactly those (by pid and start time), never an operator's.
    if !matches!(command, Command::Doctor) {
        let journal = settings.runs_root.join(boma_harness::steps::JOURNAL);
        let recorded = std::fs::create_dir_all(&settings.runs_root)
            .map_err(|e| HarnessError::io(&settings.runs_root, e))
            .and_then(|()| {
                boma_exec::journal::record_into(journal.as_std_path()).map_err(|e| {
                    HarnessError::Refused(format!(
                        "cannot record spawned processes in {journal}: {e}"
                    ))
                })
            });
        if let Err(e) = recorded {
            return edge::fail(&e);
        }
    }
    match command {
        Command::It(args) => return it::run(&sh, &settings, args),
        Command::Doctor => {
            return doctor::doctor(&sh, &repo, &settings.cache_dir, &settings.runs_root);
        }
        _ => {}
    }
    match run(&sh, &settings, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => edge::fail(&e),
    }
}

fn run(sh: &xshell::Shell, settings: &Settings, command: Command) -> Result<(), HarnessError> {
    match command {
        Command::Image(command) => return image::run(sh, settings, command),
        Command::Layers(command) => return layers::run(settings, command),
        _ => {}
    }
    let machine = RealMachine::new(sh, &settings.runs_root);
    let ctx = Ctx {
        settings,
        machine: &machine,
    };
    match command {
        Command::Up { host, .. } => {
            boma_harness::up(&ctx, &host).map(|record| println!("{}", record.name))
        }
        Command::Apply { host, certs, .. } => boma_harness::apply(&ctx, &host, certs.tier),
        Command::Reboot { hard } => boma_harness::reboot(&ctx, hard),
        Command::Assert { host, certs, .. } => {
            boma_harness::assert(&ctx, &host, certs.tier).map(|_| ())
        }
        Command::Down { keep } => boma_harness::down(&ctx, keep),
        Command::Console { path } => {
            let log = boma_harness::console(&ctx)?;
            if path {
                println!("{log}");
            } else {
                let text = std::fs::read(&log).map_err(|e| HarnessError::io(&log, e))?;
                print!("{}", String::from_utf8_lossy(&text));
            }
            Ok(())
        }
        Command::Prune => boma_harness::prune(&ctx),
        Command::It(_)
        | Command::Image(_)
        | Command::Layers(_)
        | Command::CheckTags
        | Command::Lint
        | Command::Doctor
        | Command::Substrate
        | Command::ConnectSsh { .. } => unreachable!("dispatched in main"),
    }
}

/// Settings from the environment and the command's own options, read once here at the edge.
fn settings(repo: &Utf8Path, verbose: bool, command: &Command) -> Result<Settings, HarnessError> {
    let home = std::env::var("HOME")
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|_| Utf8PathBuf::from("/root"));
    let state_dir = std::env::var("XDG_STATE_HOME")
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|_| home.join(".local/state"))
        .join("boma-it");
    let mut settings = Settings {
        runs_root: Settings::default_runs_root(repo),
        repo: repo.to_owned(),
        cache_dir: boma_image::default_dir()?,
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
        verbose,
        // `BOMA_IT_LAYERS=off` turns them off everywhere (e.g. a CI job that must prove a
        // clean cycle); `--fresh` for one run.
        layers: std::env::var("BOMA_IT_LAYERS").as_deref() != Ok("off"),
    };
    let (image, backend, vault) = match command {
        Command::It(args) => (Some(&args.image), Some(&args.backend), Some(&args.vault)),
        Command::Up { image, backend, .. } => (Some(image), Some(backend), None),
        Command::Apply { vault, .. } | Command::Assert { vault, .. } => (None, None, Some(vault)),
        _ => (None, None, None),
    };
    if let Some(image) = image {
        settings.image = image.image.clone();
        settings.image_url = image.image_url.clone();
        settings.sums_url = image.sums_url.clone();
    }
    if let Some(backend) = backend {
        settings.backend = backend.backend;
    }
    if let Command::It(args) = command
        && args.fresh
    {
        settings.layers = false;
    }
    if let Some(vault) = vault {
        settings.vault_password_file = vault.vault_password_file.clone();
    }
    Ok(settings)
}

/// A duration override in whole seconds from the environment.
fn seconds_from_env(name: &str) -> Result<Option<Duration>, HarnessError> {
    parse_seconds(name, std::env::var(name).ok().as_deref())
}

/// `None` when unset; a positive whole number of seconds; anything else refused. Pure.
fn parse_seconds(name: &str, value: Option<&str>) -> Result<Option<Duration>, HarnessError> {
    match value {
        None => Ok(None),
        Some(value) => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(|s| Some(Duration::from_secs(s)))
            .ok_or_else(|| {
                HarnessError::Refused(format!(
                    "{name}={value:?} is not a number of seconds: set it to a whole number above 0, or unset it"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn library_types_are_parsed_directly() {
        let cli = parse(&["apply", "askari", "--certs", "le-staging"]).unwrap();
        let Command::Apply { certs, .. } = cli.command else {
            panic!("apply");
        };
        assert_eq!(certs.tier, CertTier::LeStaging);
        let cli = parse(&["up", "askari", "--backend", "qemu", "--image", "/x.qcow2"]).unwrap();
        let Command::Up { backend, image, .. } = cli.command else {
            panic!("up");
        };
        assert_eq!(backend.backend, BackendChoice::Qemu);
        assert_eq!(image.image, ImageSource::File("/x.qcow2".into()));
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_valid_ones() {
        let err = parse(&["apply", "askari", "--certs", "letsencrypt"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .contains("internal, le-staging, le-prod-wildcard"),
            "{err}"
        );
        let err = parse(&["up", "askari", "--backend", "kvm"]).unwrap_err();
        assert!(err.to_string().contains("auto, qemu, libvirt"), "{err}");
        assert_eq!(parse(&["frobnicate"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn ansibles_ssh_arguments_reach_the_wrapper_untouched() {
        let argv = [
            "-vvv",
            "-C",
            "-o",
            "Port=22",
            "--help",
            "127.0.0.1",
            "--",
            "ls",
        ];
        let cli = parse(&[&["connect-ssh", "/run/t.json", "--"][..], &argv].concat()).unwrap();
        let Command::ConnectSsh { table, args } = cli.command else {
            panic!("connect-ssh");
        };
        assert_eq!(
            (table.as_str(), args),
            ("/run/t.json", argv.map(String::from).to_vec())
        );
    }

    #[test]
    fn wait_overrides_are_whole_positive_seconds() {
        assert_eq!(parse_seconds("X", None).unwrap(), None);
        assert_eq!(
            parse_seconds("X", Some(" 90 ")).unwrap(),
            Some(Duration::from_secs(90))
        );
        for bad in ["0", "-3", "1.5", "soon"] {
            let err = parse_seconds("BOMA_IT_BOOT_TIMEOUT", Some(bad)).unwrap_err();
            assert_eq!(err.class().code(), 2);
            assert!(err.to_string().contains("BOMA_IT_BOOT_TIMEOUT"), "{err}");
        }
    }
}
