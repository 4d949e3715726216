//! One-click unsubscribe (RFC 8058) and suppression end to end: the List-Unsubscribe header the
//! receiver sees, the POST to its URL, the 550 at RCPT that follows, and automatic suppression after
//! a 550 5.1.1 bounce. Real server, real sinks, real DNS, real HTTP.

use penguin_tests::delivery::*;
use penguin_tests::sink::SinkBehaviour;
use penguin_tests::{ACME, SmtpClient, http_request, metric_sample};

/// A world routing `dest.test` to sink 0 with tenant acme (`list_unsubscribe` as given) and the
/// relay tenant.
async fn world(list_unsubscribe: bool, auto_hard_bounce: bool) -> DeliveryWorld {
    let world = DeliveryWorld::start(1, |config| {
        let mut tenant = ACME.config();
        tenant.list_unsubscribe = list_unsubscribe;
        config.tenant.push(tenant);
        config.suppression.auto_hard_bounce = auto_hard_bounce;
    })
    .await;
    world.route_to_sink("dest.test", 0);
    world.route_to_sink("acme.example", 0);
    world
}

/// An authenticated acme session.
async fn acme_client(world: &DeliveryWorld) -> SmtpClient {
    let mut client = world.server.connect().await;
    client.ehlo().await;
    let reply = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_eq!(reply.code, 235, "{reply:?}");
    client
}

/// The value of header `name` in a delivered message (unfolded), if present.
fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n ", " ");
    head.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
    })
}

/// The http URL of a List-Unsubscribe value.
fn one_click_url(value: &str) -> String {
    value
        .split(',')
        .map(|part| part.trim().trim_start_matches('<').trim_end_matches('>'))
        .find(|uri| uri.starts_with("http"))
        .unwrap_or_else(|| panic!("no http URI in {value:?}"))
        .to_owned()
}

/// Splits `http://host:port/path` into the address and the path.
fn split_url(url: &str) -> (std::net::SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').expect("path");
    (host.parse().expect("host:port"), format!("/{path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_recipient_gets_its_own_one_click_link() {
    let world = world(true, true).await;
    let mut client = acme_client(&world).await;
    let content = penguin_tests::simple_message("news@acme.example", "undisclosed@dest.test", "offer");
    let reply = client
        .send_message("news@acme.example", &["ann@dest.test", "ben@dest.test"], &content)
        .await;
    assert_eq!(reply.code, 250, "{reply:?}");

    let received = world.sinks[0].wait_for(2).await;
    let mut urls = Vec::new();
    for message in &received {
        assert_eq!(message.rcpt_to.len(), 1, "one copy per recipient");
        let value = header(&message.data, "List-Unsubscribe").expect("List-Unsubscribe");
        assert_eq!(
            header(&message.data, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        let url = one_click_url(&value);
        assert!(
            url.starts_with(&format!("http://{}/u/", world.server.public)),
            "{url}"
        );
        urls.push(url);
    }
    assert_ne!(urls[0], urls[1], "tokens are per recipient");
    let receptions = world
        .wait_events("receptions", 2, |e| e["type"] == "reception")
        .await;
    assert!(receptions.iter().all(|e| e["recipients"] == 1), "{receptions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_post_suppresses_the_recipient() {
    let world = world(true, true).await;
    let mut client = acme_client(&world).await;
    let content = penguin_tests::simple_message("news@acme.example", "ann@dest.test", "offer");
    client
        .send_message_with(
            "MAIL FROM:<news@acme.example>",
            &["ann@dest.test"],
            &format!("X-Campaign-ID: spring\r\n{content}"),
        )
        .await;
    let received = world.sinks[0].wait_for(1).await;
    let url = one_click_url(&header(&received[0].data, "List-Unsubscribe").expect("header"));
    let (address, path) = split_url(&url);

    let (status, page) = http_request(
        address,
        "POST",
        &path,
        Some("application/x-www-form-urlencoded"),
        b"List-Unsubscribe=One-Click",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let event = world.wait_event("unsubscribe", "ann@dest.test").await;
    assert_eq!(event["tenant"], "acme");
    assert_eq!(event["campaign"], "spring");

    client.cmd("RSET").await;
    client.expect("MAIL FROM:<news@acme.example>", 250, "2.1.0").await;
    let refused = client.cmd("RCPT TO:<ann@dest.test>").await;
    assert_eq!(
        (refused.code, refused.enhanced_code()),
        (550, "5.7.1"),
        "{refused:?}"
    );
    assert!(refused.text().contains("suppression list"), "{refused:?}");
    let suppressed = world.wait_event("suppressed", "ann@dest.test").await;
    assert_eq!(suppressed["reason"], "unsubscribe");
    assert!(suppressed["id"].is_null());
    let (_, metrics) = world.server.http_get("/metrics").await;
    for kind in ["unsubscribe", "suppressed"] {
        let series = format!("penguin_tenant_events_total{{tenant=\"acme\",type=\"{kind}\"}}");
        assert_eq!(
            metric_sample(&metrics, &series),
            Some(1.0),
            "{series} in\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_its_own_list_unsubscribe_is_kept_whole() {
    let world = world(true, true).await;
    let mut client = acme_client(&world).await;
    let content = format!(
        "List-Unsubscribe: <https://acme.example/u/own>\r\n{}",
        penguin_tests::simple_message("news@acme.example", "x@dest.test", "own link")
    );
    let reply = client
        .send_message("news@acme.example", &["ann@dest.test", "ben@dest.test"], &content)
        .await;
    assert_eq!(reply.code, 250, "{reply:?}");

    let received = world.sinks[0].wait_for(1).await;
    assert_eq!(received[0].rcpt_to.len(), 2, "one message, both recipients");
    assert_eq!(
        header(&received[0].data, "List-Unsubscribe").as_deref(),
        Some("<https://acme.example/u/own>")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_550_5_1_1_bounce_suppresses_the_address() {
    let world = world(false, true).await;
    world.sinks[0].set_behaviour(SinkBehaviour::default().with_rcpt(|address| {
        if address == "gone@dest.test" {
            (
                550,
                "5.1.1 <gone@dest.test>: Recipient address rejected: User unknown".into(),
            )
        } else {
            (250, "2.1.5 Ok".into())
        }
    }));
    let mut client = acme_client(&world).await;
    let content = penguin_tests::simple_message("news@acme.example", "gone@dest.test", "hello");
    client
        .send_message("news@acme.example", &["gone@dest.test"], &content)
        .await;

    let added = world.wait_event("suppression_added", "gone@dest.test").await;
    assert_eq!(added["reason"], "hard_bounce");
    assert_eq!(added["tenant"], "acme");
    client.expect("MAIL FROM:<news@acme.example>", 250, "2.1.0").await;
    let refused = client.cmd("RCPT TO:<Gone@Dest.test>").await;
    assert_eq!(
        (refused.code, refused.enhanced_code()),
        (550, "5.7.1"),
        "{refused:?}"
    );
    let (status, body) = http_request(
        world.server.api,
        "GET",
        "/v1/tenants/acme/suppressions/gone@dest.test",
        None,
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hard_bounce"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_suppression_can_be_turned_off() {
    let world = world(false, false).await;
    world.sinks[0].set_behaviour(SinkBehaviour::default().with_rcpt(|_| (550, "5.1.1 User unknown".into())));
    let mut client = acme_client(&world).await;
    let content = penguin_tests::simple_message("news@acme.example", "gone@dest.test", "hello");
    client
        .send_message("news@acme.example", &["gone@dest.test"], &content)
        .await;
    world.wait_event("bounce", "gone@dest.test").await;

    client.expect("MAIL FROM:<news@acme.example>", 250, "2.1.0").await;
    client.expect("RCPT TO:<gone@dest.test>", 250, "2.1.5").await;
    assert!(
        world.events().iter().all(|e| e["type"] != "suppression_added"),
        "no suppression when auto_hard_bounce is off"
    );
}
