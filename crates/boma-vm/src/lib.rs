//! Throwaway test VMs: boot one from the golden image, reach it over SSH, reboot it for real,
//! tear it down, and clean up after anything that crashed.
//!
//! The hypervisor sits behind [`Backend`] (QEMU driven directly, or libvirt) and SSH behind
//! [`Guest`], so that the lifecycle in [`lifecycle`] — the waits, the boot_id proof of a
//! reboot, what to keep and what to remove — is unit-tested against fakes and proven against
//! real tools by the VM suite. This is the only crate that spawns hypervisor tools.

pub mod accel;
mod backend;
pub mod diagnostics;
mod error;
pub mod fake;
pub mod keys;
pub mod libvirt;
pub mod lifecycle;
pub mod memory;
pub mod ports;
pub mod procs;
pub mod prune;
pub mod qemu;
pub mod qmp;
pub mod record;
pub mod ssh;

pub use accel::Accel;
pub use backend::{Backend, BackendKind, BootSpec, Booted, Endpoint, RebootHow};
pub use error::VmError;
pub use record::{RunRecord, Runs};
pub use ssh::{Guest, OpenSsh, SshTarget};

/// Every VM, process and file the harness creates carries this prefix, so `prune` can find
/// them after a crash without any record surviving.
pub const NAME_PREFIX: &str = "boma-it-";

/// The VM name for `host` and a run id: `boma-it-<host>-<id>`.
pub fn vm_name(host: &str, run_id: &str) -> String {
    format!("{NAME_PREFIX}{host}-{run_id}")
}

/// A MAC address in QEMU's locally administered range, derived from the run id so that each
/// VM has its own (the default MAC would land in netplan's match of a reused overlay).
pub fn mac_for(run_id: &str) -> String {
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in run_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = hash.to_be_bytes();
    format!("52:54:00:{a:02x}:{b:02x}:{c:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_macs() {
        assert_eq!(vm_name("askari", "1a2b3c4d"), "boma-it-askari-1a2b3c4d");
        let mac = mac_for("1a2b3c4d");
        assert!(mac.starts_with("52:54:00:"), "{mac}");
        assert_eq!(mac.len(), 17);
        assert_eq!(mac, mac_for("1a2b3c4d"));
        assert_ne!(mac, mac_for("1a2b3c4e"));
    }
}
