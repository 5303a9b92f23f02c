//! The idempotence pass's evidence: what the `boma_changes` callback
//! (`tests/integration/callback_plugins/`) wrote over the second apply of every step, read
//! back and judged. Pure: text in, a verdict out.
//!
//! The file proves something only with the callback's own marks: a `start` line per playbook
//! run and an `end` line counting, per host, the task results it saw and how many changed.
//! Without them an empty file would read as "nothing changed" whether the callback ran or not
//! (never loaded, its error swallowed by Ansible, the file written elsewhere), so a missing
//! mark, a run that saw no task on the VM, or changed lines that do not match the count is a
//! verdict of its own: unproven, never a pass.

use std::collections::BTreeMap;

use crate::ansible::{self, ChangedTask};

/// What the callback counted for one host in one playbook run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct HostCount {
    /// Task results of any kind (ok, changed, skipped, failed, unreachable).
    pub results: u64,
    pub changed: u64,
}

/// One playbook run as the callback recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaybookRecord {
    pub playbook: String,
    /// The `end` line's counts by host; `None` when the run has no `end` line.
    pub end: Option<BTreeMap<String, HostCount>>,
    /// The tasks that changed, every host's.
    pub changed: Vec<ChangedTask>,
}

/// The callback's own marks (its changed-task lines have no `event`).
#[derive(serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Mark {
    Start { playbook: String },
    End { hosts: BTreeMap<String, HostCount> },
}

/// The playbook runs in the callback's file, in order. A changed line before any `start` line
/// belongs to no run: it is kept in a run of its own with no playbook name and no `end`, so
/// it can never be judged proven. A torn last line (a killed run) is skipped.
pub fn read(text: &str) -> Vec<PlaybookRecord> {
    let mut runs: Vec<PlaybookRecord> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Mark>(line) {
            Ok(Mark::Start { playbook }) => runs.push(PlaybookRecord {
                playbook,
                ..PlaybookRecord::default()
            }),
            Ok(Mark::End { hosts }) => match runs.last_mut() {
                Some(run) if run.end.is_none() => run.end = Some(hosts),
                // An end without its start: a run of its own that proves nothing.
                _ => runs.push(PlaybookRecord::default()),
            },
            Err(_) => {
                let changed = ansible::parse_changes(line);
                if changed.is_empty() {
                    continue;
                }
                match runs.last_mut() {
                    Some(run) if run.end.is_none() => run.changed.extend(changed),
                    _ => runs.push(PlaybookRecord {
                        changed,
                        ..PlaybookRecord::default()
                    }),
                }
            }
        }
    }
    runs
}

/// What the second apply proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The callback saw every step's run to its end: the VM's task results, and those that
    /// changed (none, for an idempotent profile).
    Proven {
        results: u64,
        changed: Vec<ChangedTask>,
    },
    /// The file does not prove the callback saw each step: why not.
    Unproven(String),
}

/// Judge the callback's file after the second apply of `steps` (their labels, in order) on
/// `vm`: one run per step, each with its `end`, each having seen at least one task result on
/// the VM, and as many changed lines for the VM as it counted.
pub fn judge(text: &str, vm: &str, steps: &[String]) -> Verdict {
    let runs = read(text);
    if runs.len() != steps.len() {
        return Verdict::Unproven(format!(
            "the boma_changes callback recorded {} playbook run(s) for {} step(s): did it run (ANSIBLE_CALLBACKS_ENABLED, tests/integration/callback_plugins/)?",
            runs.len(),
            steps.len()
        ));
    }
    let mut results = 0;
    let mut changed = Vec::new();
    for (run, step) in runs.into_iter().zip(steps) {
        let Some(end) = &run.end else {
            return Verdict::Unproven(format!(
                "{step}: the boma_changes callback saw the playbook start but not end"
            ));
        };
        let counted = end.get(vm).copied().unwrap_or_default();
        if counted.results == 0 {
            return Verdict::Unproven(format!(
                "{step}: the boma_changes callback saw no task run on {vm}"
            ));
        }
        let on_vm: Vec<ChangedTask> = run.changed.into_iter().filter(|t| t.host == vm).collect();
        if on_vm.len() as u64 != counted.changed {
            return Verdict::Unproven(format!(
                "{step}: the boma_changes callback counted {} changed task(s) on {vm} but recorded {}",
                counted.changed,
                on_vm.len()
            ));
        }
        results += counted.results;
        changed.extend(on_vm);
    }
    Verdict::Proven { results, changed }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "boma-it-askari-1a2b3c4d";

    fn steps(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("idempotence step {i}")).collect()
    }

    fn start(playbook: &str) -> String {
        format!(r#"{{"event": "start", "playbook": "{playbook}"}}"#)
    }

    fn end(results: u64, changed: u64) -> String {
        format!(
            r#"{{"event": "end", "hosts": {{"{VM}": {{"results": {results}, "changed": {changed}}}}}}}"#
        )
    }

    fn changed_line(task: &str) -> String {
        format!(
            r#"{{"host": "{VM}", "task": "{task}", "role": "base", "path": "/repo/roles/base/tasks/main.yml:7", "status": "changed"}}"#
        )
    }

    fn lines(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn every_step_seen_to_its_end_with_nothing_changed_is_proven() {
        let text = lines(&[
            start("/repo/playbooks/site.yml"),
            end(40, 0),
            start("/repo/playbooks/offsite.yml"),
            end(72, 0),
        ]);
        assert_eq!(
            judge(&text, VM, &steps(2)),
            Verdict::Proven {
                results: 112,
                changed: Vec::new()
            }
        );
    }

    #[test]
    fn changed_tasks_are_named_when_their_count_matches() {
        let text = lines(&[
            start("/repo/playbooks/site.yml"),
            changed_line("Add the route"),
            end(40, 1),
        ]);
        let Verdict::Proven { changed, .. } = judge(&text, VM, &steps(1)) else {
            panic!("proven");
        };
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].task, "Add the route");
    }

    /// The fail-open this guards against: a file the callback never wrote.
    #[test]
    fn no_file_or_an_empty_one_proves_nothing() {
        for text in ["", "\n"] {
            let verdict = judge(text, VM, &steps(2));
            let Verdict::Unproven(why) = verdict else {
                panic!("{verdict:?}");
            };
            assert!(
                why.starts_with(
                    "the boma_changes callback recorded 0 playbook run(s) for 2 step(s)"
                ),
                "{why}"
            );
        }
    }

    #[test]
    fn a_run_without_its_end_proves_nothing() {
        let text = lines(&[start("/repo/playbooks/site.yml"), changed_line("x")]);
        assert_eq!(
            judge(&text, VM, &steps(1)),
            Verdict::Unproven(
                "idempotence step 1: the boma_changes callback saw the playbook start but not end"
                    .into()
            )
        );
        // The old file's shape (changed lines only, no marks) proves nothing either.
        let old = lines(&[changed_line("x")]);
        assert!(matches!(judge(&old, VM, &steps(1)), Verdict::Unproven(_)));
    }

    #[test]
    fn a_step_that_ran_nothing_on_the_vm_proves_nothing() {
        // E.g. a --limit that matched no host: every task skipped the VM.
        let text = lines(&[
            start("/repo/playbooks/site.yml"),
            r#"{"event": "end", "hosts": {}}"#.to_owned(),
        ]);
        assert_eq!(
            judge(&text, VM, &steps(1)),
            Verdict::Unproven(format!(
                "idempotence step 1: the boma_changes callback saw no task run on {VM}"
            ))
        );
    }

    #[test]
    fn a_changed_line_lost_shows_in_the_count() {
        let text = lines(&[start("/repo/playbooks/site.yml"), end(40, 2)]);
        assert_eq!(
            judge(&text, VM, &steps(1)),
            Verdict::Unproven(format!(
                "idempotence step 1: the boma_changes callback counted 2 changed task(s) on {VM} but recorded 0"
            ))
        );
    }

    #[test]
    fn runs_must_match_the_steps_one_for_one() {
        let one = lines(&[start("/repo/playbooks/site.yml"), end(40, 0)]);
        assert!(matches!(judge(&one, VM, &steps(2)), Verdict::Unproven(_)));
        // A stale run left in the file before this pass's runs is one run too many.
        let three = format!("{one}{one}{one}");
        assert!(matches!(judge(&three, VM, &steps(2)), Verdict::Unproven(_)));
    }

    #[test]
    fn lines_outside_a_run_make_runs_of_their_own() {
        let text = lines(&[
            end(40, 0),
            start("/repo/playbooks/site.yml"),
            end(40, 0),
            changed_line("late"),
        ]);
        let runs = read(&text);
        assert_eq!(runs.len(), 3, "{runs:?}");
        assert!(runs[0].end.is_none() && runs[0].playbook.is_empty());
        assert_eq!(runs[1].playbook, "/repo/playbooks/site.yml");
        assert_eq!(runs[2].changed.len(), 1);
        assert!(matches!(judge(&text, VM, &steps(1)), Verdict::Unproven(_)));
    }

    /// The callback for real: the venv's `ansible-playbook` (`make venv`; `make test` makes it)
    /// run the way the harness runs it ([`crate::ansible::run`], which enables the callback),
    /// twice into one file, on a play that only touches this machine (`connection: local`).
    #[test]
    fn the_real_callback_proves_each_run_and_names_what_changed() {
        let repo = camino::Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        assert!(
            repo.join(".venv/bin/ansible-playbook").is_file(),
            "this test needs the Ansible venv: run `make venv` (`make test` does)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let dir = camino::Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let play = dir.join("local.yml");
        std::fs::write(
            &play,
            "- name: A play on this machine only\n  hosts: all\n  connection: local\n  gather_facts: false\n  tasks:\n    - name: Changes\n      ansible.builtin.command: \"true\"\n      changed_when: true\n    - name: Changes nothing\n      ansible.builtin.command: \"true\"\n      changed_when: false\n    - name: Skipped\n      ansible.builtin.command: \"true\"\n      when: false\n",
        )
        .unwrap();
        let changes = dir.join("changes.jsonl");
        let python = repo.join(".venv/bin/python3");
        let call = crate::ansible::PlaybookCall {
            repo: repo.clone(),
            label: "idempotence local.yml".into(),
            args: vec![
                "-i".into(),
                "localhost,".into(),
                "-e".into(),
                format!("ansible_python_interpreter={python}"),
                play.to_string(),
            ],
            timeout: std::time::Duration::from_secs(120),
            changes_file: Some(changes.clone()),
            facts_dir: None,
            mitogen: None,
            connect_dir: None,
            control_dir: None,
        };
        let sh = xshell::Shell::new().unwrap();
        for _ in 0..2 {
            crate::ansible::run(&sh, &call).unwrap();
        }
        let text = std::fs::read_to_string(&changes).unwrap();
        let runs = read(&text);
        assert_eq!(runs.len(), 2, "{text}");
        assert!(runs.iter().all(|r| r.playbook == play.as_str()), "{text}");
        let steps = steps(2);
        let Verdict::Proven { results, changed } = judge(&text, "localhost", &steps) else {
            panic!("not proven: {text}");
        };
        assert_eq!(results, 6, "three results a run: {text}");
        let tasks: Vec<&str> = changed.iter().map(|t| t.task.as_str()).collect();
        assert_eq!(tasks, ["Changes", "Changes"]);
        assert_eq!(
            changed[0].path.as_deref(),
            Some(format!("{play}:6").as_str())
        );
        // Nothing of it is on another host's account.
        assert!(matches!(
            judge(&text, VM, &steps),
            Verdict::Unproven(why) if why.contains("saw no task run on")
        ));
    }

    #[test]
    fn other_hosts_count_for_nothing() {
        let text = lines(&[
            start("/repo/playbooks/site.yml"),
            r#"{"host": "localhost", "task": "delegated", "role": null, "path": null, "status": "changed"}"#.to_owned(),
            format!(
                r#"{{"event": "end", "hosts": {{"{VM}": {{"results": 5, "changed": 0}}, "localhost": {{"results": 1, "changed": 1}}}}}}"#
            ),
        ]);
        assert_eq!(
            judge(&text, VM, &steps(1)),
            Verdict::Proven {
                results: 5,
                changed: Vec::new()
            }
        );
    }
}
