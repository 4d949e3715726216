//! Judging a finished day of a warming source × provider: it advances, holds or steps back.
//!
//! A day counts (next step) only when the source sent at least `min_fill` × cap to that provider and
//! stayed under every health threshold. A quiet day neither advances nor loses the step (held). A day
//! over a threshold steps back one step (never below the first). Health is judged only on a day of at
//! least [`MIN_HEALTH_SAMPLE`] messages: a handful of bounces on a tiny day says nothing.

use super::Plan;

/// Least messages sent on a day for its health to be judged (a handful of bounces on a tiny day
/// says nothing).
pub const MIN_HEALTH_SAMPLE: u64 = 10;

/// What a source sent to one provider on one local day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DayTally {
    /// Messages attempted (each counts once, whatever its outcome).
    pub sent: u64,
    /// Accepted by the provider.
    pub delivered: u64,
    /// Deferred (a transient reply).
    pub deferred: u64,
    /// Bounced (a permanent reply).
    pub bounced: u64,
    /// Complaints (feedback loop reports) about them.
    pub complaints: u64,
}

/// A day's rates, each a share of `sent`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Health {
    /// Deferred ÷ sent.
    pub deferral_rate: f64,
    /// Bounced ÷ sent.
    pub bounce_rate: f64,
    /// Complaints ÷ sent.
    pub complaint_rate: f64,
}

impl DayTally {
    /// deferred/sent, bounced/sent, complaints/sent (0 when sent == 0).
    pub fn health(&self) -> Health {
        if self.sent == 0 {
            return Health::default();
        }
        // Precision is irrelevant at these magnitudes: the rates are compared with thresholds.
        #[allow(clippy::cast_precision_loss)]
        let share = |count: u64| count as f64 / self.sent as f64;
        Health {
            deferral_rate: share(self.deferred),
            bounce_rate: share(self.bounced),
            complaint_rate: share(self.complaints),
        }
    }
}

/// The outcome of a finished day.
#[derive(Clone, Debug, PartialEq)]
pub enum DayVerdict {
    /// The day counts: next step.
    Advanced,
    /// Quiet day (sent < min_fill × cap): same step. `reason` e.g. "sent 12 of 50 (min_fill 0.8 needs 40)".
    Held {
        /// Why the day did not count.
        reason: String,
    },
    /// Over a threshold: one step back (or stays on the first). `reason` names the rate and threshold,
    /// e.g. "bounce_rate 0.120 over 0.050".
    SteppedBack {
        /// Every rate over its threshold, with both values.
        reason: String,
    },
}

/// Judges a finished day of a source × provider at 0-based `step` (warm steps are never judged:
/// the caller does not call it once step >= steps.len()).
///
/// Should it be called on a warm step anyway, the day is held (the source stays warm).
pub fn judge_day(plan: &Plan, provider: &str, step: u32, tally: &DayTally) -> DayVerdict {
    judge_steps(plan, plan.steps(provider), step, tally)
}

/// [`judge_day`] on the given steps (the simulation's "others" ramp has no provider name).
pub(crate) fn judge_steps(plan: &Plan, steps: &[u64], step: u32, tally: &DayTally) -> DayVerdict {
    let Some(&cap) = usize::try_from(step).ok().and_then(|index| steps.get(index)) else {
        return DayVerdict::Held {
            reason: format!(
                "step {} is past the last step ({}): warm",
                u64::from(step) + 1,
                steps.len()
            ),
        };
    };
    if tally.sent >= MIN_HEALTH_SAMPLE {
        let over = over_thresholds(plan, &tally.health());
        if !over.is_empty() {
            return DayVerdict::SteppedBack {
                reason: over.join(", "),
            };
        }
    }
    let needed = fill_needed(plan.min_fill, cap);
    if tally.sent >= needed {
        DayVerdict::Advanced
    } else {
        DayVerdict::Held {
            reason: format!(
                "sent {} of {cap} (min_fill {} needs {needed})",
                tally.sent, plan.min_fill
            ),
        }
    }
}

/// The step after a verdict: Advanced → step+1 (may reach steps.len() = warm), Held → step,
/// SteppedBack → step.saturating_sub(1).
pub fn next_step(step: u32, verdict: &DayVerdict) -> u32 {
    match verdict {
        DayVerdict::Advanced => step.saturating_add(1),
        DayVerdict::Held { .. } => step,
        DayVerdict::SteppedBack { .. } => step.saturating_sub(1),
    }
}

/// The least messages that fill `share` of `cap`: ⌈share × cap⌉, within 0..=cap.
pub(crate) fn fill_needed(share: f64, cap: u64) -> u64 {
    // Caps are far below 2^52: the product is exact enough; the relative margin absorbs the rounding
    // of shares such as 0.7 (0.7 × 10 = 7.000000000000001 must need 7, not 8).
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let needed = {
        let exact = share.clamp(0.0, 1.0) * cap as f64;
        (exact - exact * 1e-12).ceil().max(0.0) as u64
    };
    needed.min(cap)
}

/// Every rate over its threshold, as "bounce_rate 0.120 over 0.050".
fn over_thresholds(plan: &Plan, health: &Health) -> Vec<String> {
    [
        ("deferral_rate", health.deferral_rate, plan.max_deferral_rate),
        ("bounce_rate", health.bounce_rate, plan.max_bounce_rate),
        ("complaint_rate", health.complaint_rate, plan.max_complaint_rate),
    ]
    .into_iter()
    .filter(|&(_, rate, threshold)| rate > threshold)
    .map(|(name, rate, threshold)| {
        let (rate, threshold) = distinct(rate, threshold);
        format!("{name} {rate} over {threshold}")
    })
    .collect()
}

/// Both numbers with 3 decimals, or enough for two significant digits of the threshold `b` (0.0010),
/// or as many more (up to 8) as it takes for them to differ.
fn distinct(a: f64, b: f64) -> (String, String) {
    // A threshold of 0.001 has its first digit at the 3rd decimal: show 4.
    #[allow(clippy::cast_possible_truncation)]
    let first_digit = if b > 0.0 {
        (-b.log10().floor()).clamp(0.0, 7.0) as usize
    } else {
        0
    };
    let mut decimals = (first_digit + 1).max(3);
    loop {
        let (x, y) = (format!("{a:.decimals$}"), format!("{b:.decimals$}"));
        if x != y || decimals >= 8 {
            return (x, y);
        }
        decimals += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warmup::tests::plan;

    fn tally(sent: u64, deferred: u64, bounced: u64, complaints: u64) -> DayTally {
        DayTally {
            sent,
            delivered: sent - deferred - bounced,
            deferred,
            bounced,
            complaints,
        }
    }

    fn held(reason: &str) -> DayVerdict {
        DayVerdict::Held {
            reason: reason.to_owned(),
        }
    }

    fn back(reason: &str) -> DayVerdict {
        DayVerdict::SteppedBack {
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn health_rates() {
        assert_eq!(DayTally::default().health(), Health::default());
        let health = tally(200, 20, 10, 1).health();
        assert_eq!(
            health,
            Health {
                deferral_rate: 0.1,
                bounce_rate: 0.05,
                complaint_rate: 0.005
            }
        );
    }

    #[test]
    fn judge_day_table() {
        // Step 0 of "gmail" has cap 50 (min_fill 0.8 needs 40); microsoft step 0 has cap 20 (needs 16).
        let table: &[(&str, u32, DayTally, DayVerdict, &str)] = &[
            ("gmail", 0, tally(50, 0, 0, 0), DayVerdict::Advanced, "full day"),
            (
                "gmail",
                0,
                tally(60, 0, 0, 0),
                DayVerdict::Advanced,
                "over the cap still counts",
            ),
            (
                "gmail",
                0,
                tally(40, 0, 0, 0),
                DayVerdict::Advanced,
                "exactly min_fill × cap",
            ),
            (
                "gmail",
                0,
                tally(39, 0, 0, 0),
                held("sent 39 of 50 (min_fill 0.8 needs 40)"),
                "one short",
            ),
            (
                "gmail",
                0,
                tally(12, 0, 0, 0),
                held("sent 12 of 50 (min_fill 0.8 needs 40)"),
                "quiet",
            ),
            (
                "gmail",
                0,
                tally(0, 0, 0, 0),
                held("sent 0 of 50 (min_fill 0.8 needs 40)"),
                "nothing",
            ),
            (
                "gmail",
                1,
                tally(80, 0, 0, 0),
                DayVerdict::Advanced,
                "step 2 needs 80",
            ),
            (
                "microsoft",
                0,
                tally(16, 0, 0, 0),
                DayVerdict::Advanced,
                "microsoft needs 16",
            ),
            (
                "microsoft",
                1,
                tally(31, 0, 0, 0),
                held("sent 31 of 40 (min_fill 0.8 needs 32)"),
                "ms",
            ),
            (
                "gmail",
                2,
                tally(100, 11, 0, 0),
                back("deferral_rate 0.110 over 0.100"),
                "deferrals",
            ),
            (
                "gmail",
                2,
                tally(100, 10, 0, 0),
                held("sent 100 of 200 (min_fill 0.8 needs 160)"),
                "at",
            ),
            (
                "gmail",
                1,
                tally(100, 0, 12, 0),
                back("bounce_rate 0.120 over 0.050"),
                "bounces",
            ),
            (
                "gmail",
                1,
                tally(100, 0, 5, 0),
                DayVerdict::Advanced,
                "bounce rate at the threshold",
            ),
            (
                "gmail",
                1,
                tally(2000, 0, 0, 3),
                back("complaint_rate 0.0015 over 0.0010"),
                "complaints",
            ),
            (
                "gmail",
                1,
                tally(100, 20, 10, 0),
                back("deferral_rate 0.200 over 0.100, bounce_rate 0.100 over 0.050"),
                "two rates over",
            ),
            (
                "gmail",
                0,
                tally(20, 0, 10, 0),
                back("bounce_rate 0.500 over 0.050"),
                "quiet and unhealthy",
            ),
            (
                "gmail",
                0,
                tally(9, 0, 5, 1),
                held("sent 9 of 50 (min_fill 0.8 needs 40)"),
                "tiny: not judged",
            ),
            (
                "gmail",
                3,
                tally(500, 0, 0, 0),
                held("step 4 is past the last step (3): warm"),
                "warm",
            ),
        ];
        let plan = plan("UTC", None);
        for (provider, step, tally, expected, case) in table {
            assert_eq!(&judge_day(&plan, provider, *step, tally), expected, "{case}");
        }
    }

    #[test]
    fn a_tiny_day_that_fills_its_cap_advances_despite_bounces() {
        let mut plan = plan("UTC", None);
        plan.daily = vec![5, 10];
        assert_eq!(
            judge_day(&plan, "gmail", 0, &tally(5, 0, 4, 0)),
            DayVerdict::Advanced
        );
    }

    #[test]
    fn fill_needed_table() {
        let table: &[(f64, u64, u64)] = &[
            (0.8, 50, 40),
            (0.8, 51, 41),
            (0.7, 10, 7),
            (0.1, 30, 3),
            (0.0, 50, 0),
            (1.0, 50, 50),
            (1.5, 50, 50),
            (-1.0, 50, 0),
            (0.5, 1, 1),
            (0.8, 0, 0),
        ];
        for &(share, cap, expected) in table {
            assert_eq!(fill_needed(share, cap), expected, "{share} × {cap}");
        }
    }

    #[test]
    fn next_step_table() {
        let table: &[(u32, DayVerdict, u32)] = &[
            (0, DayVerdict::Advanced, 1),
            (2, DayVerdict::Advanced, 3),
            (u32::MAX, DayVerdict::Advanced, u32::MAX),
            (2, held("quiet"), 2),
            (0, held("quiet"), 0),
            (2, back("bounces"), 1),
            (0, back("bounces"), 0),
        ];
        for (step, verdict, expected) in table {
            assert_eq!(next_step(*step, verdict), *expected, "{step} {verdict:?}");
        }
    }
}
