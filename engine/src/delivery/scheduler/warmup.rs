//! Warm-up caps in the scheduler: a warming source sends at most its day's cap to each provider
//! (opened hour by hour over the plan's sending hours), counted per (source, provider) and local day.
//!
//! The warm-up service (`crate::warmup`) decides the steps (once a day, from the spool's counters) and
//! tells the scheduler with [`Scheduler::set_source_warmup`]; the scheduler enforces them:
//! - **Room at choice time.** A source's room for one more item is its open capacity minus what it
//!   sent today and what its lanes of that provider already hold ([`GroupQueued`]), so overflow is
//!   decided when the item arrives, not after it waited. High-priority mail (`X-Warmup-Priority: high`)
//!   counts only the high-priority items ahead of it, and takes the place of the newest normal item
//!   when the room is full (that item goes elsewhere): engaged recipients first.
//! - **Overflow.** Without room, `pool` overflow makes the source unavailable to the pool's choice
//!   (another source takes the item), `pool:NAME` chooses among that pool's sources, and `hold`
//!   leaves the item on the source to wait for its next opening. Waiting is never an attempt.
//! - **The gate.** A warming lane never sends past its open capacity ([`Scheduler::warm_gate`] in
//!   the lane's earliest send time), whatever was queued.
//! - **Throttling.** A throttling reply stops the (source, provider) until the next local hour
//!   (`warmup_held`); its queued mail overflows unless the plan holds.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::civil::Date;
use penguin_policy::warmup::Plan;

use super::lane::Item;
use super::names::{LaneId, PoolId, ProviderId, SiteId, SourceId};
use super::{ProviderLane, Scheduler};
use crate::events::{Event, EventKind};

/// How long a warming lane waits when the day changed and the warm-up service has not yet given the
/// new day's steps (it does so at the day's start).
const NEW_DAY_WAIT_US: u64 = 1_000_000;

/// Where mail over a warming source's cap goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarmOverflow {
    /// Through the other sources of the message's pool.
    Pool,
    /// Through the sources of this pool.
    Named(PoolId),
    /// It waits for the source's next opening.
    Hold,
}

/// A warming source as the scheduler enforces it (set by the warm-up service).
#[derive(Clone, Debug)]
pub struct SourceWarmup {
    /// The plan.
    pub plan: Arc<Plan>,
    /// Where its overflow goes.
    pub overflow: WarmOverflow,
    /// The local day (plan time zone) the steps are for.
    pub day: Date,
    /// 0-based step per provider; a provider not listed is on its first step.
    pub steps: HashMap<ProviderId, u32>,
    /// Messages already sent today per provider (the spool's counters, after a restart).
    pub sent_today: HashMap<ProviderId, u64>,
    /// The source sends nothing to anyone until then (the warm-up starts later), unix µs.
    pub closed_until_us: Option<u64>,
}

/// What the scheduler counts for a warming (source, provider) now (for the status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WarmRuntime {
    /// Sent today as counted here (including messages on the wire).
    pub sent_today: u64,
    /// Stopped by a throttling reply until then, unix µs.
    pub stopped_until_us: Option<u64>,
    /// Items waiting in its lanes (high, normal).
    pub queued: (usize, usize),
}

impl Scheduler {
    /// Sets (or with `None` clears: the source is warm) the warm-up of `source`; its lanes look again.
    pub fn set_source_warmup(&mut self, source: SourceId, warmup: Option<SourceWarmup>, now_us: u64) {
        self.now_ms = now_us / 1000;
        match warmup {
            Some(warmup) => {
                for (&provider, &sent) in &warmup.sent_today {
                    let lane = self.provider_lanes.entry((source, provider)).or_default();
                    if lane.warm_day != Some(warmup.day) {
                        lane.warm_day = Some(warmup.day);
                        lane.warm_sent = 0;
                    }
                    lane.warm_sent = lane.warm_sent.max(sent);
                }
                self.warmups.insert(source, warmup);
            }
            None => {
                self.warmups.remove(&source);
            }
        }
        for index in 0..self.lanes.len() {
            if self.lanes[index].source != source {
                continue;
            }
            let provider = self.lanes[index].provider;
            self.lanes[index].prefer_high = self.warm_cap(source, provider).is_some();
            self.lanes[index].unblock_all();
            self.mark_dirty(LaneId(index as u32));
        }
    }

    /// The warm-up of `source` and its cap today for `provider`; None when the source is not warming
    /// or is warm for that provider.
    pub(super) fn warm_cap(&self, source: SourceId, provider: ProviderId) -> Option<(&SourceWarmup, u64)> {
        let warmup = self.warmups.get(&source)?;
        let step = warmup.steps.get(&provider).copied().unwrap_or(0);
        let name = self.settings.provider_name(provider);
        let cap = warmup.plan.cap(&name, step)?;
        Some((warmup, cap))
    }

    /// Messages (source, provider) sent on `day`, as counted here.
    pub(super) fn warm_sent(&self, source: SourceId, provider: ProviderId, day: Date) -> u64 {
        self.provider_lanes
            .get(&(source, provider))
            .filter(|lane| lane.warm_day == Some(day))
            .map_or(0, |lane| lane.warm_sent)
    }

    /// When a warming (source, provider) may send its next message, if not now: before the warm-up's
    /// start, during a throttling stop, outside the sending hours, with today's open capacity used
    /// (with `[cluster]`: none held of the fleet's, a moment while a claim is out).
    pub(super) fn warm_gate(&self, source: SourceId, provider: ProviderId, now_us: u64) -> Option<u64> {
        self.warm_gate_at(source, provider, now_us, false)
    }

    /// [`Scheduler::warm_gate`]; when `choosing` a source for an item, a claim about to be asked for
    /// is no wait (the capacity is there, it only has to be fetched).
    pub(super) fn warm_gate_at(
        &self,
        source: SourceId,
        provider: ProviderId,
        now_us: u64,
        choosing: bool,
    ) -> Option<u64> {
        if self.warmups.is_empty() {
            return None;
        }
        let (warmup, cap) = self.warm_cap(source, provider)?;
        if let Some(until) = self.warm_stopped_until(source, provider, now_us) {
            return Some(until);
        }
        let plan = &warmup.plan;
        let today = plan.day_of(now_us);
        if today != warmup.day {
            return Some(now_us + NEW_DAY_WAIT_US);
        }
        if !plan.in_hours(now_us) {
            return Some(plan.next_opening_us(now_us));
        }
        let sent = self.warm_sent(source, provider, today);
        let budget = self.warm_budget(source, provider, (today, plan.opened(cap, now_us), sent));
        let pending = self.warm_claim_pending(budget);
        if budget.now > 0 || (choosing && pending) {
            None
        } else if pending {
            Some(Self::warm_claim_wait(now_us))
        } else {
            Some(plan.next_opening_us(now_us))
        }
    }

    /// Until when a warming (source, provider) sends nothing whatever its count: its warm-up starts
    /// later, or a throttling reply stopped it.
    pub(super) fn warm_stopped_until(
        &self,
        source: SourceId,
        provider: ProviderId,
        now_us: u64,
    ) -> Option<u64> {
        let warmup = self.warmups.get(&source)?;
        if let Some(until) = warmup.closed_until_us.filter(|&until| until > now_us) {
            return Some(until);
        }
        self.provider_lanes
            .get(&(source, provider))
            .map(|lane| lane.warm_stop_until_us)
            .filter(|&until| until > now_us)
    }

    /// Whether a warming (source, provider) has room for one more item of this priority, counting
    /// what its lanes already hold; else until when it has none.
    fn warm_room(&self, source: SourceId, provider: ProviderId, high: bool, now_us: u64) -> Result<(), u64> {
        let Some((warmup, cap)) = self.warm_cap(source, provider) else {
            return Ok(());
        };
        if let Some(until) = self.warm_stopped_until(source, provider, now_us) {
            return Err(until);
        }
        let plan = &warmup.plan;
        if plan.day_of(now_us) != warmup.day {
            return Err(now_us + NEW_DAY_WAIT_US);
        }
        if !plan.in_hours(now_us) {
            return Err(plan.next_opening_us(now_us));
        }
        let sent = self.warm_sent(source, provider, warmup.day);
        let budget = self.warm_budget(source, provider, (warmup.day, plan.opened(cap, now_us), sent));
        let (queued_high, queued_normal) = self.group(source, provider).counts();
        let ahead = queued_high + if high { 0 } else { queued_normal };
        if (ahead as u64) < budget.room {
            Ok(())
        } else {
            Err(plan.next_opening_us(now_us))
        }
    }

    /// When `source` has no room for `item` at `site` and its plan overflows (not `hold`): until when.
    pub(super) fn warm_unavailable(
        &self,
        source: SourceId,
        site: SiteId,
        item: &Item,
        now_us: u64,
    ) -> Option<u64> {
        if self.warmups.is_empty() {
            return None;
        }
        let provider = self.sites[site.0 as usize].provider;
        let (warmup, _) = self.warm_cap(source, provider)?;
        if warmup.overflow == WarmOverflow::Hold {
            return None;
        }
        self.warm_room(source, provider, item.key.high, now_us).err()
    }

    /// The pool an item over `source`'s cap goes to instead of its own (`pool:NAME` overflow).
    pub(super) fn warm_overflow_pool(
        &self,
        source: SourceId,
        site: SiteId,
        item: &Item,
        now_us: u64,
    ) -> Option<PoolId> {
        let provider = self.sites[site.0 as usize].provider;
        let (warmup, _) = self.warm_cap(source, provider)?;
        match warmup.overflow {
            WarmOverflow::Named(pool) if pool != item.pool => self
                .warm_room(source, provider, item.key.high, now_us)
                .is_err()
                .then_some(pool),
            _ => None,
        }
    }

    /// A high-priority item was just given to a warming (source, provider) whose room is full: the
    /// newest normal item of its lanes goes elsewhere (engaged recipients first).
    pub(super) fn warm_make_room(&mut self, lane_id: LaneId, item: &Item, now_us: u64) {
        let (source, provider) = {
            let lane = &self.lanes[lane_id.0 as usize];
            (lane.source, lane.provider)
        };
        if !item.key.high || self.warmups.is_empty() {
            return;
        }
        let Some((warmup, cap)) = self.warm_cap(source, provider) else {
            return;
        };
        let open = warmup.plan.opened(cap, now_us);
        let sent = self.warm_sent(source, provider, warmup.day);
        let budget = self.warm_budget(source, provider, (warmup.day, open, sent));
        let (high, normal) = self.group(source, provider).counts();
        if normal == 0 || ((high + normal) as u64) <= budget.room {
            return;
        }
        let donor = (0..self.lanes.len()).find(|&i| {
            let lane = &self.lanes[i];
            lane.source == source && lane.provider == provider && lane.queued > 0
        });
        let Some(donor) = donor else {
            return;
        };
        if let Some(moved) = self.lanes[donor].take_newest_normal() {
            let site = self.lanes[donor].site;
            let target_source = self.choose_source(&moved, site, now_us);
            let target = self.lane(target_source, site);
            self.enqueue(target, moved);
        }
    }

    /// Counts a message sent by a warming (source, provider).
    pub(super) fn warm_charge(&mut self, source: SourceId, provider: ProviderId, now_us: u64) {
        let Some((warmup, _)) = self.warm_cap(source, provider) else {
            return;
        };
        let day = warmup.plan.day_of(now_us);
        let lane = self.provider_lanes.entry((source, provider)).or_default();
        if lane.warm_day != Some(day) {
            lane.warm_day = Some(day);
            lane.warm_sent = 0;
        }
        lane.warm_sent += 1;
        self.spend_warm_claim(source, provider, day);
    }

    /// A throttling reply on a warming lane stops its (source, provider) until the next local hour;
    /// its queued mail overflows unless the plan holds.
    pub(super) fn warm_throttled(&mut self, lane_id: LaneId, reason: &str, now_us: u64) {
        let (source, provider) = {
            let lane = &self.lanes[lane_id.0 as usize];
            (lane.source, lane.provider)
        };
        let Some((warmup, _)) = self.warm_cap(source, provider) else {
            return;
        };
        let until = warmup.plan.next_hour_us(now_us);
        let hold = warmup.overflow == WarmOverflow::Hold;
        let lane = self.provider_lanes.entry((source, provider)).or_default();
        if lane.warm_stop_until_us >= until {
            return;
        }
        lane.warm_stop_until_us = until;
        let (source_name, _, provider_name) = self.lane_names(lane_id);
        self.emit(Event {
            source: Some(source_name),
            provider: Some(provider_name),
            until: Some(until / 1000),
            reason: Some(format!("throttled ({reason}): stopped until the next hour").into()),
            ..Event::blank(EventKind::WarmupHeld, self.now_ms)
        });
        let lanes: Vec<LaneId> = (0..self.lanes.len())
            .filter(|&i| self.lanes[i].source == source && self.lanes[i].provider == provider)
            .map(|i| LaneId(i as u32))
            .collect();
        for lane in lanes {
            if !hold {
                self.rebalance(lane, now_us);
            }
            self.lanes[lane.0 as usize].notify.notify_waiters();
            self.arm_timer(lane, until);
        }
    }

    /// What the scheduler counts for (source, provider) now.
    pub fn warm_runtime(&self, source: SourceId, provider: ProviderId, now_us: u64) -> WarmRuntime {
        let lane = self.provider_lanes.get(&(source, provider));
        let day = self.warmups.get(&source).map(|w| w.plan.day_of(now_us));
        WarmRuntime {
            sent_today: day.map_or(0, |day| self.warm_sent(source, provider, day)),
            stopped_until_us: lane
                .map(|lane| lane.warm_stop_until_us)
                .filter(|&until| until > now_us),
            queued: lane.map_or((0, 0), |lane| lane.group.counts()),
        }
    }

    /// The local day (of its plan) a warming lane's sends count for, with its names: the counters of
    /// its outcomes. None when the lane's source is not warming for its provider.
    pub fn warm_tally_day(&self, lane_id: LaneId, now_us: u64) -> Option<Date> {
        if self.warmups.is_empty() {
            return None;
        }
        let lane = self.lanes.get(lane_id.0 as usize)?;
        let (warmup, _) = self.warm_cap(lane.source, lane.provider)?;
        Some(warmup.plan.day_of(now_us))
    }

    /// The queued counts shared by the lanes of (source, provider).
    pub(super) fn group(&self, source: SourceId, provider: ProviderId) -> Arc<super::lane::GroupQueued> {
        self.provider_lanes
            .get(&(source, provider))
            .map(|lane: &ProviderLane| Arc::clone(&lane.group))
            .unwrap_or_default()
    }
}
