//! Counting rule matches until a [`Trigger`] fires.
//!
//! One counter per (rule, source, site) keeps the times of the matches still inside the trigger's
//! window: at most `hits` of them, so memory is bounded whatever the traffic (config validation bounds
//! `hits` to [`MAX_TRIGGER_HITS`]). When the `hits`-th match inside the window arrives, the action fires
//! and counting starts over, so a storm of matching replies fires once per `hits` matches, not on every
//! reply after the threshold.

use std::collections::VecDeque;

use super::rules::Trigger;

/// The largest `hits` a counter honours (config validation rejects more; a larger value counts as this).
pub const MAX_TRIGGER_HITS: u32 = 10_000;

/// Recent matches of one rule for one (source, site).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TriggerCounter {
    /// Times (µs) of the matches inside the window, oldest first; never more than `hits`.
    hits_us: VecDeque<u64>,
}

impl TriggerCounter {
    /// Counts one match at `now_us`; true when the action fires now.
    ///
    /// `Immediate` always fires. `Count { hits, window_us }` fires when this match makes `hits` matches
    /// within the last `window_us` (a match exactly `window_us` old has left the window); the count then
    /// starts over. `hits` of 0 or 1 fires on every match.
    pub fn hit(&mut self, trigger: &Trigger, now_us: u64) -> bool {
        let (hits, window_us) = match *trigger {
            Trigger::Immediate => {
                self.hits_us.clear();
                return true;
            }
            Trigger::Count { hits, window_us } => (hits, window_us),
        };
        let needed = hits.clamp(1, MAX_TRIGGER_HITS) as usize;
        self.expire(window_us, now_us);
        self.hits_us.push_back(now_us);
        while self.hits_us.len() > needed {
            self.hits_us.pop_front();
        }
        if self.hits_us.len() >= needed {
            self.hits_us = VecDeque::new(); // start over, and give the memory back
            return true;
        }
        false
    }

    /// Matches counted and still inside the window as of the last call.
    pub fn pending(&self) -> usize {
        self.hits_us.len()
    }

    /// Whether no counted match is still inside `trigger`'s window at `now_us`: the engine may drop the
    /// counter.
    pub fn is_stale(&self, trigger: &Trigger, now_us: u64) -> bool {
        match *trigger {
            Trigger::Immediate => true,
            Trigger::Count { window_us, .. } => self
                .hits_us
                .back()
                .is_none_or(|&last| now_us.saturating_sub(last) >= window_us),
        }
    }

    /// Drops the matches that have left the window.
    fn expire(&mut self, window_us: u64, now_us: u64) {
        while let Some(&oldest) = self.hits_us.front() {
            if now_us.saturating_sub(oldest) >= window_us {
                self.hits_us.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000_000;
    const HOUR: u64 = 60 * MINUTE;

    #[test]
    fn immediate_always_fires() {
        let mut counter = TriggerCounter::default();
        for now in [0, 1, 1, u64::MAX] {
            assert!(counter.hit(&Trigger::Immediate, now));
        }
        assert_eq!(counter.pending(), 0);
    }

    #[test]
    fn count_table() {
        let three_per_hour = Trigger::Count {
            hits: 3,
            window_us: HOUR,
        };
        // (minutes, fires?, pending after)
        let steps: &[(u64, bool, usize)] = &[
            (0, false, 1),
            (10, false, 2),
            (20, true, 0), // third within the hour: fires, starts over
            (21, false, 1),
            (30, false, 2),
            (81, false, 2), // the 21-minute match is exactly 60 min old: out of the window
            (89, true, 0),  // 30, 81, 89
            (200, false, 1),
            (261, false, 1), // 200 has left
            (400, false, 1),
        ];
        let mut counter = TriggerCounter::default();
        for &(minutes, fires, pending) in steps {
            assert_eq!(
                counter.hit(&three_per_hour, minutes * MINUTE),
                fires,
                "at {minutes} min"
            );
            assert_eq!(counter.pending(), pending, "pending at {minutes} min");
        }
        assert!(!counter.is_stale(&three_per_hour, 400 * MINUTE + HOUR - 1));
        assert!(counter.is_stale(&three_per_hour, 400 * MINUTE + HOUR));
    }

    #[test]
    fn degenerate_triggers() {
        let mut counter = TriggerCounter::default();
        for hits in [0, 1] {
            let trigger = Trigger::Count { hits, window_us: 0 };
            assert!(counter.hit(&trigger, 5), "hits {hits} fires every time");
        }
        // A zero-length window never collects two matches.
        let trigger = Trigger::Count {
            hits: 2,
            window_us: 0,
        };
        assert!(!counter.hit(&trigger, 5));
        assert!(!counter.hit(&trigger, 5));
        // Clock going back: no panic, still counted.
        let trigger = Trigger::Count {
            hits: 2,
            window_us: HOUR,
        };
        let mut counter = TriggerCounter::default();
        assert!(!counter.hit(&trigger, 10 * HOUR));
        assert!(counter.hit(&trigger, HOUR));
    }

    #[test]
    fn memory_is_bounded_by_hits() {
        let trigger = Trigger::Count {
            hits: u32::MAX,
            window_us: u64::MAX,
        };
        let mut counter = TriggerCounter::default();
        let mut fired = 0;
        for now in 0..25_000u64 {
            if counter.hit(&trigger, now) {
                fired += 1;
            }
            assert!(counter.pending() <= MAX_TRIGGER_HITS as usize);
        }
        assert_eq!(fired, 2, "u32::MAX hits count as 10,000");
        let small = Trigger::Count {
            hits: 3,
            window_us: HOUR,
        };
        let mut shrunk = TriggerCounter::default();
        shrunk.hits_us.extend(0..100); // e.g. left over from a larger trigger before a reload
        assert!(shrunk.hit(&small, 200));
        assert_eq!(shrunk.pending(), 0);
    }
}
