//! Delivery: routing by MX (or a smarthost), the outbound SMTP client, per-recipient outcomes,
//! retries, bounces and DSNs.
//!
//! | module | role |
//! |---|---|
//! | `mod.rs` | [`Delivery`]: settings, the dispatcher loop that takes due messages from the spool's index |
//! | `worker` | one message: group by domain, route, transact, store the outcome, emit events |
//! | `outcome` | pure: attempts → recipient states, retry time or expiry, events |
//! | `client` (+ `client_io`, `client_transaction`) | outbound SMTP session: EHLO, STARTTLS, pipelined transactions |
//! | `pool` | connection reuse and caps per host / in total |
//! | `dns` | MX / implicit MX / null MX routing with hickory-resolver |
//! | `dsn` | RFC 3464 delivery status notifications |
//! | `reply` | remote reply parsing |

pub mod client;
pub mod dns;
pub mod dsn;
pub mod outcome;
pub mod pool;
pub mod reply;
pub mod setup;
mod suppress;
mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use penguin_config::RelayHost;
use penguin_policy::RetrySchedule;
use penguin_queue::{Envelope, IdGenerator, MessageId, NewMessage, Recipient, Spool};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use self::client::ClientSettings;
use self::dns::Resolver;
use self::outcome::RecipientEvent;
use self::pool::Pool;
use crate::events::EventBus;
use crate::smtp::finish::Finisher;
use crate::timefmt;

/// The campaign DSNs are queued under (their tenant is the original message's).
pub const DSN_CAMPAIGN: &str = "dsn";

/// How often idle connections are checked for expiry, and the longest the dispatcher sleeps.
const TICK: Duration = Duration::from_secs(1);

/// Delivery settings derived from the config.
#[derive(Clone)]
pub struct DeliverySettings {
    /// Our host name (EHLO, DSN Reporting-MTA).
    pub hostname: String,
    /// Remote SMTP port.
    pub port: u16,
    /// Smarthost, if configured.
    pub relay_host: Option<RelayHost>,
    /// How sessions are opened (and their timeouts).
    pub client: ClientSettings,
    /// When to retry, when to give up.
    pub retry: RetrySchedule,
    /// Recipients per transaction.
    pub max_recipients_per_transaction: usize,
    /// Messages delivered concurrently.
    pub max_messages_in_flight: usize,
    /// Tenants that want DSNs (missing = yes).
    pub dsn_by_tenant: HashMap<String, bool>,
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
    /// DNS.
    resolver: Resolver,
    /// Outbound connections.
    pool: Pool,
    /// The event stream.
    events: EventBus,
    /// Queue ids for DSNs.
    ids: IdGenerator,
    /// Signalled when new mail was queued (deliver now instead of at the next tick).
    wakeup: Arc<Notify>,
    /// DKIM-signs the DSNs (d= the hostname's domain, when it has a key).
    finisher: Arc<Finisher>,
    /// Messages being delivered now (taken out of the index; still queued on disk).
    in_flight: Arc<AtomicUsize>,
}

impl Delivery {
    /// Builds the delivery side.
    pub fn new(
        settings: DeliverySettings,
        spool: Arc<Spool>,
        resolver: Resolver,
        pool: Pool,
        events: EventBus,
        wakeup: Arc<Notify>,
        finisher: Arc<Finisher>,
    ) -> Delivery {
        Delivery {
            finisher,
            settings,
            spool,
            resolver,
            pool,
            events,
            ids: IdGenerator::new(),
            wakeup,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The count of messages being delivered now (for the queue depth: index + in flight).
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.in_flight)
    }

    /// Takes due messages from the index and delivers them (at most `max_messages_in_flight` at
    /// once) until `stop` turns true; then lets deliveries in flight finish within `grace`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>, grace: Duration) {
        let in_flight = Arc::new(Semaphore::new(self.settings.max_messages_in_flight));
        let mut jobs = JoinSet::new();
        let mut tick = tokio::time::interval(TICK);
        while !*stop.borrow() {
            let now = timefmt::unix_millis(SystemTime::now());
            let free = self.dispatch_due(&in_flight, &mut jobs, now);
            while jobs.try_join_next().is_some() {}
            let next_due = self.spool.index().next_due_ms();
            let wait = next_due.map_or(TICK, |due| {
                Duration::from_millis(due.saturating_sub(now)).min(TICK)
            });
            tokio::select! {
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(wait), if free > 0 => {}
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
                _ = tick.tick() => self.pool.close_expired(),
                _ = stop.changed() => {}
            }
        }
        let drained = tokio::time::timeout(grace, async { while jobs.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            jobs.abort_all();
            while jobs.join_next().await.is_some() {}
        }
        self.pool.close_all().await;
    }

    /// Starts a job for each due message, as many as there are free in-flight slots; returns how many
    /// slots were free. Popped ids are counted in flight under the index lock, so the queue depth
    /// (index + in flight) never misses them.
    fn dispatch_due(self: &Arc<Self>, in_flight: &Arc<Semaphore>, jobs: &mut JoinSet<()>, now: u64) -> usize {
        let free = in_flight.available_permits();
        let Some(mut permits) = Arc::clone(in_flight)
            .try_acquire_many_owned(free as u32)
            .ok()
            .filter(|_| free > 0)
        else {
            return free;
        };
        let due = {
            let mut index = self.spool.index();
            let due = index.pop_due(now, free);
            self.in_flight.fetch_add(due.len(), Ordering::Relaxed);
            due
        };
        for id in due {
            // Only this loop takes permits, so `free` of them were available: split never fails.
            let permit = permits.split(1);
            let delivery = Arc::clone(self);
            jobs.spawn(async move {
                let counter = Arc::clone(&delivery.in_flight);
                delivery.deliver_message(id).await;
                counter.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        free
    }

    /// Queues a DSN to the sender for recipients that failed for good (if the tenant wants DSNs and
    /// the sender is not null). A DSN that cannot be queued is logged; the bounce events remain.
    async fn send_dsn(
        &self,
        id: MessageId,
        envelope: &Envelope,
        body: &[u8],
        failed: &[usize],
        events: &[RecipientEvent],
    ) {
        let wanted = self
            .settings
            .dsn_by_tenant
            .get(&envelope.tenant)
            .copied()
            .unwrap_or(true);
        if !wanted || envelope.sender.is_empty() {
            return;
        }
        let recipients: Vec<dsn::DsnRecipient> = failed
            .iter()
            .filter_map(|&index| {
                let event = events.iter().find(|event| event.index == index)?;
                Some(dsn_recipient(&envelope.recipients[index], event))
            })
            .collect();
        let dsn_id = self.ids.next_id();
        let message_id = format!("{dsn_id}.dsn@{}", self.settings.hostname);
        let content = dsn::build_dsn(&dsn::DsnInput {
            reporting_mta: &self.settings.hostname,
            queue_id: &id.to_string(),
            original_sender: &envelope.sender,
            arrival_ms: envelope.received_at_ms,
            now: SystemTime::now(),
            recipients: &recipients,
            original_message: body,
            dsn_message_id: &message_id,
        });
        let now = timefmt::unix_millis(SystemTime::now());
        let dsn_envelope = Envelope {
            tenant: envelope.tenant.clone(),
            campaign: DSN_CAMPAIGN.to_string(),
            sender: String::new(),
            recipients: vec![Recipient::queued(envelope.sender.clone())],
            size: content.len() as u64,
            received_at_ms: now,
            next_attempt_at_ms: now,
            smtputf8: !envelope.sender.is_ascii(),
            eight_bit: false,
        };
        let message = NewMessage {
            id: dsn_id,
            envelope: dsn_envelope,
            body: content,
        };
        let finisher = Arc::clone(&self.finisher);
        let message = match tokio::task::spawn_blocking(move || finisher.sign_own(message)).await {
            Ok(message) => message,
            Err(join) => {
                tracing::error!(%id, %join, "signing the DSN failed; it is not queued");
                return;
            }
        };
        match self.spool.enqueue(message).await {
            Ok(()) => self.wakeup.notify_one(),
            Err(error) => tracing::error!(%id, %error, "cannot queue the DSN"),
        }
    }
}

/// The DSN entry of a recipient that bounced or expired.
fn dsn_recipient(recipient: &Recipient, event: &RecipientEvent) -> dsn::DsnRecipient {
    let response = &event.attempt.response;
    let status = response.enhanced.clone().unwrap_or_else(|| {
        if response.code >= 500 {
            "5.0.0".into()
        } else {
            "4.0.0".into()
        }
    });
    let status = if event.kind == crate::events::EventKind::Expiration {
        "4.4.7".to_string()
    } else {
        status
    };
    let diagnostic = (response.code != 0).then(|| format!("{} {}", response.code, response.text));
    dsn::DsnRecipient {
        address: recipient.address.clone(),
        action: dsn::DsnAction::Failed,
        status,
        remote_mta: event.attempt.mx.clone(),
        diagnostic,
        last_attempt_ms: Some(timefmt::unix_millis(SystemTime::now())),
    }
}
