//! Where Ansible reads tags, walked over a parsed document: plays, role entries, tasks, blocks
//! (and their `rescue`/`always`), includes' `apply:`. Nothing else is a tag, even when a key is
//! called `tags` (a module option, a variable).

use boma_yaml::untag;
use saphyr::{MarkedYaml, Scalar, YamlData};

/// Tags found in one file, with the 1-based line of each value.
#[derive(Default)]
pub(crate) struct Found {
    pub tags: Vec<(String, usize)>,
    /// `tags:` values Ansible would reject.
    pub bad: Vec<(&'static str, usize)>,
}

/// The keys of a play that hold task lists.
const PLAY_TASK_LISTS: [&str; 4] = ["pre_tasks", "tasks", "post_tasks", "handlers"];
/// The keys of a block that hold task lists.
const BLOCK_TASK_LISTS: [&str; 3] = ["block", "rescue", "always"];
/// Actions whose arguments may carry `apply: {tags: …}`. Ansible allows `apply` only on the
/// includes; on imports it is a syntax error (which `--syntax-check` reports), but a tag
/// written there is still checked here.
const INCLUDES: [&str; 4] = [
    "include_role",
    "include_tasks",
    "import_role",
    "import_tasks",
];

/// A playbook: a list of plays (an `import_playbook` entry is a play with only `tags`).
pub(crate) fn playbook(doc: &MarkedYaml<'_>, found: &mut Found) {
    for play in items(doc) {
        for (key, value) in entries(play) {
            match key {
                "tags" => tags(value, found),
                "roles" => {
                    // `- role: x` with `tags:`; a bare `- x` carries no tags.
                    for role in items(value) {
                        for (key, value) in entries(role) {
                            if key == "tags" {
                                tags(value, found);
                            }
                        }
                    }
                }
                key if PLAY_TASK_LISTS.contains(&key) => task_list(value, found),
                _ => {}
            }
        }
    }
}

/// A list of tasks or blocks (a role's tasks or handlers file, a play's `tasks`, a `block`).
pub(crate) fn task_list(node: &MarkedYaml<'_>, found: &mut Found) {
    for task in items(node) {
        for (key, value) in entries(task) {
            match key {
                "tags" => tags(value, found),
                key if BLOCK_TASK_LISTS.contains(&key) => task_list(value, found),
                key if is_include(key) => {
                    for (key, apply) in entries(value) {
                        if key == "apply" {
                            for (key, value) in entries(apply) {
                                if key == "tags" {
                                    tags(value, found);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn is_include(action: &str) -> bool {
    let short = action
        .strip_prefix("ansible.builtin.")
        .or_else(|| action.strip_prefix("ansible.legacy."))
        .unwrap_or(action);
    INCLUDES.contains(&short)
}

/// A `tags:` value, read as Ansible's `Taggable._load_tags` does: a list is taken as it is
/// (its items are not split), a string is split on commas and each part stripped.
fn tags(node: &MarkedYaml<'_>, found: &mut Found) {
    let node = untag(node);
    let line = node.span.start.line();
    match &node.data {
        // `tags:` with no value: no tags.
        YamlData::Value(Scalar::Null) => {}
        YamlData::Value(Scalar::String(s)) => {
            for part in s.split(',') {
                found.tags.push((part.trim().to_owned(), line));
            }
        }
        YamlData::Sequence(items) => {
            for item in items {
                let item = untag(item);
                let line = item.span.start.line();
                match &item.data {
                    YamlData::Value(Scalar::String(s)) => found.tags.push((s.to_string(), line)),
                    // Ansible accepts integers in the list (`listof=(str, int)`).
                    YamlData::Value(Scalar::Integer(i)) => found.tags.push((i.to_string(), line)),
                    _ => found.bad.push(("a tag must be a string", line)),
                }
            }
        }
        _ => found
            .bad
            .push(("tags must be a list or a comma-separated string", line)),
    }
}

/// A sequence's items; nothing for anything else (Ansible rejects the file, and
/// `--syntax-check` says why).
fn items<'a, 'input>(node: &'a MarkedYaml<'input>) -> &'a [MarkedYaml<'input>] {
    match &untag(node).data {
        YamlData::Sequence(items) => items,
        _ => &[],
    }
}

/// A mapping's entries with string keys; nothing for anything else.
fn entries<'a, 'input>(
    node: &'a MarkedYaml<'input>,
) -> impl Iterator<Item = (&'a str, &'a MarkedYaml<'input>)> {
    let map = match &untag(node).data {
        YamlData::Mapping(map) => Some(map),
        _ => None,
    };
    map.into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((untag(key).data.as_str()?, value)))
}
