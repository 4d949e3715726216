//! Operator suspensions over HTTP (`/v1/suspensions`): every scope holds its mail (queued, no
//! attempt) until it is lifted; a suspension ends by itself and survives a restart; bad requests
//! are refused naming the field.

use std::time::Duration;

use penguin_mta::clock::ManualClock;
use penguin_tests::delivery::*;
use serde_json::{Value, json};

/// One source (ip2) and a provider `bigmail` (MX hosts under `.bigmail.test`).
const SHAPING: &str = "[[source]]\nname = \"ip2\"\nip = \"127.0.0.2\"\n\
                       [[provider]]\nname = \"bigmail\"\nmx_suffixes = [\".bigmail.test\"]\n";

/// Creates a suspension; returns its id.
async fn suspend(world: &DeliveryWorld, scope: Value) -> String {
    let (status, created) = world.api("POST", "/v1/suspensions", Some(scope.clone())).await;
    assert_eq!(status, 201, "{scope} → {created}");
    created["id"].as_str().expect("id").to_string()
}

/// The queued message's recipient attempts in the spool.
fn attempts(world: &DeliveryWorld, id: &str) -> u32 {
    let queued = world.queued();
    let (_, envelope) = queued.iter().find(|(queued, _)| queued == id).expect("queued");
    envelope.recipients[0].attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scope_holds_its_mail_until_it_is_lifted() {
    let world = DeliveryWorld::start(1, |config| apply_shaping(config, SHAPING)).await;
    world.route_to_sink("t.test", 0);
    world.route_to_sink("c.test", 0);
    world.route_to_sink("held.test", 0);
    world.route_to_sink("s.test", 0);
    world.add_mx("p.test", 10, "mx.bigmail.test", sink_ip(0));
    let cases = [
        (
            json!({"tenant": "default", "duration": "1h"}),
            "r@t.test",
            "mx.t.test",
            None,
        ),
        (
            json!({"campaign": "spring", "duration": "1h"}),
            "r@c.test",
            "mx.c.test",
            Some("spring"),
        ),
        (
            json!({"domain": "held.test", "duration": "1h"}),
            "r@held.test",
            "mx.held.test",
            None,
        ),
        (
            json!({"provider": "bigmail", "duration": "1h"}),
            "r@p.test",
            "mx.bigmail.test",
            None,
        ),
        (
            json!({"source": "ip2", "duration": "1h"}),
            "r@s.test",
            "mx.s.test",
            None,
        ),
    ];
    for (scope, recipient, site, campaign) in cases {
        let suspension = suspend(&world, scope.clone()).await;
        let content = format!(
            "From: <{SENDER}>\r\nTo: <{recipient}>\r\nX-Campaign-ID: {}\r\nSubject: held\r\n\r\nhi\r\n",
            campaign.unwrap_or("autumn")
        );
        let id = world
            .send_with(&format!("MAIL FROM:<{SENDER}>"), &[recipient], &content)
            .await;
        world.wait_queued(site, 1).await;
        assert!(
            world.events_for(recipient).is_empty(),
            "{scope}: held, not attempted"
        );
        assert_eq!(attempts(&world, &id), 0, "{scope}: waiting counts no attempt");

        let (status, _) = world
            .api("DELETE", &format!("/v1/suspensions/{suspension}"), None)
            .await;
        assert_eq!(status, 204, "{scope}");
        let delivered = world.wait_event("delivery", recipient).await;
        assert_eq!(delivered["attempt"], 1, "{scope}: {delivered}");
    }
    let kinds: Vec<Value> = world
        .events()
        .into_iter()
        .filter(|e| e["type"] == "suspended" || e["type"] == "resumed")
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        kinds.len(),
        10,
        "a suspended and a resumed event per scope: {kinds:?}"
    );
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_survives_a_restart_and_ends_by_itself() {
    let clock = ManualClock::starting_now();
    let shared: penguin_mta::clock::SharedClock = clock.clone();
    let world = DeliveryWorld::start_with_clock(1, shared, |config| apply_shaping(config, SHAPING)).await;
    world.route_to_sink("later.test", 0);
    let scope = json!({"domain": "Later.Test", "duration": "1h", "reason": "warm-up"});
    let (status, created) = world.api("POST", "/v1/suspensions", Some(scope)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["scope"]["domain"], "later.test", "{created}");
    assert_eq!(created["reason"], "warm-up");
    assert!(
        created["until"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{created}"
    );
    world.send(&["r@later.test"]).await;
    world.wait_queued("mx.later.test", 1).await;

    let world = world.restart().await;
    let (_, listed) = world.api("GET", "/v1/suspensions", None).await;
    assert_eq!(listed["suspensions"][0]["id"], created["id"], "{listed}");
    world.wait_queued("mx.later.test", 1).await;
    assert!(world.events_for("r@later.test").is_empty());

    clock.advance(Duration::from_secs(3600));
    let delivered = world.wait_event("delivery", "r@later.test").await;
    assert_eq!(delivered["attempt"], 1);
    let resumed = world
        .wait_events("the end of the suspension", 1, |e| e["type"] == "resumed")
        .await;
    assert_eq!(resumed[0]["reason"], "expired");
    let (_, listed) = world.api("GET", "/v1/suspensions", None).await;
    assert_eq!(listed["suspensions"], json!([]), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_be_taken_are_refused_naming_the_field() {
    let world = DeliveryWorld::start(1, |config| apply_shaping(config, SHAPING)).await;
    let cases = [
        (json!({"duration": "1h"}), "scope"),
        (json!({"tenant": "acme"}), "duration"),
        (json!({"tenant": "acme", "duration": "forever"}), "duration"),
        (json!({"tenant": "acme", "duration": "0s"}), "duration"),
        (json!({"provider": "nomail", "duration": "1h"}), "provider"),
        (json!({"source": "ip9", "duration": "1h"}), "source"),
        (json!({"domain": "not a domain", "duration": "1h"}), "domain"),
        (
            json!({"tenant": "acme", "duration": "1h", "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = world.api("POST", "/v1/suspensions", Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {answer}");
        let error = &answer["error"];
        let named = error["field"].as_str().unwrap_or_default().contains(field)
            || error["message"].as_str().unwrap_or_default().contains(field);
        assert!(named, "{body}: {error} names {field}");
    }
    let (status, _) = world
        .api("DELETE", "/v1/suspensions/s0000000000000000", None)
        .await;
    assert_eq!(status, 404);
    let (_, listed) = world.api("GET", "/v1/suspensions", None).await;
    assert_eq!(listed["suspensions"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_mail_still_expires_at_its_maximum_age() {
    let clock = ManualClock::starting_now();
    let shared: penguin_mta::clock::SharedClock = clock.clone();
    let world = DeliveryWorld::start_with_clock(1, shared, |config| {
        apply_shaping(config, SHAPING);
        config.delivery.max_age = "1h".parse().expect("duration");
    })
    .await;
    world.route_to_sink("old.test", 0);
    suspend(&world, json!({"domain": "old.test", "duration": "2h"})).await;
    world.send(&["r@old.test"]).await;
    world.wait_queued("mx.old.test", 1).await;

    clock.advance(Duration::from_secs(3601));
    let expired = world.wait_event("expiration", "r@old.test").await;
    assert_eq!(expired["response"]["enhanced"], "4.4.7", "{expired}");
    let dsn = world.sender_sink.wait_for(1).await;
    assert!(dsn[0].text().contains("Status: 4.4.7"), "a DSN tells the sender");
    assert!(
        world
            .events_for("r@old.test")
            .iter()
            .all(|e| e["type"] != "transient_failure"),
        "never attempted while held"
    );
}
