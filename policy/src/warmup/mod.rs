//! IP warm-up arithmetic: the ramp a new source follows per mailbox provider (`[[warmup.plan]]`).
//!
//! Pure: every function takes the plan, the day's tallies and `now` (µs since the unix epoch) and returns
//! a decision; the engine owns the state (a step per source × provider, the day's counters), the timers
//! and the IO. One file per concept:
//!
//! | file | concept |
//! |---|---|
//! | `mod.rs` | [`Plan`]: the resolved plan, its steps and caps per provider |
//! | `calendar.rs` | local days and sending hours in the plan's time zone: what is open, when more opens |
//! | `step.rs` | [`judge_day`]: a finished day advances, holds or steps back ([`DayVerdict`]) |
//! | `simulate.rs` | [`simulate`]: the ramp a plan produces under a steady offered volume |
//!
//! A plan's `daily` list is the cap per provider per local day at each step; after the last step the
//! source is warm for that provider (no cap). Steps advance on *sending days* only (see [`judge_day`]).

use std::collections::BTreeMap;

mod calendar;
mod simulate;
mod step;

pub use simulate::{OTHERS_RAMP, SimulatedDay, simulate};
pub use step::{DayTally, DayVerdict, Health, MIN_HEALTH_SAMPLE, judge_day, next_step};

/// A resolved plan (the engine builds it from the config).
#[derive(Clone, Debug)]
pub struct Plan {
    /// The plan's name (`[[warmup.plan]] name`).
    pub name: String,
    /// Messages per provider per local day at each step (step 1 first).
    pub daily: Vec<u64>,
    /// Per provider name, steps that replace `daily` for that provider.
    pub provider_daily: BTreeMap<String, Vec<u64>>,
    /// Sending hours [start, end) in local wall-clock hours, end ≤ 24.
    pub hours: Option<(u8, u8)>,
    /// The time zone of the plan's days and hours.
    pub tz: jiff::tz::TimeZone,
    /// A day counts only when the source sent at least this share of its cap (0..=1).
    pub min_fill: f64,
    /// Deferred ÷ sent over a day above which the source steps back (0..=1).
    pub max_deferral_rate: f64,
    /// Bounced ÷ sent over a day above which the source steps back (0..=1).
    pub max_bounce_rate: f64,
    /// Complaints ÷ sent over a day above which the source steps back (0..=1).
    pub max_complaint_rate: f64,
}

impl Plan {
    /// The steps of `provider` (provider_daily entry or daily).
    pub fn steps(&self, provider: &str) -> &[u64] {
        self.provider_daily.get(provider).unwrap_or(&self.daily)
    }

    /// The cap at 0-based `step` for `provider`; None when step >= steps.len() (warm).
    pub fn cap(&self, provider: &str, step: u32) -> Option<u64> {
        let step = usize::try_from(step).ok()?;
        self.steps(provider).get(step).copied()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A plan in `tz` with `hours`: daily 50, 100, 200; microsoft 20, 40; default shares.
    pub(crate) fn plan(tz: &str, hours: Option<(u8, u8)>) -> Plan {
        Plan {
            name: "standard".to_owned(),
            daily: vec![50, 100, 200],
            provider_daily: BTreeMap::from([("microsoft".to_owned(), vec![20, 40])]),
            hours,
            tz: jiff::tz::TimeZone::get(tz).expect("time zone"),
            min_fill: 0.8,
            max_deferral_rate: 0.10,
            max_bounce_rate: 0.05,
            max_complaint_rate: 0.001,
        }
    }

    #[test]
    fn steps_and_caps_per_provider() {
        let plan = plan("UTC", None);
        let table: &[(&str, u32, Option<u64>)] = &[
            ("gmail", 0, Some(50)),
            ("gmail", 1, Some(100)),
            ("gmail", 2, Some(200)),
            ("gmail", 3, None),
            ("gmail", u32::MAX, None),
            ("microsoft", 0, Some(20)),
            ("microsoft", 1, Some(40)),
            ("microsoft", 2, None),
            ("other", 0, Some(50)),
        ];
        for &(provider, step, expected) in table {
            assert_eq!(plan.cap(provider, step), expected, "{provider} step {step}");
        }
        assert_eq!(plan.steps("microsoft"), &[20, 40]);
        assert_eq!(plan.steps("yahoo"), &[50, 100, 200]);
    }
}
