//! The warm-up status (`GET /v1/warmup`, `penguin-mta warmup status`): one row per warming source ×
//! provider (the providers it has progress or counts with, those its plan names, and `other`).

use std::collections::BTreeSet;

use jiff::ToSpan;
use penguin_policy::warmup::DayTally;
use serde::{Deserialize, Serialize};

use super::{Warmup, record};
use crate::reputation::Reputation;
use crate::timefmt::rfc3339_millis;

/// One source × provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WarmupRow {
    /// The source.
    pub source: String,
    /// The provider (`other` for sites of no provider).
    pub provider: String,
    /// The plan.
    pub plan: String,
    /// Step (1 = the plan's first); null when warm.
    pub step: Option<u32>,
    /// Today's cap; null when warm.
    pub cap_today: Option<u64>,
    /// Sent today (local day of the plan).
    pub sent_today: u64,
    /// Today's health so far.
    pub health: WarmupHealth,
    /// `warming`, `warm`, `held` (quiet day, or before its start), `stepped_back` or `paused` (the
    /// operator's hold, a throttling stop until the next hour, a blocklist listing).
    pub state: String,
    /// When the state or step may change next (the next local day start, or the end of a stop).
    pub next_change: Option<String>,
    /// Why it is in that state.
    pub reason: Option<String>,
}

/// Rates over a day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WarmupHealth {
    /// Deferred ÷ sent.
    pub deferral_rate: f64,
    /// Bounced ÷ sent.
    pub bounce_rate: f64,
    /// Complaints ÷ sent (no complaint feed yet: 0).
    pub complaint_rate: f64,
}

impl Warmup {
    /// Every warming (or declared warm) source × provider.
    pub fn status(&self, reputation: Option<&Reputation>) -> Vec<WarmupRow> {
        let now_us = self.inner.clock.now_us();
        let records = self.records().clone();
        let mut rows = Vec::new();
        for (source, current) in &records {
            let Some(entry) = self.inner.plans.get(&current.plan) else {
                continue;
            };
            let plan = &entry.plan;
            let today = plan.day_of(now_us);
            let tallies = record::read_tallies(&self.inner.spool, source).unwrap_or_default();
            let mut providers: BTreeSet<String> = current.providers.keys().cloned().collect();
            providers.extend(plan.provider_daily.keys().cloned());
            providers.extend(
                tallies
                    .keys()
                    .filter(|(day, _)| *day == today)
                    .map(|(_, p)| p.clone()),
            );
            providers.insert(penguin_config::OTHER_PROVIDER.to_owned());
            let listing = reputation.and_then(|r| r.is_listed(source));
            let next_day = today
                .checked_add(1.day())
                .ok()
                .map(|day| rfc3339_millis(plan.day_start_us(day) / 1000));
            for provider in providers {
                let progress = current.providers.get(&provider).cloned().unwrap_or_default();
                let cap = (!current.warm)
                    .then(|| plan.cap(&provider, progress.step))
                    .flatten();
                let tally = tallies
                    .get(&(today, provider.clone()))
                    .copied()
                    .unwrap_or_default();
                let runtime = self.runtime(source, &provider, now_us);
                let mut row = WarmupRow {
                    source: source.clone(),
                    provider: provider.clone(),
                    plan: current.plan.clone(),
                    step: cap.map(|_| progress.step + 1),
                    cap_today: cap,
                    sent_today: tally.sent.max(runtime.sent_today),
                    health: health(&tally),
                    state: "warming".to_owned(),
                    next_change: next_day.clone(),
                    reason: progress.reason.clone(),
                };
                if cap.is_none() {
                    row.state = "warm".to_owned();
                    row.next_change = None;
                    row.reason = current.warm.then(|| "declared warm by the operator".to_owned());
                } else if current.held {
                    row.state = "paused".to_owned();
                    row.reason = Some("held by the operator".to_owned());
                } else if let Some(listing) = &listing {
                    row.state = "paused".to_owned();
                    row.reason = Some(format!("listed on {}: {}", listing.zone, listing.reason));
                } else if let Some(until) = runtime.stopped_until_us {
                    row.state = "paused".to_owned();
                    row.next_change = Some(rfc3339_millis(until / 1000));
                    row.reason = Some("throttled by the provider: stopped until the next hour".to_owned());
                } else if current.start_date().is_some_and(|start| start > today) {
                    row.state = "held".to_owned();
                    row.reason = Some(format!("the warm-up starts on {}", current.start));
                } else if !progress.state.is_empty() {
                    row.state = progress.state.clone();
                }
                rows.push(row);
            }
        }
        rows
    }

    /// The scheduler's count for (source, provider).
    fn runtime(&self, source: &str, provider: &str, now_us: u64) -> crate::delivery::scheduler::WarmRuntime {
        let scheduler = self.scheduler();
        let settings = scheduler.settings();
        match settings.source_id(source) {
            Some(id) => {
                let provider = settings.provider_id(provider);
                scheduler.warm_runtime(id, provider, now_us)
            }
            None => Default::default(),
        }
    }
}

/// A day's rates.
fn health(tally: &DayTally) -> WarmupHealth {
    let health = tally.health();
    WarmupHealth {
        deferral_rate: health.deferral_rate,
        bounce_rate: health.bounce_rate,
        complaint_rate: health.complaint_rate,
    }
}
