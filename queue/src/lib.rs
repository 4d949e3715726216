//! penguin-mta's durable spool.
//!
//! A message acknowledged with 250 is in RocksDB with its WAL synced before the acknowledgement: many
//! sessions enqueue concurrently and one writer thread commits everything waiting as one synced
//! `WriteBatch` (group commit), then acknowledges each caller. Envelope and body of a message are written
//! in the same batch, so a crash (even `kill -9`) never loses an acknowledged message nor leaves half of
//! one. On open a recovery scan rebuilds the in-memory [`ScheduleIndex`] (ids, due times, queue keys).
//!
//! The crate knows nothing of SMTP or DNS.
//!
//! Storage layout: column family `envelopes` (key: 12-byte [`MessageId`], value: the binary record of
//! [`codec`]) and `bodies` (same key, body bytes; large bodies in blob files); `suppressions` (per-tenant
//! suppression lists, key `tenant \0 address`) and `meta` (named secrets), written directly with synced
//! writes (see [`Spool::suppress`], [`Spool::secret`]); `control` (the engine's run-time control state,
//! e.g. operator suspensions: [`Spool::put_control`], [`Spool::control_records`]).

#![warn(missing_docs)]

pub mod codec;
mod control;
mod counters;
mod db;
mod envelope;
mod error;
mod history;
mod id;
mod index;
mod outbox;
mod reader;
mod recovery;
mod spool;
mod suppression;
mod suppression_sync;
mod writer;

pub use codec::DecodeError;
pub use counters::Counts;
pub use envelope::{Envelope, NewMessage, QueueSummary, Recipient, RecipientState};
pub use error::SpoolError;
pub use id::{IdGenerator, MessageId, ParseIdError};
pub use index::{DueEntry, QueueKey, ScheduleIndex};
pub use outbox::{OutboxEvent, OutboxObserver};
pub use reader::{SpoolReader, raw_scan};
pub use recovery::RecoveryReport;
pub use spool::{CommitObserver, CommitStats, Spool, SpoolOptions, UpdateExtras};
pub use suppression::{ParseReasonError, SuppressionEntry, SuppressionReason};
pub use suppression_sync::{JournalObserver, SuppressionChange};
