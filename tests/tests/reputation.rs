//! DNS blocklist checks of the egress sources end to end, on a manual clock: the start-up check, a
//! listing found by the next check (`source_listed` with the zone's TXT, a suspension of the source, its
//! mail leaving from the pool's other source) and the delisting a later check finds (`source_delisted`,
//! the source sends again), with `penguin_source_listed` following along.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use penguin_mta::clock::ManualClock;
use penguin_tests::WAIT;
use penguin_tests::delivery::*;
use serde_json::Value;

/// Sources ip2 (127.0.0.2) and ip3 (127.0.0.3) in the default pool.
const SOURCES: &str = r#"
[[source]]
name = "ip2"
ip = "127.0.0.2"
[[source]]
name = "ip3"
ip = "127.0.0.3"
[[pool]]
name = "default"
sources = ["ip2", "ip3"]
"#;

/// The blocklist zone of the test.
const ZONE: &str = "dnsbl.test";
/// ip2's name in the zone.
const IP2_NAME: &str = "2.0.0.127.dnsbl.test";
/// The default `[reputation] check_every` (15 min) and a minute more.
const PAST_CHECK_EVERY: Duration = Duration::from_secs(16 * 60);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// The value of `penguin_source_listed{source, zone}` in `/metrics`, if the series exists.
async fn listed_gauge(world: &DeliveryWorld, source: &str) -> Option<u64> {
    let (status, text) = penguin_tests::http_request(world.server.api, "GET", "/metrics", None, b"").await;
    assert_eq!(status, 200, "{text}");
    let series = format!("penguin_source_listed{{source=\"{source}\",zone=\"{ZONE}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
}

/// Waits (bounded) until the gauge of `source` reads `value`.
async fn wait_gauge(world: &DeliveryWorld, source: &str, value: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        if listed_gauge(world, source).await == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for penguin_source_listed of {source} = {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids of the suspensions in force (`GET /v1/suspensions`).
async fn suspension_ids(world: &DeliveryWorld) -> Vec<String> {
    let (status, body) = world.api("GET", "/v1/suspensions", None).await;
    assert_eq!(status, 200, "{body}");
    body["suspensions"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|s| s["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `count` messages to `domain` (routed to sink 0) and returns the peer addresses of the
/// messages the sink received for them.
async fn send_and_collect(world: &DeliveryWorld, domain: &str, count: usize) -> Vec<IpAddr> {
    let before = world.sinks[0].received().len();
    for n in 0..count {
        world.send(&[&format!("r{n}@{domain}")]).await;
    }
    world.sinks[0].wait_for(before + count).await;
    world.sinks[0]
        .received()
        .iter()
        .filter(|message| message.rcpt_to.iter().any(|r| r.ends_with(&format!("@{domain}"))))
        .map(|message| message.peer.ip())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_source_is_suspended_until_delisted() {
    let clock = ManualClock::starting_now();
    let shared: penguin_mta::clock::SharedClock = clock.clone();
    let world = DeliveryWorld::start_with_clock(1, shared, |config| {
        apply_shaping(config, SOURCES);
        config.reputation.dnsbl = vec![ZONE.to_string()];
    })
    .await;
    world.route_to_sink("listed.test", 0);
    world.route_to_sink("delisted.test", 0);

    // The start-up check finds nothing (the zone is empty): both gauges at 0.
    wait_gauge(&world, "ip2", 0).await;
    wait_gauge(&world, "ip3", 0).await;

    // ip2 gets listed; the next check (one `check_every` later) finds it.
    world.dns.add_a(IP2_NAME, Ipv4Addr::new(127, 0, 0, 2), 0);
    world.dns.add_txt(IP2_NAME, "listed for testing", 0);
    clock.advance(PAST_CHECK_EVERY);
    let listed = world
        .wait_events("source_listed", 1, |e| e["type"] == "source_listed")
        .await;
    let event = &listed[0];
    assert_eq!(event["source"], "ip2", "{event}");
    assert_eq!(event["zone"], ZONE, "{event}");
    assert_eq!(event["reason"], "listed for testing", "{event}");
    assert_eq!(event["source_ip"], "127.0.0.2", "{event}");
    wait_gauge(&world, "ip2", 1).await;
    assert_eq!(listed_gauge(&world, "ip3").await, Some(0));
    let ids = suspension_ids(&world).await;
    assert!(ids.contains(&format!("dnsbl:ip2:{ZONE}")), "{ids:?}");

    // While listed, ip2 sends nothing: everything leaves from 127.0.0.3.
    let peers = send_and_collect(&world, "listed.test", 4).await;
    assert_eq!(peers, vec![ip(3); 4], "only ip3 sends while ip2 is listed");

    // Delisted: the check after the next `check_every` finds it, and ip2 sends again.
    world.dns.clear(IP2_NAME);
    clock.advance(PAST_CHECK_EVERY);
    let delisted = world
        .wait_events("source_delisted", 1, |e| e["type"] == "source_delisted")
        .await;
    assert_eq!(delisted[0]["source"], "ip2", "{}", delisted[0]);
    assert_eq!(delisted[0]["zone"], ZONE, "{}", delisted[0]);
    wait_gauge(&world, "ip2", 0).await;
    let ids = suspension_ids(&world).await;
    assert!(!ids.iter().any(|id| id.starts_with("dnsbl:")), "{ids:?}");
    let peers = send_and_collect(&world, "delisted.test", 6).await;
    assert!(peers.contains(&ip(2)), "ip2 sends again: {peers:?}");

    let counts = |kind: &str| -> usize {
        world
            .events()
            .iter()
            .filter(|e: &&Value| e["type"] == kind)
            .count()
    };
    assert_eq!(
        (counts("source_listed"), counts("source_delisted")),
        (1, 1),
        "one listing, one delisting"
    );
    assert_clean(&world.sinks[0]);
}
