//! Usage counters summed over the nodes: two in-process nodes on one real `redis-server` each accept
//! mail for tenant `default`; `GET /v1/tenants/default/usage` on either answers the sum. With Redis
//! away a node answers its own counts plus the other's last known (`fleet.complete` false); when Redis
//! comes back empty, both push everything again and the sum returns. A tenant's `daily_quota` counts
//! the recipients every node accepted: once B has seen A's count, B refuses what would pass the quota,
//! over SMTP and HTTP injection alike.

use std::net::SocketAddr;
use std::path::Path;

use penguin_config::Config;
use penguin_mta::smtp::reply::replies;
use penguin_tests::cluster::{admin, wait_redis, wait_until};
use penguin_tests::redis::TestRedis;
use penguin_tests::{
    ACME, SmtpClient, TEST_ADMIN_TOKEN, TestServer, allow_loopback_relay, http_exchange, simple_message,
    test_config,
};
use serde_json::{Value, json};

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

/// A node of [`node_config`] with the tenant acme and its `daily_quota`.
fn quota_config(dir: &Path, redis: &str, id: &str, quota: u64) -> Config {
    let mut config = node_config(dir, redis, id);
    let mut acme = ACME.config();
    acme.daily_quota = Some(quota);
    config.tenant.push(acme);
    config
}

/// An SMTP session on `node` logged in as acme.
async fn acme_session(node: &TestServer) -> SmtpClient {
    let mut client = node.connect().await;
    client.ehlo().await;
    let auth = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_eq!(auth.code, 235, "{auth}");
    client
}

/// Sends one message as acme to `to` on an open session, and checks it is accepted.
async fn send_as_acme(client: &mut SmtpClient, to: &[&str]) {
    let content = simple_message("news@acme.example", to[0], "quota");
    let reply = client.send_message("news@acme.example", to, &content).await;
    assert_eq!(reply.code, 250, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_quota_counts_what_every_node_accepted() {
    let redis = TestRedis::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = TestServer::start(quota_config(dir_a.path(), &redis.url(), "node-a", 5)).await;
    let b = TestServer::start(quota_config(dir_b.path(), &redis.url(), "node-b", 5)).await;
    wait_redis(a.api, true, 2).await;
    wait_redis(b.api, true, 2).await;

    // 3 of the 5 recipients on A.
    let mut on_a = acme_session(&a).await;
    send_as_acme(&mut on_a, &["r1@x.example", "r2@x.example", "r3@x.example"]).await;
    // B has seen A's count (a read of the others' usage gives the quota its figure too).
    wait_until(b.api, "/v1/tenants/acme/usage", "A's count on B", |body| {
        body["total"]["accepted"] == 3 && body["fleet"]["complete"] == true
    })
    .await;

    // B accepts the 2 left, then refuses as a node alone refuses at its quota.
    let mut on_b = acme_session(&b).await;
    send_as_acme(&mut on_b, &["r4@x.example"]).await;
    send_as_acme(&mut on_b, &["r5@x.example"]).await;
    let refused = on_b.expect("MAIL FROM:<news@acme.example>", 452, "4.7.1").await;
    assert_eq!(
        refused.to_string(),
        replies::daily_quota_reached("acme", 5).to_string()
    );
    on_b.cmd("QUIT").await;

    // HTTP injection on B is refused likewise.
    let request = json!({
        "tenant": "acme",
        "from": "news@acme.example",
        "subject": "quota",
        "text": "Hi.",
        "recipients": [{"address": "r6@x.example"}],
    });
    let (status, answer) = admin(b.api, "POST", "/v1/messages", Some(request)).await;
    assert_eq!(status, 429, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("daily quota of 5 recipients reached for tenant acme"),
        "{answer}"
    );

    // A, which accepted only 3 itself, refuses too once it has seen B's 2.
    wait_until(a.api, "/v1/tenants/acme/usage", "B's count on A", |body| {
        body["total"]["accepted"] == 5
    })
    .await;
    on_a.expect("MAIL FROM:<news@acme.example>", 452, "4.7.1").await;

    // Redis away: the last known counts still hold the quota.
    let mut redis = redis;
    redis.stop().await;
    wait_redis(b.api, false, 2).await;
    let mut on_b = acme_session(&b).await;
    on_b.expect("MAIL FROM:<news@acme.example>", 452, "4.7.1").await;
}
