//! The fleet's steps: one `ansible-playbook` over the members per step, as production runs a
//! playbook over its hosts. The members' `applies` are merged: identical (playbook, tags)
//! entries become one step whose `--limit` is the members that list it, and the order keeps
//! every member's own order, ties broken by first appearance. Members that order shared steps
//! differently cannot all be satisfied, and are refused. Pure.

use std::collections::{BTreeMap, BTreeSet};

use boma_inventory::{Apply, Profile};
use camino::Utf8PathBuf;

/// One playbook run over the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetStep {
    /// The apply as the first member to list it wrote it.
    pub apply: Apply,
    /// The members that list it, in fleet order: the run's `--limit`.
    pub limit: Vec<String>,
}

/// Why the members' applies cannot be merged into one order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepOrderError {
    #[error(
        "members `{first_member}` and `{second_member}` order their shared steps differently: `{first_member}` applies `{earlier}` before `{later}`, `{second_member}` after it; one playbook run per step over the fleet needs one order: reorder one profile's applies"
    )]
    Conflict {
        first_member: String,
        second_member: String,
        earlier: String,
        later: String,
    },
    #[error(
        "the members' applies order the steps {} in a cycle (each member's order is fine on its own): reorder a profile's applies",
        .steps.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
    )]
    Cycle { steps: Vec<String> },
    #[error(
        "member `{member}` applies `{step}` twice: in a fleet one step runs once over the members that list it"
    )]
    Repeated { member: String, step: String },
}

/// What makes two applies the same step: the playbook's path and the set of tags (`--tags a,b`
/// and `--tags b,a` run the same tasks).
fn step_key(apply: &Apply) -> (Utf8PathBuf, BTreeSet<String>) {
    (apply.playbook_path(), apply.tags.iter().cloned().collect())
}

/// Merges the members' applies (`members`: name and profile, in fleet order).
pub fn merge_steps(members: &[(&str, &Profile)]) -> Result<Vec<FleetStep>, StepOrderError> {
    type Key = (Utf8PathBuf, BTreeSet<String>);
    // Steps in order of first appearance, and per member its steps' indices in its order.
    let mut keys: Vec<Key> = Vec::new();
    let mut steps: Vec<FleetStep> = Vec::new();
    let mut chains: Vec<(&str, Vec<usize>)> = Vec::new();
    for (member, profile) in members {
        let mut chain = Vec::new();
        for apply in &profile.applies {
            let key = step_key(apply);
            let index = match keys.iter().position(|k| *k == key) {
                Some(i) => i,
                None => {
                    keys.push(key);
                    steps.push(FleetStep {
                        apply: apply.clone(),
                        limit: Vec::new(),
                    });
                    keys.len() - 1
                }
            };
            if chain.contains(&index) {
                return Err(StepOrderError::Repeated {
                    member: (*member).to_owned(),
                    step: apply.label(),
                });
            }
            steps[index].limit.push((*member).to_owned());
            chain.push(index);
        }
        chains.push((member, chain));
    }

    // A pair of shared steps ordered both ways names the conflict exactly.
    for (i, (first, a)) in chains.iter().enumerate() {
        for (second, b) in &chains[i + 1..] {
            let position = |chain: &[usize], step| chain.iter().position(|s| *s == step);
            for (x_at, x) in a.iter().enumerate() {
                for y in &a[x_at + 1..] {
                    if let (Some(bx), Some(by)) = (position(b, *x), position(b, *y))
                        && by < bx
                    {
                        return Err(StepOrderError::Conflict {
                            first_member: (*first).to_owned(),
                            second_member: (*second).to_owned(),
                            earlier: steps[*x].apply.label(),
                            later: steps[*y].apply.label(),
                        });
                    }
                }
            }
        }
    }

    // Each member's order as edges; the merged order is a topological one, taking among the
    // steps whose predecessors are all placed the one that appeared first.
    let mut before: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (_, chain) in &chains {
        for pair in chain.windows(2) {
            before.entry(pair[1]).or_default().insert(pair[0]);
        }
    }
    let mut placed: Vec<usize> = Vec::with_capacity(steps.len());
    while placed.len() < steps.len() {
        let next = (0..steps.len()).find(|s| {
            !placed.contains(s)
                && before
                    .get(s)
                    .is_none_or(|preds| preds.iter().all(|p| placed.contains(p)))
        });
        match next {
            Some(step) => placed.push(step),
            None => {
                return Err(StepOrderError::Cycle {
                    steps: (0..steps.len())
                        .filter(|s| !placed.contains(s))
                        .map(|s| steps[s].apply.label())
                        .collect(),
                });
            }
        }
    }
    Ok(placed.into_iter().map(|s| steps[s].clone()).collect())
}

/// The `-e` files of every step: each member's own, in fleet order, then the fleet's, each
/// file once (where it first appears). Extra vars apply to every host of a run, so a member's
/// file reaches its peers too; [`crate::vars::conflicts`] refuses two files that disagree.
pub fn extra_vars_files(members: &[&Profile], fleet: &[Utf8PathBuf]) -> Vec<Utf8PathBuf> {
    let mut files: Vec<Utf8PathBuf> = Vec::new();
    let all = members
        .iter()
        .flat_map(|p| p.extra_vars_files.iter())
        .chain(fleet);
    for file in all {
        if !files.contains(file) {
            files.push(file.clone());
        }
    }
    files
}
