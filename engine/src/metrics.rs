//! Prometheus metrics of one server instance (no global registry: tests run several servers).
//!
//! Message outcomes are counted from the event stream ([`crate::events`]), never updated directly
//! by the code that produced them; gauges that are states (queue depth) are read at scrape time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use penguin_queue::CommitObserver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::delivery::scheduler::LaneTotals;
use crate::events::{Event, EventKind, EventSink};

/// Label set of per-tenant series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// Tenant name.
    pub tenant: String,
}

/// Label set of per-reason series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why (e.g. "total_limit", "per_ip_limit", "auth_lockout").
    pub reason: &'static str,
}

/// Label set of per-recipient delivery outcomes. Bounded labels only: recipient domains and sites
/// are unbounded, so they are in the event log, never here.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// Tenant name.
    pub tenant: String,
    /// Egress source name ("" when no connection was made, e.g. a DNS failure).
    pub source: String,
    /// IP pool name.
    pub pool: String,
    /// Destination provider (`google`, ..., `other`; "" when the domain could not be routed).
    pub provider: String,
}

/// Label set of the shaping series: per egress source and destination provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceProviderLabels {
    /// Egress source name.
    pub source: String,
    /// Destination provider.
    pub provider: String,
}

/// Label set of the DNS blocklist gauge: per egress source and blocklist zone (both from the config).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceZoneLabels {
    /// Egress source name.
    pub source: String,
    /// DNS blocklist zone.
    pub zone: String,
}

/// Label set of the address-level events (suppression, unsubscribe, unsigned mail).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantEventLabels {
    /// Tenant name.
    pub tenant: String,
    /// The event type (`suppressed`, `unsubscribe`, `suppression_added`, `dkim_unsigned`).
    pub r#type: &'static str,
}

/// The empty label set, for a series that exists only in some configurations (`penguin_cluster_up`,
/// rendered without braces).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct NoLabels;

impl EncodeLabelSet for NoLabels {
    fn encode(
        &self,
        _encoder: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

/// All series of one server.
pub struct Metrics {
    /// The registry rendered by `/metrics`.
    registry: Registry,
    /// Messages accepted (250 after the spool sync), by tenant.
    pub messages_received: Family<TenantLabels, Counter>,
    /// Bytes of accepted messages, by tenant.
    pub bytes_received: Family<TenantLabels, Counter>,
    /// Suppression, unsubscribe and unsigned-mail events, by tenant and type.
    pub tenant_events: Family<TenantEventLabels, Counter>,
    /// Recipients delivered, by tenant, domain and source IP.
    pub delivered: Family<DeliveryLabels, Counter>,
    /// Recipient attempts that failed temporarily (deferred), by tenant, domain and source IP.
    pub deferred: Family<DeliveryLabels, Counter>,
    /// Recipients bounced, by tenant, domain and source IP.
    pub bounced: Family<DeliveryLabels, Counter>,
    /// Recipients expired, by tenant, domain and source IP.
    pub expired: Family<DeliveryLabels, Counter>,
    /// Time from reception to delivery of a recipient.
    pub delivery_delay_seconds: Histogram,
    /// Outbound SMTP connections open (busy or idle).
    pub outbound_connections: Gauge,
    /// SMTP connections accepted.
    pub smtp_connections: Counter,
    /// SMTP connections open now.
    pub smtp_connections_active: Gauge,
    /// Connections refused at connect, by reason.
    pub smtp_connections_refused: Family<ReasonLabels, Counter>,
    /// Failed AUTH attempts.
    pub auth_failures: Counter,
    /// Group commits (synced WriteBatches) of the spool.
    pub spool_commits: Counter,
    /// Messages per group commit.
    pub spool_commit_batch_messages: Histogram,
    /// Duration of the synced write of one group commit.
    pub spool_commit_sync_seconds: Histogram,
    /// Time from the end of a message's content to its 250 (trace headers, spool, sync).
    pub smtp_ack_seconds: Histogram,
    /// Messages in the queue (set at scrape time).
    pub queue_messages: Gauge,
    /// Items waiting in ready queues, per source and provider (set at scrape time).
    pub shaping_queued: Family<SourceProviderLabels, Gauge>,
    /// Connections of the ready queues, per source and provider (set at scrape time).
    pub shaping_connections: Family<SourceProviderLabels, Gauge>,
    /// Sum of the enforced message rates (msgs/s) of the rate-limited ready queues (set at scrape time).
    pub shaping_effective_rate: Family<SourceProviderLabels, Gauge<f64, AtomicU64>>,
    /// Ready queues suspended now (by a rule or the operator), per source and provider.
    pub shaping_suspended_queues: Family<SourceProviderLabels, Gauge>,
    /// Operator suspensions in force.
    pub suspensions: Gauge,
    /// Throttling replies (class `rate_limited`), per source and provider.
    pub throttled_replies: Family<SourceProviderLabels, Counter>,
    /// Rate changes of the closed loop and the rules, per source and provider.
    pub shaping_adjustments: Family<SourceProviderLabels, Counter>,
    /// 1 while a source's address is listed on a DNS blocklist zone, else 0 (set by the checker).
    pub source_listed: Family<SourceZoneLabels, Gauge>,
    /// A warming source's cap today per provider (set at scrape time; no series when warm).
    pub warmup_cap: Family<SourceProviderLabels, Gauge>,
    /// A warming source's messages sent today per provider (set at scrape time).
    pub warmup_sent_today: Family<SourceProviderLabels, Gauge>,
    /// A warming source's step per provider, 1 = the plan's first (set at scrape time).
    pub warmup_step: Family<SourceProviderLabels, Gauge>,
    /// 1 while this node reaches Redis (`[cluster]`), else 0; no series without `[cluster]`.
    pub cluster_up: Family<NoLabels, Gauge>,
}

impl Metrics {
    /// A fresh registry with every series registered.
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("penguin"),
            messages_received: Family::default(),
            tenant_events: Family::default(),
            bytes_received: Family::default(),
            delivered: Family::default(),
            deferred: Family::default(),
            bounced: Family::default(),
            expired: Family::default(),
            delivery_delay_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 24)),
            outbound_connections: Gauge::default(),
            smtp_connections: Counter::default(),
            smtp_connections_active: Gauge::default(),
            smtp_connections_refused: Family::default(),
            auth_failures: Counter::default(),
            spool_commits: Counter::default(),
            spool_commit_batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            spool_commit_sync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            smtp_ack_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            queue_messages: Gauge::default(),
            shaping_queued: Family::default(),
            shaping_connections: Family::default(),
            shaping_effective_rate: Family::default(),
            shaping_suspended_queues: Family::default(),
            suspensions: Gauge::default(),
            throttled_replies: Family::default(),
            shaping_adjustments: Family::default(),
            source_listed: Family::default(),
            warmup_cap: Family::default(),
            warmup_sent_today: Family::default(),
            warmup_step: Family::default(),
            cluster_up: Family::default(),
        };
        metrics.register_all();
        metrics
    }

    /// Registers every series under its name and help text.
    fn register_all(&mut self) {
        let r = &mut self.registry;
        r.register(
            "tenant_events",
            "Suppressed recipients, unsubscribes, suppression list additions and unsigned messages",
            self.tenant_events.clone(),
        );
        r.register(
            "messages_received",
            "Messages accepted (durable before 250)",
            self.messages_received.clone(),
        );
        r.register(
            "bytes_received",
            "Bytes of accepted messages",
            self.bytes_received.clone(),
        );
        r.register(
            "messages_delivered",
            "Recipients delivered",
            self.delivered.clone(),
        );
        r.register(
            "messages_deferred",
            "Recipient attempts failed temporarily",
            self.deferred.clone(),
        );
        r.register("messages_bounced", "Recipients bounced", self.bounced.clone());
        r.register("messages_expired", "Recipients expired", self.expired.clone());
        r.register(
            "delivery_delay_seconds",
            "Reception to delivery",
            self.delivery_delay_seconds.clone(),
        );
        r.register(
            "outbound_connections",
            "Outbound SMTP connections open",
            self.outbound_connections.clone(),
        );
        r.register(
            "smtp_connections",
            "SMTP connections accepted",
            self.smtp_connections.clone(),
        );
        r.register(
            "smtp_connections_active",
            "SMTP connections open",
            self.smtp_connections_active.clone(),
        );
        r.register(
            "smtp_connections_refused",
            "SMTP connections refused at connect",
            self.smtp_connections_refused.clone(),
        );
        r.register(
            "auth_failures",
            "Failed SMTP AUTH attempts",
            self.auth_failures.clone(),
        );
        r.register(
            "spool_commits",
            "Group commits (synced write batches)",
            self.spool_commits.clone(),
        );
        r.register(
            "spool_commit_batch_messages",
            "Messages per group commit",
            self.spool_commit_batch_messages.clone(),
        );
        r.register(
            "spool_commit_sync_seconds",
            "Duration of one synced group-commit write",
            self.spool_commit_sync_seconds.clone(),
        );
        r.register(
            "smtp_ack_seconds",
            "End of message content to 250",
            self.smtp_ack_seconds.clone(),
        );
        r.register(
            "queue_messages",
            "Messages in the queue",
            self.queue_messages.clone(),
        );
        r.register(
            "cluster_up",
            "1 while this node reaches Redis ([cluster]), else 0",
            self.cluster_up.clone(),
        );
        self.register_shaping();
    }

    /// Registers the shaping series.
    fn register_shaping(&mut self) {
        let r = &mut self.registry;
        r.register(
            "shaping_queued",
            "Items waiting in ready queues",
            self.shaping_queued.clone(),
        );
        r.register(
            "shaping_connections",
            "Connections of the ready queues",
            self.shaping_connections.clone(),
        );
        r.register(
            "shaping_effective_rate",
            "Sum of the enforced message rates of rate-limited ready queues (messages per second)",
            self.shaping_effective_rate.clone(),
        );
        r.register(
            "shaping_suspended_queues",
            "Ready queues suspended now",
            self.shaping_suspended_queues.clone(),
        );
        r.register(
            "suspensions",
            "Operator suspensions in force",
            self.suspensions.clone(),
        );
        r.register(
            "throttled_replies",
            "Remote replies classed rate_limited",
            self.throttled_replies.clone(),
        );
        r.register(
            "shaping_adjustments",
            "Rate changes by the closed loop and the rules",
            self.shaping_adjustments.clone(),
        );
        r.register(
            "source_listed",
            "1 while the source's address is listed on the DNS blocklist zone, else 0",
            self.source_listed.clone(),
        );
        r.register(
            "warmup_cap",
            "A warming source's cap today for the provider",
            self.warmup_cap.clone(),
        );
        r.register(
            "warmup_sent_today",
            "Messages a warming source sent to the provider today",
            self.warmup_sent_today.clone(),
        );
        r.register(
            "warmup_step",
            "A warming source's step for the provider (1 = the plan's first)",
            self.warmup_step.clone(),
        );
    }

    /// Sets the warm-up gauges from the warm-up status (at scrape time); warm pairs have no series.
    pub fn set_warmup(&self, rows: &[crate::warmup::WarmupRow]) {
        self.warmup_cap.clear();
        self.warmup_sent_today.clear();
        self.warmup_step.clear();
        for row in rows {
            let (Some(cap), Some(step)) = (row.cap_today, row.step) else {
                continue;
            };
            let labels = SourceProviderLabels {
                source: row.source.clone(),
                provider: row.provider.clone(),
            };
            self.warmup_cap
                .get_or_create(&labels)
                .set(i64::try_from(cap).unwrap_or(i64::MAX));
            self.warmup_sent_today
                .get_or_create(&labels)
                .set(i64::try_from(row.sent_today).unwrap_or(i64::MAX));
            self.warmup_step.get_or_create(&labels).set(i64::from(step));
        }
    }

    /// Sets `penguin_cluster_up` (the series appears at the first call).
    pub fn set_cluster_up(&self, up: bool) {
        self.cluster_up.get_or_create(&NoLabels).set(i64::from(up));
    }

    /// Sets `penguin_source_listed` of (`source`, `zone`).
    pub fn set_source_listed(&self, source: &str, zone: &str, listed: bool) {
        let labels = SourceZoneLabels {
            source: source.to_string(),
            zone: zone.to_string(),
        };
        self.source_listed.get_or_create(&labels).set(i64::from(listed));
    }

    /// Sets the shaping gauges from the scheduler's totals (at scrape time): per (source, provider),
    /// and the operator suspensions in force. Series of pairs no longer present are dropped.
    pub fn set_shaping(&self, totals: &BTreeMap<(String, String), LaneTotals>, suspensions: usize) {
        self.shaping_queued.clear();
        self.shaping_connections.clear();
        self.shaping_effective_rate.clear();
        self.shaping_suspended_queues.clear();
        let mut connections = 0;
        for ((source, provider), total) in totals {
            let labels = SourceProviderLabels {
                source: source.clone(),
                provider: provider.clone(),
            };
            self.shaping_queued
                .get_or_create(&labels)
                .set(total.queued as i64);
            self.shaping_connections
                .get_or_create(&labels)
                .set(total.connections as i64);
            self.shaping_effective_rate
                .get_or_create(&labels)
                .set(total.effective_rate);
            self.shaping_suspended_queues
                .get_or_create(&labels)
                .set(total.suspended as i64);
            connections += total.connections;
        }
        self.outbound_connections.set(connections as i64);
        self.suspensions.set(suspensions as i64);
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The counter family of a per-recipient outcome.
    fn outcome_family(&self, kind: EventKind) -> Option<&Family<DeliveryLabels, Counter>> {
        match kind {
            EventKind::Delivery => Some(&self.delivered),
            EventKind::TransientFailure => Some(&self.deferred),
            EventKind::Bounce => Some(&self.bounced),
            EventKind::Expiration => Some(&self.expired),
            EventKind::Reception
            | EventKind::Suppressed
            | EventKind::Unsubscribe
            | EventKind::SuppressionAdded
            | EventKind::DkimUnsigned
            | EventKind::ShapingAdjusted
            | EventKind::Suspended
            | EventKind::Resumed
            | EventKind::Cancelled
            | EventKind::WebhookFailed
            | EventKind::WebhookDropped
            | EventKind::WarmupAdvanced
            | EventKind::WarmupHeld
            | EventKind::WarmupSteppedBack
            | EventKind::WarmupAlert
            | EventKind::SourceListed
            | EventKind::SourceDelisted
            | EventKind::ClusterDegraded
            | EventKind::ClusterRecovered => None,
        }
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl EventSink for Metrics {
    fn emit(&self, event: &Event) {
        if event.kind == EventKind::Reception {
            let labels = TenantLabels {
                tenant: event.tenant.clone(),
            };
            self.messages_received.get_or_create(&labels).inc();
            self.bytes_received.get_or_create(&labels).inc_by(event.size);
            return;
        }
        if matches!(
            event.kind,
            EventKind::Suppressed
                | EventKind::Unsubscribe
                | EventKind::SuppressionAdded
                | EventKind::DkimUnsigned
        ) {
            let labels = TenantEventLabels {
                tenant: event.tenant.clone(),
                r#type: event.kind.as_str(),
            };
            self.tenant_events.get_or_create(&labels).inc();
            return;
        }
        let source_provider = || SourceProviderLabels {
            source: event.source.as_deref().unwrap_or_default().to_string(),
            provider: event.provider.as_deref().unwrap_or_default().to_string(),
        };
        if event.kind == EventKind::ShapingAdjusted {
            self.shaping_adjustments.get_or_create(&source_provider()).inc();
            return;
        }
        if let Some(family) = self.outcome_family(event.kind) {
            let labels = DeliveryLabels {
                tenant: event.tenant.clone(),
                source: event.source.as_deref().unwrap_or_default().to_string(),
                pool: event.pool.as_deref().unwrap_or_default().to_string(),
                provider: event.provider.as_deref().unwrap_or_default().to_string(),
            };
            family.get_or_create(&labels).inc();
            if event.class == Some("rate_limited") {
                self.throttled_replies.get_or_create(&source_provider()).inc();
            }
        }
        if let (EventKind::Delivery, Some(delay)) = (event.kind, event.delay_ms) {
            self.delivery_delay_seconds.observe(delay as f64 / 1000.0);
        }
    }
}

/// Feeds group-commit figures from the spool's writer thread into the metrics.
pub struct CommitMetrics(pub Arc<Metrics>);

impl CommitObserver for CommitMetrics {
    fn on_commit(&self, messages: usize, _bytes: usize, sync: Duration) {
        self.0.spool_commits.inc();
        self.0.spool_commit_batch_messages.observe(messages as f64);
        self.0.spool_commit_sync_seconds.observe(sync.as_secs_f64());
    }
}
