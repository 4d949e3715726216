//! Adaptive rate reductions shared by the nodes (`[cluster]`).
//!
//! A lane's closed loop (`delivery::scheduler::feedback`) reacts on the node that got the throttling
//! reply; the scheduler puts every change of a lane's loop in an outbox
//! (`delivery::scheduler::fleet_rates`). This task:
//! 1. pushes the outbox to the hash `penguin:adaptive` — field `lane/SOURCE/SITE`, value JSON
//!    `{"source", "site", "rate", "reduced", "ceiling", "last_reduction_us", "next_step_us", "at_ms",
//!    "node", "reason"}` (`rate` is the rate in force, for people; the rest is the loop's whole state)
//!    — through a Lua script that keeps the newest change (by `at_ms`, then node id) and publishes it
//!    on the channel `penguin:adaptive`; woken by the scheduler, so a reduction leaves at once;
//! 2. subscribes to that channel on a connection of its own and gives every other node's change to
//!    the scheduler ([`Scheduler::apply_remote_rate`], the injected clock's now), which applies the
//!    newest to its lane: same rate, same cooldown, same recovery times, so recovery converges too;
//! 3. at start and after every loss of Redis (connection closed, a command failing or timing out:
//!    every command is bounded by `redis_timeout`), reconnects, pushes what could not be pushed,
//!    drops fields unchanged for a day ([`STALE_MS`], also every [`PRUNE_EVERY`]) and applies every
//!    remaining field (`HSCAN`), so a node that starts or comes back takes the fleet's reductions.
//!
//! A change is in force on the other nodes within milliseconds while Redis answers (one `PUBLISH`),
//! and after an outage within one reconnection (`heartbeat_every`). Nodes keep their clocks in step
//! (NTP), as the shared rates already require: cooldowns and recovery steps are absolute times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use penguin_policy::shaping::AdaptiveState;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::{Cluster, ClusterError, session};
use crate::delivery::scheduler::{LaneRateChange, Scheduler};

/// The hash of the lanes' latest closed-loop states.
pub const ADAPTIVE_KEY: &str = "penguin:adaptive";
/// The channel the changes are published on.
pub const ADAPTIVE_CHANNEL: &str = "penguin:adaptive";

/// A field unchanged for this long is dropped (its lane has recovered or its node is gone).
pub const STALE_MS: u64 = 86_400_000;

/// How often stale fields are dropped.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Fields read per `HSCAN`.
const PAGE: usize = 500;

/// Stores a change unless the hash holds a later one, and publishes it. KEYS[1]: the hash. ARGV:
/// field, at_ms, node, the JSON, the channel. Returns 1 when stored.
const PUSH_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, old = pcall(cjson.decode, current)
  if ok and type(old) == 'table' and tonumber(old.at_ms) then
    local at = tonumber(ARGV[2])
    local old_at = tonumber(old.at_ms)
    if old_at > at or (old_at == at and tostring(old.node) > ARGV[3]) then
      return 0
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[4])
return 1
";

/// Drops the fields changed before ARGV[1] (unix ms) or unreadable. KEYS[1]: the hash. Returns how
/// many.
const PRUNE_SCRIPT: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local dropped = 0
for i = 1, #all, 2 do
  local ok, value = pcall(cjson.decode, all[i + 1])
  if not ok or type(value) ~= 'table' or not tonumber(value.at_ms)
     or tonumber(value.at_ms) < tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], all[i])
    dropped = dropped + 1
  end
end
return dropped
";

/// A lane's change as stored in the hash and published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Stored {
    /// The lane's source.
    source: String,
    /// The lane's site.
    site: String,
    /// The rate in force after the change (messages per second; null = unlimited).
    rate: Option<f64>,
    /// The reduced rate (null: not reduced).
    reduced: Option<f64>,
    /// The observed ceiling of a site without a configured rate.
    ceiling: Option<f64>,
    /// Start of the cooldown, unix µs.
    last_reduction_us: Option<u64>,
    /// The next recovery step, unix µs.
    next_step_us: u64,
    /// When the change was made, unix ms.
    at_ms: u64,
    /// The node that made it.
    node: String,
    /// Why.
    reason: String,
}

impl Stored {
    /// The stored form of a scheduler's change.
    fn of(change: &LaneRateChange) -> Stored {
        Stored {
            source: change.source.clone(),
            site: change.site.clone(),
            rate: change.rate,
            reduced: change.state.reduced,
            ceiling: change.state.observed_ceiling,
            last_reduction_us: change.state.last_reduction_us,
            next_step_us: change.state.next_step_us,
            at_ms: change.at_ms,
            node: change.node.clone(),
            reason: change.reason.clone(),
        }
    }

    /// The scheduler's form.
    fn change(self) -> LaneRateChange {
        LaneRateChange {
            state: AdaptiveState {
                reduced: self.reduced,
                observed_ceiling: self.ceiling,
                last_reduction_us: self.last_reduction_us,
                next_step_us: self.next_step_us,
            },
            source: self.source,
            site: self.site,
            rate: self.rate,
            at_ms: self.at_ms,
            node: self.node,
            reason: self.reason,
        }
    }

    /// Its field in the hash.
    fn field(&self) -> String {
        format!("lane/{}/{}", self.source, self.site)
    }

    /// Whether it is later than `other` (the order of [`PUSH_SCRIPT`]).
    fn is_after(&self, other: &Stored) -> bool {
        (self.at_ms, self.node.as_str()) >= (other.at_ms, other.node.as_str())
    }
}

/// What the task works with.
struct Sync {
    /// The cluster handle (node id, client, timeouts, clock).
    cluster: Cluster,
    /// The scheduler whose lanes change.
    scheduler: Arc<Mutex<Scheduler>>,
    /// Woken by the scheduler when its outbox has a change.
    wake: Arc<Notify>,
}

/// Keeps this node's closed-loop changes and the fleet's in step until `stopped` (see the module
/// doc). Spawned by `serve` only with `[cluster]`, after `Scheduler::enable_fleet_rates`.
pub async fn run_adaptive_sync(
    cluster: Cluster,
    scheduler: Arc<Mutex<Scheduler>>,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let retry = cluster.inner.heartbeat_every;
    let sync = Sync {
        cluster,
        scheduler,
        wake,
    };
    // Changes taken from the scheduler that Redis has not taken yet, by field.
    let mut unpushed: HashMap<String, Stored> = HashMap::new();
    let lost = "cluster: adaptive rate sync lost Redis; changes kept for its return";
    loop {
        let ended = sync.session(&mut unpushed, &mut stopped).await;
        if !session::again(ended, retry, &mut stopped, lost).await {
            return;
        }
    }
}

impl Sync {
    /// One connection's life: subscribe, push, prune, catch up; then push this node's changes and
    /// apply the published ones until Redis is lost (an error) or the server stops (`Ok`).
    async fn session(
        &self,
        unpushed: &mut HashMap<String, Stored>,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), ClusterError> {
        let cluster = &self.cluster;
        let (mut connection, mut messages) = cluster.subscribed(ADAPTIVE_CHANNEL).await?;
        self.push(&mut connection, unpushed).await?;
        self.prune(&mut connection).await?;
        self.pull_all(&mut connection).await?;
        let mut prunes = tokio::time::interval(PRUNE_EVERY);
        prunes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        prunes.reset();
        let check_every = cluster.inner.heartbeat_every;
        loop {
            tokio::select! {
                message = session::next_message(&mut messages) => {
                    if let Ok(payload) = message?.get_payload::<String>() {
                        self.apply(&payload);
                    }
                }
                () = self.wake.notified() => self.push(&mut connection, unpushed).await?,
                () = tokio::time::sleep(check_every) => {
                    cluster.ping(&mut connection).await?;
                    self.push(&mut connection, unpushed).await?;
                }
                _ = prunes.tick() => self.prune(&mut connection).await?,
                () = async { let _ = stopped.wait_for(|stop| *stop).await; } => return Ok(()),
            }
        }
    }

    /// Gives another node's change (its JSON) to the scheduler.
    fn apply(&self, json: &str) {
        let stored: Stored = match serde_json::from_str(json) {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "cluster: unreadable adaptive rate change; ignored");
                return;
            }
        };
        if stored.node == self.cluster.node() {
            return;
        }
        let now_us = self.cluster.inner.parts.clock.now_us();
        let change = stored.change();
        let outcome = self
            .scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .apply_remote_rate(&change, now_us);
        tracing::debug!(source = %change.source, site = %change.site, node = %change.node, ?outcome,
            "cluster: adaptive rate change of another node");
    }

    /// Takes the scheduler's outbox and pushes it with what is still unpushed, in one pipeline.
    async fn push(
        &self,
        connection: &mut MultiplexedConnection,
        unpushed: &mut HashMap<String, Stored>,
    ) -> Result<(), ClusterError> {
        let changes = self
            .scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_rate_changes();
        for change in changes {
            let stored = Stored::of(&change);
            let field = stored.field();
            if unpushed.get(&field).is_none_or(|kept| stored.is_after(kept)) {
                unpushed.insert(field, stored);
            }
        }
        if unpushed.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (field, stored) in unpushed.iter() {
            pipe.cmd("EVAL")
                .arg(PUSH_SCRIPT)
                .arg(1)
                .arg(ADAPTIVE_KEY)
                .arg(field)
                .arg(stored.at_ms)
                .arg(&stored.node)
                .arg(serde_json::to_string(stored).unwrap_or_default())
                .arg(ADAPTIVE_CHANNEL)
                .ignore();
        }
        self.cluster
            .bounded("EVAL", pipe.query_async::<()>(connection))
            .await?;
        unpushed.clear();
        Ok(())
    }

    /// Drops the fields unchanged for [`STALE_MS`].
    async fn prune(&self, connection: &mut MultiplexedConnection) -> Result<(), ClusterError> {
        let cutoff = self.cluster.inner.parts.clock.now_ms().saturating_sub(STALE_MS);
        let prune = redis::cmd("EVAL")
            .arg(PRUNE_SCRIPT)
            .arg(1)
            .arg(ADAPTIVE_KEY)
            .arg(cutoff)
            .to_owned();
        let dropped: i64 = self
            .cluster
            .bounded("EVAL", prune.query_async(connection))
            .await?;
        if dropped > 0 {
            tracing::debug!(dropped, "cluster: stale adaptive rate changes dropped");
        }
        Ok(())
    }

    /// Applies every field of the hash (the scheduler keeps the newest per lane).
    async fn pull_all(&self, connection: &mut MultiplexedConnection) -> Result<(), ClusterError> {
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("HSCAN");
            scan.arg(ADAPTIVE_KEY).arg(cursor).arg("COUNT").arg(PAGE);
            let (next, fields): (u64, Vec<(String, String)>) = self
                .cluster
                .bounded("HSCAN", scan.query_async(connection))
                .await?;
            for (_, json) in fields {
                self.apply(&json);
            }
            cursor = next;
            if cursor == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_keeps_its_whole_state_through_redis() {
        let change = LaneRateChange {
            source: "ip2".into(),
            site: "mx.example.com".into(),
            state: AdaptiveState {
                reduced: Some(0.1 + 0.2),
                observed_ceiling: Some(1.0 / 3.0),
                last_reduction_us: Some(1_800_000_000_123_456),
                next_step_us: 1_800_000_300_123_456,
            },
            rate: Some(0.1 + 0.2),
            at_ms: 1_800_000_000_123,
            node: "node-a".into(),
            reason: "rate_limited".into(),
        };
        let stored = Stored::of(&change);
        assert_eq!(stored.field(), "lane/ip2/mx.example.com");
        let json = serde_json::to_string(&stored).unwrap_or_default();
        let back: Stored = serde_json::from_str(&json).unwrap_or_else(|_| stored.clone());
        assert_eq!(back.change(), change, "floats and µs come back exactly");
        let later = Stored {
            node: "node-b".into(),
            ..Stored::of(&change)
        };
        assert!(
            later.is_after(&stored) && !stored.is_after(&later),
            "same time: the greater node"
        );
    }
}
