//! Verify playbooks: where each writes its results (on the VM), what one run of it left, and
//! the preflight scan that refuses one written for the controller.
//!
//! A verify playbook runs on the VM only. Every `ansible-playbook` run of the harness gets the
//! harness's connection as its last extra vars, so every task of it runs on the VM,
//! `delegate_to: localhost` included: no variable can turn a VM task into a controller one. A
//! playbook written for the controller would then quietly check the VM instead; preflight
//! refuses one ([`controller_side`]). What must be seen from outside the VM is a controller
//! probe the harness runs itself (the profile's `published_ports`).

use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};
use serde::{Deserialize, Serialize};

use boma_yaml::untag;

/// The guest directory the results go to: under `/run` (a tmpfs: nothing of it outlives the
/// boot), the harness's own. The playbook creates it.
pub const GUEST_RESULTS_DIR: &str = "/run/boma-it";

/// Where verify playbook `index` (in the profile's order) writes its results, on the VM.
pub fn guest_results_file(index: usize) -> Utf8PathBuf {
    Utf8Path::new(GUEST_RESULTS_DIR).join(format!("verify-results-{index}.json"))
}

/// The results file (`boma_it_results_file`), written by a profile's verify playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyResults {
    pub checks: Vec<Check>,
}

/// One outcome-based check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// A short machine-readable cause (`timeout`, `refused`, `tls`, `ok` …).
    #[serde(default)]
    pub reason: Option<String>,
    /// Evidence: a chain listing, a command's error.
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

impl VerifyResults {
    pub fn parse(text: &str) -> Result<VerifyResults, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn failed(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.clone())
            .collect()
    }

    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
}

/// What a verify playbook left on the VM at `boma_it_results_file`.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    Results(VerifyResults),
    /// No file.
    Nothing,
    /// A file that is not the results JSON (why).
    Malformed(String),
}

impl Written {
    /// The results file's text, read from the guest (`None`: there was none).
    pub fn from_text(text: Option<&str>) -> Written {
        match text {
            None => Written::Nothing,
            Some(text) => match VerifyResults::parse(text) {
                Ok(results) => Written::Results(results),
                Err(e) => Written::Malformed(e.to_string()),
            },
        }
    }
}

/// One run of a verify playbook: how the play ended, and what it wrote. The checks it makes
/// are judged by `checks::from_verify`.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyRun {
    pub playbook: Utf8PathBuf,
    /// `None` when `ansible-playbook` exited 0; else what failed (its exit, its last lines).
    pub failure: Option<String>,
    pub written: Written,
}

/// Play and task keywords that put a task on the controller.
const CONTROLLER_KEYWORDS: [&str; 3] = ["delegate_to", "local_action", "connection"];
/// Play keys holding task lists.
const PLAY_TASK_LISTS: [&str; 4] = ["pre_tasks", "tasks", "post_tasks", "handlers"];
/// Task keys holding task lists.
const BLOCK_TASK_LISTS: [&str; 3] = ["block", "rescue", "always"];

/// A play or task of a verify playbook (or of a file it reaches) written for the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSide {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// `delegate_to`, `local_action`, `connection`, or `hosts: <the pattern>`.
    pub what: String,
}

impl fmt::Display for ControllerSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: verify playbooks run on the VM only; declare controller probes in the \
             profile's published_ports",
            self.file, self.line, self.what
        )
    }
}

/// Every play and task of `text` (a playbook or a task file, named `file` in findings) that
/// would run on the controller: a `delegate_to`, `local_action` or `connection` keyword, or a
/// play whose `hosts` names the controller (`localhost`, a `127.` address, `::1`). A file that
/// is not a list (a vars file, a role's `meta`) has none. Pure.
pub fn controller_side(file: &str, text: &str) -> Result<Vec<ControllerSide>, String> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        format!(
            "{file}:{}:{}: malformed yaml: {}",
            e.marker().line(),
            e.marker().col() + 1,
            e.info()
        )
    })?;
    let mut found = Vec::new();
    for doc in &docs {
        entries_list(file, doc, &mut found);
    }
    Ok(found)
}

/// A list of plays or tasks: an entry with `hosts` is a play, any other a task.
fn entries_list(file: &str, node: &MarkedYaml<'_>, found: &mut Vec<ControllerSide>) {
    let YamlData::Sequence(items) = &untag(node).data else {
        return;
    };
    for item in items {
        let YamlData::Mapping(entries) = &untag(item).data else {
            continue;
        };
        for (key, value) in entries {
            let Some(name) = untag(key).data.as_str() else {
                continue;
            };
            let line = key.span.start.line();
            let at = |what: String| ControllerSide {
                file: file.to_owned(),
                line,
                what,
            };
            if CONTROLLER_KEYWORDS.contains(&name) {
                found.push(at(name.to_owned()));
            } else if name == "hosts" {
                if let Some(pattern) = controller_pattern(value) {
                    found.push(at(format!("hosts: {pattern}")));
                }
            } else if PLAY_TASK_LISTS.contains(&name) || BLOCK_TASK_LISTS.contains(&name) {
                entries_list(file, value, found);
            }
        }
    }
}

/// The host pattern, when a part of it names the controller.
fn controller_pattern(value: &MarkedYaml<'_>) -> Option<String> {
    let parts: Vec<String> = match &untag(value).data {
        YamlData::Sequence(items) => items.iter().filter_map(|item| scalar_text(item)).collect(),
        _ => scalar_text(value).into_iter().collect(),
    };
    let names_controller = parts.iter().any(|pattern| {
        pattern
            .split([',', ':'])
            .map(|part| part.trim().trim_start_matches(['!', '&']))
            .any(|part| part == "localhost" || part.starts_with("127.") || part == "::1")
            // An IPv6 literal is split by `:` above; as a whole it is one name.
            || pattern.trim() == "::1"
    });
    names_controller.then(|| parts.join(", "))
}

fn scalar_text(node: &MarkedYaml<'_>) -> Option<String> {
    match &untag(node).data {
        YamlData::Value(scalar) => Some(match scalar {
            saphyr::Scalar::String(text) => text.to_string(),
            other => format!("{other:?}"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_results_and_names_failures() {
        let text = r#"{"checks": [
            {"name": "docker_active", "ok": true, "reason": "ok", "detail": "active"},
            {"name": "forward_chain_accepts_containers", "ok": false, "reason": "pure_drop", "detail": "chain forward { policy drop; }"}
        ]}"#;
        let results = VerifyResults::parse(text).unwrap();
        assert!(!results.passed());
        assert_eq!(results.failed(), vec!["forward_chain_accepts_containers"]);
        let run = VerifyRun {
            playbook: "tests/verify/askari.yml".into(),
            failure: Some(
                "verify tests/verify/askari.yml failed (ansible-playbook exit status 2)".into(),
            ),
            written: Written::Results(results),
        };
        let summary = crate::checks::summary(&crate::checks::from_verify(&run));
        insta::assert_snapshot!("verify_summary_red", summary);
    }

    #[test]
    fn no_checks_is_not_a_pass() {
        assert!(!VerifyResults::parse(r#"{"checks": []}"#).unwrap().passed());
    }

    #[test]
    fn what_was_written_nothing_or_not_results() {
        assert_eq!(Written::from_text(None), Written::Nothing);
        assert!(matches!(
            Written::from_text(Some("{\"checks\": [{\"name\": 1}]}")),
            Written::Malformed(_)
        ));
        assert!(matches!(
            Written::from_text(Some("{\"checks\": []}")),
            Written::Results(r) if r.checks.is_empty()
        ));
    }

    fn shown(file: &str, text: &str) -> Vec<String> {
        controller_side(file, text)
            .unwrap()
            .iter()
            .map(|c| {
                c.to_string()
                    .split(": verify playbooks")
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn every_way_to_the_controller_is_found_with_its_line() {
        let playbook = "\
---
- name: Probe from here
  hosts: localhost
  connection: local
  tasks:
    - name: On the VM
      ansible.builtin.command: true
    - name: Delegated
      ansible.builtin.command: curl -k https://x/
      delegate_to: localhost
    - name: A local action
      local_action: ansible.builtin.command true
    - block:
        - name: Deep in a block
          ansible.builtin.command: true
          delegate_to: 127.0.0.1
      rescue:
        - name: A task-level connection
          ansible.builtin.command: true
          connection: local
  handlers:
    - name: A handler
      ansible.builtin.command: true
      delegate_to: \"{{ groups['all'][0] }}\"
- hosts: [\"boma-it-*\", \"127.0.0.1\"]
  tasks: []
- hosts: all:!localhost
  tasks: []
- hosts: \"{{ boma_it_vm_name }}\"
  vars:
    connection: a variable of that name is no keyword
  tasks: []
";
        assert_eq!(
            shown("tests/verify/x.yml", playbook),
            [
                "tests/verify/x.yml:3: hosts: localhost",
                "tests/verify/x.yml:4: connection",
                "tests/verify/x.yml:10: delegate_to",
                "tests/verify/x.yml:12: local_action",
                "tests/verify/x.yml:16: delegate_to",
                "tests/verify/x.yml:20: connection",
                "tests/verify/x.yml:24: delegate_to",
                "tests/verify/x.yml:25: hosts: boma-it-*, 127.0.0.1",
                "tests/verify/x.yml:27: hosts: all:!localhost",
            ]
        );
        let first = &controller_side("tests/verify/x.yml", playbook).unwrap()[2];
        assert_eq!(
            first.to_string(),
            "tests/verify/x.yml:10: delegate_to: verify playbooks run on the VM only; declare \
             controller probes in the profile's published_ports"
        );
    }

    #[test]
    fn a_task_file_is_scanned_and_a_vars_file_is_not() {
        let tasks =
            "- name: t\n  ansible.builtin.uri: {url: 'http://x/'}\n  delegate_to: localhost\n";
        assert_eq!(
            shown("roles/r/tasks/main.yml", tasks),
            ["roles/r/tasks/main.yml:3: delegate_to"]
        );
        let vars = "delegate_to: localhost\nconnection: local\nhosts: localhost\n";
        assert_eq!(
            shown("roles/r/defaults/main.yml", vars),
            Vec::<String>::new()
        );
        let vm_only = "- hosts: \"{{ boma_it_vm_name | default('boma-it-*') }}\"\n  tasks:\n    - ansible.builtin.command: true\n";
        assert_eq!(shown("tests/verify/ok.yml", vm_only), Vec::<String>::new());
        assert!(
            controller_side("x.yml", "- [\n")
                .unwrap_err()
                .starts_with("x.yml:")
        );
    }
}
