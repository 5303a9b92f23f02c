//! The libvirt backend: `virt-install --import` on the isolated NAT network `boma-it`, the
//! address from the DHCP lease, `virsh reboot`/`reset`/`destroy`/`undefine`.
//!
//! Everything talks to the system daemon ([`LIBVIRT_URI`]). When CI runs the daemons inside a
//! network namespace, the harness runs inside it too, so the lease address is reachable (and
//! nothing else is).
//!
//! A kept VM is a domain of the same name, reached at its lease address on port 22 (its
//! published ports at the same address, nothing forwarded). Inspect it where the harness ran
//! (`.ci/libvirt-netns exec …` on a machine without systemd): `virsh --connect
//! qemu:///system domstate <vm>`, `domifaddr <vm> --source lease`, `net-dhcp-leases boma-it`,
//! `dumpxml <vm>`. `virsh console` does not attach: the serial port writes to the run
//! directory's `console.log`, which `cargo xtask console` prints.

use boma_exec::say;
use std::time::Duration;

use boma_exec::{CmdExt, ExecError};
use boma_host::gather::LIBVIRT_URI;
use boma_name::VmName;
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::hypervisor::segment::NETWORK_PREFIX;
use crate::hypervisor::{
    BackendKind, BootSpec, Booted, Endpoint, Hypervisor, RebootHow, Segment, Segments,
};
use crate::{RunRecord, VmError};

/// The isolated NAT network every test VM joins.
pub const NETWORK: &str = "boma-it";
/// How long a `virsh` call may take (the first one after the daemon starts takes ~8 s).
const VIRSH_TIMEOUT: Duration = Duration::from_secs(60);

/// The network's definition: own bridge, the /24 of [`BackendKind::guest_network`]
/// (192.168.150.0/24), gateway .1, DHCP .10–.254, NAT out. Pure.
pub fn network_xml() -> String {
    let (network, _) = BackendKind::Libvirt.guest_network();
    let [a, b, c, _] = network.octets();
    format!(
        "<network>
  <name>{NETWORK}</name>
  <forward mode='nat'/>
  <bridge name='virbr-boma' stp='on' delay='0'/>
  <ip address='{a}.{b}.{c}.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='{a}.{b}.{c}.10' end='{a}.{b}.{c}.254'/>
    </dhcp>
  </ip>
</network>
"
    )
}

/// The `--osinfo` to use: the first of the preferred ids the installed osinfo database knows,
/// from the output of `virt-install --osinfo list`. Pure.
pub fn pick_osinfo(known: &str) -> Option<&'static str> {
    let ids: Vec<&str> = known
        .lines()
        .flat_map(|line| line.split([',', ' ']))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect();
    // debian13 where known; bookworm's database predates it: debiantesting, then a generic
    // modern Linux (not `generic`, which gets no virtio defaults).
    ["debian13", "debiantesting", "linux2022", "linux2020"]
        .into_iter()
        .find(|want| ids.contains(want))
}

/// `virt-install` arguments for `spec` (program name excluded): a fleet member's second NIC,
/// on its isolated network, is a second `--network` right after the first. Refused when the
/// member's segment is not a libvirt network. Pure.
pub fn virt_install_args(spec: &BootSpec, osinfo: &str) -> Result<Vec<String>, VmError> {
    let fleet_nic = match &spec.fleet_nic {
        Some(nic) => vec!["--network".to_owned(), nic.virt_install_network()?],
        None => Vec::new(),
    };
    let first = [
        "--connect",
        LIBVIRT_URI,
        "--name",
        spec.name.as_str(),
        "--memory",
        &spec.mem_mib.to_string(),
        "--vcpus",
        &spec.vcpus.to_string(),
        "--virt-type",
        spec.accel.virt_type(),
        "--osinfo",
        osinfo,
        "--import",
        "--disk",
        &format!("path={},format=qcow2,bus=virtio,cache=unsafe", spec.overlay),
        "--disk",
        &format!("path={},device=cdrom,readonly=on", spec.seed),
        "--network",
        &format!("network={NETWORK},mac={},model=virtio", spec.mac),
    ]
    .map(str::to_owned);
    let rest = [
        "--rng",
        "/dev/urandom",
        "--graphics",
        "none",
        "--serial",
        &format!("file,path={}", spec.console),
        // Static DAC label, no relabelling: libvirt would otherwise chown every disk it is
        // given, the shared read-only golden image behind the overlay included.
        "--security",
        "type=static,model=dac,label=+0:+0,relabel=no",
        "--noautoconsole",
    ]
    .map(str::to_owned);
    Ok(first.into_iter().chain(fleet_nic).chain(rest).collect())
}

/// The IPv4 address in `virsh domifaddr --source lease` output. Pure.
pub fn lease_ip(domifaddr: &str) -> Option<String> {
    domifaddr.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let ipv4 = fields.find(|f| *f == "ipv4")?;
        let _ = ipv4;
        let address = fields.next()?;
        Some(address.split('/').next()?.to_owned())
    })
}

/// The directory a storage pool points at, from `virsh pool-dumpxml`. Pure.
pub fn pool_path(pool_xml: &str) -> Option<&str> {
    let start = pool_xml.find("<path>")? + "<path>".len();
    let end = pool_xml[start..].find("</path>")? + start;
    Some(pool_xml[start..end].trim())
}

/// Drives libvirt through `virsh` and `virt-install`.
pub struct LibvirtBackend<'a> {
    sh: &'a Shell,
    /// The run directory: storage pools virt-install creates under it are ours to remove.
    runs_root: &'a Utf8Path,
}

impl<'a> LibvirtBackend<'a> {
    pub fn new(sh: &'a Shell, runs_root: &'a Utf8Path) -> LibvirtBackend<'a> {
        LibvirtBackend { sh, runs_root }
    }

    fn virsh(&self, args: &[&str]) -> Result<String, VmError> {
        let sh = self.sh;
        Ok(cmd!(sh, "virsh --connect {LIBVIRT_URI} {args...}")
            .exec()
            .timeout(VIRSH_TIMEOUT)
            .read()?)
    }

    /// `virsh` for teardown: runs after Ctrl-C too, and a failure is returned, not raised.
    fn virsh_cleanup(&self, args: &[&str]) -> Result<String, ExecError> {
        virsh_uninterruptible(self.sh, args)
    }

    /// Define, autostart and start `boma-it` as needed. `net-start` is explicit: autostart
    /// fires only when the daemon starts, and `/run` may outlive that moment.
    pub fn ensure_network(&self) -> Result<(), VmError> {
        let sh = self.sh;
        let info = cmd!(sh, "virsh --connect {LIBVIRT_URI} net-info {NETWORK}")
            .exec()
            .allow_fail()
            .timeout(VIRSH_TIMEOUT)
            .run()?;
        if !info.success() {
            let xml = self.runs_root.join("boma-it-network.xml");
            std::fs::create_dir_all(self.runs_root).map_err(|e| VmError::io(self.runs_root, e))?;
            std::fs::write(&xml, network_xml()).map_err(|e| VmError::io(&xml, e))?;
            let defined = self.virsh(&["net-define", xml.as_str()]);
            let _ = std::fs::remove_file(&xml);
            defined?;
            self.virsh(&["net-autostart", NETWORK])?;
        }
        let info = self.virsh(&["net-info", NETWORK])?;
        if !network_active(&info) {
            self.virsh(&["net-start", NETWORK])?;
        }
        Ok(())
    }

    fn osinfo(&self) -> Result<&'static str, VmError> {
        let sh = self.sh;
        let known = cmd!(sh, "virt-install --osinfo list")
            .exec()
            .quiet()
            .timeout(VIRSH_TIMEOUT)
            .read()?;
        pick_osinfo(&known).ok_or_else(|| {
            VmError::Preflight(
                "the installed osinfo database knows none of debian13, debiantesting, linux2022, linux2020: install osinfo-db".into(),
            )
        })
    }

    /// Storage pools (virt-install makes one per disk directory) pointing into the run dir.
    fn our_pools(&self) -> Vec<String> {
        let Ok(names) = self.virsh_cleanup(&["pool-list", "--all", "--name"]) else {
            return Vec::new();
        };
        names
            .lines()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .filter(|pool| {
                self.virsh_cleanup(&["pool-dumpxml", pool])
                    .ok()
                    .and_then(|xml| {
                        pool_path(&xml).map(|p| Utf8Path::new(p).starts_with(self.runs_root))
                    })
                    .unwrap_or(false)
            })
            .map(str::to_owned)
            .collect()
    }

    fn domstate(&self, name: &str) -> Option<String> {
        self.virsh_cleanup(&["domstate", name])
            .ok()
            .map(|s| s.trim().to_owned())
    }
}

/// Whether the libvirt backend is usable from here, as `boma_host::judge::libvirt` decides
/// for preflight and the doctor: its programs present, and the system daemon answering in
/// this network namespace. A daemon in another namespace is reachable through its unix
/// socket, yet its guests' addresses are not — and trying them from here would send traffic
/// to private addresses outside the namespace that owns them.
pub fn reachable(sh: &Shell) -> bool {
    let tools = boma_host::gather::locate_tools();
    let facts = boma_host::gather::libvirt(sh, boma_host::gather::path_of(&tools, "virsh"));
    boma_host::judge::libvirt(&tools, &facts) == boma_host::judge::Libvirt::Usable
}

impl Hypervisor for LibvirtBackend<'_> {
    fn kind(&self) -> BackendKind {
        BackendKind::Libvirt
    }

    fn boot(&self, spec: &BootSpec) -> Result<Booted, VmError> {
        self.ensure_network()?;
        let osinfo = self.osinfo()?;
        let sh = self.sh;
        let args = virt_install_args(spec, osinfo)?;
        cmd!(sh, "virt-install {args...}")
            .exec()
            .timeout(Duration::from_secs(180))
            .run()?;
        // The address comes with the lease (`wait_address`); the ports are known now.
        let unknown = |port| Endpoint {
            host: String::new(),
            port,
        };
        let published = spec
            .published_ports
            .iter()
            .map(|p| (*p, unknown(*p)))
            .collect();
        Ok(Booted {
            ssh: unknown(22),
            published,
            pid: None,
        })
    }

    fn address(&self, record: &RunRecord) -> Result<Option<Booted>, VmError> {
        let sh = self.sh;
        let name = record.name.as_str();
        let out = cmd!(
            sh,
            "virsh --connect {LIBVIRT_URI} domifaddr {name} --source lease"
        )
        .exec()
        .quiet()
        .allow_fail()
        .timeout(VIRSH_TIMEOUT)
        .run()?;
        let Some(ip) = lease_ip(&out.stdout) else {
            return Ok(None);
        };
        let published = record_ports(record)
            .into_iter()
            .map(|p| {
                (
                    p,
                    Endpoint {
                        host: ip.clone(),
                        port: p,
                    },
                )
            })
            .collect();
        Ok(Some(Booted {
            ssh: Endpoint { host: ip, port: 22 },
            published,
            pid: None,
        }))
    }

    fn reboot(&self, record: &RunRecord, how: RebootHow) -> Result<bool, VmError> {
        let verb = match how {
            // ACPI: the guest reboots itself, no agent needed.
            RebootHow::Guest => "reboot",
            RebootHow::Hard => "reset",
        };
        self.virsh(&[verb, record.name.as_str()])?;
        Ok(true)
    }

    fn start(&self, record: &RunRecord) -> Result<Booted, VmError> {
        self.virsh(&["start", record.name.as_str()])?;
        // The address comes with a lease again (possibly another): the lifecycle asks.
        Ok(Booted {
            ssh: Endpoint {
                host: record.ssh.host.clone(),
                port: record.ssh.port,
            },
            published: record.published.clone(),
            pid: None,
        })
    }

    fn is_running(&self, record: &RunRecord) -> Result<bool, VmError> {
        Ok(self
            .domstate(record.name.as_str())
            .is_some_and(|s| s == "running" || s == "paused" || s == "in shutdown"))
    }

    fn suspend(&self, record: &RunRecord) -> Result<(), VmError> {
        self.virsh(&["suspend", record.name.as_str()]).map(|_| ())
    }

    fn resume(&self, record: &RunRecord) -> Result<(), VmError> {
        self.virsh(&["resume", record.name.as_str()]).map(|_| ())
    }

    fn stop(&self, record: &RunRecord) -> Result<(), VmError> {
        // `virsh destroy` powers a domain off and keeps it defined (`undefine` is what removes).
        let name = record.name.as_str();
        match self.domstate(name) {
            None => Err(VmError::Backend(format!(
                "libvirt has no domain {name} to power off"
            ))),
            Some(state) if state == "shut off" => Ok(()),
            Some(_) => self
                .virsh_cleanup(&["destroy", name])
                .map(|_| ())
                .map_err(VmError::from),
        }
    }

    fn destroy(&self, name: &VmName, _record: Option<&RunRecord>) -> Result<(), VmError> {
        let name = name.as_str();
        let Some(state) = self.domstate(name) else {
            // Not defined; pools pointing at removed run dirs may still be.
            return self.remove_pools();
        };
        if state != "shut off"
            && let Err(e) = self.virsh_cleanup(&["destroy", name])
        {
            say!("    virsh destroy {name}: {e}");
        }
        self.virsh_cleanup(&["undefine", name, "--nvram"])
            .map_err(VmError::from)?;
        self.remove_pools()
    }

    fn leftovers(&self) -> Result<Vec<VmName>, VmError> {
        let names = self
            .virsh_cleanup(&["list", "--all", "--name"])
            .unwrap_or_default();
        // This checkout's own: domains whose disks live in its run directory.
        let mut found: Vec<VmName> = names
            .lines()
            .filter_map(|n| VmName::parse(n.trim()).ok())
            .filter(|name| {
                self.virsh_cleanup(&["domblklist", name.as_str(), "--details"])
                    .is_ok_and(|list| disks_under(&list, self.runs_root))
            })
            .collect();
        // A test VM QEMU runs without libvirt is a test VM too: one at a time, whatever runs it.
        for process in crate::host::procs::vm_processes()
            .into_iter()
            .filter(|p| p.runs_from(self.runs_root))
        {
            if !found.contains(&process.name) {
                found.push(process.name);
            }
        }
        Ok(found)
    }

    fn segments(&self) -> Box<dyn Segments + '_> {
        Box::new(LibvirtNetworks {
            sh: self.sh,
            runs_root: self.runs_root,
        })
    }
}

impl LibvirtBackend<'_> {
    fn remove_pools(&self) -> Result<(), VmError> {
        for pool in self.our_pools() {
            let _ = self.virsh_cleanup(&["pool-destroy", &pool]);
            self.virsh_cleanup(&["pool-undefine", &pool])
                .map_err(VmError::from)?;
        }
        Ok(())
    }
}

/// A fleet run's isolated network, through `virsh` (ADR-027): created transient
/// (`net-create`), so that destroying it removes it.
pub struct LibvirtNetworks<'a> {
    sh: &'a Shell,
    /// Where the network's definition is written for `net-create` (and removed after).
    runs_root: &'a Utf8Path,
}

impl LibvirtNetworks<'_> {
    /// A fleet network is made and removed with its run's VMs, in cleanup too.
    fn virsh(&self, args: &[&str]) -> Result<String, ExecError> {
        virsh_uninterruptible(self.sh, args)
    }

    /// `Some(active)` when libvirt knows the network `name`.
    fn state(&self, name: &str) -> Result<Option<bool>, VmError> {
        let sh = self.sh;
        let info = cmd!(sh, "virsh --connect {LIBVIRT_URI} net-info {name}")
            .exec()
            .quiet()
            .allow_fail()
            .timeout(VIRSH_TIMEOUT)
            .run()?;
        Ok(info.success().then(|| network_active(&info.stdout)))
    }
}

impl Segments for LibvirtNetworks<'_> {
    fn create(&self, segment: &Segment) -> Result<(), VmError> {
        let network = network_of(segment)?;
        match self.state(network.name())? {
            Some(true) => return Ok(()),
            Some(false) => {
                self.virsh(&["net-start", network.name()])?;
                return Ok(());
            }
            None => {}
        }
        std::fs::create_dir_all(self.runs_root).map_err(|e| VmError::io(self.runs_root, e))?;
        let xml = self.runs_root.join(format!("{}.xml", network.name()));
        std::fs::write(&xml, network.xml()).map_err(|e| VmError::io(&xml, e))?;
        let created = self.virsh(&["net-create", xml.as_str()]);
        let _ = std::fs::remove_file(&xml);
        created?;
        Ok(())
    }

    fn destroy(&self, segment: &Segment) -> Result<(), VmError> {
        let network = network_of(segment)?;
        let name = network.name();
        if self.state(name)? == Some(true) {
            self.virsh(&["net-destroy", name])?;
        }
        // Created transient, it is gone now; one someone defined is undefined too.
        if self.state(name)?.is_some() {
            self.virsh(&["net-undefine", name])?;
        }
        Ok(())
    }

    fn leftovers(&self) -> Result<Vec<Segment>, VmError> {
        let names = self.virsh(&["net-list", "--all", "--name"])?;
        Ok(fleet_networks(&names))
    }
}

fn network_of(segment: &Segment) -> Result<boma_fleet::LibvirtFleetNetwork, VmError> {
    segment.network().unwrap_or_else(|| {
        Err(VmError::Backend(format!(
            "the libvirt backend has no {segment}: a fleet's segment is its backend's"
        )))
    })
}

/// `virsh` that runs after Ctrl-C too (teardown), its failure returned.
fn virsh_uninterruptible(sh: &Shell, args: &[&str]) -> Result<String, ExecError> {
    cmd!(sh, "virsh --connect {LIBVIRT_URI} {args...}")
        .exec()
        .uninterruptible()
        .timeout(VIRSH_TIMEOUT)
        .read()
}

/// Whether `virsh net-info` says the network is active. Pure.
fn network_active(info: &str) -> bool {
    info.lines()
        .any(|l| l.starts_with("Active:") && l.trim_end().ends_with("yes"))
}

/// The fleet runs' networks in `virsh net-list --name` output: every `boma-fleet-<run>` whose
/// run could name one ([`boma_fleet::LibvirtFleetNetwork::new`]). Pure.
pub fn fleet_networks(net_list: &str) -> Vec<Segment> {
    net_list
        .lines()
        .filter_map(|line| line.trim().strip_prefix(NETWORK_PREFIX))
        .filter(|run| boma_fleet::LibvirtFleetNetwork::new(run).is_ok())
        .map(|run| Segment::LibvirtNetwork {
            run: run.to_owned(),
        })
        .collect()
}

/// Whether a domain's disks (`virsh domblklist --details`) live under `root`. Pure.
pub fn disks_under(domblklist: &str, root: &Utf8Path) -> bool {
    let prefix = format!("{}/", root.as_str().trim_end_matches('/'));
    domblklist
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .any(|source| source.starts_with(&prefix))
}

/// The published ports a record asks for (recorded at boot with empty endpoints).
fn record_ports(record: &RunRecord) -> Vec<u16> {
    record.published.keys().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_definition_snapshot() {
        insta::assert_snapshot!("libvirt_network_xml", network_xml());
    }

    /// The network the fleet-collision check assumes is the one defined.
    #[test]
    fn guest_network_is_the_defined_one() {
        let (network, prefix) = BackendKind::Libvirt.guest_network();
        assert_eq!(
            (network.to_string().as_str(), prefix),
            ("192.168.150.0", 24)
        );
        assert!(network_xml().contains("<ip address='192.168.150.1' netmask='255.255.255.0'>"));
        let inside = |a: &str| {
            !BackendKind::Libvirt
                .inside_guest_network(&[a.parse().unwrap()])
                .is_empty()
        };
        assert!(inside("192.168.150.1") && inside("192.168.150.255"));
        assert!(!inside("192.168.151.1") && !inside("192.168.149.255") && !inside("2001:db8::1"));
        assert!(
            !BackendKind::Qemu
                .inside_guest_network(&["10.0.2.2".parse().unwrap()])
                .is_empty()
        );
        assert!(
            BackendKind::Qemu
                .inside_guest_network(&["10.0.3.2".parse().unwrap()])
                .is_empty()
        );
    }

    #[test]
    fn virt_install_snapshot() {
        let spec = BootSpec::example();
        insta::assert_snapshot!(
            "virt_install_args_tcg",
            virt_install_args(&spec, "debiantesting")
                .unwrap()
                .join("\n")
        );
    }

    /// A fleet member: the single VM's arguments with a second `--network`, the run's isolated
    /// network, right after the first.
    #[test]
    fn fleet_member_virt_install_snapshot() {
        let single = virt_install_args(&BootSpec::example(), "debiantesting").unwrap();
        let member = virt_install_args(
            &BootSpec::fleet_example(BackendKind::Libvirt),
            "debiantesting",
        )
        .unwrap();
        insta::assert_snapshot!("virt_install_args_fleet_member", member.join("\n"));
        let at = member
            .iter()
            .position(|a| a.starts_with("network=boma-fleet-"))
            .expect("the fleet network")
            - 1;
        let mut without = member.clone();
        without.drain(at..at + 2);
        assert_eq!(without, single, "only the fleet NIC is added");
        assert!(
            virt_install_args(&BootSpec::fleet_example(BackendKind::Qemu), "debiantesting")
                .is_err()
        );
    }

    #[test]
    fn fleet_networks_are_found_by_name_and_nothing_else() {
        let list =
            "boma-it\nboma-fleet-web-1a2b3c4d\ndefault\nboma-fleet-\n\nboma-fleet-Bad_Name\n";
        assert_eq!(
            fleet_networks(list),
            [Segment::LibvirtNetwork {
                run: "web-1a2b3c4d".into()
            }]
        );
    }

    #[test]
    fn osinfo_is_asked_not_guessed() {
        let bookworm = "debian11, debian11\ndebian12\ndebiantesting\nlinux2022\n";
        assert_eq!(pick_osinfo(bookworm), Some("debiantesting"));
        assert_eq!(pick_osinfo("debian13\ndebiantesting\n"), Some("debian13"));
        assert_eq!(pick_osinfo("win10\n"), None);
    }

    #[test]
    fn a_domain_is_ours_when_its_disks_live_in_our_run_directory() {
        let list = " Type   Device   Target   Source\n------------------------------------------------\n file   disk     vda      /repo/tests/integration/.run/boma-it-a-1/overlay.qcow2\n file   cdrom    sda      /repo/tests/integration/.run/boma-it-a-1/seed.img\n";
        assert!(disks_under(
            list,
            Utf8Path::new("/repo/tests/integration/.run")
        ));
        assert!(!disks_under(
            list,
            Utf8Path::new("/other/tests/integration/.run")
        ));
        assert!(!disks_under(
            list,
            Utf8Path::new("/repo/tests/integration/.ru")
        ));
    }

    #[test]
    fn lease_and_pool_parsing() {
        let out = " Name       MAC address          Protocol     Address\n-------------------------------------------------------------------------------\n vnet0      52:54:00:12:34:56    ipv4         192.168.150.42/24\n";
        assert_eq!(lease_ip(out).as_deref(), Some("192.168.150.42"));
        assert_eq!(lease_ip(" Name MAC Protocol Address\n----\n"), None);
        let pool = "<pool type='dir'>\n  <name>boma-it-askari-1</name>\n  <target>\n    <path>/repo/tests/integration/.run/boma-it-askari-1</path>\n  </target>\n</pool>";
        assert_eq!(
            pool_path(pool),
            Some("/repo/tests/integration/.run/boma-it-askari-1")
        );
    }
}
