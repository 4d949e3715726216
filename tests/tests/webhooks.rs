//! Webhooks end to end: a tenant's endpoint gets its events in signed batches
//! (`X-Penguin-Signature: v1=HMAC-SHA256(secret, timestamp "." body)`), in order and each once even
//! when the receiver answers 500 twice first; events wait in the durable outbox while the receiver is
//! down, across a restart; private targets and bad fields are refused.

use aws_lc_rs::hmac;
use penguin_tests::delivery::*;
use penguin_tests::webhook_receiver::{WebhookReceiver, WebhookRequest};
use serde_json::{Value, json};

/// A delivery world whose webhooks may call loopback receivers.
async fn world() -> DeliveryWorld {
    let world = DeliveryWorld::start(1, |config| config.webhooks.allow_private_targets = true).await;
    world.route_to_sink("ok.test", 0);
    world
}

/// Adds an endpoint for the relay tenant `default`; returns (id, secret).
async fn add_webhook(world: &DeliveryWorld, url: &str, events: Value) -> (String, String) {
    let body = json!({"url": url, "events": events});
    let (status, made) = world
        .api("POST", "/v1/tenants/default/webhooks", Some(body))
        .await;
    assert_eq!(status, 201, "{made}");
    (
        made["id"].as_str().expect("id").to_string(),
        made["secret"].as_str().expect("secret").to_string(),
    )
}

/// Checks a request's signature; returns its events.
fn verified_events(request: &WebhookRequest, secret: &str) -> Vec<Value> {
    let timestamp = request.header("x-penguin-timestamp").expect("timestamp");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    let expected = format!("v1={}", hex::encode(hmac::sign(&key, &signed).as_ref()));
    assert_eq!(request.header("x-penguin-signature"), Some(expected.as_str()));
    let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
    body["events"].as_array().cloned().unwrap_or_default()
}

/// The (type, id, recipient) of accepted requests' events, in order.
fn accepted(requests: &[WebhookRequest], secret: &str) -> Vec<(String, String, String)> {
    requests
        .iter()
        .filter(|r| r.status == 200)
        .flat_map(|r| verified_events(r, secret))
        .map(|e| {
            let field = |name: &str| e[name].as_str().unwrap_or("").to_string();
            (field("type"), field("id"), field("recipient"))
        })
        .collect()
}

/// The same triples from the event log, for the types asked for.
fn logged(world: &DeliveryWorld, types: &[&str]) -> Vec<(String, String, String)> {
    world
        .events()
        .into_iter()
        .filter(|e| e["tenant"] == "default" && types.contains(&e["type"].as_str().unwrap_or("")))
        .map(|e| {
            let field = |name: &str| e[name].as_str().unwrap_or("").to_string();
            (field("type"), field("id"), field("recipient"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_batches_arrive_in_order_once_although_the_receiver_fails_twice() {
    let world = world().await;
    let receiver = WebhookReceiver::start(vec![500, 500]).await;
    let (id, secret) = add_webhook(&world, &receiver.url("/hooks"), json!(["reception", "delivery"])).await;
    for n in 0..3 {
        world.send(&[&format!("r{n}@ok.test")]).await;
        world.wait_event("delivery", &format!("r{n}@ok.test")).await;
    }
    let types = ["reception", "delivery"];
    let expected = logged(&world, &types);
    assert_eq!(expected.len(), 6, "{expected:?}");
    let requests = receiver
        .wait_until("every event accepted", |r| accepted(r, &secret).len() >= 6)
        .await;
    assert_eq!(accepted(&requests, &secret), expected, "in order, each once");
    assert_eq!(requests.iter().filter(|r| r.status == 500).count(), 2);
    let (_, listed) = world.api("GET", "/v1/tenants/default/webhooks", None).await;
    let hook = &listed["webhooks"][0];
    assert_eq!(
        (hook["id"].as_str(), hook["pending"].as_u64()),
        (Some(id.as_str()), Some(0)),
        "{listed}"
    );
    assert!(
        hook["last_error"].as_str().unwrap_or("").contains("500"),
        "{listed}"
    );
    assert!(hook["last_success"].is_string(), "{listed}");
    assert!(!listed.to_string().contains(&secret), "the secret is shown once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_in_the_outbox_across_a_restart_while_the_receiver_is_down() {
    let world = world().await;
    let receiver = WebhookReceiver::start(vec![503; 10_000]).await;
    let (_, secret) = add_webhook(&world, &receiver.url("/"), json!(["reception", "delivery"])).await;
    world.send(&["a@ok.test", "b@ok.test"]).await;
    world.wait_event("delivery", "a@ok.test").await;
    world.wait_event("delivery", "b@ok.test").await;
    receiver.wait_until("a refused try", |r| !r.is_empty()).await;
    let world = world.restart().await;
    let (_, listed) = world.api("GET", "/v1/tenants/default/webhooks", None).await;
    assert!(
        listed["webhooks"][0]["pending"].as_u64().unwrap_or(0) >= 3,
        "kept: {listed}"
    );
    receiver.set_script(Vec::new());
    let expected = logged(&world, &["reception", "delivery"]);
    let requests = receiver
        .wait_until("the outbox delivered", |r| {
            accepted(r, &secret).len() >= expected.len()
        })
        .await;
    assert_eq!(
        accepted(&requests, &secret),
        expected,
        "in order, each once, after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_and_bad_fields_are_refused_and_deletion_works() {
    let world = DeliveryWorld::start(1, |_| {}).await;
    let cases = [
        (json!({"url": "http://127.0.0.1:9/hook", "events": ["*"]}), "url"),
        (
            json!({"url": "http://169.254.169.254/latest", "events": ["*"]}),
            "url",
        ),
        (json!({"url": "ftp://hooks.example/", "events": ["*"]}), "url"),
        (
            json!({"url": "https://93.184.216.34/", "events": ["nope"]}),
            "events",
        ),
        (json!({"url": "https://93.184.216.34/", "events": []}), "events"),
        (
            json!({"url": "https://93.184.216.34/", "events": ["*"], "x": 1}),
            "body.x",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = world
            .api("POST", "/v1/tenants/default/webhooks", Some(body.clone()))
            .await;
        assert_eq!(
            (status, error["error"]["field"].clone()),
            (400, json!(field)),
            "{body}: {error}"
        );
    }
    let good = json!({"url": "https://93.184.216.34/hooks", "events": ["bounce"]});
    let (status, made) = world
        .api("POST", "/v1/tenants/default/webhooks", Some(good))
        .await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().expect("id");
    let path = format!("/v1/tenants/default/webhooks/{id}");
    assert_eq!(world.api("DELETE", &path, None).await.0, 204);
    assert_eq!(world.api("DELETE", &path, None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_outbox_survives_kill_9() {
    const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");
    use penguin_tests::binary::{self, RunningBinary};
    use penguin_tests::sink::{SinkBehaviour, TestSink};
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let receiver = WebhookReceiver::start(vec![503; 10_000]).await;
    let mut config = penguin_tests::test_config(dir.path());
    penguin_tests::allow_loopback_relay(&mut config);
    config.delivery.paused = false;
    config.delivery.relay_host = Some(sink.address.to_string().parse().expect("relay host"));
    config.webhooks.allow_private_targets = true;
    let path = binary::write_config(dir.path(), &mut config);
    let server = RunningBinary::start(EXE, &path, &config).await;
    let body = json!({"url": receiver.url("/"), "events": ["reception", "delivery"]}).to_string();
    let made = penguin_tests::http_exchange(
        config.api.listen,
        Some(penguin_tests::TEST_ADMIN_TOKEN),
        "POST",
        "/v1/tenants/default/webhooks",
        Some("application/json"),
        body.as_bytes(),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let secret = made.json()["secret"].as_str().expect("secret").to_string();
    let mut client = penguin_tests::SmtpClient::connect(config.smtp.listen[0]).await;
    client.ehlo().await;
    for n in 0..3 {
        let to = format!("k{n}@x.example");
        let content = penguin_tests::simple_message("s@sender.example", &to, "kill");
        let reply = client.send_message("s@sender.example", &[&to], &content).await;
        assert_eq!(reply.code, 250, "{reply}");
    }
    sink.wait_for(3).await;
    receiver.wait_until("a refused try", |r| !r.is_empty()).await;
    server.kill9().await;

    receiver.set_script(Vec::new());
    let _server = RunningBinary::start(EXE, &path, &config).await;
    let requests = receiver
        .wait_until("6 events after the restart", |r| accepted(r, &secret).len() >= 6)
        .await;
    let got = accepted(&requests, &secret);
    let kinds: Vec<&str> = got.iter().map(|(kind, _, _)| kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "reception").count(), 3, "{got:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "delivery").count(), 3, "{got:?}");
    let unique: std::collections::HashSet<_> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "each once: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_drops_its_oldest_and_a_batch_failing_too_long_is_dropped_with_an_event() {
    let world = DeliveryWorld::start(1, |config| {
        config.webhooks.allow_private_targets = true;
        config.webhooks.max_pending_per_endpoint = 2;
        config.webhooks.max_retry_age = "2s".parse().expect("duration");
    })
    .await;
    world.route_to_sink("ok.test", 0);
    let receiver = WebhookReceiver::start(vec![503; 10_000]).await;
    let (id, _) = add_webhook(&world, &receiver.url("/"), json!(["reception", "delivery"])).await;
    for n in 0..3 {
        world.send(&[&format!("f{n}@ok.test")]).await;
        world.wait_event("delivery", &format!("f{n}@ok.test")).await;
    }
    // Six events, at most two kept: the four oldest were dropped and counted.
    let (_, listed) = world.api("GET", "/v1/tenants/default/webhooks", None).await;
    let hook = &listed["webhooks"][0];
    assert!(hook["pending"].as_u64().unwrap_or(99) <= 2, "{listed}");
    assert!(hook["dropped"].as_u64().unwrap_or(0) >= 4, "{listed}");
    let dropped = world
        .wait_events("webhook_dropped", 1, |e| e["type"] == "webhook_dropped")
        .await;
    assert_eq!(dropped[0]["scope"]["webhook"], id.as_str(), "{:?}", dropped[0]);
    // The receiver keeps refusing: after max_retry_age the batch goes, with a webhook_failed event.
    let failed = world
        .wait_events("webhook_failed", 1, |e| e["type"] == "webhook_failed")
        .await;
    assert_eq!(failed[0]["scope"]["webhook"], id.as_str(), "{:?}", failed[0]);
    assert!(
        failed[0]["reason"].as_str().unwrap_or("").contains("503"),
        "{:?}",
        failed[0]
    );
    assert_eq!(failed[0]["tenant"], "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_with_an_untrusted_certificate_gets_nothing() {
    let world = world().await;
    let certs = penguin_tests::TestCerts::generate(world.dir.path());
    let receiver = WebhookReceiver::start_tls(&certs).await;
    let url = format!("https://127.0.0.1:{}/hooks", receiver.address.port());
    add_webhook(&world, &url, json!(["delivery"])).await;
    world.send(&["t@ok.test"]).await;
    world.wait_event("delivery", "t@ok.test").await;
    let deadline = std::time::Instant::now() + penguin_tests::WAIT;
    let error = loop {
        let (_, listed) = world.api("GET", "/v1/tenants/default/webhooks", None).await;
        if let Some(error) = listed["webhooks"][0]["last_error"].as_str() {
            break error.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no attempt: {listed}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(error.contains("TLS") && error.contains("certificate"), "{error}");
    assert_eq!(receiver.handshakes(), 0, "the certificate was not accepted");
    assert!(receiver.requests().is_empty());
}
