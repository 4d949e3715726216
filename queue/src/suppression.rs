//! Per-tenant suppression lists and named secrets, stored in the spool's RocksDB.
//!
//! Column family `suppressions`: key `tenant \0 address` (the address lowercased, whole), value a small
//! versioned record (see [`encode`]). Column family `meta`: key the secret's name, value 32 bytes.
//!
//! These writes are rare (an unsubscribe, a hard bounce, an operator's API call), so they do not go
//! through the group-commit writer: each is its own synced RocksDB write (RocksDB is thread-safe).
//! Read-then-write sequences hold the spool's admin lock so that "was it new?" answers are exact.
//! With `[cluster]`, each change is also journaled in the same write (see [`crate::suppression_sync`]).

use std::fmt;
use std::str::FromStr;
use std::sync::PoisonError;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::db::{self, CF_META, CF_SUPPRESSIONS};
use crate::error::SpoolError;
use crate::spool::Spool;

/// Why an address is on a suppression list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// The recipient used an unsubscribe link.
    Unsubscribe,
    /// Delivery failed permanently because the address or its domain does not exist.
    HardBounce,
    /// The recipient complained (a feedback-loop report).
    Complaint,
    /// Added by the operator or the platform.
    Manual,
}

impl SuppressionReason {
    /// Every reason, in a fixed order.
    pub const ALL: [SuppressionReason; 4] = [
        SuppressionReason::Unsubscribe,
        SuppressionReason::HardBounce,
        SuppressionReason::Complaint,
        SuppressionReason::Manual,
    ];

    /// `unsubscribe`, `hard_bounce`, `complaint` or `manual`.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Unsubscribe => "unsubscribe",
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::Manual => "manual",
        }
    }

    /// The byte stored for the reason.
    fn code(self) -> u8 {
        match self {
            SuppressionReason::Unsubscribe => 1,
            SuppressionReason::HardBounce => 2,
            SuppressionReason::Complaint => 3,
            SuppressionReason::Manual => 4,
        }
    }

    /// The reason of a stored byte.
    fn from_code(code: u8) -> Option<SuppressionReason> {
        SuppressionReason::ALL
            .into_iter()
            .find(|reason| reason.code() == code)
    }
}

impl fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a [`SuppressionReason`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown suppression reason {0:?}: expected unsubscribe, hard_bounce, complaint or manual")]
pub struct ParseReasonError(pub String);

impl FromStr for SuppressionReason {
    type Err = ParseReasonError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SuppressionReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
            .ok_or_else(|| ParseReasonError(text.to_string()))
    }
}

/// One address on a tenant's suppression list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionEntry {
    /// The address; entries read back carry it lowercased (the form it is stored under).
    pub address: String,
    /// Why it is suppressed.
    pub reason: SuppressionReason,
    /// When it was added, unix milliseconds.
    pub added_at_ms: u64,
    /// The campaign that led to it (the one unsubscribed from, or that bounced), if any.
    pub campaign: Option<String>,
}

/// Version byte of the stored record.
const RECORD_VERSION: u8 = 1;
/// Bytes of a stored secret.
const SECRET_BYTES: usize = 32;

/// The address as it is stored and looked up: the whole address lowercased.
pub(crate) fn normalise(address: &str) -> String {
    address.to_lowercase()
}

/// `tenant \0` — the prefix of every key of the tenant. A tenant name may not contain NUL.
fn tenant_prefix(tenant: &str) -> Result<Vec<u8>, SpoolError> {
    if tenant.contains('\0') {
        return Err(SpoolError::Storage(format!(
            "tenant name {tenant:?} contains NUL; it cannot key a suppression list"
        )));
    }
    let mut prefix = Vec::with_capacity(tenant.len() + 1);
    prefix.extend_from_slice(tenant.as_bytes());
    prefix.push(0);
    Ok(prefix)
}

/// `tenant \0 lowercased-address`.
pub(crate) fn key(tenant: &str, address: &str) -> Result<Vec<u8>, SpoolError> {
    let mut key = tenant_prefix(tenant)?;
    key.extend_from_slice(normalise(address).as_bytes());
    Ok(key)
}

/// Record: version, reason code, `added_at_ms` (8 bytes big-endian), then the campaign's length
/// (4 bytes big-endian, `u32::MAX` for none) and bytes. The address is the key's.
pub(crate) fn encode(entry: &SuppressionEntry) -> Vec<u8> {
    let campaign = entry.campaign.as_deref().unwrap_or("");
    let mut value = Vec::with_capacity(14 + campaign.len());
    value.push(RECORD_VERSION);
    value.push(entry.reason.code());
    value.extend_from_slice(&entry.added_at_ms.to_be_bytes());
    let length = match &entry.campaign {
        Some(campaign) => u32::try_from(campaign.len()).unwrap_or(u32::MAX - 1),
        None => u32::MAX,
    };
    value.extend_from_slice(&length.to_be_bytes());
    if length != u32::MAX {
        value.extend_from_slice(&campaign.as_bytes()[..length as usize]);
    }
    value
}

/// Decodes a record stored under `key`.
pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<SuppressionEntry, SpoolError> {
    let corrupt = |reason: &str| SpoolError::corrupt(key, reason);
    let address_bytes = key
        .iter()
        .position(|&b| b == 0)
        .map(|nul| &key[nul + 1..])
        .ok_or_else(|| corrupt("key without tenant separator"))?;
    let address = std::str::from_utf8(address_bytes).map_err(|_| corrupt("address is not UTF-8"))?;
    let [version, reason, rest @ ..] = value else {
        return Err(corrupt("truncated suppression record"));
    };
    if *version != RECORD_VERSION {
        return Err(corrupt(&format!("unknown suppression record version {version}")));
    }
    let reason = SuppressionReason::from_code(*reason).ok_or_else(|| corrupt("unknown reason code"))?;
    let (added, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("truncated time"))?;
    let (length, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("truncated campaign length"))?;
    let campaign = match u32::from_be_bytes(*length) {
        u32::MAX if rest.is_empty() => None,
        length if rest.len() == length as usize => {
            Some(String::from_utf8(rest.to_vec()).map_err(|_| corrupt("campaign is not UTF-8"))?)
        }
        _ => return Err(corrupt("campaign length does not match the record")),
    };
    Ok(SuppressionEntry {
        address: address.to_string(),
        reason,
        added_at_ms: u64::from_be_bytes(*added),
        campaign,
    })
}

/// Write options of these rare, durable writes.
pub(crate) fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

impl Spool {
    /// Point lookup (a RocksDB get; fast, sync, fine to call on an async thread). The address is
    /// matched case-insensitively (the whole address is lowercased).
    pub fn suppression(&self, tenant: &str, address: &str) -> Result<Option<SuppressionEntry>, SpoolError> {
        let db = self.db();
        let key = key(tenant, address)?;
        let value = db
            .get_pinned_cf(db::cf(db, CF_SUPPRESSIONS)?, &key)
            .map_err(SpoolError::from_rocksdb)?;
        value.map(|value| decode(&key, &value)).transpose()
    }

    /// Durable (synced) insert; returns false if the address was already suppressed (existing entry
    /// kept unchanged). Blocks for the sync: call it off the async runtime.
    pub fn suppress(&self, tenant: &str, entry: SuppressionEntry) -> Result<bool, SpoolError> {
        let db = self.db();
        let cf = db::cf(db, CF_SUPPRESSIONS)?;
        let key = key(tenant, &entry.address)?;
        let _guard = self.admin_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if db
            .get_pinned_cf(cf, &key)
            .map_err(SpoolError::from_rocksdb)?
            .is_some()
        {
            return Ok(false);
        }
        self.write_suppression(tenant, &key, Some(&entry), entry.added_at_ms)?;
        Ok(true)
    }

    /// [`Spool::unsuppress_at`] without a change time (0): for a spool whose changes are not
    /// journaled (without `[cluster]`).
    pub fn unsuppress(&self, tenant: &str, address: &str) -> Result<bool, SpoolError> {
        self.unsuppress_at(tenant, address, 0)
    }

    /// Durable delete made at `at_ms` (unix milliseconds; the time replication orders changes by);
    /// false if absent. Blocks for the sync: call it off the async runtime.
    pub fn unsuppress_at(&self, tenant: &str, address: &str, at_ms: u64) -> Result<bool, SpoolError> {
        let db = self.db();
        let cf = db::cf(db, CF_SUPPRESSIONS)?;
        let key = key(tenant, address)?;
        let _guard = self.admin_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if db
            .get_pinned_cf(cf, &key)
            .map_err(SpoolError::from_rocksdb)?
            .is_none()
        {
            return Ok(false);
        }
        self.write_suppression(tenant, &key, None, at_ms)?;
        Ok(true)
    }

    /// Entries of a tenant in address order (of the lowercased addresses), after `after` (exclusive,
    /// matched case-insensitively), at most `limit`.
    pub fn suppressions(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SuppressionEntry>, SpoolError> {
        let db = self.db();
        let prefix = tenant_prefix(tenant)?;
        let mut upper = prefix.clone();
        if let Some(last) = upper.last_mut() {
            *last = 1; // `tenant \1`: just past every key of the tenant.
        }
        let start = match after {
            Some(after) => key(tenant, after)?,
            None => prefix,
        };
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(upper);
        let iter = db.iterator_cf_opt(
            db::cf(db, CF_SUPPRESSIONS)?,
            read,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut entries = Vec::with_capacity(limit.min(1024));
        for item in iter {
            if entries.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(SpoolError::from_rocksdb)?;
            if after.is_some() && *key == *start {
                continue;
            }
            entries.push(decode(&key, &value)?);
        }
        Ok(entries)
    }

    /// A 32-byte secret stored in the `meta` column family under `name`, generated at random (a CSPRNG)
    /// and synced on first use; the same on every later call and after a restart.
    pub fn secret(&self, name: &str) -> Result<[u8; 32], SpoolError> {
        let db = self.db();
        let cf = db::cf(db, CF_META)?;
        let _guard = self.admin_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = db
            .get_pinned_cf(cf, name.as_bytes())
            .map_err(SpoolError::from_rocksdb)?
        {
            return <[u8; SECRET_BYTES]>::try_from(&value[..])
                .map_err(|_| SpoolError::corrupt(name.as_bytes(), "secret is not 32 bytes"));
        }
        let secret: [u8; SECRET_BYTES] = rand::random();
        db.put_cf_opt(cf, name.as_bytes(), secret, &synced())
            .map_err(SpoolError::from_rocksdb)?;
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(campaign: Option<&str>) -> SuppressionEntry {
        SuppressionEntry {
            address: "user@example.com".into(),
            reason: SuppressionReason::HardBounce,
            added_at_ms: 1_795_638_425_042,
            campaign: campaign.map(str::to_string),
        }
    }

    #[test]
    fn records_roundtrip() {
        let key = key("acme", "User@Example.COM").expect("key");
        assert_eq!(key, b"acme\0user@example.com");
        for campaign in [None, Some(""), Some("spring-2026"), Some("été ✉")] {
            let entry = entry(campaign);
            assert_eq!(decode(&key, &encode(&entry)).expect("decodes"), entry);
        }
    }

    #[test]
    fn damaged_records_are_corrupt_not_panics() {
        let key = key("acme", "user@example.com").expect("key");
        let good = encode(&entry(Some("spring")));
        for cut in 0..good.len() {
            assert!(decode(&key, &good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_version = good.clone();
        bad_version[0] = 9;
        assert!(decode(&key, &bad_version).is_err());
        let mut bad_reason = good.clone();
        bad_reason[1] = 0;
        assert!(decode(&key, &bad_reason).is_err());
        let mut trailing = good;
        trailing.push(b'x');
        assert!(decode(&key, &trailing).is_err());
        assert!(decode(b"no-separator", &encode(&entry(None))).is_err());
    }

    #[test]
    fn reasons_parse_and_print() {
        for reason in SuppressionReason::ALL {
            assert_eq!(reason.as_str().parse::<SuppressionReason>(), Ok(reason));
            assert_eq!(
                serde_json::to_string(&reason).ok(),
                Some(format!("\"{}\"", reason.as_str()))
            );
            assert_eq!(SuppressionReason::from_code(reason.code()), Some(reason));
        }
        assert!("Manual".parse::<SuppressionReason>().is_err());
        assert!("".parse::<SuppressionReason>().is_err());
    }

    #[test]
    fn tenant_with_nul_is_refused() {
        assert!(key("a\0b", "x@y").is_err());
    }
}
