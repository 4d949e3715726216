//! Time as a dependency. Delivery, shaping, suspensions and retries read a [`Clock`] passed in, never
//! the wall clock, so that an hour of rate limits or a day-long suspension is tested in seconds with a
//! [`ManualClock`] while production runs on the [`SystemClock`].
//!
//! A clock answers two questions: what time it is ([`Clock::now`]), and "wake me at t"
//! ([`Clock::sleep_until`]). The scheduler arms one such sleep for its earliest timer; it never polls.
//! Network timeouts (connect, SMTP replies) are not decisions: they stay on tokio's real time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A boxed future of a clock's sleep.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The time source of delivery decisions.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Completes once [`Clock::now`] has reached `deadline` (at once if it already has).
    fn sleep_until(&self, deadline: SystemTime) -> Sleep;

    /// The current time as unix microseconds (the unit of `penguin_policy::shaping`).
    fn now_us(&self) -> u64 {
        unix_micros(self.now())
    }

    /// The current time as unix milliseconds (the unit of envelopes and events).
    fn now_ms(&self) -> u64 {
        self.now_us() / 1000
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// Unix microseconds of `time` (0 before the epoch).
pub fn unix_micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
    })
}

/// The time `micros` after the epoch.
pub fn from_unix_micros(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

/// The operating system's clock; sleeps are tokio timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        let wait = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`], [`ManualClock::set`]); every sleep
/// whose deadline is reached completes at that moment. For tests: a simulated hour takes no real time.
#[derive(Debug)]
pub struct ManualClock {
    /// The current time; sleepers watch it.
    now: watch::Sender<SystemTime>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: SystemTime) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: watch::Sender::new(start),
        })
    }

    /// A clock standing at the real current time (so that envelopes written by reception and the
    /// clock's view agree).
    pub fn starting_now() -> Arc<ManualClock> {
        ManualClock::new(SystemTime::now())
    }

    /// Moves the clock forward by `by`, waking every sleep that is now due.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }

    /// Sets the clock to `to` (never backwards: an earlier time is ignored).
    pub fn set(&self, to: SystemTime) {
        self.now.send_if_modified(|now| {
            let later = to > *now;
            if later {
                *now = to;
            }
            later
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        let mut time = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, nothing will ever wake us.
            if time.wait_for(|now| *now >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip() {
        let time = UNIX_EPOCH + Duration::from_micros(1_733_000_000_123_456);
        assert_eq!(from_unix_micros(unix_micros(time)), time);
        assert_eq!(unix_micros(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[tokio::test]
    async fn a_manual_sleep_completes_when_the_clock_reaches_its_deadline() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(100));
        let deadline = clock.now() + Duration::from_secs(3600);
        let mut sleep = clock.sleep_until(deadline);
        clock.advance(Duration::from_secs(3599));
        assert!(
            futures_util::poll!(&mut sleep).is_pending(),
            "a second before the deadline"
        );
        clock.advance(Duration::from_secs(1));
        sleep.await;
        assert_eq!(clock.now_ms(), 3_700_000);
    }

    #[tokio::test]
    async fn a_past_deadline_completes_at_once_and_the_clock_never_goes_back() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(10));
        clock.sleep_until(UNIX_EPOCH).await;
        clock.set(UNIX_EPOCH + Duration::from_secs(5));
        assert_eq!(clock.now_us(), 10_000_000);
    }
}
