//! `cargo xtask substrate`: [`boma_substrate::ensure`], said on stderr. Passed when the
//! substrate is there and usable by this login; refused when a prerequisite (or a new login)
//! is missing; failed when the role failed.

use boma_exec::say;
use boma_substrate::SubstrateOutcome;

use crate::edge::{Failure, Outcome};
use crate::settings::Checkout;

pub fn run(checkout: &Checkout) -> Result<Outcome, Failure> {
    match boma_substrate::ensure(&checkout.sh, &checkout.repo)? {
        SubstrateOutcome::Present => {
            say!("substrate: present, nothing to install");
            Ok(Outcome::Passed)
        }
        SubstrateOutcome::Installed { packages, relogin } => {
            say!("substrate: installed ({})", packages.join(" "));
            match relogin {
                None => Ok(Outcome::Passed),
                Some(user) => Err(Failure::refused(format!(
                    "substrate: {user} now belongs to the libvirt and kvm groups, which apply from the next login (the image cache is root:libvirt): log out and in again, then run the same command again"
                ))),
            }
        }
    }
}
