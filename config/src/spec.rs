//! Human-readable specs used in the config file: sizes (`"25MB"`) and durations (`"1h30m"`).
//!
//! Parsing is a pure function (`FromStr`) so it can be table-tested; the serde impls only adapt it.
//! `Display` writes the same human form back, and `parse(display(x)) == x` for every value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A number of bytes, written in the config as `"25MB"`, `"64KiB"`, `"100B"` or a plain integer.
///
/// KB/MB/GB are decimal (1000-based, as mail size limits are usually quoted); KiB/MiB/GiB are binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Units accepted by [`ByteSize`], matched case-insensitively. Ordered for `Display`: the first unit
/// that divides a value exactly is used, preferring decimal units.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("GB", 1_000_000_000),
    ("GiB", 1 << 30),
    ("MB", 1_000_000),
    ("MiB", 1 << 20),
    ("KB", 1_000),
    ("KiB", 1 << 10),
    ("B", 1),
];

const SIZE_EXPECTED: &str = "expected a number followed by B, KB, MB, GB, KiB, MiB or GiB";

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid size {text:?}: {why}");
        let trimmed = text.trim();
        if trimmed.starts_with('-') {
            return Err(invalid("must not be negative"));
        }
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(digits_end);
        if digits.is_empty() {
            return Err(invalid(SIZE_EXPECTED));
        }
        let unit = unit.trim_start();
        let multiplier = if unit.is_empty() {
            1
        } else {
            match SIZE_UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            {
                Some(&(_, multiplier)) => multiplier,
                None => return Err(invalid(SIZE_EXPECTED)),
            }
        };
        let too_large = || invalid("too large (the limit is 18446744073709551615 bytes)");
        let number: u64 = digits.parse().map_err(|_| too_large())?;
        number.checked_mul(multiplier).map(ByteSize).ok_or_else(too_large)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        let (name, multiplier) = SIZE_UNITS
            .iter()
            .copied()
            .find(|&(_, multiplier)| bytes != 0 && bytes.is_multiple_of(multiplier))
            .unwrap_or(("B", 1));
        write!(f, "{}{name}", bytes / multiplier)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a size such as \"25MB\" or a number of bytes ({SIZE_EXPECTED})"
        )
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<ByteSize, E> {
        u64::try_from(value)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("invalid size {value}: must not be negative")))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ByteSize, E> {
        value.parse().map_err(E::custom)
    }
}

/// A span of time, written in the config as `"30s"`, `"5m"`, `"1h30m"`, `"250ms"` or `"3d"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Shorthand for whole seconds, used by `Default` impls.
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }
}

impl From<Duration> for HumanDuration {
    fn from(duration: Duration) -> Self {
        HumanDuration(duration)
    }
}

/// Units accepted by [`HumanDuration`] (case-sensitive: `m` is minutes, `ms` milliseconds), largest first
/// so `Display` writes the canonical compound form. `us`/`ns` exist so every `Duration` round-trips.
const DURATION_UNITS: &[(&str, Duration)] = &[
    ("d", Duration::from_secs(86_400)),
    ("h", Duration::from_secs(3_600)),
    ("m", Duration::from_secs(60)),
    ("s", Duration::from_secs(1)),
    ("ms", Duration::from_millis(1)),
    ("us", Duration::from_micros(1)),
    ("ns", Duration::from_nanos(1)),
];

const DURATION_EXPECTED: &str =
    "expected a number followed by a unit (ms, s, m, h, d), e.g. \"30s\", \"5m\" or \"1h30m\"";

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid duration {text:?}: {why}");
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(invalid(DURATION_EXPECTED));
        }
        if rest.starts_with('-') {
            return Err(invalid("must not be negative"));
        }
        let too_long = || invalid("too long");
        let mut total_nanos: u128 = 0;
        while !rest.is_empty() {
            let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            let (digits, after) = rest.split_at(digits_end);
            let after = after.trim_start();
            let unit_end = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_end);
            let Some(&(_, per_unit)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
                return Err(invalid(DURATION_EXPECTED));
            };
            if digits.is_empty() {
                return Err(invalid(DURATION_EXPECTED));
            }
            let count: u64 = digits.parse().map_err(|_| too_long())?;
            let part = u128::from(count)
                .checked_mul(per_unit.as_nanos())
                .ok_or_else(too_long)?;
            total_nanos = total_nanos.checked_add(part).ok_or_else(too_long)?;
            rest = after.trim_start();
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| too_long())?;
        // The remainder is below 1e9, so it always fits in u32.
        let nanos = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| too_long())?;
        Ok(HumanDuration(Duration::new(secs, nanos)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        let mut rest = self.0.as_nanos();
        for &(name, per_unit) in DURATION_UNITS {
            let per_unit = per_unit.as_nanos();
            let count = rest / per_unit;
            if count > 0 {
                write!(f, "{count}{name}")?;
                rest %= per_unit;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HumanDurationVisitor)
    }
}

struct HumanDurationVisitor;

impl Visitor<'_> for HumanDurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a duration string ({DURATION_EXPECTED})")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<HumanDuration, E> {
        Err(E::custom(format!(
            "invalid duration {value}: a unit is required ({DURATION_EXPECTED})"
        )))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<HumanDuration, E> {
        Err(E::custom(format!(
            "invalid duration {value}: a unit is required ({DURATION_EXPECTED})"
        )))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<HumanDuration, E> {
        value.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn byte_size_accepts_human_and_plain_forms() {
        let table: &[(&str, u64)] = &[
            ("25MB", 25_000_000),
            ("512KB", 512_000),
            ("1GB", 1_000_000_000),
            ("100B", 100),
            ("10MiB", 10 * KIB * KIB),
            ("64KiB", 64 * KIB),
            ("1GiB", KIB * KIB * KIB),
            ("12345", 12_345),
            ("0", 0),
            ("25 MB", 25_000_000),
            ("25mb", 25_000_000),
            ("64kib", 64 * KIB),
            (" 7 gib ", 7 * KIB * KIB * KIB),
            ("18446744073709551615", u64::MAX),
            ("18446744073709551615B", u64::MAX),
        ];
        for &(text, bytes) in table {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text:?}");
        }
    }

    #[test]
    fn byte_size_rejects_bad_forms_with_a_reason() {
        let table: &[(&str, &str)] = &[
            (
                "25XB",
                "invalid size \"25XB\": expected a number followed by B, KB, MB, GB, KiB, MiB or GiB",
            ),
            ("", "expected a number followed by"),
            ("MB", "expected a number followed by"),
            ("-5MB", "must not be negative"),
            ("-1", "must not be negative"),
            ("1.5MB", "expected a number followed by"),
            ("5 M B", "expected a number followed by"),
            ("5TB", "expected a number followed by"),
            ("18446744073709551616", "too large"),
            ("18446744073709551615KB", "too large"),
            ("99999999999999999999999GB", "too large"),
        ];
        for &(text, want) in table {
            let err = text.parse::<ByteSize>().expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn byte_size_display_round_trips() {
        let table: &[(u64, &str)] = &[
            (0, "0B"),
            (100, "100B"),
            (25_000_000, "25MB"),
            (10 * KIB * KIB, "10MiB"),
            (2048, "2KiB"),
            (1_000_000_000, "1GB"),
            (1_234_567, "1234567B"),
            (u64::MAX, "18446744073709551615B"),
        ];
        for &(bytes, text) in table {
            assert_eq!(ByteSize(bytes).to_string(), text);
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)));
        }
    }

    #[test]
    fn human_duration_accepts_units_and_compounds() {
        let table: &[(&str, Duration)] = &[
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("3d", Duration::from_secs(3 * 86_400)),
            ("250ms", Duration::from_millis(250)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("5 s", Duration::from_secs(5)),
            (
                "213503982334601d",
                Duration::from_secs(213_503_982_334_601 * 86_400),
            ),
            ("1m30s500ms", Duration::from_millis(90_500)),
            ("0s", Duration::ZERO),
            ("10us", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
        ];
        for &(text, duration) in table {
            assert_eq!(
                text.parse::<HumanDuration>(),
                Ok(HumanDuration(duration)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn human_duration_rejects_bad_forms_with_a_reason() {
        let table: &[(&str, &str)] = &[
            ("", "expected a number followed by a unit"),
            ("   ", "expected a number followed by a unit"),
            ("5", "expected a number followed by a unit"),
            ("5x", "expected a number followed by a unit"),
            ("s", "expected a number followed by a unit"),
            ("5M", "expected a number followed by a unit"),
            ("1h30", "expected a number followed by a unit"),
            ("1.5h", "expected a number followed by a unit"),
            ("-5s", "must not be negative"),
            ("5 x", "expected a number followed by a unit"),
            ("18446744073709551616s", "too long"),
            ("213503982334602d", "too long"),
        ];
        for &(text, want) in table {
            let err = text.parse::<HumanDuration>().expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.starts_with("invalid duration"), "{text:?}: {err}");
        }
    }

    #[test]
    fn human_duration_display_round_trips() {
        let table: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(86_400 + 1), "1d1s"),
            (Duration::from_millis(1250), "1s250ms"),
            (Duration::new(1, 1), "1s1ns"),
        ];
        for &(duration, text) in table {
            assert_eq!(HumanDuration(duration).to_string(), text);
            assert_eq!(text.parse::<HumanDuration>(), Ok(HumanDuration(duration)));
        }
        let max = HumanDuration(Duration::MAX);
        assert_eq!(max.to_string().parse::<HumanDuration>(), Ok(max));
    }
}
