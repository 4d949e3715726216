//! What a plan would do: the ramp under a steady offered volume, every day healthy.
//!
//! `penguin-mta warmup simulate` prints it, so an operator sees before starting a source how many days
//! each provider's ramp takes and how much mail overflows on the way.

use jiff::civil::Date;

use super::Plan;
use super::step::{DayTally, judge_steps, next_step};

/// The name of the ramp that follows `daily` (every provider without a `provider_daily` entry).
pub const OTHERS_RAMP: &str = "others";

/// One simulated day of one ramp.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatedDay {
    /// The day of the warm-up, 1-based.
    pub day: u32,
    /// Its local date.
    pub date: Date,
    /// The ramp: a `provider_daily` provider ("microsoft") or [`OTHERS_RAMP`].
    pub providers: String,
    /// The step that day, 1-based; None once warm.
    pub step: Option<u32>,
    /// The day's cap; None once warm (no cap).
    pub cap: Option<u64>,
    /// Messages sent (the offered volume up to the cap).
    pub sent: u64,
    /// Messages over the cap (they overflow or wait).
    pub overflow: u64,
}

/// The ramp the plan would produce from `start` for `days` days when `daily_volume` messages are offered
/// to each provider every day, all healthy: one row per (day, ramp) where ramps are each
/// provider_daily entry plus one "others" ramp for `daily`. A day that sent ≥ min_fill × cap advances.
///
/// Rows are in day order, the ramps of a day in name order with "others" last. The simulation ends
/// early only at the end of the calendar (year 9999).
pub fn simulate(plan: &Plan, start: Date, days: u32, daily_volume: u64) -> Vec<SimulatedDay> {
    let ramps: Vec<(&str, &[u64])> = plan
        .provider_daily
        .iter()
        .map(|(provider, steps)| (provider.as_str(), steps.as_slice()))
        .chain(std::iter::once((OTHERS_RAMP, plan.daily.as_slice())))
        .collect();
    let mut steps = vec![0_u32; ramps.len()];
    let mut rows = Vec::with_capacity(ramps.len().saturating_mul(usize::try_from(days).unwrap_or(0)));
    let mut date = start;
    for day in 1..=days {
        for ((providers, ramp), step) in ramps.iter().zip(steps.iter_mut()) {
            let cap = usize::try_from(*step)
                .ok()
                .and_then(|index| ramp.get(index))
                .copied();
            let sent = cap.map_or(daily_volume, |cap| daily_volume.min(cap));
            rows.push(SimulatedDay {
                day,
                date,
                providers: (*providers).to_owned(),
                step: cap.map(|_| *step + 1),
                cap,
                sent,
                overflow: daily_volume - sent,
            });
            if cap.is_some() {
                let tally = DayTally {
                    sent,
                    delivered: sent,
                    ..DayTally::default()
                };
                *step = next_step(*step, &judge_steps(plan, ramp, *step, &tally));
            }
        }
        match date.tomorrow() {
            Ok(next) => date = next,
            Err(_) => break,
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;
    use crate::warmup::tests::plan;

    /// The (step, cap, sent, overflow) of one ramp, day by day.
    fn ramp(rows: &[SimulatedDay], providers: &str) -> Vec<(Option<u32>, Option<u64>, u64, u64)> {
        rows.iter()
            .filter(|row| row.providers == providers)
            .map(|row| (row.step, row.cap, row.sent, row.overflow))
            .collect()
    }

    #[test]
    fn a_full_volume_climbs_one_step_a_day_to_warm() {
        let plan = plan("UTC", None);
        let rows = simulate(&plan, date(2026, 12, 1), 30, 1_000);
        assert_eq!(rows.len(), 60, "two ramps × 30 days");
        assert_eq!(
            ramp(&rows, "others")[..5],
            [
                (Some(1), Some(50), 50, 950),
                (Some(2), Some(100), 100, 900),
                (Some(3), Some(200), 200, 800),
                (None, None, 1_000, 0),
                (None, None, 1_000, 0),
            ]
        );
        assert!(
            ramp(&rows, "others")[3..].iter().all(|row| row.0.is_none()),
            "warm to the end"
        );
        assert_eq!(
            ramp(&rows, "microsoft")[..3],
            [
                (Some(1), Some(20), 20, 980),
                (Some(2), Some(40), 40, 960),
                (None, None, 1_000, 0)
            ]
        );
        let first: Vec<(u32, Date, &str)> = rows[..4]
            .iter()
            .map(|row| (row.day, row.date, row.providers.as_str()))
            .collect();
        assert_eq!(
            first,
            [
                (1, date(2026, 12, 1), "microsoft"),
                (1, date(2026, 12, 1), "others"),
                (2, date(2026, 12, 2), "microsoft"),
                (2, date(2026, 12, 2), "others"),
            ]
        );
        assert_eq!(rows[59].day, 30);
        assert_eq!(rows[59].date, date(2026, 12, 30));
    }

    #[test]
    fn a_volume_below_min_fill_of_a_cap_stalls_there() {
        let plan = plan("UTC", None);
        // 70 fills step 1 (50) and microsoft's steps (20, 40) but not 0.8 × 100 = 80 of step 2.
        let rows = simulate(&plan, date(2026, 12, 1), 10, 70);
        let others = ramp(&rows, "others");
        assert_eq!(others[0], (Some(1), Some(50), 50, 20));
        assert!(
            others[1..].iter().all(|&row| row == (Some(2), Some(100), 70, 0)),
            "{others:?}"
        );
        let microsoft = ramp(&rows, "microsoft");
        assert_eq!(microsoft[2..], vec![(None, None, 70, 0); 8][..]);
    }

    #[test]
    fn exactly_min_fill_advances() {
        let plan = plan("UTC", None);
        let rows = simulate(&plan, date(2026, 12, 1), 3, 80);
        assert_eq!(
            ramp(&rows, "others")[2],
            (Some(3), Some(200), 80, 0),
            "80 of 100 counted"
        );
        assert_eq!(ramp(&rows, "others").len(), 3);
    }

    #[test]
    fn no_volume_holds_every_ramp_on_its_first_step() {
        let plan = plan("UTC", None);
        let rows = simulate(&plan, date(2026, 12, 1), 5, 0);
        assert!(
            rows.iter()
                .all(|row| row.step == Some(1) && row.sent == 0 && row.overflow == 0)
        );
    }

    #[test]
    fn the_end_of_the_calendar_ends_the_simulation() {
        let plan = plan("UTC", None);
        assert_eq!(simulate(&plan, date(9999, 12, 30), 30, 10).len(), 4);
        assert!(simulate(&plan, date(2026, 12, 1), 0, 10).is_empty());
    }
}
