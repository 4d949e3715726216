//! Rate limits shared with other nodes (`[cluster]`): the lane's, the source's over a provider, the
//! source's own, the tenant's and the recipient domain's rate are one fleet-wide GCRA each in the
//! shared store. The scheduler holds *slots* of them (`penguin_policy::shaping::SlotBuffer`): a send
//! needs, besides every local limit, a slot of each shared limiter whose time has come. The lane-wide
//! ones are here; the tenant's and the domain's, which decide per scheduled queue, in
//! `shared_items.rs`. Slots are asked for in batches by the cluster task
//! ([`Scheduler::take_slot_requests`] → the store → [`Scheduler::slots_granted`]), which wakes the lanes
//! that wait for them. When the store cannot be reached every shared rate falls back to this node's
//! share: the rate divided by the nodes seen ([`Scheduler::set_shared_store`]).
//!
//! Connection caps are shared too, with leases (`leases.rs`); their fallback is the same share.
//!
//! Without `[cluster]` none of this is switched on and the scheduler is what it was.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use penguin_policy::shaping::{Rate, SlotBuffer, fallback_rate};

use super::Scheduler;
use super::names::{LaneId, NameId, ProviderId, QueueKey, SiteId, SourceId};

/// How long a lane waits for slots it asked for before it looks again (the store answers in about a
/// millisecond; this only bounds a lost answer).
pub(super) const SLOT_WAIT_US: u64 = 20_000;

/// Slots a node asks for cover this much sending time at the limiter's rate.
const DEFAULT_LOOKAHEAD_US: u64 = 100_000;

/// A limiter the fleet shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SharedKey {
    /// A (source, site) lane's message rate.
    Lane(SourceId, SiteId),
    /// A source's rate over a provider's sites.
    Provider(SourceId, ProviderId),
    /// A source's own rate.
    Source(SourceId),
    /// A tenant's message rate (`[[tenant]] max_message_rate` or the API's), all sources.
    Tenant(NameId),
    /// A recipient domain's message rate (`[[shaping.domain]] max_message_rate`), all sources.
    Domain(NameId),
    /// A (source, site) lane's connection rate (`max_connection_rate`).
    Connections(SourceId, SiteId),
}

impl SharedKey {
    /// Whether this limiter applies to the items of scheduled queue `queue` (only the tenant's and the
    /// domain's decide per queue; the others apply to whole lanes).
    pub(super) fn covers(self, queue: &QueueKey) -> bool {
        match self {
            SharedKey::Tenant(tenant) => queue.tenant == tenant,
            SharedKey::Domain(domain) => queue.domain == domain,
            SharedKey::Lane(..)
            | SharedKey::Provider(..)
            | SharedKey::Source(..)
            | SharedKey::Connections(..) => false,
        }
    }
}

/// A request for slots, for the cluster task to send to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRequest {
    /// The limiter.
    pub key: SharedKey,
    /// Its name in the store (`lane/SOURCE/SITE`, `provider/SOURCE/PROVIDER`, `source/SOURCE`,
    /// `tenant/TENANT`, `domain/DOMAIN`).
    pub name: String,
    /// The spacing of its slots (the rate in force).
    pub interval_us: u64,
    /// How many.
    pub count: u32,
}

/// The shared limiters' state on this node.
#[derive(Debug)]
pub(super) struct SharedLimits {
    /// Slots held per limiter.
    pub(super) buffers: HashMap<SharedKey, SlotBuffer>,
    /// Requests not yet taken by the cluster task.
    requests: Vec<SlotRequest>,
    /// Lanes waiting for a limiter's slots.
    pub(super) waiting: HashMap<SharedKey, Vec<LaneId>>,
    /// The store answers.
    pub(super) store_up: bool,
    /// Nodes seen (for the fallback share).
    pub(super) nodes: usize,
    /// Lanes whose lease was refused: no connection before then (`leases.rs`).
    pub(super) lease_waits: HashMap<LaneId, u64>,
    /// Sending time one request covers.
    pub(super) lookahead_us: u64,
    /// Wakes the task that asks the store.
    wake: Arc<Notify>,
}

impl Scheduler {
    /// Shares this node's rate limits with the fleet (at start, with `[cluster]`); until the store is
    /// known to answer, the fallback share applies.
    pub fn enable_shared_limits(&mut self, nodes: usize, wake: Arc<Notify>) {
        self.shared = Some(SharedLimits {
            buffers: HashMap::new(),
            requests: Vec::new(),
            waiting: HashMap::new(),
            store_up: false,
            nodes: nodes.max(1),
            lease_waits: HashMap::new(),
            lookahead_us: DEFAULT_LOOKAHEAD_US,
            wake,
        });
    }

    /// Whether the store answers, and how many nodes share the limits: while it does not, every shared
    /// rate is this node's share (rate ÷ nodes).
    pub fn set_shared_store(&mut self, up: bool, nodes: usize) {
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        let changed = shared.store_up != up || shared.nodes != nodes.max(1);
        shared.store_up = up;
        shared.nodes = nodes.max(1);
        if !up {
            for buffer in shared.buffers.values_mut() {
                buffer.failed();
            }
        }
        if changed {
            self.release_all();
            // The last call's time: this one is not given one.
            self.warm_rebalance_over_room(self.now_ms * 1000);
        }
    }

    /// The slot requests made since the last call.
    pub fn take_slot_requests(&mut self) -> Vec<SlotRequest> {
        self.shared
            .as_mut()
            .map(|shared| std::mem::take(&mut shared.requests))
            .unwrap_or_default()
    }

    /// The store granted `count` slots of `key` from `first_us`, `interval_us` apart (or, with
    /// `None`, could not): lanes waiting for them look again.
    pub fn slots_granted(&mut self, key: SharedKey, grant: Option<(u64, u64, u32)>) {
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        let buffer = shared.buffers.entry(key).or_default();
        match grant {
            Some((first_us, interval_us, count)) => buffer.granted(first_us, interval_us, count),
            None => buffer.failed(),
        }
        let lanes = shared.waiting.remove(&key).unwrap_or_default();
        for lane in lanes {
            self.mark_dirty(lane);
            if matches!(key, SharedKey::Tenant(_) | SharedKey::Domain(_)) {
                self.item_slots_arrived(lane, key);
            }
        }
    }

    /// The rate a shared limiter enforces here: the rate itself, or this node's share while the store
    /// is away.
    pub(super) fn shared_rate(&self, rate: Rate) -> Rate {
        match &self.shared {
            Some(shared) if !shared.store_up => fallback_rate(rate, shared.nodes),
            _ => rate,
        }
    }

    /// The shared limiters of a lane with the rate each enforces.
    fn lane_limiters(&self, lane_id: LaneId) -> Vec<(SharedKey, Rate)> {
        let lane = &self.lanes[lane_id.0 as usize];
        let mut limiters = Vec::with_capacity(3);
        if let Some(rate) = lane.effective_rate() {
            limiters.push((SharedKey::Lane(lane.source, lane.site), rate));
        }
        if let Some(rate) = self.settings.provider_limits(lane.provider).rate {
            limiters.push((SharedKey::Provider(lane.source, lane.provider), rate));
        }
        if let Some(rate) = self.source_rate(lane.source) {
            limiters.push((SharedKey::Source(lane.source), rate));
        }
        limiters
    }

    /// When the lane's shared limiters have a slot (now when sharing is off or the store is away; a
    /// short wait when a slot was asked for and has not arrived).
    pub(super) fn slot_eta(&self, lane_id: LaneId, now_us: u64) -> u64 {
        let Some(shared) = self.shared.as_ref().filter(|shared| shared.store_up) else {
            return now_us;
        };
        let mut at = now_us;
        for (key, _) in self.lane_limiters(lane_id) {
            let next = shared
                .buffers
                .get(&key)
                .and_then(|buffer| buffer.peek_us(now_us))
                .unwrap_or(now_us + SLOT_WAIT_US);
            at = at.max(next);
        }
        at
    }

    /// Asks for the slots the lane's queued mail needs (those not asked for yet) and remembers that
    /// the lane waits for them.
    pub(super) fn want_slots(&mut self, lane_id: LaneId, now_us: u64) {
        if !self.shared.as_ref().is_some_and(|shared| shared.store_up) {
            return;
        }
        let wanted = self.lanes[lane_id.0 as usize].queued;
        if wanted == 0 {
            return;
        }
        for (key, rate) in self.lane_limiters(lane_id) {
            self.ask_slots(key, rate, wanted, now_us);
            self.wait_for_slots(key, lane_id);
        }
    }

    /// Asks the store for slots of `key` when its buffer wants some for `wanted` sends at `rate` (none
    /// while a request is on its way or enough are held; see `SlotBuffer::request`).
    pub(super) fn ask_slots(&mut self, key: SharedKey, rate: Rate, wanted: usize, now_us: u64) {
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        let buffer = shared.buffers.entry(key).or_default();
        let Some(count) = buffer.request(rate, wanted, shared.lookahead_us, now_us) else {
            return;
        };
        let name = self.shared_name(key);
        if let Some(shared) = self.shared.as_mut() {
            shared.requests.push(SlotRequest {
                key,
                name,
                interval_us: rate.interval_us(),
                count,
            });
            shared.wake.notify_one();
        }
    }

    /// Remembers that `lane_id` waits for slots of `key` ([`Scheduler::slots_granted`] wakes it).
    pub(super) fn wait_for_slots(&mut self, key: SharedKey, lane_id: LaneId) {
        if let Some(shared) = self.shared.as_mut() {
            let waiting = shared.waiting.entry(key).or_default();
            if !waiting.contains(&lane_id) {
                waiting.push(lane_id);
            }
        }
    }

    /// With the store in use, whether the lane may open a connection under its shared connection rate
    /// now: None when a slot is due (it is spent), else when to look again (slots are asked for and
    /// the lane waits for them). None without sharing or while the store is away (then the local
    /// limiter keeps to this node's share).
    pub(super) fn connection_slot(&mut self, lane_id: LaneId, rate: Rate, now_us: u64) -> Option<u64> {
        if !self.shared.as_ref().is_some_and(|shared| shared.store_up) {
            return None;
        }
        let lane = &self.lanes[lane_id.0 as usize];
        let key = SharedKey::Connections(lane.source, lane.site);
        let wanted = lane.queued.saturating_sub(lane.connections).max(1);
        let buffer = self.shared.as_mut()?.buffers.entry(key).or_default();
        if buffer.take(now_us) {
            return None;
        }
        let next = buffer.peek_us(now_us);
        self.ask_slots(key, rate, wanted, now_us);
        self.wait_for_slots(key, lane_id);
        Some(next.unwrap_or(now_us + SLOT_WAIT_US))
    }

    /// Spends one slot of each of the lane's shared limiters (a send was handed out).
    pub(super) fn spend_slots(&mut self, lane_id: LaneId, now_us: u64) {
        if !self.shared.as_ref().is_some_and(|shared| shared.store_up) {
            return;
        }
        let keys: Vec<SharedKey> = self
            .lane_limiters(lane_id)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        if let Some(shared) = self.shared.as_mut() {
            for key in keys {
                shared.buffers.entry(key).or_default().take(now_us);
            }
        }
    }

    /// The store's name of a limiter.
    fn shared_name(&self, key: SharedKey) -> String {
        match key {
            SharedKey::Lane(source, site) => format!(
                "lane/{}/{}",
                self.settings.source_name(source),
                self.sites[site.0 as usize].name
            ),
            SharedKey::Provider(source, provider) => format!(
                "provider/{}/{}",
                self.settings.source_name(source),
                self.settings.provider_name(provider)
            ),
            SharedKey::Source(source) => format!("source/{}", self.settings.source_name(source)),
            SharedKey::Connections(source, site) => format!(
                "conn-rate/{}/{}",
                self.settings.source_name(source),
                self.sites[site.0 as usize].name
            ),
            SharedKey::Tenant(tenant) => format!("tenant/{}", self.names.name(tenant)),
            SharedKey::Domain(domain) => format!("domain/{}", self.names.name(domain)),
        }
    }

    /// Slots dropped unused so far, all limiters (for the metrics).
    pub fn wasted_slots(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |shared| shared.buffers.values().map(SlotBuffer::wasted).sum())
    }
}
