use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::smtp::auth::RELAY_TENANT;

/// Disk space switch for the session under test.
struct Gauge(AtomicBool);

impl SpoolGauge for Gauge {
    fn has_free_space(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `gone@example.com` unsubscribed from acme; `broken@example.com` cannot be looked up.
    fn suppression_reason(&self, tenant: &str, address: &str) -> Result<Option<&'static str>, String> {
        match (tenant, address) {
            ("acme", "gone@example.com") => Ok(Some("unsubscribe")),
            (_, "broken@example.com") => Err("disk error".into()),
            _ => Ok(None),
        }
    }
}

/// A session plus the context to drive it like the connection driver does.
struct Harness {
    session: Session,
    gauge: Arc<Gauge>,
    /// Password that `Verify` accepts, and the tenant it yields.
    acme: Arc<Tenant>,
}

fn acme() -> Arc<Tenant> {
    Arc::new(Tenant::new("acme", Some(["acme.example".to_string()].into())))
}

fn harness(ip: &str, relay: bool, tls_available: bool) -> Harness {
    let gauge = Arc::new(Gauge(AtomicBool::new(true)));
    let shared = Arc::new(SessionShared {
        params: SessionParams {
            hostname: "mta.example.test".into(),
            max_message_size: 1000,
            max_recipients: 3,
            max_errors: 10,
            tls_available,
        },
        ids: IdGenerator::new(),
        gauge: gauge.clone(),
    });
    let relay_tenant = relay.then(|| Arc::new(Tenant::new(RELAY_TENANT, None)));
    let ip: IpAddr = ip.parse().expect("ip");
    let peer = Peer {
        ip,
        relay_tenant,
        cleartext_auth: ip.is_loopback(),
    };
    Harness {
        session: Session::new(shared, peer),
        gauge,
        acme: acme(),
    }
}

const NOW: Duration = Duration::from_secs(1_795_638_425);

impl Harness {
    /// Sends one line (CRLF added) and returns the final reply text, running Verify/Enqueue like
    /// the driver would (password "secret" is right; enqueue succeeds).
    fn send(&mut self, line: &str) -> String {
        let step = self
            .session
            .on_line(format!("{line}\r\n").as_bytes(), false, UNIX_EPOCH + NOW);
        self.resolve(step)
    }

    fn resolve(&mut self, step: Step) -> String {
        match step {
            Step::Reply(reply) | Step::StartTls(reply) => reply.to_string(),
            Step::Close(reply) => format!("{reply} [close]"),
            Step::Verify(credentials) => {
                let outcome = if credentials.username == "acme" && credentials.password == b"secret" {
                    AuthOutcome::Success(self.acme.clone())
                } else {
                    AuthOutcome::Failure
                };
                let step = self.session.on_verified(outcome);
                self.resolve(step)
            }
            Step::Enqueue(accepted) => {
                let id = accepted.message.id;
                let step = self.session.on_enqueued(id, Ok(()));
                self.resolve(step)
            }
            Step::ReadMore => "[read more]".into(),
            Step::Suppressed(suppressed) => format!("{} [suppressed]", suppressed.reply),
        }
    }

    /// Sends DATA content bytes; returns the reply once the message ended.
    fn data(&mut self, wire: &[u8]) -> Option<String> {
        let (consumed, step) = self.session.feed_data(wire, UNIX_EPOCH + NOW);
        assert_eq!(consumed, wire.len(), "the test sends exactly one message");
        step.map(|step| self.resolve(step))
    }
}

/// Runs (line, expected reply prefix) pairs.
fn script(h: &mut Harness, steps: &[(&str, &str)]) {
    for (line, expected) in steps {
        let reply = h.send(line);
        assert!(
            reply.starts_with(expected),
            "{line:?}: expected {expected:?}, got {reply:?}"
        );
    }
}

#[test]
fn relay_client_sends_a_message() {
    let mut h = harness("127.0.0.1", true, false);
    assert_eq!(
        h.session.greeting().to_string(),
        "220 mta.example.test ESMTP penguin-mta"
    );
    script(
        &mut h,
        &[
            ("EHLO client.example", "250-mta.example.test"),
            ("MAIL FROM:<anyone@anywhere.example> SIZE=100", "250 2.1.0"),
            ("RCPT TO:<bob@example.com>", "250 2.1.5"),
            ("DATA", "354 "),
        ],
    );
    let reply = h.data(b"Subject: hi\r\n\r\nhello\r\n.\r\n").expect("complete");
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert!(!h.session.in_transaction());
}

#[test]
fn ehlo_advertises_by_context() {
    let mut h = harness("127.0.0.1", true, true);
    let loopback = h.send("EHLO x");
    for extension in [
        "PIPELINING",
        "SIZE 1000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "STARTTLS",
        "AUTH PLAIN LOGIN",
    ] {
        assert!(loopback.contains(extension), "{extension} in {loopback}");
    }
    let mut remote = harness("192.0.2.1", false, true);
    let ehlo = remote.send("EHLO x");
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "no AUTH before TLS remotely: {ehlo}"
    );
    remote.session.on_tls_established(TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "X".into(),
    });
    let ehlo = remote.send("EHLO x");
    assert!(
        !ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"),
        "{ehlo}"
    );
}

#[test]
fn remote_client_without_auth_is_never_a_relay() {
    let mut h = harness("192.0.2.1", false, true);
    script(
        &mut h,
        &[
            ("EHLO x", "250"),
            ("MAIL FROM:<a@acme.example>", "530 5.7.0"),
            ("AUTH PLAIN AGFjbWUAc2VjcmV0", "538 5.7.11"),
        ],
    );
}

#[test]
fn auth_then_sender_domains_are_enforced() {
    let mut h = harness("127.0.0.1", false, false);
    script(
        &mut h,
        &[
            ("EHLO x", "250"),
            ("AUTH PLAIN AGFjbWUAd3Jvbmc=", "535 5.7.8"),
            ("AUTH PLAIN AGFjbWUAc2VjcmV0", "235 2.7.0"),
            ("AUTH PLAIN AGFjbWUAc2VjcmV0", "503 5.5.1"),
            ("MAIL FROM:<x@evil.example>", "553 5.7.1"),
            ("MAIL FROM:<>", "553 5.7.1"),
            ("MAIL FROM:<news@ACME.example>", "250 2.1.0"),
        ],
    );
}

#[test]
fn auth_login_and_plain_exchanges() {
    let mut h = harness("127.0.0.1", false, false);
    script(
        &mut h,
        &[
            ("EHLO x", "250"),
            ("AUTH LOGIN", "334 VXNlcm5hbWU6"),
            ("YWNtZQ==", "334 UGFzc3dvcmQ6"),
            ("c2VjcmV0", "235 2.7.0"),
        ],
    );
    let mut h = harness("127.0.0.1", false, false);
    script(
        &mut h,
        &[
            ("EHLO x", "250"),
            ("AUTH PLAIN", "334"),
            ("*", "501 5.7.0"),
            ("AUTH PLAIN", "334"),
            ("!!!", "501 5.5.2"),
            ("AUTH CRAM-MD5", "504 5.5.4"),
            ("AUTH LOGIN YWNtZQ==", "334 UGFzc3dvcmQ6"),
            ("c2VjcmV0", "235"),
        ],
    );
}

#[test]
fn sequence_and_limit_replies() {
    let mut h = harness("127.0.0.1", true, false);
    script(
        &mut h,
        &[
            ("MAIL FROM:<a@b.example>", "503 5.5.1"),
            ("HELO x", "250 mta.example.test"),
            ("RCPT TO:<a@b.example>", "503 5.5.1"),
            ("DATA", "503 5.5.1"),
            ("MAIL FROM:<a@b.example> SIZE=1001", "552 5.3.4"),
            ("MAIL FROM:<a@b.example>", "250"),
            ("MAIL FROM:<a@b.example>", "503 5.5.1"),
        ],
    );
    let mut h = harness("127.0.0.1", true, false);
    script(
        &mut h,
        &[
            ("EHLO x", "250"),
            ("MAIL FROM:<a@b.example>", "250"),
            ("DATA", "503 5.5.1"),
            ("RCPT TO:<postmaster>", "501 5.1.3"),
            ("RCPT TO:<1@c.example>", "250"),
            ("RCPT TO:<2@c.example>", "250"),
            ("RCPT TO:<3@c.example>", "250"),
            ("RCPT TO:<4@c.example>", "452 4.5.3"),
            ("RSET", "250 2.0.0"),
            ("RCPT TO:<1@c.example>", "503"),
            ("VRFY bob", "252"),
            ("HELP", "214"),
            ("EXPN list", "502 5.5.1"),
            ("FOO", "500 5.5.2"),
            ("NOOP", "250 2.0.0"),
            ("QUIT", "221 2.0.0 Bye [close]"),
        ],
    );
}

#[test]
fn too_many_errors_closes() {
    let mut h = harness("127.0.0.1", true, false);
    for _ in 0..9 {
        assert!(h.send("FOO").starts_with("500"));
    }
    assert_eq!(
        h.send("FOO"),
        "421 4.7.0 mta.example.test Error: too many errors [close]"
    );
}

#[test]
fn full_disk_refuses_mail_with_452() {
    let mut h = harness("127.0.0.1", true, false);
    h.gauge.0.store(false, Ordering::Relaxed);
    script(
        &mut h,
        &[("EHLO x", "250"), ("MAIL FROM:<a@b.example>", "452 4.3.1")],
    );
    let step = h
        .session
        .on_enqueued(MessageId([0; 12]), Err(SpoolError::NoSpace));
    assert!(h.resolve(step).starts_with("452 4.3.1"));
    let step = h
        .session
        .on_enqueued(MessageId([0; 12]), Err(SpoolError::Storage("io".into())));
    assert!(h.resolve(step).starts_with("451 4.3.0"));
}

#[test]
fn pipelining_rules() {
    // Before EHLO's answer nothing may be pipelined.
    let mut h = harness("127.0.0.1", true, false);
    let step = h.session.on_line(b"EHLO x\r\n", true, UNIX_EPOCH + NOW);
    assert_eq!(
        h.resolve(step),
        "554 5.5.0 Error: SMTP protocol synchronization [close]"
    );
    // After EHLO, MAIL/RCPT may be pipelined but DATA must end the group.
    let mut h = harness("127.0.0.1", true, false);
    h.send("EHLO x");
    let step = h
        .session
        .on_line(b"MAIL FROM:<a@b.example>\r\n", true, UNIX_EPOCH + NOW);
    assert!(h.resolve(step).starts_with("250"));
    let step = h
        .session
        .on_line(b"RCPT TO:<c@d.example>\r\n", true, UNIX_EPOCH + NOW);
    assert!(h.resolve(step).starts_with("250"));
    let step = h.session.on_line(b"DATA\r\n", true, UNIX_EPOCH + NOW);
    assert!(h.resolve(step).contains("[close]"));
    // HELO does not allow pipelining at all.
    let mut h = harness("127.0.0.1", true, false);
    h.send("HELO x");
    let step = h.session.on_line(b"NOOP\r\n", true, UNIX_EPOCH + NOW);
    assert!(h.resolve(step).starts_with("554 5.5.0"));
}

#[test]
fn bdat_chunks_make_one_message() {
    let mut h = harness("127.0.0.1", true, false);
    script(
        &mut h,
        &[
            ("EHLO x", "250"),
            ("MAIL FROM:<a@b.example>", "250"),
            ("RCPT TO:<c@d.example>", "250"),
        ],
    );
    assert_eq!(h.send("BDAT 13"), "[read more]");
    assert_eq!(h.session.read_mode(), ReadMode::Chunk(13));
    let (used, step) = h.session.feed_chunk(b"Subject: hi\r\nEXTRA", UNIX_EPOCH + NOW);
    assert_eq!(used, 13);
    assert_eq!(
        h.resolve(step.expect("chunk done")),
        "250 2.0.0 Ok: 13 octets received"
    );
    h.send("BDAT 9 LAST");
    let (_, step) = h.session.feed_chunk(b"\r\nhello\r\n", UNIX_EPOCH + NOW);
    assert!(
        h.resolve(step.expect("done"))
            .starts_with("250 2.0.0 Ok: queued as ")
    );
}

#[test]
fn bdat_without_transaction_consumes_the_chunk_then_refuses() {
    let mut h = harness("127.0.0.1", true, false);
    h.send("EHLO x");
    assert_eq!(h.send("BDAT 4 LAST"), "[read more]");
    let (used, step) = h.session.feed_chunk(b"MAIL", UNIX_EPOCH + NOW);
    assert_eq!(used, 4);
    assert!(h.resolve(step.expect("done")).starts_with("503 5.5.1"));
    assert_eq!(h.session.read_mode(), ReadMode::Line(MAX_COMMAND_LINE));
}

#[test]
fn bdat_over_the_size_limit_is_552() {
    let mut h = harness("127.0.0.1", true, false);
    script(
        &mut h,
        &[
            ("EHLO x", "250"),
            ("MAIL FROM:<a@b.example>", "250"),
            ("RCPT TO:<c@d.example>", "250"),
        ],
    );
    h.send("BDAT 1200 LAST");
    let (_, step) = h.session.feed_chunk(&[b'a'; 1200], UNIX_EPOCH + NOW);
    assert!(h.resolve(step.expect("done")).starts_with("552 5.3.4"));
}

#[test]
fn message_content_checks() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"Subject: x\r\n\r\nbare\nlf\r\n.\r\n",
            "550 5.6.0 Message rejected: bare",
        ),
        (
            b"X-Campaign-ID: has space\r\n\r\nx\r\n.\r\n",
            "550 5.6.0 Message rejected: X-Campaign-ID",
        ),
        (b"Subject: x\r\n\r\nok\r\n.\r\n", "250 2.0.0 Ok: queued as"),
    ];
    for (wire, expected) in cases {
        let mut h = harness("127.0.0.1", true, false);
        script(
            &mut h,
            &[
                ("EHLO x", "250"),
                ("MAIL FROM:<a@b.example>", "250"),
                ("RCPT TO:<c@d.example>", "250"),
            ],
        );
        h.send("DATA");
        let reply = h.data(wire).expect("complete");
        assert!(reply.starts_with(expected), "{reply}");
    }
    let mut long = b"Subject: x\r\n\r\n".to_vec();
    long.extend_from_slice(&[b'a'; 1001]);
    long.extend_from_slice(b"\r\n.\r\n");
    let mut h = harness("127.0.0.1", true, false);
    h.session.shared = Arc::new(SessionShared {
        params: SessionParams {
            max_message_size: 10_000,
            ..h.session.shared.params.clone()
        },
        ids: IdGenerator::new(),
        gauge: h.gauge.clone(),
    });
    script(
        &mut h,
        &[
            ("EHLO x", "250"),
            ("MAIL FROM:<a@b.example>", "250"),
            ("RCPT TO:<c@d.example>", "250"),
        ],
    );
    h.send("DATA");
    assert!(
        h.data(&long)
            .expect("complete")
            .starts_with("550 5.6.0 Message rejected: line longer")
    );
}

#[test]
fn starttls_resets_the_session() {
    let mut h = harness("192.0.2.9", false, true);
    script(&mut h, &[("EHLO x", "250"), ("STARTTLS", "220 2.0.0")]);
    h.session.on_tls_established(TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "X".into(),
    });
    script(
        &mut h,
        &[
            ("MAIL FROM:<a@acme.example>", "503 5.5.1"),
            ("EHLO x", "250"),
            ("STARTTLS", "503 5.5.1"),
        ],
    );
    let mut plain = harness("192.0.2.9", false, false);
    script(&mut plain, &[("EHLO x", "250"), ("STARTTLS", "502 5.5.1")]);
}

#[test]
fn accepted_message_carries_envelope_and_trace_fields() {
    let mut h = harness("127.0.0.1", false, false);
    script(
        &mut h,
        &[
            ("EHLO client.example", "250"),
            ("AUTH PLAIN AGFjbWUAc2VjcmV0", "235"),
            ("MAIL FROM:<news@acme.example> BODY=8BITMIME", "250"),
            ("RCPT TO:<bob@example.com>", "250"),
            ("DATA", "354"),
        ],
    );
    let (_, step) = h
        .session
        .feed_data(b"X-Campaign-ID: fall\r\n\r\n..dot\r\n.\r\n", UNIX_EPOCH + NOW);
    let Some(Step::Enqueue(accepted)) = step else {
        panic!("expected an enqueue step")
    };
    let envelope = &accepted.message.envelope;
    assert_eq!(
        (envelope.tenant.as_str(), envelope.campaign.as_str()),
        ("acme", "fall")
    );
    assert_eq!(envelope.sender, "news@acme.example");
    assert_eq!(envelope.recipients[0].address, "bob@example.com");
    assert!(envelope.eight_bit);
    let body = String::from_utf8(accepted.message.body.clone()).expect("utf8");
    assert!(
        body.starts_with("Received: from client.example ([127.0.0.1])"),
        "{body}"
    );
    assert!(body.contains("with ESMTPA id ") && body.contains("(authenticated tenant acme)"));
    assert!(body.ends_with("\r\n\r\n.dot\r\n"), "unstuffed: {body}");
    assert!(
        !body.contains("X-Campaign-ID"),
        "the campaign field is not delivered: {body}"
    );
    assert_eq!(envelope.pool, "", "no X-Pool: the tenant's default pool");
    assert_eq!(envelope.size, accepted.message.body.len() as u64);
}

/// The end of DATA of a message with these header lines from tenant acme (pools `default`, `warm`).
fn pool_step(header: &str) -> Option<Step> {
    let mut h = harness("127.0.0.1", false, false);
    h.acme = Arc::new(Tenant {
        pools: vec!["default".into(), "warm".into()],
        ..(*acme()).clone()
    });
    script(
        &mut h,
        &[
            ("EHLO client.example", "250"),
            ("AUTH PLAIN AGFjbWUAc2VjcmV0", "235"),
            ("MAIL FROM:<news@acme.example>", "250"),
            ("RCPT TO:<bob@example.com>", "250"),
            ("DATA", "354"),
        ],
    );
    let content = format!("{header}Subject: hi\r\n\r\nbody\r\n.\r\n");
    h.session.feed_data(content.as_bytes(), UNIX_EPOCH + NOW).1
}

#[test]
fn x_pool_chooses_one_of_the_tenants_pools_and_is_not_delivered() {
    let Some(Step::Enqueue(accepted)) = pool_step("X-Pool: warm\r\nX-Campaign-ID: c9\r\n") else {
        panic!("expected an enqueue step")
    };
    assert_eq!(accepted.message.envelope.pool, "warm");
    assert_eq!(accepted.message.envelope.campaign, "c9");
    let body = String::from_utf8_lossy(&accepted.message.body).into_owned();
    assert!(
        !body.contains("X-Pool") && !body.contains("X-Campaign-ID"),
        "{body}"
    );
    assert!(body.contains("Subject: hi\r\n"), "{body}");
}

#[test]
fn x_pool_naming_another_pool_is_refused_with_550_naming_it() {
    for header in ["X-Pool: cold\r\n", "X-Pool: not a pool\r\n"] {
        let Some(Step::Reply(reply)) = pool_step(header) else {
            panic!("{header}: expected a refusal")
        };
        let text = reply.to_string();
        assert!(text.starts_with("550 5.7.1 "), "{header}: {text}");
        assert!(
            text.contains("cold") || text.contains("not a pool"),
            "{header}: {text}"
        );
    }
}

#[test]
fn suppressed_recipients_are_refused_per_tenant() {
    let mut h = harness("192.0.2.7", false, true);
    h.session.on_tls_established(TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    });
    script(
        &mut h,
        &[
            ("EHLO x", "250"),
            ("AUTH PLAIN AGFjbWUAc2VjcmV0", "235"),
            ("MAIL FROM:<news@acme.example>", "250 2.1.0"),
            (
                "RCPT TO:<gone@example.com>",
                "550 5.7.1 Recipient <gone@example.com> is on the suppression list of tenant acme (unsubscribe)",
            ),
            ("RCPT TO:<broken@example.com>", "451 4.3.0"),
            ("RCPT TO:<kept@example.com>", "250 2.1.5"),
            ("DATA", "354"),
        ],
    );
    let reply = h.data(b"Subject: hi\r\n\r\nhello\r\n.\r\n").expect("complete");
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
}

#[test]
fn suppression_lists_belong_to_one_tenant() {
    let mut h = harness("127.0.0.1", true, false);
    script(
        &mut h,
        &[
            ("EHLO x", "250"),
            ("MAIL FROM:<a@b.example>", "250 2.1.0"),
            ("RCPT TO:<gone@example.com>", "250 2.1.5"),
        ],
    );
}
