//! Usage, daily quotas, campaigns and the queue over the control API, end to end against the real
//! server delivering to loopback sinks: the counts per UTC day equal what happened (and survive a
//! restart), a quota answers MAIL with 452 until the next UTC day, a paused campaign waits without
//! attempts (also across a restart) until resumed, a cancelled one loses its queued recipients (one
//! `cancelled` event each) and refuses new mail, and a message shows its attempt history, is retried
//! now or deleted.

use std::sync::Arc;
use std::time::Duration;

use penguin_mta::clock::ManualClock;
use penguin_tests::delivery::*;
use penguin_tests::sink::SinkBehaviour;
use penguin_tests::*;
use serde_json::{Value, json};

/// One UTC day.
const DAY: Duration = Duration::from_secs(86_400);

/// A world on a manual clock with the tenant acme (AUTH over loopback); `configure` on top.
async fn world(configure: impl FnOnce(&mut penguin_config::Config)) -> (DeliveryWorld, Arc<ManualClock>) {
    let clock = ManualClock::starting_now();
    let shared: penguin_mta::clock::SharedClock = clock.clone();
    let world = DeliveryWorld::start_with_clock(2, shared, |config| {
        config.tenant.push(ACME.config());
        configure(config);
    })
    .await;
    world.route_to_sink("ok.test", 0);
    world.route_to_sink("picky.test", 1);
    (world, clock)
}

/// A session authenticated as acme.
async fn acme_session(world: &DeliveryWorld) -> SmtpClient {
    let mut client = world.server.connect().await;
    client.ehlo().await;
    let auth = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_eq!(auth.code, 235, "{auth:?}");
    client
}

/// A message of acme's campaign `campaign` (none when empty) to `to`.
fn campaign_message(campaign: &str, to: &str) -> String {
    let header = if campaign.is_empty() {
        String::new()
    } else {
        format!("X-Campaign-ID: {campaign}\r\n")
    };
    format!(
        "From: <news@acme.example>\r\nTo: <{to}>\r\nSubject: hello\r\n{header}Message-ID: <{to}.{campaign}@acme.example>\r\n\r\nHi.\r\n"
    )
}

/// Sends one message as acme; returns its queue id.
async fn send_as_acme(world: &DeliveryWorld, campaign: &str, to: &[&str]) -> String {
    let mut client = acme_session(world).await;
    let reply = client
        .send_message("news@acme.example", to, &campaign_message(campaign, to[0]))
        .await;
    let id = reply
        .queued_id()
        .unwrap_or_else(|| panic!("not queued: {reply:?}"));
    client.cmd("QUIT").await;
    id
}

/// The JSON of an admin GET.
async fn get(world: &DeliveryWorld, path: &str) -> Value {
    let (status, body) = world.api("GET", path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The usage days of acme from `from` to `to`.
async fn usage(world: &DeliveryWorld, from: &str, to: &str) -> Vec<Value> {
    let body = get(world, &format!("/v1/tenants/acme/usage?from={from}&to={to}")).await;
    body["days"].as_array().cloned().unwrap_or_default()
}

/// Today (UTC) on the world's clock, `YYYY-MM-DD`.
fn day_of(clock: &ManualClock) -> String {
    let ms = penguin_mta::clock::Clock::now_ms(clock);
    penguin_mta::usage::utc_date(ms).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_each_outcome_per_utc_day_and_survives_a_restart() {
    let (world, clock) = world(|_| {}).await;
    world.sinks[1].set_behaviour(SinkBehaviour::default().with_rcpt(|address| {
        if address.starts_with("gone@") {
            (550, "5.1.1 <gone@picky.test>: user unknown".into())
        } else {
            (250, "2.1.5 Ok".into())
        }
    }));
    let (status, _) = world
        .api("PUT", "/v1/tenants/acme/suppressions/blocked@ok.test", None)
        .await;
    assert_eq!(status, 201);
    let today = day_of(&clock);

    send_as_acme(&world, "spring", &["a@ok.test", "b@ok.test"]).await;
    send_as_acme(&world, "spring", &["gone@picky.test"]).await;
    let mut client = acme_session(&world).await;
    client.cmd("MAIL FROM:<news@acme.example>").await;
    client.expect("RCPT TO:<blocked@ok.test>", 550, "5.7.1").await;
    client.cmd("QUIT").await;
    world.wait_event("delivery", "a@ok.test").await;
    world.wait_event("delivery", "b@ok.test").await;
    world.wait_event("bounce", "gone@picky.test").await;
    // The bounce's DSN goes to acme.example, which has no MX: it bounces too, and counts nowhere.
    world
        .wait_events("the DSN's own failure", 1, |e| {
            e["type"] == "bounce" && e["campaign"] == "dsn"
        })
        .await;

    let expected = json!({"date": today, "accepted": 3, "delivered": 2, "deferred": 0, "bounced": 1,
        "expired": 0, "suppressed": 1, "unsubscribed": 0, "cancelled": 0});
    assert_eq!(
        usage(&world, &today, &today).await,
        std::slice::from_ref(&expected)
    );
    let spring = get(&world, "/v1/tenants/acme/campaigns/spring").await;
    assert_eq!(spring["accepted"], 3, "{spring}");
    assert_eq!(spring["delivered"], 2, "{spring}");
    assert_eq!(
        spring["bounced_by_class"],
        json!({"invalid_recipient": 1}),
        "{spring}"
    );
    assert_eq!(spring["queued"], 0, "{spring}");
    assert_eq!(spring["state"], "active", "{spring}");

    let world = world.restart().await;
    assert_eq!(
        usage(&world, &today, &today).await,
        std::slice::from_ref(&expected),
        "after a restart"
    );
    clock.advance(DAY);
    let tomorrow = day_of(&clock);
    send_as_acme(&world, "", &["c@ok.test"]).await;
    world.wait_event("delivery", "c@ok.test").await;
    let days = usage(&world, &today, &tomorrow).await;
    assert_eq!(days.len(), 2, "{days:?}");
    assert_eq!(days[0], expected);
    assert_eq!(
        (days[1]["accepted"].clone(), days[1]["delivered"].clone()),
        (json!(1), json!(1))
    );
    let listed = get(&world, "/v1/tenants/acme/campaigns").await;
    let names: Vec<&str> = listed["campaigns"]
        .as_array()
        .map(|list| list.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["default", "spring"], "{listed}");

    let (status, error) = world
        .api("GET", "/v1/tenants/acme/usage?from=2026-02-30", None)
        .await;
    assert_eq!(
        (status, error["error"]["field"].clone()),
        (400, json!("from")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_quota_answers_mail_with_452_until_the_next_utc_day() {
    let (world, clock) = world(|config| {
        config.tenant[0].daily_quota = Some(3);
    })
    .await;
    send_as_acme(&world, "", &["a@ok.test", "b@ok.test"]).await;
    send_as_acme(&world, "", &["c@ok.test"]).await;
    let mut client = acme_session(&world).await;
    let refused = client.expect("MAIL FROM:<news@acme.example>", 452, "4.7.1").await;
    assert!(refused.text().contains("quota of 3"), "{refused:?}");
    client.cmd("QUIT").await;

    // Midnight UTC: a new day, a new quota.
    let ms = penguin_mta::clock::Clock::now_ms(&*clock);
    clock.advance(Duration::from_millis(86_400_000 - ms % 86_400_000));
    send_as_acme(&world, "", &["d@ok.test"]).await;
}

/// POST a campaign action as admin; returns the campaign.
async fn campaign_action(world: &DeliveryWorld, campaign: &str, action: &str) -> (u16, Value) {
    world
        .api(
            "POST",
            &format!("/v1/tenants/acme/campaigns/{campaign}/{action}"),
            None,
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_campaign_waits_without_attempts_until_resumed_even_across_a_restart() {
    let (world, _clock) = world(|_| {}).await;
    let (status, paused) = campaign_action(&world, "spring", "pause").await;
    assert_eq!(
        (status, paused["state"].clone()),
        (200, json!("paused")),
        "{paused}"
    );
    let held = send_as_acme(&world, "spring", &["a@ok.test"]).await;
    send_as_acme(&world, "fall", &["b@ok.test"]).await;
    world.wait_event("delivery", "b@ok.test").await;
    world.wait_queued("mx.ok.test", 1).await;
    let message = get(&world, &format!("/v1/messages/{held}")).await;
    assert_eq!(message["recipients"][0]["attempts"], 0, "{message}");
    assert_eq!(message["recipients"][0]["state"], "queued", "{message}");
    let suspensions = get(&world, "/v1/suspensions").await;
    assert_eq!(
        suspensions["suspensions"],
        json!([]),
        "pauses are not operator suspensions"
    );

    let world = world.restart().await;
    world.wait_queued("mx.ok.test", 1).await;
    assert!(
        world
            .events_for("a@ok.test")
            .iter()
            .all(|e| e["type"] != "delivery")
    );
    let spring = get(&world, "/v1/tenants/acme/campaigns/spring").await;
    assert_eq!(
        (spring["state"].clone(), spring["queued"].clone()),
        (json!("paused"), json!(1))
    );

    let (status, resumed) = campaign_action(&world, "spring", "resume").await;
    assert_eq!(
        (status, resumed["state"].clone()),
        (200, json!("active")),
        "{resumed}"
    );
    let delivered = world.wait_event("delivery", "a@ok.test").await;
    assert_eq!(delivered["attempt"], 1, "waiting counted no attempt: {delivered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_campaign_loses_its_queued_mail_and_refuses_new_mail() {
    let (world, clock) = world(|_| {}).await;
    // picky.test defers everything: those messages wait in the schedule for their retry.
    world.sinks[1].set_behaviour(SinkBehaviour::default().with_rcpt(|_| (451, "4.3.0 try later".into())));
    let deferred = send_as_acme(&world, "summer", &["c@picky.test"]).await;
    world.wait_event("transient_failure", "c@picky.test").await;
    campaign_action(&world, "summer", "pause").await;
    let held = send_as_acme(&world, "summer", &["a@ok.test", "b@ok.test"]).await;
    world.wait_queued("mx.ok.test", 1).await;

    let (status, cancelled) = campaign_action(&world, "summer", "cancel").await;
    assert_eq!(
        (status, cancelled["state"].clone()),
        (200, json!("cancelled")),
        "{cancelled}"
    );
    let events = world
        .wait_events("3 cancelled", 3, |e| e["type"] == "cancelled")
        .await;
    assert!(
        events
            .iter()
            .all(|e| e["reason"] == "campaign_cancelled" && e["campaign"] == "summer")
    );
    let summer = get(&world, "/v1/tenants/acme/campaigns/summer").await;
    assert_eq!(
        (summer["cancelled"].clone(), summer["queued"].clone()),
        (json!(3), json!(0)),
        "{summer}"
    );
    assert!(world.is_gone(&held) && world.is_gone(&deferred));
    assert!(
        world.sinks[0].received().is_empty(),
        "nothing of it was delivered"
    );

    let mut client = acme_session(&world).await;
    let refused = client
        .send_message(
            "news@acme.example",
            &["d@ok.test"],
            &campaign_message("summer", "d@ok.test"),
        )
        .await;
    assert_reply(&refused, 550, "5.7.1", "mail for a cancelled campaign");
    client.cmd("QUIT").await;
    let (status, _) = campaign_action(&world, "summer", "resume").await;
    assert_eq!(status, 409);
    let world = world.restart().await;
    let mut client = acme_session(&world).await;
    let refused = client
        .send_message(
            "news@acme.example",
            &["d@ok.test"],
            &campaign_message("summer", "d@ok.test"),
        )
        .await;
    assert_reply(&refused, 550, "5.7.1", "still cancelled after a restart");
    // No DSN for cancelled recipients.
    clock.advance(Duration::from_secs(1));
    assert!(world.events().iter().all(|e| e["campaign"] != "dsn"), "no DSN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_shows_its_attempts_is_retried_now_and_deleted() {
    let (world, clock) = world(|config| {
        config.tenant.push(GLOBEX.config());
    })
    .await;
    world.sinks[1].set_behaviour(SinkBehaviour::default().with_rcpt(|_| (451, "4.2.1 mailbox busy".into())));
    let id = send_as_acme(&world, "spring", &["x@picky.test"]).await;
    world.wait_event("transient_failure", "x@picky.test").await;
    let message = get(&world, &format!("/v1/messages/{id}")).await;
    assert_eq!(message["tenant"], "acme");
    assert_eq!(message["campaign"], "spring");
    assert_eq!(message["scheduled"], true, "{message}");
    let history = message["history"].as_array().cloned().unwrap_or_default();
    assert_eq!(history.len(), 1, "{message}");
    assert_eq!(history[0]["type"], "transient_failure");
    assert_eq!(history[0]["response"]["code"], 451);
    assert_eq!(history[0]["response"]["text"], "4.2.1 mailbox busy", "{message}");
    assert_eq!(history[0]["mx"], "mx.picky.test");

    // Retry now: a second attempt without the clock moving to the retry time.
    let (status, retried) = world.api("POST", &format!("/v1/messages/{id}/retry"), None).await;
    assert_eq!(status, 202, "{retried}");
    world
        .wait_events("a second attempt", 2, |e| {
            e["type"] == "transient_failure" && e["recipient"] == "x@picky.test"
        })
        .await;
    let summary = get(&world, "/v1/queue/summary").await;
    assert_eq!(summary["by_campaign"]["acme/spring"], 1, "{summary}");
    assert_eq!(summary["by_domain"]["picky.test"], 1, "{summary}");

    // Another tenant's key sees nothing of it.
    let (status, key) = world.api("POST", "/v1/tenants/globex/api-keys", None).await;
    assert_eq!(status, 201);
    let key = key["key"].as_str().expect("key").to_string();
    for (method, path) in [
        ("GET", format!("/v1/messages/{id}")),
        ("POST", format!("/v1/messages/{id}/retry")),
        ("DELETE", format!("/v1/messages/{id}")),
    ] {
        let answer = http_exchange(world.server.api, Some(&key), method, &path, None, b"").await;
        assert_eq!(answer.status, 404, "{method} {path}: {}", answer.body);
    }
    let answer = http_exchange(
        world.server.api,
        Some(&key),
        "GET",
        "/v1/queue/summary",
        None,
        b"",
    )
    .await;
    assert_eq!(answer.json()["recipients"], 0, "{}", answer.body);

    let (status, deleted) = world.api("DELETE", &format!("/v1/messages/{id}"), None).await;
    assert_eq!(
        (status, deleted["cancelling"].clone()),
        (202, json!(1)),
        "{deleted}"
    );
    let cancelled = world.wait_event("cancelled", "x@picky.test").await;
    assert_eq!(cancelled["reason"], "message_deleted");
    assert!(world.is_gone(&id));
    let (status, _) = world.api("GET", &format!("/v1/messages/{id}"), None).await;
    assert_eq!(status, 404);
    let (status, error) = world.api("GET", "/v1/messages/not-an-id", None).await;
    assert_eq!(
        (status, error["error"]["field"].clone()),
        (400, json!("id")),
        "{error}"
    );
    clock.advance(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_campaign_commands_list_pause_resume_and_cancel_with_a_tenant_key() {
    const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");
    let (world, _clock) = world(|_| {}).await;
    let (status, key) = world.api("POST", "/v1/tenants/acme/api-keys", None).await;
    assert_eq!(status, 201);
    let key = key["key"].as_str().expect("key").to_string();
    send_as_acme(&world, "launch", &["a@ok.test"]).await;
    world.wait_event("delivery", "a@ok.test").await;
    let url = format!("http://{}", world.server.api);
    let run = |words: &str| {
        let mut args: Vec<String> = words.split(' ').map(str::to_string).collect();
        args.extend(["--api".to_string(), url.clone()]);
        let key = key.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            penguin_tests::binary::run_cli_env(
                EXE,
                std::path::Path::new("."),
                &args,
                None,
                &[("PENGUIN_API_TOKEN", key.as_str())],
            )
            .await
        }
    };

    let paused = run("campaign pause acme launch").await;
    assert!(
        paused.status.success(),
        "{}",
        String::from_utf8_lossy(&paused.stderr)
    );
    let paused: Value = serde_json::from_slice(&paused.stdout).expect("JSON");
    assert_eq!(
        (paused["state"].clone(), paused["delivered"].clone()),
        (json!("paused"), json!(1))
    );
    let table = run("campaign list acme").await;
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(row, ["launch", "paused", "1", "0", "1", "0", "0", "0"], "{table}");
    let resumed = run("campaign resume acme launch").await;
    assert!(resumed.status.success());
    let cancelled = run("campaign cancel acme launch").await;
    assert!(cancelled.status.success());
    let refused = run("campaign pause acme launch").await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cancelled"),
        "{refused:?}"
    );
    let foreign = run("campaign list globex").await;
    assert!(!foreign.status.success(), "another tenant: 404");
    let listed = run("campaign list acme --json").await;
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(listed["campaigns"][0]["state"], "cancelled", "{listed}");
}
