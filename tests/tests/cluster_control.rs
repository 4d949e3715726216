//! Suspensions and campaign states shared by the nodes: two in-process nodes on one real
//! `redis-server`. A suspension made on node A holds node B's mail within a second and a delete on B
//! lifts it on A; a campaign paused on A is paused on B; a suspension made on A while Redis is away is
//! replayed when Redis returns and reaches B without operator action.

use std::time::Duration;

use penguin_tests::cluster::{admin as api, relay_node, wait_redis, wait_until};
use penguin_tests::redis::TestRedis;
use penguin_tests::sink::{SinkBehaviour, TestSink};
use penguin_tests::{TestServer, simple_message};
use serde_json::{Value, json};

/// Whether `GET /v1/suspensions` lists `id`.
fn lists(body: &Value, id: &str) -> bool {
    body["suspensions"]
        .as_array()
        .is_some_and(|list| list.iter().any(|s| s["id"] == id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspensions_and_pauses_made_on_one_node_hold_the_others_and_survive_an_outage() {
    let mut redis = TestRedis::start().await;
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = TestServer::start(relay_node(dir_a.path(), &redis.url(), "node-a", &sink, "")).await;
    let b = TestServer::start(relay_node(dir_b.path(), &redis.url(), "node-b", &sink, "")).await;
    wait_redis(a.api, true, 2).await;
    wait_redis(b.api, true, 2).await;

    // A suspends x.example; B holds its mail to it within a second.
    let (status, made) = api(
        a.api,
        "POST",
        "/v1/suspensions",
        Some(json!({"domain": "x.example", "duration": "1h", "reason": "made on A"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().expect("id").to_owned();
    let (_, took) = wait_until(b.api, "/v1/suspensions", "the suspension on B", |body| {
        lists(body, &id)
    })
    .await;
    assert!(took < Duration::from_secs(2), "in force on B after {took:?}");
    let mut client = b.connect().await;
    client.ehlo().await;
    let content = simple_message("s@relay.example", "r@x.example", "held");
    assert_eq!(
        client
            .send_message("s@relay.example", &["r@x.example"], &content)
            .await
            .code,
        250
    );
    wait_until(b.api, "/v1/shaping", "the message held on B", |body| {
        body["queues"]
            .as_array()
            .is_some_and(|q| q.iter().any(|q| q["queued"] == 1))
    })
    .await;
    assert!(
        sink.received().is_empty(),
        "B sent nothing to the suspended domain"
    );

    // B deletes it; A lifts it too, and B's message goes out.
    assert_eq!(
        api(b.api, "DELETE", &format!("/v1/suspensions/{id}"), None)
            .await
            .0,
        204
    );
    wait_until(a.api, "/v1/suspensions", "the deletion on A", |body| {
        !lists(body, &id)
    })
    .await;
    sink.wait_for(1).await;

    // A pauses a campaign; B shows it paused.
    let path = "/v1/tenants/default/campaigns/spring";
    assert_eq!(api(a.api, "POST", &format!("{path}/pause"), None).await.0, 200);
    wait_until(b.api, path, "the pause on B", |body| body["state"] == "paused").await;

    // Redis away: a suspension made on A is in force on A only; Redis back: it reaches B.
    redis.stop().await;
    wait_redis(a.api, false, 2).await;
    let (status, made) = api(
        a.api,
        "POST",
        "/v1/suspensions",
        Some(json!({"provider": "google", "duration": "1h"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let offline = made["id"].as_str().expect("id").to_owned();
    redis.restart().await;
    wait_until(b.api, "/v1/suspensions", "the replayed suspension on B", |body| {
        lists(body, &offline)
    })
    .await;
}
