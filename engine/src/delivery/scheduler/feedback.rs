//! The closed loop: what remote replies do to a lane. A throttling reply (class `rate_limited`)
//! halves the lane's rate (AIMD, `policy::shaping::Adaptive`); a matching reply rule suspends the
//! source for the site or provider, reduces the rate by its factor, bounces the recipient or sets the
//! next attempt. Every change is an event (`shaping_adjusted`, `suspended`).

use penguin_policy::BounceClass;
use penguin_policy::shaping::{RateChange, RuleAction, RuleScope, first_match, lowercase_reply, reply_line};
use penguin_queue::MessageId;

use super::Scheduler;
use super::lane::Hold;
use super::names::LaneId;
use crate::events::{Event, EventKind};

/// One distinct reply of a transaction (or of a failed connection) that did not deliver.
#[derive(Clone, Debug)]
pub struct Feedback<'a> {
    /// Basic code (0 for a network failure).
    pub code: u16,
    /// Enhanced code, if any.
    pub enhanced: Option<&'a str>,
    /// Reply text.
    pub text: &'a str,
    /// Its class.
    pub class: BounceClass,
}

/// What a rule decided for the recipients that got a reply.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReplyEffect {
    /// Nothing beyond the class's own outcome.
    None,
    /// Bounce the recipients now.
    Bounce,
}

impl Scheduler {
    /// Feeds one distinct reply that `lane_id` got for message `id` into the closed loop and the
    /// rules; returns what it means for the recipients that got it.
    pub fn feedback(
        &mut self,
        lane_id: LaneId,
        id: Option<MessageId>,
        reply: &Feedback<'_>,
        now_us: u64,
    ) -> ReplyEffect {
        self.now_ms = now_us / 1000;
        let provider = self
            .settings
            .provider_name(self.lanes[lane_id.0 as usize].provider);
        let line = reply_line(reply.code, reply.enhanced, reply.text);
        let lower = lowercase_reply(reply.code, reply.enhanced, reply.text);
        let matched = first_match(&self.settings.rules, &provider, &line, &lower)
            .map(|(index, rule)| (index, rule.name.clone(), rule.action, rule.trigger));
        let throttled = reply.class == BounceClass::RateLimited;
        let mut reduced = false;
        let mut suspended = false;
        let mut effect = ReplyEffect::None;
        if let Some((index, name, action, trigger)) = matched {
            let lane = &mut self.lanes[lane_id.0 as usize];
            if lane.triggers.entry(index).or_default().hit(&trigger, now_us) {
                match action {
                    RuleAction::Suspend { duration_us, scope } => {
                        let hold = Hold {
                            until_us: now_us.saturating_add(duration_us),
                            reason: format!("rule {name}: {line}"),
                        };
                        self.suspend_lane(lane_id, scope, hold, now_us);
                        suspended = true;
                    }
                    RuleAction::Reduce { factor } => {
                        self.throttle(lane_id, factor, &format!("rule {name}"), false, now_us);
                        reduced = true;
                    }
                    RuleAction::Bounce => effect = ReplyEffect::Bounce,
                    RuleAction::Retry { after_us } => {
                        if let Some(id) = id {
                            self.request_retry(id, now_us.saturating_add(after_us) / 1000);
                        }
                    }
                }
            }
            self.lanes[lane_id.0 as usize].last_throttle = Some((now_us, line.clone()));
        }
        if throttled || reduced || suspended {
            self.warm_throttled(lane_id, &line, now_us);
        }
        if throttled {
            if !reduced {
                self.throttle(
                    lane_id,
                    penguin_policy::shaping::DEFAULT_FACTOR,
                    "rate_limited",
                    true,
                    now_us,
                );
            }
            self.lanes[lane_id.0 as usize].last_throttle = Some((now_us, line));
        }
        effect
    }

    /// A decrease of a lane's rate: the closed loop's on a throttling reply (`automatic`, only when
    /// `shaping.adaptive` is on), or a `reduce` rule's.
    fn throttle(&mut self, lane_id: LaneId, factor: f64, reason: &str, automatic: bool, now_us: u64) {
        if automatic && !self.settings.adaptive {
            return;
        }
        let settings = self.settings.adaptive_settings;
        let lane = &mut self.lanes[lane_id.0 as usize];
        let before = lane.adaptive;
        let observed = lane.observed.per_second(now_us);
        let observed = penguin_policy::shaping::Rate::try_new(observed)
            .filter(|rate| rate.per_second() > 0.0)
            .unwrap_or(settings.min_rate);
        if let Some(change) = lane
            .adaptive
            .on_throttle(lane.limits.rate, observed, factor, now_us, &settings)
        {
            self.rate_changed(lane_id, change, reason);
        }
        // With [cluster] the other nodes take the new state, the restarted recovery period included.
        self.share_rate_change(lane_id, before, reason, now_us);
        if let Some(at) = self.lanes[lane_id.0 as usize].adaptive.next_timer_us() {
            self.arm_timer(lane_id, at);
        }
    }

    /// The closed loop's recovery steps that are due on a lane.
    pub(super) fn recover(&mut self, lane_id: LaneId, now_us: u64) {
        let settings = self.settings.adaptive_settings;
        let lane = &mut self.lanes[lane_id.0 as usize];
        if lane.adaptive.next_timer_us().is_none_or(|at| at > now_us) {
            return;
        }
        let before = lane.adaptive;
        if let Some(change) = lane.adaptive.on_timer(lane.limits.rate, now_us, &settings) {
            self.rate_changed(lane_id, change, "recovery");
        }
        self.share_rate_change(lane_id, before, "recovery", now_us);
    }

    /// Emits `shaping_adjusted` for a lane.
    fn rate_changed(&mut self, lane_id: LaneId, change: RateChange, reason: &str) {
        let (source, site, provider) = self.lane_names(lane_id);
        self.emit(Event {
            source: Some(source),
            site: Some(site),
            provider: Some(provider),
            rate_before: change.before.map(|rate| rate.per_second()),
            rate_after: change.after.map(|rate| rate.per_second()),
            reason: Some(reason.to_string().into()),
            ..Event::blank(EventKind::ShapingAdjusted, self.now_ms)
        });
    }

    /// A rule suspends the lane's source for its site, or for every site of its provider: the lanes
    /// concerned stop sending and their mail moves to the pool's other sources where it can.
    fn suspend_lane(&mut self, lane_id: LaneId, scope: RuleScope, hold: Hold, now_us: u64) {
        let lane = &self.lanes[lane_id.0 as usize];
        let (source, provider) = (lane.source, lane.provider);
        let (source_name, site_name, provider_name) = self.lane_names(lane_id);
        let affected: Vec<LaneId> = match scope {
            RuleScope::Site => {
                self.lanes[lane_id.0 as usize].hold = Some(hold.clone());
                vec![lane_id]
            }
            RuleScope::Provider => {
                self.provider_lanes.entry((source, provider)).or_default().hold = Some(hold.clone());
                (0..self.lanes.len())
                    .filter(|&i| self.lanes[i].source == source && self.lanes[i].provider == provider)
                    .map(|i| LaneId(i as u32))
                    .collect()
            }
        };
        let site = matches!(scope, RuleScope::Site).then_some(site_name);
        let scope = super::operator::lane_scope_json(&source_name, &provider_name, site.as_deref());
        self.emit(Event {
            source: Some(source_name),
            site,
            provider: Some(provider_name),
            scope: Some(scope),
            until: Some(hold.until_us / 1000),
            reason: Some(hold.reason.clone().into()),
            ..Event::blank(EventKind::Suspended, self.now_ms)
        });
        for lane in affected {
            self.rebalance(lane, now_us);
            self.lanes[lane.0 as usize].notify.notify_waiters();
            self.arm_timer(lane, hold.until_us);
        }
    }

    /// Moves a held lane's mail to the other sources of each item's pool that can take it (the lane
    /// keeps what has nowhere else to go).
    pub(super) fn rebalance(&mut self, lane_id: LaneId, now_us: u64) {
        let site = self.lanes[lane_id.0 as usize].site;
        let items = self.lanes[lane_id.0 as usize].drain();
        for item in items {
            let source = self.choose_source(&item, site, now_us);
            let target = self.lane(source, site);
            self.enqueue(target, item);
        }
    }

    /// Ends the rule suspensions of a lane (and of its source for its provider) whose time is over.
    pub(super) fn end_holds(&mut self, lane_id: LaneId, now_us: u64) {
        let lane = &mut self.lanes[lane_id.0 as usize];
        let ended_site = lane.hold.as_ref().is_some_and(|hold| hold.until_us <= now_us);
        if ended_site {
            lane.hold = None;
        }
        let key = (lane.source, lane.provider);
        let ended_provider = self
            .provider_lanes
            .get_mut(&key)
            .and_then(|provider| {
                let ended = provider.hold.as_ref().is_some_and(|hold| hold.until_us <= now_us);
                ended.then(|| provider.hold.take())
            })
            .is_some();
        let (source, site, provider) = self.lane_names(lane_id);
        for (ended, site) in [(ended_site, Some(site)), (ended_provider, None)] {
            if !ended {
                continue;
            }
            let scope = super::operator::lane_scope_json(&source, &provider, site.as_deref());
            self.emit(Event {
                source: Some(std::sync::Arc::clone(&source)),
                site,
                provider: Some(std::sync::Arc::clone(&provider)),
                scope: Some(scope),
                reason: Some("expired".into()),
                ..Event::blank(EventKind::Resumed, self.now_ms)
            });
        }
    }
}
