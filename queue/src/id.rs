//! Message identifiers: 12 bytes that sort by creation time.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A message id: unix micros (u64 big-endian) followed by a sequence number (u32 big-endian).
///
/// The byte order makes the natural ordering of ids (and of the RocksDB keys built from them) the order
/// of creation. Displayed and parsed as 24 uppercase hex characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub [u8; 12]);

impl MessageId {
    /// Builds an id from its two parts.
    pub fn from_parts(micros: u64, sequence: u32) -> MessageId {
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&micros.to_be_bytes());
        bytes[8..].copy_from_slice(&sequence.to_be_bytes());
        MessageId(bytes)
    }

    /// Interprets a storage key as an id; `None` unless it is exactly 12 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<MessageId> {
        <[u8; 12]>::try_from(bytes).ok().map(MessageId)
    }

    /// The raw 12 bytes, as used for storage keys.
    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }

    /// When the id was made, in unix microseconds.
    pub fn created_at_micros(&self) -> u64 {
        let mut micros = [0u8; 8];
        micros.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(micros)
    }

    /// The sequence part, which tells apart ids made in the same microsecond.
    pub fn sequence(&self) -> u32 {
        let mut seq = [0u8; 4];
        seq.copy_from_slice(&self.0[8..]);
        u32::from_be_bytes(seq)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

/// Why a string is not a [`MessageId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// The string does not have exactly 24 characters.
    #[error("a message id has 24 hex digits, this one has {0} characters")]
    Length(usize),
    /// A character is not a hex digit.
    #[error("a message id has only hex digits (0-9, A-F)")]
    NotHex,
}

impl FromStr for MessageId {
    type Err = ParseIdError;

    /// Parses 24 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw = s.as_bytes();
        if raw.len() != 24 {
            return Err(ParseIdError::Length(s.chars().count()));
        }
        let mut bytes = [0u8; 12];
        for (out, pair) in bytes.iter_mut().zip(raw.chunks_exact(2)) {
            *out = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Ok(MessageId(bytes))
    }
}

fn hex_value(c: u8) -> Result<u8, ParseIdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(ParseIdError::NotHex),
    }
}

/// Makes unique message ids: the time in microseconds from the system clock and a sequence number from a
/// counter that starts at a random value (so two processes, or a restart within the same microsecond, do
/// not collide) and wraps.
#[derive(Debug)]
pub struct IdGenerator {
    /// The next sequence number; shared by all threads that make ids.
    sequence: AtomicU32,
}

impl IdGenerator {
    /// A generator whose sequence starts at a random value.
    pub fn new() -> Self {
        IdGenerator {
            sequence: AtomicU32::new(rand::random()),
        }
    }

    /// A new id, unique among those this generator makes (until the sequence wraps within one microsecond,
    /// which would take 2^32 ids).
    pub fn next_id(&self) -> MessageId {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        MessageId::from_parts(micros, sequence)
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn display_and_parse_roundtrip() {
        let id = MessageId::from_parts(0x0001_0203_0405_0607, 0x0809_0A0B);
        assert_eq!(id.to_string(), "000102030405060708090A0B");
        assert_eq!("000102030405060708090A0B".parse::<MessageId>(), Ok(id));
        assert_eq!("000102030405060708090a0b".parse::<MessageId>(), Ok(id));
        assert_eq!(id.created_at_micros(), 0x0001_0203_0405_0607);
        assert_eq!(id.sequence(), 0x0809_0A0B);
    }

    #[test]
    fn parse_rejects_bad_input() {
        let cases: &[(&str, ParseIdError)] = &[
            ("", ParseIdError::Length(0)),
            ("00", ParseIdError::Length(2)),
            ("000102030405060708090A0B0C", ParseIdError::Length(26)),
            ("000102030405060708090A0G", ParseIdError::NotHex),
            ("00010203040506070809 A0B", ParseIdError::NotHex),
            ("éééééééééééé", ParseIdError::NotHex),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<MessageId>().as_ref(), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let early = MessageId::from_parts(1_000, u32::MAX);
        let late = MessageId::from_parts(1_001, 0);
        assert!(early < late);
        assert!(early.to_string() < late.to_string());
    }

    #[test]
    fn generator_makes_unique_ids_near_now() {
        let generator = IdGenerator::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let ids: HashSet<MessageId> = (0..10_000).map(|_| generator.next_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            let created = u128::from(id.created_at_micros());
            assert!(created + 1_000_000 >= now && created <= now + 60_000_000, "{id}");
        }
    }

    #[test]
    fn from_slice_requires_twelve_bytes() {
        assert_eq!(MessageId::from_slice(&[7u8; 12]), Some(MessageId([7u8; 12])));
        assert_eq!(MessageId::from_slice(&[7u8; 11]), None);
        assert_eq!(MessageId::from_slice(&[7u8; 13]), None);
    }
}
