//! Helpers of the tests with several nodes on one Redis: JSON calls of a node's API and bounded
//! waits for what a node's API shows.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{TEST_ADMIN_TOKEN, WAIT, http_exchange};

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
