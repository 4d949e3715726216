//! What the scheduler shows: the ready queues for `GET /v1/shaping` and `penguin-mta shaping`, and
//! the aggregates the metrics export (by source, pool and provider only: sites and domains are
//! unbounded, so they never become metric labels).

use std::collections::BTreeMap;

use serde::Serialize;

use super::Scheduler;
use super::names::LaneId;
use crate::timefmt;

/// The configured limits of a ready queue, as the API shows them (rates as written in the config:
/// messages per second here, null = unlimited).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfiguredView {
    /// Connections at once.
    pub max_connections: usize,
    /// Messages per second (before the closed loop).
    pub max_message_rate: Option<f64>,
    /// New connections per second.
    pub max_connection_rate: Option<f64>,
    /// Transactions per connection.
    pub max_deliveries_per_connection: usize,
    /// Recipients per transaction.
    pub max_recipients_per_transaction: usize,
    /// Connections from the source to all of the provider's sites.
    pub provider_max_connections: Option<usize>,
    /// Messages per second from the source to all of the provider's sites.
    pub provider_max_message_rate: Option<f64>,
}

/// The last throttling reply of a queue.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThrottleView {
    /// When (RFC 3339).
    pub at: String,
    /// The reply.
    pub reply: String,
}

/// One ready queue.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueView {
    /// Source name.
    pub source: String,
    /// Site name (MX host names, or the relay).
    pub site: String,
    /// Provider name.
    pub provider: String,
    /// Domains routed to the site (a sample of at most 100).
    pub domains: Vec<String>,
    /// Items (one message's recipients of one domain) waiting here.
    pub queued: usize,
    /// Connections open or opening.
    pub connections: usize,
    /// Configured limits.
    pub configured: ConfiguredView,
    /// The message rate enforced now (the closed loop's), messages per second; null = unlimited.
    pub effective_rate: Option<f64>,
    /// Until when the queue is suspended (RFC 3339), null if it is not.
    pub suspended_until: Option<String>,
    /// Why it is suspended.
    pub suspended_reason: Option<String>,
    /// The last throttling reply.
    pub last_throttle: Option<ThrottleView>,
}

/// `GET /v1/shaping`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShapingView {
    /// Every ready queue that has mail, connections, a suspension or a reduced rate.
    pub queues: Vec<QueueView>,
}

/// Aggregates for the metrics, per (source, pool-less) provider.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LaneTotals {
    /// Items queued.
    pub queued: u64,
    /// Connections.
    pub connections: u64,
    /// Sum of the effective rates of the queues that have one (msgs/s).
    pub effective_rate: f64,
    /// Queues suspended now.
    pub suspended: u64,
}

impl Scheduler {
    /// The ready queues worth showing, ordered by source then site.
    pub fn view(&self, now_us: u64) -> ShapingView {
        let mut queues: Vec<QueueView> = (0..self.lanes.len())
            .map(|index| LaneId(index as u32))
            .filter(|&id| self.is_interesting(id, now_us))
            .map(|id| self.queue_view(id, now_us))
            .collect();
        queues.sort_by(|a, b| (&a.source, &a.site).cmp(&(&b.source, &b.site)));
        ShapingView { queues }
    }

    /// Whether a lane has anything to show.
    fn is_interesting(&self, id: LaneId, now_us: u64) -> bool {
        let lane = &self.lanes[id.0 as usize];
        lane.queued > 0
            || lane.connections > 0
            || lane.adaptive.is_reduced()
            || lane.last_throttle.is_some()
            || self.lane_hold(id, now_us).is_some()
    }

    /// One lane's view.
    fn queue_view(&self, id: LaneId, now_us: u64) -> QueueView {
        let lane = &self.lanes[id.0 as usize];
        let site = &self.sites[lane.site.0 as usize];
        let (source, _, provider) = self.lane_names(id);
        let provider_limits = self.settings.provider_limits(lane.provider);
        let hold = self.lane_hold(id, now_us);
        QueueView {
            source: source.to_string(),
            site: site.name.to_string(),
            provider: provider.to_string(),
            domains: site
                .domains
                .iter()
                .map(|d| self.names.name(*d).to_string())
                .collect(),
            queued: lane.queued,
            connections: lane.connections,
            configured: ConfiguredView {
                max_connections: lane.limits.max_connections,
                max_message_rate: lane.limits.rate.map(|r| r.per_second()),
                max_connection_rate: lane.limits.connection_rate.map(|r| r.per_second()),
                max_deliveries_per_connection: lane.limits.max_deliveries_per_connection,
                max_recipients_per_transaction: lane.limits.max_recipients_per_transaction,
                provider_max_connections: provider_limits.max_connections,
                provider_max_message_rate: provider_limits.rate.map(|r| r.per_second()),
            },
            effective_rate: lane.effective_rate().map(|r| r.per_second()),
            suspended_until: hold.as_ref().map(|h| timefmt::rfc3339_millis(h.until_us / 1000)),
            suspended_reason: hold.map(|h| h.reason),
            last_throttle: lane.last_throttle.as_ref().map(|(at, reply)| ThrottleView {
                at: timefmt::rfc3339_millis(at / 1000),
                reply: reply.clone(),
            }),
        }
    }

    /// Totals per (source, provider) for the metrics.
    pub fn totals(&self, now_us: u64) -> BTreeMap<(String, String), LaneTotals> {
        let mut totals: BTreeMap<(String, String), LaneTotals> = BTreeMap::new();
        for index in 0..self.lanes.len() {
            let id = LaneId(index as u32);
            let lane = &self.lanes[index];
            let (source, _, provider) = self.lane_names(id);
            let entry = totals
                .entry((source.to_string(), provider.to_string()))
                .or_default();
            entry.queued += lane.queued as u64;
            entry.connections += lane.connections as u64;
            if let Some(rate) = lane.effective_rate() {
                entry.effective_rate += rate.per_second();
            }
            if self.lane_hold(id, now_us).is_some() {
                entry.suspended += 1;
            }
        }
        totals
    }

    /// Operator suspensions in force (for the metrics).
    pub fn operator_suspension_count(&self, now_us: u64) -> usize {
        self.suspensions.iter().filter(|s| s.until_us > now_us).count()
    }
}
