//! The programs the harness and CI's scripts run, what each is for, how it tells its version,
//! and the Debian package that installs it (every one of them is in the `integration_test`
//! role's package list, checked by the doctor's tests); and what each part of the cycle
//! ([`Needs`]) requires of them: one list, which `it`'s preflight refuses on and the doctor
//! calls a problem.

/// What a program is needed for, which decides how much its absence matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Booting and reaching a test VM: `it` cannot run without it.
    Boot,
    /// Building the golden image from Debian packages: needed while no verified image is cached.
    ImageBuild,
    /// The verify playbook's probe from the controller: `it` cannot pass without it.
    Verify,
    /// The libvirt backend: optional, the QEMU backend works without it.
    Libvirt,
    /// A fleet run's private network under QEMU (ADR-027): a fleet cannot run without it; a
    /// single VM does not need it.
    Fleet,
    /// CI's libvirt scenario in a network namespace (`.ci/libvirt-netns`): optional here.
    CiNamespace,
    /// CI's check of the cycle's JUnit report: optional here.
    CiReport,
}

impl Purpose {
    /// Why the harness (or CI) runs a program of this kind, in a few words.
    pub fn why(self) -> &'static str {
        match self {
            Purpose::Boot => "boots and reaches the test VM",
            Purpose::ImageBuild => "builds the golden image from Debian packages",
            Purpose::Verify => "the verify playbook probes the VM with it from the controller",
            Purpose::Libvirt => "the libvirt backend; optional: the QEMU backend works without it",
            Purpose::Fleet => {
                "a fleet run's private network under QEMU; single runs work without it"
            }
            Purpose::CiNamespace => {
                "CI's libvirt scenario (.ci/libvirt-netns); optional outside CI"
            }
            Purpose::CiReport => "CI checks the cycle's JUnit report with it; optional outside CI",
        }
    }
}

impl Purpose {
    /// Whether a run that `needs` this cannot start without a program of this purpose. The
    /// image build's programs are not: `it` downloads the golden image where it can, and the
    /// doctor, which knows whether one is cached, judges them itself.
    pub fn required_by(self, needs: Needs) -> bool {
        match self {
            Purpose::Boot => needs.vm(),
            Purpose::Verify => needs.ansible(),
            Purpose::Fleet => needs == Needs::Fleet,
            Purpose::ImageBuild | Purpose::Libvirt | Purpose::CiNamespace | Purpose::CiReport => {
                false
            }
        }
    }
}

/// Which part of the cycle the caller is about to run: `it`'s preflight asks only about what
/// its step needs; `cargo xtask doctor` asks about everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Boot a VM: hypervisor and image tools, KVM, memory, disk, libvirt, the image cache.
    Vm,
    /// Run playbooks against a live VM and verify it: the venv, curl.
    Ansible,
    /// The whole cycle, plus what CI's scripts run.
    All,
    /// The whole cycle over a fleet of VMs on QEMU: what booting and applying need, and the
    /// fleet's private network.
    Fleet,
}

impl Needs {
    pub fn vm(self) -> bool {
        matches!(self, Needs::Vm | Needs::All | Needs::Fleet)
    }

    pub fn ansible(self) -> bool {
        matches!(self, Needs::Ansible | Needs::All | Needs::Fleet)
    }

    /// Whether a program of `purpose` concerns this need at all (the doctor shows its line).
    pub fn covers(self, purpose: Purpose) -> bool {
        match purpose {
            Purpose::Boot | Purpose::ImageBuild | Purpose::Libvirt | Purpose::Fleet => self.vm(),
            Purpose::Verify => self.ansible(),
            Purpose::CiNamespace | Purpose::CiReport => self == Needs::All,
        }
    }

    /// The programs a run that needs this cannot start without, in [`TOOLS`] order.
    pub fn required_tools(self) -> impl Iterator<Item = &'static Tool> {
        TOOLS.iter().filter(move |t| t.purpose.required_by(self))
    }
}

/// The Debian package that installs a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Package {
    /// The same name on every release.
    Named(&'static str),
    /// virt-install: `virtinst` on bookworm; trixie renamed it `virt-install`.
    VirtInstall,
}

impl Package {
    /// The package name on the Debian release `codename` (`bookworm`, `trixie`), or both
    /// names when the release is unknown.
    pub fn name(self, codename: Option<&str>) -> String {
        match (self, codename) {
            (Package::Named(name), _) => name.to_owned(),
            (Package::VirtInstall, Some("bookworm")) => "virtinst".to_owned(),
            (Package::VirtInstall, Some(_)) => "virt-install".to_owned(),
            (Package::VirtInstall, None) => {
                "virtinst (bookworm) or virt-install (trixie)".to_owned()
            }
        }
    }
}

/// One program the harness or CI runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    /// The arguments that make it print its version; `None` for a program with no such flag
    /// (its presence is all the doctor reports).
    pub version_args: Option<&'static [&'static str]>,
    pub package: Package,
    pub purpose: Purpose,
}

const fn named(
    program: &'static str,
    version_args: Option<&'static [&'static str]>,
    package: &'static str,
    purpose: Purpose,
) -> Tool {
    Tool {
        program,
        version_args,
        package: Package::Named(package),
        purpose,
    }
}

const VERSION: Option<&[&str]> = Some(&["--version"]);
const DASH_V: Option<&[&str]> = Some(&["-V"]);

/// The program named `program`, if it is one of [`TOOLS`].
pub fn tool(program: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.program == program)
}

/// Every program, in the order the doctor prints them. `ansible-playbook` is not here: it
/// comes from the repository's venv (`make venv`), not from a Debian package.
pub const TOOLS: &[Tool] = &[
    named(
        "qemu-system-x86_64",
        VERSION,
        "qemu-system-x86",
        Purpose::Boot,
    ),
    named("qemu-img", VERSION, "qemu-utils", Purpose::Boot),
    named("cloud-localds", None, "cloud-image-utils", Purpose::Boot),
    named("ssh", DASH_V, "openssh-client", Purpose::Boot),
    named("ssh-keygen", None, "openssh-client", Purpose::Boot),
    named("virsh", VERSION, "libvirt-clients", Purpose::Libvirt),
    Tool {
        program: "virt-install",
        version_args: VERSION,
        package: Package::VirtInstall,
        purpose: Purpose::Libvirt,
    },
    named("mmdebstrap", VERSION, "mmdebstrap", Purpose::ImageBuild),
    named("sfdisk", VERSION, "fdisk", Purpose::ImageBuild),
    named("mkfs.ext4", DASH_V, "e2fsprogs", Purpose::ImageBuild),
    named("losetup", VERSION, "mount", Purpose::ImageBuild),
    named("partx", VERSION, "util-linux", Purpose::ImageBuild),
    named("curl", VERSION, "curl", Purpose::Verify),
    named("vde_switch", VERSION, "vde2", Purpose::Fleet),
    named(
        "libvirtd",
        VERSION,
        "libvirt-daemon-system",
        Purpose::CiNamespace,
    ),
    named("nft", VERSION, "nftables", Purpose::CiNamespace),
    named("ip", DASH_V, "iproute2", Purpose::CiNamespace),
    named("xmllint", VERSION, "libxml2-utils", Purpose::CiReport),
];

/// The directories searched after `PATH`: a user's `PATH` on Debian lacks the sbin
/// directories, where `losetup`, `sfdisk`, `mkfs.ext4`, `nft` and `libvirtd` live, yet the
/// packages are installed all the same.
pub const SBIN_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_package_hint_of_the_spawner_names_the_same_package() {
        // boma-exec's "not installed" errors and the doctor must send the operator to the
        // same package.
        for tool in TOOLS {
            if let Some(hint) = boma_exec::package_hint(tool.program) {
                let package = match tool.package {
                    Package::Named(name) => name,
                    Package::VirtInstall => "virtinst",
                };
                assert!(
                    hint.contains(package),
                    "{}: the doctor says {package}, boma-exec says {hint:?}",
                    tool.program
                );
            }
        }
    }

    #[test]
    fn a_vm_requires_the_boot_programs_and_ansible_requires_curl() {
        let names =
            |needs: Needs| -> Vec<&str> { needs.required_tools().map(|t| t.program).collect() };
        assert_eq!(
            names(Needs::Vm),
            [
                "qemu-system-x86_64",
                "qemu-img",
                "cloud-localds",
                "ssh",
                "ssh-keygen"
            ]
        );
        assert_eq!(names(Needs::Ansible), ["curl"]);
        assert_eq!(
            names(Needs::All),
            [names(Needs::Vm), names(Needs::Ansible)].concat()
        );
        // A fleet needs the fleet network's switch besides; nothing else does.
        assert_eq!(
            names(Needs::Fleet),
            [names(Needs::All), vec!["vde_switch"]].concat()
        );
        for needs in [Needs::Vm, Needs::Ansible, Needs::All, Needs::Fleet] {
            assert!(needs.required_tools().all(|t| needs.covers(t.purpose)));
        }
    }

    #[test]
    fn virt_install_is_named_per_release() {
        assert_eq!(Package::VirtInstall.name(Some("bookworm")), "virtinst");
        assert_eq!(Package::VirtInstall.name(Some("trixie")), "virt-install");
        assert!(Package::VirtInstall.name(None).contains("virtinst"));
    }
}
