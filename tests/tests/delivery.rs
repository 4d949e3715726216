//! Delivery end to end, the paths that succeed: MX order and fallback, the implicit MX, STARTTLS,
//! connection reuse and transaction sizes, and what deliveries leave behind (event log, metrics, spool).
//! The real server delivers by MX through a real DNS server to real SMTP sinks on 127.0.0.x.
//! Failures, retries, bounces and DSNs: tests/tests/delivery_failures.rs.

use std::sync::Arc;

use penguin_config::StartTls;
use penguin_tests::delivery::*;
use penguin_tests::sink::SinkBehaviour;
use penguin_tests::{TestCerts, metric_sample};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_to_the_most_preferred_mx() {
    let world = DeliveryWorld::start(2, |_| {}).await;
    world.add_mx("order.test", 20, "mx2.order.test", sink_ip(1));
    world.add_mx("order.test", 10, "mx1.order.test", sink_ip(0));

    world.send(&["bob@order.test"]).await;
    let event = world.wait_event("delivery", "bob@order.test").await;

    assert_eq!(event["mx"], "mx1.order.test");
    assert_eq!(event["source_ip"], "127.0.0.1");
    assert_eq!(event["attempt"], 1);
    assert_eq!(event["response"]["code"], 250);
    let received = world.sinks[0].wait_for(1).await;
    assert_eq!(received[0].rcpt_to, ["bob@order.test"]);
    assert_eq!(world.sinks[1].connections(), 0, "mx2 is not tried");
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mx_where_nothing_listens_falls_back_to_the_next() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    world.add_mx("refused.test", 10, "mx1.refused.test", NOTHING_LISTENS);
    world.add_mx("refused.test", 20, "mx2.refused.test", sink_ip(0));

    world.send(&["bob@refused.test"]).await;
    let event = world.wait_event("delivery", "bob@refused.test").await;

    assert_eq!(world.sinks[0].wait_for(1).await.len(), 1);
    assert_eq!(event["mx"], "mx2.refused.test");
    assert_eq!(event["attempt"], 1, "the fallback is part of the same attempt");
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mx_refusing_at_the_greeting_falls_back_to_the_next() {
    let world = DeliveryWorld::start(2, |_| {}).await;
    world.sinks[0].set_behaviour(SinkBehaviour {
        greeting: Some((421, "4.3.2 Service not available".into())),
        ..SinkBehaviour::default()
    });
    world.add_mx("busy.test", 10, "mx1.busy.test", sink_ip(0));
    world.add_mx("busy.test", 20, "mx2.busy.test", sink_ip(1));

    world.send(&["bob@busy.test"]).await;
    let event = world.wait_event("delivery", "bob@busy.test").await;

    assert_eq!(world.sinks[1].wait_for(1).await.len(), 1);
    assert_eq!(world.sinks[0].connections(), 1, "mx1 was tried first");
    assert_eq!(world.sinks[0].transactions(), 0);
    assert_eq!(event["mx"], "mx2.busy.test");
    assert_clean(&world.sinks[0]);
    assert_clean(&world.sinks[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_without_mx_gets_mail_at_its_address() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    world.dns.add_a("implicit.test", sink_ip(0), 300);

    world.send(&["bob@implicit.test"]).await;
    let event = world.wait_event("delivery", "bob@implicit.test").await;

    let received = world.sinks[0].wait_for(1).await;
    assert_eq!(received[0].rcpt_to, ["bob@implicit.test"]);
    assert_eq!(
        event["mx"], "implicit.test",
        "the implicit MX is the domain itself"
    );
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_used_when_the_mx_offers_it() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    let certs = Arc::new(TestCerts::generate(world.dir.path()));
    world.sinks[0].set_behaviour(SinkBehaviour {
        starttls: Some(certs),
        ..SinkBehaviour::default()
    });
    world.route_to_sink("tls.test", 0);

    world.send(&["bob@tls.test"]).await;
    let event = world.wait_event("delivery", "bob@tls.test").await;

    let received = world.sinks[0].wait_for(1).await;
    assert!(received[0].tls, "the message travelled inside TLS");
    let tls = event["tls"]
        .as_str()
        .unwrap_or_else(|| panic!("no tls in {event}"));
    assert!(tls.starts_with("TLSv1.3 "), "{tls}");
    assert_eq!(world.sinks[0].stats().tls_failures, 0);
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_disabled_sends_in_plaintext_although_offered() {
    let world = DeliveryWorld::start(1, |config| config.delivery.starttls = StartTls::Disabled).await;
    let certs = Arc::new(TestCerts::generate(world.dir.path()));
    world.sinks[0].set_behaviour(SinkBehaviour {
        starttls: Some(certs),
        ..SinkBehaviour::default()
    });
    world.route_to_sink("plain.test", 0);

    world.send(&["bob@plain.test"]).await;
    let event = world.wait_event("delivery", "bob@plain.test").await;

    let received = world.sinks[0].wait_for(1).await;
    assert!(!received[0].tls);
    assert_eq!(event["tls"], Value::Null);
    assert_clean(&world.sinks[0]);
}

/// Sends five messages to `reuse.test` one after another, each once the previous one's delivery event
/// is logged (its connection is back in the pool by then); returns the sink's connection count.
async fn connections_for_five_messages(world: &DeliveryWorld) -> u64 {
    world.route_to_sink("reuse.test", 0);
    for n in 0..5 {
        let recipient = format!("user{n}@reuse.test");
        world.send(&[&recipient]).await;
        world.wait_event("delivery", &recipient).await;
    }
    assert_eq!(world.sinks[0].wait_for(5).await.len(), 5);
    assert_clean(&world.sinks[0]);
    world.sinks[0].connections()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_messages_to_one_host_share_a_connection() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    assert_eq!(connections_for_five_messages(&world).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_messages_per_connection_opens_new_connections() {
    let world = DeliveryWorld::start(1, |config| config.delivery.max_messages_per_connection = 2).await;
    assert_eq!(
        connections_for_five_messages(&world).await,
        3,
        "2 + 2 + 1 messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_are_split_by_max_recipients_per_transaction() {
    let world = DeliveryWorld::start(1, |config| config.delivery.max_recipients_per_transaction = 2).await;
    world.route_to_sink("split.test", 0);
    let recipients: Vec<String> = (0..5).map(|n| format!("user{n}@split.test")).collect();
    let to: Vec<&str> = recipients.iter().map(String::as_str).collect();

    world.send(&to).await;
    world
        .wait_events("5 deliveries", 5, |e| e["type"] == "delivery")
        .await;

    let received = world.sinks[0].wait_for(3).await;
    let sizes: Vec<usize> = received.iter().map(|r| r.rcpt_to.len()).collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(world.sinks[0].transactions(), 3);
    let delivered: Vec<String> = received.iter().flat_map(|r| r.rcpt_to.clone()).collect();
    assert_eq!(delivered, recipients);
    assert_clean(&world.sinks[0]);
}

/// The values of `keys` in `event`, for comparing several fields at once.
fn fields<'a>(event: &'a Value, keys: &[&str]) -> Vec<&'a Value> {
    keys.iter().map(|key| &event[*key]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_line_has_every_contract_field() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    world.route_to_sink("fields.test", 0);
    let delivered_id = world.send(&["bob@fields.test"]).await;
    world.send(&["bob@nowhere.test"]).await;
    world.wait_event("delivery", "bob@fields.test").await;
    world.wait_event("bounce", "bob@nowhere.test").await;
    world.wait_event("delivery", SENDER).await;

    let events = world.events();
    for event in &events {
        let object = event
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {event}"));
        for field in EVENT_FIELDS {
            assert!(object.contains_key(field), "{field} missing in {event}");
        }
        if let Some(response) = event["response"].as_object() {
            for field in ["code", "enhanced", "text"] {
                assert!(
                    response.contains_key(field),
                    "response.{field} missing in {event}"
                );
            }
        }
    }
    let reception = events
        .iter()
        .find(|e| e["type"] == "reception" && e["id"] == delivered_id.as_str())
        .expect("reception event");
    let not_applicable = [
        "recipient",
        "domain",
        "mx",
        "source_ip",
        "attempt",
        "response",
        "class",
    ];
    assert!(
        fields(reception, &not_applicable).iter().all(|v| v.is_null()),
        "{reception}"
    );
    let delivery = &world.events_for("bob@fields.test")[0];
    let null = ["client_ip", "class", "tls", "recipients"];
    assert!(fields(delivery, &null).iter().all(|v| v.is_null()), "{delivery}");
    let bounce = &world.events_for("bob@nowhere.test")[0];
    assert!(
        fields(bounce, &["mx", "source_ip", "tls"])
            .iter()
            .all(|v| v.is_null()),
        "{bounce}"
    );
    assert_eq!(bounce["response"]["code"], 0, "no remote reply: {bounce}");
    assert_clean(&world.sinks[0]);
    assert_clean(&world.sender_sink);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_deliveries_bounces_delays_and_connections() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    world.route_to_sink("metrics.test", 0);
    world.send(&["bob@metrics.test"]).await;
    world.send(&["bob@nowhere.test"]).await;
    world.wait_event("delivery", "bob@metrics.test").await;
    world.wait_event("bounce", "bob@nowhere.test").await;
    // The bounce's DSN to the sender is the second delivery of tenant default.
    world.wait_event("delivery", SENDER).await;

    // The metrics are the first subscriber of the event stream: counted before the line is logged.
    let (status, text) = world.server.http_get("/metrics").await;
    assert_eq!(status, 200);
    // Bounded labels only: tenant, source, pool, provider; never the recipient domain.
    let delivered = r#"penguin_messages_delivered_total{tenant="default",source="default",pool="default",provider="other"}"#;
    assert_eq!(metric_sample(&text, delivered), Some(2.0), "{text}");
    let bounced = r#"penguin_messages_bounced_total{tenant="default",source="",pool="default",provider=""}"#;
    assert_eq!(metric_sample(&text, bounced), Some(1.0), "{text}");
    assert!(
        !text.contains("metrics.test") && !text.contains("nowhere.test"),
        "{text}"
    );
    let delays = metric_sample(&text, "penguin_delivery_delay_seconds_count");
    assert!(delays.is_some_and(|count| count >= 1.0), "{text}");
    assert!(
        metric_sample(&text, "penguin_outbound_connections").is_some(),
        "{text}"
    );
    assert_clean(&world.sinks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_is_empty_once_every_recipient_is_final() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    world.route_to_sink("final.test", 0);
    let delivered = world.send(&["bob@final.test"]).await;
    let bounced = world.send(&["bob@nowhere.test"]).await;
    world.wait_event("delivery", "bob@final.test").await;
    world.wait_event("bounce", "bob@nowhere.test").await;
    // The bounce queued a DSN to the sender; its delivery is the last final outcome.
    world.wait_event("delivery", SENDER).await;

    assert_eq!(world.queued().len(), 0, "{:?}", world.queued());
    assert!(
        world.is_gone(&delivered),
        "envelope or body of {delivered} left behind"
    );
    assert!(
        world.is_gone(&bounced),
        "envelope or body of {bounced} left behind"
    );
    assert_clean(&world.sinks[0]);
    assert_clean(&world.sender_sink);
}
