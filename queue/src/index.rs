//! The in-memory schedule: which queued messages are due when.
//!
//! Per message it keeps only the id, the due time and a 4-byte queue key; tenant and campaign names are
//! interned once. Memory per entry is one `BTreeSet` element (24 bytes plus node overhead) and one hash
//! map slot (33 bytes at a load factor between 7/16 and 7/8): roughly 60–120 bytes.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::id::MessageId;

/// An interned (tenant, campaign) pair: the scheduled queue a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey(pub u32);

/// One entry taken from the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueEntry {
    /// The message.
    pub id: MessageId,
    /// When it was due, unix milliseconds.
    pub due_ms: u64,
    /// Its queue; [`ScheduleIndex::queue_name`] tells the tenant and campaign.
    pub queue: QueueKey,
}

/// What the index remembers of one message.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The due time, needed to find the message's element in `by_due`.
    due_ms: u64,
    /// The message's queue.
    queue: QueueKey,
}

/// Queued messages ordered by due time, with lookup by id.
#[derive(Debug, Default)]
pub struct ScheduleIndex {
    /// (due time, id), earliest first: what `pop_due` walks.
    by_due: BTreeSet<(u64, MessageId)>,
    /// id → due time and queue: for `remove` and re-`insert`.
    slots: HashMap<MessageId, Slot, BuildHasherDefault<IdHasher>>,
    /// The interned queue names.
    queues: Interner,
}

impl ScheduleIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `id` at `due_ms` in the queue of (`tenant`, `campaign`); replaces an earlier entry for
    /// the same id. Returns the queue key.
    pub fn insert(&mut self, id: MessageId, due_ms: u64, tenant: &str, campaign: &str) -> QueueKey {
        let queue = self.queues.intern(tenant, campaign);
        self.insert_key(id, due_ms, queue);
        queue
    }

    /// Like [`ScheduleIndex::insert`] with an already interned queue key.
    pub fn insert_key(&mut self, id: MessageId, due_ms: u64, queue: QueueKey) {
        if let Some(old) = self.slots.insert(id, Slot { due_ms, queue }) {
            self.by_due.remove(&(old.due_ms, id));
        }
        self.by_due.insert((due_ms, id));
    }

    /// Adds many entries at once (the recovery scan); much faster than single inserts into an empty index.
    pub(crate) fn bulk_insert(&mut self, entries: Vec<(MessageId, u64, QueueKey)>) {
        if !self.slots.is_empty() {
            for (id, due_ms, queue) in entries {
                self.insert_key(id, due_ms, queue);
            }
            return;
        }
        self.slots.reserve(entries.len());
        let mut keys: Vec<(u64, MessageId)> = Vec::with_capacity(entries.len());
        for (id, due_ms, queue) in entries {
            self.slots.insert(id, Slot { due_ms, queue });
            keys.push((due_ms, id));
        }
        if keys.len() != self.slots.len() {
            // An id came twice: the map kept the last entry, so take the keys from it.
            keys = self.slots.iter().map(|(id, slot)| (slot.due_ms, *id)).collect();
        }
        // Recovery yields ids in creation order, which is nearly due order: the stable sort finds the
        // sorted runs and is close to linear on them (the unstable one is not), and building a
        // BTreeSet from sorted keys is linear.
        keys.sort();
        self.by_due = keys.into_iter().collect();
    }

    /// Unschedules `id`; returns whether it was scheduled.
    pub fn remove(&mut self, id: MessageId) -> bool {
        match self.slots.remove(&id) {
            Some(slot) => {
                self.by_due.remove(&(slot.due_ms, id));
                true
            }
            None => false,
        }
    }

    /// Makes every message of (`tenant`, `campaign`) due at `due_ms` if it is due later (a cancelled
    /// campaign's mail is taken out at once); returns how many moved. Walks every entry: an operator
    /// action, not a per-message path.
    pub fn hasten_queue(&mut self, tenant: &str, campaign: &str, due_ms: u64) -> usize {
        let Some(queue) = self.queues.find(tenant, campaign) else {
            return 0;
        };
        let later: Vec<MessageId> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.queue == queue && slot.due_ms > due_ms)
            .map(|(id, _)| *id)
            .collect();
        for &id in &later {
            self.insert_key(id, due_ms, queue);
        }
        later.len()
    }

    /// How many messages are scheduled.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no message is scheduled.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `id` is scheduled.
    pub fn contains(&self, id: MessageId) -> bool {
        self.slots.contains_key(&id)
    }

    /// When `id` is due, if it is scheduled.
    pub fn due_ms(&self, id: MessageId) -> Option<u64> {
        self.slots.get(&id).map(|slot| slot.due_ms)
    }

    /// The queue of `id`, if it is scheduled.
    pub fn queue_of(&self, id: MessageId) -> Option<QueueKey> {
        self.slots.get(&id).map(|slot| slot.queue)
    }

    /// The queue key for (`tenant`, `campaign`), interning it if new.
    pub fn intern(&mut self, tenant: &str, campaign: &str) -> QueueKey {
        self.queues.intern(tenant, campaign)
    }

    /// The (tenant, campaign) of a queue key made by this index.
    pub fn queue_name(&self, queue: QueueKey) -> Option<(&str, &str)> {
        self.queues.name(queue)
    }

    /// The earliest due time, if any message is scheduled.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.by_due.first().map(|(due_ms, _)| *due_ms)
    }

    /// Removes and returns up to `max` ids due at or before `now_ms`, earliest first (ties by id).
    pub fn pop_due(&mut self, now_ms: u64, max: usize) -> Vec<MessageId> {
        self.pop_due_entries(now_ms, max)
            .into_iter()
            .map(|entry| entry.id)
            .collect()
    }

    /// Like [`ScheduleIndex::pop_due`], with each entry's due time and queue.
    pub fn pop_due_entries(&mut self, now_ms: u64, max: usize) -> Vec<DueEntry> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&(due_ms, id)) = self.by_due.first() else {
                break;
            };
            if due_ms > now_ms {
                break;
            }
            self.by_due.pop_first();
            let queue = self
                .slots
                .remove(&id)
                .map_or(QueueKey(u32::MAX), |slot| slot.queue);
            out.push(DueEntry { id, due_ms, queue });
        }
        out
    }
}

/// Interns (tenant, campaign) pairs as [`QueueKey`]s. Names are never forgotten: their number is the
/// number of campaigns ever seen by this process, not the number of messages.
#[derive(Debug, Default)]
struct Interner {
    /// tenant → campaign → key; two levels so lookups borrow `&str` without allocating.
    keys: HashMap<String, HashMap<String, u32>>,
    /// key → names.
    names: Vec<(String, String)>,
}

impl Interner {
    fn intern(&mut self, tenant: &str, campaign: &str) -> QueueKey {
        if let Some(&key) = self
            .keys
            .get(tenant)
            .and_then(|campaigns| campaigns.get(campaign))
        {
            return QueueKey(key);
        }
        let key = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push((tenant.to_owned(), campaign.to_owned()));
        self.keys
            .entry(tenant.to_owned())
            .or_default()
            .insert(campaign.to_owned(), key);
        QueueKey(key)
    }

    /// The key of (`tenant`, `campaign`) if it was interned.
    fn find(&self, tenant: &str, campaign: &str) -> Option<QueueKey> {
        self.keys
            .get(tenant)
            .and_then(|campaigns| campaigns.get(campaign))
            .map(|&key| QueueKey(key))
    }

    fn name(&self, queue: QueueKey) -> Option<(&str, &str)> {
        let index = usize::try_from(queue.0).ok()?;
        self.names
            .get(index)
            .map(|(tenant, campaign)| (tenant.as_str(), campaign.as_str()))
    }
}

/// The hasher of the id → slot map. Ids are made by this process, not chosen by clients, so hash flooding
/// is not a concern, and their shape allows a hash that keeps memory locality.
///
/// An id's sequence number counts up by one per message (from a random start per process), and messages
/// are inserted, and mostly removed, in creation order. Using the sequence as the low bits of the hash
/// puts consecutive messages in neighbouring buckets, so that building or updating a large index touches
/// memory nearly sequentially instead of missing the cache on every insert (three to six times faster at
/// a million entries). The high bits, which the map uses as a per-bucket tag, mix in the time, so ids of
/// different runs that share a sequence number are told apart cheaply.
#[derive(Debug, Default)]
pub(crate) struct IdHasher {
    /// The running state.
    state: u64,
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(id) = MessageId::from_slice(bytes) {
            let sequence = u64::from(id.sequence());
            let tag = fmix64(id.created_at_micros() ^ (sequence << 32)) & !0xffff_ffff;
            self.state ^= tag | sequence;
            return;
        }
        // Not an id (the map never hashes anything else): a plain FxHash-style mix.
        for &byte in bytes {
            self.state = (self.state.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    /// Length prefixes carry no information for fixed-size ids.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.state
    }
}

/// The murmur3 64-bit finalizer: every input bit affects every output bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests;
