//! Where a snapshot's memory goes, structure by structure (for the `memory` bench
//! binary, and for anyone asking why a process is the size it is).

use std::collections::HashSet;
use std::mem::size_of;

use roaring::RoaringBitmap;

use super::Snapshot;

/// Approximate heap bytes per structure: capacities and element sizes, not the
/// allocator's own overhead. Shared allocations (rule sets of assets in the same
/// nodes, chunks shared with an older snapshot) are counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint(pub Vec<(&'static str, usize)>);

impl Footprint {
    pub fn total(&self) -> usize {
        self.0.iter().map(|(_, bytes)| bytes).sum()
    }
}

impl std::fmt::Display for Footprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, bytes) in &self.0 {
            writeln!(f, "  {name:<44} {:>10.1} MiB", *bytes as f64 / 1048576.0)?;
        }
        write!(
            f,
            "  {:<44} {:>10.1} MiB",
            "total",
            self.total() as f64 / 1048576.0
        )
    }
}

fn bitmap(bitmap: &RoaringBitmap) -> usize {
    bitmap.serialized_size()
}

impl Snapshot {
    /// Bytes of user and asset records read in place from the mapped image the
    /// snapshot was opened from: not heap (the footprint leaves them out), and resident
    /// only while the page cache holds them and something reads them.
    pub fn mapped_record_bytes(&self) -> usize {
        let users = self.users.iter().flatten().map(|e| e.record.mapped_len());
        let assets = self.assets.iter().flatten().map(|e| e.record.mapped_len());
        users.chain(assets).sum()
    }

    /// Bytes of the id map, name indexes and account index read in place from the
    /// mapped image the snapshot was opened from (until writes copy their shards).
    pub fn mapped_table_bytes(&self) -> usize {
        self.ids.mapped_bytes()
            + self.account_ids.mapped_bytes()
            + self.user_names.mapped_bytes()
            + self.user_emails.mapped_bytes()
            + self.asset_names.mapped_bytes()
    }

    /// Approximate heap bytes per structure.
    pub fn footprint(&self) -> Footprint {
        let mut parts = Vec::new();
        let slots = |len: usize, item: usize| len * item;
        let mut user_entries = slots(self.users.len(), size_of::<usize>());
        let mut user_checks = slots(self.user_checks.len(), size_of::<super::UserCheck>());
        let mut user_records = 0;
        for check in self.user_checks.iter() {
            user_checks += usize::from(check.rules.spilled()) * check.rules.len() * 4
                + check.rule_until.len() * 16;
        }
        for entry in self.users.iter().flatten() {
            user_entries += size_of::<super::UserEntry>()
                + bitmap(entry.direct_rules.get())
                + usize::from(entry.direct_groups.spilled())
                    * entry.direct_groups.capacity()
                    * size_of::<super::GroupLink>();
            user_records += entry.record.heap_len();
        }
        parts.push(("users: entries and link bitmaps", user_entries));
        parts.push(("users: check records with their rule sets", user_checks));
        parts.push(("users: records (packed, on the heap)", user_records));
        let mut group_bytes = slots(self.groups.len(), size_of::<usize>());
        for entry in self.groups.iter().flatten() {
            group_bytes += size_of::<super::GroupEntry>()
                + bitmap(entry.rules.get())
                + size_of::<crate::model::Group>()
                + entry.memberships.len() * size_of::<super::Member>();
        }
        parts.push(("groups (records, memberships)", group_bytes));
        let mut asset_entries = slots(self.assets.len(), size_of::<usize>());
        let mut asset_checks = slots(self.asset_checks.len(), size_of::<super::AssetCheck>());
        let mut asset_records = 0;
        let mut rule_sets = 0;
        let mut seen = HashSet::new();
        for check in self.asset_checks.iter() {
            asset_checks += check.names_on_heap();
            if seen.insert(check.rules.address()) {
                rule_sets += check.rules.iter().count() * 4 + 16;
            }
        }
        for entry in self.assets.iter().flatten() {
            asset_entries += size_of::<super::AssetEntry>() + bitmap(entry.direct_rules.get());
            asset_records += entry.record.heap_len();
        }
        parts.push(("assets: entries", asset_entries));
        parts.push(("assets: check records", asset_checks));
        parts.push(("assets: records (packed, on the heap)", asset_records));
        parts.push((
            "assets: rule sets (shared by node set, counted once)",
            rule_sets,
        ));
        let mut objects = 0;
        let mut rule_bytes = slots(self.rules.len(), size_of::<usize>());
        for entry in self.rules.iter().flatten() {
            objects += bitmap(&entry.objects);
            rule_bytes += size_of::<super::RuleEntry>() + size_of::<crate::model::Rule>();
        }
        parts.push(("rules: records", rule_bytes));
        parts.push(("rules: objects (assets each can grant)", objects));
        let mut node_bytes = 0;
        for entry in self.nodes.iter().flatten() {
            node_bytes +=
                size_of::<super::NodeEntry>() + bitmap(&entry.assets) + bitmap(&entry.rules);
        }
        parts.push(("nodes", node_bytes));
        parts.push(("id → slot map", self.ids.heap_bytes()));
        parts.push((
            "name indexes (users, emails, groups, assets, rules, roles, tokens)",
            self.user_names.heap_bytes()
                + self.user_emails.heap_bytes()
                + self.group_names.heap_bytes()
                + self.asset_names.heap_bytes()
                + self.rule_names.heap_bytes()
                + self.role_names.heap_bytes()
                + self.token_names.heap_bytes(),
        ));
        parts.push((
            "account ids, token hashes",
            self.account_ids.heap_bytes() + self.token_hashes.heap_bytes(),
        ));
        parts.push((
            "symbols (protocol names, account usernames)",
            self.symbols.heap_bytes(),
        ));
        Footprint(parts)
    }
}
