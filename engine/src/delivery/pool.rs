//! Outbound connections: reuse of idle sessions per remote address, and the caps on open connections
//! per remote host and in total. An open connection (busy or idle) holds its slots; they are released
//! when it closes, so no path can leak capacity.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::client::Connection;
use crate::metrics::Metrics;

/// Longest wait for a free slot before looking again (idle connections may have appeared).
const SLOT_RECHECK: Duration = Duration::from_millis(200);

/// The capacity an open connection holds.
pub struct Slots {
    /// One of `max_connections_per_host` for its remote address.
    _host: OwnedSemaphorePermit,
    /// One of `max_connections`.
    _total: OwnedSemaphorePermit,
    /// Keeps the open-connections gauge right: decremented on drop.
    gauge: Arc<Metrics>,
}

impl Drop for Slots {
    fn drop(&mut self) {
        self.gauge.outbound_connections.dec();
    }
}

/// A connection checked out of the pool, with its slots.
pub struct Lease {
    /// The session.
    pub connection: Connection,
    /// Capacity held while it is open.
    slots: Slots,
    /// True when the connection was reused from the idle set.
    pub reused: bool,
}

/// An idle connection waiting for its next transaction.
struct Idle {
    /// The lease, parked.
    lease: Lease,
    /// Since when it is idle.
    since: Instant,
}

/// What `acquire` found.
pub enum Acquired {
    /// An idle connection to reuse.
    Reuse(Box<Lease>),
    /// Capacity to open a new connection.
    Open(Slots),
}

/// The outbound connection pool.
pub struct Pool {
    /// Idle connections by remote address.
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    /// Slots per remote address.
    per_host: Mutex<HashMap<SocketAddr, Arc<Semaphore>>>,
    /// Slots in total.
    total: Arc<Semaphore>,
    /// `delivery.max_connections_per_host`.
    max_per_host: usize,
    /// `delivery.connection_idle_timeout`.
    idle_timeout: Duration,
    /// `delivery.max_messages_per_connection`.
    max_transactions: usize,
    /// Signalled when a connection is parked or closed (capacity may be available).
    changed: Notify,
    /// Metrics (open connections gauge).
    metrics: Arc<Metrics>,
}

impl Pool {
    /// An empty pool with these caps.
    pub fn new(
        max_total: usize,
        max_per_host: usize,
        idle_timeout: Duration,
        max_transactions: usize,
        metrics: Arc<Metrics>,
    ) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            per_host: Mutex::new(HashMap::new()),
            total: Arc::new(Semaphore::new(max_total)),
            max_per_host,
            idle_timeout,
            max_transactions,
            changed: Notify::new(),
            metrics,
        }
    }

    /// An idle connection to `address`, or the slots to open one; waits while the caps are reached.
    pub async fn acquire(&self, address: SocketAddr) -> Acquired {
        loop {
            if let Some(lease) = self.take_idle(address) {
                return Acquired::Reuse(Box::new(lease));
            }
            if let Some(slots) = self.try_slots(address) {
                return Acquired::Open(slots);
            }
            let notified = self.changed.notified();
            let _ = tokio::time::timeout(SLOT_RECHECK, notified).await;
        }
    }

    /// Wraps a newly opened connection.
    pub fn lease(&self, connection: Connection, slots: Slots) -> Lease {
        Lease {
            connection,
            slots,
            reused: false,
        }
    }

    /// Returns a connection after a transaction: parked for reuse if it may carry more, else closed.
    pub async fn release(&self, lease: Lease) {
        let reusable = lease.connection.is_usable()
            && lease.connection.transactions < self.max_transactions
            && !lease.connection.has_unread_input();
        if reusable {
            let address = lease.connection.address;
            lock(&self.idle).entry(address).or_default().push(Idle {
                lease,
                since: Instant::now(),
            });
        } else {
            close(lease).await;
        }
        self.changed.notify_waiters();
    }

    /// Closes a connection that failed (its slots are released).
    pub async fn discard(&self, lease: Lease) {
        close(lease).await;
        self.changed.notify_waiters();
    }

    /// Closes idle connections older than the idle timeout (QUIT in background tasks, so the caller
    /// is not held up by slow servers). Call periodically.
    pub fn close_expired(&self) {
        let expired = self.drain_idle(|idle| idle.since.elapsed() >= self.idle_timeout);
        for lease in expired {
            tokio::spawn(close(lease));
        }
    }

    /// Closes every idle connection (shutdown).
    pub async fn close_all(&self) {
        for lease in self.drain_idle(|_| true) {
            close(lease).await;
        }
    }

    /// The freshest idle connection to `address`, if any.
    fn take_idle(&self, address: SocketAddr) -> Option<Lease> {
        let mut idle = lock(&self.idle);
        let parked = idle.get_mut(&address)?;
        let found = parked.pop().map(|idle| Lease {
            reused: true,
            ..idle.lease
        });
        if parked.is_empty() {
            idle.remove(&address);
        }
        found
    }

    /// Slots for a new connection to `address`, if both caps allow one now. When only the total cap
    /// is reached, an idle connection to another host is closed to make room (in the background).
    fn try_slots(&self, address: SocketAddr) -> Option<Slots> {
        let host = Arc::clone(
            lock(&self.per_host)
                .entry(address)
                .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host))),
        );
        let host = host.try_acquire_owned().ok()?;
        let Ok(total) = Arc::clone(&self.total).try_acquire_owned() else {
            if let Some(victim) = self.oldest_idle() {
                tokio::spawn(close(victim));
            }
            return None;
        };
        self.metrics.outbound_connections.inc();
        Some(Slots {
            _host: host,
            _total: total,
            gauge: Arc::clone(&self.metrics),
        })
    }

    /// Removes and returns the longest-idle connection of any host.
    fn oldest_idle(&self) -> Option<Lease> {
        let mut idle = lock(&self.idle);
        let address = idle
            .iter()
            .filter_map(|(address, parked)| parked.first().map(|first| (*address, first.since)))
            .min_by_key(|(_, since)| *since)
            .map(|(address, _)| address)?;
        let parked = idle.get_mut(&address)?;
        let lease = parked.remove(0).lease;
        if parked.is_empty() {
            idle.remove(&address);
        }
        Some(lease)
    }

    /// Removes the idle connections matching `expired`.
    fn drain_idle(&self, expired: impl Fn(&Idle) -> bool) -> Vec<Lease> {
        let mut removed = Vec::new();
        let mut idle = lock(&self.idle);
        idle.retain(|_, parked| {
            let (gone, kept): (Vec<Idle>, Vec<Idle>) = parked.drain(..).partition(|i| expired(i));
            removed.extend(gone.into_iter().map(|i| i.lease));
            *parked = kept;
            !parked.is_empty()
        });
        removed
    }
}

/// Sends QUIT (bounded) and drops the connection and its slots.
async fn close(lease: Lease) {
    let Lease {
        connection, slots, ..
    } = lease;
    connection.quit(Duration::from_secs(5)).await;
    drop(slots);
}

/// Locks a mutex, ignoring poisoning (the data stays consistent: every critical section is short).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
