//! Adaptive rate reductions shared by the nodes: two in-process nodes on one real `redis-server`
//! deliver through the same relay (one lane) with `max_message_rate = "10/s"`. Node A gets a throttling
//! reply (`421 4.7.28`) and halves the lane; node B's `GET /v1/shaping` shows the halved rate within a
//! second, and B's own sending keeps to it.

use std::time::{Duration, SystemTime};

use penguin_tests::TestServer;
use penguin_tests::cluster::{relay_node, send_tagged, wait_redis, wait_until};
use penguin_tests::redis::TestRedis;
use penguin_tests::sink::{Received, SinkBehaviour, TestSink};
use serde_json::Value;

/// The configured lane rate.
const RATE: f64 = 10.0;

/// That rate, configured.
const RATE_10: &str = "[shaping]\nmax_message_rate = \"10/s\"\n";

/// The effective rate of the relay's lane in a `/v1/shaping` answer.
fn effective_rate(body: &Value, site: &str) -> Option<f64> {
    body["queues"]
        .as_array()?
        .iter()
        .find(|queue| queue["site"] == site)
        .and_then(|queue| queue["effective_rate"].as_f64())
}

/// Messages per second of `received` from the first arrival to the last.
fn rate_of(received: &[Received]) -> f64 {
    let times: Vec<SystemTime> = received.iter().map(|r| r.at).collect();
    let first = times.iter().min().expect("arrivals");
    let last = times.iter().max().expect("arrivals");
    let span = last.duration_since(*first).expect("ordered").as_secs_f64();
    (received.len() - 1) as f64 / span
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reduction_on_one_node_slows_the_other_within_a_second() {
    let redis = TestRedis::start().await;
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let site = sink.address.to_string();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = TestServer::start(relay_node(dir_a.path(), &redis.url(), "node-a", &sink, RATE_10)).await;
    let b = TestServer::start(relay_node(dir_b.path(), &redis.url(), "node-b", &sink, RATE_10)).await;
    wait_redis(a.api, true, 2).await;
    wait_redis(b.api, true, 2).await;

    // B has sent to the relay once: it has the lane (a lane it has never seen takes the change when
    // it is made; see the scheduler's tests).
    send_tagged(b.smtp, "first", 1).await;
    sink.wait_for(1).await;

    // The relay throttles A: A halves the lane.
    sink.set_behaviour(
        SinkBehaviour::default()
            .with_data_reply(|_| (421, "4.7.28 Rate limited: too many messages from your IP".into())),
    );
    send_tagged(a.smtp, "throttled", 1).await;
    wait_until(a.api, "/v1/shaping", "the lane halved on A", |body| {
        effective_rate(body, &site) == Some(RATE / 2.0)
    })
    .await;

    // B never got a throttling reply, and takes A's rate within a second.
    let (on_b, took) = wait_until(b.api, "/v1/shaping", "A's rate on B", |body| {
        effective_rate(body, &site) == Some(RATE / 2.0)
    })
    .await;
    assert!(
        took < Duration::from_secs(1),
        "in force on B after {took:?}: {on_b}"
    );
    let queue = on_b["queues"]
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["site"] == site.as_str()))
        .expect("the lane on B");
    assert!(
        queue["last_throttle"].is_null(),
        "B itself was not throttled: {queue}"
    );

    // B's own mail goes out at the halved rate.
    sink.set_behaviour(SinkBehaviour::default());
    send_tagged(b.smtp, "slow", 11).await;
    let received = sink.wait_for(12).await;
    let rate = rate_of(&received[1..]);
    assert!(
        (RATE / 2.0 * 0.85..=RATE / 2.0 * 1.05).contains(&rate),
        "B sends at the fleet's halved rate: {rate:.2} msg/s"
    );
}
