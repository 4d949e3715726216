//! Tenant API keys: `POST /v1/tenants/{t}/api-keys` → 201 `{"id", "key", "created"}` (the key is shown
//! once), `GET` → `{"api_keys": [{"id", "created"}]}`, `DELETE …/{id}` → 204, effective at once.
//!
//! A key is `pmk_` and 43 base64url characters (32 random bytes). Only its SHA-256 is stored: in the
//! spool's control records under `api-key/TENANT/ID` (`{"sha256", "created_ms"}`, synced), and in
//! memory by hash for the per-request lookup. With `[cluster]` every creation and deletion is
//! journaled for the other nodes before it is stored, and theirs are applied here ([`ApiKeys`]
//! implements [`crate::cluster::ApplyChange`]): a key made on one node authenticates on all.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use penguin_queue::{Spool, SpoolError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ApiState, blocking};
use crate::clock::{SharedClock, SystemClock};
use crate::cluster::Replication;
use crate::timefmt;

/// Control-record prefix of the keys.
const PREFIX: &str = "api-key/";

/// SHA-256 of a token (admin token or API key), as stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// `count` random bytes from the system's CSPRNG.
pub fn random_bytes(count: usize) -> Result<Vec<u8>, ApiError> {
    let mut bytes = vec![0u8; count];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiError::internal("no random bytes"))?;
    Ok(bytes)
}

/// `bytes` random bytes, base64url without padding (a secret).
pub fn random_secret(bytes: usize) -> Result<String, ApiError> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(bytes)?))
}

/// One stored key (without the secret).
#[derive(Clone, Debug)]
pub struct KeyRecord {
    /// Its tenant.
    pub tenant: String,
    /// Its id.
    pub id: String,
    /// Unix milliseconds of its creation.
    pub created_ms: u64,
}

/// The stored form.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    /// Hex SHA-256 of the key.
    sha256: String,
    /// Unix milliseconds of its creation.
    created_ms: u64,
}

/// The keys of every tenant (cheap to clone: the clones share the keys).
#[derive(Clone)]
pub struct ApiKeys {
    /// Where they are stored.
    spool: Arc<Spool>,
    /// By hash.
    by_hash: Arc<RwLock<HashMap<[u8; 32], KeyRecord>>>,
    /// With `[cluster]`: where changes are journaled for the other nodes.
    replication: Option<Replication>,
    /// The time of a journaled change.
    clock: SharedClock,
}

impl ApiKeys {
    /// The stored keys (read once, at start).
    pub fn load(spool: Arc<Spool>) -> Result<ApiKeys, SpoolError> {
        let mut by_hash = HashMap::new();
        for (key, value) in spool.control_records(PREFIX)? {
            let Some((tenant, id)) = key[PREFIX.len()..].split_once('/') else {
                continue;
            };
            let Ok(stored) = serde_json::from_slice::<StoredKey>(&value) else {
                tracing::warn!(%key, "ignoring an unreadable stored API key");
                continue;
            };
            if let Some((hash, record)) = stored.record(tenant, id) {
                by_hash.insert(hash, record);
            }
        }
        Ok(ApiKeys {
            spool,
            by_hash: Arc::new(RwLock::new(by_hash)),
            replication: None,
            clock: Arc::new(SystemClock),
        })
    }

    /// These keys with their changes journaled for the other nodes at `clock`'s time (`[cluster]`).
    pub fn with_replication(mut self, replication: Option<Replication>, clock: SharedClock) -> Self {
        self.replication = replication;
        self.clock = clock;
        self
    }

    /// Journals a change of control record `key` for the other nodes (with `[cluster]`), before it
    /// is stored here.
    fn journal(&self, key: &str, value: Option<&[u8]>) -> Result<(), SpoolError> {
        match &self.replication {
            Some(replication) => replication.record(key, value, self.clock.now_ms()),
            None => Ok(()),
        }
    }

    /// The key whose hash is `hash`.
    pub fn lookup(&self, hash: &[u8; 32]) -> Option<KeyRecord> {
        self.read().get(hash).cloned()
    }

    /// Makes, stores (synced) and returns a new key of `tenant`: (record, secret).
    pub fn create(&self, tenant: &str, now_ms: u64) -> Result<(KeyRecord, String), ApiError> {
        let secret = format!("pmk_{}", random_secret(32)?);
        let id = hex::encode(random_bytes(6)?);
        let hash = token_hash(&secret);
        let stored = StoredKey {
            sha256: hex::encode(hash),
            created_ms: now_ms,
        };
        let value = serde_json::to_vec(&stored).map_err(|e| ApiError::internal(e.to_string()))?;
        let key = format!("{PREFIX}{tenant}/{id}");
        self.journal(&key, Some(&value))?;
        self.spool.put_control(&key, &value)?;
        let record = KeyRecord {
            tenant: tenant.to_string(),
            id,
            created_ms: now_ms,
        };
        self.write().insert(hash, record.clone());
        Ok((record, secret))
    }

    /// The keys of `tenant`, oldest first.
    pub fn list(&self, tenant: &str) -> Vec<KeyRecord> {
        let mut keys: Vec<KeyRecord> = self
            .read()
            .values()
            .filter(|key| key.tenant == tenant)
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        keys
    }

    /// Deletes key `id` of `tenant` (synced; no request authenticates with it afterwards): true if
    /// it existed.
    pub fn delete(&self, tenant: &str, id: &str) -> Result<bool, SpoolError> {
        let key = format!("{PREFIX}{tenant}/{id}");
        if self.read().values().any(|k| k.tenant == tenant && k.id == id) {
            self.journal(&key, None)?;
        }
        let existed = self.spool.delete_control(&key)?;
        let mut by_hash = self.write();
        let before = by_hash.len();
        by_hash.retain(|_, key| !(key.tenant == tenant && key.id == id));
        Ok(existed || by_hash.len() != before)
    }

    /// Deletes every key of `tenant`; returns how many.
    pub fn delete_tenant(&self, tenant: &str) -> Result<usize, SpoolError> {
        let ids: Vec<String> = self.list(tenant).into_iter().map(|key| key.id).collect();
        for id in &ids {
            self.delete(tenant, id)?;
        }
        Ok(ids.len())
    }

    /// The map, for reading.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<[u8; 32], KeyRecord>> {
        self.by_hash
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The map, for writing.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], KeyRecord>> {
        self.by_hash
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl StoredKey {
    /// The hash and record of key `id` of `tenant` stored as this; None if the hash is not hex.
    fn record(&self, tenant: &str, id: &str) -> Option<([u8; 32], KeyRecord)> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut hash).ok()?;
        let record = KeyRecord {
            tenant: tenant.to_string(),
            id: id.to_string(),
            created_ms: self.created_ms,
        };
        Some((hash, record))
    }
}

impl crate::cluster::ApplyChange for ApiKeys {
    /// Another node created (`Some`) or deleted (`None`) the API key of `key` (`api-key/T/ID`):
    /// stored and in force here as if made here, without journaling it again.
    fn apply(&self, key: &str, value: Option<&[u8]>) -> bool {
        let Some((tenant, id)) = key.strip_prefix(PREFIX).and_then(|rest| rest.split_once('/')) else {
            return false;
        };
        let stored = match value {
            Some(bytes) => {
                let record = serde_json::from_slice::<StoredKey>(bytes)
                    .ok()
                    .and_then(|stored| stored.record(tenant, id));
                let Some((hash, record)) = record else {
                    tracing::warn!(%key, "cluster: an unreadable API key from another node");
                    return true;
                };
                let stored = self.spool.put_control(key, bytes);
                let mut by_hash = self.write();
                by_hash.retain(|_, k| !(k.tenant == tenant && k.id == id));
                by_hash.insert(hash, record);
                stored
            }
            None => {
                let deleted = self.spool.delete_control(key).map(|_| ());
                self.write().retain(|_, k| !(k.tenant == tenant && k.id == id));
                deleted
            }
        };
        if let Err(error) = stored {
            tracing::error!(%key, %error, "cannot store an API key from another node");
        }
        true
    }
}

/// A key as listed.
fn key_json(key: &KeyRecord) -> serde_json::Value {
    json!({"id": key.id, "created": timefmt::rfc3339_millis(key.created_ms)})
}

/// `POST /v1/tenants/{tenant}/api-keys` → 201 `{"id", "key", "created"}`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/api-keys", tag = "api-keys",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 201, description = "`{\"id\", \"key\", \"created\"}`: the key is shown this once", body = Object),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let now_ms = timefmt::unix_millis(std::time::SystemTime::now());
    let api = Arc::clone(&state);
    let created = super::off_runtime(move || api.auth.keys.create(&tenant, now_ms)).await?;
    let (record, secret) = created;
    let body = json!({
        "id": record.id,
        "key": secret,
        "created": timefmt::rfc3339_millis(record.created_ms),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/tenants/{tenant}/api-keys` → `{"api_keys": [{"id", "created"}], "next_after"}`, by id,
/// paged.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/api-keys", tag = "api-keys",
    params(("tenant" = String, Path, description = "Tenant name"),
        ("after" = Option<String>, Query, description = "Start after this key (`next_after` of the previous page)"),
        ("limit" = Option<usize>, Query, description = "Items per page, 1-1000 (default 100)")),
    responses((status = 200, description = "`{\"api_keys\": [{\"id\", \"created\"}], \"next_after\"}`", body = Object),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let paging = super::paging::PageQuery::parse(query.as_deref())?;
    let keys: Vec<serde_json::Value> = state.auth.keys.list(&tenant).iter().map(key_json).collect();
    let (keys, next_after) = paging.apply(keys, |key| key["id"].as_str().unwrap_or_default().to_string());
    Ok(Json(json!({ "api_keys": keys, "next_after": next_after })).into_response())
}

/// `DELETE /v1/tenants/{tenant}/api-keys/{id}` → 204; 404 when the tenant has no such key.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/api-keys/{id}", tag = "api-keys",
    params(("tenant" = String, Path, description = "Tenant name"), ("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked at once"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let api = Arc::clone(&state);
    let (name, key) = (tenant.clone(), id.clone());
    if blocking(move || api.auth.keys.delete(&name, &key)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "tenant {tenant:?} has no API key {id:?}"
        )))
    }
}
