//! Everything the integration harness tells Ansible: host profiles, cert tiers, the real
//! inventory's hosts and addresses, the transient one-VM inventory and the `ansible-playbook` argv.
//!
//! The renderers and parsers are pure (text and plain values in, text or values out; ids and
//! paths come from the caller). A few thin functions do the I/O around them and nothing else:
//! [`load_profile`], [`list_profiles`], [`read_real_fleet`], [`write_inventory_dir`].
//!
//! The invariant this crate guards: a test run's inventory holds exactly one host, the test VM
//! (`boma-it-…`), which is none of the real inventory's hosts, and every playbook run is limited
//! to it. [`VmName`] is the proof that the name was checked; [`HostsYml`] and [`PlaybookRun`]
//! can only be built from one.

mod argv;
mod cert;
mod policy;
mod profile;
mod real;
mod transient;

pub use argv::{PLAYBOOKS_DIR, PlaybookRun, apply_argv, playbook_argv};
pub use cert::{CertTier, UnknownCertTier};
pub use policy::{POLICY_FILE, Policy, PolicyError, ScalarValue, effective_values, violations};
pub use profile::{
    Apply, MIN_MEM_MIB, PROFILES_DIR, ProbeKind, Profile, ProfileError, PublishedPort, VCPUS,
    list_profiles, load_profile, parse_profile,
};
pub use real::{
    Fleet, InventoryError, PRODUCTION_DIR, fleet, host_names, read_real_fleet, read_real_host_names,
};
pub use boma_name::{NameRefusal, VmName};
pub use transient::{
    HostsYml, PYTHON_INTERPRETER, Refusal, SSH_COMMON_ARGS, TransientHost, WriteError,
    render_hosts_yml, write_inventory_dir,
};
