//! The delivery scheduler: ready queues per (egress source, destination site), their limits, the
//! closed loop on throttling replies, and suspensions. Sans-IO: every method takes `now` (unix
//! microseconds) and returns what to do; the driver (`delivery::mod`) and the connection workers
//! (`delivery::connection`) do the IO and call in under one mutex, never across an `.await`.
//!
//! | module | role |
//! |---|---|
//! | `mod.rs` | [`Scheduler`]: sites, lanes, messages; intake and source selection |
//! | `dispatch` | what a connection does next, opening connections, timers ([`Scheduler::poll`]) |
//! | `feedback` | remote replies → closed loop (AIMD), reply rules (suspend, reduce, bounce, retry) |
//! | `fleet_rates` | closed-loop changes shared with other nodes (outbox, the others' applied) |
//! | `operator` | operator suspensions (tenant, campaign, domain, provider, source) |
//! | `view` | the `/v1/shaping` snapshot and the metrics |
//! | `leases` | connection caps shared with other nodes (leases in the store), their fallback share |
//! | `shared`, `shared_items` | rates shared with other nodes (slots of the store's GCRAs): lane-wide; tenant and domain |
//! | `lane` | one ready queue: FIFOs per scheduled queue, counters, limiter state |
//! | `settings` | what the scheduler reads of the config |
//! | `names` | interned names and ids |
//!
//! Limits that must all allow a delivery: the (source, site) lane's (rate as reduced by the closed
//! loop, connections, connection rate), the source's over a provider's sites, the source's own, the
//! recipient domain's (all sources) and the tenant's. Lane-wide limits decide when a lane may send;
//! the domain's and the tenant's decide which of its scheduled queues may, so one held-back queue never
//! blocks another (no head-of-line blocking). Waiting is never an attempt.

mod cancel;
mod dispatch;
mod feedback;
mod fleet_rates;
mod lane;
mod leases;
mod names;
mod operator;
mod settings;
mod shared;
mod shared_items;
mod view;
mod warm_shared;
mod warmup;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use penguin_policy::shaping::{Candidate, Gcra, Rate, SmoothWeighted};
use penguin_queue::MessageId;
use tokio::sync::Notify;

use crate::events::{Event, EventBus};

pub use dispatch::{Next, Open};
pub use feedback::{Feedback, ReplyEffect};
pub use fleet_rates::{LaneRateChange, RemoteOutcome};
pub use lane::{Hold, Item};
pub use leases::LeaseKey;
pub use names::{ConnId, LaneId, NameId, PoolId, ProviderId, QueueKey, SiteId, SourceId};
pub use operator::{OperatorScope, OperatorSuspension, SuspensionError};
pub use settings::{LaneLimits, PoolSettings, ProviderLimits, Settings, SourceSettings, TenantSettings};
pub use shared::{SharedKey, SlotRequest};
pub use view::{LaneTotals, QueueView, ShapingView};
pub use warm_shared::{WarmClaimRequest, WarmGrant};
pub use warmup::{SourceWarmup, WarmOverflow, WarmRuntime};

use lane::Lane;
use names::Names;

/// Where the mail of a site goes: its hosts in preference order, each with its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The site's name: its MX host names, sorted, joined by `,` (or the relay's `host:port`).
    pub site: String,
    /// Hosts in preference order (equal preferences in the order DNS gave them; workers shuffle ties).
    pub hosts: Vec<RouteHost>,
}

/// One host of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteHost {
    /// MX host name (or the relay host).
    pub name: String,
    /// MX preference (0 for the implicit MX and the relay).
    pub preference: u16,
    /// Its addresses, with the port.
    pub addresses: Vec<std::net::SocketAddr>,
}

/// One destination site.
#[derive(Debug)]
struct Site {
    /// Its name ([`Route::site`]).
    name: Arc<str>,
    /// Its provider.
    provider: ProviderId,
    /// The latest route of one of its domains.
    route: Arc<Route>,
    /// Domains routed to it (at most [`MAX_SITE_DOMAINS`] kept, for the API).
    domains: BTreeSet<NameId>,
}

/// Most domains remembered per site (a provider's site serves millions; the API shows a sample).
const MAX_SITE_DOMAINS: usize = 100;

/// A source's state over all sites of one provider.
#[derive(Debug, Default)]
struct ProviderLane {
    /// Connections open to the provider's sites.
    connections: usize,
    /// Spacing of its messages to the provider's sites.
    gcra: Gcra,
    /// Suspended by a rule for the whole provider.
    hold: Option<Hold>,
    /// Items queued in the source's lanes of the provider, by priority.
    group: Arc<lane::GroupQueued>,
    /// The local day `warm_sent` counts (warming sources only).
    warm_day: Option<jiff::civil::Date>,
    /// Messages sent that day (warming sources only).
    warm_sent: u64,
    /// A throttling reply stopped the warming source for the provider until then, unix µs.
    warm_stop_until_us: u64,
    /// What this node holds of the fleet's capacity for the pair (`[cluster]` only).
    warm_claim: warm_shared::Claim,
}

/// A message whose items are in the scheduler.
#[derive(Debug)]
struct MessageState {
    /// Items not finished yet (queued, being sent).
    outstanding: u16,
    /// Serialises the envelope updates of a message with several items (None for one item).
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Earliest retry a `retry` rule asked for, unix milliseconds.
    retry_at_ms: Option<u64>,
}

/// An item handed to a connection, with the pool name its events need.
#[derive(Clone, Debug)]
pub struct Work {
    /// The item.
    pub item: Item,
    /// Its lane.
    pub lane: LaneId,
    /// The name of its pool (for events).
    pub pool: Arc<str>,
}

/// How a message's item ended, for its envelope update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemEnd {
    /// This was the message's last item of the round: store the outcome with the next attempt time.
    pub last: bool,
    /// The earliest retry a `retry` rule asked for during the round, unix milliseconds.
    pub retry_at_ms: Option<u64>,
}

/// The scheduler (see the module documentation). Shared as `Arc<Mutex<Scheduler>>`.
pub struct Scheduler {
    /// Resolved config.
    settings: Arc<Settings>,
    /// Interned tenant, campaign and domain names.
    names: Names,
    /// Sites by id.
    sites: Vec<Site>,
    /// Site name → id.
    site_ids: HashMap<Arc<str>, SiteId>,
    /// Lanes by id.
    lanes: Vec<Lane>,
    /// (source, site) → lane.
    lane_ids: HashMap<(SourceId, SiteId), LaneId>,
    /// Per source: spacing of everything it sends.
    source_gcra: Vec<Gcra>,
    /// Per (source, provider).
    provider_lanes: HashMap<(SourceId, ProviderId), ProviderLane>,
    /// Per tenant with a rate: spacing of its deliveries.
    tenant_gcra: HashMap<NameId, Gcra>,
    /// Per configured domain: spacing of its deliveries.
    domain_gcra: HashMap<NameId, Gcra>,
    /// Rate of an interned tenant (looked up once).
    tenant_rates: HashMap<NameId, Option<Rate>>,
    /// `max_message_rate` of the tenants made over the API, by name (a config tenant's own wins).
    api_tenant_rates: HashMap<String, Rate>,
    /// Rate of an interned domain (looked up once).
    domain_rates: HashMap<NameId, Option<Rate>>,
    /// Weighted source choice per (pool, site).
    selectors: HashMap<(PoolId, SiteId), SmoothWeighted>,
    /// Messages with items here.
    messages: HashMap<MessageId, MessageState>,
    /// Connections by id: their lane and what they do.
    connections: HashMap<ConnId, dispatch::ConnState>,
    /// The next connection id.
    next_conn: u64,
    /// Connections counted in all lanes.
    total_connections: usize,
    /// Lanes that want a connection while the total cap is reached, oldest first.
    waiting_for_slot: VecDeque<LaneId>,
    /// Armed timers: (when, lane); stale entries (the lane's `timer_at` differs) are skipped.
    timers: BTreeSet<(u64, LaneId)>,
    /// Lanes to look at in the next [`Scheduler::poll`].
    dirty: Vec<LaneId>,
    /// Items found expired, for the driver to finish.
    expired: Vec<Work>,
    /// Items of cancelled campaigns or deleted messages, for the driver to cancel.
    cancelled: Vec<Work>,
    /// Operator suspensions in force.
    suspensions: Vec<OperatorSuspension>,
    /// Warming sources (set by the warm-up service).
    warmups: HashMap<SourceId, SourceWarmup>,
    /// Warm-up caps shared with other nodes (`[cluster]`): the claims to ask the store for.
    warm_share: Option<warm_shared::WarmShare>,
    /// Rate limits shared with other nodes (`[cluster]`); None: this node's alone.
    shared: Option<shared::SharedLimits>,
    /// Closed-loop changes shared with other nodes (`[cluster]`); None: this node's alone.
    fleet_rates: Option<fleet_rates::FleetRates>,
    /// Where shaping events go.
    events: EventBus,
    /// Wakes the driver when it has work (a lane to look at).
    driver: Arc<Notify>,
    /// The server stops: connections close after their transaction.
    stopping: bool,
    /// Unix milliseconds of `now` in the last call, for event timestamps.
    now_ms: u64,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(settings: Arc<Settings>, events: EventBus, driver: Arc<Notify>) -> Scheduler {
        let sources = settings.sources.len();
        Scheduler {
            settings,
            names: Names::default(),
            sites: Vec::new(),
            site_ids: HashMap::new(),
            lanes: Vec::new(),
            lane_ids: HashMap::new(),
            source_gcra: vec![Gcra::default(); sources],
            provider_lanes: HashMap::new(),
            tenant_gcra: HashMap::new(),
            domain_gcra: HashMap::new(),
            tenant_rates: HashMap::new(),
            api_tenant_rates: HashMap::new(),
            domain_rates: HashMap::new(),
            selectors: HashMap::new(),
            messages: HashMap::new(),
            connections: HashMap::new(),
            next_conn: 0,
            total_connections: 0,
            waiting_for_slot: VecDeque::new(),
            timers: BTreeSet::new(),
            dirty: Vec::new(),
            expired: Vec::new(),
            cancelled: Vec::new(),
            suspensions: Vec::new(),
            warmups: HashMap::new(),
            warm_share: None,
            shared: None,
            fleet_rates: None,
            events,
            driver,
            stopping: false,
            now_ms: 0,
        }
    }

    /// The resolved settings.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// Registers a message that is about to add `items` items (one per recipient domain).
    pub fn begin_message(&mut self, id: MessageId, items: u16) {
        let lock = (items > 1).then(|| Arc::new(tokio::sync::Mutex::new(())));
        self.messages.insert(
            id,
            MessageState {
                outstanding: items,
                lock,
                retry_at_ms: None,
            },
        );
    }

    /// Whether `id` has items in the scheduler.
    pub fn has_message(&self, id: MessageId) -> bool {
        self.messages.contains_key(&id)
    }

    /// The scheduled-queue key of a message's item for `domain`.
    pub fn queue_key(&mut self, tenant: &str, campaign: &str, domain: &str) -> QueueKey {
        QueueKey {
            tenant: self.names.intern(tenant),
            campaign: self.names.intern(campaign),
            domain: self.names.intern(domain),
            high: false,
        }
    }

    /// Puts an item into the ready queue of its site and the source chosen for it.
    pub fn add_item(&mut self, item: Item, route: &Arc<Route>, now_us: u64) {
        self.now_ms = now_us / 1000;
        // Fill the rate caches that dispatch reads without `&mut self`.
        let _ = (
            self.tenant_rate(item.key.tenant),
            self.domain_rate(item.key.domain),
        );
        let site = self.site(route, item.key.domain);
        let source = self.choose_source(&item, site, now_us);
        let lane_id = self.lane(source, site);
        let high = item.key.high.then(|| item.clone());
        self.enqueue(lane_id, item);
        if let Some(item) = high {
            self.warm_make_room(lane_id, &item, now_us);
        }
    }

    /// Appends an item to a lane and makes sure something will send it: an idle connection of the
    /// lane is woken, or the lane is looked at by the next poll (which may open a connection).
    fn enqueue(&mut self, lane_id: LaneId, item: Item) {
        let Some(lane) = self.lanes.get_mut(lane_id.0 as usize) else {
            return;
        };
        lane.push(item);
        if lane.idle > 0 {
            lane.notify.notify_one();
        } else {
            self.mark_dirty(lane_id);
        }
    }

    /// The site of a route (created on first sight), with `domain` recorded as one of its domains.
    fn site(&mut self, route: &Arc<Route>, domain: NameId) -> SiteId {
        if let Some(&id) = self.site_ids.get(route.site.as_str()) {
            let site = &mut self.sites[id.0 as usize];
            if site.route != *route {
                site.route = Arc::clone(route);
            }
            if site.domains.len() < MAX_SITE_DOMAINS {
                site.domains.insert(domain);
            }
            return id;
        }
        let hosts: Vec<&str> = route.hosts.iter().map(|host| host.name.as_str()).collect();
        let provider = self
            .settings
            .provider_id(self.settings.providers.provider_of(&hosts));
        let id = SiteId(u32::try_from(self.sites.len()).unwrap_or(u32::MAX));
        let name: Arc<str> = Arc::from(route.site.as_str());
        self.sites.push(Site {
            name: Arc::clone(&name),
            provider,
            route: Arc::clone(route),
            domains: BTreeSet::from([domain]),
        });
        self.site_ids.insert(name, id);
        id
    }

    /// The lane of (source, site), created on first use with the limits of the site's provider.
    fn lane(&mut self, source: SourceId, site: SiteId) -> LaneId {
        if let Some(&id) = self.lane_ids.get(&(source, site)) {
            return id;
        }
        let provider = self.sites[site.0 as usize].provider;
        let limits = self.settings.lane_limits(provider);
        let id = LaneId(u32::try_from(self.lanes.len()).unwrap_or(u32::MAX));
        let group = Arc::clone(&self.provider_lanes.entry((source, provider)).or_default().group);
        let mut lane = Lane::new(source, site, provider, limits, group);
        lane.prefer_high = self.warm_cap(source, provider).is_some();
        self.lanes.push(lane);
        self.lane_ids.insert((source, site), id);
        // Another node's closed-loop change kept for this lane (`[cluster]`).
        self.adopt_pending_rate(id);
        id
    }

    /// The source an item goes out from: weighted among its pool's sources, skipping those suspended
    /// for it and preferring those that can send now (a source at its limit never holds back the
    /// others).
    fn choose_source(&mut self, item: &Item, site: SiteId, now_us: u64) -> SourceId {
        let chosen = self.choose_in_pool(item.pool, item, site, now_us);
        match self.warm_overflow_pool(chosen, site, item, now_us) {
            Some(overflow) => self.choose_in_pool(overflow, item, site, now_us),
            None => chosen,
        }
    }

    /// The source of `pool` an item goes out from (see [`Scheduler::choose_source`]).
    fn choose_in_pool(&mut self, pool: PoolId, item: &Item, site: SiteId, now_us: u64) -> SourceId {
        let settings = Arc::clone(&self.settings);
        let members = settings
            .pools
            .get(usize::from(pool.0))
            .map_or(&[][..], |pool| pool.members.as_slice());
        match members {
            [] => SourceId(0),
            [(only, _)] => *only,
            _ => {
                let candidates: Vec<Candidate> = members
                    .iter()
                    .map(|&(source, weight)| Candidate {
                        weight,
                        available_at_us: Some(self.source_available_at(source, site, item, now_us)),
                    })
                    .collect();
                let selector = self.selectors.entry((pool, site)).or_default();
                let index = selector.select(&candidates, now_us).unwrap_or(0);
                members[index].0
            }
        }
    }

    /// When `source` could send `item` to `site`: the end of a suspension that applies, else when its
    /// lane's backlog would be sent at its rates.
    fn source_available_at(&mut self, source: SourceId, site: SiteId, item: &Item, now_us: u64) -> u64 {
        let lane = self.lane(source, site);
        let eta = if let Some(hold) = self.lane_hold(lane, now_us) {
            hold.until_us
        } else if let Some(until) = self.item_suspended_until(lane, item, now_us) {
            until
        } else {
            self.lane_eta(lane, now_us, true)
        };
        // A warming source without room stays unavailable past a suspension's end.
        match self.warm_unavailable(source, site, item, now_us) {
            Some(until) => eta.max(until),
            None => eta,
        }
    }

    /// Marks a lane for the next poll and wakes the driver.
    fn mark_dirty(&mut self, lane_id: LaneId) {
        if let Some(lane) = self.lanes.get_mut(lane_id.0 as usize)
            && !lane.dirty
        {
            lane.dirty = true;
            self.dirty.push(lane_id);
            self.driver.notify_one();
        }
    }

    /// Ends one item of a message. `last` is true for the message's last item of this round: the
    /// message leaves the scheduler and its envelope update reschedules it.
    pub fn finish_item(&mut self, id: MessageId) -> ItemEnd {
        let Some(state) = self.messages.get_mut(&id) else {
            return ItemEnd {
                last: true,
                retry_at_ms: None,
            };
        };
        state.outstanding = state.outstanding.saturating_sub(1);
        if state.outstanding > 0 {
            return ItemEnd {
                last: false,
                retry_at_ms: state.retry_at_ms,
            };
        }
        let retry_at_ms = state.retry_at_ms;
        self.messages.remove(&id);
        ItemEnd {
            last: true,
            retry_at_ms,
        }
    }

    /// The lock that serialises the envelope updates of a message with several items.
    pub fn message_lock(&self, id: MessageId) -> Option<Arc<tokio::sync::Mutex<()>>> {
        self.messages.get(&id).and_then(|state| state.lock.clone())
    }

    /// A `retry` rule asked for the next attempt of `id` at `at_ms` (the earliest request wins).
    fn request_retry(&mut self, id: MessageId, at_ms: u64) {
        if let Some(state) = self.messages.get_mut(&id) {
            state.retry_at_ms = Some(state.retry_at_ms.map_or(at_ms, |earlier| earlier.min(at_ms)));
        }
    }

    /// Items found expired while waiting; the driver finishes them.
    pub fn take_expired(&mut self) -> Vec<Work> {
        std::mem::take(&mut self.expired)
    }

    /// The work of an item of `lane`, with its names.
    fn work(&self, item: Item, lane: LaneId) -> Work {
        Work {
            pool: self.settings.pool_name(item.pool),
            item,
            lane,
        }
    }

    /// Emits an event with this scheduler's notion of now.
    fn emit(&self, event: Event) {
        self.events.emit(event);
    }

    /// The tenant's rate (looked up once per tenant).
    fn tenant_rate(&mut self, tenant: NameId) -> Option<Rate> {
        if let Some(rate) = self.tenant_rates.get(&tenant) {
            return *rate;
        }
        let name = self.names.name(tenant);
        let rate = self
            .settings
            .tenants
            .get(&*name)
            .and_then(|t| t.rate)
            .or_else(|| self.api_tenant_rates.get(&*name).copied());
        self.tenant_rates.insert(tenant, rate);
        rate
    }

    /// Sets the `max_message_rate` of the tenants made over the API (all of them: a tenant missing
    /// here has no rate); items already queued follow the new rates at once.
    pub fn set_api_tenant_rates(
        &mut self,
        rates: impl IntoIterator<Item = (String, penguin_config::MessageRate)>,
    ) {
        self.api_tenant_rates = rates
            .into_iter()
            .filter_map(|(name, rate)| Some((name, settings::rate_of(rate)?)))
            .collect();
        let known: Vec<NameId> = self.tenant_rates.keys().copied().collect();
        self.tenant_rates.clear();
        for tenant in known {
            self.tenant_rate(tenant);
        }
        // Queues held back by a tenant's old rate look again.
        self.release_all();
    }

    /// The domain's configured rate (looked up once per domain).
    fn domain_rate(&mut self, domain: NameId) -> Option<Rate> {
        if let Some(rate) = self.domain_rates.get(&domain) {
            return *rate;
        }
        let name = self.names.name(domain);
        let rate = self.settings.domain_rates.get(&*name).copied();
        self.domain_rates.insert(domain, rate);
        rate
    }

    /// The names of a lane for events and the API: (source, site, provider).
    fn lane_names(&self, lane_id: LaneId) -> (Arc<str>, Arc<str>, Arc<str>) {
        let lane = &self.lanes[lane_id.0 as usize];
        (
            self.settings.source_name(lane.source),
            Arc::clone(&self.sites[lane.site.0 as usize].name),
            self.settings.provider_name(lane.provider),
        )
    }

    /// The route of a lane's site.
    pub fn lane_route(&self, lane_id: LaneId) -> Option<Arc<Route>> {
        let lane = self.lanes.get(lane_id.0 as usize)?;
        Some(Arc::clone(&self.sites.get(lane.site.0 as usize)?.route))
    }
}
