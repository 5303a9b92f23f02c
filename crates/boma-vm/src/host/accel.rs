//! KVM or TCG: decided by running guest code, because opening `/dev/kvm` proves nothing here.
//!
//! On the machines CI runs on, `/dev/kvm` exists, a KVM VM object can be created, and even a
//! real-mode boot sector runs — yet the guest kernel hangs right after GRUB hands over. So the
//! probe has two stages: a 512-byte boot sector that prints a marker and exits QEMU through
//! `isa-debug-exit` (cheap: rejects hosts where KVM runs nothing at all), then the golden image
//! itself, booted read-only (`-snapshot`), which must reach systemd's banner on the serial
//! console. Only both count as KVM working. The verdict is cached per host boot, QEMU version
//! and image, because the second stage costs up to half a minute when KVM is broken.

use boma_exec::say;
use std::time::Duration;

use boma_exec::CmdExt;
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::VmError;

/// The marker the probe guest prints.
const MARKER: &str = "BOMA-KVM-OK";
/// The value the probe guest writes to the debug-exit port; QEMU exits with `(v << 1) | 1`.
const EXIT_VALUE: u8 = 0x10;
/// A KVM guest that works reaches the marker in well under a second; a broken one hangs.
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);
/// systemd's banner: the guest kernel ran all the way to userspace.
const USERSPACE_MARKER: &str = "Welcome to";
/// Under TCG the banner comes ~15 s after power-on; under working KVM a few seconds.
const KERNEL_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// The probe VM's name: `prune` finds it by the prefix if the harness dies mid-probe.
const PROBE_NAME: &str = "boma-it-kvm-probe";

/// How the guest CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The `-accel` argument for QEMU.
    pub fn qemu_accel(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            // Multi-threaded TCG: `-smp 2` then boots ~35 % faster than one vCPU.
            Accel::Tcg => "tcg,thread=multi",
        }
    }

    /// The `-cpu` model for QEMU.
    pub fn qemu_cpu(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }

    /// libvirt's `--virt-type`.
    pub fn virt_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }

    /// A wait written for TCG (the slow case, where every figure was measured), fitted to this
    /// accelerator: KVM guests boot several times faster, so a hung KVM guest is reported
    /// sooner, but never with less than a minute of patience.
    pub fn scale(self, tcg: Duration) -> Duration {
        match self {
            Accel::Tcg => tcg,
            Accel::Kvm => (tcg / 3).max(Duration::from_secs(60)).min(tcg),
        }
    }

    /// One line for the operator.
    pub fn describe(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM (hardware virtualisation, a probe guest ran)",
            Accel::Tcg => {
                "TCG (software emulation: no working KVM here; expect boots of ~45 s and reboots of ~60-90 s, 5-10x slower than KVM)"
            }
        }
    }
}

/// The probe guest: a boot sector that writes [`MARKER`] to COM1 and exits QEMU.
pub fn probe_boot_sector() -> [u8; 512] {
    let mut code = vec![0xBA, 0xF8, 0x03]; // mov dx, 0x3f8 (COM1)
    for byte in MARKER.bytes().chain(std::iter::once(b'\n')) {
        code.extend_from_slice(&[0xB0, byte, 0xEE]); // mov al, byte; out dx, al
    }
    code.extend_from_slice(&[0xB0, EXIT_VALUE, 0xE6, 0xF4]); // mov al, EXIT; out 0xf4, al
    code.extend_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]); // cli; hlt; jmp back to hlt
    let mut sector = [0u8; 512];
    sector[..code.len()].copy_from_slice(&code);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// What the probe observed, decided without side effects.
pub fn judge_probe(exit_code: Option<i32>, serial: &str) -> bool {
    exit_code == Some(i32::from((EXIT_VALUE << 1) | 1)) && serial.contains(MARKER)
}

/// What a cached verdict is valid for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeKey {
    pub host_boot_id: String,
    pub qemu_version: String,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct CachedVerdict {
    key: ProbeKey,
    accel: Accel,
}

/// The cached verdict in `text`, if it was made for `key`.
pub fn cached_verdict(text: &str, key: &ProbeKey) -> Option<Accel> {
    let cached: CachedVerdict = serde_json::from_str(text).ok()?;
    (cached.key == *key).then_some(cached.accel)
}

/// Decide KVM or TCG for booting `golden`. `scratch` is a directory for the probe's small
/// files; `cache` the file that remembers the verdict.
pub fn detect(
    sh: &Shell,
    scratch: &Utf8Path,
    golden: &Utf8Path,
    cache: &Utf8Path,
) -> Result<Accel, VmError> {
    if !Utf8Path::new("/dev/kvm").exists() {
        return Ok(Accel::Tcg);
    }
    let qemu_version = cmd!(sh, "qemu-system-x86_64 --version")
        .exec()
        .quiet()
        .read()?;
    let key = ProbeKey {
        host_boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        qemu_version: qemu_version.lines().next().unwrap_or_default().to_owned(),
        image: golden.to_string(),
    };
    if let Some(accel) = std::fs::read_to_string(cache)
        .ok()
        .and_then(|t| cached_verdict(&t, &key))
    {
        say!("acceleration probe: cached verdict for this host boot ({cache})");
        return Ok(accel);
    }
    say!(
        "probing KVM: does a guest actually run under it? (/dev/kvm exists, which proves nothing)"
    );
    let accel = if probe_boot_sector_runs(sh, scratch)? && probe_kernel_runs(sh, scratch, golden)? {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let verdict = CachedVerdict { key, accel };
    // Best effort: a cache that cannot be written only costs the next run another probe.
    let _ = std::fs::write(cache, serde_json::to_string_pretty(&verdict).expect("json"));
    Ok(accel)
}

/// Stage one: real-mode guest code under KVM.
fn probe_boot_sector_runs(sh: &Shell, scratch: &Utf8Path) -> Result<bool, VmError> {
    let disk = scratch.join("kvm-probe.img");
    let serial = scratch.join("kvm-probe.serial");
    std::fs::write(&disk, probe_boot_sector()).map_err(|e| VmError::io(&disk, e))?;
    let _ = std::fs::remove_file(&serial);
    let drive = format!("file={disk},format=raw,if=ide");
    let serial_arg = format!("file:{serial}");
    let out = cmd!(
        sh,
        "qemu-system-x86_64 -name {PROBE_NAME} -accel kvm -cpu host -m 16 -display none -no-reboot -monitor none
            -drive {drive} -serial {serial_arg} -device isa-debug-exit,iobase=0xf4,iosize=0x04"
    )
    .exec()
    .allow_fail()
    .timeout(PROBE_TIMEOUT)
    .run();
    let exit_code = match out {
        Ok(captured) => captured.status.code(),
        Err(e) if e.interrupted().is_some() => return Err(e.into()),
        Err(boma_exec::ExecError::NotFound { program }) => {
            return Err(boma_exec::ExecError::NotFound { program }.into());
        }
        // A hang or an abort: KVM does not run guests here.
        Err(_) => None,
    };
    let printed = std::fs::read_to_string(&serial).unwrap_or_default();
    let _ = std::fs::remove_file(&disk);
    let _ = std::fs::remove_file(&serial);
    Ok(judge_probe(exit_code, &printed))
}

/// Stage two: the golden image's kernel under KVM, read-only, until systemd's banner.
fn probe_kernel_runs(sh: &Shell, scratch: &Utf8Path, golden: &Utf8Path) -> Result<bool, VmError> {
    let serial = scratch.join("kvm-probe-kernel.serial");
    let pidfile = scratch.join("kvm-probe.pid");
    let _ = std::fs::remove_file(&serial);
    let drive = format!("file={golden},if=virtio,format=qcow2,readonly=on");
    let serial_arg = format!("file:{serial}");
    let started = cmd!(
        sh,
        "qemu-system-x86_64 -name {PROBE_NAME} -accel kvm -cpu host -smp 1 -m 512 -nodefaults -display none
            -snapshot -drive {drive} -serial {serial_arg} -daemonize -pidfile {pidfile}"
    )
    .exec()
    .allow_fail()
    .timeout(PROBE_TIMEOUT)
    .run()?;
    if !started.success() {
        return Ok(false);
    }
    let pid: Option<u32> = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let deadline = std::time::Instant::now() + KERNEL_PROBE_TIMEOUT;
    let mut reached = false;
    let mut interrupted = None;
    while std::time::Instant::now() < deadline {
        if std::fs::read(&serial)
            .is_ok_and(|b| String::from_utf8_lossy(&b).contains(USERSPACE_MARKER))
        {
            reached = true;
            break;
        }
        if let Err(i) = boma_exec::interrupt::sleep(Duration::from_millis(250)) {
            interrupted = Some(i);
            break;
        }
    }
    if let Some(pid) = pid {
        crate::host::procs::signal_vm(pid, PROBE_NAME, nix::sys::signal::Signal::SIGKILL);
        let gone_by = std::time::Instant::now() + Duration::from_secs(5);
        while crate::host::procs::is_vm_process(pid, PROBE_NAME)
            && std::time::Instant::now() < gone_by
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_file(&serial);
    let _ = std::fs::remove_file(&pidfile);
    match interrupted {
        Some(i) => Err(i.into()),
        None => Ok(reached),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_is_bootable_and_carries_the_marker() {
        let sector = probe_boot_sector();
        assert_eq!(&sector[510..], &[0x55, 0xAA]);
        // Every marker byte is emitted by a `mov al, imm8` (0xB0).
        for byte in MARKER.bytes() {
            assert!(
                sector.windows(2).any(|w| w == [0xB0, byte]),
                "{}",
                byte as char
            );
        }
    }

    #[test]
    fn waits_shrink_under_kvm_but_keep_a_floor() {
        let tcg = Duration::from_secs(300);
        assert_eq!(Accel::Tcg.scale(tcg), tcg);
        assert_eq!(Accel::Kvm.scale(tcg), Duration::from_secs(100));
        assert_eq!(
            Accel::Kvm.scale(Duration::from_secs(90)),
            Duration::from_secs(60)
        );
        assert_eq!(
            Accel::Kvm.scale(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_cached_verdict_counts_only_for_the_same_boot_qemu_and_image() {
        let key = ProbeKey {
            host_boot_id: "b1".into(),
            qemu_version: "7.2".into(),
            image: "/c/g.qcow2".into(),
        };
        let text = serde_json::to_string(&CachedVerdict {
            key: key.clone(),
            accel: Accel::Tcg,
        })
        .unwrap();
        assert_eq!(cached_verdict(&text, &key), Some(Accel::Tcg));
        let rebooted = ProbeKey {
            host_boot_id: "b2".into(),
            ..key.clone()
        };
        assert_eq!(cached_verdict(&text, &rebooted), None);
        assert_eq!(cached_verdict("not json", &key), None);
    }

    #[test]
    fn only_the_exact_exit_and_marker_mean_kvm() {
        assert!(judge_probe(Some(33), "BOMA-KVM-OK\n"));
        assert!(!judge_probe(Some(33), ""));
        assert!(!judge_probe(Some(1), "BOMA-KVM-OK\n"));
        assert!(!judge_probe(None, "BOMA-KVM-OK"));
    }
}
