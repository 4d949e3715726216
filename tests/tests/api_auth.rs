//! Authentication of the control API, over real TCP: every `/v1` route with no token, a bad token,
//! another tenant's key, the tenant's own key and an admin token; tenant API keys shown once,
//! listed, revoked at once and kept across a restart; lockout after guessing; `/metrics` open unless
//! configured; the public listener serving nothing but `/u/` and `/healthz`; `token create`.

use std::net::SocketAddr;
use std::path::Path;

use penguin_config::Config;
use penguin_tests::binary;
use penguin_tests::*;
use serde_json::{Value, json};

const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");
const JSON: Option<&str> = Some("application/json");

/// The test config with the tenants acme and globex.
fn config(dir: &Path) -> Config {
    let mut config = test_config(dir);
    config.tenant.push(ACME.config());
    config.tenant.push(GLOBEX.config());
    config
}

/// A request as `token` (None: no Authorization header) with an optional JSON body.
async fn call(api: SocketAddr, token: Option<&str>, method: &str, path: &str, body: &str) -> HttpAnswer {
    let content_type = (!body.is_empty()).then_some(JSON).flatten();
    http_exchange(api, token, method, path, content_type, body.as_bytes()).await
}

/// Makes an API key for `tenant` with the admin token; returns (id, key).
async fn new_key(api: SocketAddr, tenant: &str) -> (String, String) {
    let path = format!("/v1/tenants/{tenant}/api-keys");
    let answer = call(api, Some(TEST_ADMIN_TOKEN), "POST", &path, "").await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let body = answer.json();
    let key = body["key"].as_str().expect("key").to_string();
    assert!(key.starts_with("pmk_") && key.len() > 40, "{key}");
    (body["id"].as_str().expect("id").to_string(), key)
}

/// Queues a message of acme (delivery is paused in the test config: it stays); returns its id.
async fn acme_message(server: &TestServer) -> String {
    let mut client = server.connect().await;
    client.ehlo().await;
    let auth = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_eq!(auth.code, 235, "{auth:?}");
    let content = simple_message("a@acme.example", "r@x.example", "held");
    let reply = client
        .send_message("a@acme.example", &["r@x.example"], &content)
        .await;
    reply
        .queued_id()
        .unwrap_or_else(|| panic!("not queued: {reply:?}"))
}

/// Every route of the API listener, as the OpenAPI document must list them (method, path template).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/reload"),
    ("GET", "/v1/shaping"),
    ("GET", "/v1/suspensions"),
    ("POST", "/v1/suspensions"),
    ("DELETE", "/v1/suspensions/{id}"),
    ("GET", "/v1/tenants/{tenant}/suppressions"),
    ("GET", "/v1/tenants/{tenant}/suppressions/{address}"),
    ("PUT", "/v1/tenants/{tenant}/suppressions/{address}"),
    ("DELETE", "/v1/tenants/{tenant}/suppressions/{address}"),
    ("GET", "/v1/tenants/{tenant}/domains/{domain}/check"),
    ("GET", "/v1/tenants/{tenant}/domains"),
    ("POST", "/v1/tenants/{tenant}/domains"),
    ("DELETE", "/v1/tenants/{tenant}/domains/{domain}"),
    ("GET", "/v1/tenants/{tenant}/api-keys"),
    ("POST", "/v1/tenants/{tenant}/api-keys"),
    ("DELETE", "/v1/tenants/{tenant}/api-keys/{id}"),
    ("POST", "/v1/tenants/{tenant}/suppressions/import"),
    ("GET", "/v1/tenants/{tenant}/suppressions/export"),
    ("GET", "/v1/tenants"),
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants/{tenant}"),
    ("PATCH", "/v1/tenants/{tenant}"),
    ("DELETE", "/v1/tenants/{tenant}"),
    ("GET", "/v1/tenants/{tenant}/smtp-credentials"),
    ("POST", "/v1/tenants/{tenant}/smtp-credentials"),
    ("DELETE", "/v1/tenants/{tenant}/smtp-credentials/{username}"),
    ("GET", "/v1/tenants/{tenant}/usage"),
    ("GET", "/v1/tenants/{tenant}/campaigns"),
    ("GET", "/v1/tenants/{tenant}/campaigns/{campaign}"),
    ("POST", "/v1/tenants/{tenant}/campaigns/{campaign}/pause"),
    ("POST", "/v1/tenants/{tenant}/campaigns/{campaign}/resume"),
    ("POST", "/v1/tenants/{tenant}/campaigns/{campaign}/cancel"),
    ("GET", "/v1/queue/summary"),
    ("GET", "/v1/messages/{id}"),
    ("POST", "/v1/messages/{id}/retry"),
    ("DELETE", "/v1/messages/{id}"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/preview"),
    ("GET", "/v1/tenants/{tenant}/webhooks"),
    ("POST", "/v1/tenants/{tenant}/webhooks"),
    ("DELETE", "/v1/tenants/{tenant}/webhooks/{id}"),
    ("GET", "/v1/warmup"),
    ("PUT", "/v1/sources/{source}/warmup"),
    ("DELETE", "/v1/sources/{source}/warmup"),
    ("POST", "/v1/sources/{source}/warmup/hold"),
    ("POST", "/v1/sources/{source}/warmup/resume"),
    ("GET", "/v1/cluster"),
];

/// An injection as acme (the tenant named, so an admin token may send it too).
const INJECTION: &str = r#"{"tenant":"acme","from":"a@acme.example","subject":"s","text":"t","recipients":[{"address":"r@x.example"}]}"#;

/// A webhook endpoint on a public address that never gets an event in this test (no bounces).
const WEBHOOK: &str = r#"{"url":"https://93.184.216.34/hooks","events":["bounce"]}"#;

/// Who calls, and what each expects from one route (None: not checked for that caller).
struct Case {
    route: &'static str,
    method: &'static str,
    path: String,
    body: String,
    admin: Option<u16>,
    own: Option<u16>,
    other: u16,
}

/// The routes, with acme's key as "own" and globex's as "other". `who` makes per-caller paths.
fn cases(who: &str, domain_suspension: &str, spare_key: &str, message: &str) -> Vec<Case> {
    let case = |method, path: &str, body: &str, admin, own, other| Case {
        route: route_of(method, path),
        method,
        path: path.to_string(),
        body: body.to_string(),
        admin,
        own,
        other,
    };
    let address = format!("/v1/tenants/acme/suppressions/{who}@x.example");
    vec![
        case("GET", "/v1/shaping", "", Some(200), Some(403), 403),
        case("GET", "/v1/warmup", "", Some(200), Some(403), 403),
        case("GET", "/v1/cluster", "", Some(200), Some(403), 403),
        case(
            "PUT",
            "/v1/sources/default/warmup",
            r#"{"plan":"none","start":"2026-12-01"}"#,
            Some(400),
            Some(403),
            403,
        ),
        case(
            "DELETE",
            "/v1/sources/default/warmup",
            "",
            Some(404),
            Some(403),
            403,
        ),
        case(
            "POST",
            "/v1/sources/default/warmup/hold",
            "",
            Some(404),
            Some(403),
            403,
        ),
        case(
            "POST",
            "/v1/sources/default/warmup/resume",
            "",
            Some(404),
            Some(403),
            403,
        ),
        case("POST", "/v1/reload", "", Some(409), Some(403), 403),
        case(
            "GET",
            "/v1/tenants/acme/suppressions",
            "",
            Some(200),
            Some(200),
            404,
        ),
        case("PUT", &address, "", Some(201), Some(201), 404),
        case("GET", &address, "", Some(200), Some(200), 404),
        case("DELETE", &address, "", Some(204), Some(204), 404),
        case("GET", "/v1/tenants/acme/api-keys", "", Some(200), Some(200), 404),
        case(
            "GET",
            "/v1/tenants/acme/domains/acme.example/check",
            "",
            None,
            None,
            404,
        ),
        case("GET", "/v1/tenants/acme/domains", "", Some(200), Some(200), 404),
        case(
            "POST",
            "/v1/tenants/acme/domains",
            r#"{"domain":"acme.example"}"#,
            Some(409),
            Some(409),
            404,
        ),
        case(
            "DELETE",
            "/v1/tenants/acme/domains/acme.example",
            "",
            Some(409),
            Some(409),
            404,
        ),
        case("GET", "/v1/suspensions", "", Some(200), Some(200), 200),
        case(
            "POST",
            "/v1/suspensions",
            r#"{"tenant":"acme","campaign":"c1","duration":"1h"}"#,
            Some(201),
            Some(201),
            404,
        ),
        case(
            "POST",
            "/v1/suspensions",
            r#"{"domain":"x.example","duration":"1h"}"#,
            None,
            Some(403),
            403,
        ),
        case(
            "DELETE",
            &format!("/v1/suspensions/{domain_suspension}"),
            "",
            None,
            Some(404),
            404,
        ),
        case("POST", "/v1/tenants/acme/api-keys", "", None, Some(201), 404),
        case(
            "POST",
            "/v1/tenants/acme/suppressions/import",
            "imported@x.example,manual",
            Some(200),
            Some(200),
            404,
        ),
        case(
            "GET",
            "/v1/tenants/acme/suppressions/export",
            "",
            Some(200),
            Some(200),
            404,
        ),
        case("GET", "/v1/tenants", "", Some(200), Some(403), 403),
        case(
            "POST",
            "/v1/tenants",
            &format!(r#"{{"name":"made-by-{who}","sender_domains":["made.example"]}}"#),
            Some(201),
            Some(403),
            403,
        ),
        case("GET", "/v1/tenants/acme", "", Some(200), Some(403), 403),
        case(
            "PATCH",
            "/v1/tenants/acme",
            r#"{"dsn":false}"#,
            Some(409),
            Some(403),
            403,
        ),
        case("DELETE", "/v1/tenants/acme", "", Some(409), Some(403), 403),
        case(
            "GET",
            "/v1/tenants/acme/smtp-credentials",
            "",
            Some(200),
            Some(200),
            404,
        ),
        case(
            "POST",
            "/v1/tenants/acme/smtp-credentials",
            "",
            Some(201),
            Some(201),
            404,
        ),
        case(
            "DELETE",
            "/v1/tenants/acme/smtp-credentials/acme",
            "",
            Some(409),
            Some(409),
            404,
        ),
        case(
            "DELETE",
            &format!("/v1/tenants/acme/api-keys/{spare_key}"),
            "",
            None,
            Some(204),
            404,
        ),
        case(
            "GET",
            "/v1/tenants/acme/usage?from=2026-01-01",
            "",
            Some(200),
            Some(200),
            404,
        ),
        case(
            "POST",
            "/v1/tenants/acme/campaigns/c1/pause",
            "",
            Some(200),
            Some(200),
            404,
        ),
        case(
            "GET",
            "/v1/tenants/acme/campaigns/c1",
            "",
            Some(200),
            Some(200),
            404,
        ),
        case("GET", "/v1/tenants/acme/campaigns", "", Some(200), Some(200), 404),
        case(
            "POST",
            "/v1/tenants/acme/campaigns/c1/resume",
            "",
            Some(200),
            Some(200),
            404,
        ),
        case(
            "POST",
            &format!("/v1/tenants/acme/campaigns/gone-{who}/cancel"),
            "",
            Some(200),
            Some(200),
            404,
        ),
        case("GET", "/v1/queue/summary", "", Some(200), Some(200), 200),
        case(
            "GET",
            &format!("/v1/messages/{message}"),
            "",
            Some(200),
            Some(200),
            404,
        ),
        case(
            "POST",
            &format!("/v1/messages/{message}/retry"),
            "",
            Some(202),
            Some(202),
            404,
        ),
        case(
            "DELETE",
            &format!("/v1/messages/{message}"),
            "",
            Some(202),
            Some(202),
            404,
        ),
        case("POST", "/v1/messages", INJECTION, Some(202), Some(202), 404),
        case(
            "POST",
            "/v1/messages/preview",
            INJECTION,
            Some(200),
            Some(200),
            404,
        ),
        case("GET", "/v1/tenants/acme/webhooks", "", Some(200), Some(200), 404),
        case(
            "POST",
            "/v1/tenants/acme/webhooks",
            WEBHOOK,
            Some(201),
            Some(201),
            404,
        ),
        case(
            "DELETE",
            "/v1/tenants/acme/webhooks/whnone",
            "",
            Some(404),
            Some(404),
            404,
        ),
    ]
}

/// The template of [`ROUTES`] that `path` (a concrete path) matches for `method`.
fn route_of(method: &str, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    let matches = |template: &str| {
        let (a, b): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
        a.len() == b.len() && a.iter().zip(&b).all(|(t, p)| t.starts_with('{') || t == p)
    };
    // A static segment wins over a parameter (as in the router): the fewest parameters.
    ROUTES
        .iter()
        .filter(|(m, template)| *m == method && matches(template))
        .min_by_key(|(_, template)| template.matches('{').count())
        .map(|(_, template)| *template)
        .unwrap_or_else(|| panic!("{method} {path} is not in ROUTES"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_kind_of_caller_as_it_should() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    // The bad token is tried on every route: no lockout in this test (see the lockout test).
    config.smtp.auth_failure_limit = 1000;
    let server = TestServer::start(config).await;
    let api = server.api;
    let (_, acme_key) = new_key(api, "acme").await;
    let (_, globex_key) = new_key(api, "globex").await;
    let (spare_id, _) = new_key(api, "acme").await;
    let held = call(
        api,
        Some(TEST_ADMIN_TOKEN),
        "POST",
        "/v1/suspensions",
        r#"{"domain":"held.example","duration":"1h"}"#,
    )
    .await;
    assert_eq!(held.status, 201, "{}", held.body);
    let held_id = held.json()["id"].as_str().expect("id").to_string();
    let message = acme_message(&server).await;

    let callers = [
        ("none", None),
        ("bad", Some("pmk_not-a-key-of-this-server")),
        ("other", Some(globex_key.as_str())),
        ("own", Some(acme_key.as_str())),
        ("admin", Some(TEST_ADMIN_TOKEN)),
    ];
    for (who, token) in callers {
        for case in cases(who, &held_id, &spare_id, &message) {
            let expected = match who {
                "none" | "bad" => Some(401),
                "other" => Some(case.other),
                "own" => case.own,
                _ => case.admin,
            };
            let Some(expected) = expected else { continue };
            let answer = call(api, token, case.method, &case.path, &case.body).await;
            let what = format!("{who}: {} {}", case.method, case.path);
            assert_eq!(answer.status, expected, "{what}: {}", answer.body);
            if expected == 401 {
                assert_eq!(
                    answer.header("www-authenticate").as_deref(),
                    Some("Bearer"),
                    "{what}"
                );
            }
            if expected >= 400 {
                let code = answer.json()["error"]["code"].clone();
                assert!(code.is_string(), "{what}: error body {}", answer.body);
            }
        }
    }
    // Every /v1 route of the document is in the table (the document itself: see the OpenAPI test).
    let tested: Vec<(&str, &str)> = cases("x", "y", "z", "w")
        .iter()
        .map(|c| (c.method, c.route))
        .collect();
    for &(method, route) in ROUTES {
        if route.starts_with("/v1/") && route != "/v1/openapi.json" {
            assert!(
                tested.contains(&(method, route)),
                "{method} {route} is not tested for auth"
            );
        }
    }
    // globex's key saw none of acme's suspensions; nothing it tried was stored.
    let listed = call(api, Some(globex_key.as_str()), "GET", "/v1/suspensions", "").await;
    assert_eq!(listed.json()["suspensions"], json!([]));
    let list = call(
        api,
        Some(TEST_ADMIN_TOKEN),
        "GET",
        "/v1/tenants/acme/suppressions",
        "",
    )
    .await;
    let addresses: Vec<Value> = list.json()["suppressions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|entry| entry["address"].clone())
        .collect();
    assert_eq!(
        addresses,
        [json!("imported@x.example")],
        "every PUT was deleted again; only the import stays"
    );
    let all = call(api, Some(TEST_ADMIN_TOKEN), "GET", "/v1/suspensions", "").await;
    let scopes: Vec<Value> = all.json()["suspensions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["scope"]["domain"].clone())
        .collect();
    assert!(
        scopes.contains(&json!("held.example")),
        "the tenants could not lift it: {scopes:?}"
    );
    server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_shown_once_revoked_at_once_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(config(dir.path())).await;
    let (id, key) = new_key(server.api, "acme").await;
    let (other_id, other_key) = new_key(server.api, "acme").await;
    assert_ne!(key, other_key);

    let listed = call(server.api, Some(&key), "GET", "/v1/tenants/acme/api-keys", "").await;
    assert_eq!(listed.status, 200);
    let keys = listed.json()["api_keys"].clone();
    assert_eq!(keys.as_array().map(Vec::len), Some(2), "{keys}");
    for entry in keys.as_array().expect("list") {
        let fields: Vec<&String> = entry.as_object().expect("object").keys().collect();
        assert_eq!(
            fields,
            ["created", "id"],
            "the key itself is never listed: {entry}"
        );
    }
    assert!(!listed.body.contains(&key) && !listed.body.contains(&key[4..]));
    // Paged by id: one per page, the second page ends the list.
    let first = call(
        server.api,
        Some(&key),
        "GET",
        "/v1/tenants/acme/api-keys?limit=1",
        "",
    )
    .await;
    let first = first.json();
    let mut ids = [id.clone(), other_id.clone()];
    ids.sort();
    assert_eq!(first["api_keys"][0]["id"], ids[0].as_str(), "{first}");
    assert_eq!(first["next_after"], ids[0].as_str(), "{first}");
    let path = format!("/v1/tenants/acme/api-keys?limit=1&after={}", ids[0]);
    let second = call(server.api, Some(&key), "GET", &path, "").await.json();
    assert_eq!(second["api_keys"][0]["id"], ids[1].as_str(), "{second}");
    assert_eq!(second["next_after"], Value::Null, "{second}");

    server.stop().await.expect("stops");
    let server = TestServer::start(config(dir.path())).await;
    let path = "/v1/tenants/acme/suppressions";
    assert_eq!(
        call(server.api, Some(&key), "GET", path, "").await.status,
        200,
        "kept"
    );
    let deleted = call(
        server.api,
        Some(&key),
        "DELETE",
        &format!("/v1/tenants/acme/api-keys/{id}"),
        "",
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(
        call(server.api, Some(&key), "GET", path, "").await.status,
        401,
        "revoked at once"
    );
    assert_eq!(
        call(server.api, Some(&other_key), "GET", path, "").await.status,
        200
    );
    let again = format!("/v1/tenants/acme/api-keys/{id}");
    assert_eq!(
        call(server.api, Some(&other_key), "DELETE", &again, "")
            .await
            .status,
        404
    );
    let foreign = format!("/v1/tenants/globex/api-keys/{other_id}");
    assert_eq!(
        call(server.api, Some(TEST_ADMIN_TOKEN), "DELETE", &foreign, "")
            .await
            .status,
        404
    );
    server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_tokens_locks_the_client_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.smtp.auth_failure_limit = 3;
    let server = TestServer::start(config).await;
    let path = "/v1/shaping";
    for _ in 0..2 {
        let answer = call(server.api, Some("pmt_guess"), "GET", path, "").await;
        assert_eq!(answer.status, 401);
    }
    let third = call(server.api, Some("pmt_guess"), "GET", path, "").await;
    assert_eq!(third.status, 429, "{}", third.body);
    let retry: u64 = third
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    let locked = call(server.api, Some(TEST_ADMIN_TOKEN), "GET", path, "").await;
    assert_eq!(locked.status, 429, "even a good token waits out the lockout");
    assert_eq!(locked.json()["error"]["code"], "too_many_requests");
    server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_open_unless_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(config(dir.path())).await;
    for path in ["/metrics", "/healthz"] {
        assert_eq!(
            call(server.api, None, "GET", path, "").await.status,
            200,
            "{path}"
        );
    }
    server.stop().await.expect("stops");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.api.metrics_require_token = true;
    let server = TestServer::start(config).await;
    for path in ["/metrics", "/healthz"] {
        let answer = call(server.api, None, "GET", path, "").await;
        assert_eq!(answer.status, 401, "{path}");
        assert_eq!(
            call(server.api, Some(TEST_ADMIN_TOKEN), "GET", path, "")
                .await
                .status,
            200
        );
    }
    assert_eq!(
        call(server.public, None, "GET", "/healthz", "").await.status,
        200,
        "the public health check stays open"
    );
    server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_serves_only_unsubscribe_and_health() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(config(dir.path())).await;
    let public = server.public;
    assert_eq!(call(public, None, "GET", "/healthz", "").await.status, 200);
    let link = call(public, None, "GET", "/u/not-a-valid-token", "").await;
    assert_eq!(link.status, 404);
    assert!(
        link.body.contains("unsubscribe link is not valid"),
        "{}",
        link.body
    );
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/v1/shaping"),
        ("GET", "/v1/tenants/acme/suppressions"),
        ("POST", "/v1/reload"),
        ("GET", "/tenants/acme/suppressions"),
        ("GET", "/"),
    ] {
        let answer = call(public, Some(TEST_ADMIN_TOKEN), method, path, "").await;
        assert_eq!(answer.status, 404, "{method} {path} on the public listener");
    }
    // And the API listener no longer serves the unsubscribe page, nor the unversioned paths.
    for path in ["/u/not-a-valid-token", "/tenants/acme/suppressions", "/reload"] {
        let answer = call(server.api, Some(TEST_ADMIN_TOKEN), "GET", path, "").await;
        assert_eq!(answer.status, 404, "{path} on the API listener");
    }
    server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(config(dir.path())).await;
    let body = r#"{"tenant":"acme","duration":"1h","colour":"red"}"#;
    let answer = call(
        server.api,
        Some(TEST_ADMIN_TOKEN),
        "POST",
        "/v1/suspensions",
        body,
    )
    .await;
    assert_eq!(answer.status, 400);
    let error = answer.json()["error"].clone();
    assert_eq!(error["code"], "bad_request");
    assert_eq!(error["field"], "body.colour", "{error}");
    let path = "/v1/tenants/acme/suppressions?limit=0";
    let answer = call(server.api, Some(TEST_ADMIN_TOKEN), "GET", path, "").await;
    assert_eq!(answer.json()["error"]["field"], "limit", "{}", answer.body);
    server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_prints_a_token_the_server_then_accepts() {
    let output = binary::run_cli(EXE, &["token", "create", "--name", "ops"], None).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let (token, entry) = stdout.split_once('\n').expect("two parts");
    assert!(token.starts_with("pmt_") && token.len() >= 40, "{token:?}");
    assert!(!entry.contains(token), "the entry holds the hash only");
    let snippet = Config::from_toml_str(entry).unwrap_or_else(|e| panic!("{e}\n{entry}"));
    assert_eq!(snippet.api.tokens[0].name, "ops");
    assert_eq!(snippet.api.tokens[0].sha256, token_sha256(token));

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.api.tokens = snippet.api.tokens;
    let server = TestServer::start(config).await;
    let url = format!("http://{}", server.api);
    let answer = call(server.api, Some(token), "GET", "/v1/shaping", "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The CLI sends it with --token (or PENGUIN_API_TOKEN); without it the API's refusal is shown.
    let refused = binary::run_cli(EXE, &["shaping", "--api", &url], None).await;
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("missing token"), "{message}");
    let listed = binary::run_cli(EXE, &["suspensions", "--api", &url, "--token", token], None).await;
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    server.stop().await.expect("stops");

    let bad = binary::run_cli(EXE, &["token", "create", "--name", "bad name"], None).await;
    assert!(!bad.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_with_its_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(config(dir.path())).await;
    assert_eq!(
        call(server.api, None, "GET", "/v1/openapi.json", "").await.status,
        401
    );
    let answer = call(server.api, Some(TEST_ADMIN_TOKEN), "GET", "/v1/openapi.json", "").await;
    assert_eq!(answer.status, 200);
    let doc = answer.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let mut listed: Vec<(String, String)> = Vec::new();
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            listed.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    listed.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(listed, expected, "the document and the routes differ");
    // Request bodies and the error body have schemas; /v1 routes name the bearer scheme.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in ["SuspensionRequest", "PutBody", "ErrorBody"] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let create = &doc["paths"]["/v1/suspensions"]["post"];
    assert!(create["requestBody"].is_object(), "{create}");
    assert_eq!(create["security"], json!([{"bearer": []}]));
    server.stop().await.expect("stops");
}
