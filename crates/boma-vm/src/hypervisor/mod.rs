//! The narrow trait every hypervisor backend implements, and the two backends: QEMU driven
//! directly ([`qemu`], controlled through [`qmp`]) and libvirt ([`libvirt`]); and a fleet run's
//! private segment ([`segment`]), which each backend makes its own way ([`vde`] for QEMU).

pub mod libvirt;
pub mod qemu;
pub mod qmp;
pub mod segment;
pub mod vde;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use boma_name::VmName;
use camino::Utf8PathBuf;

use crate::{Accel, RunRecord, VmError};
pub use segment::{FleetNic, Segment, Segments};

/// Which backend runs a VM: resolved from the operator's `auto|qemu|libvirt` choice, and
/// recorded with the run so that the VM is always handled by the backend that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// `qemu-system-x86_64` driven directly, user-mode networking forwarded to 127.0.0.1.
    Qemu,
    /// libvirt: `virt-install` on an isolated NAT network.
    Libvirt,
}

impl BackendKind {
    /// The IPv4 network the guest lives on: QEMU user networking's default, or the one
    /// [`crate::hypervisor::libvirt::network_xml`] defines. Both are /24s.
    pub fn guest_network(self) -> (Ipv4Addr, u8) {
        match self {
            BackendKind::Qemu => (Ipv4Addr::new(10, 0, 2, 0), 24),
            BackendKind::Libvirt => (Ipv4Addr::new(192, 168, 150, 0), 24),
        }
    }

    /// Those of `addresses` inside [`Self::guest_network`]: an unreachable route to one of them
    /// would cut the guest off its own gateway, DNS or neighbours.
    pub fn inside_guest_network(self, addresses: &[IpAddr]) -> Vec<IpAddr> {
        let (network, prefix) = self.guest_network();
        let mask = u32::MAX << (32 - prefix);
        addresses
            .iter()
            .filter(|a| match a {
                IpAddr::V4(v4) => u32::from(*v4) & mask == u32::from(network),
                IpAddr::V6(_) => false,
            })
            .copied()
            .collect()
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Qemu => "qemu",
            BackendKind::Libvirt => "libvirt",
        })
    }
}

/// A host:port the controller can connect to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// Everything a backend needs to boot one VM. Disks are prepared by the lifecycle.
#[derive(Debug, Clone)]
pub struct BootSpec {
    pub name: VmName,
    pub dir: Utf8PathBuf,
    pub overlay: Utf8PathBuf,
    pub seed: Utf8PathBuf,
    pub console: Utf8PathBuf,
    pub mac: String,
    pub mem_mib: u32,
    pub vcpus: u32,
    pub accel: Accel,
    /// Guest ports the controller must reach (SSH is always reachable).
    pub published_ports: Vec<u16>,
    /// A fleet member's second NIC, on the fleet's segment; `None` for a single VM, whose
    /// command line is then exactly what it always was.
    pub fleet_nic: Option<FleetNic>,
}

impl BootSpec {
    /// The spec a recorded VM was booted with (its files live in its run directory).
    pub fn of_record(record: &RunRecord) -> BootSpec {
        let files = record.run_dir();
        BootSpec {
            name: record.name.clone(),
            dir: record.dir.clone(),
            overlay: files.overlay(),
            seed: files.seed(),
            console: files.console_log(),
            mac: record.mac.clone(),
            mem_mib: record.mem_mib,
            vcpus: record.vcpus,
            accel: record.accel,
            published_ports: record.published.keys().copied().collect(),
            fleet_nic: record.fleet_nic.clone(),
        }
    }
}

#[cfg(test)]
impl BootSpec {
    /// The spec the backends' command-line snapshots are taken of.
    pub(crate) fn example() -> BootSpec {
        let dir = Utf8PathBuf::from("/repo/tests/integration/.run/boma-it-askari-1a2b3c4d");
        let files = crate::RunDir::new(&dir);
        BootSpec {
            name: VmName::parse("boma-it-askari-1a2b3c4d").expect("a test vm name"),
            overlay: files.overlay(),
            seed: files.seed(),
            console: files.console_log(),
            dir,
            mac: "52:54:00:12:34:56".into(),
            mem_mib: 3072,
            vcpus: 2,
            accel: Accel::Tcg,
            published_ports: vec![443],
            fleet_nic: None,
        }
    }

    /// [`BootSpec::example`] as a fleet's first member on `kind`'s segment, for the fleet
    /// command-line snapshots.
    pub(crate) fn fleet_example(kind: BackendKind) -> BootSpec {
        let spec = BootSpec::example();
        let nic = boma_fleet::FLEET_NETWORK
            .members(&["askari".to_owned()])
            .expect("one member fits")
            .remove(0);
        let fleet_dir = spec.dir.with_file_name("boma-it-web-1a2b3c4d");
        let segment = Segment::for_run(kind, &fleet_dir).expect("a short fleet directory");
        BootSpec {
            fleet_nic: Some(FleetNic::new(&nic, segment)),
            ..spec
        }
    }
}

/// Where a freshly booted VM can be reached.
#[derive(Debug, Clone)]
pub struct Booted {
    pub ssh: Endpoint,
    pub published: BTreeMap<u16, Endpoint>,
    pub pid: Option<u32>,
}

/// How to reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootHow {
    /// The guest reboots itself (systemd), as an operator's `reboot` would.
    Guest,
    /// A hardware reset: no clean shutdown.
    Hard,
}

/// A hypervisor backend. Narrow on purpose: the lifecycle decides, the backend acts.
pub trait Hypervisor {
    fn kind(&self) -> BackendKind;
    /// Define and start the VM; return once the hypervisor runs it (not when SSH answers).
    /// Once this returns `Ok` or `Err`, `destroy` must be able to remove whatever was created.
    fn boot(&self, spec: &BootSpec) -> Result<Booted, VmError>;
    /// Where the VM is reachable now, asked once without waiting: `None` while it has no
    /// address yet (libvirt: no DHCP lease). A reboot may renew the lease with another address,
    /// so the lifecycle asks again after one.
    fn address(&self, record: &RunRecord) -> Result<Option<Booted>, VmError>;
    /// Start a reboot. Guest-initiated reboots for QEMU go through SSH, so the lifecycle
    /// handles [`RebootHow::Guest`] itself when this returns `Ok(false)`.
    fn reboot(&self, record: &RunRecord, how: RebootHow) -> Result<bool, VmError>;
    /// Start a VM that was powered off (its disks, ports and console as when it was first
    /// booted); return where it runs. The lifecycle uses it for a power cycle (a layer is taken
    /// from the disk of a cleanly shut-down guest).
    fn start(&self, record: &RunRecord) -> Result<Booted, VmError>;
    /// Whether the VM's hypervisor process/domain still exists (a frozen one does).
    fn is_running(&self, record: &RunRecord) -> Result<bool, VmError>;
    /// Freeze the VM at once (QMP `stop`, `virsh suspend`): its guest stops where it is, as at a
    /// power loss, while its process, disks, forwards and fleet NIC stay. A frozen VM that is
    /// reset ([`RebootHow::Hard`]) and resumed boots afresh.
    fn suspend(&self, record: &RunRecord) -> Result<(), VmError>;
    /// Let a frozen VM run (QMP `cont`, `virsh resume`).
    fn resume(&self, record: &RunRecord) -> Result<(), VmError>;
    /// Power the VM off at once (nothing runs in the guest first), keeping its definition and
    /// files, so that [`Hypervisor::start`] boots it again. Idempotent: a VM already off is
    /// success.
    fn stop(&self, record: &RunRecord) -> Result<(), VmError>;
    /// Stop and undefine the VM. Idempotent: a VM already gone is success.
    fn destroy(&self, name: &VmName, record: Option<&RunRecord>) -> Result<(), VmError>;
    /// Every `boma-it-` VM this backend knows, live or defined, recorded or not.
    fn leftovers(&self) -> Result<Vec<VmName>, VmError>;
    /// This backend's fleet segments (a `vde_switch` for QEMU, an isolated network for
    /// libvirt).
    fn segments(&self) -> Box<dyn Segments + '_>;
}
