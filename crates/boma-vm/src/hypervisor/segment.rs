//! A fleet run's private segment (ADR-027) as the VMs see it: what a member's record says its
//! second NIC is plugged into ([`FleetNic`], [`Segment`]), and the narrow effect that brings a
//! segment up and down ([`Segments`]), one per backend:
//!
//! - QEMU: a `vde_switch` the run starts through the one spawner (`boma_exec`), detached
//!   (`--daemon`, as QEMU's `-daemonize`); the daemon it forks is recorded in the spawn journal
//!   too, so `prune`'s first pass stops it like any process the harness started. It is stopped
//!   by its pid — found in `/proc` as this user's `vde_switch` serving this socket directory,
//!   never by name alone.
//! - libvirt: an isolated network, `virsh net-create` (transient: it is gone once destroyed)
//!   and `virsh net-destroy`.
//!
//! What the segment is and where it lives is decided here, purely ([`Segment::for_run`]); the
//! arguments are `boma_fleet`'s.

use std::net::Ipv4Addr;

use boma_fleet::{LibvirtFleetNetwork, MemberNic, SwitchPaths};
use camino::{Utf8Path, Utf8PathBuf};

use crate::{BackendKind, VmError};

/// A fleet run's segment, as its members' records and `prune` know it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// QEMU: the `vde_switch` whose socket directory is `dir`.
    VdeSwitch {
        dir: Utf8PathBuf,
        pidfile: Utf8PathBuf,
    },
    /// libvirt: the isolated network of the fleet run `run` (`boma-fleet-<run>`).
    LibvirtNetwork { run: String },
}

impl Segment {
    /// The segment of the fleet run whose directory is `fleet_dir`, on `kind`'s backend: the
    /// switch whose pidfile is inside it and whose sockets are in the run's short directory under
    /// `/tmp` ([`boma_fleet::switch_paths`]), or the network named after it (its name without the
    /// `boma-it-` prefix). Pure.
    pub fn for_run(kind: BackendKind, fleet_dir: &Utf8Path) -> Result<Segment, VmError> {
        match kind {
            BackendKind::Qemu => {
                let SwitchPaths { dir, pidfile } = boma_fleet::switch_paths(fleet_dir);
                Ok(Segment::VdeSwitch { dir, pidfile })
            }
            BackendKind::Libvirt => {
                let run = run_name(fleet_dir);
                // Checked now: a name libvirt cannot take is refused before anything boots.
                LibvirtFleetNetwork::new(&run).map_err(|e| VmError::Preflight(e.to_string()))?;
                Ok(Segment::LibvirtNetwork { run })
            }
        }
    }

    /// The backend whose segment this is.
    pub fn kind(&self) -> BackendKind {
        match self {
            Segment::VdeSwitch { .. } => BackendKind::Qemu,
            Segment::LibvirtNetwork { .. } => BackendKind::Libvirt,
        }
    }

    /// The switch's paths, if this is a switch.
    pub fn switch(&self) -> Option<SwitchPaths> {
        match self {
            Segment::VdeSwitch { dir, pidfile } => Some(SwitchPaths {
                dir: dir.clone(),
                pidfile: pidfile.clone(),
            }),
            Segment::LibvirtNetwork { .. } => None,
        }
    }

    /// The libvirt network, if this is one (its run name checked again: a record is a file).
    pub fn network(&self) -> Option<Result<LibvirtFleetNetwork, VmError>> {
        match self {
            Segment::VdeSwitch { .. } => None,
            Segment::LibvirtNetwork { run } => {
                Some(LibvirtFleetNetwork::new(run).map_err(|e| VmError::Backend(e.to_string())))
            }
        }
    }

    /// Whether this segment belongs to the run directory `dir` (a fleet run's, or a member's
    /// run directory that names it): the switch's pidfile lives inside it and its socket
    /// directory is the one that directory gives, or the network is named after it. Pure.
    pub fn belongs_to(&self, dir: &Utf8Path) -> bool {
        match self {
            Segment::VdeSwitch {
                dir: switch,
                pidfile,
            } => pidfile.parent() == Some(dir) && boma_fleet::switch_paths(dir).dir == *switch,
            Segment::LibvirtNetwork { run } => *run == run_name(dir),
        }
    }
}

impl Segment {
    /// Whether this is the switch of a run directory directly inside `runs_root`: its pidfile
    /// there, its socket directory the one that run directory gives. Pure.
    pub fn is_switch_of_a_run_in(&self, runs_root: &Utf8Path) -> bool {
        match self {
            Segment::VdeSwitch { pidfile, .. } => pidfile.parent().is_some_and(|run_dir| {
                run_dir.parent() == Some(runs_root) && self.belongs_to(run_dir)
            }),
            Segment::LibvirtNetwork { .. } => false,
        }
    }
}

/// `vde_switch /tmp/boma-vde-…` or `libvirt network boma-fleet-…`, for messages.
impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Segment::VdeSwitch { dir, .. } => write!(f, "vde_switch {dir}"),
            Segment::LibvirtNetwork { run } => write!(f, "libvirt network {NETWORK_PREFIX}{run}"),
        }
    }
}

/// Every fleet run's libvirt network is named so (`LibvirtFleetNetwork::name`).
pub const NETWORK_PREFIX: &str = "boma-fleet-";

/// The run name a fleet run's directory gives its network. Pure.
fn run_name(dir: &Utf8Path) -> String {
    let name = dir.file_name().unwrap_or_default();
    name.strip_prefix(boma_name::PREFIX)
        .unwrap_or(name)
        .to_owned()
}

/// A member's second NIC: its place on the fleet's segment (`boma_fleet::MemberNic`) and the
/// segment it is plugged into. Recorded with the member's run, so that `start` plugs it in again
/// and `prune` knows the segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetNic {
    /// The member's name in the fleet: its inventory name (`askari`).
    pub member: String,
    /// Its fleet address (static, set by cloud-init's network-config on this NIC).
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// The NIC's MAC, which the network-config matches.
    pub mac: String,
    pub segment: Segment,
}

impl FleetNic {
    pub fn new(nic: &MemberNic, segment: Segment) -> FleetNic {
        FleetNic {
            member: nic.name.clone(),
            address: nic.address,
            prefix: nic.prefix,
            mac: nic.mac.clone(),
            segment,
        }
    }

    pub fn member_nic(&self) -> MemberNic {
        MemberNic {
            name: self.member.clone(),
            address: self.address,
            prefix: self.prefix,
            mac: self.mac.clone(),
        }
    }

    /// QEMU's arguments for this NIC, plugged into its switch (`boma_fleet::qemu_nic_args`).
    pub fn qemu_args(&self) -> Result<Vec<String>, VmError> {
        let switch = self
            .segment
            .switch()
            .ok_or_else(|| self.wrong_backend(BackendKind::Qemu))?;
        Ok(boma_fleet::qemu_nic_args(&self.member_nic(), &switch))
    }

    /// virt-install's `--network` value for this NIC, on its network.
    pub fn virt_install_network(&self) -> Result<String, VmError> {
        let network = self
            .segment
            .network()
            .ok_or_else(|| self.wrong_backend(BackendKind::Libvirt))??;
        Ok(network.virt_install_network(&self.member_nic()))
    }

    fn wrong_backend(&self, kind: BackendKind) -> VmError {
        VmError::Backend(format!(
            "{}'s fleet NIC is on a {} but the {kind} backend runs it: a fleet's segment is its backend's",
            self.member, self.segment
        ))
    }
}

/// A backend's fleet segments. Narrow on purpose: which segment a run gets and what `prune`
/// removes are decided by the caller ([`Segment::for_run`], `run::prune::plan_segments`).
pub trait Segments {
    /// Bring `segment` up (start the switch, create the network) and return once members can
    /// be plugged in. Idempotent: one already up is left as it is. Whatever it created,
    /// [`Segments::destroy`] removes, whether this returned `Ok` or `Err`.
    fn create(&self, segment: &Segment) -> Result<(), VmError>;
    /// Take `segment` down (stop the switch by its pid, destroy the network). Idempotent: one
    /// already gone is success.
    fn destroy(&self, segment: &Segment) -> Result<(), VmError>;
    /// Every fleet segment of this backend found on the machine: the switches of this
    /// checkout's run directory still running, every `boma-fleet-*` network.
    fn leftovers(&self) -> Result<Vec<Segment>, VmError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET_DIR: &str = "/repo/tests/integration/.run/boma-it-web-1a2b3c4d";

    #[test]
    fn a_run_gets_its_backends_segment_named_after_its_directory() {
        let dir = Utf8Path::new(FLEET_DIR);
        let switch = Segment::for_run(BackendKind::Qemu, dir).unwrap();
        let Segment::VdeSwitch {
            dir: sockets,
            pidfile,
        } = &switch
        else {
            panic!("{switch:?}");
        };
        assert_eq!(*pidfile, format!("{FLEET_DIR}/fleet.switch.pid"));
        assert!(sockets.as_str().starts_with("/tmp/boma-vde-"), "{sockets}");
        assert_eq!(switch.kind(), BackendKind::Qemu);
        assert!(switch.belongs_to(dir));
        assert!(!switch.belongs_to(Utf8Path::new("/repo/tests/integration/.run")));
        let network = Segment::for_run(BackendKind::Libvirt, dir).unwrap();
        assert_eq!(
            network,
            Segment::LibvirtNetwork {
                run: "web-1a2b3c4d".into()
            }
        );
        assert_eq!(
            network.to_string(),
            "libvirt network boma-fleet-web-1a2b3c4d"
        );
        assert_eq!(
            network.network().unwrap().unwrap().name(),
            "boma-fleet-web-1a2b3c4d"
        );
        assert!(network.belongs_to(dir));
        assert!(!network.belongs_to(Utf8Path::new("/repo/.run/boma-it-web-0badf00d")));
    }

    #[test]
    fn a_segment_that_cannot_be_made_is_refused_before_anything_boots() {
        // However long the checkout's path, a switch can be made (its sockets live under /tmp).
        let long = format!("/{}/boma-it-web-1a2b3c4d", "x".repeat(90));
        assert!(Segment::for_run(BackendKind::Qemu, Utf8Path::new(&long)).is_ok());
        let err = Segment::for_run(BackendKind::Libvirt, Utf8Path::new("/r/Web_1")).unwrap_err();
        assert!(err.is_preflight(), "{err}");
    }

    #[test]
    fn a_nic_plugs_into_its_own_backends_segment_only() {
        let network = boma_fleet::FLEET_NETWORK
            .members(&["web-a".to_owned()])
            .unwrap()
            .remove(0);
        let dir = Utf8Path::new(FLEET_DIR);
        let on_switch = FleetNic::new(&network, Segment::for_run(BackendKind::Qemu, dir).unwrap());
        assert_eq!(on_switch.member_nic(), network);
        assert_eq!(
            on_switch.qemu_args().unwrap(),
            [
                "-netdev",
                &format!("vde,id=fleet0,sock={}", boma_fleet::switch_paths(dir).dir),
                "-device",
                "virtio-net-pci,netdev=fleet0,mac=52:54:0a:e7:00:0a"
            ]
        );
        assert!(on_switch.virt_install_network().is_err());
        let on_network = FleetNic::new(
            &network,
            Segment::for_run(BackendKind::Libvirt, dir).unwrap(),
        );
        assert_eq!(
            on_network.virt_install_network().unwrap(),
            "network=boma-fleet-web-1a2b3c4d,mac=52:54:0a:e7:00:0a,model=virtio"
        );
        let err = on_network.qemu_args().unwrap_err().to_string();
        assert!(err.contains("a fleet's segment is its backend's"), "{err}");
    }

    #[test]
    fn a_recorded_nic_reads_back_and_its_network_is_checked_again() {
        let nic = FleetNic {
            member: "web-a".into(),
            address: Ipv4Addr::new(10, 231, 0, 10),
            prefix: 24,
            mac: "52:54:0a:e7:00:0a".into(),
            segment: Segment::LibvirtNetwork {
                run: "web-1".into(),
            },
        };
        let json = serde_json::to_string(&nic).unwrap();
        assert_eq!(
            json,
            r#"{"member":"web-a","address":"10.231.0.10","prefix":24,"mac":"52:54:0a:e7:00:0a","segment":{"libvirt_network":{"run":"web-1"}}}"#
        );
        assert_eq!(serde_json::from_str::<FleetNic>(&json).unwrap(), nic);
        let forged = FleetNic {
            segment: Segment::LibvirtNetwork {
                run: "x'/><inject".into(),
            },
            ..nic
        };
        assert!(forged.virt_install_network().is_err());
    }

    /// What cloud-init configures is what each backend plugs in: the fleet NIC's stanza matches
    /// the MAC the backend gives the second NIC, the first NIC's stanza (with the unreachable
    /// routes) the first's.
    #[test]
    fn the_network_config_matches_the_nics_each_backend_plugs_in() {
        let real: Vec<std::net::IpAddr> = vec!["77.42.120.136".parse().unwrap()];
        for kind in [BackendKind::Qemu, BackendKind::Libvirt] {
            let spec = crate::BootSpec::fleet_example(kind);
            let member = spec.fleet_nic.as_ref().unwrap().member_nic();
            let config = boma_cloudinit::fleet_network_config(
                &boma_cloudinit::NetworkConfig {
                    mac: &spec.mac,
                    unreachable: &real,
                },
                &boma_cloudinit::FleetNic {
                    mac: &member.mac,
                    address: &member.cidr(),
                },
            );
            let args = match kind {
                BackendKind::Qemu => {
                    let ports = crate::hypervisor::qemu::ForwardedPorts {
                        ssh: 40022,
                        published: Default::default(),
                    };
                    crate::hypervisor::qemu::qemu_args(&spec, &ports).unwrap()
                }
                BackendKind::Libvirt => {
                    crate::hypervisor::libvirt::virt_install_args(&spec, "debian13").unwrap()
                }
            };
            let (first, fleet) = config.split_once("    boma1:").expect("two NICs");
            for (stanza, mac) in [(first, &spec.mac), (fleet, &member.mac)] {
                assert!(
                    stanza.contains(&format!("macaddress: \"{mac}\"")),
                    "{kind}: {stanza}"
                );
                assert!(
                    args.iter().any(|a| a.contains(&format!("mac={mac}"))),
                    "{kind}: {args:?}"
                );
            }
            assert!(first.contains("77.42.120.136/32") && !fleet.contains("routes"));
            assert!(fleet.contains("\"10.231.0.10/24\"") && fleet.contains("dhcp4: false"));
        }
    }
}
