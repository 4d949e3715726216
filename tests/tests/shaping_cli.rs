//! `penguin-mta shaping|suspend|resume|suspensions`, run as the real binary against the real binary's
//! HTTP API over TCP: the API found through `--config` or `--api` (which wins), the JSON and table
//! outputs, exit codes and messages when the API refuses or cannot be reached.

use std::path::{Path, PathBuf};
use std::process::Output;

use penguin_config::Config;
use penguin_tests::binary::{self, RunningBinary};
use penguin_tests::*;
use serde_json::Value;

/// The binary under test.
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");

/// Runs the binary with `args`.
async fn cli(args: &[&str]) -> Output {
    let token = [("PENGUIN_API_TOKEN", penguin_tests::TEST_ADMIN_TOKEN)];
    binary::run_cli_env(EXE, Path::new("."), args, None, &token).await
}

/// stdout as text.
fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// stderr as text.
fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A path as a command-line argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Asserts success and parses stdout as one JSON value.
fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        stderr(output)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

/// Asserts exit code 1, nothing on stdout, and `needle` on stderr.
fn assert_fails_with(output: &Output, needle: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    assert!(output.stdout.is_empty(), "stdout: {}", stdout(output));
    assert!(
        stderr(output).contains(needle),
        "{needle:?} not in: {}",
        stderr(output)
    );
}

/// The real binary serving the test config (delivery paused), its config file and its directory.
async fn start_server() -> (RunningBinary, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    let path = binary::write_config(dir.path(), &mut config);
    let mut server = RunningBinary::start(EXE, &path, &config).await;
    server.wait_for_log("HTTP listening").await;
    (server, path, dir)
}

/// The ids listed by `suspensions --json` with these API arguments.
async fn listed_ids(api: &[&str]) -> Vec<String> {
    let list = json_of(&cli(&[&["suspensions", "--json"], api].concat()).await);
    list["suspensions"]
        .as_array()
        .unwrap_or_else(|| panic!("no suspensions array: {list}"))
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_list_and_resume_through_the_config_file() {
    let (_server, path, _dir) = start_server().await;
    let config = ["--config", arg(&path)];
    let suspend = [
        &[
            "suspend",
            "--duration",
            "2h",
            "--tenant",
            "acme",
            "--reason",
            "test",
        ][..],
        &config,
    ]
    .concat();
    let created = json_of(&cli(&suspend).await);
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {created}"))
        .to_owned();
    assert_eq!(created["scope"]["tenant"], "acme", "{created}");
    assert_eq!(created["scope"]["domain"], Value::Null, "{created}");
    assert_eq!(created["reason"], "test", "{created}");
    assert!(
        created["until"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{created}"
    );

    assert_eq!(listed_ids(&config).await, std::slice::from_ref(&id));
    let table = cli(&[&["suspensions"][..], &config].concat()).await;
    assert!(table.status.success(), "{}", stderr(&table));
    let lines: Vec<String> = stdout(&table).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "a header and one suspension: {lines:?}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("SCOPE"),
        "{lines:?}"
    );
    assert!(lines[1].starts_with(&id) && lines[1].contains("tenant=acme") && lines[1].ends_with("test"));

    let resumed = cli(&[&["resume", &id][..], &config].concat()).await;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(stdout(&resumed).trim(), format!("suspension {id} lifted"));
    assert!(listed_ids(&config).await.is_empty(), "lifted");
    let none = cli(&[&["suspensions"][..], &config].concat()).await;
    assert_eq!(stdout(&none), "no suspensions in force\n");

    let again = cli(&[&["resume", &id][..], &config].concat()).await;
    assert_fails_with(&again, &format!("no suspension {id:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaping_prints_the_api_json_or_says_there_is_no_queue() {
    let (_server, path, _dir) = start_server().await;
    let view = json_of(&cli(&["shaping", "--json", "--config", arg(&path)]).await);
    assert_eq!(view["queues"], Value::Array(Vec::new()), "nothing queued: {view}");
    let table = cli(&["shaping", "--config", arg(&path)]).await;
    assert!(table.status.success(), "{}", stderr(&table));
    assert_eq!(
        stdout(&table),
        "no ready queues: none has queued mail, connections, a suspension or a reduced rate\n"
    );
}

/// A TCP listener that accepts connections and never says anything (an SMTP server that hangs before
/// its greeting); `accept` resolves when the engine has connected.
struct SilentServer {
    /// The listener.
    listener: tokio::net::TcpListener,
    /// Connections accepted, kept open.
    held: Vec<tokio::net::TcpStream>,
}

impl SilentServer {
    /// Listens on a loopback port.
    async fn start() -> SilentServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        SilentServer {
            listener,
            held: Vec::new(),
        }
    }

    /// Waits (bounded) for the next connection and holds it open.
    async fn accept(&mut self) {
        let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("the engine connects in time")
            .expect("accept");
        self.held.push(stream);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaping_table_shows_a_queue_with_its_connection() {
    let silent = SilentServer::start().await;
    let relay = silent.listener.local_addr().expect("addr");
    let mut silent = silent;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config: Config = test_config(dir.path());
    allow_loopback_relay(&mut config);
    config.delivery.paused = false;
    config.delivery.relay_host = Some(relay.to_string().parse().expect("relay host"));
    let path = binary::write_config(dir.path(), &mut config);
    let server = RunningBinary::start(EXE, &path, &config).await;

    let mut client = SmtpClient::connect(server.smtp).await;
    client.ehlo().await;
    let content = simple_message("app@sender.example", "user@example.com", "shaping");
    let reply = client
        .send_message("app@sender.example", &["user@example.com"], &content)
        .await;
    assert_eq!(reply.code, 250, "{reply}");
    // The engine is connected to the relay and waits for its greeting: the lane has a connection.
    silent.accept().await;

    let view = json_of(&cli(&["shaping", "--json", "--config", arg(&path)]).await);
    let queues = view["queues"].as_array().unwrap_or_else(|| panic!("{view}"));
    assert_eq!(queues.len(), 1, "{view}");
    let queue = &queues[0];
    assert_eq!(queue["site"], relay.to_string(), "{view}");
    assert_eq!(queue["connections"], 1, "{view}");

    let table = cli(&["shaping", "--config", arg(&path)]).await;
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines.len(), 2, "a header and one queue:\n{text}");
    assert_eq!(
        lines[0][..6],
        ["SOURCE", "SITE", "PROVIDER", "QUEUED", "CONNS", "RATE"],
        "{text}"
    );
    let source = queue["source"].as_str().expect("source");
    let site = relay.to_string();
    assert_eq!(lines[1][..3], [source, site.as_str(), "other"], "{text}");
    assert_eq!(lines[1][4], "1", "one connection:\n{text}");
    assert_eq!(
        lines[1][5..],
        ["-", "-", "-"],
        "no rate, suspension or throttle:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_without_a_scope_fails_naming_the_problem() {
    let (_server, path, _dir) = start_server().await;
    let output = cli(&["suspend", "--duration", "2h", "--config", arg(&path)]).await;
    assert_fails_with(
        &output,
        "scope: give at least one of tenant, campaign, domain, provider, source",
    );
    let bad_duration = cli(&[
        "suspend",
        "--duration",
        "soon",
        "--tenant",
        "acme",
        "--config",
        arg(&path),
    ])
    .await;
    assert_fails_with(&bad_duration, "duration: ");
    assert!(
        listed_ids(&["--config", arg(&path)]).await.is_empty(),
        "nothing created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_flag_reaches_the_server_and_wins_over_config() {
    let (server, _path, _dir) = start_server().await;
    let url = format!("http://{}", server.api);
    // A config whose api.listen has no server: --api must win over it.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let mut other = test_config(elsewhere.path());
    let other_path = binary::write_config(elsewhere.path(), &mut other);
    let api = ["--api", url.as_str(), "--config", arg(&other_path)];

    let created = json_of(
        &cli(&[
            &["suspend", "--duration", "30m", "--domain", "Example.COM"][..],
            &api,
        ]
        .concat())
        .await,
    );
    assert_eq!(created["scope"]["domain"], "example.com", "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(listed_ids(&["--api", &url]).await, std::slice::from_ref(&id));
    let view = json_of(&cli(&["shaping", "--json", "--api", &url]).await);
    assert!(view["queues"].is_array(), "{view}");
    let resumed = cli(&[&["resume", &id][..], &api].concat()).await;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(listed_ids(&["--api", &url]).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_exits_1_with_a_clear_message() {
    let port = binary::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let message = format!("cannot reach the API at {url}: connection refused; is penguin-mta serve running?");
    for command in [
        &["shaping", "--json"][..],
        &["suspensions"],
        &["suspend", "--duration", "1h", "--tenant", "acme"],
        &["resume", "s0000000000000000"],
    ] {
        let output = cli(&[command, &["--api", url.as_str()]].concat()).await;
        assert_fails_with(&output, &message);
    }
    // The same through a config file whose server is not running.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    let path = binary::write_config(dir.path(), &mut config);
    let output = cli(&["shaping", "--config", arg(&path)]).await;
    assert_fails_with(
        &output,
        &format!(
            "cannot reach the API at http://{}: connection refused",
            config.api.listen
        ),
    );
}
