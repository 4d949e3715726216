//! What a connection does next, when connections are opened, and the timers that wake waiting lanes.
//!
//! A connection belongs to one lane and pulls its work: [`Scheduler::next`] hands it the next item
//! that every limit allows, or says how long to wait, or to close. Connections are opened by
//! [`Scheduler::poll`] for lanes with sendable mail and no connection free to take it, within the
//! connection caps and the connection rate. A lane that must wait arms one timer; nothing polls.

use std::sync::Arc;

use tokio::sync::Notify;

use super::lane::Hold;
use super::names::{ConnId, LaneId, SourceId};
use super::settings::SourceSettings;
use super::shared_items::{ItemLimits, Missing};
use super::{Route, Scheduler, Work};

/// Longest wait for a warming source's next opening that a connection spends open; a longer one
/// closes it (the next opening opens a new one).
const WARM_WAIT_ON_CONNECTION_US: u64 = 5_000_000;

/// What a connection is doing, as the scheduler counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Opening, or in a transaction.
    Busy,
    /// Waiting for work.
    Idle,
    /// Waiting for a rate slot (or a held-back queue's time).
    Waiting,
}

/// One counted connection.
#[derive(Debug)]
pub(super) struct ConnState {
    /// Its lane.
    pub(super) lane: LaneId,
    /// What it does.
    pub(super) phase: Phase,
    /// Items handed to it so far.
    pub(super) transactions: usize,
}

/// The answer to [`Scheduler::next`].
#[derive(Debug)]
pub enum Next {
    /// Send this.
    Send(Box<Work>),
    /// Nothing may go before `until_us` (unix microseconds); new mail may come sooner (`notify`).
    Wait {
        /// When to ask again.
        until_us: u64,
        /// Notified when mail arrives for the lane.
        notify: Arc<Notify>,
    },
    /// No mail: wait for `notify` (mail for the lane) up to the idle timeout, then ask again.
    Idle(Arc<Notify>),
    /// Close the connection (its share of deliveries is used up, the lane is suspended, the server
    /// stops, or another lane needs the connection slot).
    Close,
}

/// A connection to open: the driver starts a worker for it.
#[derive(Clone, Debug)]
pub struct Open {
    /// The counted connection.
    pub conn: ConnId,
    /// Its lane.
    pub lane: LaneId,
    /// The source to connect from.
    pub source: SourceSettings,
    /// The site's hosts.
    pub route: Arc<Route>,
    /// Names for events: source, site, provider.
    pub names: (Arc<str>, Arc<str>, Arc<str>),
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// The shared caps whose leases it must hold before connecting (none without `[cluster]`).
    pub leases: Vec<super::LeaseKey>,
}

impl Scheduler {
    /// The next thing connection `conn` should do.
    pub fn next(&mut self, conn: ConnId, now_us: u64) -> Next {
        self.now_ms = now_us / 1000;
        let Some(state) = self.connections.get(&conn) else {
            return Next::Close;
        };
        let (lane_id, phase, transactions) = (state.lane, state.phase, state.transactions);
        self.leave_phase(lane_id, phase);
        if self.shared.is_some() {
            self.want_slots(lane_id, now_us);
        }
        if self.warm_share.is_some() {
            self.want_warm_claim(lane_id, now_us);
        }
        if self.must_close(lane_id, transactions, now_us) {
            self.set_phase(conn, super::dispatch::Phase::Busy);
            return Next::Close;
        }
        let lane = &mut self.lanes[lane_id.0 as usize];
        lane.unblock_due(now_us);
        let notify = Arc::clone(&lane.notify);
        let eta = self.lane_eta(lane_id, now_us, false);
        if eta > now_us && self.lanes[lane_id.0 as usize].has_ready() {
            self.set_phase(conn, Phase::Waiting);
            return Next::Wait {
                until_us: eta,
                notify,
            };
        }
        match self.take_sendable(lane_id, now_us) {
            Some(work) => {
                self.set_phase(conn, Phase::Busy);
                self.handed_out(conn, lane_id, now_us);
                Next::Send(Box::new(work))
            }
            None => match self.lanes[lane_id.0 as usize].next_unblock_us() {
                Some(until_us) => {
                    self.set_phase(conn, Phase::Waiting);
                    Next::Wait { until_us, notify }
                }
                None => {
                    self.set_phase(conn, Phase::Idle);
                    Next::Idle(notify)
                }
            },
        }
    }

    /// The item connection `conn` will send after the one it is sending, taken now so that its
    /// commands can be pipelined behind the current message: only an item that every limit allows
    /// at `now_us`; otherwise None, and the connection asks [`Scheduler::next`] when it is done.
    pub fn next_ready(&mut self, conn: ConnId, now_us: u64) -> Option<Work> {
        self.now_ms = now_us / 1000;
        let state = self.connections.get(&conn)?;
        let (lane_id, transactions) = (state.lane, state.transactions);
        let lane = &self.lanes[lane_id.0 as usize];
        if self.stopping
            || transactions >= lane.limits.max_deliveries_per_connection
            || !lane.has_ready()
            || self.lane_hold(lane_id, now_us).is_some()
            || self.lane_eta(lane_id, now_us, false) > now_us
        {
            return None;
        }
        let work = self.take_sendable(lane_id, now_us)?;
        self.handed_out(conn, lane_id, now_us);
        Some(work)
    }

    /// Whether the lane of connection `conn` is held now (suspended by a rule or an operator), or the
    /// server stops: then an item taken ahead goes back instead of being sent.
    pub fn lane_held(&self, conn: ConnId, now_us: u64) -> bool {
        let Some(state) = self.connections.get(&conn) else {
            return true;
        };
        self.stopping || self.lane_hold(state.lane, now_us).is_some()
    }

    /// An item taken with [`Scheduler::next_ready`] that its connection could not send (it broke
    /// or must close): back into its lane, to go on another connection.
    pub fn give_back(&mut self, work: Work) {
        self.enqueue(work.lane, work.item);
    }

    /// Counts an item handed to `conn`; when the lane has more mail, another connection may open
    /// now (unlimited lane) or at the next rate slot.
    fn handed_out(&mut self, conn: ConnId, lane_id: LaneId, now_us: u64) {
        if let Some(state) = self.connections.get_mut(&conn) {
            state.transactions += 1;
        }
        if self.shared.is_some() {
            self.want_slots(lane_id, now_us);
        }
        if self.lanes[lane_id.0 as usize].has_ready() {
            let eta = self.lane_eta(lane_id, now_us, false);
            if eta > now_us {
                self.arm_timer(lane_id, eta);
            } else {
                self.mark_dirty(lane_id);
            }
        }
    }

    /// Whether connection of `lane_id` that has carried `transactions` items must close now.
    fn must_close(&mut self, lane_id: LaneId, transactions: usize, now_us: u64) -> bool {
        if self.stopping || self.lane_hold(lane_id, now_us).is_some() {
            return true;
        }
        let lane = &self.lanes[lane_id.0 as usize];
        // A warming source at its cap waits for hours, not on an open connection.
        if self
            .warm_gate(lane.source, lane.provider, now_us)
            .is_some_and(|at| at > now_us + WARM_WAIT_ON_CONNECTION_US)
        {
            return true;
        }
        let lane = &mut self.lanes[lane_id.0 as usize];
        if transactions >= lane.limits.max_deliveries_per_connection {
            return true;
        }
        if lane.close_idle > 0 && !lane.has_ready() {
            lane.close_idle -= 1;
            return true;
        }
        false
    }

    /// Takes the next item of the lane that the domain's and tenant's limits (local, and shared with
    /// `[cluster]`) and the operator's suspensions allow, charging every limiter; expired items met on
    /// the way are set aside. Shared limiters met without a slot are asked for slots.
    fn take_sendable(&mut self, lane_id: LaneId, now_us: u64) -> Option<Work> {
        loop {
            let mut missing = Missing::new();
            let item = {
                let Scheduler {
                    lanes,
                    tenant_gcra,
                    domain_gcra,
                    tenant_rates,
                    domain_rates,
                    suspensions,
                    settings,
                    names,
                    shared,
                    ..
                } = self;
                let limits = ItemLimits {
                    tenant_gcra,
                    domain_gcra,
                    tenant_rates,
                    domain_rates,
                    shared: shared.as_ref().filter(|shared| shared.store_up),
                };
                let lane = &mut lanes[lane_id.0 as usize];
                let (source, provider) = (lane.source, lane.provider);
                // The lane's names, only needed to match operator suspensions.
                let lane_names = (!suspensions.is_empty())
                    .then(|| (settings.source_name(source), settings.provider_name(provider)));
                let names = &*names;
                lane.take_next(|item| {
                    if item.expires_at_us <= now_us {
                        return Ok(());
                    }
                    if let Some((source_name, provider_name)) = &lane_names {
                        let key = super::operator::OwnedKey::of(names, item, source_name, provider_name);
                        if let Some(until) = super::operator::suspended_until(suspensions, &key, now_us) {
                            return Err(until);
                        }
                    }
                    let at = limits.earliest_us(&item.key, now_us, &mut missing);
                    if at > now_us { Err(at) } else { Ok(()) }
                })
            };
            if !missing.is_empty() {
                self.want_item_slots(lane_id, &missing, true, now_us);
            }
            let item = item?;
            if item.expires_at_us <= now_us {
                let work = self.work(item, lane_id);
                self.expired.push(work);
                self.driver.notify_one();
                continue;
            }
            self.charge(lane_id, &item, now_us);
            return Some(self.work(item, lane_id));
        }
    }

    /// Records one send against every limiter that applies to `item` on `lane_id`.
    fn charge(&mut self, lane_id: LaneId, item: &super::Item, now_us: u64) {
        let lane_rate = self.lanes[lane_id.0 as usize]
            .effective_rate()
            .map(|rate| self.shared_rate(rate));
        let lane = &mut self.lanes[lane_id.0 as usize];
        if let Some(rate) = lane_rate {
            lane.message_gcra.take(rate, now_us);
        }
        lane.observed.record(now_us);
        let (source, provider) = (lane.source, lane.provider);
        if let Some(rate) = self.settings.provider_limits(provider).rate {
            let rate = self.shared_rate(rate);
            self.provider_lanes
                .entry((source, provider))
                .or_default()
                .gcra
                .take(rate, now_us);
        }
        if let Some(rate) = self.source_rate(source).map(|rate| self.shared_rate(rate))
            && let Some(gcra) = self.source_gcra.get_mut(usize::from(source.0))
        {
            gcra.take(rate, now_us);
        }
        if self.shared.is_some() {
            self.spend_slots(lane_id, now_us);
        }
        if let Some(rate) = self
            .tenant_rate(item.key.tenant)
            .map(|rate| self.shared_rate(rate))
        {
            self.tenant_gcra
                .entry(item.key.tenant)
                .or_default()
                .take(rate, now_us);
        }
        if let Some(rate) = self
            .domain_rate(item.key.domain)
            .map(|rate| self.shared_rate(rate))
        {
            self.domain_gcra
                .entry(item.key.domain)
                .or_default()
                .take(rate, now_us);
        }
        if self.shared.is_some() {
            self.spend_item_slots(lane_id, &item.key, now_us);
        }
        if !self.warmups.is_empty() {
            self.warm_charge(source, provider, now_us);
        }
    }

    /// The rate of `source`.
    pub(super) fn source_rate(&self, source: SourceId) -> Option<penguin_policy::shaping::Rate> {
        self.settings
            .sources
            .get(usize::from(source.0))
            .and_then(|source| source.rate)
    }

    /// When the lane's own, its (source, provider) and its source's rates allow the next send; with
    /// `backlog`, after the lane's queued items (how far behind a source is, for source choice).
    pub(super) fn lane_eta(&self, lane_id: LaneId, now_us: u64, backlog: bool) -> u64 {
        let lane = &self.lanes[lane_id.0 as usize];
        let queued = if backlog { lane.queued as u64 } else { 0 };
        let mut at = now_us;
        if let Some(rate) = lane.effective_rate() {
            let rate = self.shared_rate(rate);
            at = at.max(lane.message_gcra.backlog_eta_us(rate, queued, now_us));
        }
        if self.shared.is_some() {
            at = at.max(self.slot_eta(lane_id, now_us));
        }
        if self.settings.provider_limits(lane.provider).rate.is_some()
            && let Some(provider) = self.provider_lanes.get(&(lane.source, lane.provider))
        {
            at = at.max(provider.gcra.earliest_us(now_us));
        }
        if self.source_rate(lane.source).is_some()
            && let Some(gcra) = self.source_gcra.get(usize::from(lane.source.0))
        {
            at = at.max(gcra.earliest_us(now_us));
        }
        if let Some(gate) = self.warm_gate_at(lane.source, lane.provider, now_us, backlog) {
            at = at.max(gate);
        }
        at
    }

    /// A rule's or the operator's suspension of the whole lane (its source for its site or provider).
    pub(super) fn lane_hold(&self, lane_id: LaneId, now_us: u64) -> Option<Hold> {
        let lane = &self.lanes[lane_id.0 as usize];
        let mut hold: Option<Hold> = lane.hold.clone().filter(|h| h.until_us > now_us);
        if let Some(provider) = self.provider_lanes.get(&(lane.source, lane.provider))
            && let Some(h) = provider.hold.as_ref().filter(|h| h.until_us > now_us)
            && hold.as_ref().is_none_or(|held| h.until_us > held.until_us)
        {
            hold = Some(h.clone());
        }
        if self.suspensions.is_empty() {
            return hold;
        }
        let (source, _, provider) = self.lane_names(lane_id);
        if let Some(h) = super::operator::lane_suspended(&self.suspensions, &source, &provider, now_us)
            && hold.as_ref().is_none_or(|held| h.until_us > held.until_us)
        {
            hold = Some(h);
        }
        hold
    }

    /// Undoes the counting of a connection's previous phase.
    fn leave_phase(&mut self, lane_id: LaneId, phase: Phase) {
        let lane = &mut self.lanes[lane_id.0 as usize];
        match phase {
            Phase::Idle => lane.idle = lane.idle.saturating_sub(1),
            Phase::Waiting => lane.waiting = lane.waiting.saturating_sub(1),
            Phase::Busy => {}
        }
    }

    /// Counts a connection in `phase`.
    fn set_phase(&mut self, conn: ConnId, phase: Phase) {
        let Some(state) = self.connections.get_mut(&conn) else {
            return;
        };
        state.phase = phase;
        let lane = &mut self.lanes[state.lane.0 as usize];
        match phase {
            Phase::Idle => lane.idle += 1,
            Phase::Waiting => lane.waiting += 1,
            Phase::Busy => {}
        }
    }

    /// A connection ended (its worker's ticket was dropped): its slots are free; its lane and a lane
    /// waiting for a slot are looked at again.
    pub fn connection_closed(&mut self, conn: ConnId) {
        let Some(state) = self.connections.remove(&conn) else {
            return;
        };
        self.leave_phase(state.lane, state.phase);
        let lane = &mut self.lanes[state.lane.0 as usize];
        lane.connections = lane.connections.saturating_sub(1);
        let key = (lane.source, lane.provider);
        if let Some(provider) = self.provider_lanes.get_mut(&key) {
            provider.connections = provider.connections.saturating_sub(1);
        }
        self.total_connections = self.total_connections.saturating_sub(1);
        self.mark_dirty(state.lane);
        if let Some(waiting) = self.waiting_for_slot.pop_front() {
            self.mark_dirty(waiting);
        }
    }

    /// Connecting to the site failed on every address. When no other connection of the lane works,
    /// the lane's other sendable items take the same failure now (each is an attempt), instead of
    /// every one of them waiting for its own connect timeout; returns them.
    pub fn connect_failed(&mut self, conn: ConnId) -> Vec<Work> {
        let Some(state) = self.connections.get(&conn) else {
            return Vec::new();
        };
        let lane_id = state.lane;
        let lane = &mut self.lanes[lane_id.0 as usize];
        if lane.connections > 1 {
            return Vec::new();
        }
        let items = lane.take_ready();
        items.into_iter().map(|item| self.work(item, lane_id)).collect()
    }

    /// Looks at the lanes whose timers are due or that changed: releases held-back queues, runs the
    /// closed loop's recovery, ends suspensions, and returns the connections to open.
    pub fn poll(&mut self, now_us: u64) -> Vec<Open> {
        self.now_ms = now_us / 1000;
        while let Some(&(at, lane_id)) = self.timers.first() {
            if at > now_us {
                break;
            }
            self.timers.pop_first();
            if let Some(lane) = self.lanes.get_mut(lane_id.0 as usize)
                && lane.timer_at == Some(at)
            {
                lane.timer_at = None;
                self.mark_dirty(lane_id);
            }
        }
        self.end_operator_suspensions(now_us);
        let mut opens = Vec::new();
        let dirty = std::mem::take(&mut self.dirty);
        for lane_id in dirty {
            self.lanes[lane_id.0 as usize].dirty = false;
            self.service(lane_id, now_us, &mut opens);
        }
        opens
    }

    /// One lane: timers' work, then connections if it has sendable mail and nothing to take it.
    fn service(&mut self, lane_id: LaneId, now_us: u64, opens: &mut Vec<Open>) {
        self.lanes[lane_id.0 as usize].unblock_due(now_us);
        if self.shared.is_some() {
            self.want_slots(lane_id, now_us);
        }
        if self.warm_share.is_some() {
            self.want_warm_claim(lane_id, now_us);
        }
        self.recover(lane_id, now_us);
        self.end_holds(lane_id, now_us);
        let mut wake = self.lanes[lane_id.0 as usize].next_unblock_us();
        let mut consider = |at: Option<u64>| {
            if let Some(at) = at {
                wake = Some(wake.map_or(at, |w: u64| w.min(at)));
            }
        };
        consider(self.lanes[lane_id.0 as usize].adaptive.next_timer_us());
        let lane = &self.lanes[lane_id.0 as usize];
        let warm_gate = self.warm_gate(lane.source, lane.provider, now_us);
        if let Some(hold) = self.lane_hold(lane_id, now_us) {
            consider(Some(hold.until_us));
            consider(self.expire_waiting(lane_id, now_us));
        } else if let Some(gate) = warm_gate.filter(|_| self.lanes[lane_id.0 as usize].connections == 0) {
            consider(Some(gate));
            consider(self.expire_waiting(lane_id, now_us));
        } else if self.wants_connection(lane_id) {
            consider(self.open_connections(lane_id, now_us, opens));
        } else if self.lanes[lane_id.0 as usize].connections == 0 {
            consider(self.expire_waiting(lane_id, now_us));
        }
        if let Some(at) = wake {
            self.arm_timer(lane_id, at.max(now_us + 1));
        }
    }

    /// Whether a lane has sendable mail and no connection free to take it.
    fn wants_connection(&self, lane_id: LaneId) -> bool {
        let lane = &self.lanes[lane_id.0 as usize];
        !self.stopping && lane.has_ready() && lane.idle == 0 && lane.waiting == 0
    }

    /// Opens connections for a lane as far as its rate, caps and connection rate allow (at most one
    /// per sendable item); returns when to try again if something stopped it.
    fn open_connections(&mut self, lane_id: LaneId, now_us: u64, opens: &mut Vec<Open>) -> Option<u64> {
        let eta = self.lane_eta(lane_id, now_us, false);
        if eta > now_us {
            return Some(eta);
        }
        if let Some(until) = self.lease_wait(lane_id, now_us) {
            return Some(until);
        }
        // A rate-limited lane opens one connection per rate slot at most: more would only wait.
        let mut allowed = if self.is_rate_limited(lane_id) {
            1
        } else {
            usize::MAX
        };
        while allowed > 0 {
            allowed -= 1;
            let lane = &self.lanes[lane_id.0 as usize];
            let (source, provider, limits) = (lane.source, lane.provider, lane.limits);
            let max_connections = self.local_cap(limits.max_connections);
            if lane.connections >= max_connections || lane.connections >= lane.queued {
                return None;
            }
            let provider_cap = self
                .settings
                .provider_limits(provider)
                .max_connections
                .map(|cap| self.local_cap(cap));
            let provider_open = self
                .provider_lanes
                .get(&(source, provider))
                .map_or(0, |p| p.connections);
            if provider_cap.is_some_and(|cap| provider_open >= cap) {
                // A connection of this source to another site of the provider closing frees a slot;
                // that close marks this lane only if it waits for the total cap, so look again soon.
                return Some(now_us + 1_000_000);
            }
            if self.total_connections >= self.settings.max_connections {
                self.wait_for_slot(lane_id);
                return None;
            }
            if let Some(rate) = limits.connection_rate {
                let local = self.shared_rate(rate);
                let lane = &self.lanes[lane_id.0 as usize];
                if !lane.connection_gcra.allows(now_us) {
                    return Some(lane.connection_gcra.earliest_us(now_us));
                }
                // With [cluster] the rate is the fleet's: a slot of it too.
                if let Some(at) = self.connection_slot(lane_id, rate, now_us) {
                    return Some(at);
                }
                self.lanes[lane_id.0 as usize].connection_gcra.take(local, now_us);
            }
            opens.push(self.count_connection(lane_id));
        }
        None
    }

    /// Whether any rate applies to a lane's sends (its own, its source's over the provider, its
    /// source's).
    fn is_rate_limited(&self, lane_id: LaneId) -> bool {
        let lane = &self.lanes[lane_id.0 as usize];
        lane.effective_rate().is_some()
            || self.settings.provider_limits(lane.provider).rate.is_some()
            || self.source_rate(lane.source).is_some()
    }

    /// Counts a new connection of a lane and describes it for the driver.
    fn count_connection(&mut self, lane_id: LaneId) -> Open {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.connections.insert(
            conn,
            ConnState {
                lane: lane_id,
                phase: Phase::Busy,
                transactions: 0,
            },
        );
        self.total_connections += 1;
        let lane = &mut self.lanes[lane_id.0 as usize];
        lane.connections += 1;
        let (source, provider, max_recipients) = (
            lane.source,
            lane.provider,
            lane.limits.max_recipients_per_transaction,
        );
        self.provider_lanes
            .entry((source, provider))
            .or_default()
            .connections += 1;
        let site = &self.sites[self.lanes[lane_id.0 as usize].site.0 as usize];
        Open {
            conn,
            lane: lane_id,
            source: self.settings.sources[usize::from(source.0)].clone(),
            route: Arc::clone(&site.route),
            names: self.lane_names(lane_id),
            max_recipients,
            leases: self.lease_keys(lane_id),
        }
    }

    /// Queues a lane for a slot of the total cap and asks an idle connection elsewhere to give one up.
    fn wait_for_slot(&mut self, lane_id: LaneId) {
        if !self.waiting_for_slot.contains(&lane_id) {
            self.waiting_for_slot.push_back(lane_id);
        }
        if let Some(lane) = self.lanes.iter_mut().find(|lane| lane.idle > lane.close_idle) {
            lane.close_idle += 1;
            lane.notify.notify_one();
        }
    }

    /// Arms the lane's timer at `at` unless an earlier one is armed.
    pub(super) fn arm_timer(&mut self, lane_id: LaneId, at: u64) {
        let lane = &mut self.lanes[lane_id.0 as usize];
        if lane.timer_at.is_some_and(|armed| armed <= at) {
            return;
        }
        lane.timer_at = Some(at);
        self.timers.insert((at, lane_id));
    }

    /// When [`Scheduler::poll`] next has timer work (None: only when woken).
    pub fn next_timer_us(&self) -> Option<u64> {
        let timers = self.timers.first().map(|(at, _)| *at);
        let suspensions = self.suspensions.iter().map(|s| s.until_us).min();
        match (timers, suspensions) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether lanes are waiting to be looked at.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The server stops: connections close after their transaction and no new one opens.
    pub fn stop(&mut self) {
        self.stopping = true;
        for lane in &self.lanes {
            lane.notify.notify_waiters();
        }
    }

    /// Items of a lane that cannot send (held, or without a connection) whose time ran out go to
    /// the expired list; returns when the next one will.
    fn expire_waiting(&mut self, lane_id: LaneId, now_us: u64) -> Option<u64> {
        let lane = &mut self.lanes[lane_id.0 as usize];
        let expired = lane.take_where(|item| item.expires_at_us <= now_us);
        let next = lane.earliest_expiry();
        if !expired.is_empty() {
            for item in expired {
                let work = self.work(item, lane_id);
                self.expired.push(work);
            }
            self.driver.notify_one();
        }
        next
    }

    /// Outbound connections counted now (open or being opened).
    pub fn connection_count(&self) -> usize {
        self.total_connections
    }
}
