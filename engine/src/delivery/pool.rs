//! Outbound connections: reuse of idle sessions per remote address, and the caps on connections per
//! remote host and in total.
//!
//! Two kinds of permits, both fair (FIFO) tokio semaphores, so waiting costs nothing until it is
//! one's turn:
//! - a *use* permit per remote address (`max_connections_per_host`): held while a connection to that
//!   address is checked out. A job with a use permit takes an idle connection, or opens one (there is
//!   none idle, so fewer than the cap are open);
//! - an *open* permit (`max_connections`): held by every open connection, idle ones included, and
//!   released when it closes. When none is free, the longest-idle connection of another host is closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::client::Connection;
use crate::metrics::Metrics;

/// An open connection's share of `max_connections`; keeps the open-connections gauge right.
pub struct OpenSlot {
    /// One of `max_connections`.
    _permit: OwnedSemaphorePermit,
    /// Decremented on drop.
    gauge: Arc<Metrics>,
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.gauge.outbound_connections.dec();
    }
}

/// A connection checked out of the pool.
pub struct Lease {
    /// The session.
    pub connection: Connection,
    /// Its share of the total cap, kept while it is open (idle or not).
    open: OpenSlot,
    /// The right to use a connection to this address now.
    _use: OwnedSemaphorePermit,
    /// True when the connection was reused from the idle set.
    pub reused: bool,
}

/// What `acquire` found.
pub enum Acquired {
    /// An idle connection to reuse.
    Reuse(Box<Lease>),
    /// The permits to open a new connection: hand them to [`Pool::lease`] with the connection.
    Open(Permits),
}

/// Permits for a connection about to be opened.
pub struct Permits {
    /// Share of the total cap.
    open: OpenSlot,
    /// Use permit of the address.
    use_permit: OwnedSemaphorePermit,
}

/// An idle connection waiting for its next transaction.
struct Idle {
    /// The session.
    connection: Connection,
    /// Its share of the total cap.
    open: OpenSlot,
    /// Since when it is idle.
    since: Instant,
}

/// Per remote address.
struct Host {
    /// Use permits (`max_connections_per_host`).
    uses: Arc<Semaphore>,
    /// Idle connections, most recent last.
    idle: Mutex<Vec<Idle>>,
}

/// The outbound connection pool.
pub struct Pool {
    /// Remote addresses seen so far.
    hosts: Mutex<HashMap<SocketAddr, Arc<Host>>>,
    /// Open permits (`max_connections`).
    open: Arc<Semaphore>,
    /// `delivery.max_connections_per_host`.
    max_per_host: usize,
    /// `delivery.connection_idle_timeout`.
    idle_timeout: Duration,
    /// `delivery.max_messages_per_connection`.
    max_transactions: usize,
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
            hosts: Mutex::new(HashMap::new()),
            open: Arc::new(Semaphore::new(max_total)),
            max_per_host,
            idle_timeout,
            max_transactions,
            metrics,
        }
    }

    /// Waits for the turn to use a connection to `address`; then an idle one, or the permits to
    /// open one.
    pub async fn acquire(&self, address: SocketAddr) -> Acquired {
        let host = self.host(address);
        // The semaphore is never closed, so acquire cannot fail; fall back to a fresh one if it did.
        let use_permit = match Arc::clone(&host.uses).acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => Arc::new(Semaphore::new(1))
                .try_acquire_owned()
                .expect("fresh semaphore"),
        };
        if let Some(idle) = lock(&host.idle).pop() {
            let lease = Lease {
                connection: idle.connection,
                open: idle.open,
                _use: use_permit,
                reused: true,
            };
            return Acquired::Reuse(Box::new(lease));
        }
        Acquired::Open(Permits {
            open: self.open_slot().await,
            use_permit,
        })
    }

    /// Wraps a newly opened connection.
    pub fn lease(&self, connection: Connection, permits: Permits) -> Lease {
        Lease {
            connection,
            open: permits.open,
            _use: permits.use_permit,
            reused: false,
        }
    }

    /// Returns a connection after a transaction: parked for reuse if it may carry more, else closed.
    /// Its use permit is released either way, which lets the next job for this address go.
    pub async fn release(&self, lease: Lease) {
        let Lease {
            connection,
            open,
            _use,
            ..
        } = lease;
        // At the total cap, jobs for other hosts may be waiting for an open permit: close instead of
        // parking, so the cap serves them rather than idle connections.
        let reusable = connection.is_usable()
            && connection.transactions < self.max_transactions
            && !connection.has_unread_input()
            && self.open.available_permits() > 0;
        if reusable {
            let host = self.host(connection.address);
            lock(&host.idle).push(Idle {
                connection,
                open,
                since: Instant::now(),
            });
        } else {
            tokio::spawn(close(connection, open));
        }
    }

    /// Closes a connection that failed.
    pub async fn discard(&self, lease: Lease) {
        let Lease { connection, open, .. } = lease;
        close(connection, open).await;
    }

    /// Closes idle connections older than the idle timeout (QUIT in background tasks). Call
    /// periodically.
    pub fn close_expired(&self) {
        let hosts: Vec<Arc<Host>> = lock(&self.hosts).values().cloned().collect();
        for host in hosts {
            let expired: Vec<Idle> = {
                let mut idle = lock(&host.idle);
                let (gone, kept) = idle
                    .drain(..)
                    .partition(|i| i.since.elapsed() >= self.idle_timeout);
                *idle = kept;
                gone
            };
            for idle in expired {
                tokio::spawn(close(idle.connection, idle.open));
            }
        }
    }

    /// Closes every idle connection (shutdown).
    pub async fn close_all(&self) {
        let hosts: Vec<Arc<Host>> = lock(&self.hosts).values().cloned().collect();
        for host in hosts {
            let idle: Vec<Idle> = lock(&host.idle).drain(..).collect();
            for idle in idle {
                close(idle.connection, idle.open).await;
            }
        }
    }

    /// The state of one remote address.
    fn host(&self, address: SocketAddr) -> Arc<Host> {
        let mut hosts = lock(&self.hosts);
        let host = hosts.entry(address).or_insert_with(|| {
            Arc::new(Host {
                uses: Arc::new(Semaphore::new(self.max_per_host)),
                idle: Mutex::new(Vec::new()),
            })
        });
        Arc::clone(host)
    }

    /// A share of the total cap; when none is free, closes the longest-idle connection (of any
    /// host) to make room, then waits its turn.
    async fn open_slot(&self) -> OpenSlot {
        let permit = match Arc::clone(&self.open).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(idle) = self.oldest_idle() {
                    tokio::spawn(close(idle.connection, idle.open));
                }
                match Arc::clone(&self.open).acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => Arc::new(Semaphore::new(1))
                        .try_acquire_owned()
                        .expect("fresh semaphore"),
                }
            }
        };
        self.metrics.outbound_connections.inc();
        OpenSlot {
            _permit: permit,
            gauge: Arc::clone(&self.metrics),
        }
    }

    /// Removes and returns the longest-idle connection of any host.
    fn oldest_idle(&self) -> Option<Idle> {
        let hosts: Vec<Arc<Host>> = lock(&self.hosts).values().cloned().collect();
        let oldest = hosts
            .iter()
            .filter_map(|host| {
                lock(&host.idle)
                    .first()
                    .map(|idle| (Arc::clone(host), idle.since))
            })
            .min_by_key(|(_, since)| *since)?;
        let mut idle = lock(&oldest.0.idle);
        (!idle.is_empty()).then(|| idle.remove(0))
    }
}

/// Sends QUIT (bounded) and drops the connection and its share of the total cap.
async fn close(connection: Connection, open: OpenSlot) {
    connection.quit(Duration::from_secs(5)).await;
    drop(open);
}

/// Locks a mutex, ignoring poisoning (every critical section here is short and leaves data consistent).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
