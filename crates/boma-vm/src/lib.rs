//! Throwaway test VMs: boot one from the golden image, reach it over SSH, reboot it for real,
//! tear it down, and clean up after anything that crashed.
//!
//! The rooms:
//! - [`hypervisor`]: the [`Hypervisor`] trait and its two backends, QEMU driven directly
//!   (`qemu`, with `qmp`) and libvirt (`libvirt`), and a fleet run's private segment
//!   ([`Segment`], a member's [`FleetNic`]: a `vde_switch` for QEMU, an isolated network for
//!   libvirt);
//! - [`guest`]: SSH to the guest ([`Guest`]) and the harness's key pair;
//! - [`lifecycle`]: what `up`/`reboot`/`down`/`prune` decide, against those traits — the
//!   waits, the boot_id proof of a reboot, what to keep and what to remove — and a fleet's
//!   members (`up_member`, the segment's `segment_up`/`segment_down`, the `together` round);
//! - [`host`]: the control node as the VMs need it — the KVM probe, loopback ports, test
//!   VMs' hypervisor processes (the machine's facts and rules are `boma_host`'s);
//! - [`run`]: the run directory's layout ([`RunDir`]), record and lock, prune's plan, the
//!   diagnostics bundle;
//! - [`fake`]: in-memory stand-ins for the lifecycle's effects, for fast tests.
//!
//! The lifecycle is unit-tested against the fakes and proven against real tools by the VM
//! suite. This is the only crate that spawns hypervisor tools.

mod error;
pub mod fake;
pub mod guest;
pub mod host;
pub mod hypervisor;
pub mod lifecycle;
pub mod run;

pub use boma_host::Accel;
pub use error::VmError;
pub use guest::ssh::{Guest, OpenSsh, SshTarget};
pub use hypervisor::{
    BackendKind, BootSpec, Booted, Endpoint, FleetNic, Hypervisor, RebootHow, Segment, Segments,
};
pub use run::dir::RunDir;
pub use run::record::{RunRecord, Runs};

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
    fn macs_are_local_stable_and_distinct() {
        let mac = mac_for("1a2b3c4d");
        assert!(mac.starts_with("52:54:00:"), "{mac}");
        assert_eq!(mac.len(), 17);
        assert_eq!(mac, mac_for("1a2b3c4d"));
        assert_ne!(mac, mac_for("1a2b3c4e"));
    }
}
