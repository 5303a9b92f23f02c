//! The KVM probe: whether KVM works here is decided by running guest code, because opening
//! `/dev/kvm` proves nothing here.
//!
//! On the machines CI runs on, `/dev/kvm` exists, a KVM VM object can be created, and even a
//! real-mode boot sector runs — yet the guest kernel hangs right after GRUB hands over. So the
//! probe has two stages: a 512-byte boot sector that prints a marker and exits QEMU through
//! `isa-debug-exit` (cheap: rejects hosts where KVM runs nothing at all), then the golden image
//! itself, booted read-only (`-snapshot`), which must reach systemd's banner on the serial
//! console. Only both count as KVM working.
//!
//! The probe boots guests, so it lives with the VMs; the verdict is the control node's
//! (`boma_host::kvm`): its file, what it is valid for (host boot, QEMU version, image) and
//! whether to probe at all (`boma_host::judge::kvm_plan`) are decided there, as the doctor
//! reads them.

use boma_exec::say;
use std::time::Duration;

use boma_exec::CmdExt;
use boma_host::judge::{self, KvmPlan};
use boma_host::kvm::{Accel, PROBE_FILE, Verdict};
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

/// The probe VM's name, a test VM's (`boma-it-kvm-probe`): `prune` finds it by the prefix if
/// the harness dies mid-probe.
fn probe_name() -> String {
    format!("{}kvm-probe", boma_name::PREFIX)
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

/// Decide KVM or TCG for booting `golden`: TCG without a `/dev/kvm` this process can open,
/// else the verdict cached in `cache_dir` for this boot, QEMU and image, else a probe whose
/// verdict is cached there. `scratch` is a directory for the probe's small files.
pub fn detect(
    sh: &Shell,
    scratch: &Utf8Path,
    golden: &Utf8Path,
    cache_dir: &Utf8Path,
) -> Result<Accel, VmError> {
    let device = boma_host::gather::kvm_device();
    // Without a usable device no verdict is needed, nor QEMU's version to key one.
    if let KvmPlan::Use(accel) = judge::kvm_plan(&device, None) {
        return Ok(accel);
    }
    let qemu = boma_host::tools::tool("qemu-system-x86_64").expect("QEMU is a tool");
    let qemu = boma_host::gather::tool_with_version(sh, qemu);
    let key = boma_host::gather::probe_key(&qemu, golden.as_str());
    let cached = boma_host::gather::probe_cache(cache_dir, &key).current();
    let cache = cache_dir.join(PROBE_FILE);
    if let KvmPlan::Use(accel) = judge::kvm_plan(&device, cached) {
        say!("acceleration probe: cached verdict for this host boot ({cache})");
        return Ok(accel);
    }
    say!(
        "probing KVM: does a guest actually run under it? (/dev/kvm exists, which proves nothing)"
    );
    let (accel, reason) = if !probe_boot_sector_runs(sh, scratch)? {
        (
            Accel::Tcg,
            Some("a boot-sector guest did not run under KVM"),
        )
    } else if !probe_kernel_runs(sh, scratch, golden)? {
        (
            Accel::Tcg,
            Some("the golden image's kernel did not reach userspace under KVM"),
        )
    } else {
        (Accel::Kvm, None)
    };
    let verdict = Verdict {
        key,
        accel,
        reason: reason.map(str::to_owned),
    };
    // Best effort: a cache that cannot be written only costs the next run another probe.
    let _ = std::fs::write(&cache, verdict.to_text());
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
    let name = probe_name();
    let out = cmd!(
        sh,
        "qemu-system-x86_64 -name {name} -accel kvm -cpu host -m 16 -display none -no-reboot -monitor none
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
    let name = probe_name();
    let started = cmd!(
        sh,
        "qemu-system-x86_64 -name {name} -accel kvm -cpu host -smp 1 -m 512 -nodefaults -display none
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
        crate::host::procs::signal_vm(pid, &name, nix::sys::signal::Signal::SIGKILL);
        let gone_by = std::time::Instant::now() + Duration::from_secs(5);
        while crate::host::procs::is_vm_process(pid, &name) && std::time::Instant::now() < gone_by {
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
    fn the_probe_guest_is_a_test_vm_by_name() {
        assert_eq!(probe_name(), "boma-it-kvm-probe");
        assert!(boma_name::VmName::parse(&probe_name()).is_ok());
    }

    #[test]
    fn only_the_exact_exit_and_marker_mean_kvm() {
        assert!(judge_probe(Some(33), "BOMA-KVM-OK\n"));
        assert!(!judge_probe(Some(33), ""));
        assert!(!judge_probe(Some(1), "BOMA-KVM-OK\n"));
        assert!(!judge_probe(None, "BOMA-KVM-OK"));
    }
}
