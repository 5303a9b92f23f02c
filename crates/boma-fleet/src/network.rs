//! The fleet's private network: one L2 segment per fleet run that only its members are on.
//!
//! Every member keeps its first NIC as a single VM has it (QEMU user networking with the
//! loopback forwards, or libvirt's `boma-it` network): the controller reaches it there, and apt
//! runs over it. A second NIC puts it on the fleet's segment with a static address,
//! `10.231.0.<10+i>/24` for member `i` ([`FLEET_NETWORK`]), set by cloud-init's
//! network-config matched on the NIC's MAC.
//!
//! - QEMU: a `vde_switch` the run starts (`vde_switch_args`), each member's second NIC plugged
//!   into it (`qemu_nic_args`). The switch is a process with a unix socket directory: it
//!   touches no host interface and no address, so nothing on the segment reaches anything but
//!   the members; it needs no root and no namespace. QEMU's own `socket`/`stream`/`dgram`
//!   netdevs join two ends only, and `mcast` sends to a multicast group on a host interface.
//! - libvirt: an isolated network per fleet run (`LibvirtFleetNetwork`): no `<forward>` and no
//!   `<ip>`, so the bridge libvirt makes has no host address and no NAT.
//!
//! Roles reach a peer at its fleet address: it is each member's `ansible_host` in the transient
//! inventory and its `boma_fleet_address` ([`member_host_vars`]); the connection wrapper maps
//! both that address and the member's name to the member's way in. Pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use camino::{Utf8Path, Utf8PathBuf};

/// The fleet's segment and where member addresses start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetNetwork {
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// Member `i` gets `subnet + first_host + i`.
    pub first_host: u32,
}

/// `10.231.0.0/24`, members from `.10`: a private range unlike QEMU's `10.0.2.0/24` and
/// libvirt's `192.168.150.0/24` (the first NIC's), and unlikely in a real inventory (preflight
/// refuses a real address inside it all the same).
pub const FLEET_NETWORK: FleetNetwork = FleetNetwork {
    subnet: Ipv4Addr::new(10, 231, 0, 0),
    prefix: 24,
    first_host: 10,
};

/// The variable every member gets holding its own fleet address: the one the fleet's
/// connection file templates `ansible_host` from (`boma_inventory::FLEET_HOST`).
pub const FLEET_ADDRESS_VAR: &str = boma_inventory::FLEET_ADDRESS_VAR;

impl FleetNetwork {
    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// Whether `address` is on the segment.
    pub fn contains(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(v4) => u32::from(v4) & self.mask() == u32::from(self.subnet) & self.mask(),
            IpAddr::V6(_) => false,
        }
    }

    /// Member `index`'s address; `None` past the last usable host of the segment.
    pub fn address(&self, index: usize) -> Option<Ipv4Addr> {
        let base = u32::from(self.subnet) & self.mask();
        let broadcast = base | !self.mask();
        let offset = u32::try_from(index).ok()?.checked_add(self.first_host)?;
        let host = base.checked_add(offset)?;
        (host < broadcast && offset > 0).then(|| Ipv4Addr::from(host))
    }

    /// Every member's second NIC, in fleet order.
    pub fn members(&self, names: &[String]) -> Result<Vec<MemberNic>, NetworkError> {
        names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let address = self.address(index).ok_or(NetworkError::TooManyMembers {
                    members: names.len(),
                    subnet: self.subnet,
                    prefix: self.prefix,
                })?;
                Ok(MemberNic {
                    name: name.clone(),
                    address,
                    prefix: self.prefix,
                    mac: mac_of(address),
                })
            })
            .collect()
    }

    /// Preflight: a real host's address inside the segment would be one a member answers to,
    /// or routed away from the members (`unreachable`), cutting the segment.
    pub fn refuse_real_addresses(&self, real: &[IpAddr]) -> Result<(), NetworkError> {
        let inside: Vec<IpAddr> = real.iter().copied().filter(|a| self.contains(*a)).collect();
        if inside.is_empty() {
            Ok(())
        } else {
            Err(NetworkError::RealAddressInside {
                addresses: inside,
                subnet: self.subnet,
                prefix: self.prefix,
            })
        }
    }
}

/// The MAC of a fleet NIC: `52:54` and the four bytes of its address. Locally administered, one
/// per address, and never a first NIC's (those start `52:54:00`, and a fleet subnet cannot
/// start with `0.`).
fn mac_of(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("52:54:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// One member's place on the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberNic {
    pub name: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub mac: String,
}

impl MemberNic {
    /// `10.231.0.10/24`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix)
    }
}

/// The variables a member gets in the transient inventory, besides the connection's: its
/// fleet address as `ansible_host` (what `hostvars[peer].ansible_host` gives a role) and as
/// [`FLEET_ADDRESS_VAR`]. Under QEMU's user networking every member's
/// `ansible_default_ipv4` is the same 10.0.2.15, so a role must template these, not a fact.
pub fn member_host_vars(nic: &MemberNic) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("ansible_host", nic.address.to_string()),
        (FLEET_ADDRESS_VAR, nic.address.to_string()),
    ])
}

/// Why the network could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("{members} members do not fit in the fleet network {subnet}/{prefix}")]
    TooManyMembers {
        members: usize,
        subnet: Ipv4Addr,
        prefix: u8,
    },
    #[error(
        "the real inventory has {} inside the fleet network {subnet}/{prefix}: a member would answer to a real host's address; move the fleet network (boma_fleet::FLEET_NETWORK)",
        .addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    RealAddressInside {
        addresses: Vec<IpAddr>,
        subnet: Ipv4Addr,
        prefix: u8,
    },
    #[error(
        "`{run}` cannot name a libvirt fleet network: use lowercase letters, digits and `-`, at most {max} characters"
    )]
    BadRunName { run: String, max: usize },
}

/// Where a fleet run's switch lives: its pidfile in the run's directory, its sockets in a short
/// directory of the run's own under `/tmp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchPaths {
    /// The switch's socket directory (`ctl` and one socket per plugged NIC inside).
    pub dir: Utf8PathBuf,
    /// The daemon's pid, by which the run stops it.
    pub pidfile: Utf8PathBuf,
}

/// Where the switches' socket directories live: a fixed short directory, never `$TMPDIR`,
/// whose length no checkout's path can change.
pub const SWITCH_PARENT: &str = "/tmp";
/// The name of every switch's socket directory in [`SWITCH_PARENT`] starts so.
pub const SWITCH_DIR_PREFIX: &str = "boma-vde-";

/// The switch's paths for the run whose directory is `run_dir`: the pidfile beside the run's
/// files; the sockets in `/tmp/boma-vde-<a hash of run_dir>`, 30 bytes whatever the checkout's
/// path, so a socket inside (`<dir>/.<7-digit pid>-NNNNN`, libvdeplug's longest) fits a unix
/// socket path's 107 by construction (a directory inside the run's would limit where the
/// repository can be cloned: a CI runner's path is often too long). The name is the same for
/// every command of the run, so `prune` finds it again; `vde_switch` makes the directory with
/// the run's user's mode. Pure.
pub fn switch_paths(run_dir: &Utf8Path) -> SwitchPaths {
    SwitchPaths {
        dir: Utf8PathBuf::from(format!(
            "{SWITCH_PARENT}/{SWITCH_DIR_PREFIX}{:016x}",
            fnv1a(run_dir.as_str().as_bytes())
        )),
        pidfile: run_dir.join("fleet.switch.pid"),
    }
}

/// FNV-1a, 64 bits: a name stable across Rust versions and builds (unlike `DefaultHasher`), so
/// a later binary still finds a switch an earlier one started.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The switch's program, and the Debian package that installs it (in the `integration_test`
/// role's list, which a test checks).
pub const VDE_SWITCH: &str = "vde_switch";
pub const VDE_SWITCH_PACKAGE: &str = "vde2";

/// [`VDE_SWITCH`]'s arguments (program name excluded). `--rcfile /dev/null`: no
/// `/etc/vde2/vde_switch.rc` or `~/.vderc` can add a tap interface or a management socket;
/// the sockets are the run's user's only (`--mode`, `--dirmode`); `--daemon --pidfile` detaches
/// it, as QEMU's `-daemonize`, and the run stops it by that pid (on SIGTERM it removes its
/// directory itself).
pub fn vde_switch_args(paths: &SwitchPaths) -> Vec<String> {
    [
        "--sock",
        paths.dir.as_str(),
        "--mode",
        "0600",
        "--dirmode",
        "0700",
        "--rcfile",
        "/dev/null",
        "--daemon",
        "--pidfile",
        paths.pidfile.as_str(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// The netdev id of the fleet NIC in QEMU (the first NIC's is `n0`).
const QEMU_NETDEV: &str = "fleet0";

/// QEMU's arguments for a member's second NIC, plugged into the switch; appended to the
/// member's own. A `,` in the path is doubled, QEMU's escape inside an option value.
pub fn qemu_nic_args(nic: &MemberNic, switch: &SwitchPaths) -> Vec<String> {
    vec![
        "-netdev".to_owned(),
        format!(
            "vde,id={QEMU_NETDEV},sock={}",
            switch.dir.as_str().replace(',', ",,")
        ),
        "-device".to_owned(),
        format!("virtio-net-pci,netdev={QEMU_NETDEV},mac={}", nic.mac),
    ]
}

/// A fleet run's isolated libvirt network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtFleetNetwork {
    name: String,
    bridge: String,
}

/// libvirt network names are free text, but this one is also written into XML and argv.
const RUN_NAME_MAX: usize = 48;

impl LibvirtFleetNetwork {
    /// The network of the fleet run named `run` (the run's unique name, e.g. its directory's).
    pub fn new(run: &str) -> Result<LibvirtFleetNetwork, NetworkError> {
        let valid = !run.is_empty()
            && run.len() <= RUN_NAME_MAX
            && run
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(NetworkError::BadRunName {
                run: run.to_owned(),
                max: RUN_NAME_MAX,
            });
        }
        // Interface names are at most 15 bytes: a hash of the run keeps them apart.
        let mut hash: u32 = 0x811c_9dc5;
        for byte in run.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        Ok(LibvirtFleetNetwork {
            name: format!("boma-fleet-{run}"),
            bridge: format!("vbf-{hash:08x}"),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The network's definition for `virsh net-create`: no `<forward>` (isolated) and no `<ip>`
    /// (the host has no address on it, and libvirt runs no DHCP there: members are static).
    pub fn xml(&self) -> String {
        let mut out = String::from("<network>\n");
        let _ = writeln!(out, "  <name>{}</name>", self.name);
        let _ = writeln!(
            out,
            "  <bridge name='{}' stp='off' delay='0'/>",
            self.bridge
        );
        out.push_str("</network>\n");
        out
    }

    /// virt-install's `--network` value for a member's second NIC.
    pub fn virt_install_network(&self, nic: &MemberNic) -> String {
        format!("network={},mac={},model=virtio", self.name, nic.mac)
    }
}
