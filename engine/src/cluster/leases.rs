//! Connection leases in Redis: the fleet's connection caps (`delivery::scheduler::leases` names them).
//!
//! A capped limiter is a sorted set `penguin:conns:{lane|provider}/…` whose members are the
//! connections holding a slot (`NODE/CONNID`, CONNID = this process's start, ms, `.` the scheduler's
//! connection id, so that a node restarted at once never takes its dead self's lease for its own) and
//! whose scores are their expiry (unix ms, the caller's clock). A worker acquires every lease of its
//! connection in one Lua script (atomic: expired members dropped, then all added if each set is under
//! its cap, or none), renews them every third of `lease_ttl` while the connection lives (one script for
//! all; a lease found gone makes the connection end after its item) and removes them when it closes.
//! A node killed without closing leaves leases that expire within `lease_ttl`.
//!
//! When Redis is down (as the cluster task found it) no lease is asked for: the scheduler keeps each
//! cap to this node's share. A failed or slow acquire counts as a refusal with a short retry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{Cluster, ClusterError};
use crate::delivery::scheduler::{ConnId, LeaseKey};

/// Prefix of the lease sets' keys.
pub const LEASE_KEY_PREFIX: &str = "penguin:conns:";

/// How soon a lane asks again after Redis failed to answer an acquire.
const ERROR_RETRY_MS: u64 = 250;

/// KEYS: the lease sets; ARGV: now (ms), the new expiry (ms), the member, the TTL (ms), then the cap
/// of each key. Returns `{1, "0"}` when every lease was added, else `{0, when}` with when the fullest
/// set frees its first slot (the latest over the full sets of their earliest expiry).
const ACQUIRE_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local wait = nil
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, ARGV[3]) and redis.call('ZCARD', key) >= tonumber(ARGV[4 + i]) then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local at = tonumber(first[2]) or (now + tonumber(ARGV[4]))
    if wait == nil or at > wait then wait = at end
  end
end
if wait then return {0, string.format('%.0f', wait)} end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[3])
  if redis.call('PTTL', key) < tonumber(ARGV[4]) then redis.call('PEXPIRE', key, ARGV[4]) end
end
return {1, '0'}
";

/// KEYS: the lease sets; ARGV: the new expiry (ms), the member, the TTL (ms). Renews the member's
/// leases that still exist; returns how many did.
const RENEW_SCRIPT: &str = r"
local held = 0
for _, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, ARGV[2]) then
    redis.call('ZADD', key, ARGV[1], ARGV[2])
    if redis.call('PTTL', key) < tonumber(ARGV[3]) then redis.call('PEXPIRE', key, ARGV[3]) end
    held = held + 1
  end
end
return held
";

/// The fixed part of [`Leases`].
struct Inner {
    /// The cluster handle (node id, clock, health, Redis helpers).
    cluster: Cluster,
    /// `cluster.lease_ttl`.
    ttl: Duration,
    /// This process's start (unix ms), part of every member.
    boot_ms: u64,
    /// The connection to Redis, shared by the workers (None until first needed, or after a failure).
    connection: Mutex<Option<MultiplexedConnection>>,
}

/// This node's lease client (cheap to clone).
#[derive(Clone)]
pub struct Leases {
    /// The shared part.
    inner: Arc<Inner>,
}

/// The answer to [`Leases::acquire`].
pub enum Acquired {
    /// Connect: the leases are held (or none was needed); keep the guard while the connection lives.
    Held(LeaseGuard),
    /// Do not connect; ask again at `retry_at_us` (unix µs).
    Refused {
        /// When a slot may be free.
        retry_at_us: u64,
    },
}

impl Leases {
    /// The lease client of `cluster`, leases lasting `ttl` unless renewed.
    pub fn new(cluster: Cluster, ttl: Duration) -> Leases {
        let boot_ms = cluster.inner.parts.clock.now_ms();
        Leases {
            inner: Arc::new(Inner {
                cluster,
                ttl,
                boot_ms,
                connection: Mutex::new(None),
            }),
        }
    }

    /// Takes every lease of `keys` for connection `conn`, or none. Redis known to be down: no lease
    /// (the scheduler enforces this node's share).
    pub async fn acquire(&self, keys: &[LeaseKey], conn: ConnId) -> Acquired {
        if keys.is_empty() {
            return Acquired::Held(LeaseGuard::none());
        }
        if !self.inner.cluster.is_up() {
            return Acquired::Held(LeaseGuard::unleased(self.clone()));
        }
        let member = format!("{}/{}.{}", self.inner.cluster.node(), self.inner.boot_ms, conn.0);
        let names: Vec<String> = keys
            .iter()
            .map(|key| format!("{LEASE_KEY_PREFIX}{}", key.name))
            .collect();
        let now_ms = self.now_ms();
        match self.run_acquire(&names, keys, &member, now_ms).await {
            Ok(None) => Acquired::Held(LeaseGuard::held(self.clone(), names, member)),
            Ok(Some(at_ms)) => Acquired::Refused {
                retry_at_us: at_ms.saturating_mul(1000),
            },
            Err(error) => {
                tracing::warn!(%error, "cluster: no connection lease from Redis; the lane waits");
                Acquired::Refused {
                    retry_at_us: (now_ms + ERROR_RETRY_MS) * 1000,
                }
            }
        }
    }

    /// The acquire script: None when granted, else when to try again (unix ms).
    async fn run_acquire(
        &self,
        names: &[String],
        keys: &[LeaseKey],
        member: &str,
        now_ms: u64,
    ) -> Result<Option<u64>, ClusterError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ACQUIRE_SCRIPT).arg(names.len()).arg(names);
        cmd.arg(now_ms)
            .arg(now_ms + self.ttl_ms())
            .arg(member)
            .arg(self.ttl_ms());
        for key in keys {
            cmd.arg(key.cap);
        }
        let (granted, at): (i64, String) = self.query("EVAL acquire", &cmd).await?;
        Ok((granted == 0).then(|| at.parse().unwrap_or(now_ms + ERROR_RETRY_MS)))
    }

    /// Renews `member`'s leases of `names`; false when one of them is gone.
    async fn renew(&self, names: &[String], member: &str) -> Result<bool, ClusterError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RENEW_SCRIPT).arg(names.len()).arg(names);
        cmd.arg(self.now_ms() + self.ttl_ms())
            .arg(member)
            .arg(self.ttl_ms());
        let held: usize = self.query("EVAL renew", &cmd).await?;
        Ok(held == names.len())
    }

    /// Removes `member`'s leases of `names` (one pipeline).
    async fn release(&self, names: &[String], member: &str) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        for name in names {
            pipe.cmd("ZREM").arg(name).arg(member).ignore();
        }
        let mut connection = self.connection().await?;
        let result: Result<(), ClusterError> = self
            .inner
            .cluster
            .bounded("ZREM", pipe.query_async(&mut connection))
            .await;
        self.keep_or_forget(result.is_ok());
        result
    }

    /// One command on the shared connection (bounded by `redis_timeout`).
    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, ClusterError> {
        let mut connection = self.connection().await?;
        let result = self
            .inner
            .cluster
            .bounded(what, cmd.query_async(&mut connection))
            .await;
        self.keep_or_forget(result.is_ok());
        result
    }

    /// The shared connection, connecting when there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, ClusterError> {
        if let Some(open) = self.slot().clone() {
            return Ok(open);
        }
        let open = self.inner.cluster.connect().await?;
        *self.slot() = Some(open.clone());
        Ok(open)
    }

    /// After a command: a failed connection is dropped (the next command reconnects).
    fn keep_or_forget(&self, ok: bool) {
        if !ok {
            *self.slot() = None;
        }
    }

    /// The connection's place.
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        self.inner
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Now (unix ms, the injected clock).
    fn now_ms(&self) -> u64 {
        self.inner.cluster.inner.parts.clock.now_ms()
    }

    /// The TTL in ms.
    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.inner.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A connection's leases: renewed while it lives, removed by [`LeaseGuard::release`] (or, when the
/// worker is dropped without it, by a task spawned on drop).
pub struct LeaseGuard {
    /// The client (None: no lease was needed).
    leases: Option<Leases>,
    /// The lease sets held (empty: none held).
    names: Vec<String>,
    /// The member in them.
    member: String,
    /// Renews them every third of the TTL.
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// A renewal found a lease gone.
    lost: Arc<AtomicBool>,
}

impl LeaseGuard {
    /// No lease needed (no `[cluster]`, or no cap).
    pub fn none() -> LeaseGuard {
        LeaseGuard {
            leases: None,
            names: Vec::new(),
            member: String::new(),
            renewer: None,
            lost: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Leases wanted but Redis is down: the connection goes on its node's share.
    fn unleased(leases: Leases) -> LeaseGuard {
        let mut guard = LeaseGuard::none();
        guard.leases = Some(leases);
        guard
    }

    /// Leases held: starts their renewal.
    fn held(leases: Leases, names: Vec<String>, member: String) -> LeaseGuard {
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew_while_alive(
            leases.clone(),
            names.clone(),
            member.clone(),
            Arc::clone(&lost),
        ));
        LeaseGuard {
            leases: Some(leases),
            names,
            member,
            renewer: Some(renewer),
            lost,
        }
    }

    /// Whether the connection holds leases of fleet-wide caps (then it should not idle long: another
    /// node may need the slot).
    pub fn holds(&self) -> bool {
        !self.names.is_empty()
    }

    /// Whether the connection should end after its item: a lease was lost, or it runs without a lease
    /// and Redis answers again (a new connection will hold one).
    pub fn must_end(&self) -> bool {
        match &self.leases {
            None => false,
            Some(_) if !self.names.is_empty() => self.lost.load(Ordering::Relaxed),
            Some(leases) => leases.inner.cluster.is_up(),
        }
    }

    /// Stops the renewal and removes the leases (bounded by `redis_timeout`; an unanswered removal
    /// leaves them to expire).
    pub async fn release(mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        let names = std::mem::take(&mut self.names);
        if let (Some(leases), false) = (&self.leases, names.is_empty())
            && let Err(error) = leases.release(&names, &self.member).await
        {
            tracing::debug!(%error, "cluster: leases not removed; they expire");
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        let names = std::mem::take(&mut self.names);
        if let (Some(leases), false) = (self.leases.take(), names.is_empty())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let member = std::mem::take(&mut self.member);
            runtime.spawn(async move {
                let _ = leases.release(&names, &member).await;
            });
        }
    }
}

/// Renews the leases every third of the TTL (tokio time, like the heartbeat) until aborted or one is
/// found gone; a failed renewal is tried again at the next tick (the lease lasts the TTL).
async fn renew_while_alive(leases: Leases, names: Vec<String>, member: String, lost: Arc<AtomicBool>) {
    let every = (leases.inner.ttl / 3).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match leases.renew(&names, &member).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(%member, "cluster: a connection lease expired; the connection ends");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(error) => tracing::debug!(%error, "cluster: lease renewal failed; retried"),
        }
    }
}
