//! The single writer thread: group commit.
//!
//! Callers send [`Request`]s over a crossbeam channel. The thread blocks for one request, then takes
//! whatever else is already waiting (up to the batch bounds), writes all of it as ONE RocksDB
//! `WriteBatch` with a synced WAL write (when it holds a new message), tells the observer, updates the schedule index and only then
//! acknowledges every request of the batch. While it syncs, new requests queue up in the channel and form
//! the next batch: the busier the spool, the larger the batches, the fewer fsyncs per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Receiver;
use rocksdb::{AsColumnFamilyRef, DB, WriteBatch, WriteOptions};
use tokio::sync::oneshot;

use crate::counters::Counts;
use crate::db::{CF_BODIES, CF_CONTROL, CF_COUNTERS, CF_ENVELOPES, CF_HISTORY, cf};
use crate::error::SpoolError;
use crate::history;
use crate::id::MessageId;
use crate::index::ScheduleIndex;
use crate::outbox::{OutboxEvent, OutboxObserver, Sequences};
use crate::spool::{CommitObserver, CommitStats};

/// Where a message goes in the schedule after its write commits.
pub(crate) struct Schedule {
    /// Due time, unix milliseconds.
    pub(crate) due_ms: u64,
    /// The tenant (queue name, first part).
    pub(crate) tenant: String,
    /// The campaign (queue name, second part).
    pub(crate) campaign: String,
}

/// One new message, encoded on the caller's thread ([`Op::Insert`], [`Op::InsertAll`]).
pub(crate) struct Insertion {
    /// The message.
    pub(crate) id: MessageId,
    /// The encoded envelope.
    pub(crate) envelope: Vec<u8>,
    /// The body.
    pub(crate) body: Vec<u8>,
    /// `None` when no recipient is queued.
    pub(crate) schedule: Option<Schedule>,
    /// Counter increments written with it (its reception in the usage counts).
    pub(crate) counts: Counts,
    /// Control records written with it (an injection's idempotency record).
    pub(crate) control: Vec<(String, Vec<u8>)>,
    /// Webhook events of its reception.
    pub(crate) outbox: Vec<OutboxEvent>,
}

/// The column families a new message writes to (looked up once per batch).
struct InsertCfs<'a> {
    /// Bodies.
    bodies: &'a rocksdb::ColumnFamily,
    /// Envelopes.
    envelopes: &'a rocksdb::ColumnFamily,
    /// Counters.
    counters: &'a rocksdb::ColumnFamily,
    /// Control records.
    controls: &'a rocksdb::ColumnFamily,
}

/// What an envelope update writes besides the envelope, in the same batch.
#[derive(Debug, Default)]
pub struct UpdateExtras {
    /// Counter increments (the outcomes it records).
    pub counts: Counts,
    /// Attempt records of the message (each without a newline); not written when the update
    /// finishes the message.
    pub history: Vec<Vec<u8>>,
    /// Webhook events of the outcomes (written even when the message is gone meanwhile).
    pub outbox: Vec<OutboxEvent>,
}

impl Insertion {
    /// Bytes it adds to a batch (values plus keys).
    fn bytes(&self) -> usize {
        self.envelope.len()
            + self.body.len()
            + 24
            + self.counts.bytes()
            + self.control.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }

    /// Adds body and envelope to `write_batch` (the same batch: a message is never half stored).
    fn put(
        &self,
        write_batch: &mut WriteBatch,
        bodies: &impl AsColumnFamilyRef,
        envelopes: &impl AsColumnFamilyRef,
    ) {
        write_batch.put_cf(bodies, self.id.as_bytes(), &self.body);
        write_batch.put_cf(envelopes, self.id.as_bytes(), &self.envelope);
    }
}

/// One change to the spool.
pub(crate) enum Op {
    /// Store a new message: envelope and body together.
    Insert(Insertion),
    /// Replace the envelope of a stored message; with no queued recipient left, delete the message.
    Update {
        /// The message.
        id: MessageId,
        /// The encoded envelope.
        envelope: Vec<u8>,
        /// `None` when no recipient is queued: the message is finished and deleted.
        schedule: Option<Schedule>,
        /// Progress of a message still being delivered: store the envelope, leave the index alone (the
        /// message is not due again until its delivery round ends) and never delete.
        progress: bool,
        /// Counts and attempt records written with it (only if the message still exists).
        extras: UpdateExtras,
    },
    /// Delete a message (envelope and body).
    Delete {
        /// The message.
        id: MessageId,
    },
    /// Store several new messages atomically: always within one batch, never split.
    InsertAll(Vec<Insertion>),
    /// Webhook events of no spool change.
    Outbox(Vec<OutboxEvent>),
}

impl Op {
    /// How many messages the op writes: counted against `max_batch_messages` and in the stats.
    fn messages(&self) -> usize {
        match self {
            Op::InsertAll(insertions) => insertions.len(),
            Op::Insert(_) | Op::Update { .. } | Op::Delete { .. } | Op::Outbox(_) => 1,
        }
    }

    /// Whether the op must be on disk before its caller hears back: a new message (it is about to
    /// get its 250). Updates and deletes after a delivery attempt are written to the WAL without an
    /// fsync of their own: they ride on the next synced batch, and after a power loss before that
    /// the previous envelope comes back, so the message is retried (a duplicate, never a loss).
    fn needs_sync(&self) -> bool {
        matches!(self, Op::Insert(_) | Op::InsertAll(_))
    }

    /// Bytes this op adds to a batch (values plus keys).
    fn bytes(&self) -> usize {
        match self {
            Op::Insert(insertion) => insertion.bytes(),
            Op::Update { envelope, extras, .. } => {
                envelope.len()
                    + 12
                    + extras.counts.bytes()
                    + extras.history.iter().map(|h| h.len() + 12).sum::<usize>()
            }
            Op::Delete { .. } => 24,
            Op::InsertAll(insertions) => insertions.iter().map(Insertion::bytes).sum(),
            Op::Outbox(events) => events.iter().map(|e| e.event.len() + e.endpoint.len() + 9).sum(),
        }
    }
}

/// The result a request gets: for an update, whether the message existed; otherwise `true`.
pub(crate) type Outcome = Result<bool, SpoolError>;

/// How the result gets back to the caller.
pub(crate) enum Ack {
    /// To an async caller.
    Async(oneshot::Sender<Outcome>),
    /// To a blocking caller (usable outside and inside a runtime without tokio's blocking checks).
    Blocking(crossbeam_channel::Sender<Outcome>),
    /// Nobody waits (an outbox append from the event stream).
    Detached,
}

impl Ack {
    fn send(self, outcome: Outcome) {
        // A caller that stopped waiting (its future was dropped) does not need the answer.
        match self {
            Ack::Async(tx) => drop(tx.send(outcome)),
            Ack::Blocking(tx) => drop(tx.send(outcome)),
            Ack::Detached => {}
        }
    }
}

/// A change and the channel its outcome goes back on.
pub(crate) struct Request {
    /// The change.
    pub(crate) op: Op,
    /// Where to report.
    pub(crate) ack: Ack,
}

/// Shared counters of committed batches (read by [`crate::Spool::stats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Batches written successfully.
    pub(crate) commits: AtomicU64,
    /// Requests in those batches.
    pub(crate) requests: AtomicU64,
    /// Bytes in those batches.
    pub(crate) bytes: AtomicU64,
    /// Batches whose write failed.
    pub(crate) failed_commits: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            failed_commits: self.failed_commits.load(Ordering::Relaxed),
        }
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    /// The database (shared with readers).
    pub(crate) db: Arc<DB>,
    /// Requests from callers; disconnected when the spool closes.
    pub(crate) rx: Receiver<Request>,
    /// The schedule, updated after each commit and before the acks.
    pub(crate) index: Arc<Mutex<ScheduleIndex>>,
    /// fsync the WAL on every batch.
    pub(crate) sync: bool,
    /// Most requests per batch.
    pub(crate) max_batch_messages: usize,
    /// A batch takes no more requests once it holds this many bytes.
    pub(crate) max_batch_bytes: usize,
    /// Told about every successful commit.
    pub(crate) observer: Option<Arc<dyn CommitObserver>>,
    /// Totals.
    pub(crate) counters: Arc<Counters>,
    /// Told the last outbox sequence number per endpoint after each commit.
    pub(crate) outbox_observer: Arc<Mutex<Option<Arc<dyn OutboxObserver>>>>,
    /// The next outbox sequence number per endpoint (shared with the spool, which seeds it).
    pub(crate) sequences: Arc<Mutex<Sequences>>,
}

impl Writer {
    /// Starts the thread.
    pub(crate) fn spawn(self) -> Result<JoinHandle<()>, SpoolError> {
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || self.run())
            .map_err(|e| SpoolError::Storage(format!("cannot start the spool writer thread: {e}")))
    }

    /// Commits batches until every sender is gone and the channel is drained.
    ///
    /// A multi-message request ([`Op::InsertAll`]) is never split: if it does not fit in the batch being
    /// formed, it is kept for (and starts) the next one; alone it may exceed the bounds.
    fn run(self) {
        let max_messages = self.max_batch_messages.max(1);
        let mut batch: Vec<Request> = Vec::with_capacity(max_messages.min(4096));
        let mut carried: Option<Request> = None;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                None => match self.rx.recv() {
                    Ok(request) => request,
                    Err(_) => break,
                },
            };
            let mut bytes = first.op.bytes();
            let mut messages = first.op.messages();
            batch.push(first);
            while messages < max_messages && bytes < self.max_batch_bytes {
                let Ok(request) = self.rx.try_recv() else {
                    break;
                };
                let (more_messages, more_bytes) = (request.op.messages(), request.op.bytes());
                if more_messages > 1
                    && (messages + more_messages > max_messages || bytes + more_bytes > self.max_batch_bytes)
                {
                    carried = Some(request);
                    break;
                }
                messages += more_messages;
                bytes += more_bytes;
                batch.push(request);
            }
            self.commit(&mut batch, messages, bytes);
        }
    }

    /// Writes one batch (`messages` messages in its requests), then acknowledges each of its requests.
    fn commit(&self, batch: &mut Vec<Request>, messages: usize, bytes: usize) {
        let sync = self.sync && batch.iter().any(|request| request.op.needs_sync());
        let mut appended = Vec::new();
        let outcomes = match self.build(batch, &mut appended) {
            Ok((write_batch, outcomes)) => self.write(write_batch, outcomes, messages, bytes, sync),
            Err(error) => vec![Err(error); batch.len()],
        };
        if outcomes.iter().any(|o| o.is_ok()) {
            self.apply_to_index(batch, &outcomes);
            self.tell_outbox(&appended);
        }
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            request.ack.send(outcome);
        }
    }

    /// Syncs the batch; on success reports it (`messages` messages, `bytes` bytes) and returns the
    /// prepared outcomes, on failure gives every request the error.
    fn write(
        &self,
        write_batch: WriteBatch,
        outcomes: Vec<Outcome>,
        messages: usize,
        bytes: usize,
        sync: bool,
    ) -> Vec<Outcome> {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        let started = Instant::now();
        match self.db.write_opt(write_batch, &options) {
            Ok(()) => {
                let elapsed = started.elapsed();
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .requests
                    .fetch_add(messages as u64, Ordering::Relaxed);
                self.counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                if let Some(observer) = &self.observer {
                    observer.on_commit(messages, bytes, elapsed);
                }
                outcomes
            }
            Err(error) => {
                self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                vec![Err(SpoolError::from_rocksdb(error)); outcomes.len()]
            }
        }
    }

    /// Tells the outbox observer the last sequence number per endpoint of a committed batch.
    fn tell_outbox(&self, appended: &[(String, u64)]) {
        if appended.is_empty() {
            return;
        }
        let observer = self
            .outbox_observer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(observer) = observer {
            for (endpoint, last_seq) in appended {
                observer.appended(endpoint, *last_seq);
            }
        }
    }

    /// Numbers outbox events into the batch (see [`Sequences`]).
    fn put_outbox(
        &self,
        write_batch: &mut WriteBatch,
        events: &[OutboxEvent],
        appended: &mut Vec<(String, u64)>,
    ) -> Result<(), SpoolError> {
        self.sequences.lock().unwrap_or_else(PoisonError::into_inner).put(
            &self.db,
            write_batch,
            events,
            appended,
        )
    }

    /// Turns the requests into one WriteBatch. An update of a message that does not exist (deleted
    /// meanwhile) writes nothing and reports `false`, so that no envelope is ever stored without its
    /// body (its outbox events are written: they report what happened). `appended` gets the last
    /// outbox number per endpoint.
    fn build(
        &self,
        batch: &[Request],
        appended: &mut Vec<(String, u64)>,
    ) -> Result<(WriteBatch, Vec<Outcome>), SpoolError> {
        let envelopes = cf(&self.db, CF_ENVELOPES)?;
        let bodies = cf(&self.db, CF_BODIES)?;
        let counters = cf(&self.db, CF_COUNTERS)?;
        let histories = cf(&self.db, CF_HISTORY)?;
        let cfs = InsertCfs {
            bodies,
            envelopes,
            counters,
            controls: cf(&self.db, CF_CONTROL)?,
        };
        let mut write_batch = WriteBatch::default();
        let mut outcomes = Vec::with_capacity(batch.len());
        // Whether a message exists after the requests of this batch seen so far.
        let mut exists: HashMap<MessageId, bool> = HashMap::new();
        for request in batch {
            match &request.op {
                Op::Insert(insertion) => {
                    self.insert_into(&mut write_batch, &cfs, insertion, appended)?;
                    exists.insert(insertion.id, true);
                    outcomes.push(Ok(true));
                }
                Op::Update {
                    id,
                    envelope,
                    schedule,
                    progress,
                    extras,
                } => {
                    let present = match exists.get(id) {
                        Some(&present) => Ok(present),
                        None => self
                            .db
                            .get_pinned_cf(envelopes, id.as_bytes())
                            .map(|v| v.is_some()),
                    };
                    self.put_outbox(&mut write_batch, &extras.outbox, appended)?;
                    match present {
                        Ok(false) => outcomes.push(Ok(false)),
                        Ok(true) if schedule.is_some() || *progress => {
                            write_batch.put_cf(envelopes, id.as_bytes(), envelope);
                            extras.counts.put(&mut write_batch, counters);
                            history::append(&mut write_batch, histories, *id, &extras.history);
                            outcomes.push(Ok(true));
                        }
                        Ok(true) => {
                            write_batch.delete_cf(envelopes, id.as_bytes());
                            write_batch.delete_cf(bodies, id.as_bytes());
                            history::delete(&mut write_batch, histories, *id);
                            extras.counts.put(&mut write_batch, counters);
                            exists.insert(*id, false);
                            outcomes.push(Ok(true));
                        }
                        Err(error) => outcomes.push(Err(SpoolError::from_rocksdb(error))),
                    }
                }
                Op::Delete { id } => {
                    write_batch.delete_cf(envelopes, id.as_bytes());
                    write_batch.delete_cf(bodies, id.as_bytes());
                    history::delete(&mut write_batch, histories, *id);
                    exists.insert(*id, false);
                    outcomes.push(Ok(true));
                }
                Op::InsertAll(insertions) => {
                    for insertion in insertions {
                        self.insert_into(&mut write_batch, &cfs, insertion, appended)?;
                        exists.insert(insertion.id, true);
                    }
                    outcomes.push(Ok(true));
                }
                Op::Outbox(events) => {
                    self.put_outbox(&mut write_batch, events, appended)?;
                    outcomes.push(Ok(true));
                }
            }
        }
        Ok((write_batch, outcomes))
    }

    /// A new message with what rides with it: body and envelope, counts, control records, outbox.
    fn insert_into(
        &self,
        write_batch: &mut WriteBatch,
        cfs: &InsertCfs<'_>,
        insertion: &Insertion,
        appended: &mut Vec<(String, u64)>,
    ) -> Result<(), SpoolError> {
        insertion.put(write_batch, cfs.bodies, cfs.envelopes);
        insertion.counts.put(write_batch, cfs.counters);
        for (key, value) in &insertion.control {
            write_batch.put_cf(cfs.controls, key.as_bytes(), value);
        }
        self.put_outbox(write_batch, &insertion.outbox, appended)
    }

    /// Brings the schedule in line with a committed batch (before anyone is acknowledged, so an
    /// acknowledged message is always in the index).
    fn apply_to_index(&self, batch: &[Request], outcomes: &[Outcome]) {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        for (request, outcome) in batch.iter().zip(outcomes) {
            if !matches!(outcome, Ok(true)) {
                continue;
            }
            match &request.op {
                Op::Insert(insertion) => {
                    apply_schedule(&mut index, insertion.id, insertion.schedule.as_ref());
                }
                Op::Update {
                    id,
                    schedule,
                    progress: false,
                    ..
                } => {
                    apply_schedule(&mut index, *id, schedule.as_ref());
                }
                Op::Update { progress: true, .. } | Op::Outbox(_) => {}
                Op::Delete { id } => {
                    index.remove(*id);
                }
                Op::InsertAll(insertions) => {
                    for insertion in insertions {
                        apply_schedule(&mut index, insertion.id, insertion.schedule.as_ref());
                    }
                }
            }
        }
    }
}

/// Schedules `id` (or takes it out of the index when nothing is queued).
fn apply_schedule(index: &mut ScheduleIndex, id: MessageId, schedule: Option<&Schedule>) {
    match schedule {
        Some(s) => {
            index.insert(id, s.due_ms, &s.tenant, &s.campaign);
        }
        None => {
            index.remove(id);
        }
    }
}
