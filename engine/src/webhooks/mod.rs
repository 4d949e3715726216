//! Webhooks: tenants' endpoints (control records `webhook/ID`, made over the API) and the events
//! they get. The registry is a sink of the one event stream: each event of a tenant that an endpoint
//! asked for gets a copy in that endpoint's durable outbox (`penguin_queue` CF `outbox`). Receptions
//! and delivery outcomes hand their copies to the spool writer with the change they report
//! (`EventBus::outbox`, same `WriteBatch`), so a crash can never keep one without the other; other
//! events are appended through the writer as they are emitted. The writer numbers the copies in
//! commit order and tells the registry (`OutboxObserver`); one dispatcher task per endpoint POSTs the
//! outbox in order, in signed batches, retrying with exponential backoff (see `dispatch.rs`). A receiver that is down only makes its outbox grow (up to
//! `[webhooks] max_pending_per_endpoint`; then the oldest are dropped and counted).

mod dispatch;
pub mod target;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use penguin_config::WebhooksConfig;
use penguin_queue::{OutboxEvent, OutboxObserver, Spool, SpoolError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::task::TaskTracker;

use crate::clock::SharedClock;
use crate::events::{Event, EventBus, EventKind, EventSink};

/// Prefix of the control records.
const PREFIX: &str = "webhook/";

/// One endpoint, as stored (the secret signs every batch, so it is kept; the API shows it once).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Webhook {
    /// Its id (`wh` + 16 hex digits).
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Where batches are POSTed.
    pub url: String,
    /// Event types it gets (`delivery`, `bounce`, ...) or `["*"]`.
    pub events: Vec<String>,
    /// The HMAC-SHA256 key of `X-Penguin-Signature`.
    pub secret: String,
    /// When it was made (RFC 3339).
    pub created: String,
}

impl Webhook {
    /// Whether it wants events of `kind`.
    fn wants(&self, kind: EventKind) -> bool {
        self.events.iter().any(|e| e == "*" || e == kind.as_str())
    }
}

/// An endpoint in force: its record, outbox positions, and what the API shows.
pub struct Endpoint {
    /// The record.
    pub hook: Webhook,
    /// The sequence number the next event gets.
    next_seq: AtomicU64,
    /// The oldest waiting sequence number.
    first_seq: AtomicU64,
    /// Events dropped because the outbox was full.
    dropped: AtomicU64,
    /// Of those, not yet reported by a `webhook_dropped` event.
    unreported: AtomicU64,
    /// When a batch was last accepted (RFC 3339).
    last_success: Mutex<Option<String>>,
    /// The last failure, with its time.
    last_error: Mutex<Option<String>>,
    /// Wakes its dispatcher (new events, deletion).
    wake: Notify,
    /// Set when the endpoint is deleted.
    deleted: std::sync::atomic::AtomicBool,
}

impl Endpoint {
    /// Events waiting.
    pub fn pending(&self) -> u64 {
        self.next_seq
            .load(Ordering::Acquire)
            .saturating_sub(self.first_seq.load(Ordering::Acquire))
    }

    /// What the API lists (never the secret).
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.hook.id,
            "url": self.hook.url,
            "events": self.hook.events,
            "created": self.hook.created,
            "pending": self.pending(),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "last_success": *lock(&self.last_success),
            "last_error": *lock(&self.last_error),
        })
    }
}

/// Locks a mutex, ignoring poisoning.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The endpoints and their dispatchers.
pub struct Webhooks {
    /// Records and outboxes.
    spool: Arc<Spool>,
    /// `[webhooks]`.
    config: WebhooksConfig,
    /// Now (timestamps, backoff).
    clock: SharedClock,
    /// Endpoints by id.
    endpoints: RwLock<HashMap<String, Arc<Endpoint>>>,
    /// Where `webhook_failed` events go; cleared at shutdown (the bus holds this sink).
    events: Mutex<Option<EventBus>>,
    /// Turns true at shutdown.
    stop: watch::Sender<bool>,
    /// The dispatcher tasks.
    tasks: TaskTracker,
}

impl Webhooks {
    /// Loads the stored endpoints and their outbox positions (dispatchers start with [`Webhooks::start`]).
    pub fn load(
        spool: Arc<Spool>,
        config: WebhooksConfig,
        clock: SharedClock,
    ) -> Result<Arc<Webhooks>, SpoolError> {
        let mut endpoints = HashMap::new();
        for (key, value) in spool.control_records(PREFIX)? {
            let Ok(hook) = serde_json::from_slice::<Webhook>(&value) else {
                tracing::warn!(%key, "ignoring an unreadable webhook");
                continue;
            };
            let (first, next) = match spool.outbox_bounds(&hook.id)? {
                Some((first, last)) => (first, last + 1),
                None => (0, 0),
            };
            spool.outbox_seed(&hook.id, next);
            endpoints.insert(hook.id.clone(), Arc::new(endpoint(hook, first, next)));
        }
        let webhooks = Arc::new(Webhooks {
            spool,
            config,
            clock,
            endpoints: RwLock::new(endpoints),
            events: Mutex::new(None),
            stop: watch::channel(false).0,
            tasks: TaskTracker::new(),
        });
        let observer = Observer(Arc::downgrade(&webhooks));
        webhooks.spool.set_outbox_observer(Arc::new(observer));
        Ok(webhooks)
    }

    /// Starts a dispatcher per endpoint; `events` receives `webhook_failed`.
    pub fn start(self: &Arc<Self>, events: EventBus) {
        *lock(&self.events) = Some(events);
        let all: Vec<Arc<Endpoint>> = self.read().values().cloned().collect();
        for endpoint in all {
            self.spawn(endpoint);
        }
    }

    /// Stops the dispatchers (a batch in flight is abandoned and sent again at the next start) and
    /// waits for them.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        self.tasks.close();
        self.tasks.wait().await;
        lock(&self.events).take();
    }

    /// A tenant's endpoints, by id.
    pub fn list(&self, tenant: &str) -> Vec<Arc<Endpoint>> {
        let mut list: Vec<Arc<Endpoint>> = self
            .read()
            .values()
            .filter(|e| e.hook.tenant == tenant)
            .cloned()
            .collect();
        list.sort_by(|a, b| a.hook.id.cmp(&b.hook.id));
        list
    }

    /// Stores (synced) and starts a new endpoint.
    pub fn add(self: &Arc<Self>, hook: Webhook) -> Result<(), SpoolError> {
        let record = serde_json::to_vec(&hook).unwrap_or_default();
        self.spool.put_control(&format!("{PREFIX}{}", hook.id), &record)?;
        self.spool.outbox_seed(&hook.id, 0);
        let endpoint = Arc::new(endpoint(hook, 0, 0));
        self.write()
            .insert(endpoint.hook.id.clone(), Arc::clone(&endpoint));
        if lock(&self.events).is_some() {
            self.spawn(endpoint);
        }
        Ok(())
    }

    /// Deletes a tenant's endpoint and its outbox; false when there is none.
    pub fn delete(&self, tenant: &str, id: &str) -> Result<bool, SpoolError> {
        let removed = {
            let mut endpoints = self.write();
            match endpoints.get(id) {
                Some(e) if e.hook.tenant == tenant => endpoints.remove(id),
                _ => None,
            }
        };
        let Some(endpoint) = removed else {
            return Ok(false);
        };
        endpoint.deleted.store(true, Ordering::Release);
        endpoint.wake.notify_one();
        self.spool.delete_control(&format!("{PREFIX}{id}"))?;
        self.spool.outbox_clear(id)?;
        Ok(true)
    }

    /// Runs an endpoint's dispatcher.
    fn spawn(self: &Arc<Self>, endpoint: Arc<Endpoint>) {
        let webhooks = Arc::clone(self);
        let stop = self.stop.subscribe();
        self.tasks
            .spawn(async move { webhooks.dispatch(endpoint, stop).await });
    }

    /// Emits an event of the webhooks themselves (never sent to webhooks).
    fn emit(&self, event: Event) {
        if let Some(bus) = lock(&self.events).as_ref() {
            bus.emit(event);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Endpoint>>> {
        self.endpoints.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Endpoint>>> {
        self.endpoints.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the oldest events of an endpoint beyond the limit.
    fn trim(&self, endpoint: &Endpoint) {
        let max = self.config.max_pending_per_endpoint.max(1);
        let pending = endpoint.pending();
        if pending <= max {
            return;
        }
        let first = endpoint.first_seq.load(Ordering::Acquire);
        let through = first + (pending - max) - 1;
        if self
            .spool
            .outbox_remove_through(&endpoint.hook.id, through)
            .is_ok()
        {
            endpoint.first_seq.fetch_max(through + 1, Ordering::AcqRel);
            endpoint.dropped.fetch_add(pending - max, Ordering::Relaxed);
            endpoint.unreported.fetch_add(pending - max, Ordering::Relaxed);
        }
    }
}

/// An endpoint record with its outbox positions.
fn endpoint(hook: Webhook, first_seq: u64, next_seq: u64) -> Endpoint {
    Endpoint {
        hook,
        next_seq: AtomicU64::new(next_seq),
        first_seq: AtomicU64::new(first_seq),
        dropped: AtomicU64::new(0),
        unreported: AtomicU64::new(0),
        last_success: Mutex::new(None),
        last_error: Mutex::new(None),
        wake: Notify::new(),
        deleted: std::sync::atomic::AtomicBool::new(false),
    }
}

impl Webhooks {
    /// The outbox copies of `event`: one per endpoint of its tenant that wants its type.
    fn copies(&self, event: &Event) -> Vec<OutboxEvent> {
        if event.tenant.is_empty()
            || matches!(event.kind, EventKind::WebhookFailed | EventKind::WebhookDropped)
        {
            return Vec::new();
        }
        let endpoints = self.read();
        let mut wanted = endpoints
            .values()
            .filter(|e| e.hook.tenant == event.tenant && e.hook.wants(event.kind))
            .peekable();
        if wanted.peek().is_none() {
            return Vec::new();
        }
        let json = event.to_json().into_bytes();
        wanted
            .map(|e| OutboxEvent {
                endpoint: e.hook.id.clone(),
                event: json.clone(),
            })
            .collect()
    }

    /// The writer stored `endpoint`'s events up to `last_seq`.
    fn appended(&self, endpoint: &str, last_seq: u64) {
        let Some(endpoint) = self.read().get(endpoint).cloned() else {
            return;
        };
        endpoint.next_seq.fetch_max(last_seq + 1, Ordering::AcqRel);
        self.trim(&endpoint);
        endpoint.wake.notify_one();
    }
}

impl EventSink for Webhooks {
    /// Events whose copies were not written with their change are appended now (through the writer,
    /// not waited for).
    fn emit(&self, event: &Event) {
        if event.in_outbox {
            return;
        }
        let copies = self.copies(event);
        if let Err(error) = self.spool.outbox_append(copies) {
            tracing::error!(%error, "cannot store webhook events");
        }
    }

    fn outbox(&self, event: &Event) -> Vec<OutboxEvent> {
        self.copies(event)
    }
}

/// The writer's outbox observer: a weak handle (the spool must not keep the webhooks alive).
struct Observer(std::sync::Weak<Webhooks>);

impl OutboxObserver for Observer {
    fn appended(&self, endpoint: &str, last_seq: u64) {
        if let Some(webhooks) = self.0.upgrade() {
            webhooks.appended(endpoint, last_seq);
        }
    }
}
