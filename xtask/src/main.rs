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
///
/// It works on the checkout it runs in (found from `cargo run`, else the git top level of the
/// working directory), from any subdirectory. The operator's handbook is
/// docs/runbooks/integration-testing.md.
///
/// Exit status, every command: 0 passed (for `it`, also a RED profile that failed exactly as
/// its `expect` says); 1 failed (a check, a playbook, a wait, the hypervisor: a VM that had
/// booted is kept with a diagnostics bundle, and the output says how to reach it); 2 refused
/// (bad usage, a failed preflight, another harness command holding this checkout, no current
/// VM: nothing was created); 128+n interrupted by signal n (130 SIGINT, 143 SIGTERM, 129
/// SIGHUP: `it` and `up` remove the VM they booted unless `it --keep`; `apply`, `reboot` and
/// `assert` leave the VM up). A second Ctrl-C during the cleanup is recorded but does not stop
/// it. stdout is data (a report, a path, a listing); stderr is progress and the command log
/// (`+ cmd …`), secrets masked.
///
/// BOMA_IT_CACHE: the image cache every checkout on the machine shares (default
/// /var/lib/boma-integration): the golden images and their SHA512SUMS, a built image's package
/// list, the KVM verdict kvm-probe.json (valid for this host boot, QEMU and image: delete it
/// to probe again), the memory reservations in reservations/, the disk layers in layers/ and
/// the cached idempotence verdicts in layers-idempotence/.
///
/// BOMA_IT_BACKEND, BOMA_IT_IMAGE_URL, BOMA_IT_SUMS_URL, BOMA_VAULT_PASSWORD_FILE: the options
/// of those names (--backend, --image-url, --sums-url, --vault-password-file).
///
/// BOMA_IT_BOOT_TIMEOUT, BOMA_IT_REBOOT_TIMEOUT: seconds to wait for SSH and cloud-init after
/// the first boot, and for a new boot_id after a reboot or for the guest to power itself off
/// (default 420 under TCG, 140 under KVM). BOMA_IT_STEP_TIMEOUT: seconds one ansible-playbook
/// run may take before it is stopped (default 2400 under TCG, 800 under KVM). A timeout that
/// is not a whole number above 0 is refused (exit 2).
///
/// BOMA_IT_LAYERS=off: no disk layers for any run (`it --fresh` for one run).
/// BOMA_IT_FACT_CACHE=off: gather facts in every playbook, as plain Ansible does (the per-boot
/// fact cache is the default). BOMA_IT_MITOGEN=1: Mitogen's strategy, when the venv has it
/// (measured by `make bench`; not the default).
///
/// HOME: failed runs' diagnostics bundles go to $HOME/integration-runs/<vm>/. XDG_STATE_HOME:
/// the harness's own SSH key pair is in ${XDG_STATE_HOME:-$HOME/.local/state}/boma-it/ssh/.
///
/// Files: tests/integration/.run/ holds this checkout's runs, one directory per VM (its
/// record run.json, overlay, seed, console.log, inventory, connection files, captures and
/// logs), `current` (the VM the single-step commands act on), the spawn journal
/// spawned.jsonl and, for a run of several profiles, parallel/<host>.log and .json.
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
    ///
    /// Preflight first (exit 2, nothing created): the profile and every file it names, verify
    /// playbooks that would run on the controller, connection variables in its `-e` files, the
    /// repo policy (tests/integration/policy.yml), the vault (Let's Encrypt tiers), the real
    /// inventory, the tools, the VM's name and backend, disk, then the memory reservation,
    /// machine-wide. Then the golden image (cached, downloaded or built; pinned for the run),
    /// the deepest cached disk layer whose key still matches, the boot, each step no layer
    /// holds (the last step always), the power cycle that stores each earlier step's layer (a
    /// reboot test of that step), the idempotence pass, the captures and the reboot between
    /// them, the built-in checks and the verify playbooks.
    ///
    /// A pass removes the VM; a failure keeps it running with a diagnostics bundle in
    /// ~/integration-runs/<vm>/ (with --remove-failed it is removed once the bundle is written;
    /// in a run of several profiles it is kept powered off, and `cargo xtask start <vm>` boots
    /// it again); an interrupt removes it. A VM kept running keeps its memory reserved until
    /// `down` or `prune`. A RED profile (one with `expect`) exits 0 only when its failed checks
    /// are exactly those its `expect` names (an expected failure); anything else fails it.
    ///
    /// The JSON report goes to stdout (and --report), then a summary to stderr; --junit writes
    /// the same as JUnit XML. Several hosts run as child processes, one VM each; each child's
    /// log and report are tests/integration/.run/parallel/<host>.log and .json, and the exit
    /// status is the worst run's.
    It(it::ItArgs),
    /// Boot a VM mirroring HOST and wait until SSH answers and cloud-init is done.
    ///
    /// It boots the golden image (no disk layers) and becomes this checkout's current VM, the
    /// one `apply`, `reboot`, `assert`, `console` and `down` act on; its name goes to stdout.
    /// Refused while the current VM runs (one at a time per checkout: `down` it first).
    Up(steps::Up),
    /// Apply HOST's profile (its playbooks, overrides and cert tier) to the current VM.
    ///
    /// Every step once, no idempotence pass. HOST may differ from the host the VM was booted
    /// for (said on stderr): applying the GREEN profile to the VM of a RED is the fix, tried on
    /// one VM. Only `it` keeps Ansible's output in a file (ansible.log): here, on a terminal,
    /// -v shows it as it comes.
    Apply(steps::ProfileStep),
    /// Reboot the current VM for real; succeeds only when it answers with a new boot_id.
    Reboot(steps::Reboot),
    /// Run HOST's checks against the current VM: the built-in ones (system running, no route to
    /// the real fleet, the controller's probes) and the profile's verify playbooks.
    ///
    /// There is no "before" here: no reboot diff and no idempotence pass (`it` has them). The
    /// capture it takes is written to the run directory's state-after.json.
    Assert(steps::ProfileStep),
    /// Boot a kept, powered-off VM again to inspect it (a failed run of several profiles keeps
    /// its VM so, and names it): its disk, forwards and console as they were. It becomes the
    /// current VM (`cargo xtask down` removes it).
    Start(steps::Start),
    /// Remove the current VM and its files.
    ///
    /// With no current VM it says so and exits 0 (`prune` removes what crashed runs left).
    /// The diagnostics bundle of a failed run stays: delete ~/integration-runs/<vm> when done.
    Down(steps::Down),
    /// Print the current VM's serial console log.
    Console(steps::Console),
    /// Remove every test VM (`boma-it-*`) of this checkout, its processes, overlay, seed,
    /// socket and run files, also after a crash. Stops only what the harness spawned.
    ///
    /// First the processes this checkout's harness spawned and left running (an
    /// ansible-playbook, an ssh): only those its spawn journal recorded that are still the very
    /// process recorded (same host boot, pid, start time, user and program), SIGTERM to its
    /// process group, SIGKILL after 5 s, each named. Then this checkout's VMs, each through
    /// the backend that runs it (libvirt only where its daemon answers from this network
    /// namespace), its run directories and fleet segments, and their memory reservations.
    /// Never the disk layers, the diagnostics bundles, the image cache or another checkout's
    /// VMs. Refused while another harness command runs in this checkout.
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
    /// Run every repository check in order, past failures: check-tags, cargo fmt, clippy, the
    /// workspace's tests with no orphaned or pending insta snapshot, yamllint, ansible-lint,
    /// ansible-playbook --syntax-check of each playbook. Exits 1 if any failed.
    ///
    /// The checks: check-tags; `cargo fmt --all --check`; `cargo clippy --workspace
    /// --all-targets -- -D warnings`; `cargo test --workspace` with INSTA_UPDATE=no (a changed
    /// snapshot fails, nothing is written), then every `.snap` no test asserted is an orphan
    /// and every `.snap.new` or `.pending-snap` is pending, each a finding (what `cargo insta
    /// test --check --unreferenced=reject` checks, without cargo-insta); `yamllint --strict .`;
    /// `ansible-lint`; `ansible-playbook --syntax-check` of each playbook in playbooks/ and of
    /// every playbook a profile applies or verifies with. Ansible's tools come from .venv when
    /// it is there (`make lint` creates it), else from PATH. It ends with a summary table on
    /// stdout and `lint: all N checks passed` or `lint: M of N checks failed`.
    ///
    /// To accept a snapshot change on purpose: `INSTA_UPDATE=always cargo test -p <crate>`,
    /// then review the diff of the `.snap` files in git before committing them. An orphan is
    /// deleted (`git rm`) or its test restored.
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
