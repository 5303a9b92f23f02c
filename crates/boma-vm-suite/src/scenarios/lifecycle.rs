//! `lifecycle`: the operator's single steps on a real guest — `up`, SSH, `reboot` and `reboot
//! --hard` each proven by a new boot_id, `down` — then a VM killed with SIGKILL, which `prune`
//! clears.

use std::time::Duration;

use anyhow::{Context, ensure};

use super::{Suite, boot_id, current, ensure_image, guest_run, require_no_leftovers, step};
use crate::leftovers;

/// up → ssh → reboot (new boot_id) → reboot --hard (new boot_id) → down → nothing left; then a
/// VM killed with SIGKILL, and `prune` leaves nothing either.
pub fn lifecycle(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "lifecycle";
    ensure_image(suite, S)?;
    step(suite, S, &["up", "askari"], 0)?;
    let record = current(suite)?;
    let answer = guest_run(
        &record,
        "uname -r && sudo -n true && echo sudo-ok && systemctl is-system-running || true",
    )?;
    eprintln!("guest says: {answer}");
    ensure!(
        answer.contains("sudo-ok"),
        "passwordless sudo does not work on the guest: {answer}"
    );

    let first = boot_id(&record)?;
    step(suite, S, &["reboot"], 0)?;
    let second = boot_id(&current(suite)?)?;
    ensure!(first != second, "boot_id unchanged after `reboot`: {first}");
    step(suite, S, &["reboot", "--hard"], 0)?;
    let third = boot_id(&current(suite)?)?;
    ensure!(
        second != third,
        "boot_id unchanged after `reboot --hard`: {second}"
    );
    step(suite, S, &["down"], 0)?;
    require_no_leftovers(suite, "down")?;

    step(suite, S, &["up", "askari"], 0)?;
    let record = current(suite)?;
    let pid = record.pid.context("the QEMU backend records a pid")?;
    eprintln!("+ kill -KILL {pid}  # simulate a crash of {}", record.name);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let left = leftovers::count(&suite.repo);
    ensure!(
        left.processes.is_empty() && !left.run_dirs.is_empty(),
        "after SIGKILL expected files but no process: {}",
        left.describe()
    );
    step(suite, S, &["prune"], 0)?;
    require_no_leftovers(suite, "prune after SIGKILL")
}
