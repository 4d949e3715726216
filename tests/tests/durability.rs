//! Acceptance is durable: the real binary killed with SIGKILL under load loses no acknowledged message;
//! SIGTERM stops it gracefully; a really full disk (tmpfs) gives 4xx without losing acknowledged mail.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use penguin_tests::binary::{self, RunningBinary};
use penguin_tests::*;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// The binary under test.
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");
/// Concurrent sessions of the crash test.
const SESSIONS: usize = 8;
/// Most messages per session (2000 in all).
const MESSAGES_PER_SESSION: usize = 250;
/// Acknowledged messages after which the process is killed.
const KILL_AFTER: usize = 200;

/// A message the server acknowledged with `250 2.0.0 Ok: queued as ID`.
#[derive(Clone, Debug)]
struct Acked {
    /// The queue id from the reply.
    id: String,
    /// The campaign (X-Campaign-ID) it was sent with.
    campaign: String,
    /// Its recipients.
    recipients: Vec<String>,
}

/// How a sending session ended.
#[derive(Debug, PartialEq, Eq)]
enum SessionEnd {
    /// The connection broke (the server died) while sending.
    Broken,
    /// It sent everything it was allowed to (count or time bound).
    Finished,
}

/// Sends messages on one relay session until the connection breaks or the bounds are reached,
/// recording every acknowledged one and counting it in `acked_count`.
async fn sending_session(
    smtp: SocketAddr,
    session: usize,
    acked: Arc<Mutex<Vec<Acked>>>,
    acked_count: watch::Sender<usize>,
) -> SessionEnd {
    let deadline = Instant::now() + WAIT;
    let mut client = SmtpClient::connect(smtp).await;
    assert_eq!(client.greeting.code, 220, "{}", client.greeting);
    if client.try_cmd("EHLO load.test").await.is_none() {
        return SessionEnd::Broken;
    }
    let campaign = format!("crash-{session}");
    for n in 0..MESSAGES_PER_SESSION {
        if Instant::now() >= deadline {
            break;
        }
        let recipients = vec![
            format!("r{n}a@dest{session}.example"),
            format!("r{n}b@other.example"),
        ];
        let to: Vec<&str> = recipients.iter().map(String::as_str).collect();
        let content = format!(
            "From: <load@sender.example>\r\nX-Campaign-ID: {campaign}\r\nSubject: {session}/{n}\r\n\r\nbody {n}\r\n"
        );
        let Some(reply) = client
            .try_send_message("load@sender.example", &to, &content)
            .await
        else {
            return SessionEnd::Broken;
        };
        let id = reply
            .queued_id()
            .unwrap_or_else(|| panic!("session {session} message {n}: {reply}"));
        acked.lock().expect("lock").push(Acked {
            id,
            campaign: campaign.clone(),
            recipients,
        });
        acked_count.send_modify(|count| *count += 1);
    }
    SessionEnd::Finished
}

/// The `queue ls --json` objects by id.
async fn listing_by_id(spool: &Path) -> HashMap<String, serde_json::Value> {
    binary::queue_ls(EXE, spool)
        .await
        .into_iter()
        .map(|message| (message["id"].as_str().expect("id").to_string(), message))
        .collect()
}

/// Asserts that every acknowledged message is listed with its tenant, campaign and queued recipients.
fn assert_all_listed(acked: &[Acked], listed: &HashMap<String, serde_json::Value>) {
    for message in acked {
        let entry = listed
            .get(&message.id)
            .unwrap_or_else(|| panic!("acknowledged {} lost", message.id));
        assert_eq!(entry["tenant"], "default", "{entry}");
        assert_eq!(entry["campaign"], message.campaign.as_str(), "{entry}");
        let recipients: Vec<(&str, &str)> = entry["recipients"]
            .as_array()
            .expect("recipients")
            .iter()
            .map(|r| {
                (
                    r["address"].as_str().expect("address"),
                    r["state"].as_str().expect("state"),
                )
            })
            .collect();
        let expected: Vec<(&str, &str)> = message
            .recipients
            .iter()
            .map(|r| (r.as_str(), "queued"))
            .collect();
        assert_eq!(recipients, expected, "{entry}");
    }
}

/// `messages=N` of the "spool recovered" log line.
fn recovered_messages(log: &[String]) -> usize {
    let line = log
        .iter()
        .find(|line| line.contains("spool recovered"))
        .unwrap_or_else(|| panic!("no \"spool recovered\" line in:\n{}", log.join("\n")));
    let value = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("messages="))
        .expect("messages=");
    value
        .parse()
        .unwrap_or_else(|_| panic!("messages= is not a number: {line}"))
}

/// A config for the binary: spool in `dir`, loopback relay; written with fresh ports.
fn binary_config(dir: &Path) -> (penguin_config::Config, PathBuf) {
    let mut config = test_config(dir);
    allow_loopback_relay(&mut config);
    let path = binary::write_config(dir, &mut config);
    (config, path)
}

/// Runs the sending sessions against `server`, SIGKILLs it once `KILL_AFTER` messages are
/// acknowledged (the sessions still sending), and returns every acknowledged message.
async fn load_then_kill(server: RunningBinary) -> Vec<Acked> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let smtp = server.smtp;
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|session| {
            tokio::spawn(sending_session(
                smtp,
                session,
                Arc::clone(&acked),
                count_tx.clone(),
            ))
        })
        .collect();
    drop(count_tx);
    // `wait_for` returns a read guard that would block the senders' counter: copy the count out at once.
    let reached = tokio::time::timeout(WAIT, async {
        count_rx.wait_for(|count| *count >= KILL_AFTER).await.map(|c| *c)
    })
    .await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "fewer than {KILL_AFTER} messages acknowledged in time"
    );
    server.kill9().await;

    let mut ends = Vec::new();
    for session in sessions {
        ends.push(session.await.expect("session task"));
    }
    assert!(
        ends.contains(&SessionEnd::Broken),
        "the kill must hit sessions while they send: {ends:?}"
    );
    let acked = acked.lock().expect("lock").clone();
    let count = acked.len();
    assert!(
        (KILL_AFTER..SESSIONS * MESSAGES_PER_SESSION).contains(&count),
        "{count} acknowledged"
    );
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, config_path) = binary_config(dir.path());
    let server = RunningBinary::start(EXE, &config_path, &config).await;
    let acked = load_then_kill(server).await;

    let spool = config.spool.path.clone();
    let listed = listing_by_id(&spool).await;
    assert_all_listed(&acked, &listed);

    // Restart on the same spool (fresh ports): recovery finds every message.
    let (config, config_path) = binary_config(dir.path());
    assert_eq!(config.spool.path, spool);
    let (mut server, startup_log) = RunningBinary::start_logged(EXE, &config_path, &config).await;
    let recovered = recovered_messages(&startup_log);
    assert!(
        recovered >= acked.len(),
        "recovered {recovered} < acknowledged {}",
        acked.len()
    );
    assert_eq!(recovered, listed.len(), "recovery and queue ls disagree");
    let (status, health) = http_get(server.api, "/healthz").await;
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).expect("JSON");
    let queued = health["queued_messages"].as_u64().expect("queued_messages") as usize;
    assert!(
        queued >= acked.len(),
        "healthz {queued} < acknowledged {}",
        acked.len()
    );
    assert_eq!(queued, recovered, "{health}");

    server.signal(libc::SIGTERM);
    server.log_until("stopped").await;
    let status = server.wait().await;
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status}");
    assert_all_listed(&acked, &listing_by_id(&spool).await);
}

/// What a connection attempt during shutdown saw.
async fn connect_during_shutdown(address: SocketAddr) -> Result<Vec<u8>, std::io::Error> {
    let mut tcp = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(address))
        .await
        .expect("in time")?;
    let mut received = Vec::new();
    // Ends at EOF or reset; bounded by WAIT.
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut received))
        .await
        .expect("closed in time");
    Ok(received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_transaction_in_flight_then_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, config_path) = binary_config(dir.path());
    let mut server = RunningBinary::start(EXE, &config_path, &config).await;

    let mut a = SmtpClient::connect(server.smtp).await;
    a.ehlo().await;
    assert_eq!(a.cmd("MAIL FROM:<a@sender.example>").await.code, 250);
    assert_eq!(a.cmd("RCPT TO:<rcpt@dest.example>").await.code, 250);
    assert_eq!(a.cmd("DATA").await.code, 354);
    a.send_raw(b"From: <a@sender.example>\r\nSubject: in flight\r\n\r\nfirst half\r\n")
        .await;
    let mut b = SmtpClient::connect(server.smtp).await;
    assert_eq!(b.ehlo().await.code, 250);

    server.signal(libc::SIGTERM);
    server.log_until("shutting down").await;
    let to_b = b
        .try_reply()
        .await
        .expect("idle session B is told before it sends anything");
    assert_eq!(
        (to_b.code, to_b.lines[0].get(..5)),
        (421, Some("4.3.2")),
        "{to_b}"
    );
    assert!(b.is_closed().await, "B is closed after 421");

    match connect_during_shutdown(server.smtp).await {
        Err(_) => {}
        Ok(received) => assert!(
            !String::from_utf8_lossy(&received).starts_with("220"),
            "a connection after SIGTERM was greeted: {:?}",
            String::from_utf8_lossy(&received)
        ),
    }

    a.send_raw(b"second half\r\n.\r\n").await;
    let queued = a.reply().await;
    let id = queued
        .queued_id()
        .unwrap_or_else(|| panic!("the transaction in flight completes: {queued}"));
    let next = a
        .try_cmd("NOOP")
        .await
        .expect("a reply to the command after the message");
    assert_eq!(
        (next.code, next.lines[0].get(..5)),
        (421, Some("4.3.2")),
        "{next}"
    );

    let status = server.wait().await;
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status}");
    let listed = listing_by_id(&config.spool.path).await;
    let entry = listed
        .get(&id)
        .unwrap_or_else(|| panic!("{id} not in queue ls: {listed:?}"));
    assert_eq!(entry["recipients"][0]["address"], "rcpt@dest.example");
}

/// A tmpfs of a fixed size mounted on a directory; unmounted on drop (lazily if still busy).
struct Tmpfs {
    /// The mount point.
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "4m") on `path` (created); panics with what is needed if the
    /// mount is not permitted.
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("create mount point");
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount(8)");
        assert!(
            output.status.success(),
            "this test needs to mount a small tmpfs for a real ENOSPC (root with CAP_SYS_ADMIN); mount said: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
    }
}

/// A message of about `kib` KiB in lines of 76 characters.
fn large_message(kib: usize, n: usize) -> String {
    let line = format!("{}\r\n", "x".repeat(76));
    let mut content = format!("From: <big@sender.example>\r\nSubject: large {n}\r\n\r\n");
    while content.len() < kib * 1024 {
        content.push_str(&line);
    }
    content
}

/// Most 512 KiB messages sent while filling a file system (the 80 MiB one takes about 11).
const MAX_FILL_MESSAGES: usize = 60;

/// Sends large messages until the spool's disk is full; returns the acknowledged ids and the refusal.
async fn fill_disk(client: &mut SmtpClient) -> (Vec<String>, Reply) {
    let mut acked = Vec::new();
    for n in 0..MAX_FILL_MESSAGES {
        let reply = client
            .try_send_message(
                "big@sender.example",
                &["rcpt@dest.example"],
                &large_message(512, n),
            )
            .await
            .expect("the connection stays open while the disk fills");
        if let Some(id) = reply.queued_id() {
            acked.push(id);
            continue;
        }
        let full = [(452, "4.3.1"), (451, "4.3.0")]
            .iter()
            .any(|&(code, status)| reply.code == code && reply.text().starts_with(status));
        assert!(
            full,
            "message {n}: expected 250, 452 4.3.1 or 451 4.3.0, got {reply}"
        );
        return (acked, reply);
    }
    panic!("the file system never filled after {MAX_FILL_MESSAGES} messages of 512 KiB");
}

/// A server whose spool is on a fresh tmpfs of `size` holding a filler file of `filler_mib` MiB.
struct FullDiskSetup {
    /// The server (relay from loopback, min_free_space 0: only the real ENOSPC path).
    server: TestServer,
    /// The mounted file system (declared after the server: unmounted after it stopped).
    fs: Tmpfs,
    /// The filler file to delete to free space.
    filler: PathBuf,
    /// Keeps the mount point's parent.
    _dir: tempfile::TempDir,
}

impl FullDiskSetup {
    async fn start(size: &str, filler_mib: usize) -> FullDiskSetup {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = Tmpfs::mount(&dir.path().join("fs"), size);
        let filler = fs.path.join("filler");
        std::fs::write(&filler, vec![0xA5u8; filler_mib * 1024 * 1024]).expect("write the filler");
        let mut config = test_config(dir.path());
        allow_loopback_relay(&mut config);
        config.spool.path = fs.path.join("spool");
        config.spool.min_free_space = penguin_config::ByteSize(0);
        let server = TestServer::start(config).await;
        FullDiskSetup {
            server,
            fs,
            filler,
            _dir: dir,
        }
    }

    /// Stops the server, then checks that every acknowledged id is in the spool with its body;
    /// returns how the server stopped.
    async fn stop_and_check(self, acked: &[String]) -> Result<(), penguin_mta::ServeError> {
        let FullDiskSetup {
            server,
            fs,
            filler: _,
            _dir,
        } = self;
        let spool = server.spool_path.clone();
        let stopped = server.stop().await;
        let stored: HashMap<String, penguin_queue::Envelope> = queued(&spool).into_iter().collect();
        for id in acked {
            assert!(
                stored.contains_key(id),
                "acknowledged {id} is not in the spool (stop: {stopped:?})"
            );
            assert!(!stored_body(&spool, id).is_empty(), "{id} has its body");
        }
        drop(fs);
        stopped
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_452_keeps_every_acknowledged_message_and_the_sessions() {
    let setup = FullDiskSetup::start("4m", 1).await;
    let mut client = setup.server.connect().await;
    assert_eq!(client.ehlo().await.code, 250);
    let (acked, refusal) = fill_disk(&mut client).await;
    assert!(!acked.is_empty(), "some messages fit before the disk was full");
    assert_eq!(
        client.cmd("NOOP").await.code,
        250,
        "the session survives a full disk"
    );
    assert_eq!(
        client.ehlo().await.code,
        250,
        "EHLO after a full disk ({refusal})"
    );
    let mut other = setup.server.connect().await;
    assert_eq!(
        other.greeting.code, 220,
        "new sessions are still greeted: {}",
        other.greeting
    );
    assert_eq!(other.ehlo().await.code, 250);
    assert_eq!(other.cmd("QUIT").await.code, 221);
    assert_eq!(client.cmd("QUIT").await.code, 221);
    // With the disk still full the final WAL flush fails; the server reports it and still stops
    // cleanly, since every acknowledged message was synced before its 250.
    setup
        .stop_and_check(&acked)
        .await
        .expect("the server stops cleanly with the disk still full");
}

/// RocksDB's verdict, in its LOG, that it cannot resume although `freed_at_least` bytes are free:
/// "free space [N bytes] is less than required disk buffer [M bytes]" with N >= `freed_at_least`.
fn rocksdb_refuses_to_resume(spool: &Path, freed_at_least: u64) -> Option<String> {
    let log = std::fs::read_to_string(spool.join("LOG")).unwrap_or_default();
    log.lines()
        .find(|line| {
            let free = line
                .split("free space [")
                .nth(1)
                .and_then(|rest| rest.split(' ').next());
            free.and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= freed_at_least)
                && line.contains("required disk buffer")
        })
        .map(str::to_string)
}

/// After space was freed: sends a small message until it is accepted. RocksDB resumes on its own
/// 5-second poll of the free space (there is no event to await), so attempts are paced (every
/// 100 ms, at most 300 of them, bounded by WAIT); RocksDB's LOG verdict that it will not resume ends
/// the wait at once with that verdict.
async fn resend_until_accepted(client: &mut SmtpClient, spool: &Path, freed: u64) -> Result<String, String> {
    let content = simple_message(
        "small@sender.example",
        "rcpt@dest.example",
        "after space was freed",
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut last = None;
    for _ in 0..300 {
        pace.tick().await;
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let reply = client
            .try_send_message("small@sender.example", &["rcpt@dest.example"], &content)
            .await
            .expect("the session stays open");
        if let Some(id) = reply.queued_id() {
            return Ok(id);
        }
        if let Some(verdict) = rocksdb_refuses_to_resume(spool, freed / 2) {
            return Err(format!("{reply}; RocksDB LOG: {verdict}"));
        }
        last = Some(reply);
    }
    Err(format!("still refused after {WAIT:?}: {last:?}"))
}

/// Fills the disk, frees the filler, and expects mail to be accepted again.
async fn full_then_freed(size: &str, filler_mib: usize) {
    let setup = FullDiskSetup::start(size, filler_mib).await;
    let mut client = setup.server.connect().await;
    assert_eq!(client.ehlo().await.code, 250);
    let (mut acked, _refusal) = fill_disk(&mut client).await;
    std::fs::remove_file(&setup.filler).expect("free the filler");
    let freed = (filler_mib * 1024 * 1024) as u64;
    match resend_until_accepted(&mut client, &setup.server.spool_path, freed).await {
        Ok(id) => acked.push(id),
        Err(why) => panic!(
            "after ENOSPC and freeing {filler_mib} MiB on a {size} spool file system, \
             the spool still refuses mail: {why}"
        ),
    }
    assert_eq!(client.cmd("QUIT").await.code, 221);
    setup
        .stop_and_check(&acked)
        .await
        .expect("the server stops cleanly once the spool has resumed");
}

/// RocksDB stops writing after ENOSPC and resumes by itself (polling every 5 s) once the free space
/// exceeds its largest write buffer (64 MiB); `spool.min_free_space` (default 100MB) keeps the server
/// from reaching ENOSPC in the first place. Here 70 MiB are freed on an 80 MiB spool file system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_mail_is_accepted_again_once_a_write_buffer_of_space_is_free() {
    full_then_freed("80m", 70).await;
}

/// `queue ls` runs while a server recovers the spool after a SIGKILL: run in a loop from just before
/// the new process starts until it listens, over three kill-and-restart rounds, every run succeeds
/// and lists at least every acknowledged message (a plain read-only open races the recovery's WAL
/// cleanup; the CLI opens the spool as a RocksDB secondary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ls_works_while_the_server_recovers_after_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, config_path) = binary_config(dir.path());
    let spool = config.spool.path.clone();
    let mut server = RunningBinary::start(EXE, &config_path, &config).await;
    let mut acked: Vec<Acked> = Vec::new();
    for round in 0..3 {
        acked.extend(load_then_kill(server).await);
        let (config, config_path) = binary_config(dir.path());
        let (stop, stopped) = watch::channel(false);
        let lister = tokio::spawn(list_until(spool.clone(), stopped));
        let config_arg = config_path.to_str().expect("utf-8 path");
        let mut restarted = RunningBinary::spawn(
            EXE,
            &["serve", "--config", config_arg],
            None,
            config.smtp.listen[0],
            config.api.listen,
        );
        restarted.log_until("SMTP listening").await;
        stop.send(true).expect("lister runs");
        let runs = lister.await.expect("lister");
        assert!(runs.len() >= 2, "round {round}: {} runs", runs.len());
        for (run, listed) in runs.iter().enumerate() {
            let listed = listed
                .as_ref()
                .unwrap_or_else(|error| panic!("round {round}, queue ls {run} failed: {error}"));
            assert!(
                *listed >= acked.len(),
                "round {round}, run {run}: {listed} listed < {} acknowledged",
                acked.len()
            );
        }
        server = restarted;
    }
    assert_all_listed(&acked, &listing_by_id(&spool).await);
    server.kill9().await;
}

/// Runs `queue ls --json` on `spool` again and again until `stop` (then twice more); returns each
/// run's message count, or its stderr when it failed.
async fn list_until(spool: PathBuf, mut stop: watch::Receiver<bool>) -> Vec<Result<usize, String>> {
    let spool = spool.to_str().expect("utf-8 path").to_string();
    let mut runs = Vec::new();
    let mut after_stop = 0;
    while after_stop < 2 && runs.len() < 500 {
        let output = binary::run_cli(EXE, &["queue", "ls", "--spool", &spool, "--json"], None).await;
        runs.push(if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).lines().count())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        });
        if *stop.borrow_and_update() {
            after_stop += 1;
        }
    }
    runs
}
