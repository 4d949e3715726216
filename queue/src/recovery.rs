//! The startup scan: rebuilds the schedule index from the envelopes column family.
//!
//! Two threads share the work so that recovery runs close to the speed of a raw RocksDB scan: the
//! calling thread only iterates RocksDB and copies each record into a chunk buffer; a decoder thread
//! decodes what scheduling needs from full chunks and collects index entries. The index is then built
//! in one bulk step.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rocksdb::{DB, ReadOptions};

use crate::codec::decode_schedule;
use crate::db::{CF_ENVELOPES, cf};
use crate::error::SpoolError;
use crate::id::MessageId;
use crate::index::{QueueKey, ScheduleIndex};

/// What the recovery scan found when the spool was opened.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Messages with at least one queued recipient (now in the index).
    pub messages: u64,
    /// Queued recipients of those messages.
    pub recipients: u64,
    /// How long the scan and the index rebuild took.
    pub duration: Duration,
    /// Envelope records that could not be decoded and were left out of the index (they stay on disk;
    /// [`crate::SpoolReader::messages`] shows them as errors).
    pub corrupt: u64,
}

/// Upper bound on the index capacity reserved from RocksDB's key count estimate.
const MAX_RESERVE: u64 = 16 * 1024 * 1024;
/// Records per chunk handed to the decoder.
const CHUNK_RECORDS: usize = 2048;
/// A chunk is handed over early once it holds this many bytes.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks in flight (filled, being decoded, or being recycled).
const CHUNKS: usize = 4;

/// Copies of consecutive records: keys and values back to back in `data`.
#[derive(Default)]
struct Chunk {
    /// The bytes of every record.
    data: Vec<u8>,
    /// Per record: where its key ends and where its value ends in `data` (it starts where the previous
    /// record's value ends).
    ends: Vec<(usize, usize)>,
}

/// What the decoder thread collected.
struct Decoded {
    /// (id, due time, queue) of every message with a queued recipient, in id order.
    entries: Vec<(MessageId, u64, QueueKey)>,
    /// Queued recipients counted.
    recipients: u64,
    /// Records that could not be decoded.
    corrupt: u64,
}

/// Scans every envelope and schedules each message that has a queued recipient.
pub(crate) fn recover(db: &DB, index: &mut ScheduleIndex) -> Result<RecoveryReport, SpoolError> {
    let started = Instant::now();
    let envelopes = cf(db, CF_ENVELOPES)?;
    let estimate = db
        .property_int_value_cf(envelopes, "rocksdb.estimate-num-keys")
        .ok()
        .flatten();
    let reserve = usize::try_from(estimate.unwrap_or(0).min(MAX_RESERVE)).unwrap_or(0);

    let (full_tx, full_rx) = crossbeam_channel::bounded::<Chunk>(CHUNKS);
    let (free_tx, free_rx) = crossbeam_channel::bounded::<Chunk>(CHUNKS);
    for _ in 0..CHUNKS {
        let _ = free_tx.send(Chunk::default());
    }
    let decoder_index = &mut *index;
    let (scanned, decoded) = thread::scope(|scope| {
        let decoder = thread::Builder::new()
            .name("spool-recovery".into())
            .spawn_scoped(scope, move || {
                decode_chunks(full_rx, free_tx, decoder_index, reserve)
            });
        let decoder = match decoder {
            Ok(handle) => handle,
            Err(e) => {
                return (
                    Err(SpoolError::Storage(format!("cannot start recovery thread: {e}"))),
                    None,
                );
            }
        };
        let scanned = scan(db, envelopes, &full_tx, &free_rx);
        drop(full_tx);
        (scanned, decoder.join().ok())
    });
    scanned?;
    let decoded = decoded.ok_or_else(|| SpoolError::Storage("the recovery thread panicked".into()))?;
    let report = RecoveryReport {
        messages: decoded.entries.len() as u64,
        recipients: decoded.recipients,
        corrupt: decoded.corrupt,
        duration: Duration::ZERO,
    };
    index.bulk_insert(decoded.entries);
    Ok(RecoveryReport {
        duration: started.elapsed(),
        ..report
    })
}

/// Iterates the envelopes column family, copying records into chunks for the decoder.
fn scan(
    db: &DB,
    envelopes: &rocksdb::ColumnFamily,
    full: &Sender<Chunk>,
    free: &Receiver<Chunk>,
) -> Result<(), SpoolError> {
    let decoder_gone = || SpoolError::Storage("the recovery thread stopped".into());
    let mut read = ReadOptions::default();
    read.fill_cache(false);
    read.set_readahead_size(4 * 1024 * 1024);
    let mut iter = db.raw_iterator_cf_opt(envelopes, read);
    iter.seek_to_first();
    let mut chunk = free.recv().map_err(|_| decoder_gone())?;
    while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
        chunk.data.extend_from_slice(key);
        let key_end = chunk.data.len();
        chunk.data.extend_from_slice(value);
        chunk.ends.push((key_end, chunk.data.len()));
        if chunk.ends.len() >= CHUNK_RECORDS || chunk.data.len() >= CHUNK_BYTES {
            full.send(chunk).map_err(|_| decoder_gone())?;
            chunk = free.recv().map_err(|_| decoder_gone())?;
        }
        iter.next();
    }
    iter.status().map_err(SpoolError::from_rocksdb)?;
    if !chunk.ends.is_empty() {
        full.send(chunk).map_err(|_| decoder_gone())?;
    }
    Ok(())
}

/// The decoder thread: decodes the schedule part of each record and interns its queue. It owns the
/// channel ends it uses, so that if it died the scanner would see disconnected channels, not wait.
fn decode_chunks(
    full: Receiver<Chunk>,
    free: Sender<Chunk>,
    index: &mut ScheduleIndex,
    reserve: usize,
) -> Decoded {
    let mut out = Decoded {
        entries: Vec::with_capacity(reserve),
        recipients: 0,
        corrupt: 0,
    };
    // Consecutive messages mostly share a queue: remember the last one to skip the interner.
    let mut last_queue: Option<(String, String, QueueKey)> = None;
    for mut chunk in full.iter() {
        let mut start = 0;
        for &(key_end, value_end) in &chunk.ends {
            let (key, value) = (&chunk.data[start..key_end], &chunk.data[key_end..value_end]);
            start = value_end;
            let (Some(id), Ok(info)) = (MessageId::from_slice(key), decode_schedule(value)) else {
                out.corrupt += 1;
                continue;
            };
            if info.queued_recipients == 0 {
                continue;
            }
            let queue = match &last_queue {
                Some((tenant, campaign, queue)) if tenant == info.tenant && campaign == info.campaign => {
                    *queue
                }
                _ => {
                    let queue = index.intern(info.tenant, info.campaign);
                    last_queue = Some((info.tenant.to_owned(), info.campaign.to_owned(), queue));
                    queue
                }
            };
            out.entries.push((id, info.next_attempt_at_ms, queue));
            out.recipients += info.queued_recipients;
        }
        chunk.data.clear();
        chunk.ends.clear();
        // The scanner may be done and gone; then the chunk is simply dropped.
        let _ = free.try_send(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use rocksdb::WriteBatch;

    use super::*;
    use crate::codec::encode;
    use crate::db::open_read_write;
    use crate::{Envelope, Recipient, RecipientState};

    fn envelope(n: u32, recipients: u32) -> Envelope {
        let state = if n.is_multiple_of(4) {
            RecipientState::Delivered
        } else {
            RecipientState::Queued
        };
        Envelope {
            tenant: format!("t{}", n % 2),
            campaign: format!("c{}", n % 3),
            pool: String::new(),
            sender: String::new(),
            recipients: (0..recipients)
                .map(|r| Recipient {
                    address: format!("r{r}@d{n}.example"),
                    state,
                    attempts: 0,
                })
                .collect(),
            size: 1,
            received_at_ms: u64::from(n),
            next_attempt_at_ms: 100_000 - u64::from(n),
            smtputf8: false,
            eight_bit: false,
            warmup_priority: false,
        }
    }

    #[test]
    fn recovery_spans_many_chunks_and_skips_corrupt_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_read_write(dir.path()).expect("open");
        let envelopes = cf(&db, CF_ENVELOPES).expect("cf");
        let mut batch = WriteBatch::default();
        let mut expected: Vec<(u64, MessageId, Envelope)> = Vec::new();
        // 5,000 small records (several chunks by count) and 20 with 5,000 recipients each (several
        // chunks by size).
        for n in 0..5_020u32 {
            let recipients = if n >= 5_000 { 5_000 } else { 1 + n % 3 };
            let (id, envelope) = (
                MessageId::from_parts(1_000 + u64::from(n), n),
                envelope(n, recipients),
            );
            batch.put_cf(envelopes, id.as_bytes(), encode(&envelope));
            if envelope.has_queued() {
                expected.push((envelope.next_attempt_at_ms, id, envelope));
            }
        }
        batch.put_cf(envelopes, b"short", encode(&envelope(1, 1)));
        batch.put_cf(envelopes, MessageId::from_parts(9, 9).as_bytes(), b"\x01garbage");
        db.write(batch).expect("write");

        let mut index = ScheduleIndex::new();
        let report = recover(&db, &mut index).expect("recover");
        assert_eq!(report.messages, expected.len() as u64);
        let recipients: usize = expected.iter().map(|(_, _, e)| e.queued_count()).sum();
        assert_eq!(report.recipients, recipients as u64);
        assert_eq!(report.corrupt, 2);
        for (_, id, envelope) in &expected {
            let queue = index.queue_of(*id).expect("indexed");
            assert_eq!(
                index.queue_name(queue),
                Some((envelope.tenant.as_str(), envelope.campaign.as_str()))
            );
        }
        expected.sort_by_key(|(due, id, _)| (*due, *id));
        let order: Vec<MessageId> = expected.iter().map(|(_, id, _)| *id).collect();
        assert_eq!(index.pop_due(u64::MAX, usize::MAX), order);
    }

    #[test]
    fn recovery_of_an_empty_spool_finds_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_read_write(dir.path()).expect("open");
        let mut index = ScheduleIndex::new();
        let report = recover(&db, &mut index).expect("recover");
        assert_eq!((report.messages, report.recipients, report.corrupt), (0, 0, 0));
        assert!(index.is_empty());
    }
}
