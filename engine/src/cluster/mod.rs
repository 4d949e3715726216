//! Several nodes sharing state through Redis (`[cluster]`): membership and health (this file and
//! `heartbeat.rs`), shared message rates (`slots.rs`), connection caps (`leases.rs`), and replicated
//! control records — operator suspensions, campaign states (`control_sync.rs`), usage counters summed
//! over the nodes (`usage_sync.rs`), the closed loop's rate changes (`adaptive_sync.rs`), the daily
//! quota against the fleet's count (`quota_sync.rs`).
//!
//! A [`Cluster`] handle (cheap to clone) knows this node's id, the Redis URL, whether Redis answered
//! the last round (`up`/`down`), and the other nodes last read. Its task ([`Cluster::run`], spawned by
//! `serve` only when `[cluster]` is configured) does one round every `heartbeat_every` (tokio time):
//! it writes this node's record and reads the others' (`heartbeat.rs`). Each Redis command is bounded
//! by `redis_timeout`; a failure or a timeout marks Redis down (event `cluster_degraded`, gauge
//! `penguin_cluster_up` 0), the first success after it up again (`cluster_recovered`, gauge 1).
//! Nothing else waits on Redis: SMTP and HTTP acceptance never touch it.
//!
//! In Redis: `penguin:node:{id}` holds a node's record (JSON: `id`, `version`, `last_heartbeat_ms`,
//! `queue_size`) with a TTL of `node_timeout`, and the set `penguin:nodes` the ids to read (an id
//! whose record has expired is removed from it by whichever node notices).
//!
//! Times of decisions come from the injected clock: the heartbeat's time, and when another node was
//! last heard of (counted by [`Cluster::nodes_seen`] for `node_timeout` after this node last read its
//! record, so an outage of Redis does not make the others vanish at once).

mod adaptive_sync;
mod control_sync;
mod heartbeat;
mod leases;
mod quota_sync;
mod session;
mod slots;
mod suppression_sync;
#[cfg(test)]
mod tests;
mod unsubscribe_secret;
mod usage_sync;
mod warm_claims;
mod warm_tally;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use penguin_config::ClusterConfig;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::events::{Event, EventBus, EventKind};
use crate::metrics::Metrics;

pub use adaptive_sync::{ADAPTIVE_CHANNEL, ADAPTIVE_KEY, run_adaptive_sync};
pub use control_sync::{ApplyChange, Change, Replication, SYNC_EVERY, run_control_sync};
pub use leases::{Acquired, LEASE_KEY_PREFIX, LeaseGuard, Leases};
pub use quota_sync::{QUOTA_REFRESH_EVERY, fleet_accepted_today, run_quota_refresh};
pub use slots::run_slots;
pub use suppression_sync::{
    SUPPRESSION_TENANTS_KEY, SUPPRESSIONS_CHANNEL, SUPPRESSIONS_KEY_PREFIX, run_suppression_sync,
};
pub use unsubscribe_secret::{UNSUBSCRIBE_SECRET_KEY, share_at_start as share_unsubscribe_secret_at_start};
pub use usage_sync::{
    OthersUsage, USAGE_KEY_PREFIX, USAGE_PUSH_EVERY, USAGE_TTL_SECS, run_usage_push, usage_hash,
};
pub use warm_claims::WARMUP_CLAIMED_PREFIX;
pub use warm_tally::{OthersTallies, WARMUP_TALLY_PREFIX, run_warm_tally_push, tally_hash};

/// Prefix of a node's record key: `penguin:node:{id}`.
pub const NODE_KEY_PREFIX: &str = "penguin:node:";
/// The set of node ids whose records are read each round.
pub const NODES_SET_KEY: &str = "penguin:nodes";

/// This node's queue size when asked (messages queued, including those being delivered).
pub type QueueSize = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `cluster.redis` is not a URL the Redis client accepts.
    #[error("cluster.redis: {0}")]
    Url(redis::RedisError),
    /// Redis answered an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within `cluster.redis_timeout`.
    #[error("redis: no answer to {what} within {after:?}")]
    Timeout {
        /// The command (or "connect").
        what: &'static str,
        /// The timeout.
        after: Duration,
    },
}

/// What the cluster handle reports to and reads from the rest of the server.
pub struct ClusterParts {
    /// Where `cluster_degraded` / `cluster_recovered` go.
    pub events: EventBus,
    /// `penguin_cluster_up`.
    pub metrics: Arc<Metrics>,
    /// Heartbeat times and the age of other nodes' records.
    pub clock: SharedClock,
    /// This node's queue size, written in its record.
    pub queue_size: QueueSize,
}

/// A node's record as stored in Redis (`penguin:node:{id}`, JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node id (`cluster.node`).
    pub id: String,
    /// The penguin-mta version it runs.
    pub version: String,
    /// When it wrote this record, unix milliseconds (its clock).
    pub last_heartbeat_ms: u64,
    /// Messages in its queue then.
    pub queue_size: u64,
}

/// A node as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node id.
    pub id: String,
    /// The penguin-mta version it runs.
    pub version: String,
    /// Its last heartbeat (unix milliseconds); for this node the last one Redis accepted, `None`
    /// before the first.
    pub last_heartbeat: Option<u64>,
    /// Messages in its queue (for this node: now).
    pub queue_size: u64,
    /// Whether it is this node.
    pub is_self: bool,
}

/// Redis's reachability as the last round found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    /// No round has finished yet.
    Unknown,
    /// The last round succeeded.
    Up,
    /// The last round failed.
    Down,
}

/// The health after a round, and the event the change is (none when it is not one: the first
/// success, or another failure of the same outage).
pub(crate) fn transition(before: Health, succeeded: bool) -> (Health, Option<EventKind>) {
    match (before, succeeded) {
        (Health::Down, true) => (Health::Up, Some(EventKind::ClusterRecovered)),
        (Health::Unknown | Health::Up, true) => (Health::Up, None),
        (Health::Down, false) => (Health::Down, None),
        (Health::Unknown | Health::Up, false) => (Health::Down, Some(EventKind::ClusterDegraded)),
    }
}

/// Another node and when this node last read its record (unix milliseconds, this node's clock).
#[derive(Clone, Debug)]
struct Seen {
    /// Its record.
    record: NodeRecord,
    /// When it was read.
    heard_at: u64,
}

/// What the rounds change.
#[derive(Debug)]
struct State {
    /// Redis's reachability.
    health: Health,
    /// This node's last heartbeat Redis accepted (unix milliseconds).
    last_written: Option<u64>,
    /// The other nodes of the last successful round.
    others: Vec<Seen>,
}

/// The fixed part of the handle.
struct Inner {
    /// This node's id.
    node: String,
    /// The Redis URL without its password.
    redis_url: String,
    /// The Redis client (connects on demand).
    client: redis::Client,
    /// `cluster.heartbeat_every`.
    heartbeat_every: Duration,
    /// `cluster.node_timeout`.
    node_timeout: Duration,
    /// `cluster.redis_timeout`.
    redis_timeout: Duration,
    /// Events, metrics, clock, queue size.
    parts: ClusterParts,
    /// Changed by the rounds.
    state: Mutex<State>,
    /// The other nodes' usage: connection and last known values (`usage_sync.rs`).
    usage: usage_sync::UsageReader,
    /// The other nodes' accepted counts of today, for the daily quota (`quota_sync.rs`).
    quota: quota_sync::OthersAccepted,
}

/// This node's view of the cluster (see the module doc). Clones share it.
#[derive(Clone)]
pub struct Cluster {
    /// The shared part.
    inner: Arc<Inner>,
}

impl Cluster {
    /// The handle for `config` (no IO: the first round connects). Sets `penguin_cluster_up` to 0
    /// until a round succeeds.
    pub fn new(config: &ClusterConfig, parts: ClusterParts) -> Result<Cluster, ClusterError> {
        let client = redis::Client::open(config.redis.as_str()).map_err(ClusterError::Url)?;
        parts.metrics.set_cluster_up(false);
        Ok(Cluster {
            inner: Arc::new(Inner {
                node: config.node.clone(),
                redis_url: config.redis_without_password(),
                client,
                heartbeat_every: config.heartbeat_every.get(),
                node_timeout: config.node_timeout.get(),
                redis_timeout: config.redis_timeout.get(),
                parts,
                state: Mutex::new(State {
                    health: Health::Unknown,
                    last_written: None,
                    others: Vec::new(),
                }),
                usage: usage_sync::UsageReader::default(),
                quota: quota_sync::OthersAccepted::default(),
            }),
        })
    }

    /// This node's id (`cluster.node`).
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The Redis URL without its password.
    pub fn redis_url(&self) -> &str {
        &self.inner.redis_url
    }

    /// Whether the last round reached Redis (false before the first).
    pub fn is_up(&self) -> bool {
        self.state().health == Health::Up
    }

    /// The nodes known now: this one first (its queue size now), then the others heard of within
    /// `node_timeout`, by id.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let now = self.inner.parts.clock.now_ms();
        let timeout = u64::try_from(self.inner.node_timeout.as_millis()).unwrap_or(u64::MAX);
        let state = self.state();
        let me = NodeInfo {
            id: self.inner.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            last_heartbeat: state.last_written,
            queue_size: (self.inner.parts.queue_size)(),
            is_self: true,
        };
        let others = state
            .others
            .iter()
            .filter(|seen| seen.heard_at.saturating_add(timeout) > now)
            .map(|seen| NodeInfo {
                id: seen.record.id.clone(),
                version: seen.record.version.clone(),
                last_heartbeat: Some(seen.record.last_heartbeat_ms),
                queue_size: seen.record.queue_size,
                is_self: false,
            });
        std::iter::once(me).chain(others).collect()
    }

    /// How many nodes were heard of within `node_timeout`, this one included (so at least 1).
    pub fn nodes_seen(&self) -> usize {
        self.nodes().len()
    }

    /// A new connection to Redis (bounded by `redis_timeout`).
    async fn connect(&self) -> Result<redis::aio::MultiplexedConnection, ClusterError> {
        // Our own bound (`bounded`) is the only timeout, so every slow answer reads the same.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let client = &self.inner.client;
        self.bounded(
            "connect",
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
    }

    /// `call`, failing with a timeout after `redis_timeout`.
    async fn bounded<T>(
        &self,
        what: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClusterError> {
        let after = self.inner.redis_timeout;
        match tokio::time::timeout(after, call).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(ClusterError::Timeout { what, after }),
        }
    }

    /// Runs the rounds every `heartbeat_every` until `stopped`; then removes this node's record
    /// (bounded by `redis_timeout`), so the others stop counting it at once.
    pub async fn run(self, stopped: tokio::sync::watch::Receiver<bool>) {
        heartbeat::run(self, stopped).await;
    }

    /// This node's record as of now.
    fn own_record(&self) -> NodeRecord {
        NodeRecord {
            id: self.inner.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            last_heartbeat_ms: self.inner.parts.clock.now_ms(),
            queue_size: (self.inner.parts.queue_size)(),
        }
    }

    /// A round wrote `written` and read `others` (this node's own record left out).
    fn succeeded(&self, written: &NodeRecord, others: Vec<NodeRecord>) {
        let now = self.inner.parts.clock.now_ms();
        let event = {
            let mut state = self.state();
            state.last_written = Some(written.last_heartbeat_ms);
            state.others = others
                .into_iter()
                .filter(|record| record.id != self.inner.node)
                .map(|record| Seen {
                    record,
                    heard_at: now,
                })
                .collect();
            state.others.sort_by(|a, b| a.record.id.cmp(&b.record.id));
            self.change_health(&mut state, true)
        };
        self.inner.parts.metrics.set_cluster_up(true);
        if let Some(kind) = event {
            tracing::info!(node = %self.inner.node, redis = %self.inner.redis_url, "cluster: Redis reachable again");
            self.inner.parts.events.emit(Event::blank(kind, now));
        }
    }

    /// A round failed with `error`.
    fn failed(&self, error: &ClusterError) {
        let event = self.change_health(&mut self.state(), false);
        self.inner.parts.metrics.set_cluster_up(false);
        if let Some(kind) = event {
            tracing::warn!(node = %self.inner.node, redis = %self.inner.redis_url, %error,
                "cluster: Redis unreachable; going on alone with what was last known");
            let mut event = Event::blank(kind, self.inner.parts.clock.now_ms());
            event.reason = Some(error.to_string().into());
            self.inner.parts.events.emit(event);
        }
    }

    /// Applies a round's outcome to the health; the event to emit, if any.
    fn change_health(&self, state: &mut State, succeeded: bool) -> Option<EventKind> {
        let (health, event) = transition(state.health, succeeded);
        state.health = health;
        event
    }

    /// The mutable state (a panic elsewhere does not make it unreadable).
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
