//! The warm-up's day tallies summed over the nodes (`[cluster]`), so that every node judges a warming
//! source's finished day from what the whole fleet sent, delivered, deferred and bounced.
//!
//! Each node counts its own outcomes in its spool (`w/SOURCE/DAY/PROVIDER/KIND`, exact across kill -9).
//! The push task ([`run_warm_tally_push`], every [`TALLY_PUSH_EVERY`]) writes this node's *absolute*
//! values that changed to `HSET penguin:warmup:tally:SOURCE:DAY NODE/PROVIDER/KIND value` (the hash
//! kept [`TALLY_TTL_SECS`]); after the start and after a failure it pushes them all. It reads only the
//! days that can still be judged or counted, two UTC days back to one ahead ([`PUSHED_DAYS`]: every
//! plan time zone's yesterday and today), one seek per source and day, so months of counters cost
//! nothing. A node only
//! writes its own fields, so a replay is idempotent. [`Cluster::others_warmup_tallies`] reads the
//! other nodes' fields of the days to judge (one pipeline, bounded by `redis_timeout`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use penguin_policy::warmup::DayTally;
use penguin_queue::{Spool, SpoolError};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use super::{Cluster, ClusterError};

/// How often this node's changed tallies are pushed.
pub const TALLY_PUSH_EVERY: Duration = Duration::from_secs(1);

/// Prefix of the hashes: `penguin:warmup:tally:{source}:{YYYY-MM-DD}`.
pub const WARMUP_TALLY_PREFIX: &str = "penguin:warmup:tally:";

/// How long a day's hash is kept after its last push (days are judged the next morning).
pub const TALLY_TTL_SECS: u64 = 30 * 86_400;

/// The warm-up prefix of the spool's counters.
const COUNTER_PREFIX: &str = "w/";

/// The UTC days pushed, relative to today.
const PUSHED_DAYS: [i8; 4] = [-2, -1, 0, 1];

/// Tallies of other nodes: (source, day, provider) → their summed counts.
pub type OthersTallies = BTreeMap<(String, Date, String), DayTally>;

/// The hash of a source's day.
pub fn tally_hash(source: &str, day: &str) -> String {
    format!("{WARMUP_TALLY_PREFIX}{source}:{day}")
}

/// The push task: a round every [`TALLY_PUSH_EVERY`] until `stopped`.
pub async fn run_warm_tally_push(
    cluster: Cluster,
    spool: Arc<Spool>,
    sources: Vec<String>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(TALLY_PUSH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connection: Option<MultiplexedConnection> = None;
    // What Redis holds of this node's counters, as far as it knows (None: push everything).
    let mut pushed: Option<HashMap<String, i64>> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        if !cluster.is_up() {
            pushed = None;
            continue;
        }
        let today = crate::usage::utc_date(cluster.inner.parts.clock.now_ms());
        let counters = match recent_counters(&spool, &sources, today) {
            Ok(counters) => counters,
            Err(error) => {
                tracing::warn!(%error, "cluster: warm-up tallies not read from the spool");
                continue;
            }
        };
        let known = pushed.take().unwrap_or_default();
        let changed: Vec<(String, i64)> = counters
            .into_iter()
            .filter(|(key, value)| known.get(key) != Some(value))
            .collect();
        let mut open = match connection.take() {
            Some(open) => open,
            None => match cluster.connect().await {
                Ok(open) => open,
                Err(error) => {
                    tracing::warn!(%error, "cluster: warm-up tallies not pushed");
                    continue;
                }
            },
        };
        match push(&cluster, &mut open, &changed).await {
            Ok(()) => {
                let mut now_known = known;
                now_known.extend(changed);
                pushed = Some(now_known);
                connection = Some(open);
            }
            Err(error) => tracing::warn!(%error, "cluster: warm-up tallies not pushed"),
        }
    }
}

/// This node's warm-up counters of `sources` on the [`PUSHED_DAYS`] around `today`.
fn recent_counters(spool: &Spool, sources: &[String], today: Date) -> Result<Vec<(String, i64)>, SpoolError> {
    let mut found = Vec::new();
    for source in sources {
        for offset in PUSHED_DAYS {
            let Ok(day) = today.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            found.extend(spool.counters(&format!("{COUNTER_PREFIX}{source}/{day}/"))?);
        }
    }
    Ok(found)
}

/// One counter key `w/SOURCE/DAY/PROVIDER/KIND` split into (source, day, provider, kind).
fn split_key(key: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = key.strip_prefix(COUNTER_PREFIX)?.splitn(4, '/');
    Some((parts.next()?, parts.next()?, parts.next()?, parts.next()?))
}

/// Writes the changed counters, one pipeline.
async fn push(
    cluster: &Cluster,
    connection: &mut MultiplexedConnection,
    changed: &[(String, i64)],
) -> Result<(), ClusterError> {
    if changed.is_empty() {
        return Ok(());
    }
    let node = cluster.node();
    let mut pipe = redis::pipe();
    for (key, value) in changed {
        let Some((source, day, provider, kind)) = split_key(key) else {
            continue;
        };
        let hash = tally_hash(source, day);
        pipe.cmd("HSET")
            .arg(&hash)
            .arg(format!("{node}/{provider}/{kind}"))
            .arg(*value)
            .ignore();
        pipe.cmd("EXPIRE").arg(&hash).arg(TALLY_TTL_SECS).ignore();
    }
    cluster.bounded("HSET", pipe.query_async::<()>(connection)).await
}

/// Adds one field of a day's hash (`NODE/PROVIDER/KIND` → value) to `tallies`, unless it is `node`'s.
fn add_field(tallies: &mut BTreeMap<String, DayTally>, field: &str, value: &str, node: &str) {
    let mut parts = field.rsplitn(3, '/');
    let (Some(kind), Some(provider), Some(owner), Ok(value)) =
        (parts.next(), parts.next(), parts.next(), value.parse::<u64>())
    else {
        return;
    };
    if owner == node {
        return;
    }
    let tally = tallies.entry(provider.to_owned()).or_default();
    match kind {
        "sent" => tally.sent += value,
        "delivered" => tally.delivered += value,
        "deferred" => tally.deferred += value,
        "bounced" => tally.bounced += value,
        _ => {}
    }
}

impl Cluster {
    /// The other nodes' tallies of each (source, day) in `wanted`, from Redis (bounded by
    /// `redis_timeout`).
    pub async fn others_warmup_tallies(
        &self,
        wanted: &[(String, Date)],
    ) -> Result<OthersTallies, ClusterError> {
        let mut found = OthersTallies::new();
        if wanted.is_empty() {
            return Ok(found);
        }
        let mut connection = self.connect().await?;
        let mut pipe = redis::pipe();
        for (source, day) in wanted {
            pipe.cmd("HGETALL").arg(tally_hash(source, &day.to_string()));
        }
        let hashes: Vec<HashMap<String, String>> =
            self.bounded("HGETALL", pipe.query_async(&mut connection)).await?;
        let node = self.node();
        for ((source, day), hash) in wanted.iter().zip(hashes) {
            let mut by_provider = BTreeMap::new();
            for (field, value) in &hash {
                add_field(&mut by_provider, field, value, node);
            }
            for (provider, tally) in by_provider {
                found.insert((source.clone(), *day, provider), tally);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_days_around_today_are_pushed() -> Result<(), SpoolError> {
        let dir = tempfile::tempdir().map_err(|e| SpoolError::Storage(e.to_string()))?;
        let spool = Spool::open(penguin_queue::SpoolOptions::new(dir.path().join("spool")))?;
        let mut counts = penguin_queue::Counts::new();
        for day in [
            "2026-11-20",
            "2026-12-01",
            "2026-12-02",
            "2026-12-03",
            "2026-12-04",
            "2026-12-05",
        ] {
            counts.add(format!("w/ip9/{day}/google/sent"), 1);
        }
        counts.add("w/ip2/2026-12-03/google/sent", 1);
        counts.add("w/ip3/2026-12-03/google/sent", 1);
        spool.add_counts(&counts)?;
        let today: Date = "2026-12-03".parse().expect("date");
        let sources = ["ip9".to_owned(), "ip2".to_owned()];
        let mut keys: Vec<String> = recent_counters(&spool, &sources, today)?
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "w/ip2/2026-12-03/google/sent",
                "w/ip9/2026-12-01/google/sent",
                "w/ip9/2026-12-02/google/sent",
                "w/ip9/2026-12-03/google/sent",
                "w/ip9/2026-12-04/google/sent",
            ]
        );
        Ok(())
    }

    #[test]
    fn counter_keys_and_fields_are_read_back() {
        assert_eq!(
            split_key("w/ip9/2026-12-02/google/sent"),
            Some(("ip9", "2026-12-02", "google", "sent"))
        );
        assert_eq!(split_key("u/acme/2026-12-02/accepted"), None);
        let mut tallies = BTreeMap::new();
        add_field(&mut tallies, "node-b/google/sent", "7", "node-a");
        add_field(&mut tallies, "node/c/google/bounced", "2", "node-a");
        add_field(&mut tallies, "node-a/google/sent", "100", "node-a");
        add_field(&mut tallies, "node-b/google/sent", "junk", "node-a");
        let google = tallies.get("google").expect("google");
        assert_eq!(
            (google.sent, google.bounced),
            (7, 2),
            "own fields left out: {google:?}"
        );
    }
}
