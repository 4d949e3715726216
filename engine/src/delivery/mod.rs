//! Delivery: due messages into ready queues per (egress source, destination site), shaped by the
//! scheduler; connections that pull their work; per-recipient outcomes, retries, bounces and DSNs.
//!
//! | module | role |
//! |---|---|
//! | `mod.rs` | [`Delivery`]: settings, the driver loop (due messages → items → ready queues; timers; connections to open) |
//! | `scheduler` | sans-IO: ready queues, limits, closed loop, rules, suspensions (see its module doc) |
//! | `routing` | domain → site (MX hosts or smarthost), cached |
//! | `sender` | one connection's worker: connect from its source, pull items, send, report |
//! | `complete` | an item's end: envelope update, events, DSN, auto-suppression |
//! | `suspensions` | operator suspensions: stored in the spool, in force in the scheduler |
//! | `outcome` | pure: attempts → recipient states, retry time or expiry, events |
//! | `client` (+ `client_io`, `client_transaction`) | outbound SMTP session: EHLO, STARTTLS, pipelined transactions |
//! | `dns` | MX / implicit MX / null MX routing with hickory-resolver |
//! | `dsn` | RFC 3464 delivery status notifications |
//! | `reply` | remote reply parsing |

mod cancel;
pub mod client;
mod complete;
pub mod dns;
pub mod dsn;
pub mod outcome;
pub mod reply;
pub mod routing;
pub mod scheduler;
mod sender;
pub mod setup;
mod suppress;
pub mod suspensions;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use penguin_config::RelayHost;
use penguin_policy::RetrySchedule;
use penguin_queue::{Envelope, IdGenerator, MessageId, RecipientState, Spool};
use smallvec::SmallVec;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

pub use self::cancel::Cancellations;
use self::client::ClientSettings;
use self::outcome::CancelReason;
use self::routing::{RouteFailure, Router};
use self::scheduler::{Item, QueueKey, Route, Scheduler};
use crate::clock::SharedClock;
use crate::events::EventBus;
use crate::smtp::finish::Finisher;

/// The campaign DSNs are queued under (their tenant is the original message's).
pub const DSN_CAMPAIGN: &str = "dsn";

/// Most due messages taken from the index per turn of the driver loop (the loop goes round again at
/// once while more are due, answering route results and timers in between).
const INTAKE_BATCH: usize = 512;

/// Delivery settings derived from the config.
#[derive(Clone)]
pub struct DeliverySettings {
    /// Our host name (DSN Reporting-MTA; the EHLO name of sources without their own).
    pub hostname: String,
    /// Remote SMTP port.
    pub port: u16,
    /// Smarthost, if configured.
    pub relay_host: Option<RelayHost>,
    /// How sessions are opened (and their timeouts); each source sets its own address and EHLO name.
    pub client: ClientSettings,
    /// When to retry, when to give up.
    pub retry: RetrySchedule,
    /// Items (a message's recipients of one domain) waiting for their domain's route at once: bounds
    /// the routing stage (`delivery.max_messages_in_flight`).
    pub max_messages_in_flight: usize,
    /// How long a connection waits for work (or a rate slot) before it closes.
    pub idle_timeout: Duration,
    /// The tenants (config and API), asked whether a tenant wants DSNs (unknown = yes); None in
    /// settings built without a server (tests).
    pub tenants: Option<crate::smtp::auth::SharedTenants>,
    /// Put hard-bounced recipients on their tenant's suppression list (`suppression.auto_hard_bounce`).
    pub auto_suppress: bool,
}

/// One place to try: a remote host name and one of its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// MX (or relay host) name.
    pub host: String,
    /// Address and port.
    pub address: SocketAddr,
}

/// The delivery side of a server.
pub struct Delivery {
    /// Settings.
    settings: DeliverySettings,
    /// The queue.
    spool: Arc<Spool>,
    /// Domain → site.
    router: Arc<Router>,
    /// Ready queues and limits.
    scheduler: Arc<Mutex<Scheduler>>,
    /// The event stream.
    events: EventBus,
    /// Queue ids for DSNs.
    ids: IdGenerator,
    /// Signalled when new mail was queued (deliver now instead of at its due time).
    wakeup: Arc<Notify>,
    /// Signalled when the scheduler has lanes to look at or expired items.
    driver: Arc<Notify>,
    /// DKIM-signs the DSNs (d= the hostname's domain, when it has a key).
    finisher: Arc<Finisher>,
    /// Messages out of the index (in the scheduler or being routed); still queued on disk.
    in_flight: Arc<AtomicUsize>,
    /// Time of every decision.
    clock: SharedClock,
    /// Item completions being stored (spawned by connections so they need not wait for the spool);
    /// waited for at shutdown.
    finishing: tokio_util::task::TaskTracker,
    /// Cancelled campaigns and deleted messages: not sent.
    cancellations: Arc<Cancellations>,
    /// Connection leases of the fleet's caps (`[cluster]` only; set once at start).
    leases: std::sync::OnceLock<crate::cluster::Leases>,
}

/// Messages waiting for their domain's route.
#[derive(Default)]
struct PendingRoutes {
    /// domain → items waiting for it.
    waiting: HashMap<String, Vec<Item>>,
    /// Items waiting (bounds the routing stage).
    items: usize,
}

impl Delivery {
    /// Builds the delivery side.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: DeliverySettings,
        spool: Arc<Spool>,
        router: Router,
        scheduler: Arc<Mutex<Scheduler>>,
        driver: Arc<Notify>,
        events: EventBus,
        wakeup: Arc<Notify>,
        finisher: Arc<Finisher>,
        clock: SharedClock,
    ) -> Delivery {
        Delivery {
            finisher,
            settings,
            spool,
            router: Arc::new(router),
            scheduler,
            events,
            ids: IdGenerator::new(),
            wakeup,
            driver,
            in_flight: Arc::new(AtomicUsize::new(0)),
            clock,
            finishing: tokio_util::task::TaskTracker::new(),
            cancellations: Cancellations::new(),
            leases: std::sync::OnceLock::new(),
        }
    }

    /// Makes connections hold leases of the fleet's connection caps (`[cluster]`; before `run`).
    pub fn set_leases(&self, leases: crate::cluster::Leases) {
        let _ = self.leases.set(leases);
    }

    /// What must not be sent (shared with the API's campaign and message routes).
    pub fn cancellations(&self) -> Arc<Cancellations> {
        Arc::clone(&self.cancellations)
    }

    /// The count of messages out of the index (for the queue depth: index + in flight).
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.in_flight)
    }

    /// The scheduler (for the API: `/v1/shaping`, suspensions).
    pub fn scheduler(&self) -> Arc<Mutex<Scheduler>> {
        Arc::clone(&self.scheduler)
    }

    /// Locks the scheduler (never held across an `.await`).
    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        self.scheduler.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The driver: takes due messages into the ready queues, routes their domains, runs the
    /// scheduler's timers and starts the connections it asks for, until `stop` turns true; then lets
    /// connections finish their transaction within `grace`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>, grace: Duration) {
        let mut tasks = JoinSet::new();
        let (route_tx, mut route_rx) = mpsc::unbounded_channel();
        let mut pending = PendingRoutes::default();
        while !*stop.borrow() {
            let now_us = self.clock.now_us();
            let more = self.intake(now_us, &mut pending, &route_tx, &mut tasks);
            while let Ok((domain, result)) = route_rx.try_recv() {
                self.routed(&mut pending, domain, result, &mut tasks);
            }
            self.run_scheduler(now_us, &mut tasks);
            while tasks.try_join_next().is_some() {}
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            let wake = self.next_wake();
            let sleep = self
                .clock
                .sleep_until(crate::clock::from_unix_micros(wake.unwrap_or(u64::MAX / 2)));
            tokio::select! {
                _ = self.wakeup.notified() => {}
                _ = self.driver.notified() => {}
                _ = sleep, if wake.is_some() => {}
                Some((domain, result)) = route_rx.recv() => self.routed(&mut pending, domain, result, &mut tasks),
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = stop.changed() => {}
            }
        }
        self.lock().stop();
        let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        // Outcomes of finished transactions are stored before the spool closes.
        self.finishing.close();
        self.finishing.wait().await;
    }

    /// When the driver must look again without being woken: the next due message or scheduler timer.
    fn next_wake(&self) -> Option<u64> {
        let due = self.spool.index().next_due_ms().map(|ms| ms.saturating_mul(1000));
        let timer = self.lock().next_timer_us();
        match (due, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the scheduler's poll: starts the connections it opens, finishes the items it found
    /// expired.
    fn run_scheduler(self: &Arc<Self>, now_us: u64, tasks: &mut JoinSet<()>) {
        let (opens, expired, cancelled) = {
            let mut scheduler = self.lock();
            (
                scheduler.poll(now_us),
                scheduler.take_expired(),
                scheduler.take_cancelled(),
            )
        };
        let cancelled = self.cancel_reasons(cancelled);
        self.spawn_cancel(cancelled, tasks);
        for open in opens {
            tasks.spawn(Arc::clone(self).run_connection(open));
        }
        if !expired.is_empty() {
            let delivery = Arc::clone(self);
            tasks.spawn(async move {
                for work in expired {
                    delivery.expire_item(work).await;
                }
            });
        }
    }

    /// Takes due messages out of the index into the scheduler (or waiting for a route); returns
    /// whether more are due.
    fn intake(
        self: &Arc<Self>,
        now_us: u64,
        pending: &mut PendingRoutes,
        route_tx: &mpsc::UnboundedSender<(String, Result<Arc<Route>, RouteFailure>)>,
        tasks: &mut JoinSet<()>,
    ) -> bool {
        let room = self.settings.max_messages_in_flight.saturating_sub(pending.items);
        if room == 0 {
            return false;
        }
        let batch = room.min(INTAKE_BATCH);
        let due = {
            let mut index = self.spool.index();
            let due = index.pop_due(now_us / 1000, batch);
            self.in_flight.fetch_add(due.len(), Ordering::Relaxed);
            due
        };
        let more = due.len() == batch;
        for id in due {
            match self.spool.read_envelope(id) {
                Ok(Some(envelope)) if envelope.has_queued() => {
                    self.admit(id, &envelope, now_us, pending, route_tx, tasks);
                }
                Ok(_) => {
                    self.in_flight.fetch_sub(1, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::error!(%id, %error, "cannot read a queued message; retrying in a minute");
                    self.reschedule_in_memory(id, None);
                }
            }
        }
        more
    }

    /// One due message: one item per recipient domain, each to its ready queue (or waiting for its
    /// domain's route).
    fn admit(
        self: &Arc<Self>,
        id: MessageId,
        envelope: &Envelope,
        now_us: u64,
        pending: &mut PendingRoutes,
        route_tx: &mpsc::UnboundedSender<(String, Result<Arc<Route>, RouteFailure>)>,
        tasks: &mut JoinSet<()>,
    ) {
        let mut by_domain: BTreeMap<String, SmallVec<[u16; 4]>> = BTreeMap::new();
        for (index, recipient) in envelope.recipients.iter().enumerate() {
            if recipient.state == RecipientState::Queued
                && let Ok(index) = u16::try_from(index)
            {
                by_domain
                    .entry(recipient.domain().to_ascii_lowercase())
                    .or_default()
                    .push(index);
            }
        }
        let max_age_us = u64::try_from(self.settings.retry.max_age.as_micros()).unwrap_or(u64::MAX);
        let expires_at_us = envelope
            .received_at_ms
            .saturating_mul(1000)
            .saturating_add(max_age_us);
        if let Some(reason) = self.cancellations.check(&envelope.tenant, &envelope.campaign, id) {
            self.cancel_admitted(id, envelope, by_domain, expires_at_us, reason, tasks);
            return;
        }
        let mut scheduler = self.lock();
        let pool = scheduler
            .settings()
            .message_pool(&envelope.tenant, &envelope.pool);
        scheduler.begin_message(id, u16::try_from(by_domain.len()).unwrap_or(u16::MAX));
        for (domain, recipients) in by_domain {
            let item = Item {
                id,
                key: QueueKey {
                    high: envelope.warmup_priority,
                    ..scheduler.queue_key(&envelope.tenant, &envelope.campaign, &domain)
                },
                pool,
                recipients,
                expires_at_us,
            };
            match self.router.cached(&domain) {
                Some(route) => scheduler.add_item(item, &route, now_us),
                None => {
                    pending.items += 1;
                    let first = !pending.waiting.contains_key(&domain);
                    pending.waiting.entry(domain.clone()).or_default().push(item);
                    if first {
                        let (router, tx) = (Arc::clone(&self.router), route_tx.clone());
                        tasks.spawn(async move {
                            let result = router.resolve(&domain).await;
                            let _ = tx.send((domain, result));
                        });
                    }
                }
            }
        }
    }

    /// A domain's route arrived: its waiting items go to their ready queues, or fail with the
    /// routing error.
    fn routed(
        self: &Arc<Self>,
        pending: &mut PendingRoutes,
        domain: String,
        result: Result<Arc<Route>, RouteFailure>,
        tasks: &mut JoinSet<()>,
    ) {
        let Some(items) = pending.waiting.remove(&domain) else {
            return;
        };
        pending.items = pending.items.saturating_sub(items.len());
        match result {
            Ok(route) => {
                let now_us = self.clock.now_us();
                let mut cancelled = Vec::new();
                let mut scheduler = self.lock();
                for item in items {
                    let (tenant, campaign) = scheduler.item_names(&item);
                    match self.cancellations.check(&tenant, &campaign, item.id) {
                        Some(reason) => cancelled.push((scheduler.unrouted_work(item), reason)),
                        None => scheduler.add_item(item, &route, now_us),
                    }
                }
                drop(scheduler);
                self.spawn_cancel(cancelled, tasks);
            }
            Err((failure, detail)) => {
                let delivery = Arc::clone(self);
                tasks.spawn(async move {
                    for item in items {
                        delivery.fail_unrouted(item, failure, &detail).await;
                    }
                });
            }
        }
    }

    /// A due message that must not be sent: one item with every queued recipient, cancelled.
    fn cancel_admitted(
        self: &Arc<Self>,
        id: MessageId,
        envelope: &Envelope,
        by_domain: BTreeMap<String, SmallVec<[u16; 4]>>,
        expires_at_us: u64,
        reason: CancelReason,
        tasks: &mut JoinSet<()>,
    ) {
        let recipients: SmallVec<[u16; 4]> = by_domain.into_values().flatten().collect();
        let work = {
            let mut scheduler = self.lock();
            let pool = scheduler
                .settings()
                .message_pool(&envelope.tenant, &envelope.pool);
            scheduler.begin_message(id, 1);
            let item = Item {
                id,
                key: scheduler.queue_key(&envelope.tenant, &envelope.campaign, ""),
                pool,
                recipients,
                expires_at_us,
            };
            scheduler.unrouted_work(item)
        };
        self.spawn_cancel(vec![(work, reason)], tasks);
    }

    /// Puts a message back into the in-memory schedule after a storage error (one minute later).
    fn reschedule_in_memory(&self, id: MessageId, envelope: Option<&Envelope>) {
        let due = self.clock.now_ms() + 60_000;
        let (tenant, campaign) = envelope.map_or(("", ""), |e| (e.tenant.as_str(), e.campaign.as_str()));
        self.spool.index().insert(id, due, tenant, campaign);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.driver.notify_one();
    }
}
