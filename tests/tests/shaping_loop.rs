//! The closed loop and the reply rules end to end on a manual clock: a throttling storm halves a
//! ready queue's rate within a minute and recovery climbs back; Yahoo's TSS04 suspends the source for
//! the provider while the pool's other source takes the mail; configured rules bounce or reschedule.

use std::sync::Arc;
use std::time::Duration;

use penguin_mta::clock::ManualClock;
use penguin_tests::delivery::*;
use penguin_tests::sink::SinkBehaviour;

/// A world on a manual clock with this shaping snippet.
async fn world(toml: &str) -> (DeliveryWorld, Arc<ManualClock>) {
    let clock = ManualClock::starting_now();
    let shared: penguin_mta::clock::SharedClock = clock.clone();
    let world = DeliveryWorld::start_with_clock(1, shared, |config| apply_shaping(config, toml)).await;
    (world, clock)
}

/// The `shaping_adjusted` events so far, as (reason, rate_after).
fn adjustments(world: &DeliveryWorld) -> Vec<(String, f64)> {
    world
        .events()
        .into_iter()
        .filter(|e| e["type"] == "shaping_adjusted")
        .map(|e| {
            let reason = e["reason"].as_str().unwrap_or_default().to_string();
            (reason, e["rate_after"].as_f64().unwrap_or(f64::NAN))
        })
        .collect()
}

/// The effective rate of the queue of `site` in `GET /v1/shaping`.
async fn effective_rate(world: &DeliveryWorld, site: &str) -> Option<f64> {
    let (_, view) = world.api("GET", "/v1/shaping", None).await;
    view["queues"]
        .as_array()?
        .iter()
        .find(|q| q["site"] == site)
        .and_then(|q| q["effective_rate"].as_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_storm_halves_the_rate_within_a_minute_and_recovery_climbs_back() {
    let (world, clock) = world("[shaping]\nmax_message_rate = \"60/min\"\n").await;
    world.route_to_sink("storm.test", 0);
    world.sinks[0].set_behaviour(
        SinkBehaviour::default()
            .with_data_reply(|_| (421, "4.7.28 Rate limited: too many messages from your IP".into())),
    );
    for n in 0..3 {
        world.send(&[&format!("r{n}@storm.test")]).await;
    }
    let throttled = world
        .wait_events("the first throttled attempt", 1, |e| {
            e["type"] == "transient_failure"
        })
        .await;
    assert_eq!(throttled[0]["class"], "rate_limited", "{}", throttled[0]);
    let adjusted = world
        .wait_events("the rate halved", 1, |e| e["type"] == "shaping_adjusted")
        .await;
    // The clock has not moved: the rate was halved at the first throttling reply.
    let halved = &adjusted[0];
    assert_eq!(
        (halved["rate_before"].as_f64(), halved["rate_after"].as_f64()),
        (Some(1.0), Some(0.5))
    );
    assert_eq!(halved["site"], "mx.storm.test");
    assert_eq!(effective_rate(&world, "mx.storm.test").await, Some(0.5));

    // The storm goes on for a minute: every attempt is throttled; at most one more halving per
    // cooldown (1 min). Each step lets the engine make its next attempt before the clock moves on.
    let mut attempts = 1;
    while attempts < 20 {
        clock.advance(Duration::from_secs(3));
        attempts += 1;
        world
            .wait_events("a throttled attempt", attempts, |e| {
                e["type"] == "transient_failure"
            })
            .await;
    }
    let storm: Vec<(String, f64)> = adjustments(&world);
    assert!(
        (1..=2).contains(&storm.len()),
        "one halving per minute of storm at most: {storm:?}"
    );
    let low = storm.last().map_or(f64::NAN, |(_, rate)| *rate);
    world.sinks[0].set_behaviour(SinkBehaviour::default());
    // Then recovery periods (5 min each) without a throttling reply: +0.1/s each, up to 1/s.
    let steps = ((1.0 - low) / 0.1).round() as usize;
    for step in 1..=steps {
        clock.advance(Duration::from_secs(300));
        world
            .wait_events("a recovery step", step, |e| e["reason"] == "recovery")
            .await;
    }
    let recovery: Vec<f64> = adjustments(&world)
        .into_iter()
        .filter(|(reason, _)| reason == "recovery")
        .map(|(_, rate)| rate)
        .collect();
    assert_eq!(recovery.len(), steps, "{recovery:?}");
    for (step, rate) in recovery.iter().enumerate() {
        let expected = low + 0.1 * (step + 1) as f64;
        assert!((rate - expected).abs() < 1e-6, "step {step}: {recovery:?}");
    }
    assert_eq!(
        effective_rate(&world, "mx.storm.test")
            .await
            .map(|r| (r * 1e6).round()),
        Some(1e6)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yahoo_tss04_suspends_the_source_for_yahoo_and_the_pool_sends_from_the_other() {
    let sources =
        "[[source]]\nname = \"ip2\"\nip = \"127.0.0.2\"\n[[source]]\nname = \"ip3\"\nip = \"127.0.0.3\"\n";
    let (world, clock) = world(sources).await;
    world.add_mx("yahoo.test", 10, "mta5.am0.yahoodns.net", sink_ip(0));
    world.sinks[0].set_behaviour(SinkBehaviour::default().with_data_reply(|transaction| {
        if transaction == 0 {
            (
                421,
                "4.7.0 [TSS04] Messages from 127.0.0.2 temporarily deferred due to unexpected volume or \
                 user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
                    .into(),
            )
        } else {
            (250, "2.0.0 ok".into())
        }
    }));
    world.send(&["first@yahoo.test"]).await;
    let suspended = world
        .wait_events("the suspension", 1, |e| e["type"] == "suspended")
        .await;
    let event = &suspended[0];
    let held = event["source"].as_str().expect("source").to_string();
    assert_eq!(event["provider"], "yahoo", "{event}");
    assert_eq!(event["scope"]["provider"], "yahoo", "{event}");
    assert!(
        event["reason"]
            .as_str()
            .is_some_and(|r| r.contains("yahoo-tss04")),
        "{event}"
    );
    let other_ip = if held == "ip2" { "127.0.0.3" } else { "127.0.0.2" };

    for n in 0..4 {
        world.send(&[&format!("r{n}@yahoo.test")]).await;
    }
    let received = world.sinks[0].wait_for(4).await;
    assert!(
        received.iter().all(|m| m.peer.ip().to_string() == other_ip),
        "every message went out from the source that was not suspended"
    );
    // Two hours later the suspension ends by itself.
    for _ in 0..12 {
        clock.advance(Duration::from_secs(600));
    }
    let resumed = world
        .wait_events("the end of the suspension", 1, |e| e["type"] == "resumed")
        .await;
    assert_eq!(resumed[0]["source"], held.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_rules_bounce_or_reschedule_the_recipient() {
    let toml = "[[shaping.rule]]\nname = \"gone\"\nmatch = \"account-gone\"\naction = \"bounce\"\n\
                [[shaping.rule]]\nname = \"later\"\nmatch = \"come-back-later\"\naction = \"retry\"\nduration = \"10m\"\n";
    let (world, clock) = world(toml).await;
    world.route_to_sink("rules.test", 0);
    world.sinks[0].set_behaviour(SinkBehaviour::default().with_rcpt(|address| {
        if address.starts_with("gone") {
            (450, "4.2.1 account-gone".into())
        } else if address.starts_with("later") {
            (451, "4.3.0 come-back-later".into())
        } else {
            (250, "2.1.5 ok".into())
        }
    }));
    world.send(&["gone@rules.test"]).await;
    let id = world.send(&["later@rules.test"]).await;
    let bounce = world.wait_event("bounce", "gone@rules.test").await;
    assert_eq!(
        bounce["response"]["code"], 450,
        "a 4xx made permanent by the rule: {bounce}"
    );
    world.wait_event("transient_failure", "later@rules.test").await;
    let queued: Vec<(String, penguin_queue::Envelope)> = world.queued();
    let (_, envelope) = queued
        .iter()
        .find(|(queued, _)| *queued == id)
        .expect("still queued");
    let start = penguin_mta::clock::Clock::now_ms(&*clock);
    assert_eq!(
        envelope.next_attempt_at_ms,
        start + 600_000,
        "the rule's 10 minutes, not the schedule's 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_refused_with_a_throttling_reply_slows_the_queue_too() {
    let (world, _clock) = world("[shaping]\nmax_message_rate = \"60/min\"\n").await;
    world.route_to_sink("busy.test", 0);
    world.sinks[0].set_behaviour(SinkBehaviour {
        greeting: Some((
            421,
            "4.7.0 Too many connections, rate limited, try again later".into(),
        )),
        ..SinkBehaviour::default()
    });
    world.send(&["r@busy.test"]).await;
    let deferred = world.wait_event("transient_failure", "r@busy.test").await;
    assert_eq!(deferred["class"], "rate_limited", "{deferred}");
    assert_eq!(deferred["response"]["code"], 421, "{deferred}");
    let adjusted = world
        .wait_events("the rate halved", 1, |e| e["type"] == "shaping_adjusted")
        .await;
    assert_eq!(adjusted[0]["rate_after"].as_f64(), Some(0.5), "{}", adjusted[0]);
    assert_eq!(effective_rate(&world, "mx.busy.test").await, Some(0.5));
}
