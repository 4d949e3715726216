//! The durable spool: RocksDB plus the group-commit writer plus the schedule index.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rocksdb::DB;
use tokio::sync::oneshot;

use crate::codec;
use crate::counters::Counts;
use crate::db;
use crate::envelope::{Envelope, NewMessage};
use crate::error::SpoolError;
use crate::id::MessageId;
use crate::index::ScheduleIndex;
use crate::recovery::{RecoveryReport, recover};
pub use crate::writer::UpdateExtras;
use crate::writer::{Ack, Counters, Insertion, Op, Outcome, Request, Schedule, Writer};

/// Told about every committed batch, on the writer thread, after the sync and before the acks. Keep it
/// cheap: the writer waits for it.
pub trait CommitObserver: Send + Sync + 'static {
    /// A batch of `messages` requests (enqueues, updates, deletes; each message of an
    /// [`Spool::enqueue_all`] counts as one) holding `bytes` bytes was written;
    /// the write (with its WAL sync) took `sync`.
    fn on_commit(&self, messages: usize, bytes: usize, sync: Duration);
}

/// How to open a [`Spool`].
#[derive(Clone)]
pub struct SpoolOptions {
    /// The spool directory (created if missing).
    pub path: PathBuf,
    /// fsync the WAL on every batch. True in production; false only for tests and benchmarks that do
    /// not need durability.
    pub sync: bool,
    /// Most requests written in one batch.
    pub max_batch_messages: usize,
    /// A batch takes no more requests once it holds this many bytes (one large message may exceed it).
    pub max_batch_bytes: usize,
    /// [`Spool::has_free_space`] is false when the spool's file system has fewer bytes available.
    pub min_free_space: u64,
    /// Told about every committed batch.
    pub observer: Option<Arc<dyn CommitObserver>>,
}

impl SpoolOptions {
    /// Production defaults: sync on, batches of up to 512 messages or 32 MiB, no free-space minimum,
    /// no observer.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SpoolOptions {
            path: path.into(),
            sync: true,
            max_batch_messages: 512,
            max_batch_bytes: 32 * 1024 * 1024,
            min_free_space: 0,
            observer: None,
        }
    }
}

impl fmt::Debug for SpoolOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpoolOptions")
            .field("path", &self.path)
            .field("sync", &self.sync)
            .field("max_batch_messages", &self.max_batch_messages)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("min_free_space", &self.min_free_space)
            .field("observer", &self.observer.as_ref().map(|_| "CommitObserver"))
            .finish()
    }
}

/// Totals of the writer's batches since the spool was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches written (each one WAL sync when sync is on).
    pub commits: u64,
    /// Requests in those batches (each message of an [`Spool::enqueue_all`] counts as one);
    /// `requests / commits` is the mean batch size.
    pub requests: u64,
    /// Bytes in those batches.
    pub bytes: u64,
    /// Batches whose write failed (every request in them got the error).
    pub failed_commits: u64,
}

/// How long a free-space answer is reused.
const FREE_SPACE_TTL: Duration = Duration::from_secs(1);

/// The durable message spool. Share it as `Arc<Spool>`; every method takes `&self` except `close`.
pub struct Spool {
    /// The database, shared with the writer thread.
    db: Arc<DB>,
    /// Requests to the writer; `None` once closing (dropping it lets the writer drain and stop).
    tx: Option<Sender<Request>>,
    /// The writer thread, joined on close.
    writer: Option<JoinHandle<()>>,
    /// Queued messages by due time; the writer updates it after each commit.
    index: Arc<Mutex<ScheduleIndex>>,
    /// What the recovery scan found.
    recovery: RecoveryReport,
    /// The spool directory, for statvfs.
    path: PathBuf,
    /// See [`SpoolOptions::min_free_space`].
    min_free_space: u64,
    /// The last free-space answer and when it was computed.
    free_space: Mutex<Option<(Instant, bool)>>,
    /// Batch totals, written by the writer.
    counters: Arc<Counters>,
    /// The writer's outbox numbering (seeded by [`Spool::outbox_seed`]).
    pub(crate) sequences: Arc<Mutex<crate::outbox::Sequences>>,
    /// Who hears of outbox appends (shared with the writer).
    pub(crate) outbox_observer: Arc<Mutex<Option<Arc<dyn crate::OutboxObserver>>>>,
    /// Serialises the read-then-write of suppression entries and secrets (see [`crate::suppression`]).
    pub(crate) admin_lock: Mutex<()>,
    /// Set when suppression changes are journaled for replication (see [`crate::suppression_sync`]):
    /// called after each journaled change.
    pub(crate) suppression_journal: std::sync::OnceLock<crate::suppression_sync::JournalObserver>,
    /// Set once `close` ran, so that `Drop` does not repeat it.
    closed: bool,
}

impl Spool {
    /// Opens (creating if missing) the spool, runs recovery (scans the envelopes and rebuilds the index
    /// with every message that has at least one queued recipient) and starts the writer thread.
    pub fn open(options: SpoolOptions) -> Result<Spool, SpoolError> {
        let db = Arc::new(db::open_read_write(&options.path)?);
        let mut index = ScheduleIndex::new();
        let recovery = recover(&db, &mut index)?;
        let index = Arc::new(Mutex::new(index));
        let counters = Arc::new(Counters::default());
        let outbox_observer = Arc::new(Mutex::new(None));
        let sequences = Arc::new(Mutex::new(crate::outbox::Sequences::default()));
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = Writer {
            db: Arc::clone(&db),
            rx,
            index: Arc::clone(&index),
            sync: options.sync,
            max_batch_messages: options.max_batch_messages,
            max_batch_bytes: options.max_batch_bytes,
            observer: options.observer,
            counters: Arc::clone(&counters),
            outbox_observer: Arc::clone(&outbox_observer),
            sequences: Arc::clone(&sequences),
        }
        .spawn()?;
        Ok(Spool {
            db,
            tx: Some(tx),
            writer: Some(writer),
            index,
            recovery,
            path: options.path,
            min_free_space: options.min_free_space,
            free_space: Mutex::new(None),
            counters,
            outbox_observer,
            sequences,
            admin_lock: Mutex::new(()),
            suppression_journal: std::sync::OnceLock::new(),
            closed: false,
        })
    }

    /// Durable enqueue: resolves once the batch holding this message is written and synced, and the
    /// message is in the index (if it has a queued recipient). Envelope and body go into the same
    /// batch, so a crash never leaves half a message. Cancelling the future does not cancel the write.
    pub async fn enqueue(&self, message: NewMessage) -> Result<(), SpoolError> {
        self.submit_async(insert_op(message)).await.map(|_| ())
    }

    /// Like [`Spool::enqueue`], but for several messages at once: all of them are written in ONE synced
    /// batch (never split across batches, whatever `max_batch_messages` / `_bytes` say), so after a crash
    /// either all or none of them are stored. Resolves once the batch is durable and the messages are
    /// indexed. An empty list resolves at once.
    pub async fn enqueue_all(&self, messages: Vec<NewMessage>) -> Result<(), SpoolError> {
        self.enqueue_with_extras(messages, Counts::new(), Vec::new(), Vec::new())
            .await
    }

    /// [`Spool::enqueue_all`] with what rides in the same synced batch, stored if and only if the
    /// messages are: counter increments (the reception's usage counts), control records (an HTTP
    /// injection's idempotency record) and webhook events of the reception (numbered by the writer).
    pub async fn enqueue_with_extras(
        &self,
        messages: Vec<NewMessage>,
        counts: Counts,
        control: Vec<(String, Vec<u8>)>,
        outbox: Vec<crate::OutboxEvent>,
    ) -> Result<(), SpoolError> {
        let mut insertions: Vec<Insertion> = messages.into_iter().map(insertion).collect();
        let Some(first) = insertions.first_mut() else {
            return Ok(());
        };
        first.counts = counts;
        first.control = control;
        first.outbox = outbox;
        let op = if insertions.len() == 1 {
            Op::Insert(insertions.remove(0))
        } else {
            Op::InsertAll(insertions)
        };
        self.submit_async(op).await.map(|_| ())
    }

    /// [`Spool::enqueue`] for threads that are not async tasks: blocks until the message is durable.
    /// Do not call it on an async runtime's worker thread.
    pub fn enqueue_blocking(&self, message: NewMessage) -> Result<(), SpoolError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Request {
            op: insert_op(message),
            ack: Ack::Blocking(tx),
        })?;
        rx.recv().map_err(|_| SpoolError::Closed)?.map(|_| ())
    }

    /// Durably replaces the envelope of a stored message (delivery outcomes, attempts, next due time).
    /// If a recipient is still queued, the message is (re)scheduled at `next_attempt_at_ms`; otherwise
    /// the message is finished: envelope and body are deleted and it leaves the index. Returns false,
    /// writing nothing, if the message does not exist (for example deleted meanwhile). Batched like
    /// `enqueue` but not fsynced on its own (the next synced batch carries it): a power loss may bring
    /// the previous envelope back, which means a retry, never a loss.
    pub async fn update_envelope(&self, id: MessageId, envelope: &Envelope) -> Result<bool, SpoolError> {
        self.update_envelope_with(id, envelope, UpdateExtras::default())
            .await
    }

    /// [`Spool::update_envelope`] with counter increments and attempt records written in the same
    /// batch (only if the message still exists; a finished message's history is deleted with it).
    pub async fn update_envelope_with(
        &self,
        id: MessageId,
        envelope: &Envelope,
        extras: UpdateExtras,
    ) -> Result<bool, SpoolError> {
        let op = Op::Update {
            id,
            envelope: codec::encode(envelope),
            schedule: schedule_of(envelope),
            progress: false,
            extras,
        };
        self.submit_async(op).await
    }

    /// Durably stores the envelope of a message whose delivery round is still going on (some of its
    /// recipient domains are done, others wait for their turn): the states so far survive a crash,
    /// but the schedule index is left alone — the message is not due again until the round ends with
    /// [`Spool::update_envelope`] — and the message is never deleted here. Batched, not fsynced on its
    /// own, like `update_envelope`. Returns false, writing nothing, if the message does not exist.
    pub async fn save_progress(&self, id: MessageId, envelope: &Envelope) -> Result<bool, SpoolError> {
        self.save_progress_with(id, envelope, UpdateExtras::default())
            .await
    }

    /// [`Spool::save_progress`] with counter increments and attempt records in the same batch.
    pub async fn save_progress_with(
        &self,
        id: MessageId,
        envelope: &Envelope,
        extras: UpdateExtras,
    ) -> Result<bool, SpoolError> {
        let op = Op::Update {
            id,
            envelope: codec::encode(envelope),
            schedule: None,
            progress: true,
            extras,
        };
        self.submit_async(op).await
    }

    /// Durably deletes a message (envelope and body) and removes it from the index.
    pub async fn delete(&self, id: MessageId) -> Result<(), SpoolError> {
        self.submit_async(Op::Delete { id }).await.map(|_| ())
    }

    /// Whether the spool's file system has at least `min_free_space` bytes available (statvfs, cached
    /// for a second). Always true when `min_free_space` is 0.
    pub fn has_free_space(&self) -> bool {
        if self.min_free_space == 0 {
            return true;
        }
        let mut cached = self.free_space.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, answer)) = *cached
            && at.elapsed() < FREE_SPACE_TTL
        {
            return answer;
        }
        // If statvfs fails, say yes: RocksDB's own ENOSPC still maps to NoSpace.
        let answer = db::available_bytes(&self.path).is_none_or(|free| free >= self.min_free_space);
        *cached = Some((Instant::now(), answer));
        answer
    }

    /// What the recovery scan at open found.
    pub fn recovery(&self) -> RecoveryReport {
        self.recovery.clone()
    }

    /// How many messages the index holds.
    pub fn queued_messages(&self) -> usize {
        self.index().len()
    }

    /// The schedule index: pop due ids from it, (re)schedule, remove. Hold the guard briefly; the writer
    /// takes it once per batch.
    pub fn index(&self) -> MutexGuard<'_, ScheduleIndex> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads a message's envelope.
    pub fn read_envelope(&self, id: MessageId) -> Result<Option<Envelope>, SpoolError> {
        db::get_envelope(&self.db, id)
    }

    /// Counts of the queued recipients of every stored message (of `tenant` only when given): a scan of
    /// the envelopes, for the API's queue summary. Undecodable records are skipped.
    pub fn summary(&self, tenant: Option<&str>) -> Result<crate::QueueSummary, SpoolError> {
        let mut summary = crate::QueueSummary::default();
        let envelopes = db::cf(&self.db, db::CF_ENVELOPES)?;
        for item in self.db.iterator_cf(envelopes, rocksdb::IteratorMode::Start) {
            let (_, value) = item.map_err(SpoolError::from_rocksdb)?;
            let Ok(envelope) = codec::decode(&value) else {
                continue;
            };
            if tenant.is_none_or(|t| t == envelope.tenant) {
                summary.add(&envelope);
            }
        }
        Ok(summary)
    }

    /// Reads a message's body.
    pub fn read_body(&self, id: MessageId) -> Result<Option<Vec<u8>>, SpoolError> {
        db::get_body(&self.db, id)
    }

    /// Requests waiting for the writer (not yet in a batch): the writer's backlog.
    pub fn pending_requests(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }

    /// Totals of the writer's batches since open.
    pub fn stats(&self) -> CommitStats {
        self.counters.snapshot()
    }

    /// The spool directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the memtables to SST and blob files (blocking). Not needed for durability (the WAL
    /// provides it); useful before a file-level backup and to bound the next open's WAL replay.
    pub fn flush(&self) -> Result<(), SpoolError> {
        for name in db::ALL_CFS {
            self.db
                .flush_cf(db::cf(&self.db, name)?)
                .map_err(SpoolError::from_rocksdb)?;
        }
        Ok(())
    }

    /// Stops the writer after it drains (everything already sent to it is committed and acknowledged),
    /// syncs the WAL, flushes the memtables (so the next open needs no WAL replay) and joins the thread. Dropping the spool does the same, ignoring errors.
    pub fn close(mut self) -> Result<(), SpoolError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), SpoolError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        drop(self.tx.take());
        let joined = match self.writer.take() {
            Some(handle) => handle
                .join()
                .map_err(|_| SpoolError::Storage("the spool writer thread panicked".into())),
            None => Ok(()),
        };
        self.db.flush_wal(true).map_err(SpoolError::from_rocksdb)?;
        // Memtables to SST files, so the next start does not replay the WAL: a fast restart.
        for name in db::ALL_CFS {
            self.db
                .flush_cf(db::cf(&self.db, name)?)
                .map_err(SpoolError::from_rocksdb)?;
        }
        joined
    }

    /// The database, for the other modules of the crate (suppression lists, secrets).
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    fn send(&self, request: Request) -> Result<(), SpoolError> {
        let tx = self.tx.as_ref().ok_or(SpoolError::Closed)?;
        tx.send(request).map_err(|_| SpoolError::Closed)
    }

    /// Sends an op to the writer without waiting for its outcome.
    pub(crate) fn submit_detached(&self, op: Op) -> Result<(), SpoolError> {
        self.send(Request {
            op,
            ack: Ack::Detached,
        })
    }

    async fn submit_async(&self, op: Op) -> Outcome {
        let (tx, rx) = oneshot::channel();
        self.send(Request {
            op,
            ack: Ack::Async(tx),
        })?;
        rx.await.map_err(|_| SpoolError::Closed)?
    }
}

// The engine shares the spool between tasks and threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Spool>();
};

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.path)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

/// Where a message with this envelope belongs in the schedule (`None`: nothing is queued).
fn schedule_of(envelope: &Envelope) -> Option<Schedule> {
    envelope.has_queued().then(|| Schedule {
        due_ms: envelope.next_attempt_at_ms,
        tenant: envelope.tenant.clone(),
        campaign: envelope.campaign.clone(),
    })
}

/// Encodes a new message for the writer (on the caller's thread, so encoding runs in parallel).
fn insert_op(message: NewMessage) -> Op {
    Op::Insert(insertion(message))
}

/// Encodes one new message (on the caller's thread).
fn insertion(message: NewMessage) -> Insertion {
    let envelope = codec::encode(&message.envelope);
    Insertion {
        id: message.id,
        envelope,
        body: message.body,
        schedule: schedule_of(&message.envelope),
        counts: Counts::new(),
        control: Vec::new(),
        outbox: Vec::new(),
    }
}
