//! The SMTP accept loop: connection limits (total and per client IP) as RAII slots, relay-network
//! and lockout checks at connect, and a graceful stop that lets transactions in flight finish.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use penguin_policy::ThrottleDecision;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::connection::{self, ConnectionContext};
use super::reply::{Reply, replies};
use super::session::{Peer, Session, SessionShared};
use crate::metrics::ReasonLabels;

/// Connection caps shared by all listeners of a server.
pub struct ConnectionLimits {
    /// One permit per open connection; its size is `max_connections`.
    total: Arc<Semaphore>,
    /// Open connections per client IP.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// `max_connections_per_ip`.
    max_per_ip: usize,
}

/// A connection's hold on the limits; released on drop, so no path can leak a slot.
pub struct ConnectionSlot {
    /// The limits to give back to.
    limits: Arc<ConnectionLimits>,
    /// The client IP counted in `per_ip`.
    ip: IpAddr,
    /// The permit of `total`, released with the slot.
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_ip = self
            .limits
            .per_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    /// Limits of `max_total` connections, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            total: Arc::new(Semaphore::new(max_total)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
        })
    }

    /// Takes a slot for a connection from `ip`, or says which limit is reached.
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, &'static str> {
        let permit = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| "total_limit")?;
        let mut per_ip = self
            .per_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err("per_ip_limit");
        }
        *count += 1;
        Ok(ConnectionSlot {
            limits: Arc::clone(self),
            ip,
            _permit: permit,
        })
    }
}

/// Everything the accept loop needs.
pub struct SmtpServer {
    /// Shared by connection drivers.
    pub context: Arc<ConnectionContext>,
    /// Shared by sessions.
    pub shared: Arc<SessionShared>,
    /// Connection caps.
    pub limits: Arc<ConnectionLimits>,
    /// Clients that may relay without AUTH.
    pub relay_networks: Vec<IpNet>,
    /// Clients that may AUTH before STARTTLS.
    pub auth_cleartext_networks: Vec<IpNet>,
    /// How long transactions in flight may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl SmtpServer {
    /// Accepts connections until `shutdown` turns true, then waits (at most the grace period) for
    /// open connections to finish their transactions and aborts the rest.
    pub async fn run(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let mut connections = JoinSet::new();
        let mut backoff = Duration::from_millis(10);
        while !*shutdown.borrow() {
            tokio::select! {
                // Shutdown first: once it has begun, a connection waiting in the backlog must not be
                // accepted and greeted (select! would otherwise pick a ready branch at random).
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        // The server dropped its sender: stop as if told to.
                        break;
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((tcp, address)) => {
                        if *shutdown.borrow() {
                            // Shutdown began while this connection waited in the backlog (the
                            // task can be preempted between the two branches): close it unanswered.
                            drop(tcp);
                            break;
                        }
                        backoff = Duration::from_millis(10);
                        let ip = address.ip().to_canonical();
                        connections.spawn(Arc::clone(&self).connection(tcp, ip, shutdown.clone()));
                    }
                    Err(_) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                },
            }
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
    }

    /// Serves one accepted connection, or refuses it with 421.
    async fn connection(self: Arc<Self>, mut tcp: TcpStream, ip: IpAddr, shutdown: watch::Receiver<bool>) {
        let metrics = &self.context.metrics;
        let hostname = &self.shared.params.hostname;
        let slot = match self.limits.acquire(ip) {
            Ok(slot) => slot,
            Err(reason) => {
                return refuse(&mut tcp, metrics, reason, replies::too_many_connections(hostname)).await;
            }
        };
        let locked = {
            let throttle = self
                .context
                .throttle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            matches!(
                throttle.check(ip, Instant::now()),
                ThrottleDecision::LockedOut { .. }
            )
        };
        if locked {
            return refuse(
                &mut tcp,
                metrics,
                "auth_lockout",
                replies::auth_locked_out(hostname),
            )
            .await;
        }
        let _ = tcp.set_nodelay(true);
        metrics.smtp_connections.inc();
        metrics.smtp_connections_active.inc();
        let relay_tenant = self
            .relay_networks
            .iter()
            .any(|net| net.contains(&ip))
            .then(|| self.context.tenants.load().relay_tenant());
        let cleartext_auth = self.auth_cleartext_networks.iter().any(|net| net.contains(&ip));
        let session = Session::new(
            Arc::clone(&self.shared),
            Peer {
                ip,
                relay_tenant,
                cleartext_auth,
            },
        );
        connection::handle(Arc::clone(&self.context), tcp, session, shutdown, slot).await;
        metrics.smtp_connections_active.dec();
    }
}

/// Answers a refused connection and closes it (bounded in time: the client may not read).
async fn refuse(tcp: &mut TcpStream, metrics: &crate::metrics::Metrics, reason: &'static str, reply: Reply) {
    metrics
        .smtp_connections_refused
        .get_or_create(&ReasonLabels { reason })
        .inc();
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tcp.write_all(&wire).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}
