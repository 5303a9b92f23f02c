//! Builds boma's golden Debian 13 image from Debian packages, in place of the genericcloud image.
//!
//! The Debian cloud image site is unreachable where the harness runs, so [`build`] makes an
//! equivalent of `debian-13-genericcloud-amd64.qcow2` from the Debian mirror: trixie amd64 with
//! GRUB (BIOS, i386-pc) in the MBR, cloud-init reading a NoCloud seed, openssh-server, python3
//! and sudo, and no user or password of its own. The recipe (mmdebstrap, a loop-mounted raw
//! disk, a chroot with a private `/dev`, `qemu-img convert`) and why each step is as it is are
//! in `docs/substrate.md`; its phases print to stderr with their elapsed time.
//!
//! Building needs root. Everything it creates lives under a scratch directory inside
//! [`BuildConfig::work_dir`], and a guard takes it apart (unmount, `losetup -d`, delete) on
//! every path out of [`build`]: success, error, panic, or an interrupt seen by
//! [`boma_exec::interrupt`]. The caller (the image cache) adopts the two outputs: it hashes
//! the image, records it in `SHA512SUMS` and renames it into place.
//!
//! Deliberately absent, compared with Debian's genericcloud image: UEFI (BIOS/MBR only) and
//! `deb-src` entries. Also deliberately absent: anything only a test needs (users, keys,
//! sshd settings): the image stays faithful and the harness copes (cloud-init's sshd restart
//! race, `docs/substrate.md`).

mod render;
mod steps;
mod teardown;

use boma_exec::say;
use std::time::Instant;

use boma_exec::ExecError;
use boma_exec::interrupt::{self, Interrupted};
use camino::{Utf8Path, Utf8PathBuf};

pub use render::{
    ARCHIVE_KEYRING, Sources, apt_sources, bootstrap_mirrors, cloud_cfg, fstab, grub_defaults,
    hostname, manifest,
};

/// The file name of the built image inside [`BuildConfig::work_dir`].
pub const IMAGE_FILE: &str = "debian-13-boma-amd64.qcow2";
/// The file name of the package manifest (`<pkg> <version>` lines, sorted).
pub const MANIFEST_FILE: &str = "debian-13-boma-amd64.packages";
/// The scratch directory inside [`BuildConfig::work_dir`]; removed when [`build`] returns.
pub const SCRATCH_DIR: &str = "golden-build.scratch";

/// The packages installed on top of mmdebstrap's `minbase`. Fixed, so that two builds boot the
/// same way; the exact versions land in the manifest.
pub const PACKAGES: &[&str] = &[
    // Booting: the cloud kernel (virtio drivers, small), GRUB for BIOS, an initramfs.
    "linux-image-cloud-amd64",
    "grub-pc",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "kmod",
    "zstd",
    // Growing the root filesystem to the disk's size on first boot (growpart needs sfdisk).
    "cloud-guest-utils",
    "e2fsprogs",
    "fdisk",
    // First-boot configuration from the NoCloud seed, and the network it brings up.
    "cloud-init",
    "netplan.io",
    "systemd-resolved",
    "systemd-timesyncd",
    "iproute2",
    "netbase",
    "dbus",
    // What Ansible needs on the far side: ssh (with sftp, its default transfer), python3 with
    // apt bindings for the apt module, sudo for become.
    "openssh-server",
    "openssh-sftp-server",
    "python3",
    "python3-apt",
    "sudo",
    // Fetching over TLS and trusting third-party repositories.
    "ca-certificates",
    "curl",
    "gnupg",
    // Also in Debian's genericcloud image.
    "unattended-upgrades",
    "qemu-guest-agent",
    "procps",
    "less",
    "vim-tiny",
    "iputils-ping",
];

/// What to build and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildConfig {
    /// The Debian release, `trixie`.
    pub suite: String,
    /// The main archive, `http://deb.debian.org/debian`.
    pub mirror: String,
    /// The security archive, `http://deb.debian.org/debian-security`.
    pub security_mirror: String,
    /// The virtual size of the image in GiB (3, as the genericcloud image); instances grow it.
    pub disk_gib: u32,
    /// Where the outputs land; the caller provides it and adopts the outputs.
    pub work_dir: Utf8PathBuf,
}

impl BuildConfig {
    /// Debian 13 from Debian's own mirrors, a 3 GiB disk, outputs in `work_dir`.
    pub fn trixie(work_dir: impl Into<Utf8PathBuf>) -> BuildConfig {
        BuildConfig {
            suite: "trixie".to_owned(),
            mirror: "http://deb.debian.org/debian".to_owned(),
            security_mirror: "http://deb.debian.org/debian-security".to_owned(),
            disk_gib: 3,
            work_dir: work_dir.into(),
        }
    }

    fn sources(&self) -> Sources<'_> {
        Sources {
            suite: &self.suite,
            mirror: &self.mirror,
            security_mirror: &self.security_mirror,
        }
    }
}

/// The outputs of a successful build, both inside [`BuildConfig::work_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The compressed qcow2 image, [`IMAGE_FILE`].
    pub qcow2: Utf8PathBuf,
    /// The installed packages, [`MANIFEST_FILE`].
    pub packages: Utf8PathBuf,
}

/// Why the golden image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "building the golden image needs root (loop devices, mounts, chroot): run as root, \
         or download the image with `cargo xtask image fetch`, or pass an existing image file"
    )]
    NotRoot,
    #[error(
        "building the golden image needs an amd64 host (it runs the guest's tools in a chroot), not {0}"
    )]
    WrongArch(&'static str),
    #[error("`{tool}` is not installed or not on PATH: install the Debian package {package}")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("the disk size must be at least 2 GiB, not {0} GiB")]
    DiskTooSmall(u32),
    #[error("{0}")]
    Exec(#[from] ExecError),
    #[error("{0}")]
    Interrupted(#[from] Interrupted),
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Image(String),
    #[error("could not take the build scratch {dir} apart: {problems}")]
    Teardown { dir: Utf8PathBuf, problems: String },
}

impl BuildError {
    /// The interrupt that ended the build, if that is what happened: the caller exits with
    /// its [`Interrupted::exit_code`].
    pub fn interrupted(&self) -> Option<Interrupted> {
        match self {
            BuildError::Interrupted(interrupted) => Some(*interrupted),
            BuildError::Exec(e) => e.interrupted(),
            _ => None,
        }
    }

    fn io(action: &'static str, path: &Utf8Path) -> impl FnOnce(std::io::Error) -> BuildError {
        let path = path.to_owned();
        move |source| BuildError::Io {
            action,
            path,
            source,
        }
    }
}

/// The host tools the build runs, with the Debian package that provides each.
const TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("sfdisk", "fdisk"),
    ("losetup", "mount"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("partx", "util-linux"),
    ("fstrim", "util-linux"),
    ("mkfs.ext4", "e2fsprogs"),
    ("chroot", "coreutils"),
    ("cp", "coreutils"),
    ("qemu-img", "qemu-utils"),
];

/// Can this process build the image? Root, an amd64 host, and every tool on `PATH`.
pub fn preflight() -> Result<(), BuildError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(BuildError::NotRoot);
    }
    if std::env::consts::ARCH != "x86_64" {
        return Err(BuildError::WrongArch(std::env::consts::ARCH));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<_> = std::env::split_paths(&path).collect();
    for &(tool, package) in TOOLS {
        if !dirs.iter().any(|dir| is_executable(&dir.join(tool))) {
            return Err(BuildError::MissingTool { tool, package });
        }
    }
    Ok(())
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Build the golden image into `cfg.work_dir` ([`IMAGE_FILE`] and [`MANIFEST_FILE`]).
///
/// Takes about a minute and a half on two cores. Leaves nothing else behind on any path out:
/// no mount, no loop device, no scratch file, no half-written output.
pub fn build(sh: &xshell::Shell, cfg: &BuildConfig) -> Result<BuiltImage, BuildError> {
    preflight()?;
    if cfg.disk_gib < 2 {
        return Err(BuildError::DiskTooSmall(cfg.disk_gib));
    }
    let started = Instant::now();
    let built = steps::run(sh, cfg)?;
    say!(
        "==> golden image built in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        built.qcow2
    );
    Ok(built)
}

/// Run one phase of the build: `==> name` before, `    done in 1.2s` after (or how long it
/// ran before failing), and no new phase once an interrupt is pending.
fn phase<T>(name: &str, f: impl FnOnce() -> Result<T, BuildError>) -> Result<T, BuildError> {
    interrupt::check()?;
    say!("==> {name}");
    let started = Instant::now();
    let result = f();
    let secs = started.elapsed().as_secs_f64();
    match &result {
        Ok(_) => say!("    done in {secs:.1}s"),
        Err(_) => say!("    failed after {secs:.1}s"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_root_is_one_line_naming_the_alternatives() {
        let text = BuildError::NotRoot.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("needs root"), "{text}");
        assert!(text.contains("cargo xtask image fetch"), "{text}");
    }

    #[test]
    fn missing_tool_names_the_package() {
        let text = BuildError::MissingTool {
            tool: "sfdisk",
            package: "fdisk",
        }
        .to_string();
        assert_eq!(
            text,
            "`sfdisk` is not installed or not on PATH: install the Debian package fdisk"
        );
    }

    #[test]
    fn preflight_without_root_says_so() {
        if nix::unistd::geteuid().is_root() {
            return;
        }
        assert!(matches!(preflight(), Err(BuildError::NotRoot)));
    }

    #[test]
    fn package_list_is_fixed_and_has_the_essentials() {
        for needed in [
            "cloud-init",
            "openssh-server",
            "python3",
            "sudo",
            "grub-pc",
            "linux-image-cloud-amd64",
        ] {
            assert!(PACKAGES.contains(&needed), "{needed} missing");
        }
        let mut sorted = PACKAGES.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), PACKAGES.len(), "duplicate package");
    }

    #[test]
    fn every_tool_has_a_package() {
        for (tool, package) in TOOLS {
            assert!(!tool.is_empty() && !package.is_empty());
        }
    }
}
