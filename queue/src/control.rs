//! The engine's control state: small records made at run time (operator suspensions now; tenants, keys
//! and webhooks later), in column family `control`.
//!
//! The spool does not interpret them: a record is a key (`KIND/ID`, chosen by the engine) and opaque
//! bytes (the engine's JSON). Writes are rare operator actions, so each is its own synced RocksDB write
//! (like the suppression lists), never part of the group commit: a 201 from the API means the record
//! survives a crash.

use rocksdb::{Direction, IteratorMode, WriteOptions};

use crate::db::{self, CF_CONTROL};
use crate::error::SpoolError;
use crate::spool::Spool;

impl Spool {
    /// Stores (or replaces) the control record `key`, synced before it returns.
    pub fn put_control(&self, key: &str, value: &[u8]) -> Result<(), SpoolError> {
        let db = self.db();
        let mut options = WriteOptions::default();
        options.set_sync(true);
        db.put_cf_opt(db::cf(db, CF_CONTROL)?, key.as_bytes(), value, &options)
            .map_err(SpoolError::from_rocksdb)
    }

    /// Deletes the control record `key` (synced); returns whether it existed.
    pub fn delete_control(&self, key: &str) -> Result<bool, SpoolError> {
        let _serial = self
            .admin_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let db = self.db();
        let cf = db::cf(db, CF_CONTROL)?;
        let existed = db
            .get_pinned_cf(cf, key.as_bytes())
            .map_err(SpoolError::from_rocksdb)?
            .is_some();
        if existed {
            let mut options = WriteOptions::default();
            options.set_sync(true);
            db.delete_cf_opt(cf, key.as_bytes(), &options)
                .map_err(SpoolError::from_rocksdb)?;
        }
        Ok(existed)
    }

    /// The control record `key`, if stored.
    pub fn control_record(&self, key: &str) -> Result<Option<Vec<u8>>, SpoolError> {
        let db = self.db();
        db.get_cf(db::cf(db, CF_CONTROL)?, key.as_bytes())
            .map_err(SpoolError::from_rocksdb)
    }

    /// Every control record whose key starts with `prefix`, in key order.
    pub fn control_records(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SpoolError> {
        let db = self.db();
        let cf = db::cf(db, CF_CONTROL)?;
        let mode = IteratorMode::From(prefix.as_bytes(), Direction::Forward);
        let mut records = Vec::new();
        for item in db.iterator_cf(cf, mode) {
            let (key, value) = item.map_err(SpoolError::from_rocksdb)?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let key = String::from_utf8(key.into_vec())
                .map_err(|_| SpoolError::corrupt(b"control", "a control key is not UTF-8"))?;
            records.push((key, value.into_vec()));
        }
        Ok(records)
    }
}
