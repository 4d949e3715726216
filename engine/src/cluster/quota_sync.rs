//! The daily quota against the fleet's count (`[cluster]`).
//!
//! `[[tenant]] daily_quota` counts the recipients a tenant had accepted today (UTC) on every node:
//! this node's own count, read live from its spool, plus the other nodes' last known counts of
//! today ([`fleet_accepted_today`]). SMTP (at MAIL FROM) and HTTP injection check it without ever
//! waiting on Redis: the others' counts are a cache in the [`Cluster`] handle, read synchronously.
//!
//! The cache is filled by [`run_quota_refresh`] every [`QUOTA_REFRESH_EVERY`]: for every tenant of the
//! tenant directory that has a quota (config and API tenants, as reloaded), one pipeline of `HGETALL
//! penguin:usage:TENANT:DAY` (the hashes `usage_sync.rs` pushes every second), the other nodes'
//! `NODE/accepted` fields summed; and by every read of the others' usage for the API
//! (`Cluster::others_usage`). Within a day a figure only grows (the nodes' counts only grow), so a late
//! answer never lowers it. While Redis is away the last known figures are used; a new day starts from
//! none. So the fleet may overshoot a quota by what the nodes accept within about two seconds (one push
//! and one refresh), never by more.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::civil::Date;
use penguin_queue::{Spool, SpoolError};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use super::{Cluster, ClusterError, usage_sync};
use crate::smtp::auth::SharedTenants;

/// How often the others' counts of the tenants with a quota are read.
pub const QUOTA_REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Tenants per pipeline of a refresh.
const CHUNK: usize = 256;

/// Most tenants whose figure is kept.
const MAX_TENANTS: usize = 100_000;

/// The other nodes' accepted counts, per tenant (part of the [`Cluster`] handle).
#[derive(Debug, Default)]
pub(crate) struct OthersAccepted {
    /// Tenant → (the day, the other nodes' recipients accepted that day).
    counts: Mutex<HashMap<String, (Date, u64)>>,
}

impl OthersAccepted {
    /// The figure of `tenant` for `day` (0 when none is known).
    fn get(&self, tenant: &str, day: Date) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match counts.get(tenant) {
            Some((known, accepted)) if *known == day => *accepted,
            _ => 0,
        }
    }

    /// Records a figure read from Redis: it replaces one of another day, and only grows within a day.
    pub(crate) fn record(&self, tenant: &str, day: Date, accepted: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, figure)) = counts.get_mut(tenant) {
            if *known < day || (*known == day && *figure < accepted) {
                *known = day;
                *figure = accepted;
            }
            return;
        }
        if counts.len() >= MAX_TENANTS {
            counts.retain(|_, (known, _)| *known >= day);
            if counts.len() >= MAX_TENANTS {
                return;
            }
        }
        counts.insert(tenant.to_owned(), (day, accepted));
    }
}

/// Recipients `tenant` had accepted today (UTC, at `now_ms`) for its daily quota: this node's own,
/// from `spool`, plus (with `[cluster]`) the other nodes' last known counts. Never waits on Redis.
pub fn fleet_accepted_today(
    spool: &Spool,
    cluster: Option<&Cluster>,
    tenant: &str,
    now_ms: u64,
) -> Result<u64, SpoolError> {
    let today = crate::usage::utc_date(now_ms);
    let own = u64::try_from(crate::usage::accepted_on(spool, tenant, today)?).unwrap_or(0);
    let others = cluster.map_or(0, |cluster| cluster.inner.quota.get(tenant, today));
    Ok(own.saturating_add(others))
}

/// The tenants of the directory that have a daily quota, sorted.
fn quota_tenants(directory: &SharedTenants) -> Vec<String> {
    let directory = directory.load();
    let mut names: Vec<String> = directory
        .names()
        .into_iter()
        .filter(|name| {
            directory
                .tenant(name)
                .is_some_and(|tenant| tenant.daily_quota.is_some())
        })
        .collect();
    names.sort();
    names
}

/// Refreshes the other nodes' counts of the tenants with a quota every [`QUOTA_REFRESH_EVERY`] until
/// `stopped` (see the module doc). Spawned by `serve` only with `[cluster]`.
pub async fn run_quota_refresh(
    cluster: Cluster,
    directory: SharedTenants,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(QUOTA_REFRESH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connection: Option<MultiplexedConnection> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        let tenants = quota_tenants(&directory);
        if tenants.is_empty() || !cluster.is_up() {
            continue;
        }
        let mut open = match connection.take() {
            Some(open) => open,
            None => match cluster.connect().await {
                Ok(open) => open,
                Err(_) => continue,
            },
        };
        let today = crate::usage::utc_date(cluster.inner.parts.clock.now_ms());
        match cluster.refresh_others_accepted(&mut open, &tenants, today).await {
            Ok(()) => connection = Some(open),
            Err(error) => {
                tracing::warn!(%error, "cluster: quota counts not refreshed; using the last known")
            }
        }
    }
}

impl Cluster {
    /// Reads today's hash of each tenant (pipelines of [`CHUNK`], each bounded by `redis_timeout`)
    /// and records the other nodes' accepted counts.
    async fn refresh_others_accepted(
        &self,
        connection: &mut MultiplexedConnection,
        tenants: &[String],
        today: Date,
    ) -> Result<(), ClusterError> {
        for chunk in tenants.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for tenant in chunk {
                pipe.cmd("HGETALL").arg(usage_sync::usage_hash(tenant, today));
            }
            let hashes: Vec<HashMap<String, String>> =
                self.bounded("HGETALL", pipe.query_async(connection)).await?;
            for (tenant, hash) in chunk.iter().zip(hashes) {
                let accepted = usage_sync::others_in(hash, self.node())
                    .values()
                    .map(|totals| u64::try_from(totals.accepted).unwrap_or(0))
                    .sum();
                self.inner.quota.record(tenant, today, accepted);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn a_figure_only_grows_within_a_day_and_a_new_day_starts_afresh() {
        let others = OthersAccepted::default();
        let (monday, tuesday) = (date("2026-12-07"), date("2026-12-08"));
        assert_eq!(others.get("acme", monday), 0, "nothing known");
        others.record("acme", monday, 3);
        others.record("acme", monday, 2);
        assert_eq!(
            others.get("acme", monday),
            3,
            "a late, lower answer does not lower it"
        );
        assert_eq!(
            others.get("acme", tuesday),
            0,
            "another day's figure is not today's"
        );
        others.record("acme", tuesday, 1);
        assert_eq!(others.get("acme", tuesday), 1);
        others.record("acme", monday, 9);
        assert_eq!(
            others.get("acme", tuesday),
            1,
            "an answer about yesterday changes nothing"
        );
        assert_eq!(others.get("globex", tuesday), 0);
    }
}
