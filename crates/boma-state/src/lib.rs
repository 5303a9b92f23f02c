//! The reboot diff: the guest's observable state captured after the last apply and again after
//! the reboot, compared, with anything that was there before and is gone after named as a
//! failure.
//!
//! It catches the everyday reboot-class bugs on any host with no check written: a service
//! started but never enabled (`unit_inactive`, `listener_lost`), state added imperatively or
//! kept only in /run (`route_lost`, `mount_lost`, `unit_disabled`), a unit that fails only at
//! boot (`unit_failed`, `degraded`), a unit or container left crash-looping
//! (`unit_restarting`, `container_restarting`), a firewall reload that wipes Docker's chains
//! (`chain_lost`), and, through the controller's probes, a published port that stopped
//! answering (`probe_failed`).
//!
//! The flow: the harness runs [`CAPTURE_SCRIPT`] on the guest in one SSH round trip,
//! [`parse_capture`] reads its output into a [`GuestState`], the harness pairs it with its own
//! [`ProbeResult`]s as a [`Snapshot`], and [`diff`] compares two snapshots under an [`Ignore`]
//! list; [`render_text`] is what a person reads. Everything here is pure: text and values in,
//! values and text out.
//!
//! A section the capture could not read is [`Section::Unavailable`]; it is never read as empty,
//! so it can never look like "everything was lost". One readable before the reboot and not
//! after is itself a loss (`section_lost`); one unreadable before is reported as not compared.

// A library returns values; its caller prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod capture;
mod diff;
mod finding;
mod ignore;
mod model;
mod nft;
mod parse;
mod render;

pub use capture::{CAPTURE_SCRIPT, ParseError, SETTLE_WITHIN_SECONDS};
pub use diff::{PatternHits, RebootDiff, diff};
pub use finding::{Finding, Reason};
pub use ignore::{
    BUILTIN_IGNORES, BuiltinIgnore, Ignore, IgnoreError, IgnoredBy, RANDOM_PORT_HOLDERS,
    RandomPortHolder, RandomRange,
};
pub use model::{
    BaseChain, Chain, Container, GuestState, ListenAddress, Listener, Mount, PortRange,
    ProbeResult, Route, Ruleset, Section, Snapshot, Table, Unit,
};
pub use parse::parse_capture;
pub use render::render_text;
