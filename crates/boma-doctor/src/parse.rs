//! Reading the machine's own texts (`/proc/cpuinfo`, `/etc/os-release`, a program's version
//! banner, `requirements.txt`, the cached KVM verdict) into facts. Pure: text in, value out.

use boma_vm::Accel;

use crate::facts::{CachedProbe, ProbeCache};

/// `vmx` or `svm` when a `flags` line of `/proc/cpuinfo` carries it.
pub fn virt_flag(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .filter_map(|line| line.split_once(':'))
        .flat_map(|(_, flags)| flags.split_whitespace())
        .find(|flag| matches!(*flag, "vmx" | "svm"))
        .map(str::to_owned)
}

/// `VERSION_CODENAME` of `/etc/os-release`, unquoted.
pub fn os_codename(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("VERSION_CODENAME=")?;
        let value = value.trim().trim_matches(['"', '\'']);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// A program's version banner: its first non-empty line, from stdout, else from stderr
/// (`ssh -V` and `mkfs.ext4 -V` print there).
pub fn first_line(stdout: &str, stderr: &str) -> Option<String> {
    [stdout, stderr].into_iter().find_map(|text| {
        text.lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(str::to_owned)
    })
}

/// A version banner with the program's full path (`/usr/sbin/libvirtd (libvirt) 9.0.0`, as
/// programs that print their `argv[0]` say it) shortened to its name.
pub fn banner(line: &str, path: &str, program: &str) -> String {
    match line.strip_prefix(path) {
        Some(rest) if !path.is_empty() => format!("{program}{rest}"),
        _ => line.to_owned(),
    }
}

/// The ansible-core version in `ansible-playbook --version` (`ansible-playbook [core 2.18.12]`).
pub fn ansible_core_version(output: &str) -> Option<String> {
    let first = output.lines().next()?;
    let rest = first.split_once("[core ")?.1;
    let version = rest.split_once(']')?.0.trim();
    (!version.is_empty()).then(|| version.to_owned())
}

/// The exact `ansible-core==` pin of a pip requirements file.
pub fn pinned_core(requirements: &str) -> Option<String> {
    requirements.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let version = line.strip_prefix("ansible-core")?.trim_start();
        let version = version.strip_prefix("==")?.trim();
        (!version.is_empty()).then(|| version.to_owned())
    })
}

/// What `it` would make of the verdict file `text` (boma-vm's `kvm-probe.json`: the key it
/// was made for, the accelerator, and optionally why), on the host boot `boot_id`, with the
/// QEMU whose `--version` starts with `qemu_version`, booting `image`.
pub fn probe_cache(text: &str, boot_id: &str, qemu_version: &str, image: &str) -> ProbeCache {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return ProbeCache::Unreadable;
    };
    let accel = match value["accel"].as_str() {
        Some("kvm") => Accel::Kvm,
        Some("tcg") => Accel::Tcg,
        _ => return ProbeCache::Unreadable,
    };
    let key = &value["key"];
    let field = |name: &str| key[name].as_str().unwrap_or_default();
    ProbeCache::Cached(CachedProbe {
        accel,
        reason: value["reason"].as_str().map(str::to_owned),
        same_boot: !boot_id.is_empty() && field("host_boot_id") == boot_id,
        same_qemu: !qemu_version.is_empty() && field("qemu_version") == qemu_version,
        same_image: !image.is_empty() && field("image") == image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_virtualisation_flag_only_among_the_flags() {
        let intel = "processor\t: 0\nflags\t\t: fpu vme de pse vmx ssse3\nbugs\t\t: spectre_v1\n";
        assert_eq!(virt_flag(intel).as_deref(), Some("vmx"));
        let amd = "flags\t\t: fpu svm lm\n";
        assert_eq!(virt_flag(amd).as_deref(), Some("svm"));
        // `vmx flags` lines (a separate line on Intel) and substrings do not count.
        let none = "flags\t\t: fpu vmxon_like\nvmx flags\t: vnmi\nmodel name\t: svm box\n";
        assert_eq!(virt_flag(none), None);
    }

    #[test]
    fn reads_the_release_codename() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(os_codename(text).as_deref(), Some("bookworm"));
        assert_eq!(
            os_codename("VERSION_CODENAME=\"trixie\"\n").as_deref(),
            Some("trixie")
        );
        assert_eq!(os_codename("ID=debian\n"), None);
    }

    #[test]
    fn the_banner_comes_from_stderr_when_stdout_is_empty() {
        assert_eq!(
            first_line(
                "",
                "\nOpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024\n"
            )
            .as_deref(),
            Some("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024")
        );
        assert_eq!(
            first_line(
                "QEMU emulator version 7.2.19\nCopyright (c) 2003-2022\n",
                "warning"
            )
            .as_deref(),
            Some("QEMU emulator version 7.2.19")
        );
        assert_eq!(first_line(" \n", ""), None);
    }

    #[test]
    fn a_banner_names_the_program_not_its_path() {
        assert_eq!(
            banner(
                "/usr/sbin/libvirtd (libvirt) 9.0.0",
                "/usr/sbin/libvirtd",
                "libvirtd"
            ),
            "libvirtd (libvirt) 9.0.0"
        );
        assert_eq!(banner("9.0.0", "/usr/bin/virsh", "virsh"), "9.0.0");
    }

    #[test]
    fn reads_ansible_core_from_the_version_banner_and_the_pin() {
        let banner = "ansible-playbook [core 2.18.12]\n  config file = /repo/ansible.cfg\n";
        assert_eq!(ansible_core_version(banner).as_deref(), Some("2.18.12"));
        assert_eq!(ansible_core_version("usage: ansible-playbook"), None);
        let requirements = "# pins\nansible==11.13.0\nansible-core==2.18.12  # the engine\nansible-lint==26.10.1\n";
        assert_eq!(pinned_core(requirements).as_deref(), Some("2.18.12"));
        assert_eq!(pinned_core("ansible==11.13.0\n"), None);
        assert_eq!(pinned_core("ansible-core>=2.18\n"), None);
    }

    /// The verdict file exactly as boma-vm writes it for a TCG verdict.
    const VERDICT: &str = r#"{
  "key": {
    "host_boot_id": "0b1c",
    "qemu_version": "QEMU emulator version 7.2.19",
    "image": "/var/lib/boma-integration/debian-13-boma-amd64.qcow2"
  },
  "accel": "tcg"
}"#;

    #[test]
    fn the_fixture_is_the_verdict_file_boma_vm_reads() {
        let key = boma_vm::host::accel::ProbeKey {
            host_boot_id: "0b1c".into(),
            qemu_version: "QEMU emulator version 7.2.19".into(),
            image: "/var/lib/boma-integration/debian-13-boma-amd64.qcow2".into(),
        };
        assert_eq!(
            boma_vm::host::accel::cached_verdict(VERDICT, &key),
            Some(Accel::Tcg)
        );
    }

    #[test]
    fn a_verdict_holds_only_for_its_boot_qemu_and_image() {
        let image = "/var/lib/boma-integration/debian-13-boma-amd64.qcow2";
        let qemu = "QEMU emulator version 7.2.19";
        let ProbeCache::Cached(probe) = probe_cache(VERDICT, "0b1c", qemu, image) else {
            panic!("not read");
        };
        assert_eq!(probe.accel, Accel::Tcg);
        assert!(probe.current());
        let ProbeCache::Cached(rebooted) = probe_cache(VERDICT, "ffff", qemu, image) else {
            panic!("not read");
        };
        assert!(!rebooted.same_boot && !rebooted.current());
        let ProbeCache::Cached(other) =
            probe_cache(VERDICT, "0b1c", "QEMU emulator version 10.0.0", "/x.qcow2")
        else {
            panic!("not read");
        };
        assert!(!other.same_qemu && !other.same_image);
        assert_eq!(
            probe_cache("{}", "0b1c", qemu, image),
            ProbeCache::Unreadable
        );
        assert_eq!(
            probe_cache("not json", "0b1c", qemu, image),
            ProbeCache::Unreadable
        );
    }

    #[test]
    fn a_reason_in_the_verdict_file_is_kept() {
        let text = VERDICT.replace(
            r#""accel": "tcg""#,
            r#""accel": "tcg", "reason": "kernel hung after GRUB""#,
        );
        let ProbeCache::Cached(probe) = probe_cache(&text, "0b1c", "q", "i") else {
            panic!("not read");
        };
        assert_eq!(probe.reason.as_deref(), Some("kernel hung after GRUB"));
    }
}
