//! Egress sources and pools end to end: which local address and EHLO name each delivery uses, the
//! pool's weights, `X-Pool`, and the caps on connections per (source, site) and per provider.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use penguin_tests::delivery::*;
use penguin_tests::sink::SinkBehaviour;

/// Sources ip2 (127.0.0.2, EHLO mta2.test) and ip3 (127.0.0.3, EHLO mta3.test).
const SOURCES: &str = r#"
[[source]]
name = "ip2"
ip = "127.0.0.2"
ehlo_name = "mta2.test"
[[source]]
name = "ip3"
ip = "127.0.0.3"
ehlo_name = "mta3.test"
"#;

/// How many messages a sink got from each peer address, with the EHLO names they used.
fn by_peer(sink: &penguin_tests::sink::TestSink) -> BTreeMap<IpAddr, (usize, Vec<String>)> {
    let mut counts: BTreeMap<IpAddr, (usize, Vec<String>)> = BTreeMap::new();
    for received in sink.received() {
        let entry = counts.entry(received.peer.ip()).or_default();
        entry.0 += 1;
        if !entry.1.contains(&received.helo) {
            entry.1.push(received.helo.clone());
        }
    }
    counts
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_sends_from_its_sources_by_weight_with_their_ehlo_names() {
    let toml = format!(
        "{SOURCES}\n[[pool]]\nname = \"default\"\nsources = [\"ip2\", {{ name = \"ip3\", weight = 3 }}]\n"
    );
    let world = DeliveryWorld::start(1, |config| apply_shaping(config, &toml)).await;
    world.route_to_sink("weights.test", 0);
    for n in 0..40 {
        world.send(&[&format!("r{n}@weights.test")]).await;
    }
    world.sinks[0].wait_for(40).await;

    let peers = by_peer(&world.sinks[0]);
    assert_eq!(
        peers.get(&ip(2)),
        Some(&(10, vec!["mta2.test".to_string()])),
        "{peers:?}"
    );
    assert_eq!(
        peers.get(&ip(3)),
        Some(&(30, vec!["mta3.test".to_string()])),
        "{peers:?}"
    );
    world
        .wait_events("40 deliveries", 40, |e| e["type"] == "delivery")
        .await;
    let event = world.wait_event("delivery", "r0@weights.test").await;
    assert_eq!(event["pool"], "default", "{event}");
    assert_eq!(event["provider"], "other", "{event}");
    assert_eq!(event["site"], "mx.weights.test", "{event}");
    assert!(matches!(event["source"].as_str(), Some("ip2" | "ip3")), "{event}");
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_pool_chooses_the_pool_and_is_never_delivered() {
    let toml = format!(
        "{SOURCES}\n[[pool]]\nname = \"warm\"\nsources = [\"ip2\"]\n[[pool]]\nname = \"cold\"\nsources = [\"ip3\"]\n"
    );
    let world = DeliveryWorld::start(1, |config| apply_shaping(config, &toml)).await;
    world.route_to_sink("pools.test", 0);
    for (n, pool) in ["cold", "warm", "cold"].iter().enumerate() {
        let to = format!("r{n}@pools.test");
        let content = format!(
            "From: <{SENDER}>\r\nTo: <{to}>\r\nX-Pool: {pool}\r\nX-Campaign-ID: c{n}\r\nSubject: pool\r\n\r\nhi\r\n"
        );
        world
            .send_with(&format!("MAIL FROM:<{SENDER}>"), &[&to], &content)
            .await;
    }
    let received = world.sinks[0].wait_for(3).await;
    for message in &received {
        let text = message.text();
        let expected = if message.rcpt_to[0] == "r1@pools.test" {
            ip(2)
        } else {
            ip(3)
        };
        assert_eq!(message.peer.ip(), expected, "{}", message.rcpt_to[0]);
        assert!(
            !text.contains("X-Pool") && !text.contains("X-Campaign-ID"),
            "{text}"
        );
    }
    let reception = world
        .wait_events("receptions", 3, |e| e["type"] == "reception")
        .await;
    assert!(reception.iter().any(|e| e["pool"] == "cold"), "{reception:?}");

    let mut client = world.server.connect().await;
    client.ehlo().await;
    let content = "From: <a@sender.test>\r\nX-Pool: hot\r\n\r\nhi\r\n";
    let reply = client.send_message(SENDER, &["x@pools.test"], content).await;
    assert_eq!(reply.code, 550, "{reply}");
    assert_eq!(reply.enhanced_code(), "5.7.1", "{reply}");
    assert!(
        reply.text().contains("hot"),
        "the refusal names the pool: {reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_source_and_site_are_capped() {
    let world = DeliveryWorld::start(1, |config| {
        apply_shaping(config, "[shaping]\nmax_connections = 2\n");
    })
    .await;
    world.sinks[0].set_behaviour(SinkBehaviour {
        data_delay: Some(Duration::from_millis(300)),
        ..SinkBehaviour::default()
    });
    world.route_to_sink("capped.test", 0);
    for n in 0..8 {
        world.send(&[&format!("r{n}@capped.test")]).await;
    }
    let stats = world.sinks[0]
        .wait_until("8 messages", |stats| stats.received >= 8)
        .await;
    assert_eq!(
        stats.max_open, 2,
        "two connections at once, never more: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_connection_cap_spans_its_sites() {
    // Two domains with different MX hosts (two sites) of one provider, both at sink 0.
    let toml = "[[provider]]\nname = \"bigmail\"\nmx_suffixes = [\".bigmail.test\"]\n\
                [[shaping.provider]]\nprovider = \"bigmail\"\nprovider_max_connections = 1\n";
    let world = DeliveryWorld::start(1, |config| apply_shaping(config, toml)).await;
    world.sinks[0].set_behaviour(SinkBehaviour {
        data_delay: Some(Duration::from_millis(200)),
        ..SinkBehaviour::default()
    });
    world.add_mx("one.test", 10, "mx1.bigmail.test", sink_ip(0));
    world.add_mx("two.test", 10, "mx2.bigmail.test", sink_ip(0));
    for n in 0..3 {
        world.send(&[&format!("r{n}@one.test")]).await;
        world.send(&[&format!("r{n}@two.test")]).await;
    }
    let stats = world.sinks[0]
        .wait_until("6 messages", |stats| stats.received >= 6)
        .await;
    assert_eq!(
        stats.max_open, 1,
        "one connection to the provider at a time: {stats:?}"
    );
    let deliveries = world
        .wait_events("6 deliveries", 6, |e| e["type"] == "delivery")
        .await;
    let mut sites: Vec<&str> = deliveries.iter().filter_map(|e| e["site"].as_str()).collect();
    sites.sort_unstable();
    sites.dedup();
    assert_eq!(sites, ["mx1.bigmail.test", "mx2.bigmail.test"], "two sites");
    assert!(
        deliveries.iter().all(|e| e["provider"] == "bigmail"),
        "{deliveries:?}"
    );
}
