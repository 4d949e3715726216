//! The closed loop on throttling replies (AIMD) of one ready queue (source, site).
//!
//! - **Multiplicative decrease.** A throttling reply (the caller decides which: class `rate_limited`,
//!   or a `reduce` rule) multiplies the rate in force by a factor (0.5 for plain throttling, a rule's
//!   own otherwise), at most once per `cooldown` (a burst of 4xx replies to messages already in flight
//!   is one signal, not twenty), never under `min_rate`.
//! - **Additive increase.** After each `recovery` period without a throttling reply the rate grows by a
//!   tenth of its ceiling, never above it. A throttling reply inside the cooldown changes no rate but
//!   still restarts the recovery period: the site is still pushing back.
//! - **Ceiling.** The configured rate; for a site without one, the observed rate (sends per second over
//!   the last minute, [`super::RateWindow`]) at the first throttling reply: the loop starts from it, climbs
//!   back to it, and the queue is unlimited again once there.
//!
//! Timers: the engine arms one timer per queue at [`Adaptive::next_timer_us`] and calls
//! [`Adaptive::on_timer`] when it fires. A late call applies every recovery step that fell due (one
//! change returned), so the engine never has to poll; after any call it should re-read `next_timer_us`,
//! since a throttling reply moves it later (a timer that then fires early gets `None`).

use super::rate::Rate;

/// The decrease factor used when the caller passes one that is not in (0, 1).
pub const DEFAULT_FACTOR: f64 = 0.5;

/// Recovery steps per ceiling: each step adds `ceiling / RECOVERY_STEPS`.
const RECOVERY_STEPS: f64 = 10.0;

/// The loop's tunables, from config (`cooldown`, `recovery`, `min_rate`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveSettings {
    /// Minimum time between two reductions: replies to messages already in flight are one signal.
    pub cooldown_us: u64,
    /// Quiet time (no throttling reply) before each recovery step.
    pub recovery_us: u64,
    /// Floor of the reduced rate: the queue keeps probing the site, however often it is throttled.
    pub min_rate: Rate,
}

impl Default for AdaptiveSettings {
    /// One minute of cooldown, five minutes per recovery step, one message a minute at least.
    fn default() -> AdaptiveSettings {
        AdaptiveSettings {
            cooldown_us: 60_000_000,
            recovery_us: 300_000_000,
            min_rate: Rate::ONE_PER_MINUTE,
        }
    }
}

/// A change of the rate in force, for the event stream and metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateChange {
    /// The rate enforced before (None = unlimited).
    pub before: Option<Rate>,
    /// The rate enforced from now on (None = unlimited).
    pub after: Option<Rate>,
}

/// The adaptive state of one ready queue. `Default` = not reduced.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Adaptive {
    /// The reduced rate; `None` = not reduced (the configured rate, or none, applies).
    reduced: Option<Rate>,
    /// For a site without a configured rate: the observed rate at the first throttling reply, which
    /// recovery climbs back to.
    observed_ceiling: Option<Rate>,
    /// When the rate was last reduced (cooldown); `None` = never since the last full recovery.
    last_reduction_us: Option<u64>,
    /// When the next recovery step is due (meaningful while reduced).
    next_step_us: u64,
}

/// Everything an [`Adaptive`] holds, to hand it to another node (so that its copy reduces, cools
/// down and recovers exactly like this one) and to take another node's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AdaptiveState {
    /// The reduced rate, messages per second; `None` = not reduced.
    pub reduced: Option<f64>,
    /// The observed ceiling of a site without a configured rate, messages per second.
    pub observed_ceiling: Option<f64>,
    /// When the rate was last reduced (unix µs), the start of the cooldown.
    pub last_reduction_us: Option<u64>,
    /// When the next recovery step is due (unix µs; meaningful while reduced).
    pub next_step_us: u64,
}

impl Adaptive {
    /// Its whole state (see [`AdaptiveState`]).
    pub fn state(&self) -> AdaptiveState {
        AdaptiveState {
            reduced: self.reduced.map(|rate| rate.per_second()),
            observed_ceiling: self.observed_ceiling.map(|rate| rate.per_second()),
            last_reduction_us: self.last_reduction_us,
            next_step_us: self.next_step_us,
        }
    }

    /// The loop in `state` (another node's). Rates that are not valid (zero, negative, not finite)
    /// count as absent: such a state is not reduced.
    pub fn from_state(state: &AdaptiveState) -> Adaptive {
        let reduced = state.reduced.and_then(Rate::try_new);
        if reduced.is_none() {
            return Adaptive::default();
        }
        Adaptive {
            reduced,
            observed_ceiling: state.observed_ceiling.and_then(Rate::try_new),
            last_reduction_us: state.last_reduction_us,
            next_step_us: state.next_step_us,
        }
    }

    /// Whether a reduction is in force.
    pub fn is_reduced(&self) -> bool {
        self.reduced.is_some()
    }

    /// The rate to enforce now (`None` = unlimited), given the queue's configured rate.
    ///
    /// A reduced rate above a configured rate that was lowered since (config reload) gives way to it.
    pub fn effective(&self, configured: Option<Rate>) -> Option<Rate> {
        match (self.reduced, configured) {
            (Some(reduced), Some(configured)) => Some(reduced.min(configured)),
            (Some(reduced), None) => Some(reduced),
            (None, configured) => configured,
        }
    }

    /// A throttling reply at `now_us`: reduces the rate by `factor` unless within the cooldown.
    ///
    /// `observed` is the queue's sending rate of the last minute (used only for a site without a
    /// configured rate, as the starting point and ceiling; pass `settings.min_rate` when nothing was
    /// sent). A `factor` not in (0, 1) counts as [`DEFAULT_FACTOR`]. Returns `None` when nothing
    /// changed (within the cooldown, or already at the floor); the recovery timer restarts either way.
    pub fn on_throttle(
        &mut self,
        configured: Option<Rate>,
        observed: Rate,
        factor: f64,
        now_us: u64,
        settings: &AdaptiveSettings,
    ) -> Option<RateChange> {
        self.next_step_us = now_us.saturating_add(settings.recovery_us);
        let in_cooldown = self
            .last_reduction_us
            .is_some_and(|last| now_us.saturating_sub(last) < settings.cooldown_us);
        if in_cooldown && self.reduced.is_some() {
            return None;
        }
        let before = self.effective(configured);
        if configured.is_none() && self.observed_ceiling.is_none() {
            self.observed_ceiling = Some(observed);
        }
        let ceiling = configured.or(self.observed_ceiling).unwrap_or(observed);
        let base = before.unwrap_or(ceiling);
        let factor = if factor.is_finite() && factor > 0.0 && factor < 1.0 {
            factor
        } else {
            DEFAULT_FACTOR
        };
        // Never under the floor, and never above the ceiling even if the floor is set higher.
        let after = base.scaled(factor).max(settings.min_rate).min(ceiling);
        self.reduced = Some(after);
        self.last_reduction_us = Some(now_us);
        (before != Some(after)).then_some(RateChange {
            before,
            after: Some(after),
        })
    }

    /// The recovery timer at `now_us`: applies every step that is due (several if the call is late).
    ///
    /// Returns `None` when nothing is due. Reaching the ceiling ends the reduction: the configured
    /// rate applies again (exactly), or no limit for a site without one.
    pub fn on_timer(
        &mut self,
        configured: Option<Rate>,
        now_us: u64,
        settings: &AdaptiveSettings,
    ) -> Option<RateChange> {
        let reduced = self.reduced?;
        if now_us < self.next_step_us {
            return None;
        }
        let before = self.effective(configured);
        let Some(ceiling) = configured.or(self.observed_ceiling) else {
            self.recovered();
            return Some(RateChange { before, after: None });
        };
        let period = settings.recovery_us.max(1);
        let steps = ((now_us - self.next_step_us) / period).saturating_add(1);
        let step = ceiling.per_second() / RECOVERY_STEPS;
        let grown = reduced.per_second() + step * steps as f64;
        // A hair under the ceiling (float steps) counts as there.
        if grown >= ceiling.per_second() - step * 1e-6 {
            self.recovered();
            let after = self.effective(configured);
            return (before != after).then_some(RateChange { before, after });
        }
        let after = Rate::try_new(grown).unwrap_or(reduced);
        self.reduced = Some(after);
        self.next_step_us = self.next_step_us.saturating_add(period.saturating_mul(steps));
        let after = self.effective(configured);
        (before != after).then_some(RateChange { before, after })
    }

    /// When [`on_timer`](Self::on_timer) has something to do; `None` when not reduced (fully recovered).
    pub fn next_timer_us(&self) -> Option<u64> {
        self.reduced.map(|_| self.next_step_us)
    }

    /// Back to the unreduced state.
    fn recovered(&mut self) {
        *self = Adaptive::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;
    const MINUTE: u64 = 60 * SECOND;

    fn rate(per_second: f64) -> Rate {
        Rate::try_new(per_second).expect("valid test rate")
    }

    fn settings(min_per_second: f64) -> AdaptiveSettings {
        AdaptiveSettings {
            min_rate: rate(min_per_second),
            ..AdaptiveSettings::default()
        }
    }

    fn per_second(value: Option<Rate>) -> Option<f64> {
        value.map(|r| r.per_second())
    }

    #[test]
    fn throttle_table() {
        let s = settings(0.1);
        let configured = Some(rate(1.0));
        // (seconds, factor, expected effective after, change expected?)
        let steps: &[(u64, f64, f64, bool)] = &[
            (0, 0.5, 0.5, true),
            (30, 0.5, 0.5, false), // within the cooldown
            (59, 0.5, 0.5, false),
            (60, 0.5, 0.25, true), // cooldown over
            (120, 0.8, 0.2, true), // a rule's own factor
            (180, 0.1, 0.1, true), // floored at min_rate
            (240, 0.5, 0.1, false),
            (300, f64::NAN, 0.1, false), // bad factor = 0.5, still floored
        ];
        let mut adaptive = Adaptive::default();
        for &(at, factor, expected, changed) in steps {
            let change = adaptive.on_throttle(configured, rate(5.0), factor, at * SECOND, &s);
            assert_eq!(change.is_some(), changed, "change at {at}s");
            let got = per_second(adaptive.effective(configured)).expect("limited");
            assert!(
                (got - expected).abs() < 1e-12,
                "at {at}s: {got}, expected {expected}"
            );
            assert_eq!(
                adaptive.next_timer_us(),
                Some(at * SECOND + 5 * MINUTE),
                "timer at {at}s"
            );
        }
    }

    #[test]
    fn storm_then_recovery_back_to_exactly_the_configured_rate() {
        let s = settings(0.1);
        let configured = Some(rate(1.0)); // 60/min
        let mut adaptive = Adaptive::default();
        let mut reductions = Vec::new();
        // A throttling reply every second for ten minutes.
        for second in 0..600u64 {
            let now = second * SECOND;
            if let Some(change) = adaptive.on_throttle(configured, rate(1.0), 0.5, now, &s) {
                reductions.push((second, per_second(change.after)));
            }
            assert_eq!(
                adaptive.on_timer(configured, now, &s),
                None,
                "no recovery during the storm"
            );
        }
        assert_eq!(
            reductions,
            vec![
                (0, Some(0.5)),
                (60, Some(0.25)),
                (120, Some(0.125)),
                (180, Some(0.1))
            ],
            "halved at most once per cooldown, stopped at min_rate"
        );
        // Recovery: +0.1/s every 5 minutes after the last throttle (599 s), exactly back to 1.0/s.
        let mut expected = 0.1;
        let mut timer = adaptive.next_timer_us().expect("reduced");
        assert_eq!(timer, 599 * SECOND + 5 * MINUTE);
        for step in 1..=9 {
            assert_eq!(
                adaptive.on_timer(configured, timer - 1, &s),
                None,
                "not yet ({step})"
            );
            let change = adaptive.on_timer(configured, timer, &s).expect("a step");
            expected += 0.1;
            let after = per_second(change.after).expect("limited");
            assert!((after - expected).abs() < 1e-9, "step {step}: {after}");
            match adaptive.next_timer_us() {
                Some(next) => {
                    assert_eq!(next, timer + 5 * MINUTE);
                    timer = next;
                }
                None => assert_eq!(step, 9),
            }
        }
        assert_eq!(
            adaptive.effective(configured),
            configured,
            "exactly the configured rate"
        );
        assert_eq!(adaptive.next_timer_us(), None, "fully recovered");
        assert!(!adaptive.is_reduced());
    }

    #[test]
    fn late_timer_applies_every_due_step() {
        let s = settings(0.1);
        let configured = Some(rate(1.0));
        let mut adaptive = Adaptive::default();
        adaptive.on_throttle(configured, rate(1.0), 0.5, 0, &s); // 0.5
        // 11 minutes later: two steps due (at 5 and 10 minutes).
        let change = adaptive.on_timer(configured, 11 * MINUTE, &s).expect("steps");
        assert!((per_second(change.after).expect("limited") - 0.7).abs() < 1e-9);
        assert_eq!(adaptive.next_timer_us(), Some(15 * MINUTE), "cadence kept");
        // An hour later: all the way up, then unreduced.
        let change = adaptive.on_timer(configured, 75 * MINUTE, &s).expect("recovered");
        assert_eq!(change.after, configured);
        assert_eq!(adaptive.next_timer_us(), None);
    }

    #[test]
    fn unconfigured_site_starts_from_observed_and_ends_unlimited() {
        let s = settings(0.5);
        let mut adaptive = Adaptive::default();
        assert_eq!(adaptive.effective(None), None, "unlimited before any throttle");
        let change = adaptive
            .on_throttle(None, rate(10.0), 0.5, 0, &s)
            .expect("reduced");
        assert_eq!(change.before, None);
        assert_eq!(per_second(change.after), Some(5.0));
        // Second reduction after the cooldown: the ceiling stays the first observed rate.
        let change = adaptive
            .on_throttle(None, rate(4.0), 0.5, MINUTE, &s)
            .expect("reduced");
        assert_eq!(per_second(change.after), Some(2.5));
        // Recovery by 1/s (a tenth of 10/s) every 5 minutes from 6 minutes on.
        let expected = [3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5];
        for (k, want) in expected.iter().enumerate() {
            let at = MINUTE + (k as u64 + 1) * 5 * MINUTE;
            let change = adaptive.on_timer(None, at, &s).expect("step");
            let got = per_second(change.after).expect("limited");
            assert!((got - want).abs() < 1e-9, "step {k}: {got}");
        }
        let change = adaptive.on_timer(None, 41 * MINUTE, &s).expect("recovered");
        assert_eq!(change.after, None, "unlimited again");
        assert_eq!(adaptive.next_timer_us(), None);
        // A new throttling reply starts again from the newly observed rate.
        let change = adaptive
            .on_throttle(None, rate(2.0), 0.5, 50 * MINUTE, &s)
            .expect("reduced");
        assert_eq!(per_second(change.after), Some(1.0));
    }

    #[test]
    fn a_state_taken_and_given_back_behaves_the_same() {
        let s = settings(0.1);
        let configured = Some(rate(1.0));
        let mut original = Adaptive::default();
        original.on_throttle(configured, rate(1.0), 0.5, 7 * SECOND, &s);
        let mut copy = Adaptive::from_state(&original.state());
        assert_eq!(copy, original);
        assert_eq!(copy.next_timer_us(), original.next_timer_us());
        // Same cooldown: no second reduction within it, on either.
        assert_eq!(
            copy.on_throttle(configured, rate(1.0), 0.5, 30 * SECOND, &s),
            None
        );
        original.on_throttle(configured, rate(1.0), 0.5, 30 * SECOND, &s);
        // Same recovery steps.
        let at = original.next_timer_us().expect("reduced");
        assert_eq!(
            copy.on_timer(configured, at, &s),
            original.on_timer(configured, at, &s)
        );
        assert_eq!(copy, original);
        // An unreduced or unreadable state is the default.
        assert_eq!(
            Adaptive::from_state(&AdaptiveState::default()),
            Adaptive::default()
        );
        let bad = AdaptiveState {
            reduced: Some(f64::NAN),
            ..original.state()
        };
        assert_eq!(Adaptive::from_state(&bad), Adaptive::default());
    }

    #[test]
    fn edge_cases_do_not_panic() {
        let s = AdaptiveSettings {
            cooldown_us: 0,
            recovery_us: 0,
            min_rate: rate(2.0),
        };
        let configured = Some(rate(1.0));
        let mut adaptive = Adaptive::default();
        // min_rate above the configured rate: capped at the configured rate; nothing changes.
        assert_eq!(
            adaptive.on_throttle(configured, rate(1.0), 0.5, u64::MAX, &s),
            None
        );
        assert_eq!(adaptive.next_timer_us(), Some(u64::MAX));
        assert!(
            adaptive.on_timer(configured, u64::MAX, &s).is_none(),
            "reaching the ceiling changes nothing"
        );
        assert_eq!(adaptive.next_timer_us(), None);
        // Configured rate removed while reduced: recovers to the observed ceiling (none stored): unlimited.
        let s = settings(0.1);
        let mut adaptive = Adaptive::default();
        adaptive.on_throttle(configured, rate(1.0), 0.5, 0, &s);
        let change = adaptive.on_timer(None, 5 * MINUTE, &s).expect("change");
        assert_eq!(change.after, None);
        // Configured rate lowered below the reduced one: the configured one applies.
        let mut adaptive = Adaptive::default();
        adaptive.on_throttle(Some(rate(10.0)), rate(1.0), 0.5, 0, &s);
        assert_eq!(per_second(adaptive.effective(Some(rate(2.0)))), Some(2.0));
        // Clock going back inside the cooldown: no second reduction.
        assert_eq!(
            adaptive.on_throttle(Some(rate(10.0)), rate(1.0), 0.5, 0, &s),
            None
        );
    }
}
