//! What one profile step can read: the repository files whose content can change the state an
//! `ansible-playbook` run leaves on the VM. Pure over a [`RepoTree`].
//!
//! The rule is to err towards more files. A file listed that does not matter costs a needless
//! rebuild of one layer; a file missed that does matter lets a stale layer stand in for a
//! changed role, which is the one failure this crate must not have.
//!
//! - **Tags are ignored.** `--tags` selects which tasks *run*, not which files Ansible *reads*:
//!   every role a playbook names is loaded (its defaults, vars, handlers, static imports), and a
//!   task tagged `always`, or carrying the selected tag inside another role, runs whatever
//!   `--tags` says. Proving that no task of a role can run under a tag set would mean evaluating
//!   Ansible's tag inheritance over every static import; we include the role instead.
//! - **Plays are not filtered by `hosts:`.** Whether the VM is in a play's host pattern depends
//!   on the transient inventory and the pattern language; a play that turns out not to target
//!   the VM only costs its roles' files in the key.
//! - **A role is its whole directory**, found where Ansible looks (`<playbook dir>/roles/`, the
//!   `roles_path` of `ansible.cfg`, the depending role's parent for `meta` dependencies, the
//!   playbook directory itself, the repo root). Every existing candidate is included, not only
//!   the first: which one wins can depend on the loader's base directory at include time.
//! - **When in doubt, everything.** A templated role name (`{{ … }}`), or a playbook or task file
//!   that does not parse, brings in every role under `roles/` and `<playbook dir>/roles/`, with
//!   a note saying why.
//!
//! - **Plugins beside a playbook are read**: every `*_plugins` directory beside it (connection,
//!   become, strategy, shell, cache …, whatever its type), `library`, `module_utils`,
//!   `doc_fragments`; and the directories `ansible.cfg` names for roles, modules and plugins.
//! - **What a file reaches outside those directories is followed** ([`crate::outside`]):
//!   `{{ role_path }}/…`, `{{ playbook_dir }}/…`, the literal paths of file-reading lookups
//!   and any path that climbs out with `..`, searched where Ansible searches. What cannot be
//!   told from the text (an anchor in an expression, a lookup whose term is a variable, a
//!   lookup plugin such as `pipe` that reads what it likes) takes **the whole repository**
//!   but what Ansible never reads ([`NOT_ANSIBLE_VISIBLE`]), with a note saying why.
//!
//! Not tracked (said in the notes where seen): roles and playbooks from collections (the
//! collections installed in the venv are keyed by the harness, see [`crate::key::RunInputs`]),
//! and files outside the repository named by an absolute path (a `lookup('file', '/etc/…')`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use boma_inventory::{CertTier, PLAYBOOKS_DIR, PRODUCTION_DIR};
use camino::Utf8PathBuf;
use saphyr::{LoadableYamlNode, Scalar, Yaml};

use crate::outside::{self, Anchor, Reference};
use crate::path::RepoPath;
use crate::tree::{RepoTree, TreeError};

/// Where roles live, relative to the repo root: `ansible.cfg`'s `roles_path` (a test keeps the
/// two in step).
pub const ROLES_DIR: &str = "roles";
/// Ansible's configuration, read from the repo root (the harness runs Ansible there).
pub const ANSIBLE_CFG: &str = "ansible.cfg";
/// The pinned Ansible (and so its modules and collections).
pub const REQUIREMENTS: &str = "requirements.txt";
/// What Ansible never reads from the repository, even in doubt: git's objects, build output,
/// the venv (keyed by what is installed in it) and the runs' own state (which changes with
/// every run).
pub const NOT_ANSIBLE_VISIBLE: [&str; 4] = [".git", "target", ".venv", "tests/integration/.run"];
/// Keys of `ansible.cfg` that name directories Ansible loads code from, whole (besides every
/// key ending in `_plugins`). Not `roles_path`: a role is looked up there by name.
const CFG_PATH_KEYS: [&str; 4] = [
    "library",
    "module_utils",
    "collections_path",
    "collections_paths",
];
/// Directories beside a playbook that Ansible reads for it: variables, the play-level search
/// paths of `template`/`copy`/`include_vars`, and adjacent plugins (every `*_plugins` directory
/// is read besides these).
const PLAYBOOK_DIR_SUPPORT: [&str; 17] = [
    "group_vars",
    "host_vars",
    "vars",
    "files",
    "templates",
    "tasks",
    "handlers",
    "library",
    "module_utils",
    "action_plugins",
    "filter_plugins",
    "lookup_plugins",
    "test_plugins",
    "callback_plugins",
    "vars_plugins",
    "doc_fragments",
    "collections",
];
/// Inventory directories read for the VM: the transient inventory links `group_vars`, and
/// `host_vars` is listed too so that adding one is never silently ignored.
const INVENTORY_VARS: [&str; 2] = ["group_vars", "host_vars"];
/// Play keys holding task lists.
const PLAY_TASK_LISTS: [&str; 4] = ["pre_tasks", "tasks", "post_tasks", "handlers"];
/// Task keys holding task lists.
const BLOCK_TASK_LISTS: [&str; 3] = ["block", "rescue", "always"];

/// One step of a profile, as far as its readable files go.
#[derive(Debug, Clone, Copy)]
pub struct StepFiles<'a> {
    /// A bare name means `playbooks/<name>`; a path with `/` is relative to the repo root.
    pub playbook: &'a str,
    /// The profile's `-e @file` variable files, in the order they are passed.
    pub extra_vars_files: &'a [Utf8PathBuf],
    pub cert_tier: CertTier,
}

/// Why a file is in a step's reach: the explanation an operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The step's playbook.
    Playbook,
    ImportedPlaybook {
        by: RepoPath,
    },
    /// Named by a path in a file (a lookup, `{{ role_path }}/…`, a `..`).
    ReachedFrom {
        by: RepoPath,
    },
    /// In a directory Ansible reads beside a playbook (`group_vars/`, `templates/`, …).
    BesidePlaybook {
        playbook: RepoPath,
    },
    /// Named by a play (`vars_files`, a play-level `include_tasks`/`include_vars`).
    NamedByPlay {
        by: RepoPath,
    },
    Role {
        name: String,
        by: RepoPath,
    },
    /// Included because something could not be resolved statically.
    InDoubt {
        because: String,
    },
    InventoryVars,
    ExtraVars,
    CertTier,
    AnsibleConfig,
    AnsibleVersion,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Playbook => write!(f, "the step's playbook"),
            Why::ImportedPlaybook { by } => write!(f, "playbook imported by {by}"),
            Why::ReachedFrom { by } => write!(f, "named by a path in {by}"),
            Why::BesidePlaybook { playbook } => {
                write!(f, "beside {playbook}, where Ansible reads vars and plugins")
            }
            Why::NamedByPlay { by } => write!(f, "named by a play in {by}"),
            Why::Role { name, by } => write!(f, "role {name}, named by {by}"),
            Why::InDoubt { because } => write!(f, "included in doubt: {because}"),
            Why::InventoryVars => write!(f, "inventory variables"),
            Why::ExtraVars => write!(f, "extra vars of the profile (-e @file)"),
            Why::CertTier => write!(f, "variables of the cert tier"),
            Why::AnsibleConfig => write!(f, "Ansible's configuration"),
            Why::AnsibleVersion => write!(f, "the pinned Ansible version"),
        }
    }
}

/// One file a step can read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub path: RepoPath,
    pub why: Why,
}

/// Everything one step can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Sorted by path; each file once, with the first reason found.
    pub files: Vec<Reached>,
    /// What could not be resolved and what was done about it, sorted.
    pub notes: Vec<String>,
    /// The `-e @file` files in the order Ansible applies them (later ones win): the profile's,
    /// then the cert tier's. Part of the key, because reordering them changes the result even
    /// though the set of files does not.
    pub vars_files: Vec<RepoPath>,
}

/// Why a step's reach could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    #[error(
        "playbook `{given}` is not a path inside the repo: use a file name in playbooks/ or a repo-relative path"
    )]
    BadPlaybook { given: String },
    #[error("the step's playbook {path} does not exist: fix the profile's `applies`")]
    NoPlaybook { path: RepoPath },
    #[error("extra vars file `{given}` is not a path inside the repo")]
    BadVarsFile { given: String },
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// The repo path of a step's playbook: a bare name is in `playbooks/`, a path with `/` is
/// relative to the repo root.
pub fn playbook_path(playbook: &str) -> Result<RepoPath, ReachError> {
    let bad = || ReachError::BadPlaybook {
        given: playbook.to_owned(),
    };
    if playbook.contains('/') {
        RepoPath::new(playbook).map_err(|_| bad())
    } else if playbook.is_empty() || playbook == "." || playbook == ".." {
        Err(bad())
    } else {
        Ok(RepoPath::new(PLAYBOOKS_DIR)
            .map_err(|_| bad())?
            .join(playbook))
    }
}

/// Every file `step` can read in `tree`, with the reason for each.
pub fn reach(tree: &dyn RepoTree, step: &StepFiles<'_>) -> Result<Reach, ReachError> {
    let playbook = playbook_path(step.playbook)?;
    let mut walker = Walker {
        tree,
        files: BTreeMap::new(),
        notes: BTreeSet::new(),
        playbooks: BTreeSet::new(),
        roles: BTreeSet::new(),
        task_files: BTreeSet::new(),
        everything: BTreeSet::new(),
        whole_repo: false,
    };
    if tree.read(&playbook)?.is_none() {
        return Err(ReachError::NoPlaybook { path: playbook });
    }
    walker.playbook(&playbook, Why::Playbook)?;

    let inventory = repo_path(PRODUCTION_DIR);
    for dir in INVENTORY_VARS {
        walker.dir(&inventory.join(dir), &Why::InventoryVars)?;
    }
    let mut vars_files = Vec::new();
    for file in step.extra_vars_files {
        let path = RepoPath::new(file.as_str()).map_err(|_| ReachError::BadVarsFile {
            given: file.to_string(),
        })?;
        walker.file(&path, Why::ExtraVars)?;
        vars_files.push(path);
    }
    let tier = repo_path(step.cert_tier.vars_file().as_str());
    walker.file(&tier, Why::CertTier)?;
    vars_files.push(tier);
    walker.file(&repo_path(ANSIBLE_CFG), Why::AnsibleConfig)?;
    walker.config_paths()?;
    walker.file(&repo_path(REQUIREMENTS), Why::AnsibleVersion)?;
    walker.follow_paths()?;

    Ok(Reach {
        files: walker
            .files
            .into_iter()
            .map(|(path, why)| Reached { path, why })
            .collect(),
        notes: walker.notes.into_iter().collect(),
        vars_files,
    })
}

/// A constant path of this module, known to be valid.
fn repo_path(path: &str) -> RepoPath {
    RepoPath::new(path).expect("constant repo paths are valid")
}

/// Where a role name is being resolved from.
#[derive(Clone, Copy)]
struct Context<'a> {
    /// The directory of the playbook being loaded (`None`: the repo root).
    playbook_dir: Option<&'a RepoPath>,
    /// The file that names the role.
    by: &'a RepoPath,
    /// For a `meta` dependency: the directory holding the depending role.
    role_parent: Option<&'a RepoPath>,
}

struct Walker<'t> {
    tree: &'t dyn RepoTree,
    files: BTreeMap<RepoPath, Why>,
    notes: BTreeSet<String>,
    playbooks: BTreeSet<RepoPath>,
    /// (role directory, playbook directory): a role's includes resolve against the playbook.
    roles: BTreeSet<(RepoPath, Option<RepoPath>)>,
    task_files: BTreeSet<RepoPath>,
    /// Playbook directories for which every role has been taken.
    everything: BTreeSet<Option<RepoPath>>,
    /// Every Ansible-visible file of the repository has been taken.
    whole_repo: bool,
}

impl Walker<'_> {
    fn add(&mut self, path: RepoPath, why: Why) {
        self.files.entry(path).or_insert(why);
    }

    /// A single file, if it exists (a missing one is absent from the manifest, which the key
    /// then reflects).
    fn file(&mut self, path: &RepoPath, why: Why) -> Result<bool, TreeError> {
        if self.tree.read(path)?.is_some() {
            self.add(path.clone(), why);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Every file under `dir`.
    fn dir(&mut self, dir: &RepoPath, why: &Why) -> Result<Vec<RepoPath>, TreeError> {
        let files = self.tree.files_under(dir)?;
        for file in &files {
            self.add(file.clone(), why.clone());
        }
        Ok(files)
    }

    /// Parses `path` as YAML; `None` (and everything taken, with a note) when it cannot be.
    fn parse(
        &mut self,
        path: &RepoPath,
        playbook_dir: Option<&RepoPath>,
    ) -> Result<Option<Vec<Yaml<'static>>>, TreeError> {
        let Some(bytes) = self.tree.read(path)? else {
            return Ok(Some(Vec::new()));
        };
        let parsed = String::from_utf8(bytes)
            .map_err(|_| "not utf-8".to_owned())
            .and_then(|text| {
                // Loaded from characters, so nothing borrows `text`.
                Yaml::<'static>::load_from_str(&text).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(docs) => Ok(Some(docs)),
            Err(problem) => {
                self.everything(playbook_dir, &format!("{path} does not parse ({problem})"))?;
                Ok(None)
            }
        }
    }

    fn playbook(&mut self, path: &RepoPath, why: Why) -> Result<(), TreeError> {
        if !self.playbooks.insert(path.clone()) {
            return Ok(());
        }
        if !self.file(path, why)? {
            self.notes.insert(format!(
                "{path} does not exist: Ansible will fail to import it"
            ));
            return Ok(());
        }
        let dir = path.parent();
        let dir = dir.as_ref();
        let plugins = self.tree.subdirs(dir)?;
        let plugins = plugins.iter().filter(|name| name.ends_with("_plugins"));
        for support in PLAYBOOK_DIR_SUPPORT
            .into_iter()
            .chain(plugins.map(String::as_str))
        {
            let support = RepoPath::resolve(dir, support).expect("a plain name");
            self.dir(
                &support,
                &Why::BesidePlaybook {
                    playbook: path.clone(),
                },
            )?;
        }
        let Some(docs) = self.parse(path, dir)? else {
            return Ok(());
        };
        for doc in &docs {
            for play in items(doc) {
                self.play(play, path, dir)?;
            }
        }
        Ok(())
    }

    fn play(
        &mut self,
        play: &Yaml<'_>,
        path: &RepoPath,
        dir: Option<&RepoPath>,
    ) -> Result<(), TreeError> {
        let from = Context {
            playbook_dir: dir,
            by: path,
            role_parent: None,
        };
        for (key, value) in entries(play) {
            match short_action(key) {
                "import_playbook" => {
                    let Some(target) = scalar(value) else {
                        continue;
                    };
                    if templated(&target) {
                        let because = format!("{path} imports a templated playbook `{target}`");
                        self.everything(dir, &because)?;
                    } else if is_collection_playbook(&target) {
                        self.notes.insert(format!(
                            "{path} imports `{target}` from a collection, pinned by requirements.txt"
                        ));
                    } else if let Some(imported) = RepoPath::resolve(dir, &target) {
                        self.playbook(&imported, Why::ImportedPlaybook { by: path.clone() })?;
                    } else {
                        self.notes.insert(format!(
                            "{path} imports `{target}`, outside the repo: not tracked"
                        ));
                    }
                }
                "roles" => {
                    for role in items(value) {
                        if let Some(name) = role_name(role, &["role", "name"]) {
                            self.role(&name, from)?;
                        }
                    }
                }
                "vars_files" => {
                    for entry in items(value) {
                        // An entry may be a list: the first file that exists is used.
                        let names: Vec<String> = match entry {
                            Yaml::Sequence(list) => list.iter().filter_map(scalar).collect(),
                            other => scalar(other).into_iter().collect(),
                        };
                        for name in names {
                            self.play_file(&name, &[""], path, dir)?;
                        }
                    }
                }
                key if PLAY_TASK_LISTS.contains(&key) => {
                    self.task_list(value, from, Some(path))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A file a play names by path (relative to the playbook directory, or under one of
    /// `subdirs` of it); a task file is walked for the roles it includes.
    fn play_file(
        &mut self,
        name: &str,
        subdirs: &[&str],
        by: &RepoPath,
        dir: Option<&RepoPath>,
    ) -> Result<Vec<RepoPath>, TreeError> {
        if templated(name) {
            let because = format!("{by} names a templated file `{name}`");
            self.everything(dir, &because)?;
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        for sub in subdirs {
            let base = if sub.is_empty() {
                dir.cloned()
            } else {
                RepoPath::resolve(dir, sub)
            };
            let Some(path) = RepoPath::resolve(base.as_ref(), name) else {
                continue;
            };
            let why = Why::NamedByPlay { by: by.clone() };
            if self.file(&path, why.clone())? {
                found.push(path);
            } else {
                // `include_vars: dir=…` names a directory.
                found.extend(self.dir(&path, &why)?);
            }
        }
        if found.is_empty() && RepoPath::resolve(dir, name).is_none() {
            self.notes.insert(format!(
                "{by} names `{name}`, outside the repo: not tracked"
            ));
        }
        Ok(found)
    }

    /// A list of tasks. `play_file` is the playbook (or play-level task file) whose
    /// `include_tasks`/`include_vars` name files relative to the playbook; `None` inside a
    /// role, whose files are all in its directory already.
    fn task_list(
        &mut self,
        node: &Yaml<'_>,
        from: Context<'_>,
        play_file: Option<&RepoPath>,
    ) -> Result<(), TreeError> {
        for task in items(node) {
            for (key, value) in entries(task) {
                let action = short_action(key);
                if BLOCK_TASK_LISTS.contains(&action) {
                    self.task_list(value, from, play_file)?;
                } else if action == "include_role" || action == "import_role" {
                    if let Some(name) = role_name(value, &["name"]) {
                        self.role(&name, from)?;
                    }
                } else if let Some(by) = play_file {
                    self.play_task_action(action, value, from, by)?;
                }
            }
        }
        Ok(())
    }

    /// Play-level includes of task and variable files.
    fn play_task_action(
        &mut self,
        action: &str,
        value: &Yaml<'_>,
        from: Context<'_>,
        by: &RepoPath,
    ) -> Result<(), TreeError> {
        let dir = from.playbook_dir;
        match action {
            "include_tasks" | "import_tasks" => {
                let Some(name) = file_argument(value, "file") else {
                    return Ok(());
                };
                // Relative to the playbook, or to the including file's directory.
                let including = by.parent();
                let mut found = self.play_file(&name, &["", "tasks"], by, dir)?;
                if including.as_ref() != dir {
                    found.extend(self.play_file(&name, &["", "tasks"], by, including.as_ref())?);
                }
                for file in found {
                    if self.task_files.insert(file.clone())
                        && let Some(docs) = self.parse(&file, dir)?
                    {
                        for doc in &docs {
                            self.task_list(doc, Context { by: &file, ..from }, Some(&file))?;
                        }
                    }
                }
            }
            "include_vars" => {
                for key in ["file", "dir"] {
                    if let Some(name) = file_argument(value, key) {
                        self.play_file(&name, &["", "vars"], by, dir)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn role(&mut self, name: &str, from: Context<'_>) -> Result<(), TreeError> {
        if templated(name) {
            let because = format!("{} names a templated role `{name}`", from.by);
            return self.everything(from.playbook_dir, &because);
        }
        // Ansible's search order (`RoleDefinition._load_role_path`); all that exist are taken.
        let roles = repo_path(ROLES_DIR);
        let mut candidates = vec![
            RepoPath::resolve(from.playbook_dir, "roles")
                .and_then(|d| RepoPath::resolve(Some(&d), name)),
            RepoPath::resolve(Some(&roles), name),
        ];
        if let Some(parent) = from.role_parent {
            candidates.push(RepoPath::resolve(Some(parent), name));
        }
        candidates.push(RepoPath::resolve(from.playbook_dir, name));
        candidates.push(RepoPath::resolve(None, name));
        let mut found = false;
        let mut seen = BTreeSet::new();
        for dir in candidates.into_iter().flatten() {
            // A candidate that is a playbook directory itself is no role.
            if !seen.insert(dir.clone()) || Some(&dir) == from.playbook_dir {
                continue;
            }
            if !self.tree.files_under(&dir)?.is_empty() {
                found = true;
                let why = Why::Role {
                    name: name.to_owned(),
                    by: from.by.clone(),
                };
                self.role_dir(&dir, why, from.playbook_dir)?;
            }
        }
        if !found {
            let origin = if name.split('.').count() >= 3 {
                "a collection's role, pinned by requirements.txt"
            } else {
                "Ansible will fail to find it"
            };
            self.notes.insert(format!(
                "role `{name}` named by {} is not in the repo: {origin}",
                from.by
            ));
        }
        Ok(())
    }

    fn role_dir(
        &mut self,
        dir: &RepoPath,
        why: Why,
        playbook_dir: Option<&RepoPath>,
    ) -> Result<(), TreeError> {
        if !self.roles.insert((dir.clone(), playbook_dir.cloned())) {
            return Ok(());
        }
        let files = self.dir(dir, &why)?;
        let tasks = dir.join("tasks");
        let handlers = dir.join("handlers");
        let meta_dir = dir.join("meta");
        let parent = dir.parent();
        for file in &files {
            let yaml = matches!(file.as_str().rsplit_once('.'), Some((_, "yml" | "yaml")));
            let is_task_file = yaml && (file.is_under(&tasks) || file.is_under(&handlers));
            let is_meta = file.parent().as_ref() == Some(&meta_dir)
                && matches!(file.file_name(), "main.yml" | "main.yaml" | "main");
            if !is_task_file && !is_meta {
                continue;
            }
            let Some(docs) = self.parse(file, playbook_dir)? else {
                continue;
            };
            let from = Context {
                playbook_dir,
                by: file,
                role_parent: None,
            };
            for doc in &docs {
                if is_task_file {
                    self.task_list(doc, from, None)?;
                } else {
                    for (key, deps) in entries(doc) {
                        if key != "dependencies" {
                            continue;
                        }
                        for dep in items(deps) {
                            if let Some(name) = role_name(dep, &["role", "name"]) {
                                let from = Context {
                                    role_parent: parent.as_ref(),
                                    ..from
                                };
                                self.role(&name, from)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The directories `ansible.cfg` names for roles, modules, module utils, collections and
    /// plugins, relative to the repo root; one outside the repository is noted.
    fn config_paths(&mut self) -> Result<(), TreeError> {
        let cfg = repo_path(ANSIBLE_CFG);
        let Some(bytes) = self.tree.read(&cfg)? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with(['#', ';', '[']) {
                continue;
            }
            let Some((key, value)) = line.split_once(['=', ':']) else {
                continue;
            };
            let key = key.trim();
            if !(CFG_PATH_KEYS.contains(&key) || key.ends_with("_plugins")) {
                continue;
            }
            for entry in value.split(':').map(str::trim).filter(|e| !e.is_empty()) {
                match RepoPath::resolve(None, entry) {
                    Some(dir) if !entry.starts_with('~') && !entry.contains('$') => {
                        self.dir(&dir, &Why::AnsibleConfig)?;
                    }
                    _ => {
                        self.notes.insert(format!(
                            "{ANSIBLE_CFG} sets {key} to `{entry}`, outside the repo: not keyed"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Follows what every reached file names outside the directories taken so far
    /// ([`crate::outside`]), until nothing new is reached.
    fn follow_paths(&mut self) -> Result<(), TreeError> {
        let mut scanned: BTreeSet<RepoPath> = BTreeSet::new();
        loop {
            let pending: Vec<RepoPath> = self
                .files
                .keys()
                .filter(|path| !scanned.contains(*path))
                .cloned()
                .collect();
            if pending.is_empty() || self.whole_repo {
                return Ok(());
            }
            for path in pending {
                scanned.insert(path.clone());
                let Some(bytes) = self.tree.read(&path)? else {
                    continue;
                };
                // A binary file names no path Ansible follows.
                let Ok(text) = String::from_utf8(bytes) else {
                    continue;
                };
                for reference in outside::references(&text) {
                    self.follow(&path, reference)?;
                }
            }
        }
    }

    /// The directories a relative path in `file` is searched from: its own directory; its
    /// role's directory and the role's `files/`, `templates/`, `tasks/`, `vars/`, `defaults/`;
    /// each playbook's directory and its `files/`, `templates/`, `vars/`.
    fn search_bases(&self, file: &RepoPath) -> Vec<Option<RepoPath>> {
        let mut bases = vec![file.parent()];
        for role in self.roles_of(file) {
            bases.push(Some(role.clone()));
            for sub in ["files", "templates", "tasks", "vars", "defaults"] {
                bases.push(Some(role.join(sub)));
            }
        }
        for dir in self.playbook_dirs() {
            for sub in ["", "files", "templates", "vars"] {
                bases.push(if sub.is_empty() {
                    dir.clone()
                } else {
                    RepoPath::resolve(dir.as_ref(), sub)
                });
            }
        }
        bases.dedup();
        bases
    }

    /// The role directories `file` belongs to.
    fn roles_of(&self, file: &RepoPath) -> Vec<RepoPath> {
        let dirs: BTreeSet<RepoPath> = self
            .roles
            .iter()
            .filter(|(role, _)| file.is_under(role))
            .map(|(role, _)| role.clone())
            .collect();
        dirs.into_iter().collect()
    }

    /// The directories of the playbooks the step loads (`None`: the repo root).
    fn playbook_dirs(&self) -> BTreeSet<Option<RepoPath>> {
        self.playbooks.iter().map(RepoPath::parent).collect()
    }

    /// Takes `relative` from each of `bases` where it names a file or a directory; whether
    /// any did.
    fn take_from(
        &mut self,
        bases: &[Option<RepoPath>],
        relative: &str,
        by: &RepoPath,
    ) -> Result<bool, TreeError> {
        let why = Why::ReachedFrom { by: by.clone() };
        let mut any = false;
        for base in bases {
            let target = match relative.trim_start_matches('/') {
                "" => base.clone(),
                tail => RepoPath::resolve(base.as_ref(), tail),
            };
            let Some(target) = target else {
                continue;
            };
            any |= self.file(&target, why.clone())? || !self.dir(&target, &why)?.is_empty();
        }
        Ok(any)
    }

    fn follow(&mut self, file: &RepoPath, reference: Reference) -> Result<(), TreeError> {
        match reference {
            Reference::Anchored { anchor, tail } => {
                let bases: Vec<Option<RepoPath>> = match anchor {
                    Anchor::RolePath => self.roles_of(file).into_iter().map(Some).collect(),
                    Anchor::PlaybookDir => self.playbook_dirs().into_iter().collect(),
                    Anchor::InventoryDir => vec![Some(repo_path(PRODUCTION_DIR))],
                };
                if bases.is_empty() {
                    // `role_path` outside a role: which role is meant is not known.
                    let because = format!("{file} uses `role_path` outside a role");
                    return self.whole_repo(&because);
                }
                self.take_from(&bases, &tail, file)?;
            }
            Reference::LookupPath { path } => {
                let bases = self.search_bases(file);
                let inside = bases
                    .iter()
                    .any(|base| RepoPath::resolve(base.as_ref(), &path).is_some());
                if inside {
                    self.take_from(&bases, &path, file)?;
                } else {
                    self.notes.insert(format!(
                        "{file} reads `{path}`, outside the repo: not keyed"
                    ));
                }
            }
            // A `..` may as well be a path on the guest (`cd ..` in a script): what it finds
            // is taken, what it does not is nobody's.
            Reference::Climbing { path } => {
                let bases = self.search_bases(file);
                self.take_from(&bases, &path, file)?;
            }
            Reference::Absolute { path } => {
                self.notes.insert(format!(
                    "{file} reads `{path}` on the controller, outside the repo: not keyed"
                ));
            }
            Reference::Doubt { because } => {
                return self.whole_repo(&format!("{file}: {because}"));
            }
        }
        Ok(())
    }

    /// Every file of the repository but [`NOT_ANSIBLE_VISIBLE`]: what a step may read when a
    /// path it names cannot be resolved.
    fn whole_repo(&mut self, because: &str) -> Result<(), TreeError> {
        self.notes.insert(format!(
            "{because}: took the whole repository but {}",
            NOT_ANSIBLE_VISIBLE.join(", ")
        ));
        if self.whole_repo {
            return Ok(());
        }
        self.whole_repo = true;
        let skip: Vec<RepoPath> = NOT_ANSIBLE_VISIBLE.iter().map(|p| repo_path(p)).collect();
        let why = Why::InDoubt {
            because: because.to_owned(),
        };
        for file in self.tree.files_except(&skip)? {
            self.add(file, why.clone());
        }
        Ok(())
    }

    /// Every role under `roles/` and `<playbook dir>/roles/`, and the whole playbook directory:
    /// what a step may read when something could not be resolved.
    fn everything(
        &mut self,
        playbook_dir: Option<&RepoPath>,
        because: &str,
    ) -> Result<(), TreeError> {
        let scope = match playbook_dir {
            Some(dir) => format!("every role and all of {dir}/"),
            None => "every role".to_owned(),
        };
        self.notes.insert(format!("{because}: took {scope}"));
        if !self.everything.insert(playbook_dir.cloned()) {
            return Ok(());
        }
        let why = Why::InDoubt {
            because: because.to_owned(),
        };
        if let Some(dir) = playbook_dir {
            // The repo root is never taken whole: it holds the harness and its build output.
            self.dir(dir, &why)?;
        }
        let mut role_dirs = BTreeSet::new();
        let local = playbook_dir.map(|d| d.join("roles"));
        for roles in [Some(repo_path(ROLES_DIR)), local].into_iter().flatten() {
            for file in self.tree.files_under(&roles)? {
                let inner = &file.as_str()[roles.as_str().len() + 1..];
                if let Some((name, _)) = inner.split_once('/') {
                    role_dirs.insert(roles.join(name));
                }
            }
        }
        for dir in role_dirs {
            self.role_dir(&dir, why.clone(), playbook_dir)?;
        }
        Ok(())
    }
}

/// `ansible.builtin.x` and `ansible.legacy.x` are `x`.
fn short_action(key: &str) -> &str {
    key.strip_prefix("ansible.builtin.")
        .or_else(|| key.strip_prefix("ansible.legacy."))
        .unwrap_or(key)
}

/// `namespace.collection.playbook`: no directory, no YAML suffix, at least two dots.
fn is_collection_playbook(target: &str) -> bool {
    !target.contains('/')
        && !target.ends_with(".yml")
        && !target.ends_with(".yaml")
        && target.split('.').count() >= 3
}

fn templated(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// A scalar as text (a role may be named `2048`).
fn scalar(node: &Yaml<'_>) -> Option<String> {
    match node {
        Yaml::Value(Scalar::String(s)) => Some(s.to_string()),
        Yaml::Value(Scalar::Integer(i)) => Some(i.to_string()),
        Yaml::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        Yaml::Tagged(_, inner) => scalar(inner),
        _ => None,
    }
}

/// A role reference: a bare string, a mapping with one of `keys`, or the free-form
/// `name=x tasks_from=y` of a task argument.
fn role_name(node: &Yaml<'_>, keys: &[&str]) -> Option<String> {
    if let Some(text) = scalar(node) {
        // Free-form task arguments; a bare role entry is the name itself.
        return Some(
            text.split_whitespace()
                .find_map(|word| word.strip_prefix("name="))
                .map(str::to_owned)
                .unwrap_or(text),
        );
    }
    entries(node)
        .find(|(key, _)| keys.contains(key))
        .and_then(|(_, value)| scalar(value))
}

/// The file argument of `include_tasks` (`include_tasks: x.yml`, `{file: x.yml}`) or of
/// `include_vars` (`file`/`dir`).
fn file_argument(node: &Yaml<'_>, key: &str) -> Option<String> {
    if let Some(text) = scalar(node) {
        // The free-form argument is the file; `include_vars` has no free-form `dir`.
        return (key == "file").then(|| {
            text.split_whitespace()
                .find_map(|word| word.strip_prefix("file="))
                .map(str::to_owned)
                .unwrap_or(text)
        });
    }
    entries(node)
        .find(|(k, _)| *k == key)
        .and_then(|(_, value)| scalar(value))
}

fn items<'a, 'i>(node: &'a Yaml<'i>) -> &'a [Yaml<'i>] {
    match node {
        Yaml::Sequence(items) => items,
        Yaml::Tagged(_, inner) => items(inner),
        _ => &[],
    }
}

fn entries<'a, 'i>(node: &'a Yaml<'i>) -> impl Iterator<Item = (&'a str, &'a Yaml<'i>)> {
    let mut node = node;
    while let Yaml::Tagged(_, inner) = node {
        node = inner;
    }
    let map = match node {
        Yaml::Mapping(map) => Some(map),
        _ => None,
    };
    map.into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.as_str()?, value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::MemoryTree;

    /// Files every step reads, whatever its playbook.
    const ALWAYS: [(&str, &str); 6] = [
        ("inventories/production/group_vars/all/vars.yml", "a: 1\n"),
        ("inventories/production/host_vars/h/vars.yml", "b: 1\n"),
        ("overrides/h.yml", "c: 1\n"),
        ("certs/internal.yml", "d: 1\n"),
        ("ansible.cfg", "[defaults]\nroles_path = roles\n"),
        ("requirements.txt", "ansible-core==2.18.12\n"),
    ];

    fn tree(files: &[(&str, &str)]) -> MemoryTree {
        MemoryTree::new(ALWAYS.iter().chain(files).copied())
    }

    fn reach_of(tree: &MemoryTree, playbook: &str) -> Reach {
        let extra = [Utf8PathBuf::from("overrides/h.yml")];
        reach(
            tree,
            &StepFiles {
                playbook,
                extra_vars_files: &extra,
                cert_tier: CertTier::Internal,
            },
        )
        .unwrap()
    }

    fn paths(reach: &Reach) -> Vec<&str> {
        reach.files.iter().map(|r| r.path.as_str()).collect()
    }

    /// The role directories (`…/roles/<name>`) a reach includes files of.
    fn roles(reach: &Reach) -> Vec<String> {
        let mut roles: Vec<String> = reach
            .files
            .iter()
            .filter_map(|r| {
                let (before, after) = r.path.as_str().split_once("roles/")?;
                let name = after.split('/').next()?;
                Some(format!("{before}roles/{name}"))
            })
            .collect();
        roles.dedup();
        roles
    }

    fn role(name: &str) -> [(String, String); 2] {
        [
            (
                format!("roles/{name}/tasks/main.yml"),
                "- ansible.builtin.debug: {}\n".to_owned(),
            ),
            (
                format!("roles/{name}/templates/{name}.j2"),
                "{{ x }}\n".to_owned(),
            ),
        ]
    }

    fn with_roles(names: &[&str], files: &[(&str, &str)]) -> MemoryTree {
        let mut tree = tree(files);
        for name in names {
            for (path, text) in role(name) {
                tree.set(&path, &text);
            }
        }
        tree
    }

    #[test]
    fn play_roles_in_all_three_spellings_and_nothing_else() {
        let tree = with_roles(
            &["a", "b", "c", "unnamed"],
            &[(
                "playbooks/site.yml",
                "- hosts: all\n  roles:\n    - a\n    - role: b\n      tags: [b]\n    - name: c\n",
            )],
        );
        let reach = reach_of(&tree, "site.yml");
        assert_eq!(roles(&reach), ["roles/a", "roles/b", "roles/c"]);
        assert!(reach.notes.is_empty(), "{:?}", reach.notes);
    }

    #[test]
    fn always_read_files_are_in_every_reach_with_their_reasons() {
        let tree = tree(&[("playbooks/p.yml", "- hosts: all\n  tasks: []\n")]);
        let reach = reach_of(&tree, "p.yml");
        insta::assert_snapshot!(
            "reach_of_a_playbook_without_roles",
            reach
                .files
                .iter()
                .map(|r| format!("{}  # {}", r.path, r.why))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(
            reach
                .vars_files
                .iter()
                .map(RepoPath::as_str)
                .collect::<Vec<_>>(),
            ["overrides/h.yml", "certs/internal.yml"]
        );
    }

    #[test]
    fn import_role_and_include_role_in_plays_blocks_and_role_tasks() {
        let tree = with_roles(
            &["a", "b", "c", "d", "unnamed"],
            &[
                (
                    "playbooks/site.yml",
                    concat!(
                        "- hosts: all\n",
                        "  pre_tasks:\n",
                        "    - ansible.builtin.import_role:\n        name: a\n",
                        "  tasks:\n",
                        "    - block:\n",
                        "        - include_role: name=b tasks_from=x\n",
                        "      rescue:\n",
                        "        - ansible.builtin.include_role: {name: c}\n",
                    ),
                ),
                // A role's own tasks include another role.
                (
                    "roles/c/tasks/extra.yml",
                    "- ansible.legacy.include_role:\n    name: d\n",
                ),
            ],
        );
        let reach = reach_of(&tree, "site.yml");
        assert_eq!(roles(&reach), ["roles/a", "roles/b", "roles/c", "roles/d"]);
        let d = reach
            .files
            .iter()
            .find(|r| r.path.as_str() == "roles/d/tasks/main.yml")
            .unwrap();
        assert_eq!(
            d.why.to_string(),
            "role d, named by roles/c/tasks/extra.yml"
        );
    }

    #[test]
    fn meta_dependencies_are_followed_transitively() {
        let tree = with_roles(
            &["a", "b", "c", "d", "unnamed"],
            &[
                ("playbooks/site.yml", "- hosts: all\n  roles: [a]\n"),
                (
                    "roles/a/meta/main.yml",
                    "galaxy_info: {}\ndependencies:\n  - b\n  - role: c\n",
                ),
                ("roles/c/meta/main.yml", "dependencies: [{name: d}]\n"),
            ],
        );
        let reach = reach_of(&tree, "site.yml");
        assert_eq!(roles(&reach), ["roles/a", "roles/b", "roles/c", "roles/d"]);
    }

    #[test]
    fn a_meta_dependency_is_also_found_beside_its_role() {
        // `vendor/x` depends on its sibling `vendor/y`: Ansible finds it through the depending
        // role's parent directory.
        let tree = tree(&[
            (
                "playbooks/site.yml",
                "- hosts: all\n  roles: [../vendor/x]\n",
            ),
            ("vendor/x/tasks/main.yml", "[]\n"),
            ("vendor/x/meta/main.yml", "dependencies: [y]\n"),
            ("vendor/y/tasks/main.yml", "[]\n"),
        ]);
        let reach = reach_of(&tree, "site.yml");
        assert!(paths(&reach).contains(&"vendor/x/meta/main.yml"));
        assert!(
            paths(&reach).contains(&"vendor/y/tasks/main.yml"),
            "{:?}",
            paths(&reach)
        );
    }

    #[test]
    fn a_templated_role_name_takes_every_role_and_says_so() {
        let tree = with_roles(
            &["a", "b", "c"],
            &[(
                "playbooks/site.yml",
                "- hosts: all\n  tasks:\n    - include_role:\n        name: \"{{ which }}\"\n",
            )],
        );
        let reach = reach_of(&tree, "site.yml");
        assert_eq!(roles(&reach), ["roles/a", "roles/b", "roles/c"]);
        assert_eq!(
            reach.notes,
            [
                "playbooks/site.yml names a templated role `{{ which }}`: took every role and all of playbooks/"
            ]
        );
    }

    #[test]
    fn an_unparsable_role_file_takes_every_role() {
        let tree = with_roles(
            &["a", "b"],
            &[
                ("playbooks/site.yml", "- hosts: all\n  roles: [a]\n"),
                ("roles/a/tasks/broken.yml", "- name: [unclosed\n"),
            ],
        );
        let reach = reach_of(&tree, "site.yml");
        assert_eq!(roles(&reach), ["roles/a", "roles/b"]);
        assert_eq!(reach.notes.len(), 1);
        assert!(
            reach.notes[0].starts_with("roles/a/tasks/broken.yml does not parse"),
            "{:?}",
            reach.notes
        );
    }

    #[test]
    fn roles_beside_the_playbook_are_found_and_both_candidates_kept() {
        let tree = with_roles(
            &["shared"],
            &[
                (
                    "playbooks/site.yml",
                    "- hosts: all\n  roles: [local, shared]\n",
                ),
                ("playbooks/roles/local/tasks/main.yml", "[]\n"),
                // Ansible would take this one for `shared` (playbook dir first); the key
                // includes both, as which wins can depend on the loader's base directory.
                ("playbooks/roles/shared/tasks/main.yml", "[]\n"),
            ],
        );
        let reach = reach_of(&tree, "site.yml");
        assert_eq!(
            roles(&reach),
            [
                "playbooks/roles/local",
                "playbooks/roles/shared",
                "roles/shared"
            ]
        );
    }

    #[test]
    fn imported_playbooks_and_play_level_includes_are_followed() {
        let tree = with_roles(
            &["a", "b", "c", "unnamed"],
            &[
                (
                    "playbooks/site.yml",
                    "- ansible.builtin.import_playbook: other.yml\n",
                ),
                (
                    "playbooks/other.yml",
                    concat!(
                        "- hosts: all\n",
                        "  vars_files: [vars/common.yml, [missing.yml, ../tests/v.yml]]\n",
                        "  roles: [a]\n",
                        "  tasks:\n",
                        "    - include_tasks: {file: steps.yml}\n",
                    ),
                ),
                ("playbooks/vars/common.yml", "x: 1\n"),
                ("tests/v.yml", "y: 1\n"),
                (
                    "playbooks/steps.yml",
                    "- import_role: {name: b}\n- import_tasks: more.yml\n",
                ),
                ("playbooks/tasks/more.yml", "- include_role: {name: c}\n"),
            ],
        );
        let reach = reach_of(&tree, "site.yml");
        assert_eq!(roles(&reach), ["roles/a", "roles/b", "roles/c"]);
        for file in [
            "playbooks/other.yml",
            "playbooks/vars/common.yml",
            "tests/v.yml",
            "playbooks/steps.yml",
        ] {
            assert!(
                paths(&reach).contains(&file),
                "{file} missing: {:?}",
                paths(&reach)
            );
        }
    }

    #[test]
    fn a_collection_playbook_is_noted_not_guessed() {
        let tree = tree(&[(
            "playbooks/site.yml",
            "- import_playbook: my_ns.tools.setup\n",
        )]);
        let reach = reach_of(&tree, "site.yml");
        assert_eq!(
            reach.notes,
            [
                "playbooks/site.yml imports `my_ns.tools.setup` from a collection, pinned by requirements.txt"
            ]
        );
    }

    #[test]
    fn a_collection_role_is_noted_not_guessed() {
        let tree = with_roles(
            &["a"],
            &[(
                "playbooks/site.yml",
                "- hosts: all\n  roles: [community.general.thing]\n",
            )],
        );
        let reach = reach_of(&tree, "site.yml");
        assert!(roles(&reach).is_empty());
        assert_eq!(
            reach.notes,
            [
                "role `community.general.thing` named by playbooks/site.yml is not in the repo: a collection's role, pinned by requirements.txt"
            ]
        );
    }

    #[test]
    fn a_missing_playbook_is_an_error_and_a_path_with_a_slash_is_repo_relative() {
        let tree = tree(&[("tests/integration/p.yml", "[]\n")]);
        let extra: [Utf8PathBuf; 0] = [];
        let step = |playbook| StepFiles {
            playbook,
            extra_vars_files: &extra,
            cert_tier: CertTier::Internal,
        };
        assert!(matches!(
            reach(&tree, &step("nope.yml")),
            Err(ReachError::NoPlaybook { .. })
        ));
        let found = reach(&tree, &step("tests/integration/p.yml")).unwrap();
        assert!(paths(&found).contains(&"tests/integration/p.yml"));
        assert!(matches!(
            reach(&tree, &step("../x.yml")),
            Err(ReachError::BadPlaybook { .. })
        ));
    }
}
