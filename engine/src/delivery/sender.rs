//! One outbound connection's worker. It belongs to one ready queue (source, site): it takes its first
//! item, connects from the source's address to the site's hosts (next host on failure), then sends
//! item after item as the scheduler hands them out, waits when a limit says so, and closes when its
//! share of deliveries is used up, the queue is suspended, or no work comes within the idle timeout.
//! Its [`Ticket`] gives the connection slot back to the scheduler however the worker ends.

use std::sync::Arc;
use std::time::Duration;

use penguin_policy::NetworkFailure;
use tokio::sync::Notify;

use super::client::{ClientSettings, Connection, SessionError, Transaction};
use super::complete::Loaded;
use super::outcome::{Attempt, ConnectionInfo};
use super::scheduler::{ConnId, Feedback, Next, Open, ReplyEffect, Work};
use super::{Delivery, routing};
use crate::cluster::{Acquired, LeaseGuard};

/// How long QUIT may take when a connection closes.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a connection goes, for events: source, site, provider, and the pool of each item.
#[derive(Clone, Debug)]
pub(super) struct LaneNames {
    /// Source name.
    pub source: Arc<str>,
    /// Site name.
    pub site: Arc<str>,
    /// Provider name.
    pub provider: Arc<str>,
}

/// A counted connection: dropping it tells the scheduler the slot is free.
struct Ticket {
    /// Its id.
    conn: ConnId,
    /// The delivery side (scheduler and driver).
    delivery: Arc<Delivery>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.delivery.lock().connection_closed(self.conn);
        self.delivery.driver.notify_one();
    }
}

/// The result of sending one item.
struct Sent {
    /// Per recipient (index in the envelope): what happened.
    attempts: Vec<(usize, Attempt)>,
    /// Whether the connection may carry another transaction.
    reusable: bool,
    /// The message as read for sending (its completion reuses it when nothing else changed it).
    loaded: Option<Loaded>,
}

impl Delivery {
    /// The worker of connection `open` (see the module documentation). With `[cluster]` it first
    /// takes the leases of the fleet's connection caps: refused, it does not connect (no attempt) and
    /// the scheduler's lane waits; held, they are given back after QUIT, before the slot is.
    pub(super) async fn run_connection(self: Arc<Self>, open: Open) {
        let ticket = Ticket {
            conn: open.conn,
            delivery: Arc::clone(&self),
        };
        let Some(lease) = self.lease(&open).await else {
            return;
        };
        self.deliver(&open, &ticket, &lease).await;
        lease.release().await;
        drop(ticket);
    }

    /// The leases connection `open` must hold (see [`crate::cluster::Leases`]), or None when they were
    /// refused (the scheduler was told).
    async fn lease(&self, open: &Open) -> Option<LeaseGuard> {
        let Some(leases) = self.leases.get().filter(|_| !open.leases.is_empty()) else {
            return Some(LeaseGuard::none());
        };
        match leases.acquire(&open.leases, open.conn).await {
            Acquired::Held(guard) => Some(guard),
            Acquired::Refused { retry_at_us } => {
                self.lock()
                    .lease_refused(open.conn, retry_at_us, self.clock.now_us());
                None
            }
        }
    }

    /// Connects and sends item after item until the connection should close; then QUIT.
    async fn deliver(self: &Arc<Self>, open: &Open, ticket: &Ticket, lease: &LeaseGuard) {
        let names = LaneNames {
            source: Arc::clone(&open.names.0),
            site: Arc::clone(&open.names.1),
            provider: Arc::clone(&open.names.2),
        };
        let Next::Send(first) = self.lock().next(open.conn, self.clock.now_us()) else {
            return;
        };
        let settings = ClientSettings {
            helo: open.source.ehlo_name.clone(),
            source_ip: open.source.ip,
            ..self.settings.client.clone()
        };
        let mut connection = match self.open_to(open, &settings).await {
            Ok(connection) => connection,
            Err((error, at)) => {
                self.connection_failed(open, &names, *first, &error, &at).await;
                return;
            }
        };
        let mut work = *first;
        let mut loaded = self.load(work.item.id);
        // The previous item's outcome being stored while this one is sent: at most two items of a
        // connection are sent but not stored (what a crash can repeat).
        let mut storing: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            // The next item, when one may go now: its commands ride behind this message's data.
            let ahead = self.take_ahead(&connection, open.conn);
            let sent = self
                .send_item(&mut connection, open, &settings, &work, loaded, ahead.as_ref())
                .await;
            if let Some(previous) = storing.take() {
                let _ = previous.await;
            }
            storing = Some(self.report(open, &names, work, sent.attempts, sent.loaded));
            // A lost lease (or Redis back for a connection without one) ends the connection.
            let reusable = sent.reusable && !lease.must_end();
            let next = match ahead {
                Some((next, next_loaded)) => {
                    if reusable && !self.lock().lane_held(open.conn, self.clock.now_us()) {
                        Some((next, next_loaded))
                    } else {
                        // The connection broke, or the reply just stored suspended the queue.
                        self.lock().give_back(next);
                        None
                    }
                }
                None if reusable => self.next_work(ticket.conn, lease.holds()).await.map(|next| {
                    let next_loaded = self.load(next.item.id);
                    (next, next_loaded)
                }),
                None => None,
            };
            match next {
                Some((next, next_loaded)) => (work, loaded) = (next, next_loaded),
                None => break,
            }
        }
        connection.quit(QUIT_TIMEOUT).await;
    }

    /// The item to pipeline behind the one being sent (see [`Connection::send`]): one that every
    /// limit allows now, on a connection whose server pipelines; loaded from the spool.
    fn take_ahead(&self, connection: &Connection, conn: ConnId) -> Option<(Work, LoadResult)> {
        if !connection.pipelines() {
            return None;
        }
        let next = self.lock().next_ready(conn, self.clock.now_us())?;
        let loaded = self.load(next.item.id);
        Some((next, loaded))
    }

    /// Asks the scheduler for the next item, waiting as it says (for a rate slot, or for work up to
    /// the idle timeout — [`LEASED_IDLE`] at most when the connection holds a lease of a fleet-wide
    /// cap, which another node may be waiting for); None when the connection should close.
    async fn next_work(&self, conn: ConnId, leased: bool) -> Option<Work> {
        let idle = if leased {
            self.settings.idle_timeout.min(LEASED_IDLE)
        } else {
            self.settings.idle_timeout
        };
        let mut idled = false;
        loop {
            let now_us = self.clock.now_us();
            let next = self.lock().next(conn, now_us);
            match next {
                Next::Send(work) => return Some(*work),
                Next::Close => return None,
                Next::Wait { until_us, notify } => {
                    let wait = Duration::from_micros(until_us.saturating_sub(now_us));
                    if wait > idle {
                        return None;
                    }
                    let deadline = crate::clock::from_unix_micros(until_us);
                    tokio::select! {
                        _ = self.clock.sleep_until(deadline) => {}
                        _ = notify.notified() => {}
                    }
                }
                Next::Idle(notify) => {
                    if idled {
                        return None;
                    }
                    idled = !wait_for_work(&notify, idle).await;
                }
            }
        }
    }

    /// Connects to the route's hosts in order (next address on failure) from the source.
    async fn open_to(
        &self,
        open: &Open,
        settings: &ClientSettings,
    ) -> Result<Connection, (SessionError, ConnectionInfo)> {
        let mut last = None;
        for (host, address) in routing::targets(&open.route) {
            match Connection::open(address, &host, settings).await {
                Ok(connection) => return Ok(connection),
                Err(error) => {
                    let at = ConnectionInfo {
                        mx: Some(host),
                        source_ip: open.source.ip,
                        tls: None,
                    };
                    last = Some((error, at));
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            let error = SessionError::Network {
                failure: NetworkFailure::NoAddresses,
                detail: "no address to try".into(),
            };
            (error, ConnectionInfo::default())
        }))
    }

    /// Sends one item's recipients in transactions of at most the lane's size; the last one carries
    /// the commands of `ahead`'s first transaction.
    async fn send_item(
        &self,
        connection: &mut Connection,
        open: &Open,
        settings: &ClientSettings,
        work: &Work,
        loaded: LoadResult,
        ahead: Option<&(Work, LoadResult)>,
    ) -> Sent {
        let loaded = match loaded {
            Ok(Some(loaded)) => loaded,
            Ok(None) => {
                return Sent {
                    attempts: Vec::new(),
                    reusable: true,
                    loaded: None,
                };
            }
            Err(error) => return unreadable(work, &error),
        };
        let ahead_recipients = ahead.and_then(|(next, next_loaded)| {
            let next_loaded = next_loaded.as_ref().ok()?.as_ref()?;
            Some((first_chunk(next, next_loaded, open.max_recipients), next_loaded))
        });
        let ahead_tx = ahead_recipients
            .as_ref()
            .map(|(recipients, next_loaded)| transaction(next_loaded, recipients));
        let mut attempts = Vec::with_capacity(work.item.recipients.len());
        let indexes: Vec<usize> = work.item.recipients.iter().map(|&i| usize::from(i)).collect();
        let chunks: Vec<&[usize]> = indexes.chunks(open.max_recipients.max(1)).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            let recipients: Vec<String> = chunk
                .iter()
                .filter_map(|&i| loaded.envelope.recipients.get(i).map(|r| r.address.clone()))
                .collect();
            let tx = transaction(&loaded, &recipients);
            let ahead = ahead_tx.as_ref().filter(|_| n + 1 == chunks.len());
            attempts.extend(self.transact(connection, open, settings, &tx, ahead, chunk).await);
            if !connection.is_usable() {
                break;
            }
        }
        let sent_all = attempts.len() == indexes.len();
        let reusable = sent_all && connection.is_usable() && !connection.has_unread_input();
        Sent {
            attempts,
            reusable,
            loaded: Some(loaded),
        }
    }

    /// One transaction for the recipients `chunk` (indexes in the envelope). A reused connection that
    /// turns out dead before the data (the server closed it while idle) is replaced once.
    async fn transact(
        &self,
        connection: &mut Connection,
        open: &Open,
        settings: &ClientSettings,
        tx: &Transaction<'_>,
        ahead: Option<&Transaction<'_>>,
        chunk: &[usize],
    ) -> Vec<(usize, Attempt)> {
        let mut result = connection.send(tx, ahead, self.settings.client.timeouts).await;
        if connection.transactions > 0
            && matches!(&result, Err(SessionError::Network { failure, .. }) if *failure != NetworkFailure::DisconnectedAfterData)
            && let Ok(fresh) = self.open_to(open, settings).await
        {
            let old = std::mem::replace(connection, fresh);
            tokio::spawn(old.quit(QUIT_TIMEOUT));
            result = connection.send(tx, ahead, self.settings.client.timeouts).await;
        }
        let at = connection_info(connection);
        match result {
            Ok(replies) => chunk
                .iter()
                .zip(&replies)
                .map(|(&i, reply)| (i, Attempt::from_reply(reply, &at)))
                .collect(),
            Err(error) => {
                let attempt = Attempt::from_error(&error, &at);
                chunk.iter().map(|&i| (i, attempt.clone())).collect()
            }
        }
    }

    /// Feeds the distinct failed replies into the closed loop and rules (now: the next item's
    /// limits depend on them), then finishes the item in a task of its own, so that the connection
    /// goes on with its next item while the outcome is stored; returns that task.
    fn report(
        self: &Arc<Self>,
        open: &Open,
        names: &LaneNames,
        work: Work,
        mut attempts: Vec<(usize, Attempt)>,
        loaded: Option<Loaded>,
    ) -> tokio::task::JoinHandle<()> {
        let now_us = self.clock.now_us();
        let mut bounced: Vec<String> = Vec::new();
        {
            let mut scheduler = self.lock();
            let mut seen: Vec<&str> = Vec::new();
            for (_, attempt) in &attempts {
                let Some(class) = attempt.class() else {
                    continue;
                };
                let text = attempt.response.text.as_str();
                if seen.contains(&text) {
                    continue;
                }
                seen.push(text);
                let feedback = Feedback {
                    code: attempt.response.code,
                    enhanced: attempt.response.enhanced.as_deref(),
                    text,
                    class,
                };
                if scheduler.feedback(open.lane, Some(work.item.id), &feedback, now_us) == ReplyEffect::Bounce
                {
                    bounced.push(text.to_string());
                }
            }
        }
        for (_, attempt) in &mut attempts {
            if bounced.contains(&attempt.response.text)
                && let Some(class) = attempt.class()
            {
                attempt.outcome = penguin_policy::Outcome::Permanent(class);
            }
        }
        let delivery = Arc::clone(self);
        let names = names.clone();
        self.finishing.spawn(async move {
            delivery.finish_item(&work, Some(&names), attempts, loaded).await;
        })
    }

    /// Connecting failed on every address: the first item, and the lane's other sendable items when
    /// no other connection works, take the failure (one attempt each); a refusal at the greeting
    /// also feeds the closed loop and rules.
    async fn connection_failed(
        self: &Arc<Self>,
        open: &Open,
        names: &LaneNames,
        first: Work,
        error: &SessionError,
        at: &ConnectionInfo,
    ) {
        let attempt = Attempt::from_error(error, at);
        let others = self.lock().connect_failed(open.conn);
        for work in std::iter::once(first).chain(others) {
            let attempts = work
                .item
                .recipients
                .iter()
                .map(|&i| (usize::from(i), attempt.clone()))
                .collect();
            let _ = self.report(open, names, work, attempts, None).await;
        }
    }
}

/// A message as read from the spool for sending (None: it is gone).
type LoadResult = Result<Option<Loaded>, penguin_queue::SpoolError>;

/// The addresses of an item's first transaction (at most `max_recipients`).
fn first_chunk(work: &Work, loaded: &Loaded, max_recipients: usize) -> Vec<String> {
    work.item
        .recipients
        .iter()
        .take(max_recipients.max(1))
        .filter_map(|&i| {
            loaded
                .envelope
                .recipients
                .get(usize::from(i))
                .map(|r| r.address.clone())
        })
        .collect()
}

/// The transaction of `loaded` to `recipients`.
fn transaction<'a>(loaded: &'a Loaded, recipients: &'a [String]) -> Transaction<'a> {
    Transaction {
        sender: &loaded.envelope.sender,
        recipients,
        body: &loaded.body,
        smtputf8: loaded.envelope.smtputf8,
        eight_bit: loaded.envelope.eight_bit,
    }
}

/// A message that cannot be read from the spool: each recipient's attempt fails temporarily.
fn unreadable(work: &Work, error: &penguin_queue::SpoolError) -> Sent {
    tracing::error!(id = %work.item.id, %error, "cannot read a queued message");
    let failure = Attempt::from_failure(
        NetworkFailure::Disconnected,
        "spool read failed",
        &ConnectionInfo::default(),
    );
    let attempts = work
        .item
        .recipients
        .iter()
        .map(|&i| (usize::from(i), failure.clone()))
        .collect();
    Sent {
        attempts,
        reusable: true,
        loaded: None,
    }
}

/// Longest idle wait of a connection holding a lease of a fleet-wide connection cap: an idle
/// connection gives its slot back soon, so that a node with mail never waits for another's idle
/// connections (a burst still reuses the connection: the next message comes sooner than this).
const LEASED_IDLE: Duration = Duration::from_millis(200);

/// Waits for work up to `idle`; false when the time ran out.
async fn wait_for_work(notify: &Notify, idle: Duration) -> bool {
    tokio::time::timeout(idle, notify.notified()).await.is_ok()
}

/// Where an attempt happened, from its connection.
fn connection_info(connection: &Connection) -> ConnectionInfo {
    ConnectionInfo {
        mx: Some(connection.host.clone()),
        source_ip: connection.local_ip,
        tls: connection.tls.clone(),
    }
}
