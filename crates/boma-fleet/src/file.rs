//! Fleet files (`fleets/<name>.json`): which profiles are the members, which variable files
//! every step gets on top of theirs, which reboot rounds run, in which order a power loss boots
//! the members, and the fleet's own checks.
//!
//! Parsing is as strict as a profile's (`boma_inventory::parse_profile`): unknown and missing
//! keys are errors, values are checked while they are read, and every error names the file, the
//! key (as a JSON path) and the line:column. What needs the repository — does each member have
//! a profile, is the fleet's name also a profile's — is checked by [`Fleet::check`] against the
//! names the caller lists, so that this stays pure but for [`load_fleet`] and [`list_fleets`].

use std::collections::BTreeSet;
use std::fmt;
use std::io;

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use serde::de::{self, Deserialize, Deserializer};

/// Directory of the fleet files, relative to the repo root.
pub const FLEETS_DIR: &str = "fleets";

/// A fleet is about what happens *between* hosts: one member is a profile.
pub const MIN_MEMBERS: usize = 2;

/// How the members are rebooted in one round (ADR-027).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebootKind {
    /// One round per member: that member reboots while the others run.
    Rolling,
    /// One round: every member powered off, then booted (at once, or in `boot_order`).
    Together,
}

impl fmt::Display for RebootKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RebootKind::Rolling => "rolling",
            RebootKind::Together => "together",
        })
    }
}

/// The fleet file as written: every check that needs only the file itself has passed (its
/// only constructor is [`parse_fleet`]). [`Fleet::check`] makes it a [`Fleet`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// Profile names; each is also the member's inventory name.
    #[serde(deserialize_with = "members")]
    members: Vec<String>,
    /// Variable files (repo-relative) passed as `-e @file` to every step, after the members'
    /// own.
    #[serde(default, deserialize_with = "repo_files")]
    extra_vars_files: Vec<Utf8PathBuf>,
    /// Which rounds run, in this order.
    #[serde(default = "both_reboots", deserialize_with = "reboots")]
    reboots: Vec<RebootKind>,
    /// For the `together` round: boot the members one after another, each once the previous
    /// answers on SSH and its boot has settled ([`crate::schedule::BOOT_SETTLE`]). Absent: all
    /// at once.
    #[serde(default, deserialize_with = "boot_order")]
    boot_order: Option<Vec<String>>,
    /// A RED fleet's expected failures, matched like a profile's
    /// (`boma_inventory::expect_entry_matches`) against the per-round check names.
    #[serde(default, deserialize_with = "patterns")]
    expect: Vec<String>,
    /// The fleet's own checks: playbooks run over every member after the last round.
    #[serde(default, deserialize_with = "repo_files")]
    verify: Vec<Utf8PathBuf>,
}

fn both_reboots() -> Vec<RebootKind> {
    vec![RebootKind::Rolling, RebootKind::Together]
}

/// A fleet whose members are known profiles and whose boot order names each of them once. The
/// only way to get one is [`Fleet::check`] (or [`load_fleet`], which calls it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    name: String,
    file: FleetFile,
}

impl Fleet {
    /// Checks `file` against the repository: `profiles` are the names that have a profile (the
    /// members must be among them, the fleet's own name must not).
    pub fn check(name: &str, file: FleetFile, profiles: &[String]) -> Result<Fleet, FleetError> {
        check_fleet_name(name)?;
        let path = fleet_path(name);
        if profiles.iter().any(|p| p == name) {
            return Err(FleetError::AlsoAProfile {
                name: name.to_owned(),
            });
        }
        if let Some(member) = file.members.iter().find(|m| !profiles.contains(m)) {
            return Err(FleetError::UnknownMember {
                file: path,
                member: member.clone(),
                existing: profiles.to_vec(),
            });
        }
        if let Some(order) = &file.boot_order {
            if !file.reboots.contains(&RebootKind::Together) {
                return Err(FleetError::Inconsistent {
                    file: path,
                    key: "boot_order".into(),
                    message: "applies only to the `together` round, which `reboots` leaves out"
                        .into(),
                });
            }
            let named: BTreeSet<&String> = order.iter().collect();
            let members: BTreeSet<&String> = file.members.iter().collect();
            let missing: Vec<&str> = members.difference(&named).map(|m| m.as_str()).collect();
            let extra: Vec<&str> = named.difference(&members).map(|m| m.as_str()).collect();
            if !missing.is_empty() || !extra.is_empty() {
                let mut problems = Vec::new();
                if !missing.is_empty() {
                    problems.push(format!("leaves out {}", missing.join(", ")));
                }
                if !extra.is_empty() {
                    problems.push(format!("names non-members {}", extra.join(", ")));
                }
                return Err(FleetError::Inconsistent {
                    file: path,
                    key: "boot_order".into(),
                    message: format!("must name every member once: it {}", problems.join(" and ")),
                });
            }
        }
        Ok(Fleet {
            name: name.to_owned(),
            file,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The members' names (= their profiles' names, = their inventory names), in file order.
    pub fn members(&self) -> &[String] {
        &self.file.members
    }

    pub fn extra_vars_files(&self) -> &[Utf8PathBuf] {
        &self.file.extra_vars_files
    }

    pub fn reboots(&self) -> &[RebootKind] {
        &self.file.reboots
    }

    /// The `together` round's boot order; `None` boots every member at once.
    pub fn boot_order(&self) -> Option<&[String]> {
        self.file.boot_order.as_deref()
    }

    pub fn expect(&self) -> &[String] {
        &self.file.expect
    }

    pub fn verify(&self) -> &[Utf8PathBuf] {
        &self.file.verify
    }
}

/// What `cargo xtask it <name>` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Profile,
    Fleet,
}

/// Decides whether `name` is a profile or a fleet, from the names that exist. Pure.
pub fn resolve_target(
    name: &str,
    profiles: &[String],
    fleets: &[String],
) -> Result<Target, FleetError> {
    let profile = profiles.iter().any(|p| p == name);
    let fleet = fleets.iter().any(|f| f == name);
    match (profile, fleet) {
        (true, true) => Err(FleetError::AlsoAProfile {
            name: name.to_owned(),
        }),
        (true, false) => Ok(Target::Profile),
        (false, true) => Ok(Target::Fleet),
        (false, false) => Err(FleetError::NoSuchTarget {
            name: name.to_owned(),
            profiles: profiles.to_vec(),
            fleets: fleets.to_vec(),
        }),
    }
}

/// Why a fleet could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{file}:{line}:{column}: malformed json: {message}")]
    Malformed {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// An unknown or missing key, or a value out of bounds.
    #[error("{file}:{line}:{column}: {}{message}", key_prefix(.key))]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        /// JSON path of the value at fault, like `members[2]`; empty at the top.
        key: String,
        message: String,
    },
    /// Two keys that disagree with each other.
    #[error("{file}: {key}: {message}")]
    Inconsistent {
        file: String,
        key: String,
        message: String,
    },
    #[error(
        "{file}: member `{member}` has no profile (profiles/{member}.json): every member is an ordinary profile; {}",
        list_or_none("existing profiles", .existing)
    )]
    UnknownMember {
        file: String,
        member: String,
        existing: Vec<String>,
    },
    #[error(
        "`{name}` is both a profile (profiles/{name}.json) and a fleet (fleets/{name}.json): rename one, so that `cargo xtask it {name}` means one thing"
    )]
    AlsoAProfile { name: String },
    #[error(
        "no profile or fleet named `{name}`; {}; {}",
        list_or_none("profiles", .profiles),
        list_or_none("fleets", .fleets)
    )]
    NoSuchTarget {
        name: String,
        profiles: Vec<String>,
        fleets: Vec<String>,
    },
    #[error(
        "`{name}` cannot name a fleet file (it must be non-empty, without `/`, not start with `.`)"
    )]
    BadName { name: String },
    #[error("cannot read {path}")]
    Read {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

fn list_or_none(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        format!("there are no {what}")
    } else {
        format!("{what}: {}", names.join(", "))
    }
}

fn fleet_path(name: &str) -> String {
    format!("{FLEETS_DIR}/{name}.json")
}

fn check_fleet_name(name: &str) -> Result<(), FleetError> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\0']) {
        return Err(FleetError::BadName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Parses and checks the text of a fleet file; `file` is how errors name it
/// (e.g. `fleets/web.json`).
pub fn parse_fleet(file: &str, text: &str) -> Result<FleetFile, FleetError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let key = e.path().to_string();
        located(file, e.into_inner(), if key == "." { "" } else { &key })
    })?;
    // Trailing text after the object is as suspicious as a typo inside it.
    de.end().map_err(|e| located(file, e, ""))?;
    Ok(parsed)
}

/// serde_json's error, with its location moved from the end of the message to the front.
fn located(file: &str, err: serde_json::Error, key: &str) -> FleetError {
    let (line, column) = (err.line(), err.column());
    let full = err.to_string();
    let message = full
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&full)
        .to_owned();
    let file = file.to_owned();
    if err.classify() == serde_json::error::Category::Data {
        FleetError::Invalid {
            file,
            line,
            column,
            key: key.to_owned(),
            message,
        }
    } else {
        FleetError::Malformed {
            file,
            line,
            column,
            message,
        }
    }
}

/// Reads `fleets/<name>.json` under `repo_root` and checks it against `profiles`, the names
/// that have a profile.
pub fn load_fleet(
    repo_root: &Utf8Path,
    name: &str,
    profiles: &[String],
) -> Result<Fleet, FleetError> {
    check_fleet_name(name)?;
    let file = fleet_path(name);
    let path = repo_root.join(&file);
    let text =
        std::fs::read_to_string(&path).map_err(|source| FleetError::Read { path, source })?;
    Fleet::check(name, parse_fleet(&file, &text)?, profiles)
}

/// The fleets that have a file, sorted; none when `fleets/` does not exist.
pub fn list_fleets(repo_root: &Utf8Path) -> Result<Vec<String>, FleetError> {
    boma_inventory::json_stems(&repo_root.join(FLEETS_DIR))
        .map_err(|(path, source)| FleetError::Read { path, source })
}

// Value checks, run by serde as each field is read so that their errors carry a position.

fn invalid<E: de::Error>(message: impl fmt::Display) -> E {
    E::custom(message)
}

fn first_duplicate<T: Ord>(items: &[T]) -> Option<&T> {
    let mut seen = BTreeSet::new();
    items.iter().find(|item| !seen.insert(*item))
}

/// A member's name is a profile's file name and an inventory host name.
fn member_name<E: de::Error>(name: &str) -> Result<(), E> {
    let valid = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "`{name}` cannot be a member: a member is a profile name made of letters, digits, `-`, `_` and `.`"
        )))
    }
}

fn members<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let members = Vec::<String>::deserialize(d)?;
    for member in &members {
        member_name(member)?;
    }
    if let Some(dup) = first_duplicate(&members) {
        return Err(invalid(format!("member `{dup}` is listed twice")));
    }
    if members.len() < MIN_MEMBERS {
        return Err(invalid(format!(
            "a fleet has at least {MIN_MEMBERS} members (one host is a profile: `cargo xtask it <profile>`)"
        )));
    }
    Ok(members)
}

fn boot_order<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let order = Vec::<String>::deserialize(d)?;
    if let Some(dup) = first_duplicate(&order) {
        return Err(invalid(format!(
            "`{dup}` is booted twice: name every member once"
        )));
    }
    Ok(Some(order))
}

fn reboots<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RebootKind>, D::Error> {
    let kinds = Vec::<RebootKind>::deserialize(d)?;
    if kinds.is_empty() {
        return Err(invalid(
            "must name at least one of \"rolling\", \"together\" (leave it out for both)",
        ));
    }
    if let Some(dup) = first_duplicate(&kinds) {
        return Err(invalid(format!("`{dup}` is listed twice")));
    }
    Ok(kinds)
}

/// A relative path of normal components only: it cannot leave the repository.
fn inside_repo(path: &Utf8Path) -> bool {
    !path.as_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Utf8Component::Normal(_)))
}

fn repo_files<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Utf8PathBuf>, D::Error> {
    let files = Vec::<Utf8PathBuf>::deserialize(d)?;
    if let Some(outside) = files.iter().find(|f| !inside_repo(f)) {
        return Err(invalid(format!(
            "`{outside}` must be a path inside the repo, relative to its root (no `..`, not absolute)"
        )));
    }
    if let Some(dup) = first_duplicate(&files) {
        return Err(invalid(format!("file `{dup}` is listed twice")));
    }
    Ok(files)
}

fn patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let patterns = Vec::<String>::deserialize(d)?;
    if let Some(empty) = patterns.iter().find(|p| p.trim().is_empty()) {
        return Err(invalid(format!("`{empty}` is an empty pattern")));
    }
    if let Some(dup) = first_duplicate(&patterns) {
        return Err(invalid(format!("entry `{dup}` is listed twice")));
    }
    Ok(patterns)
}
