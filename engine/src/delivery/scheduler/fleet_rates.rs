//! Closed-loop rate changes shared with the other nodes (`[cluster]`).
//!
//! The lanes' rates are fleet-wide GCRAs in the store (`shared.rs`), but each slot request carries the
//! interval the asking node believes in: a lane halved on the node that got the throttling reply
//! must be halved on every node, or the others keep asking at the old rate. So every change of a
//! lane's closed loop (`feedback.rs`: a reduction, a throttling reply inside the cooldown that
//! restarts the recovery period, a recovery step) is put in an outbox with its time
//! ([`Scheduler::take_rate_changes`], taken by `cluster::adaptive_sync`), and another node's change
//! comes in through [`Scheduler::apply_remote_rate`]: the lane takes the other node's whole loop
//! state (reduced rate, ceiling, cooldown start, next recovery step), so both enforce the same rate,
//! cool down together and recover at the same times.
//!
//! - **Newest wins.** Each lane remembers the (time, node) of the state in force; a remote change
//!   applies only when it is later (ties: the greater node id), the order the store keeps too. A local
//!   change is always later than the state it grew from, even if the other node's clock was ahead.
//! - **Events.** Applying another node's change that alters the rate emits `shaping_adjusted` with the
//!   reason `from NODE: REASON` (so the stream says where it came from and is never mistaken for a
//!   local reaction); a change that leaves the rate as it was (a timer moved, the same recovery step
//!   this node already took) emits nothing.
//! - **Lanes not seen yet.** A change for a site this node has no lane for is kept (at most
//!   [`MAX_PENDING`], newest first) and adopted when the lane is created, with the same event;
//!   a change back to the unreduced state just drops what was kept.
//!
//! Sans-IO like the rest of the scheduler: times are given; the cluster task does the IO.

use std::collections::HashMap;
use std::sync::Arc;

use penguin_policy::shaping::{Adaptive, AdaptiveState};
use tokio::sync::Notify;

use super::Scheduler;
use super::names::LaneId;
use crate::events::{Event, EventKind};

/// Most remote changes kept for lanes not created yet (the oldest is dropped beyond).
pub const MAX_PENDING: usize = 10_000;

/// One lane's closed-loop state as one node changed it, for the other nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct LaneRateChange {
    /// The lane's source name.
    pub source: String,
    /// The lane's site name.
    pub site: String,
    /// The loop's whole state after the change.
    pub state: AdaptiveState,
    /// The rate it enforces on that node (messages per second; None = unlimited), for people.
    pub rate: Option<f64>,
    /// When, unix milliseconds (the changing node's clock).
    pub at_ms: u64,
    /// The node that made it.
    pub node: String,
    /// Why (`rate_limited`, `rule NAME`, `recovery`).
    pub reason: String,
}

/// What [`Scheduler::apply_remote_rate`] did with a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteOutcome {
    /// The lane took it.
    Applied,
    /// The lane is in a later state already (or the change is this node's own).
    Stale,
    /// No lane for that site yet: kept until there is one.
    Kept,
    /// The source is not one of this node's: ignored.
    Unknown,
}

/// The sharing state of the scheduler (present only with `[cluster]`).
#[derive(Debug)]
pub(super) struct FleetRates {
    /// This node's id.
    node: Arc<str>,
    /// Wakes the task that pushes the outbox.
    wake: Arc<Notify>,
    /// Lanes changed here and not taken yet: (when, unix ms; why).
    outbox: HashMap<LaneId, (u64, String)>,
    /// The (time, node) of the state in force on each lane that has one.
    origins: HashMap<LaneId, (u64, Arc<str>)>,
    /// Changes for lanes not created yet, by (source, site).
    pending: HashMap<(String, String), LaneRateChange>,
}

impl Scheduler {
    /// Shares this node's closed-loop changes with the other nodes and takes theirs (at start, with
    /// `[cluster]`): `wake` is notified when a change waits in the outbox.
    pub fn enable_fleet_rates(&mut self, node: &str, wake: Arc<Notify>) {
        self.fleet_rates = Some(FleetRates {
            node: Arc::from(node),
            wake,
            outbox: HashMap::new(),
            origins: HashMap::new(),
            pending: HashMap::new(),
        });
    }

    /// The lanes' closed-loop changes made here since the last call, each with the lane's state now.
    pub fn take_rate_changes(&mut self) -> Vec<LaneRateChange> {
        let Some(fleet) = self.fleet_rates.as_mut() else {
            return Vec::new();
        };
        let outbox = std::mem::take(&mut fleet.outbox);
        let node = fleet.node.to_string();
        outbox
            .into_iter()
            .map(|(lane_id, (at_ms, reason))| {
                let (source, site, _) = self.lane_names(lane_id);
                let lane = &self.lanes[lane_id.0 as usize];
                LaneRateChange {
                    source: source.to_string(),
                    site: site.to_string(),
                    state: lane.adaptive.state(),
                    rate: lane.effective_rate().map(|rate| rate.per_second()),
                    at_ms,
                    node: node.clone(),
                    reason,
                }
            })
            .collect()
    }

    /// Records a change of a lane's loop made here (`before` is its state before), for the other
    /// nodes; nothing when the state is the same or sharing is off.
    pub(super) fn share_rate_change(&mut self, lane_id: LaneId, before: Adaptive, reason: &str, now_us: u64) {
        let Some(fleet) = self.fleet_rates.as_mut() else {
            return;
        };
        if self.lanes[lane_id.0 as usize].adaptive == before {
            return;
        }
        // Later than the state it grew from, whatever the clocks say.
        let at_ms = match fleet.origins.get(&lane_id) {
            Some((origin, _)) => (now_us / 1000).max(origin.saturating_add(1)),
            None => now_us / 1000,
        };
        fleet.origins.insert(lane_id, (at_ms, Arc::clone(&fleet.node)));
        fleet.outbox.insert(lane_id, (at_ms, reason.to_owned()));
        fleet.wake.notify_one();
    }

    /// Another node's change of a lane's loop (see the module doc): the lane takes its state when it
    /// is the newest, or it is kept until the lane exists.
    pub fn apply_remote_rate(&mut self, change: &LaneRateChange, now_us: u64) -> RemoteOutcome {
        self.now_ms = now_us / 1000;
        let Some(fleet) = self.fleet_rates.as_mut() else {
            return RemoteOutcome::Unknown;
        };
        if *change.node == *fleet.node {
            return RemoteOutcome::Stale;
        }
        let Some(source) = self.settings.source_id(&change.source) else {
            return RemoteOutcome::Unknown;
        };
        let Some(&site) = self.site_ids.get(change.site.as_str()) else {
            self.keep_pending(change);
            return RemoteOutcome::Kept;
        };
        let lane_id = self.lane(source, site);
        self.adopt(lane_id, change)
    }

    /// Keeps a change for a lane of a site not seen yet (the newest per lane, at most
    /// [`MAX_PENDING`]).
    fn keep_pending(&mut self, change: &LaneRateChange) {
        let Some(fleet) = self.fleet_rates.as_mut() else {
            return;
        };
        let key = (change.source.clone(), change.site.clone());
        if fleet
            .pending
            .get(&key)
            .is_some_and(|kept| (kept.at_ms, kept.node.as_str()) >= (change.at_ms, change.node.as_str()))
        {
            return;
        }
        if change.state.reduced.is_none() {
            // A new lane is unreduced anyway.
            fleet.pending.remove(&key);
            return;
        }
        if fleet.pending.len() >= MAX_PENDING && !fleet.pending.contains_key(&key) {
            let oldest = fleet
                .pending
                .iter()
                .min_by_key(|(_, kept)| kept.at_ms)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                fleet.pending.remove(&oldest);
            }
        }
        fleet.pending.insert(key, change.clone());
    }

    /// A lane just created takes the change kept for it, if any.
    pub(super) fn adopt_pending_rate(&mut self, lane_id: LaneId) {
        let Some(fleet) = self.fleet_rates.as_mut() else {
            return;
        };
        if fleet.pending.is_empty() {
            return;
        }
        let (source, site, _) = self.lane_names(lane_id);
        let key = (source.to_string(), site.to_string());
        if let Some(change) = self
            .fleet_rates
            .as_mut()
            .and_then(|fleet| fleet.pending.remove(&key))
        {
            self.adopt(lane_id, &change);
        }
    }

    /// The lane takes another node's state if it is newer than its own.
    fn adopt(&mut self, lane_id: LaneId, change: &LaneRateChange) -> RemoteOutcome {
        let Some(fleet) = self.fleet_rates.as_mut() else {
            return RemoteOutcome::Unknown;
        };
        let newer = fleet
            .origins
            .get(&lane_id)
            .is_none_or(|(at, node)| (change.at_ms, change.node.as_str()) > (*at, &**node));
        if !newer {
            return RemoteOutcome::Stale;
        }
        fleet
            .origins
            .insert(lane_id, (change.at_ms, Arc::from(change.node.as_str())));
        // An older change of this node's for the lane lost: it is not pushed.
        if fleet
            .outbox
            .get(&lane_id)
            .is_some_and(|(at, _)| *at < change.at_ms)
        {
            fleet.outbox.remove(&lane_id);
        }
        let lane = &mut self.lanes[lane_id.0 as usize];
        let before = lane.effective_rate();
        lane.adaptive = Adaptive::from_state(&change.state);
        let after = lane.effective_rate();
        if let Some(at) = lane.adaptive.next_timer_us() {
            self.arm_timer(lane_id, at);
        }
        if before != after {
            // Connections waiting for a slot and the lane's next send look again at the new rate.
            self.lanes[lane_id.0 as usize].notify.notify_waiters();
            self.mark_dirty(lane_id);
            let (source, site, provider) = self.lane_names(lane_id);
            self.emit(Event {
                source: Some(source),
                site: Some(site),
                provider: Some(provider),
                rate_before: before.map(|rate| rate.per_second()),
                rate_after: after.map(|rate| rate.per_second()),
                reason: Some(format!("from {}: {}", change.node, change.reason).into()),
                ..Event::blank(EventKind::ShapingAdjusted, self.now_ms)
            });
        }
        RemoteOutcome::Applied
    }
}
