//! Formatting of unix times as RFC 5322 dates (mail headers) and RFC 3339 timestamps (JSON), in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Calendar date and time of day in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    /// Year, e.g. 2026.
    year: i64,
    /// 1..=12.
    month: u32,
    /// 1..=31.
    day: u32,
    /// 0..=6, 0 = Sunday.
    weekday: u32,
    /// Seconds since midnight.
    seconds_of_day: u64,
}

impl Civil {
    /// The time of day as (hours, minutes, seconds).
    fn hours_minutes_seconds(&self) -> (u64, u64, u64) {
        (
            self.seconds_of_day / 3600,
            self.seconds_of_day / 60 % 60,
            self.seconds_of_day % 60,
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil(unix_seconds: u64) -> Civil {
    let days = (unix_seconds / 86_400) as i64;
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        weekday: ((days + 4).rem_euclid(7)) as u32,
        seconds_of_day: unix_seconds % 86_400,
    }
}

/// Seconds since the epoch (0 for times before it).
fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// `Wed, 25 Nov 2026 20:27:05 +0000` (RFC 5322 §3.3).
pub fn rfc5322(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(unix_seconds(time));
    let (h, m, s) = c.hours_minutes_seconds();
    format!(
        "{}, {} {} {} {h:02}:{m:02}:{s:02} +0000",
        DAYS[c.weekday as usize],
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year
    )
}

/// `2026-11-25T20:27:05.123Z` from unix milliseconds (RFC 3339).
pub fn rfc3339_millis(unix_millis: u64) -> String {
    let c = civil(unix_millis / 1000);
    let (h, m, s) = c.hours_minutes_seconds();
    format!(
        "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        unix_millis % 1000
    )
}

/// Milliseconds since the epoch.
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // (unix seconds, RFC 5322, RFC 3339)
        let cases = [
            (0, "Thu, 1 Jan 1970 00:00:00 +0000", "1970-01-01T00:00:00.000Z"),
            (
                951_782_400,
                "Tue, 29 Feb 2000 00:00:00 +0000",
                "2000-02-29T00:00:00.000Z",
            ),
            (
                1_795_638_425,
                "Wed, 25 Nov 2026 20:27:05 +0000",
                "2026-11-25T20:27:05.000Z",
            ),
            (
                4_102_444_799,
                "Thu, 31 Dec 2099 23:59:59 +0000",
                "2099-12-31T23:59:59.000Z",
            ),
        ];
        for (seconds, mail, json) in cases {
            assert_eq!(rfc5322(UNIX_EPOCH + Duration::from_secs(seconds)), mail);
            assert_eq!(rfc3339_millis(seconds * 1000), json);
        }
        assert_eq!(rfc3339_millis(1_795_638_425_042), "2026-11-25T20:27:05.042Z");
    }
}
