//! Tenants, SMTP logins, API keys and domains shared by the nodes: two in-process nodes on one real
//! `redis-server`. A tenant and its login made through node A's API log in and send on node B; an API
//! key made on A authenticates on B and its revocation on B reaches A; a tenant made on A while Redis
//! is away works on A at once and on B once Redis returns; a domain added on A (its DKIM key made on
//! A) signs B's mail with that key.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use penguin_config::Config;
use penguin_dkim::KeyStore;
use penguin_tests::cluster::{admin as api, call, wait_redis, wait_until};
use penguin_tests::redis::TestRedis;
use penguin_tests::{TestServer, plain_response, simple_message, stored_body, test_config};
use serde_json::{Value, json};

fn node_config(dir: &Path, redis: &str, id: &str) -> Config {
    let mut config = test_config(dir);
    config.cluster = Some(penguin_tests::redis::test_cluster(redis, id));
    config
}

/// Whether the list `field` of `body` has an item whose `key` is `value`.
fn lists(body: &Value, field: &str, key: &str, value: &str) -> bool {
    body[field]
        .as_array()
        .is_some_and(|items| items.iter().any(|item| item[key] == value))
}

/// Two nodes on one fresh Redis, both seeing it.
async fn two_nodes(redis: &TestRedis, dirs: (&Path, &Path)) -> (TestServer, TestServer) {
    let a = TestServer::start(node_config(dirs.0, &redis.url(), "node-a")).await;
    let b = TestServer::start(node_config(dirs.1, &redis.url(), "node-b")).await;
    wait_redis(a.api, true, 2).await;
    wait_redis(b.api, true, 2).await;
    (a, b)
}

/// Makes tenant `name` (sender domain `NAME.example`) and an SMTP login on `address`; returns
/// (username, password).
async fn tenant_with_login(address: SocketAddr, name: &str) -> (String, String) {
    let body = json!({"name": name, "sender_domains": [format!("{name}.example")]});
    let (status, made) = api(address, "POST", "/v1/tenants", Some(body)).await;
    assert_eq!(status, 201, "{made}");
    let path = format!("/v1/tenants/{name}/smtp-credentials");
    let (status, login) = api(address, "POST", &path, None).await;
    assert_eq!(status, 201, "{login}");
    let username = login["username"].as_str().expect("username").to_owned();
    (username, login["password"].as_str().expect("password").to_owned())
}

/// Waits until `server`'s API lists login `username` of `tenant`.
async fn wait_login(server: &TestServer, tenant: &str, username: &str) {
    let path = format!("/v1/tenants/{tenant}/smtp-credentials");
    wait_until(server.api, &path, "the login", |body| {
        lists(body, "smtp_credentials", "username", username)
    })
    .await;
}

/// Logs in on `server` and sends one message from `from`; returns (AUTH code, the reply to the
/// message: its queue id when 250).
async fn login_and_send(
    server: &TestServer,
    (username, password): (&str, &str),
    from: &str,
) -> (u16, Option<String>) {
    let mut client = server.connect().await;
    client.ehlo().await;
    let auth = client
        .cmd(&format!("AUTH PLAIN {}", plain_response(username, password)))
        .await;
    if auth.code != 235 {
        return (auth.code, None);
    }
    let content = simple_message(from, "bob@example.com", "shared tenant");
    let reply = client.send_message(from, &["bob@example.com"], &content).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    (auth.code, reply.queued_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_and_its_login_made_on_one_node_log_in_and_send_on_the_other() {
    let redis = TestRedis::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (a, b) = two_nodes(&redis, (dir_a.path(), dir_b.path())).await;

    let (username, password) = tenant_with_login(a.api, "globex").await;
    let (_, took) = wait_until(b.api, "/v1/tenants/globex", "the tenant on B", |body| {
        body["name"] == "globex"
    })
    .await;
    assert!(took < Duration::from_secs(2), "on B after {took:?}");
    wait_login(&b, "globex", &username).await;
    let (auth, id) = login_and_send(&b, (&username, &password), "news@globex.example").await;
    assert_eq!(auth, 235);
    let id = id.expect("queued on B");
    let queued = penguin_tests::queued(&b.spool_path);
    let tenant = queued
        .iter()
        .find(|(queued, _)| *queued == id)
        .map(|(_, e)| e.tenant.clone());
    assert_eq!(tenant.as_deref(), Some("globex"), "B's message is the tenant's");

    // A change of the tenant on B (a new sender domain) reaches A; deleting the login on B stops it
    // on A.
    let patch = json!({"sender_domains": ["globex.example", "mail.globex.example"]});
    assert_eq!(
        api(b.api, "PATCH", "/v1/tenants/globex", Some(patch)).await.0,
        200
    );
    wait_until(a.api, "/v1/tenants/globex", "the change on A", |body| {
        body["sender_domains"] == json!(["globex.example", "mail.globex.example"])
    })
    .await;
    let path = format!("/v1/tenants/globex/smtp-credentials/{username}");
    assert_eq!(api(b.api, "DELETE", &path, None).await.0, 204);
    wait_until(
        a.api,
        "/v1/tenants/globex/smtp-credentials",
        "the deletion on A",
        |body| !lists(body, "smtp_credentials", "username", &username),
    )
    .await;
    assert_eq!(
        login_and_send(&a, (&username, &password), "x@globex.example")
            .await
            .0,
        535
    );

    // Deleting the tenant on A removes it from B.
    assert_eq!(api(a.api, "DELETE", "/v1/tenants/globex", None).await.0, 204);
    wait_until(b.api, "/v1/tenants", "the tenant's deletion on B", |body| {
        !lists(body, "tenants", "name", "globex")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_made_on_one_node_works_on_the_other_until_revoked_there() {
    let redis = TestRedis::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (a, b) = two_nodes(&redis, (dir_a.path(), dir_b.path())).await;
    tenant_with_login(a.api, "initech").await;
    let (status, made) = api(a.api, "POST", "/v1/tenants/initech/api-keys", None).await;
    assert_eq!(status, 201, "{made}");
    let (id, key) = (
        made["id"].as_str().expect("id").to_owned(),
        made["key"].as_str().expect("key").to_owned(),
    );
    let keys = "/v1/tenants/initech/api-keys";
    wait_until(b.api, keys, "the key on B", |body| {
        lists(body, "api_keys", "id", &id)
    })
    .await;
    let (status, own) = call(b.api, &key, "GET", keys, None).await;
    assert_eq!(status, 200, "the key authenticates on B: {own}");
    assert!(lists(&own, "api_keys", "id", &id), "{own}");

    assert_eq!(
        call(b.api, &key, "DELETE", &format!("{keys}/{id}"), None).await.0,
        204
    );
    wait_until(a.api, keys, "the revocation on A", |body| {
        body["api_keys"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert_eq!(call(a.api, &key, "GET", keys, None).await.0, 401, "refused on A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_made_while_redis_is_away_works_at_once_here_and_on_the_other_node_later() {
    let mut redis = TestRedis::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (a, b) = two_nodes(&redis, (dir_a.path(), dir_b.path())).await;

    redis.stop().await;
    wait_redis(a.api, false, 2).await;
    let (username, password) = tenant_with_login(a.api, "umbrella").await;
    let login = (username.as_str(), password.as_str());
    let (auth, id) = login_and_send(&a, login, "hi@umbrella.example").await;
    assert_eq!((auth, id.is_some()), (235, true), "usable on A without Redis");
    assert_eq!(api(b.api, "GET", "/v1/tenants/umbrella", None).await.0, 404);

    redis.restart().await;
    wait_login(&b, "umbrella", &username).await;
    let (auth, id) = login_and_send(&b, login, "hi@umbrella.example").await;
    assert_eq!(
        (auth, id.is_some()),
        (235, true),
        "usable on B once Redis is back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_added_on_one_node_signs_with_its_key_on_the_other() {
    let redis = TestRedis::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (a, b) = two_nodes(&redis, (dir_a.path(), dir_b.path())).await;
    let (username, password) = tenant_with_login(a.api, "hooli").await;
    let body = json!({"domain": "news.hooli.example"});
    let (status, added) = api(a.api, "POST", "/v1/tenants/hooli/domains", Some(body)).await;
    assert_eq!(status, 201, "{added}");

    wait_until(
        b.api,
        "/v1/tenants/hooli/domains",
        "the domain and its key on B",
        |body| {
            body["domains"].as_array().is_some_and(|domains| {
                domains
                    .iter()
                    .any(|d| d["domain"] == "news.hooli.example" && d["selectors"][0]["key"] == true)
            })
        },
    )
    .await;
    let key_a = dir_a.path().join("dkim/news.hooli.example/default.pem");
    let key_b = dir_b.path().join("dkim/news.hooli.example/default.pem");
    assert_eq!(
        std::fs::read(&key_a).expect("A's key"),
        std::fs::read(&key_b).expect("B's key")
    );
    let mode = std::fs::metadata(&key_b).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "B's key file is private");

    wait_login(&b, "hooli", &username).await;
    let (auth, id) = login_and_send(&b, (&username, &password), "hi@news.hooli.example").await;
    assert_eq!(auth, 235);
    let message = stored_body(&b.spool_path, &id.expect("queued on B"));
    let record = KeyStore::new(dir_a.path().join("dkim"))
        .dns_record("news.hooli.example", "default")
        .expect("A's key")
        .expect("present");
    assert_eq!(
        added["records"][0]["value"],
        record.value(),
        "the record A answered"
    );
    let results = penguin_dkim::verify_offline(&message, &[&record])
        .await
        .expect("verification runs");
    assert!(
        results.iter().any(|r| r.pass && r.domain == "news.hooli.example"),
        "B signed with A's key: {results:?}"
    );
}
