//! Shared rate limits end to end: two in-process nodes on one real `redis-server` deliver through the
//! same relay (one site) with `max_message_rate = "20/s"`. Together they send 20 messages a second,
//! not 20 each (the fleet's GCRA in Redis hands out the slots); with Redis stopped each falls back to
//! its share, 10 a second, and nothing stops being accepted. The same holds for a tenant's rate and a
//! recipient domain's rate, with the lanes unlimited.

use std::path::Path;
use std::time::SystemTime;

use penguin_tests::cluster::{relay_node, wait_redis};
use penguin_tests::redis::TestRedis;
use penguin_tests::sink::{Received, SinkBehaviour, TestSink};
use penguin_tests::{ACME, TestServer, TestTenant, simple_message};

/// The shared limit.
const RATE: f64 = 20.0;

/// The lanes' shared rate (the first test).
const LANE_RATE: &str = "[shaping]\nmax_message_rate = \"20/s\"\n";

/// Lanes unlimited; the recipient domain `y.example` at 20/s (the tenant's rate is set in the test).
const DOMAIN_RATE: &str = "[[shaping.domain]]\ndomain = \"y.example\"\nmax_message_rate = \"20/s\"\n";

/// Sends `count` messages tagged `tag` through `server` (relayed, tenant `default`).
async fn send(server: &TestServer, tag: &str, count: usize) {
    send_as(server, None, "a@relay.example", "r@x.example", tag, count).await;
}

/// Sends `count` messages tagged `tag` from `from` to `to` through `server`, logged in as `tenant`
/// (relayed, tenant `default`, without).
async fn send_as(
    server: &TestServer,
    tenant: Option<&TestTenant>,
    from: &str,
    to: &str,
    tag: &str,
    count: usize,
) {
    let mut client = server.connect().await;
    client.ehlo().await;
    if let Some(tenant) = tenant {
        let auth = client
            .cmd(&format!("AUTH PLAIN {}", tenant.plain_response()))
            .await;
        assert_eq!(auth.code, 235, "{auth}");
    }
    for n in 0..count {
        let content = simple_message(from, to, &format!("{tag}-{n}"));
        let reply = client.send_message(from, &[to], &content).await;
        assert_eq!(reply.code, 250, "{reply}");
    }
}

/// Messages per second of `received` from its first to its last arrival, and how many carry each tag.
fn rate_and_split(received: &[Received], tags: [&str; 2]) -> (f64, [usize; 2]) {
    let times: Vec<SystemTime> = received.iter().map(|r| r.at).collect();
    let first = times.iter().min().expect("arrivals");
    let last = times.iter().max().expect("arrivals");
    let span = last.duration_since(*first).expect("ordered").as_secs_f64();
    let split = tags.map(|tag| {
        received
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.data).contains(&format!("Subject: {tag}-")))
            .count()
    });
    ((received.len() - 1) as f64 / span, split)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_send_the_shared_rate_together_and_their_share_without_redis() {
    let redis = TestRedis::start().await;
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = TestServer::start(relay_node(dir_a.path(), &redis.url(), "node-a", &sink, LANE_RATE)).await;
    let b = TestServer::start(relay_node(dir_b.path(), &redis.url(), "node-b", &sink, LANE_RATE)).await;
    wait_redis(a.api, true, 2).await;
    wait_redis(b.api, true, 2).await;

    tokio::join!(send(&a, "a", 50), send(&b, "b", 50));
    let received = sink.wait_for(100).await;
    let (rate, split) = rate_and_split(&received, ["a", "b"]);
    assert!(
        (RATE * 0.95..=RATE * 1.05).contains(&rate),
        "the two nodes together: {rate:.2} msg/s for a shared 20/s ({split:?})"
    );
    assert!(
        split[0] >= 30 && split[1] >= 30,
        "both nodes sent their mail: {split:?}"
    );

    // Redis away: each node keeps accepting and keeps to its share (20/s ÷ 2 nodes).
    let mut redis = redis;
    redis.stop().await;
    wait_redis(a.api, false, 2).await;
    wait_redis(b.api, false, 2).await;
    let before = sink.received().len();
    tokio::join!(send(&a, "c", 30), send(&b, "d", 30));
    let received = sink.wait_for(before + 60).await;
    let (rate, split) = rate_and_split(&received[before..], ["c", "d"]);
    assert_eq!(split, [30, 30]);
    assert!(
        rate <= RATE * 1.05,
        "without Redis the nodes stay under the shared limit together: {rate:.2} msg/s"
    );
    assert!(
        rate >= RATE * 0.8,
        "each sends its share, not less: {rate:.2} msg/s"
    );
}

/// Asserts that `received` came at the shared rate (±5%) and that both nodes (`tags`) sent while the
/// other did: each has at least a fifth of the first half of the arrivals.
fn assert_shared_rate(received: &[Received], tags: [&str; 2], limit: &str) {
    let (rate, split) = rate_and_split(received, tags);
    assert!(
        (RATE * 0.95..=RATE * 1.05).contains(&rate),
        "{limit}, the two nodes together: {rate:.2} msg/s for a shared 20/s ({split:?})"
    );
    let mut arrivals = received.to_vec();
    arrivals.sort_by_key(|r| r.at);
    let (_, early) = rate_and_split(&arrivals[..received.len() / 2], tags);
    assert!(
        early.iter().all(|&n| n >= received.len() / 10),
        "{limit}: both nodes sent, side by side ({early:?} of the first half)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_send_a_shared_tenant_rate_and_a_shared_domain_rate_together() {
    let redis = TestRedis::start().await;
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let config = |dir: &Path, id: &str| {
        let mut config = relay_node(dir, &redis.url(), id, &sink, DOMAIN_RATE);
        let mut acme = ACME.config();
        acme.max_message_rate = Some("20/s".parse().expect("rate"));
        config.tenant.push(acme);
        config
    };
    let a = TestServer::start(config(dir_a.path(), "node-a")).await;
    let b = TestServer::start(config(dir_b.path(), "node-b")).await;
    wait_redis(a.api, true, 2).await;
    wait_redis(b.api, true, 2).await;

    // The tenant's rate: acme's mail from both nodes, to a domain without a rate.
    let from = "news@acme.example";
    tokio::join!(
        send_as(&a, Some(&ACME), from, "r@x.example", "a", 50),
        send_as(&b, Some(&ACME), from, "r@x.example", "b", 50),
    );
    let received = sink.wait_for(100).await;
    assert_shared_rate(&received, ["a", "b"], "tenant acme at 20/s");

    // The domain's rate: relayed mail (tenant `default`, no rate) to y.example from both nodes.
    let before = received.len();
    tokio::join!(
        send_as(&a, None, "a@relay.example", "r@y.example", "c", 50),
        send_as(&b, None, "a@relay.example", "r@y.example", "d", 50),
    );
    let received = sink.wait_for(before + 100).await;
    assert_shared_rate(&received[before..], ["c", "d"], "domain y.example at 20/s");
}
