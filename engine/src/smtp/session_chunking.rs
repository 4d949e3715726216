//! BDAT (RFC 3030 CHUNKING) within the session: chunks are counted exactly, checked like DATA
//! content (bare CR/LF, line length, size) and form one message at `BDAT n LAST`.

use std::time::SystemTime;

use super::{Session, Step};
use crate::smtp::codec::ContentChecker;
use crate::smtp::reply::{Reply, replies};

/// The body being received by BDAT chunks.
#[derive(Debug, Default)]
pub(super) struct Chunks {
    /// Content so far (up to the size limit).
    pub(super) content: Vec<u8>,
    /// Line discipline over all chunks.
    pub(super) checker: ContentChecker,
    /// The content went over the size limit.
    pub(super) too_big: bool,
}

impl Chunks {
    /// Adds chunk bytes: checked, and kept up to `max_size`.
    pub(super) fn append(&mut self, bytes: &[u8], max_size: usize) {
        self.checker.check(bytes);
        let room = max_size.saturating_sub(self.content.len());
        self.too_big |= bytes.len() > room;
        self.content.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// A BDAT command whose chunk bytes are being read.
#[derive(Debug)]
pub(super) struct PendingChunk {
    /// Bytes still to read.
    pub(super) remaining: usize,
    /// LAST was given.
    pub(super) last: bool,
    /// The reply to send after reading the chunk instead of accepting it (bad sequence).
    pub(super) refusal: Option<Reply>,
}

impl Session {
    /// BDAT size [LAST].
    pub(super) fn on_bdat(&mut self, size: usize, last: bool, now: SystemTime) -> Step {
        let refusal = self.transaction_ready();
        if let (None, Some(transaction)) = (&refusal, self.transaction.as_mut()) {
            transaction.chunks.get_or_insert_with(Chunks::default);
        }
        self.chunk = Some(PendingChunk {
            remaining: size,
            last,
            refusal,
        });
        if size == 0 {
            return self.feed_chunk(&[], now).1.unwrap_or(Step::Reply(replies::ok()));
        }
        // The reply comes once the chunk bytes are read.
        Step::ReadMore
    }

    /// BDAT chunk bytes; returns how many were consumed and, once the chunk is complete, the step.
    pub fn feed_chunk(&mut self, input: &[u8], now: SystemTime) -> (usize, Option<Step>) {
        let Some(chunk) = self.chunk.as_mut() else {
            return (0, None);
        };
        let taken = input.len().min(chunk.remaining);
        chunk.remaining -= taken;
        let max_size = self.shared.params.max_message_size;
        let accepting = chunk.refusal.is_none();
        if let Some(chunks) = self
            .transaction
            .as_mut()
            .and_then(|t| t.chunks.as_mut())
            .filter(|_| accepting)
        {
            chunks.append(&input[..taken], max_size);
        }
        if chunk.remaining > 0 {
            return (taken, None);
        }
        let Some(PendingChunk { last, refusal, .. }) = self.chunk.take() else {
            return (taken, None);
        };
        (taken, Some(self.chunk_complete(last, refusal, now)))
    }

    /// A whole BDAT chunk was read.
    fn chunk_complete(&mut self, last: bool, refusal: Option<Reply>, now: SystemTime) -> Step {
        if let Some(refusal) = refusal {
            return self.error(refusal);
        }
        let too_big = self
            .transaction
            .as_ref()
            .and_then(|t| t.chunks.as_ref())
            .is_some_and(|c| c.too_big);
        if too_big {
            self.transaction = None;
            return Step::Reply(replies::message_too_big());
        }
        if !last {
            let received = self
                .transaction
                .as_ref()
                .and_then(|t| t.chunks.as_ref())
                .map_or(0, |c| c.content.len());
            return Step::Reply(Reply::new(
                250,
                "2.0.0",
                format!("Ok: {received} octets received"),
            ));
        }
        let chunks = self
            .transaction
            .as_mut()
            .and_then(|t| t.chunks.take())
            .unwrap_or_default();
        let Chunks {
            content,
            mut checker,
            too_big,
        } = chunks;
        checker.finish();
        self.complete_message(content, too_big, &checker, now)
    }
}
