//! Usage counters summed over the nodes: two in-process nodes on one real `redis-server` each accept
//! mail for tenant `default`; `GET /v1/tenants/default/usage` on either answers the sum. With Redis
//! away a node answers its own counts plus the other's last known (`fleet.complete` false); when Redis
//! comes back empty, both push everything again and the sum returns.

use std::net::SocketAddr;
use std::path::Path;

use penguin_config::Config;
use penguin_tests::cluster::{wait_redis, wait_until};
use penguin_tests::redis::TestRedis;
use penguin_tests::{
    TEST_ADMIN_TOKEN, TestServer, allow_loopback_relay, http_exchange, simple_message, test_config,
};
use serde_json::Value;

const USAGE: &str = "/v1/tenants/default/usage";

/// A node relaying for loopback (tenant `default`), delivery paused.
fn node_config(dir: &Path, redis: &str, id: &str) -> Config {
    let mut config = test_config(dir);
    allow_loopback_relay(&mut config);
    config.cluster = Some(penguin_tests::redis::test_cluster(redis, id));
    config
}

/// `GET path` as admin: the JSON body (null when it is not JSON).
async fn get(address: SocketAddr, path: &str) -> Value {
    let answer = http_exchange(address, Some(TEST_ADMIN_TOKEN), "GET", path, None, b"").await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap_or(Value::Null)
}

/// Sends `messages` one-recipient messages through `node`.
async fn accept(node: &TestServer, messages: usize) {
    let mut client = node.connect().await;
    client.ehlo().await;
    for n in 0..messages {
        let to = format!("r{n}@x.example");
        let content = simple_message("s@relay.example", &to, "usage");
        let reply = client.send_message("s@relay.example", &[&to], &content).await;
        assert_eq!(reply.code, 250, "{}", reply.text());
    }
}

/// Whether a usage answer counts `accepted` today (day and total) and its fleet part is as given.
fn counts(body: &Value, accepted: i64, complete: bool, nodes: &[&str]) -> bool {
    body["total"]["accepted"] == accepted
        && body["days"][0]["accepted"] == accepted
        && body["fleet"]["complete"] == complete
        && body["fleet"]["nodes"] == serde_json::json!(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_the_sum_over_the_nodes_and_survives_an_outage_of_redis() {
    let mut redis = TestRedis::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = TestServer::start(node_config(dir_a.path(), &redis.url(), "node-a")).await;
    let b = TestServer::start(node_config(dir_b.path(), &redis.url(), "node-b")).await;
    wait_redis(a.api, true, 2).await;
    wait_redis(b.api, true, 2).await;

    accept(&a, 3).await;
    accept(&b, 2).await;
    let (on_a, _) = wait_until(a.api, USAGE, "the sum on A", |body| {
        counts(body, 5, true, &["node-a", "node-b"])
    })
    .await;
    wait_until(b.api, USAGE, "the sum on B", |body| {
        counts(body, 5, true, &["node-b", "node-a"])
    })
    .await;
    // Each node's own absolute value, in the day's hash.
    let today = on_a["to"].as_str().expect("to");
    let key = format!("penguin:usage:default:{today}");
    assert_eq!(
        redis.query(&["HGET", &key, "node-a/accepted"]).await.as_deref(),
        Some("3")
    );
    assert_eq!(
        redis.query(&["HGET", &key, "node-b/accepted"]).await.as_deref(),
        Some("2")
    );

    // Redis away: A counts its own (fresh) and B's last known, and says so; acceptance goes on.
    redis.stop().await;
    wait_redis(a.api, false, 2).await;
    accept(&a, 1).await;
    let alone = get(a.api, USAGE).await;
    assert!(counts(&alone, 6, false, &["node-a", "node-b"]), "{alone}");

    // Redis back, empty: both push everything again and B sees A's new count.
    redis.restart().await;
    wait_until(b.api, USAGE, "the sum on B after the outage", |body| {
        counts(body, 6, true, &["node-b", "node-a"])
    })
    .await;
    assert_eq!(
        redis.query(&["HGET", &key, "node-a/accepted"]).await.as_deref(),
        Some("4")
    );

    // Without [cluster] the answer has no fleet part.
    let dir_c = tempfile::tempdir().expect("dir");
    let mut single = test_config(dir_c.path());
    allow_loopback_relay(&mut single);
    let c = TestServer::start(single).await;
    let body = get(c.api, USAGE).await;
    assert!(body.get("fleet").is_none(), "{body}");
    assert_eq!(body["total"]["accepted"], 0);
}
