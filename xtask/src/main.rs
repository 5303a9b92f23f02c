//! `cargo xtask`: the thin command line over boma's crates. It parses (clap reads the library
//! types directly), wires the settings, and calls one library function per subcommand, in one
//! `match`. Every subcommand ends in an [`edge::Outcome`], or a [`edge::Failure`] carrying the
//! one its error means, and [`edge::finish`] prints the error and chooses the exit status:
//! 0 passed, 1 failed, 2 refused (nothing was created), 128+n interrupted by signal n.

use std::process::ExitCode;

use camino::Utf8PathBuf;
use clap::{Parser, Subcommand};

mod doctor;
mod edge;
mod image;
mod it;
mod layers;
mod lint;
mod settings;
mod steps;
mod substrate;

use edge::{Failure, Outcome};
use settings::Checkout;

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
    Up(steps::Up),
    /// Apply HOST's profile (its playbooks, overrides and cert tier) to the current VM.
    Apply(steps::ProfileStep),
    /// Reboot the current VM for real; succeeds only when it answers with a new boot_id.
    Reboot(steps::Reboot),
    /// Run HOST's checks against the current VM: the built-in ones (system running, no route to
    /// the real fleet, the controller's probes) and the profile's verify playbooks.
    Assert(steps::ProfileStep),
    /// Boot a kept, powered-off VM again to inspect it (a failed run of several profiles keeps
    /// its VM so, and names it): its disk, forwards and console as they were. It becomes the
    /// current VM (`cargo xtask down` removes it).
    Start(steps::Start),
    /// Remove the current VM and its files.
    Down(steps::Down),
    /// Print the current VM's serial console log.
    Console(steps::Console),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ansible's ssh: nothing of the harness's setup (no repository, no journal, no signal
    // handlers): it becomes ssh, and returns only when it refused.
    if let Command::ConnectSsh { table, args } = &cli.command {
        boma_harness::connect::connect_ssh(table, args);
        return edge::finish(Ok(Outcome::SshRefused));
    }
    edge::finish(cli.run())
}

impl Cli {
    fn run(self) -> Result<Outcome, Failure> {
        boma_exec::interrupt::install()
            .map_err(|e| Failure::refused(format!("cannot install the signal handlers: {e}")))?;
        boma_exec::progress::configure(if self.verbose {
            boma_exec::progress::Display::Plain
        } else {
            boma_exec::progress::Display::Live
        });
        // Found by the commands that work on the checkout; a command that does not (a hidden
        // helper another program runs) never asks.
        let checkout = || Checkout::here(self.verbose);
        match self.command {
            Command::It(args) => it::run(&checkout()?, args),
            Command::Up(args) => steps::up(&checkout()?, args),
            Command::Apply(args) => steps::apply(&checkout()?, args),
            Command::Reboot(args) => steps::reboot(&checkout()?, args),
            Command::Assert(args) => steps::assert(&checkout()?, args),
            Command::Start(args) => steps::start(&checkout()?, args),
            Command::Down(args) => steps::down(&checkout()?, args),
            Command::Console(args) => steps::console(&checkout()?, args),
            Command::Prune => steps::prune(&checkout()?),
            Command::Image(command) => image::run(&checkout()?, command),
            Command::Layers(command) => layers::run(&checkout()?, command),
            Command::Doctor => doctor::run(&checkout()?),
            Command::Substrate => substrate::run(&checkout()?),
            Command::CheckTags => lint::check_tags(&checkout()?),
            Command::Lint => lint::lint(&checkout()?),
            // Dispatched in `main`, before any of the harness's setup.
            Command::ConnectSsh { .. } => Ok(Outcome::SshRefused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boma_harness::{BackendChoice, ImageSource};
    use boma_inventory::CertTier;
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
        let Command::Apply(apply) = cli.command else {
            panic!("apply");
        };
        assert!(format!("{apply:?}").contains("LeStaging"), "{apply:?}");
        let cli = parse(&["it", "askari", "--backend", "qemu", "--image", "/x.qcow2"]).unwrap();
        let Command::It(it) = cli.command else {
            panic!("it");
        };
        assert_eq!(it.backend.backend, BackendChoice::Qemu);
        assert_eq!(it.image.image, ImageSource::File("/x.qcow2".into()));
        assert_eq!(it.certs.tier, CertTier::Internal);
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
    fn start_takes_the_kept_vms_name() {
        let cli = parse(&["start", "boma-it-askari-1a2b3c4d"]).unwrap();
        let Command::Start(start) = cli.command else {
            panic!("start");
        };
        assert_eq!(start.vm, "boma-it-askari-1a2b3c4d");
        assert_eq!(parse(&["start"]).unwrap_err().exit_code(), 2);
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
}
