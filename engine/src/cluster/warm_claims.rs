//! Warm-up caps shared by the nodes: the scheduler asks for part of a warming (source, provider)'s
//! open capacity (`delivery::scheduler::warm_shared`); the slots task takes the claims and runs them in
//! Redis (one Lua script, atomic: `penguin:warmup:claimed:SOURCE/PROVIDER/DAY` holds what the fleet
//! claimed that local day), then hands the answers back. The script grants at most the open capacity
//! minus what is claimed, so the fleet never passes the cap; the key expires days after its day.

use std::sync::{Mutex, PoisonError};

use redis::aio::MultiplexedConnection;

use super::{Cluster, ClusterError};
use crate::delivery::scheduler::{Scheduler, WarmClaimRequest, WarmGrant};

/// KEYS[1] the pair's day; ARGV: the open capacity, the claim, the key's lifetime (ms). Returns what
/// is granted and what the fleet has left after it.
const CLAIM_SCRIPT: &str = r"
local open = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.max(0, math.min(want, open - used))
if grant > 0 then
  redis.call('INCRBY', KEYS[1], grant)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {grant, math.max(0, open - used - grant)}
";

/// The prefix of the claimed counts' keys.
pub const WARMUP_CLAIMED_PREFIX: &str = "penguin:warmup:claimed:";

/// How long a day's claimed count stays in Redis (its day is over long before).
const CLAIMED_LIFETIME_MS: u64 = 3 * 86_400_000;

/// Asks Redis for the claims (when it is up) and hands the answers to the scheduler (taken and
/// served by the slots task, `slots.rs`); without an answer the node's share applies.
pub(super) async fn serve_claims(
    cluster: &Cluster,
    connection: &mut Option<MultiplexedConnection>,
    scheduler: &Mutex<Scheduler>,
    claims: &[WarmClaimRequest],
) {
    let grants = if cluster.is_up() {
        let asked = async {
            let mut open = super::slots::kept_connection(cluster, connection).await?;
            let grants = claim_all(cluster, &mut open, claims).await?;
            *connection = Some(open);
            Ok::<_, ClusterError>(grants)
        };
        asked
            .await
            .inspect_err(|error| {
                tracing::warn!(%error, "cluster: no warm-up capacity from Redis; the node's share applies");
            })
            .ok()
    } else {
        None
    };
    let now_us = cluster.inner.parts.clock.now_us();
    let mut scheduler = scheduler.lock().unwrap_or_else(PoisonError::into_inner);
    for (index, claim) in claims.iter().enumerate() {
        let grant = grants.as_ref().and_then(|grants| grants.get(index).copied());
        scheduler.warm_claim_answered(claim, grant, now_us);
    }
}

/// Runs the script for every claim in one pipeline.
async fn claim_all(
    cluster: &Cluster,
    connection: &mut MultiplexedConnection,
    claims: &[WarmClaimRequest],
) -> Result<Vec<WarmGrant>, ClusterError> {
    let mut pipe = redis::pipe();
    for claim in claims {
        pipe.cmd("EVAL")
            .arg(CLAIM_SCRIPT)
            .arg(1)
            .arg(format!("{WARMUP_CLAIMED_PREFIX}{}", claim.name))
            .arg(claim.open)
            .arg(claim.want)
            .arg(CLAIMED_LIFETIME_MS);
    }
    let answers: Vec<(u64, u64)> = cluster.bounded("EVAL", pipe.query_async(connection)).await?;
    Ok(answers
        .into_iter()
        .map(|(granted, left)| WarmGrant { granted, left })
        .collect())
}
