//! The layer key: a SHA-256 over everything that determines the disk a step leaves behind, in
//! one documented encoding, and the explanation of why a wanted key differs from a cached one.
//!
//! # Canonical encoding (format 1)
//!
//! The key is the lowercase hex SHA-256 of this byte string:
//!
//! ```text
//! boma-layer-key 1\n
//! golden_digest <len>:<bytes>\n
//! groups #<count>\n            then per group:      group <len>:<bytes>\n
//! step_index <len>:<decimal>\n
//! playbook <len>:<bytes>\n
//! tags #<count>\n              then per tag:        tag <len>:<bytes>\n
//! vars_files #<count>\n        then per file:       vars_file <len>:<path>\n
//! files #<count>\n             then per file, sorted by path:
//!                                                   path <len>:<path>\n
//!                                                   sha256 <len>:<hex>\n
//! lineage #<count>\n           then per group, sorted: lineage_group <len>:<bytes>\n
//!                                                   parents #<count>\n
//!                                                   then per parent, sorted: parent <len>:<bytes>\n
//! ansible_env #<count>\n       then per variable, sorted by name:
//!                                                   env_name <len>:<bytes>\n
//!                                                   env_sha256 <len>:<hex>\n
//! installed #<count>\n         then per package, sorted by name:
//!                                                   package <len>:<bytes>\n
//!                                                   version <len>:<bytes>\n
//! controller_files #<count>\n  then per file, sorted by path:
//!                                                   controller_path <len>:<bytes>\n
//!                                                   sha256 <len>:<hex>\n
//! seed_sha256 <len>:<hex>\n
//! connection_sha256 <len>:<hex>\n
//! previous #0\n                or  previous #1\n previous_key <len>:<hex>\n
//! ```
//!
//! `<len>` is the value's length in bytes, in decimal, so no value can be mistaken for the
//! next field whatever characters it holds. Lists keep their order (groups and tags as the
//! profile gives them; `vars_files` in the order Ansible applies them); files are sorted.
//! Changing anything here changes every key: bump [`KEY_FORMAT`] so that old layers are never
//! matched by accident (they then age out of the store).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::path::RepoPath;
use crate::reach::Reach;
use crate::tree::{RepoTree, TreeError};

/// Version of the canonical encoding; part of every key. 2: the run's inputs besides the
/// repository ([`RunInputs`]).
pub const KEY_FORMAT: u32 = 2;
/// How many reasons [`explain_miss`] lists before summing up the rest.
pub const MISS_REASONS_SHOWN: usize = 5;

/// A lowercase hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Sha256Hex(String);

impl Sha256Hex {
    fn of(bytes: &[u8]) -> Sha256Hex {
        Sha256Hex(hex::encode(Sha256::digest(bytes)))
    }

    fn parse(text: &str) -> Option<Sha256Hex> {
        let valid = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| Sha256Hex(text.to_owned()))
    }
}

/// A text that is not a lowercase hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a layer key (64 lowercase hex digits)")]
pub struct NotAKey {
    pub given: String,
}

/// The key of a layer: what names its files in the store. Only made by hashing a [`Recipe`]
/// or by parsing 64 lowercase hex digits, so it is always safe as a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerKey(Sha256Hex);

impl LayerKey {
    pub fn parse(text: &str) -> Result<LayerKey, NotAKey> {
        Sha256Hex::parse(text).map(LayerKey).ok_or_else(|| NotAKey {
            given: text.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0.0
    }

    /// The first 12 digits: enough to tell layers apart in messages.
    pub fn short(&self) -> &str {
        &self.0.0[..12]
    }
}

impl fmt::Display for LayerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SHA-256 of one file's content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileDigest(Sha256Hex);

impl FileDigest {
    pub fn of(content: &[u8]) -> FileDigest {
        FileDigest(Sha256Hex::of(content))
    }

    pub fn as_str(&self) -> &str {
        &self.0.0
    }
}

macro_rules! hex_serde {
    ($type:ident, $what:literal) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0.0)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$type, D::Error> {
                let text = String::deserialize(d)?;
                Sha256Hex::parse(&text).map($type).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "`{text}` is not {} (64 lowercase hex digits)",
                        $what
                    ))
                })
            }
        }
    };
}
hex_serde!(LayerKey, "a layer key");
hex_serde!(FileDigest, "a sha256");

/// Each reached file and the SHA-256 of its content: kept beside the key so a miss can be
/// explained file by file.
pub type Manifest = BTreeMap<RepoPath, FileDigest>;

/// Hashes every file of `reach`.
pub fn manifest(tree: &dyn RepoTree, reach: &Reach) -> Result<Manifest, TreeError> {
    let mut manifest = Manifest::new();
    for reached in &reach.files {
        let content = tree
            .read(&reached.path)?
            .ok_or_else(|| TreeError::Vanished {
                path: reached.path.clone(),
            })?;
        manifest.insert(reached.path.clone(), FileDigest::of(&content));
    }
    Ok(manifest)
}

/// What every step of a run depends on besides the repository's files: where the VM sits in
/// the real inventory, the Ansible that runs and the environment it gets, what Ansible loads
/// from the controller, and the harness's own seed and connection. Values that could be
/// secret (the environment's) are kept as digests only: the recipe is stored in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInputs {
    /// The real inventory's groups above the profile's (group → its parent groups): the
    /// transient inventory nests the VM in them, so their variables apply.
    pub lineage: BTreeMap<String, BTreeSet<String>>,
    /// The environment `ansible-playbook` gets: each variable's name and the SHA-256 of its
    /// value.
    pub ansible_env: BTreeMap<String, FileDigest>,
    /// What is installed in the venv Ansible runs from: each distribution's version (the
    /// `*.dist-info` of its site-packages) and Python's ([`crate::installed`]).
    pub installed: BTreeMap<String, String>,
    /// Files Ansible loads from the controller outside the repository (collections and plugins
    /// in their default paths), by absolute path.
    pub controller_files: BTreeMap<String, FileDigest>,
    /// The harness's cloud-init seed (user-data, meta-data, network-config) as rendered, with
    /// the per-run ids replaced by stand-ins.
    pub seed: FileDigest,
    /// The harness's connection setup, as the harness describes it (opaque here).
    pub connection: FileDigest,
}

impl RunInputs {
    /// The digests of the environment's values, by name.
    pub fn digest_env(env: &BTreeMap<String, String>) -> BTreeMap<String, FileDigest> {
        env.iter()
            .map(|(name, value)| (name.clone(), FileDigest::of(value.as_bytes())))
            .collect()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        count(out, "lineage", self.lineage.len());
        for (group, parents) in &self.lineage {
            field(out, "lineage_group", group.as_bytes());
            count(out, "parents", parents.len());
            for parent in parents {
                field(out, "parent", parent.as_bytes());
            }
        }
        count(out, "ansible_env", self.ansible_env.len());
        for (name, digest) in &self.ansible_env {
            field(out, "env_name", name.as_bytes());
            field(out, "env_sha256", digest.as_str().as_bytes());
        }
        count(out, "installed", self.installed.len());
        for (package, version) in &self.installed {
            field(out, "package", package.as_bytes());
            field(out, "version", version.as_bytes());
        }
        count(out, "controller_files", self.controller_files.len());
        for (path, digest) in &self.controller_files {
            field(out, "controller_path", path.as_bytes());
            field(out, "sha256", digest.as_str().as_bytes());
        }
        field(out, "seed_sha256", self.seed.as_str().as_bytes());
        field(
            out,
            "connection_sha256",
            self.connection.as_str().as_bytes(),
        );
    }

    /// Why `wanted` differs from `cached`, in words.
    fn explain(wanted: &RunInputs, cached: &RunInputs, reasons: &mut Vec<String>) {
        if wanted.lineage != cached.lineage {
            reasons.push("the real inventory's groups above the VM changed".to_owned());
        }
        let env = changed_names(&wanted.ansible_env, &cached.ansible_env);
        if !env.is_empty() {
            reasons.push(format!("ansible's environment changed: {}", env.join(", ")));
        }
        for package in changed_names(&wanted.installed, &cached.installed) {
            let version = |inputs: &RunInputs| {
                inputs
                    .installed
                    .get(&package)
                    .map_or("(none)".to_owned(), Clone::clone)
            };
            reasons.push(format!(
                "installed {package} changed: {} -> {}",
                version(cached),
                version(wanted)
            ));
        }
        for path in changed_names(&wanted.controller_files, &cached.controller_files) {
            reasons.push(format!("{path} on the controller changed"));
        }
        if wanted.seed != cached.seed {
            reasons.push("the harness's cloud-init seed changed".to_owned());
        }
        if wanted.connection != cached.connection {
            reasons.push("the harness's connection setup changed".to_owned());
        }
    }
}

/// The keys whose values differ between two maps (added, removed or changed), sorted.
fn changed_names<V: PartialEq>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> Vec<String> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .filter(|name| a.get(*name) != b.get(*name))
        .cloned()
        .collect()
}

/// Everything a layer's key is computed from. Stored whole in the layer's metadata, so that a
/// later miss can say what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The golden image's digest (as the image cache records it).
    pub golden_digest: String,
    /// The profile's inventory groups, in profile order.
    pub groups: Vec<String>,
    /// 0 for the profile's first `applies` entry.
    pub step_index: usize,
    pub playbook: String,
    pub tags: Vec<String>,
    /// The `-e @file` files in the order they are applied ([`Reach::vars_files`]).
    pub vars_files: Vec<RepoPath>,
    pub manifest: Manifest,
    /// What the step depends on besides the repository.
    pub run: RunInputs,
    /// The key of the layer this step starts from; `None` for the first step (the golden
    /// image).
    pub previous: Option<LayerKey>,
}

impl Recipe {
    /// The key: SHA-256 of [`Recipe::canonical`].
    pub fn key(&self) -> LayerKey {
        LayerKey(Sha256Hex::of(&self.canonical()))
    }

    /// The canonical encoding described in the module documentation.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = format!("boma-layer-key {KEY_FORMAT}\n").into_bytes();
        field(&mut out, "golden_digest", self.golden_digest.as_bytes());
        count(&mut out, "groups", self.groups.len());
        for group in &self.groups {
            field(&mut out, "group", group.as_bytes());
        }
        field(
            &mut out,
            "step_index",
            self.step_index.to_string().as_bytes(),
        );
        field(&mut out, "playbook", self.playbook.as_bytes());
        count(&mut out, "tags", self.tags.len());
        for tag in &self.tags {
            field(&mut out, "tag", tag.as_bytes());
        }
        count(&mut out, "vars_files", self.vars_files.len());
        for file in &self.vars_files {
            field(&mut out, "vars_file", file.as_str().as_bytes());
        }
        count(&mut out, "files", self.manifest.len());
        for (path, digest) in &self.manifest {
            field(&mut out, "path", path.as_str().as_bytes());
            field(&mut out, "sha256", digest.as_str().as_bytes());
        }
        self.run.encode(&mut out);
        match &self.previous {
            None => count(&mut out, "previous", 0),
            Some(key) => {
                count(&mut out, "previous", 1);
                field(&mut out, "previous_key", key.as_str().as_bytes());
            }
        }
        out
    }
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(format!("{name} {}:", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn count(out: &mut Vec<u8>, name: &str, n: usize) {
    out.extend_from_slice(format!("{name} #{n}\n").as_bytes());
}

/// Why `wanted` does not match `cached` (a layer of the same profile and step), in words: the
/// step-wide reasons first, in a fixed order, then one line per changed, added or removed file,
/// sorted by path; at most `shown` lines, the last summing up the rest.
pub fn explain_miss(wanted: &Recipe, cached: &Recipe, shown: usize) -> Vec<String> {
    let mut reasons = Vec::new();
    if wanted.golden_digest != cached.golden_digest {
        reasons.push("golden image changed".to_owned());
    }
    if wanted.groups != cached.groups {
        reasons.push(format!(
            "groups changed: {} -> {}",
            list(&cached.groups),
            list(&wanted.groups)
        ));
    }
    if wanted.step_index != cached.step_index {
        reasons.push(format!(
            "step index changed: {} -> {}",
            cached.step_index, wanted.step_index
        ));
    }
    if wanted.playbook != cached.playbook {
        reasons.push(format!(
            "playbook changed: {} -> {}",
            cached.playbook, wanted.playbook
        ));
    }
    if wanted.tags != cached.tags {
        reasons.push(format!(
            "tags changed: {} -> {}",
            list(&cached.tags),
            list(&wanted.tags)
        ));
    }
    if wanted.vars_files != cached.vars_files {
        let paths = |files: &[RepoPath]| files.iter().map(RepoPath::to_string).collect::<Vec<_>>();
        reasons.push(format!(
            "extra vars files changed: {} -> {}",
            list(&paths(&cached.vars_files)),
            list(&paths(&wanted.vars_files))
        ));
    }
    RunInputs::explain(&wanted.run, &cached.run, &mut reasons);
    if wanted.previous != cached.previous {
        reasons.push("previous layer changed".to_owned());
    }
    let mut paths: Vec<&RepoPath> = wanted
        .manifest
        .keys()
        .chain(cached.manifest.keys())
        .collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        match (wanted.manifest.get(path), cached.manifest.get(path)) {
            (Some(now), Some(then)) if now != then => reasons.push(format!("{path} changed")),
            (Some(_), None) => reasons.push(format!("{path} added")),
            (None, Some(_)) => reasons.push(format!("{path} removed")),
            _ => {}
        }
    }
    if reasons.is_empty() {
        // Same recipe, different key: only a new encoding does that.
        reasons.push(format!("key format changed (now {KEY_FORMAT})"));
    }
    if reasons.len() > shown {
        let rest = reasons.len() - shown.saturating_sub(1);
        reasons.truncate(shown.saturating_sub(1));
        reasons.push(format!("and {rest} more"));
    }
    reasons
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> RepoPath {
        RepoPath::new(p).unwrap()
    }

    fn recipe() -> Recipe {
        Recipe {
            golden_digest: "sha512:ab12".to_owned(),
            groups: vec!["offsite_hosts".to_owned()],
            step_index: 1,
            playbook: "offsite.yml".to_owned(),
            tags: vec!["docker_host".to_owned(), "reverse_proxy".to_owned()],
            vars_files: vec![path("overrides/askari.yml"), path("certs/internal.yml")],
            manifest: Manifest::from([
                (path("ansible.cfg"), FileDigest::of(b"[defaults]\n")),
                (path("roles/x/tasks/main.yml"), FileDigest::of(b"[]\n")),
            ]),
            run: run_inputs(),
            previous: Some(LayerKey::parse(&"0".repeat(64)).unwrap()),
        }
    }

    fn run_inputs() -> RunInputs {
        RunInputs {
            lineage: BTreeMap::from([(
                "offsite_hosts".to_owned(),
                BTreeSet::from(["hosts".to_owned()]),
            )]),
            ansible_env: RunInputs::digest_env(&BTreeMap::from([(
                "LANG".to_owned(),
                "C.UTF-8".to_owned(),
            )])),
            installed: BTreeMap::from([
                ("ansible_core".to_owned(), "2.18.12".to_owned()),
                ("python".to_owned(), "3.11.2".to_owned()),
            ]),
            controller_files: BTreeMap::new(),
            seed: FileDigest::of(b"#cloud-config\n"),
            connection: FileDigest::of(b"ssh"),
        }
    }

    #[test]
    fn canonical_encoding_is_the_documented_one() {
        let text = String::from_utf8(recipe().canonical()).unwrap();
        insta::assert_snapshot!("canonical_encoding", text);
        // Pinned: a change to the encoding must bump KEY_FORMAT, and this test says so.
        insta::assert_snapshot!("key_of_the_sample_recipe", recipe().key().to_string());
    }

    #[test]
    fn length_prefixes_keep_neighbouring_values_apart() {
        let mut a = recipe();
        a.tags = vec!["ab".to_owned(), "c".to_owned()];
        let mut b = recipe();
        b.tags = vec!["a".to_owned(), "bc".to_owned()];
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn key_round_trips_through_json() {
        let key = recipe().key();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<LayerKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<LayerKey>("\"../../etc/passwd\"").is_err());
        assert!(
            LayerKey::parse(&"A".repeat(64)).is_err(),
            "upper case is refused"
        );
    }

    #[test]
    fn explanation_lists_step_reasons_then_files_and_sums_up_the_rest() {
        let cached = recipe();
        let mut wanted = recipe();
        wanted.golden_digest = "sha512:cd34".to_owned();
        wanted.tags = vec!["docker_host".to_owned()];
        wanted
            .manifest
            .insert(path("roles/x/tasks/main.yml"), FileDigest::of(b"- x\n"));
        wanted
            .manifest
            .insert(path("roles/x/tasks/new.yml"), FileDigest::of(b"[]\n"));
        wanted.manifest.remove(&path("ansible.cfg"));
        wanted.previous = None;
        wanted
            .run
            .installed
            .insert("ansible_core".to_owned(), "2.18.13".to_owned());
        wanted.run.ansible_env = RunInputs::digest_env(&BTreeMap::from([
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("ANSIBLE_ROLES_PATH".to_owned(), "/elsewhere".to_owned()),
        ]));
        wanted.run.seed = FileDigest::of(b"#cloud-config\nusers: []\n");
        let all = explain_miss(&wanted, &cached, 100);
        insta::assert_snapshot!("explain_miss_all", all.join("\n"));
        let few = explain_miss(&wanted, &cached, 3);
        assert_eq!(
            few,
            [
                "golden image changed",
                "tags changed: docker_host,reverse_proxy -> docker_host",
                "and 7 more"
            ]
        );
    }

    #[test]
    fn explanation_of_identical_recipes_names_the_format() {
        assert_eq!(
            explain_miss(&recipe(), &recipe(), MISS_REASONS_SHOWN),
            ["key format changed (now 2)"]
        );
    }
}
