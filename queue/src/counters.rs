//! Counters: signed 64-bit totals under string keys (chosen by the engine, e.g. a tenant's usage per
//! day or a campaign's outcomes), in column family `counters`.
//!
//! An increment is a RocksDB *merge* (the associative operator [`merge_add`] adds little-endian
//! `i64`s), a blind write: it needs no read, so it rides in the same `WriteBatch` as the state change it
//! counts ([`Counts`] given to [`Spool::enqueue_with_extras`], [`Spool::update_envelope_with`], ...).
//! A crash therefore never leaves a count without its change or a change without its count: the
//! totals are exact across restart and kill -9.

use rocksdb::{Direction, IteratorMode, MergeOperands, WriteBatch};

use crate::db::{self, CF_COUNTERS};
use crate::error::SpoolError;
use crate::spool::Spool;

/// Increments to write together with a change (empty by default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `(key, amount)` pairs; a key may appear more than once (the amounts add up).
    entries: Vec<(String, i64)>,
}

impl Counts {
    /// No increments.
    pub fn new() -> Counts {
        Counts::default()
    }

    /// Adds `amount` to counter `key`.
    pub fn add(&mut self, key: impl Into<String>, amount: i64) {
        if amount != 0 {
            self.entries.push((key.into(), amount));
        }
    }

    /// Appends every increment of `other`.
    pub fn extend(&mut self, other: Counts) {
        self.entries.extend(other.entries);
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The increments.
    pub fn entries(&self) -> &[(String, i64)] {
        &self.entries
    }

    /// Adds the merges to a batch.
    pub(crate) fn put(&self, batch: &mut WriteBatch, cf: &impl rocksdb::AsColumnFamilyRef) {
        for (key, amount) in &self.entries {
            batch.merge_cf(cf, key.as_bytes(), amount.to_le_bytes());
        }
    }

    /// Bytes the increments add to a batch.
    pub(crate) fn bytes(&self) -> usize {
        self.entries.iter().map(|(key, _)| key.len() + 8).sum()
    }
}

/// A stored value as a number (a value that is not 8 bytes counts as 0).
fn value_of(bytes: &[u8]) -> i64 {
    <[u8; 8]>::try_from(bytes).map_or(0, i64::from_le_bytes)
}

/// The merge operator of column family `counters`: the sum of the existing value and every operand.
pub(crate) fn merge_add(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut total = existing.map_or(0, value_of);
    for operand in operands {
        total = total.wrapping_add(value_of(operand));
    }
    Some(total.to_le_bytes().to_vec())
}

impl Spool {
    /// The value of counter `key` (0 when it was never incremented).
    pub fn counter(&self, key: &str) -> Result<i64, SpoolError> {
        let db = self.db();
        let value = db
            .get_pinned_cf(db::cf(db, CF_COUNTERS)?, key.as_bytes())
            .map_err(SpoolError::from_rocksdb)?;
        Ok(value.map_or(0, |bytes| value_of(&bytes)))
    }

    /// Every counter whose key starts with `prefix`, in key order.
    pub fn counters(&self, prefix: &str) -> Result<Vec<(String, i64)>, SpoolError> {
        let db = self.db();
        let cf = db::cf(db, CF_COUNTERS)?;
        let mode = IteratorMode::From(prefix.as_bytes(), Direction::Forward);
        let mut found = Vec::new();
        for item in db.iterator_cf(cf, mode) {
            let (key, value) = item.map_err(SpoolError::from_rocksdb)?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let key = String::from_utf8(key.into_vec())
                .map_err(|_| SpoolError::corrupt(b"counters", "a counter key is not UTF-8"))?;
            found.push((key, value_of(&value)));
        }
        Ok(found)
    }

    /// The first counter key at or after `from` that starts with `prefix`, if any: a seek, so that the
    /// groups of a key space (e.g. the tenants of `u/TENANT/...`) are found without reading them all.
    pub fn first_counter_key(&self, from: &str, prefix: &str) -> Result<Option<String>, SpoolError> {
        let db = self.db();
        let cf = db::cf(db, CF_COUNTERS)?;
        let mode = IteratorMode::From(from.as_bytes(), Direction::Forward);
        let Some(item) = db.iterator_cf(cf, mode).next() else {
            return Ok(None);
        };
        let (key, _) = item.map_err(SpoolError::from_rocksdb)?;
        if !key.starts_with(prefix.as_bytes()) {
            return Ok(None);
        }
        let key = String::from_utf8(key.into_vec())
            .map_err(|_| SpoolError::corrupt(b"counters", "a counter key is not UTF-8"))?;
        Ok(Some(key))
    }

    /// Adds increments that belong to no queued message (a refused recipient, an unsubscription): one
    /// write of its own, through the WAL without an fsync of its own.
    pub fn add_counts(&self, counts: &Counts) -> Result<(), SpoolError> {
        if counts.is_empty() {
            return Ok(());
        }
        let db = self.db();
        let mut batch = WriteBatch::default();
        counts.put(&mut batch, db::cf(db, CF_COUNTERS)?);
        db.write(batch).map_err(SpoolError::from_rocksdb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_add_up_and_bad_values_count_as_zero() {
        assert_eq!(value_of(&5i64.to_le_bytes()), 5);
        assert_eq!(value_of(&(-3i64).to_le_bytes()), -3);
        assert_eq!(value_of(b"abc"), 0);
        let mut counts = Counts::new();
        counts.add("a", 2);
        counts.add("a", 0);
        counts.add("b", -1);
        assert_eq!(counts.entries().len(), 2);
        assert_eq!(counts.bytes(), 2 + 16);
    }
}
