//! The derived indexes of assets a write dirtied: each asset's rule set, and which
//! rules are effective on it (`RuleEntry::objects`).
//!
//! Two things make this cheap at the scale of a million assets:
//!
//! - **Shared rule sets.** The rules reaching an asset are those naming it and those
//!   naming one of its nodes or their ancestors. Every asset that sits in the same
//!   nodes and is named by no rule of its own holds the same [`RuleSet`]: it is
//!   computed once per node set and shared.
//! - **Profiles.** Whether a rule can match some account and protocol on an asset
//!   depends on the asset's protocol names and account usernames only. Assets with the
//!   same lists share a profile, and a rule's effect is decided once per profile.
//!
//! A few dirty assets are settled asset by asset: each asset's old and new rules are
//! re-judged. Many (a rebuild, a bulk load, a rule on a high node) are settled rule by
//! rule: each rule's objects among the dirty assets are rebuilt from the nodes it
//! names, in one pass over a bitmap, instead of one bitmap probe per (asset, rule).

use std::collections::HashMap;

use roaring::RoaringBitmap;
use smallvec::SmallVec;

use super::Working;
use crate::model::Asset;
use crate::snapshot::{AssetCheck, RuleEntry, RuleSet, Snapshot};

/// From this many dirty assets on (or a sixteenth of all assets, whichever is fewer),
/// objects are settled rule by rule.
const RULE_BY_RULE_FROM: u64 = 4096;

/// An asset's profile: its protocol names and account usernames, as symbols in the
/// order the asset lists them.
type ProfileKey = (SmallVec<[u32; 4]>, SmallVec<[u32; 4]>);

/// What one settle computes once and reuses across the dirty assets.
#[derive(Default)]
pub(super) struct Derivation {
    /// The rules reaching a node set through its nodes and their ancestors.
    by_nodes: HashMap<SmallVec<[u32; 2]>, (RoaringBitmap, RuleSet)>,
    /// Profile → profile id.
    profile_ids: HashMap<ProfileKey, u32>,
    /// One asset per profile, to judge rules on.
    representatives: Vec<Asset>,
    /// Per rule, per profile: `None` not judged yet, else whether it is effective.
    effective: HashMap<u32, Vec<Option<bool>>>,
    /// Assets in each node's subtree, for the rule-by-rule pass.
    subtrees: HashMap<u32, RoaringBitmap>,
}

impl Derivation {
    /// The profile id of the asset whose check record is `check`; `record` unpacks the
    /// asset, only for the first of its profile.
    fn profile(&mut self, check: &AssetCheck, record: impl FnOnce() -> Asset) -> u32 {
        let key = (check.protocols().into(), check.accounts().into());
        if let Some(&id) = self.profile_ids.get(&key) {
            return id;
        }
        let id = u32::try_from(self.representatives.len()).expect("fewer than 2^32 profiles");
        self.representatives.push(record());
        self.profile_ids.insert(key, id);
        id
    }

    /// Whether `rule` can match some account and protocol on assets of `profile`.
    fn effective(&mut self, rule_index: u32, rule: &RuleEntry, profile: u32) -> bool {
        self.judge(rule_index, rule).effective(profile)
    }

    /// The verdicts of rule `rule_index`, to ask for many profiles in a row.
    fn judge<'a>(&'a mut self, rule_index: u32, rule: &'a RuleEntry) -> Judge<'a> {
        Judge {
            rule,
            verdicts: self.effective.entry(rule_index).or_default(),
            representatives: &self.representatives,
        }
    }

    /// The rules reaching assets in `nodes` through them and their ancestors.
    fn node_rules(&mut self, snap: &Snapshot, nodes: &[u32]) -> &(RoaringBitmap, RuleSet) {
        let mut key: SmallVec<[u32; 2]> = nodes.iter().copied().collect();
        key.sort_unstable();
        key.dedup();
        self.by_nodes.entry(key).or_insert_with_key(|nodes| {
            let mut rules = RoaringBitmap::new();
            let mut seen = SmallVec::<[u32; 16]>::new();
            for &node in nodes {
                for ancestor in snap.node_ancestry(node) {
                    if seen.contains(&ancestor) {
                        break;
                    }
                    seen.push(ancestor);
                    if let Some(entry) = snap.node_entry(ancestor) {
                        rules |= &entry.rules;
                    }
                }
            }
            let set = RuleSet::from_bitmap(&rules);
            (rules, set)
        })
    }

    fn subtree(&mut self, snap: &Snapshot, node: u32) -> &RoaringBitmap {
        self.subtrees
            .entry(node)
            .or_insert_with(|| snap.subtree_assets(node))
    }
}

/// One rule's verdicts per profile, judged on first demand.
struct Judge<'a> {
    rule: &'a RuleEntry,
    verdicts: &'a mut Vec<Option<bool>>,
    representatives: &'a [Asset],
}

impl Judge<'_> {
    fn effective(&mut self, profile: u32) -> bool {
        let slot = profile as usize;
        if self.verdicts.len() <= slot {
            self.verdicts
                .resize(self.representatives.len().max(slot + 1), None);
        }
        *self.verdicts[slot]
            .get_or_insert_with(|| self.rule.effective_on(&self.representatives[slot]))
    }
}

impl Working {
    /// Recomputes the rule sets of `dirty` assets and the objects of every rule whose
    /// verdict on one of them may have changed.
    pub(super) fn settle_assets(&mut self, dirty: &RoaringBitmap) {
        let mut derivation = Derivation::default();
        let live = self.snap.counts.assets.max(1);
        if dirty.len() >= RULE_BY_RULE_FROM.min(live.div_ceil(16)).max(2) {
            self.settle_rule_by_rule(dirty, &mut derivation);
        } else {
            for asset in dirty {
                self.settle_one_asset(asset, &mut derivation);
            }
        }
    }

    /// The rule set `asset` should hold: shared with its node set when no rule names
    /// the asset itself.
    fn derived_rule_set(&self, index: u32, derivation: &mut Derivation) -> Option<RuleSet> {
        let entry = self.snap.asset_entry(index)?;
        let (by_nodes, shared) = derivation.node_rules(&self.snap, &entry.nodes);
        if entry.direct_rules.is_empty() {
            return Some(shared.clone());
        }
        Some(RuleSet::from_bitmap(&(by_nodes | entry.direct_rules.get())))
    }

    /// The record of live asset `index`.
    fn asset_record(&self, index: u32) -> Asset {
        let entry = self.snap.asset_entry(index);
        entry
            .expect("INVARIANT: a dirty asset with a rule set is live")
            .record
            .unpack()
    }

    fn settle_one_asset(&mut self, index: u32, derivation: &mut Derivation) {
        let Some(rules) = self.derived_rule_set(index, derivation) else {
            return;
        };
        let check = self.snap.asset_check(index).expect("beside");
        let profile = derivation.profile(check, || self.asset_record(index));
        let old = check.rules.clone();
        if !old.same_allocation(&rules) {
            self.asset_check_mut(index).rules = rules.clone();
        }
        let affected = old.to_bitmap() | rules.to_bitmap();
        for rule in &affected {
            let Some(rule_entry) = self.snap.rule_entry(rule) else {
                continue;
            };
            let effective = rules.contains(rule) && derivation.effective(rule, rule_entry, profile);
            if rule_entry.objects.contains(index) != effective {
                let objects = &mut self.rule_mut(rule).objects;
                if effective {
                    objects.insert(index);
                } else {
                    objects.remove(index);
                }
            }
        }
    }

    fn settle_rule_by_rule(&mut self, dirty: &RoaringBitmap, derivation: &mut Derivation) {
        // Rule sets first, and every rule a dirty asset had or now has.
        let mut touched = RoaringBitmap::new();
        let mut seen_sets = std::collections::HashSet::new();
        // Each dirty asset's profile, by dense index: rules judge their candidates in
        // ascending order, so this is read front to back (a hash map here cost a
        // fifth of a rebuild in cache misses).
        let mut profiles: Vec<u32> = vec![u32::MAX; self.snap.assets.len()];
        let mut live = RoaringBitmap::new();
        for index in dirty {
            let Some(rules) = self.derived_rule_set(index, derivation) else {
                continue;
            };
            live.insert(index);
            let check = self.snap.asset_check(index).expect("beside");
            profiles[index as usize] = derivation.profile(check, || self.asset_record(index));
            let held = &check.rules;
            for set in [held, &rules] {
                if seen_sets.insert(set.address()) {
                    touched.extend(set.iter());
                }
            }
            if !held.same_allocation(&rules) {
                self.asset_check_mut(index).rules = rules;
            }
        }
        for rule in &touched {
            let Some(entry) = self.snap.rule_entry(rule) else {
                continue;
            };
            let mut candidates: RoaringBitmap = entry.assets.iter().copied().collect();
            let nodes = entry.nodes.clone();
            for &node in nodes.iter() {
                candidates |= derivation.subtree(&self.snap, node);
            }
            candidates &= &live;
            let entry = self.snap.rule_entry(rule).expect("checked above");
            let mut judged = Vec::with_capacity(candidates.len() as usize);
            let mut judge = derivation.judge(rule, entry);
            for asset in &candidates {
                if judge.effective(profiles[asset as usize]) {
                    judged.push(asset);
                }
            }
            let judged =
                RoaringBitmap::from_sorted_iter(judged).expect("INVARIANT: bitmaps iterate sorted");
            let mut objects = &entry.objects - dirty;
            objects |= judged;
            if objects != entry.objects {
                self.rule_mut(rule).objects = objects;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_equal_lists_of_names() {
        let asset = |protocols: &[&str], accounts: &[&str]| {
            let text = serde_json::json!({
                "id": crate::model::Id::random(),
                "name": "a", "address": "", "platform": "linux",
                "protocols": protocols, "nodes": [], "active": true,
                "accounts": accounts.iter().map(|u| serde_json::json!({
                    "id": crate::model::Id::random(), "username": u,
                    "privileged": false, "secret_kind": "password"})).collect::<Vec<_>>(),
                "description": "", "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z", "created_by": "t"
            });
            serde_json::from_value::<Asset>(text).expect("an asset")
        };
        let mut symbols = crate::snapshot::Symbols::new();
        let mut derivation = Derivation::default();
        let mut profile = |asset: Asset| {
            let check = AssetCheck::of(&asset, RuleSet::default(), &mut symbols);
            derivation.profile(&check, || asset)
        };
        let a = profile(asset(&["ssh/22"], &["root"]));
        let b = profile(asset(&["ssh/2222"], &["root"]));
        let c = profile(asset(&["ssh/22"], &["Root"]));
        let d = profile(asset(&["ssh/22", "rdp/3389"], &["root"]));
        assert_eq!(a, b, "ports do not matter to a rule");
        assert_ne!(a, c, "account names are case-sensitive");
        assert_ne!(a, d);
        assert_eq!(derivation.representatives.len(), 3);
    }
}
