//! `cargo xtask doctor`: can this machine run the integration cycle? One line per tool and
//! subject on stdout, each problem with its fix; passed when `it` can run, refused when it
//! cannot. It looks only: it installs nothing, creates nothing and boots no probe VM.

use crate::edge::{self, Failure, Outcome};
use crate::settings::Checkout;

/// Gather the facts of this machine, judge them, print the verdict.
pub fn run(checkout: &Checkout) -> Result<Outcome, Failure> {
    let settings = checkout.settings()?;
    let facts = boma_doctor::Facts::gather(
        &checkout.sh,
        &checkout.repo,
        &settings.cache_dir,
        &settings.runs_root,
    );
    // A Ctrl-C during the version probes leaves facts that say "unreadable": not a verdict.
    if let Some(interrupted) = boma_exec::interrupt::pending() {
        return Err(interrupted.into());
    }
    let diagnosis = boma_doctor::diagnose(&facts);
    edge::print(&boma_doctor::render(&diagnosis));
    Ok(if diagnosis.can_run {
        Outcome::Passed
    } else {
        Outcome::Refused
    })
}
