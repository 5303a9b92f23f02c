//! What `prune` removes, decided from what was found (pure), executed by a dumb loop.

use std::collections::BTreeSet;

use camino::{Utf8Path, Utf8PathBuf};

use boma_name::VmName;

use crate::RunRecord;
use crate::hypervisor::Segment;

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

/// What `prune` does about the fleet segments a backend found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentPlan {
    /// This checkout's: taken down (after its VMs).
    pub destroy: Vec<Segment>,
    /// Not this checkout's as far as it can tell — a `boma-fleet-*` network whose run has no
    /// directory or record here (another checkout's live fleet, or one whose directory is
    /// gone): left alone, and named.
    pub foreign: Vec<Segment>,
}

/// Decide which of the segments `found` are this checkout's: a switch whose pidfile lies in a
/// run directory of `runs_root` and whose socket directory is the one that run directory gives
/// (`boma_fleet::switch_paths`: under `/tmp`, named by a hash of the run directory); a network
/// named after one of the run directories `dirs` or recorded by one of their members
/// (`recorded`). Pure.
pub fn plan_segments(
    found: &[Segment],
    runs_root: &Utf8Path,
    dirs: &[Utf8PathBuf],
    recorded: &[Segment],
) -> SegmentPlan {
    let mut plan = SegmentPlan::default();
    for segment in found {
        let ours = match segment {
            Segment::VdeSwitch { .. } => segment.is_switch_of_a_run_in(runs_root),
            Segment::LibvirtNetwork { .. } => {
                recorded.contains(segment) || dirs.iter().any(|d| segment.belongs_to(d))
            }
        };
        let into = if ours {
            &mut plan.destroy
        } else {
            &mut plan.foreign
        };
        if !into.contains(segment) {
            into.push(segment.clone());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_pruned_when_this_checkouts_runs_name_it() {
        let root = Utf8Path::new("/repo/tests/integration/.run");
        let switch = |dir: &str| {
            let paths = boma_fleet::switch_paths(Utf8Path::new(dir));
            Segment::VdeSwitch {
                dir: paths.dir,
                pidfile: paths.pidfile,
            }
        };
        let network = |run: &str| Segment::LibvirtNetwork { run: run.into() };
        let found = [
            // A switch of a fleet run directory here, even one already gone.
            switch("/repo/tests/integration/.run/boma-it-web-1"),
            switch("/repo/tests/integration/.run/boma-it-gone-2"),
            // The network of a fleet run directory here, of a member's record, of neither.
            network("web-1"),
            network("db-3"),
            network("other-checkout-4"),
            network("web-1"),
        ];
        let dirs = [Utf8PathBuf::from(
            "/repo/tests/integration/.run/boma-it-web-1",
        )];
        let recorded = [network("db-3")];
        let plan = plan_segments(&found, root, &dirs, &recorded);
        assert_eq!(
            plan.destroy,
            [
                switch("/repo/tests/integration/.run/boma-it-web-1"),
                switch("/repo/tests/integration/.run/boma-it-gone-2"),
                network("web-1"),
                network("db-3"),
            ]
        );
        assert_eq!(plan.foreign, [network("other-checkout-4")]);
        // Another checkout's switch is never this one's (leftovers should not even list it).
        let theirs = plan_segments(
            &[switch("/srv/boma/tests/integration/.run/x")],
            root,
            &[],
            &[],
        );
        assert_eq!(theirs.foreign.len(), 1);
        // A switch whose pidfile is here but whose sockets are not the ones its run directory
        // gives is not this checkout's either.
        let odd = Segment::VdeSwitch {
            dir: "/tmp/boma-vde-0000000000000000".into(),
            pidfile: "/repo/tests/integration/.run/boma-it-web-1/fleet.switch.pid".into(),
        };
        assert_eq!(plan_segments(&[odd], root, &[], &[]).foreign.len(), 1);
        assert_eq!(
            plan_segments(&[], root, &dirs, &recorded),
            SegmentPlan::default()
        );
    }

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
