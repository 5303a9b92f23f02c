//! What `prune` removes, decided from what was found (pure), executed by a dumb loop.

use std::collections::BTreeSet;

use camino::{Utf8Path, Utf8PathBuf};

use boma_name::VmName;

use crate::RunRecord;

/// The removals `prune` will make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    /// VMs to stop and undefine: every live one, every recorded one, every one a directory names.
    pub destroy: Vec<VmName>,
    /// Run directories to delete.
    pub remove_dirs: Vec<Utf8PathBuf>,
}

/// Decide what to remove. Only `boma-it-` names are ever touched.
pub fn plan(live: &[VmName], dirs: &[Utf8PathBuf], current: Option<&RunRecord>) -> PrunePlan {
    let from_dirs = dirs
        .iter()
        .filter_map(|d| d.file_name())
        .filter_map(|n| VmName::parse(n).ok());
    let destroy: BTreeSet<VmName> = live
        .iter()
        .cloned()
        .chain(from_dirs)
        .chain(current.map(|c| c.name.clone()))
        .collect();
    let remove_dirs = dirs
        .iter()
        .filter(|d| d.file_name().is_some_and(|n| VmName::parse(n).is_ok()))
        .map(|d| Utf8Path::to_owned(d))
        .collect();
    PrunePlan {
        destroy: destroy.into_iter().collect(),
        remove_dirs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unions_live_recorded_and_orphaned_and_ignores_foreign_names() {
        let live = vec![crate::fake::vm("boma-it-askari-1")];
        let dirs = vec![
            Utf8PathBuf::from("/r/boma-it-askari-2"),
            Utf8PathBuf::from("/r/notes"),
        ];
        let plan = plan(&live, &dirs, None);
        assert_eq!(
            plan.destroy,
            vec![
                crate::fake::vm("boma-it-askari-1"),
                crate::fake::vm("boma-it-askari-2")
            ]
        );
        assert_eq!(
            plan.remove_dirs,
            vec![Utf8PathBuf::from("/r/boma-it-askari-2")]
        );
    }

    #[test]
    fn nothing_found_nothing_done() {
        let plan = plan(&[], &[], None);
        assert!(plan.destroy.is_empty() && plan.remove_dirs.is_empty());
    }
}
