//! Suppression lists and the unsubscribe key shared by the nodes (`[cluster]`), end to end: two
//! in-process nodes on one real `redis-server` (started here on a loopback port).
//!
//! - A one-click link made by node A is accepted by node B's public listener (one key for the
//!   fleet), and the address it unsubscribes is then refused at RCPT on A with the same 550 5.7.1 as a
//!   local suppression; a `PUT` on A is refused on B; a `DELETE` on B is accepted again on A.
//! - Redis stopped: a suppression added on A is refused on A at once, not on B; a deletion made on B
//!   meanwhile stays local too. Redis restarted (empty): both are replayed from the nodes' journals
//!   and the lists converge without any operator action.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use penguin_config::Config;
use penguin_tests::redis::TestRedis;
use penguin_tests::{ACME, TestServer, WAIT, http_request, queued, stored_body, test_config};

/// Pause between two probes of what is awaited.
const POLL: Duration = Duration::from_millis(20);
/// The suppression API of tenant acme.
const LIST: &str = "/v1/tenants/acme/suppressions";

/// A node's config: tenant acme with one-click links, `[cluster]` on `redis` with short timings.
fn node_config(dir: &Path, redis: &str, id: &str) -> Config {
    let mut config = test_config(dir);
    let mut tenant = ACME.config();
    tenant.list_unsubscribe = true;
    config.tenant.push(tenant);
    let cluster = penguin_tests::redis::test_cluster(redis, id);
    config.cluster = Some(cluster);
    config
}

/// Starts a node in `dir`.
async fn node(dir: &Path, redis: &TestRedis, id: &str) -> TestServer {
    TestServer::start(node_config(dir, &redis.url(), id)).await
}

/// The code and enhanced code of `RCPT TO:<address>` in an acme session on `server`.
async fn rcpt(server: &TestServer, address: &str) -> (u16, String) {
    let mut client = server.connect().await;
    client.ehlo().await;
    let reply = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_eq!(reply.code, 235, "{reply:?}");
    let reply = client.cmd("MAIL FROM:<news@acme.example>").await;
    assert_eq!(reply.code, 250, "{reply:?}");
    let reply = client.cmd(&format!("RCPT TO:<{address}>")).await;
    let _ = client.cmd("QUIT").await;
    (reply.code, reply.enhanced_code().to_owned())
}

/// Whether RCPT of `address` on `server` is refused as suppressed (550 5.7.1) or accepted (250).
async fn refused(server: &TestServer, address: &str) -> bool {
    match rcpt(server, address).await {
        (550, enhanced) if enhanced == "5.7.1" => true,
        (250, _) => false,
        other => panic!("RCPT TO:<{address}>: unexpected {other:?}"),
    }
}

/// Waits (bounded) until RCPT of `address` on `server` is refused (`wanted`) or accepted.
async fn wait_refused(server: &TestServer, address: &str, wanted: bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while refused(server, address).await != wanted {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// `method` on the API of `server` for acme's `address`; the status.
async fn api(server: &TestServer, method: &str, address: &str) -> u16 {
    let (status, body) = http_request(server.api, method, &format!("{LIST}/{address}"), None, b"").await;
    assert!(status < 300, "{method} {address}: {status} {body}");
    status
}

/// Sends one acme message to `recipient` through `server` (delivery is paused: it stays queued) and
/// returns the path and the public address of its one-click link.
async fn one_click_link(server: &TestServer, recipient: &str) -> String {
    let mut client = server.connect().await;
    client.ehlo().await;
    let reply = client.cmd(&format!("AUTH PLAIN {}", ACME.plain_response())).await;
    assert_eq!(reply.code, 235, "{reply:?}");
    let content = penguin_tests::simple_message("news@acme.example", recipient, "offer");
    let reply = client
        .send_message("news@acme.example", &[recipient], &content)
        .await;
    assert_eq!(reply.code, 250, "{reply:?}");
    let spool = &server.spool_path;
    let (id, _) = queued(spool)
        .into_iter()
        .find(|(_, envelope)| envelope.recipients[0].address == recipient)
        .expect("queued");
    let body = String::from_utf8_lossy(&stored_body(spool, &id)).into_owned();
    let start = body.find("/u/").expect("List-Unsubscribe link");
    let end = body[start..].find('>').expect("end of link") + start;
    body[start..end].to_owned()
}

/// POSTs a one-click unsubscribe of `path` to a public listener; the status.
async fn click(public: SocketAddr, path: &str) -> u16 {
    let form = Some("application/x-www-form-urlencoded");
    http_request(public, "POST", path, form, b"List-Unsubscribe=One-Click")
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_is_in_force_on_the_other() {
    let redis = TestRedis::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = node(dir_a.path(), &redis, "node-a").await;
    let b = node(dir_b.path(), &redis, "node-b").await;

    // A link made by A, clicked at B: one key for the fleet.
    let path = one_click_link(&a, "ann@dest.test").await;
    assert_eq!(click(b.public, &path).await, 200, "B verifies A's link");
    assert!(
        refused(&b, "ann@dest.test").await,
        "refused at once where it was clicked"
    );
    wait_refused(
        &a,
        "ANN@dest.test",
        true,
        "A to refuse the address unsubscribed at B",
    )
    .await;
    let forged = format!("{}x", &path[..path.len() - 1]);
    assert_eq!(
        click(a.public, &forged).await,
        404,
        "a forged link is still refused"
    );

    // PUT on A → refused on B; DELETE on B → accepted again on A.
    assert!(!refused(&b, "bob@dest.test").await);
    assert_eq!(api(&a, "PUT", "bob@dest.test").await, 201);
    wait_refused(&b, "bob@dest.test", true, "B to refuse the address put on A").await;
    assert_eq!(api(&b, "DELETE", "bob@dest.test").await, 204);
    assert!(!refused(&b, "bob@dest.test").await);
    wait_refused(&a, "bob@dest.test", false, "A to accept the address deleted on B").await;
    assert!(refused(&a, "ann@dest.test").await, "the other entry stays");

    a.stop().await.expect("a stops");
    b.stop().await.expect("b stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_redis_is_away_are_replayed_when_it_returns() {
    let mut redis = TestRedis::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = node(dir_a.path(), &redis, "node-a").await;
    let b = node(dir_b.path(), &redis, "node-b").await;
    assert_eq!(api(&a, "PUT", "old@dest.test").await, 201);
    wait_refused(&b, "old@dest.test", true, "B to hear of A's first suppression").await;

    redis.stop().await;
    assert_eq!(api(&a, "PUT", "new@dest.test").await, 201);
    assert!(refused(&a, "new@dest.test").await, "local at once, without Redis");
    assert_eq!(api(&b, "DELETE", "old@dest.test").await, 204);
    assert!(!refused(&b, "old@dest.test").await);
    assert!(!refused(&b, "new@dest.test").await, "B cannot know yet");
    assert!(refused(&a, "old@dest.test").await, "A cannot know yet");

    // Back, empty: the journals are replayed and the lists converge by themselves.
    redis.restart().await;
    wait_refused(
        &b,
        "new@dest.test",
        true,
        "B to refuse what A added while Redis was away",
    )
    .await;
    wait_refused(
        &a,
        "old@dest.test",
        false,
        "A to accept what B deleted while Redis was away",
    )
    .await;
    assert!(refused(&a, "new@dest.test").await);
    assert!(
        !refused(&b, "old@dest.test").await,
        "the deletion is not undone by A's older entry"
    );

    // And a node that was not running meanwhile catches up at start (reconciliation).
    let (status, listed) = http_request(b.api, "GET", LIST, None, b"").await;
    assert_eq!(status, 200, "{listed}");
    assert!(
        listed.contains("new@dest.test") && !listed.contains("old@dest.test"),
        "{listed}"
    );
    b.stop().await.expect("b stops");
    assert_eq!(api(&a, "PUT", "later@dest.test").await, 201);
    let b = node(dir_b.path(), &redis, "node-b").await;
    wait_refused(&b, "later@dest.test", true, "restarted B to catch up").await;
    a.stop().await.expect("a stops");
    b.stop().await.expect("b stops");
}
