//! Rate limits end to end on a manual clock: hours of limits pass in no time. Every message is
//! received at the clock's start, so a delivery event's `delay_ms` is the clock time it was sent at;
//! the limits must space them exactly, and waiting must count no attempt.

use std::sync::Arc;
use std::time::Duration;

use penguin_mta::clock::ManualClock;
use penguin_tests::delivery::*;
use penguin_tests::*;
use serde_json::Value;

/// One hour in milliseconds.
const HOUR_MS: u64 = 3_600_000;

/// A world on a manual clock with this shaping snippet and `configure` on top.
async fn world(
    toml: &str,
    configure: impl FnOnce(&mut penguin_config::Config),
) -> (DeliveryWorld, Arc<ManualClock>) {
    let clock = ManualClock::starting_now();
    let shared: penguin_mta::clock::SharedClock = clock.clone();
    let world = DeliveryWorld::start_with_clock(1, shared, |config| {
        apply_shaping(config, toml);
        configure(config);
    })
    .await;
    (world, clock)
}

/// Waits for the `n`-th delivery event (1-based) and returns all delivery events so far.
async fn deliveries(world: &DeliveryWorld, n: usize) -> Vec<Value> {
    world
        .wait_events(&format!("{n} deliveries"), n, |e| e["type"] == "delivery")
        .await
}

/// The clock times (ms after the start) of the deliveries, sorted.
fn sent_at(events: &[Value]) -> Vec<u64> {
    let mut times: Vec<u64> = events.iter().filter_map(|e| e["delay_ms"].as_u64()).collect();
    times.sort_unstable();
    times
}

/// Asserts that every delivery was the recipient's first attempt and nothing was deferred.
fn assert_no_attempt_was_spent_waiting(world: &DeliveryWorld, events: &[Value]) {
    assert!(events.iter().all(|e| e["attempt"] == 1), "{events:?}");
    let deferred: Vec<Value> = world
        .events()
        .into_iter()
        .filter(|e| e["type"] == "transient_failure")
        .collect();
    assert!(deferred.is_empty(), "waiting is not failing: {deferred:?}");
}

/// Advances the clock by `hours` in steps of 20 minutes (a step never skips a send).
fn advance_hours(clock: &ManualClock, hours: u64) {
    for _ in 0..hours * 3 {
        clock.advance(Duration::from_secs(1200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_rate_spaces_deliveries_evenly() {
    let (world, clock) = world("[shaping]\nmax_message_rate = \"1/h\"\n", |_| {}).await;
    world.route_to_sink("hourly.test", 0);
    for n in 0..3 {
        world.send(&[&format!("r{n}@hourly.test")]).await;
    }
    deliveries(&world, 1).await;
    world.wait_queued("mx.hourly.test", 2).await;
    clock.advance(Duration::from_secs(3599));
    clock.advance(Duration::from_secs(1));
    deliveries(&world, 2).await;
    advance_hours(&clock, 1);
    let events = deliveries(&world, 3).await;
    assert_eq!(sent_at(&events), [0, HOUR_MS, 2 * HOUR_MS]);
    assert_no_attempt_was_spent_waiting(&world, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_rate_holds_only_that_domain_in_a_shared_queue() {
    let toml = "[[shaping.domain]]\ndomain = \"small.test\"\nmax_message_rate = \"1/h\"\n";
    let (world, clock) = world(toml, |_| {}).await;
    // Both domains on one MX host: one site, one ready queue.
    world.add_mx("small.test", 10, "mx.shared.test", sink_ip(0));
    world.add_mx("big.test", 10, "mx.shared.test", sink_ip(0));
    for n in 0..2 {
        world.send(&[&format!("s{n}@small.test")]).await;
        world.send(&[&format!("b{n}@big.test")]).await;
    }
    let first = deliveries(&world, 3).await;
    let big: Vec<&Value> = first.iter().filter(|e| e["domain"] == "big.test").collect();
    assert_eq!(big.len(), 2, "big.test is not held back by small.test: {first:?}");
    world.wait_queued("mx.shared.test", 1).await;
    advance_hours(&clock, 1);
    let events = deliveries(&world, 4).await;
    let small: Vec<Value> = events
        .iter()
        .filter(|e| e["domain"] == "small.test")
        .cloned()
        .collect();
    assert_eq!(sent_at(&small), [0, HOUR_MS]);
    assert_no_attempt_was_spent_waiting(&world, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_rate_applies_to_that_tenant_only() {
    let (world, clock) = world("", |config| {
        let mut acme = ACME.config();
        acme.max_message_rate = Some("1/h".parse().expect("rate"));
        config.tenant.push(acme);
    })
    .await;
    world.route_to_sink("tenant.test", 0);
    let mut client = world.server.connect().await;
    client.ehlo().await;
    let auth = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_eq!(auth.code, 235, "{auth}");
    for n in 0..2 {
        let to = format!("a{n}@tenant.test");
        let reply = client
            .send_message(
                "news@acme.example",
                &[&to],
                &simple_message("news@acme.example", &to, "t"),
            )
            .await;
        assert_eq!(reply.code, 250, "{reply}");
    }
    for n in 0..2 {
        world.send(&[&format!("d{n}@tenant.test")]).await;
    }
    let first = deliveries(&world, 3).await;
    assert_eq!(
        first.iter().filter(|e| e["tenant"] == "default").count(),
        2,
        "{first:?}"
    );
    world.wait_queued("mx.tenant.test", 1).await;
    advance_hours(&clock, 1);
    let events = deliveries(&world, 4).await;
    let acme: Vec<Value> = events.iter().filter(|e| e["tenant"] == "acme").cloned().collect();
    assert_eq!(sent_at(&acme), [0, HOUR_MS]);
    assert_no_attempt_was_spent_waiting(&world, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_tenants_rate_spaces_its_mail_and_a_patch_changes_it_at_once() {
    let (world, _clock) = world("", |_| {}).await;
    world.route_to_sink("tenant.test", 0);
    let body = serde_json::json!({"name": "hooli", "sender_domains": ["hooli.example"],
        "max_message_rate": "1/h"});
    let (status, made) = world.api("POST", "/v1/tenants", Some(body)).await;
    assert_eq!(
        (status, made["max_message_rate"].clone()),
        (201, "1/h".into()),
        "{made}"
    );
    let (status, login) = world
        .api("POST", "/v1/tenants/hooli/smtp-credentials", None)
        .await;
    assert_eq!(status, 201, "{login}");
    let plain = plain_response(
        login["username"].as_str().expect("username"),
        login["password"].as_str().expect("password"),
    );
    let mut client = world.server.connect().await;
    client.ehlo().await;
    assert_eq!(client.cmd(&format!("AUTH PLAIN {plain}")).await.code, 235);
    for n in 0..2 {
        let to = format!("h{n}@tenant.test");
        let content = simple_message("news@hooli.example", &to, "t");
        let reply = client.send_message("news@hooli.example", &[&to], &content).await;
        assert_eq!(reply.code, 250, "{reply}");
    }
    deliveries(&world, 1).await;
    world.wait_queued("mx.tenant.test", 1).await;
    // No rate any more: the second goes without the clock moving.
    let patch = serde_json::json!({"max_message_rate": null});
    let (status, patched) = world.api("PATCH", "/v1/tenants/hooli", Some(patch)).await;
    assert_eq!(status, 200, "{patched}");
    let events = deliveries(&world, 2).await;
    assert_eq!(sent_at(&events), [0, 0]);
    assert_no_attempt_was_spent_waiting(&world, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_rate_is_shared_by_its_sites() {
    let toml = "[[provider]]\nname = \"bigmail\"\nmx_suffixes = [\".bigmail.test\"]\n\
                [[shaping.provider]]\nprovider = \"bigmail\"\nprovider_max_message_rate = \"1/h\"\n";
    let (world, clock) = world(toml, |_| {}).await;
    world.add_mx("one.test", 10, "mx1.bigmail.test", sink_ip(0));
    world.add_mx("two.test", 10, "mx2.bigmail.test", sink_ip(0));
    world.send(&["a@one.test"]).await;
    world.send(&["b@two.test"]).await;
    world.send(&["c@one.test"]).await;
    deliveries(&world, 1).await;
    advance_hours(&clock, 1);
    deliveries(&world, 2).await;
    advance_hours(&clock, 1);
    let events = deliveries(&world, 3).await;
    assert_eq!(
        sent_at(&events),
        [0, HOUR_MS, 2 * HOUR_MS],
        "one an hour over both sites"
    );
    assert_no_attempt_was_spent_waiting(&world, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_rate_covers_every_site() {
    let toml = "[[source]]\nname = \"ip2\"\nip = \"127.0.0.2\"\nmax_message_rate = \"1/h\"\n";
    let (world, clock) = world(toml, |_| {}).await;
    world.route_to_sink("first.test", 0);
    world.route_to_sink("second.test", 0);
    world.send(&["a@first.test"]).await;
    world.send(&["b@second.test"]).await;
    deliveries(&world, 1).await;
    advance_hours(&clock, 1);
    let events = deliveries(&world, 2).await;
    assert_eq!(sent_at(&events), [0, HOUR_MS]);
    assert!(
        events
            .iter()
            .all(|e| e["source"] == "ip2" && e["source_ip"] == "127.0.0.2"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_rate_spaces_new_connections() {
    let toml = "[shaping]\nmax_connection_rate = \"1/h\"\nmax_deliveries_per_connection = 1\n";
    let (world, clock) = world(toml, |_| {}).await;
    world.route_to_sink("conn.test", 0);
    world.send(&["a@conn.test"]).await;
    world.send(&["b@conn.test"]).await;
    deliveries(&world, 1).await;
    advance_hours(&clock, 1);
    let events = deliveries(&world, 2).await;
    assert_eq!(sent_at(&events), [0, HOUR_MS]);
    assert_eq!(world.sinks[0].connections(), 2, "one delivery per connection");
}
