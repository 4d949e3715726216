//! The HTTP listener: `/healthz` and the Prometheus `/metrics` exposition.

use penguin_tests::*;
use serde_json::{Value, json};

/// A server where loopback relays as "default" and the tenant acme can AUTH.
async fn server(dir: &std::path::Path) -> TestServer {
    let mut config = test_config(dir);
    allow_loopback_relay(&mut config);
    config.tenant.push(ACME.config());
    TestServer::start(config).await
}

/// Sends one message on a new connection, as acme (AUTH) or as the relay tenant.
async fn send_one(server: &TestServer, as_acme: bool, subject: &str) -> String {
    let mut client = server.connect().await;
    client.ehlo().await;
    let from = if as_acme {
        let auth = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
        assert_eq!(auth.code, 235, "{auth}");
        "news@acme.example"
    } else {
        "app@relay.example"
    };
    let reply = client
        .send_message(
            from,
            &["rcpt@example.com"],
            &simple_message(from, "rcpt@example.com", subject),
        )
        .await;
    let id = reply.queued_id().unwrap_or_else(|| panic!("not queued: {reply}"));
    assert_eq!(client.cmd("QUIT").await.code, 221);
    id
}

/// GET /healthz, parsed.
async fn health(server: &TestServer) -> Value {
    let (status, body) = server.http_get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("healthz is not JSON ({e}): {body}"))
}

/// GET /metrics.
async fn metrics(server: &TestServer) -> String {
    let (status, body) = server.http_get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A sample that must be present.
fn sample(exposition: &str, series: &str) -> f64 {
    metric_sample(exposition, series).unwrap_or_else(|| panic!("no {series} in:\n{exposition}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_status_and_queue_depth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    assert_eq!(
        health(&server).await,
        json!({"status": "ok", "queued_messages": 0})
    );
    for n in 0..3 {
        send_one(&server, n % 2 == 0, &format!("health {n}")).await;
    }
    assert_eq!(
        health(&server).await,
        json!({"status": "ok", "queued_messages": 3})
    );
    let (status, _) = server.http_get("/no-such-path").await;
    assert_eq!(status, 404);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_messages_commits_queue_and_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    let before = metrics(&server).await;
    assert_eq!(sample(&before, "penguin_smtp_connections_total"), 0.0, "{before}");
    assert_eq!(sample(&before, "penguin_spool_commits_total"), 0.0, "{before}");
    assert_eq!(sample(&before, "penguin_queue_messages"), 0.0, "{before}");
    assert_eq!(
        metric_sample(&before, "penguin_messages_received_total{tenant=\"acme\"}"),
        None,
        "{before}"
    );

    // Sequential sessions: 2 messages as acme, 1 relayed as "default".
    send_one(&server, true, "one").await;
    send_one(&server, true, "two").await;
    send_one(&server, false, "three").await;
    let text = metrics(&server).await;
    assert_eq!(
        sample(&text, "penguin_messages_received_total{tenant=\"acme\"}"),
        2.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "penguin_messages_received_total{tenant=\"default\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "penguin_smtp_connections_total"), 3.0, "{text}");
    assert_eq!(sample(&text, "penguin_queue_messages"), 3.0, "{text}");

    // Group commit: every message is in exactly one synced batch.
    let commits = sample(&text, "penguin_spool_commits_total");
    assert!((1.0..=3.0).contains(&commits), "{text}");
    assert_eq!(
        sample(&text, "penguin_spool_commit_batch_messages_count"),
        commits,
        "{text}"
    );
    assert_eq!(
        sample(&text, "penguin_spool_commit_batch_messages_sum"),
        3.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "penguin_spool_commit_batch_messages_bucket{le=\"+Inf\"}"),
        commits,
        "{text}"
    );
    assert_eq!(
        sample(&text, "penguin_spool_commit_sync_seconds_count"),
        commits,
        "{text}"
    );
    assert!(
        sample(&text, "penguin_spool_commit_sync_seconds_sum") > 0.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "penguin_spool_commit_sync_seconds_bucket{le=\"+Inf\"}"),
        commits,
        "{text}"
    );
    assert!(
        text.contains("# TYPE penguin_spool_commit_batch_messages histogram"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE penguin_spool_commit_sync_seconds histogram"),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    server.stop().await.expect("clean stop");
}
