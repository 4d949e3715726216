//! GCRA (generic cell rate algorithm) without burst: sends evenly spaced at a [`Rate`].
//!
//! The whole state is one theoretical arrival time (`tat`): the instant from which the next send is
//! allowed. A send moves it one emission interval on. Two details make the long-run rate exact for a
//! real sender, whose timer always fires a little late:
//!
//! - **Lateness of less than one interval is forgiven.** A send made `late` µs after `tat`, with
//!   `late < interval`, moves `tat` to `tat + interval`, not `now + interval`: the schedule keeps its
//!   phase, so wake-up jitter never accumulates and 1,000 jittered sends take exactly 999 intervals
//!   (plus the last one's lateness).
//! - **An idle queue starts afresh.** A send an interval or more after `tat` moves it to
//!   `now + interval`: an idle queue never saves up credit, so there is no burst after a pause.
//!
//! The price of the first rule is that a send that was nearly an interval late may be followed by the
//! next one sooner than an interval: over any window of `W` µs there are fewer than `W / interval + 2`
//! sends (strict spacing would give `W / interval + 1`), and an on-time or idle-restarted sender is
//! spaced exactly one interval apart.

use super::rate::Rate;

/// The GCRA state of one ready queue: 8 bytes, so 10,000 queues cost 80 kB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gcra {
    /// Theoretical arrival time (µs since the epoch): no send before it. 0 = never used.
    tat_us: u64,
}

impl Gcra {
    /// A state whose next send is allowed from `tat_us` (restoring a saved state, tests).
    pub fn from_tat_us(tat_us: u64) -> Gcra {
        Gcra { tat_us }
    }

    /// The theoretical arrival time: the next send is allowed from here (metrics, saving the state).
    pub fn tat_us(&self) -> u64 {
        self.tat_us
    }

    /// When the next send may happen: `now_us` if allowed now, else the theoretical arrival time.
    pub fn earliest_us(&self, now_us: u64) -> u64 {
        now_us.max(self.tat_us)
    }

    /// Whether a send is allowed at `now_us`.
    pub fn allows(&self, now_us: u64) -> bool {
        now_us >= self.tat_us
    }

    /// Records one send at `now_us` under `rate`.
    ///
    /// Called whether or not [`allows`](Self::allows) said yes (a send the caller could not hold back
    /// still counts): a send before `tat` moves `tat` one interval further. Saturates at `u64::MAX`.
    pub fn take(&mut self, rate: Rate, now_us: u64) {
        let interval = rate.interval_us();
        let late_by = now_us.saturating_sub(self.tat_us);
        let base = if late_by < interval {
            // On time, early, or late by less than an interval: keep the schedule's phase.
            self.tat_us
        } else {
            // Idle for an interval or more: a fresh schedule from now, with no saved-up credit.
            now_us
        };
        self.tat_us = base.saturating_add(interval);
    }

    /// When the `queued + 1`-th send from now could happen at `rate` (`queued` = messages waiting ahead
    /// of it): how far behind a queue is, and when a source's queue could take one more message.
    pub fn backlog_eta_us(&self, rate: Rate, queued: u64, now_us: u64) -> u64 {
        self.earliest_us(now_us)
            .saturating_add(queued.saturating_mul(rate.interval_us()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn per_second(n: f64) -> Rate {
        Rate::try_new(n).expect("valid test rate")
    }

    #[test]
    fn state_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Gcra>(), 8);
    }

    #[test]
    fn earliest_and_allows_table() {
        // (tat, now, earliest, allows)
        let table: &[(u64, u64, u64, bool)] = &[
            (0, 0, 0, true),
            (0, 5 * SECOND, 5 * SECOND, true),
            (10 * SECOND, 9 * SECOND, 10 * SECOND, false),
            (10 * SECOND, 10 * SECOND, 10 * SECOND, true),
            (10 * SECOND, 11 * SECOND, 11 * SECOND, true),
            (u64::MAX, 0, u64::MAX, false),
        ];
        for &(tat, now, earliest, allows) in table {
            let gcra = Gcra::from_tat_us(tat);
            assert_eq!(gcra.earliest_us(now), earliest, "earliest (tat {tat}, now {now})");
            assert_eq!(gcra.allows(now), allows, "allows (tat {tat}, now {now})");
        }
    }

    #[test]
    fn take_table() {
        let one = per_second(1.0); // interval 1 s
        // (tat, now, new tat)
        let table: &[(u64, u64, u64, &str)] = &[
            (0, 100 * SECOND, 101 * SECOND, "never used: one interval from now"),
            (10 * SECOND, 10 * SECOND, 11 * SECOND, "on time"),
            (
                10 * SECOND,
                10 * SECOND + 400_000,
                11 * SECOND,
                "late by 0.4 interval: phase kept",
            ),
            (
                10 * SECOND,
                11 * SECOND - 1,
                11 * SECOND,
                "late by just under an interval: kept",
            ),
            (
                10 * SECOND,
                11 * SECOND,
                12 * SECOND,
                "late by a whole interval: fresh start",
            ),
            (
                10 * SECOND,
                60 * SECOND,
                61 * SECOND,
                "idle: fresh start, no saved credit",
            ),
            (
                10 * SECOND,
                9 * SECOND,
                11 * SECOND,
                "early (caller ignored allows): counted",
            ),
            (u64::MAX - 10, u64::MAX - 10, u64::MAX, "saturates"),
            (u64::MAX, 0, u64::MAX, "saturates when far ahead"),
        ];
        for &(tat, now, expected, case) in table {
            let mut gcra = Gcra::from_tat_us(tat);
            gcra.take(one, now);
            assert_eq!(gcra.tat_us(), expected, "{case}");
        }
    }

    #[test]
    fn backlog_eta_table() {
        let ten = per_second(10.0); // interval 100 ms
        // (tat, queued, now, eta)
        let table: &[(u64, u64, u64, u64)] = &[
            (0, 0, 5 * SECOND, 5 * SECOND),
            (0, 10, 5 * SECOND, 6 * SECOND),
            (7 * SECOND, 0, 5 * SECOND, 7 * SECOND),
            (7 * SECOND, 5, 5 * SECOND, 7 * SECOND + 500_000),
            (0, u64::MAX, 0, u64::MAX),
        ];
        for &(tat, queued, now, eta) in table {
            assert_eq!(
                Gcra::from_tat_us(tat).backlog_eta_us(ten, queued, now),
                eta,
                "tat {tat}, queued {queued}, now {now}"
            );
        }
    }

    /// Deterministic lateness in [0, max_fraction × interval] for the k-th wake-up.
    fn lateness(k: u64, interval: u64, max_fraction: f64) -> u64 {
        let unit = ((k.wrapping_mul(7919) % 1001) as f64) / 1000.0; // spread over [0, 1]
        (unit * max_fraction * interval as f64) as u64
    }

    /// Sends `count` messages: each time the sender sleeps until `earliest_us` and wakes up late.
    fn jittered_sender(rate: Rate, count: u64, max_fraction: f64, start: u64) -> Vec<u64> {
        let mut gcra = Gcra::default();
        let mut now = start;
        let mut sends = Vec::new();
        for k in 0..count {
            now = gcra.earliest_us(now) + lateness(k, rate.interval_us(), max_fraction);
            assert!(gcra.allows(now));
            gcra.take(rate, now);
            sends.push(now);
        }
        sends
    }

    /// Checks that every window holds fewer than `W / interval + extra` sends (all pairs of sends).
    fn assert_window_bound(sends: &[u64], interval: u64, strict: bool, case: &str) {
        for i in 0..sends.len() {
            for j in i + 1..sends.len() {
                let window = sends[j] - sends[i];
                let count = (j - i + 1) as u64;
                if strict {
                    // count ≤ window / interval + 1
                    assert!(
                        (count - 1) * interval <= window,
                        "{case}: {count} sends in {window} µs"
                    );
                } else {
                    // count < window / interval + 2
                    assert!(
                        count < 2 || (count - 2) * interval < window,
                        "{case}: {count} in {window} µs"
                    );
                }
            }
        }
    }

    #[test]
    fn jittered_sender_keeps_the_configured_rate() {
        // (rate per second, max lateness as a fraction of the interval)
        let table: &[(f64, f64)] = &[(1.0, 0.5), (10.0, 0.5), (3.0, 0.5), (100.0, 0.99), (1000.0, 0.9)];
        for &(per_sec, max_fraction) in table {
            let rate = per_second(per_sec);
            let sends = jittered_sender(rate, 1000, max_fraction, 1_700_000_000 * SECOND);
            let span = (sends[999] - sends[0]) as f64 / SECOND as f64;
            let achieved = 999.0 / span;
            let error = (achieved - per_sec).abs() / per_sec;
            assert!(
                error < 0.01,
                "{per_sec}/s with lateness ≤ {max_fraction}: got {achieved}/s"
            );
            assert_window_bound(&sends, rate.interval_us(), false, "jittered");
        }
    }

    #[test]
    fn sixty_seconds_with_jitter_stay_within_five_percent() {
        let rate = per_second(5.0);
        let start = 1_000 * SECOND;
        let sends = jittered_sender(rate, 400, 0.5, start);
        let in_minute = sends.iter().filter(|&&t| t < start + 60 * SECOND).count();
        assert!(
            (285..=315).contains(&in_minute),
            "{in_minute} sends in 60 s at 5/s"
        );
    }

    #[test]
    fn on_time_and_restarted_senders_are_strictly_spaced() {
        let rate = per_second(4.0);
        let interval = rate.interval_us();
        // An on-time sender, then a pause, then on-time again.
        let mut gcra = Gcra::default();
        let mut now = 50 * SECOND;
        let mut sends = Vec::new();
        for k in 0..200u64 {
            if k == 100 {
                now += 30 * SECOND; // idle
            }
            now = gcra.earliest_us(now);
            gcra.take(rate, now);
            sends.push(now);
        }
        assert_window_bound(&sends, interval, true, "on time");
        assert!(sends.windows(2).all(|pair| pair[1] - pair[0] >= interval));
    }

    #[test]
    fn greedy_pollers_never_exceed_the_bound() {
        // A caller that polls at arbitrary times and sends whenever allowed.
        let rate = per_second(7.0);
        let mut gcra = Gcra::default();
        let mut sends = Vec::new();
        let mut now = 0u64;
        for k in 0..20_000u64 {
            now += 1 + (k.wrapping_mul(104_729) % 90_000); // 1 µs .. 90 ms steps
            if gcra.allows(now) {
                gcra.take(rate, now);
                sends.push(now);
            }
        }
        assert!(sends.len() > 100);
        assert_window_bound(&sends, rate.interval_us(), false, "poller");
        let span = (sends[sends.len() - 1] - sends[0]) as f64 / SECOND as f64;
        assert!((sends.len() - 1) as f64 / span <= 7.0 * 1.001);
    }
}
