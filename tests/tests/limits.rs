//! Reception limits over real TCP: message size (SIZE, DATA, BDAT), recipients, command and text line
//! lengths, idle and DATA timeouts, connection caps, the error limit and the free-space guard.

use penguin_config::{ByteSize, Config, HumanDuration};
use penguin_tests::*;

/// The size limit used by the size tests.
const MAX_SIZE: usize = 10_000;

/// Starts a relaying server on the test config as changed by `adjust`.
async fn server_with(adjust: impl FnOnce(&mut Config)) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    adjust(&mut config);
    let server = start_relay_server(config).await;
    (dir, server)
}

/// A connected client that said EHLO.
async fn ehlo_client(server: &TestServer) -> SmtpClient {
    let mut client = server.connect().await;
    assert_eq!(client.greeting.code, 220, "{}", client.greeting);
    assert_eq!(client.ehlo().await.code, 250);
    client
}

/// MAIL and one RCPT, both accepted.
async fn open_transaction(client: &mut SmtpClient) {
    client.expect("MAIL FROM:<a@x.example>", 250, "2.1.0").await;
    client.expect("RCPT TO:<bob@example.com>", 250, "2.1.5").await;
}

/// Message content of exactly `len` bytes (a multiple of 100): lines of 98 octets and CRLF.
fn content_of_len(len: usize) -> String {
    assert_eq!(len % 100, 0);
    format!("{}\r\n", "x".repeat(98)).repeat(len / 100)
}

/// Asserts the spool holds exactly `count` messages.
fn assert_queued(server: &TestServer, count: usize) {
    let all = queued(&server.spool_path);
    assert_eq!(
        all.len(),
        count,
        "queued: {:?}",
        all.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_parameter_over_the_maximum_is_refused_at_mail() {
    let (_dir, server) = server_with(|c| c.smtp.max_message_size = ByteSize(MAX_SIZE as u64)).await;
    let mut client = ehlo_client(&server).await;
    let refused = client
        .expect(
            &format!("MAIL FROM:<a@x.example> SIZE={}", MAX_SIZE + 1),
            552,
            "5.3.4",
        )
        .await;
    assert_eq!(refused.text(), "5.3.4 Error: message size exceeds fixed limit");
    client.expect("RCPT TO:<bob@example.com>", 503, "5.5.1").await;
    client
        .expect(&format!("MAIL FROM:<a@x.example> SIZE={MAX_SIZE}"), 250, "2.1.0")
        .await;
    assert_queued(&server, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_over_the_maximum_is_consumed_and_refused_after_the_dot() {
    let (_dir, server) = server_with(|c| c.smtp.max_message_size = ByteSize(MAX_SIZE as u64)).await;
    let mut client = ehlo_client(&server).await;
    let fits = client
        .send_message("a@x.example", &["bob@example.com"], &content_of_len(MAX_SIZE))
        .await;
    assert_reply(&fits, 250, "2.0.0", "content of exactly the maximum");
    // Over the limit: if the content were not consumed, its lines would be answered as commands.
    let over = client
        .send_message(
            "a@x.example",
            &["bob@example.com"],
            &content_of_len(MAX_SIZE + 5_000),
        )
        .await;
    assert_reply(&over, 552, "5.3.4", "content over the maximum");
    client.expect("NOOP", 250, "2.0.0").await;
    client.expect("RCPT TO:<bob@example.com>", 503, "5.5.1").await;
    assert_queued(&server, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_over_the_maximum_is_refused() {
    let (_dir, server) = server_with(|c| c.smtp.max_message_size = ByteSize(MAX_SIZE as u64)).await;
    let mut client = ehlo_client(&server).await;
    open_transaction(&mut client).await;
    let over = content_of_len(MAX_SIZE + 100);
    assert_reply(
        &client.bdat(over.as_bytes(), true).await,
        552,
        "5.3.4",
        "one LAST chunk over the maximum",
    );
    client.expect("NOOP", 250, "2.0.0").await;

    open_transaction(&mut client).await;
    let half = content_of_len(6_000);
    assert_reply(
        &client.bdat(half.as_bytes(), false).await,
        250,
        "2.0.0",
        "first chunk",
    );
    assert_reply(
        &client.bdat(half.as_bytes(), false).await,
        552,
        "5.3.4",
        "second chunk crosses the maximum",
    );
    // The transaction is over: its LAST chunk has no MAIL any more.
    assert_reply(
        &client.bdat(b"end\r\n", true).await,
        503,
        "5.5.1",
        "LAST after the refusal",
    );
    client.expect("NOOP", 250, "2.0.0").await;
    assert_queued(&server, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_beyond_the_maximum_get_452_and_the_others_are_queued() {
    let (_dir, server) = server_with(|c| c.smtp.max_recipients = 3).await;
    let mut client = ehlo_client(&server).await;
    client.expect("MAIL FROM:<a@x.example>", 250, "2.1.0").await;
    for n in 1..=3 {
        client
            .expect(&format!("RCPT TO:<r{n}@example.com>"), 250, "2.1.5")
            .await;
    }
    for n in 4..=5 {
        let refused = client
            .expect(&format!("RCPT TO:<r{n}@example.com>"), 452, "4.5.3")
            .await;
        assert_eq!(refused.text(), "4.5.3 Error: too many recipients");
    }
    client.expect("DATA", 354, "").await;
    client.send_raw(b"Subject: many\r\n\r\nbody\r\n.\r\n").await;
    let id = client.reply().await.queued_id().expect("queued");
    let all = queued(&server.spool_path);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, id);
    let recipients: Vec<&str> = all[0].1.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(recipients, ["r1@example.com", "r2@example.com", "r3@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_lines_over_512_octets_get_500_and_the_session_goes_on() {
    let (_dir, server) = server_with(|_| {}).await;
    let mut client = ehlo_client(&server).await;
    // (total length with CRLF, expected code, enhanced code)
    let table: &[(usize, u16, &str)] = &[
        (512, 250, "2.0.0"),
        (513, 500, "5.5.2"),
        (1_000, 500, "5.5.2"),
        (40_000, 500, "5.5.2"),
        (511, 250, "2.0.0"),
    ];
    for &(len, code, enhanced) in table {
        let line = format!("NOOP {}\r\n", "a".repeat(len - "NOOP \r\n".len()));
        assert_eq!(line.len(), len);
        // A command pipelined behind the long line is still read as a command of its own.
        client.send_raw(format!("{line}RSET\r\n").as_bytes()).await;
        let replies = client.replies(2).await;
        assert_reply(&replies[0], code, enhanced, &format!("NOOP line of {len} octets"));
        if code == 500 {
            assert_eq!(
                replies[0].text(),
                "5.5.2 Error: line too long (512 octets maximum)"
            );
        }
        assert_reply(&replies[1], 250, "2.0.0", &format!("RSET after {len} octets"));
    }
    // A long RCPT (within 512 octets) gets its ordinary answer.
    client.expect("MAIL FROM:<a@x.example>", 250, "2.1.0").await;
    let rcpt = format!("RCPT TO:<{}@{}.example.com>", "l".repeat(64), "d".repeat(63));
    client.expect(&rcpt, 250, "2.1.5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_over_1000_octets_reject_the_message() {
    let (_dir, server) = server_with(|_| {}).await;
    let mut client = ehlo_client(&server).await;
    let longest = format!("Subject: x\r\n\r\n{}\r\nend\r\n", "y".repeat(998));
    let fits = client
        .send_message("a@x.example", &["bob@example.com"], &longest)
        .await;
    assert_reply(&fits, 250, "2.0.0", "a 1000-octet line");

    let too_long = format!("Subject: x\r\n\r\n{}\r\nend\r\n", "y".repeat(999));
    let refused = client
        .send_message("a@x.example", &["bob@example.com"], &too_long)
        .await;
    assert_reply(&refused, 550, "5.6.0", "a 1001-octet line in DATA");
    assert_eq!(
        refused.text(),
        "5.6.0 Message rejected: line longer than 1000 octets"
    );
    client.expect("NOOP", 250, "2.0.0").await;

    open_transaction(&mut client).await;
    assert_reply(
        &client.bdat(too_long.as_bytes(), true).await,
        550,
        "5.6.0",
        "a 1001-octet line in BDAT",
    );
    client.expect("NOOP", 250, "2.0.0").await;
    assert_queued(&server, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_gets_421_and_is_disconnected() {
    let (_dir, server) = server_with(|c| c.smtp.command_timeout = HumanDuration::from_secs(1)).await;
    let mut client = server.connect().await;
    assert_eq!(client.greeting.code, 220);
    let reply = client.reply().await;
    assert_reply(&reply, 421, "4.4.2", "idle after the greeting");
    assert_eq!(reply.text(), "4.4.2 mta.test Error: timeout exceeded");
    client.expect_closed("after the idle timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_data_gets_421_and_nothing_is_queued() {
    let (_dir, server) = server_with(|c| c.smtp.data_timeout = HumanDuration::from_secs(1)).await;
    let mut client = ehlo_client(&server).await;
    open_transaction(&mut client).await;
    client.expect("DATA", 354, "").await;
    client
        .send_raw(b"Subject: stalled\r\n\r\nsome content but no end")
        .await;
    assert_reply(&client.reply().await, 421, "4.4.2", "DATA stalled");
    client.expect_closed("after the DATA timeout").await;

    // The same for BDAT chunk bytes that never arrive.
    let mut client = ehlo_client(&server).await;
    open_transaction(&mut client).await;
    client.send_raw(b"BDAT 100 LAST\r\nonly a few bytes").await;
    assert_reply(&client.reply().await, 421, "4.4.2", "BDAT stalled");
    client.expect_closed("after the BDAT timeout").await;
    assert_queued(&server, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_get_421_until_a_slot_frees() {
    let (_dir, server) = server_with(|c| c.smtp.max_connections = 2).await;
    let mut first = server.connect().await;
    let second = server.connect().await;
    assert_eq!((first.greeting.code, second.greeting.code), (220, 220));
    let mut third = server.connect().await;
    assert_reply(&third.greeting, 421, "4.7.0", "third connection");
    assert_eq!(
        third.greeting.text(),
        "4.7.0 mta.test Error: too many connections, try later"
    );
    third.expect_closed("refused connection").await;

    first.expect("QUIT", 221, "2.0.0").await;
    first.expect_closed("after QUIT").await;
    let mut fourth = server.connect().await;
    assert_eq!(fourth.greeting.code, 220, "a slot was freed: {}", fourth.greeting);
    fourth.expect("NOOP", 250, "2.0.0").await;
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_per_ip_get_421() {
    let (_dir, server) = server_with(|c| {
        c.smtp.max_connections = 10;
        c.smtp.max_connections_per_ip = 1;
    })
    .await;
    let mut first = server.connect().await;
    assert_eq!(first.greeting.code, 220);
    let mut second = server.connect().await;
    assert_reply(&second.greeting, 421, "4.7.0", "second connection from 127.0.0.1");
    second.expect_closed("refused connection").await;
    first.expect("NOOP", 250, "2.0.0").await;
    first.expect("QUIT", 221, "2.0.0").await;
    first.expect_closed("after QUIT").await;
    let mut third = server.connect().await;
    assert_eq!(
        third.greeting.code, 220,
        "the IP's slot was freed: {}",
        third.greeting
    );
    third.expect("NOOP", 250, "2.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_errors_get_421_and_close() {
    let (_dir, server) = server_with(|c| c.smtp.max_errors = 3).await;
    let mut client = ehlo_client(&server).await;
    client.expect("FROBNICATE", 500, "5.5.2").await;
    client.expect("RCPT TO:<bob@example.com>", 503, "5.5.1").await;
    let last = client.cmd("FROBNICATE again").await;
    assert_reply(&last, 421, "4.7.0", "third error");
    assert_eq!(last.text(), "4.7.0 mta.test Error: too many errors");
    client.expect_closed("after too many errors").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_space_gets_452_at_mail() {
    let (_dir, server) = server_with(|c| c.spool.min_free_space = ByteSize(u64::MAX / 4)).await;
    let mut client = ehlo_client(&server).await;
    let refused = client.expect("MAIL FROM:<a@x.example>", 452, "4.3.1").await;
    assert_eq!(refused.text(), "4.3.1 Insufficient system storage");
    client.expect("NOOP", 250, "2.0.0").await;
    client.expect("RCPT TO:<bob@example.com>", 503, "5.5.1").await;
    assert_queued(&server, 0);
}
