//! Prometheus metrics of one server instance (no global registry: tests run several servers).
//!
//! Message outcomes are counted from the event stream ([`crate::events`]), never updated directly
//! by the code that produced them; gauges that are states (queue depth) are read at scrape time.

use std::sync::Arc;
use std::time::Duration;

use penguin_queue::CommitObserver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

/// All series of one server.
pub struct Metrics {
    /// The registry rendered by `/metrics`.
    registry: Registry,
    /// Messages accepted (250 after the spool sync), by tenant.
    pub messages_received: Family<TenantLabels, Counter>,
    /// Bytes of accepted messages, by tenant.
    pub bytes_received: Family<TenantLabels, Counter>,
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
}

impl Metrics {
    /// A fresh registry with every series registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("penguin");
        let metrics = Metrics {
            messages_received: Family::default(),
            bytes_received: Family::default(),
            smtp_connections: Counter::default(),
            smtp_connections_active: Gauge::default(),
            smtp_connections_refused: Family::default(),
            auth_failures: Counter::default(),
            spool_commits: Counter::default(),
            spool_commit_batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            spool_commit_sync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            smtp_ack_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            queue_messages: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "messages_received",
            "Messages accepted (durable before 250)",
            metrics.messages_received.clone(),
        );
        registry.register(
            "bytes_received",
            "Bytes of accepted messages",
            metrics.bytes_received.clone(),
        );
        registry.register(
            "smtp_connections",
            "SMTP connections accepted",
            metrics.smtp_connections.clone(),
        );
        registry.register(
            "smtp_connections_active",
            "SMTP connections open",
            metrics.smtp_connections_active.clone(),
        );
        registry.register(
            "smtp_connections_refused",
            "SMTP connections refused at connect",
            metrics.smtp_connections_refused.clone(),
        );
        registry.register(
            "auth_failures",
            "Failed SMTP AUTH attempts",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "spool_commits",
            "Group commits (synced write batches)",
            metrics.spool_commits.clone(),
        );
        registry.register(
            "spool_commit_batch_messages",
            "Messages per group commit",
            metrics.spool_commit_batch_messages.clone(),
        );
        registry.register(
            "spool_commit_sync_seconds",
            "Duration of one synced group-commit write",
            metrics.spool_commit_sync_seconds.clone(),
        );
        registry.register(
            "smtp_ack_seconds",
            "End of message content to 250",
            metrics.smtp_ack_seconds.clone(),
        );
        registry.register(
            "queue_messages",
            "Messages in the queue",
            metrics.queue_messages.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl EventSink for Metrics {
    fn emit(&self, event: &Event) {
        match event.kind {
            EventKind::Reception => {
                let labels = TenantLabels {
                    tenant: event.tenant.clone(),
                };
                self.messages_received.get_or_create(&labels).inc();
                self.bytes_received.get_or_create(&labels).inc_by(event.size);
            }
            EventKind::Delivery | EventKind::TransientFailure | EventKind::Bounce | EventKind::Expiration => {
            }
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
