//! `baseline`: the golden image booted by a bare `qemu-system` command line against the
//! harness's `up`, interleaved so a noisy neighbour weighs on both alike; medians and their
//! ratio. The raw boot is the yardstick, so it deliberately bypasses the harness.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use boma_exec::CmdExt;
use camino::Utf8Path;
use xshell::{Shell, cmd};

use super::{Suite, ensure_image, golden_image, xtask};

/// First SSH and cloud-init done on the raw boot, `up` to the same point, median of
/// `baseline_runs` each.
pub fn baseline(suite: &mut Suite) -> anyhow::Result<()> {
    const S: &str = "baseline";
    ensure_image(suite, S)?;
    let golden = golden_image(suite)?;
    let sh = Shell::new()?;
    let key_dir = suite.scratch("baseline-key")?;
    let key = key_dir.join("id");
    cmd!(sh, "ssh-keygen -q -t ed25519 -N '' -f {key}")
        .exec()
        .run()?;
    let public = std::fs::read_to_string(key_dir.join("id.pub"))?;
    let mut first_ssh = Vec::new();
    let mut ready = Vec::new();
    let mut harness_up = Vec::new();
    for run in 0..suite.baseline_runs {
        let dir = suite.scratch(&format!("baseline-{run}"))?;
        let raw = raw_boot(&sh, &golden, &dir, &key, public.trim());
        let _ = std::fs::remove_dir_all(&dir);
        let (ssh, done) = raw?;
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
    suite.time(
        S,
        format!("raw qemu: boot to first ssh (median of {n})"),
        median(first_ssh),
    );
    suite.time(
        S,
        format!("raw qemu: boot to cloud-init done (median of {n})"),
        ready,
    );
    suite.time(
        S,
        format!("xtask up askari: to ssh + cloud-init done (median of {n})"),
        up,
    );
    Ok(())
}

/// Boot the golden image by hand; (first ssh, cloud-init done) after the start.
fn raw_boot(
    sh: &Shell,
    golden: &Utf8Path,
    dir: &Utf8Path,
    key: &Utf8Path,
    public: &str,
) -> anyhow::Result<(Duration, Duration)> {
    // Laid out as a run directory, whose files the harness's own boot names the same way.
    let files = boma_vm::RunDir::new(dir);
    let overlay = files.overlay();
    let seed = files.seed();
    let user_data = files.user_data();
    let meta_data = files.meta_data();
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
    let serial = format!("file:{}", files.console_log());
    let pidfile = files.pidfile();
    let started = Instant::now();
    cmd!(sh, "qemu-system-x86_64 -name boma-it-baseline -accel tcg,thread=multi -smp 2 -m 3072 -display none -drive {drive} -drive {seed_drive} -netdev {netdev} -device virtio-net-pci,netdev=n0 -serial {serial} -daemonize -pidfile {pidfile}").exec().run()?;
    let pid: i32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
    let _guard = KillOnDrop(pid);
    // The same client options the harness uses, so the comparison is of boot, not of ssh.
    let target = boma_vm::SshTarget {
        host: "127.0.0.1".into(),
        port: port.parse()?,
        user: "ansible".into(),
        key: key.to_owned(),
    };
    let client: Vec<String> = target
        .options()?
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
    Ok((first, done.context("cloud-init never finished")?))
}

/// SIGKILL a QEMU we started when the measurement ends, however it ends.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let cmdline = format!("/proc/{}/cmdline", self.0);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie (empty command line) that PID 1 reaps lazily here.
        while Instant::now() < deadline && std::fs::read(&cmdline).is_ok_and(|c| !c.is_empty()) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}
