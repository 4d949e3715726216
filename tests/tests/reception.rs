//! Reception over real TCP: greeting and EHLO extensions, the basic commands, who may send (relay
//! networks, AUTH, sender-domain isolation), command sequencing, pipelining, CHUNKING, the trace
//! fields and campaign taken from the message, 8BITMIME and SMTPUTF8.

use penguin_config::ByteSize;
use penguin_tests::*;

/// A server that lets loopback relay, with its temporary directory (kept alive by the caller).
async fn relay_server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_relay_server(test_config(dir.path())).await;
    (dir, server)
}

/// A connected client that said EHLO.
async fn ehlo_client(server: &TestServer) -> SmtpClient {
    let mut client = server.connect().await;
    assert_eq!(client.ehlo().await.code, 250);
    client
}

/// The queued id of a final reply, which must be `250 2.0.0 Ok: queued as <ID>`.
fn queued_id(reply: &Reply) -> String {
    assert_reply(reply, 250, "2.0.0", "end of message");
    reply
        .queued_id()
        .unwrap_or_else(|| panic!("not `Ok: queued as`: {reply}"))
}

/// The envelope of the queued message `id`.
fn envelope(server: &TestServer, id: &str) -> penguin_queue::Envelope {
    let all = queued(&server.spool_path);
    all.into_iter()
        .find(|(queued, _)| queued == id)
        .unwrap_or_else(|| panic!("{id} not in the spool"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_and_ehlo_list_the_extensions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.smtp.max_message_size = ByteSize(10_485_760);
    let server = TestServer::start(config).await;
    let mut client = server.connect().await;
    assert_eq!(
        client.greeting,
        Reply {
            code: 220,
            lines: vec!["mta.test ESMTP penguin-mta".into()]
        }
    );
    let ehlo = client.ehlo().await;
    let expected = [
        "mta.test",
        "PIPELINING",
        "SIZE 10485760",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "AUTH PLAIN LOGIN",
    ];
    assert_eq!(ehlo.code, 250);
    assert_eq!(
        ehlo.lines, expected,
        "no TLS configured: no STARTTLS; loopback may AUTH in clear"
    );
    client.expect("QUIT", 221, "2.0.0").await;
}

/// With the default auth_cleartext_networks (loopback) AUTH is offered beside STARTTLS before TLS;
/// without them AUTH waits for TLS (tests/tests/auth_tls.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_clients_are_offered_starttls_and_auth_in_the_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    let _certs = enable_tls(&mut config, dir.path());
    let server = TestServer::start(config).await;
    let ehlo = server.connect().await.ehlo().await;
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo}");
    assert!(ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{ehlo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_commands_answer_their_codes_and_quit_closes() {
    let (_dir, server) = relay_server().await;
    let mut client = server.connect().await;
    let helo = client.cmd("HELO client.test").await;
    assert_eq!(
        helo,
        Reply {
            code: 250,
            lines: vec!["mta.test".into()]
        }
    );
    let table: &[(&str, u16, &str)] = &[
        ("NOOP", 250, "2.0.0"),
        ("NOOP with an argument", 250, "2.0.0"),
        ("RSET", 250, "2.0.0"),
        ("VRFY bob", 252, "2.5.2"),
        ("HELP", 214, "2.0.0"),
        ("EXPN staff", 502, "5.5.1"),
        ("FROBNICATE now", 500, "5.5.2"),
        ("EHLO client.test", 250, ""),
    ];
    for (command, code, enhanced) in table {
        client.expect(command, *code, enhanced).await;
    }
    let quit = client.expect("QUIT", 221, "2.0.0").await;
    assert_eq!(quit.text(), "2.0.0 Bye");
    client.expect_closed("after QUIT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_relay_queues_any_sender_and_the_null_sender_as_tenant_default() {
    let (_dir, server) = relay_server().await;
    let mut client = ehlo_client(&server).await;
    let mut ids = Vec::new();
    for sender in ["someone@anything.example", "news@globex.example", ""] {
        let content = simple_message("x@y.example", "bob@example.com", "relay");
        let reply = client.send_message(sender, &["bob@example.com"], &content).await;
        ids.push((queued_id(&reply), sender));
    }
    for (id, sender) in ids {
        let envelope = envelope(&server, &id);
        assert_eq!(envelope.tenant, "default", "{id}");
        assert_eq!(envelope.sender, sender, "{id}");
        let recipients: Vec<&str> = envelope.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(recipients, ["bob@example.com"]);
    }
    assert_eq!(queued(&server.spool_path).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_relay_or_auth_mail_is_refused_530() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(test_config(dir.path())).await;
    let mut client = ehlo_client(&server).await;
    for sender in ["someone@anything.example", ""] {
        client
            .expect(&format!("MAIL FROM:<{sender}>"), 530, "5.7.0")
            .await;
    }
    client.expect("RCPT TO:<bob@example.com>", 503, "5.5.1").await;
    client.expect("DATA", 503, "5.5.1").await;
    assert!(queued(&server.spool_path).is_empty(), "never an open relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_may_only_use_its_own_sender_domains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.tenant.push(ACME.config());
    config.tenant.push(GLOBEX.config());
    let server = TestServer::start(config).await;
    let mut ids = Vec::new();
    for (tenant, other) in [(&ACME, &GLOBEX), (&GLOBEX, &ACME)] {
        let mut client = ehlo_client(&server).await;
        client
            .expect(&format!("AUTH PLAIN {}", tenant.plain_response()), 235, "2.7.0")
            .await;
        let foreign = format!("MAIL FROM:<news@{}>", other.sender_domains[0]);
        let refused = client.expect(&foreign, 553, "5.7.1").await;
        assert!(refused.text().contains(tenant.name), "{refused}");
        // The null sender is for the relay tenant only: a tenant cannot hide its domain behind it.
        client.expect("MAIL FROM:<>", 553, "5.7.1").await;
        let own = format!("news@{}", tenant.sender_domains[0]);
        let reply = client
            .send_message(
                &own,
                &["bob@example.com"],
                &simple_message(&own, "bob@example.com", "x"),
            )
            .await;
        ids.push((queued_id(&reply), tenant.name, own));
        client.expect("QUIT", 221, "2.0.0").await;
    }
    for (id, tenant, sender) in &ids {
        let envelope = envelope(&server, id);
        assert_eq!(
            (envelope.tenant.as_str(), envelope.sender.as_str()),
            (*tenant, sender.as_str())
        );
    }
    assert_eq!(
        queued(&server.spool_path).len(),
        2,
        "nothing queued for the refused senders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_out_of_sequence_get_503() {
    let (_dir, server) = relay_server().await;
    let mut client = server.connect().await;
    let table: &[(&str, u16, &str)] = &[
        ("MAIL FROM:<a@x.example>", 503, "5.5.1"),
        ("EHLO client.test", 250, ""),
        ("RCPT TO:<bob@example.com>", 503, "5.5.1"),
        ("DATA", 503, "5.5.1"),
        ("BDAT 0 LAST", 503, "5.5.1"),
        ("MAIL FROM:<a@x.example>", 250, "2.1.0"),
        ("DATA", 503, "5.5.1"),
        ("MAIL FROM:<b@x.example>", 503, "5.5.1"),
        ("RCPT TO:<bob@example.com>", 250, "2.1.5"),
        ("RSET", 250, "2.0.0"),
        ("RCPT TO:<bob@example.com>", 503, "5.5.1"),
    ];
    for (command, code, enhanced) in table {
        client.expect(command, *code, enhanced).await;
    }
    assert!(queued(&server.spool_path).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_group_is_answered_in_order() {
    let (_dir, server) = relay_server().await;
    let mut client = ehlo_client(&server).await;
    client
        .send_raw(
            b"MAIL FROM:<a@x.example>\r\nRCPT TO:<one@example.com>\r\nRCPT TO:<nodomain>\r\n\
              RCPT TO:<two@example.com>\r\nDATA\r\n",
        )
        .await;
    let replies = client.replies(5).await;
    let expected = [
        (250, "2.1.0"),
        (250, "2.1.5"),
        (501, "5.1.3"),
        (250, "2.1.5"),
        (354, ""),
    ];
    for (reply, (code, enhanced)) in replies.iter().zip(expected) {
        assert_reply(reply, code, enhanced, "pipelined group");
    }
    client.send_raw(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n").await;
    let id = queued_id(&client.reply().await);
    let recipients: Vec<String> = envelope(&server, &id)
        .recipients
        .into_iter()
        .map(|r| r.address)
        .collect();
    assert_eq!(recipients, ["one@example.com", "two@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pipelined_after_the_final_dot_are_executed_in_order() {
    let (_dir, server) = relay_server().await;
    let mut client = ehlo_client(&server).await;
    for command in ["MAIL FROM:<a@x.example>", "RCPT TO:<first@example.com>", "DATA"] {
        assert!(client.cmd(command).await.code < 400, "{command}");
    }
    client
        .send_raw(
            b"Subject: one\r\n\r\nfirst\r\n.\r\nRSET\r\nMAIL FROM:<b@x.example>\r\n\
              RCPT TO:<second@example.com>\r\nDATA\r\n",
        )
        .await;
    let replies = client.replies(5).await;
    let first = queued_id(&replies[0]);
    let expected = [(250, "2.0.0"), (250, "2.1.0"), (250, "2.1.5"), (354, "")];
    for (reply, (code, enhanced)) in replies[1..].iter().zip(expected) {
        assert_reply(reply, code, enhanced, "pipelined after the dot");
    }
    client.send_raw(b"Subject: two\r\n\r\nsecond\r\n.\r\n").await;
    let second = queued_id(&client.reply().await);
    for (id, sender, recipient) in [
        (first, "a@x.example", "first@example.com"),
        (second, "b@x.example", "second@example.com"),
    ] {
        let envelope = envelope(&server, &id);
        assert_eq!(envelope.sender, sender);
        assert_eq!(envelope.recipients.len(), 1);
        assert_eq!(envelope.recipients[0].address, recipient);
    }
}

/// Splits a stored body into our prefix (Received, Message-ID, Date) and the client's content,
/// checking the prefix is exactly those fields.
fn split_prefix<'a>(body: &'a [u8], content: &[u8]) -> &'a [u8] {
    assert!(
        body.ends_with(content),
        "stored body does not end with the exact content: {}",
        String::from_utf8_lossy(body)
    );
    let prefix = &body[..body.len() - content.len()];
    let text = String::from_utf8_lossy(prefix);
    assert!(
        text.starts_with("Received: from client.test ([127.0.0.1])\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nMessage-ID: <") && text.contains("\r\nDate: ") && text.ends_with("\r\n"),
        "{text}"
    );
    prefix
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_chunks_form_one_message_with_the_exact_bytes() {
    let (_dir, server) = relay_server().await;
    let mut client = ehlo_client(&server).await;
    client.expect("MAIL FROM:<a@x.example>", 250, "2.1.0").await;
    client.expect("RCPT TO:<bob@example.com>", 250, "2.1.5").await;
    // A CRLF split across chunks is a line ending, not a bare CR + bare LF; dots are not unstuffed.
    let chunks: [&[u8]; 3] = [
        b"Subject: chunked\r\n\r\nfirst part\r",
        b"\n.leading dot\r\n",
        b"last part\r\n",
    ];
    let first = client.bdat(chunks[0], false).await;
    assert_reply(&first, 250, "2.0.0", "BDAT 1");
    assert_eq!(
        first.text(),
        format!("2.0.0 Ok: {} octets received", chunks[0].len())
    );
    assert_reply(&client.bdat(chunks[1], false).await, 250, "2.0.0", "BDAT 2");
    let id = queued_id(&client.bdat(chunks[2], true).await);
    let body = stored_body(&server.spool_path, &id);
    split_prefix(&body, &chunks.concat());

    // BDAT 0 LAST ends a message after non-empty chunks.
    client.expect("MAIL FROM:<a@x.example>", 250, "2.1.0").await;
    client.expect("RCPT TO:<bob@example.com>", 250, "2.1.5").await;
    let content = b"Subject: zero last\r\n\r\nbody\r\n";
    assert_reply(&client.bdat(content, false).await, 250, "2.0.0", "BDAT");
    let id = queued_id(&client.bdat(b"", true).await);
    split_prefix(&stored_body(&server.spool_path, &id), content);
    assert_eq!(queued(&server.spool_path).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_without_mail_consumes_the_chunk_and_answers_503() {
    let (_dir, server) = relay_server().await;
    let mut client = ehlo_client(&server).await;
    // If these chunk bytes were read as commands, QUIT would close the session.
    let refused = client.bdat(b"QUIT\r\n", false).await;
    assert_reply(&refused, 503, "5.5.1", "BDAT without MAIL");
    assert_reply(
        &client.bdat(b"QUIT\r\n", true).await,
        503,
        "5.5.1",
        "BDAT LAST without MAIL",
    );
    client.expect("NOOP", 250, "2.0.0").await;
    assert!(queued(&server.spool_path).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_bytes_that_look_like_commands_are_data() {
    let (_dir, server) = relay_server().await;
    let mut client = ehlo_client(&server).await;
    client.expect("MAIL FROM:<a@x.example>", 250, "2.1.0").await;
    client.expect("RCPT TO:<bob@example.com>", 250, "2.1.5").await;
    let content =
        b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<evil@evil.example>\r\nRCPT TO:<victim@example.com>\r\n";
    let id = queued_id(&client.bdat(content, true).await);
    // The next reply answers our NOOP: no reply was produced for the "commands" inside the chunk.
    client.expect("NOOP", 250, "2.0.0").await;
    client.expect("RCPT TO:<victim@example.com>", 503, "5.5.1").await;
    split_prefix(&stored_body(&server.spool_path, &id), content);
    let all = queued(&server.spool_path);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.sender, "a@x.example");
    assert_eq!(all[0].1.recipients[0].address, "bob@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_fields_are_prepended_and_message_id_and_date_only_when_missing() {
    let (_dir, server) = relay_server().await;
    let mut client = ehlo_client(&server).await;
    let bare = "Subject: no ids\r\n\r\nbody\r\n";
    let id = queued_id(
        &client
            .send_message("a@x.example", &["bob@example.com"], bare)
            .await,
    );
    let body = String::from_utf8(stored_body(&server.spool_path, &id)).expect("utf-8");
    let received = format!(
        "Received: from client.test ([127.0.0.1])\r\n\tby mta.test (penguin-mta) with ESMTP id {id}\r\n"
    );
    assert!(body.starts_with(&received), "{body}");
    assert!(body.contains("\r\n\tfor <bob@example.com>;\r\n"), "{body}");
    assert!(
        body.contains(&format!("\r\nMessage-ID: <{id}@mta.test>\r\nDate: ")),
        "{body}"
    );
    assert!(body.ends_with(bare), "{body}");

    let complete =
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <own@x.example>\r\nSubject: ids\r\n\r\nbody\r\n";
    let id = queued_id(
        &client
            .send_message("a@x.example", &["bob@example.com"], complete)
            .await,
    );
    let body = String::from_utf8(stored_body(&server.spool_path, &id)).expect("utf-8");
    assert!(
        body.starts_with("Received: from client.test ([127.0.0.1])\r\n"),
        "{body}"
    );
    assert_eq!(body.matches("Message-ID:").count(), 1, "{body}");
    assert_eq!(
        body.matches("\r\nDate:").count() + usize::from(body.starts_with("Date:")),
        1,
        "{body}"
    );
    assert!(body.ends_with(complete), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_campaign_id_sets_the_campaign_and_invalid_ones_are_refused() {
    let (_dir, server) = relay_server().await;
    let mut client = ehlo_client(&server).await;
    let longest = "c".repeat(128);
    let table: Vec<(String, Option<&str>)> = vec![
        (String::new(), Some("default")),
        ("X-Campaign-ID: spring-2026\r\n".into(), Some("spring-2026")),
        (format!("X-Campaign-ID: {longest}\r\n"), Some(&longest)),
        ("X-Campaign-ID: has space\r\n".into(), None),
        (format!("X-Campaign-ID: {}\r\n", "c".repeat(129)), None),
    ];
    let mut accepted = 0;
    for (header, expected) in &table {
        let content = format!("{header}Subject: campaign\r\n\r\nbody\r\n");
        let reply = client
            .send_message("a@x.example", &["bob@example.com"], &content)
            .await;
        match expected {
            Some(campaign) => {
                accepted += 1;
                assert_eq!(
                    envelope(&server, &queued_id(&reply)).campaign,
                    *campaign,
                    "{header:?}"
                );
            }
            None => assert_reply(&reply, 550, "5.6.0", header),
        }
    }
    client.expect("NOOP", 250, "2.0.0").await;
    assert_eq!(
        queued(&server.spool_path).len(),
        accepted,
        "refused messages are not queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bit_mime_marks_the_envelope() {
    let (_dir, server) = relay_server().await;
    let mut client = ehlo_client(&server).await;
    let eight_bit =
        "Subject: caf\u{e9}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nd\u{e9}j\u{e0} vu\r\n";
    let reply = client
        .send_message_with(
            "MAIL FROM:<a@x.example> BODY=8BITMIME",
            &["bob@example.com"],
            eight_bit,
        )
        .await;
    let id = queued_id(&reply);
    assert!(envelope(&server, &id).eight_bit);
    assert!(stored_body(&server.spool_path, &id).ends_with(eight_bit.as_bytes()));

    let seven_bit = "Subject: plain\r\n\r\nplain ascii\r\n";
    let reply = client
        .send_message_with(
            "MAIL FROM:<a@x.example> BODY=7BIT",
            &["bob@example.com"],
            seven_bit,
        )
        .await;
    assert!(!envelope(&server, &queued_id(&reply)).eight_bit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_addresses_need_the_smtputf8_parameter() {
    let (_dir, server) = relay_server().await;
    let mut client = ehlo_client(&server).await;
    client
        .expect("MAIL FROM:<j\u{f6}rg@example.com>", 553, "5.6.7")
        .await;
    client.expect("MAIL FROM:<a@x.example>", 250, "2.1.0").await;
    client
        .expect("RCPT TO:<zo\u{eb}@example.com>", 553, "5.6.7")
        .await;
    client.expect("RSET", 250, "2.0.0").await;
    let reply = client
        .send_message_with(
            "MAIL FROM:<j\u{f6}rg@example.com> SMTPUTF8",
            &["zo\u{eb}@example.com"],
            "Subject: utf8\r\n\r\nhi\r\n",
        )
        .await;
    let envelope = envelope(&server, &queued_id(&reply));
    assert!(envelope.smtputf8);
    assert_eq!(envelope.sender, "j\u{f6}rg@example.com");
    assert_eq!(envelope.recipients[0].address, "zo\u{eb}@example.com");
    assert_eq!(queued(&server.spool_path).len(), 1);
}
