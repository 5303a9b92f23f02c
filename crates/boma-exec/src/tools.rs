//! Which Debian package provides a tool the harness runs, so that "not found" names the fix.

/// How to get `program` onto this machine, when the harness knows.
pub fn package_hint(program: &str) -> Option<&'static str> {
    let hint = match program {
        "qemu-system-x86_64" => "install the Debian package qemu-system-x86",
        "qemu-img" => "install the Debian package qemu-utils",
        "cloud-localds" => "install the Debian package cloud-image-utils",
        "genisoimage" => "install the Debian package genisoimage",
        "virsh" => "install the Debian package libvirt-clients",
        "libvirtd" | "virtlogd" => "install the Debian package libvirt-daemon-system",
        "virt-install" => "install the Debian package virtinst (bookworm) or virt-install (trixie)",
        "mmdebstrap" => "install the Debian package mmdebstrap",
        "sfdisk" => "install the Debian package fdisk",
        "losetup" | "mount" | "umount" => "install the Debian package mount",
        "partx" | "fstrim" => "install the Debian package util-linux",
        "mkfs.ext4" => "install the Debian package e2fsprogs",
        "ssh" | "ssh-keygen" => "install the Debian package openssh-client",
        "nft" => "install the Debian package nftables",
        "ip" => "install the Debian package iproute2",
        "vde_switch" => "install the Debian package vde2",
        "ansible-playbook" | "ansible" | "ansible-lint" | "yamllint" => {
            "run `make venv` (installs requirements.txt into .venv) and put .venv/bin on PATH"
        }
        "cargo" | "rustfmt" | "cargo-clippy" => "install the Rust toolchain with rustup",
        _ => return None,
    };
    Some(hint)
}

/// Whether `program` is an executable file in a directory of `PATH`.
pub fn on_path(program: &str) -> bool {
    find_on_path(program).is_some()
}

/// Where `program` is in `PATH`: the first directory holding an executable file of that name.
pub fn find_on_path(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
