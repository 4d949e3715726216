//! A warming source's cap shared by the nodes, end to end: two in-process nodes on one real
//! `redis-server` relay through the same sink from the warm ip2 and ip9, which warms on a plan of 20
//! a day. Each node gets 40 messages: together they send at most 20 from 127.0.0.9 (not 20 each), the
//! rest from 127.0.0.2 (asserted by the peer address the sink saw), nothing is left waiting and no
//! overflow is an attempt; Redis holds what the fleet claimed. At the next day's start both judge the
//! day from the fleet's tallies (20 sent: advanced to the cap of 40, where each node's own 10 would
//! hold it), and a hold made through node A's API is in force on node B. Time is one `ManualClock`
//! for both.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use penguin_mta::clock::{ManualClock, SharedClock};
use penguin_tests::TestServer;
use penguin_tests::cluster::{admin, relay_node, send_tagged, wait_redis, wait_until};
use penguin_tests::redis::TestRedis;
use penguin_tests::sink::{Received, SinkBehaviour, TestSink};

/// 2026-12-02 12:00:00 UTC: the warm-up's first day, at noon.
const NOON: u64 = 1_796_212_800;

/// ip2 is warm; ip9 warms from today on 20 a day, its overflow through the pool.
const WORLD: &str = r#"
[[source]]
name = "ip2"
ip = "127.0.0.2"
[[source]]
name = "ip9"
ip = "127.0.0.9"
warmup = { plan = "first", start = "2026-12-02" }

[[warmup.plan]]
name = "first"
daily = [20, 40]
"#;

/// How many of `received` came from `peer` with a subject tagged `tag`.
fn count(received: &[Received], peer: u8, tag: &str) -> usize {
    let peer = IpAddr::V4(Ipv4Addr::new(127, 0, 0, peer));
    received
        .iter()
        .filter(|r| r.peer.ip() == peer)
        .filter(|r| String::from_utf8_lossy(&r.data).contains(&format!("Subject: {tag}-")))
        .count()
}

/// The `GET /v1/warmup` row of ip9 in `body`.
fn ip9_row(body: &serde_json::Value) -> serde_json::Value {
    body.as_array()
        .and_then(|rows| rows.iter().find(|row| row["source"] == "ip9").cloned())
        .unwrap_or_default()
}

/// Waits (bounded) until both nodes' tallies of the first day are in Redis, `sent` in all.
async fn wait_tallies(redis: &TestRedis, sent: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut counts = Vec::new();
        for node in ["node-a", "node-b"] {
            let field = format!("{node}/other/sent");
            let value = redis
                .query(&["HGET", "penguin:warmup:tally:ip9:2026-12-02", &field])
                .await;
            counts.push(value.and_then(|value| value.parse::<usize>().ok()));
        }
        if counts.iter().all(Option::is_some) && counts.iter().flatten().sum::<usize>() == sent {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited for both nodes' tallies ({sent} sent): {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events of `kind` in a node's event log.
fn events(dir: &Path, kind: &str) -> usize {
    let log = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["type"] == kind)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_send_a_warming_sources_cap_together() {
    let redis = TestRedis::start().await;
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOON));
    let shared: SharedClock = clock.clone();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let config_a = relay_node(dir_a.path(), &redis.url(), "node-a", &sink, WORLD);
    let config_b = relay_node(dir_b.path(), &redis.url(), "node-b", &sink, WORLD);
    let a = TestServer::start_with_clock(config_a, Arc::clone(&shared)).await;
    let b = TestServer::start_with_clock(config_b, shared).await;
    wait_redis(a.api, true, 2).await;
    wait_redis(b.api, true, 2).await;

    tokio::join!(send_tagged(a.smtp, "a", 40), send_tagged(b.smtp, "b", 40));
    let received = sink.wait_for(80).await;
    let warming = count(&received, 9, "a") + count(&received, 9, "b");
    let warm = count(&received, 2, "a") + count(&received, 2, "b");
    assert_eq!(
        warming + warm,
        80,
        "every message from ip9 or ip2: {} in all",
        received.len()
    );
    assert!(
        (16..=20).contains(&warming),
        "the fleet sends at most the cap of 20 from the warming 127.0.0.9 (each node alone would send 20): {warming}"
    );
    let claimed = redis
        .get("penguin:warmup:claimed:ip9/other/2026-12-02")
        .await
        .and_then(|value| value.parse::<usize>().ok())
        .expect("the fleet's claimed count in Redis");
    assert!(
        (warming..=20).contains(&claimed),
        "claimed {claimed}, sent {warming} from ip9"
    );
    for dir in [dir_a.path(), dir_b.path()] {
        assert_eq!(
            events(dir, "transient_failure"),
            0,
            "overflow is never an attempt"
        );
    }

    // The next day: each node sent about half of the 20; judged on its own that would hold the step.
    wait_tallies(&redis, warming).await;
    clock.set(UNIX_EPOCH + Duration::from_secs(NOON + 12 * 3600 + 10));
    for node in [a.api, b.api] {
        let (body, _) = wait_until(node, "/v1/warmup", "the fleet's day judged", |body| {
            ip9_row(body)["cap_today"] == 40
        })
        .await;
        let row = ip9_row(&body);
        assert_eq!(row["step"], 2, "advanced on the fleet's 20 sent: {row}");
    }

    // A hold made on A (a second later: changes are ordered by their time) is in force on B.
    clock.set(UNIX_EPOCH + Duration::from_secs(NOON + 12 * 3600 + 11));
    let (status, body) = admin(a.api, "POST", "/v1/sources/ip9/warmup/hold", None).await;
    assert_eq!(status, 200, "{body}");
    let (body, _) = wait_until(b.api, "/v1/warmup", "A's hold on B", |body| {
        ip9_row(body)["state"] == "paused"
    })
    .await;
    assert_eq!(ip9_row(&body)["reason"], "held by the operator", "{body}");
}
