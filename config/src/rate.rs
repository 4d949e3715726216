//! Message rates written as `"50/s"`, `"500/min"`, `"3000/h"`, `"20000/d"`, and the two small value
//! types of shaping rules that need hand-written serde: [`Factor`] (a float, but `Config` is `Eq`) and
//! [`RuleTrigger`] (`"immediate"` or a rate).
//!
//! Parsing is a pure function (`FromStr`) so it can be table-tested; `Display` writes the same form back
//! and `parse(display(x)) == x` for every parsed value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// `count` messages per `per`: a limit that is spread evenly over the period (GCRA, no burst), so
/// `"60/min"` means one message a second, not sixty at the top of each minute.
///
/// Written in the config as `"N/s"`, `"N/min"`, `"N/h"` or `"N/d"` with N ≥ 1 (spaces around the parts are
/// tolerated). A rate of 0 is refused: stopping is a suspension, not a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageRate {
    /// Messages allowed per period; at least 1 for every parsed value.
    pub count: u64,
    /// The period: one second, minute, hour or day for every parsed value.
    pub per: Duration,
}

/// The accepted periods, in the order `Display` prefers them (the unit whose length equals `per`).
const RATE_UNITS: &[(&str, Duration)] = &[
    ("s", Duration::from_secs(1)),
    ("min", Duration::from_secs(60)),
    ("h", Duration::from_secs(3_600)),
    ("d", Duration::from_secs(86_400)),
];

/// The shape of a valid rate, repeated in every rate error.
pub(crate) const RATE_EXPECTED: &str = "expected N/s, N/min, N/h or N/d";

impl MessageRate {
    /// `count` messages a second.
    pub const fn per_sec(count: u64) -> Self {
        MessageRate {
            count,
            per: Duration::from_secs(1),
        }
    }

    /// `count` messages a minute.
    pub const fn per_min(count: u64) -> Self {
        MessageRate {
            count,
            per: Duration::from_secs(60),
        }
    }

    /// `count` messages an hour.
    pub const fn per_hour(count: u64) -> Self {
        MessageRate {
            count,
            per: Duration::from_secs(3_600),
        }
    }

    /// `count` messages a day.
    pub const fn per_day(count: u64) -> Self {
        MessageRate {
            count,
            per: Duration::from_secs(86_400),
        }
    }

    /// Messages per second (`count / per`). Infinite only for a hand-built value with a zero period.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.per.as_secs_f64()
    }

    /// The emission interval: the time between two evenly spaced messages (`per / count`, rounded down
    /// to the nanosecond, at least 1 ns so a caller never divides by or waits for zero).
    pub fn interval(&self) -> Duration {
        let nanos = self.per.as_nanos() / u128::from(self.count.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX).max(1))
    }
}

impl FromStr for MessageRate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid rate {text:?}: {why}");
        let trimmed = text.trim();
        if trimmed.starts_with('-') {
            return Err(invalid("must not be negative"));
        }
        let Some((count, unit)) = trimmed.split_once('/') else {
            return Err(invalid(RATE_EXPECTED));
        };
        let (count, unit) = (count.trim_end(), unit.trim_start());
        let digits = !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit());
        let per = RATE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, per)| per)
            .filter(|_| digits);
        let Some(per) = per else {
            return Err(invalid(RATE_EXPECTED));
        };
        let count: u64 = count
            .parse()
            .map_err(|_| invalid("the count is too large (the limit is 18446744073709551615)"))?;
        if count == 0 {
            return Err(invalid(
                "the count must be at least 1 (to stop sending, use a suspension)",
            ));
        }
        Ok(MessageRate { count, per })
    }
}

impl fmt::Display for MessageRate {
    /// `N/s|min|h|d`; a hand-built period that is none of these is written as a duration (`"3/7s"`),
    /// which is readable but not parseable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match RATE_UNITS.iter().find(|(_, per)| *per == self.per) {
            Some((unit, _)) => write!(f, "{}/{unit}", self.count),
            None => write!(f, "{}/{}", self.count, crate::spec::HumanDuration(self.per)),
        }
    }
}

impl Serialize for MessageRate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MessageRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RateVisitor)
    }
}

struct RateVisitor;

impl Visitor<'_> for RateVisitor {
    type Value = MessageRate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a rate such as \"50/s\" or \"500/min\" ({RATE_EXPECTED})")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<MessageRate, E> {
        Err(E::custom(format!(
            "invalid rate {value}: a period is required, e.g. \"{value}/min\" ({RATE_EXPECTED})"
        )))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<MessageRate, E> {
        Err(E::custom(format!(
            "invalid rate {value}: a period is required ({RATE_EXPECTED})"
        )))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<MessageRate, E> {
        value.parse().map_err(E::custom)
    }
}

/// A multiplier of a `reduce` rule, a TOML float such as `0.5`. A newtype because `Config` is `Eq`:
/// equality is bit equality. Validation keeps it strictly between 0 and 1.
#[derive(Clone, Copy, Debug)]
pub struct Factor(pub f64);

impl Factor {
    /// The multiplier.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Factor {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Factor {}

impl Serialize for Factor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FactorVisitor;
        impl Visitor<'_> for FactorVisitor {
            type Value = Factor;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number between 0 and 1, such as 0.5")
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Factor, E> {
                Ok(Factor(value))
            }
            // Whole numbers are never valid factors, but validation says why with the other errors.
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Factor, E> {
                Ok(Factor(value as f64))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Factor, E> {
                Ok(Factor(value as f64))
            }
        }
        deserializer.deserialize_any(FactorVisitor)
    }
}

/// When a shaping rule fires: on the first matching reply, or once N replies matched within a period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RuleTrigger {
    /// `"immediate"`: the first matching reply fires the action.
    #[default]
    Immediate,
    /// `"N/s|min|h|d"`: N matching replies within the period (per lane) fire the action. N ≤ 10000.
    Count(MessageRate),
}

/// What a trigger may be (serde prefixes its own "expected").
const TRIGGER_SHAPE: &str =
    "\"immediate\" or N matches within a period as N/s, N/min, N/h or N/d (e.g. \"3/h\")";

impl FromStr for RuleTrigger {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim() == "immediate" {
            return Ok(RuleTrigger::Immediate);
        }
        if !text.contains('/') {
            return Err(format!("invalid trigger {text:?}: expected {TRIGGER_SHAPE}"));
        }
        text.parse().map(RuleTrigger::Count)
    }
}

impl fmt::Display for RuleTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleTrigger::Immediate => f.write_str("immediate"),
            RuleTrigger::Count(rate) => rate.fmt(f),
        }
    }
}

impl Serialize for RuleTrigger {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RuleTrigger {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TriggerVisitor;
        impl Visitor<'_> for TriggerVisitor {
            type Value = RuleTrigger;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(TRIGGER_SHAPE)
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RuleTrigger, E> {
                value.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TriggerVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn rates_accept_the_four_periods() {
        let table: &[(&str, u64, Duration)] = &[
            ("50/s", 50, Duration::from_secs(1)),
            ("500/min", 500, MIN),
            ("3000/h", 3000, Duration::from_secs(3600)),
            ("20000/d", 20_000, Duration::from_secs(86_400)),
            ("1/min", 1, MIN),
            (" 100 / min ", 100, MIN),
            ("100/ min", 100, MIN),
            ("007/s", 7, Duration::from_secs(1)),
            ("18446744073709551615/s", u64::MAX, Duration::from_secs(1)),
        ];
        for &(text, count, per) in table {
            assert_eq!(text.parse(), Ok(MessageRate { count, per }), "{text:?}");
        }
    }

    #[test]
    fn rates_refuse_other_forms_with_a_reason() {
        let table: &[(&str, &str)] = &[
            (
                "3000/hour",
                "invalid rate \"3000/hour\": expected N/s, N/min, N/h or N/d",
            ),
            ("0/s", "at least 1 (to stop sending, use a suspension)"),
            ("-5/s", "must not be negative"),
            ("", RATE_EXPECTED),
            ("50", RATE_EXPECTED),
            ("/s", RATE_EXPECTED),
            ("50/", RATE_EXPECTED),
            ("50/m", RATE_EXPECTED),
            ("50/sec", RATE_EXPECTED),
            ("50/minute", RATE_EXPECTED),
            ("50/H", RATE_EXPECTED),
            ("50/5min", RATE_EXPECTED),
            ("1.5/s", RATE_EXPECTED),
            ("+5/s", RATE_EXPECTED),
            ("5 0/s", RATE_EXPECTED),
            ("50/s/s", RATE_EXPECTED),
            ("18446744073709551616/s", "too large"),
        ];
        for &(text, want) in table {
            let err = text.parse::<MessageRate>().expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.starts_with("invalid rate"), "{text:?}: {err}");
        }
    }

    #[test]
    fn rate_display_round_trips() {
        for text in [
            "50/s",
            "500/min",
            "3000/h",
            "20000/d",
            "1/min",
            "18446744073709551615/d",
        ] {
            let rate: MessageRate = text.parse().expect(text);
            assert_eq!(rate.to_string(), text);
            assert_eq!(rate.to_string().parse(), Ok(rate));
        }
        assert_eq!(
            " 7 /h".parse::<MessageRate>().map(|r| r.to_string()),
            Ok("7/h".into())
        );
        let odd = MessageRate {
            count: 3,
            per: Duration::from_secs(7),
        };
        assert_eq!(odd.to_string(), "3/7s");
    }

    #[test]
    fn rate_arithmetic() {
        assert_eq!(MessageRate::per_min(60).per_second(), 1.0);
        assert_eq!(MessageRate::per_sec(50).per_second(), 50.0);
        assert_eq!(MessageRate::per_hour(3600).interval(), Duration::from_secs(1));
        assert_eq!(MessageRate::per_sec(50).interval(), Duration::from_millis(20));
        assert_eq!(MessageRate::per_min(1).interval(), MIN);
        assert_eq!(MessageRate::per_day(1).interval(), Duration::from_secs(86_400));
        assert_eq!(
            MessageRate::per_sec(3).interval(),
            Duration::from_nanos(333_333_333)
        );
        assert_eq!(MessageRate::per_sec(u64::MAX).interval(), Duration::from_nanos(1));
        let zero = MessageRate { count: 0, per: MIN };
        assert_eq!(zero.interval(), MIN);
    }

    #[test]
    fn triggers_are_immediate_or_a_count() {
        assert_eq!("immediate".parse(), Ok(RuleTrigger::Immediate));
        assert_eq!(" 3/h".parse(), Ok(RuleTrigger::Count(MessageRate::per_hour(3))));
        assert_eq!(RuleTrigger::Count(MessageRate::per_min(2)).to_string(), "2/min");
        assert_eq!(RuleTrigger::default().to_string(), "immediate");
        let err = "soon".parse::<RuleTrigger>().expect_err("soon");
        assert!(err.contains("expected \"immediate\""), "{err}");
        let err = "3/hour".parse::<RuleTrigger>().expect_err("3/hour");
        assert!(err.contains(RATE_EXPECTED), "{err}");
    }

    #[test]
    fn factors_compare_by_bits() {
        assert_eq!(Factor(0.5), Factor(0.5));
        assert_ne!(Factor(0.5), Factor(0.25));
        assert_eq!(Factor(f64::NAN), Factor(f64::NAN));
        assert_eq!(Factor(0.5).get(), 0.5);
    }
}
