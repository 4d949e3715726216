//! The suppression management API and the one-click unsubscribe endpoint (RFC 8058), over real TCP.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use penguin_mta::api::{self, ApiState};
use penguin_mta::events::{Event, EventBus, EventKind, EventSink};
use penguin_mta::metrics::Metrics;
use penguin_mta::unsubscribe::{UnsubscribeClaims, UnsubscribeTokens};
use penguin_queue::{Spool, SpoolOptions, SuppressionReason};
use penguin_tests::*;
use serde_json::{Value, json};

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const ONE_CLICK: &[u8] = b"List-Unsubscribe=One-Click";

/// A server with the tenant acme and the event log in `dir/events.jsonl`.
async fn server(dir: &Path) -> TestServer {
    let mut config = test_config(dir);
    config.tenant.push(ACME.config());
    config.log.events = Some(dir.join("events.jsonl"));
    TestServer::start(config).await
}

/// A request whose answer is JSON (or empty); returns (status, parsed body or null).
async fn call(address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let content_type = if body.is_empty() { None } else { JSON };
    let (status, text) = http_request(address, method, path, content_type, body.as_bytes()).await;
    if text.trim().is_empty() {
        return (status, Value::Null);
    }
    let value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
    (status, value)
}

/// The event log's lines of type `kind`, after the server stopped (which flushes the log).
fn logged(dir: &Path, kind: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON line"))
        .filter(|event| event["type"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_list_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    let api = server.api;
    let base = "/v1/tenants/acme/suppressions";

    let body = r#"{"reason": "complaint", "campaign": "spring"}"#;
    let (status, created) = call(api, "PUT", &format!("{base}/Jane.Doe@Example.COM"), body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["address"], "jane.doe@example.com");
    assert_eq!(created["reason"], "complaint");
    assert_eq!(created["campaign"], "spring");
    let added_at = created["added_at"].as_str().expect("added_at");
    assert!(added_at.len() == 24 && added_at.ends_with('Z'), "{added_at}");

    // Already present: 200, the entry unchanged.
    let (status, again) = call(api, "PUT", &format!("{base}/jane.doe@example.com"), "").await;
    assert_eq!((status, &again), (200, &created));
    let (status, found) = call(api, "GET", &format!("{base}/JANE.DOE@example.com"), "").await;
    assert_eq!((status, &found), (200, &created));
    let (status, missing) = call(api, "GET", &format!("{base}/nobody@example.com"), "").await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"]["code"], "not_found");

    // No body: reason manual, no campaign; `+` and `%40` in the path.
    let (status, manual) = call(api, "PUT", &format!("{base}/a+tag%40x.example"), "").await;
    assert_eq!(status, 201, "{manual}");
    assert_eq!(
        (&manual["address"], &manual["reason"], &manual["campaign"]),
        (&json!("a+tag@x.example"), &json!("manual"), &Value::Null)
    );
    for n in 0..4 {
        let (status, _) = call(api, "PUT", &format!("{base}/user{n}@example.org"), "").await;
        assert_eq!(status, 201);
    }
    let (status, other_tenant) = call(api, "PUT", "/v1/tenants/default/suppressions/x@y.example", "").await;
    assert_eq!(status, 201, "{other_tenant}");

    // Paging through six entries, two at a time.
    let listed = list_by_pages(api, base, 2).await;
    let expected = [
        "a+tag@x.example",
        "jane.doe@example.com",
        "user0@example.org",
        "user1@example.org",
        "user2@example.org",
        "user3@example.org",
    ];
    assert_eq!(listed, expected);
    let (_, all) = call(api, "GET", base, "").await;
    assert_eq!(all["suppressions"].as_array().map(Vec::len), Some(6));
    assert_eq!(all["next_after"], Value::Null);
    assert_eq!(all["suppressions"][1], created);

    let (status, _) = call(api, "DELETE", &format!("{base}/Jane.Doe@example.com"), "").await;
    assert_eq!(status, 204);
    let (status, _) = call(api, "DELETE", &format!("{base}/jane.doe@example.com"), "").await;
    assert_eq!(status, 404);
    let (status, _) = call(api, "GET", &format!("{base}/jane.doe@example.com"), "").await;
    assert_eq!(status, 404);

    server.stop().await.expect("clean stop");
    check_added_events(dir.path(), 7);
}

/// Every address of a list, read `size` at a time (following `next_after`).
async fn list_by_pages(api: SocketAddr, base: &str, size: usize) -> Vec<String> {
    let mut listed = Vec::new();
    let mut path = format!("{base}?limit={size}");
    loop {
        let (status, page) = call(api, "GET", &path, "").await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["tenant"], "acme");
        let entries = page["suppressions"].as_array().expect("array");
        assert!(entries.len() <= size);
        listed.extend(
            entries
                .iter()
                .map(|e| e["address"].as_str().unwrap_or("").to_string()),
        );
        match page["next_after"].as_str() {
            Some(after) => path = format!("{base}?limit={size}&after={}", after.replace('+', "%2B")),
            None => return listed,
        }
    }
}

/// The log has `count` `suppression_added` events, the first for jane (complaint, spring), the second
/// manual; and no `unsubscribe` event.
fn check_added_events(dir: &Path, count: usize) {
    let added = logged(dir, "suppression_added");
    assert_eq!(added.len(), count, "one per new entry: {added:?}");
    let first = &added[0];
    assert_eq!(
        (&first["tenant"], &first["recipient"], &first["domain"]),
        (
            &json!("acme"),
            &json!("jane.doe@example.com"),
            &json!("example.com")
        )
    );
    assert_eq!(
        (&first["reason"], &first["campaign"]),
        (&json!("complaint"), &json!("spring"))
    );
    assert_eq!(first["id"], Value::Null);
    assert_eq!(added[1]["reason"], "manual");
    assert!(logged(dir, "unsubscribe").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tenant_and_bad_input_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    let api = server.api;

    for (method, path) in [
        ("GET", "/v1/tenants/globex/suppressions"),
        ("GET", "/v1/tenants/globex/suppressions/a@b.example"),
        ("PUT", "/v1/tenants/globex/suppressions/a@b.example"),
        ("DELETE", "/v1/tenants/globex/suppressions/a@b.example"),
    ] {
        let (status, body) = call(api, method, path, "").await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(
            body,
            json!({ "error": {"code": "not_found", "message": "unknown tenant \"globex\"", "field": null} }),
            "{method} {path}"
        );
    }

    let long = format!("/v1/tenants/acme/suppressions/{}@example.com", "x".repeat(320));
    let cases = [
        ("PUT", "/v1/tenants/acme/suppressions/no-at-sign", "", "address"),
        ("GET", "/v1/tenants/acme/suppressions/no-at-sign", "", "no @"),
        (
            "DELETE",
            "/v1/tenants/acme/suppressions/@example.com",
            "",
            "address",
        ),
        ("PUT", long.as_str(), "", "longer than 320"),
        ("PUT", "/v1/tenants/acme/suppressions/a@b.example", "{", "body"),
        (
            "PUT",
            "/v1/tenants/acme/suppressions/a@b.example",
            r#"{"reason":"bored"}"#,
            "reason",
        ),
        (
            "PUT",
            "/v1/tenants/acme/suppressions/a@b.example",
            r#"{"color":"red"}"#,
            "color",
        ),
        ("GET", "/v1/tenants/acme/suppressions?limit=lots", "", "limit"),
        ("GET", "/v1/tenants/acme/suppressions?limit=0", "", "limit"),
    ];
    for (method, path, body, names) in cases {
        let (status, answer) = call(api, method, path, body).await;
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        let error = &answer["error"];
        let field = error["field"].as_str().unwrap_or("");
        assert!(
            field.contains(names) || error["message"].as_str().unwrap_or("").contains(names),
            "{method} {path} {body}: {error} should name {names:?}"
        );
        assert!(
            !field.is_empty(),
            "{method} {path} {body}: {error} names its field"
        );
    }
    // Nothing was stored by the refused requests.
    let (status, list) = call(api, "GET", "/v1/tenants/acme/suppressions?limit=5000", "").await;
    assert_eq!(status, 200);
    assert_eq!(list["suppressions"], json!([]));
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_get_404_and_suppress_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    // Well-formed, but signed with a key that is not the server's.
    let forged = UnsubscribeTokens::new([42; 32]).token(&UnsubscribeClaims {
        tenant: "acme".into(),
        campaign: "spring".into(),
        recipient: "victim@example.com".into(),
    });
    for token in [forged.as_str(), "not-a-token", "AAAA"] {
        let path = format!("/u/{token}");
        let (status, page) = http_request(server.public, "POST", &path, FORM, ONE_CLICK).await;
        assert_eq!(status, 404, "POST {token}: {page}");
        assert!(page.contains("not valid"), "{page}");
        let (status, _) = server.http_get(&path).await;
        assert_eq!(status, 404, "GET {token}");
    }
    let (status, list) = call(server.api, "GET", "/v1/tenants/acme/suppressions", "").await;
    assert_eq!((status, &list["suppressions"]), (200, &json!([])));
    server.stop().await.expect("clean stop");
    assert!(logged(dir.path(), "unsubscribe").is_empty());
    assert!(logged(dir.path(), "suppression_added").is_empty());
}

/// Keeps every event.
#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: &Event) {
        self.0.lock().expect("lock").push(event.clone());
    }
}

impl Collect {
    fn of(&self, kind: EventKind) -> Vec<Event> {
        let events = self.0.lock().expect("lock");
        events.iter().filter(|e| e.kind == kind).cloned().collect()
    }
}

/// The shaping part of the API state for the embedded default config (no delivery runs here).
fn shaping_state(spool: &Arc<Spool>) -> api::ShapingState {
    let config = penguin_config::Config::embedded_default();
    let driver = Arc::new(tokio::sync::Notify::new());
    let clock: penguin_mta::clock::SharedClock = Arc::new(penguin_mta::clock::SystemClock);
    let scheduler =
        penguin_mta::delivery::setup::scheduler(&config, EventBus::default(), Arc::clone(&driver))
            .expect("scheduler");
    let suspensions = penguin_mta::delivery::suspensions::Suspensions::new(
        Arc::clone(spool),
        Arc::clone(&scheduler),
        driver,
        Arc::clone(&clock),
    );
    api::ShapingState {
        scheduler,
        suspensions,
        clock,
    }
}

/// Injection over a finisher without keys (the in-process router serves only the public routes).
fn injection(spool: &Arc<Spool>) -> Arc<api::inject::Injection> {
    let secret = spool.secret("unsubscribe").expect("secret");
    let config = penguin_config::Config::embedded_default();
    let finisher = penguin_mta::smtp::finish::Finisher::new(
        Arc::new(penguin_dkim::KeyStore::new(&config.dkim.key_dir)),
        config.dkim.clone(),
        Arc::new(UnsubscribeTokens::new(secret)),
        penguin_mta::smtp::finish::UnsubscribeLinks {
            base_url: "http://127.0.0.1:8026".into(),
            mailto: None,
        },
    );
    Arc::new(api::inject::Injection {
        finisher: Arc::new(finisher),
        ids: penguin_queue::IdGenerator::new(),
        wakeup: Arc::new(tokio::sync::Notify::new()),
        in_progress: std::sync::Mutex::new(std::collections::HashSet::new()),
        hostname: "mta.test".into(),
    })
}

/// The campaign controls over the same scheduler.
fn campaigns(spool: &Arc<Spool>, shaping: &api::ShapingState) -> penguin_mta::campaigns::Campaigns {
    penguin_mta::campaigns::Campaigns::new(
        Arc::clone(spool),
        Arc::clone(&shaping.scheduler),
        penguin_mta::delivery::Cancellations::new(),
        Arc::new(tokio::sync::Notify::new()),
        Arc::clone(&shaping.clock),
    )
}

/// The API router on its own, on a spool in a temporary directory, so the test knows the secret.
struct InProcess {
    address: SocketAddr,
    spool: Arc<Spool>,
    tokens: UnsubscribeTokens,
    events: Arc<Collect>,
    task: tokio::task::JoinHandle<()>,
}

impl InProcess {
    async fn start(dir: &Path) -> InProcess {
        let spool = Arc::new(Spool::open(SpoolOptions::new(dir.join("spool"))).expect("open spool"));
        let secret = spool.secret("unsubscribe").expect("secret");
        let events = Arc::new(Collect::default());
        let config = Arc::new(arc_swap::ArcSwap::from_pointee(
            penguin_config::Config::embedded_default(),
        ));
        let registry = penguin_mta::tenants::TenantRegistry::load(Arc::clone(&spool), Arc::clone(&config))
            .expect("tenants");
        let shaping = shaping_state(&spool);
        let warmup = penguin_mta::warmup::Warmup::load(
            &penguin_config::Config::embedded_default(),
            Arc::clone(&spool),
            Arc::clone(&shaping.scheduler),
            EventBus::default(),
            Arc::clone(&shaping.clock),
        )
        .expect("warm-up");
        let state = ApiState {
            metrics: Arc::new(Metrics::new()),
            spool: Arc::clone(&spool),
            in_flight: Arc::new(AtomicUsize::new(0)),
            events: EventBus::new(vec![Arc::clone(&events) as Arc<dyn EventSink>]),
            tokens: Arc::new(UnsubscribeTokens::new(secret)),
            tenants: Arc::new(arc_swap::ArcSwap::from_pointee(HashSet::from([
                "acme".to_string(),
                "default".to_string(),
            ]))),
            reloader: None,
            config,
            config_path: None,
            campaigns: campaigns(&spool, &shaping),
            injection: injection(&spool),
            webhooks: penguin_mta::webhooks::Webhooks::load(
                Arc::clone(&spool),
                penguin_config::WebhooksConfig::default(),
                Arc::new(penguin_mta::clock::SystemClock),
            )
            .expect("webhooks"),
            shaping,
            auth: api::Authenticator::new(
                api::api_keys::ApiKeys::load(Arc::clone(&spool)).expect("keys"),
                &penguin_config::Config::embedded_default(),
            ),
            registry: Arc::new(registry),
            reputation: penguin_mta::reputation::Reputation::new(),
            warmup,
            cluster: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let router = api::public::router(Arc::new(state));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        InProcess {
            address,
            spool,
            tokens: UnsubscribeTokens::new(secret),
            events,
            task,
        }
    }

    fn link(&self, recipient: &str, campaign: &str) -> String {
        let token = self.tokens.token(&UnsubscribeClaims {
            tenant: "acme".into(),
            campaign: campaign.into(),
            recipient: recipient.into(),
        });
        format!("/u/{token}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_unsubscribes_once_and_get_only_asks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = InProcess::start(dir.path()).await;
    let link = server.link("Jane@Example.com", "spring");

    // GET (a scanner prefetching, or the user's browser) only shows the confirmation form.
    let (status, page) = http_get(server.address, &link).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Unsubscribe <strong>Jane@Example.com</strong> from <strong>acme</strong>"),
        "{page}"
    );
    assert!(
        page.contains("name=\"List-Unsubscribe\" value=\"One-Click\""),
        "{page}"
    );
    assert!(page.contains("method=\"post\""), "{page}");
    assert_eq!(
        server
            .spool
            .suppression("acme", "jane@example.com")
            .expect("lookup"),
        None
    );

    let (status, page) = http_request(server.address, "POST", &link, FORM, ONE_CLICK).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("You are unsubscribed"), "{page}");
    let entry = server
        .spool
        .suppression("acme", "jane@example.com")
        .expect("lookup")
        .expect("suppressed");
    assert_eq!(entry.reason, SuppressionReason::Unsubscribe);
    assert_eq!(entry.campaign.as_deref(), Some("spring"));
    let events = server.events.of(EventKind::Unsubscribe);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (event.tenant.as_str(), event.campaign.as_str()),
        ("acme", "spring")
    );
    assert_eq!(event.recipient.as_deref(), Some("Jane@Example.com"));
    assert_eq!(event.domain.as_deref(), Some("example.com"));
    assert_eq!((event.reason.as_deref(), event.id), (Some("unsubscribe"), None));

    // Idempotent: 200 again, no second event, the entry unchanged.
    let (status, _) = http_request(server.address, "POST", &link, FORM, ONE_CLICK).await;
    assert_eq!(status, 200);
    assert_eq!(server.events.of(EventKind::Unsubscribe).len(), 1);
    let again = server
        .spool
        .suppression("acme", "jane@example.com")
        .expect("lookup");
    assert_eq!(again, Some(entry));
    let path = "/v1/tenants/acme/suppressions/jane@example.com";
    let (status, _) = http_request(server.address, "GET", path, None, b"").await;
    assert_eq!(status, 404, "the public router serves no API route");
    server.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_bodies_and_escaping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = InProcess::start(dir.path()).await;
    let multipart = "multipart/form-data; boundary=b0undary";
    let multipart_body = b"--b0undary\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n\
        One-Click\r\n--b0undary--\r\n";
    let cases: [(&str, Option<&str>, &[u8], u16); 4] = [
        ("empty@example.com", None, b"", 200),
        ("multipart@example.com", Some(multipart), multipart_body, 200),
        ("encoded@example.com", FORM, b"List-Unsubscribe=One%2DClick", 200),
        ("other@example.com", FORM, b"List-Unsubscribe=Maybe", 400),
    ];
    for (recipient, content_type, body, expected) in cases {
        let link = server.link(recipient, "");
        let (status, page) = http_request(server.address, "POST", &link, content_type, body).await;
        assert_eq!(status, expected, "{recipient}: {page}");
        let stored = server.spool.suppression("acme", recipient).expect("lookup");
        assert_eq!(stored.is_some(), expected == 200, "{recipient}");
        if let Some(entry) = stored {
            assert_eq!(entry.campaign, None, "empty campaign is stored as none");
        }
    }
    assert_eq!(server.events.of(EventKind::Unsubscribe).len(), 3);

    // Everything inserted into a page is escaped.
    let link = server.link("\"<script>x</script>\"@example.com", "");
    let (status, page) = http_get(server.address, &link).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains("&quot;&lt;script&gt;x&lt;/script&gt;&quot;@example.com"),
        "{page}"
    );
    server.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_counts_each_line_and_export_gives_the_list_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    let api = server.api;
    let (status, _) = call(
        api,
        "PUT",
        "/v1/tenants/acme/suppressions/old@x.example",
        r#"{"reason":"manual"}"#,
    )
    .await;
    assert_eq!(status, 201);
    let csv = "address,reason\r\n\
               new@x.example,complaint\r\n\
               OLD@x.example,hard_bounce\r\n\
               \"quoted@x.example\",\r\n\
               not-an-address,manual\r\n\
               bad@x.example,bored\r\n\
               new@x.example,complaint\r\n\
               a@x.example,manual,extra\r\n";
    let answer = http_exchange(
        api,
        Some(TEST_ADMIN_TOKEN),
        "POST",
        "/v1/tenants/acme/suppressions/import",
        Some("text/csv"),
        csv.as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let counts = answer.json();
    assert_eq!(
        (&counts["added"], &counts["updated"], &counts["unchanged"]),
        (&json!(2), &json!(1), &json!(1)),
        "{counts}"
    );
    let lines: Vec<u64> = counts["invalid"]
        .as_array()
        .expect("invalid")
        .iter()
        .filter_map(|entry| entry["line"].as_u64())
        .collect();
    assert_eq!(lines, [5, 6, 8], "{counts}");

    let export = http_exchange(
        api,
        Some(TEST_ADMIN_TOKEN),
        "GET",
        "/v1/tenants/acme/suppressions/export",
        None,
        b"",
    )
    .await;
    assert_eq!(export.status, 200);
    assert!(
        export
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/csv"))
    );
    let rows: Vec<(String, String)> = export
        .body
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[0].to_string(), fields[1].to_string())
        })
        .collect();
    assert_eq!(
        export.body.lines().next(),
        Some("address,reason,added_at,campaign")
    );
    assert_eq!(
        rows,
        [
            ("new@x.example".to_string(), "complaint".to_string()),
            ("old@x.example".to_string(), "hard_bounce".to_string()),
            ("quoted@x.example".to_string(), "manual".to_string()),
        ]
    );
    server.stop().await.expect("clean stop");
    assert_eq!(
        logged(dir.path(), "suppression_added").len(),
        3,
        "the PUT and two imported"
    );
}
