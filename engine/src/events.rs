//! The one typed event stream. Whatever happens to a message is an [`Event`]; sinks (metrics, the JSON
//! log, later webhooks) subscribe to the [`EventBus`]. Nothing counts or logs an outcome on its own.
//!
//! One JSON object per event (the `log.events` file) has every field below, `null` when it does not
//! apply: `type`, `timestamp`, `id`, `message_id`, `tenant`, `campaign`, `sender`, `recipient`,
//! `domain`, `mx`, `source_ip`, `client_ip`, `attempt`, `response` (`code`, `enhanced`, `text`),
//! `class`, `tls`, `size`, `recipients`, `delay_ms`, `reason`, `source`, `pool`, `provider`, `site`,
//! `scope`, `until`, `rate_before`, `rate_after`. Those names are a contract for outside tooling.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use penguin_queue::MessageId;
use serde::Serialize;

use crate::smtp::headers::TlsInfo;
use crate::timefmt;

/// Every field of an event's JSON object, in order: the contract above, checked by the event log's
/// tests and the end-to-end tests.
pub const EVENT_FIELDS: [&str; 28] = [
    "type",
    "timestamp",
    "id",
    "message_id",
    "tenant",
    "campaign",
    "sender",
    "recipient",
    "domain",
    "mx",
    "source_ip",
    "client_ip",
    "attempt",
    "response",
    "class",
    "tls",
    "size",
    "recipients",
    "delay_ms",
    "reason",
    "source",
    "pool",
    "provider",
    "site",
    "scope",
    "until",
    "rate_before",
    "rate_after",
];

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A message was accepted: durable in the spool, the client got 250. One per message.
    Reception,
    /// A recipient was accepted by the remote server (final).
    Delivery,
    /// A recipient's attempt failed temporarily; it is retried later.
    TransientFailure,
    /// A recipient failed permanently (final).
    Bounce,
    /// A recipient was still undelivered at `delivery.max_age` (final).
    Expiration,
    /// A RCPT TO was refused because the address is on the tenant's suppression list (`id` is null).
    Suppressed,
    /// A recipient used a one-click unsubscribe link: now on the tenant's suppression list (`id` null).
    Unsubscribe,
    /// An address was added to a tenant's suppression list otherwise (`reason`: `hard_bounce`, `manual`).
    SuppressionAdded,
    /// Warning: a message was accepted and will be sent without a DKIM signature (`reason` says why).
    DkimUnsigned,
    /// The closed loop or a rule changed a ready queue's message rate (`source`, `site`, `provider`,
    /// `rate_before`, `rate_after` in messages per second, null = unlimited; `reason`).
    ShapingAdjusted,
    /// Sending stopped for a scope (`scope`, `until`, `reason`): a rule or the operator.
    Suspended,
    /// Sending resumed for a scope (`scope`; `reason`: `expired` or `deleted`).
    Resumed,
    /// A webhook batch was dropped after `[webhooks] max_retry_age` of failures (`reason`: the last
    /// error; `recipients`: how many events; `scope`: `{"webhook": ID}`). Never sent to webhooks.
    WebhookFailed,
    /// Webhook events were dropped because an endpoint's outbox was full (`recipients`: how many
    /// since the last such event; `scope`: `{"webhook": ID}`). Never sent to webhooks.
    WebhookDropped,
    /// A queued recipient was removed without delivery (final, no DSN; `reason`: `campaign_cancelled`
    /// or `message_deleted`).
    Cancelled,
    /// A warming source moved to its next step for a provider (`source`, `provider`, `step`, `cap`).
    WarmupAdvanced,
    /// A warming source stays on its step for a provider (`reason`: a quiet day, an operator hold, a
    /// throttling reply that stops it until the next hour (`until`)).
    WarmupHeld,
    /// A warming source went back one step for a provider after an unhealthy day (`step`, `cap`,
    /// `reason`: which rate was over its threshold).
    WarmupSteppedBack,
    /// Warning: a warming source's day went over a health threshold (`reason`), before the step back.
    WarmupAlert,
    /// A source's address is listed on a DNS blocklist (`source`, `zone`, `reason`: the TXT answer).
    SourceListed,
    /// A source's address is no longer listed on a DNS blocklist (`source`, `zone`).
    SourceDelisted,
    /// Warning: this node lost Redis (`[cluster]`): a command failed or took longer than
    /// `cluster.redis_timeout` (`reason`). Acceptance goes on; emitted once per outage.
    ClusterDegraded,
    /// This node reached Redis again after a `cluster_degraded`.
    ClusterRecovered,
}

impl EventKind {
    /// The `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Reception => "reception",
            EventKind::Delivery => "delivery",
            EventKind::TransientFailure => "transient_failure",
            EventKind::Bounce => "bounce",
            EventKind::Expiration => "expiration",
            EventKind::Suppressed => "suppressed",
            EventKind::Unsubscribe => "unsubscribe",
            EventKind::SuppressionAdded => "suppression_added",
            EventKind::DkimUnsigned => "dkim_unsigned",
            EventKind::ShapingAdjusted => "shaping_adjusted",
            EventKind::Suspended => "suspended",
            EventKind::Resumed => "resumed",
            EventKind::Cancelled => "cancelled",
            EventKind::WebhookFailed => "webhook_failed",
            EventKind::WebhookDropped => "webhook_dropped",
            EventKind::WarmupAdvanced => "warmup_advanced",
            EventKind::WarmupHeld => "warmup_held",
            EventKind::WarmupSteppedBack => "warmup_stepped_back",
            EventKind::WarmupAlert => "warmup_alert",
            EventKind::SourceListed => "source_listed",
            EventKind::SourceDelisted => "source_delisted",
            EventKind::ClusterDegraded => "cluster_degraded",
            EventKind::ClusterRecovered => "cluster_recovered",
        }
    }
}

/// The remote server's answer (or our description of a network/DNS failure, with code 0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventResponse {
    /// SMTP reply code; 0 when no reply was received (connection, TLS or DNS failure).
    pub code: u16,
    /// Enhanced status code ("5.1.1") when the reply had one, or the one we assigned.
    pub enhanced: Option<String>,
    /// Reply text (lines joined by a space) or the failure description.
    pub text: String,
}

/// One event. Per-recipient events carry `recipient`/`domain`; a reception carries `recipients`.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When, as unix milliseconds (serialised as RFC 3339).
    #[serde(serialize_with = "serialize_timestamp")]
    pub timestamp: u64,
    /// Queue id; null for events about an address rather than a stored message.
    #[serde(serialize_with = "serialize_optional_display")]
    pub id: Option<MessageId>,
    /// The Message-ID header field of the message (without angle brackets), if any.
    pub message_id: Option<String>,
    /// Tenant the message belongs to.
    pub tenant: String,
    /// Campaign from X-Campaign-ID.
    pub campaign: String,
    /// Envelope sender ("" for the null sender).
    pub sender: String,
    /// The recipient this event is about.
    pub recipient: Option<String>,
    /// The recipient's domain.
    pub domain: Option<String>,
    /// The remote host that answered (MX name, or the relay host).
    pub mx: Option<String>,
    /// Our address used for the connection.
    pub source_ip: Option<IpAddr>,
    /// The submitting client's address (reception).
    pub client_ip: Option<IpAddr>,
    /// Which delivery attempt this was (1 = first).
    pub attempt: Option<u32>,
    /// The answer that decided the outcome.
    pub response: Option<EventResponse>,
    /// Bounce class (`invalid_recipient`, `mailbox_full`, `rate_limited`, ...).
    pub class: Option<&'static str>,
    /// TLS of the session ("TLSv1.3 TLS13_AES_256_GCM_SHA384"), if any.
    #[serde(serialize_with = "serialize_tls")]
    pub tls: Option<TlsInfo>,
    /// Message size in bytes.
    pub size: u64,
    /// Number of recipients (reception).
    pub recipients: Option<usize>,
    /// Milliseconds from reception to this event (delivery latency for `delivery`).
    pub delay_ms: Option<u64>,
    /// Why (`suppressed`, `suppression_added`: the list entry's reason; `dkim_unsigned`: `no_key`,
    /// `foreign_domain`, `no_from_domain`; `shaping_adjusted`, `suspended`, `resumed`: the reply, rule
    /// or operator reason).
    pub reason: Option<Cow<'static, str>>,
    /// The egress source (name) a delivery attempt or a shaping change is about.
    pub source: Option<Arc<str>>,
    /// The IP pool the message was sent from.
    pub pool: Option<Arc<str>>,
    /// The destination's provider (`google`, `microsoft`, ..., `other`).
    pub provider: Option<Arc<str>>,
    /// The destination site (its MX host names, or the relay).
    pub site: Option<Arc<str>>,
    /// What a suspension covers: `{"tenant", "campaign", "domain", "provider", "source", "site"}`,
    /// unset keys null.
    pub scope: Option<serde_json::Value>,
    /// When a suspension ends (unix milliseconds, serialised as RFC 3339).
    #[serde(serialize_with = "serialize_optional_timestamp")]
    pub until: Option<u64>,
    /// A ready queue's message rate before a change, messages per second (null = unlimited).
    pub rate_before: Option<f64>,
    /// The rate after it.
    pub rate_after: Option<f64>,
    /// A warm-up step (1 = the plan's first; warm-up events).
    pub step: Option<u32>,
    /// A warm-up daily cap (warm-up events; null = warm, no cap).
    pub cap: Option<u64>,
    /// A DNS blocklist zone (`source_listed`, `source_delisted`).
    pub zone: Option<String>,
    /// Its webhook copies were already stored with the change it reports (not serialised).
    #[serde(skip)]
    pub in_outbox: bool,
}

impl Event {
    /// An event of `kind` at `timestamp` with every optional field empty; callers fill in the rest.
    pub fn blank(kind: EventKind, timestamp: u64) -> Event {
        Event {
            kind,
            timestamp,
            id: None,
            message_id: None,
            tenant: String::new(),
            campaign: String::new(),
            sender: String::new(),
            recipient: None,
            domain: None,
            mx: None,
            source_ip: None,
            client_ip: None,
            attempt: None,
            response: None,
            class: None,
            tls: None,
            size: 0,
            recipients: None,
            delay_ms: None,
            reason: None,
            source: None,
            pool: None,
            provider: None,
            site: None,
            scope: None,
            until: None,
            rate_before: None,
            rate_after: None,
            step: None,
            cap: None,
            zone: None,
            in_outbox: false,
        }
    }

    /// An event about an address rather than a stored message (`id` null): `suppressed`,
    /// `unsubscribe`, `suppression_added`. Callers fill in what else they know.
    pub fn about_address(
        kind: EventKind,
        timestamp: u64,
        tenant: &str,
        campaign: &str,
        address: &str,
        reason: &'static str,
    ) -> Event {
        Event {
            tenant: tenant.to_owned(),
            campaign: campaign.to_owned(),
            recipient: Some(address.to_owned()),
            domain: address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()),
            reason: Some(Cow::Borrowed(reason)),
            ..Event::blank(kind, timestamp)
        }
    }

    /// The JSON line of this event (without the newline).
    pub fn to_json(&self) -> String {
        // Serialising plain data into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Serialises unix milliseconds as RFC 3339.
fn serialize_timestamp<S: serde::Serializer>(millis: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&timefmt::rfc3339_millis(*millis))
}

/// Serialises optional unix milliseconds as RFC 3339, `None` as null.
fn serialize_optional_timestamp<S: serde::Serializer>(
    millis: &Option<u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match millis {
        Some(millis) => serializer.serialize_str(&timefmt::rfc3339_millis(*millis)),
        None => serializer.serialize_none(),
    }
}

/// Serialises a value by its Display form, `None` as null.
fn serialize_optional_display<T: std::fmt::Display, S: serde::Serializer>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

/// Serialises TLS parameters as "TLSv1.3 TLS13_AES_128_GCM_SHA256".
fn serialize_tls<S: serde::Serializer>(tls: &Option<TlsInfo>, serializer: S) -> Result<S::Ok, S::Error> {
    match tls {
        Some(tls) => serializer.collect_str(&format_args!("{} {}", tls.version, tls.cipher)),
        None => serializer.serialize_none(),
    }
}

/// A consumer of events.
pub trait EventSink: Send + Sync {
    /// Handles one event; must not block (sinks that do IO queue it).
    fn emit(&self, event: &Event);

    /// The durable copies this sink wants written in the same spool batch as the change `event`
    /// reports (the webhooks' outbox); none by default.
    fn outbox(&self, _event: &Event) -> Vec<penguin_queue::OutboxEvent> {
        Vec::new()
    }
}

/// Fans each event out to every sink.
#[derive(Clone, Default)]
pub struct EventBus {
    /// The subscribers, in order.
    sinks: Vec<Arc<dyn EventSink>>,
}

impl EventBus {
    /// A bus with these sinks.
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> EventBus {
        EventBus { sinks }
    }

    /// The outbox copies of `events` to write with the change they report; mark the events
    /// `in_outbox` once that write is done, before emitting them.
    pub fn outbox(&self, events: &[Event]) -> Vec<penguin_queue::OutboxEvent> {
        events
            .iter()
            .flat_map(|event| self.sinks.iter().flat_map(move |sink| sink.outbox(event)))
            .collect()
    }

    /// Delivers `event` to every sink.
    pub fn emit(&self, event: Event) {
        for sink in &self.sinks {
            sink.emit(&event);
        }
    }
}
