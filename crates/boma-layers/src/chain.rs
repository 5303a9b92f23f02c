//! A profile's steps as recipes: the one call the harness makes before looking for layers.

use boma_inventory::{CertTier, Profile};

use crate::key::{Recipe, RunInputs, manifest};
use crate::reach::{Reach, ReachError, StepFiles, reach};
use crate::tree::RepoTree;

/// One step of a profile, with what it reads and the recipe of its layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecipe {
    pub index: usize,
    /// For people: `site.yml --tags base`.
    pub label: String,
    pub reach: Reach,
    pub recipe: Recipe,
}

/// The recipes of `profile`'s steps in order, each chained to the previous step's key; the
/// first starts from the golden image whose digest is `golden_digest`. Every step shares
/// `run`, what it depends on besides the repository.
pub fn step_recipes(
    tree: &dyn RepoTree,
    profile: &Profile,
    tier: CertTier,
    golden_digest: &str,
    run: &RunInputs,
) -> Result<Vec<StepRecipe>, ReachError> {
    let mut steps: Vec<StepRecipe> = Vec::with_capacity(profile.applies.len());
    for (index, apply) in profile.applies.iter().enumerate() {
        let reach = reach(
            tree,
            &StepFiles {
                playbook: &apply.playbook,
                extra_vars_files: &profile.extra_vars_files,
                cert_tier: tier,
            },
        )?;
        let recipe = Recipe {
            golden_digest: golden_digest.to_owned(),
            groups: profile.groups.clone(),
            step_index: index,
            playbook: apply.playbook.clone(),
            tags: apply.tags.clone(),
            vars_files: reach.vars_files.clone(),
            manifest: manifest(tree, &reach)?,
            run: run.clone(),
            previous: steps.last().map(|s| s.recipe.key()),
        };
        let label = apply.label();
        steps.push(StepRecipe {
            index,
            label,
            reach,
            recipe,
        });
    }
    Ok(steps)
}
