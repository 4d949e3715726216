//! What replication of the suppression lists (`[cluster]`) needs of the spool: a journal of this
//! node's changes, the application of other nodes' changes, a walk over every list, and stored
//! secrets that are set rather than generated.
//!
//! The journal lives in CF `meta` under `journal/suppression/` + the entry's key (`tenant \0
//! address`): one pending change per address (a newer change replaces an older one), written in the
//! same synced `WriteBatch` as the change itself, so a crash never keeps one without the other. It is
//! off until [`Spool::journal_suppressions`] turns it on (the engine does so only with `[cluster]`);
//! the sync task reads it ([`Spool::pending_suppression_changes`]) and removes what Redis took
//! ([`Spool::settle_suppression_change`]).

use std::sync::PoisonError;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::db::{self, CF_META, CF_SUPPRESSIONS};
use crate::error::SpoolError;
use crate::spool::Spool;
use crate::suppression::{SuppressionEntry, decode, encode, key, normalise, synced};

/// Called after each journaled change (wakes the sync task).
pub type JournalObserver = Box<dyn Fn() + Send + Sync>;

/// Prefix of the journal's keys in CF `meta`.
const JOURNAL_PREFIX: &[u8] = b"journal/suppression/";

/// One change of a suppression list: an address added (with its entry) or removed, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionChange {
    /// The tenant.
    pub tenant: String,
    /// The address, lowercased (the form it is stored under).
    pub address: String,
    /// When the change was made, unix milliseconds (replication keeps the latest change).
    pub at_ms: u64,
    /// The entry after the change; `None`: removed.
    pub entry: Option<SuppressionEntry>,
}

/// The journal key of a suppression key.
fn journal_key(key: &[u8]) -> Vec<u8> {
    let mut journal = JOURNAL_PREFIX.to_vec();
    journal.extend_from_slice(key);
    journal
}

/// The stored form of a journaled change.
fn encode_change(change: &SuppressionChange) -> Result<Vec<u8>, SpoolError> {
    serde_json::to_vec(change).map_err(|error| SpoolError::Storage(format!("journal entry: {error}")))
}

impl Spool {
    /// Turns the journal on: from now on every suppression change is journaled, and `observer` is
    /// called after each. False (and nothing changes) if it was already on.
    pub fn journal_suppressions(&self, observer: JournalObserver) -> bool {
        self.suppression_journal.set(observer).is_ok()
    }

    /// Writes (`entry`) or deletes (`None`) the entry under `key`, journaled when the journal is on,
    /// synced. The caller holds the admin lock.
    pub(crate) fn write_suppression(
        &self,
        tenant: &str,
        key: &[u8],
        entry: Option<&SuppressionEntry>,
        at_ms: u64,
    ) -> Result<(), SpoolError> {
        let db = self.db();
        let mut batch = WriteBatch::default();
        let cf = db::cf(db, CF_SUPPRESSIONS)?;
        match entry {
            Some(entry) => batch.put_cf(cf, key, encode(entry)),
            None => batch.delete_cf(cf, key),
        }
        let observer = self.suppression_journal.get();
        if observer.is_some() {
            let address = String::from_utf8_lossy(&key[tenant.len() + 1..]).into_owned();
            let change = SuppressionChange {
                tenant: tenant.to_owned(),
                entry: entry.map(|entry| SuppressionEntry {
                    address: address.clone(),
                    ..entry.clone()
                }),
                address,
                at_ms,
            };
            batch.put_cf(db::cf(db, CF_META)?, journal_key(key), encode_change(&change)?);
        }
        db.write_opt(batch, &synced()).map_err(SpoolError::from_rocksdb)?;
        if let Some(observer) = observer {
            observer();
        }
        Ok(())
    }

    /// Up to `limit` journaled changes, in key order.
    pub fn pending_suppression_changes(&self, limit: usize) -> Result<Vec<SuppressionChange>, SpoolError> {
        let db = self.db();
        let mut upper = JOURNAL_PREFIX.to_vec();
        if let Some(last) = upper.last_mut() {
            *last += 1;
        }
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(upper);
        let mode = IteratorMode::From(JOURNAL_PREFIX, Direction::Forward);
        let mut changes = Vec::new();
        for item in db.iterator_cf_opt(db::cf(db, CF_META)?, read, mode).take(limit) {
            let (key, value) = item.map_err(SpoolError::from_rocksdb)?;
            let change = serde_json::from_slice(&value)
                .map_err(|error| SpoolError::corrupt(&key, format!("journal entry: {error}")))?;
            changes.push(change);
        }
        Ok(changes)
    }

    /// Removes `change` from the journal, unless a newer change of the address replaced it meanwhile;
    /// whether it was removed.
    pub fn settle_suppression_change(&self, change: &SuppressionChange) -> Result<bool, SpoolError> {
        let db = self.db();
        let cf = db::cf(db, CF_META)?;
        let journal = journal_key(&key(&change.tenant, &change.address)?);
        let _guard = self.admin_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let current = db.get_pinned_cf(cf, &journal).map_err(SpoolError::from_rocksdb)?;
        if current.as_deref() != Some(&encode_change(change)?[..]) {
            return Ok(false);
        }
        db.delete_cf_opt(cf, &journal, &synced())
            .map_err(SpoolError::from_rocksdb)?;
        Ok(true)
    }

    /// Applies another node's `change` to the local list (not journaled, no observer call). When this
    /// node has a pending change of the same address, `local_wins(pending)` decides: true keeps the
    /// local state (its change will be pushed), false applies `change` and drops the pending one.
    /// Returns whether the local list changed.
    pub fn apply_suppression_change(
        &self,
        change: &SuppressionChange,
        local_wins: impl FnOnce(&SuppressionChange) -> bool,
    ) -> Result<bool, SpoolError> {
        let db = self.db();
        let (cf, meta) = (db::cf(db, CF_SUPPRESSIONS)?, db::cf(db, CF_META)?);
        let key = key(&change.tenant, &change.address)?;
        let journal = journal_key(&key);
        let _guard = self.admin_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = db
            .get_pinned_cf(meta, &journal)
            .map_err(SpoolError::from_rocksdb)?;
        let mut batch = WriteBatch::default();
        if let Some(pending) = pending {
            let pending: SuppressionChange = serde_json::from_slice(&pending)
                .map_err(|error| SpoolError::corrupt(&journal, format!("journal entry: {error}")))?;
            if local_wins(&pending) {
                return Ok(false);
            }
            batch.delete_cf(meta, &journal);
        }
        let local = db.get_pinned_cf(cf, &key).map_err(SpoolError::from_rocksdb)?;
        let local = local.map(|value| decode(&key, &value)).transpose()?;
        let wanted = change.entry.as_ref().map(|entry| SuppressionEntry {
            address: normalise(&change.address),
            ..entry.clone()
        });
        let differs = local != wanted;
        if differs {
            match &wanted {
                Some(entry) => batch.put_cf(cf, &key, encode(entry)),
                None => batch.delete_cf(cf, &key),
            }
        }
        if !batch.is_empty() {
            db.write_opt(batch, &synced()).map_err(SpoolError::from_rocksdb)?;
        }
        Ok(differs)
    }

    /// Entries of every tenant in key order (tenant, then address), after `after` = (tenant,
    /// address) (exclusive), at most `limit`.
    pub fn all_suppressions(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, SuppressionEntry)>, SpoolError> {
        let db = self.db();
        let start = after.map(|(tenant, address)| key(tenant, address)).transpose()?;
        let mode = match &start {
            Some(start) => IteratorMode::From(start, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut entries = Vec::with_capacity(limit.min(1024));
        for item in db.iterator_cf(db::cf(db, CF_SUPPRESSIONS)?, mode) {
            if entries.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(SpoolError::from_rocksdb)?;
            if start.as_deref() == Some(&key[..]) {
                continue;
            }
            let entry = decode(&key, &value)?;
            let nul = key.iter().position(|&b| b == 0).unwrap_or(0);
            entries.push((String::from_utf8_lossy(&key[..nul]).into_owned(), entry));
        }
        Ok(entries)
    }

    /// The secret stored under `name` in CF `meta`, if any (never generates one).
    pub fn stored_secret(&self, name: &str) -> Result<Option<[u8; 32]>, SpoolError> {
        let db = self.db();
        let value = db
            .get_pinned_cf(db::cf(db, CF_META)?, name.as_bytes())
            .map_err(SpoolError::from_rocksdb)?;
        value
            .map(|value| {
                <[u8; 32]>::try_from(&value[..])
                    .map_err(|_| SpoolError::corrupt(name.as_bytes(), "secret is not 32 bytes"))
            })
            .transpose()
    }

    /// Stores (or replaces) the secret `name`, synced.
    pub fn set_secret(&self, name: &str, secret: [u8; 32]) -> Result<(), SpoolError> {
        let db = self.db();
        let _guard = self.admin_lock.lock().unwrap_or_else(PoisonError::into_inner);
        db.put_cf_opt(db::cf(db, CF_META)?, name.as_bytes(), secret, &synced())
            .map_err(SpoolError::from_rocksdb)
    }
}
