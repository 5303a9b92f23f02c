//! Which layers to remove: the pure planners behind `evict_lru` and `prune`. Values in (the
//! layers, the time, the keys in use), a plan out; the store only carries it out.
//!
//! Two rules hold for every plan:
//! - **A layer goes with its descendants.** A child's qcow2 names its parent as backing file;
//!   removing the parent alone would leave the child dangling.
//! - **Nothing in use goes.** A layer is removable only when neither it nor any descendant is
//!   busy (held by a running VM's chain): removing an ancestor of a busy layer would pull the
//!   disk out from under that VM.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::key::LayerKey;

/// Seconds since the Unix epoch: the store's clock values. Passed in by the caller, never read
/// inside the planners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The time `t`, to the second; times before 1970 are 0.
    pub fn from_system(t: SystemTime) -> Timestamp {
        Timestamp(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }

    /// How long before `now` this was (zero if it is in the future: clocks step back).
    pub fn age(self, now: Timestamp) -> Duration {
        Duration::from_secs(now.0.saturating_sub(self.0))
    }
}

/// What the planners (and `list`) know of one stored layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerInfo {
    pub key: LayerKey,
    pub profile: String,
    pub step_index: usize,
    pub step_label: String,
    /// `None` for a layer on the golden image.
    pub parent: Option<LayerKey>,
    pub size_bytes: u64,
    pub created: Timestamp,
    pub last_used: Timestamp,
    /// Whether a guest has come back from it (runs boot only such layers).
    pub booted: bool,
    /// What its power cycle lost (`None`: never judged). Runs boot only layers that lost
    /// nothing.
    pub lost: Option<Vec<String>>,
}

/// Layers to remove, children before parents (so an interrupted removal never leaves a layer
/// whose parent is gone while it stays), and what was spared because it is in use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovalPlan {
    pub remove: Vec<LayerKey>,
    pub freed_bytes: u64,
    /// Layers that the plan would have removed but are busy or hold a busy descendant, sorted.
    pub spared_busy: Vec<LayerKey>,
}

/// What `prune` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneScope {
    /// Every layer not in use.
    All,
    /// Layers whose subtree was last used longer ago than this.
    UnusedFor(Duration),
}

/// The parent/child structure of a set of layers.
struct Forest<'a> {
    by_key: BTreeMap<&'a LayerKey, &'a LayerInfo>,
    children: BTreeMap<&'a LayerKey, Vec<&'a LayerKey>>,
}

impl<'a> Forest<'a> {
    fn new(layers: &'a [LayerInfo]) -> Forest<'a> {
        let by_key: BTreeMap<_, _> = layers.iter().map(|l| (&l.key, l)).collect();
        let mut children: BTreeMap<&LayerKey, Vec<&LayerKey>> = BTreeMap::new();
        for layer in layers {
            // A parent missing from the store makes this layer a root (lookup drops it).
            if let Some(parent) = layer.parent.as_ref().filter(|p| by_key.contains_key(p)) {
                children.entry(parent).or_default().push(&layer.key);
            }
        }
        Forest { by_key, children }
    }

    /// `key` and everything below it, each once (a cycle in corrupt metadata cannot loop).
    fn subtree(&self, key: &'a LayerKey) -> BTreeSet<&'a LayerKey> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![key];
        while let Some(k) = stack.pop() {
            if seen.insert(k) {
                stack.extend(self.children.get(k).into_iter().flatten().copied());
            }
        }
        seen
    }

    /// How many ancestors `key` has in the store.
    fn depth(&self, key: &LayerKey) -> usize {
        let mut depth = 0;
        let mut seen = BTreeSet::new();
        let mut current = self.by_key.get(key).and_then(|l| l.parent.as_ref());
        while let Some(parent) = current {
            if !seen.insert(parent) {
                break;
            }
            let Some(layer) = self.by_key.get(parent) else {
                break;
            };
            depth += 1;
            current = layer.parent.as_ref();
        }
        depth
    }

    /// The most recent use anywhere in `key`'s subtree: a parent is as recent as its most
    /// recently used child, since that child needs it.
    fn last_use_below(&self, key: &'a LayerKey) -> Timestamp {
        self.subtree(key)
            .into_iter()
            .filter_map(|k| self.by_key.get(k))
            .map(|l| l.last_used)
            .max()
            .unwrap_or(Timestamp(0))
    }

    fn blocked(&self, key: &'a LayerKey, busy: &BTreeSet<LayerKey>) -> bool {
        self.subtree(key).into_iter().any(|k| busy.contains(k))
    }

    /// `keys` as a plan: deepest first.
    fn plan(&self, keys: BTreeSet<&LayerKey>, spared: BTreeSet<&LayerKey>) -> RemovalPlan {
        let mut remove: Vec<&LayerKey> = keys.into_iter().collect();
        remove.sort_by_key(|k| (std::cmp::Reverse(self.depth(k)), *k));
        RemovalPlan {
            freed_bytes: remove
                .iter()
                .filter_map(|k| self.by_key.get(k))
                .map(|l| l.size_bytes)
                .sum(),
            remove: remove.into_iter().cloned().collect(),
            spared_busy: spared.into_iter().cloned().collect(),
        }
    }
}

/// Which layers to remove so that the store holds at most `max_total_bytes`: least recently
/// used subtrees first (a subtree's recency is its most recent use, so a stale parent never
/// takes a fresh child with it), deeper layers first among equals. Busy layers and their
/// ancestors stay, even if the bound is then not met.
pub fn plan_eviction(
    layers: &[LayerInfo],
    max_total_bytes: u64,
    busy: &BTreeSet<LayerKey>,
) -> RemovalPlan {
    let forest = Forest::new(layers);
    let mut total: u64 = layers.iter().map(|l| l.size_bytes).sum();
    let mut order: Vec<&LayerKey> = layers.iter().map(|l| &l.key).collect();
    order.sort_by_key(|k| {
        (
            forest.last_use_below(k),
            std::cmp::Reverse(forest.depth(k)),
            *k,
        )
    });
    let mut removed = BTreeSet::new();
    let mut spared = BTreeSet::new();
    for key in order {
        if total <= max_total_bytes {
            break;
        }
        if removed.contains(key) {
            continue;
        }
        if forest.blocked(key, busy) {
            spared.insert(key);
            continue;
        }
        for k in forest.subtree(key) {
            if removed.insert(k) {
                total = total.saturating_sub(forest.by_key[k].size_bytes);
            }
        }
    }
    forest.plan(removed, spared)
}

/// Which layers `prune` removes at `now`: every layer (`All`) or those whose whole subtree went
/// unused for the given time, except busy ones and their ancestors.
pub fn plan_prune(
    layers: &[LayerInfo],
    now: Timestamp,
    scope: PruneScope,
    busy: &BTreeSet<LayerKey>,
) -> RemovalPlan {
    let forest = Forest::new(layers);
    let mut removed = BTreeSet::new();
    let mut spared = BTreeSet::new();
    for layer in layers {
        let stale = match scope {
            PruneScope::All => true,
            PruneScope::UnusedFor(age) => forest.last_use_below(&layer.key).age(now) > age,
        };
        if !stale {
            continue;
        }
        // Removable layers form whole subtrees: a descendant is as stale and as idle as its
        // ancestor, so nothing below a removed layer is left behind.
        if forest.blocked(&layer.key, busy) {
            spared.insert(&layer.key);
        } else {
            removed.insert(&layer.key);
        }
    }
    forest.plan(removed, spared)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;

    fn key(n: u8) -> LayerKey {
        LayerKey::parse(&format!("{n:02x}").repeat(32)).unwrap()
    }

    fn layer(n: u8, parent: Option<u8>, size: u64, last_used_hours: u64) -> LayerInfo {
        LayerInfo {
            key: key(n),
            profile: "askari".to_owned(),
            step_index: usize::from(parent.is_some()),
            step_label: format!("step {n}"),
            parent: parent.map(key),
            size_bytes: size,
            created: Timestamp(0),
            last_used: Timestamp(last_used_hours * HOUR),
            booted: true,
            lost: Some(Vec::new()),
        }
    }

    /// 1 ← 2 ← 3 (an old chain whose leaf was used recently), 4 ← 5 (used long ago), 6 alone.
    fn store() -> Vec<LayerInfo> {
        vec![
            layer(1, None, 100, 1),
            layer(2, Some(1), 100, 2),
            layer(3, Some(2), 100, 50),
            layer(4, None, 100, 3),
            layer(5, Some(4), 100, 4),
            layer(6, None, 100, 40),
        ]
    }

    fn keys(ns: &[u8]) -> Vec<LayerKey> {
        ns.iter().map(|&n| key(n)).collect()
    }

    #[test]
    fn eviction_removes_the_least_recently_used_subtree_leaves_first() {
        // 600 bytes stored, 400 allowed: 4 ← 5 (last use 4h) goes before 1 ← 2 ← 3 (50h).
        let plan = plan_eviction(&store(), 400, &BTreeSet::new());
        assert_eq!(plan.remove, keys(&[5, 4]));
        assert_eq!(plan.freed_bytes, 200);
        assert!(plan.spared_busy.is_empty());
    }

    #[test]
    fn eviction_never_takes_a_fresh_child_with_a_stale_parent() {
        // Layer 1 itself was used 1h in, but its leaf 3 at 50h: the chain counts as fresh.
        let plan = plan_eviction(&store(), 300, &BTreeSet::new());
        assert_eq!(plan.remove, keys(&[5, 4, 6]));
    }

    #[test]
    fn eviction_under_the_bound_removes_nothing() {
        assert_eq!(
            plan_eviction(&store(), 600, &BTreeSet::new()),
            RemovalPlan::default()
        );
    }

    #[test]
    fn eviction_spares_busy_layers_and_their_ancestors() {
        // 5 is held by a running VM: 4 ← 5 stays, so the next-least-recently used go instead,
        // down to the fresh leaf 3.
        let busy = BTreeSet::from([key(5)]);
        let plan = plan_eviction(&store(), 400, &busy);
        assert_eq!(plan.remove, keys(&[3, 6]));
        assert_eq!(plan.spared_busy, keys(&[4, 5]));
        // Nothing else can go: the bound is not met, and the plan says what it kept.
        let plan = plan_eviction(&store(), 0, &BTreeSet::from([key(3), key(5)]));
        assert_eq!(plan.remove, keys(&[6]));
        assert_eq!(plan.spared_busy, keys(&[1, 2, 3, 4, 5]));
    }

    #[test]
    fn prune_all_keeps_only_busy_chains() {
        let plan = plan_prune(
            &store(),
            Timestamp(0),
            PruneScope::All,
            &BTreeSet::from([key(2)]),
        );
        // 2 is busy: 1 (its parent) stays; 3 (its child) is idle and goes.
        assert_eq!(plan.remove, keys(&[3, 5, 4, 6]));
        assert_eq!(plan.spared_busy, keys(&[1, 2]));
    }

    #[test]
    fn prune_by_age_counts_a_subtree_as_recent_as_its_newest_use() {
        let now = Timestamp(60 * HOUR);
        // Unused for more than 30h: 4 ← 5 (last 4h in) and nothing of 1 ← 2 ← 3 (3 at 50h).
        let plan = plan_prune(
            &store(),
            now,
            PruneScope::UnusedFor(Duration::from_secs(30 * HOUR)),
            &BTreeSet::new(),
        );
        assert_eq!(plan.remove, keys(&[5, 4]));
        // Unused for more than 25h, 4 busy: 6 (unused for 20h) stays, and of 4 ← 5 only the
        // idle child goes.
        let plan = plan_prune(
            &store(),
            now,
            PruneScope::UnusedFor(Duration::from_secs(25 * HOUR)),
            &BTreeSet::from([key(4)]),
        );
        assert_eq!(plan.remove, keys(&[5]));
        assert_eq!(plan.spared_busy, keys(&[4]));
    }

    #[test]
    fn a_layer_whose_parent_is_gone_is_a_root() {
        let layers = vec![layer(2, Some(1), 100, 1)];
        let plan = plan_eviction(&layers, 0, &BTreeSet::new());
        assert_eq!(plan.remove, keys(&[2]));
    }
}
