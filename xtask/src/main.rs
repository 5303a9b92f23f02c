//! `cargo xtask`: the thin command line over boma's crates.

use clap::Parser;

/// boma's integration harness and repository checks.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
