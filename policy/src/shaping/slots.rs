//! Rate limits shared by several nodes. The fleet's limiter is one GCRA per key kept in a shared store
//! (Redis): its theoretical arrival time (TAT). A node does not ask the store before every message; it
//! takes *slots* a few at a time — the next `count` send times of the fleet, spaced by the emission
//! interval — and spends them locally, each no earlier than its time. Slots one node takes are never
//! another's, so the fleet together sends at most the rate; a slot not spent within [`SLOT_GRACE_US`]
//! of its time is dropped (the fleet then sends a little under the rate, never over).
//!
//! Pure: [`grant`] is the store's arithmetic (the Lua script runs the same steps, and the tests hold
//! them to each other); [`SlotBuffer`] is a node's side; [`fallback_rate`] is a node's share when the
//! store cannot be reached.

use std::collections::VecDeque;

use super::Rate;

/// How late a slot may still be spent (after that it is dropped as unused).
pub const SLOT_GRACE_US: u64 = 250_000;

/// Most slots one request takes (bounds what a node can hold while others wait).
pub const MAX_SLOTS_PER_REQUEST: u32 = 64;

/// The store's answer to "`count` slots of a limiter whose TAT is `tat_us`, at `now_us`": the first
/// slot's time and the new TAT. Slots are `first + i × interval` for `i < count`.
pub fn grant(tat_us: u64, now_us: u64, interval_us: u64, count: u32) -> (u64, u64) {
    let first = tat_us.max(now_us);
    let next = first.saturating_add(interval_us.saturating_mul(u64::from(count)));
    (first, next)
}

/// A node's share of a rate when the shared store is away: the rate divided by the nodes seen (at
/// least one), so that the fleet stays under the rate however many nodes lose the store.
pub fn fallback_rate(rate: Rate, nodes: usize) -> Rate {
    let nodes = nodes.max(1) as f64;
    rate.scaled(1.0 / nodes)
}

/// The slots a node holds for one limiter, oldest first, and whether a request is on its way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotBuffer {
    /// Granted send times, unix µs, ascending.
    slots: VecDeque<u64>,
    /// A request was made and not answered yet.
    pending: bool,
    /// Slots dropped unused since the buffer was made (for the metrics).
    wasted: u64,
}

impl SlotBuffer {
    /// Drops the slots too old to spend at `now_us`.
    fn expire(&mut self, now_us: u64) {
        while let Some(&first) = self.slots.front() {
            if first.saturating_add(SLOT_GRACE_US) >= now_us {
                break;
            }
            self.slots.pop_front();
            self.wasted += 1;
        }
    }

    /// When the next send may happen: the first usable slot's time (at or before `now_us` means
    /// now), or None when the node holds no slot (it must ask the store).
    pub fn earliest_us(&mut self, now_us: u64) -> Option<u64> {
        self.expire(now_us);
        self.slots.front().map(|&at| at.max(now_us))
    }

    /// [`SlotBuffer::earliest_us`] without dropping old slots (for a read-only look).
    pub fn peek_us(&self, now_us: u64) -> Option<u64> {
        self.slots
            .iter()
            .find(|&&at| at.saturating_add(SLOT_GRACE_US) >= now_us)
            .map(|&at| at.max(now_us))
    }

    /// Spends the first slot if its time has come; false otherwise.
    pub fn take(&mut self, now_us: u64) -> bool {
        self.expire(now_us);
        match self.slots.front() {
            Some(&at) if at <= now_us => {
                self.slots.pop_front();
                true
            }
            _ => false,
        }
    }

    /// How many slots to ask the store for now, given `wanted` sends waiting here: enough to cover
    /// `lookahead_us` at `rate` (at least one, at most [`MAX_SLOTS_PER_REQUEST`], never more than
    /// wanted), minus what is held; None when enough is held or a request is on its way. Marks the
    /// request pending.
    pub fn request(&mut self, rate: Rate, wanted: usize, lookahead_us: u64, now_us: u64) -> Option<u32> {
        self.expire(now_us);
        if self.pending || wanted == 0 {
            return None;
        }
        let per_lookahead = (lookahead_us / rate.interval_us().max(1)).max(1);
        let target = per_lookahead
            .min(u64::from(MAX_SLOTS_PER_REQUEST))
            .min(wanted as u64);
        let held = self.slots.len() as u64;
        if held >= target {
            return None;
        }
        self.pending = true;
        u32::try_from(target - held).ok()
    }

    /// The store's answer: `count` slots from `first_us`, `interval_us` apart.
    pub fn granted(&mut self, first_us: u64, interval_us: u64, count: u32) {
        self.pending = false;
        for i in 0..u64::from(count) {
            let at = first_us.saturating_add(interval_us.saturating_mul(i));
            if self.slots.back().is_none_or(|&last| at >= last) {
                self.slots.push_back(at);
            }
        }
    }

    /// The request failed (the store is away): another may be made.
    pub fn failed(&mut self) {
        self.pending = false;
    }

    /// Whether a request was made and not answered yet (no other is made meanwhile).
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        self.slots.len()
    }

    /// Slots dropped unused so far.
    pub fn wasted(&self) -> u64 {
        self.wasted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_second(n: f64) -> Rate {
        Rate::try_new(n).expect("rate")
    }

    #[test]
    fn grants_continue_the_fleets_spacing() {
        // (tat, now, interval, count) → (first, next tat)
        let cases = [
            ((0, 1_000, 100, 3), (1_000, 1_300)),
            ((5_000, 1_000, 100, 2), (5_000, 5_200)),
            ((1_000, 1_000, 50, 0), (1_000, 1_000)),
        ];
        for ((tat, now, interval, count), expected) in cases {
            assert_eq!(
                grant(tat, now, interval, count),
                expected,
                "{tat} {now} {interval} {count}"
            );
        }
    }

    #[test]
    fn two_nodes_taking_slots_in_turn_never_exceed_the_rate_together() {
        // 20/s shared: each node asks for 4 slots whenever it holds none; every slot is spent at its
        // time. Over 60 s the two together send 20/s ± one request's worth.
        let rate = per_second(20.0);
        let interval = rate.interval_us();
        let mut tat = 0;
        let mut nodes = [SlotBuffer::default(), SlotBuffer::default()];
        let mut sent = [0u64; 2];
        let mut now = 0;
        while now < 60_000_000 {
            for (index, node) in nodes.iter_mut().enumerate() {
                if let Some(count) = node.request(rate, 1000, 200_000, now) {
                    let (first, next) = grant(tat, now, interval, count);
                    tat = next;
                    node.granted(first, interval, count);
                }
                while node.take(now) {
                    sent[index] += 1;
                }
            }
            now += 1_000;
        }
        let total = sent[0] + sent[1];
        assert!((1195..=1201).contains(&total), "{sent:?}");
        assert!(sent[0].abs_diff(sent[1]) <= 40, "shared fairly: {sent:?}");
    }

    #[test]
    fn old_slots_are_dropped_and_counted() {
        let mut buffer = SlotBuffer::default();
        assert_eq!(buffer.request(per_second(10.0), 5, 1_000_000, 0), Some(5));
        assert_eq!(
            buffer.request(per_second(10.0), 5, 1_000_000, 0),
            None,
            "one request at a time"
        );
        buffer.granted(100_000, 100_000, 5);
        assert_eq!(buffer.earliest_us(0), Some(100_000));
        assert!(!buffer.take(50_000), "not before its time");
        assert!(buffer.take(100_000));
        // 1 s later the slots at 0.2-0.5 s are more than the grace old.
        assert_eq!(buffer.earliest_us(1_000_000), None);
        assert_eq!(buffer.wasted(), 4);
        buffer.failed();
        assert_eq!(
            buffer.request(per_second(10.0), 2, 1_000_000, 1_000_000),
            Some(2),
            "never more than wanted"
        );
    }

    #[test]
    fn the_fallback_is_a_share_per_node() {
        let rate = per_second(20.0);
        assert!((fallback_rate(rate, 2).per_second() - 10.0).abs() < 1e-9);
        assert!((fallback_rate(rate, 0).per_second() - 20.0).abs() < 1e-9);
    }
}
