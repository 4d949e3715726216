//! Operator suspensions and campaign states shared by the nodes (`[cluster]`).
//!
//! A change made on a node (a suspension created or deleted, a campaign paused, resumed or cancelled)
//! is stored locally as before (it is in force here at once) and, first, written to a journal in the
//! spool (CF `control`, `sync/KEY`, synced), so that neither a crash nor an absent Redis loses it. The
//! sync task, every [`SYNC_EVERY`]:
//! 1. pushes the journal to the hash `penguin:control` (field = the control key, value = the change
//!    with its time and node; a Lua script keeps the newer of two changes: last writer wins by time),
//!    deleting each entry Redis took — so what a node changed while Redis was away is replayed when it
//!    returns;
//! 2. reads the hash and applies every change of another node it has not applied yet (the latest per
//!    key), through the same code as a local change minus the journal;
//! 3. drops deletions older than a day from the hash.
//!
//! So a suspension made on one node is in force on all within a second, and the fleet converges after
//! an outage without operator action. (A poll of a small hash every half second; pub/sub would only
//! shave that half second.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use penguin_queue::{Spool, SpoolError};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Cluster, ClusterError};

/// How often the journal is pushed and the hash read.
pub const SYNC_EVERY: Duration = Duration::from_millis(500);

/// The journal's prefix in CF `control`.
const JOURNAL_PREFIX: &str = "sync/";

/// The shared hash.
const CONTROL_HASH: &str = "penguin:control";

/// How long a deletion is remembered in the hash.
const TOMBSTONE_MS: u64 = 86_400_000;

/// Sets a field to the change unless the hash holds a newer one: KEYS[1] the hash, ARGV the field,
/// the change (JSON) and its time (ms). Returns 1 when stored.
const PUSH_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, old = pcall(cjson.decode, current)
  if ok and tonumber(old.changed_ms) and tonumber(old.changed_ms) > tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// One change of a replicated control record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The control record's new value (its JSON), or None: deleted.
    pub value: Option<String>,
    /// When, unix ms (the changing node's clock).
    pub changed_ms: u64,
    /// The node that made it.
    pub node: String,
}

/// Writes a node's changes to the journal (cheap to clone). Present only with `[cluster]`.
#[derive(Clone)]
pub struct Replication {
    /// The spool holding the journal.
    spool: Arc<Spool>,
    /// This node's id.
    node: String,
}

impl Replication {
    /// The journal of `node` in `spool`.
    pub fn new(spool: Arc<Spool>, node: &str) -> Replication {
        Replication {
            spool,
            node: node.to_owned(),
        }
    }

    /// Journals a change of control record `key` (None: deleted) made at `now_ms` (synced; call it
    /// before storing the change itself).
    pub fn record(&self, key: &str, value: Option<&[u8]>, now_ms: u64) -> Result<(), SpoolError> {
        let change = Change {
            value: value.map(|bytes| String::from_utf8_lossy(bytes).into_owned()),
            changed_ms: now_ms,
            node: self.node.clone(),
        };
        let json = serde_json::to_vec(&change).unwrap_or_default();
        self.spool.put_control(&format!("{JOURNAL_PREFIX}{key}"), &json)
    }
}

/// What applies another node's change to this node (suspensions, campaigns).
pub trait ApplyChange: Send + Sync {
    /// Applies the change of control record `key` if this applier owns it; false if not its key.
    fn apply(&self, key: &str, value: Option<&[u8]>) -> bool;
}

/// The sync task: see the module documentation.
pub async fn run_control_sync(
    cluster: Cluster,
    spool: Arc<Spool>,
    appliers: Vec<Arc<dyn ApplyChange>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(SYNC_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connection: Option<MultiplexedConnection> = None;
    let mut applied: HashMap<String, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        if !cluster.is_up() {
            continue;
        }
        let mut open = match connection.take() {
            Some(open) => open,
            None => match cluster.connect().await {
                Ok(open) => open,
                Err(_) => continue,
            },
        };
        let round = sync_round(&cluster, &spool, &mut open, &appliers, &mut applied).await;
        match round {
            Ok(()) => connection = Some(open),
            Err(error) => tracing::warn!(%error, "cluster: control sync failed; retrying"),
        }
    }
}

/// Why a sync round failed.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// Redis.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The spool.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Push, pull, prune.
async fn sync_round(
    cluster: &Cluster,
    spool: &Spool,
    connection: &mut MultiplexedConnection,
    appliers: &[Arc<dyn ApplyChange>],
    applied: &mut HashMap<String, u64>,
) -> Result<(), SyncError> {
    for (journal_key, bytes) in spool.control_records(JOURNAL_PREFIX)? {
        let key = &journal_key[JOURNAL_PREFIX.len()..];
        let Ok(change) = serde_json::from_slice::<Change>(&bytes) else {
            spool.delete_control(&journal_key)?;
            continue;
        };
        let push = redis::cmd("EVAL")
            .arg(PUSH_SCRIPT)
            .arg(1)
            .arg(CONTROL_HASH)
            .arg(key)
            .arg(String::from_utf8_lossy(&bytes).as_ref())
            .arg(change.changed_ms)
            .to_owned();
        cluster
            .bounded("EVAL", push.query_async::<i64>(connection))
            .await?;
        applied.insert(key.to_owned(), change.changed_ms);
        spool.delete_control(&journal_key)?;
    }
    let all: HashMap<String, String> = cluster
        .bounded(
            "HGETALL",
            redis::cmd("HGETALL").arg(CONTROL_HASH).query_async(connection),
        )
        .await?;
    let now_ms = cluster.inner.parts.clock.now_ms();
    let mut stale = Vec::new();
    for (key, json) in all {
        let Ok(change) = serde_json::from_str::<Change>(&json) else {
            continue;
        };
        if change.value.is_none() && change.changed_ms.saturating_add(TOMBSTONE_MS) < now_ms {
            stale.push(key.clone());
        }
        if applied.get(&key).is_some_and(|&at| at >= change.changed_ms) {
            continue;
        }
        if change.node != cluster.node() {
            let value = change.value.as_deref().map(str::as_bytes);
            if !appliers.iter().any(|applier| applier.apply(&key, value)) {
                tracing::debug!(%key, "cluster: a replicated change no applier knows");
            }
        }
        applied.insert(key, change.changed_ms);
    }
    if !stale.is_empty() {
        let mut prune = redis::cmd("HDEL");
        prune.arg(CONTROL_HASH).arg(&stale);
        cluster
            .bounded("HDEL", prune.query_async::<i64>(connection))
            .await?;
    }
    Ok(())
}
