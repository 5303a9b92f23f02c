//! Fleets: several profiles tested together on one private network, rebooted in turn and all
//! at once, with every member captured and diffed after every reboot (ADR-027).
//!
//! Everything here is pure but [`load_fleet`] and [`list_fleets`], which read `fleets/`:
//! - [`file`]: the fleet file (`fleets/<name>.json`), strict like a profile, and [`Fleet`], the
//!   checked fleet (members are known profiles, the boot order names each once);
//! - [`plan`]: the fleet's steps (the members' applies merged, each run limited to the members
//!   that list it) and its `-e` files;
//! - [`vars`]: the `-e` files' values, and the conflicts preflight refuses;
//! - [`schedule`]: the reboot rounds and the phase names checks carry;
//! - [`network`]: the private segment — addresses, MACs, the `vde_switch` and QEMU arguments,
//!   the libvirt isolated network, each member's host vars;
//! - [`probe`]: the peer probes' plan, the script a member runs, the parser of its answer;
//! - [`scan`]: the real addresses still held by a member's variables;
//! - [`findings`]: what each round showed, as report checks.
//!
//! The harness (boma-harness) runs it: boots the members, applies, reboots, captures.

pub mod file;
pub mod findings;
pub mod network;
pub mod plan;
pub mod probe;
pub mod scan;
pub mod schedule;
pub mod vars;

pub use file::{
    FLEETS_DIR, Fleet, FleetError, FleetFile, MIN_MEMBERS, RebootKind, Target, list_fleets,
    load_fleet, parse_fleet, resolve_target,
};
pub use network::{
    FLEET_ADDRESS_VAR, FLEET_NETWORK, FleetNetwork, LibvirtFleetNetwork, MemberNic, NetworkError,
    SWITCH_DIR_PREFIX, SWITCH_PARENT, SwitchPaths, VDE_SWITCH, VDE_SWITCH_PACKAGE,
    member_host_vars, qemu_nic_args, switch_paths, vde_switch_args,
};
pub use plan::{FleetStep, StepOrderError, extra_vars_files, merge_steps};
pub use probe::{PROBE_TIMING, PeerOutcome, PeerProbe, PeerTarget, ProbeTiming};
pub use scan::{
    RealAddressUse, ScanError, VarSource, addresses_in, scan_inventory_list, scan_vars,
};
pub use schedule::{BOOT_SETTLE, Boot, Phase, Round, rounds};
pub use vars::{Conflict, Vars, VarsFileError, conflicts, read_vars_file};
