//! `faults`: the harness interrupted or killed at the worst moments — Ctrl-C during an image
//! build with its disk on a loop device, Ctrl-C while `up` waits for the first boot, SIGKILL
//! during apply then `prune` — and after each, nothing left. `prune` stops only what the spawn
//! journal recorded: an operator's process that merely names the run directory survives it.
//! (A guest that never comes back is catalogue mode 7's job.)

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use boma_exec::CmdExt;
use xshell::{Shell, cmd};

use super::{
    Suite, current, ensure_image, require_no_leftovers, signal, spawn, step, wait_exit, wait_for,
};
use crate::leftovers;

pub fn faults(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "faults";
    interrupted_build(suite)?;
    ensure_image(suite, S)?;

    // 1. SIGINT while `up` waits for SSH: the VM and its files are removed, exit 130.
    let mut up = spawn(suite, &["up", "askari"], &[])?;
    wait_for(Duration::from_secs(120), "the VM process to start", || {
        !leftovers::count(&suite.repo).processes.is_empty()
    })?;
    std::thread::sleep(Duration::from_secs(5));
    sigint_exits_130(suite, &mut up, "`up`", "boot", Duration::from_secs(120))?;
    require_no_leftovers(suite, "SIGINT during boot")?;

    // 2. SIGKILL of the harness during apply: the VM and ansible outlive it; prune stops what
    // the journal recorded, and nothing else.
    step(suite, S, &["up", "askari"], 0)?;
    let record = current(suite)?;
    let mut apply = spawn(suite, &["apply", "askari"], &[])?;
    wait_for(Duration::from_secs(180), "ansible-playbook to run", || {
        !leftovers::count(&suite.repo).orphans.is_empty()
    })?;
    std::thread::sleep(Duration::from_secs(10));
    signal(apply.pid(), nix::sys::signal::Signal::SIGKILL)?;
    let _ = wait_exit(&mut apply, Duration::from_secs(30))?;
    let left = leftovers::count(&suite.repo);
    eprintln!("after SIGKILL during apply: {}", left.describe());
    ensure!(
        !left.processes.is_empty() && !left.orphans.is_empty(),
        "expected the VM and ansible to outlive the harness: {}",
        left.describe()
    );
    // An operator watching the console: its command line names the run directory, as the
    // harness's own children's do, but the harness never spawned it.
    let console = record.console_log();
    let sh = Shell::new()?;
    let mut watcher = cmd!(sh, "tail -n 0 -f {console}").exec().start()?;
    let watcher_pid = watcher.pid();
    let pruned = step(suite, S, &["prune"], 0);
    let survived = watcher.try_wait()?.is_none();
    watcher.stop();
    pruned?;
    ensure!(
        survived,
        "prune stopped `tail -f {console}` (pid {watcher_pid}), an operator's process it never spawned"
    );
    eprintln!("prune left the operator's `tail -f {console}` (pid {watcher_pid}) running");
    require_no_leftovers(suite, "prune after SIGKILL during apply")
}

/// SIGINT to `image build` once its disk is on a loop device (mounted, mid-install): exit
/// 130, and the build's teardown leaves no mount, loop device, process, scratch file or image.
fn interrupted_build(suite: &mut Suite) -> anyhow::Result<()> {
    let cache = suite.scratch("build-cache")?;
    let mut build = spawn(
        suite,
        &["image", "build"],
        &[("BOMA_IT_CACHE", cache.as_str())],
    )?;
    let waited = wait_for(
        Duration::from_secs(600),
        "the image build to attach its disk",
        || leftovers::build_has_loop_device(&cache) || matches!(build.try_wait(), Ok(Some(_))),
    );
    if let Err(e) = waited {
        signal(build.pid(), nix::sys::signal::Signal::SIGINT)?;
        let _ = wait_exit(&mut build, Duration::from_secs(120));
        return Err(e);
    }
    ensure!(
        leftovers::build_has_loop_device(&cache),
        "the image build ended before it attached its disk"
    );
    // Let it get into the mounted part of the build.
    std::thread::sleep(Duration::from_secs(2));
    eprintln!("during the build: {:?}", leftovers::build_leftovers(&cache));
    sigint_exits_130(
        suite,
        &mut build,
        "`image build`",
        "image build",
        Duration::from_secs(180),
    )?;
    let left = leftovers::build_leftovers(&cache);
    eprintln!(
        "leftovers after SIGINT during image build: {} {left:?}",
        left.len()
    );
    ensure!(left.is_empty(), "the interrupted build left: {left:?}");
    std::fs::remove_dir_all(&cache).with_context(|| format!("cannot remove {cache}"))?;
    Ok(())
}

/// SIGINT to `child` (the harness `command`, busy with `during`): it must exit 130 within
/// `limit`; the time it took is one of the scenario's timings.
fn sigint_exits_130(
    suite: &mut Suite,
    child: &mut boma_exec::Started,
    command: &str,
    during: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    signal(child.pid(), nix::sys::signal::Signal::SIGINT)?;
    let code = wait_exit(child, limit)?;
    let took = started.elapsed();
    eprintln!(
        "{command} exited with {code} {:.1}s after SIGINT",
        took.as_secs_f64()
    );
    suite.time("faults", format!("SIGINT during {during} → exit"), took);
    ensure!(
        code == 130,
        "{command} interrupted by SIGINT exited with {code}, expected 130"
    );
    Ok(())
}
