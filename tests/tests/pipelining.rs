//! Transactions pipelined across messages on a reused connection (RFC 2920 lets message content
//! open a command group): with mail waiting for the connection, the next message's MAIL, RCPT and
//! DATA go out in the same write as the previous message's content and final dot. A refusal of the
//! first message leaves the second alone; a connection that breaks after the first gives the second
//! back to its queue, to go on another connection without an attempt counted.

use penguin_tests::delivery::*;
use penguin_tests::sink::Received;
use serde_json::json;

/// A world of one sink and at most one connection per site, so the connection finds a backlog.
async fn one_connection_world() -> DeliveryWorld {
    let world = DeliveryWorld::start(1, |config| {
        config.delivery.max_connections_per_host = 1;
    })
    .await;
    world.route_to_sink("backlog.test", 0);
    world
}

/// Queues one message for each of `r0@backlog.test` .. while the domain is suspended, then lifts
/// the suspension: the one connection starts with all of them waiting.
async fn queue_backlog(world: &DeliveryWorld, count: usize) {
    let scope = json!({"domain": "backlog.test", "duration": "1h"});
    let (status, created) = world.api("POST", "/v1/suspensions", Some(scope)).await;
    assert_eq!(status, 201, "{created}");
    for n in 0..count {
        world.send(&[&format!("r{n}@backlog.test")]).await;
    }
    world.wait_queued("mx.backlog.test", count as u64).await;
    let id = created["id"].as_str().expect("suspension id");
    let (status, _) = world.api("DELETE", &format!("/v1/suspensions/{id}"), None).await;
    assert_eq!(status, 204);
}

/// The sink's messages in the order their transactions started.
fn in_order(mut received: Vec<Received>) -> Vec<Received> {
    received.sort_by_key(|message| message.transaction);
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mail_waiting_the_next_message_rides_behind_the_final_dot() {
    let world = one_connection_world().await;
    queue_backlog(&world, 4).await;

    let received = in_order(world.sinks[0].wait_for(4).await);

    let recipients: Vec<&str> = received.iter().map(|m| m.rcpt_to[0].as_str()).collect();
    assert_eq!(
        recipients,
        [
            "r0@backlog.test",
            "r1@backlog.test",
            "r2@backlog.test",
            "r3@backlog.test"
        ]
    );
    let pipelined: Vec<bool> = received.iter().map(|m| m.pipelined).collect();
    assert_eq!(
        pipelined,
        [false, true, true, true],
        "the first has nothing before it"
    );
    assert!(received.iter().all(|m| m.connection == received[0].connection));
    assert_eq!(world.sinks[0].connections(), 1);
    for n in 0..4 {
        let delivery = world.wait_event("delivery", &format!("r{n}@backlog.test")).await;
        assert_eq!(delivery["attempt"], 1);
    }
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_does_not_disturb_the_one_pipelined_behind_it() {
    let world = one_connection_world().await;
    world.sinks[0].set_behaviour(penguin_tests::sink::SinkBehaviour::default().with_data_reply(
        |transaction| match transaction {
            1 => (554, "5.7.1 content refused".to_string()),
            _ => (250, "2.0.0 Ok: queued".to_string()),
        },
    ));
    queue_backlog(&world, 3).await;

    let bounce = world.wait_event("bounce", "r1@backlog.test").await;
    let received = in_order(world.sinks[0].wait_for(2).await);

    assert_eq!(bounce["response"]["code"], 554);
    let recipients: Vec<&str> = received.iter().map(|m| m.rcpt_to[0].as_str()).collect();
    assert_eq!(recipients, ["r0@backlog.test", "r2@backlog.test"]);
    assert!(received[1].pipelined, "r2 went behind the refused r1");
    assert_eq!(
        world.wait_event("delivery", "r2@backlog.test").await["attempt"],
        1
    );
    assert_eq!(world.sinks[0].connections(), 1);
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_after_the_dot_gives_the_message_behind_back() {
    let world = one_connection_world().await;
    world.sinks[0].set_behaviour(penguin_tests::sink::SinkBehaviour::default().with_data_reply(
        |transaction| match transaction {
            0 => (421, "4.3.2 service shutting down".to_string()),
            _ => (250, "2.0.0 Ok: queued".to_string()),
        },
    ));
    queue_backlog(&world, 2).await;

    let deferred = world.wait_event("transient_failure", "r0@backlog.test").await;
    let delivery = world.wait_event("delivery", "r1@backlog.test").await;

    assert_eq!(deferred["response"]["code"], 421);
    assert_eq!(
        delivery["attempt"], 1,
        "r1 was pipelined on the closed connection, never sent: no attempt counted"
    );
    let received = world.sinks[0].wait_for(1).await;
    assert_eq!(received[0].rcpt_to, ["r1@backlog.test"]);
    assert!(received[0].connection >= 1, "r1 went on a new connection");
    // r0 is retried (retry every second) and delivered in its second attempt.
    let retried = world.wait_event("delivery", "r0@backlog.test").await;
    assert_eq!(retried["attempt"], 2);
    assert_clean(&world.sinks[0]);
}
