//! Shared rate limits end to end: two in-process nodes on one real `redis-server` deliver through the
//! same relay (one site) with `max_message_rate = "20/s"`. Together they send 20 messages a second,
//! not 20 each (the fleet's GCRA in Redis hands out the slots); with Redis stopped each falls back to
//! its share, 10 a second, and nothing stops being accepted.

use std::path::Path;
use std::time::SystemTime;

use penguin_config::Config;
use penguin_tests::cluster::wait_redis;
use penguin_tests::delivery::apply_shaping;
use penguin_tests::redis::TestRedis;
use penguin_tests::sink::{Received, SinkBehaviour, TestSink};
use penguin_tests::{TestServer, allow_loopback_relay, simple_message, test_config};

/// The shared limit.
const RATE: f64 = 20.0;

fn node_config(dir: &Path, redis: &str, id: &str, sink: &TestSink) -> Config {
    let mut config = test_config(dir);
    allow_loopback_relay(&mut config);
    config.delivery.paused = false;
    config.delivery.relay_host = Some(sink.address.to_string().parse().expect("relay host"));
    apply_shaping(&mut config, "[shaping]\nmax_message_rate = \"20/s\"\n");
    let cluster = penguin_tests::redis::test_cluster(redis, id);
    config.cluster = Some(cluster);
    config
}

/// Sends `count` messages tagged `tag` through `server`.
async fn send(server: &TestServer, tag: &str, count: usize) {
    let mut client = server.connect().await;
    client.ehlo().await;
    for n in 0..count {
        let content = simple_message("a@relay.example", "r@x.example", &format!("{tag}-{n}"));
        let reply = client
            .send_message("a@relay.example", &["r@x.example"], &content)
            .await;
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
    let a = TestServer::start(node_config(dir_a.path(), &redis.url(), "node-a", &sink)).await;
    let b = TestServer::start(node_config(dir_b.path(), &redis.url(), "node-b", &sink)).await;
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
