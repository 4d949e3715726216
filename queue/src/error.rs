//! The spool's error type.

/// What can go wrong with the spool.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SpoolError {
    /// The disk is (nearly) full: RocksDB reported ENOSPC, or free space is below the configured minimum.
    /// SMTP should answer 452 and the server keep running.
    #[error("insufficient disk space for the spool")]
    NoSpace,
    /// Any other storage error, with RocksDB's message.
    #[error("spool storage error: {0}")]
    Storage(String),
    /// The writer thread is gone (the spool was closed or the thread died).
    #[error("spool is shut down")]
    Closed,
    /// A stored record cannot be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// The record's key (the message id in hex, or the raw key bytes if they are not an id).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl SpoolError {
    /// Maps a RocksDB error: out-of-space conditions become [`SpoolError::NoSpace`], the rest
    /// [`SpoolError::Storage`].
    pub(crate) fn from_rocksdb(error: rocksdb::Error) -> SpoolError {
        let message = error.into_string();
        if is_no_space(&message) {
            SpoolError::NoSpace
        } else {
            SpoolError::Storage(message)
        }
    }

    /// A corrupt-record error for the record under `key`.
    pub(crate) fn corrupt(key: &[u8], reason: impl std::fmt::Display) -> SpoolError {
        let key = match crate::MessageId::from_slice(key) {
            Some(id) => id.to_string(),
            None => format!("{key:02X?}"),
        };
        SpoolError::Corrupt {
            key,
            reason: reason.to_string(),
        }
    }
}

/// Whether a RocksDB status message means the disk is full: `IO error: No space left on device` (the
/// NoSpace subcode, also used for ENOSPC from the file system) or the SstFileManager's space limit.
fn is_no_space(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("no space left") || lower.contains("nospace") || lower.contains("max allowed space")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_messages_are_recognised() {
        let cases = [
            (
                "IO error: No space left on device: While appending to file: /x/000012.log",
                true,
            ),
            ("IO error: No space left on deviceWrite failed", true),
            ("IO error: Max allowed space was reached", true),
            (
                "IO error: While open a file for appending: /x/LOCK: Permission denied",
                false,
            ),
            ("Corruption: block checksum mismatch", false),
        ];
        for (message, no_space) in cases {
            assert_eq!(is_no_space(message), no_space, "{message}");
        }
    }

    #[test]
    fn corrupt_names_the_key() {
        let id = crate::MessageId::from_parts(1, 2);
        let err = SpoolError::corrupt(id.as_bytes(), "truncated");
        assert_eq!(err.to_string(), format!("corrupt record {id}: truncated"));
        let err = SpoolError::corrupt(&[0xAB, 0x01], "bad key");
        assert_eq!(err.to_string(), "corrupt record [AB, 01]: bad key");
    }
}
