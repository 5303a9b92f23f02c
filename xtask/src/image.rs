//! `cargo xtask image …`: the golden image cache. Each command holds the run lock shared, as
//! an `it` run does: `prune` (which takes it exclusively) is refused while one acts, so it
//! never stops a build's children mid-build.

use boma_harness::{HarnessError, Settings, golden};
use boma_image::{BUILT, Cache, GENERICCLOUD, Verification};
use clap::Subcommand;

use crate::edge::{self, Failure, Outcome};
use crate::settings::Checkout;

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Download the Debian 13 genericcloud image into the cache and verify its SHA512
    /// (reuses a verified cached copy).
    Fetch {
        /// Download from this URL (a mirror, file:// or a path) instead of Debian's site.
        #[arg(long, env = "BOMA_IT_IMAGE_URL", value_name = "URL")]
        image_url: Option<String>,
        /// The SHA512SUMS to check it against (default: beside the image URL).
        #[arg(long, env = "BOMA_IT_SUMS_URL", value_name = "URL")]
        sums_url: Option<String>,
    },
    /// Build the golden image from Debian packages (needs root) into the cache, recording the
    /// package versions used.
    Build,
    /// Re-hash cached images against the cache's SHA512SUMS; exits 1 if one does not match.
    Verify {
        /// The image to verify (default: every known golden image).
        name: Option<String>,
    },
    /// List cached images with size, origin and verification, as JSON.
    List,
}

impl ImageCommand {
    fn name(&self) -> &'static str {
        match self {
            ImageCommand::Fetch { .. } => "fetch",
            ImageCommand::Build => "build",
            ImageCommand::Verify { .. } => "verify",
            ImageCommand::List => "list",
        }
    }
}

pub fn run(checkout: &Checkout, command: ImageCommand) -> Result<Outcome, Failure> {
    let settings = checkout.harness(|_| {})?;
    let what = format!("cargo xtask image {}", command.name());
    let _lock = boma_vm::Runs::new(&settings.runs_root)
        .lock_shared(&what)
        .map_err(HarnessError::from)?;
    act(&checkout.sh, &settings, command)?;
    Ok(Outcome::Passed)
}

fn act(sh: &xshell::Shell, settings: &Settings, command: ImageCommand) -> Result<(), HarnessError> {
    let cache = Cache::open(&settings.cache_dir)?;
    match command {
        ImageCommand::Fetch {
            image_url,
            sums_url,
        } => {
            let mut request = golden::ImageRequest::from_settings(settings);
            request.image_url = image_url;
            request.sums_url = sums_url;
            let path = cache.ensure_downloaded(&golden::source(&request))?;
            edge::print(&format!("{path}\n"));
        }
        ImageCommand::Build => {
            let path = golden::build(sh, &cache)?;
            edge::print(&format!("{path}\n"));
        }
        ImageCommand::Verify { name } => {
            let names = match &name {
                Some(name) => vec![name.clone()],
                None => vec![GENERICCLOUD.to_owned(), BUILT.to_owned()],
            };
            let mut bad = Vec::new();
            for name in names {
                let verdict = cache.verify(&name)?;
                let line = match &verdict {
                    Verification::Ok => "ok".to_owned(),
                    Verification::Missing => "not cached".to_owned(),
                    Verification::NoEntry => {
                        format!("NO ENTRY in {}/SHA512SUMS: cannot be trusted", cache.dir())
                    }
                    Verification::Mismatch { expected, actual } => {
                        format!("CORRUPT: sha512 {actual}, expected {expected}")
                    }
                };
                edge::print(&format!("{name}: {line}\n"));
                if matches!(
                    verdict,
                    Verification::NoEntry | Verification::Mismatch { .. }
                ) {
                    bad.push(name);
                }
            }
            if !bad.is_empty() {
                return Err(HarnessError::ChecksFailed {
                    failed: bad.iter().map(|n| format!("image {n}")).collect(),
                });
            }
        }
        ImageCommand::List => {
            let images = cache.list()?;
            let json = serde_json::to_string_pretty(&images).expect("a listing serialises");
            edge::print(&format!("{json}\n"));
        }
    }
    Ok(())
}
