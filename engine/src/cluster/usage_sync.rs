//! Usage counters summed over the nodes (`[cluster]`): `GET /v1/tenants/{t}/usage` answers the fleet's.
//!
//! Each node counts its own usage in its spool (`crate::usage`, exact across restart and kill -9). The
//! push task ([`run_usage_push`], every [`USAGE_PUSH_EVERY`]) writes this node's *absolute* values to
//! Redis: `HSET penguin:usage:{tenant}:{day} {node}/{kind} value`, the hash kept for
//! [`USAGE_TTL_SECS`] after its last push. A node only ever writes its own numbers, so a replay is
//! idempotent and nothing is counted twice: the fleet's count of a day is the sum of the fields.
//! After the start and after any failure (Redis may have come back empty) the next round pushes every
//! stored day; otherwise only the (tenant, day) groups of yesterday and today whose values changed
//! since the last push (one seek per tenant, `Spool::first_counter_key`). The last values are pushed
//! once more at shutdown.
//!
//! Reading ([`Cluster::others_usage`]): one pipeline of `HGETALL` for the asked days, bounded by
//! `redis_timeout`, leaving this node's fields out (the caller adds its spool's, the freshest). The
//! answers are cached; while Redis is down or slow the cache gives the others' last known values and
//! the answer says it is incomplete. Nothing of reception waits on any of this.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::civil::Date;
use penguin_queue::{Spool, SpoolError};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use super::{Cluster, ClusterError};
use crate::usage::{self, Totals};

/// How often this node's changed counters are pushed.
pub const USAGE_PUSH_EVERY: Duration = Duration::from_secs(1);

/// Prefix of the hashes: `penguin:usage:{tenant}:{YYYY-MM-DD}`.
pub const USAGE_KEY_PREFIX: &str = "penguin:usage:";

/// How long a day's hash is kept after its last push (longer than the longest usage request).
pub const USAGE_TTL_SECS: u64 = 400 * 86_400;

/// Groups per pipeline of a push.
const PUSH_CHUNK: usize = 256;

/// Most (tenant, day) answers cached for when Redis is away (the oldest days go first).
const MAX_CACHED: usize = 10_000;

/// The usage prefix of the spool's counters (`u/TENANT/DAY/KIND`).
const COUNTER_PREFIX: &str = "u/";

/// One node's counters of one tenant's day: kind → value.
type Group = BTreeMap<String, i64>;

/// Counters by (tenant, day).
type Groups = BTreeMap<(String, Date), Group>;

/// Other nodes' counts of one tenant's day: node → counts.
type NodeTotals = BTreeMap<String, Totals>;

/// The hash of a tenant's day.
pub fn usage_hash(tenant: &str, day: Date) -> String {
    format!("{USAGE_KEY_PREFIX}{tenant}:{day}")
}

/// A spool usage key `u/TENANT/DAY/KIND` as (tenant, day, kind).
fn parse_counter(key: &str) -> Option<(String, Date, String)> {
    let rest = key.strip_prefix(COUNTER_PREFIX)?;
    let (tenant, rest) = rest.split_once('/')?;
    let (day, kind) = rest.split_once('/')?;
    Some((tenant.to_owned(), day.parse().ok()?, kind.to_owned()))
}

/// Adds the counters `found` to `groups`.
fn group(groups: &mut Groups, found: Vec<(String, i64)>) {
    for (key, value) in found {
        if let Some((tenant, day, kind)) = parse_counter(&key) {
            groups.entry((tenant, day)).or_default().insert(kind, value);
        }
    }
}

/// Every usage counter of the spool.
fn read_all(spool: &Spool) -> Result<Groups, SpoolError> {
    let mut groups = Groups::new();
    group(&mut groups, spool.counters(COUNTER_PREFIX)?);
    Ok(groups)
}

/// The usage counters of `days`, every tenant: one seek per tenant and one prefix read per day.
fn read_days(spool: &Spool, days: &[Date]) -> Result<Groups, SpoolError> {
    let mut groups = Groups::new();
    let mut from = COUNTER_PREFIX.to_owned();
    while let Some(key) = spool.first_counter_key(&from, COUNTER_PREFIX)? {
        let Some((tenant, _)) = key[COUNTER_PREFIX.len()..].split_once('/') else {
            from = format!("{key}\0");
            continue;
        };
        for day in days {
            group(
                &mut groups,
                spool.counters(&format!("{COUNTER_PREFIX}{tenant}/{day}/"))?,
            );
        }
        // Past every `u/TENANT/…` key: '0' follows '/', and tenant names hold no '/'.
        from = format!("{COUNTER_PREFIX}{tenant}0");
    }
    Ok(groups)
}

/// The groups of `now` whose values differ from those last pushed.
fn changed<'a>(now: &'a Groups, pushed: &Groups) -> Vec<(&'a (String, Date), &'a Group)> {
    now.iter()
        .filter(|(key, values)| pushed.get(*key) != Some(*values))
        .collect()
}

/// Writes `groups` as this node's fields (absolute values), in pipelines of [`PUSH_CHUNK`].
async fn push(
    cluster: &Cluster,
    connection: &mut MultiplexedConnection,
    groups: &[(&(String, Date), &Group)],
) -> Result<(), ClusterError> {
    let node = cluster.node();
    for chunk in groups.chunks(PUSH_CHUNK) {
        let mut pipe = redis::pipe();
        for ((tenant, day), values) in chunk {
            let key = usage_hash(tenant, *day);
            pipe.cmd("HSET").arg(&key);
            for (kind, value) in values.iter() {
                pipe.arg(format!("{node}/{kind}")).arg(*value);
            }
            pipe.ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(USAGE_TTL_SECS).ignore();
        }
        cluster
            .bounded("HSET", pipe.query_async::<()>(connection))
            .await?;
    }
    Ok(())
}

/// The push task's state between rounds.
struct Pusher {
    /// The handle (clock, node id, Redis).
    cluster: Cluster,
    /// The spool holding the counters.
    spool: Arc<Spool>,
    /// The connection, while it works.
    connection: Option<MultiplexedConnection>,
    /// What Redis holds of this node's recent days; `None`: push everything next.
    pushed: Option<Groups>,
}

impl Pusher {
    /// One round: read the counters (all of them after a failure), push what changed.
    async fn round(&mut self) {
        if !self.cluster.is_up() {
            // Redis may come back empty: everything goes again.
            self.connection = None;
            self.pushed = None;
            return;
        }
        let today = usage::utc_date(self.cluster.inner.parts.clock.now_ms());
        let recent = [today.yesterday().unwrap_or(today), today];
        let full = self.pushed.is_none();
        let spool = Arc::clone(&self.spool);
        let read = tokio::task::spawn_blocking(move || {
            if full {
                read_all(&spool)
            } else {
                read_days(&spool, &recent)
            }
        })
        .await;
        let groups = match read {
            Ok(Ok(groups)) => groups,
            Ok(Err(error)) => return tracing::warn!(%error, "cluster: cannot read the usage counters"),
            Err(error) => return tracing::warn!(%error, "cluster: usage counter read failed"),
        };
        let before = self.pushed.take().unwrap_or_default();
        let changes = changed(&groups, &before);
        let mut connection = match self.connection.take() {
            Some(open) => open,
            None => match self.cluster.connect().await {
                Ok(open) => open,
                Err(_) => return,
            },
        };
        if let Err(error) = push(&self.cluster, &mut connection, &changes).await {
            return tracing::warn!(%error, "cluster: usage push failed; pushing everything next time");
        }
        self.connection = Some(connection);
        let mut kept = groups;
        kept.retain(|(_, day), _| recent.contains(day));
        self.pushed = Some(kept);
    }
}

/// The push task (see the module documentation): a round every [`USAGE_PUSH_EVERY`] until `stopped`,
/// then a last one.
pub async fn run_usage_push(cluster: Cluster, spool: Arc<Spool>, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(USAGE_PUSH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pusher = Pusher {
        cluster,
        spool,
        connection: None,
        pushed: None,
    };
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
        tokio::select! {
            () = pusher.round() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
    if pusher.pushed.is_some() {
        // The counts of the last second (each command bounded by redis_timeout).
        pusher.round().await;
    }
}

/// The read side's connection and cache (part of the [`Cluster`] handle).
#[derive(Default)]
pub(crate) struct UsageReader {
    /// The connection, while it works.
    connection: Mutex<Option<MultiplexedConnection>>,
    /// The other nodes' counts last read, by (day, tenant).
    cache: Mutex<BTreeMap<(Date, String), NodeTotals>>,
}

/// A lock that a panic elsewhere does not make unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The other nodes' usage of a tenant's days ([`Cluster::others_usage`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OthersUsage {
    /// Their summed counts per day (days none of them counted are absent).
    pub days: BTreeMap<Date, Totals>,
    /// Whether Redis answered now (false: the last known values, or none).
    pub complete: bool,
    /// The other nodes whose counts are included.
    pub nodes: BTreeSet<String>,
}

impl OthersUsage {
    /// Adds one day's counts of the other nodes.
    fn add(&mut self, day: Date, nodes: &NodeTotals) {
        for (node, totals) in nodes {
            self.nodes.insert(node.clone());
            self.days.entry(day).or_default().add(totals);
        }
    }
}

/// Every day from `from` to `to`, inclusive.
fn days_between(from: Date, to: Date) -> Vec<Date> {
    let mut days = Vec::new();
    let mut day = from;
    while day <= to {
        days.push(day);
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    days
}

/// The other nodes' counts in a day's hash (`node` is this node, left out).
pub(super) fn others_in(hash: HashMap<String, String>, node: &str) -> NodeTotals {
    let mut totals = NodeTotals::new();
    for (field, value) in hash {
        let (Some((owner, kind)), Ok(value)) = (field.rsplit_once('/'), value.parse::<i64>()) else {
            continue;
        };
        if owner != node {
            totals.entry(owner.to_owned()).or_default().add_kind(kind, value);
        }
    }
    totals
}

impl Cluster {
    /// The other nodes' usage of `tenant` from `from` to `to` (inclusive): from Redis when it answers
    /// within `redis_timeout`, else their last known values (`complete` false).
    pub async fn others_usage(&self, tenant: &str, from: Date, to: Date) -> OthersUsage {
        let days = days_between(from, to);
        let fresh = if self.is_up() {
            match self.read_usage_hashes(tenant, &days).await {
                Ok(fresh) => Some(fresh),
                Err(error) => {
                    tracing::warn!(%error, "cluster: usage not read from Redis; answering the last known");
                    None
                }
            }
        } else {
            None
        };
        let mut answer = OthersUsage {
            complete: fresh.is_some(),
            ..OthersUsage::default()
        };
        let mut cache = lock(&self.inner.usage.cache);
        match fresh {
            Some(fresh) => {
                let today = usage::utc_date(self.inner.parts.clock.now_ms());
                for (day, nodes) in days.iter().zip(fresh) {
                    answer.add(*day, &nodes);
                    if *day == today {
                        // The daily quota's figure too (`quota_sync.rs`).
                        let accepted = nodes
                            .values()
                            .map(|totals| u64::try_from(totals.accepted).unwrap_or(0));
                        self.inner.quota.record(tenant, today, accepted.sum());
                    }
                    cache.insert((*day, tenant.to_owned()), nodes);
                }
                while cache.len() > MAX_CACHED {
                    cache.pop_first();
                }
            }
            None => {
                for day in &days {
                    if let Some(nodes) = cache.get(&(*day, tenant.to_owned())) {
                        answer.add(*day, nodes);
                    }
                }
            }
        }
        answer
    }

    /// One `HGETALL` per day in one pipeline: each day's other nodes' counts.
    async fn read_usage_hashes(&self, tenant: &str, days: &[Date]) -> Result<Vec<NodeTotals>, ClusterError> {
        let existing = lock(&self.inner.usage.connection).take();
        let mut connection = match existing {
            Some(open) => open,
            None => self.connect().await?,
        };
        let mut pipe = redis::pipe();
        for day in days {
            pipe.cmd("HGETALL").arg(usage_hash(tenant, *day));
        }
        let hashes: Vec<HashMap<String, String>> =
            self.bounded("HGETALL", pipe.query_async(&mut connection)).await?;
        *lock(&self.inner.usage.connection) = Some(connection);
        Ok(hashes
            .into_iter()
            .map(|hash| others_in(hash, self.node()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn counter_keys_group_and_only_changes_are_pushed() {
        assert_eq!(
            parse_counter("u/acme/2026-12-03/accepted"),
            Some(("acme".into(), date("2026-12-03"), "accepted".into()))
        );
        assert_eq!(parse_counter("u/acme/not-a-day/accepted"), None);
        assert_eq!(parse_counter("c/acme/spring accepted"), None);
        let mut before = Groups::new();
        group(
            &mut before,
            vec![
                ("u/a/2026-12-03/accepted".into(), 2),
                ("u/b/2026-12-03/accepted".into(), 1),
            ],
        );
        let mut now = before.clone();
        group(&mut now, vec![("u/b/2026-12-03/delivered".into(), 1)]);
        group(&mut now, vec![("u/c/2026-12-03/accepted".into(), 5)]);
        let keys: Vec<&str> = changed(&now, &before)
            .iter()
            .map(|((tenant, _), _)| tenant.as_str())
            .collect();
        assert_eq!(keys, ["b", "c"], "a is unchanged");
        assert_eq!(usage_hash("a", date("2026-12-03")), "penguin:usage:a:2026-12-03");
    }

    #[test]
    fn recent_days_of_every_tenant_are_found_by_seeking() -> Result<(), SpoolError> {
        let dir = tempfile::tempdir().map_err(|e| SpoolError::Storage(e.to_string()))?;
        let spool = Spool::open(penguin_queue::SpoolOptions::new(dir.path().join("spool")))?;
        let mut counts = penguin_queue::Counts::new();
        for (tenant, day, value) in [
            ("a", "2026-12-03", 1),
            ("a", "2026-12-01", 7),
            ("a-b", "2026-12-03", 2),
            ("a.c", "2026-12-02", 3),
            ("a0", "2026-12-03", 4),
            ("b", "2026-11-30", 5),
        ] {
            counts.add(format!("u/{tenant}/{day}/accepted"), value);
        }
        counts.add("c/a/spring accepted", 9);
        spool.add_counts(&counts)?;
        let recent = read_days(&spool, &[date("2026-12-02"), date("2026-12-03")])?;
        let found: Vec<(&str, String, i64)> = recent
            .iter()
            .map(|((tenant, day), values)| (tenant.as_str(), day.to_string(), values["accepted"]))
            .collect();
        assert_eq!(
            found,
            [
                ("a", "2026-12-03".to_owned(), 1),
                ("a-b", "2026-12-03".to_owned(), 2),
                ("a.c", "2026-12-02".to_owned(), 3),
                ("a0", "2026-12-03".to_owned(), 4),
            ]
        );
        assert_eq!(read_all(&spool)?.len(), 6, "every day of every tenant");
        Ok(())
    }

    #[test]
    fn other_nodes_fields_add_up_and_ours_are_left_out() {
        let hash: HashMap<String, String> = [
            ("node-a/accepted", "3"),
            ("node-b/accepted", "4"),
            ("node-b/delivered", "2"),
            ("node/with/slash/accepted", "1"),
            ("node-c/accepted", "junk"),
            ("node-c/unknown", "9"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let totals = others_in(hash, "node-a");
        assert_eq!(
            totals.keys().map(String::as_str).collect::<Vec<_>>(),
            ["node-b", "node-c", "node/with/slash"]
        );
        assert_eq!(totals["node-b"].accepted, 4);
        assert_eq!(totals["node-b"].delivered, 2);
        assert_eq!(totals["node/with/slash"].accepted, 1);
        let mut answer = OthersUsage::default();
        answer.add(date("2026-12-03"), &totals);
        assert_eq!(answer.days[&date("2026-12-03")].accepted, 5);
        assert_eq!(days_between(date("2026-12-30"), date("2027-01-02")).len(), 4);
    }
}
