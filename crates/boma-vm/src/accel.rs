//! KVM or TCG: decided by running guest code, because opening `/dev/kvm` proves nothing here.
//!
//! On the machines CI runs on, `/dev/kvm` exists and a KVM VM object can be created, yet guests
//! never run (`-cpu host` aborts, `-cpu qemu64` hangs). The probe boots a 512-byte boot sector
//! under KVM that prints a marker on the serial port and then asks QEMU to exit through the
//! `isa-debug-exit` device. Only that exact outcome counts as KVM working.

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

/// Decide KVM or TCG. `scratch` is a directory the probe may write two small files into.
pub fn detect(sh: &Shell, scratch: &Utf8Path) -> Result<Accel, VmError> {
    if !Utf8Path::new("/dev/kvm").exists() {
        return Ok(Accel::Tcg);
    }
    let disk = scratch.join("kvm-probe.img");
    let serial = scratch.join("kvm-probe.serial");
    std::fs::write(&disk, probe_boot_sector()).map_err(|e| VmError::io(&disk, e))?;
    let _ = std::fs::remove_file(&serial);
    let drive = format!("file={disk},format=raw,if=ide");
    let serial_arg = format!("file:{serial}");
    let out = cmd!(
        sh,
        "qemu-system-x86_64 -accel kvm -cpu host -m 16 -display none -no-reboot -monitor none
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
    Ok(if judge_probe(exit_code, &printed) {
        Accel::Kvm
    } else {
        Accel::Tcg
    })
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
    fn only_the_exact_exit_and_marker_mean_kvm() {
        assert!(judge_probe(Some(33), "BOMA-KVM-OK\n"));
        assert!(!judge_probe(Some(33), ""));
        assert!(!judge_probe(Some(1), "BOMA-KVM-OK\n"));
        assert!(!judge_probe(None, "BOMA-KVM-OK"));
    }
}
