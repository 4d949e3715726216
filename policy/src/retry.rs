//! When to try a message again after a transient failure, and when to give up.
//!
//! The n-th retry waits the n-th interval of the schedule (the last one repeats), varied by a random
//! ±`jitter_percent` so a burst of failures does not come back as a burst. A message is never retried
//! after `received + max_age`: the last retry is clamped to that deadline, and a failure at or after it
//! expires the message (DSN with 4.4.7, see [`crate::classify_network`]).
//!
//! Times are unix milliseconds passed in by the caller; randomness is a number in [0, 1) passed in too.

use std::time::Duration;

/// The shortest wait between two attempts, whatever the schedule and jitter say.
const MIN_INTERVAL_MS: u64 = 1_000;

/// The retry schedule, from `[delivery] retry`, `retry_jitter_percent` and `max_age`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Waits before the first, second, … retry; the last one repeats. Should be non-empty; an empty
    /// schedule makes one last attempt at the deadline.
    pub intervals: Vec<Duration>,
    /// How long after acceptance a message may still be retried; at or past it the message expires.
    pub max_age: Duration,
    /// Random variation of each interval, in percent either way (spreads the retries of a burst).
    /// Values above 100 count as 100.
    pub jitter_percent: u8,
}

/// What to do with a message after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again at this time (unix milliseconds), never later than the expiry deadline.
    RetryAt(u64),
    /// The message is past its maximum age: stop and bounce it as expired.
    Expire,
}

impl RetrySchedule {
    /// The decision after a failed attempt.
    ///
    /// `attempts` = attempts made so far (≥1 after a failure; 0 counts as 1), `received_ms` = when the
    /// message was accepted, `now_ms` = now, `jitter` = a uniformly random number in [0, 1) supplied by the
    /// caller (0.5 leaves the interval unchanged, 0 shortens it by `jitter_percent`, values near 1 lengthen
    /// it by as much; NaN or anything outside [0, 1) counts as 0.5).
    pub fn after_failure(&self, attempts: u32, received_ms: u64, now_ms: u64, jitter: f64) -> RetryDecision {
        let deadline = self.expires_at(received_ms);
        if now_ms >= deadline {
            return RetryDecision::Expire;
        }
        let Some(base) = self.base_interval(attempts) else {
            return RetryDecision::RetryAt(deadline);
        };
        let interval = jittered_ms(millis(base), self.jitter_percent, jitter).max(MIN_INTERVAL_MS);
        RetryDecision::RetryAt(now_ms.saturating_add(interval).min(deadline))
    }

    /// When a message accepted at `received_ms` expires (unix milliseconds, saturating).
    pub fn expires_at(&self, received_ms: u64) -> u64 {
        received_ms.saturating_add(millis(self.max_age))
    }

    /// The unjittered wait after attempt number `attempts`; `None` for an empty schedule.
    fn base_interval(&self, attempts: u32) -> Option<Duration> {
        let index = usize::try_from(attempts.max(1) - 1).unwrap_or(usize::MAX);
        self.intervals
            .get(index)
            .or_else(|| self.intervals.last())
            .copied()
    }
}

/// `base_ms` varied by up to ±`percent` % according to `jitter` in [0, 1), saturating.
fn jittered_ms(base_ms: u64, percent: u8, jitter: f64) -> u64 {
    let jitter = if (0.0..1.0).contains(&jitter) { jitter } else { 0.5 };
    let offset = (2.0 * jitter - 1.0) * f64::from(percent.min(100)) / 100.0;
    // `as` saturates (and maps NaN to 0), so the product cannot wrap.
    let delta = (base_ms as f64 * offset.abs()).round() as u64;
    if offset < 0.0 {
        base_ms.saturating_sub(delta)
    } else {
        base_ms.saturating_add(delta)
    }
}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    /// An arbitrary acceptance time (2024-04-01T00:00:00Z).
    const T0: u64 = 1_711_929_600_000;
    /// A jitter value at the top of the range.
    const TOP: f64 = 1.0 - f64::EPSILON;

    /// The default schedule of `[delivery]`: 1m 5m 15m 30m 1h 2h 4h, 10 % jitter, 3 days.
    fn default_schedule() -> RetrySchedule {
        let minutes = [1, 5, 15, 30, 60, 120, 240];
        RetrySchedule {
            intervals: minutes.iter().map(|m| Duration::from_secs(m * 60)).collect(),
            max_age: Duration::from_secs(3 * 86_400),
            jitter_percent: 10,
        }
    }

    #[test]
    fn default_schedule_without_jitter_then_repeats_the_last_interval() {
        let schedule = default_schedule();
        let now = T0 + HOUR;
        // (attempts, expected wait in minutes)
        let cases: &[(u32, u64)] = &[
            (0, 1),
            (1, 1),
            (2, 5),
            (3, 15),
            (4, 30),
            (5, 60),
            (6, 120),
            (7, 240),
            (8, 240),
            (9, 240),
            (100, 240),
            (u32::MAX, 240),
        ];
        for &(attempts, minutes) in cases {
            let decision = schedule.after_failure(attempts, T0, now, 0.5);
            assert_eq!(
                decision,
                RetryDecision::RetryAt(now + minutes * MINUTE),
                "attempt {attempts}"
            );
        }
    }

    #[test]
    fn jitter_varies_the_interval_by_up_to_the_percentage() {
        let mut schedule = default_schedule();
        let now = T0;
        // (jitter percent, jitter value, attempts, expected wait in ms)
        let cases: &[(u8, f64, u32, u64)] = &[
            (10, 0.0, 1, 54_000),
            (10, TOP, 1, 66_000),
            (10, 0.25, 1, 57_000),
            (10, 0.75, 1, 63_000),
            (10, 0.0, 7, 216 * MINUTE),
            (10, TOP, 7, 264 * MINUTE),
            (0, 0.0, 1, MINUTE),
            (0, TOP, 1, MINUTE),
            (100, TOP, 1, 2 * MINUTE),
            (100, 0.0, 1, 1_000), // zero wait is raised to the 1 s minimum
            (255, 0.0, 1, 1_000), // above 100 counts as 100
            (255, TOP, 1, 2 * MINUTE),
            // NaN, infinities, negatives and 1.0 itself count as 0.5.
            (10, f64::NAN, 1, MINUTE),
            (10, f64::INFINITY, 1, MINUTE),
            (10, f64::NEG_INFINITY, 1, MINUTE),
            (10, -0.1, 1, MINUTE),
            (10, 1.0, 1, MINUTE),
            (10, 7.0, 1, MINUTE),
        ];
        for &(percent, jitter, attempts, wait) in cases {
            schedule.jitter_percent = percent;
            let decision = schedule.after_failure(attempts, T0, now, jitter);
            assert_eq!(
                decision,
                RetryDecision::RetryAt(now + wait),
                "{percent}% jitter {jitter} attempt {attempts}"
            );
        }
    }

    #[test]
    fn deadline_clamps_the_last_retry_and_expires_after_it() {
        let schedule = default_schedule();
        let deadline = T0 + 3 * DAY;
        assert_eq!(schedule.expires_at(T0), deadline);
        // (now, attempts, expected)
        let cases: &[(u64, u32, RetryDecision)] = &[
            (deadline - 5 * HOUR, 9, RetryDecision::RetryAt(deadline - HOUR)),
            (deadline - 4 * HOUR, 9, RetryDecision::RetryAt(deadline)),
            (deadline - HOUR, 9, RetryDecision::RetryAt(deadline)),
            (deadline - 1, 1, RetryDecision::RetryAt(deadline)),
            (deadline, 1, RetryDecision::Expire),
            (deadline + 1, 1, RetryDecision::Expire),
            (u64::MAX, 1, RetryDecision::Expire),
            // A clock behind the acceptance time still retries, never past the deadline.
            (T0 - HOUR, 1, RetryDecision::RetryAt(T0 - HOUR + MINUTE)),
            (0, 1, RetryDecision::RetryAt(MINUTE)),
        ];
        for &(now, attempts, expected) in cases {
            assert_eq!(
                schedule.after_failure(attempts, T0, now, 0.5),
                expected,
                "now {now}"
            );
            // Jitter never pushes a retry past the deadline either.
            if let RetryDecision::RetryAt(at) = schedule.after_failure(attempts, T0, now, TOP) {
                assert!(at <= deadline);
            }
        }
    }

    #[test]
    fn extreme_values_saturate() {
        let huge = RetrySchedule {
            intervals: vec![Duration::MAX, Duration::ZERO],
            max_age: Duration::MAX,
            jitter_percent: 100,
        };
        // (attempts, received, now, jitter, expected)
        let cases: &[(u32, u64, u64, f64, RetryDecision)] = &[
            (1, T0, T0, TOP, RetryDecision::RetryAt(u64::MAX)),
            (1, T0, T0, 0.0, RetryDecision::RetryAt(T0 + 1_000)),
            (2, T0, T0, 0.5, RetryDecision::RetryAt(T0 + 1_000)),
            (
                1,
                u64::MAX - 10,
                u64::MAX - 1,
                0.5,
                RetryDecision::RetryAt(u64::MAX),
            ),
            (1, u64::MAX, u64::MAX, 0.5, RetryDecision::Expire),
            (u32::MAX, 0, u64::MAX - 1, 0.5, RetryDecision::RetryAt(u64::MAX)),
        ];
        for &(attempts, received, now, jitter, expected) in cases {
            assert_eq!(
                huge.after_failure(attempts, received, now, jitter),
                expected,
                "{attempts} {now}"
            );
        }
        let empty = RetrySchedule {
            intervals: Vec::new(),
            max_age: Duration::from_secs(3600),
            jitter_percent: 10,
        };
        assert_eq!(
            empty.after_failure(1, T0, T0, 0.5),
            RetryDecision::RetryAt(T0 + HOUR)
        );
        assert_eq!(empty.after_failure(2, T0, T0 + HOUR, 0.5), RetryDecision::Expire);
        let no_age = RetrySchedule {
            max_age: Duration::ZERO,
            ..default_schedule()
        };
        assert_eq!(no_age.after_failure(1, T0, T0, 0.5), RetryDecision::Expire);
    }

    /// Fails every attempt from acceptance until the schedule expires the message; returns the number of
    /// attempts made and the time of the last one. `jitter` supplies the random number for each step.
    fn simulate(schedule: &RetrySchedule, mut jitter: impl FnMut() -> f64) -> (u32, u64) {
        let mut now = T0;
        let mut attempts = 0u32;
        loop {
            attempts += 1; // an attempt at `now`, which fails
            match schedule.after_failure(attempts, T0, now, jitter()) {
                RetryDecision::RetryAt(at) => {
                    assert!(at > now, "time moves forward");
                    now = at;
                }
                RetryDecision::Expire => return (attempts, now),
            }
            assert!(attempts < 10_000, "bounded");
        }
    }

    #[test]
    fn failing_until_expiry_takes_the_expected_number_of_attempts() {
        let schedule = default_schedule();
        let deadline = T0 + 3 * DAY;
        // Without jitter: the first attempt at T0, seven retries after the ramp (1m+5m+15m+30m+1h+2h+4h =
        // 7h51m), then every 4 h while that stays before the deadline, then one clamped to the deadline.
        let ramp = (1 + 5 + 15 + 30 + 60 + 120 + 240) * MINUTE;
        let repeats = (3 * DAY - ramp) / (4 * HOUR); // 16: the last one at 71h51m
        let expected = 1 + 7 + repeats + 1;
        assert_eq!(expected, 25);
        assert_eq!(simulate(&schedule, || 0.5), (expected as u32, deadline));
        // Always the shortest interval (−10 %): 4h becomes 3h36m, so more attempts, still ending at the
        // deadline.
        let ramp_short = ramp * 9 / 10;
        let repeats_short = (3 * DAY - ramp_short).div_ceil(216 * MINUTE);
        assert_eq!(
            simulate(&schedule, || 0.0),
            ((1 + 7 + repeats_short) as u32, deadline)
        );
        // Always the longest interval (+10 %): 4h24m.
        let ramp_long = ramp * 11 / 10;
        let repeats_long = (3 * DAY - ramp_long).div_ceil(264 * MINUTE);
        assert_eq!(
            simulate(&schedule, || TOP),
            ((1 + 7 + repeats_long) as u32, deadline)
        );
        // Pseudo-random jitter lies between the two extremes.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let (attempts, last) = simulate(&schedule, || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        });
        assert_eq!(last, deadline);
        assert!(((1 + 7 + repeats_long) as u32..=(1 + 7 + repeats_short) as u32).contains(&attempts));
    }
}
