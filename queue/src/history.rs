//! Attempt history: what each delivery attempt of a queued message got (the engine's JSON, opaque
//! here), in column family `history`: one value per message (key: its id), the records joined by
//! newlines. A record is *appended* with a merge (no read) in the same batch as the envelope update of
//! the attempt, and the value is deleted (one point delete) with the message; an update that finishes
//! the message writes no record at all.

use rocksdb::{MergeOperands, WriteBatch};

use crate::db::{self, CF_HISTORY};
use crate::error::SpoolError;
use crate::id::MessageId;
use crate::spool::Spool;

/// The merge operator of column family `history`: the existing records, then each operand's, joined by
/// newlines.
pub(crate) fn merge_append(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut value = existing.map(<[u8]>::to_vec).unwrap_or_default();
    for operand in operands {
        if !value.is_empty() && !operand.is_empty() {
            value.push(b'\n');
        }
        value.extend_from_slice(operand);
    }
    Some(value)
}

/// Appends `records` (each without a newline) of message `id` in a batch.
pub(crate) fn append(
    batch: &mut WriteBatch,
    cf: &impl rocksdb::AsColumnFamilyRef,
    id: MessageId,
    records: &[Vec<u8>],
) {
    for record in records {
        batch.merge_cf(cf, id.as_bytes(), record);
    }
}

/// Deletes the records of message `id` in a batch.
pub(crate) fn delete(batch: &mut WriteBatch, cf: &impl rocksdb::AsColumnFamilyRef, id: MessageId) {
    batch.delete_cf(cf, id.as_bytes());
}

impl Spool {
    /// The attempt records of message `id`, oldest first (empty for a message never attempted or gone).
    pub fn history(&self, id: MessageId) -> Result<Vec<Vec<u8>>, SpoolError> {
        let db = self.db();
        let value = db
            .get_cf(db::cf(db, CF_HISTORY)?, id.as_bytes())
            .map_err(SpoolError::from_rocksdb)?;
        Ok(value
            .map(|bytes| {
                bytes
                    .split(|&b| b == b'\n')
                    .filter(|line| !line.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect()
            })
            .unwrap_or_default())
    }
}
