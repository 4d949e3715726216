//! The scheduler as a state machine: items in, `poll` and `next` out, with the time given. Each test
//! builds its settings from a real config snippet.

use std::sync::{Arc, Mutex};

use penguin_config::Config;
use penguin_policy::BounceClass;
use penguin_queue::MessageId;
use smallvec::SmallVec;
use tokio::sync::Notify;

use super::*;
use crate::events::{Event, EventBus, EventKind, EventSink};

#[path = "leases_tests.rs"]
mod leases_tests;

#[path = "fleet_rates_tests.rs"]
mod fleet_rates_tests;

#[path = "warm_shared_tests.rs"]
mod warm_shared_tests;

/// One second in microseconds.
const S: u64 = 1_000_000;
/// The test's start time.
const T0: u64 = 1_800_000_000 * S;

/// Collects events.
#[derive(Default)]
struct Collected(Mutex<Vec<Event>>);

impl EventSink for Collected {
    fn emit(&self, event: &Event) {
        self.0.lock().expect("lock").push(event.clone());
    }
}

impl Collected {
    /// The events of `kind` so far.
    fn of(&self, kind: EventKind) -> Vec<Event> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| e.kind == kind)
            .cloned()
            .collect()
    }
}

/// A scheduler over the config `toml` (plus sources ip2/ip3 unless it defines its own), with the
/// events it emits.
fn scheduler(toml: &str) -> (Scheduler, Arc<Collected>) {
    let config = Config::from_toml_str(toml).expect("test config");
    let settings = Settings::from_config(&config).expect("settings");
    let events = Arc::new(Collected::default());
    let bus = EventBus::new(vec![Arc::clone(&events) as Arc<dyn EventSink>]);
    (
        Scheduler::new(Arc::new(settings), bus, Arc::new(Notify::new())),
        events,
    )
}

/// A route to a site whose single MX host is `mx`.
fn route(mx: &str) -> Arc<Route> {
    Arc::new(Route {
        site: mx.to_string(),
        hosts: vec![RouteHost {
            name: mx.to_string(),
            preference: 10,
            addresses: vec!["127.0.0.2:25".parse().expect("addr")],
        }],
    })
}

/// Message number `n` (one item) of `tenant`/`campaign` to `domain`, added at `now`.
fn add(
    s: &mut Scheduler,
    n: u32,
    tenant: &str,
    campaign: &str,
    domain: &str,
    mx: &str,
    now: u64,
) -> MessageId {
    let id = MessageId::from_parts(1, n);
    s.begin_message(id, 1);
    let pool = s.settings().message_pool(tenant, "");
    let item = Item {
        id,
        key: s.queue_key(tenant, campaign, domain),
        pool,
        recipients: SmallVec::from_slice(&[0]),
        expires_at_us: T0 + 86_400 * S,
    };
    s.add_item(item, &route(mx), now);
    id
}

/// The work a connection gets, or panics with what it got.
fn send(s: &mut Scheduler, conn: ConnId, now: u64) -> Work {
    match s.next(conn, now) {
        Next::Send(work) => *work,
        other => panic!("expected work at {now}, got {other:?}"),
    }
}

/// When a connection is told to wait until, or panics.
fn wait(s: &mut Scheduler, conn: ConnId, now: u64) -> u64 {
    match s.next(conn, now) {
        Next::Wait { until_us, .. } => until_us,
        other => panic!("expected a wait at {now}, got {other:?}"),
    }
}

const TWO_SOURCES: &str = r#"
[[source]]
name = "ip2"
ip = "127.0.0.2"
[[source]]
name = "ip3"
ip = "127.0.0.3"
"#;

#[test]
fn an_item_opens_a_connection_that_takes_it_then_idles() {
    let (mut s, _) = scheduler("");
    let id = add(&mut s, 1, "acme", "c", "example.com", "mx.example.com", T0);
    let opens = s.poll(T0);
    assert_eq!(opens.len(), 1);
    assert_eq!(&*opens[0].names.0, "default");
    assert_eq!(&*opens[0].names.1, "mx.example.com");
    let work = send(&mut s, opens[0].conn, T0);
    assert_eq!(work.item.id, id);
    assert_eq!(work.item.key, s.queue_key("acme", "c", "example.com"));
    assert_eq!(&*work.pool, "default");
    assert!(matches!(s.next(opens[0].conn, T0), Next::Idle(_)));
    assert!(
        s.poll(T0).is_empty(),
        "an idle connection takes new mail; none opens"
    );
    assert_eq!(
        s.finish_item(id),
        ItemEnd {
            last: true,
            retry_at_ms: None
        }
    );
    s.connection_closed(opens[0].conn);
    assert_eq!(s.connection_count(), 0);
}

#[test]
fn an_unlimited_lane_opens_a_connection_per_item_up_to_its_cap() {
    let (mut s, _) = scheduler("[shaping]\nmax_connections = 3\n");
    for n in 0..5 {
        add(&mut s, n, "acme", "c", "example.com", "mx.example.com", T0);
    }
    assert_eq!(s.poll(T0).len(), 3);
    assert!(s.poll(T0).is_empty());
}

#[test]
fn a_lane_rate_spaces_sends_evenly_and_waiting_counts_nothing() {
    let (mut s, _) = scheduler("[shaping]\nmax_message_rate = \"60/min\"\n");
    for n in 0..3 {
        add(&mut s, n, "acme", "c", "example.com", "mx.example.com", T0);
    }
    let opens = s.poll(T0);
    assert_eq!(
        opens.len(),
        1,
        "a rate-limited lane opens one connection per slot"
    );
    let conn = opens[0].conn;
    send(&mut s, conn, T0);
    assert_eq!(wait(&mut s, conn, T0 + S / 2), T0 + S);
    send(&mut s, conn, T0 + S);
    assert_eq!(wait(&mut s, conn, T0 + S), T0 + 2 * S);
    send(&mut s, conn, T0 + 2 * S);
    assert!(matches!(s.next(conn, T0 + 2 * S), Next::Idle(_)));
}

#[test]
fn a_tenant_rate_holds_only_that_tenants_mail_on_every_site() {
    let toml = r#"
[[tenant]]
name = "slow"
username = "slow"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$nzIbkXqeHX81M+OdMdURGg$lMD+wmUI3emIbCXjveh2b+qWc0EfOWTvlxSjA5Hw31w"
sender_domains = ["slow.example"]
max_message_rate = "2/min"
"#;
    let (mut s, _) = scheduler(toml);
    add(&mut s, 1, "slow", "c", "a.example", "mx.a.example", T0);
    add(&mut s, 2, "slow", "c", "b.example", "mx.b.example", T0);
    add(&mut s, 3, "fast", "c", "b.example", "mx.b.example", T0);
    let opens = s.poll(T0);
    assert_eq!(opens.len(), 2 + 1, "site a: one item; site b: two items");
    let conn_a = opens[0].conn;
    let conn_b = opens[1].conn;
    assert_eq!(send(&mut s, conn_a, T0).item.id.sequence(), 1);
    assert_eq!(
        send(&mut s, conn_b, T0).item.id.sequence(),
        3,
        "the other tenant's mail is not held back"
    );
    assert_eq!(wait(&mut s, conn_b, T0), T0 + 30 * S, "2/min: the next in 30 s");
    assert_eq!(send(&mut s, conn_b, T0 + 30 * S).item.id.sequence(), 2);
}

#[test]
fn a_domain_rate_applies_across_sources() {
    let toml = format!(
        "{TWO_SOURCES}\n[[shaping.domain]]\ndomain = \"small.example\"\nmax_message_rate = \"1/min\"\n"
    );
    let (mut s, _) = scheduler(&toml);
    for n in 0..4 {
        add(&mut s, n, "acme", "c", "small.example", "mx.small.example", T0);
    }
    let opens = s.poll(T0);
    assert_eq!(
        opens.len(),
        4,
        "two items on each source's lane, one connection each"
    );
    let mut sent = 0;
    let mut waits = Vec::new();
    for open in &opens {
        match s.next(open.conn, T0) {
            Next::Send(_) => sent += 1,
            Next::Wait { until_us, .. } => waits.push(until_us),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sent, 1, "one message a minute to the domain, whatever the source");
    assert!(waits.iter().all(|&t| t == T0 + 60 * S), "{waits:?}");
}

#[test]
fn weights_split_the_items_between_sources() {
    let toml = format!(
        "{TWO_SOURCES}\n[[pool]]\nname = \"default\"\nsources = [\"ip2\", {{ name = \"ip3\", weight = 3 }}]\n"
    );
    let (mut s, _) = scheduler(&toml);
    for n in 0..400 {
        add(&mut s, n, "acme", "c", "example.com", "mx.example.com", T0);
    }
    let view = s.view(T0);
    let queued: Vec<(String, usize)> = view.queues.iter().map(|q| (q.source.clone(), q.queued)).collect();
    assert_eq!(queued, vec![("ip2".to_string(), 100), ("ip3".to_string(), 300)]);
}

#[test]
fn a_yahoo_deferral_suspends_the_source_for_the_provider_and_moves_its_mail() {
    let (mut s, events) = scheduler(TWO_SOURCES);
    let yahoo = "mta5.am0.yahoodns.net";
    for n in 0..4 {
        add(&mut s, n, "acme", "c", "yahoo.com", yahoo, T0);
    }
    let opens = s.poll(T0);
    let work = send(&mut s, opens[0].conn, T0);
    let lane = work.lane;
    let reply = Feedback {
        code: 421,
        enhanced: Some("4.7.0"),
        text: "[TSS04] Messages from 127.0.0.2 temporarily deferred due to unexpected volume or user complaints",
        class: BounceClass::RateLimited,
    };
    assert_eq!(
        s.feedback(lane, Some(work.item.id), &reply, T0),
        ReplyEffect::None
    );
    assert!(
        matches!(s.next(opens[0].conn, T0), Next::Close),
        "the suspended lane closes"
    );
    let suspended = events.of(EventKind::Suspended);
    assert_eq!(suspended.len(), 1);
    assert_eq!(suspended[0].until, Some((T0 + 7200 * S) / 1000));
    assert_eq!(suspended[0].provider.as_deref(), Some("yahoo"));
    let view = s.view(T0);
    let held = view
        .queues
        .iter()
        .find(|q| q.queued == 0 && q.suspended_until.is_some());
    let other = view
        .queues
        .iter()
        .find(|q| q.queued > 0)
        .expect("a queue with the mail");
    assert!(held.is_some(), "{view:?}");
    assert!(
        other.suspended_until.is_none(),
        "the mail moved to the other source: {view:?}"
    );
    assert_eq!(other.queued, 3);
    // Two hours later the suspension ends by itself.
    s.poll(T0 + 7200 * S + 1);
    assert_eq!(events.of(EventKind::Resumed).len(), 1);
}

#[test]
fn throttling_halves_the_rate_once_per_cooldown_and_recovery_climbs_back() {
    let (mut s, events) = scheduler("[shaping]\nmax_message_rate = \"60/min\"\n");
    add(&mut s, 1, "acme", "c", "example.com", "mx.example.com", T0);
    let opens = s.poll(T0);
    let work = send(&mut s, opens[0].conn, T0);
    let reply = Feedback {
        code: 421,
        enhanced: Some("4.7.0"),
        text: "Too many messages, slow down",
        class: BounceClass::RateLimited,
    };
    for second in 0..30 {
        s.feedback(work.lane, None, &reply, T0 + second * S);
    }
    let adjusted = events.of(EventKind::ShapingAdjusted);
    assert_eq!(adjusted.len(), 1, "at most once per cooldown (1 min)");
    assert_eq!(adjusted[0].rate_before, Some(1.0));
    assert_eq!(adjusted[0].rate_after, Some(0.5));
    assert_eq!(s.view(T0).queues[0].effective_rate, Some(0.5));
    // No throttle for 5 minutes after the last one: +1/10 of the configured rate.
    s.poll(T0 + 29 * S + 300 * S);
    let adjusted = events.of(EventKind::ShapingAdjusted);
    assert_eq!(adjusted.len(), 2, "{adjusted:?}");
    assert!((adjusted[1].rate_after.unwrap_or(0.0) - 0.6).abs() < 1e-9);
}

#[test]
fn an_operator_suspension_of_a_campaign_holds_only_its_mail_until_lifted() {
    let (mut s, events) = scheduler("");
    add(&mut s, 1, "acme", "spring", "example.com", "mx.example.com", T0);
    add(&mut s, 2, "acme", "fall", "example.com", "mx.example.com", T0);
    let suspension = OperatorSuspension {
        id: "s1".into(),
        scope: OperatorScope {
            campaign: Some("spring".into()),
            ..OperatorScope::default()
        },
        until_us: T0 + 3600 * S,
        reason: "complaints".into(),
        created_us: T0,
    };
    s.add_suspension(suspension, T0).expect("valid scope");
    let opens = s.poll(T0);
    let conn = opens[0].conn;
    assert_eq!(send(&mut s, conn, T0).item.id.sequence(), 2);
    assert_eq!(wait(&mut s, conn, T0), T0 + 3600 * S, "spring waits for the end");
    assert!(s.remove_suspension("s1", T0 + S).is_some());
    assert_eq!(send(&mut s, conn, T0 + S).item.id.sequence(), 1);
    assert_eq!(events.of(EventKind::Suspended).len(), 1);
    assert_eq!(
        events.of(EventKind::Resumed)[0].reason.as_deref(),
        Some("deleted")
    );
}

#[test]
fn an_empty_scope_is_refused() {
    let (mut s, _) = scheduler("");
    let suspension = OperatorSuspension {
        id: "s".into(),
        scope: OperatorScope::default(),
        until_us: T0 + S,
        reason: String::new(),
        created_us: T0,
    };
    assert_eq!(s.add_suspension(suspension, T0), Err(SuspensionError::EmptyScope));
}

#[test]
fn a_source_suspension_moves_mail_to_the_pools_other_source() {
    let (mut s, _) = scheduler(TWO_SOURCES);
    for n in 0..10 {
        add(&mut s, n, "acme", "c", "example.com", "mx.example.com", T0);
    }
    let suspension = OperatorSuspension {
        id: "s".into(),
        scope: OperatorScope {
            source: Some("ip2".into()),
            ..OperatorScope::default()
        },
        until_us: T0 + 60 * S,
        reason: "maintenance".into(),
        created_us: T0,
    };
    s.add_suspension(suspension, T0).expect("scope");
    let view = s.view(T0);
    let ip2: usize = view
        .queues
        .iter()
        .filter(|q| q.source == "ip2")
        .map(|q| q.queued)
        .sum();
    let ip3: usize = view
        .queues
        .iter()
        .filter(|q| q.source == "ip3")
        .map(|q| q.queued)
        .sum();
    assert_eq!((ip2, ip3), (0, 10));
    assert!(s.poll(T0).iter().all(|open| &*open.names.0 == "ip3"));
}

#[test]
fn a_connection_closes_after_its_share_of_deliveries() {
    let (mut s, _) = scheduler("[shaping]\nmax_deliveries_per_connection = 2\nmax_connections = 1\n");
    for n in 0..3 {
        add(&mut s, n, "acme", "c", "example.com", "mx.example.com", T0);
    }
    let conn = s.poll(T0)[0].conn;
    send(&mut s, conn, T0);
    send(&mut s, conn, T0);
    assert!(matches!(s.next(conn, T0), Next::Close));
    s.connection_closed(conn);
    assert_eq!(s.poll(T0).len(), 1, "a new connection for the rest");
}

#[test]
fn the_total_cap_asks_an_idle_connection_elsewhere_to_close() {
    let (mut s, _) = scheduler("[delivery]\nmax_connections = 1\n");
    add(&mut s, 1, "acme", "c", "a.example", "mx.a.example", T0);
    let conn_a = s.poll(T0)[0].conn;
    send(&mut s, conn_a, T0);
    assert!(matches!(s.next(conn_a, T0), Next::Idle(_)));
    add(&mut s, 2, "acme", "c", "b.example", "mx.b.example", T0);
    assert!(s.poll(T0).is_empty(), "no slot free");
    assert!(
        matches!(s.next(conn_a, T0), Next::Close),
        "the idle one gives its slot up"
    );
    s.connection_closed(conn_a);
    let opens = s.poll(T0);
    assert_eq!(opens.len(), 1);
    assert_eq!(&*opens[0].names.1, "mx.b.example");
}

#[test]
fn a_failed_connection_takes_the_lanes_sendable_items_with_it() {
    let (mut s, _) = scheduler("[shaping]\nmax_connections = 1\n");
    for n in 0..3 {
        add(&mut s, n, "acme", "c", "example.com", "mx.example.com", T0);
    }
    let conn = s.poll(T0)[0].conn;
    send(&mut s, conn, T0);
    assert_eq!(s.connect_failed(conn).len(), 2);
    assert_eq!(s.view(T0).queues[0].queued, 0);
}

#[test]
fn an_item_past_its_age_is_set_aside_as_expired() {
    let (mut s, _) = scheduler("");
    let id = MessageId::from_parts(1, 9);
    s.begin_message(id, 1);
    let pool = s.settings().message_pool("acme", "");
    let item = Item {
        id,
        key: s.queue_key("acme", "c", "example.com"),
        pool,
        recipients: SmallVec::from_slice(&[0]),
        expires_at_us: T0 + S,
    };
    s.add_item(item, &route("mx.example.com"), T0);
    let conn = s.poll(T0)[0].conn;
    assert!(matches!(s.next(conn, T0 + 2 * S), Next::Idle(_)));
    let expired = s.take_expired();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].item.id, id);
}

#[test]
fn a_message_with_two_domains_ends_with_its_second_item() {
    let (mut s, _) = scheduler("");
    let id = MessageId::from_parts(1, 1);
    s.begin_message(id, 2);
    assert!(s.message_lock(id).is_some(), "two items share a lock");
    assert!(!s.finish_item(id).last);
    assert!(s.finish_item(id).last);
    assert!(!s.has_message(id));
}

#[test]
fn without_the_closed_loop_throttling_changes_nothing_but_a_reduce_rule_still_acts() {
    let toml = "[shaping]\nadaptive = false\nmax_message_rate = \"60/min\"\n\
                [[shaping.rule]]\nname = \"slow\"\nmatch = \"slow down\"\naction = \"reduce\"\nfactor = 0.25\n";
    let (mut s, events) = scheduler(toml);
    add(&mut s, 1, "acme", "c", "example.com", "mx.example.com", T0);
    let opens = s.poll(T0);
    let work = send(&mut s, opens[0].conn, T0);
    let throttled = Feedback {
        code: 421,
        enhanced: Some("4.7.0"),
        text: "Too many messages",
        class: BounceClass::RateLimited,
    };
    s.feedback(work.lane, None, &throttled, T0);
    assert!(
        events.of(EventKind::ShapingAdjusted).is_empty(),
        "adaptive = false"
    );
    let rule = Feedback {
        text: "please slow down",
        ..throttled
    };
    s.feedback(work.lane, None, &rule, T0 + S);
    let adjusted = events.of(EventKind::ShapingAdjusted);
    assert_eq!(adjusted.len(), 1);
    assert_eq!(adjusted[0].rate_after, Some(0.25));
    assert_eq!(adjusted[0].reason.as_deref(), Some("rule slow"));
}

#[test]
fn an_item_is_taken_ahead_only_when_every_limit_allows_it_now() {
    let (mut s, _) = scheduler(
        "[shaping]\nmax_connections = 1\nmax_deliveries_per_connection = 3\nmax_message_rate = \"60/min\"\n",
    );
    for n in 0..4 {
        add(&mut s, n, "acme", "c", "example.com", "mx.example.com", T0);
    }
    let conn = s.poll(T0)[0].conn;
    send(&mut s, conn, T0);
    assert!(
        s.next_ready(conn, T0).is_none(),
        "the next rate slot is a second away: nothing ahead"
    );
    assert_eq!(
        wait(&mut s, conn, T0),
        T0 + S,
        "declining left the connection busy, not counted twice"
    );
    let ahead = s.next_ready(conn, T0 + S).expect("the slot has come");
    assert_eq!(ahead.item.id, MessageId::from_parts(1, 1));
    send(&mut s, conn, T0 + 2 * S);
    assert!(
        s.next_ready(conn, T0 + 3 * S).is_none(),
        "three items handed out: the connection's share is used up"
    );
    assert!(matches!(s.next(conn, T0 + 3 * S), Next::Close));
}

#[test]
fn an_item_given_back_goes_on_another_connection() {
    let (mut s, _) = scheduler("[shaping]\nmax_connections = 1\n");
    for n in 0..2 {
        add(&mut s, n, "acme", "c", "example.com", "mx.example.com", T0);
    }
    let conn = s.poll(T0)[0].conn;
    send(&mut s, conn, T0);
    let ahead = s
        .next_ready(conn, T0)
        .expect("unlimited lane: the next item goes ahead");
    assert!(!s.lane_held(conn, T0));
    s.give_back(ahead);
    s.connection_closed(conn);
    let other = s.poll(T0);
    assert_eq!(other.len(), 1, "a new connection for the given-back item");
    assert_eq!(
        send(&mut s, other[0].conn, T0).item.id,
        MessageId::from_parts(1, 1)
    );
}

/// Runs two schedulers (nodes) sharing their limits through a simulated store (the GCRA arithmetic of
/// the store's script) for `seconds`, one connection each pulling work every millisecond; returns what
/// each sent.
fn two_nodes(toml: &str, store_up: bool, seconds: u64) -> [u64; 2] {
    two_nodes_of(toml, "acme", "example.com", store_up, seconds).0
}

/// [`two_nodes`] with 2000 messages of `tenant` to `domain` on each node; also returns the names of the
/// limiters the nodes asked the store for.
fn two_nodes_of(
    toml: &str,
    tenant: &str,
    domain: &str,
    store_up: bool,
    seconds: u64,
) -> ([u64; 2], BTreeSet<String>) {
    let (mut a, _) = scheduler(toml);
    let (mut b, _) = scheduler(toml);
    let mut nodes = [&mut a, &mut b];
    let mx = format!("mx.{domain}");
    for s in nodes.iter_mut() {
        s.enable_shared_limits(2, Arc::new(Notify::new()));
        s.set_shared_store(store_up, 2);
        for n in 0..2000 {
            add(s, n, tenant, "c", domain, &mx, T0);
        }
    }
    let mut store: HashMap<String, u64> = HashMap::new();
    let mut conns: [Option<ConnId>; 2] = [None, None];
    let mut sent = [0u64; 2];
    let mut now = T0;
    while now < T0 + seconds * S {
        for (i, s) in nodes.iter_mut().enumerate() {
            for request in s.take_slot_requests() {
                let tat = store.entry(request.name).or_default();
                let (first, next) =
                    penguin_policy::shaping::grant(*tat, now, request.interval_us, request.count);
                *tat = next;
                s.slots_granted(request.key, Some((first, request.interval_us, request.count)));
            }
            if let Some(open) = s.poll(now).into_iter().next() {
                conns[i] = Some(open.conn);
            }
            while let Some(conn) = conns[i] {
                match s.next(conn, now) {
                    Next::Send(_) => sent[i] += 1,
                    Next::Close => {
                        s.connection_closed(conn);
                        conns[i] = None;
                    }
                    _ => break,
                }
            }
        }
        now += 1_000;
    }
    (sent, store.into_keys().collect())
}

#[test]
fn two_nodes_sharing_a_lane_rate_send_it_together_and_each_half_of_it_without_the_store() {
    let toml = "[shaping]\nmax_message_rate = \"20/s\"\nmax_connections = 1\n";
    let shared = two_nodes(toml, true, 10);
    let total = shared[0] + shared[1];
    assert!(
        (199..=202).contains(&total),
        "20/s together over 10 s: {shared:?}"
    );
    assert!(shared[0] >= 60 && shared[1] >= 60, "both nodes send: {shared:?}");
    let alone = two_nodes(toml, false, 10);
    assert!(
        alone.iter().all(|&n| (99..=101).contains(&n)),
        "without the store each node sends its share, 10/s: {alone:?}"
    );
}

#[test]
fn two_nodes_sharing_a_connection_rate_open_it_together_and_each_half_of_it_without_the_store() {
    // One message per connection: the messages sent are the connections opened.
    let toml =
        "[shaping]\nmax_connection_rate = \"20/s\"\nmax_connections = 1\nmax_deliveries_per_connection = 1\n";
    let (shared, limiters) = two_nodes_of(toml, "acme", "example.com", true, 10);
    let total = shared[0] + shared[1];
    assert!(
        (199..=202).contains(&total),
        "20 connections a second together over 10 s: {shared:?}"
    );
    assert!(
        shared[0] >= 60 && shared[1] >= 60,
        "both nodes connect: {shared:?}"
    );
    assert!(
        limiters.iter().any(|name| name.starts_with("conn-rate/default/")),
        "the fleet's limiter: {limiters:?}"
    );
    let alone = two_nodes(toml, false, 10);
    assert!(
        alone.iter().all(|&n| (99..=101).contains(&n)),
        "without the store each node opens its share, 10/s: {alone:?}"
    );
}

/// A tenant `slow` with a rate of 20 messages a second.
const SLOW_TENANT: &str = r#"
[[tenant]]
name = "slow"
username = "slow"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$nzIbkXqeHX81M+OdMdURGg$lMD+wmUI3emIbCXjveh2b+qWc0EfOWTvlxSjA5Hw31w"
sender_domains = ["slow.example"]
max_message_rate = "20/s"
"#;

/// Lanes without a rate, one connection each.
const UNLIMITED_LANES: &str = "[shaping]\nmax_connections = 1\nmax_deliveries_per_connection = 1000\n";

/// Asserts that two nodes sent 20/s together over 10 s (both sending) with the store, and 10/s each
/// (their share) without it.
fn assert_shared_20_per_second(toml: &str, tenant: &str, domain: &str, limiter: &str) {
    let (shared, names) = two_nodes_of(toml, tenant, domain, true, 10);
    let total = shared[0] + shared[1];
    assert!(
        (199..=202).contains(&total),
        "20/s together over 10 s: {shared:?}"
    );
    assert!(shared[0] >= 60 && shared[1] >= 60, "both nodes send: {shared:?}");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [limiter],
        "the only shared limiter"
    );
    let (alone, names) = two_nodes_of(toml, tenant, domain, false, 10);
    assert!(
        alone.iter().all(|&n| (99..=101).contains(&n)),
        "without the store each node sends its share, 10/s: {alone:?}"
    );
    assert!(names.is_empty(), "nothing asked of an absent store: {names:?}");
}

#[test]
fn two_nodes_sharing_a_tenant_rate_send_it_together_and_each_half_of_it_without_the_store() {
    let toml = format!("{SLOW_TENANT}\n{UNLIMITED_LANES}");
    assert_shared_20_per_second(&toml, "slow", "example.com", "tenant/slow");
}

#[test]
fn two_nodes_sharing_a_domain_rate_send_it_together_and_each_half_of_it_without_the_store() {
    let toml = format!(
        "{UNLIMITED_LANES}\n[[shaping.domain]]\ndomain = \"small.example\"\nmax_message_rate = \"20/s\"\n"
    );
    assert_shared_20_per_second(&toml, "acme", "small.example", "domain/small.example");
}

#[test]
fn a_queue_without_a_tenant_slot_waits_for_it_alone_and_goes_at_the_slots_time() {
    let toml = format!("{SLOW_TENANT}\n{UNLIMITED_LANES}");
    let (mut s, _) = scheduler(&toml);
    s.enable_shared_limits(2, Arc::new(Notify::new()));
    s.set_shared_store(true, 2);
    for n in 0..5 {
        add(&mut s, n, "slow", "c", "example.com", "mx.example.com", T0);
    }
    add(&mut s, 9, "fast", "c", "example.com", "mx.example.com", T0);
    let conn = s.poll(T0)[0].conn;
    assert_eq!(
        send(&mut s, conn, T0).item.id.sequence(),
        9,
        "the other tenant's mail does not wait for the slots"
    );
    let requests = s.take_slot_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let slow = requests[0].key;
    assert_eq!(requests[0].name, "tenant/slow");
    assert_eq!(requests[0].interval_us, S / 20);
    assert_eq!(requests[0].count, 2, "100 ms of 20/s, fewer than the 5 queued");
    assert_eq!(wait(&mut s, conn, T0), T0 + 20_000, "a short wait for the answer");
    s.slots_granted(slow, Some((T0 + 5_000, S / 20, 2)));
    assert_eq!(
        wait(&mut s, conn, T0 + 1_000),
        T0 + 5_000,
        "the answer puts the queue back at once: it waits for the slot's time"
    );
    assert_eq!(send(&mut s, conn, T0 + 5_000).item.id.sequence(), 0);
    let refill = s.take_slot_requests();
    assert_eq!(
        refill.iter().map(|r| (r.key, r.count)).collect::<Vec<_>>(),
        [(slow, 1)],
        "one slot spent, one asked for"
    );
    assert_eq!(wait(&mut s, conn, T0 + 5_000), T0 + 55_000, "the second slot");
}
