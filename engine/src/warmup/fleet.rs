//! The warm-up's daily loop, and what it shares with the other nodes (`[cluster]`):
//! - **Judging from the fleet's tallies.** Each node pushes its own day tallies to Redis
//!   (`cluster::warm_tally`); at each local day start (plus [`JUDGE_GRACE_US`], so that the last
//!   pushes of the day have landed) a node reads the other nodes' tallies of the days to judge and
//!   judges them summed with its own. Every node judges the same numbers, so they reach the same
//!   steps. While Redis cannot be read no day is judged: the node keeps the steps it has and tries
//!   again every [`JUDGE_RETRY_US`].
//! - **Records.** A changed record (a judgement, the API's start, warm, hold, resume) is journaled
//!   for the others before it is stored; another node's record is stored and put in force here
//!   ([`ApplyChange`]), the newest winning.
//!
//! Today's counts stay each node's own: the fleet's cap today is shared by claims in the scheduler
//! (`delivery::scheduler::warm_shared`).

use std::collections::BTreeMap;

use jiff::civil::Date;
use penguin_policy::warmup::DayTally;
use penguin_queue::SpoolError;
use tokio::sync::watch;

use super::{SourceRecord, Warmup, record};
use crate::clock::from_unix_micros;
use crate::cluster::ApplyChange;

/// How long after a local day start a node of a fleet judges the finished day.
pub const JUDGE_GRACE_US: u64 = 3_000_000;

/// How soon a node of a fleet tries again when it could not read the others' tallies.
const JUDGE_RETRY_US: u64 = 5_000_000;

/// Most days read back per source (a node that was away longer judges the older days alone).
const MAX_DAYS_READ: usize = 31;

impl Warmup {
    /// Judges days at each local day start until the server stops (a node of a fleet: first at its
    /// start, with the others' tallies).
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut due_now = self.inner.fleet.is_some();
        loop {
            if !due_now {
                let now_us = self.inner.clock.now_us();
                let grace = if self.inner.fleet.is_some() {
                    JUDGE_GRACE_US
                } else {
                    0
                };
                let wake = self.next_day_start_us(now_us).map(|at| at + grace);
                let sleep = async {
                    match wake {
                        Some(at) => self.inner.clock.sleep_until(from_unix_micros(at)).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = sleep => {}
                    () = self.inner.changed.notified() => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
            due_now = false;
            let judge = self.read_others().await;
            let this = self.clone();
            let result = tokio::task::spawn_blocking(move || this.evaluate_all_with(judge)).await;
            if let Ok(Err(error)) = result {
                tracing::error!(%error, "cannot judge the warm-up days; retrying at the next day");
            }
            if !judge {
                let retry = self.inner.clock.now_us() + JUDGE_RETRY_US;
                tokio::select! {
                    () = self.inner.clock.sleep_until(from_unix_micros(retry)) => due_now = true,
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        }
    }

    /// Reads the other nodes' tallies of the days to judge; whether days may be judged now (always
    /// without a fleet; with one, when Redis answered).
    async fn read_others(&self) -> bool {
        let Some(fleet) = &self.inner.fleet else {
            return true;
        };
        let wanted = self.days_to_judge(self.inner.clock.now_us());
        match fleet.cluster.others_warmup_tallies(&wanted).await {
            Ok(others) => {
                *self
                    .inner
                    .others
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = others;
                true
            }
            Err(error) => {
                tracing::warn!(%error, "warm-up: the other nodes' tallies cannot be read; days are judged later");
                false
            }
        }
    }

    /// The (source, day) pairs not judged yet before today, of every warming source.
    fn days_to_judge(&self, now_us: u64) -> Vec<(String, Date)> {
        let records = self.records();
        let mut wanted = Vec::new();
        for (source, current) in records.iter().filter(|(_, r)| !r.warm && !r.held) {
            let (Some(entry), Some(start)) = (self.inner.plans.get(&current.plan), current.start_date())
            else {
                continue;
            };
            let today = entry.plan.day_of(now_us);
            let mut day = current
                .evaluated_date()
                .map_or(start, |day| day.tomorrow().unwrap_or(day));
            let mut days = Vec::new();
            while day < today {
                days.push(day);
                let Ok(next) = day.tomorrow() else { break };
                day = next;
            }
            let skip = days.len().saturating_sub(MAX_DAYS_READ);
            wanted.extend(days.into_iter().skip(skip).map(|day| (source.clone(), day)));
        }
        wanted
    }

    /// A source's tallies with the other nodes' added (days before `today`; alone: its own).
    pub(super) fn with_others(
        &self,
        source: &str,
        own: &BTreeMap<(Date, String), DayTally>,
        today: Date,
    ) -> BTreeMap<(Date, String), DayTally> {
        let mut tallies = own.clone();
        if self.inner.fleet.is_none() {
            return tallies;
        }
        let others = self
            .inner
            .others
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((owner, day, provider), theirs) in others.iter() {
            if owner != source || *day >= today {
                continue;
            }
            let tally = tallies.entry((*day, provider.clone())).or_default();
            tally.sent += theirs.sent;
            tally.delivered += theirs.delivered;
            tally.deferred += theirs.deferred;
            tally.bounced += theirs.bounced;
        }
        tallies
    }

    /// Journals a source's record change for the other nodes (with `[cluster]`).
    pub(super) fn journal(&self, source: &str, current: Option<&SourceRecord>) -> Result<(), SpoolError> {
        let Some(fleet) = &self.inner.fleet else {
            return Ok(());
        };
        let value = current.map(|current| serde_json::to_vec(current).unwrap_or_default());
        fleet.replication.record(
            &format!("{}{source}", record::PREFIX),
            value.as_deref(),
            self.inner.clock.now_ms(),
        )
    }
}

/// Another node's record change: stored and put in force here (not journaled again).
impl ApplyChange for Warmup {
    fn apply(&self, key: &str, value: Option<&[u8]>) -> bool {
        let Some(source) = key.strip_prefix(record::PREFIX) else {
            return false;
        };
        if !self.inner.sources.iter().any(|name| name == source) {
            return true;
        }
        let stored = match value.map(serde_json::from_slice::<SourceRecord>) {
            Some(Ok(current)) => record::store(&self.inner.spool, source, &current).map(|()| Some(current)),
            Some(Err(error)) => {
                tracing::warn!(%key, %error, "ignoring another node's unreadable warm-up record");
                return true;
            }
            None => record::delete(&self.inner.spool, source).map(|()| None),
        };
        match stored {
            Ok(Some(current)) => {
                self.records().insert(source.to_owned(), current);
            }
            Ok(None) => {
                self.records().remove(source);
            }
            Err(error) => {
                tracing::error!(%key, %error, "cannot store another node's warm-up record");
                return true;
            }
        }
        if let Err(error) = self.evaluate(source, self.inner.clock.now_us(), false) {
            tracing::error!(%key, %error, "cannot put another node's warm-up record in force");
        }
        true
    }
}
