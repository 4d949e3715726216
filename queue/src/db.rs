//! RocksDB layout and tuning, shared by the read-write spool and the read-only reader.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, DBRecoveryMode,
    Options,
};

use crate::error::SpoolError;

/// Column family of envelope records (key: message id, value: [`crate::codec`] record).
pub(crate) const CF_ENVELOPES: &str = "envelopes";
/// Column family of message bodies (key: message id, value: the body bytes).
pub(crate) const CF_BODIES: &str = "bodies";
/// Column family of the per-tenant suppression lists (key: `tenant \0 address`, value: see
/// [`crate::suppression`]).
pub(crate) const CF_SUPPRESSIONS: &str = "suppressions";
/// Column family of small named values, such as secrets (key: the name).
pub(crate) const CF_META: &str = "meta";
/// Column family of the engine's control state: records made at run time through the API (operator
/// suspensions today), keyed by kind and id (see [`crate::control`]).
pub(crate) const CF_CONTROL: &str = "control";
/// Column family of counters (usage per tenant and day, campaign outcomes): i64 totals maintained by a
/// merge operator (see [`crate::counters`]).
pub(crate) const CF_COUNTERS: &str = "counters";
/// Column family of the attempt history of queued messages (see [`crate::history`]).
pub(crate) const CF_HISTORY: &str = "history";
/// Column family of the webhook outbox (see [`crate::outbox`]).
pub(crate) const CF_OUTBOX: &str = "outbox";
/// Every column family, in the order they are opened; all are flushed at close.
pub(crate) const ALL_CFS: [&str; 8] = [
    CF_ENVELOPES,
    CF_BODIES,
    CF_SUPPRESSIONS,
    CF_META,
    CF_CONTROL,
    CF_COUNTERS,
    CF_HISTORY,
    CF_OUTBOX,
];

const MIB: usize = 1024 * 1024;
/// Memtable size per column family.
const WRITE_BUFFER_BYTES: usize = 64 * MIB;
/// Block cache shared by both column families: envelopes and bodies read back for delivery.
const BLOCK_CACHE_BYTES: usize = 128 * MIB;
/// Bodies at least this large go to blob files, out of the LSM tree: they are written once and deleted
/// whole, so keeping them out of compactions saves most of the write amplification.
const MIN_BLOB_BYTES: u64 = 4096;

/// Database-wide options.
fn db_options(create: bool) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(create);
    opts.create_missing_column_families(create);
    // A torn tail of the WAL (crash during a write) loses only unacknowledged batches: recover up to it.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    opts.set_max_background_jobs(2);
    opts.set_max_total_wal_size(4 * WRITE_BUFFER_BYTES as u64);
    opts.set_keep_log_file_num(4);
    opts.set_max_log_file_size(16 * MIB);
    opts.set_bytes_per_sync(MIB as u64);
    opts
}

/// Options of one column family.
fn cf_options(cache: &Cache, bodies: bool) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    if !bodies {
        table.set_bloom_filter(10.0, false);
    }
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_level_compaction_dynamic_level_bytes(true);
    if bodies {
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(MIN_BLOB_BYTES);
        opts.set_blob_compression_type(DBCompressionType::Lz4);
        opts.set_enable_blob_gc(true);
    }
    opts
}

/// Options of the counters column family: the adding merge operator.
fn counter_options(cache: &Cache) -> Options {
    let mut opts = cf_options(cache, false);
    opts.set_merge_operator_associative("penguin_add_i64", crate::counters::merge_add);
    opts
}

/// Options of the history column family: the appending merge operator.
fn history_options(cache: &Cache) -> Options {
    let mut opts = cf_options(cache, false);
    opts.set_merge_operator_associative("penguin_append_lines", crate::history::merge_append);
    opts
}

fn descriptors() -> Vec<ColumnFamilyDescriptor> {
    let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    vec![
        ColumnFamilyDescriptor::new(CF_ENVELOPES, cf_options(&cache, false)),
        ColumnFamilyDescriptor::new(CF_BODIES, cf_options(&cache, true)),
        ColumnFamilyDescriptor::new(CF_SUPPRESSIONS, cf_options(&cache, false)),
        ColumnFamilyDescriptor::new(CF_META, cf_options(&cache, false)),
        ColumnFamilyDescriptor::new(CF_CONTROL, cf_options(&cache, false)),
        ColumnFamilyDescriptor::new(CF_COUNTERS, counter_options(&cache)),
        ColumnFamilyDescriptor::new(CF_HISTORY, history_options(&cache)),
        ColumnFamilyDescriptor::new(CF_OUTBOX, cf_options(&cache, false)),
    ]
}

/// Opens (creating if missing) the spool database for reading and writing. Column families missing from
/// an existing spool (one made by an older version) are created.
pub(crate) fn open_read_write(path: &Path) -> Result<DB, SpoolError> {
    std::fs::create_dir_all(path)
        .map_err(|e| SpoolError::Storage(format!("cannot create spool directory {}: {e}", path.display())))?;
    DB::open_cf_descriptors(&db_options(true), path, descriptors()).map_err(SpoolError::from_rocksdb)
}

/// Opens an existing spool read-only; works while a server has it open (the WAL is replayed into this
/// handle's memory, nothing on disk changes).
pub(crate) fn open_read_only(path: &Path) -> Result<DB, SpoolError> {
    if !path.join("CURRENT").is_file() {
        return Err(SpoolError::Storage(format!(
            "no spool at {} (no RocksDB CURRENT file)",
            path.display()
        )));
    }
    // A spool written by an older version may lack newer column families, and a read-only open cannot
    // create them: open those that exist.
    let options = db_options(false);
    let existing = DB::list_cf(&options, path).map_err(SpoolError::from_rocksdb)?;
    let present = descriptors()
        .into_iter()
        .filter(|descriptor| existing.iter().any(|name| name == descriptor.name()));
    DB::open_cf_descriptors_read_only(&options, path, present, false).map_err(SpoolError::from_rocksdb)
}

/// Opens an existing spool as a RocksDB secondary instance, the mode made for reading beside a live
/// primary: it follows the primary's MANIFEST and WAL, tolerating files the primary deletes meanwhile
/// (a plain read-only open fails with "No such file" when it races the WAL cleanup after a crash
/// recovery). `secondary` is a scratch directory for the secondary's own info log; the data stays in
/// `path`. Works with the primary stopped too.
pub(crate) fn open_secondary(path: &Path, secondary: &Path) -> Result<DB, SpoolError> {
    if !path.join("CURRENT").is_file() {
        return Err(SpoolError::Storage(format!(
            "no spool at {} (no RocksDB CURRENT file)",
            path.display()
        )));
    }
    let mut options = db_options(false);
    // A secondary keeps every table file open: the primary may delete them while it reads.
    options.set_max_open_files(-1);
    let existing = DB::list_cf(&options, path).map_err(SpoolError::from_rocksdb)?;
    let present = descriptors()
        .into_iter()
        .filter(|descriptor| existing.iter().any(|name| name == descriptor.name()));
    let db = DB::open_cf_descriptors_as_secondary(&options, path, secondary, present)
        .map_err(SpoolError::from_rocksdb)?;
    db.try_catch_up_with_primary().map_err(SpoolError::from_rocksdb)?;
    Ok(db)
}

/// A column family handle; every spool database opened read-write has all of them.
pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily, SpoolError> {
    db.cf_handle(name)
        .ok_or_else(|| SpoolError::Storage(format!("column family {name} missing")))
}

/// Bytes available to unprivileged users on the file system holding `path` (statvfs), or `None` if it
/// cannot be determined.
pub(crate) fn available_bytes(path: &Path) -> Option<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data, for which all-zero bytes are a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a valid, writable statvfs.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return None;
    }
    #[allow(clippy::useless_conversion)] // The field types differ between platforms.
    let (blocks, block_size) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Some(blocks.saturating_mul(block_size))
}

/// Reads and decodes the envelope of `id`.
pub(crate) fn get_envelope(db: &DB, id: crate::MessageId) -> Result<Option<crate::Envelope>, SpoolError> {
    let value = db
        .get_pinned_cf(cf(db, CF_ENVELOPES)?, id.as_bytes())
        .map_err(SpoolError::from_rocksdb)?;
    match value {
        Some(bytes) => crate::codec::decode(&bytes)
            .map(Some)
            .map_err(|e| SpoolError::corrupt(id.as_bytes(), e)),
        None => Ok(None),
    }
}

/// Reads the body of `id`.
pub(crate) fn get_body(db: &DB, id: crate::MessageId) -> Result<Option<Vec<u8>>, SpoolError> {
    db.get_cf(cf(db, CF_BODIES)?, id.as_bytes())
        .map_err(SpoolError::from_rocksdb)
}
