//! The `penguin-mta` command line, run as the real binary: check-config (with the local-address check of
//! the egress sources), print-default-config, hash-password, queue ls/summary, and serve with the
//! embedded default config or refusing a source address of another host.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use penguin_config::Config;
use penguin_tests::binary::{self, RunningBinary};
use penguin_tests::*;
use serde_json::{Value, json};

/// The binary under test.
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");

/// Runs the binary with `args` (paths as text).
async fn cli(args: &[&str]) -> Output {
    binary::run_cli(EXE, args, None).await
}

/// A path as a command-line argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// stderr as text.
fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `text` to `dir/name` and runs `check-config` on it.
async fn check_config_text(dir: &Path, name: &str, text: &str) -> Output {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    cli(&["check-config", arg(&path)]).await
}

/// Asserts a failed check-config whose stderr names every one of `paths` as `path: reason`.
fn assert_names_fields(output: &Output, paths: &[&str]) {
    let text = stderr(output);
    assert!(!output.status.success(), "check-config must fail: {text}");
    for path in paths {
        assert!(
            text.lines()
                .any(|line| line.trim_start().starts_with(&format!("{path}: "))),
            "{path} in:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.tenant.push(ACME.config());
    enable_tls(&mut config, dir.path());
    let path = binary::write_config(dir.path(), &mut config);
    let output = cli(&["check-config", arg(&path)]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.trim(), format!("{}: ok", path.display()), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_the_field_of_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Parse errors stop at the first one, so each gets its own file.
    let unknown = check_config_text(dir.path(), "unknown.toml", "[smtp]\nmax_mesage_size = \"10MB\"\n").await;
    assert_names_fields(&unknown, &["smtp.max_mesage_size"]);
    assert!(stderr(&unknown).contains("unknown field"), "{}", stderr(&unknown));
    let top_level = check_config_text(dir.path(), "top.toml", "colour = \"blue\"\n").await;
    assert_names_fields(&top_level, &["colour"]);
    let size = check_config_text(dir.path(), "size.toml", "[smtp]\nmax_message_size = \"25XB\"\n").await;
    assert_names_fields(&size, &["smtp.max_message_size"]);
    assert!(stderr(&size).contains("25XB"), "{}", stderr(&size));

    // Validation reports every problem at once.
    let validation = "[smtp]\nrelay_networks = [\"0.0.0.0/0\"]\n\n[[tenant]]\nname = \"acme\"\nusername = \"acme\"\n\
                      password_hash = \"hunter2\"\nsender_domains = [\"acme.example\"]\n";
    let output = check_config_text(dir.path(), "validation.toml", validation).await;
    assert_names_fields(&output, &["smtp.relay_networks[0]", "tenant[0].password_hash"]);
    let text = stderr(&output);
    assert!(text.contains("open relay"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the reason must not repeat the hash: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_tls_cert_when_the_file_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-cert.pem");
    let key = dir.path().join("no-such-key.pem");
    let text = format!("[tls]\ncert = {:?}\nkey = {:?}\n", arg(&missing), arg(&key));
    let output = check_config_text(dir.path(), "tls.toml", &text).await;
    assert_names_fields(&output, &["tls.cert"]);
    assert!(stderr(&output).contains(arg(&missing)), "{}", stderr(&output));
}

/// `[[source]]` entries with these addresses (names ip0, ip1, ...).
fn sources_toml(ips: &[&str]) -> String {
    ips.iter()
        .enumerate()
        .map(|(index, ip)| format!("[[source]]\nname = \"ip{index}\"\nip = \"{ip}\"\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_accepts_local_source_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every 127.0.0.0/8 address is an address of this host on Linux.
    let output = check_config_text(
        dir.path(),
        "local.toml",
        &sources_toml(&["127.0.0.2", "127.0.0.3"]),
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).ends_with("local.toml: ok\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_a_source_address_that_is_not_local() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 192.0.2.0/24 is TEST-NET-1: never an address of this host.
    let output = check_config_text(
        dir.path(),
        "foreign.toml",
        &sources_toml(&["127.0.0.2", "192.0.2.7"]),
    )
    .await;
    assert_names_fields(&output, &["source[1].ip"]);
    let text = stderr(&output);
    assert!(
        text.contains("source[1].ip: 192.0.2.7 is not an address of this host (bind failed: "),
        "{text}"
    );
    assert!(!text.contains("source[0]"), "127.0.0.2 is local: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_source_address_that_is_not_local_before_listening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.source = Config::from_toml_str(&sources_toml(&["192.0.2.7"]))
        .expect("valid sources")
        .source;
    let path = binary::write_config(dir.path(), &mut config);
    let output = cli(&["serve", "--config", arg(&path)]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "invalid config {}: source[0].ip: 192.0.2.7 is not an address of this host (bind failed: ",
            path.display()
        )),
        "{text}"
    );
    assert!(!text.contains("listening"), "nothing may listen: {text}");
    assert!(!config.spool.path.exists(), "the spool is never opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_default_config_is_the_loopback_default() {
    let output = cli(&["print-default-config"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let config = Config::from_toml_str(&text).expect("the printed default config parses and validates");
    assert_eq!(
        config.smtp.listen,
        vec!["127.0.0.1:2525".parse::<SocketAddr>().expect("addr")]
    );
    assert_eq!(
        config.api.listen,
        "127.0.0.1:8025".parse::<SocketAddr>().expect("addr")
    );
    assert!(!config.smtp.relay_networks.is_empty());
    for net in &config.smtp.relay_networks {
        assert!(
            net.network().is_loopback() && net.prefix_len() > 0,
            "relay network {net} is not loopback"
        );
    }
    assert!(config.tenant.is_empty() && config.tls.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_password_output_lets_that_password_authenticate() {
    let password = "correct horse battery staple";
    let output = binary::run_cli(EXE, &["hash-password"], Some(format!("{password}\n").as_bytes())).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let hash = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(password));

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.tenant.push(penguin_config::TenantConfig {
        name: "initech".to_string(),
        username: "initech".to_string(),
        password_hash: hash,
        sender_domains: vec!["initech.example".to_string()],
        dsn: true,
        list_unsubscribe: false,
        dkim_missing_key: None,
        pool: None,
        pools: Vec::new(),
        max_message_rate: None,
        daily_quota: None,
    });
    let server = TestServer::start(config).await;
    let mut client = server.connect().await;
    client.ehlo().await;
    let wrong = client
        .cmd(&format!("AUTH PLAIN {}", plain_response("initech", "wrong")))
        .await;
    assert_eq!(wrong.code, 535, "{wrong}");
    let auth = client
        .cmd(&format!("AUTH PLAIN {}", plain_response("initech", password)))
        .await;
    assert_eq!(auth.code, 235, "{auth}");
    assert_eq!(client.cmd("QUIT").await.code, 221);
    server.stop().await.expect("clean stop");
}

/// Sends the messages of the queue tests; returns their ids in sending order.
async fn send_queue_fixtures(server: &TestServer) -> Vec<String> {
    let mut ids = Vec::new();
    let fixtures: [(&TestTenant, &str, Option<&str>, &[&str]); 3] = [
        (
            &ACME,
            "news@acme.example",
            Some("spring"),
            &["a@example.com", "b@example.org"],
        ),
        (&ACME, "news@acme.example", None, &["c@example.com"]),
        (
            &GLOBEX,
            "hello@globex.example",
            Some("launch"),
            &["d@example.net"],
        ),
    ];
    for (tenant, from, campaign, to) in fixtures {
        let mut client = server.connect().await;
        client.ehlo().await;
        assert_eq!(
            client
                .cmd(&format!("AUTH PLAIN {}", tenant.plain_response()))
                .await
                .code,
            235
        );
        let header = campaign
            .map(|c| format!("X-Campaign-ID: {c}\r\n"))
            .unwrap_or_default();
        let content = format!("{header}{}", simple_message(from, to[0], "queue"));
        let reply = client.send_message(from, to, &content).await;
        ids.push(reply.queued_id().unwrap_or_else(|| panic!("not queued: {reply}")));
        assert_eq!(client.cmd("QUIT").await.code, 221);
    }
    ids
}

/// Checks `queue ls --json` against the fixtures.
async fn check_queue_ls(spool: &Path, ids: &[String]) {
    let listed = binary::queue_ls(EXE, spool).await;
    let listed_ids: Vec<&str> = listed.iter().map(|m| m["id"].as_str().expect("id")).collect();
    assert_eq!(
        listed_ids.iter().copied().collect::<HashSet<_>>(),
        ids.iter().map(String::as_str).collect()
    );
    let expected = [
        (
            "acme",
            "spring",
            "news@acme.example",
            json!([["a@example.com", "queued"], ["b@example.org", "queued"]]),
        ),
        (
            "acme",
            "default",
            "news@acme.example",
            json!([["c@example.com", "queued"]]),
        ),
        (
            "globex",
            "launch",
            "hello@globex.example",
            json!([["d@example.net", "queued"]]),
        ),
    ];
    for (id, (tenant, campaign, sender, recipients)) in ids.iter().zip(expected) {
        let message = listed.iter().find(|m| m["id"] == id.as_str()).expect("listed");
        assert_eq!(
            (&message["tenant"], &message["campaign"], &message["sender"]),
            (&json!(tenant), &json!(campaign), &json!(sender))
        );
        let pairs: Vec<Value> = message["recipients"]
            .as_array()
            .expect("array")
            .iter()
            .map(|r| json!([r["address"], r["state"]]))
            .collect();
        assert_eq!(Value::Array(pairs), recipients, "{message}");
        let size = message["size"].as_u64().expect("size is a number");
        assert_eq!(
            size,
            stored_body(spool, id).len() as u64,
            "size is the stored body's length"
        );
        let received = message["received_at"].as_str().expect("received_at");
        assert!(
            received.len() == 24 && received.ends_with('Z') && received.as_bytes()[10] == b'T',
            "{received}"
        );
    }
}

/// Checks `queue summary --json` against the fixtures.
async fn check_queue_summary(spool: &Path) {
    let output = cli(&["queue", "summary", "--spool", arg(spool), "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let expected = json!({
        "messages": 3,
        "recipients": 4,
        "by_tenant": {"acme": 3, "globex": 1},
        "by_campaign": {"acme/spring": 2, "acme/default": 1, "globex/launch": 1},
        "by_domain": {"example.com": 2, "example.org": 1, "example.net": 1},
    });
    assert_eq!(summary, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ls_and_summary_work_while_the_server_runs_and_after_it_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.tenant.push(ACME.config());
    config.tenant.push(GLOBEX.config());
    let server = TestServer::start(config).await;
    let ids = send_queue_fixtures(&server).await;
    let spool = server.spool_path.clone();

    check_queue_ls(&spool, &ids).await;
    check_queue_summary(&spool).await;
    server.stop().await.expect("clean stop");
    check_queue_ls(&spool, &ids).await;
    check_queue_summary(&spool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ls_without_a_spool_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = dir.path().join("no-spool-here");
    for command in ["ls", "summary"] {
        let output = cli(&["queue", command, "--spool", arg(&nowhere), "--json"]).await;
        assert!(
            !output.status.success(),
            "queue {command} on a missing spool must fail"
        );
        assert!(output.stdout.is_empty(), "nothing on stdout");
        let text = stderr(&output);
        assert!(
            text.contains(&format!("cannot open the spool at {}", nowhere.display())),
            "{text}"
        );
        assert!(text.contains("no spool at"), "{text}");
    }
}

/// Fails clearly unless `address` can be bound now (the default config's fixed ports).
fn assert_port_free(address: &str) {
    if let Err(error) = std::net::TcpListener::bind(address) {
        panic!(
            "this test runs `serve` with the embedded default config, which listens on {address}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_config_uses_the_embedded_default_in_the_working_directory() {
    assert_port_free("127.0.0.1:2525");
    assert_port_free("127.0.0.1:8025");
    let dir = tempfile::tempdir().expect("tempdir");
    let (smtp, api) = (
        "127.0.0.1:2525".parse().expect("addr"),
        "127.0.0.1:8025".parse().expect("addr"),
    );
    let mut server = RunningBinary::spawn(EXE, &["serve"], Some(dir.path()), smtp, api);
    server.log_until("SMTP listening").await;

    let mut client = SmtpClient::connect(smtp).await;
    assert_eq!(client.greeting.code, 220, "{}", client.greeting);
    assert!(
        client.greeting.text().starts_with("localhost ESMTP"),
        "{}",
        client.greeting
    );
    client.ehlo().await;
    // The default relays for loopback as tenant "default". No message is sent: the default config
    // delivers by MX through the system resolver, and nothing may leave this machine in a test.
    assert_eq!(client.cmd("MAIL FROM:<app@anything.example>").await.code, 250);
    assert_eq!(
        client.cmd("RCPT TO:<user@example.com>").await.code,
        250,
        "loopback may relay"
    );
    assert_eq!(client.cmd("RSET").await.code, 250);
    assert_eq!(client.cmd("QUIT").await.code, 221);
    let (status, health) = http_get(api, "/healthz").await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&health).ok()),
        (200, Some(json!({"status": "ok", "queued_messages": 0})))
    );

    server.signal(libc::SIGTERM);
    assert_eq!(server.wait().await.code(), Some(0));
    let spool = dir.path().join("data/spool");
    assert!(
        spool.join("CURRENT").is_file(),
        "the spool is ./data/spool of the working directory"
    );
    // `queue ls` without --spool or --config opens the same default spool (it fails when there is none).
    let output = binary::run_cli_in(EXE, dir.path(), &["queue", "ls", "--json"], None).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "nothing queued");
}
