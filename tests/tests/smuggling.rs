//! SMTP smuggling and command injection over real TCP: only `CRLF . CRLF` ends DATA, bare CR/LF in
//! content rejects the message, bare CR/LF in a command closes the session, nothing sent behind
//! STARTTLS is executed (CVE-2011-0411), and commands sent ahead of the server's answer where
//! pipelining is not allowed end the session.

use penguin_tests::*;

/// A server that lets loopback relay, with its temporary directory (kept alive by the caller).
async fn relay_server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_relay_server(test_config(dir.path())).await;
    (dir, server)
}

/// The end-of-data look-alikes that real-world MTAs have accepted (SEC Consult, 2023).
const SEQUENCES: &[&str] = &[
    "\n.\n", "\r.\r", "\r\n.\r", "\n.\r\n", "\r.\r\n", "\n.\r", "\r\n.\n",
];

/// After a rejected message: the session goes on, and no MAIL from the content was executed.
async fn assert_no_transaction(client: &mut SmtpClient, context: &str) {
    assert_reply(&client.cmd("NOOP").await, 250, "2.0.0", context);
    assert_reply(
        &client.cmd("RCPT TO:<victim@example.com>").await,
        503,
        "5.5.1",
        context,
    );
}

/// Asserts the spool holds nothing at all (in particular nothing from evil, nothing "smuggled").
fn assert_spool_empty(server: &TestServer) {
    let all = queued(&server.spool_path);
    let found: Vec<(&str, &str)> = all
        .iter()
        .map(|(id, env)| (id.as_str(), env.sender.as_str()))
        .collect();
    assert!(found.is_empty(), "messages were queued: {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_end_look_alikes_never_end_the_message_and_reject_it() {
    let (_dir, server) = relay_server().await;
    for sequence in SEQUENCES {
        let context = format!("sequence {sequence:?}");
        let mut client = server.connect().await;
        assert_eq!(client.ehlo().await.code, 250);
        client.expect("MAIL FROM:<a@x.example>", 250, "2.1.0").await;
        client.expect("RCPT TO:<bob@example.com>", 250, "2.1.5").await;
        client.expect("DATA", 354, "").await;
        let smuggled = format!(
            "Subject: x\r\n\r\nbody{sequence}MAIL FROM:<evil@evil.example>\r\nRCPT TO:<victim@example.com>\r\n\
             DATA\r\nsmuggled\r\n.\r\n"
        );
        client.send_raw(smuggled.as_bytes()).await;
        // Exactly one reply for all of it: the next one answers our NOOP.
        assert_reply(&client.reply().await, 550, "5.6.0", &context);
        assert_no_transaction(&mut client, &context).await;
        client.expect("QUIT", 221, "2.0.0").await;
        assert_spool_empty(&server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_content_with_bare_line_endings_is_rejected_at_last() {
    let (_dir, server) = relay_server().await;
    let mut client = server.connect().await;
    assert_eq!(client.ehlo().await.code, 250);
    let cases: &[(&str, &[&[u8]])] = &[
        (
            "bare LF in the LAST chunk",
            &[b"Subject: x\r\n\r\nbody\n.\nmore\r\n"],
        ),
        (
            "bare LF in an earlier chunk",
            &[b"Subject: x\r\n\r\nbody\nsmuggled\r\n", b"end\r\n"],
        ),
        (
            "bare CR at the very end",
            &[b"Subject: x\r\n\r\nbody\r\n", b"end\r"],
        ),
    ];
    for (name, chunks) in cases {
        client.expect("MAIL FROM:<a@x.example>", 250, "2.1.0").await;
        client.expect("RCPT TO:<bob@example.com>", 250, "2.1.5").await;
        let (last, earlier) = chunks.split_last().expect("a chunk");
        for chunk in earlier {
            assert_reply(&client.bdat(chunk, false).await, 250, "2.0.0", name);
        }
        assert_reply(&client.bdat(last, true).await, 550, "5.6.0", name);
        assert_no_transaction(&mut client, name).await;
    }
    assert_spool_empty(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_line_endings_in_a_command_get_500_and_close() {
    let (_dir, server) = relay_server().await;
    let cases: &[&[u8]] = &[
        b"NOOP\n",
        b"NO\rOP\r\n",
        b"MAIL FROM:<a@x.example>\n",
        b"NOOP\r\r\n",
    ];
    for wire in cases {
        let context = format!("{:?}", String::from_utf8_lossy(wire));
        let mut client = server.connect().await;
        assert_eq!(client.ehlo().await.code, 250);
        client.send_raw(wire).await;
        let reply = client.reply().await;
        assert_reply(&reply, 500, "5.5.2", &context);
        assert_eq!(reply.text(), "5.5.2 Error: bare <CR> or <LF> received");
        client.expect_closed(&context).await;
    }
    assert_spool_empty(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_behind_starttls_are_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    allow_loopback_relay(&mut config);
    let certs = enable_tls(&mut config, dir.path());
    let server = TestServer::start(config).await;
    let mut client = server.connect().await;
    assert_eq!(client.ehlo().await.code, 250);
    client
        .send_raw(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")
        .await;
    assert_reply(&client.reply().await, 220, "2.0.0", "STARTTLS");
    // A plaintext answer to the injected MAIL would arrive here and break the handshake.
    client.upgrade(&certs).await;
    assert_eq!(client.ehlo().await.code, 250);
    client.expect("RCPT TO:<a@b.example>", 503, "5.5.1").await;
    // The session is usable inside TLS: a real MAIL works.
    client.expect("MAIL FROM:<good@x.example>", 250, "2.1.0").await;
    assert_spool_empty(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_ahead_of_an_answer_without_pipelining_get_554_and_close() {
    let (_dir, server) = relay_server().await;
    // Before EHLO's answer (PIPELINING is not yet known to the client).
    let mut client = server.connect().await;
    client.send_raw(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\n").await;
    assert_reply(&client.reply().await, 554, "5.5.0", "EHLO + MAIL");
    client.expect_closed("EHLO + MAIL").await;

    // After HELO, which does not offer PIPELINING.
    let mut client = server.connect().await;
    assert_eq!(client.cmd("HELO x").await.code, 250);
    client
        .send_raw(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
        .await;
    assert_reply(&client.reply().await, 554, "5.5.0", "HELO, then MAIL + RCPT");
    client.expect_closed("HELO, then MAIL + RCPT").await;

    // DATA must end a pipelined group even after EHLO: content sent before 354 is an injection.
    let mut client = server.connect().await;
    assert_eq!(client.ehlo().await.code, 250);
    client
        .send_raw(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n")
        .await;
    let replies = client.replies(3).await;
    assert_reply(&replies[0], 250, "2.1.0", "pipelined MAIL");
    assert_reply(&replies[1], 250, "2.1.5", "pipelined RCPT");
    assert_reply(&replies[2], 554, "5.5.0", "DATA followed by content");
    client.expect_closed("DATA followed by content").await;
    assert_spool_empty(&server);
}
