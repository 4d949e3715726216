//! Connection caps shared across nodes end to end, on one real `redis-server`: each connection holds a
//! lease in Redis (`penguin:conns:…`, a sorted set of members with their expiry). Two nodes with
//! `max_connections = 2` toward one relay never have more than 2 connections open at it together (4
//! without leases), and deliver everything. A node killed with SIGKILL (the real binary) leaves its
//! lease behind: the other node waits, without an attempt, until the lease expires (`lease_ttl`), then
//! delivers.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use penguin_config::Config;
use penguin_tests::binary::{RunningBinary, write_config};
use penguin_tests::cluster::{send_tagged, wait_redis};
use penguin_tests::delivery::apply_shaping;
use penguin_tests::redis::TestRedis;
use penguin_tests::sink::{Received, SinkBehaviour, TestSink};
use penguin_tests::{TestServer, WAIT, allow_loopback_relay, test_config};
use serde_json::Value;

/// The engine's binary built for this package (see tests/Cargo.toml).
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");

/// A node relaying to `sink` with the fleet's connection cap `max_connections`, leases of `lease_ttl`.
fn node_config(dir: &Path, redis: &str, id: &str, sink: &TestSink, caps: (usize, Duration)) -> Config {
    let (max_connections, lease_ttl) = caps;
    let mut config = test_config(dir);
    allow_loopback_relay(&mut config);
    config.delivery.paused = false;
    config.delivery.relay_host = Some(sink.address.to_string().parse().expect("relay host"));
    config.delivery.connection_idle_timeout = Duration::from_secs(1).into();
    config.log.events = Some(dir.join("events.jsonl"));
    apply_shaping(
        &mut config,
        &format!("[shaping]\nmax_connections = {max_connections}\n"),
    );
    let mut cluster = penguin_tests::redis::test_cluster(redis, id);
    cluster.lease_ttl = lease_ttl.into();
    config.cluster = Some(cluster);
    config
}

/// The messages of `received` tagged `tag`.
fn tagged<'a>(received: &'a [Received], tag: &str) -> Vec<&'a Received> {
    received
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.data).contains(&format!("Subject: {tag}-")))
        .collect()
}

/// Every lease in Redis: (key, member, expiry in unix ms).
async fn leases(redis: &TestRedis) -> Vec<(String, String, u64)> {
    const LIST: &str = "local out = {} \
        for _, key in ipairs(redis.call('KEYS', 'penguin:conns:*')) do \
          local m = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES') \
          for i = 1, #m, 2 do table.insert(out, key .. ' ' .. m[i] .. ' ' .. m[i + 1]) end \
        end \
        return table.concat(out, '\\n')";
    let text = redis.query(&["EVAL", LIST, "0"]).await.unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let mut next = || parts.next().expect("key member score").to_string();
            let (key, member, score) = (next(), next(), next());
            (key, member, score.parse().expect("expiry ms"))
        })
        .collect()
}

/// Waits (bounded) until the leases in Redis satisfy `condition`; returns them.
async fn wait_leases(
    redis: &TestRedis,
    what: &str,
    condition: impl Fn(&[(String, String, u64)]) -> bool,
) -> Vec<(String, String, u64)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = leases(redis).await;
        if condition(&found) {
            return found;
        }
        assert!(Instant::now() < deadline, "waited for {what}: {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The events of the node whose directory is `dir` (complete lines only).
fn events(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| serde_json::from_str(line).expect("event JSON"))
        .collect()
}

/// Waits (bounded) until the node of `dir` logged `count` events of `kind`; returns all its events.
async fn wait_events(dir: &Path, kind: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let all = events(dir);
        if all.iter().filter(|e| e["type"] == kind).count() >= count {
            return all;
        }
        assert!(Instant::now() < deadline, "waited for {count} {kind}: {all:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Unix milliseconds of `at`.
fn unix_ms(at: SystemTime) -> u64 {
    u64::try_from(at.duration_since(UNIX_EPOCH).expect("after 1970").as_millis()).expect("ms")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_hold_a_connection_cap_together() {
    let redis = TestRedis::start().await;
    let sink = TestSink::start(SinkBehaviour {
        data_delay: Some(Duration::from_millis(300)),
        ..SinkBehaviour::default()
    })
    .await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let caps = (2, Duration::from_secs(15));
    let a = TestServer::start(node_config(dir_a.path(), &redis.url(), "node-a", &sink, caps)).await;
    let b = TestServer::start(node_config(dir_b.path(), &redis.url(), "node-b", &sink, caps)).await;
    wait_redis(a.api, true, 2).await;
    wait_redis(b.api, true, 2).await;

    tokio::join!(send_tagged(a.smtp, "a", 10), send_tagged(b.smtp, "b", 10));
    let received = sink.wait_for(20).await;
    let stats = sink.stats();
    assert_eq!(
        stats.max_open, 2,
        "two connections at once for both nodes together (4 without leases): {stats:?}"
    );
    assert_eq!(
        (tagged(&received, "a").len(), tagged(&received, "b").len()),
        (10, 10),
        "every message of both nodes delivered"
    );
    for dir in [dir_a.path(), dir_b.path()] {
        let all = wait_events(dir, "delivery", 10).await;
        assert!(
            all.iter().all(|e| e["type"] != "transient_failure"),
            "waiting for a lease is never an attempt: {all:?}"
        );
    }
    // Closed connections give their leases back.
    wait_leases(&redis, "no lease left", |found| found.is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_lease_expires_and_the_other_node_delivers_then() {
    let redis = TestRedis::start().await;
    // Node A's connection hangs in DATA, holding the only lease.
    let sink = TestSink::start(SinkBehaviour {
        data_delay: Some(Duration::from_secs(20)),
        ..SinkBehaviour::default()
    })
    .await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let caps = (1, Duration::from_secs(2));
    let mut config_a = node_config(dir_a.path(), &redis.url(), "node-a", &sink, caps);
    let path = write_config(dir_a.path(), &mut config_a);
    let a = RunningBinary::start(EXE, &path, &config_a).await;
    let b = TestServer::start(node_config(dir_b.path(), &redis.url(), "node-b", &sink, caps)).await;
    wait_redis(b.api, true, 2).await;

    send_tagged(a.smtp, "a", 1).await;
    sink.wait_until("node A connected", |stats| stats.open == 1).await;
    let held = wait_leases(&redis, "node A's lease", |found| {
        found.iter().any(|(_, member, _)| member.starts_with("node-a/"))
    })
    .await;
    send_tagged(b.smtp, "b", 2).await;
    // Node A renews its lease (every third of the TTL) while node B, asking at least every 500 ms,
    // is refused: it never connects.
    wait_leases(&redis, "a renewal of node A's lease", |found| {
        found
            .iter()
            .any(|lease| lease.1 == held[0].1 && lease.2 > held[0].2)
    })
    .await;
    assert_eq!(sink.stats().connections, 1, "node B did not connect");
    assert!(
        events(dir_b.path())
            .iter()
            .all(|e| e["type"] != "transient_failure"),
        "node B made no attempt"
    );

    a.kill9().await;
    sink.set_behaviour(SinkBehaviour::default());
    let dead = leases(&redis).await;
    let expiry = dead
        .iter()
        .filter(|(_, member, _)| member.starts_with("node-a/"))
        .map(|lease| lease.2)
        .max()
        .expect("the dead node's lease is still in Redis");

    let received = sink.wait_for(2).await;
    let first_b = tagged(&received, "b")
        .iter()
        .map(|r| unix_ms(r.at))
        .min()
        .expect("node B's messages");
    assert!(
        first_b >= expiry,
        "node B connected only once the dead lease expired: {first_b} < {expiry}"
    );
    assert!(
        first_b < expiry + 2_000,
        "node B delivered soon after the dead lease expired: {first_b} vs {expiry}"
    );
    let all = wait_events(dir_b.path(), "delivery", 2).await;
    assert!(
        all.iter().all(|e| e["type"] != "transient_failure"),
        "waiting for the lease was no attempt: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_gives_its_lease_back_soon_for_the_other_node() {
    let redis = TestRedis::start().await;
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let caps = (1, Duration::from_secs(15));
    let mut config_a = node_config(dir_a.path(), &redis.url(), "node-a", &sink, caps);
    let mut config_b = node_config(dir_b.path(), &redis.url(), "node-b", &sink, caps);
    // Without the lease an idle connection would wait a minute for more work.
    config_a.delivery.connection_idle_timeout = Duration::from_secs(60).into();
    config_b.delivery.connection_idle_timeout = Duration::from_secs(60).into();
    let a = TestServer::start(config_a).await;
    let b = TestServer::start(config_b).await;
    wait_redis(a.api, true, 2).await;
    wait_redis(b.api, true, 2).await;
    send_tagged(a.smtp, "a", 1).await;
    sink.wait_for(1).await;
    // A's connection is idle now, holding the fleet's only slot; B's mail must not wait for it long.
    let started = Instant::now();
    send_tagged(b.smtp, "b", 1).await;
    sink.wait_for(2).await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "B delivered {waited:?} after A's last message (A's connection idles 60 s)"
    );
}
