//! Tenants and SMTP credentials over the control API, end to end: a tenant made with `POST
//! /v1/tenants` gets credentials, logs in over SMTP and sends as its domains; it survives a restart;
//! deleting a credential or the tenant stops its logins at once; config tenants are listed but not
//! changed here (409); bad bodies name the field.

use std::net::SocketAddr;
use std::path::Path;

use penguin_config::Config;
use penguin_tests::*;
use serde_json::{Value, json};

/// The test config with the config tenant acme.
fn config(dir: &Path) -> Config {
    let mut config = test_config(dir);
    config.tenant.push(ACME.config());
    config
}

/// An admin request with a JSON body; returns (status, JSON).
async fn admin(api: SocketAddr, method: &str, path: &str, body: Value) -> (u16, Value) {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let content_type = (!text.is_empty()).then_some("application/json");
    let answer = http_exchange(
        api,
        Some(TEST_ADMIN_TOKEN),
        method,
        path,
        content_type,
        text.as_bytes(),
    )
    .await;
    (answer.status, answer.json())
}

/// The AUTH PLAIN reply code of a fresh session.
async fn auth_code(server: &TestServer, username: &str, password: &str) -> u16 {
    let mut client = server.connect().await;
    client.ehlo().await;
    client
        .cmd(&format!("AUTH PLAIN {}", plain_response(username, password)))
        .await
        .code
}

/// Makes SMTP credentials for `tenant`; returns (username, password).
async fn credentials(api: SocketAddr, tenant: &str) -> (String, String) {
    let path = format!("/v1/tenants/{tenant}/smtp-credentials");
    let (status, made) = admin(api, "POST", &path, Value::Null).await;
    assert_eq!(status, 201, "{made}");
    let username = made["username"].as_str().expect("username").to_string();
    let password = made["password"].as_str().expect("password").to_string();
    assert!(password.len() >= 24, "{password}");
    (username, password)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_made_over_the_api_logs_in_sends_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(config(dir.path())).await;
    let body = json!({"name": "globex", "sender_domains": ["Globex.Example"], "dsn": false});
    let (status, made) = admin(server.api, "POST", "/v1/tenants", body).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["source"], "api");
    assert_eq!(made["sender_domains"], json!(["globex.example"]));
    assert_eq!(made["pools"], json!(["default"]));
    let (username, password) = credentials(server.api, "globex").await;

    let mut client = server.connect().await;
    client.ehlo().await;
    let auth = client
        .cmd(&format!("AUTH PLAIN {}", plain_response(&username, &password)))
        .await;
    assert_eq!(auth.code, 235, "{auth:?}");
    client.expect("MAIL FROM:<x@acme.example>", 553, "5.7.1").await;
    client.cmd("RSET").await;
    let content = simple_message("news@globex.example", "bob@example.com", "hello");
    let reply = client
        .send_message("news@globex.example", &["bob@example.com"], &content)
        .await;
    let id = reply.queued_id().unwrap_or_else(|| panic!("not queued: {reply}"));
    let queued = binary_free_queue(&server, &id);
    assert_eq!(queued, "globex", "the message belongs to the API tenant");

    let (_, listed) = admin(server.api, "GET", "/v1/tenants", Value::Null).await;
    let sources: Vec<(String, String)> = listed["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").into(),
                t["source"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("acme".to_string(), "config".to_string()),
            ("globex".to_string(), "api".to_string())
        ]
    );

    server.stop().await.expect("stops");
    let server = TestServer::start(config(dir.path())).await;
    assert_eq!(
        auth_code(&server, &username, &password).await,
        235,
        "kept across the restart"
    );
    let (status, kept) = admin(server.api, "GET", "/v1/tenants/globex", Value::Null).await;
    assert_eq!((status, &kept["dsn"]), (200, &json!(false)));
    server.stop().await.expect("stops");
}

/// The tenant of queued message `id`, read from the spool of a running server (the API has no
/// message route yet).
fn binary_free_queue(server: &TestServer, id: &str) -> String {
    let reader = penguin_queue::SpoolReader::open(&server.spool_path).expect("reader");
    reader
        .messages()
        .filter_map(Result::ok)
        .find(|(queued, _)| queued.to_string() == id)
        .map(|(_, envelope)| envelope.tenant)
        .expect("queued")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_credential_or_the_tenant_stops_its_logins_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(config(dir.path())).await;
    let body = json!({"name": "initech", "sender_domains": ["initech.example"]});
    assert_eq!(admin(server.api, "POST", "/v1/tenants", body).await.0, 201);
    let (first, first_password) = credentials(server.api, "initech").await;
    let (second, second_password) = credentials(server.api, "initech").await;
    let (_, listed) = admin(
        server.api,
        "GET",
        "/v1/tenants/initech/smtp-credentials",
        Value::Null,
    )
    .await;
    let names: Vec<&str> = listed["smtp_credentials"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["username"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{listed}");
    assert!(
        !listed.to_string().contains(&first_password),
        "passwords are never listed"
    );

    let path = format!("/v1/tenants/initech/smtp-credentials/{first}");
    assert_eq!(admin(server.api, "DELETE", &path, Value::Null).await.0, 204);
    assert_eq!(auth_code(&server, &first, &first_password).await, 535);
    assert_eq!(auth_code(&server, &second, &second_password).await, 235);
    assert_eq!(admin(server.api, "DELETE", &path, Value::Null).await.0, 404);

    let key_answer = http_exchange(
        server.api,
        Some(TEST_ADMIN_TOKEN),
        "POST",
        "/v1/tenants/initech/api-keys",
        None,
        b"",
    )
    .await;
    let key = key_answer.json()["key"].as_str().expect("key").to_string();
    assert_eq!(
        admin(server.api, "DELETE", "/v1/tenants/initech", Value::Null)
            .await
            .0,
        204
    );
    assert_eq!(
        auth_code(&server, &second, &second_password).await,
        535,
        "logins end with it"
    );
    assert_eq!(
        admin(server.api, "GET", "/v1/tenants/initech", Value::Null)
            .await
            .0,
        404
    );
    let with_key = http_exchange(
        server.api,
        Some(&key),
        "GET",
        "/v1/tenants/initech/suppressions",
        None,
        b"",
    )
    .await;
    assert_eq!(with_key.status, 401, "its API keys end with it");
    server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_tenants_are_not_changed_here_and_bad_bodies_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(config(dir.path())).await;
    let api = server.api;
    let (status, acme) = admin(api, "GET", "/v1/tenants/acme", Value::Null).await;
    assert_eq!((status, &acme["source"]), (200, &json!("config")));
    for (method, body) in [("PATCH", json!({"dsn": false})), ("DELETE", Value::Null)] {
        let (status, answer) = admin(api, method, "/v1/tenants/acme", body).await;
        assert_eq!(status, 409, "{method}: {answer}");
    }
    let taken = json!({"name": "acme", "sender_domains": ["x.example"]});
    assert_eq!(admin(api, "POST", "/v1/tenants", taken).await.0, 409);
    let cases = [
        (
            json!({"name": "bad name", "sender_domains": ["x.example"]}),
            "body.name",
        ),
        (
            json!({"name": "default", "sender_domains": ["x.example"]}),
            "body.name",
        ),
        (json!({"name": "t1", "sender_domains": []}), "body.sender_domains"),
        (
            json!({"name": "t1", "sender_domains": ["not a domain"]}),
            "body.sender_domains",
        ),
        (
            json!({"name": "t1", "sender_domains": ["x.example"], "pools": ["nope"]}),
            "body.pools",
        ),
        (
            json!({"name": "t1", "sender_domains": ["x.example"], "colour": 1}),
            "body.colour",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = admin(api, "POST", "/v1/tenants", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let body = json!({"name": "t2", "sender_domains": ["t2.example"]});
    assert_eq!(admin(api, "POST", "/v1/tenants", body).await.0, 201);
    let (status, patched) = admin(api, "PATCH", "/v1/tenants/t2", json!({"list_unsubscribe": true})).await;
    assert_eq!(
        (status, &patched["list_unsubscribe"]),
        (200, &json!(true)),
        "{patched}"
    );
    let (status, answer) = admin(api, "PATCH", "/v1/tenants/t2", json!({"name": "t3"})).await;
    assert_eq!((status, &answer["error"]["field"]), (400, &json!("body.name")));
    assert_eq!(admin(api, "PATCH", "/v1/tenants/nobody", json!({})).await.0, 404);
    server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_commands_create_list_and_delete_over_the_api() {
    const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(config(dir.path())).await;
    let url = format!("http://{}", server.api);
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move {
            let mut all = args;
            all.extend([
                "--api".to_string(),
                url,
                "--token".to_string(),
                TEST_ADMIN_TOKEN.to_string(),
            ]);
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            penguin_tests::binary::run_cli(EXE, &args, None).await
        }
    };
    let words = |text: &str| text.split(' ').map(str::to_string).collect::<Vec<_>>();

    let made = run(words(
        "tenant create hooli --sender-domain hooli.example --sender-domain Hooli.Example.Net",
    ))
    .await;
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let made: Value = serde_json::from_slice(&made.stdout).expect("JSON");
    assert_eq!(
        made["sender_domains"],
        json!(["hooli.example", "hooli.example.net"])
    );
    assert_eq!(made["source"], "api");

    let table = run(words("tenant list")).await;
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..2], ["acme", "config"], "{table}");
    assert_eq!(
        rows[1],
        ["hooli", "api", "hooli.example", "hooli.example.net"],
        "{table}"
    );
    let listed = run(words("tenant list --json")).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(listed["tenants"].as_array().map(Vec::len), Some(2));

    let refused = run(words("tenant delete acme")).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("config file"));
    assert!(run(words("tenant delete hooli")).await.status.success());
    let again = run(words("tenant delete hooli")).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("unknown tenant"));
    server.stop().await.expect("stops");
}

/// The stored content of queued message `id` (read beside the running server).
fn stored_body(server: &TestServer, id: &str) -> String {
    let reader = penguin_queue::SpoolReader::open(&server.spool_path).expect("reader");
    let id: penguin_queue::MessageId = id.parse().expect("queue id");
    let body = reader.read_body(id).expect("read").expect("stored");
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_added_over_the_api_gets_its_key_and_records_and_signs_mail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(config(dir.path())).await;
    let api = server.api;
    let body = json!({"name": "globex", "sender_domains": ["globex.example"]});
    assert_eq!(admin(api, "POST", "/v1/tenants", body).await.0, 201);

    let (status, added) = admin(
        api,
        "POST",
        "/v1/tenants/globex/domains",
        json!({"domain": "News.Globex.Example"}),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(
        (&added["domain"], &added["selector"]),
        (&json!("news.globex.example"), &json!("default"))
    );
    let records = added["records"].as_array().expect("records");
    let names: Vec<&str> = records.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "default._domainkey.news.globex.example.",
            "news.globex.example.",
            "_dmarc.news.globex.example."
        ]
    );
    assert!(
        records[0]["value"]
            .as_str()
            .expect("dkim")
            .starts_with("v=DKIM1; k=rsa; p=")
    );
    assert!(records[1]["value"].as_str().expect("spf").starts_with("v=spf1 "));
    assert!(
        records[2]["value"]
            .as_str()
            .expect("dmarc")
            .starts_with("v=DMARC1; p=none")
    );
    assert!(dir.path().join("dkim/news.globex.example/default.pem").is_file());
    let (_, again) = admin(
        api,
        "POST",
        "/v1/tenants/globex/domains",
        json!({"domain": "news.globex.example"}),
    )
    .await;
    assert_eq!(again["records"][0], records[0], "the existing key is kept");

    let (_, listed) = admin(api, "GET", "/v1/tenants/globex/domains", Value::Null).await;
    let keys: Vec<(String, bool)> = listed["domains"]
        .as_array()
        .expect("domains")
        .iter()
        .map(|d| {
            (
                d["domain"].as_str().unwrap_or("").into(),
                d["selectors"][0]["key"] == json!(true),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("globex.example".to_string(), false),
            ("news.globex.example".to_string(), true)
        ]
    );

    // Mail from the new domain is accepted and signed with the new key.
    let (username, password) = credentials(api, "globex").await;
    let mut client = server.connect().await;
    client.ehlo().await;
    assert_eq!(
        client
            .cmd(&format!("AUTH PLAIN {}", plain_response(&username, &password)))
            .await
            .code,
        235
    );
    let content = simple_message("hi@news.globex.example", "bob@example.com", "signed");
    let reply = client
        .send_message("hi@news.globex.example", &["bob@example.com"], &content)
        .await;
    let id = reply.queued_id().unwrap_or_else(|| panic!("not queued: {reply}"));
    let stored = stored_body(&server, &id);
    assert!(
        stored.contains("DKIM-Signature:") && stored.contains("d=news.globex.example"),
        "{stored}"
    );

    let refusals = [
        (
            json!({"domain": "x.globex.example", "selector": "nope"}),
            400,
            "body.selector",
        ),
        (
            json!({"domain": "x.globex.example", "algo": "dsa"}),
            400,
            "body.algo",
        ),
        (json!({"domain": "not a domain"}), 400, "body.domain"),
        (json!({"domain": "acme.example"}), 409, ""),
    ];
    for (body, status, field) in refusals {
        let (got, answer) = admin(api, "POST", "/v1/tenants/globex/domains", body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
        }
    }
    let config_tenant = admin(
        api,
        "POST",
        "/v1/tenants/acme/domains",
        json!({"domain": "more.acme.example"}),
    )
    .await;
    assert_eq!(config_tenant.0, 409, "{}", config_tenant.1);
    let remove = "/v1/tenants/globex/domains/news.globex.example";
    assert_eq!(admin(api, "DELETE", remove, Value::Null).await.0, 204);
    assert_eq!(admin(api, "DELETE", remove, Value::Null).await.0, 404);
    assert_eq!(
        admin(
            api,
            "DELETE",
            "/v1/tenants/globex/domains/globex.example",
            Value::Null
        )
        .await
        .0,
        409
    );
    server.stop().await.expect("stops");
}
