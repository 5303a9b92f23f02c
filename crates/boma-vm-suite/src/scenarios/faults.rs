//! `faults`: the harness interrupted or killed at the worst moments — Ctrl-C during an image
//! build with its disk on a loop device, Ctrl-C while `up` waits for the first boot, SIGKILL
//! during apply then `prune` — and after each, nothing left. `prune` stops only what the spawn
//! journal recorded: an operator's process that merely names the run directory survives it.
//! Then a guest's kernel panicking for real (sysrq `c` from a unit at boot): in the first boot
//! it is reset once and `up` goes on; after a reboot the wait ends at once, saying so; and a
//! guest that restarts itself after the panic (`kernel.panic=1`) and answers again still fails
//! its reboot.
//! (A guest that sits in emergency mode after its reboot is catalogue mode 7's job.)
//! Last, SIGHUP (a dropped ssh session) handled like Ctrl-C, and a parallel run whose child is
//! SIGKILLed (as the OOM killer does) and which is then interrupted: every host keeps its line.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use boma_exec::CmdExt;
use boma_report::RunResult;
use nix::sys::signal::Signal;
use xshell::{Shell, cmd};

use super::{
    Suite, current, ensure_image, exit_code, guest_run, require_no_leftovers, signal, spawn, step,
    wait_exit, wait_for, xtask_in,
};
use crate::leftovers;

pub fn faults(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "faults";
    interrupted_build(suite)?;
    ensure_image(suite, S)?;

    // 1. SIGINT while `up` waits for SSH: the VM and its files are removed, exit 130.
    interrupted_boot(suite, Signal::SIGINT)?;

    // 2. SIGKILL of the harness during apply: the VM and ansible outlive it; prune stops what
    // the journal recorded, and nothing else.
    step(suite, S, &["up", "askari"], 0)?;
    let record = current(suite)?;
    let mut apply = spawn(suite, &["apply", "askari"], &[])?;
    wait_for(Duration::from_secs(180), "ansible-playbook to run", || {
        !leftovers::count(&suite.repo).orphans.is_empty()
    })?;
    std::thread::sleep(Duration::from_secs(10));
    signal(apply.pid(), Signal::SIGKILL)?;
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
    require_no_leftovers(suite, "prune after SIGKILL during apply")?;

    kernel_panics(suite)?;
    // 5. SIGHUP (a dropped ssh session) while `up` waits for SSH is handled like SIGINT and
    // SIGTERM: the VM and its files are removed, exit 129.
    interrupted_boot(suite, Signal::SIGHUP)?;
    parallel_child_killed(suite)
}

/// `sent` to `up` while it waits for the first boot: it exits 128+n, and nothing is left.
fn interrupted_boot(suite: &mut Suite, sent: Signal) -> anyhow::Result<()> {
    let mut up = spawn(suite, &["up", "askari"], &[])?;
    wait_for(Duration::from_secs(120), "the VM process to start", || {
        !leftovers::count(&suite.repo).processes.is_empty()
    })?;
    std::thread::sleep(Duration::from_secs(5));
    signal_exits(
        suite,
        &mut up,
        "`up`",
        "boot",
        sent,
        Duration::from_secs(120),
    )?;
    require_no_leftovers(suite, &format!("{} during boot", sent.as_str()))
}

/// The VMs running now, by name.
fn vm_names() -> Vec<String> {
    boma_vm::host::procs::vm_processes()
        .into_iter()
        .map(|p| p.name.to_string())
        .collect()
}

/// Fault 6: `it askari ubongo -j 1`. The first child is SIGKILLed while its VM boots: it cannot
/// tear down, so the parent removes its VM, files and reservation and starts the next host.
/// Then Ctrl-C to the parent while the second child boots: it tears down, the parent exits
/// 130, and the report still has both hosts — the killed one `error` (saying what was
/// removed), the interrupted one `interrupted`.
fn parallel_child_killed(suite: &mut Suite) -> anyhow::Result<()> {
    let report = suite.scratch("parallel-faults")?.join("report.json");
    let mut parent = spawn(
        suite,
        &[
            "it",
            "askari",
            "ubongo",
            "-j",
            "1",
            "--report",
            report.as_str(),
        ],
        &[],
    )?;
    let mut first = Vec::new();
    wait_for(Duration::from_secs(300), "the first child's VM", || {
        first = vm_names();
        !first.is_empty()
    })?;
    let killed_vm = first[0].clone();
    let run = suite.repo.join("tests/integration/.run");
    let marker = format!("{run}/parallel/");
    let children: Vec<_> = boma_vm::host::procs::orphans(&[marker.as_str()])
        .into_iter()
        .filter(|p| p.cmdline.contains(" it ") && p.cmdline.contains("--run-id"))
        .collect();
    let child = children
        .iter()
        .find(|p| {
            p.cmdline
                .split_whitespace()
                .any(|w| killed_vm.ends_with(&format!("-{w}")))
        })
        .with_context(|| format!("no child `xtask it … --run-id` of {killed_vm}: {children:?}"))?;
    std::thread::sleep(Duration::from_secs(5));
    signal(child.pid, Signal::SIGKILL)?;
    wait_for(
        Duration::from_secs(300),
        "the parent to remove the killed child's VM and start the next host",
        || {
            let now = vm_names();
            !now.contains(&killed_vm) && !now.is_empty()
        },
    )?;
    std::thread::sleep(Duration::from_secs(5));
    signal_exits(
        suite,
        &mut parent,
        "`it askari ubongo -j 1`",
        "a parallel run's second child",
        Signal::SIGINT,
        Duration::from_secs(180),
    )?;
    let text = std::fs::read_to_string(&report).with_context(|| format!("no report {report}"))?;
    let parsed = crate::verdict::parse_report(&text)?;
    let seen: Vec<(String, RunResult)> = parsed
        .runs
        .iter()
        .map(|r| (r.host.clone(), r.result))
        .collect();
    eprintln!("parallel run after SIGKILL and SIGINT: {seen:?}");
    ensure!(
        seen.len() == 2,
        "expected both hosts in the report: {seen:?}"
    );
    let killed = parsed
        .runs
        .iter()
        .find(|r| r.result == RunResult::Error)
        .with_context(|| format!("no run reads `error`: {seen:?}"))?;
    let why = killed.error.as_deref().unwrap_or("");
    ensure!(
        why.contains("killed by SIGKILL")
            && why.contains(&format!("its VM {killed_vm}"))
            && why.contains("its memory reservation"),
        "the killed child's line does not say what was removed: {why}"
    );
    ensure!(
        parsed
            .runs
            .iter()
            .any(|r| r.result == RunResult::Interrupted),
        "no run reads `interrupted`: {seen:?}"
    );
    require_no_leftovers(suite, "a parallel run with a killed child, then SIGINT")
}

/// A unit that makes the guest's kernel panic at boot (sysrq `c`), once: it leaves its marker
/// on the disk first, and a boot that finds the marker skips it. It runs as soon as the root
/// filesystem is writable (early boot, before cloud-init and the network): under TCG a unit
/// wanted by multi-user.target ran 66–106 s into the boot, which the scenario waited out twice.
/// It runs after systemd-sysctl, so that a `kernel.panic` in /etc/sysctl.d holds for its panic.
const CRASH_ONCE: &str = "sudo tee /etc/systemd/system/boma-crash-once.service >/dev/null <<'UNIT'
[Unit]
Description=boma faults: panic the kernel once at boot
ConditionPathExists=!/var/lib/boma-crashed-once
DefaultDependencies=no
After=local-fs.target systemd-sysctl.service
Before=sysinit.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'touch /var/lib/boma-crashed-once && sync && echo c > /proc/sysrq-trigger'
[Install]
WantedBy=sysinit.target
UNIT
sudo systemctl enable boma-crash-once.service && sync";

/// Faults 3 and 4: an image whose first boot panics, which `up` resets once so that the guest
/// comes up; then the same guest panicking again in the boot after `reboot`, whose wait ends
/// long before its limit with the panic in the error.
fn kernel_panics(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "faults";
    // The image: a golden-image guest given the unit, powered off cleanly, flattened.
    step(suite, S, &["up", "askari"], 0)?;
    let record = current(suite)?;
    guest_run(&record, CRASH_ONCE)?;
    // The connection may drop before systemctl answers: only the guest powering off counts.
    let _ = guest_run(&record, "sudo systemctl poweroff");
    wait_for(Duration::from_secs(300), "the guest to power off", || {
        leftovers::count(&suite.repo).processes.is_empty()
    })?;
    let image = suite.scratch("panics")?.join("crash-once.qcow2");
    let overlay = record.run_dir().overlay();
    let sh = Shell::new()?;
    cmd!(sh, "qemu-img convert -O qcow2 {overlay} {image}")
        .exec()
        .run()?;
    step(suite, S, &["prune"], 0)?;

    // 3. Its first boot panics: reset once, then up.
    let started = Instant::now();
    let out = xtask_in(
        suite,
        &suite.repo,
        &["up", "askari", "--image", image.as_str()],
        &[],
    )?;
    suite.time(
        S,
        "xtask up askari (its first boot panics)",
        started.elapsed(),
    );
    ensure!(
        out.status.success(),
        "`xtask up` of an image whose first boot panics once failed; its last lines:\n{}",
        out.stderr
    );
    ensure!(
        out.stderr
            .contains("its first boot ended in a kernel panic")
            && out.stderr.contains("sysrq triggered crash")
            && out.stderr.contains("resetting it once"),
        "`xtask up` came up without saying it reset a panicked first boot; its last lines:\n{}",
        out.stderr
    );
    let record = current(suite)?;
    let console = std::fs::read_to_string(record.console_log())
        .with_context(|| format!("cannot read {}", record.console_log()))?;
    let boots = console.matches("] Linux version ").count();
    ensure!(
        boots == 2 && console.contains("Kernel panic - not syncing: sysrq triggered crash"),
        "expected two boots on the console, the first ending in the sysrq panic; it shows {boots} boot(s)"
    );
    guest_run(&record, "test -e /var/lib/boma-crashed-once")
        .context("the guest that came up is not the one that panicked (no marker)")?;
    eprintln!(
        "up reset the panicked first boot once; the guest came up ({boots} boots on its console)"
    );

    // 3b. kernel.panic=1: the boot after the reboot panics, the guest restarts itself a second
    // later and answers with a new boot_id. Judged by its last boot only, that reboot passed.
    guest_run(
        &record,
        "echo 'kernel.panic = 1' | sudo tee /etc/sysctl.d/90-boma-panic-restarts.conf >/dev/null && sudo rm /var/lib/boma-crashed-once && sync",
    )?;
    let started = Instant::now();
    let out = xtask_in(suite, &suite.repo, &["reboot"], &[])?;
    suite.time(
        S,
        "xtask reboot (the boot after it panics and restarts)",
        started.elapsed(),
    );
    ensure!(
        exit_code(out.status) == 1
            && out.stderr.contains("its kernel panicked")
            && out.stderr.contains("sysrq triggered crash"),
        "`xtask reboot` into a panic the guest restarts past exited with {}, expected 1 naming the panic; its last lines:\n{}",
        exit_code(out.status),
        out.stderr
    );
    // The guest restarted itself (the marker skips the crash): it answers again.
    wait_for(
        Duration::from_secs(300),
        "the guest to come back by itself",
        || guest_run(&record, "test -e /var/lib/boma-crashed-once").is_ok(),
    )?;
    eprintln!(
        "reboot into a panic the guest restarted past failed, naming it ({})",
        if out.stderr.contains("boot(s) after it") {
            "seen with the boot after it"
        } else {
            "seen before the restart"
        }
    );
    // Back to a panic that halts.
    guest_run(
        &record,
        "sudo rm /etc/sysctl.d/90-boma-panic-restarts.conf && sudo sysctl -q kernel.panic=0 && sync",
    )?;

    // 4. The next boot panics again: the reboot's wait ends at once, naming the panic.
    guest_run(&record, "sudo rm /var/lib/boma-crashed-once && sync")?;
    let started = Instant::now();
    let out = xtask_in(suite, &suite.repo, &["reboot"], &[])?;
    let took = started.elapsed();
    suite.time(S, "xtask reboot (the boot after it panics)", took);
    ensure!(
        exit_code(out.status) == 1,
        "`xtask reboot` into a panic exited with {}, expected 1; its last lines:\n{}",
        exit_code(out.status),
        out.stderr
    );
    ensure!(
        out.stderr
            .contains("will never answer (the boot after the reboot): its kernel panicked")
            && out.stderr.contains("sysrq triggered crash"),
        "`xtask reboot` into a panic did not name it; its last lines:\n{}",
        out.stderr
    );
    // The wait's limit is 420 s under TCG: a verdict well before it came from the console.
    ensure!(
        took < Duration::from_secs(300),
        "`xtask reboot` into a panic took {}s: the wait was not cut short",
        took.as_secs()
    );
    eprintln!(
        "reboot into a panic ended after {}s, naming it",
        took.as_secs()
    );
    step(suite, S, &["prune"], 0)?;
    require_no_leftovers(suite, "prune after the kernel panics")
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
        signal(build.pid(), Signal::SIGINT)?;
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
    signal_exits(
        suite,
        &mut build,
        "`image build`",
        "image build",
        Signal::SIGINT,
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

/// `sent` to `child` (the harness `command`, busy with `during`): it must exit 128+n within
/// `limit`; the time it took is one of the scenario's timings.
fn signal_exits(
    suite: &mut Suite,
    child: &mut boma_exec::Started,
    command: &str,
    during: &str,
    sent: Signal,
    limit: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    signal(child.pid(), sent)?;
    let code = wait_exit(child, limit)?;
    let took = started.elapsed();
    let name = sent.as_str();
    eprintln!(
        "{command} exited with {code} {:.1}s after {name}",
        took.as_secs_f64()
    );
    suite.time("faults", format!("{name} during {during} → exit"), took);
    let expected = 128 + sent as i32;
    ensure!(
        code == expected,
        "{command} interrupted by {name} exited with {code}, expected {expected}"
    );
    Ok(())
}
