//! What this machine can do, judged from its facts: the one place each rule about the control
//! node is written. The doctor shows these verdicts, `it`'s preflight refuses on them, and the
//! reservation charges by them, so the three can never disagree. Pure: facts in, verdicts out.
//!
//! - memory: what a VM may claim ([`vm_charge_mib`]) and whether it fits ([`MemoryNeed`]);
//! - disk: what a run and the golden image write ([`disk`]);
//! - tools: which programs a step cannot start without ([`missing_required`]);
//! - libvirt: whether its backend can be used from here ([`libvirt`]);
//! - KVM: whether to use a cached verdict or probe ([`kvm_plan`]).

use std::fmt;

use crate::facts::{KvmDevice, LibvirtFacts, Space, ToolFact};
use crate::gather::LIBVIRT_URI;
use crate::kvm::Accel;
use crate::tools::Needs;

/// What a QEMU process holds beyond the guest's memory, apart from TCG's translation cache:
/// device and block-layer state, the malloc arenas of its threads (64 MiB each), libraries.
/// Measured (QEMU 7.2, `-smp 2 -m 3072`, TCG, on the 2-core CI machine): 233 MiB seven
/// minutes into a run, 232 MiB at 23 minutes.
pub const QEMU_OVERHEAD_MIB: u64 = 256;
/// TCG's translated-code cache: QEMU sizes it at min(1 GiB, 1/8 of host memory) unless
/// `-accel tcg,tb-size=…` says otherwise, and fills it within minutes (same guest, 24 GiB
/// host: 1006 MiB resident at seven minutes, 1023 MiB at 23).
pub const TCG_TRANSLATION_CACHE_MIB: u64 = 1024;
/// Per-VM overhead under TCG (the fallback, and the only accelerator that works on the CI
/// machine).
pub const TCG_OVERHEAD_MIB: u64 = QEMU_OVERHEAD_MIB + TCG_TRANSLATION_CACHE_MIB;
/// Head-room left to the host once every reserved VM has all it may claim.
pub const MARGIN_MIB: u64 = 1024;

/// What a VM whose guest has `guest_mib` may claim in all: the guest and its QEMU under TCG.
/// Memory is reserved before the KVM probe runs (a refusal must cost nothing), so the
/// accelerator is not known yet and the charge is the larger one.
pub fn vm_charge_mib(guest_mib: u64) -> u64 {
    guest_mib + TCG_OVERHEAD_MIB
}

/// The memory a new VM needs: what the VMs reserved before it may still claim, its own
/// charge, and the host's margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeed {
    pub still_to_claim_mib: u64,
    /// [`vm_charge_mib`] of its guest.
    pub charge_mib: u64,
}

impl MemoryNeed {
    /// A VM of `guest_mib` on a machine where no other VM is reserved.
    pub fn alone(guest_mib: u64) -> MemoryNeed {
        MemoryNeed {
            still_to_claim_mib: 0,
            charge_mib: vm_charge_mib(guest_mib),
        }
    }

    pub fn total_mib(&self) -> u64 {
        self.still_to_claim_mib + self.charge_mib + MARGIN_MIB
    }

    /// Whether it fits in `available_mib` (`MemAvailable`, which already excludes what running
    /// VMs hold).
    pub fn fits(&self, available_mib: u64) -> bool {
        self.total_mib() <= available_mib
    }
}

/// What a run writes to its overlay (Docker, images, logs) with room to spare.
pub const RUN_DISK_MIB: u64 = 4096;
/// What fetching or building the golden image writes on the cache's filesystem, with room to
/// spare: the build's ~440 MB root filesystem, the raw disk it is copied onto, the ~210 MiB
/// qcow2 (a download is smaller).
pub const GOLDEN_IMAGE_MIB: u64 = 2048;

/// Whether a filesystem has `need_mib` free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disk {
    Enough {
        free_mib: u64,
    },
    Short {
        free_mib: u64,
        need_mib: u64,
    },
    /// Its free space could not be measured.
    Unmeasured,
}

/// Whether `space` has `need_mib` free.
pub fn disk(space: &Space, need_mib: u64) -> Disk {
    match space.free_mib {
        None => Disk::Unmeasured,
        Some(free_mib) if free_mib >= need_mib => Disk::Enough { free_mib },
        Some(free_mib) => Disk::Short { free_mib, need_mib },
    }
}

/// The programs of `tools` that a step that `needs` this cannot start without and that are
/// missing ([`Needs::required_tools`]), in [`crate::TOOLS`] order.
pub fn missing_required(needs: Needs, tools: &[ToolFact]) -> Vec<&ToolFact> {
    tools
        .iter()
        .filter(|f| f.tool.purpose.required_by(needs) && !f.state.is_present())
        .collect()
}

/// Whether the libvirt backend can be used from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Libvirt {
    /// `virsh` or `virt-install` is not installed (the first missing one).
    NotInstalled {
        tool: &'static str,
    },
    /// A `libvirtd` runs in another network namespace: its guests' addresses are not
    /// reachable from here.
    OtherNamespace {
        pid: u32,
    },
    /// No daemon answers on [`LIBVIRT_URI`].
    NoDaemon,
    Usable,
}

impl fmt::Display for Libvirt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Libvirt::NotInstalled { tool } => write!(f, "`{tool}` is not installed"),
            Libvirt::OtherNamespace { pid } => write!(
                f,
                "libvirtd (pid {pid}) runs in another network namespace: run the harness inside it (`ip netns exec <ns> …`)"
            ),
            Libvirt::NoDaemon => write!(f, "no libvirt daemon answers on {LIBVIRT_URI}"),
            Libvirt::Usable => write!(f, "a libvirt daemon answers in this network namespace"),
        }
    }
}

/// Whether libvirt can run the VM from here: both its programs present, no daemon in another
/// network namespace, and the system daemon answering.
pub fn libvirt(tools: &[ToolFact], facts: &LibvirtFacts) -> Libvirt {
    for program in ["virsh", "virt-install"] {
        let present = tools
            .iter()
            .any(|f| f.tool.program == program && f.state.is_present());
        if !present {
            return Libvirt::NotInstalled { tool: program };
        }
    }
    if let Some(daemon) = facts
        .daemons
        .iter()
        .find(|d| d.same_namespace == Some(false))
    {
        return Libvirt::OtherNamespace { pid: daemon.pid };
    }
    if !facts.daemon_answers {
        return Libvirt::NoDaemon;
    }
    Libvirt::Usable
}

/// What to do about KVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvmPlan {
    /// Use this accelerator without probing.
    Use(Accel),
    /// Boot a probe guest (`/dev/kvm` opens, which proves nothing) and cache its verdict.
    Probe,
}

/// No `/dev/kvm` this process can open means TCG; one it can open means the verdict `cached`
/// for this boot, QEMU and image, or a probe when there is none.
pub fn kvm_plan(device: &KvmDevice, cached: Option<Accel>) -> KvmPlan {
    match (device, cached) {
        (KvmDevice::Missing | KvmDevice::Inaccessible { .. }, _) => KvmPlan::Use(Accel::Tcg),
        (KvmDevice::Accessible, Some(accel)) => KvmPlan::Use(accel),
        (KvmDevice::Accessible, None) => KvmPlan::Probe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Daemon, ToolState, Version};
    use crate::tools::TOOLS;

    fn tools_without(missing: &[&str]) -> Vec<ToolFact> {
        crate::gather::tools_located_by(|p| {
            (!missing.contains(&p)).then(|| format!("/usr/bin/{p}").into())
        })
    }

    #[test]
    fn a_vm_fits_with_its_tcg_overhead_and_the_margin_and_not_a_mib_less() {
        let need = MemoryNeed::alone(3072);
        assert_eq!(need.charge_mib, 3072 + 256 + 1024);
        assert_eq!(need.total_mib(), 3072 + 1280 + 1024);
        assert!(need.fits(5376));
        assert!(!need.fits(5375));
        // The case the doctor and the reservation once disagreed on.
        assert!(!need.fits(4500));
        let beside = MemoryNeed {
            still_to_claim_mib: 2000,
            ..need
        };
        assert!(beside.fits(7376) && !beside.fits(7375));
    }

    #[test]
    fn disk_is_enough_short_or_unmeasured() {
        let space = |free_mib| Space {
            dir: "/x".into(),
            device: None,
            free_mib,
        };
        assert_eq!(
            disk(&space(Some(4096)), RUN_DISK_MIB),
            Disk::Enough { free_mib: 4096 }
        );
        assert_eq!(
            disk(&space(Some(100)), RUN_DISK_MIB),
            Disk::Short {
                free_mib: 100,
                need_mib: 4096
            }
        );
        assert_eq!(disk(&space(None), RUN_DISK_MIB), Disk::Unmeasured);
    }

    #[test]
    fn only_the_required_programs_of_a_need_are_missing_required() {
        let all = [
            "qemu-system-x86_64",
            "cloud-localds",
            "curl",
            "virsh",
            "mmdebstrap",
            "xmllint",
        ];
        let tools = tools_without(&all);
        let names = |needs| -> Vec<&str> {
            missing_required(needs, &tools)
                .iter()
                .map(|f| f.tool.program)
                .collect()
        };
        assert_eq!(names(Needs::Vm), ["qemu-system-x86_64", "cloud-localds"]);
        assert_eq!(names(Needs::Ansible), ["curl"]);
        assert_eq!(
            names(Needs::All),
            ["qemu-system-x86_64", "cloud-localds", "curl"]
        );
        assert!(missing_required(Needs::All, &tools_without(&[])).is_empty());
        assert_eq!(tools.len(), TOOLS.len());
    }

    /// A fleet cannot start without the switch of its network; a single run does not ask for it.
    #[test]
    fn a_fleet_requires_the_switch_and_a_single_run_does_not() {
        let tools = tools_without(&["vde_switch", "curl"]);
        let names = |needs| -> Vec<&str> {
            missing_required(needs, &tools)
                .iter()
                .map(|f| f.tool.program)
                .collect()
        };
        assert_eq!(names(Needs::Fleet), ["curl", "vde_switch"]);
        assert_eq!(names(Needs::All), ["curl"]);
        assert!(names(Needs::Vm).is_empty());
        let switch = crate::tools::tool("vde_switch").unwrap();
        assert_eq!(switch.package, crate::tools::Package::Named("vde2"));
        assert!(
            Needs::All.covers(switch.purpose),
            "the doctor shows its line"
        );
    }

    #[test]
    fn libvirt_needs_its_programs_its_namespace_and_a_daemon() {
        let answering = LibvirtFacts {
            daemon_answers: true,
            daemons: vec![Daemon {
                pid: 7,
                same_namespace: Some(true),
            }],
        };
        let tools = tools_without(&[]);
        assert_eq!(libvirt(&tools, &answering), Libvirt::Usable);
        assert_eq!(
            libvirt(&tools_without(&["virt-install"]), &answering),
            Libvirt::NotInstalled {
                tool: "virt-install"
            }
        );
        let elsewhere = LibvirtFacts {
            daemon_answers: true,
            daemons: vec![
                Daemon {
                    pid: 7,
                    same_namespace: None,
                },
                Daemon {
                    pid: 4242,
                    same_namespace: Some(false),
                },
            ],
        };
        let verdict = libvirt(&tools, &elsewhere);
        assert_eq!(verdict, Libvirt::OtherNamespace { pid: 4242 });
        assert!(verdict.to_string().contains("ip netns exec"), "{verdict}");
        assert_eq!(libvirt(&tools, &LibvirtFacts::default()), Libvirt::NoDaemon);
        assert!(
            Libvirt::NoDaemon.to_string().ends_with("qemu:///system"),
            "{}",
            Libvirt::NoDaemon
        );
        // Present without a version probe counts as present.
        let mut unprobed = tools.clone();
        unprobed[0].state = ToolState::Present {
            path: "/x".into(),
            version: Version::Unreadable,
        };
        assert_eq!(libvirt(&unprobed, &answering), Libvirt::Usable);
    }

    #[test]
    fn kvm_is_tcg_without_a_usable_device_a_cached_verdict_or_a_probe() {
        let inaccessible = KvmDevice::Inaccessible {
            owner: "root".into(),
            group: "kvm".into(),
            mode: 0o660,
        };
        assert_eq!(
            kvm_plan(&KvmDevice::Missing, Some(Accel::Kvm)),
            KvmPlan::Use(Accel::Tcg)
        );
        assert_eq!(kvm_plan(&inaccessible, None), KvmPlan::Use(Accel::Tcg));
        assert_eq!(
            kvm_plan(&KvmDevice::Accessible, Some(Accel::Kvm)),
            KvmPlan::Use(Accel::Kvm)
        );
        assert_eq!(kvm_plan(&KvmDevice::Accessible, None), KvmPlan::Probe);
    }
}
