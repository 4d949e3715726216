//! Helpers of the tests with several nodes on one Redis: JSON calls of a node's API and bounded
//! waits for what a node's API shows.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use penguin_config::Config;
use serde_json::Value;

use crate::sink::TestSink;
use crate::{
    SmtpClient, TEST_ADMIN_TOKEN, WAIT, allow_loopback_relay, http_exchange, simple_message, test_config,
};

/// Node `id`'s config: relaying everything to `sink`, the shaping snippet `shaping` (sources, pools,
/// `[shaping]`, `[[warmup.plan]]`; empty for none), `[cluster]` on `redis`.
pub fn relay_node(dir: &Path, redis: &str, id: &str, sink: &TestSink, shaping: &str) -> Config {
    let mut config = test_config(dir);
    allow_loopback_relay(&mut config);
    config.delivery.paused = false;
    config.delivery.relay_host = Some(sink.address.to_string().parse().expect("relay host"));
    if !shaping.is_empty() {
        crate::delivery::apply_shaping(&mut config, shaping);
    }
    config.cluster = Some(crate::redis::test_cluster(redis, id));
    config
}

/// Sends `count` one-recipient messages (relayed, tenant `default`) through the SMTP listener at
/// `smtp`, with the subjects `{tag}-0` … and every reply asserted 250.
pub async fn send_tagged(smtp: SocketAddr, tag: &str, count: usize) {
    let mut client = SmtpClient::connect(smtp).await;
    client.ehlo().await;
    for n in 0..count {
        let content = simple_message("a@relay.example", "r@x.example", &format!("{tag}-{n}"));
        let reply = client
            .send_message("a@relay.example", &["r@x.example"], &content)
            .await;
        assert_eq!(reply.code, 250, "{reply}");
    }
}

/// An API call with `token`: (status, the JSON body or null).
pub async fn call(
    address: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let content_type = (!bytes.is_empty()).then_some("application/json");
    let answer = http_exchange(address, Some(token), method, path, content_type, &bytes).await;
    (
        answer.status,
        serde_json::from_str(&answer.body).unwrap_or(Value::Null),
    )
}

/// An admin API call: (status, the JSON body or null).
pub async fn admin(address: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(address, TEST_ADMIN_TOKEN, method, path, body).await
}

/// Waits (bounded by [`WAIT`]) until the admin `GET path` on `address` satisfies `wanted`; returns
/// that body and how long it took.
pub async fn wait_until(
    address: SocketAddr,
    path: &str,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let (_, body) = admin(address, "GET", path, None).await;
        if wanted(&body) {
            return (body, start.elapsed());
        }
        assert!(start.elapsed() < WAIT, "waited {WAIT:?} for {what}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the node at `address` sees Redis `up` (or down) and `nodes` nodes.
pub async fn wait_redis(address: SocketAddr, up: bool, nodes: usize) {
    wait_until(address, "/v1/cluster", "the Redis state", |body| {
        body["redis"]["up"] == up && body["nodes"].as_array().map_or(0, Vec::len) == nodes
    })
    .await;
}
