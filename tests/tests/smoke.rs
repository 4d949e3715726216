//! The shortest path through the product: TLS, AUTH, a message queued, visible in the spool.

use penguin_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_tls_message_is_queued_with_trace_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.smtp.auth_cleartext_networks = Vec::new();
    config.tenant.push(ACME.config());
    let certs = enable_tls(&mut config, dir.path());
    let server = TestServer::start(config).await;

    let mut client = server.connect().await;
    assert_eq!(client.greeting.code, 220);
    let ehlo = client.ehlo().await;
    assert!(
        ehlo.text().contains("STARTTLS") && !ehlo.text().contains("AUTH"),
        "{ehlo}"
    );
    client.starttls(&certs).await;
    let ehlo = client.ehlo().await;
    assert!(ehlo.text().contains("AUTH PLAIN LOGIN"), "{ehlo}");
    let auth = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_eq!(auth.code, 235, "{auth}");
    let reply = client
        .send_message(
            "news@acme.example",
            &["bob@example.com"],
            &simple_message("news@acme.example", "bob@example.com", "hi"),
        )
        .await;
    let id = reply.queued_id().unwrap_or_else(|| panic!("not queued: {reply}"));

    let queued = queued(&server.spool_path);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0, id);
    assert_eq!(queued[0].1.tenant, "acme");
    let body = String::from_utf8(stored_body(&server.spool_path, &id)).expect("utf-8");
    assert!(
        body.contains("with ESMTPSA id ") && body.contains("(using TLSv1.3 with cipher TLS13_"),
        "{body}"
    );
    assert!(body.contains("(authenticated tenant acme)"), "{body}");
    assert!(client.cmd("QUIT").await.code == 221);
    server.stop().await.expect("clean stop");
}
