//! STARTTLS and SMTP AUTH on the real server over real TCP and real TLS: when AUTH is offered, the
//! PLAIN and LOGIN exchanges, refusals, the failure lockout, and the Received field of a TLS+AUTH message.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use penguin_tests::*;

/// Base64 of a text (SASL responses).
fn b64(text: &str) -> String {
    BASE64.encode(text)
}

/// A server with the tenant acme where loopback may AUTH in the clear (the default networks).
async fn cleartext_auth_server(dir: &std::path::Path) -> TestServer {
    let mut config = test_config(dir);
    config.tenant.push(ACME.config());
    TestServer::start(config).await
}

/// Asserts code and enhanced status code of a reply.
fn assert_reply(reply: &Reply, code: u16, status: &str, what: &str) {
    assert_eq!(reply.code, code, "{what}: {reply}");
    let last = reply.lines.last().map(String::as_str).unwrap_or("");
    assert!(
        last.starts_with(status),
        "{what}: expected {code} {status}, got {reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_refused_before_starttls_and_offered_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, certs) = tls_only_auth_server(dir.path()).await;
    let mut client = server.connect().await;
    assert_eq!(client.greeting.code, 220, "{}", client.greeting);

    let ehlo = client.ehlo().await;
    assert_eq!(ehlo.code, 250, "{ehlo}");
    assert!(
        ehlo.lines.iter().any(|l| l == "STARTTLS"),
        "STARTTLS offered in the clear: {ehlo}"
    );
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "AUTH must not be offered before TLS: {ehlo}"
    );
    let auth = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_reply(&auth, 538, "5.7.11", "AUTH before STARTTLS");

    client.starttls(&certs).await;
    let ehlo = client.ehlo().await;
    assert_eq!(ehlo.code, 250, "{ehlo}");
    assert!(
        ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"),
        "AUTH offered inside TLS: {ehlo}"
    );
    assert!(
        !ehlo.lines.iter().any(|l| l == "STARTTLS"),
        "STARTTLS must not be offered twice: {ehlo}"
    );
    let again = client.cmd("STARTTLS").await;
    assert_reply(&again, 503, "5.5.1", "second STARTTLS");
    let auth = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_reply(&auth, 235, "2.7.0", "AUTH inside TLS");
    assert_eq!(client.cmd("QUIT").await.code, 221);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_without_a_certificate_is_not_implemented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(test_config(dir.path())).await;
    let mut client = server.connect().await;
    let ehlo = client.ehlo().await;
    assert!(
        !ehlo.lines.iter().any(|l| l == "STARTTLS"),
        "no certificate, no STARTTLS: {ehlo}"
    );
    let reply = client.cmd("STARTTLS").await;
    assert_reply(&reply, 502, "5.5.1", "STARTTLS without [tls]");
    // The session goes on in the clear.
    assert_eq!(client.cmd("NOOP").await.code, 250);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_plain_with_initial_response_and_with_challenge_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = cleartext_auth_server(dir.path()).await;

    let mut client = server.connect().await;
    client.ehlo().await;
    let auth = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_reply(&auth, 235, "2.7.0", "AUTH PLAIN with initial response");
    let twice = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_reply(&twice, 503, "5.5.1", "AUTH after a successful AUTH");

    let mut client = server.connect().await;
    client.ehlo().await;
    let challenge = client.cmd("AUTH PLAIN").await;
    assert_eq!(challenge.code, 334, "{challenge}");
    assert_eq!(
        challenge.lines,
        vec![String::new()],
        "PLAIN's challenge is empty: {challenge}"
    );
    let auth = client.cmd(&ACME.plain_response()).await;
    assert_reply(&auth, 235, "2.7.0", "AUTH PLAIN after 334");
    // The session now sends as acme.
    let mail = client.cmd("MAIL FROM:<news@acme.example>").await;
    assert_eq!(mail.code, 250, "{mail}");
    // An open transaction would hold the shutdown for its grace period: end the session.
    assert_eq!(client.cmd("QUIT").await.code, 221);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_login_prompts_for_username_and_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = cleartext_auth_server(dir.path()).await;
    let mut client = server.connect().await;
    client.ehlo().await;
    let username = client.cmd("AUTH LOGIN").await;
    assert_eq!(
        (username.code, username.text()),
        (334, "VXNlcm5hbWU6".to_string()),
        "{username}"
    );
    let password = client.cmd(&b64(ACME.username)).await;
    assert_eq!(
        (password.code, password.text()),
        (334, "UGFzc3dvcmQ6".to_string()),
        "{password}"
    );
    let auth = client.cmd(&b64(ACME.password)).await;
    assert_reply(&auth, 235, "2.7.0", "AUTH LOGIN");
    let twice = client.cmd("AUTH LOGIN").await;
    assert_reply(&twice, 503, "5.5.1", "AUTH LOGIN after a successful AUTH");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_535_and_star_cancels_with_501() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = cleartext_auth_server(dir.path()).await;
    let mut client = server.connect().await;
    client.ehlo().await;

    let wrong_password = client
        .cmd(&format!("AUTH PLAIN {}", plain_response(ACME.username, "not-it")))
        .await;
    assert_reply(&wrong_password, 535, "5.7.8", "wrong password");
    let unknown_user = client
        .cmd(&format!("AUTH PLAIN {}", plain_response("nobody", ACME.password)))
        .await;
    assert_reply(&unknown_user, 535, "5.7.8", "unknown user");

    // LOGIN with a wrong password.
    assert_eq!(client.cmd("AUTH LOGIN").await.code, 334);
    assert_eq!(client.cmd(&b64(ACME.username)).await.code, 334);
    let login_wrong = client.cmd(&b64("not-it")).await;
    assert_reply(&login_wrong, 535, "5.7.8", "LOGIN with a wrong password");

    // "*" cancels a PLAIN exchange and a LOGIN exchange at either prompt.
    assert_eq!(client.cmd("AUTH PLAIN").await.code, 334);
    assert_reply(&client.cmd("*").await, 501, "5.7.0", "* at the PLAIN prompt");
    assert_eq!(client.cmd("AUTH LOGIN").await.code, 334);
    assert_reply(&client.cmd("*").await, 501, "5.7.0", "* at the username prompt");
    assert_eq!(client.cmd("AUTH LOGIN").await.code, 334);
    assert_eq!(client.cmd(&b64(ACME.username)).await.code, 334);
    assert_reply(&client.cmd("*").await, 501, "5.7.0", "* at the password prompt");

    // After all that, the right credentials still work (3 failures are below the default limit of 5).
    let auth = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_reply(&auth, 235, "2.7.0", "AUTH after failures and cancels");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_failure_locks_the_client_out_and_new_connections_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.tenant.push(ACME.config());
    config.smtp.auth_failure_limit = 3;
    let server = TestServer::start(config).await;

    let mut client = server.connect().await;
    client.ehlo().await;
    let bad = format!("AUTH PLAIN {}", plain_response(ACME.username, "wrong"));
    assert_reply(&client.cmd(&bad).await, 535, "5.7.8", "1st failure");
    assert_reply(&client.cmd(&bad).await, 535, "5.7.8", "2nd failure");
    assert_reply(&client.cmd(&bad).await, 421, "4.7.0", "3rd failure");
    assert!(
        client.is_closed().await,
        "the connection closes after the lockout reply"
    );

    let mut again = server.connect().await;
    assert_reply(&again.greeting, 421, "4.7.0", "greeting of a locked-out client");
    assert!(
        again.is_closed().await,
        "a locked-out client's new connection is closed"
    );

    let (status, metrics) = server.http_get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric_sample(&metrics, "penguin_auth_failures_total"),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric_sample(
            &metrics,
            "penguin_smtp_connections_refused_total{reason=\"auth_lockout\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_field_of_a_tls_auth_message_names_cipher_tenant_and_esmtpsa() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, certs) = tls_only_auth_server(dir.path()).await;
    let mut client = server.connect().await;
    client.ehlo().await;
    client.starttls(&certs).await;
    client.ehlo().await;
    assert_reply(
        &client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await,
        235,
        "2.7.0",
        "AUTH",
    );
    let content = simple_message("news@acme.example", "bob@example.com", "trace");
    let reply = client
        .send_message("news@acme.example", &["bob@example.com"], &content)
        .await;
    let id = reply.queued_id().unwrap_or_else(|| panic!("not queued: {reply}"));
    assert_eq!(client.cmd("QUIT").await.code, 221);

    let body = String::from_utf8(stored_body(&server.spool_path, &id)).expect("utf-8");
    assert!(
        body.starts_with("Received: "),
        "Received is the first field: {body}"
    );
    // The Received field: its first line and the folded lines that follow it.
    let received: String = body
        .split_inclusive("\r\n")
        .enumerate()
        .take_while(|(index, line)| *index == 0 || line.starts_with([' ', '\t']))
        .map(|(_, line)| line)
        .collect();
    assert!(
        received.contains("(using TLSv1.3 with cipher TLS13_"),
        "{received}"
    );
    assert!(received.contains("(authenticated tenant acme)"), "{received}");
    assert!(received.contains(&format!("with ESMTPSA id {id}")), "{received}");
    assert!(received.contains("by mta.test"), "{received}");
    server.stop().await.expect("clean stop");
}
