//! Connection caps shared with other nodes (`[cluster]`): a lane's `max_connections` and its source's
//! `provider_max_connections` hold for the whole fleet. Each connection holds a *lease* of every capped
//! limiter of its lane in the shared store (a slot with a TTL that its worker renews while it lives;
//! `cluster::leases` does the IO). The scheduler names the leases a connection needs
//! ([`Open::leases`](super::Open)), and learns of a refusal ([`Scheduler::lease_refused`]): the
//! connection closes without an attempt and its lane opens none before the time given.
//!
//! While the store cannot be reached no lease is asked for and each cap is this node's share of it:
//! the cap divided by the nodes seen, at least 1 ([`Scheduler::set_shared_store`]).
//!
//! Without `[cluster]` none of this is switched on: no lease, the caps are this node's.

use super::Scheduler;
use super::names::{ConnId, LaneId};

/// Longest wait of a lane after a refused lease before it asks again: a lease given back (its
/// connection closed) frees a slot long before the earliest lease would expire.
pub(super) const LEASE_RETRY_US: u64 = 100_000;

/// A connection cap shared by the fleet, whose lease a connection must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseKey {
    /// Its name in the store: `lane/SOURCE/SITE` or `provider/SOURCE/PROVIDER`.
    pub name: String,
    /// The fleet's cap (connections at once).
    pub cap: usize,
}

impl Scheduler {
    /// The store refused a lease of connection `conn` (its caps are full on the fleet; or the store
    /// did not answer): the connection closes without an attempt, and its lane opens no connection
    /// before `retry_at_us` (at the latest [`LEASE_RETRY_US`] from `now_us`), when its timer fires.
    pub fn lease_refused(&mut self, conn: ConnId, retry_at_us: u64, now_us: u64) {
        self.now_ms = now_us / 1000;
        let Some(lane_id) = self.connections.get(&conn).map(|state| state.lane) else {
            return;
        };
        let at = retry_at_us.clamp(now_us + 1, now_us + LEASE_RETRY_US);
        self.connection_closed(conn);
        if let Some(shared) = self.shared.as_mut() {
            shared.lease_waits.insert(lane_id, at);
        }
        self.arm_timer(lane_id, at);
    }

    /// The leases a new connection of the lane needs (none without `[cluster]`).
    pub(super) fn lease_keys(&self, lane_id: LaneId) -> Vec<LeaseKey> {
        if self.shared.is_none() {
            return Vec::new();
        }
        let lane = &self.lanes[lane_id.0 as usize];
        let (source, site, provider) = (
            self.settings.source_name(lane.source),
            &self.sites[lane.site.0 as usize].name,
            self.settings.provider_name(lane.provider),
        );
        let mut keys = vec![LeaseKey {
            name: format!("lane/{source}/{site}"),
            cap: lane.limits.max_connections,
        }];
        if let Some(cap) = self.settings.provider_limits(lane.provider).max_connections {
            keys.push(LeaseKey {
                name: format!("provider/{source}/{provider}"),
                cap,
            });
        }
        keys
    }

    /// A connection cap as this node enforces it: the cap itself, or this node's share of it (cap ÷
    /// nodes seen, at least 1) while the shared store is away.
    pub(super) fn local_cap(&self, cap: usize) -> usize {
        match &self.shared {
            Some(shared) if !shared.store_up => (cap / shared.nodes.max(1)).max(1),
            _ => cap,
        }
    }

    /// Until when a lane opens no connection after a refused lease (None: it may now).
    pub(super) fn lease_wait(&mut self, lane_id: LaneId, now_us: u64) -> Option<u64> {
        let shared = self.shared.as_mut()?;
        let until = *shared.lease_waits.get(&lane_id)?;
        if until > now_us {
            return Some(until);
        }
        shared.lease_waits.remove(&lane_id);
        None
    }
}
