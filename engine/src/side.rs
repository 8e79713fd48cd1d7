//! Side records: state a module above the estate keeps beside it, as
//! (table, key) → bytes. Sign-in keeps its TOTP secrets, recovery code hashes,
//! failure counters and lockouts, passkeys and event log here.
//!
//! The engine never reads them: they are in no snapshot, image, export, answer or
//! operation log. What the engine owns is how they are written: only by the writer,
//! inside a write ([`Engine::write_with`]), so a module's change, the entity changes
//! that go with it and its operation log record commit in one transaction, shared
//! with the writes beside it (group commit); and in a cluster they travel in that
//! write's log entry, so every node holds the same side records at the same revision
//! (a lockout set on one node holds on all). A write that changes side records takes
//! a revision like any other.
//!
//! [`Engine::write_with`]: crate::Engine::write_with

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::Store;

/// A table of side records: a name, unique among the modules of one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideTable(&'static str);

impl SideTable {
    pub const fn new(name: &'static str) -> SideTable {
        SideTable(name)
    }

    pub fn name(self) -> &'static str {
        self.0
    }
}

/// One side record: its key and its value.
pub type SideRecord = (Vec<u8>, Vec<u8>);

/// Side record changes not committed yet, by table and key: the new value, or `None`
/// for a removal.
pub(crate) type SideChanges = BTreeMap<(String, Vec<u8>), Option<Vec<u8>>>;

/// One side record written, as a commit and a cluster log entry carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SideWrite {
    pub(crate) table: String,
    pub(crate) key: Vec<u8>,
    /// The record after the write; `None`: removed.
    pub(crate) value: Option<Vec<u8>>,
}

pub(crate) fn into_writes(changes: SideChanges) -> Vec<SideWrite> {
    changes
        .into_iter()
        .map(|((table, key), value)| SideWrite { table, key, value })
        .collect()
}

/// The side records as one write sees them, and its changes to them: what the
/// store holds, under the changes of the writes before it in its group, under its
/// own. Reads see the write's own changes.
pub struct SideTxn<'a> {
    store: &'a Store,
    earlier: &'a SideChanges,
    changes: SideChanges,
}

impl<'a> SideTxn<'a> {
    pub(crate) fn new(store: &'a Store, earlier: &'a SideChanges) -> SideTxn<'a> {
        SideTxn {
            store,
            earlier,
            changes: SideChanges::new(),
        }
    }

    pub(crate) fn into_changes(self) -> SideChanges {
        self.changes
    }

    /// The pending value of a record, if this write or one before it changed it.
    fn pending(&self, table: SideTable, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        let slot = (table.0.to_owned(), key.to_vec());
        self.changes.get(&slot).or_else(|| self.earlier.get(&slot))
    }

    /// The record at `key`, if any.
    pub fn get(&self, table: SideTable, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending(table, key) {
            Some(value) => Ok(value.clone()),
            None => self.store.side_get(table.0, key),
        }
    }

    /// Writes the record at `key`.
    pub fn put(&mut self, table: SideTable, key: &[u8], value: Vec<u8>) {
        self.changes
            .insert((table.0.to_owned(), key.to_vec()), Some(value));
    }

    /// Removes the record at `key`; whether there was one.
    pub fn remove(&mut self, table: SideTable, key: &[u8]) -> Result<bool, StoreError> {
        let existed = self.get(table, key)?.is_some();
        if existed {
            self.changes
                .insert((table.0.to_owned(), key.to_vec()), None);
        }
        Ok(existed)
    }

    /// Every record of `table`, in key order.
    pub fn scan(&self, table: SideTable) -> Result<Vec<SideRecord>, StoreError> {
        let mut records: BTreeMap<Vec<u8>, Vec<u8>> = self
            .store
            .side_after(table.0, None, usize::MAX)?
            .into_iter()
            .collect();
        for changes in [self.earlier, &self.changes] {
            for ((name, key), value) in changes.range(table_range(table)) {
                debug_assert_eq!(name, table.0);
                match value {
                    Some(value) => records.insert(key.clone(), value.clone()),
                    None => records.remove(key),
                };
            }
        }
        Ok(records.into_iter().collect())
    }

    /// Keeps the records of `table` that `keep` says to keep and removes the rest;
    /// how many it removed.
    pub fn retain(
        &mut self,
        table: SideTable,
        mut keep: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        for (key, value) in self.scan(table)? {
            if !keep(&key, &value) {
                self.changes.insert((table.0.to_owned(), key), None);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The record with the greatest key in `table`, if any.
    pub fn last(&self, table: SideTable) -> Result<Option<SideRecord>, StoreError> {
        let pending_last = [self.earlier, &self.changes]
            .into_iter()
            .flat_map(|changes| changes.range(table_range(table)).next_back())
            .map(|((_, key), _)| key)
            .max()
            .cloned();
        let stored_last = self.store.side_last(table.0)?.map(|(key, _)| key);
        // A removal among the pending changes may hide the greatest stored key: fall
        // back to a scan, which sees through every change.
        let candidate = pending_last.into_iter().chain(stored_last).max();
        match candidate {
            Some(key) => match self.get(table, &key)? {
                Some(value) => Ok(Some((key, value))),
                None => Ok(self.scan(table)?.pop()),
            },
            None => Ok(None),
        }
    }
}

/// Every pending change of `table`, as a range of [`SideChanges`].
fn table_range(table: SideTable) -> std::ops::RangeInclusive<(String, Vec<u8>)> {
    // Keys are compared table name first: every key of the table is at or after the
    // empty key, and before the next name (the name with a NUL appended).
    let mut after = table.0.to_owned();
    after.push('\0');
    (table.0.to_owned(), Vec::new())..=(after, Vec::new())
}
