//! Local days and sending hours of a plan, in its IANA time zone (daylight saving handled).
//!
//! Instants are unix microseconds (`u64`); the local calendar comes from jiff. A day is the local
//! calendar day, so a day around a daylight-saving change lasts 23 or 25 hours. With sending hours
//! `(s, e)` the day's cap opens evenly hour by hour from `s`:00 to `e`:00 (what an hour does not use
//! stays open for the next); without them the whole cap is open from the day's start.

use jiff::civil::Date;
use jiff::{Timestamp, ZonedDateTime};

use super::Plan;

/// Microseconds in an hour.
const HOUR_US: u64 = 3_600_000_000;

impl Plan {
    /// The local calendar day (plan tz) of unix microseconds `now_us`.
    pub fn day_of(&self, now_us: u64) -> Date {
        self.zoned(now_us).date()
    }

    /// How much of `cap` is open by `now_us` within its local day: cap without hours; with hours
    /// (s, e): 0 before s, floor(cap * (h - s + 1) / (e - s)) during local hour h in [s, e), cap from e on.
    pub fn opened(&self, cap: u64, now_us: u64) -> u64 {
        let Some((start, end)) = self.hours else {
            return cap;
        };
        let hour = self.local_hour(now_us);
        if hour < start {
            return 0;
        }
        if hour >= end {
            return cap;
        }
        let elapsed = u128::from(hour - start + 1);
        let span = u128::from(end - start);
        // elapsed ≤ span, so the quotient is at most cap.
        u64::try_from(u128::from(cap) * elapsed / span).unwrap_or(cap)
    }

    /// Whether `now_us` is inside the sending hours (always true without hours).
    pub fn in_hours(&self, now_us: u64) -> bool {
        match self.hours {
            None => true,
            Some((start, end)) => (start..end).contains(&self.local_hour(now_us)),
        }
    }

    /// The next instant (unix µs, > now_us) at which more capacity opens or sending may start:
    /// the start of the next local hour if that hour is inside the window (and not past its end),
    /// else the start of the next window (the next day's `s`:00, or 00:00 local next day without
    /// hours). Uses jiff zoned arithmetic so DST gaps/folds are right (a 02:00 that does not exist
    /// resolves forward).
    pub fn next_opening_us(&self, now_us: u64) -> u64 {
        let Some((start, end)) = self.hours else {
            let tomorrow = self.day_start_us(next_day(self.day_of(now_us)));
            return tomorrow.max(now_us.saturating_add(1));
        };
        let next = self.next_hour_us(now_us);
        let at = self.zoned(next);
        let hour = local_hour(&at);
        if (start..end).contains(&hour) {
            return next;
        }
        let day = if hour < start {
            at.date()
        } else {
            next_day(at.date())
        };
        let opening = self.hour_start_us(day, start);
        let opening = if opening > now_us {
            opening
        } else {
            // Only when a fold puts the window's start before the next hour: the day after.
            self.hour_start_us(next_day(day), start)
        };
        opening.max(now_us.saturating_add(1))
    }

    /// Start of the next local hour (a throttling reply stops a warming source × provider until it).
    ///
    /// Measured from the local wall clock's position in its hour, so across a fold the repeated hour is
    /// its own hour (01:30 EDT → 01:00 EST) and across a gap the next hour is the first one after it
    /// (01:30 EST → 03:00 EDT).
    pub fn next_hour_us(&self, now_us: u64) -> u64 {
        let local = self.zoned(now_us).datetime();
        let into_hour = u64::try_from(local.minute()).unwrap_or(0) * 60_000_000
            + u64::try_from(local.second()).unwrap_or(0) * 1_000_000
            + u64::try_from(local.subsec_nanosecond()).unwrap_or(0) / 1_000;
        now_us.saturating_add(HOUR_US.saturating_sub(into_hour).max(1))
    }

    /// Start (unix µs) of local day `day` (its 00:00, or the first instant of the day if 00:00 does not exist).
    pub fn day_start_us(&self, day: Date) -> u64 {
        // `compatible` resolution: a 00:00 in a gap resolves to the first instant after the gap.
        day.to_zoned_datetime(self.tz.clone())
            .map_or_else(|_| out_of_range(day), |start| micros(start.timestamp()))
    }

    /// Start (unix µs) of local hour `hour` (0..=23) of `day`; a non-existent hour resolves forward.
    fn hour_start_us(&self, day: Date, hour: u8) -> u64 {
        let hour = i8::try_from(hour.min(23)).unwrap_or(23);
        self.tz
            .to_zoned_datetime(day.at(hour, 0, 0, 0))
            .map_or_else(|_| out_of_range(day), |start| micros(start.timestamp()))
    }

    /// `now_us` on the plan's local clock (clamped to jiff's range).
    fn zoned(&self, now_us: u64) -> ZonedDateTime {
        let micros = i64::try_from(now_us).unwrap_or(i64::MAX);
        let instant = Timestamp::from_microsecond(micros).unwrap_or(Timestamp::MAX);
        instant.to_zoned_datetime(self.tz.clone())
    }

    /// The local wall-clock hour (0..=23) of `now_us`.
    fn local_hour(&self, now_us: u64) -> u8 {
        local_hour(&self.zoned(now_us))
    }
}

/// The wall-clock hour of a zoned instant.
fn local_hour(at: &ZonedDateTime) -> u8 {
    u8::try_from(at.hour()).unwrap_or(0)
}

/// The day after `day` (the last representable day stays itself).
fn next_day(day: Date) -> Date {
    day.tomorrow().unwrap_or(day)
}

/// Unix microseconds of an instant (0 before the epoch).
fn micros(instant: Timestamp) -> u64 {
    u64::try_from(instant.as_microsecond()).unwrap_or(0)
}

/// A day jiff cannot place in the zone (only at the ends of its range): the nearest end.
fn out_of_range(day: Date) -> u64 {
    if day.year() < 1970 { 0 } else { u64::MAX }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;
    use jiff::tz::TimeZone;

    use super::*;
    use crate::warmup::tests::plan;

    /// Unix µs of a UTC wall-clock time.
    fn utc_us(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> u64 {
        let at = TimeZone::UTC
            .to_zoned_datetime(date(y, mo, d).at(h, mi, 0, 0))
            .expect("utc");
        micros(at.timestamp())
    }

    /// Unix µs of a local wall-clock time in `tz` (compatible resolution).
    fn local_us(tz: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> u64 {
        let tz = TimeZone::get(tz).expect("tz");
        micros(
            tz.to_zoned_datetime(date(y, mo, d).at(h, mi, 0, 0))
                .expect("local")
                .timestamp(),
        )
    }

    #[test]
    fn opened_across_a_day_with_hours() {
        let plan = plan("UTC", Some((8, 20)));
        let table: &[(i8, i8, u64)] = &[
            (0, 0, 0),
            (7, 59, 0),
            (8, 0, 4),
            (8, 59, 4),
            (9, 0, 8),
            (13, 30, 25),
            (18, 0, 45),
            (19, 0, 50),
            (19, 59, 50),
            (20, 0, 50),
            (23, 59, 50),
        ];
        for &(h, mi, expected) in table {
            let now = utc_us(2026, 12, 1, h, mi);
            assert_eq!(plan.opened(50, now), expected, "{h:02}:{mi:02}");
        }
        assert_eq!(plan.opened(0, utc_us(2026, 12, 1, 12, 0)), 0);
        assert_eq!(plan.opened(u64::MAX, utc_us(2026, 12, 1, 19, 0)), u64::MAX);
    }

    #[test]
    fn opened_without_hours_is_the_whole_cap() {
        let plan = plan("UTC", None);
        for (h, mi) in [(0, 0), (7, 59), (12, 0), (23, 59)] {
            assert_eq!(plan.opened(50, utc_us(2026, 12, 1, h, mi)), 50, "{h:02}:{mi:02}");
        }
    }

    #[test]
    fn in_hours_table() {
        let with = plan("UTC", Some((8, 20)));
        let without = plan("UTC", None);
        let table: &[(i8, i8, bool)] = &[
            (0, 0, false),
            (7, 59, false),
            (8, 0, true),
            (12, 0, true),
            (19, 59, true),
            (20, 0, false),
            (23, 59, false),
        ];
        for &(h, mi, expected) in table {
            let now = utc_us(2026, 12, 1, h, mi);
            assert_eq!(with.in_hours(now), expected, "{h:02}:{mi:02}");
            assert!(without.in_hours(now), "{h:02}:{mi:02} without hours");
        }
    }

    #[test]
    fn next_opening_table() {
        let with = plan("UTC", Some((8, 20)));
        let without = plan("UTC", None);
        // (plan, now, expected, case)
        let table: &[(&Plan, u64, u64, &str)] = &[
            (
                &with,
                utc_us(2026, 12, 1, 10, 30),
                utc_us(2026, 12, 1, 11, 0),
                "inside: next hour",
            ),
            (
                &with,
                utc_us(2026, 12, 1, 10, 0),
                utc_us(2026, 12, 1, 11, 0),
                "on an hour: the next",
            ),
            (
                &with,
                utc_us(2026, 12, 1, 18, 59),
                utc_us(2026, 12, 1, 19, 0),
                "last hour opens",
            ),
            (
                &with,
                utc_us(2026, 12, 1, 19, 30),
                utc_us(2026, 12, 2, 8, 0),
                "last hour: tomorrow",
            ),
            (
                &with,
                utc_us(2026, 12, 1, 20, 0),
                utc_us(2026, 12, 2, 8, 0),
                "at the end: tomorrow",
            ),
            (
                &with,
                utc_us(2026, 12, 1, 23, 59),
                utc_us(2026, 12, 2, 8, 0),
                "late: tomorrow",
            ),
            (
                &with,
                utc_us(2026, 12, 1, 3, 0),
                utc_us(2026, 12, 1, 8, 0),
                "before: today's start",
            ),
            (
                &with,
                utc_us(2026, 12, 1, 7, 59),
                utc_us(2026, 12, 1, 8, 0),
                "just before",
            ),
            (
                &without,
                utc_us(2026, 12, 1, 0, 0),
                utc_us(2026, 12, 2, 0, 0),
                "no hours: tomorrow",
            ),
            (
                &without,
                utc_us(2026, 12, 1, 13, 5),
                utc_us(2026, 12, 2, 0, 0),
                "no hours: midday",
            ),
            (
                &without,
                utc_us(2026, 12, 31, 23, 59),
                utc_us(2027, 1, 1, 0, 0),
                "new year",
            ),
        ];
        for &(plan, now, expected, case) in table {
            let got = plan.next_opening_us(now);
            assert_eq!(got, expected, "{case}");
            assert!(got > now, "{case}: strictly later");
        }
    }

    #[test]
    fn days_are_local() {
        let plan = plan("America/New_York", None);
        let table: &[(u64, Date, &str)] = &[
            (
                utc_us(2026, 12, 2, 3, 0),
                date(2026, 12, 1),
                "03:00 UTC is 22:00 the day before",
            ),
            (utc_us(2026, 12, 2, 4, 59), date(2026, 12, 1), "23:59 local"),
            (utc_us(2026, 12, 2, 5, 0), date(2026, 12, 2), "local midnight"),
            (utc_us(2026, 7, 2, 3, 59), date(2026, 7, 1), "summer: UTC-4"),
            (utc_us(2026, 7, 2, 4, 0), date(2026, 7, 2), "summer midnight"),
        ];
        for &(now, expected, case) in table {
            assert_eq!(plan.day_of(now), expected, "{case}");
        }
        assert_eq!(plan.day_start_us(date(2026, 12, 2)), utc_us(2026, 12, 2, 5, 0));
        assert_eq!(plan.day_start_us(date(2026, 7, 2)), utc_us(2026, 7, 2, 4, 0));
        let hours = crate::warmup::tests::plan("America/New_York", Some((8, 20)));
        assert_eq!(
            hours.opened(50, utc_us(2026, 12, 2, 3, 0)),
            50,
            "22:00 local: past the window"
        );
        assert!(!hours.in_hours(utc_us(2026, 12, 2, 3, 0)));
        assert_eq!(
            hours.next_opening_us(utc_us(2026, 12, 2, 3, 0)),
            utc_us(2026, 12, 2, 13, 0)
        );
    }

    #[test]
    fn spring_forward_in_new_york() {
        // 2026-03-08: 02:00 EST (07:00 UTC) jumps to 03:00 EDT; the day lasts 23 hours.
        let ny = "America/New_York";
        let plan = plan(ny, None);
        assert_eq!(plan.day_start_us(date(2026, 3, 8)), utc_us(2026, 3, 8, 5, 0));
        assert_eq!(plan.day_start_us(date(2026, 3, 9)), utc_us(2026, 3, 9, 4, 0));
        assert_eq!(
            plan.next_hour_us(local_us(ny, 2026, 3, 8, 1, 30)),
            utc_us(2026, 3, 8, 7, 0),
            "01:30 EST → 03:00 EDT"
        );
        assert_eq!(
            plan.next_hour_us(utc_us(2026, 3, 8, 7, 0)),
            utc_us(2026, 3, 8, 8, 0)
        );
        assert_eq!(
            plan.next_opening_us(utc_us(2026, 3, 8, 12, 0)),
            utc_us(2026, 3, 9, 4, 0)
        );
        // A window from 02:00: that day's 02:00 does not exist and resolves forward to 03:00 EDT.
        let from_two = crate::warmup::tests::plan(ny, Some((2, 20)));
        let evening = local_us(ny, 2026, 3, 7, 23, 30);
        assert_eq!(from_two.next_opening_us(evening), utc_us(2026, 3, 8, 7, 0));
        // 01:30 EST, window 02-04: the next hour is 03:00 EDT, inside the window.
        let two_four = crate::warmup::tests::plan(ny, Some((2, 4)));
        assert_eq!(
            two_four.next_opening_us(local_us(ny, 2026, 3, 8, 1, 30)),
            utc_us(2026, 3, 8, 7, 0)
        );
        // The whole day as the window: the 23-hour day still opens the full cap by its end.
        let all_day = crate::warmup::tests::plan(ny, Some((0, 24)));
        assert_eq!(all_day.opened(50, local_us(ny, 2026, 3, 8, 23, 30)), 50);
        assert_eq!(
            all_day.opened(50, local_us(ny, 2026, 3, 8, 3, 0)),
            8,
            "03:00: four hours open"
        );
        assert_eq!(
            all_day.next_opening_us(local_us(ny, 2026, 3, 8, 23, 30)),
            plan.day_start_us(date(2026, 3, 9)),
            "the last hour's next is the new day's first"
        );
    }

    #[test]
    fn fall_back_in_new_york() {
        // 2026-11-01: 02:00 EDT (06:00 UTC) falls back to 01:00 EST; the day lasts 25 hours.
        let plan = plan("America/New_York", None);
        assert_eq!(plan.day_start_us(date(2026, 11, 1)), utc_us(2026, 11, 1, 4, 0));
        assert_eq!(plan.day_start_us(date(2026, 11, 2)), utc_us(2026, 11, 2, 5, 0));
        let table: &[(u64, u64, &str)] = &[
            (
                utc_us(2026, 11, 1, 5, 30),
                utc_us(2026, 11, 1, 6, 0),
                "01:30 EDT → 01:00 EST",
            ),
            (
                utc_us(2026, 11, 1, 6, 30),
                utc_us(2026, 11, 1, 7, 0),
                "01:30 EST → 02:00 EST",
            ),
            (
                utc_us(2026, 11, 1, 4, 0),
                utc_us(2026, 11, 1, 5, 0),
                "midnight → 01:00 EDT",
            ),
        ];
        for &(now, expected, case) in table {
            assert_eq!(plan.next_hour_us(now), expected, "{case}");
        }
        assert_eq!(
            plan.next_opening_us(utc_us(2026, 11, 1, 5, 30)),
            utc_us(2026, 11, 2, 5, 0)
        );
        assert_eq!(
            plan.day_of(utc_us(2026, 11, 2, 4, 59)),
            date(2026, 11, 1),
            "25th hour"
        );
        // The repeated hour 01 opens its share once: the same amount both times.
        let all_day = crate::warmup::tests::plan("America/New_York", Some((0, 24)));
        let first = all_day.opened(48, utc_us(2026, 11, 1, 5, 30));
        assert_eq!(first, 4);
        assert_eq!(all_day.opened(48, utc_us(2026, 11, 1, 6, 30)), first);
        assert_eq!(
            all_day.next_opening_us(utc_us(2026, 11, 1, 5, 30)),
            utc_us(2026, 11, 1, 6, 0)
        );
        assert_eq!(all_day.opened(48, utc_us(2026, 11, 2, 4, 30)), 48, "23:30 EST");
    }

    #[test]
    fn a_day_without_midnight_starts_at_its_first_instant() {
        // Brazil 2015-10-18: 00:00 jumped to 01:00 (-03:00 → -02:00).
        let plan = plan("America/Sao_Paulo", None);
        assert_eq!(plan.day_start_us(date(2015, 10, 18)), utc_us(2015, 10, 18, 3, 0));
        assert_eq!(plan.day_of(utc_us(2015, 10, 18, 3, 0)), date(2015, 10, 18));
        assert_eq!(
            plan.next_opening_us(utc_us(2015, 10, 17, 12, 0)),
            utc_us(2015, 10, 18, 3, 0)
        );
    }

    #[test]
    fn extremes_do_not_panic() {
        let plan = plan("America/New_York", Some((8, 20)));
        for now in [0, 1, u64::MAX / 2, u64::MAX] {
            let _ = plan.day_of(now);
            let _ = plan.opened(10, now);
            let _ = plan.in_hours(now);
            assert!(plan.next_hour_us(now) >= now);
            assert!(plan.next_opening_us(now) > now || now == u64::MAX);
        }
    }
}
