//! Renders the NoCloud seed of a boma integration-test VM: `meta-data`, `user-data` and
//! `network-config`.
//!
//! The renderers are pure: the instance id, host name, user and keys come from the caller, and the
//! result is text for `cloud-localds`. Every value is written as a quoted YAML scalar (see
//! [`boma_yaml::quote`]), never spliced in raw, so a value can hold any character without changing the
//! document.
//!
//! The seed creates exactly one user, the one Ansible logs in as: key-only, password locked,
//! passwordless sudo. There is no `default` entry in `users`, so the image's stock user is not
//! created either. Packages are neither refreshed nor upgraded at boot: the golden image is the
//! baseline, and a first-boot `apt` run would make runs slower and differ from one another.
//!
//! The network is DHCP on the VM's one NIC, as cloud-init's fallback would do, plus an
//! `unreachable` route to each address of the real fleet. The routes belong to the netplan
//! config cloud-init writes, so systemd-networkd keeps them across its restarts and the reboot
//! the harness makes; a connection from the guest to a real host fails at once with "No route
//! to host".
//!
//! A fleet member has a second NIC on the fleet's private segment: [`fleet_network_config`]
//! adds its stanza (a static address, matched by MAC) after the first NIC's, which it leaves
//! exactly as [`network_config`] renders it for a single VM.

use std::fmt::Write as _;
use std::net::IpAddr;

use boma_yaml::quote;

/// The user Ansible connects as unless the caller picks another.
pub const DEFAULT_USER: &str = "ansible";

/// What `meta-data` says about the instance.
#[derive(Debug, Clone, Copy)]
pub struct MetaData<'a> {
    /// Changing it makes cloud-init treat the next boot as a new instance; one per run.
    pub instance_id: &'a str,
    pub local_hostname: &'a str,
}

/// Who `user-data` lets in.
#[derive(Debug, Clone, Copy)]
pub struct UserData<'a> {
    pub user: &'a str,
    /// The harness's public key(s), one key per entry, without trailing newlines.
    pub ssh_authorized_keys: &'a [String],
}

impl<'a> UserData<'a> {
    /// The [`DEFAULT_USER`] with these keys.
    pub fn new(ssh_authorized_keys: &'a [String]) -> Self {
        UserData {
            user: DEFAULT_USER,
            ssh_authorized_keys,
        }
    }
}

/// Why a `user-data` was not rendered: each case would boot a VM nobody can log into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    #[error("the user name is empty")]
    EmptyUser,
    #[error("no ssh public key given: the password is locked, so nobody could log in")]
    NoKey,
    #[error("ssh public key {number} is blank")]
    BlankKey { number: usize },
    #[error(
        "ssh public key {number} spans several lines (give one key per entry, without the trailing newline)"
    )]
    MultiLineKey { number: usize },
}

/// Renders `meta-data`.
pub fn meta_data(meta: &MetaData<'_>) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        quote(meta.instance_id),
        quote(meta.local_hostname)
    )
}

/// Renders `user-data`; its first line is `#cloud-config`, which is how cloud-init recognises it.
pub fn user_data(user: &UserData<'_>) -> Result<String, UserDataError> {
    if user.user.is_empty() {
        return Err(UserDataError::EmptyUser);
    }
    if user.ssh_authorized_keys.is_empty() {
        return Err(UserDataError::NoKey);
    }
    for (i, key) in user.ssh_authorized_keys.iter().enumerate() {
        let number = i + 1;
        if key.trim().is_empty() {
            return Err(UserDataError::BlankKey { number });
        }
        // cloud-init writes each entry as one authorized_keys line: a line break would smuggle
        // in a second entry, or leave an empty one from a `.pub` file read verbatim.
        if key.contains(['\n', '\r']) {
            return Err(UserDataError::MultiLineKey { number });
        }
    }

    // `writeln!` into a String cannot fail, hence the ignored results below.
    let mut out = String::from("#cloud-config\n");
    out.push_str("users:\n");
    let _ = writeln!(out, "  - name: {}", quote(user.user));
    let _ = writeln!(out, "    sudo: {}", quote("ALL=(ALL) NOPASSWD:ALL"));
    let _ = writeln!(out, "    shell: {}", quote("/bin/bash"));
    out.push_str("    lock_passwd: true\n");
    out.push_str("    ssh_authorized_keys:\n");
    for key in user.ssh_authorized_keys {
        let _ = writeln!(out, "      - {}", quote(key));
    }
    out.push_str("ssh_pwauth: false\n");
    out.push_str("package_update: false\n");
    out.push_str("package_upgrade: false\n");
    Ok(out)
}

/// What `network-config` sets up.
#[derive(Debug, Clone, Copy)]
pub struct NetworkConfig<'a> {
    /// The NIC's MAC address: the config matches it, so the name the guest gives the NIC
    /// (`ens3`, `enp1s0` …) does not matter.
    pub mac: &'a str,
    /// Addresses the guest must have no route to: the real fleet's.
    pub unreachable: &'a [IpAddr],
}

/// Renders `network-config` (version 2, which cloud-init hands to netplan as it is).
pub fn network_config(net: &NetworkConfig<'_>) -> String {
    let mut out = String::from("network:\n  version: 2\n  ethernets:\n");
    ethernet(&mut out, "boma0", net.mac);
    out.push_str("      dhcp4: true\n");
    if !net.unreachable.is_empty() {
        out.push_str("      routes:\n");
        for address in net.unreachable {
            let prefix = if address.is_ipv4() { 32 } else { 128 };
            let _ = writeln!(
                out,
                "        - to: {}",
                quote(&format!("{address}/{prefix}"))
            );
            out.push_str("          type: unreachable\n");
        }
    }
    out
}

/// Opens the `ethernets` entry `id`, matched on `mac` (lowercase, as the guest's kernel
/// reports it).
fn ethernet(out: &mut String, id: &str, mac: &str) {
    let _ = writeln!(out, "    {id}:");
    out.push_str("      match:\n");
    let _ = writeln!(
        out,
        "        macaddress: {}",
        quote(&mac.to_ascii_lowercase())
    );
}

/// A fleet member's second NIC: its own static address on the fleet's private segment.
#[derive(Debug, Clone, Copy)]
pub struct FleetNic<'a> {
    /// Matched like the first NIC's, so the guest's name for it does not matter.
    pub mac: &'a str,
    /// The member's fleet address with its prefix length, e.g. `10.231.0.10/24`.
    pub address: &'a str,
}

/// Renders a fleet member's `network-config`: the first NIC exactly as [`network_config`]
/// renders it, then the fleet NIC. The fleet NIC has no DHCP (nothing on the segment serves
/// it), no gateway and no IPv6 link-local address: it carries only the members' traffic to
/// each other, and a second default route or an address that changes with the boot would
/// show in the reboot diff as noise. It is not `optional`, so `network-online.target` waits for
/// it, as a host's services that reach a peer at boot expect.
pub fn fleet_network_config(net: &NetworkConfig<'_>, fleet: &FleetNic<'_>) -> String {
    let mut out = network_config(net);
    ethernet(&mut out, "boma1", fleet.mac);
    out.push_str("      dhcp4: false\n");
    out.push_str("      dhcp6: false\n");
    out.push_str("      link-local: []\n");
    out.push_str("      accept-ra: false\n");
    out.push_str("      addresses:\n");
    let _ = writeln!(out, "        - {}", quote(fleet.address));
    out
}
