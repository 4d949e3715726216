//! Several nodes on one Redis (`[cluster]`), end to end: two in-process servers `node-a` and `node-b`
//! and a real `redis-server` started here on a loopback port. Each lists both in `GET /v1/cluster`
//! (itself flagged) and in `penguin-mta cluster status`; Redis killed → both emit `cluster_degraded`,
//! `penguin_cluster_up 0`, and SMTP still answers 250; Redis back → `cluster_recovered`, gauge 1, both
//! listed again; a node that stops leaves the list at once. A frozen (SIGSTOP) Redis counts as down
//! after `redis_timeout`. Without `[cluster]` nothing of it exists.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use penguin_config::Config;
use penguin_tests::redis::TestRedis;
use penguin_tests::{TestServer, WAIT, allow_loopback_relay, metric_sample, simple_message, test_config};
use serde_json::Value;

/// The test binary (the engine's main.rs), for the CLI.
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");
/// Pause between two reads of what is awaited (event log, API).
const POLL: Duration = Duration::from_millis(20);

/// A node: its server and its event log.
struct Node {
    server: TestServer,
    events: PathBuf,
}

/// A node's config: relay from loopback, its event log, `[cluster]` on `redis` with short timings.
fn node_config(dir: &Path, redis: &str, id: &str) -> Config {
    let mut config = test_config(dir);
    allow_loopback_relay(&mut config);
    config.log.events = Some(dir.join("events.jsonl"));
    let cluster = penguin_tests::redis::test_cluster(redis, id);
    config.cluster = Some(cluster);
    config
}

async fn start_node(dir: &Path, redis: &TestRedis, id: &str) -> Node {
    let config = node_config(dir, &redis.url(), id);
    let events = dir.join("events.jsonl");
    Node {
        server: TestServer::start(config).await,
        events,
    }
}

impl Node {
    /// `GET /v1/cluster` (admin).
    async fn cluster(&self) -> Value {
        let (status, body) = self.server.http_get("/v1/cluster").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }

    /// Waits (bounded) until `GET /v1/cluster` satisfies `wanted`; returns that answer.
    async fn wait_cluster(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = self.cluster().await;
            if wanted(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "waited {WAIT:?} for {what}; last: {answer}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The node ids `GET /v1/cluster` lists, with their `self` flags.
    async fn listed(&self) -> Vec<(String, bool)> {
        ids(&self.cluster().await)
    }

    /// The complete lines of the event log.
    fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|line| serde_json::from_str(line).expect("event JSON"))
            .collect()
    }

    /// Waits (bounded) until the log holds `count` events of type `kind`; returns them.
    async fn wait_events(&self, kind: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let found: Vec<Value> = self.events().into_iter().filter(|e| e["type"] == kind).collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "waited {WAIT:?} for {count} {kind} event(s); the log holds {:?}",
                self.events()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `penguin_cluster_up` in `/metrics`, if the series exists.
    async fn gauge(&self) -> Option<f64> {
        let (status, text) = self.server.http_get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        metric_sample(&text, "penguin_cluster_up")
    }

    /// Sends one message over SMTP; returns the final reply's code.
    async fn send(&self, n: usize) -> u16 {
        let mut client = self.server.connect().await;
        client.ehlo().await;
        let content = simple_message("a@relay.example", "r@x.example", &format!("m{n}"));
        client
            .send_message("a@relay.example", &["r@x.example"], &content)
            .await
            .code
    }
}

/// `(id, self)` of every listed node.
fn ids(answer: &Value) -> Vec<(String, bool)> {
    answer["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| (n["id"].as_str().expect("id").to_string(), n["self"] == true))
        .collect()
}

/// Both nodes listed, `me` flagged as self and first.
fn both_with_self(answer: &Value, me: &str, other: &str) -> bool {
    ids(answer) == [(me.to_string(), true), (other.to_string(), false)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_see_each_other_and_survive_a_redis_outage() {
    let mut redis = TestRedis::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = start_node(dir_a.path(), &redis, "node-a").await;
    let b = start_node(dir_b.path(), &redis, "node-b").await;
    both_listed(&a, &b, &redis).await;

    // A message queued on node-a shows in the queue size node-b reads.
    assert_eq!(a.send(0).await, 250);
    b.wait_cluster("node-a's queue size 1", |v| v["nodes"][1]["queue_size"] == 1)
        .await;

    outage(&a, &b, &mut redis).await;

    // The CLI shows the same view.
    let api = format!("http://{}", a.server.api);
    let table = cli(&["cluster", "status", "--api", &api]).await;
    assert!(
        table.starts_with(&format!("node node-a, redis {} up\n", redis.url())),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("* node-a ")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("  node-b ")), "{table}");
    let json: Value =
        serde_json::from_str(&cli(&["cluster", "status", "--api", &api, "--json"]).await).expect("JSON");
    assert_eq!(json["node"], "node-a", "{json}");

    // A node that stops removes its record: the other lists itself alone at once.
    b.server.stop().await.expect("node-b stops");
    a.wait_cluster("node-a alone", |v| ids(v) == [("node-a".to_string(), true)])
        .await;
    a.server.stop().await.expect("node-a stops");
}

/// Both nodes heartbeat into Redis and each lists both, itself first and flagged; the gauges are 1;
/// node-a's record is in Redis with its TTL.
async fn both_listed(a: &Node, b: &Node, redis: &TestRedis) {
    let seen_by_a = a
        .wait_cluster("node-a listing both", |v| both_with_self(v, "node-a", "node-b"))
        .await;
    b.wait_cluster("node-b listing both", |v| both_with_self(v, "node-b", "node-a"))
        .await;
    assert_eq!(seen_by_a["node"], "node-a", "{seen_by_a}");
    assert_eq!(seen_by_a["redis"]["url"], redis.url(), "{seen_by_a}");
    assert_eq!(seen_by_a["redis"]["up"], true, "{seen_by_a}");
    let other = &seen_by_a["nodes"][1];
    assert_eq!(other["version"], env!("CARGO_PKG_VERSION"), "{other}");
    assert_eq!(other["queue_size"], 0, "{other}");
    assert!(
        other["last_heartbeat"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{other}"
    );
    assert_eq!(a.gauge().await, Some(1.0));
    assert_eq!(b.gauge().await, Some(1.0));
    // The record in Redis: JSON with the queue size, expiring after node_timeout.
    let record: Value =
        serde_json::from_str(&redis.get("penguin:node:node-a").await.expect("record")).expect("JSON");
    assert_eq!(record["id"], "node-a", "{record}");
    let ttl: u64 = redis
        .command(&["PTTL", "penguin:node:node-a"])
        .await
        .parse()
        .expect("ttl");
    assert!(ttl > 0 && ttl <= 30_000, "{ttl}");
}

/// Redis dies: each node reports it once, the gauge drops, SMTP goes on; Redis returns (empty): both
/// recover without help and list each other again.
async fn outage(a: &Node, b: &Node, redis: &mut TestRedis) {
    redis.stop().await;
    for node in [a, b] {
        let degraded = node.wait_events("cluster_degraded", 1).await;
        assert!(
            degraded[0]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("redis: ")),
            "{degraded:?}"
        );
        assert_eq!(node.gauge().await, Some(0.0));
        let answer = node.cluster().await;
        assert_eq!(answer["redis"]["up"], false, "{answer}");
    }
    assert_eq!(a.send(1).await, 250);
    assert_eq!(b.send(2).await, 250);
    // The others stay counted (last known) while Redis is away: node_timeout has not passed.
    assert_eq!(
        a.listed().await,
        [("node-a".into(), true), ("node-b".into(), false)]
    );

    redis.restart().await;
    for node in [a, b] {
        node.wait_events("cluster_recovered", 1).await;
    }
    a.wait_cluster("node-a listing both again", |v| {
        both_with_self(v, "node-a", "node-b")
    })
    .await;
    b.wait_cluster("node-b listing both again", |v| {
        both_with_self(v, "node-b", "node-a")
    })
    .await;
    for node in [a, b] {
        assert_eq!(node.gauge().await, Some(1.0));
        let degraded = node.wait_events("cluster_degraded", 1).await;
        assert_eq!(degraded.len(), 1, "one event per outage");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_counts_as_down_after_the_timeout() {
    let redis = TestRedis::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let a = start_node(dir.path(), &redis, "node-a").await;
    a.wait_cluster("up", |v| v["redis"]["up"] == true).await;

    // SIGSTOP: connections are still accepted, commands are never answered.
    redis.freeze();
    let degraded = a.wait_events("cluster_degraded", 1).await;
    let reason = degraded[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("within 300ms"), "{reason}");
    assert_eq!(a.send(0).await, 250, "acceptance does not wait on Redis");
    redis.thaw();
    a.wait_events("cluster_recovered", 1).await;
    assert_eq!(a.gauge().await, Some(1.0));
    a.server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cluster_section_there_is_no_cluster() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start(test_config(dir.path())).await;
    let (status, body) = server.http_get("/v1/cluster").await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        answer,
        serde_json::json!({"node": null, "redis": null, "nodes": []})
    );
    let (_, metrics) = server.http_get("/metrics").await;
    assert!(!metrics.contains("penguin_cluster_up"), "{metrics}");
    let api = format!("http://{}", server.api);
    let text = cli(&["cluster", "status", "--api", &api]).await;
    assert_eq!(text, "no [cluster] configured: this node runs on its own\n");
    server.stop().await.expect("stops");
}

/// Runs the CLI with the test admin token; it must succeed. Returns stdout.
async fn cli(args: &[&str]) -> String {
    let token = [("PENGUIN_API_TOKEN", penguin_tests::TEST_ADMIN_TOKEN)];
    let output = penguin_tests::binary::run_cli_env(EXE, Path::new("."), args, None, &token).await;
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}
