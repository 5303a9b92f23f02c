//! Everything the integration harness tells Ansible: host profiles, cert tiers, the real
//! inventory's hosts, addresses and group hierarchy, the transient one-VM inventory (the VM in
//! the profile's groups and every group above them) and the `ansible-playbook` argv.
//!
//! The renderers and parsers are pure (text and plain values in, text or values out; ids and
//! paths come from the caller). A few thin functions do the I/O around them and nothing else:
//! [`load_profile`], [`list_profiles`], [`write_inventory_dir`].
//!
//! The real inventory is read by Ansible itself (`ansible-inventory --list`, run by the
//! harness); [`Fleet::from_ansible_list`] turns what it prints into the fleet, refusing a real
//! host named like a test VM.
//!
//! The invariant this crate guards: a test run's inventory holds exactly one host, the test VM
//! (`boma-it-…`), which is none of the real inventory's hosts, and every playbook run is limited
//! to it. [`VmName`] is the proof that the name was checked; [`HostsYml`] and [`PlaybookRun`]
//! can only be built from one. A fleet run's inventory holds exactly its members, under their
//! real inventory names ([`MemberName`], [`render_members_yml`]), and each of its playbook runs
//! is limited to members ([`fleet_apply_argv`]); that nothing but the members is reached rests
//! on the connection wrapper there, whose table holds only them (ADR-027).
//!
//! And the connection to that host is the harness's own, not only its name: every playbook run
//! gets the harness's connection variables ([`connection_vars`]) as its last `-e @file`
//! ([`PlaybookRun::connection_vars`]), which no other variable source outranks, and
//! [`refuse_connection_vars`] refuses a vars file the harness passes that sets one.

mod argv;
mod cert;
mod connection;
mod policy;
mod profile;
mod real;
mod scan;
mod transient;

pub use argv::{
    FleetPlaybookRun, PLAYBOOKS_DIR, PlaybookRun, apply_argv, fleet_apply_argv,
    fleet_playbook_argv, playbook_argv,
};
pub use boma_name::{NameRefusal, VmName};
pub use cert::{CertTier, UnknownCertTier};
pub use connection::{
    BECOME_METHOD, CONNECTION_PLUGIN, ConnectionValue, ConnectionValueError, FLEET_ADDRESS_VAR,
    FLEET_HOST, FLEET_PORT, FleetConnection, PYTHON_INTERPRETER, SCP_PROGRAM, SFTP_PROGRAM,
    SSH_PROGRAM, VmConnection, connection_vars, fleet_connection_vars, render_connection_vars,
    render_fleet_connection_vars,
};
pub use policy::{POLICY_FILE, Policy, PolicyError, ScalarValue, effective_values, violations};
pub use profile::{
    Apply, ExpectMatch, MIN_MEM_MIB, PROFILES_DIR, ProbeKind, Profile, ProfileError, PublishedPort,
    VCPUS, expect_entry_matches, json_stems, list_profiles, load_profile, match_expect,
    parse_profile,
};
pub use real::{ADDRESS_VARS, Fleet, InventoryError, PRODUCTION_DIR};
pub use scan::{
    CONNECTION_PREFIXES, CONNECTION_VARS, ConnectionVar, ConnectionVarsError, find_connection_vars,
    is_connection_var, refuse_connection_vars,
};
pub use transient::{
    HostsYml, MemberName, MembersYml, Refusal, TransientHost, TransientMember, WriteError,
    render_hosts_yml, render_members_yml, write_inventory_dir, write_members_dir,
};
