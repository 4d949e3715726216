//! Lockout of clients that keep failing SMTP AUTH (password guessing).
//!
//! A client (an IPv4 address, or an IPv6 /64 since one host owns a whole /64) that fails
//! `limit` times within `window` is locked out for `lockout`: every connection and AUTH from it
//! gets 421 and a disconnect until the lockout ends. Success does not reset the count, so a valid
//! account cannot be used to keep guessing another one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The thresholds of the lockout, from `[smtp] auth_failure_limit/window` and `auth_lockout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthThrottleRule {
    /// Failures tolerated within `window`; the failure that reaches it starts the lockout.
    pub limit: u32,
    /// The span over which failures are counted (a fixed window starting at the first failure).
    pub window: Duration,
    /// How long a client stays locked out once it reached the limit.
    pub lockout: Duration,
}

/// What the server should do with a client right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// Go on: AUTH may be attempted.
    Allow,
    /// Refuse with 421 and disconnect until this instant.
    LockedOut {
        /// When the lockout ends.
        until: Instant,
    },
}

/// Failure history of one client key.
#[derive(Clone, Copy, Debug)]
struct ClientRecord {
    /// Start of the current counting window.
    window_start: Instant,
    /// Failures counted in the current window.
    failures: u32,
    /// Set once the client reached the limit.
    locked_until: Option<Instant>,
}

/// Failure counts per client. A value: the caller owns it (behind a mutex) and passes `now`.
#[derive(Debug)]
pub struct AuthThrottle {
    /// The thresholds.
    rule: AuthThrottleRule,
    /// Records of clients with failures in their window or an active lockout.
    clients: HashMap<IpAddr, ClientRecord>,
    /// Bound on `clients`: past it, stale records are pruned before a new one is added.
    max_tracked: usize,
}

impl AuthThrottle {
    /// A throttle with no history, tracking at most `max_tracked` clients at once.
    pub fn new(rule: AuthThrottleRule, max_tracked: usize) -> AuthThrottle {
        AuthThrottle {
            rule,
            clients: HashMap::new(),
            max_tracked: max_tracked.max(1),
        }
    }

    /// Whether `ip` may try to authenticate at `now`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> ThrottleDecision {
        match self
            .clients
            .get(&client_key(ip))
            .and_then(|record| record.locked_until)
        {
            Some(until) if now < until => ThrottleDecision::LockedOut { until },
            _ => ThrottleDecision::Allow,
        }
    }

    /// Counts one failed AUTH from `ip` at `now` and says whether the client is now locked out.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> ThrottleDecision {
        let key = client_key(ip);
        if !self.clients.contains_key(&key) && self.clients.len() >= self.max_tracked {
            self.prune(now);
        }
        let rule = self.rule;
        let record = self.clients.entry(key).or_insert(ClientRecord {
            window_start: now,
            failures: 0,
            locked_until: None,
        });
        let lockout_over = record.locked_until.is_some_and(|until| now >= until);
        let window_over = now.saturating_duration_since(record.window_start) >= rule.window;
        if lockout_over || (record.locked_until.is_none() && window_over) {
            *record = ClientRecord {
                window_start: now,
                failures: 0,
                locked_until: None,
            };
        }
        record.failures = record.failures.saturating_add(1);
        if record.failures >= rule.limit && record.locked_until.is_none() {
            record.locked_until = Some(now + rule.lockout);
        }
        match record.locked_until {
            Some(until) => ThrottleDecision::LockedOut { until },
            None => ThrottleDecision::Allow,
        }
    }

    /// Number of clients with a record (for metrics and the memory bound's test).
    pub fn tracked_clients(&self) -> usize {
        self.clients.len()
    }

    /// Drops records whose window and lockout are both over; if none is stale, the oldest window goes.
    fn prune(&mut self, now: Instant) {
        let rule = self.rule;
        self.clients.retain(|_, record| match record.locked_until {
            Some(until) => now < until,
            None => now.saturating_duration_since(record.window_start) < rule.window,
        });
        if self.clients.len() >= self.max_tracked {
            let oldest = self
                .clients
                .iter()
                .min_by_key(|(_, record)| record.window_start)
                .map(|(key, _)| *key);
            if let Some(key) = oldest {
                self.clients.remove(&key);
            }
        }
    }
}

/// The key failures are counted under: the IPv4 address, or the /64 of an IPv6 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: AuthThrottleRule = AuthThrottleRule {
        limit: 3,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(300),
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn table_of_failures_and_decisions() {
        let t0 = Instant::now();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        // (seconds after t0, true = record a failure / false = only check, expected lock end in secs)
        let steps: &[(u64, bool, Option<u64>)] = &[
            (0, true, None),
            (10, true, None),
            (11, false, None),
            (20, true, Some(320)), // third failure within 60 s: locked for 300 s
            (100, false, Some(320)),
            (319, false, Some(320)),
            (320, false, None), // lockout over
            (321, true, None),  // counting starts afresh
        ];
        let mut throttle = AuthThrottle::new(RULE, 100);
        let client = ip("192.0.2.7");
        for &(at, fail, expected) in steps {
            let decision = if fail {
                throttle.record_failure(client, secs(at))
            } else {
                throttle.check(client, secs(at))
            };
            let expected = expected.map_or(ThrottleDecision::Allow, |end| ThrottleDecision::LockedOut {
                until: secs(end),
            });
            assert_eq!(decision, expected, "at {at}s (failure: {fail})");
        }
    }

    #[test]
    fn failures_spread_beyond_the_window_never_lock() {
        let t0 = Instant::now();
        let mut throttle = AuthThrottle::new(RULE, 100);
        let client = ip("192.0.2.8");
        for step in 0..10u64 {
            let decision = throttle.record_failure(client, t0 + Duration::from_secs(step * 31));
            assert_eq!(decision, ThrottleDecision::Allow, "failure {step}");
        }
    }

    #[test]
    fn clients_are_counted_separately_and_ipv6_by_slash_64() {
        let t0 = Instant::now();
        let mut throttle = AuthThrottle::new(RULE, 100);
        for n in 0..3 {
            throttle.record_failure(ip(&format!("2001:db8:1:2::{n}")), t0);
        }
        assert!(matches!(
            throttle.check(ip("2001:db8:1:2::ffff"), t0),
            ThrottleDecision::LockedOut { .. }
        ));
        assert_eq!(throttle.check(ip("2001:db8:1:3::1"), t0), ThrottleDecision::Allow);
        assert_eq!(throttle.check(ip("192.0.2.1"), t0), ThrottleDecision::Allow);
        throttle.record_failure(ip("::ffff:192.0.2.1"), t0);
        assert_eq!(
            throttle.tracked_clients(),
            2,
            "mapped IPv4 counts under the IPv4 address"
        );
    }

    #[test]
    fn tracked_clients_stay_bounded() {
        let t0 = Instant::now();
        let mut throttle = AuthThrottle::new(RULE, 10);
        for n in 0..1000u32 {
            throttle.record_failure(IpAddr::V4(n.into()), t0 + Duration::from_millis(u64::from(n)));
        }
        assert!(throttle.tracked_clients() <= 10);
    }
}
