//! `cargo xtask doctor`: can this machine run the integration cycle? One line per tool and
//! subject on stdout, each problem with its fix; exit 0 when `it` can run, 2 when it cannot.
//! It looks only: it installs nothing, creates nothing and boots no probe VM.

use boma_exec::say;
use std::process::ExitCode;

use camino::Utf8Path;
use xshell::Shell;

/// Gather the facts of this machine, judge them, print the verdict. `cache_dir` and
/// `runs_root` are the harness's (`Settings::cache_dir`, `Settings::runs_root`).
pub fn doctor(sh: &Shell, repo: &Utf8Path, cache_dir: &Utf8Path, runs_root: &Utf8Path) -> ExitCode {
    let facts = boma_doctor::Facts::gather(sh, repo, cache_dir, runs_root);
    // A Ctrl-C during the version probes leaves facts that say "unreadable": not a verdict.
    if let Some(interrupted) = boma_exec::interrupt::pending() {
        say!("doctor: {interrupted}");
        return ExitCode::from(u8::try_from(interrupted.exit_code()).unwrap_or(1));
    }
    let diagnosis = boma_doctor::diagnose(&facts);
    print!("{}", boma_doctor::render(&diagnosis));
    if diagnosis.can_run {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
