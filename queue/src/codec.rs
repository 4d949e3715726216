//! The envelope record format: compact, versioned, hand-rolled binary; sans-IO.
//!
//! Version 1 layout (varint = unsigned LEB128, at most 10 bytes; string = varint length + UTF-8 bytes):
//!
//! ```text
//! u8 version (1) | u8 flags (bit 0 smtputf8, bit 1 eight_bit, bit 2 pool, bit 3 warm-up priority) | varint size
//! | varint received_at_ms | varint next_attempt_at_ms | string tenant | string campaign
//! | [string pool, only with flag bit 2] | string sender | varint recipient count
//! | per recipient: string address, u8 state (0 queued, 1 delivered, 2 bounced, 3 expired, 4 cancelled), varint attempts
//! ```
//!
//! The pool field came later: a flag bit says it is there, so records written before it decode
//! unchanged (their pool is `""`, the tenant's default pool) and an envelope without a pool choice
//! costs no byte.
//!
//! Nothing may follow the last recipient. Decoding never panics and never allocates more than the input
//! can justify, whatever the input.

use crate::envelope::{Envelope, Recipient, RecipientState};

/// The format version this code writes.
pub const FORMAT_VERSION: u8 = 1;

const FLAG_SMTPUTF8: u8 = 1;
const FLAG_EIGHT_BIT: u8 = 2;
/// A pool name follows the campaign.
const FLAG_POOL: u8 = 4;
/// `X-Warmup-Priority: high` (a flag only: older records decode as normal priority).
const FLAG_WARMUP_PRIORITY: u8 = 8;
const KNOWN_FLAGS: u8 = FLAG_SMTPUTF8 | FLAG_EIGHT_BIT | FLAG_POOL | FLAG_WARMUP_PRIORITY;
/// The fewest bytes one encoded recipient takes (empty address, state, attempts).
const MIN_RECIPIENT_BYTES: usize = 3;

/// Why bytes are not a valid envelope record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The first byte names a format this code does not know.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The flags byte has bits this version does not define.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// The record ends in the middle of a field.
    #[error("record truncated")]
    Truncated,
    /// A varint is longer than 10 bytes or exceeds 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A number does not fit its field.
    #[error("value out of range")]
    OutOfRange,
    /// A string is not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A recipient state byte is not one of the known states.
    #[error("unknown recipient state {0}")]
    InvalidState(u8),
    /// Bytes follow the last recipient.
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
}

/// Encodes an envelope in the current format.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let strings = envelope.tenant.len()
        + envelope.campaign.len()
        + envelope.pool.len()
        + envelope.sender.len()
        + envelope
            .recipients
            .iter()
            .map(|r| r.address.len() + 8)
            .sum::<usize>();
    let mut out = Vec::with_capacity(40 + strings);
    out.push(FORMAT_VERSION);
    let mut flags = 0;
    if envelope.smtputf8 {
        flags |= FLAG_SMTPUTF8;
    }
    if envelope.eight_bit {
        flags |= FLAG_EIGHT_BIT;
    }
    if !envelope.pool.is_empty() {
        flags |= FLAG_POOL;
    }
    if envelope.warmup_priority {
        flags |= FLAG_WARMUP_PRIORITY;
    }
    out.push(flags);
    put_varint(&mut out, envelope.size);
    put_varint(&mut out, envelope.received_at_ms);
    put_varint(&mut out, envelope.next_attempt_at_ms);
    put_str(&mut out, &envelope.tenant);
    put_str(&mut out, &envelope.campaign);
    if !envelope.pool.is_empty() {
        put_str(&mut out, &envelope.pool);
    }
    put_str(&mut out, &envelope.sender);
    put_varint(&mut out, envelope.recipients.len() as u64);
    for recipient in &envelope.recipients {
        put_str(&mut out, &recipient.address);
        out.push(state_byte(&recipient.state));
        put_varint(&mut out, u64::from(recipient.attempts));
    }
    out
}

/// Decodes a record made by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let mut r = Reader::new(bytes);
    let head = r.header()?;
    let tenant = r.str()?.to_owned();
    let campaign = r.str()?.to_owned();
    let pool = if head.flags & FLAG_POOL != 0 {
        r.str()?.to_owned()
    } else {
        String::new()
    };
    let sender = r.str()?.to_owned();
    let count = r.count()?;
    let mut recipients = Vec::with_capacity(count.min(r.remaining() / MIN_RECIPIENT_BYTES));
    for _ in 0..count {
        let address = r.str()?.to_owned();
        let state = r.state()?;
        let attempts = r.attempts()?;
        recipients.push(Recipient {
            address,
            state,
            attempts,
        });
    }
    r.finish()?;
    Ok(Envelope {
        tenant,
        campaign,
        pool,
        sender,
        recipients,
        size: head.size,
        received_at_ms: head.received_at_ms,
        next_attempt_at_ms: head.next_attempt_at_ms,
        smtputf8: head.flags & FLAG_SMTPUTF8 != 0,
        eight_bit: head.flags & FLAG_EIGHT_BIT != 0,
        warmup_priority: head.flags & FLAG_WARMUP_PRIORITY != 0,
    })
}

/// The part of an envelope that scheduling needs, borrowed from the record without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleInfo<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The campaign.
    pub campaign: &'a str,
    /// When delivery is next due, unix milliseconds.
    pub next_attempt_at_ms: u64,
    /// How many recipients are in state queued.
    pub queued_recipients: u64,
}

/// Decodes only what scheduling needs (used by the recovery scan); validates the record's structure like
/// [`decode`] but does not check recipient addresses for UTF-8.
pub fn decode_schedule(bytes: &[u8]) -> Result<ScheduleInfo<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let head = r.header()?;
    let tenant = r.str()?;
    let campaign = r.str()?;
    if head.flags & FLAG_POOL != 0 {
        r.skip_bytes()?;
    }
    r.skip_bytes()?;
    let count = r.count()?;
    let mut queued_recipients = 0;
    for _ in 0..count {
        r.skip_bytes()?;
        if r.state()? == RecipientState::Queued {
            queued_recipients += 1;
        }
        r.attempts()?;
    }
    r.finish()?;
    Ok(ScheduleInfo {
        tenant,
        campaign,
        next_attempt_at_ms: head.next_attempt_at_ms,
        queued_recipients,
    })
}

fn state_byte(state: &RecipientState) -> u8 {
    match state {
        RecipientState::Queued => 0,
        RecipientState::Delivered => 1,
        RecipientState::Bounced => 2,
        RecipientState::Expired => 3,
        RecipientState::Cancelled => 4,
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The fixed-position fields at the start of a record.
struct Header {
    /// The flags byte.
    flags: u8,
    /// Body size.
    size: u64,
    /// Acceptance time.
    received_at_ms: u64,
    /// Next due time.
    next_attempt_at_ms: u64,
}

/// A cursor over a record; every read checks bounds.
struct Reader<'a> {
    /// The bytes not read yet.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn remaining(&self) -> usize {
        self.rest.len()
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&first, rest) = self.rest.split_first().ok_or(DecodeError::Truncated)?;
        self.rest = rest;
        Ok(first)
    }

    fn header(&mut self) -> Result<Header, DecodeError> {
        let version = self.byte().map_err(|_| DecodeError::Empty)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let flags = self.byte()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::UnknownFlags(flags & !KNOWN_FLAGS));
        }
        let size = self.varint()?;
        let received_at_ms = self.varint()?;
        let next_attempt_at_ms = self.varint()?;
        Ok(Header {
            flags,
            size,
            received_at_ms,
            next_attempt_at_ms,
        })
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        // Most varints (lengths, counts, attempts) are one byte.
        if let Some((&first, rest)) = self.rest.split_first()
            && first < 0x80
        {
            self.rest = rest;
            return Ok(u64::from(first));
        }
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            let low = u64::from(b & 0x7f);
            // The tenth byte may only hold the top bit of a u64.
            if i == 9 && low > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            value |= low << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::OutOfRange)?;
        if len > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(len)
    }

    fn skip_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.len()?;
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.skip_bytes()?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.varint()?).map_err(|_| DecodeError::OutOfRange)
    }

    fn state(&mut self) -> Result<RecipientState, DecodeError> {
        match self.byte()? {
            0 => Ok(RecipientState::Queued),
            1 => Ok(RecipientState::Delivered),
            2 => Ok(RecipientState::Bounced),
            3 => Ok(RecipientState::Expired),
            4 => Ok(RecipientState::Cancelled),
            other => Err(DecodeError::InvalidState(other)),
        }
    }

    fn attempts(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::OutOfRange)
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests;
