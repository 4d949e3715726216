//! The webhook outbox: events waiting for an endpoint, in column family `outbox`, keyed
//! `endpoint ‖ 0x00 ‖ seq (u64 BE)` so an endpoint's events are contiguous and in order.
//!
//! Every append goes through the writer thread, which numbers the events in commit order: those of a
//! reception or a delivery outcome ride in the same `WriteBatch` as the change they report
//! ([`OutboxEvent`]s in an insertion or [`crate::UpdateExtras`]), the others are a batch entry of
//! their own ([`Spool::outbox_append`]). After each commit the [`OutboxObserver`] hears the last
//! number per endpoint. A delivered batch is removed with one range delete.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::db::{self, CF_OUTBOX};
use crate::error::SpoolError;
use crate::spool::Spool;

/// One event for one endpoint, numbered by the writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The endpoint's id.
    pub endpoint: String,
    /// The event (JSON).
    pub event: Vec<u8>,
}

/// Told, on the writer thread after a commit, the last sequence number given to an endpoint's events
/// in it. Keep it cheap.
pub trait OutboxObserver: Send + Sync + 'static {
    /// `endpoint`'s events up to `last_seq` are stored.
    fn appended(&self, endpoint: &str, last_seq: u64);
}

/// The next sequence number of each endpoint (the writer's; read from the outbox on first use).
#[derive(Default)]
pub(crate) struct Sequences {
    /// Next number by endpoint.
    next: std::collections::HashMap<String, u64>,
}

impl Sequences {
    /// Numbers `endpoint`'s next events from `next_seq` on (or later, if it is already further).
    pub(crate) fn seed(&mut self, endpoint: &str, next_seq: u64) {
        let next = self.next.entry(endpoint.to_string()).or_insert(next_seq);
        *next = (*next).max(next_seq);
    }

    /// Puts `events` into `batch` with their numbers; returns the last number per endpoint.
    pub(crate) fn put(
        &mut self,
        db: &rocksdb::DB,
        batch: &mut WriteBatch,
        events: &[OutboxEvent],
        last: &mut Vec<(String, u64)>,
    ) -> Result<(), SpoolError> {
        if events.is_empty() {
            return Ok(());
        }
        let cf = db::cf(db, CF_OUTBOX)?;
        for event in events {
            let next = match self.next.get_mut(&event.endpoint) {
                Some(next) => next,
                None => {
                    let start = last_stored(db, &event.endpoint)?.map_or(0, |seq| seq + 1);
                    self.next.entry(event.endpoint.clone()).or_insert(start)
                }
            };
            let seq = *next;
            *next += 1;
            batch.put_cf(cf, key(&event.endpoint, seq), &event.event);
            match last.iter_mut().find(|(e, _)| *e == event.endpoint) {
                Some(entry) => entry.1 = seq,
                None => last.push((event.endpoint.clone(), seq)),
            }
        }
        Ok(())
    }
}

/// The last stored sequence number of `endpoint`.
fn last_stored(db: &rocksdb::DB, endpoint: &str) -> Result<Option<u64>, SpoolError> {
    let cf = db::cf(db, CF_OUTBOX)?;
    let end = key(endpoint, u64::MAX);
    let prefix = prefix(endpoint);
    if let Some(item) = db
        .iterator_cf(cf, IteratorMode::From(&end, Direction::Reverse))
        .next()
    {
        let (k, _) = item.map_err(SpoolError::from_rocksdb)?;
        if k.starts_with(&prefix) {
            return Ok(k
                .get(prefix.len()..)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_be_bytes));
        }
    }
    Ok(None)
}

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
    /// Appends events that belong to no spool change (written by the writer in its next batch, without
    /// an fsync of their own; this does not wait). The observer hears of them after the commit.
    pub fn outbox_append(&self, events: Vec<OutboxEvent>) -> Result<(), SpoolError> {
        if events.is_empty() {
            return Ok(());
        }
        self.submit_detached(crate::writer::Op::Outbox(events))
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
        let last = last_stored(self.db(), endpoint)?.unwrap_or(first);
        Ok(Some((first, last)))
    }

    /// Numbers `endpoint`'s next events from `next_seq` on: the webhooks say where each endpoint's
    /// outbox stands when they load (before its dispatcher removes anything), so numbering never goes
    /// back below what was already delivered.
    pub fn outbox_seed(&self, endpoint: &str, next_seq: u64) {
        self.sequences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .seed(endpoint, next_seq);
    }

    /// Sets who hears of appended outbox events (the webhooks).
    pub fn set_outbox_observer(&self, observer: std::sync::Arc<dyn OutboxObserver>) {
        *self
            .outbox_observer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(observer);
    }

    /// Removes every event of `endpoint` (it was deleted).
    pub fn outbox_clear(&self, endpoint: &str) -> Result<(), SpoolError> {
        self.outbox_remove_through(endpoint, u64::MAX)
    }
}
