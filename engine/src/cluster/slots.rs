//! Shared rate limits in Redis: the scheduler asks for slots of its shared limiters
//! (`delivery::scheduler::shared`); this task takes the requests, runs the fleet's GCRA for each in
//! Redis (one Lua script, atomic: `penguin:gcra:{limiter}` holds the theoretical arrival time, µs)
//! and hands the slots back; the warm-up's capacity claims go the same way (`warm_claims.rs`). It
//! also tells the scheduler whether Redis answers and how many nodes share the limits, so that
//! without Redis every node keeps to its share (rate ÷ nodes).
//!
//! The slot times are the requesting node's clock (passed to the script): nodes keep their clocks in
//! step (NTP), as they must for any shared rate; in tests they share one clock.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{Notify, watch};

use super::{Cluster, ClusterError};
use crate::delivery::scheduler::{Scheduler, SlotRequest};

/// The fleet's GCRA, [`penguin_policy::shaping::grant`] in Lua: KEYS[1] the limiter, ARGV: emission
/// interval (µs), slots wanted, the caller's now (µs), the key's lifetime (ms). Returns the first
/// slot's time. (Lua numbers are doubles: exact for µs since 1970 until the year 2255.)
const GRANT_SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local first = math.max(tat, now)
redis.call('SET', KEYS[1], string.format('%.0f', first + interval * count), 'PX', ARGV[4])
return string.format('%.0f', first)
";

/// How often the store's state is given to the scheduler when nothing asks for slots.
const REFRESH: Duration = Duration::from_millis(100);

/// How long an idle limiter's state stays in Redis (its TAT is in the past long before).
const KEY_LIFETIME_MS: u64 = 3_600_000;

/// The prefix of the limiters' keys.
const GCRA_KEY_PREFIX: &str = "penguin:gcra:";

/// Serves the scheduler's slot requests until `stopped`.
pub async fn run_slots(
    cluster: Cluster,
    scheduler: Arc<Mutex<Scheduler>>,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connection: Option<MultiplexedConnection> = None;
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(REFRESH) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        let up = cluster.is_up();
        let (requests, claims) = {
            let mut scheduler = scheduler.lock().unwrap_or_else(PoisonError::into_inner);
            scheduler.set_shared_store(up, cluster.nodes_seen());
            (scheduler.take_slot_requests(), scheduler.take_warm_claims())
        };
        if !requests.is_empty() {
            serve_slots(&cluster, &mut connection, &scheduler, &requests).await;
        }
        if !claims.is_empty() {
            super::warm_claims::serve_claims(&cluster, &mut connection, &scheduler, &claims).await;
        }
    }
}

/// The kept connection, or a new one (the caller keeps it again only when it answered).
pub(super) async fn kept_connection(
    cluster: &Cluster,
    connection: &mut Option<MultiplexedConnection>,
) -> Result<MultiplexedConnection, ClusterError> {
    match connection.take() {
        Some(open) => Ok(open),
        None => cluster.connect().await,
    }
}

/// Asks Redis for the requested slots (when it is up) and hands them to the scheduler; without an
/// answer the lanes waiting for them look again (the fallback share applies while Redis is down).
async fn serve_slots(
    cluster: &Cluster,
    connection: &mut Option<MultiplexedConnection>,
    scheduler: &Mutex<Scheduler>,
    requests: &[SlotRequest],
) {
    let now_us = cluster.inner.parts.clock.now_us();
    let granted = if cluster.is_up() {
        let asked = async {
            let mut open = kept_connection(cluster, connection).await?;
            let firsts = grant_all(cluster, &mut open, requests, now_us).await?;
            *connection = Some(open);
            Ok::<_, ClusterError>(firsts)
        };
        asked
            .await
            .inspect_err(|error| tracing::warn!(%error, "cluster: no slots from Redis; shared limits wait"))
            .ok()
    } else {
        None
    };
    let mut scheduler = scheduler.lock().unwrap_or_else(PoisonError::into_inner);
    for (index, request) in requests.iter().enumerate() {
        let first = granted.as_ref().and_then(|firsts| firsts.get(index).copied());
        let grant = first.map(|first| (first, request.interval_us, request.count));
        scheduler.slots_granted(request.key, grant);
    }
}

/// Runs the script for every request in one pipeline; the first slot of each.
async fn grant_all(
    cluster: &Cluster,
    connection: &mut MultiplexedConnection,
    requests: &[SlotRequest],
    now_us: u64,
) -> Result<Vec<u64>, ClusterError> {
    let mut pipe = redis::pipe();
    for request in requests {
        pipe.cmd("EVAL")
            .arg(GRANT_SCRIPT)
            .arg(1)
            .arg(format!("{GCRA_KEY_PREFIX}{}", request.name))
            .arg(request.interval_us)
            .arg(request.count)
            .arg(now_us)
            .arg(KEY_LIFETIME_MS);
    }
    let firsts: Vec<String> = cluster.bounded("EVAL", pipe.query_async(connection)).await?;
    Ok(firsts
        .iter()
        .map(|first| first.parse::<u64>().unwrap_or(now_us))
        .collect())
}
