//! The webhook outbox: events waiting for an endpoint, in column family `outbox`, keyed
//! `endpoint ‖ 0x00 ‖ seq (u64 BE)` so an endpoint's events are contiguous and in order. Appends are
//! WAL writes without an fsync of their own (like envelope updates); a delivered batch is removed with
//! one range delete.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::db::{self, CF_OUTBOX};
use crate::error::SpoolError;
use crate::spool::Spool;

/// The key of event `seq` of `endpoint`.
fn key(endpoint: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(endpoint.len() + 9);
    key.extend_from_slice(endpoint.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The prefix of `endpoint`'s keys.
fn prefix(endpoint: &str) -> Vec<u8> {
    let mut prefix = endpoint.as_bytes().to_vec();
    prefix.push(0);
    prefix
}

impl Spool {
    /// Appends events `(endpoint, seq, event)` (one write for all).
    pub fn outbox_append(&self, events: &[(String, u64, Vec<u8>)]) -> Result<(), SpoolError> {
        if events.is_empty() {
            return Ok(());
        }
        let db = self.db();
        let cf = db::cf(db, CF_OUTBOX)?;
        let mut batch = WriteBatch::default();
        for (endpoint, seq, event) in events {
            batch.put_cf(cf, key(endpoint, *seq), event);
        }
        db.write(batch).map_err(SpoolError::from_rocksdb)
    }

    /// Up to `max` events of `endpoint` from `from_seq` on, oldest first.
    pub fn outbox_read(
        &self,
        endpoint: &str,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let db = self.db();
        let cf = db::cf(db, CF_OUTBOX)?;
        let prefix = prefix(endpoint);
        let start = key(endpoint, from_seq);
        let mut found = Vec::new();
        for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
            let (k, value) = item.map_err(SpoolError::from_rocksdb)?;
            if found.len() >= max || !k.starts_with(&prefix) {
                break;
            }
            let Some(seq) = k.get(prefix.len()..).and_then(|s| <[u8; 8]>::try_from(s).ok()) else {
                continue;
            };
            found.push((u64::from_be_bytes(seq), value.into_vec()));
        }
        Ok(found)
    }

    /// Removes `endpoint`'s events up to and including `through_seq`.
    pub fn outbox_remove_through(&self, endpoint: &str, through_seq: u64) -> Result<(), SpoolError> {
        let db = self.db();
        let cf = db::cf(db, CF_OUTBOX)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, key(endpoint, 0), key(endpoint, through_seq.saturating_add(1)));
        if through_seq == u64::MAX {
            batch.delete_cf(cf, key(endpoint, u64::MAX));
        }
        db.write(batch).map_err(SpoolError::from_rocksdb)
    }

    /// The first and last waiting sequence numbers of `endpoint` (None when nothing waits).
    pub fn outbox_bounds(&self, endpoint: &str) -> Result<Option<(u64, u64)>, SpoolError> {
        let first = self.outbox_read(endpoint, 0, 1)?.first().map(|(seq, _)| *seq);
        let Some(first) = first else {
            return Ok(None);
        };
        let db = self.db();
        let cf = db::cf(db, CF_OUTBOX)?;
        let end = key(endpoint, u64::MAX);
        let mut last = first;
        if let Some(item) = db
            .iterator_cf(cf, IteratorMode::From(&end, Direction::Reverse))
            .next()
        {
            let (k, _) = item.map_err(SpoolError::from_rocksdb)?;
            let prefix = prefix(endpoint);
            if k.starts_with(&prefix)
                && let Some(seq) = k.get(prefix.len()..).and_then(|s| <[u8; 8]>::try_from(s).ok())
            {
                last = u64::from_be_bytes(seq);
            }
        }
        Ok(Some((first, last)))
    }

    /// Removes every event of `endpoint` (it was deleted).
    pub fn outbox_clear(&self, endpoint: &str) -> Result<(), SpoolError> {
        self.outbox_remove_through(endpoint, u64::MAX)
    }
}
