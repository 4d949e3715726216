//! Usage per tenant and UTC day (the billing hook) and outcome counts per campaign, as spool counters
//! (`penguin_queue::Counts`, a RocksDB merge per increment).
//!
//! Every count is written in the same batch as the change it counts: a reception with the message
//! (`smtp::connection`), an outcome with the envelope update (`delivery::complete`); the two that change
//! no message (a RCPT refused as suppressed, an unsubscription) are a write of their own next to the
//! event. So the numbers are exact across restart and kill -9, and equal what the event stream says.
//!
//! Keys: `u/TENANT/YYYY-MM-DD/KIND` (usage) and `c/TENANT/CAMPAIGN KIND` (campaign; the space cannot
//! occur in a campaign id, which is printable ASCII). A bounce or deferral also counts under
//! `KIND:CLASS` for its campaign. DSNs (null sender, campaign `dsn`) are our own mail and count nowhere.

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use penguin_queue::{Counts, Envelope, Spool, SpoolError};
use serde::Serialize;

use crate::events::EventKind;

/// The kinds counted per tenant and day, in the order of the usage report.
pub const USAGE_KINDS: [&str; 8] = [
    "accepted",
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "suppressed",
    "unsubscribed",
    "cancelled",
];

/// Most days one usage request may cover.
pub const MAX_USAGE_DAYS: i64 = 366;

/// The UTC calendar day of unix milliseconds.
pub fn utc_date(unix_ms: u64) -> Date {
    let ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::MAX)
        .to_zoned_datetime(TimeZone::UTC)
        .date()
}

/// The counter key of a tenant's `kind` on `date`.
pub fn usage_key(tenant: &str, date: Date, kind: &str) -> String {
    format!("u/{tenant}/{date}/{kind}")
}

/// The prefix of every counter of a tenant's campaigns.
fn campaign_prefix(tenant: &str) -> String {
    format!("c/{tenant}/")
}

/// The counter key of a campaign's `kind`.
fn campaign_key(tenant: &str, campaign: &str, kind: &str) -> String {
    format!("c/{tenant}/{campaign} {kind}")
}

/// The counted kind of an outcome event, if it is one.
pub fn outcome_kind(kind: EventKind) -> Option<&'static str> {
    match kind {
        EventKind::Delivery => Some("delivered"),
        EventKind::TransientFailure => Some("deferred"),
        EventKind::Bounce => Some("bounced"),
        EventKind::Expiration => Some("expired"),
        EventKind::Cancelled => Some("cancelled"),
        EventKind::Suppressed => Some("suppressed"),
        EventKind::Unsubscribe => Some("unsubscribed"),
        EventKind::Reception => Some("accepted"),
        _ => None,
    }
}

/// Where the counts of one message (or address) go: its tenant, campaign and the day.
pub struct Tally<'a> {
    /// The tenant.
    tenant: &'a str,
    /// The campaign ("" when unknown: only the tenant's usage counts).
    campaign: &'a str,
    /// The UTC day of the change.
    date: Date,
}

impl<'a> Tally<'a> {
    /// The tally of a tenant's change at `now_ms`.
    pub fn new(tenant: &'a str, campaign: &'a str, now_ms: u64) -> Tally<'a> {
        Tally {
            tenant,
            campaign,
            date: utc_date(now_ms),
        }
    }

    /// The tally of a stored message; `None` for the DSNs we send ourselves.
    pub fn of(envelope: &'a Envelope, now_ms: u64) -> Option<Tally<'a>> {
        let dsn = envelope.sender.is_empty() && envelope.campaign == crate::delivery::DSN_CAMPAIGN;
        (!dsn).then(|| Tally::new(&envelope.tenant, &envelope.campaign, now_ms))
    }

    /// Adds `amount` of `kind` (one of [`USAGE_KINDS`]), and of `kind:class` for the campaign.
    pub fn add(&self, counts: &mut Counts, kind: &str, class: Option<&str>, amount: i64) {
        counts.add(usage_key(self.tenant, self.date, kind), amount);
        if self.campaign.is_empty() {
            return;
        }
        counts.add(campaign_key(self.tenant, self.campaign, kind), amount);
        if let Some(class) = class {
            counts.add(
                campaign_key(self.tenant, self.campaign, &format!("{kind}:{class}")),
                amount,
            );
        }
    }
}

/// The counted kinds of a tenant's day or of a campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    /// Recipients accepted (SMTP or HTTP).
    pub accepted: i64,
    /// Recipients delivered.
    pub delivered: i64,
    /// Temporary failures (each deferred attempt of a recipient).
    pub deferred: i64,
    /// Recipients bounced.
    pub bounced: i64,
    /// Recipients expired.
    pub expired: i64,
    /// Recipients refused because they were on the suppression list.
    pub suppressed: i64,
    /// Recipients who used an unsubscribe link.
    pub unsubscribed: i64,
    /// Queued recipients removed (campaign cancelled, message deleted).
    pub cancelled: i64,
}

impl Totals {
    /// The field of `kind` (one of [`USAGE_KINDS`]).
    fn field(&mut self, kind: &str) -> Option<&mut i64> {
        Some(match kind {
            "accepted" => &mut self.accepted,
            "delivered" => &mut self.delivered,
            "deferred" => &mut self.deferred,
            "bounced" => &mut self.bounced,
            "expired" => &mut self.expired,
            "suppressed" => &mut self.suppressed,
            "unsubscribed" => &mut self.unsubscribed,
            "cancelled" => &mut self.cancelled,
            _ => return None,
        })
    }

    /// Adds `value` to the field of `kind` (one of [`USAGE_KINDS`]); false for another kind.
    pub fn add_kind(&mut self, kind: &str, value: i64) -> bool {
        match self.field(kind) {
            Some(field) => {
                *field += value;
                true
            }
            None => false,
        }
    }

    /// Adds `other` to these.
    pub fn add(&mut self, other: &Totals) {
        self.accepted += other.accepted;
        self.delivered += other.delivered;
        self.deferred += other.deferred;
        self.bounced += other.bounced;
        self.expired += other.expired;
        self.suppressed += other.suppressed;
        self.unsubscribed += other.unsubscribed;
        self.cancelled += other.cancelled;
    }
}

/// One day of a tenant's usage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageDay {
    /// The UTC day, `YYYY-MM-DD`.
    pub date: String,
    /// Its counts.
    #[serde(flatten)]
    pub totals: Totals,
}

/// A tenant's usage for every day from `from` to `to` (inclusive; days without activity are zeros).
pub fn read_usage(spool: &Spool, tenant: &str, from: Date, to: Date) -> Result<Vec<UsageDay>, SpoolError> {
    let mut days: BTreeMap<Date, UsageDay> = BTreeMap::new();
    let mut date = from;
    while date <= to {
        days.insert(
            date,
            UsageDay {
                date: date.to_string(),
                ..UsageDay::default()
            },
        );
        match date.tomorrow() {
            Ok(next) => date = next,
            Err(_) => break,
        }
    }
    let prefix = format!("u/{tenant}/");
    for (key, value) in spool.counters(&prefix)? {
        let Some((day, kind)) = key[prefix.len()..].split_once('/') else {
            continue;
        };
        let Ok(day) = day.parse::<Date>() else {
            continue;
        };
        if let Some(field) = days.get_mut(&day).and_then(|d| d.totals.field(kind)) {
            *field += value;
        }
    }
    Ok(days.into_values().collect())
}

/// Recipients a tenant had accepted on `date` (its `daily_quota` is compared with this).
pub fn accepted_on(spool: &Spool, tenant: &str, date: Date) -> Result<i64, SpoolError> {
    spool.counter(&usage_key(tenant, date, "accepted"))
}

/// The counts of one campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CampaignCounts {
    /// The counted kinds (suppressed: where the campaign was known at the refusal).
    #[serde(flatten)]
    pub totals: Totals,
    /// Recipients still queued: accepted minus every final state.
    pub queued: i64,
    /// Bounces by class.
    pub bounced_by_class: BTreeMap<String, i64>,
    /// Deferrals by class.
    pub deferred_by_class: BTreeMap<String, i64>,
}

impl CampaignCounts {
    /// Adds one stored counter.
    fn add(&mut self, kind: &str, value: i64) {
        if let Some((kind, class)) = kind.split_once(':') {
            let map = match kind {
                "bounced" => &mut self.bounced_by_class,
                "deferred" => &mut self.deferred_by_class,
                _ => return,
            };
            *map.entry(class.to_string()).or_default() += value;
        } else if let Some(field) = self.totals.field(kind) {
            *field += value;
        }
    }

    /// Sets `queued` from the others.
    fn settle(&mut self) {
        let t = &self.totals;
        let done = t.delivered + t.bounced + t.expired + t.cancelled;
        self.queued = (t.accepted - done).max(0);
    }
}

/// The counts of every campaign of a tenant that has any, by name.
pub fn read_campaigns(spool: &Spool, tenant: &str) -> Result<BTreeMap<String, CampaignCounts>, SpoolError> {
    let prefix = campaign_prefix(tenant);
    let mut campaigns: BTreeMap<String, CampaignCounts> = BTreeMap::new();
    for (key, value) in spool.counters(&prefix)? {
        let Some((campaign, kind)) = key[prefix.len()..].rsplit_once(' ') else {
            continue;
        };
        campaigns
            .entry(campaign.to_string())
            .or_default()
            .add(kind, value);
    }
    for counts in campaigns.values_mut() {
        counts.settle();
    }
    Ok(campaigns)
}

/// The counts of one campaign (zeros when it has none).
pub fn read_campaign(spool: &Spool, tenant: &str, campaign: &str) -> Result<CampaignCounts, SpoolError> {
    let prefix = format!("{}{campaign} ", campaign_prefix(tenant));
    let mut counts = CampaignCounts::default();
    for (key, value) in spool.counters(&prefix)? {
        counts.add(&key[prefix.len()..], value);
    }
    counts.settle();
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_keys_per_day_campaign_and_class() {
        // 2026-12-03T23:59:59.999Z and one millisecond later.
        let late = 1_796_342_399_999;
        assert_eq!(utc_date(late).to_string(), "2026-12-03");
        assert_eq!(utc_date(late + 1).to_string(), "2026-12-04");
        let mut counts = Counts::new();
        Tally::new("acme", "spring/1", late).add(&mut counts, "bounced", Some("invalid_recipient"), 2);
        let keys: Vec<(&str, i64)> = counts.entries().iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            keys,
            [
                ("u/acme/2026-12-03/bounced", 2),
                ("c/acme/spring/1 bounced", 2),
                ("c/acme/spring/1 bounced:invalid_recipient", 2),
            ]
        );
        let mut counts = Counts::new();
        Tally::new("acme", "", late).add(&mut counts, "suppressed", None, 1);
        assert_eq!(counts.entries().len(), 1, "no campaign known: usage only");
    }

    #[test]
    fn campaign_counts_settle_queued_and_classes() {
        let mut counts = CampaignCounts::default();
        for (kind, value) in [
            ("accepted", 10),
            ("delivered", 4),
            ("bounced", 2),
            ("bounced:invalid_recipient", 2),
            ("deferred", 3),
            ("deferred:rate_limited", 3),
            ("expired", 1),
            ("cancelled", 1),
            ("unknown", 9),
        ] {
            counts.add(kind, value);
        }
        counts.settle();
        assert_eq!(counts.queued, 2);
        assert_eq!(counts.bounced_by_class.get("invalid_recipient"), Some(&2));
        assert_eq!(counts.deferred_by_class.get("rate_limited"), Some(&3));
    }
}
