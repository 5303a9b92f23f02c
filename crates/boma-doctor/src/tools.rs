//! The programs the harness and CI's scripts run, what each is for, how it tells its version,
//! and the Debian package that installs it (every one of them is in the `integration_test`
//! role's package list, checked by a test).

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
            Purpose::CiNamespace => {
                "CI's libvirt scenario (.ci/libvirt-netns); optional outside CI"
            }
            Purpose::CiReport => "CI checks the cycle's JUnit report with it; optional outside CI",
        }
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

/// One program the doctor looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    /// The arguments that make it print its version; `None` for a program with no such flag
    /// (its presence is all the doctor reports).
    pub version_args: Option<&'static [&'static str]>,
    pub package: Package,
    pub purpose: Purpose,
}

const fn tool(
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

/// Every program, in the order the doctor prints them. `ansible-playbook` is not here: it
/// comes from the repository's venv (`make venv`), not from a Debian package.
pub const TOOLS: &[Tool] = &[
    tool(
        "qemu-system-x86_64",
        VERSION,
        "qemu-system-x86",
        Purpose::Boot,
    ),
    tool("qemu-img", VERSION, "qemu-utils", Purpose::Boot),
    tool("cloud-localds", None, "cloud-image-utils", Purpose::Boot),
    tool("ssh", DASH_V, "openssh-client", Purpose::Boot),
    tool("ssh-keygen", None, "openssh-client", Purpose::Boot),
    tool("virsh", VERSION, "libvirt-clients", Purpose::Libvirt),
    Tool {
        program: "virt-install",
        version_args: VERSION,
        package: Package::VirtInstall,
        purpose: Purpose::Libvirt,
    },
    tool("mmdebstrap", VERSION, "mmdebstrap", Purpose::ImageBuild),
    tool("sfdisk", VERSION, "fdisk", Purpose::ImageBuild),
    tool("mkfs.ext4", DASH_V, "e2fsprogs", Purpose::ImageBuild),
    tool("losetup", VERSION, "mount", Purpose::ImageBuild),
    tool("partx", VERSION, "util-linux", Purpose::ImageBuild),
    tool("curl", VERSION, "curl", Purpose::Verify),
    tool(
        "libvirtd",
        VERSION,
        "libvirt-daemon-system",
        Purpose::CiNamespace,
    ),
    tool("nft", VERSION, "nftables", Purpose::CiNamespace),
    tool("ip", DASH_V, "iproute2", Purpose::CiNamespace),
    tool("xmllint", VERSION, "libxml2-utils", Purpose::CiReport),
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
    fn virt_install_is_named_per_release() {
        assert_eq!(Package::VirtInstall.name(Some("bookworm")), "virtinst");
        assert_eq!(Package::VirtInstall.name(Some("trixie")), "virt-install");
        assert!(Package::VirtInstall.name(None).contains("virtinst"));
    }
}
