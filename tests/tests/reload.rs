//! Config reload without a restart (`POST /v1/reload`, SIGHUP is covered by dkim_rotation.rs): a tenant
//! added to the file can log in afterwards, the report names settings that still need a restart, and
//! a server started without a config file answers 409.

use penguin_tests::binary::{self, RunningBinary};
use penguin_tests::{ACME, SmtpClient, TestServer, http_request, test_config};

/// The binary under test.
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");

/// The AUTH reply code of a fresh session logging in as acme.
async fn acme_auth_code(server: &RunningBinary) -> u16 {
    let mut client = SmtpClient::connect(server.smtp).await;
    client.ehlo().await;
    client
        .cmd(&format!("AUTH PLAIN {}", ACME.plain_response()))
        .await
        .code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_added_to_the_file_can_log_in_after_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    let path = binary::write_config(dir.path(), &mut config);
    let server = RunningBinary::start(EXE, &path, &config).await;
    assert_eq!(acme_auth_code(&server).await, 535, "acme is not configured yet");

    config.tenant.push(ACME.config());
    config.delivery.port = 2526;
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
    let (status, body) = http_request(server.api, "POST", "/v1/reload", None, b"").await;

    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["report"]["tenants"], 1);
    assert_eq!(
        answer["report"]["restart_needed"],
        serde_json::json!(["delivery"])
    );
    assert_eq!(
        acme_auth_code(&server).await,
        235,
        "acme logs in after the reload"
    );

    // The delivery change is still not in force: a second reload reports it again.
    let (status, body) = http_request(server.api, "POST", "/v1/reload", None, b"").await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        answer["report"]["restart_needed"],
        serde_json::json!(["delivery"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_added_to_the_file_works_after_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    let path = binary::write_config(dir.path(), &mut config);
    let server = RunningBinary::start(EXE, &path, &config).await;
    let token = "pmt_added-by-reload";
    let shaping =
        |token| penguin_tests::http_exchange(server.api, Some(token), "GET", "/v1/shaping", None, b"");
    assert_eq!(shaping(token).await.status, 401);

    config.api.tokens.push(penguin_config::ApiTokenConfig {
        name: "added".to_string(),
        sha256: penguin_tests::token_sha256(token),
    });
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
    let (status, body) = http_request(server.api, "POST", "/v1/reload", None, b"").await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["report"]["restart_needed"], serde_json::json!([]));
    assert_eq!(shaping(token).await.status, 200, "the new token works at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_config_file_there_is_nothing_to_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(test_config(dir.path())).await;
    let (status, body) = http_request(server.api, "POST", "/v1/reload", None, b"").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("without --config"), "{body}");
    server.stop().await.expect("stops");
}
