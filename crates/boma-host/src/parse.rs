//! Reading the machine's own texts (`/proc/meminfo`, `/proc/cpuinfo`, `/etc/os-release`, a
//! program's version banner) into facts. Pure: text in, value out.

/// `MemAvailable` from the text of `/proc/meminfo`, in MiB.
pub fn mem_available_mib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemAvailable:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib / 1024)
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memavailable() {
        let text =
            "MemTotal:       24684032 kB\nMemFree:        1 kB\nMemAvailable:    8388608 kB\n";
        assert_eq!(mem_available_mib(text), Some(8192));
        assert_eq!(mem_available_mib("MemTotal: 1 kB\n"), None);
    }

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
}
