//! A message rate: how many messages per second a ready queue may send.
//!
//! A `Rate` is always finite and strictly positive, so every derived value (the emission interval, a
//! scaled rate) is defined; "no limit" is expressed by the caller as `Option<Rate>::None`, never as an
//! infinite or zero rate.

/// Microseconds in a second, as a float for rate arithmetic.
const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// A finite, strictly positive number of messages per second.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Rate {
    /// Messages per second; finite and > 0 by construction, so intervals and scaling never divide by 0.
    per_second: f64,
}

impl Rate {
    /// One message a minute: the default floor of the adaptive slow-down.
    pub const ONE_PER_MINUTE: Rate = Rate {
        per_second: 1.0 / 60.0,
    };

    /// A rate of `per_second` messages per second; `None` unless it is finite and > 0.
    ///
    /// (The constructor cannot be called `per_second` like the getter: Rust has one namespace for both.)
    pub fn try_new(per_second: f64) -> Option<Rate> {
        (per_second.is_finite() && per_second > 0.0).then_some(Rate { per_second })
    }

    /// `count` messages per `per_us` microseconds (a config spec such as "100/h" is `new(100, 3_600_000_000)`);
    /// `None` when either is 0.
    pub fn new(count: u64, per_us: u64) -> Option<Rate> {
        if count == 0 || per_us == 0 {
            return None;
        }
        Rate::try_new(count as f64 * MICROS_PER_SECOND / per_us as f64)
    }

    /// Messages per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// The emission interval: microseconds between two evenly spaced sends, rounded, at least 1.
    ///
    /// The rounding error is at most half a microsecond per send, so the long-run rate is exact to
    /// 0.05 % up to 1,000 messages per second.
    pub fn interval_us(&self) -> u64 {
        // `as` saturates: a tiny rate gives u64::MAX, never a panic.
        ((MICROS_PER_SECOND / self.per_second).round() as u64).max(1)
    }

    /// This rate multiplied by `factor`.
    ///
    /// A `factor` that is not finite or not > 0 leaves the rate unchanged (it cannot express a rate); a
    /// product that overflows stays at the largest finite rate and one that underflows to 0 becomes the
    /// smallest positive one, so the result is always a valid `Rate`.
    pub fn scaled(&self, factor: f64) -> Rate {
        if !factor.is_finite() || factor <= 0.0 {
            return *self;
        }
        let product = self.per_second * factor;
        let per_second = if product.is_infinite() {
            f64::MAX
        } else if product <= 0.0 {
            f64::MIN_POSITIVE
        } else {
            product
        };
        Rate { per_second }
    }

    /// The lower of two rates.
    pub fn min(self, other: Rate) -> Rate {
        if other.per_second < self.per_second {
            other
        } else {
            self
        }
    }

    /// The higher of two rates.
    pub fn max(self, other: Rate) -> Rate {
        if other.per_second > self.per_second {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_table() {
        // (input per second, valid?)
        let table: &[(f64, bool)] = &[
            (1.0, true),
            (0.001, true),
            (1e12, true),
            (0.0, false),
            (-1.0, false),
            (f64::NAN, false),
            (f64::INFINITY, false),
            (f64::NEG_INFINITY, false),
        ];
        for &(input, valid) in table {
            assert_eq!(Rate::try_new(input).is_some(), valid, "try_new({input})");
        }
        // (count, per_us, expected per second)
        let table: &[(u64, u64, Option<f64>)] = &[
            (60, 60_000_000, Some(1.0)),
            (100, 3_600_000_000, Some(100.0 / 3600.0)),
            (1, 1, Some(1_000_000.0)),
            (0, 1_000_000, None),
            (5, 0, None),
            (u64::MAX, 1, Some(u64::MAX as f64 * 1e6)),
            (1, u64::MAX, Some(1e6 / u64::MAX as f64)),
        ];
        for &(count, per_us, expected) in table {
            assert_eq!(
                Rate::new(count, per_us).map(|r| r.per_second()),
                expected,
                "new({count}, {per_us})"
            );
        }
    }

    #[test]
    fn interval_table() {
        // (per second, interval µs)
        let table: &[(f64, u64)] = &[
            (1.0, 1_000_000),
            (1.0 / 60.0, 60_000_000),
            (3.0, 333_333),
            (1_000.0, 1_000),
            (2_000_000.0, 1),   // rounds to 1 (0.5 rounds away from 0)
            (1e12, 1),          // never 0
            (1e-300, u64::MAX), // saturates
        ];
        for &(per_second, interval) in table {
            let rate = Rate::try_new(per_second).expect("valid rate");
            assert_eq!(rate.interval_us(), interval, "{per_second}/s");
        }
    }

    #[test]
    fn scaling_table() {
        let one = Rate::try_new(1.0).expect("valid");
        // (factor, expected per second)
        let table: &[(f64, f64)] = &[
            (0.5, 0.5),
            (2.0, 2.0),
            (0.0, 1.0),
            (-3.0, 1.0),
            (f64::NAN, 1.0),
            (f64::INFINITY, 1.0),
            (f64::MAX, f64::MAX),
        ];
        for &(factor, expected) in table {
            assert_eq!(one.scaled(factor).per_second(), expected, "× {factor}");
        }
        let big = Rate::try_new(f64::MAX).expect("valid");
        assert_eq!(big.scaled(10.0).per_second(), f64::MAX);
        let tiny = Rate::try_new(f64::MIN_POSITIVE).expect("valid");
        assert!(tiny.scaled(1e-300).per_second() > 0.0);
        assert_eq!(one.min(big), one);
        assert_eq!(one.max(big), big);
    }
}
