//! Suppression lists shared by the nodes (`[cluster]`).
//!
//! Every node keeps serving from its own spool: RCPT and HTTP injection read only the local list and
//! never wait on Redis. A change made on a node (API, CSV import, one-click unsubscribe, hard bounce)
//! is written to its spool together with a journal entry in the same synced batch
//! (`penguin_queue::suppression_sync`), so kill -9 loses neither. This task:
//! 1. pushes the journal to Redis — the hash `penguin:suppressions:{tenant}`, field the lowercased
//!    address, value JSON `{"at_ms", "node", "entry"}` (`entry` null: a deletion, kept as a tombstone
//!    so a late replay cannot bring the address back) — through a Lua script that keeps the latest
//!    change (by `at_ms`, then node id: last writer wins), adds the tenant to the set
//!    `penguin:suppression-tenants` and publishes the change on the channel `penguin:suppressions`;
//!    a journal entry is removed once Redis has decided on it (a losing change takes the winner);
//! 2. subscribes to that channel on a connection of its own and applies the other nodes' changes to
//!    the local spool (a change newer than one still pending here replaces it; an older one waits for
//!    the pending one to be pushed);
//! 3. at start and after every loss of Redis (its connection closed, a command failing or timing
//!    out), reconnects, shares the unsubscribe key (`unsubscribe_secret.rs`), replays the journal, then
//!    reconciles: every entry of every tenant's hash is applied when it differs from the local one,
//!    and every local entry Redis has never heard of (a Redis that lost its data, a node that just
//!    joined) is pushed. So changes missed during an outage converge without operator action.
//!
//! Events (`suppression_added`, `unsubscribe`) are emitted only by the node where the change was made;
//! applying another node's change emits none (the fleet's event streams together tell each change
//! once).

use std::sync::Arc;

use penguin_queue::{Spool, SpoolError, SuppressionChange, SuppressionEntry, SuppressionReason};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::{Cluster, ClusterError, session, unsubscribe_secret};
use crate::unsubscribe::UnsubscribeTokens;

/// The channel changes are published on.
pub const SUPPRESSIONS_CHANNEL: &str = "penguin:suppressions";
/// Prefix of a tenant's hash: `penguin:suppressions:{tenant}`.
pub const SUPPRESSIONS_KEY_PREFIX: &str = "penguin:suppressions:";
/// The set of tenants that have a hash.
pub const SUPPRESSION_TENANTS_KEY: &str = "penguin:suppression-tenants";

/// Changes read, pushed or applied per round trip.
const PAGE: usize = 500;

/// Stores a change unless the hash holds a later one. KEYS: the tenant's hash, the tenants' set.
/// ARGV: address, at_ms, node, the stored JSON, tenant, channel, the message JSON. Returns 1 when
/// stored (and published), else the stored JSON that wins.
const PUSH_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, old = pcall(cjson.decode, current)
  if ok and type(old) == 'table' and tonumber(old.at_ms) then
    local at = tonumber(ARGV[2])
    local old_at = tonumber(old.at_ms)
    if old_at > at or (old_at == at and tostring(old.node) > ARGV[3]) then
      return current
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
";

/// A change as stored in a tenant's hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    /// When it was made, unix milliseconds.
    at_ms: u64,
    /// The node that made it.
    node: String,
    /// The entry after it; null: removed.
    entry: Option<StoredEntry>,
}

/// An entry without its address (the hash field).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StoredEntry {
    /// Why it is suppressed.
    reason: SuppressionReason,
    /// When it was added, unix milliseconds.
    added_at_ms: u64,
    /// The campaign that led to it.
    campaign: Option<String>,
}

/// A change as published on the channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Published {
    /// The tenant.
    tenant: String,
    /// The lowercased address.
    address: String,
    /// The change.
    change: Stored,
}

impl Stored {
    /// The stored form of a change made by `node`.
    fn of(change: &SuppressionChange, node: &str) -> Stored {
        Stored {
            at_ms: change.at_ms,
            node: node.to_owned(),
            entry: change.entry.as_ref().map(|entry| StoredEntry {
                reason: entry.reason,
                added_at_ms: entry.added_at_ms,
                campaign: entry.campaign.clone(),
            }),
        }
    }

    /// The spool's form of this change of `tenant`'s `address`.
    fn change(&self, tenant: &str, address: &str) -> SuppressionChange {
        SuppressionChange {
            tenant: tenant.to_owned(),
            address: address.to_owned(),
            at_ms: self.at_ms,
            entry: self.entry.as_ref().map(|entry| SuppressionEntry {
                address: address.to_owned(),
                reason: entry.reason,
                added_at_ms: entry.added_at_ms,
                campaign: entry.campaign.clone(),
            }),
        }
    }
}

/// Whether this node's pending change made at `pending_at` wins over `remote` (the rule of
/// [`PUSH_SCRIPT`]: the later change, then the greater node id; the same node's latest wins).
fn local_wins(pending_at: u64, node: &str, remote: &Stored) -> bool {
    (pending_at, node) >= (remote.at_ms, remote.node.as_str())
}

/// What the task works with.
struct Sync {
    /// The cluster handle (node id, client, timeouts).
    cluster: Cluster,
    /// The local spool.
    spool: Arc<Spool>,
    /// The unsubscribe tokens (the fleet's key is adopted into them).
    tokens: Arc<UnsubscribeTokens>,
    /// Woken by every journaled change.
    journaled: Arc<Notify>,
}

/// Turns the spool's suppression journal on, then keeps this node's lists in step with the fleet's
/// until `stopped` (see the module doc). Spawned by `serve` only with `[cluster]`.
pub async fn run_suppression_sync(
    cluster: Cluster,
    spool: Arc<Spool>,
    tokens: Arc<UnsubscribeTokens>,
    mut stopped: watch::Receiver<bool>,
) {
    let journaled = Arc::new(Notify::new());
    let wake = Arc::clone(&journaled);
    spool.journal_suppressions(Box::new(move || wake.notify_one()));
    let sync = Sync {
        cluster,
        spool,
        tokens,
        journaled,
    };
    let retry = sync.cluster.inner.heartbeat_every;
    let lost = "cluster: suppression sync lost Redis; local lists in use, changes journaled";
    loop {
        let ended = sync.session(&mut stopped).await;
        if !session::again(ended, retry, &mut stopped, lost).await {
            return;
        }
    }
}

impl Sync {
    /// One connection's life: subscribe, catch up, then push local changes and apply published ones
    /// until Redis is lost (an error) or the server stops (`Ok`).
    async fn session(&self, stopped: &mut watch::Receiver<bool>) -> Result<(), ClusterError> {
        let cluster = &self.cluster;
        let (mut connection, mut messages) = cluster.subscribed(SUPPRESSIONS_CHANNEL).await?;
        let timeout = cluster.inner.redis_timeout;
        unsubscribe_secret::share(&mut connection, timeout, &self.spool, &self.tokens).await?;
        self.push_journal(&mut connection).await?;
        self.pull_all(&mut connection).await?;
        self.push_missing(&mut connection).await?;
        tracing::info!(node = %cluster.node(), "cluster: suppression lists in step with Redis");
        let check_every = cluster.inner.heartbeat_every;
        loop {
            tokio::select! {
                message = session::next_message(&mut messages) => self.on_message(&message?).await,
                () = self.journaled.notified() => self.push_journal(&mut connection).await?,
                () = tokio::time::sleep(check_every) => {
                    cluster.ping(&mut connection).await?;
                    self.push_journal(&mut connection).await?;
                }
                () = async { let _ = stopped.wait_for(|stop| *stop).await; } => return Ok(()),
            }
        }
    }

    /// Applies a published change of another node.
    async fn on_message(&self, message: &redis::Msg) {
        let Ok(payload) = message.get_payload::<String>() else {
            return;
        };
        let published: Published = match serde_json::from_str(&payload) {
            Ok(published) => published,
            Err(error) => {
                tracing::warn!(%error, "cluster: unreadable suppression change on the channel; ignored");
                return;
            }
        };
        if published.change.node == self.cluster.node() {
            return;
        }
        let Published {
            tenant,
            address,
            change,
        } = published;
        if let Err(error) = self.apply(vec![(tenant, address, change)]).await {
            tracing::error!(%error, "cluster: cannot apply a suppression change; the next reconciliation retries");
        }
    }

    /// Applies Redis's changes to the local spool (a blocking call); how many changed it.
    async fn apply(&self, changes: Vec<(String, String, Stored)>) -> Result<usize, SpoolError> {
        let spool = Arc::clone(&self.spool);
        let node = self.cluster.node().to_owned();
        let applied = tokio::task::spawn_blocking(move || {
            let mut applied = 0;
            for (tenant, address, stored) in changes {
                let change = stored.change(&tenant, &address);
                let wins = |pending: &SuppressionChange| local_wins(pending.at_ms, &node, &stored);
                if spool.apply_suppression_change(&change, wins)? {
                    applied += 1;
                }
            }
            Ok::<_, SpoolError>(applied)
        })
        .await;
        applied.map_err(|join| SpoolError::Storage(format!("apply task failed: {join}")))?
    }

    /// Pushes the journal, a page at a time; each entry Redis decided on leaves the journal (a
    /// change that lost takes the winner locally).
    async fn push_journal(&self, connection: &mut MultiplexedConnection) -> Result<(), ClusterError> {
        loop {
            let spool = Arc::clone(&self.spool);
            let pending = tokio::task::spawn_blocking(move || spool.pending_suppression_changes(PAGE))
                .await
                .map_err(|join| SpoolError::Storage(format!("journal task failed: {join}")))
                .and_then(|read| read);
            let pending = match pending {
                Ok(pending) => pending,
                Err(error) => {
                    tracing::error!(%error, "cluster: cannot read the suppression journal");
                    return Ok(());
                }
            };
            if pending.is_empty() {
                return Ok(());
            }
            let full = pending.len() == PAGE;
            let node = self.cluster.node();
            let stored: Vec<Stored> = pending.iter().map(|change| Stored::of(change, node)).collect();
            let answers = self.push(connection, &pending, &stored).await?;
            self.settle(pending, answers).await;
            if !full {
                return Ok(());
            }
        }
    }

    /// Runs [`PUSH_SCRIPT`] for each change in one pipeline; for each, `None` when Redis took it, or
    /// the stored change that wins.
    async fn push(
        &self,
        connection: &mut MultiplexedConnection,
        changes: &[SuppressionChange],
        stored: &[Stored],
    ) -> Result<Vec<Option<Stored>>, ClusterError> {
        let mut pipe = redis::pipe();
        for (change, stored) in changes.iter().zip(stored) {
            let published = Published {
                tenant: change.tenant.clone(),
                address: change.address.clone(),
                change: stored.clone(),
            };
            pipe.cmd("EVAL")
                .arg(PUSH_SCRIPT)
                .arg(2)
                .arg(format!("{SUPPRESSIONS_KEY_PREFIX}{}", change.tenant))
                .arg(SUPPRESSION_TENANTS_KEY)
                .arg(&change.address)
                .arg(stored.at_ms)
                .arg(&stored.node)
                .arg(to_json(stored))
                .arg(&change.tenant)
                .arg(SUPPRESSIONS_CHANNEL)
                .arg(to_json(&published));
        }
        let answers: Vec<redis::Value> = self.cluster.bounded("EVAL", pipe.query_async(connection)).await?;
        Ok(answers
            .into_iter()
            .map(|answer| match answer {
                redis::Value::BulkString(bytes) => serde_json::from_slice(&bytes).ok(),
                _ => None,
            })
            .collect())
    }

    /// Removes pushed changes from the journal; a change that lost makes way for the winner.
    async fn settle(&self, pushed: Vec<SuppressionChange>, answers: Vec<Option<Stored>>) {
        let spool = Arc::clone(&self.spool);
        let winners = tokio::task::spawn_blocking(move || {
            let mut winners = Vec::new();
            for (change, answer) in pushed.into_iter().zip(answers) {
                match spool.settle_suppression_change(&change) {
                    Ok(true) => {
                        if let Some(winner) = answer {
                            winners.push((change.tenant, change.address, winner));
                        }
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(%error, "cluster: cannot clear a journal entry; it is pushed again")
                    }
                }
            }
            winners
        })
        .await
        .unwrap_or_default();
        if !winners.is_empty()
            && let Err(error) = self.apply(winners).await
        {
            tracing::error!(%error, "cluster: cannot apply a newer suppression change");
        }
    }

    /// Applies every entry of every tenant's hash that differs from the local one.
    async fn pull_all(&self, connection: &mut MultiplexedConnection) -> Result<(), ClusterError> {
        let tenants: Vec<String> = self
            .cluster
            .bounded(
                "SMEMBERS",
                redis::cmd("SMEMBERS")
                    .arg(SUPPRESSION_TENANTS_KEY)
                    .query_async(connection),
            )
            .await?;
        let mut applied = 0;
        for tenant in tenants {
            let key = format!("{SUPPRESSIONS_KEY_PREFIX}{tenant}");
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("HSCAN");
                scan.arg(&key).arg(cursor).arg("COUNT").arg(PAGE);
                let (next, fields): (u64, Vec<(String, String)>) = self
                    .cluster
                    .bounded("HSCAN", scan.query_async(connection))
                    .await?;
                let changes = fields
                    .into_iter()
                    .filter_map(|(address, value)| {
                        let stored = serde_json::from_str::<Stored>(&value).ok()?;
                        Some((tenant.clone(), address, stored))
                    })
                    .collect();
                applied += self.apply(changes).await.unwrap_or_else(|error| {
                    tracing::error!(%error, "cluster: cannot apply suppression changes");
                    0
                });
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        if applied > 0 {
            tracing::info!(applied, "cluster: suppression changes of other nodes applied");
        }
        Ok(())
    }

    /// Pushes every local entry whose address Redis has no change of (as made at its `added_at_ms`).
    async fn push_missing(&self, connection: &mut MultiplexedConnection) -> Result<(), ClusterError> {
        let mut after: Option<(String, String)> = None;
        loop {
            let spool = Arc::clone(&self.spool);
            let from = after.clone();
            let page = tokio::task::spawn_blocking(move || {
                let from = from.as_ref().map(|(t, a)| (t.as_str(), a.as_str()));
                spool.all_suppressions(from, PAGE)
            })
            .await
            .map_err(|join| SpoolError::Storage(format!("scan task failed: {join}")))
            .and_then(|page| page);
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, "cluster: cannot read the local suppression lists");
                    return Ok(());
                }
            };
            let Some((tenant, entry)) = page.last() else {
                return Ok(());
            };
            after = Some((tenant.clone(), entry.address.clone()));
            let full = page.len() == PAGE;
            self.push_absent(connection, page).await?;
            if !full {
                return Ok(());
            }
        }
    }

    /// Of `entries`, pushes those Redis has no field for.
    async fn push_absent(
        &self,
        connection: &mut MultiplexedConnection,
        entries: Vec<(String, SuppressionEntry)>,
    ) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        for (tenant, entry) in &entries {
            pipe.cmd("HEXISTS")
                .arg(format!("{SUPPRESSIONS_KEY_PREFIX}{tenant}"))
                .arg(&entry.address);
        }
        let known: Vec<bool> = self
            .cluster
            .bounded("HEXISTS", pipe.query_async(connection))
            .await?;
        let absent: Vec<SuppressionChange> = entries
            .into_iter()
            .zip(known)
            .filter(|(_, known)| !known)
            .map(|((tenant, entry), _)| SuppressionChange {
                tenant,
                address: entry.address.clone(),
                at_ms: entry.added_at_ms,
                entry: Some(entry),
            })
            .collect();
        if absent.is_empty() {
            return Ok(());
        }
        let node = self.cluster.node();
        let stored: Vec<Stored> = absent.iter().map(|change| Stored::of(change, node)).collect();
        tracing::info!(
            entries = absent.len(),
            "cluster: local suppressions unknown to Redis pushed"
        );
        self.push(connection, &absent, &stored).await.map(|_| ())
    }
}

/// JSON of a value that always serialises.
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(at_ms: u64, node: &str) -> Stored {
        Stored {
            at_ms,
            node: node.into(),
            entry: None,
        }
    }

    #[test]
    fn the_later_change_wins_then_the_greater_node() {
        assert!(local_wins(20, "a", &stored(10, "b")));
        assert!(!local_wins(10, "b", &stored(20, "a")));
        assert!(local_wins(10, "b", &stored(10, "a")));
        assert!(!local_wins(10, "a", &stored(10, "b")));
        assert!(local_wins(10, "a", &stored(10, "a")), "the same node's latest");
    }

    #[test]
    fn changes_round_trip_through_their_stored_form() {
        let change = SuppressionChange {
            tenant: "acme".into(),
            address: "jane@example.com".into(),
            at_ms: 1_700_000_000_123,
            entry: Some(SuppressionEntry {
                address: "jane@example.com".into(),
                reason: SuppressionReason::Unsubscribe,
                added_at_ms: 1_700_000_000_123,
                campaign: Some("spring".into()),
            }),
        };
        let stored = Stored::of(&change, "node-a");
        let json = to_json(&stored);
        let back: Stored = serde_json::from_str(&json).expect("parses");
        assert_eq!(back.change("acme", "jane@example.com"), change);
        let deleted = Stored::of(
            &SuppressionChange {
                entry: None,
                ..change
            },
            "node-a",
        );
        assert!(to_json(&deleted).contains("\"entry\":null"), "a tombstone");
    }
}
