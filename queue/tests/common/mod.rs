//! Helpers shared by the integration tests.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use penguin_queue::{
    CommitObserver, Envelope, MessageId, NewMessage, Recipient, RecipientState, Spool, SpoolOptions,
};

/// The message the tests store under `id`: everything is derived from the id, so a test (or a parent
/// process) can check what it reads back knowing only the id.
pub fn message(id: MessageId) -> NewMessage {
    let n = id.sequence();
    let size = [300usize, 5_000, 20_000][n as usize % 3];
    let mut body = format!("Message-ID: <{id}@test>\r\nSubject: message {n}\r\n\r\n").into_bytes();
    let mut i = 0u32;
    while body.len() < size {
        body.extend_from_slice(format!("line {i} of {id}\r\n").as_bytes());
        i += 1;
    }
    body.truncate(size);
    NewMessage {
        id,
        envelope: envelope(id, body.len() as u64),
        body,
    }
}

/// The envelope of [`message`]; every tenth message has no queued recipient left.
pub fn envelope(id: MessageId, size: u64) -> Envelope {
    let n = id.sequence();
    let finished = n % 10 == 9;
    let recipients = (0..1 + n % 3)
        .map(|r| Recipient {
            address: format!("user{n}-{r}@domain{}.example", (n + r) % 4),
            state: if finished {
                RecipientState::Delivered
            } else {
                RecipientState::Queued
            },
            attempts: if finished { 1 } else { 0 },
        })
        .collect();
    let received_at_ms = id.created_at_micros() / 1000;
    Envelope {
        tenant: format!("tenant{}", n % 3),
        campaign: format!("campaign{}", n % 5),
        pool: String::new(),
        sender: if n.is_multiple_of(7) {
            String::new()
        } else {
            format!("bounces@tenant{}.example", n % 3)
        },
        recipients,
        size,
        received_at_ms,
        next_attempt_at_ms: received_at_ms + u64::from(n % 13),
        smtputf8: n.is_multiple_of(2),
        eight_bit: n.is_multiple_of(4),
        warmup_priority: n.is_multiple_of(3),
    }
}

/// Ids 0..count with distinct sequence numbers and increasing times.
pub fn ids(count: u32) -> Vec<MessageId> {
    (0..count)
        .map(|n| MessageId::from_parts(1_764_000_000_000_000 + u64::from(n) * 1000, n))
        .collect()
}

/// Counts commits and the requests in them; remembers the largest batch.
#[derive(Debug, Default)]
pub struct CountingObserver {
    /// Batches committed.
    pub commits: AtomicUsize,
    /// Requests in them.
    pub messages: AtomicU64,
    /// The largest batch.
    pub largest: AtomicUsize,
}

impl CommitObserver for CountingObserver {
    fn on_commit(&self, messages: usize, _bytes: usize, _sync: Duration) {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.messages.fetch_add(messages as u64, Ordering::SeqCst);
        self.largest.fetch_max(messages, Ordering::SeqCst);
    }
}

/// Opens a spool in `dir` with `observer`.
pub fn open_with(dir: &std::path::Path, observer: Option<Arc<dyn CommitObserver>>) -> Spool {
    let mut options = SpoolOptions::new(dir);
    options.observer = observer;
    match Spool::open(options) {
        Ok(spool) => spool,
        Err(error) => panic!("cannot open spool in {}: {error}", dir.display()),
    }
}
