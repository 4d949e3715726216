//! The JSON event log of the real binary: one object per event, and SIGHUP reopens the file (the
//! logrotate contract: rename the file, send SIGHUP, new events go to a new file at the old path).

use std::path::Path;

use penguin_tests::binary::{RunningBinary, write_config};
use penguin_tests::*;
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");

/// The `reception` events of an event log file (empty if it does not exist yet); every line must be
/// one JSON object. (Each message also has a `dkim_unsigned` warning: the test has no DKIM key.)
fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("one JSON object per line"))
        .filter(|event| event["type"] == "reception")
        .collect()
}

/// Waits (bounded: the log's writer thread writes asynchronously) until `path` holds `count` events.
async fn wait_for_events(path: &Path, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = events(path);
        if found.len() >= count {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} has {} of {count} events",
            path.display(),
            found.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Sends one message with this subject; returns its queue id.
async fn send(client: &mut SmtpClient, subject: &str) -> String {
    let content = simple_message("app@sender.example", "user@dest.example", subject);
    let reply = client
        .send_message("app@sender.example", &["user@dest.example"], &content)
        .await;
    reply.queued_id().unwrap_or_else(|| panic!("not queued: {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reopens_the_event_log_after_it_was_renamed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    allow_loopback_relay(&mut config);
    let log = dir.path().join("events.jsonl");
    config.log.events = Some(log.clone());
    let config_path = write_config(dir.path(), &mut config);
    let mut server = RunningBinary::start(EXE, &config_path, &config).await;
    let mut client = SmtpClient::connect(server.smtp).await;
    client.ehlo().await;

    let first = send(&mut client, "before rotation").await;
    let before = wait_for_events(&log, 1).await;
    assert_eq!(
        (before[0]["type"].as_str(), before[0]["id"].as_str()),
        (Some("reception"), Some(first.as_str()))
    );

    let rotated = dir.path().join("events.jsonl.1");
    std::fs::rename(&log, &rotated).expect("rename like logrotate");
    server.signal(libc::SIGHUP);
    server.wait_for_log("reopening the event log").await;
    let second = send(&mut client, "after rotation").await;
    let after = wait_for_events(&log, 1).await;
    assert_eq!(after.len(), 1, "only the new event is in the new file");
    assert_eq!(after[0]["id"].as_str(), Some(second.as_str()));
    assert_eq!(events(&rotated).len(), 1, "the renamed file keeps the old event");

    assert_eq!(client.cmd("QUIT").await.code, 221);
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait().await.code(),
        Some(0),
        "SIGHUP did not stop the server; SIGTERM does"
    );
}
