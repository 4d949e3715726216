//! The IP warm-up service: which sources are warming, on which plan, at which step per provider, and
//! the daily judgement that moves steps. The scheduler enforces the caps
//! (`delivery::scheduler::warmup`); this service tells it the day's steps and counts.
//!
//! - A source warms by `[[source]] warmup = { plan, start }` or `PUT /v1/sources/{s}/warmup` (which
//!   wins); `DELETE` declares it warm; `hold` freezes its steps (days neither advance nor step back),
//!   `resume` lifts that. The state is a control record per source ([`record`]), synced.
//! - At each local day's start (plan time zone, on the injected clock) the finished days are judged
//!   from the spool's counters (written with the outcomes, so exact across kill -9):
//!   `penguin_policy::warmup::judge_day` → `warmup_advanced`, `warmup_held` (quiet day),
//!   `warmup_alert` + `warmup_stepped_back` (unhealthy day). Then the scheduler gets the new steps
//!   and what was already sent today.

mod fleet;
mod record;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use jiff::ToSpan;
use jiff::civil::Date;
use penguin_config::{Config, Overflow};
use penguin_policy::warmup::{DayTally, DayVerdict, Plan, judge_day, next_step};
use penguin_queue::{Spool, SpoolError};
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::cluster::{Cluster, OthersTallies, Replication};
use crate::delivery::scheduler::{Scheduler, SourceWarmup, WarmOverflow};
use crate::events::{Event, EventBus, EventKind};

pub use fleet::JUDGE_GRACE_US;
pub use record::{Origin, ProviderRecord, SourceRecord, count_outcomes};
pub use status::{WarmupHealth, WarmupRow};

/// A plan as the engine uses it.
#[derive(Clone, Debug)]
pub struct PlanEntry {
    /// The arithmetic.
    pub plan: Arc<Plan>,
    /// Where its overflow goes.
    pub overflow: Overflow,
}

/// Why a warm-up change was refused.
#[derive(Debug, thiserror::Error)]
pub enum WarmupError {
    /// No such source.
    #[error("unknown source {0:?}")]
    UnknownSource(String),
    /// No such plan.
    #[error("{0:?} is not a [[warmup.plan]] name")]
    UnknownPlan(String),
    /// Not a date.
    #[error("{0:?} is not a date such as \"2026-12-01\"")]
    BadStart(String),
    /// The source is not warming.
    #[error("source {0:?} is not warming up")]
    NotWarming(String),
    /// The spool failed.
    #[error(transparent)]
    Storage(#[from] SpoolError),
}

/// The warm-up service (cheap to clone).
#[derive(Clone)]
pub struct Warmup {
    inner: Arc<Inner>,
}

struct Inner {
    spool: Arc<Spool>,
    clock: SharedClock,
    scheduler: Arc<Mutex<Scheduler>>,
    events: EventBus,
    /// Plans by name.
    plans: BTreeMap<String, PlanEntry>,
    /// `[[source]] warmup` of the config: source → (plan, start).
    configured: BTreeMap<String, (String, Date)>,
    /// Every source name.
    sources: Vec<String>,
    /// Stored state per source (only sources with a warm-up).
    records: Mutex<BTreeMap<String, SourceRecord>>,
    /// Wakes the daily loop after a change.
    changed: Notify,
    /// What is shared with the other nodes (`[cluster]`).
    fleet: Option<WarmupFleet>,
    /// The other nodes' tallies of the days to judge, as last read.
    others: Mutex<OthersTallies>,
}

/// What the warm-up shares with other nodes (`[cluster]`): every node judges a day from the fleet's
/// tallies (`cluster::warm_tally`), and its records (steps, the API's changes) are journaled for the
/// others, the newest winning (`cluster::control_sync`).
#[derive(Clone)]
pub struct WarmupFleet {
    /// Reads the other nodes' tallies.
    pub cluster: Cluster,
    /// Journals this node's record changes.
    pub replication: Replication,
}

impl Warmup {
    /// The service for `config`, with the stored state reconciled with the config (a config warm-up
    /// that changed starts over; one removed from the config ends; the API's win) and put in force.
    pub fn load(
        config: &Config,
        spool: Arc<Spool>,
        scheduler: Arc<Mutex<Scheduler>>,
        events: EventBus,
        clock: SharedClock,
    ) -> Result<Warmup, SpoolError> {
        Warmup::load_shared(config, (spool, scheduler, events, clock), None)
    }

    /// [`Warmup::load`] for a node of a fleet (`fleet`): finished days are judged by [`Warmup::run`]
    /// once the other nodes' tallies are read, not here.
    pub fn load_shared(
        config: &Config,
        (spool, scheduler, events, clock): (Arc<Spool>, Arc<Mutex<Scheduler>>, EventBus, SharedClock),
        fleet: Option<WarmupFleet>,
    ) -> Result<Warmup, SpoolError> {
        let plans = config
            .warmup
            .plan
            .iter()
            .filter_map(|plan| {
                let resolved = crate::warmup_cli::plan_from_config(plan).ok()?;
                let entry = PlanEntry {
                    plan: Arc::new(resolved),
                    overflow: plan.overflow.clone(),
                };
                Some((plan.name.clone(), entry))
            })
            .collect();
        let configured = config
            .source
            .iter()
            .filter_map(|source| {
                let warmup = source.warmup.as_ref()?;
                let start = penguin_config::parse_warmup_start(&warmup.start).ok()?;
                Some((source.name.clone(), (warmup.plan.clone(), start)))
            })
            .collect();
        let sources = config.sources().into_iter().map(|source| source.name).collect();
        let warmup = Warmup {
            inner: Arc::new(Inner {
                spool,
                clock,
                scheduler,
                events,
                plans,
                configured,
                sources,
                records: Mutex::new(BTreeMap::new()),
                changed: Notify::new(),
                others: Mutex::new(OthersTallies::new()),
                fleet,
            }),
        };
        warmup.reconcile()?;
        let judge = warmup.inner.fleet.is_none();
        warmup.evaluate_all_with(judge)?;
        Ok(warmup)
    }

    /// The scheduler, locked (briefly: no await while held).
    fn scheduler(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.inner
            .scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceRecord>> {
        self.inner.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stored records against the config.
    fn reconcile(&self) -> Result<(), SpoolError> {
        let spool = &self.inner.spool;
        let mut records = record::load_all(spool)?;
        records.retain(|source, _| self.inner.sources.contains(source));
        for (source, (plan, start)) in &self.inner.configured {
            let same = records.get(source).is_some_and(|r| {
                r.origin == Origin::Api || (r.plan == *plan && r.start_date() == Some(*start))
            });
            if !same {
                let fresh = SourceRecord::new(Origin::Config, plan, *start);
                record::store(spool, source, &fresh)?;
                records.insert(source.clone(), fresh);
            }
        }
        let dropped: Vec<String> = records
            .iter()
            .filter(|(source, r)| r.origin == Origin::Config && !self.inner.configured.contains_key(*source))
            .map(|(source, _)| source.clone())
            .collect();
        for source in dropped {
            record::delete(spool, &source)?;
            records.remove(&source);
        }
        *self.records() = records;
        Ok(())
    }

    /// Judges the finished days of every warming source and gives the scheduler today's steps.
    pub fn evaluate_all(&self) -> Result<(), SpoolError> {
        self.evaluate_all_with(true)
    }

    /// [`Warmup::evaluate_all`]; without `judge` only today's state is put in force.
    fn evaluate_all_with(&self, judge: bool) -> Result<(), SpoolError> {
        let now_us = self.inner.clock.now_us();
        let names: Vec<String> = self.inner.sources.clone();
        for source in names {
            self.evaluate(&source, now_us, judge)?;
        }
        Ok(())
    }

    /// Judges a source's finished days (at most once each, with `judge`) and puts today's state in
    /// force.
    fn evaluate(&self, source: &str, now_us: u64, judge: bool) -> Result<(), SpoolError> {
        let Some(mut current) = self.records().get(source).cloned() else {
            self.push(source, None, now_us);
            return Ok(());
        };
        let Some(entry) = self.inner.plans.get(&current.plan).cloned() else {
            self.push(source, None, now_us);
            return Ok(());
        };
        let today = entry.plan.day_of(now_us);
        let tallies = record::read_tallies(&self.inner.spool, source)?;
        if !current.warm && judge {
            let fleet = self.with_others(source, &tallies, today);
            let before = current.clone();
            self.judge_days(source, &mut current, &entry.plan, &fleet, today, now_us);
            if current != before {
                self.journal(source, Some(&current))?;
                record::store(&self.inner.spool, source, &current)?;
                self.records().insert(source.to_owned(), current.clone());
            }
        }
        let warmup = (!current.warm).then(|| self.source_warmup(&current, &entry, &tallies, today));
        self.push(source, warmup, now_us);
        Ok(())
    }

    /// Judges every finished day after the last judged one (days with counts; quiet days change
    /// nothing), unless the operator holds the source.
    fn judge_days(
        &self,
        source: &str,
        current: &mut SourceRecord,
        plan: &Plan,
        tallies: &BTreeMap<(Date, String), DayTally>,
        today: Date,
        now_us: u64,
    ) {
        let Some(start) = current.start_date() else {
            return;
        };
        let from = current
            .evaluated_date()
            .map_or(start, |day| day.tomorrow().unwrap_or(day));
        let Ok(yesterday) = today.yesterday() else {
            return;
        };
        if from > yesterday {
            return;
        }
        if !current.held {
            for ((day, provider), tally) in tallies.range((from, String::new())..) {
                if *day > yesterday {
                    break;
                }
                let progress = current.providers.entry(provider.clone()).or_default();
                if plan.cap(provider, progress.step).is_none() {
                    continue;
                }
                let verdict = judge_day(plan, provider, progress.step, tally);
                let before = progress.step;
                progress.step = next_step(before, &verdict);
                self.announce(source, provider, plan, before, progress, &verdict, now_us);
            }
        }
        current.evaluated_through = Some(yesterday.to_string());
    }

    /// Records a verdict in the provider's progress and emits its events.
    #[allow(clippy::too_many_arguments)]
    fn announce(
        &self,
        source: &str,
        provider: &str,
        plan: &Plan,
        before: u32,
        progress: &mut ProviderRecord,
        verdict: &DayVerdict,
        now_us: u64,
    ) {
        let cap = plan.cap(provider, progress.step);
        let event = |kind: EventKind, reason: Option<String>| Event {
            source: Some(Arc::from(source)),
            provider: Some(Arc::from(provider)),
            step: cap.map(|_| progress.step + 1),
            cap,
            reason: reason.map(Into::into),
            ..Event::blank(kind, now_us / 1000)
        };
        match verdict {
            DayVerdict::Advanced => {
                let warm = cap.is_none().then(|| "past the last step: warm".to_owned());
                self.inner.events.emit(event(EventKind::WarmupAdvanced, warm));
                progress.state = "warming".to_owned();
                progress.reason = None;
            }
            DayVerdict::Held { reason } => {
                progress.state = "held".to_owned();
                progress.reason = Some(reason.clone());
                self.inner
                    .events
                    .emit(event(EventKind::WarmupHeld, Some(reason.clone())));
            }
            DayVerdict::SteppedBack { reason } => {
                progress.state = "stepped_back".to_owned();
                progress.reason = Some(reason.clone());
                self.inner
                    .events
                    .emit(event(EventKind::WarmupAlert, Some(reason.clone())));
                if progress.step < before || before == 0 {
                    self.inner
                        .events
                        .emit(event(EventKind::WarmupSteppedBack, Some(reason.clone())));
                }
            }
        }
    }

    /// What the scheduler enforces today for a warming source.
    fn source_warmup(
        &self,
        current: &SourceRecord,
        entry: &PlanEntry,
        tallies: &BTreeMap<(Date, String), DayTally>,
        today: Date,
    ) -> SourceWarmup {
        let scheduler = self.scheduler();
        let settings = scheduler.settings();
        let steps = current
            .providers
            .iter()
            .map(|(provider, progress)| (settings.provider_id(provider), progress.step))
            .collect::<HashMap<_, _>>();
        let sent_today = tallies
            .range((today, String::new())..)
            .take_while(|((day, _), _)| *day == today)
            .map(|((_, provider), tally)| (settings.provider_id(provider), tally.sent))
            .collect();
        let overflow = match &entry.overflow {
            Overflow::Pool => WarmOverflow::Pool,
            Overflow::Hold => WarmOverflow::Hold,
            Overflow::PoolNamed(name) => settings
                .pool_id(name)
                .map_or(WarmOverflow::Pool, WarmOverflow::Named),
        };
        let closed_until_us = current
            .start_date()
            .filter(|start| *start > today)
            .map(|start| entry.plan.day_start_us(start));
        SourceWarmup {
            plan: Arc::clone(&entry.plan),
            overflow,
            day: today,
            steps,
            sent_today,
            closed_until_us,
        }
    }

    /// Gives the scheduler a source's warm-up (None: warm).
    fn push(&self, source: &str, warmup: Option<SourceWarmup>, now_us: u64) {
        let mut scheduler = self.scheduler();
        if let Some(id) = scheduler.settings().source_id(source) {
            scheduler.set_source_warmup(id, warmup, now_us);
        }
    }

    /// The next local day start of any warming source's plan (when days are judged), unix µs.
    fn next_day_start_us(&self, now_us: u64) -> Option<u64> {
        let records = self.records();
        records
            .values()
            .filter(|record| !record.warm)
            .filter_map(|record| self.inner.plans.get(&record.plan))
            .filter_map(|entry| {
                let tomorrow = entry.plan.day_of(now_us).checked_add(1.day()).ok()?;
                Some(entry.plan.day_start_us(tomorrow))
            })
            .min()
    }

    /// Starts (or restarts) a source's warm-up on `plan` from `start` (the API's, winning over the
    /// config).
    pub fn start(&self, source: &str, plan: &str, start: &str) -> Result<(), WarmupError> {
        self.known(source)?;
        if !self.inner.plans.contains_key(plan) {
            return Err(WarmupError::UnknownPlan(plan.to_owned()));
        }
        let start =
            penguin_config::parse_warmup_start(start).map_err(|_| WarmupError::BadStart(start.to_owned()))?;
        self.replace(source, SourceRecord::new(Origin::Api, plan, start))
    }

    /// Declares a source warm (no caps from now on).
    pub fn declare_warm(&self, source: &str) -> Result<(), WarmupError> {
        self.known(source)?;
        let mut current = self
            .records()
            .get(source)
            .cloned()
            .ok_or_else(|| WarmupError::NotWarming(source.to_owned()))?;
        current.origin = Origin::Api;
        current.warm = true;
        self.replace(source, current)
    }

    /// Freezes (`true`) or unfreezes a warming source's steps.
    pub fn set_held(&self, source: &str, held: bool) -> Result<(), WarmupError> {
        self.known(source)?;
        let mut current = self
            .records()
            .get(source)
            .cloned()
            .filter(|record| !record.warm)
            .ok_or_else(|| WarmupError::NotWarming(source.to_owned()))?;
        current.held = held;
        if !held {
            // Days under the hold are not judged.
            let today = self
                .inner
                .plans
                .get(&current.plan)
                .map(|entry| entry.plan.day_of(self.inner.clock.now_us()));
            if let Some(yesterday) = today.and_then(|day| day.yesterday().ok()) {
                current.evaluated_through = Some(yesterday.to_string());
            }
        }
        self.replace(source, current)
    }

    fn known(&self, source: &str) -> Result<(), WarmupError> {
        if self.inner.sources.iter().any(|name| name == source) {
            Ok(())
        } else {
            Err(WarmupError::UnknownSource(source.to_owned()))
        }
    }

    /// Stores a source's new record and puts it in force.
    fn replace(&self, source: &str, current: SourceRecord) -> Result<(), WarmupError> {
        self.journal(source, Some(&current))?;
        record::store(&self.inner.spool, source, &current)?;
        self.records().insert(source.to_owned(), current);
        self.evaluate(source, self.inner.clock.now_us(), self.inner.fleet.is_none())?;
        self.inner.changed.notify_one();
        Ok(())
    }
}
