//! One ready queue: the mail of one egress source for one destination site, its limits and the
//! state of its closed loop.
//!
//! Items wait in one FIFO per scheduled queue (tenant, campaign, domain). The FIFOs that may send are
//! in a ring visited in turn; a FIFO held back by its own limit (the tenant's or the domain's rate, a
//! suspension of the tenant, campaign or domain) leaves the ring for a set ordered by the time it may
//! go again, so nothing scans waiting mail.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use penguin_policy::shaping::{Adaptive, Gcra, Rate, RateWindow, TriggerCounter};
use penguin_queue::MessageId;
use smallvec::SmallVec;
use tokio::sync::Notify;

use super::names::{PoolId, ProviderId, QueueKey, SiteId, SourceId};
use super::settings::LaneLimits;

/// One message's recipients of one domain: what a transaction carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The message.
    pub id: MessageId,
    /// Its scheduled queue.
    pub key: QueueKey,
    /// The pool it is sent from.
    pub pool: PoolId,
    /// Indexes of its recipients (of this domain) in the envelope.
    pub recipients: SmallVec<[u16; 4]>,
    /// When it expires (received + `delivery.max_age`), unix microseconds.
    pub expires_at_us: u64,
}

/// Why a ready queue does not send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Until when, unix microseconds.
    pub until_us: u64,
    /// Why (the reply or the rule that caused it).
    pub reason: String,
}

/// The FIFO of one scheduled queue inside a lane.
#[derive(Debug, Default)]
struct Fifo {
    /// Items, oldest first.
    items: VecDeque<Item>,
    /// `Some(t)`: held back until t (in `Lane::blocked`); `None`: in `Lane::ready` (when not empty).
    blocked_until: Option<u64>,
}

/// Items queued in all lanes of one (source, provider), by priority; shared by those lanes, so a
/// warming source's capacity can count what it was already given without visiting every lane.
#[derive(Debug, Default)]
pub struct GroupQueued {
    /// Normal priority.
    normal: AtomicUsize,
    /// `X-Warmup-Priority: high`.
    high: AtomicUsize,
}

impl GroupQueued {
    /// (high, normal) items queued now.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.high.load(Ordering::Relaxed),
            self.normal.load(Ordering::Relaxed),
        )
    }

    fn counter(&self, high: bool) -> &AtomicUsize {
        if high { &self.high } else { &self.normal }
    }

    fn add(&self, item: &Item) {
        self.counter(item.key.high).fetch_add(1, Ordering::Relaxed);
    }

    fn remove(&self, item: &Item) {
        // Never below zero, whatever the order of updates.
        let _ = self
            .counter(item.key.high)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

/// A (source, site) ready queue.
#[derive(Debug)]
pub struct Lane {
    /// The egress source.
    pub source: SourceId,
    /// The destination site.
    pub site: SiteId,
    /// The site's provider.
    pub provider: ProviderId,
    /// Its configured limits.
    pub limits: LaneLimits,
    /// One FIFO per scheduled queue with mail here.
    fifos: HashMap<QueueKey, Fifo>,
    /// FIFOs that may send, in visiting order.
    ready: VecDeque<QueueKey>,
    /// FIFOs held back, by the time they may go again.
    blocked: BTreeSet<(u64, QueueKey)>,
    /// Items in all FIFOs.
    pub queued: usize,
    /// Connections counted for this lane (opening, sending, waiting or idle).
    pub connections: usize,
    /// Of those, connections waiting for work (no sendable item).
    pub idle: usize,
    /// Of those, connections waiting for a rate slot.
    pub waiting: usize,
    /// Idle connections asked to close (another lane needs their share of the total cap).
    pub close_idle: usize,
    /// Spacing of messages (the effective rate).
    pub message_gcra: Gcra,
    /// Spacing of new connections.
    pub connection_gcra: Gcra,
    /// The closed loop's state.
    pub adaptive: Adaptive,
    /// Messages sent in the last minute (the closed loop's starting point without a configured rate).
    pub observed: RateWindow,
    /// Suspended by a rule (this site only).
    pub hold: Option<Hold>,
    /// The timer armed for this lane, unix microseconds.
    pub timer_at: Option<u64>,
    /// Wakes connections waiting for work.
    pub notify: Arc<Notify>,
    /// The last throttling reply: when (unix microseconds) and its text.
    pub last_throttle: Option<(u64, String)>,
    /// Trigger counters of the rules that matched here, by rule index.
    pub triggers: HashMap<usize, TriggerCounter>,
    /// Whether the lane is on the scheduler's list of lanes to look at.
    pub dirty: bool,
    /// The queued counts of its (source, provider).
    pub group: Arc<GroupQueued>,
    /// Its source is warming for its provider: `X-Warmup-Priority: high` FIFOs go first.
    pub prefer_high: bool,
}

impl Lane {
    /// An empty lane.
    pub fn new(
        source: SourceId,
        site: SiteId,
        provider: ProviderId,
        limits: LaneLimits,
        group: Arc<GroupQueued>,
    ) -> Lane {
        Lane {
            source,
            site,
            provider,
            limits,
            fifos: HashMap::new(),
            ready: VecDeque::new(),
            blocked: BTreeSet::new(),
            queued: 0,
            connections: 0,
            idle: 0,
            waiting: 0,
            close_idle: 0,
            message_gcra: Gcra::default(),
            connection_gcra: Gcra::default(),
            adaptive: Adaptive::default(),
            observed: RateWindow::default(),
            hold: None,
            timer_at: None,
            notify: Arc::new(Notify::new()),
            last_throttle: None,
            triggers: HashMap::new(),
            dirty: false,
            group,
            prefer_high: false,
        }
    }

    /// The message rate enforced now: the configured one as the closed loop has reduced it.
    pub fn effective_rate(&self) -> Option<Rate> {
        self.adaptive.effective(self.limits.rate)
    }

    /// Appends an item to its FIFO.
    pub fn push(&mut self, item: Item) {
        let key = item.key;
        let fifo = self.fifos.entry(key).or_default();
        let was_empty = fifo.items.is_empty();
        self.group.add(&item);
        fifo.items.push_back(item);
        self.queued += 1;
        if was_empty && fifo.blocked_until.is_none() {
            self.ready.push_back(key);
        }
    }

    /// Whether some FIFO may be visited now (not counting held-back ones).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// When the first held-back FIFO may go again.
    pub fn next_unblock_us(&self) -> Option<u64> {
        self.blocked.first().map(|(at, _)| *at)
    }

    /// Moves held-back FIFOs whose time has come back into the ring.
    pub fn unblock_due(&mut self, now_us: u64) {
        while let Some(&(at, key)) = self.blocked.first() {
            if at > now_us {
                break;
            }
            self.blocked.pop_first();
            if let Some(fifo) = self.fifos.get_mut(&key) {
                fifo.blocked_until = None;
                if !fifo.items.is_empty() {
                    self.ready.push_back(key);
                }
            }
        }
    }

    /// Moves the held-back FIFOs whose key `pick` chooses back into the ring (their holds are checked
    /// again on the next visit): the slots of a shared limiter they waited for arrived.
    pub fn unblock_where(&mut self, mut pick: impl FnMut(&QueueKey) -> bool) {
        let picked: Vec<(u64, QueueKey)> = self
            .blocked
            .iter()
            .filter(|(_, key)| pick(key))
            .copied()
            .collect();
        for entry in picked {
            self.blocked.remove(&entry);
            if let Some(fifo) = self.fifos.get_mut(&entry.1) {
                fifo.blocked_until = None;
                if !fifo.items.is_empty() {
                    self.ready.push_back(entry.1);
                }
            }
        }
    }

    /// Items queued in the FIFOs whose key `pick` chooses, counted up to `cap` (the count stops there).
    pub fn queued_where(&self, mut pick: impl FnMut(&QueueKey) -> bool, cap: usize) -> usize {
        let mut count = 0;
        for (key, fifo) in &self.fifos {
            if count >= cap {
                break;
            }
            if pick(key) {
                count += fifo.items.len();
            }
        }
        count.min(cap)
    }

    /// Moves every held-back FIFO back into the ring (their holds are checked again on the next visit):
    /// after a suspension was lifted.
    pub fn unblock_all(&mut self) {
        self.unblock_due(u64::MAX);
    }

    /// Visits the ready FIFOs in turn: `decide` says whether the head item of a FIFO may go now
    /// (`Ok`), or until when its FIFO is held back (`Err`). Returns the first item that may go, taken
    /// out; its FIFO goes to the back of the ring.
    pub fn take_next(&mut self, mut decide: impl FnMut(&Item) -> Result<(), u64>) -> Option<Item> {
        if self.prefer_high
            && let Some(position) = self.ready.iter().position(|key| key.high)
            && position > 0
        {
            self.ready.rotate_left(position);
        }
        for _ in 0..self.ready.len() {
            let key = self.ready.pop_front()?;
            let Some(fifo) = self.fifos.get_mut(&key) else {
                continue;
            };
            let Some(head) = fifo.items.front() else {
                self.fifos.remove(&key);
                continue;
            };
            if let Err(until) = decide(head) {
                fifo.blocked_until = Some(until);
                self.blocked.insert((until, key));
                continue;
            }
            let item = fifo.items.pop_front();
            if fifo.items.is_empty() {
                self.fifos.remove(&key);
            } else {
                self.ready.push_back(key);
            }
            self.queued = self.queued.saturating_sub(1);
            if let Some(item) = &item {
                self.group.remove(item);
            }
            return item;
        }
        None
    }

    /// Takes out every item (to send them elsewhere: the lane was suspended).
    pub fn drain(&mut self) -> Vec<Item> {
        let mut items = Vec::with_capacity(self.queued);
        for (_, fifo) in self.fifos.drain() {
            items.extend(fifo.items);
        }
        self.ready.clear();
        self.blocked.clear();
        self.queued = 0;
        items.iter().for_each(|item| self.group.remove(item));
        items
    }

    /// Takes out the items for which `pick` is true.
    pub fn take_where(&mut self, mut pick: impl FnMut(&Item) -> bool) -> Vec<Item> {
        let mut taken = Vec::new();
        for fifo in self.fifos.values_mut() {
            let (out, keep): (VecDeque<Item>, VecDeque<Item>) =
                fifo.items.drain(..).partition(|item| pick(item));
            taken.extend(out);
            fifo.items = keep;
        }
        self.fifos.retain(|_, fifo| !fifo.items.is_empty());
        let fifos = &self.fifos;
        self.ready.retain(|key| fifos.contains_key(key));
        self.blocked.retain(|(_, key)| fifos.contains_key(key));
        self.queued = self.queued.saturating_sub(taken.len());
        taken.iter().for_each(|item| self.group.remove(item));
        taken
    }

    /// Takes out the newest normal-priority item (a high-priority one needs its place on a warming
    /// source), if there is one.
    pub fn take_newest_normal(&mut self) -> Option<Item> {
        let key = *self
            .fifos
            .iter()
            .filter(|(key, fifo)| !key.high && !fifo.items.is_empty())
            .max_by_key(|(_, fifo)| fifo.items.back().map(|item| item.id))?
            .0;
        let fifo = self.fifos.get_mut(&key)?;
        let item = fifo.items.pop_back()?;
        if fifo.items.is_empty() {
            self.fifos.remove(&key);
            self.ready.retain(|k| *k != key);
            self.blocked.retain(|(_, k)| *k != key);
        }
        self.queued = self.queued.saturating_sub(1);
        self.group.remove(&item);
        Some(item)
    }

    /// The items of the ready FIFOs (not the held-back ones), taken out: a connection failure to the
    /// site fails them all at once.
    pub fn take_ready(&mut self) -> Vec<Item> {
        let mut taken = Vec::new();
        for key in self.ready.drain(..) {
            if let Some(fifo) = self.fifos.remove(&key) {
                taken.extend(fifo.items);
            }
        }
        self.queued = self.queued.saturating_sub(taken.len());
        taken.iter().for_each(|item| self.group.remove(item));
        taken
    }

    /// When the first item at the head of a FIFO expires (heads are their FIFO's oldest).
    pub fn earliest_expiry(&self) -> Option<u64> {
        self.fifos
            .values()
            .filter_map(|fifo| fifo.items.front().map(|item| item.expires_at_us))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::scheduler::names::NameId;

    fn key(tenant: u32) -> QueueKey {
        QueueKey {
            tenant: NameId(tenant),
            campaign: NameId(0),
            domain: NameId(0),
            high: false,
        }
    }

    fn item(tenant: u32, n: u32) -> Item {
        Item {
            id: MessageId::from_parts(1, n),
            key: key(tenant),
            pool: PoolId(0),
            recipients: SmallVec::from_slice(&[0]),
            expires_at_us: u64::MAX,
        }
    }

    fn lane() -> Lane {
        let limits = LaneLimits {
            max_connections: 10,
            rate: None,
            connection_rate: None,
            max_deliveries_per_connection: 100,
            max_recipients_per_transaction: 50,
        };
        Lane::new(SourceId(0), SiteId(0), ProviderId(0), limits, Arc::default())
    }

    #[test]
    fn scheduled_queues_take_turns() {
        let mut lane = lane();
        for n in 0..3 {
            lane.push(item(1, n));
        }
        lane.push(item(2, 10));
        let order: Vec<u32> = std::iter::from_fn(|| lane.take_next(|_| Ok(())))
            .map(|item| item.id.sequence())
            .collect();
        assert_eq!(
            order,
            [0, 10, 1, 2],
            "tenant 2's message does not wait for tenant 1's backlog"
        );
        assert_eq!(lane.queued, 0);
    }

    #[test]
    fn a_held_back_queue_leaves_the_ring_until_its_time() {
        let mut lane = lane();
        lane.push(item(1, 0));
        lane.push(item(1, 1));
        lane.push(item(2, 2));
        let taken = lane.take_next(|item| if item.key == key(1) { Err(500) } else { Ok(()) });
        assert_eq!(taken.map(|i| i.id.sequence()), Some(2));
        assert_eq!(
            lane.take_next(|_| Ok(())),
            None,
            "tenant 1 is held back until 500"
        );
        assert_eq!(lane.next_unblock_us(), Some(500));
        lane.unblock_due(499);
        assert!(!lane.has_ready());
        lane.unblock_due(500);
        assert_eq!(lane.take_next(|_| Ok(())).map(|i| i.id.sequence()), Some(0));
        lane.push(item(1, 3));
        assert_eq!(lane.queued, 2);
        assert_eq!(lane.take_ready().len(), 2);
        assert_eq!(lane.queued, 0);
    }

    #[test]
    fn items_can_be_taken_out_selectively() {
        let mut lane = lane();
        for n in 0..4 {
            lane.push(item(n % 2, n));
        }
        let odd = lane.take_where(|item| item.id.sequence() % 2 == 1);
        assert_eq!(odd.len(), 2);
        assert_eq!(lane.queued, 2);
        assert_eq!(lane.drain().len(), 2);
        assert!(!lane.has_ready());
    }
}
