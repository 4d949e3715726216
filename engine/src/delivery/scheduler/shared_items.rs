//! The tenant's and the recipient domain's rates shared with other nodes (`[cluster]`). Unlike the
//! lane-wide limiters (`shared.rs`) they decide per scheduled queue: an item may go when its tenant's
//! and its domain's local GCRA allow it and, while the store answers, a slot of the tenant's
//! (`tenant/NAME`) and the domain's (`domain/NAME`) fleet-wide GCRA is due. A queue whose limiter holds
//! no slot is held back for a moment while slots are asked for (as many as that limiter's queued items
//! need, bounded by the lookahead); their arrival puts it back in its lane's ring at once. One slot is
//! spent per send, and more are asked for while mail waits. While the store is away the local GCRA
//! enforces this node's share (rate ÷ nodes, [`Scheduler::shared_rate`]).

use std::collections::HashMap;

use penguin_policy::shaping::slots::MAX_SLOTS_PER_REQUEST;
use penguin_policy::shaping::{Gcra, Rate};
use smallvec::SmallVec;

use super::Scheduler;
use super::names::{LaneId, NameId, QueueKey};
use super::shared::{SLOT_WAIT_US, SharedKey, SharedLimits};

/// The shared limiters met without a slot while a lane's queues were visited.
pub(super) type Missing = SmallVec<[SharedKey; 2]>;

/// What decides whether an item's tenant and domain let it go, borrowed from the scheduler while one
/// of its lanes is visited.
pub(super) struct ItemLimits<'a> {
    /// Per tenant with a rate: its local spacing.
    pub(super) tenant_gcra: &'a HashMap<NameId, Gcra>,
    /// Per domain with a rate: its local spacing.
    pub(super) domain_gcra: &'a HashMap<NameId, Gcra>,
    /// Tenants' rates (filled at intake).
    pub(super) tenant_rates: &'a HashMap<NameId, Option<Rate>>,
    /// Domains' rates (filled at intake).
    pub(super) domain_rates: &'a HashMap<NameId, Option<Rate>>,
    /// The shared limiters' slots, when they are in force (sharing on and the store answering).
    pub(super) shared: Option<&'a SharedLimits>,
}

impl ItemLimits<'_> {
    /// When the tenant's and the domain's limits let an item of `queue` go (`now_us`: now). A shared
    /// limiter holding no usable slot makes it wait [`SLOT_WAIT_US`] and is added to `missing`.
    pub(super) fn earliest_us(&self, queue: &QueueKey, now_us: u64, missing: &mut Missing) -> u64 {
        let limiters = [
            (
                SharedKey::Tenant(queue.tenant),
                self.tenant_rates.get(&queue.tenant),
                self.tenant_gcra.get(&queue.tenant),
            ),
            (
                SharedKey::Domain(queue.domain),
                self.domain_rates.get(&queue.domain),
                self.domain_gcra.get(&queue.domain),
            ),
        ];
        let mut at = now_us;
        for (key, rate, gcra) in limiters {
            if !matches!(rate, Some(Some(_))) {
                continue;
            }
            at = at.max(gcra.map_or(0, |gcra| gcra.earliest_us(now_us)));
            let Some(shared) = self.shared else {
                continue;
            };
            match shared.buffers.get(&key).and_then(|buffer| buffer.peek_us(now_us)) {
                Some(slot) => at = at.max(slot),
                None => {
                    at = at.max(now_us + SLOT_WAIT_US);
                    if !missing.contains(&key) {
                        missing.push(key);
                    }
                }
            }
        }
        at
    }
}

impl Scheduler {
    /// The rate a tenant's or a domain's limiter enforces with the store up (None for the lane-wide
    /// keys, and for a tenant or domain without a rate).
    fn item_rate(&self, key: SharedKey) -> Option<Rate> {
        match key {
            SharedKey::Tenant(tenant) => self.tenant_rates.get(&tenant).copied().flatten(),
            SharedKey::Domain(domain) => self.domain_rates.get(&domain).copied().flatten(),
            SharedKey::Lane(..)
            | SharedKey::Provider(..)
            | SharedKey::Source(..)
            | SharedKey::Connections(..) => None,
        }
    }

    /// Asks for slots of the limiters in `keys` for the items of lane `lane_id` (and of the lanes
    /// already waiting for them) when their buffers need some; with `wait`, the lane waits for them.
    pub(super) fn want_item_slots(&mut self, lane_id: LaneId, keys: &[SharedKey], wait: bool, now_us: u64) {
        for &key in keys {
            let Some(rate) = self.item_rate(key) else {
                continue;
            };
            let Some(shared) = self.shared.as_ref().filter(|shared| shared.store_up) else {
                return;
            };
            // What one request may take at most: the lookahead's worth, bounded like `SlotBuffer::request`.
            let cap = (shared.lookahead_us / rate.interval_us().max(1))
                .clamp(1, u64::from(MAX_SLOTS_PER_REQUEST)) as usize;
            let needs = shared
                .buffers
                .get(&key)
                .is_none_or(|buffer| !buffer.is_pending() && buffer.held() < cap);
            if needs {
                let wanted = self.queued_for(key, lane_id, cap);
                self.ask_slots(key, rate, wanted, now_us);
            }
            if wait {
                self.wait_for_slots(key, lane_id);
            }
        }
    }

    /// Spends one slot of each shared limiter of an item of `queue` just handed out on `lane_id`, and
    /// asks for more while their queued items need them.
    pub(super) fn spend_item_slots(&mut self, lane_id: LaneId, queue: &QueueKey, now_us: u64) {
        let keys: Missing = [SharedKey::Tenant(queue.tenant), SharedKey::Domain(queue.domain)]
            .into_iter()
            .filter(|&key| self.item_rate(key).is_some())
            .collect();
        let Some(shared) = self.shared.as_mut().filter(|shared| shared.store_up) else {
            return;
        };
        for key in &keys {
            if let Some(buffer) = shared.buffers.get_mut(key) {
                buffer.take(now_us);
            }
        }
        self.want_item_slots(lane_id, &keys, false, now_us);
    }

    /// Items of `key`'s queues in lane `lane_id` and in the lanes waiting for its slots, counted up to
    /// `cap`.
    fn queued_for(&self, key: SharedKey, lane_id: LaneId, cap: usize) -> usize {
        let waiting = self
            .shared
            .as_ref()
            .and_then(|shared| shared.waiting.get(&key))
            .map_or(&[][..], Vec::as_slice);
        let mut count = 0;
        for &lane in std::iter::once(&lane_id).chain(waiting.iter().filter(|&&lane| lane != lane_id)) {
            if count >= cap {
                break;
            }
            if let Some(lane) = self.lanes.get(lane.0 as usize) {
                count += lane.queued_where(|queue| key.covers(queue), cap - count);
            }
        }
        count
    }

    /// Slots of `key` arrived (or the store failed) while lane `lane_id` waited for them: its queues
    /// held back for them are visited again now, and a connection waiting in the lane is woken.
    pub(super) fn item_slots_arrived(&mut self, lane_id: LaneId, key: SharedKey) {
        let Some(lane) = self.lanes.get_mut(lane_id.0 as usize) else {
            return;
        };
        lane.unblock_where(|queue| key.covers(queue));
        if lane.has_ready() && (lane.waiting > 0 || lane.idle > 0) {
            lane.notify.notify_one();
        }
    }
}
