//! DNS blocklist (DNSBL) reputation of the egress sources (`[reputation]`).
//!
//! Every source with an address is looked up in every `dnsbl` zone through the `[dns]` resolver, at
//! start and then every `check_every` (on the injected [`Clock`](crate::clock::Clock)): the reversed
//! octets (IPv4) or nibbles (IPv6) under the zone (`2.0.0.127.zen.spamhaus.org` for 127.0.0.2). An A
//! answer in 127.0.0.0/8 is a listing and the TXT of the same name its reason; NXDOMAIN or no record
//! is "not listed". A failed lookup (SERVFAIL, timeout) changes nothing. So are answers that are no
//! listing code (127.255.255.x, Spamhaus' "query refused" codes, or an address outside 127.0.0.0/8
//! from a resolver that rewrites NXDOMAIN): they are logged as failures, never taken as listings.
//!
//! A new listing emits `source_listed` and, with `suspend_on_listing`, puts a scheduler suspension of
//! the source in force (id `dnsbl:SOURCE:ZONE`, not stored: the first check after a restart derives
//! it again), so its mail moves to the other sources of its pools; a delisting emits
//! `source_delisted` and lifts it. The state is readable through the [`Reputation`] handle (the API
//! state holds one) and the gauge `penguin_source_listed{source, zone}`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_resolver::proto::rr::{RData, RecordType};
use penguin_config::Config;
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::clock::SharedClock;
use crate::delivery::dns::{Failure, Resolver, ResolverError, classify, fqdn};
use crate::delivery::scheduler::{OperatorScope, OperatorSuspension, Scheduler};
use crate::events::{Event, EventBus, EventKind};
use crate::metrics::Metrics;

/// Prefix of the ids of the scheduler suspensions of listed sources.
pub const SUSPENSION_ID_PREFIX: &str = "dnsbl:";

/// How long a listing's suspension lasts: until the delisting lifts it (a hundred years).
const LISTING_SUSPENSION_US: u64 = 100 * 365 * 86_400 * 1_000_000;

/// Most lookups (source × zone) of a round in flight at once.
const MAX_CONCURRENT_LOOKUPS: usize = 16;

/// One listing of a source's address on a blocklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// The source's name.
    pub source: String,
    /// The blocklist zone (`zen.spamhaus.org`).
    pub zone: String,
    /// The zone's TXT answer (empty when it has none).
    pub reason: String,
    /// When the listing was first seen, unix milliseconds.
    pub since_ms: u64,
}

/// What one lookup of a source in a zone said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Listed; the TXT text (empty if none).
    Listed(String),
    /// NXDOMAIN, or no A record.
    NotListed,
    /// No usable answer (SERVFAIL, timeout, not a listing code): why. The previous state stays.
    Failed(String),
}

/// The answer about one (source, zone) in a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The source's name.
    pub source: String,
    /// The zone.
    pub zone: String,
    /// What the lookup said.
    pub answer: Answer,
}

/// A change of state a round found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The source is newly listed on the zone.
    Listed {
        /// The source's name.
        source: String,
        /// The zone.
        zone: String,
        /// The TXT text.
        reason: String,
    },
    /// The source is no longer listed on the zone.
    Delisted {
        /// The source's name.
        source: String,
        /// The zone.
        zone: String,
    },
}

/// The DNS name to look `ip` up under `zone`: reversed octets (IPv4; an IPv4-mapped IPv6 address is
/// its IPv4 address) or reversed nibbles (IPv6), then the zone (lowercase, without a trailing dot).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim().trim_end_matches('.').to_ascii_lowercase();
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    let labels: Vec<String> = match ip {
        IpAddr::V4(v4) => v4.octets().iter().rev().map(u8::to_string).collect(),
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .rev()
            .flat_map(|byte| [byte & 0x0f, byte >> 4])
            .map(|nibble| format!("{nibble:x}"))
            .collect(),
    };
    format!("{}.{zone}", labels.join("."))
}

/// Whether the A answers of a blocklist lookup are a listing: any address in 127.0.0.0/8 but
/// 127.255.255.0/24 is. Only those (or no address at all: not listed) are understood; anything else
/// is an error reply (a refused query, a rewritten NXDOMAIN) and changes nothing.
pub fn is_listing(addresses: &[Ipv4Addr]) -> Result<bool, String> {
    let code = |a: &Ipv4Addr| a.octets()[0] == 127 && a.octets()[..3] != [127, 255, 255];
    if addresses.is_empty() {
        return Ok(false);
    }
    if addresses.iter().any(code) {
        return Ok(true);
    }
    let shown: Vec<String> = addresses.iter().map(Ipv4Addr::to_string).collect();
    Err(format!(
        "answered {} (not a listing code: the query may have been refused)",
        shown.join(", ")
    ))
}

/// Applies a round's findings to the listings (keyed by (source, zone)) at `now_ms`: new listings and
/// delistings are returned; failed lookups keep what was known; a listing seen again keeps its
/// `since_ms` (its reason follows the latest TXT).
pub fn apply_round(
    listings: &mut BTreeMap<(String, String), Listing>,
    findings: &[Finding],
    now_ms: u64,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for finding in findings {
        let key = (finding.source.clone(), finding.zone.clone());
        match &finding.answer {
            Answer::Failed(_) => {}
            Answer::NotListed => {
                if listings.remove(&key).is_some() {
                    changes.push(Change::Delisted {
                        source: key.0,
                        zone: key.1,
                    });
                }
            }
            Answer::Listed(reason) => match listings.get_mut(&key) {
                Some(listing) => listing.reason.clone_from(reason),
                None => {
                    changes.push(Change::Listed {
                        source: key.0.clone(),
                        zone: key.1.clone(),
                        reason: reason.clone(),
                    });
                    let listing = Listing {
                        source: key.0.clone(),
                        zone: key.1.clone(),
                        reason: reason.clone(),
                        since_ms: now_ms,
                    };
                    listings.insert(key, listing);
                }
            },
        }
    }
    changes
}

/// The blocklist state (what the last checks found). Clones share it; a server without checks holds
/// an empty one.
#[derive(Clone, Debug, Default)]
pub struct Reputation {
    /// The listings and the time of the last round.
    state: Arc<Mutex<State>>,
}

/// What [`Reputation`] shares.
#[derive(Debug, Default)]
struct State {
    /// Listings in force by (source, zone).
    listings: BTreeMap<(String, String), Listing>,
    /// When the last round ended, unix milliseconds.
    checked_ms: Option<u64>,
}

impl Reputation {
    /// An empty state (nothing listed, never checked).
    pub fn new() -> Reputation {
        Reputation::default()
    }

    /// Every listing in force, by source then zone.
    pub fn listings(&self) -> Vec<Listing> {
        self.lock().listings.values().cloned().collect()
    }

    /// The oldest listing in force of `source`, if it is listed anywhere.
    pub fn is_listed(&self, source: &str) -> Option<Listing> {
        self.lock()
            .listings
            .values()
            .filter(|listing| listing.source == source)
            .min_by_key(|listing| listing.since_ms)
            .cloned()
    }

    /// When the last check round ended (unix milliseconds); `None` before the first.
    pub fn checked_ms(&self) -> Option<u64> {
        self.lock().checked_ms
    }

    /// Applies a round's findings (see [`apply_round`]) and returns the changes.
    fn record(&self, findings: &[Finding], now_ms: u64) -> Vec<Change> {
        let mut state = self.lock();
        state.checked_ms = Some(now_ms);
        apply_round(&mut state.listings, findings, now_ms)
    }

    /// Whether (`source`, `zone`) is listed now.
    fn listed_on(&self, source: &str, zone: &str) -> bool {
        self.lock()
            .listings
            .contains_key(&(source.to_string(), zone.to_string()))
    }

    /// The state, locked (briefly; never across an await).
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the checker works with besides the config.
pub struct CheckerParts {
    /// The state it updates.
    pub reputation: Reputation,
    /// Where listed sources are suspended.
    pub scheduler: Arc<Mutex<Scheduler>>,
    /// Where `source_listed` / `source_delisted` go.
    pub events: EventBus,
    /// The `source_listed` gauge.
    pub metrics: Arc<Metrics>,
    /// Now, and the wait between rounds.
    pub clock: SharedClock,
    /// Wakes the delivery driver after a suspension changed.
    pub wakeup: Arc<Notify>,
}

/// The task checking the sources against the blocklists.
pub struct Checker {
    /// Shared state, scheduler, events, metrics, clock.
    parts: CheckerParts,
    /// Lookups with the `[dns]` settings.
    resolver: Resolver,
    /// Sources with an address: (name, address).
    targets: Vec<(Arc<str>, IpAddr)>,
    /// The zones, lowercase without the trailing dot.
    zones: Vec<String>,
    /// Time between the starts of two rounds.
    every: Duration,
    /// Whether a listing suspends the source.
    suspend: bool,
    /// Bound of one lookup (above the resolver's own timeout × attempts).
    lookup_bound: Duration,
}

impl Checker {
    /// The checker of `config`'s `[reputation]`; `None` when there is nothing to check (no zone, or
    /// no source with an address).
    pub fn new(config: &Config, parts: CheckerParts) -> Result<Option<Checker>, ResolverError> {
        let reputation = &config.reputation;
        let targets: Vec<(Arc<str>, IpAddr)> = config
            .sources()
            .into_iter()
            .filter_map(|source| Some((Arc::from(source.name.as_str()), source.ip?)))
            .collect();
        if reputation.dnsbl.is_empty() {
            return Ok(None);
        }
        if targets.is_empty() {
            tracing::warn!("reputation.dnsbl is set but no source has an address: nothing to check");
            return Ok(None);
        }
        let dns = &config.dns;
        let resolver = Resolver::new(&dns.nameservers, dns.timeout.get(), dns.attempts)?;
        let attempts = u32::try_from(dns.attempts.max(1)).unwrap_or(u32::MAX);
        let lookup_bound = dns
            .timeout
            .get()
            .saturating_mul(attempts)
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(1));
        Ok(Some(Checker {
            parts,
            resolver,
            targets,
            zones: reputation
                .dnsbl
                .iter()
                .map(|zone| zone.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            every: reputation.check_every.get(),
            suspend: reputation.suspend_on_listing,
            lookup_bound,
        }))
    }

    /// Checks at once, then every `check_every` from the start of the previous round, until `stopped`.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        tracing::info!(
            sources = self.targets.len(),
            zones = self.zones.len(),
            "DNS blocklist checks started"
        );
        loop {
            // The next round is due `every` after this one starts, whatever the round's length (and
            // with a manual clock, whenever the clock is moved while the round runs).
            let next = self.parts.clock.now() + self.every;
            tokio::select! {
                () = self.check_all() => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            tokio::select! {
                () = self.parts.clock.sleep_until(next) => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// One round: every source in every zone (bounded concurrency), then the changes applied.
    async fn check_all(&self) {
        // Owned jobs: a stream of futures borrowing them is not `Send` for every lifetime (rustc).
        let jobs: Vec<(String, IpAddr, String)> = self
            .targets
            .iter()
            .flat_map(|(source, ip)| {
                self.zones
                    .iter()
                    .map(move |zone| (source.to_string(), *ip, zone.clone()))
            })
            .collect();
        let findings: Vec<Finding> = futures_util::stream::iter(jobs)
            .map(|(source, ip, zone)| async move {
                let answer = self.check(ip, &zone).await;
                Finding { source, zone, answer }
            })
            .buffer_unordered(MAX_CONCURRENT_LOOKUPS)
            .collect()
            .await;
        for finding in &findings {
            if let Answer::Failed(reason) = &finding.answer {
                tracing::warn!(
                    source = %finding.source,
                    zone = %finding.zone,
                    %reason,
                    "DNS blocklist lookup failed; the source's state there is unchanged"
                );
            }
        }
        let now_us = self.parts.clock.now_us();
        let changes = self.parts.reputation.record(&findings, now_us / 1000);
        for change in changes {
            self.apply(change, now_us);
        }
        self.set_gauges();
    }

    /// What `zone` says about `ip`.
    async fn check(&self, ip: IpAddr, zone: &str) -> Answer {
        let name = query_name(ip, zone);
        let records = match self.records(&name, RecordType::A).await {
            Ok(records) => records,
            Err(reason) => return Answer::Failed(reason),
        };
        let addresses: Vec<Ipv4Addr> = records
            .iter()
            .filter_map(|data| match data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        match is_listing(&addresses) {
            Ok(true) => Answer::Listed(self.reason(&name).await),
            Ok(false) => Answer::NotListed,
            Err(reason) => Answer::Failed(reason),
        }
    }

    /// The TXT text of a listed name (several records joined by `"; "`); empty if it has none or the
    /// lookup fails (the listing stands either way).
    async fn reason(&self, name: &str) -> String {
        match self.records(name, RecordType::TXT).await {
            Ok(records) => {
                let texts: Vec<String> = records.iter().filter_map(txt_text).collect();
                texts.join("; ")
            }
            Err(reason) => {
                tracing::debug!(%name, %reason, "no TXT reason for a DNS blocklist listing");
                String::new()
            }
        }
    }

    /// The records of `record_type` at `name`: empty for NXDOMAIN or NODATA, `Err` for a failed lookup
    /// (bounded by `lookup_bound`).
    async fn records(&self, name: &str, record_type: RecordType) -> Result<Vec<RData>, String> {
        let fqdn = fqdn(name).map_err(|_| format!("{name:?} is not a valid DNS name"))?;
        let lookup = self.resolver.hickory().lookup(fqdn, record_type);
        match tokio::time::timeout(self.lookup_bound, lookup).await {
            Err(_) => Err("timed out".to_string()),
            Ok(Ok(lookup)) => Ok(lookup
                .answers()
                .iter()
                .map(|record| record.data.clone())
                .collect()),
            Ok(Err(err)) => match classify(&err) {
                Failure::NxDomain | Failure::NoData => Ok(Vec::new()),
                Failure::Temporary(reason) => Err(reason),
            },
        }
    }

    /// Emits the change's event and, for a listing with `suspend_on_listing`, suspends the source (a
    /// delisting lifts its suspension).
    fn apply(&self, change: Change, now_us: u64) {
        let now_ms = now_us / 1000;
        let event = match change {
            Change::Listed { source, zone, reason } => {
                tracing::warn!(%source, %zone, %reason, suspend = self.suspend, "source listed on a DNS blocklist");
                if self.suspend {
                    self.suspend_source(&source, &zone, &reason, now_us);
                }
                Event {
                    reason: Some(reason.into()),
                    ..self.event(EventKind::SourceListed, &source, zone, now_ms)
                }
            }
            Change::Delisted { source, zone } => {
                tracing::info!(%source, %zone, "source no longer listed on a DNS blocklist");
                let id = suspension_id(&source, &zone);
                let lifted = self.lock_scheduler().remove_suspension(&id, now_us).is_some();
                if lifted {
                    self.parts.wakeup.notify_one();
                }
                self.event(EventKind::SourceDelisted, &source, zone, now_ms)
            }
        };
        self.parts.events.emit(event);
    }

    /// Puts the listing's suspension of `source` in force.
    fn suspend_source(&self, source: &str, zone: &str, reason: &str, now_us: u64) {
        let suspension = OperatorSuspension {
            id: suspension_id(source, zone),
            scope: OperatorScope {
                source: Some(source.to_string()),
                ..OperatorScope::default()
            },
            until_us: now_us.saturating_add(LISTING_SUSPENSION_US),
            reason: if reason.is_empty() {
                format!("listed on {zone}")
            } else {
                format!("listed on {zone}: {reason}")
            },
            created_us: now_us,
        };
        if let Err(error) = self.lock_scheduler().add_suspension(suspension, now_us) {
            tracing::error!(%source, %zone, %error, "cannot suspend a listed source");
        }
        self.parts.wakeup.notify_one();
    }

    /// A `source_listed` / `source_delisted` event about `source` on `zone`.
    fn event(&self, kind: EventKind, source: &str, zone: String, now_ms: u64) -> Event {
        let ip = self
            .targets
            .iter()
            .find(|(name, _)| &**name == source)
            .map(|(_, ip)| *ip);
        Event {
            source: Some(Arc::from(source)),
            source_ip: ip,
            zone: Some(zone),
            ..Event::blank(kind, now_ms)
        }
    }

    /// Sets `penguin_source_listed` for every (source, zone) from the state.
    fn set_gauges(&self) {
        for (source, _) in &self.targets {
            for zone in &self.zones {
                let listed = self.parts.reputation.listed_on(source, zone);
                self.parts.metrics.set_source_listed(source, zone, listed);
            }
        }
    }

    /// The scheduler, locked (briefly; never across an await).
    fn lock_scheduler(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.parts
            .scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The text of a TXT record (its strings concatenated); `None` for other records.
fn txt_text(data: &RData) -> Option<String> {
    match data {
        RData::TXT(txt) => {
            let bytes: Vec<u8> = txt.txt_data.iter().flat_map(|p| p.iter().copied()).collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => None,
    }
}

/// The id of the suspension of `source` listed on `zone`.
fn suspension_id(source: &str, zone: &str) -> String {
    format!("{SUSPENSION_ID_PREFIX}{source}:{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(source: &str, zone: &str, answer: Answer) -> Finding {
        Finding {
            source: source.to_string(),
            zone: zone.to_string(),
            answer,
        }
    }

    #[test]
    fn ipv4_names_are_the_reversed_octets_under_the_zone() {
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(query_name(ip, "zen.spamhaus.org"), "2.0.0.127.zen.spamhaus.org");
        let ip: IpAddr = "192.0.2.99".parse().unwrap();
        assert_eq!(
            query_name(ip, " B.BarracudaCentral.org. "),
            "99.2.0.192.b.barracudacentral.org"
        );
    }

    #[test]
    fn ipv6_names_are_the_reversed_nibbles_under_the_zone() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            query_name(ip, "zen.spamhaus.org"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org"
        );
        let ip: IpAddr = "2a01:4f8:c17:abcd::fe".parse().unwrap();
        let name = query_name(ip, "dnsbl.test");
        assert!(name.starts_with("e.f.0.0.0.0.0.0"), "{name}");
        assert!(
            name.ends_with("d.c.b.a.7.1.c.0.8.f.4.0.1.0.a.2.dnsbl.test"),
            "{name}"
        );
        assert_eq!(name.split('.').count(), 32 + 2);
    }

    #[test]
    fn an_ipv4_mapped_address_is_looked_up_as_ipv4() {
        let ip: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(query_name(ip, "dnsbl.test"), "1.2.0.192.dnsbl.test");
    }

    #[test]
    fn listing_codes_are_loopback_answers_but_the_error_codes() {
        let a = |text: &str| text.parse::<Ipv4Addr>().unwrap();
        assert_eq!(is_listing(&[]), Ok(false));
        assert_eq!(is_listing(&[a("127.0.0.2")]), Ok(true));
        assert_eq!(is_listing(&[a("127.0.0.11"), a("127.0.0.4")]), Ok(true));
        assert!(
            is_listing(&[a("127.255.255.254")]).is_err(),
            "open resolver refused"
        );
        assert!(is_listing(&[a("203.0.113.7")]).is_err(), "rewritten NXDOMAIN");
        assert_eq!(is_listing(&[a("127.255.255.252"), a("127.0.0.3")]), Ok(true));
    }

    #[test]
    fn a_new_listing_is_a_change_and_keeps_its_first_time() {
        let mut listings = BTreeMap::new();
        let round = [finding("ip2", "z", Answer::Listed("spam".into()))];
        let changes = apply_round(&mut listings, &round, 1_000);
        assert_eq!(
            changes,
            [Change::Listed {
                source: "ip2".into(),
                zone: "z".into(),
                reason: "spam".into()
            }]
        );
        let again = [finding("ip2", "z", Answer::Listed("still spam".into()))];
        assert!(apply_round(&mut listings, &again, 2_000).is_empty());
        let listing = &listings[&("ip2".to_string(), "z".to_string())];
        assert_eq!((listing.since_ms, listing.reason.as_str()), (1_000, "still spam"));
    }

    #[test]
    fn a_failed_lookup_keeps_the_previous_state() {
        let mut listings = BTreeMap::new();
        apply_round(
            &mut listings,
            &[finding("ip2", "z", Answer::Listed(String::new()))],
            1,
        );
        let failed = [
            finding("ip2", "z", Answer::Failed("SERVFAIL".into())),
            finding("ip3", "z", Answer::Failed("timed out".into())),
        ];
        assert!(apply_round(&mut listings, &failed, 2).is_empty());
        assert_eq!(listings.len(), 1, "ip2 still listed, ip3 still not");
    }

    #[test]
    fn a_delisting_is_a_change_once_and_zones_are_separate() {
        let mut listings = BTreeMap::new();
        let listed = [
            finding("ip2", "a", Answer::Listed("x".into())),
            finding("ip2", "b", Answer::Listed("y".into())),
            finding("ip3", "a", Answer::NotListed),
        ];
        assert_eq!(apply_round(&mut listings, &listed, 1).len(), 2);
        let round = [
            finding("ip2", "a", Answer::NotListed),
            finding("ip2", "b", Answer::Listed("y".into())),
            finding("ip3", "a", Answer::NotListed),
        ];
        assert_eq!(
            apply_round(&mut listings, &round, 2),
            [Change::Delisted {
                source: "ip2".into(),
                zone: "a".into()
            }]
        );
        assert!(apply_round(&mut listings, &round, 3).is_empty());
        assert_eq!(listings.len(), 1);
    }

    #[test]
    fn the_handle_reports_listings_by_source() {
        let reputation = Reputation::new();
        assert_eq!(reputation.checked_ms(), None);
        let round = [
            finding("ip2", "b.test", Answer::Listed("later".into())),
            finding("ip3", "a.test", Answer::NotListed),
        ];
        reputation.record(&round, 5);
        reputation.record(&[finding("ip2", "a.test", Answer::Listed("x".into()))], 9);
        assert_eq!(reputation.checked_ms(), Some(9));
        assert_eq!(reputation.listings().len(), 2);
        assert_eq!(reputation.is_listed("ip2").map(|l| l.zone), Some("b.test".into()));
        assert_eq!(reputation.is_listed("ip3"), None);
        assert!(reputation.listed_on("ip2", "a.test"));
    }

    #[test]
    fn suspension_ids_name_the_source_and_zone() {
        assert_eq!(
            suspension_id("ip2", "zen.spamhaus.org"),
            "dnsbl:ip2:zen.spamhaus.org"
        );
    }
}
