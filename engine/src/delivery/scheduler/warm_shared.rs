//! Warm-up caps shared by the nodes (`[cluster]`): a warming source's cap for a provider and day is the
//! fleet's, not each node's. The fleet's count lives in the store (`cluster::warm_claims`): a node
//! *claims* part of the open capacity before it sends, in small chunks (what its queued mail for the
//! pair needs, at most a tenth of the day's cap), and sends only what it holds. The store grants at most
//! the open capacity minus what the fleet already claimed, so together the nodes never pass the cap.
//!
//! - Claimed and not sent (a node restarted, or its mail went elsewhere) is lost for the day: the
//!   fleet may send a little under its cap, never over it.
//! - While the store cannot be reached each node keeps to its share: the open capacity divided by the
//!   nodes seen, minus what it sent itself today.
//! - Without `[cluster]` nothing of this is switched on: a node's own count decides (`warmup.rs`).

use std::sync::Arc;

use jiff::civil::Date;
use tokio::sync::Notify;

use super::Scheduler;
use super::names::{LaneId, ProviderId, SourceId};

/// How long a lane waits for a claim it asked for before it looks again (the store answers in about
/// a millisecond; this bounds a lost answer).
const CLAIM_WAIT_US: u64 = 20_000;

/// A claim is asked again after this long without an answer.
const CLAIM_RETRY_US: u64 = 1_000_000;

/// The largest claim, as a part of the day's cap (smaller claims waste less when a node stops).
const CLAIM_CAP_DIVISOR: u64 = 10;

/// A request for part of a warming (source, provider)'s open capacity, for the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmClaimRequest {
    /// The source.
    pub source: SourceId,
    /// The provider.
    pub provider: ProviderId,
    /// The local day (plan time zone) the capacity is of.
    pub day: Date,
    /// Its name in the store: `SOURCE/PROVIDER/DAY`.
    pub name: String,
    /// The capacity open now for the whole fleet.
    pub open: u64,
    /// How much this node asks for.
    pub want: u64,
}

/// The store's answer to a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmGrant {
    /// Granted to this node.
    pub granted: u64,
    /// Open capacity the fleet has left after it.
    pub left: u64,
}

/// What a node holds of a warming (source, provider)'s fleet capacity.
#[derive(Clone, Debug, Default)]
pub(super) struct Claim {
    /// The local day it is for.
    day: Option<Date>,
    /// Claimed and not yet sent.
    allowance: u64,
    /// The fleet's open capacity left at the last answer, and the open capacity it was for.
    fleet_left: Option<(u64, u64)>,
    /// A request is out since then, unix µs.
    asked_at_us: Option<u64>,
}

/// The shared warm-up's requests and the wake of the task that takes them.
#[derive(Debug)]
pub(super) struct WarmShare {
    /// Requests not yet taken.
    requests: Vec<WarmClaimRequest>,
    /// Wakes the task that asks the store.
    wake: Arc<Notify>,
}

/// What a node may still send for a warming (source, provider) now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WarmBudget {
    /// Sends it may make at once.
    pub now: u64,
    /// Sends it may make today as far as it knows (what it holds and what the fleet has left).
    pub room: u64,
}

impl Scheduler {
    /// Shares the warm-up caps with the fleet (at start, with `[cluster]`): claims are taken by the
    /// task woken through `wake`.
    pub fn enable_shared_warmup(&mut self, wake: Arc<Notify>) {
        self.warm_share = Some(WarmShare {
            requests: Vec::new(),
            wake,
        });
    }

    /// The claims asked for since the last call.
    pub fn take_warm_claims(&mut self) -> Vec<WarmClaimRequest> {
        self.warm_share
            .as_mut()
            .map(|share| std::mem::take(&mut share.requests))
            .unwrap_or_default()
    }

    /// The store answered a claim (or, with `None`, could not): the pair's lanes look again, and when
    /// the fleet has less room than they hold, what is over it goes to the pool's other sources
    /// (unless the plan holds).
    pub fn warm_claim_answered(&mut self, request: &WarmClaimRequest, grant: Option<WarmGrant>, now_us: u64) {
        let claim = self.claim_mut(request.source, request.provider);
        claim.asked_at_us = None;
        if let Some(grant) = grant {
            if claim.day != Some(request.day) {
                *claim = Claim {
                    day: Some(request.day),
                    ..Claim::default()
                };
            }
            claim.allowance += grant.granted;
            claim.fleet_left = Some((grant.left, request.open));
        }
        let lanes: Vec<LaneId> = (0..self.lanes.len())
            .filter(|&i| self.lanes[i].source == request.source && self.lanes[i].provider == request.provider)
            .map(|i| LaneId(i as u32))
            .collect();
        let over = grant.is_some() && self.warm_over_room(request.source, request.provider, now_us);
        for lane in lanes {
            if over {
                self.rebalance(lane, now_us);
            }
            // Connections waiting on the lane look again at once (not at the end of their wait).
            self.lanes[lane.0 as usize].notify.notify_waiters();
            self.mark_dirty(lane);
        }
    }

    /// The store came or went (the room of every warming pair changed): the lanes of each pair that
    /// holds more than its room now give what is over it to the pool's other sources (unless the
    /// plan holds), so no mail waits for tomorrow while another source could send it.
    pub(super) fn warm_rebalance_over_room(&mut self, now_us: u64) {
        if self.warmups.is_empty() || self.warm_share.is_none() {
            return;
        }
        let over: Vec<LaneId> = (0..self.lanes.len())
            .filter(|&i| {
                let lane = &self.lanes[i];
                lane.queued > 0 && self.warm_over_room(lane.source, lane.provider, now_us)
            })
            .map(|i| LaneId(i as u32))
            .collect();
        for lane in over {
            self.rebalance(lane, now_us);
            self.mark_dirty(lane);
        }
    }

    /// Whether a warming (source, provider) whose overflow goes elsewhere holds more mail than it has
    /// room for today.
    fn warm_over_room(&self, source: SourceId, provider: ProviderId, now_us: u64) -> bool {
        let Some((warmup, cap)) = self.warm_cap(source, provider) else {
            return false;
        };
        if warmup.overflow == super::WarmOverflow::Hold || warmup.plan.day_of(now_us) != warmup.day {
            return false;
        }
        let sent = self.warm_sent(source, provider, warmup.day);
        let budget = self.warm_budget(
            source,
            provider,
            (warmup.day, warmup.plan.opened(cap, now_us), sent),
        );
        let (high, normal) = self.group(source, provider).counts();
        (high + normal) as u64 > budget.room
    }

    /// Whether the fleet's count decides (sharing on), and whether the store answers; None without
    /// `[cluster]`.
    fn warm_store(&self) -> Option<(bool, usize)> {
        self.warm_share.as_ref()?;
        Some(
            self.shared
                .as_ref()
                .map_or((false, 1), |shared| (shared.store_up, shared.nodes)),
        )
    }

    /// What this node may still send for a warming (source, provider) whose open capacity (fleet-wide
    /// with `[cluster]`) is `open` and which it counted `sent` today.
    pub(super) fn warm_budget(
        &self,
        source: SourceId,
        provider: ProviderId,
        (day, open, sent): (Date, u64, u64),
    ) -> WarmBudget {
        let local = open.saturating_sub(sent);
        match self.warm_store() {
            None => WarmBudget {
                now: local,
                room: local,
            },
            Some((false, nodes)) => {
                let share = (open / nodes.max(1) as u64).saturating_sub(sent);
                WarmBudget {
                    now: share,
                    room: share,
                }
            }
            Some((true, _)) => {
                let claim = self
                    .provider_lanes
                    .get(&(source, provider))
                    .map(|lane| &lane.warm_claim)
                    .filter(|claim| claim.day == Some(day));
                let allowance = claim.map_or(0, |claim| claim.allowance);
                let fleet_left = match claim.and_then(|claim| claim.fleet_left) {
                    // Capacity opened since the last answer is there for the asking.
                    Some((left, at_open)) => left + open.saturating_sub(at_open),
                    None => local,
                };
                WarmBudget {
                    now: allowance,
                    room: allowance + fleet_left,
                }
            }
        }
    }

    /// With the fleet's count in force and nothing held: whether a claim is out or will be asked
    /// (the lane waits a moment for it) rather than the next opening.
    pub(super) fn warm_claim_pending(&self, budget: WarmBudget) -> bool {
        matches!(self.warm_store(), Some((true, _))) && budget.now == 0 && budget.room > 0
    }

    /// How long a lane waits for a claim.
    pub(super) fn warm_claim_wait(now_us: u64) -> u64 {
        now_us + CLAIM_WAIT_US
    }

    /// Asks the store for capacity of the lane's warming (source, provider) when it holds none, its
    /// lanes have mail, and the fleet may have some left.
    pub(super) fn want_warm_claim(&mut self, lane_id: LaneId, now_us: u64) {
        if !matches!(self.warm_store(), Some((true, _))) {
            return;
        }
        let (source, provider) = {
            let lane = &self.lanes[lane_id.0 as usize];
            (lane.source, lane.provider)
        };
        let Some((warmup, cap)) = self.warm_cap(source, provider) else {
            return;
        };
        let plan = Arc::clone(&warmup.plan);
        let day = warmup.day;
        if plan.day_of(now_us) != day
            || !plan.in_hours(now_us)
            || self.warm_stopped_until(source, provider, now_us).is_some()
        {
            return;
        }
        let open = plan.opened(cap, now_us);
        let sent = self.warm_sent(source, provider, day);
        let budget = self.warm_budget(source, provider, (day, open, sent));
        let (high, normal) = self.group(source, provider).counts();
        let queued = (high + normal) as u64;
        if budget.now > 0 || budget.room == 0 || queued == 0 {
            return;
        }
        let claim = self.claim_mut(source, provider);
        if claim.asked_at_us.is_some_and(|at| now_us < at + CLAIM_RETRY_US) {
            return;
        }
        claim.asked_at_us = Some(now_us);
        let want = queued.min((cap / CLAIM_CAP_DIVISOR).max(1));
        let name = format!(
            "{}/{}/{day}",
            self.settings.source_name(source),
            self.settings.provider_name(provider)
        );
        if let Some(share) = self.warm_share.as_mut() {
            share.requests.push(WarmClaimRequest {
                source,
                provider,
                day,
                name,
                open,
                want,
            });
            share.wake.notify_one();
        }
    }

    /// What this node holds of the pair's fleet capacity.
    fn claim_mut(&mut self, source: SourceId, provider: ProviderId) -> &mut Claim {
        &mut self
            .provider_lanes
            .entry((source, provider))
            .or_default()
            .warm_claim
    }

    /// Spends one unit of the pair's claim (a send was handed out while the store answers).
    pub(super) fn spend_warm_claim(&mut self, source: SourceId, provider: ProviderId, day: Date) {
        if !matches!(self.warm_store(), Some((true, _))) {
            return;
        }
        let claim = self.claim_mut(source, provider);
        if claim.day == Some(day) {
            claim.allowance = claim.allowance.saturating_sub(1);
        }
    }
}
