//! The scenarios: each drives the real binary and checks real outcomes on a real guest.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use boma_exec::CmdExt;
use boma_vm::{Guest, OpenSsh, RunRecord};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use crate::leftovers;
use crate::{Suite, Timing};

/// The xtask binary as the scenarios run it: from the repo, on the QEMU backend unless a
/// scenario asks for another with `--backend` (the flag wins over the environment).
fn xtask_run(suite: &Suite, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<boma_exec::Run> {
    let sh = Shell::new()?;
    sh.change_dir(&suite.repo);
    let program = &suite.xtask;
    let mut cmd = cmd!(sh, "{program} {args...}").env("BOMA_IT_BACKEND", "qemu");
    for (key, value) in env {
        cmd = cmd.env(key, value);
    }
    Ok(cmd.exec())
}

/// Run the xtask binary; return its exit code and what it printed on stdout.
fn xtask(suite: &Suite, args: &[&str]) -> anyhow::Result<(i32, String)> {
    xtask_env(suite, args, &[])
}

/// Run the xtask binary, require `expected` as exit code, and time it.
fn step(
    suite: &mut Suite,
    scenario: &'static str,
    args: &[&str],
    expected: i32,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let (code, stdout) = xtask(suite, args)?;
    let took = started.elapsed();
    let label = format!("xtask {}", args.join(" "));
    ensure!(
        code == expected,
        "`{label}` exited with {code}, expected {expected}"
    );
    suite.timings.push(Timing {
        scenario,
        step: label,
        took,
    });
    Ok(stdout)
}

fn current(suite: &Suite) -> anyhow::Result<RunRecord> {
    let runs = boma_vm::Runs::new(suite.repo.join("tests/integration/.run"));
    runs.current()?.context("no current run recorded")
}

fn guest_run(record: &RunRecord, command: &str) -> anyhow::Result<String> {
    let sh = Shell::new()?;
    let out = OpenSsh::new(&sh).run(&record.ssh, command, Duration::from_secs(60), false)?;
    ensure!(
        out.success(),
        "`{command}` failed on the guest: {}",
        out.stderr.trim()
    );
    Ok(out.stdout.trim().to_owned())
}

fn boot_id(record: &RunRecord) -> anyhow::Result<String> {
    guest_run(record, "cat /proc/sys/kernel/random/boot_id")
}

/// `xtask prune`, then require that nothing is left.
pub fn prune_and_count(suite: &Suite) -> anyhow::Result<()> {
    let (code, _) = xtask(suite, &["prune"])?;
    ensure!(code == 0, "`xtask prune` exited with {code}");
    let left = leftovers::count(&suite.repo);
    eprintln!("leftovers after prune: {}", left.describe());
    ensure!(
        left.total() == 0,
        "prune left things behind: {}",
        left.describe()
    );
    Ok(())
}

fn require_no_leftovers(suite: &Suite, after: &str) -> anyhow::Result<()> {
    // A killed QEMU may take a moment to be reaped.
    std::thread::sleep(Duration::from_millis(500));
    let left = leftovers::count(&suite.repo);
    eprintln!("leftovers after {after}: {}", left.describe());
    ensure!(
        left.total() == 0,
        "{after} left things behind: {}",
        left.describe()
    );
    Ok(())
}

/// The golden image, built when nothing verified is cached.
fn ensure_image(suite: &mut Suite, scenario: &'static str) -> anyhow::Result<()> {
    let (_, verdicts) = xtask(suite, &["image", "verify"])?;
    if !verdicts.lines().any(|l| l.ends_with(": ok")) {
        step(suite, scenario, &["image", "build"], 0)?;
    }
    Ok(())
}

/// The cached golden image's path.
fn golden_image(suite: &Suite) -> anyhow::Result<Utf8PathBuf> {
    let (_, verdicts) = xtask(suite, &["image", "verify"])?;
    let name = verdicts
        .lines()
        .find_map(|l| l.strip_suffix(": ok"))
        .context("no verified golden image in the cache")?
        .to_owned();
    let cache =
        std::env::var("BOMA_IT_CACHE").unwrap_or_else(|_| "/var/lib/boma-integration".into());
    Ok(Utf8PathBuf::from(cache).join(name))
}

/// The same image booted by a bare `qemu-system` command line: first SSH and cloud-init done,
/// median of `baseline_runs`. The floor the harness's `up` is compared against.
pub fn baseline(suite: &mut Suite) -> anyhow::Result<()> {
    ensure_image(suite, "baseline")?;
    let golden = golden_image(suite)?;
    let sh = Shell::new()?;
    let key_dir = tempdir("baseline-key")?;
    let key = key_dir.join("id");
    cmd!(sh, "ssh-keygen -q -t ed25519 -N '' -f {key}")
        .exec()
        .run()?;
    let public = std::fs::read_to_string(key_dir.join("id.pub"))?;
    let mut first_ssh = Vec::new();
    let mut ready = Vec::new();
    let mut harness_up = Vec::new();
    // Interleaved, raw then harness, so that a noisy neighbour weighs on both alike.
    for run in 0..suite.baseline_runs {
        let dir = tempdir(&format!("baseline-{run}"))?;
        let (ssh, done) = raw_boot(&sh, &golden, &dir, &key, public.trim());
        let _ = std::fs::remove_dir_all(&dir);
        let (ssh, done) = (ssh?, done?);
        let started = Instant::now();
        let (code, _) = xtask(suite, &["up", "askari"])?;
        let up = started.elapsed();
        ensure!(code == 0, "`xtask up askari` exited with {code}");
        let (code, _) = xtask(suite, &["down"])?;
        ensure!(code == 0, "`xtask down` exited with {code}");
        eprintln!(
            "baseline run {}: raw qemu first ssh {:.1}s, cloud-init done {:.1}s; harness up {:.1}s",
            run + 1,
            ssh.as_secs_f64(),
            done.as_secs_f64(),
            up.as_secs_f64()
        );
        first_ssh.push(ssh);
        ready.push(done);
        harness_up.push(up);
    }
    let _ = std::fs::remove_dir_all(&key_dir);
    let n = suite.baseline_runs;
    let (ready, up) = (median(ready), median(harness_up));
    eprintln!(
        "harness `up` / raw boot to cloud-init done: {:.2} (medians of {n})",
        up.as_secs_f64() / ready.as_secs_f64()
    );
    let mut push = |step: String, took| {
        suite.timings.push(Timing {
            scenario: "baseline",
            step,
            took,
        })
    };
    push(
        format!("raw qemu: boot to first ssh (median of {n})"),
        median(first_ssh),
    );
    push(
        format!("raw qemu: boot to cloud-init done (median of {n})"),
        ready,
    );
    push(
        format!("xtask up askari: to ssh + cloud-init done (median of {n})"),
        up,
    );
    Ok(())
}

fn raw_boot(
    sh: &Shell,
    golden: &Utf8PathBuf,
    dir: &Utf8PathBuf,
    key: &Utf8PathBuf,
    public: &str,
) -> (anyhow::Result<Duration>, anyhow::Result<Duration>) {
    let result = (|| -> anyhow::Result<(Duration, Duration)> {
        let overlay = dir.join("o.qcow2");
        let seed = dir.join("seed.img");
        let user_data = dir.join("user-data");
        let meta_data = dir.join("meta-data");
        std::fs::write(
            &user_data,
            format!(
                "#cloud-config\nusers:\n  - name: ansible\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    shell: /bin/bash\n    ssh_authorized_keys: [\"{public}\"]\nssh_pwauth: false\n"
            ),
        )?;
        std::fs::write(
            &meta_data,
            "instance-id: baseline\nlocal-hostname: baseline\n",
        )?;
        cmd!(
            sh,
            "qemu-img create -q -f qcow2 -F qcow2 -b {golden} {overlay} 10G"
        )
        .exec()
        .run()?;
        cmd!(sh, "cloud-localds {seed} {user_data} {meta_data}")
            .exec()
            .run()?;
        let port = boma_vm::host::ports::free_loopback_ports(1)?[0].to_string();
        let netdev = format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22");
        let drive = format!("file={overlay},if=virtio,format=qcow2");
        let seed_drive = format!("file={seed},if=virtio,format=raw");
        let serial = format!("file:{dir}/console.log");
        let pidfile = dir.join("qemu.pid");
        let started = Instant::now();
        cmd!(sh, "qemu-system-x86_64 -name boma-it-baseline -accel tcg,thread=multi -smp 2 -m 3072 -display none -drive {drive} -drive {seed_drive} -netdev {netdev} -device virtio-net-pci,netdev=n0 -serial {serial} -daemonize -pidfile {pidfile}").exec().run()?;
        let pid: i32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
        let guard = KillOnDrop(pid);
        // The same client options the harness uses, so the comparison is of boot, not of ssh.
        let target = boma_vm::SshTarget {
            host: "127.0.0.1".into(),
            port: port.parse()?,
            user: "ansible".into(),
            key: key.clone(),
        };
        let client: Vec<String> = target
            .options()
            .into_iter()
            .chain([target.destination()])
            .collect();
        let ssh_args = &client;
        let mut first = None;
        while started.elapsed() < Duration::from_secs(600) {
            boma_exec::interrupt::check()?;
            let out = cmd!(sh, "ssh {ssh_args...} true")
                .exec()
                .quiet()
                .allow_fail()
                .timeout(Duration::from_secs(20))
                .run()?;
            if out.success() {
                first = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let first = first.context("the raw QEMU guest never answered ssh")?;
        // Retried: cloud-init restarts sshd moments after it first listens.
        let mut done = None;
        while started.elapsed() < Duration::from_secs(600) {
            let out = cmd!(
                sh,
                "ssh {ssh_args...} 'cloud-init status --wait >/dev/null'"
            )
            .exec()
            .quiet()
            .allow_fail()
            .timeout(Duration::from_secs(120))
            .run()?;
            if out.status.code() != Some(255) {
                done = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        drop(guard);
        Ok((first, done.context("cloud-init never finished")?))
    })();
    match result {
        Ok((a, b)) => (Ok(a), Ok(b)),
        Err(e) => {
            let message = format!("{e:#}");
            (Err(e), Err(anyhow::anyhow!(message)))
        }
    }
}

/// SIGKILL a QEMU we started when the measurement ends, however it ends.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && std::path::Path::new(&format!("/proc/{}/cmdline", self.0)).exists()
        {
            if std::fs::read(format!("/proc/{}/cmdline", self.0))
                .map(|c| c.is_empty())
                .unwrap_or(true)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tempdir(label: &str) -> anyhow::Result<Utf8PathBuf> {
    let dir = Utf8PathBuf::from(format!(
        "/var/tmp/boma-vm-suite-{}-{label}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// up → ssh → reboot (new boot_id) → reboot --hard (new boot_id) → down → nothing left; then
/// a VM killed with SIGKILL, and `prune` leaves nothing either.
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

/// The incident on one boot: the RED profile fails verify for the right reasons after a real
/// reboot; the fix, applied to the same VM, passes after another.
pub fn red_green(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "red-green";
    ensure_image(suite, S)?;
    step(suite, S, &["up", "askari-red"], 0)?;
    step(suite, S, &["apply", "askari-red"], 0)?;
    step(suite, S, &["reboot"], 0)?;
    step(suite, S, &["assert", "askari-red"], 1)?;
    let record = current(suite)?;
    let bundle = home().join("integration-runs").join(record.name.as_str());
    red_for_the_right_reasons(&read_results(&record)?["checks"], &bundle)?;

    step(suite, S, &["apply", "askari"], 0)?;
    step(suite, S, &["reboot"], 0)?;
    step(suite, S, &["assert", "askari"], 0)?;
    let results = read_results(&current(suite)?)?;
    let all_ok = results["checks"]
        .as_array()
        .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["ok"] == true));
    ensure!(all_ok, "GREEN did not pass every check: {results}");
    step(suite, S, &["down"], 0)?;
    let _ = std::fs::remove_dir_all(&bundle);
    require_no_leftovers(suite, "down")
}

fn read_results(record: &RunRecord) -> anyhow::Result<serde_json::Value> {
    let path = record.dir.join("verify-results.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("verify wrote no results to {path}"))?;
    Ok(serde_json::from_str(&text)?)
}

fn home() -> Utf8PathBuf {
    Utf8PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

/// Whether the `inet filter` forward chain in an `nft list ruleset` is `policy drop` with no
/// accept rule in it.
pub fn pure_drop_forward(ruleset: &str) -> bool {
    let mut in_inet_filter = false;
    let mut in_forward = false;
    let mut policy_drop = false;
    let mut accepts = false;
    for line in ruleset.lines().map(str::trim) {
        if line.starts_with("table ") {
            in_inet_filter = line.starts_with("table inet filter");
        } else if in_inet_filter && line.starts_with("chain ") {
            in_forward = line.starts_with("chain forward");
        } else if in_inet_filter && in_forward {
            if line.contains("policy drop") {
                policy_drop = true;
            } else if line.contains("accept") {
                accepts = true;
            } else if line == "}" {
                in_forward = false;
            }
        }
    }
    policy_drop && !accepts
}

/// RED's verify results must show the incident and nothing else: Docker up, the forward
/// chain pure drop, the published port dead from the controller (a timeout, not a TLS or name
/// problem), and the diagnostics bundle showing the pure-drop chain. If RED ever passes, the
/// harness is no longer faithful.
fn red_for_the_right_reasons(checks: &serde_json::Value, bundle: &Utf8Path) -> anyhow::Result<()> {
    let docker = find_check(checks, "docker_active")?;
    let forward = find_check(checks, "forward_chain_accepts_containers")?;
    let https = find_check(checks, "https_443")?;
    ensure!(
        docker["ok"] == true,
        "RED must fail with Docker running, not because Docker is down: {docker}"
    );
    ensure!(
        forward["ok"] == false,
        "RED passed the forward-chain check: the harness is not faithful: {forward}"
    );
    ensure!(
        https["ok"] == false,
        "RED's published port answered from the controller: the harness is not faithful: {https}"
    );
    ensure!(
        https["reason"] == "timeout",
        "RED must fail because the port is dead (timeout), not: {https}"
    );
    let ruleset = std::fs::read_to_string(bundle.join("nft-ruleset.txt"))
        .with_context(|| format!("no nft ruleset in the diagnostics bundle {bundle}"))?;
    ensure!(
        pure_drop_forward(&ruleset),
        "the diagnostics do not show a pure-drop forward chain:\n{ruleset}"
    );
    eprintln!(
        "RED failed for the right reasons: Docker up, forward chain pure drop, https timeout from the controller"
    );
    Ok(())
}

/// The first of verify's `checks` whose name starts with `name` (`https_443` names the probe
/// of port 443 whatever its suffix).
fn find_check<'a>(
    checks: &'a serde_json::Value,
    name: &str,
) -> anyhow::Result<&'a serde_json::Value> {
    checks
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .with_context(|| format!("verify did not report {name}: {checks}"))
}

/// The rebooted guest had no route to the real fleet: verify reported `no_route_to_fleet`, and
/// what `ip route get` said is the unreachable route's answer.
fn fleet_isolated(checks: &serde_json::Value) -> anyhow::Result<()> {
    let check = find_check(checks, "no_route_to_fleet")?;
    ensure!(
        check["ok"] == true,
        "the test VM had a route to the real fleet: {check}"
    );
    ensure!(
        check["detail"]
            .as_str()
            .is_some_and(|d| d.contains("No route to host")),
        "the fleet check passed without the unreachable route's answer: {check}"
    );
    eprintln!("fleet isolation: {}", check["detail"]);
    Ok(())
}

fn parse_report(stdout: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(stdout).with_context(|| format!("`it` printed no JSON report: {stdout}"))
}

/// `it <host> --backend <backend>`, expecting `code`: the report, which must say it ran on
/// that backend.
fn it_report(
    suite: &mut Suite,
    scenario: &'static str,
    host: &str,
    backend: &str,
    code: i32,
) -> anyhow::Result<serde_json::Value> {
    let report = parse_report(&step(
        suite,
        scenario,
        &["it", host, "--backend", backend],
        code,
    )?)?;
    ensure!(
        report["backend"] == backend,
        "it {host} ran on another backend than {backend}: {report}"
    );
    Ok(report)
}

/// `it askari` on `backend` passes from scratch and removes its VM.
fn it_passes(suite: &mut Suite, scenario: &'static str, backend: &str) -> anyhow::Result<()> {
    let report = it_report(suite, scenario, "askari", backend, 0)?;
    ensure!(
        report["result"] == "passed",
        "it askari --backend {backend} did not pass: {report}"
    );
    fleet_isolated(&report["checks"])?;
    for phase in report["phases"].as_array().into_iter().flatten() {
        eprintln!(
            "  {scenario} phase: {:>7}s  {}",
            phase["seconds"],
            phase["phase"].as_str().unwrap_or("?")
        );
    }
    require_no_leftovers(suite, "a passing `it`")
}

/// `it askari-red` on `backend` fails verify for the right reasons, keeps its VM for
/// inspection, and `prune` then leaves nothing.
fn it_red_fails(suite: &mut Suite, scenario: &'static str, backend: &str) -> anyhow::Result<()> {
    let report = it_report(suite, scenario, "askari-red", backend, 1)?;
    ensure!(
        report["result"] == "failed",
        "RED must end as a verify failure: {report}"
    );
    let vm = report["vm"].as_str().context("the report names the VM")?;
    let left = leftovers::count(&suite.repo);
    ensure!(
        left.processes.len() == 1 || left.domains.len() == 1,
        "a failed run keeps its VM: {}",
        left.describe()
    );
    let bundle = home().join("integration-runs").join(vm);
    red_for_the_right_reasons(&report["checks"], &bundle)?;
    fleet_isolated(&report["checks"])?;
    let _ = std::fs::remove_dir_all(&bundle);
    step(suite, scenario, &["prune"], 0)?;
    require_no_leftovers(suite, "prune after RED")
}

/// A clean `it askari`: passes from scratch and removes its VM.
pub fn it(suite: &mut Suite) -> anyhow::Result<()> {
    ensure_image(suite, "it")?;
    it_passes(suite, "it", "qemu")
}

/// The committed RED case, through the whole cycle: fails for the right reasons.
pub fn red(suite: &mut Suite) -> anyhow::Result<()> {
    ensure_image(suite, "red")?;
    it_red_fails(suite, "red", "qemu")
}

/// Faults, for real: Ctrl-C during an image build (into a scratch cache) with its disk on a
/// loop device and mounts live; Ctrl-C while waiting for the first boot; SIGKILL of the harness
/// during apply then `prune`; and a guest broken so it never comes back after a reboot. After
/// each, nothing may be left: no mount, loop device or build process; no VM process, run
/// file, socket, or orphaned ansible/ssh.
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

    // 2. SIGKILL of the harness during apply: the VM and ansible outlive it; prune clears all.
    step(suite, S, &["up", "askari"], 0)?;
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
    step(suite, S, &["prune"], 0)?;
    require_no_leftovers(suite, "prune after SIGKILL during apply")?;

    // 3. A guest that never comes back: an fstab entry for a disk that does not exist sends
    // systemd to emergency mode, without SSH. The bounded wait fails, the VM is kept with its
    // console in the bundle.
    step(suite, S, &["up", "askari"], 0)?;
    let record = current(suite)?;
    guest_run(
        &record,
        "echo 'UUID=00000000-dead-beef-0000-000000000000 /mnt/nowhere ext4 defaults 0 2' | sudo tee -a /etc/fstab && sudo mkdir -p /mnt/nowhere",
    )?;
    let started = Instant::now();
    let (code, _) = xtask_env(suite, &["reboot"], &[("BOMA_IT_REBOOT_TIMEOUT", "180")])?;
    suite.timings.push(Timing {
        scenario: S,
        step: "reboot of a broken guest → bounded failure".into(),
        took: started.elapsed(),
    });
    ensure!(
        code == 1,
        "the reboot of a guest that never returns exited with {code}, expected 1"
    );
    let left = leftovers::count(&suite.repo);
    ensure!(
        left.processes.len() == 1,
        "the broken VM must be kept for inspection: {}",
        left.describe()
    );
    let bundle = home().join("integration-runs").join(record.name.as_str());
    let console = std::fs::read_to_string(bundle.join("console.log"))
        .with_context(|| format!("no console in {bundle}"))?;
    ensure!(!console.is_empty(), "the bundle's console log is empty");
    eprintln!(
        "console tail of the broken guest:\n{}",
        console
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let _ = std::fs::remove_dir_all(&bundle);
    step(suite, S, &["prune"], 0)?;
    require_no_leftovers(suite, "prune after a guest that never returned")
}

/// SIGINT to `image build` once its disk is on a loop device (mounted, mid-install): exit
/// 130, and the build's teardown leaves no mount, loop device, process, scratch file or image.
fn interrupted_build(suite: &mut Suite) -> anyhow::Result<()> {
    let cache = tempdir("build-cache")?;
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
    std::fs::remove_dir_all(&cache)?;
    Ok(())
}

/// SIGINT to `child` (the harness `command`, busy with `during`): it must exit 130 within
/// `limit`; the time it took is one of the faults scenario's timings.
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
    suite.timings.push(Timing {
        scenario: "faults",
        step: format!("SIGINT during {during} → exit"),
        took,
    });
    ensure!(
        code == 130,
        "{command} interrupted by SIGINT exited with {code}, expected 130"
    );
    Ok(())
}

fn spawn(suite: &Suite, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<boma_exec::Started> {
    Ok(xtask_run(suite, args, env)?.start()?)
}

fn xtask_env(suite: &Suite, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<(i32, String)> {
    let out = xtask_run(suite, args, env)?.stream().allow_fail().run()?;
    Ok((out.status.code().unwrap_or(-1), out.stdout))
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
    eprintln!(
        "+ kill -{} {pid}",
        signal.as_str().trim_start_matches("SIG")
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
    Ok(())
}

fn wait_exit(child: &mut boma_exec::Started, limit: Duration) -> anyhow::Result<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            use std::os::unix::process::ExitStatusExt;
            return Ok(status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
        }
        ensure!(
            Instant::now() < deadline,
            "the harness did not exit within {}s",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !ready() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// The libvirt backend, run inside the namespace `.ci/libvirt-netns` made: a clean `it askari`
/// passes, the RED case fails for the right reasons, nothing is left, and the shared golden
/// image was not chowned.
pub fn libvirt(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "libvirt";
    ensure!(
        boma_vm::hypervisor::libvirt::reachable(&Shell::new()?),
        "no libvirt daemon reachable: run the libvirt scenario through `.ci/libvirt-netns exec`"
    );
    ensure_image(suite, S)?;
    let golden = golden_image(suite)?;
    let owner_before = owner(&golden)?;

    it_passes(suite, S, "libvirt")?;
    it_red_fails(suite, S, "libvirt")?;
    let owner_after = owner(&golden)?;
    ensure!(
        owner_before == owner_after,
        "libvirt changed the golden image's owner: {owner_before:?} -> {owner_after:?}"
    );
    Ok(())
}

fn owner(path: &Utf8PathBuf) -> anyhow::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.uid(), meta.gid()))
}

#[cfg(test)]
mod tests {
    use super::pure_drop_forward;

    #[test]
    fn recognises_the_red_forward_chain() {
        let red = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established,related accept\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\ntable ip nat {\n\tchain x {\n\t\taccept\n\t}\n}\n";
        assert!(pure_drop_forward(red));
        let green = red.replace(
            "policy drop;\n\t}\n}\ntable ip nat",
            "policy drop;\n\t\tiifname \"docker0\" accept\n\t}\n}\ntable ip nat",
        );
        assert!(!pure_drop_forward(&green));
    }
}
