//! Build the golden image by hand: `cargo run -p boma-golden --example build-golden -- <work-dir>`.
//!
//! Needs root. Prints the image and manifest paths on stdout; progress and the command log go
//! to stderr. Ctrl-C stops the current step and takes the scratch space apart before exiting.
#![allow(clippy::print_stdout, clippy::print_stderr)] // A hand tool: it reports to the terminal.

use std::process::ExitCode;

use boma_golden::{BuildConfig, build, preflight};

fn main() -> ExitCode {
    let Some(work_dir) = std::env::args().nth(1) else {
        eprintln!("usage: build-golden <work-dir>");
        return ExitCode::from(2);
    };
    if let Err(e) = boma_exec::interrupt::install() {
        eprintln!("error: could not route signals: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = preflight() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let sh = match xshell::Shell::new() {
        Ok(sh) => sh,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match build(&sh, &BuildConfig::trixie(work_dir)) {
        Ok(built) => {
            println!("{}", built.qcow2);
            println!("{}", built.packages);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e.interrupted() {
                Some(i) => ExitCode::from(u8::try_from(i.exit_code()).unwrap_or(1)),
                None => ExitCode::FAILURE,
            }
        }
    }
}
