//! check-tags: every Ansible tag in boma's playbooks and role task/handler files is a role name
//! or a concern listed in the vocabulary `tests/tags.yml`, so that `--tags firewall` selects
//! what its name says and a typo (`firewal`) cannot silently drop a task from a tagged run.
//!
//! [`check`] is pure: file texts in, findings out. [`check_repo`] reads a repository and calls
//! it.
//!
//! Files are parsed with `saphyr` (a maintained YAML 1.2 parser whose `MarkedYaml` keeps each
//! node's position), not matched with regexes: a tag may be written as a block list, a flow
//! list or a comma-separated string, on a play, a role entry, a task, a block nested in
//! `rescue`/`always` or an include's `apply:`, and a module option that happens to be called
//! `tags` (a cloud module's resource tags) is not an Ansible tag. Only the document's structure
//! tells these apart; the parser's positions still give a precise `path:line`.

use std::collections::BTreeSet;
use std::fmt;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

mod repo;
mod walk;

pub use repo::{VOCABULARY, check_repo};

/// What to do about an unknown tag.
pub const FIX: &str = "add it to tests/tags.yml if it names a concern, or use a role name";

/// Ansible's own tags with a meaning of their own on a task (`always` runs whatever `--tags`
/// says, `never` only when named): they are not concerns, so they need no vocabulary entry.
/// `all`, `tagged` and `untagged` only make sense on the command line and are not listed.
pub const SPECIAL_TAGS: [&str; 2] = ["always", "never"];

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file, relative to the repository root.
    pub path: String,
    /// 1-based line of the offending value.
    pub line: usize,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A tag that is neither a role name, nor in the vocabulary, nor one of [`SPECIAL_TAGS`].
    UnknownTag(String),
    /// A `tags:` value Ansible rejects (a mapping, a number instead of a list, a nested list…).
    BadTags(&'static str),
    /// The file is not valid YAML; its tags could not be checked.
    MalformedYaml(String),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.path, self.line)?;
        match &self.problem {
            Problem::UnknownTag(tag) => write!(f, "unknown tag '{tag}': {FIX}"),
            Problem::BadTags(message) => f.write_str(message),
            Problem::MalformedYaml(message) => write!(f, "malformed yaml: {message}"),
        }
    }
}

/// What a check looked at and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Files checked.
    pub files: usize,
    /// Tag values checked (each element of a list, each part of a comma string).
    pub tags: usize,
    /// Concerns in the vocabulary.
    pub vocabulary: usize,
    /// Role names (accepted as tags).
    pub roles: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    /// One line: what was checked and the verdict.
    pub fn summary(&self) -> String {
        let checked = format!(
            "{} tags in {} files against {} role names and {} concerns in {VOCABULARY}",
            self.tags, self.files, self.roles, self.vocabulary
        );
        match self.findings.len() {
            0 => format!("check-tags: ok, {checked}"),
            n => format!("check-tags: {n} finding(s), {checked}"),
        }
    }
}

/// Why the check could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum TagsError {
    #[error("{path}:{line}: malformed vocabulary: {message}")]
    Vocabulary {
        path: String,
        line: usize,
        message: String,
    },
    #[error("cannot read {path}")]
    Read {
        path: camino::Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Every problem in `files` (path relative to the repo root, text). A path under `playbooks/`
/// is read as a playbook (a list of plays), any other as a task list (a role's `tasks/` or
/// `handlers/` file). Findings come in file order, then line order.
pub fn check(files: &[(&str, &str)], roles: &[String], vocabulary: &[String]) -> Vec<Finding> {
    scan(files, roles, vocabulary).findings
}

pub(crate) fn scan(files: &[(&str, &str)], roles: &[String], vocabulary: &[String]) -> Report {
    let known: BTreeSet<&str> = roles
        .iter()
        .chain(vocabulary)
        .map(String::as_str)
        .chain(SPECIAL_TAGS)
        .collect();
    let mut report = Report {
        files: files.len(),
        tags: 0,
        vocabulary: vocabulary.len(),
        roles: roles.len(),
        findings: Vec::new(),
    };
    for &(path, text) in files {
        let finding = |line, problem| Finding {
            path: path.to_owned(),
            line,
            problem,
        };
        let docs = match MarkedYaml::load_from_str(text) {
            Ok(docs) => docs,
            Err(e) => {
                let message = e.info().to_owned();
                report
                    .findings
                    .push(finding(e.marker().line(), Problem::MalformedYaml(message)));
                continue;
            }
        };
        let mut found = walk::Found::default();
        for doc in &docs {
            if path.starts_with("playbooks/") {
                walk::playbook(doc, &mut found);
            } else {
                walk::task_list(doc, &mut found);
            }
        }
        report.tags += found.tags.len();
        let mut findings: Vec<Finding> = found
            .tags
            .into_iter()
            .filter(|(tag, _)| !known.contains(tag.as_str()))
            .map(|(tag, line)| finding(line, Problem::UnknownTag(tag)))
            .chain(
                found
                    .bad
                    .into_iter()
                    .map(|(message, line)| finding(line, Problem::BadTags(message))),
            )
            .collect();
        // Stable: two findings on one line keep their order in the document.
        findings.sort_by_key(|f| f.line);
        report.findings.extend(findings);
    }
    report
}

/// The vocabulary in `text` (the content of [`VOCABULARY`]; `path` names it in errors): a YAML
/// list of tag names. An empty file is an empty vocabulary.
pub fn parse_vocabulary(path: &str, text: &str) -> Result<Vec<String>, TagsError> {
    let error = |line, message: &str| TagsError::Vocabulary {
        path: path.to_owned(),
        line,
        message: message.to_owned(),
    };
    let docs = MarkedYaml::load_from_str(text).map_err(|e| error(e.marker().line(), e.info()))?;
    let doc = match docs.as_slice() {
        [] => return Ok(Vec::new()),
        [doc] => boma_yaml::untag(doc),
        [_, second, ..] => {
            return Err(error(
                second.span.start.line(),
                "expected one yaml document, found more",
            ));
        }
    };
    let items = match &doc.data {
        YamlData::Value(Scalar::Null) => return Ok(Vec::new()),
        YamlData::Sequence(items) => items,
        _ => {
            return Err(error(doc.span.start.line(), "expected a list of tag names"));
        }
    };
    items
        .iter()
        .map(|item| match &boma_yaml::untag(item).data {
            YamlData::Value(Scalar::String(s)) if !s.trim().is_empty() => Ok(s.to_string()),
            _ => Err(error(
                item.span.start.line(),
                "a tag name must be a non-empty string",
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASKS: &str = "roles/web/tasks/main.yml";
    const PLAYBOOK: &str = "playbooks/site.yml";

    /// The findings for one file, as printed, against role `web` and a small vocabulary.
    fn findings(path: &str, text: &str) -> Vec<String> {
        let roles = ["web".to_owned()];
        let vocabulary = ["packages".to_owned(), "config".to_owned()];
        check(&[(path, text)], &roles, &vocabulary)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn unknown(path: &str, line: usize, tag: &str) -> String {
        format!("{path}:{line}: unknown tag '{tag}': {FIX}")
    }

    #[test]
    fn message_names_path_line_tag_and_fix() {
        let text = "- name: Install\n  ansible.builtin.apt:\n    name: x\n  tags: [pakages]\n";
        assert_eq!(
            findings(TASKS, text),
            [
                "roles/web/tasks/main.yml:4: unknown tag 'pakages': add it to tests/tags.yml if it \
              names a concern, or use a role name"
            ]
        );
    }

    #[test]
    fn block_list_reports_each_item_on_its_own_line() {
        let text = "- name: A\n  ansible.builtin.debug:\n  tags:\n    - packages\n    - nope\n    - config\n    - nada\n";
        assert_eq!(
            findings(TASKS, text),
            [unknown(TASKS, 5, "nope"), unknown(TASKS, 7, "nada")]
        );
    }

    #[test]
    fn flow_list() {
        let text = "- name: A\n  ansible.builtin.debug:\n  tags: [packages, nope, config]\n";
        assert_eq!(findings(TASKS, text), [unknown(TASKS, 3, "nope")]);
    }

    #[test]
    fn plain_string() {
        let ok = "- name: A\n  ansible.builtin.debug:\n  tags: config\n";
        assert_eq!(findings(TASKS, ok), Vec::<String>::new());
        let bad = "- name: A\n  ansible.builtin.debug:\n  tags: nope\n";
        assert_eq!(findings(TASKS, bad), [unknown(TASKS, 3, "nope")]);
    }

    #[test]
    fn comma_string_is_split_and_stripped_as_ansible_does() {
        let text = "- name: A\n  ansible.builtin.debug:\n  tags: \"config, nope,packages\"\n";
        assert_eq!(findings(TASKS, text), [unknown(TASKS, 3, "nope")]);
        let plain = "- name: A\n  ansible.builtin.debug:\n  tags: config,packages\n";
        assert_eq!(findings(TASKS, plain), Vec::<String>::new());
    }

    #[test]
    fn list_items_are_not_split() {
        // Ansible splits only a string value; `["a,b"]` is the one tag `a,b`.
        let text = "- name: A\n  ansible.builtin.debug:\n  tags: [\"config,packages\"]\n";
        assert_eq!(
            findings(TASKS, text),
            [unknown(TASKS, 3, "config,packages")]
        );
    }

    #[test]
    fn role_names_and_ansible_special_tags_are_accepted() {
        let text = "- name: A\n  ansible.builtin.debug:\n  tags: [web, always, never]\n";
        assert_eq!(findings(TASKS, text), Vec::<String>::new());
        // Only existing roles count.
        let other = "- name: A\n  ansible.builtin.debug:\n  tags: [db]\n";
        assert_eq!(findings(TASKS, other), [unknown(TASKS, 3, "db")]);
    }

    #[test]
    fn plays_role_entries_and_play_task_lists() {
        let text = "\
- name: Play
  hosts: all
  tags: [p1]
  roles:
    - plain_role
    - role: web
      tags: [web, r1]
    - name: web
      tags: r2
  pre_tasks:
    - name: Pre
      ansible.builtin.debug:
      tags: [t1]
  tasks:
    - name: Task
      ansible.builtin.debug:
      tags: [t2]
  post_tasks:
    - name: Post
      ansible.builtin.debug:
      tags: [t3]
  handlers:
    - name: Handler
      ansible.builtin.debug:
      tags: [t4]
- name: Imported
  ansible.builtin.import_playbook: other.yml
  tags: [p2]
";
        let expected: Vec<String> = [
            (3, "p1"),
            (7, "r1"),
            (9, "r2"),
            (13, "t1"),
            (17, "t2"),
            (21, "t3"),
            (25, "t4"),
            (28, "p2"),
        ]
        .iter()
        .map(|&(line, tag)| unknown(PLAYBOOK, line, tag))
        .collect();
        assert_eq!(findings(PLAYBOOK, text), expected);
    }

    #[test]
    fn blocks_nested_in_rescue_and_always() {
        let text = "\
- name: Outer
  tags: [b1]
  block:
    - name: In block
      ansible.builtin.debug:
      tags: [b2]
  rescue:
    - name: Rescue block
      tags: b3
      block:
        - name: Deep
          ansible.builtin.debug:
          tags: [b4]
      always:
        - name: Deeper
          ansible.builtin.debug:
          tags: [b5]
  always:
    - name: Always
      ansible.builtin.debug:
      tags: [b6]
";
        let expected: Vec<String> = [(2, "b1"), (6, "b2"), (9, "b3"), (13, "b4"), (17, "b5")]
            .iter()
            .chain(&[(21, "b6")])
            .map(|&(line, tag)| unknown(TASKS, line, tag))
            .collect();
        assert_eq!(findings(TASKS, text), expected);
    }

    #[test]
    fn include_apply_tags() {
        let text = "\
- name: Include a role
  ansible.builtin.include_role:
    name: web
    apply:
      tags: [a1]
  tags: [config]
- name: Include tasks (short name)
  include_tasks:
    file: x.yml
    apply:
      tags: a2
";
        assert_eq!(
            findings(TASKS, text),
            [unknown(TASKS, 5, "a1"), unknown(TASKS, 11, "a2")]
        );
    }

    #[test]
    fn keys_named_tags_elsewhere_are_not_ansible_tags() {
        // A module option and a variable called `tags` are data, not Ansible tags.
        let text = "\
- name: Cloud resource
  amazon.aws.ec2_instance:
    name: x
    tags:
      Name: x
  vars:
    tags: [anything]
";
        assert_eq!(findings(TASKS, text), Vec::<String>::new());
    }

    #[test]
    fn integers_count_as_tags_and_other_values_are_rejected() {
        let text = "\
- name: A
  ansible.builtin.debug:
  tags: [7]
- name: B
  ansible.builtin.debug:
  tags: {config: true}
- name: C
  ansible.builtin.debug:
  tags:
    - [config]
- name: D
  ansible.builtin.debug:
  tags:
";
        assert_eq!(
            findings(TASKS, text),
            [
                unknown(TASKS, 3, "7"),
                format!("{TASKS}:6: tags must be a list or a comma-separated string"),
                format!("{TASKS}:10: a tag must be a string"),
            ]
        );
    }

    #[test]
    fn malformed_yaml_is_a_finding_and_other_files_are_still_checked() {
        let roles = ["web".to_owned()];
        let files = [
            ("roles/web/tasks/broken.yml", "- name: A\n  tags: [config\n"),
            (
                TASKS,
                "- name: B\n  ansible.builtin.debug:\n  tags: [nope]\n",
            ),
        ];
        let found: Vec<String> = check(&files, &roles, &[])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("roles/web/tasks/broken.yml:3: malformed yaml: "),
            "{found:?}"
        );
        assert_eq!(found[1], unknown(TASKS, 3, "nope"));
    }

    #[test]
    fn report_counts_files_and_tag_values() {
        let roles = ["web".to_owned()];
        let files = [
            (
                TASKS,
                "- name: A\n  ansible.builtin.debug:\n  tags: \"web,web\"\n",
            ),
            (
                PLAYBOOK,
                "- hosts: all\n  roles:\n    - role: web\n      tags: [web]\n",
            ),
        ];
        let report = scan(&files, &roles, &[]);
        assert_eq!((report.files, report.tags), (2, 3));
        assert_eq!(
            report.summary(),
            "check-tags: ok, 3 tags in 2 files against 1 role names and 0 concerns in tests/tags.yml"
        );
    }

    #[test]
    fn vocabulary_is_a_list_of_names() {
        let text = "---\n# concerns\n- packages  # apt\n- config\n";
        assert_eq!(
            parse_vocabulary(VOCABULARY, text).unwrap(),
            ["packages", "config"]
        );
        assert_eq!(
            parse_vocabulary(VOCABULARY, "").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn malformed_vocabulary_names_file_and_line() {
        let cases = [
            (
                "- packages\n- [config\n",
                "tests/tags.yml:3: malformed vocabulary: ",
            ),
            (
                "packages: apt\n",
                "tests/tags.yml:1: malformed vocabulary: expected a list of tag names",
            ),
            (
                "- packages\n- {config: x}\n",
                "tests/tags.yml:2: malformed vocabulary: a tag name must be a non-empty string",
            ),
            (
                "- packages\n- 3\n",
                "tests/tags.yml:2: malformed vocabulary: a tag name must be a non-empty string",
            ),
            (
                "- packages\n---\n- config\n",
                "tests/tags.yml:3: malformed vocabulary: expected one yaml document, found more",
            ),
        ];
        for (text, expected) in cases {
            let err = parse_vocabulary(VOCABULARY, text).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }
}
