//! Host profiles (`profiles/<host>.json`): which groups the test VM joins, which playbooks and
//! tags are applied to it, which variable files override, and how big the VM is.
//!
//! Parsing is strict, because a typo in a profile would otherwise silently test less than its
//! author meant: unknown and missing keys are errors, and values are checked while they are read,
//! so every error names the file, the key (as a JSON path) and the line:column.

use std::collections::BTreeSet;
use std::fmt;
use std::io;

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use serde::de::{self, Deserialize, Deserializer};

/// Directory of the profiles, relative to the repo root.
pub const PROFILES_DIR: &str = "profiles";

/// The smallest VM worth booting: Debian with cloud-init and Docker does not fit in less.
pub const MIN_MEM_MIB: u32 = 512;
/// vCPUs a profile may ask for.
pub const VCPUS: std::ops::RangeInclusive<u32> = 1..=64;

/// What the integration harness builds and applies for one real host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Inventory groups the test VM is placed in, so that it gets their `group_vars`.
    #[serde(deserialize_with = "groups")]
    pub groups: Vec<String>,
    /// Playbook runs, in order.
    #[serde(deserialize_with = "applies")]
    pub applies: Vec<Apply>,
    /// Variable files passed as `-e @<repo>/<file>`, relative to the repo root.
    #[serde(deserialize_with = "extra_vars_files")]
    pub extra_vars_files: Vec<Utf8PathBuf>,
    #[serde(deserialize_with = "mem_mib")]
    pub mem_mib: u32,
    #[serde(deserialize_with = "vcpus")]
    pub vcpus: u32,
    /// Guest ports the harness forwards to the host and probes from the controller, before
    /// and after the reboot. A plain number is probed as `tcp`.
    #[serde(deserialize_with = "published_ports")]
    pub published_ports: Vec<PublishedPort>,
    /// The profile's own checks: playbooks (repo-relative) run after the reboot, in order,
    /// each with the harness's inputs contract (`tests/integration/README.md`).
    #[serde(default, deserialize_with = "repo_files")]
    pub verify: Vec<Utf8PathBuf>,
    /// Glob patterns of reboot-diff findings that are known noise for this host
    /// (`unit_inactive foo.service`, `listener_lost udp/*`).
    #[serde(default, deserialize_with = "patterns")]
    pub reboot_diff_ignore: Vec<String>,
    /// A RED profile's expected failures (check names or findings, e.g.
    /// `unit_inactive boma-cat-web.service`, `reboot_timeout`): documentation the VM suite and
    /// the end of a run compare against what was seen.
    #[serde(default, deserialize_with = "patterns")]
    pub expect: Vec<String>,
    /// The profile exists only to be a fleet member (`fleets/<fleet>.json`): `cargo xtask it`
    /// refuses it alone and `--all` leaves it to its fleets. Its checks are about what happens
    /// between hosts; run alone, it would test a host that has no peer.
    #[serde(default)]
    pub fleet_only: bool,
}

impl Profile {
    /// The guest ports, in the profile's order.
    pub fn ports(&self) -> Vec<u16> {
        self.published_ports.iter().map(|p| p.port).collect()
    }
}

/// How the controller probes a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// Connect; a banner or a moment of silence counts as open.
    Tcp,
    /// An HTTP request; any status counts (and, with `server`, the answer's `Server:`).
    Http,
    /// An HTTPS request with the given name as SNI and Host; any status counts (and, with
    /// `server`, the answer's `Server:`); with `ca`, the certificate is verified against that
    /// CA alone.
    Https,
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Tcp => "tcp",
            ProbeKind::Http => "http",
            ProbeKind::Https => "https",
        })
    }
}

/// One published port: `443`, or `{"port": 443, "probe": "https", "name": "www.example",
/// "ca": "/srv/caddy/data/caddy/pki/authorities/local/root.crt", "server": "Caddy"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    pub port: u16,
    pub probe: ProbeKind,
    /// SNI and Host name (https only).
    pub name: Option<String>,
    /// A CA certificate in the guest (an absolute guest path): the harness reads it over its
    /// own ssh and verifies the server against it alone (https only).
    pub ca: Option<String>,
    /// What the answer's `Server:` header must start with (http and https).
    pub server: Option<String>,
}

/// One `ansible-playbook` run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Apply {
    /// A file name in `playbooks/`, or a repo-relative path (with a `/`).
    #[serde(deserialize_with = "playbook")]
    pub playbook: String,
    /// `--tags`; empty runs the whole playbook.
    #[serde(deserialize_with = "tags")]
    pub tags: Vec<String>,
}

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
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
        /// JSON path of the object or value at fault, like `applies[1].tags`; empty at the top.
        key: String,
        message: String,
    },
    #[error("no profile for host `{host}`: {file} does not exist; {}", existing_list(.existing))]
    NotFound {
        host: String,
        file: String,
        existing: Vec<String>,
    },
    #[error(
        "`{host}` cannot name a profile file (it must be non-empty, without `/`, not start with `.`)"
    )]
    BadHost { host: String },
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

fn existing_list(existing: &[String]) -> String {
    if existing.is_empty() {
        format!("there are no profiles in {PROFILES_DIR}/")
    } else {
        format!("existing profiles: {}", existing.join(", "))
    }
}

/// Parses and checks the text of a profile; `file` is how errors name it
/// (e.g. `profiles/askari.json`).
pub fn parse_profile(file: &str, text: &str) -> Result<Profile, ProfileError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let profile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let key = e.path().to_string();
        located(
            file,
            e.into_inner(),
            if key == "." { String::new() } else { key },
        )
    })?;
    // Trailing text after the object is as suspicious as a typo inside it.
    de.end().map_err(|e| located(file, e, String::new()))?;
    Ok(profile)
}

fn located(file: &str, err: serde_json::Error, key: String) -> ProfileError {
    let (line, column) = (err.line(), err.column());
    // serde_json appends the location to its message; it is moved to the front instead.
    let full = err.to_string();
    let message = full
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&full)
        .to_owned();
    let file = file.to_owned();
    match err.classify() {
        serde_json::error::Category::Data => ProfileError::Invalid {
            file,
            line,
            column,
            key,
            message,
        },
        _ => ProfileError::Malformed {
            file,
            line,
            column,
            message,
        },
    }
}

/// Reads `profiles/<host>.json` under `repo_root`; when it does not exist, the error lists the
/// profiles that do.
pub fn load_profile(repo_root: &Utf8Path, host: &str) -> Result<Profile, ProfileError> {
    if host.is_empty() || host.starts_with('.') || host.contains(['/', '\0']) {
        return Err(ProfileError::BadHost {
            host: host.to_owned(),
        });
    }
    let file = format!("{PROFILES_DIR}/{host}.json");
    let path = repo_root.join(&file);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_profile(&file, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ProfileError::NotFound {
            host: host.to_owned(),
            file,
            existing: list_profiles(repo_root)?,
        }),
        Err(source) => Err(ProfileError::Read { path, source }),
    }
}

/// The hosts that have a profile, sorted; none when `profiles/` does not exist.
pub fn list_profiles(repo_root: &Utf8Path) -> Result<Vec<String>, ProfileError> {
    json_stems(&repo_root.join(PROFILES_DIR))
        .map_err(|(path, source)| ProfileError::Read { path, source })
}

/// The names of the `<name>.json` files in `dir` (not hidden ones), sorted; none when `dir`
/// does not exist. What lists profiles and fleets alike; the error names the directory.
pub fn json_stems(dir: &Utf8Path) -> Result<Vec<String>, (Utf8PathBuf, io::Error)> {
    let entries = match dir.read_dir_utf8() {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err((dir.to_owned(), source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| (dir.to_owned(), source))?;
        if let Some(name) = entry.file_name().strip_suffix(".json")
            && !name.is_empty()
            && !name.starts_with('.')
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

// Value checks, run by serde as each field is read so that their errors carry a position.

fn invalid<E: de::Error>(message: impl fmt::Display) -> E {
    E::custom(message)
}

fn no_duplicates<E: de::Error, T: Ord + fmt::Display>(what: &str, items: &[T]) -> Result<(), E> {
    let mut seen = BTreeSet::new();
    for item in items {
        if !seen.insert(item) {
            return Err(invalid(format!("duplicate {what} `{item}`")));
        }
    }
    Ok(())
}

fn groups<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let groups = Vec::<String>::deserialize(d)?;
    if groups.is_empty() {
        return Err(invalid("must name at least one group"));
    }
    for group in &groups {
        // Ansible's own rule for group names (others are rewritten, with a warning); `all` and
        // `ungrouped` are implicit groups a host cannot be placed in by name.
        let valid = group.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && group.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(invalid(format!(
                "group `{group}` is not a valid ansible group name (letters, digits and `_`, not starting with a digit)"
            )));
        }
        if group == "all" || group == "ungrouped" {
            return Err(invalid(format!(
                "group `{group}` is implicit in ansible and cannot be listed"
            )));
        }
    }
    no_duplicates("group", &groups)?;
    Ok(groups)
}

fn applies<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Apply>, D::Error> {
    let applies = Vec::<Apply>::deserialize(d)?;
    if applies.is_empty() {
        return Err(invalid("must list at least one playbook run"));
    }
    Ok(applies)
}

fn playbook<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    // A bare name is a file in `playbooks/`; a path stays inside the repository.
    if !inside_repo(Utf8Path::new(&name)) || !name.ends_with(".yml") && !name.ends_with(".yaml") {
        return Err(invalid(format!(
            "playbook `{name}` must be a file name in playbooks/ or a path inside the repo (no `..`, not absolute), ending in .yml"
        )));
    }
    Ok(name)
}

impl Apply {
    /// The playbook, relative to the repo root.
    pub fn playbook_path(&self) -> Utf8PathBuf {
        if self.playbook.contains('/') {
            Utf8PathBuf::from(&self.playbook)
        } else {
            Utf8Path::new(crate::PLAYBOOKS_DIR).join(&self.playbook)
        }
    }

    /// How the step is named in progress and reports: `playbooks/site.yml --tags base`.
    pub fn label(&self) -> String {
        match self.tags.is_empty() {
            true => self.playbook_path().to_string(),
            false => format!("{} --tags {}", self.playbook_path(), self.tags.join(",")),
        }
    }
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
    for file in &files {
        if !inside_repo(file) {
            return Err(invalid(format!(
                "`{file}` must be a path inside the repo, relative to its root (no `..`, not absolute)"
            )));
        }
    }
    no_duplicates("file", &files)?;
    Ok(files)
}

fn patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let patterns = Vec::<String>::deserialize(d)?;
    if let Some(empty) = patterns.iter().find(|p| p.trim().is_empty()) {
        return Err(invalid(format!("`{empty}` is an empty pattern")));
    }
    no_duplicates("entry", &patterns)?;
    Ok(patterns)
}

fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let tags = Vec::<String>::deserialize(d)?;
    for tag in &tags {
        // Tags are joined with `,` into one `--tags` argument.
        if tag.is_empty() || tag.contains(|c: char| c == ',' || c.is_whitespace()) {
            return Err(invalid(format!(
                "tag `{tag}` must be non-empty, without `,` or spaces"
            )));
        }
    }
    no_duplicates("tag", &tags)?;
    Ok(tags)
}

fn extra_vars_files<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Utf8PathBuf>, D::Error> {
    let files = Vec::<Utf8PathBuf>::deserialize(d)?;
    for file in &files {
        if !inside_repo(file) {
            return Err(invalid(format!(
                "extra vars file `{file}` must be a path inside the repo, relative to its root (no `..`, not absolute)"
            )));
        }
    }
    no_duplicates("extra vars file", &files)?;
    Ok(files)
}

fn mem_mib<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let mib = u32::deserialize(d)?;
    if mib < MIN_MEM_MIB {
        return Err(invalid(format!(
            "{mib} MiB is less than the minimum of {MIN_MEM_MIB}"
        )));
    }
    Ok(mib)
}

fn vcpus<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let vcpus = u32::deserialize(d)?;
    if !VCPUS.contains(&vcpus) {
        return Err(invalid(format!(
            "{vcpus} vcpus is outside {}..={}",
            VCPUS.start(),
            VCPUS.end()
        )));
    }
    Ok(vcpus)
}

fn published_ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PublishedPort>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Entry {
        // Read wider than u16 so that 0 and 70000 get the same message, not serde's "expected u16".
        Plain(u64),
        Probed(Probed),
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probed {
        port: u64,
        probe: ProbeKind,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        ca: Option<String>,
        #[serde(default)]
        server: Option<String>,
    }
    let entries = Vec::<Entry>::deserialize(d).map_err(|_| {
        invalid::<D::Error>(
            "each published port is a number or {\"port\": N, \"probe\": \"tcp\"|\"http\"|\"https\", \"name\": \"<https only>\", \"ca\": \"<https only>\", \"server\": \"<http(s) only>\"}",
        )
    })?;
    let mut ports = Vec::with_capacity(entries.len());
    for entry in entries {
        let Probed {
            port: wide,
            probe,
            name,
            ca,
            server,
        } = match entry {
            Entry::Plain(port) => Probed {
                port,
                probe: ProbeKind::Tcp,
                name: None,
                ca: None,
                server: None,
            },
            Entry::Probed(p) => p,
        };
        let port = match u16::try_from(wide) {
            Ok(p) if p != 0 => p,
            _ => return Err(invalid(format!("port {wide} is outside 1..=65535"))),
        };
        if let Some(name) = &name {
            if probe != ProbeKind::Https {
                return Err(invalid(format!(
                    "port {port}: `name` is the TLS server name, only for \"probe\": \"https\""
                )));
            }
            let host_like = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !host_like {
                return Err(invalid(format!("port {port}: `{name}` is not a host name")));
            }
        }
        if let Some(ca) = &ca {
            if probe != ProbeKind::Https {
                return Err(invalid(format!(
                    "port {port}: `ca` is the CA the certificate is verified against, only for \"probe\": \"https\""
                )));
            }
            let guest_path = ca.starts_with('/')
                && !ca.chars().any(char::is_control)
                && Utf8Path::new(ca)
                    .components()
                    .all(|c| matches!(c, Utf8Component::RootDir | Utf8Component::Normal(_)))
                && ca.len() > 1;
            if !guest_path {
                return Err(invalid(format!(
                    "port {port}: `ca` `{ca}` must be an absolute file path in the guest (no `..`)"
                )));
            }
        }
        if let Some(server) = &server {
            if probe == ProbeKind::Tcp {
                return Err(invalid(format!(
                    "port {port}: `server` is the HTTP `Server:` header, only for \"probe\": \"http\" or \"https\""
                )));
            }
            if server.trim().is_empty() || !server.chars().all(|c| c.is_ascii_graphic() || c == ' ')
            {
                return Err(invalid(format!(
                    "port {port}: `server` `{server}` must be printable ascii, not empty"
                )));
            }
        }
        ports.push(PublishedPort {
            port,
            probe,
            name,
            ca,
            server,
        });
    }
    let numbers: Vec<u16> = ports.iter().map(|p| p.port).collect();
    no_duplicates("port", &numbers)?;
    Ok(ports)
}

/// What a failed check's name must be for an `expect` entry to match it: the entry itself, or
/// the entry followed by a space and more (`probe_failed 443` matches `probe_failed 443
/// timeout`). `probe_443` does not match `probe_443_https`: an entry is a whole word.
pub fn expect_entry_matches(entry: &str, failed: &str) -> bool {
    failed == entry
        || failed
            .strip_prefix(entry)
            .is_some_and(|rest| rest.starts_with(' '))
}

/// A RED profile's `expect` held against the failures a run showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectMatch {
    /// Expected failures that did not happen.
    pub missing: Vec<String>,
    /// Failures that were not expected.
    pub unexpected: Vec<String>,
}

/// Compare `expect` with the failed check names, both ways ([`expect_entry_matches`]).
pub fn match_expect<S: AsRef<str>>(expect: &[String], failed: &[S]) -> ExpectMatch {
    ExpectMatch {
        missing: expect
            .iter()
            .filter(|e| !failed.iter().any(|f| expect_entry_matches(e, f.as_ref())))
            .cloned()
            .collect(),
        unexpected: failed
            .iter()
            .map(AsRef::as_ref)
            .filter(|f| !expect.iter().any(|e| expect_entry_matches(e, f)))
            .map(str::to_owned)
            .collect(),
    }
}
