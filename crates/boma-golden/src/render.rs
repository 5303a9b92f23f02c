//! The text files the golden image carries, as pure functions of their inputs.
//!
//! Nothing here reads the clock, the environment or the filesystem: the filesystem UUID and
//! the mirrors come from the caller, so two builds with the same inputs write the same bytes
//! and the snapshots pin exactly what a guest boots with.

/// The `/etc/fstab` of the image: the root filesystem by UUID, so the disk may show up under
/// any device name (`/dev/vda`, `/dev/sda`) in the VM.
///
/// `x-systemd.growfs` and `discard` match Debian's cloud images; cloud-init's growpart grows
/// the partition to the overlay's size on first boot and the filesystem follows.
pub fn fstab(root_uuid: &str) -> String {
    format!(
        "# /etc/fstab: static file system information.\n\
         # Written by boma's golden image build; the root filesystem is found by UUID.\n\
         UUID={root_uuid} / ext4 rw,discard,errors=remount-ro,x-systemd.growfs 0 1\n"
    )
}

/// `/etc/default/grub.d/10_cloud.cfg`: boot at once, kernel and GRUB on the serial port.
///
/// Under the harness nobody looks at a screen: the serial console is written to a file and is
/// the only record of a boot that never reaches ssh. `console=tty0` first, `ttyS0` last, so
/// `/dev/console` (and systemd's status output) is the serial port.
pub fn grub_defaults() -> String {
    "# Written by boma's golden image build: a cloud image boots at once and talks on the serial\n\
     # console, which the harness records to a file.\n\
     GRUB_TIMEOUT=0\n\
     GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n\
     GRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200 earlyprintk=ttyS0,115200 consoleblank=0\"\n\
     GRUB_TERMINAL=\"console serial\"\n\
     GRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n"
        .to_owned()
}

/// Where the guest's apt looks, as one deb822 file (`/etc/apt/sources.list.d/debian.sources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources<'a> {
    /// The release, e.g. `trixie`.
    pub suite: &'a str,
    /// The main archive, e.g. `http://deb.debian.org/debian`.
    pub mirror: &'a str,
    /// The security archive, e.g. `http://deb.debian.org/debian-security`.
    pub security_mirror: &'a str,
}

/// The keyring every stanza trusts; shipped by `debian-archive-keyring` in the image.
pub const ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.pgp";

/// The deb822 sources: the release and its `-updates` from the main archive, `-security` from
/// the security archive, `main` only, like Debian's genericcloud image (minus `deb-src`, which
/// would only make every `apt-get update` in a test guest slower).
pub fn apt_sources(sources: &Sources<'_>) -> String {
    let Sources {
        suite,
        mirror,
        security_mirror,
    } = sources;
    format!(
        "# Written by boma's golden image build.\n\
         Types: deb\n\
         URIs: {mirror}\n\
         Suites: {suite} {suite}-updates\n\
         Components: main\n\
         Signed-By: {ARCHIVE_KEYRING}\n\
         \n\
         Types: deb\n\
         URIs: {security_mirror}\n\
         Suites: {suite}-security\n\
         Components: main\n\
         Signed-By: {ARCHIVE_KEYRING}\n"
    )
}

/// The one-line `sources.list` entries mmdebstrap bootstraps from: the same three suites the
/// guest will use, so the image starts with the current security updates.
pub fn bootstrap_mirrors(sources: &Sources<'_>) -> Vec<String> {
    let Sources {
        suite,
        mirror,
        security_mirror,
    } = sources;
    vec![
        format!("deb {mirror} {suite} main"),
        format!("deb {mirror} {suite}-updates main"),
        format!("deb {security_mirror} {suite}-security main"),
    ]
}

/// `/etc/cloud/cloud.cfg.d/99_boma.cfg`: look for a NoCloud seed and nothing else.
///
/// Every instance of this image is seeded with a NoCloud disk; without the list cloud-init's
/// ds-identify would also consider the network datasources of every cloud. ds-identify reads
/// the list only when it is written on one line.
pub fn cloud_cfg() -> String {
    "# Written by boma's golden image build: instances are seeded with a NoCloud disk (cidata).\n\
     datasource_list: [NoCloud, None]\n"
        .to_owned()
}

/// `/etc/hostname` of the image. mmdebstrap copies the build host's name in; cloud-init sets
/// the instance's own from its meta-data on first boot.
pub fn hostname() -> String {
    "localhost\n".to_owned()
}

/// The package manifest: `dpkg-query -W -f '${Package} ${Version}\n'` output as sorted
/// `<pkg> <version>` lines, so two builds can be compared with `diff`.
pub fn manifest(dpkg_query_output: &str) -> String {
    let mut lines: Vec<String> = dpkg_query_output
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (package, version) = (fields.next()?, fields.next()?);
            Some(format!("{package} {version}"))
        })
        .collect();
    lines.sort();
    lines.dedup();
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0b7c4a3e-5f1d-4c2a-9e8b-6d5f4a3b2c1d";

    fn trixie() -> Sources<'static> {
        Sources {
            suite: "trixie",
            mirror: "http://deb.debian.org/debian",
            security_mirror: "http://deb.debian.org/debian-security",
        }
    }

    #[test]
    fn fstab_mounts_root_by_uuid() {
        insta::assert_snapshot!("fstab", fstab(UUID));
    }

    #[test]
    fn grub_defaults_boot_at_once_on_the_serial_console() {
        insta::assert_snapshot!("grub_defaults", grub_defaults());
    }

    #[test]
    fn apt_sources_cover_release_updates_and_security() {
        insta::assert_snapshot!("apt_sources_trixie", apt_sources(&trixie()));
    }

    #[test]
    fn bootstrap_mirrors_match_the_guest_sources() {
        insta::assert_snapshot!(
            "bootstrap_mirrors_trixie",
            bootstrap_mirrors(&trixie()).join("\n")
        );
    }

    #[test]
    fn cloud_cfg_lists_nocloud_on_one_line() {
        let text = cloud_cfg();
        assert!(
            text.lines()
                .any(|l| l == "datasource_list: [NoCloud, None]"),
            "{text}"
        );
        insta::assert_snapshot!("cloud_cfg", text);
    }

    #[test]
    fn hostname_is_not_the_build_host() {
        assert_eq!(hostname(), "localhost\n");
    }

    #[test]
    fn manifest_is_sorted_and_ignores_junk() {
        let raw =
            "zstd 1.5.7+dfsg-1\nadduser 3.152\n\nsudo 1.9.16p2-3\nbroken-line\nadduser 3.152\n";
        insta::assert_snapshot!("manifest_sorted", manifest(raw));
    }
}
