//! The steps an operator can run one at a time against the checkout's current VM: `up`,
//! `apply`, `reboot`, `assert`, `start`, `down`, `console`, `prune`. Each is one harness call.

use boma_harness::HarnessError;
use clap::Args;

use crate::edge::{self, Failure, Outcome};
use crate::settings::{BackendArg, CertsArg, Checkout, ImageArgs, VaultArg};

#[derive(Args, Debug)]
pub struct Up {
    /// The host to mirror: its profile is profiles/<HOST>.json (e.g. askari).
    host: String,
    #[command(flatten)]
    image: ImageArgs,
    #[command(flatten)]
    backend: BackendArg,
}

/// `apply` and `assert`: a profile's playbooks or checks against the current VM.
#[derive(Args, Debug)]
pub struct ProfileStep {
    /// The host to mirror: its profile is profiles/<HOST>.json (e.g. askari).
    host: String,
    #[command(flatten)]
    certs: CertsArg,
    #[command(flatten)]
    vault: VaultArg,
}

impl ProfileStep {
    /// `step` with the harness's context, the host and the tier.
    fn run<T>(
        self,
        checkout: &Checkout,
        step: impl FnOnce(&boma_harness::Ctx, &str, boma_inventory::CertTier) -> Result<T, HarnessError>,
    ) -> Result<Outcome, Failure> {
        let settings = checkout.harness(|s| self.vault.lay_over(s))?;
        checkout.with_ctx(&settings, |ctx| step(ctx, &self.host, self.certs.tier))?;
        Ok(Outcome::Passed)
    }
}

#[derive(Args, Debug)]
pub struct Reboot {
    /// A hardware reset instead of a guest-initiated reboot.
    #[arg(long)]
    hard: bool,
}

#[derive(Args, Debug)]
pub struct Start {
    /// The VM's name, as the run named it (boma-it-<host>-<id>).
    pub vm: String,
}

#[derive(Args, Debug)]
pub struct Down {
    /// Only power the VM off; keep its overlay, console log and record for a post-mortem.
    #[arg(long)]
    keep: bool,
}

#[derive(Args, Debug)]
pub struct Console {
    /// Print the log's path instead of its content.
    #[arg(long)]
    path: bool,
}

/// Boot a VM mirroring the host; its name on stdout.
pub fn up(checkout: &Checkout, args: Up) -> Result<Outcome, Failure> {
    let settings = checkout.harness(|s| {
        args.image.lay_over(s);
        args.backend.lay_over(s);
    })?;
    let record = checkout.with_ctx(&settings, |ctx| boma_harness::up(ctx, &args.host))?;
    edge::print(&format!("{}\n", record.name));
    Ok(Outcome::Passed)
}

pub fn apply(checkout: &Checkout, args: ProfileStep) -> Result<Outcome, Failure> {
    args.run(checkout, boma_harness::apply)
}

pub fn reboot(checkout: &Checkout, args: Reboot) -> Result<Outcome, Failure> {
    let settings = checkout.harness(|_| {})?;
    checkout.with_ctx(&settings, |ctx| boma_harness::reboot(ctx, args.hard))?;
    Ok(Outcome::Passed)
}

pub fn assert(checkout: &Checkout, args: ProfileStep) -> Result<Outcome, Failure> {
    args.run(checkout, boma_harness::assert)
}

/// Boot a kept, powered-off VM again; its name on stdout.
pub fn start(checkout: &Checkout, args: Start) -> Result<Outcome, Failure> {
    let settings = checkout.harness(|_| {})?;
    let record = checkout.with_ctx(&settings, |ctx| boma_harness::start(ctx, &args.vm))?;
    edge::print(&format!("{}\n", record.name));
    Ok(Outcome::Passed)
}

pub fn down(checkout: &Checkout, args: Down) -> Result<Outcome, Failure> {
    let settings = checkout.harness(|_| {})?;
    checkout.with_ctx(&settings, |ctx| boma_harness::down(ctx, args.keep))?;
    Ok(Outcome::Passed)
}

/// The current VM's serial console on stdout, or its path.
pub fn console(checkout: &Checkout, args: Console) -> Result<Outcome, Failure> {
    let settings = checkout.harness(|_| {})?;
    let log = checkout.with_ctx(&settings, boma_harness::console)?;
    if args.path {
        edge::print(&format!("{log}\n"));
    } else {
        let text = std::fs::read(&log).map_err(|e| HarnessError::io(&log, e))?;
        edge::print(&String::from_utf8_lossy(&text));
    }
    Ok(Outcome::Passed)
}

pub fn prune(checkout: &Checkout) -> Result<Outcome, Failure> {
    let settings = checkout.harness(|_| {})?;
    checkout.with_ctx(&settings, boma_harness::prune)?;
    Ok(Outcome::Passed)
}
