//! Self-test of the `TestSink` harness (the scripted remote MX) with the line-level `SmtpClient`: the
//! accept path with pipelining, scripted RCPT and end-of-data replies, a drop after the data, STARTTLS,
//! several sinks on one port, waiting, and the strictness that catches a broken client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use penguin_tests::sink::{SinkBehaviour, TestSink};
use penguin_tests::{SmtpClient, TestCerts, assert_reply, dot_stuff};

/// Connects to a sink, checks the greeting and sends EHLO; returns the client and the EHLO lines.
async fn session(sink: &TestSink) -> (SmtpClient, Vec<String>) {
    let mut client = SmtpClient::connect(sink.address).await;
    assert_reply(&client.greeting, 220, "", "greeting");
    let ehlo = client.ehlo().await;
    assert_eq!(ehlo.code, 250, "EHLO: {ehlo}");
    (client, ehlo.lines)
}

#[tokio::test]
async fn accepts_pipelined_transactions_and_records_them_exactly() {
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let (mut client, ehlo) = session(&sink).await;
    for extension in ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"] {
        assert!(
            ehlo.iter().any(|line| line == extension),
            "{extension} in {ehlo:?}"
        );
    }
    assert!(ehlo.iter().any(|line| line.starts_with("SIZE ")), "{ehlo:?}");
    assert!(!ehlo.iter().any(|line| line == "STARTTLS"), "{ehlo:?}");

    let commands = "MAIL FROM:<a@acme.example> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<b@x.test>\r\n\
                    RCPT TO:<c@x.test> NOTIFY=NEVER\r\nRCPT TO:<d@x.test>\r\nDATA\r\n";
    client.send_raw(commands.as_bytes()).await;
    let codes: Vec<u16> = client.replies(5).await.iter().map(|reply| reply.code).collect();
    assert_eq!(codes, [250, 250, 555, 250, 354]);
    let content = "Subject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nnot the end\r\nüñí\r\n";
    let mut wire = dot_stuff(content);
    wire.extend_from_slice(b".\r\n");
    client.send_raw(&wire).await;
    assert_reply(&client.reply().await, 250, "2.0.0", "end of data");

    let second = client
        .send_message("", &["e@y.test"], "Subject: two\r\n\r\nbody")
        .await;
    assert_reply(&second, 250, "2.0.0", "second message");
    assert_reply(&client.cmd("QUIT").await, 221, "2.0.0", "QUIT");
    client.expect_closed("after QUIT").await;

    let received = sink.wait_for(2).await;
    let first = &received[0];
    assert_eq!(first.helo, "client.test");
    assert_eq!(first.mail_from, "a@acme.example");
    assert_eq!(first.mail_params, " SIZE=100 BODY=8BITMIME");
    assert_eq!(first.rcpt_to, ["b@x.test", "d@x.test"]);
    assert_eq!(first.data, content.as_bytes());
    assert_eq!((first.tls, first.connection, first.transaction), (false, 0, 0));
    assert_eq!(received[1].mail_from, "");
    assert_eq!(received[1].data, b"Subject: two\r\n\r\nbody\r\n");
    assert_eq!((received[1].connection, received[1].transaction), (0, 1));
    assert_eq!((sink.connections(), sink.transactions()), (1, 2));
    // The NOTIFY parameter without DSN offered is the only fault of this client.
    assert_eq!(sink.protocol_errors(), 1, "{:?}", sink.protocol_error_details());
}

#[tokio::test]
async fn scripted_rcpt_replies_decide_the_recipients() {
    let behaviour = SinkBehaviour::default().with_rcpt(|address| match address.starts_with("bad") {
        true => (550, "5.1.1 No such user".to_string()),
        false => (250, "2.1.5 Ok".to_string()),
    });
    let sink = TestSink::start(behaviour).await;
    let (mut client, _) = session(&sink).await;
    client.expect("MAIL FROM:<a@acme.example>", 250, "2.1.0").await;
    client.expect("RCPT TO:<good@x.test>", 250, "2.1.5").await;
    client.expect("RCPT TO:<bad@x.test>", 550, "5.1.1").await;
    client.expect("DATA", 354, "").await;
    client.send_raw(b"Subject: s\r\n\r\nhi\r\n.\r\n").await;
    assert_reply(&client.reply().await, 250, "2.0.0", "end of data");

    // Nobody accepted: DATA is refused and the transaction stays open until RSET.
    client.expect("MAIL FROM:<a@acme.example>", 250, "2.1.0").await;
    client.expect("RCPT TO:<bad2@x.test>", 550, "5.1.1").await;
    client.expect("DATA", 554, "5.5.1").await;
    client.expect("RSET", 250, "2.0.0").await;

    let received = sink.wait_for(1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_to, ["good@x.test"]);
    assert_eq!(sink.transactions(), 2);
    assert_eq!(sink.protocol_errors(), 0, "{:?}", sink.protocol_error_details());
}

#[tokio::test]
async fn data_reply_fails_the_first_transaction_then_accepts() {
    let behaviour = SinkBehaviour::default().with_data_reply(|transaction| match transaction {
        0 => (451, "4.3.0 Try again later".to_string()),
        _ => (250, "2.0.0 Ok: queued".to_string()),
    });
    let sink = TestSink::start(behaviour).await;
    let (mut client, _) = session(&sink).await;
    let first = client
        .try_send_message("a@acme.example", &["b@x.test"], "Subject: 1\r\n\r\nx")
        .await;
    assert_reply(&first.expect("reply"), 451, "4.3.0", "first attempt");
    let second = client
        .try_send_message("a@acme.example", &["b@x.test"], "Subject: 2\r\n\r\nx")
        .await;
    assert_reply(&second.expect("reply"), 250, "2.0.0", "second attempt");

    let received = sink.wait_for(1).await;
    assert_eq!(received.len(), 1, "the refused message is not recorded");
    assert_eq!((received[0].transaction, received[0].connection), (1, 0));
    assert!(received[0].text().starts_with("Subject: 2"));
    assert_eq!(sink.protocol_errors(), 0, "{:?}", sink.protocol_error_details());
}

#[tokio::test]
async fn disconnect_after_data_drops_the_message_until_the_behaviour_changes() {
    let behaviour = SinkBehaviour {
        disconnect_after_data: true,
        ..SinkBehaviour::default()
    };
    let sink = TestSink::start(behaviour).await;
    let (mut client, _) = session(&sink).await;
    let outcome = client
        .try_send_message("a@acme.example", &["b@x.test"], "Subject: lost\r\n\r\nx")
        .await;
    assert_eq!(outcome, None, "no reply after the data");
    assert_eq!(sink.dropped_after_data(), 1);
    assert!(sink.received().is_empty());

    sink.set_behaviour(SinkBehaviour::default());
    let (mut client, _) = session(&sink).await;
    let reply = client
        .send_message("a@acme.example", &["b@x.test"], "Subject: kept\r\n\r\nx")
        .await;
    assert_reply(&reply, 250, "2.0.0", "after the change");
    let received = sink.wait_for(1).await;
    assert_eq!((received[0].connection, received[0].transaction), (1, 1));
}

#[tokio::test]
async fn starttls_round_trip_requires_a_new_ehlo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = Arc::new(TestCerts::generate(dir.path()));
    let behaviour = SinkBehaviour {
        starttls: Some(certs.clone()),
        ..SinkBehaviour::default()
    };
    let sink = TestSink::start(behaviour).await;
    let (mut client, ehlo) = session(&sink).await;
    assert!(ehlo.iter().any(|line| line == "STARTTLS"), "{ehlo:?}");
    client.starttls(&certs).await;
    client.expect("MAIL FROM:<a@acme.example>", 503, "5.5.1").await;
    let ehlo = client.ehlo().await;
    assert!(!ehlo.lines.iter().any(|line| line == "STARTTLS"), "{ehlo}");
    let reply = client
        .send_message("a@acme.example", &["b@x.test"], "Subject: tls\r\n\r\nx")
        .await;
    assert_reply(&reply, 250, "2.0.0", "inside TLS");

    let received = sink.wait_for(1).await;
    assert!(received[0].tls);
    // MAIL before the second EHLO is the one fault.
    assert_eq!(sink.protocol_errors(), 1, "{:?}", sink.protocol_error_details());
}

#[tokio::test]
async fn sinks_on_two_loopback_ips_share_one_port() {
    let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0);
    let first = TestSink::start_on(any, SinkBehaviour::default())
        .await
        .expect("bind .2");
    let second_address = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), first.address.port());
    let second = TestSink::start_on(second_address, SinkBehaviour::default())
        .await
        .expect("bind .3 on the same port");
    for (sink, subject) in [(&first, "to .2"), (&second, "to .3")] {
        let (mut client, _) = session(sink).await;
        let content = format!("Subject: {subject}\r\n\r\nx");
        let reply = client
            .send_message("a@acme.example", &["b@x.test"], &content)
            .await;
        assert_reply(&reply, 250, "2.0.0", subject);
    }
    assert!(first.wait_for(1).await[0].text().contains("to .2"));
    assert!(second.wait_for(1).await[0].text().contains("to .3"));
    assert_eq!((first.received().len(), second.received().len()), (1, 1));

    let ips: Vec<IpAddr> = ["127.0.0.4", "127.0.0.5"]
        .map(|ip| ip.parse().expect("ip"))
        .to_vec();
    let group = TestSink::start_on_same_port(&ips, SinkBehaviour::default()).await;
    assert_eq!(group[0].address.port(), group[1].address.port());
}

#[tokio::test]
async fn wait_for_wakes_on_delivery_and_stop_closes_the_listener() {
    let sink = Arc::new(TestSink::start(SinkBehaviour::default()).await);
    let waiter = tokio::spawn({
        let sink = sink.clone();
        async move { sink.wait_for(1).await }
    });
    tokio::task::yield_now().await;
    let (mut client, _) = session(&sink).await;
    client
        .send_message("a@acme.example", &["b@x.test"], "Subject: w\r\n\r\nx")
        .await;
    let received = waiter.await.expect("waiter");
    assert_eq!(received.len(), 1);

    let address = sink.address;
    Arc::into_inner(sink).expect("only owner").stop().await;
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn refused_greeting_closes_the_connection() {
    let behaviour = SinkBehaviour {
        greeting: Some((421, "4.3.2 busy".to_string())),
        ..SinkBehaviour::default()
    };
    let sink = TestSink::start(behaviour).await;
    let mut client = SmtpClient::connect(sink.address).await;
    assert_reply(&client.greeting, 421, "4.3.2", "greeting");
    client.expect_closed("after the refusal").await;
}

#[tokio::test]
async fn protocol_faults_are_refused_and_counted() {
    let behaviour = SinkBehaviour {
        no_pipelining: true,
        no_8bitmime: true,
        ..SinkBehaviour::default()
    };
    let sink = TestSink::start(behaviour).await;
    let (mut client, ehlo) = session(&sink).await;
    assert!(
        !ehlo.iter().any(|line| line == "PIPELINING" || line == "8BITMIME"),
        "{ehlo:?}"
    );
    client.send_raw(b"NOOP\n").await;
    assert_reply(&client.reply().await, 500, "5.5.2", "bare LF");
    client.expect("MAIL FROM: <a@acme.example>", 501, "5.5.4").await;
    client
        .expect("MAIL FROM:<a@acme.example> BODY=8BITMIME", 555, "5.5.4")
        .await;
    client.expect("RCPT TO:<b@x.test>", 503, "5.5.1").await;
    client.expect("MAIL FROM:<a@acme.example>", 250, "2.1.0").await;
    client.send_raw(b"RCPT TO:<b@x.test>\r\nDATA\r\n").await;
    let codes: Vec<u16> = client.replies(2).await.iter().map(|reply| reply.code).collect();
    assert_eq!(codes, [250, 354]);
    client.send_raw(b".bad\r\nbare\nlf\r\n\xff8-bit\r\n.\r\n").await;
    assert_reply(&client.reply().await, 250, "2.0.0", "end of data");

    let received = sink.wait_for(1).await;
    assert_eq!(received[0].data, b"bad\r\nbare\nlf\r\n\xff8-bit\r\n");
    let details = sink.protocol_error_details();
    assert_eq!(sink.protocol_errors(), 8, "{details:#?}");
    for expected in [
        "CRLF",
        "Syntax: FROM:<",
        "BODY=8BITMIME",
        "need MAIL",
        "without PIPELINING",
        "bare LF",
    ] {
        assert!(
            details.iter().any(|d| d.contains(expected)),
            "{expected} in {details:#?}"
        );
    }
}
