//! The build, phase by phase: bootstrap a root filesystem, configure it, put it on a
//! loop-mounted disk, install the boot loader, then convert the disk to a compressed qcow2.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::time::Duration;

use boma_exec::{CmdExt as _, Run, interrupt};
use camino::{Utf8Path, Utf8PathBuf};
use nix::sys::stat::{Mode, SFlag, mknod};
use xshell::{Shell, cmd};

use crate::render::{self, Sources};
use crate::teardown::Scratch;
use crate::{
    BuildConfig, BuildError, BuiltImage, IMAGE_FILE, MANIFEST_FILE, PACKAGES, SCRATCH_DIR, phase,
};

/// Generous bounds: a stalled mirror or a wedged chroot must end the build, not hang it.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const LONG_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const SHORT_TIMEOUT: Duration = Duration::from_secs(2 * 60);

/// The device nodes the chroot's tools need (initramfs hooks, grub-probe), copied from the
/// host's `/dev`; the disk's own nodes are added next to them.
const CHROOT_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The loop device holding the disk, and its one partition.
struct Disk {
    device: Utf8PathBuf,
    partition: Utf8PathBuf,
}

pub(crate) fn run(sh: &Shell, cfg: &BuildConfig) -> Result<BuiltImage, BuildError> {
    let work = &cfg.work_dir;
    std::fs::create_dir_all(work).map_err(BuildError::io("create", work))?;
    let mut scratch = Scratch::create(work.join(SCRATCH_DIR))?;
    let rootfs = scratch.dir().join("rootfs");
    let mnt = scratch.dir().join("mnt");
    let raw = scratch.raw_disk();
    let sources = cfg.sources();
    let uuid = new_uuid()?;

    phase("debootstrap", || debootstrap(sh, &sources, &rootfs))?;
    phase("configure", || configure(sh, &sources, &rootfs, &uuid))?;
    let disk = phase("disk", || make_disk(sh, &raw, cfg.disk_gib, &uuid, &mnt))?;
    phase("copy", || copy_rootfs(sh, &rootfs, &mnt))?;
    phase("bootloader", || install_bootloader(sh, &mnt, &disk, &uuid))?;
    let packages = phase("manifest", || installed_packages(sh, &mnt))?;
    phase("release", || {
        // Hand the blocks of files deleted in the image (the old initramfs) back to the raw
        // file as holes, so they compress to nothing. Only an optimisation.
        cmd!(sh, "fstrim {mnt}")
            .exec()
            .timeout(SHORT_TIMEOUT)
            .allow_fail()
            .run()?;
        scratch.release_devices()
    })?;

    let qcow2 = work.join(IMAGE_FILE);
    let manifest = work.join(MANIFEST_FILE);
    let qcow2_part = work.join(format!("{IMAGE_FILE}.part"));
    let manifest_part = work.join(format!("{MANIFEST_FILE}.part"));
    scratch.track_partial(qcow2_part.clone());
    scratch.track_partial(manifest_part.clone());
    phase("convert", || {
        cmd!(sh, "qemu-img convert -c -O qcow2 {raw} {qcow2_part}")
            .exec()
            .timeout(LONG_TIMEOUT)
            .run()?;
        std::fs::write(&manifest_part, &packages)
            .map_err(BuildError::io("write", &manifest_part))?;
        // Both outputs appear only once both are complete.
        std::fs::rename(&manifest_part, &manifest)
            .map_err(BuildError::io("rename into place", &manifest))?;
        std::fs::rename(&qcow2_part, &qcow2).map_err(BuildError::io("rename into place", &qcow2))
    })?;
    phase("cleanup", || scratch.close())?;
    Ok(BuiltImage {
        qcow2,
        packages: manifest,
    })
}

/// A fresh filesystem UUID. Chosen here rather than by mkfs so that fstab can be written
/// before the disk exists.
fn new_uuid() -> Result<String, BuildError> {
    let path = Utf8Path::new("/proc/sys/kernel/random/uuid");
    let uuid = std::fs::read_to_string(path).map_err(BuildError::io("read", path))?;
    Ok(uuid.trim().to_owned())
}

/// mmdebstrap `minbase` plus [`PACKAGES`], from the release, its updates and security.
fn debootstrap(sh: &Shell, sources: &Sources<'_>, rootfs: &Utf8Path) -> Result<(), BuildError> {
    let include = format!("--include={}", PACKAGES.join(","));
    let suite = sources.suite;
    let mirrors = render::bootstrap_mirrors(sources);
    cmd!(sh, "mmdebstrap --mode=root --format=directory --variant=minbase {include} {suite} {rootfs} {mirrors...}")
        .exec()
        .env("LC_ALL", "C.UTF-8")
        .stream()
        .timeout(BOOTSTRAP_TIMEOUT)
        .run()?;
    Ok(())
}

/// Make the root filesystem the image's own: forget the build host, point apt at Debian,
/// boot on the serial console, look for a NoCloud seed, bring the network up with networkd.
fn configure(
    sh: &Shell,
    sources: &Sources<'_>,
    rootfs: &Utf8Path,
    uuid: &str,
) -> Result<(), BuildError> {
    let keyring = rootfs.join(render::ARCHIVE_KEYRING.trim_start_matches('/'));
    if !keyring.exists() {
        return Err(BuildError::Image(format!(
            "{keyring} is missing: the image's apt sources name it in Signed-By"
        )));
    }
    let etc = rootfs.join("etc");
    write(&etc.join("hostname"), &render::hostname())?;
    // Empty, not absent: systemd then generates the instance's own id on first boot and
    // treats it as the first boot (presets applied once per instance).
    write(&etc.join("machine-id"), "")?;
    remove_if_present(&rootfs.join("var/lib/dbus/machine-id"))?;
    // Every instance must have its own host keys: cloud-init (or sshd-keygen) creates them.
    let ssh = etc.join("ssh");
    for entry in std::fs::read_dir(&ssh).map_err(BuildError::io("list", &ssh))? {
        let entry = entry.map_err(BuildError::io("list", &ssh))?;
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            let path = ssh.join(entry.file_name().to_string_lossy().as_ref());
            std::fs::remove_file(&path).map_err(BuildError::io("remove", &path))?;
        }
    }
    // mmdebstrap copies the build host's resolver in; the guest uses systemd-resolved's stub.
    let resolv = etc.join("resolv.conf");
    remove_if_present(&resolv)?;
    std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &resolv)
        .map_err(BuildError::io("link", &resolv))?;
    remove_if_present(&etc.join("apt/sources.list"))?;
    write(
        &etc.join("apt/sources.list.d/debian.sources"),
        &render::apt_sources(sources),
    )?;
    write(
        &etc.join("cloud/cloud.cfg.d/99_boma.cfg"),
        &render::cloud_cfg(),
    )?;
    write(
        &etc.join("default/grub.d/10_cloud.cfg"),
        &render::grub_defaults(),
    )?;
    write(&etc.join("fstab"), &render::fstab(uuid))?;
    // netplan (written by cloud-init) renders for networkd, which must therefore run.
    in_chroot(cmd!(
        sh,
        "chroot {rootfs} systemctl enable systemd-networkd.service"
    ))
    .timeout(SHORT_TIMEOUT)
    .run()?;
    Ok(())
}

/// A sparse raw disk with one bootable MBR partition from 1 MiB (GRUB's core image goes in
/// the gap), attached to a loop device, formatted and mounted on `mnt`.
fn make_disk(
    sh: &Shell,
    raw: &Utf8Path,
    gib: u32,
    uuid: &str,
    mnt: &Utf8Path,
) -> Result<Disk, BuildError> {
    let file = std::fs::File::create(raw).map_err(BuildError::io("create", raw))?;
    file.set_len(u64::from(gib) << 30)
        .map_err(BuildError::io("size", raw))?;
    drop(file);
    cmd!(sh, "sfdisk --quiet {raw}")
        .exec()
        .stdin("label: dos\nstart=2048, type=83, bootable\n")
        .run()?;
    let device = cmd!(sh, "losetup --find --show --partscan {raw}")
        .exec()
        .timeout(SHORT_TIMEOUT)
        .read()?;
    let device = Utf8PathBuf::from(device);
    let partition = Utf8PathBuf::from(format!("{device}p1"));
    // Without udev the kernel's partition scan may not happen or not show up: partx asks the
    // kernel for the partition, and devtmpfs then creates its node.
    if !partition.exists() {
        cmd!(sh, "partx --add {device}")
            .exec()
            .timeout(SHORT_TIMEOUT)
            .run()?;
    }
    for _ in 0..50 {
        if partition.exists() {
            break;
        }
        interrupt::sleep(Duration::from_millis(100))?;
    }
    if !partition.exists() {
        return Err(BuildError::Image(format!(
            "{partition} did not appear after `partx --add {device}`"
        )));
    }
    cmd!(sh, "mkfs.ext4 -q -U {uuid} {partition}")
        .exec()
        .timeout(SHORT_TIMEOUT)
        .run()?;
    std::fs::create_dir_all(mnt).map_err(BuildError::io("create", mnt))?;
    cmd!(sh, "mount {partition} {mnt}")
        .exec()
        .timeout(SHORT_TIMEOUT)
        .run()?;
    Ok(Disk { device, partition })
}

fn copy_rootfs(sh: &Shell, rootfs: &Utf8Path, mnt: &Utf8Path) -> Result<(), BuildError> {
    // `dir/.` copies the contents, hidden files included; -a keeps owners, modes, links,
    // device nodes and extended attributes (file capabilities such as ping's).
    let from = format!("{rootfs}/.");
    let to = format!("{mnt}/");
    cmd!(sh, "cp -a {from} {to}")
        .exec()
        .timeout(LONG_TIMEOUT)
        .run()?;
    Ok(())
}

/// Rebuild the initramfs and install GRUB inside the image, with a chroot whose `/dev` is a
/// private tmpfs (the host's would leak every host device into `grub.cfg` probing) that holds
/// the disk's nodes and the `/dev/disk/by-uuid` link: without that link `update-grub` writes
/// `root=/dev/loop0p1`, which no VM has.
fn install_bootloader(
    sh: &Shell,
    mnt: &Utf8Path,
    disk: &Disk,
    uuid: &str,
) -> Result<(), BuildError> {
    let dev = mnt.join("dev");
    let proc = mnt.join("proc");
    let sys = mnt.join("sys");
    cmd!(sh, "mount -t tmpfs -o mode=0755,size=16m boma-dev {dev}")
        .exec()
        .timeout(SHORT_TIMEOUT)
        .run()?;
    populate_dev(&dev, disk, uuid)?;
    cmd!(sh, "mount -t proc boma-proc {proc}")
        .exec()
        .timeout(SHORT_TIMEOUT)
        .run()?;
    cmd!(sh, "mount -t sysfs boma-sys {sys}")
        .exec()
        .timeout(SHORT_TIMEOUT)
        .run()?;

    in_chroot(cmd!(sh, "chroot {mnt} update-initramfs -u -k all"))
        .stream()
        .timeout(LONG_TIMEOUT)
        .run()?;
    let device = &disk.device;
    in_chroot(cmd!(
        sh,
        "chroot {mnt} grub-install --target=i386-pc {device}"
    ))
    .stream()
    .timeout(LONG_TIMEOUT)
    .run()?;
    in_chroot(cmd!(sh, "chroot {mnt} update-grub"))
        .stream()
        .timeout(LONG_TIMEOUT)
        .run()?;

    let grub_cfg = mnt.join("boot/grub/grub.cfg");
    let text = std::fs::read_to_string(&grub_cfg).map_err(BuildError::io("read", &grub_cfg))?;
    let wanted = format!("root=UUID={uuid}");
    if !text.contains(&wanted) {
        return Err(BuildError::Image(format!(
            "update-grub wrote no `{wanted}` into /boot/grub/grub.cfg: the image would not find its root filesystem"
        )));
    }
    Ok(())
}

/// Fill the chroot's private `/dev`: the host's basic character devices, the loop device and
/// its partition, and `/dev/disk/by-uuid/<uuid>` pointing at the partition.
fn populate_dev(dev: &Utf8Path, disk: &Disk, uuid: &str) -> Result<(), BuildError> {
    let host = Utf8Path::new("/dev");
    for name in CHROOT_NODES {
        copy_node(&host.join(name), &dev.join(name))?;
    }
    for node in [&disk.device, &disk.partition] {
        let name = node
            .file_name()
            .ok_or_else(|| BuildError::Image(format!("{node} has no file name")))?;
        copy_node(node, &dev.join(name))?;
    }
    let by_uuid = dev.join("disk/by-uuid");
    std::fs::create_dir_all(&by_uuid).map_err(BuildError::io("create", &by_uuid))?;
    let partition_name = disk.partition.file_name().unwrap_or_default();
    let link = by_uuid.join(uuid);
    std::os::unix::fs::symlink(format!("../../{partition_name}"), &link)
        .map_err(BuildError::io("link", &link))?;
    Ok(())
}

/// Re-create the device node `from` at `to`: same kind, numbers and mode.
fn copy_node(from: &Utf8Path, to: &Utf8Path) -> Result<(), BuildError> {
    let meta = std::fs::metadata(from).map_err(BuildError::io("inspect", from))?;
    let kind = if meta.file_type().is_block_device() {
        SFlag::S_IFBLK
    } else if meta.file_type().is_char_device() {
        SFlag::S_IFCHR
    } else {
        return Err(BuildError::Image(format!("{from} is not a device node")));
    };
    let mode = meta.mode() & 0o7777;
    mknod(
        to.as_std_path(),
        kind,
        Mode::from_bits_truncate(mode),
        meta.rdev(),
    )
    .map_err(|errno| BuildError::io("create the device node", to)(std::io::Error::from(errno)))?;
    // mknod applies the umask; the nodes must keep the host's modes (/dev/null is 0666).
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
        .map_err(BuildError::io("chmod", to))?;
    Ok(())
}

/// The manifest: every installed package and its version, sorted.
fn installed_packages(sh: &Shell, mnt: &Utf8Path) -> Result<String, BuildError> {
    let format = r"${Package} ${Version}\n";
    let raw = in_chroot(cmd!(
        sh,
        "chroot {mnt} dpkg-query --show --showformat {format}"
    ))
    .timeout(SHORT_TIMEOUT)
    .read()?;
    Ok(render::manifest(&raw))
}

/// A command run inside the image: non-interactive, in a locale every Debian has, whatever
/// the caller's environment holds.
fn in_chroot(cmd: xshell::Cmd<'_>) -> Run {
    cmd.exec()
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C.UTF-8")
        .env("LANG", "C.UTF-8")
}

fn write(path: &Utf8Path, text: &str) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(BuildError::io("create", parent))?;
    }
    std::fs::write(path, text).map_err(BuildError::io("write", path))
}

fn remove_if_present(path: &Utf8Path) -> Result<(), BuildError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => std::fs::remove_file(path).map_err(BuildError::io("remove", path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BuildError::io("inspect", path)(e)),
    }
}
