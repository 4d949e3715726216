//! Delivery end to end, the paths that fail: null MX, NXDOMAIN, DNS timeouts, temporary replies and
//! dropped connections (retried), per-recipient rejections, expiry, SMTPUTF8 not offered; the DSNs they
//! send and the ones they must not send. Retries follow the engine's own timer (`delivery.retry` 1 s
//! in these tests). Successful paths: tests/tests/delivery.rs.

use penguin_tests::delivery::*;
use penguin_tests::dns::DnsFailure;
use penguin_tests::simple_message;
use penguin_tests::sink::SinkBehaviour;

/// Waits for the DSN at the sender's sink and returns its `message/delivery-status` part, after
/// checking that it came from the null sender to [`SENDER`].
async fn dsn_status(world: &DeliveryWorld) -> String {
    let received = world.sender_sink.wait_for(1).await;
    let dsn = &received[0];
    assert_eq!(dsn.mail_from, "", "a DSN has the null envelope sender");
    assert_eq!(dsn.rcpt_to, [SENDER]);
    assert_clean(&world.sender_sink);
    delivery_status(&dsn.data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_mx_bounces_with_a_dsn_to_the_sender() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    world.dns.add_mx("nullmx.test", 0, ".", 300);

    let id = world.send(&["bob@nullmx.test"]).await;
    let bounce = world.wait_event("bounce", "bob@nullmx.test").await;

    assert_eq!(bounce["class"], "bad_domain");
    assert_eq!(bounce["response"]["enhanced"], "5.1.10");
    let status = dsn_status(&world).await;
    assert!(
        status.contains("Final-Recipient: rfc822; bob@nullmx.test"),
        "{status}"
    );
    assert!(status.contains("Action: failed"), "{status}");
    assert!(status.contains("Status: 5.1.10"), "{status}");
    assert_eq!(
        world.sinks[0].connections(),
        0,
        "nothing is sent for a null MX domain"
    );
    assert!(world.is_gone(&id), "the bounced message left the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_the_null_sender_gets_no_dsn() {
    let world = DeliveryWorld::start(0, |_| {}).await;
    world.dns.add_mx("nullmx.test", 0, ".", 300);
    let content = simple_message("", "bob@nullmx.test", "a bounce itself");

    world
        .send_with("MAIL FROM:<>", &["bob@nullmx.test"], &content)
        .await;
    world.wait_event("bounce", "bob@nullmx.test").await;

    // A DSN would have been queued before the bounce event was emitted: it would now be in the queue
    // or already at the sender's sink.
    assert!(world.queued().is_empty(), "{:?}", world.queued());
    assert_eq!(world.sender_sink.transactions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_that_does_not_exist_bounces() {
    let world = DeliveryWorld::start(0, |_| {}).await;

    world.send(&["bob@nxdomain.test"]).await;
    let bounce = world.wait_event("bounce", "bob@nxdomain.test").await;

    assert_eq!(bounce["class"], "bad_domain");
    assert_eq!(bounce["response"]["enhanced"], "5.1.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_timeout_is_a_transient_failure() {
    // A long retry interval keeps the message at one attempt while the queue is read.
    let world = DeliveryWorld::start(0, |config| {
        config.delivery.retry = vec![penguin_config::HumanDuration::from_secs(3600)];
    })
    .await;
    world.dns.set_failure("slow.test", DnsFailure::Timeout);

    let id = world.send(&["bob@slow.test"]).await;
    let event = world.wait_event("transient_failure", "bob@slow.test").await;

    assert_eq!(event["attempt"], 1);
    assert_eq!(event["class"], "routing_error");
    let queued = world.queued();
    let (_, envelope) = queued
        .iter()
        .find(|(queued, _)| *queued == id)
        .unwrap_or_else(|| panic!("{id} not queued: {queued:?}"));
    assert_eq!(
        envelope.recipients[0].state,
        penguin_queue::RecipientState::Queued
    );
    assert_eq!(envelope.recipients[0].attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_reply_is_retried_until_delivered() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    world.sinks[0].set_behaviour(SinkBehaviour::default().with_data_reply(|transaction| {
        if transaction == 0 {
            (451, "4.3.0 Try again later".into())
        } else {
            (250, "2.0.0 Ok: queued".into())
        }
    }));
    world.route_to_sink("later.test", 0);

    world.send(&["bob@later.test"]).await;
    // The second attempt waits for the engine's retry timer (1 s).
    world.wait_event("delivery", "bob@later.test").await;

    let events = world.events_for("bob@later.test");
    let steps: Vec<(&str, u64)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or(""),
                e["attempt"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(steps, [("transient_failure", 1), ("delivery", 2)]);
    assert_eq!(events[0]["response"]["code"], 451);
    assert_eq!(world.sinks[0].received().len(), 1);
    assert_eq!(world.sinks[0].transactions(), 2);
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_recipient_bounces_alone_in_a_shared_transaction() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    world.sinks[0].set_behaviour(SinkBehaviour::default().with_rcpt(|address| {
        if address == "b@multi.test" {
            (550, "5.1.1 No such user".into())
        } else {
            (250, "2.1.5 Ok".into())
        }
    }));
    world.route_to_sink("multi.test", 0);

    let id = world
        .send(&["a@multi.test", "b@multi.test", "c@multi.test"])
        .await;
    let events = world
        .wait_events("3 outcomes", 3, |e| {
            e["domain"] == "multi.test" && (e["type"] == "delivery" || e["type"] == "bounce")
        })
        .await;

    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["recipient"].as_str().unwrap_or(""),
                e["type"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("a@multi.test", "delivery"),
            ("b@multi.test", "bounce"),
            ("c@multi.test", "delivery")
        ]
    );
    assert_eq!(events[1]["class"], "invalid_recipient");
    let received = world.sinks[0].wait_for(1).await;
    assert_eq!(world.sinks[0].transactions(), 1);
    assert_eq!(received[0].rcpt_to, ["a@multi.test", "c@multi.test"]);
    let status = dsn_status(&world).await;
    assert!(
        status.contains("Final-Recipient: rfc822; b@multi.test"),
        "{status}"
    );
    assert!(status.contains("Status: 5.1.1"), "{status}");
    assert!(
        !status.contains("a@multi.test") && !status.contains("c@multi.test"),
        "{status}"
    );
    assert!(world.is_gone(&id), "the message left the queue");
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_after_the_data_is_retried() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    world.sinks[0].set_behaviour(SinkBehaviour {
        disconnect_after_data: true,
        ..SinkBehaviour::default()
    });
    world.route_to_sink("dropped.test", 0);

    world.send(&["bob@dropped.test"]).await;
    // Accept again as soon as the first copy was dropped, before the retry timer (1 s) fires.
    world.sinks[0]
        .wait_until("a message dropped after its data", |stats| {
            stats.dropped_after_data >= 1
        })
        .await;
    world.sinks[0].set_behaviour(SinkBehaviour::default());
    world.wait_event("delivery", "bob@dropped.test").await;

    let events = world.events_for("bob@dropped.test");
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["transient_failure", "delivery"]);
    assert_eq!(events[0]["class"], "network_error");
    assert_eq!(events[1]["attempt"], 2);
    assert_eq!(world.sinks[0].received().len(), 1);
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_expires_after_max_age_with_a_dsn() {
    let world = DeliveryWorld::start(1, |config| {
        config.delivery.max_age = penguin_config::HumanDuration::from_secs(2);
    })
    .await;
    world.sinks[0]
        .set_behaviour(SinkBehaviour::default().with_data_reply(|_| (451, "4.3.0 Try again later".into())));
    world.route_to_sink("expire.test", 0);

    let id = world.send(&["bob@expire.test"]).await;
    // Attempts follow the retry timer (1 s) until the 2 s deadline.
    let expiration = world.wait_event("expiration", "bob@expire.test").await;

    assert_eq!(expiration["class"], "message_expired");
    let status = dsn_status(&world).await;
    assert!(
        status.contains("Final-Recipient: rfc822; bob@expire.test"),
        "{status}"
    );
    assert!(status.contains("Action: failed"), "{status}");
    assert!(status.contains("Status: 4.4.7"), "{status}");
    assert!(world.is_gone(&id), "the expired message left the queue");
    assert_eq!(world.sinks[0].received().len(), 0);
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtputf8_needed_but_not_offered_bounces_with_5_6_7() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    world.sinks[0].set_behaviour(SinkBehaviour {
        no_smtputf8: true,
        ..SinkBehaviour::default()
    });
    world.route_to_sink("utf8.test", 0);
    let recipient = "j\u{f6}rg@utf8.test";
    let content = simple_message(SENDER, recipient, "SMTPUTF8");

    world
        .send_with(&format!("MAIL FROM:<{SENDER}> SMTPUTF8"), &[recipient], &content)
        .await;
    let bounce = world.wait_event("bounce", recipient).await;

    assert_eq!(bounce["response"]["enhanced"], "5.6.7");
    assert_eq!(world.sinks[0].transactions(), 0, "no transaction is started");
    assert_clean(&world.sinks[0]);
    // The DSN quotes the UTF-8 header section, yet goes out 7-bit to a plain ASCII sender.
    let status = dsn_status(&world).await;
    assert!(status.contains("Status: 5.6.7"), "{status}");
}
