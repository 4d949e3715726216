//! The observed send rate of a ready queue over the last minute.
//!
//! Two counters (this calendar minute and the previous one) approximate a sliding 60-second window:
//! the previous minute's count is weighted by the share of it still inside the last 60 s. This is the
//! usual sliding-window-counter estimate: exact when sends are evenly spread, 16 bytes per queue.
//! The adaptive slow-down starts from it for sites without a configured rate.

/// Microseconds in the window (and in one bucket).
const MINUTE_US: u64 = 60_000_000;

/// Sends counted in the current and the previous calendar minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateWindow {
    /// The calendar minute (µs since the epoch / 60 s) that `current` counts.
    minute: u64,
    /// Sends recorded in `minute`.
    current: u32,
    /// Sends recorded in the minute before `minute`.
    previous: u32,
}

impl RateWindow {
    /// Records one send at `now_us`.
    ///
    /// A `now_us` in an earlier minute than the last record (clock stepped back) counts in the current
    /// minute rather than rewriting history. Counts saturate at `u32::MAX`.
    pub fn record(&mut self, now_us: u64) {
        let (minute, previous, current) = self.rolled(now_us);
        self.minute = minute;
        self.previous = previous;
        self.current = current.saturating_add(1);
    }

    /// Sends per second over the 60 s before `now_us` (sliding-window approximation).
    pub fn per_second(&self, now_us: u64) -> f64 {
        let (minute, previous, current) = self.rolled(now_us);
        // Part of the previous minute still inside the last 60 s: all of it at the start of a minute.
        let elapsed = if minute == now_us / MINUTE_US {
            now_us % MINUTE_US
        } else {
            0 // now is before the recorded minute: count the previous minute whole
        };
        let weight = (MINUTE_US - elapsed) as f64 / MINUTE_US as f64;
        (f64::from(previous) * weight + f64::from(current)) / 60.0
    }

    /// (minute, previous, current) as they are at `now_us`, without changing `self`.
    fn rolled(&self, now_us: u64) -> (u64, u32, u32) {
        let minute = now_us / MINUTE_US;
        if minute <= self.minute {
            (self.minute, self.previous, self.current)
        } else if minute == self.minute + 1 {
            (minute, self.current, 0)
        } else {
            (minute, 0, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    #[test]
    fn state_is_small() {
        assert!(std::mem::size_of::<RateWindow>() <= 16);
    }

    #[test]
    fn rate_table() {
        let base = 1_000 * MINUTE_US; // start of a calendar minute
        // (send times relative to base in seconds, now relative to base in seconds, expected per second)
        let table: &[(&[u64], u64, f64, &str)] = &[
            (&[], 30, 0.0, "nothing sent"),
            (&[0, 10, 20], 30, 3.0 / 60.0, "current minute only"),
            (
                &[0, 10, 20],
                60,
                3.0 / 60.0,
                "start of next minute: previous counts whole",
            ),
            (
                &[0, 10, 20],
                90,
                1.5 / 60.0,
                "half of the previous minute is still inside",
            ),
            (&[0, 10, 20], 119, 0.05 / 60.0, "one second of it left"),
            (&[0, 10, 20], 120, 0.0, "two minutes later: nothing left"),
            (&[0, 10, 20], 10_000, 0.0, "long after"),
            (&[50, 55, 61, 62], 90, (2.0 * 0.5 + 2.0) / 60.0, "both buckets"),
        ];
        for &(sends, now, expected, case) in table {
            let mut window = RateWindow::default();
            for &send in sends {
                window.record(base + send * SECOND);
            }
            let got = window.per_second(base + now * SECOND);
            assert!(
                (got - expected).abs() < 1e-9,
                "{case}: got {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn steady_sender_reads_its_rate() {
        let mut window = RateWindow::default();
        let start = 7 * MINUTE_US + 13 * SECOND;
        // 2 per second for 5 minutes, read now and then once the previous minute is a full one.
        for k in 0..600u64 {
            let now = start + k * 500_000;
            window.record(now);
            if k >= 240 && k % 37 == 0 {
                let got = window.per_second(now);
                assert!((got - 2.0).abs() < 0.05, "after {k} sends: {got}");
            }
        }
    }

    #[test]
    fn clock_going_back_and_saturation_do_not_panic() {
        let mut window = RateWindow::default();
        window.record(10 * MINUTE_US);
        window.record(5 * MINUTE_US); // back in time: counted in the current minute
        assert!((window.per_second(10 * MINUTE_US) - 2.0 / 60.0).abs() < 1e-9);
        assert!((window.per_second(3 * MINUTE_US) - 2.0 / 60.0).abs() < 1e-9);
        let mut full = RateWindow {
            minute: 1,
            current: u32::MAX,
            previous: u32::MAX,
        };
        full.record(MINUTE_US);
        assert_eq!(full.current, u32::MAX);
        window.record(u64::MAX);
        assert!(window.per_second(u64::MAX) > 0.0);
    }
}
