//! IP warm-up end to end: a warming source sends at most its day's cap per provider (asserted by the
//! source address the sinks saw), the rest overflows to the pool's warm source or waits (`hold`),
//! `X-Warmup-Priority: high` mail takes the warming source's capacity first, the count survives a
//! restart, and the next day's judgement moves the step. Time is a `ManualClock`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use penguin_mta::clock::{ManualClock, SharedClock};
use penguin_tests::delivery::*;
use serde_json::{Value, json};

/// 2026-12-02 12:00:00 UTC: the warm-up's first day, at noon.
const NOON: u64 = 1_796_212_800;

/// ip2 is warm; ip9 warms on plan `first` (50 then 100 per provider per day, UTC) from today.
/// Providers alpha and beta are the sites `mx.*.alpha.test` and `mx.*.beta.test`.
fn world_toml(pool: &str, overflow: &str) -> String {
    format!(
        r#"
[[source]]
name = "ip2"
ip = "127.0.0.2"
[[source]]
name = "ip9"
ip = "127.0.0.9"
warmup = {{ plan = "first", start = "2026-12-02" }}

[[pool]]
name = "default"
sources = {pool}

[[provider]]
name = "alpha"
mx_suffixes = [".alpha.test"]
[[provider]]
name = "beta"
mx_suffixes = [".beta.test"]

[[warmup.plan]]
name = "first"
daily = [50, 100]
overflow = "{overflow}"
"#
    )
}

async fn world(pool: &str, overflow: &str) -> (DeliveryWorld, Arc<ManualClock>) {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOON));
    let shared: SharedClock = clock.clone();
    let toml = world_toml(pool, overflow);
    let world = DeliveryWorld::start_with_clock(2, shared, |config| apply_shaping(config, &toml)).await;
    world.add_mx("a.test", 10, "mx.a.alpha.test", sink_ip(0));
    world.add_mx("b.test", 10, "mx.b.beta.test", sink_ip(1));
    (world, clock)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Messages a sink got per peer address.
fn by_peer(sink: &penguin_tests::sink::TestSink) -> BTreeMap<IpAddr, usize> {
    let mut counts = BTreeMap::new();
    for received in sink.received() {
        *counts.entry(received.peer.ip()).or_default() += 1;
    }
    counts
}

/// Sends `count` one-recipient messages to `domain`, recipients `{tag}{n}@domain`.
async fn send_many(world: &DeliveryWorld, domain: &str, tag: &str, count: usize) {
    for n in 0..count {
        world.send(&[&format!("{tag}{n}@{domain}")]).await;
    }
}

/// The `GET /v1/warmup` row of ip9 for `provider` once it is listed (it is when the pair has counts,
/// which are stored with the outcome, just after the events of the reply are emitted).
async fn listed_row(world: &DeliveryWorld, provider: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, rows) = world.api("GET", "/v1/warmup", None).await;
        let listed = rows.as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["source"] == "ip9" && r["provider"] == provider)
        });
        if listed || std::time::Instant::now() > deadline {
            return row(world, provider).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `GET /v1/warmup` row of ip9 for `provider`.
async fn row(world: &DeliveryWorld, provider: &str) -> Value {
    let (status, rows) = world.api("GET", "/v1/warmup", None).await;
    assert_eq!(status, 200, "{rows}");
    rows.as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["source"] == "ip9" && r["provider"] == provider)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no ip9 × {provider} row: {rows}"))
}

/// The clock to `days` days after the first day's noon, plus `hours`.
fn set_day(clock: &ManualClock, days: u64, hours: u64) {
    clock.set(UNIX_EPOCH + Duration::from_secs(NOON + days * 86_400 + hours * 3600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warming_source_sends_its_cap_per_provider_and_the_rest_overflows_to_the_pool() {
    let (world, clock) = world(r#"["ip2", "ip9"]"#, "pool").await;
    send_many(&world, "a.test", "a", 120).await;
    send_many(&world, "b.test", "b", 110).await;
    world.sinks[0].wait_for(120).await;
    world.sinks[1].wait_for(110).await;
    let alpha = by_peer(&world.sinks[0]);
    let beta = by_peer(&world.sinks[1]);
    assert_eq!(
        alpha.get(&ip(9)),
        Some(&50),
        "alpha: cap 50 from the warming ip9: {alpha:?}"
    );
    assert_eq!(
        alpha.get(&ip(2)),
        Some(&70),
        "alpha: the rest from the warm ip2: {alpha:?}"
    );
    assert_eq!(
        beta.get(&ip(9)),
        Some(&50),
        "beta has its own cap of 50: {beta:?}"
    );
    assert_eq!(beta.get(&ip(2)), Some(&60), "{beta:?}");
    world
        .wait_events("230 deliveries", 230, |e| e["type"] == "delivery")
        .await;
    let overflow = world
        .events()
        .iter()
        .filter(|e| e["type"] == "transient_failure")
        .count();
    assert_eq!(overflow, 0, "overflow is never an attempt");
    let status = row(&world, "alpha").await;
    assert_eq!(status["step"], 1, "{status}");
    assert_eq!(status["cap_today"], 50, "{status}");
    assert_eq!(status["sent_today"], 50, "{status}");
    assert_eq!(status["state"], "warming", "{status}");
    let (_, metrics) = penguin_tests::http_request(world.server.api, "GET", "/metrics", None, &[]).await;
    for series in [
        r#"warmup_cap{source="ip9",provider="alpha"} 50"#,
        r#"warmup_sent_today{source="ip9",provider="beta"} 50"#,
        r#"warmup_step{source="ip9",provider="alpha"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }

    // The day's count is in the spool: after a restart ip9 still has nothing left for alpha today.
    let world = world.restart().await;
    send_many(&world, "a.test", "again", 10).await;
    world.sinks[0].wait_for(130).await;
    let alpha = by_peer(&world.sinks[0]);
    assert_eq!(alpha.get(&ip(9)), Some(&50), "no more from ip9 today: {alpha:?}");
    assert_eq!(row(&world, "alpha").await["sent_today"], 50);

    // The next day judges the first: 50 of 50 and healthy → step 2, cap 100.
    set_day(&clock, 1, 0);
    let advanced = world
        .wait_events("two warmup_advanced", 2, |e| e["type"] == "warmup_advanced")
        .await;
    assert!(
        advanced
            .iter()
            .any(|e| e["source"] == "ip9" && e["provider"] == "alpha" && e["step"] == 2 && e["cap"] == 100),
        "{advanced:?}"
    );
    let status = row(&world, "alpha").await;
    assert_eq!(
        (status["step"].clone(), status["cap_today"].clone()),
        (json!(2), json!(100)),
        "{status}"
    );
    assert_eq!(status["sent_today"], 0, "{status}");
    send_many(&world, "a.test", "day2-", 220).await;
    world.sinks[0].wait_for(350).await;
    let alpha = by_peer(&world.sinks[0]);
    assert_eq!(
        alpha.get(&ip(9)),
        Some(&150),
        "50 yesterday + 100 today: {alpha:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_overflow_hold_mail_over_the_cap_waits_for_the_next_day_without_attempts() {
    let (world, clock) = world(r#"["ip9"]"#, "hold").await;
    send_many(&world, "a.test", "a", 60).await;
    world.sinks[0].wait_for(50).await;
    world
        .wait_events("50 deliveries", 50, |e| e["type"] == "delivery")
        .await;
    let waiting = world.wait_queued("mx.a.alpha.test", 10).await;
    assert_eq!(waiting[0]["source"], "ip9", "{waiting:?}");
    assert_eq!(world.sinks[0].received().len(), 50, "exactly the cap today");
    let queued = world.queued();
    assert_eq!(queued.len(), 10);
    assert!(
        queued
            .iter()
            .all(|(_, envelope)| envelope.recipients[0].attempts == 0),
        "waiting is not an attempt"
    );
    let failures = world
        .events()
        .iter()
        .filter(|e| e["type"] == "transient_failure")
        .count();
    assert_eq!(failures, 0);

    set_day(&clock, 1, 1);
    world.sinks[0].wait_for(60).await;
    let alpha = by_peer(&world.sinks[0]);
    assert_eq!(
        alpha.get(&ip(9)),
        Some(&60),
        "the held ten went out the next day: {alpha:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engaged_recipients_take_the_warming_sources_capacity_first() {
    // ip9 first: while every source is held, the choice goes to the first that has room.
    let (world, _clock) = world(r#"["ip9", "ip2"]"#, "pool").await;
    // Hold alpha while the mail arrives, so that what goes where is decided before anything is sent.
    let (status, suspension) = world
        .api(
            "POST",
            "/v1/suspensions",
            Some(json!({"provider": "alpha", "duration": "1h"})),
        )
        .await;
    assert_eq!(status, 201, "{suspension}");
    send_many(&world, "a.test", "normal", 60).await;
    for n in 0..20 {
        let to = format!("engaged{n}@a.test");
        let content = format!(
            "From: <{SENDER}>\r\nTo: <{to}>\r\nX-Warmup-Priority: high\r\nSubject: hi\r\n\r\nhello\r\n"
        );
        world
            .send_with(&format!("MAIL FROM:<{SENDER}>"), &[&to], &content)
            .await;
    }
    world.wait_queued("mx.a.alpha.test", 80).await;
    let id = suspension["id"].as_str().expect("id");
    let (status, _) = world.api("DELETE", &format!("/v1/suspensions/{id}"), None).await;
    assert_eq!(status, 204);
    let received = world.sinks[0].wait_for(80).await;
    let from_ip9: Vec<&str> = received
        .iter()
        .filter(|r| r.peer.ip() == ip(9))
        .map(|r| r.rcpt_to[0].as_str())
        .collect();
    assert_eq!(from_ip9.len(), 50, "{from_ip9:?}");
    let engaged = from_ip9.iter().filter(|to| to.starts_with("engaged")).count();
    assert_eq!(
        engaged, 20,
        "every engaged recipient went out from the warming source: {from_ip9:?}"
    );
    assert!(
        received.iter().all(|r| !r.text().contains("X-Warmup-Priority")),
        "the header is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_reply_stops_the_warming_source_for_that_provider_until_the_next_hour() {
    let (world, clock) = world(r#"["ip9", "ip2"]"#, "pool").await;
    world.sinks[0].set_behaviour(
        penguin_tests::sink::SinkBehaviour::default()
            .with_data_reply(|_| (421, "4.7.28 Rate limited: too many messages from your IP".into())),
    );
    world.send(&["first@a.test"]).await;
    let held = world
        .wait_events("warmup_held", 1, |e| e["type"] == "warmup_held")
        .await;
    assert_eq!(
        (held[0]["source"].as_str(), held[0]["provider"].as_str()),
        (Some("ip9"), Some("alpha"))
    );
    let until = held[0]["until"].as_str().expect("until").to_owned();
    assert!(
        until.ends_with("T13:00:00.000Z"),
        "stopped until the next hour: {until}"
    );
    let status = listed_row(&world, "alpha").await;
    assert_eq!(status["state"], "paused", "{status}");
    assert_eq!(status["next_change"].as_str(), Some(until.as_str()), "{status}");

    world.sinks[0].set_behaviour(penguin_tests::sink::SinkBehaviour::default());
    send_many(&world, "a.test", "later", 10).await;
    send_many(&world, "b.test", "other-provider", 2).await;
    world.sinks[0].wait_for(10).await;
    let alpha = by_peer(&world.sinks[0]);
    assert_eq!(
        alpha.get(&ip(9)),
        None,
        "ip9 sends nothing more to alpha this hour: {alpha:?}"
    );
    let beta = world.sinks[1].wait_for(2).await;
    assert!(
        beta.iter().any(|r| r.peer.ip() == ip(9)),
        "beta is not stopped: {beta:?}"
    );

    // 13:00: the stop is over (and the first message's retry is due).
    set_day(&clock, 0, 1);
    send_many(&world, "a.test", "next-hour", 10).await;
    world.sinks[0].wait_for(21).await;
    let alpha = by_peer(&world.sinks[0]);
    assert!(
        alpha.get(&ip(9)).is_some_and(|&n| n >= 5),
        "ip9 takes its share again from 13:00: {alpha:?}"
    );
}

/// Waits (bounded) until the binary's queue is empty: every outcome (and its counts) is stored.
async fn wait_drained(api: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = penguin_tests::http_exchange(api, None, "GET", "/healthz", None, b"").await;
        if health.json()["queued_messages"] == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queue not drained: {}",
            health.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_the_days_count_and_warmup_status_shows_it() {
    use penguin_tests::binary::{self, RunningBinary};
    use penguin_tests::sink::{SinkBehaviour, TestSink};
    const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = TestSink::start(SinkBehaviour::default()).await;
    // Started yesterday (UTC) so that today is a warming day on the real clock; cap 5 for `other`
    // (the relay is the site).
    let yesterday = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .expect("a day");
    let toml = world_toml(r#"["ip9", "ip2"]"#, "pool")
        .replace("daily = [50, 100]", "daily = [5, 10]")
        .replace("2026-12-02", &yesterday.to_string());
    let mut config = penguin_tests::test_config(dir.path());
    penguin_tests::allow_loopback_relay(&mut config);
    apply_shaping(&mut config, &toml);
    config.delivery.paused = false;
    config.delivery.relay_host = Some(sink.address.to_string().parse().expect("relay host"));
    let path = binary::write_config(dir.path(), &mut config);
    let send = |count: usize, tag: &'static str| {
        let smtp = config.smtp.listen[0];
        async move {
            let mut client = penguin_tests::SmtpClient::connect(smtp).await;
            client.ehlo().await;
            for n in 0..count {
                let to = format!("{tag}{n}@x.example");
                let content = penguin_tests::simple_message(SENDER, &to, "kill");
                let reply = client.send_message(SENDER, &[&to], &content).await;
                assert_eq!(reply.code, 250, "{reply}");
            }
        }
    };
    let server = RunningBinary::start(EXE, &path, &config).await;
    send(14, "before").await;
    sink.wait_for(14).await;
    wait_drained(config.api.listen).await;
    assert_eq!(by_peer(&sink).get(&ip(9)), Some(&5), "{:?}", by_peer(&sink));
    server.kill9().await;

    let _server = RunningBinary::start(EXE, &path, &config).await;
    send(6, "after").await;
    sink.wait_for(20).await;
    let peers = by_peer(&sink);
    assert_eq!(
        peers.get(&ip(9)),
        Some(&5),
        "the count survived kill -9: {peers:?}"
    );
    let status = binary::run_cli(
        EXE,
        &[
            "warmup",
            "status",
            "--json",
            "--config",
            path.to_str().expect("path"),
            "--token",
            penguin_tests::TEST_ADMIN_TOKEN,
        ],
        None,
    )
    .await;
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let rows: Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let other = rows
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["source"] == "ip9" && r["provider"] == "other")
        })
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(
        (other["cap_today"].clone(), other["sent_today"].clone()),
        (json!(5), json!(5)),
        "{other}"
    );
    let table = binary::run_cli(
        EXE,
        &[
            "warmup",
            "status",
            "--config",
            path.to_str().expect("path"),
            "--token",
            penguin_tests::TEST_ADMIN_TOKEN,
        ],
        None,
    )
    .await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("SOURCE") && text.contains("ip9") && text.contains("warming"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_to_a_named_pool_uses_that_pools_sources() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOON));
    let shared: SharedClock = clock.clone();
    let toml = format!(
        "{}\n[[pool]]\nname = \"spare\"\nsources = [\"ip2\"]\n",
        world_toml(r#"["ip9"]"#, "pool:spare")
    );
    let world = DeliveryWorld::start_with_clock(1, shared, |config| apply_shaping(config, &toml)).await;
    world.add_mx("a.test", 10, "mx.a.alpha.test", sink_ip(0));
    send_many(&world, "a.test", "a", 60).await;
    world.sinks[0].wait_for(60).await;
    let alpha = by_peer(&world.sinks[0]);
    assert_eq!(alpha.get(&ip(9)), Some(&50), "{alpha:?}");
    assert_eq!(
        alpha.get(&ip(2)),
        Some(&10),
        "the rest through pool spare: {alpha:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_starts_holds_resumes_and_ends_warmups_and_a_restart_keeps_them() {
    let (world, _clock) = world(r#"["ip2", "ip9"]"#, "pool").await;
    let put = |source: &str, body: Value| {
        let path = format!("/v1/sources/{source}/warmup");
        let world = &world;
        async move { world.api("PUT", &path, Some(body)).await }
    };
    let (status, error) = put("ip2", json!({"plan": "fast", "start": "2026-12-02"})).await;
    assert_eq!(
        (status, error["error"]["field"].as_str()),
        (400, Some("plan")),
        "{error}"
    );
    let (status, error) = put("ip2", json!({"plan": "first", "start": "2 Dec"})).await;
    assert_eq!(
        (status, error["error"]["field"].as_str()),
        (400, Some("start")),
        "{error}"
    );
    let (status, _) = put("ip7", json!({"plan": "first", "start": "2026-12-02"})).await;
    assert_eq!(status, 404);
    let (status, rows) = put("ip2", json!({"plan": "first", "start": "2026-12-02"})).await;
    assert_eq!(status, 200, "{rows}");
    assert!(
        rows.as_array()
            .is_some_and(|rows| rows.iter().all(|r| r["source"] == "ip2" && r["step"] == 1)),
        "{rows}"
    );

    let (status, rows) = world.api("POST", "/v1/sources/ip9/warmup/hold", None).await;
    assert_eq!(status, 200, "{rows}");
    assert!(
        rows.as_array()
            .is_some_and(|rows| rows.iter().all(|r| r["state"] == "paused")),
        "{rows}"
    );
    let (status, rows) = world.api("POST", "/v1/sources/ip9/warmup/resume", None).await;
    assert_eq!(status, 200, "{rows}");
    assert!(
        rows.as_array()
            .is_some_and(|rows| rows.iter().all(|r| r["state"] == "warming")),
        "{rows}"
    );
    assert_eq!(world.api("DELETE", "/v1/sources/ip9/warmup", None).await.0, 204);
    assert_eq!(row(&world, "other").await["state"], "warm");

    // ip2 now warms (cap 50 for alpha) and ip9 is warm: the caps changed sides, and stay so after a
    // restart (the API's word wins over the config's).
    let world = world.restart().await;
    assert_eq!(row(&world, "other").await["state"], "warm");
    send_many(&world, "a.test", "a", 120).await;
    world.sinks[0].wait_for(120).await;
    let alpha = by_peer(&world.sinks[0]);
    assert_eq!(alpha.get(&ip(2)), Some(&50), "{alpha:?}");
    assert_eq!(alpha.get(&ip(9)), Some(&70), "{alpha:?}");
}
