//! A read-only view of a spool, for the CLI (`penguin-mta queue ls/summary`).

use std::path::Path;

use rocksdb::{DB, IteratorMode};

use crate::codec;
use crate::db::{self, CF_BODIES, CF_ENVELOPES};
use crate::envelope::{Envelope, QueueSummary};
use crate::error::SpoolError;
use crate::id::MessageId;

/// The baseline of the recovery benchmark: opens the spool read-only and iterates every envelope record
/// (keys and values touched, nothing decoded) as fast as RocksDB allows. Returns the time taken
/// (open included) and the number of records.
pub fn raw_scan(path: &Path) -> Result<(std::time::Duration, u64), SpoolError> {
    let started = std::time::Instant::now();
    let db = db::open_read_only(path)?;
    let cf = db::cf(&db, CF_ENVELOPES)?;
    let mut read = rocksdb::ReadOptions::default();
    read.fill_cache(false);
    read.set_readahead_size(4 * 1024 * 1024);
    let mut iter = db.raw_iterator_cf_opt(cf, read);
    iter.seek_to_first();
    let (mut count, mut checksum) = (0u64, 0u64);
    while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
        count += 1;
        checksum = checksum.wrapping_add(u64::from(key.last().copied().unwrap_or(0)) + value.len() as u64);
        iter.next();
    }
    iter.status().map_err(SpoolError::from_rocksdb)?;
    std::hint::black_box(checksum);
    Ok((started.elapsed(), count))
}

/// A read-only handle on a spool directory. Works while a server process has the spool open, even while
/// it recovers after a crash (a RocksDB secondary instance: a consistent view that follows the primary's
/// files, its WAL replayed in this handle's memory), and while the server is stopped.
pub struct SpoolReader {
    /// The database, opened as a secondary.
    db: DB,
    /// The secondary's scratch directory (its info log), removed on drop.
    _scratch: tempfile::TempDir,
}

impl SpoolReader {
    /// Opens the spool at `path` for reading; an error says so if there is no spool there.
    pub fn open(path: &Path) -> Result<SpoolReader, SpoolError> {
        let scratch = tempfile::Builder::new()
            .prefix("penguin-spool-reader-")
            .tempdir()
            .map_err(|e| SpoolError::Storage(format!("cannot create a scratch directory: {e}")))?;
        let db = db::open_secondary(path, scratch.path())?;
        db::cf(&db, CF_ENVELOPES)?;
        db::cf(&db, CF_BODIES)?;
        Ok(SpoolReader {
            db,
            _scratch: scratch,
        })
    }

    /// Every stored message's envelope, in id (creation) order. A record that cannot be decoded is an
    /// `Err` item; iteration goes on after it.
    pub fn messages(&self) -> impl Iterator<Item = Result<(MessageId, Envelope), SpoolError>> + '_ {
        let (missing, iter) = match db::cf(&self.db, CF_ENVELOPES) {
            Ok(cf) => (None, Some(self.db.iterator_cf(cf, IteratorMode::Start))),
            Err(error) => (Some(Err(error)), None),
        };
        missing.into_iter().chain(iter.into_iter().flatten().map(|item| {
            let (key, value) = item.map_err(SpoolError::from_rocksdb)?;
            let id = MessageId::from_slice(&key)
                .ok_or_else(|| SpoolError::corrupt(&key, "key is not 12 bytes"))?;
            let envelope = codec::decode(&value).map_err(|e| SpoolError::corrupt(&key, e))?;
            Ok((id, envelope))
        }))
    }

    /// The ids of every stored body, in id order (with [`SpoolReader::messages`], shows that every
    /// envelope has its body and vice versa).
    pub fn body_ids(&self) -> impl Iterator<Item = Result<MessageId, SpoolError>> + '_ {
        let (missing, iter) = match db::cf(&self.db, CF_BODIES) {
            Ok(cf) => (None, Some(self.db.iterator_cf(cf, IteratorMode::Start))),
            Err(error) => (Some(Err(error)), None),
        };
        missing.into_iter().chain(iter.into_iter().flatten().map(|item| {
            let (key, _) = item.map_err(SpoolError::from_rocksdb)?;
            MessageId::from_slice(&key).ok_or_else(|| SpoolError::corrupt(&key, "key is not 12 bytes"))
        }))
    }

    /// Reads one envelope.
    pub fn read_envelope(&self, id: MessageId) -> Result<Option<Envelope>, SpoolError> {
        db::get_envelope(&self.db, id)
    }

    /// Reads one body.
    pub fn read_body(&self, id: MessageId) -> Result<Option<Vec<u8>>, SpoolError> {
        db::get_body(&self.db, id)
    }

    /// Counts queued messages and recipients by tenant, campaign and domain; fails on the first record
    /// that cannot be read.
    pub fn summary(&self) -> Result<QueueSummary, SpoolError> {
        let mut summary = QueueSummary::default();
        for item in self.messages() {
            summary.add(&item?.1);
        }
        Ok(summary)
    }
}
