//! HTTP injection end to end: 1,000 personalised messages in one `POST /v1/messages` land at a
//! loopback sink with their own substitutions and a valid DKIM signature; an `Idempotency-Key`
//! replays the first answer (also after a restart) and queues nothing again, another body is 409;
//! suppressed and unrenderable recipients are rejected with the reason; limits and bad fields answer
//! the status and the field; preview renders without queueing.

use penguin_tests::delivery::*;
use penguin_tests::dkim::verify_dkim;
use penguin_tests::*;
use serde_json::{Value, json};

/// A world with the API tenant hooli sending as hooli.example, its DKIM key published.
async fn world(configure: impl FnOnce(&mut penguin_config::Config)) -> DeliveryWorld {
    let world = DeliveryWorld::start(1, configure).await;
    world.route_to_sink("dest.test", 0);
    let tenant = json!({"name": "hooli", "sender_domains": ["hooli.example"]});
    assert_eq!(world.api("POST", "/v1/tenants", Some(tenant)).await.0, 201);
    let (status, added) = world
        .api(
            "POST",
            "/v1/tenants/hooli/domains",
            Some(json!({"domain": "hooli.example"})),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let dkim = &added["records"][0];
    let name = dkim["name"].as_str().expect("name").trim_end_matches('.');
    world
        .dns
        .add_txt(name, dkim["value"].as_str().expect("value"), 300);
    world
}

/// A request to `recipients` with a personalised subject and text.
fn request(recipients: Vec<Value>) -> Value {
    json!({
        "tenant": "hooli",
        "from": "Hooli News <news@hooli.example>",
        "subject": "Hi {{ first_name | default(\"there\") }}",
        "text": "Dear {{ first_name | default(\"reader\") }},\n{% if vip %}you are VIP #{{ number }}.{% else %}welcome.{% endif %}\n",
        "html": "<p>Dear {{ first_name | default(\"reader\") }}</p>",
        "headers": {"X-Customer": "{{ number | default(0) }}"},
        "campaign": "launch",
        "recipients": recipients,
    })
}

/// POST with an optional Idempotency-Key; returns (status, JSON).
async fn post(world: &DeliveryWorld, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TEST_ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
    );
    if let Some(key) = key {
        request.push_str(&format!("Idempotency-Key: {key}\r\n"));
    }
    let body = body.to_string();
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let response = raw_http(world.server.api, request.as_bytes()).await;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = response
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// One raw HTTP exchange.
async fn raw_http(address: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(address).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut response))
        .await
        .expect("in time")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_personalised_messages_land_signed_with_their_own_substitutions() {
    let world = world(|_| {}).await;
    let recipients: Vec<Value> = (0..1000)
        .map(|n| {
            let mut variables = json!({"number": n, "vip": n % 100 == 0});
            if n % 2 == 0 {
                variables["first_name"] = json!(format!("Name{n}"));
            }
            json!({"address": format!("r{n}@dest.test"), "variables": variables})
        })
        .collect();
    let (status, answer) = post(&world, "/v1/messages", &request(recipients), None).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"].as_array().map(Vec::len), Some(1000));
    assert_eq!(answer["rejected"], json!([]));

    let received = world.sinks[0].wait_for(1000).await;
    let mut seen = std::collections::HashSet::new();
    for message in &received {
        let text = String::from_utf8_lossy(&message.data);
        let to = &message.rcpt_to[0];
        let n: usize = to[1..to.find('@').expect("@")].parse().expect("number");
        assert!(seen.insert(n), "{to} twice");
        let (subject, dear) = if n.is_multiple_of(2) {
            (format!("Subject: Hi Name{n}\r\n"), format!("Dear Name{n},"))
        } else {
            ("Subject: Hi there\r\n".to_string(), "Dear reader,".to_string())
        };
        assert!(text.contains(&subject) && text.contains(&dear), "{to}: {text}");
        assert_eq!(
            text.contains(&format!("VIP #{n}.")),
            n.is_multiple_of(100),
            "{to}"
        );
        assert!(text.contains(&format!("X-Customer: {n}\r\n")), "{to}");
        assert!(text.contains("multipart/alternative"), "{to}");
        assert_eq!(message.mail_from, "news@hooli.example");
    }
    for message in received.iter().step_by(97) {
        let results = verify_dkim(world.dns.address, &message.data).await;
        assert!(
            results.len() == 1 && results[0].2 && results[0].0 == "hooli.example",
            "{results:?}"
        );
    }
    let usage = world
        .api("GET", "/v1/tenants/hooli/campaigns/launch", None)
        .await
        .1;
    assert_eq!(usage["accepted"], 1000, "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_rejections_limits_and_preview() {
    let world = world(|config| config.api.max_recipients_per_request = 3).await;
    let (status, _) = world
        .api("PUT", "/v1/tenants/hooli/suppressions/gone@dest.test", None)
        .await;
    assert_eq!(status, 201);
    let body = request(vec![
        json!({"address": "a@dest.test", "variables": {"first_name": "Ann"}}),
        json!({"address": "gone@dest.test"}),
        json!({"address": "not-an-address"}),
    ]);
    let (status, first) = post(&world, "/v1/messages", &body, Some("order-17")).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["accepted"].as_array().map(Vec::len), Some(1), "{first}");
    let reasons: Vec<&str> = first["rejected"]
        .as_array()
        .map(|list| list.iter().filter_map(|r| r["reason"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(reasons.len(), 2, "{first}");
    assert!(reasons[0].starts_with("suppressed: manual"), "{reasons:?}");
    assert!(reasons[1].starts_with("invalid address"), "{reasons:?}");
    world.wait_event("delivery", "a@dest.test").await;
    world.wait_event("suppressed", "gone@dest.test").await;

    let (status, again) = post(&world, "/v1/messages", &body, Some("order-17")).await;
    assert_eq!((status, &again), (202, &first), "the first answer, again");
    let mut other = body.clone();
    other["subject"] = json!("changed");
    let (status, conflict) = post(&world, "/v1/messages", &other, Some("order-17")).await;
    assert_eq!(
        (status, conflict["error"]["field"].clone()),
        (409, json!("Idempotency-Key"))
    );
    let world = world.restart().await;
    let (status, after) = post(&world, "/v1/messages", &body, Some("order-17")).await;
    assert_eq!((status, &after), (202, &first), "kept across a restart");
    let receptions = world.events().iter().filter(|e| e["type"] == "reception").count();
    assert_eq!(receptions, 1, "queued once");

    let four = request(
        (0..4)
            .map(|n| json!({"address": format!("x{n}@dest.test")}))
            .collect(),
    );
    let (status, error) = post(&world, "/v1/messages", &four, None).await;
    assert_eq!(
        (status, error["error"]["field"].clone()),
        (413, json!("recipients")),
        "{error}"
    );
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("at most 3")
    );
    let cases = [
        (json!({"subject": "{% if %}"}), "subject"),
        (json!({"from": "news@other.example"}), "from"),
        (json!({"pool": "nope"}), "pool"),
        (json!({"tenant": null}), "tenant"),
        (json!({"headers": {"Subject": "x"}}), "headers.Subject"),
        (json!({"bogus": 1}), "body.bogus"),
    ];
    for (change, field) in cases {
        let mut bad = request(vec![json!({"address": "a@dest.test"})]);
        for (key, value) in change.as_object().expect("object") {
            bad[key] = value.clone();
        }
        let (status, error) = post(&world, "/v1/messages", &bad, None).await;
        assert_eq!(
            (status, error["error"]["field"].clone()),
            (400, json!(field)),
            "{change}: {error}"
        );
    }
    let strict = json!({"tenant": "hooli", "from": "news@hooli.example", "subject": "Hi {{ first_name }}",
        "text": "x", "recipients": [{"address": "b@dest.test"}]});
    let (status, answer) = post(&world, "/v1/messages", &strict, None).await;
    assert_eq!(status, 202);
    let reason = answer["rejected"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("template: subject:") && reason.contains("undefined"),
        "{answer}"
    );

    let (status, preview) = post(&world, "/v1/messages/preview", &body, None).await;
    assert_eq!(status, 200, "{preview}");
    assert!(
        preview["message"]
            .as_str()
            .unwrap_or("")
            .contains("Subject: Hi Ann\r\n"),
        "{preview}"
    );
    let receptions = world.events().iter().filter(|e| e["type"] == "reception").count();
    assert_eq!(receptions, 1, "neither refusals nor the preview queued anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_size_limit_is_413_in_the_error_format() {
    let world = world(|config| config.api.max_request_size = penguin_config::ByteSize(4096)).await;
    let big = request(
        (0..200)
            .map(|n| json!({"address": format!("someone-{n}@dest.test")}))
            .collect(),
    );
    let (status, error) = post(&world, "/v1/messages", &big, None).await;
    assert_eq!(
        (status, error["error"]["field"].clone()),
        (413, json!("body")),
        "{error}"
    );
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("max_request_size")
    );
}
