//! Delivery survives a crash (issue 4 §5): the real binary, delivering a backlog through a smarthost (a
//! loopback [`TestSink`], so no DNS), is killed with SIGKILL — or stopped with SIGTERM — while deliveries
//! are in flight. After a restart on the same spool every acknowledged message reaches the sink: none is
//! lost, and only deliveries cut off at the kill are repeated.
//!
//! Each (message, recipient) pair is identified by the message's `X-Test-Seq` header and the RCPT address.
//! The backlog is queued first with delivery paused, so that the delivering run starts with 300 due
//! messages and keeps its connections busy until it is stopped. What the sink accepted
//! is split by run with the sink's connection numbers (the stopped process's connections are numbered
//! below the count taken before the restart), so comparing it with the spool does not depend on when the
//! sink finished recording what the dying process had already sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::time::Duration;

use penguin_config::{Config, HumanDuration};
use penguin_tests::binary::{self, RunningBinary};
use penguin_tests::sink::{Received, SinkBehaviour, TestSink};
use penguin_tests::*;

/// The binary under test.
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");
/// Messages in the backlog.
const MESSAGES: usize = 300;
/// Concurrent sessions that queue the backlog.
const SESSIONS: usize = 4;
/// At most this many messages can be cut off mid-delivery: each of the `MAX_IN_FLIGHT / 2`
/// connections (`delivery.max_connections_per_host`, the one ready queue's cap) has at most two items
/// sent but not stored yet (the one it sends, the previous one being stored).
const MAX_IN_FLIGHT: usize = 8;
/// Recipients per message (see [`recipients`]).
const RECIPIENTS: usize = 3;
/// Transactions per message: one per recipient domain.
const TRANSACTIONS_PER_MESSAGE: u64 = 2;
/// Transactions the sink accepts before the server is stopped: a third of all, so that much is left.
const STOP_AFTER: u64 = MESSAGES as u64 * TRANSACTIONS_PER_MESSAGE / 3;
/// How often `/healthz` is asked while waiting for the queue to drain (no event says "result stored").
const HEALTH_PACE: Duration = Duration::from_millis(10);

/// One recipient of one message: (`X-Test-Seq`, address).
type Pair = (usize, String);
/// How often the sink accepted each pair.
type Tally = BTreeMap<Pair, usize>;
/// `queue ls`: recipient address → state, by queue id.
type Listing = HashMap<String, BTreeMap<String, String>>;

/// The recipients of message `seq`: two share a domain (one transaction), the third is alone (another).
fn recipients(seq: usize) -> [String; RECIPIENTS] {
    [
        format!("a{seq}@one.example"),
        format!("b{seq}@one.example"),
        format!("c{seq}@two.example"),
    ]
}

/// Every pair of the backlog.
fn all_pairs() -> BTreeSet<Pair> {
    (0..MESSAGES)
        .flat_map(|seq| recipients(seq).map(|address| (seq, address)))
        .collect()
}

/// A message the server acknowledged with `250 2.0.0 Ok: queued as ID`.
#[derive(Clone, Debug)]
struct Acked {
    /// Its `X-Test-Seq`.
    seq: usize,
    /// The queue id from the reply.
    id: String,
}

/// The config of every run: loopback relay, the sink as smarthost, at most [`MAX_IN_FLIGHT`] messages in
/// flight, retry after 1 s without jitter; written with fresh ports. `paused` only for queueing the backlog.
fn delivery_config(dir: &Path, sink: SocketAddr, paused: bool) -> (Config, PathBuf) {
    let mut config = test_config(dir);
    allow_loopback_relay(&mut config);
    config.delivery.paused = paused;
    config.delivery.relay_host = Some(sink.to_string().parse().expect("relay host"));
    config.delivery.max_connections_per_host = MAX_IN_FLIGHT / 2;
    config.delivery.retry = vec!["1s".parse().expect("duration")];
    config.delivery.retry_jitter_percent = 0;
    // Deliveries in flight at SIGTERM get this long to finish (they take milliseconds on loopback); kept
    // well below WAIT, the bound on the process's exit.
    config.smtp.shutdown_grace = HumanDuration::from_secs(10);
    let path = binary::write_config(dir, &mut config);
    (config, path)
}

/// Queues messages `session, session + SESSIONS, ...` on one session; returns them acknowledged.
async fn queue_session(smtp: SocketAddr, session: usize) -> Vec<Acked> {
    let mut client = SmtpClient::connect(smtp).await;
    assert_eq!(client.ehlo().await.code, 250);
    let mut acked = Vec::new();
    for seq in (session..MESSAGES).step_by(SESSIONS) {
        let to = recipients(seq);
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        let content = format!(
            "From: <sender@sender.example>\r\nSubject: delivery crash {seq}\r\n\
             X-Test-Seq: {seq}\r\n\r\nmessage {seq}\r\n"
        );
        let reply = client.send_message("sender@sender.example", &to, &content).await;
        let id = reply
            .queued_id()
            .unwrap_or_else(|| panic!("message {seq}: {reply}"));
        acked.push(Acked { seq, id });
    }
    assert_eq!(client.cmd("QUIT").await.code, 221);
    acked
}

/// Queues the backlog with delivery paused, stops the server gracefully and checks that the spool holds
/// every message with all recipients queued. Returns the messages in `seq` order.
async fn queue_backlog(dir: &Path, sink: SocketAddr) -> Vec<Acked> {
    let (config, path) = delivery_config(dir, sink, true);
    let server = RunningBinary::start(EXE, &path, &config).await;
    let smtp = server.smtp;
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|session| tokio::spawn(queue_session(smtp, session)))
        .collect();
    let mut acked = Vec::new();
    for session in sessions {
        acked.extend(session.await.expect("queueing session"));
    }
    acked.sort_by_key(|message| message.seq);
    stop_gracefully(server).await;
    let listed = listing(&config.spool.path).await;
    assert_eq!(listed.len(), MESSAGES, "the backlog is queued");
    for message in &acked {
        let states = &listed[&message.id];
        assert!(
            states.len() == RECIPIENTS && states.values().all(|state| state == "queued"),
            "{}: {states:?}",
            message.id
        );
    }
    acked
}

/// SIGTERM, then the exit (bounded by WAIT) with status 0.
async fn stop_gracefully(server: RunningBinary) {
    server.signal(libc::SIGTERM);
    let status = server.wait().await;
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status}");
}

/// `queue ls --json` of the spool.
async fn listing(spool: &Path) -> Listing {
    binary::queue_ls(EXE, spool)
        .await
        .into_iter()
        .map(|message| {
            let id = message["id"].as_str().expect("id").to_string();
            let states = message["recipients"]
                .as_array()
                .expect("recipients")
                .iter()
                .map(|r| {
                    let address = r["address"].as_str().expect("address").to_string();
                    (address, r["state"].as_str().expect("state").to_string())
                })
                .collect();
            (id, states)
        })
        .collect()
}

/// The `X-Test-Seq` of a message the sink accepted.
fn seq_of(message: &Received) -> usize {
    let text = message.text();
    text.lines()
        .find_map(|line| line.strip_prefix("X-Test-Seq: "))
        .and_then(|seq| seq.trim().parse().ok())
        .unwrap_or_else(|| panic!("no X-Test-Seq in a delivered message:\n{text}"))
}

/// The pairs the sink accepted on the connections numbered in `connections`, with their counts.
fn tally(received: &[Received], connections: impl RangeBounds<u64>) -> Tally {
    let mut tally = Tally::new();
    for message in received
        .iter()
        .filter(|message| connections.contains(&message.connection))
    {
        let seq = seq_of(message);
        for address in &message.rcpt_to {
            *tally.entry((seq, address.clone())).or_default() += 1;
        }
    }
    tally
}

/// The spool and the sink right after a run was stopped.
#[derive(Debug)]
struct AtStop {
    /// Pairs the spool still has queued: the restart must send exactly these.
    queued: BTreeSet<Pair>,
    /// Those of them the sink had already accepted: delivered, but cut off before the result was stored.
    unrecorded: BTreeSet<Pair>,
}

/// Checks the spool against what the sink accepted during the stopped run (`first`): every acknowledged
/// pair is still queued or was accepted (none lost); the spool never records as delivered what the sink
/// did not accept; nothing was accepted twice or that was never sent.
fn check_stopped(acked: &[Acked], listed: &Listing, first: &Tally) -> AtStop {
    let known = all_pairs();
    for (pair, count) in first {
        assert!(
            known.contains(pair),
            "the sink accepted {pair:?}, which was never sent"
        );
        assert_eq!(*count, 1, "{pair:?} accepted {count} times in one run");
    }
    let ids: BTreeSet<&str> = acked.iter().map(|message| message.id.as_str()).collect();
    for id in listed.keys() {
        assert!(ids.contains(id.as_str()), "unknown message {id} in the spool");
    }
    let mut queued = BTreeSet::new();
    let mut unrecorded = BTreeSet::new();
    for message in acked {
        let pairs = recipients(message.seq).map(|address| (message.seq, address));
        let Some(states) = listed.get(&message.id) else {
            for pair in &pairs {
                assert!(
                    first.contains_key(pair),
                    "{} is gone from the spool, but {pair:?} never reached the sink: lost",
                    message.id
                );
            }
            continue;
        };
        assert_eq!(states.len(), RECIPIENTS, "{}: {states:?}", message.id);
        for pair in pairs {
            let state = states
                .get(&pair.1)
                .unwrap_or_else(|| panic!("{}: {} missing from {states:?}", message.id, pair.1));
            match state.as_str() {
                "delivered" => assert!(
                    first.contains_key(&pair),
                    "{}: the spool has {pair:?} delivered, the sink never accepted it",
                    message.id
                ),
                "queued" => {
                    if first.contains_key(&pair) {
                        unrecorded.insert(pair.clone());
                    }
                    queued.insert(pair);
                }
                other => panic!(
                    "{}: {pair:?} is {other} (the sink accepts everything)",
                    message.id
                ),
            }
        }
    }
    AtStop { queued, unrecorded }
}

/// Checks the restarted run (`second`) against the spool at the stop: it sent exactly the pairs still
/// queued, each once, so every pair reached the sink and the only ones accepted twice are those cut off
/// at the stop. Returns those duplicates.
fn check_restarted(at_stop: &AtStop, first: &Tally, second: &Tally) -> BTreeSet<Pair> {
    let sent: BTreeSet<Pair> = second.keys().cloned().collect();
    let missing: Vec<&Pair> = at_stop.queued.difference(&sent).collect();
    let extra: Vec<&Pair> = sent.difference(&at_stop.queued).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "after the restart, pairs still queued were not sent: {missing:?}; \
         pairs already delivered were sent again: {extra:?}"
    );
    for (pair, count) in second {
        assert_eq!(*count, 1, "{pair:?} accepted {count} times after the restart");
    }
    for pair in all_pairs() {
        let total = first.get(&pair).unwrap_or(&0) + second.get(&pair).unwrap_or(&0);
        assert!(total >= 1, "{pair:?} never reached the sink: lost");
    }
    let duplicates: BTreeSet<Pair> = first
        .keys()
        .filter(|pair| second.contains_key(*pair))
        .cloned()
        .collect();
    assert_eq!(duplicates, at_stop.unrecorded, "accepted twice");
    duplicates
}

/// Waits until the sink has accepted every pair at least once (bounded by WAIT). Each round waits for as
/// many more transactions as the missing pairs need at least (one per message and domain).
async fn wait_for_every_pair(sink: &TestSink) {
    let expected = all_pairs();
    let mut missing_groups = Vec::new();
    // Shorter than WAIT, so that this message, not the sink's dump of 600 messages, reports a hang.
    let bound = WAIT - Duration::from_secs(5);
    let covered = tokio::time::timeout(bound, async {
        loop {
            let seen = sink.stats().received;
            let got: BTreeSet<Pair> = tally(&sink.received(), ..).into_keys().collect();
            missing_groups = expected
                .difference(&got)
                .map(|(seq, address)| (*seq, address.split_once('@').map(|(_, d)| d.to_string())))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if missing_groups.is_empty() {
                return;
            }
            let more = seen + missing_groups.len() as u64;
            sink.wait_until("more deliveries", |stats| stats.received >= more)
                .await;
        }
    })
    .await;
    assert!(
        covered.is_ok(),
        "after {bound:?}, {} (message, domain) groups still not delivered, e.g. {:?}",
        missing_groups.len(),
        missing_groups.iter().take(10).collect::<Vec<_>>()
    );
}

/// `queued_messages` of `/healthz`.
async fn healthz_queued(api: SocketAddr) -> u64 {
    let (status, body) = http_get(api, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    health["queued_messages"].as_u64().expect("queued_messages")
}

/// Waits until `/healthz` reports an empty queue. Nothing signals that the last result was stored, so
/// the API is asked every [`HEALTH_PACE`], bounded by WAIT.
async fn wait_for_empty_queue(api: SocketAddr) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut pace = tokio::time::interval(HEALTH_PACE);
    loop {
        pace.tick().await;
        let queued = healthz_queued(api).await;
        if queued == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz still reports {queued} queued messages after {WAIT:?}"
        );
    }
}

/// Restarts on the same spool, waits until every pair reached the sink and the queue is empty (healthz
/// and `queue ls`), then stops gracefully; the queue stays empty.
async fn deliver_the_rest(dir: &Path, sink: &TestSink) {
    let (config, path) = delivery_config(dir, sink.address, false);
    let server = RunningBinary::start(EXE, &path, &config).await;
    wait_for_every_pair(sink).await;
    wait_for_empty_queue(server.api).await;
    let left = listing(&config.spool.path).await;
    assert!(left.is_empty(), "queue ls after delivering everything: {left:?}");
    stop_gracefully(server).await;
    let left = listing(&config.spool.path).await;
    assert!(left.is_empty(), "queue ls after the stop: {left:?}");
}

/// Starts the delivering run on the queued backlog and waits until the sink has accepted
/// [`STOP_AFTER`] transactions: from then on every connection is busy.
async fn start_delivering(dir: &Path, sink: &TestSink) -> (RunningBinary, PathBuf) {
    let (config, path) = delivery_config(dir, sink.address, false);
    let server = RunningBinary::start(EXE, &path, &config).await;
    sink.wait_until(&format!("{STOP_AFTER} transactions"), |stats| {
        stats.received >= STOP_AFTER
    })
    .await;
    (server, config.spool.path)
}

/// Messages among `pairs`.
fn messages_of(pairs: &BTreeSet<Pair>) -> BTreeSet<usize> {
    pairs.iter().map(|(seq, _)| *seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_loses_nothing_and_repeats_only_deliveries_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let acked = queue_backlog(dir.path(), sink.address).await;

    let (server, spool) = start_delivering(dir.path(), &sink).await;
    server.kill9().await;
    // The dead process opens no more connections: these are all of its connections.
    let restart_connection = sink.connections();
    let listed = listing(&spool).await;
    let at_kill = check_stopped(&acked, &listed, &tally(&sink.received(), ..restart_connection));
    assert!(
        !at_kill.queued.is_empty(),
        "everything was delivered before the kill: the test did not kill during delivery"
    );

    deliver_the_rest(dir.path(), &sink).await;
    // The sink has long recorded whatever the killed process sent: the first run's tally is final now.
    let received = sink.received();
    let first = tally(&received, ..restart_connection);
    let second = tally(&received, restart_connection..);
    let at_kill = check_stopped(&acked, &listed, &first);
    let duplicates = check_restarted(&at_kill, &first, &second);
    // Only messages in flight at the kill can have a delivery the spool did not record, and at most
    // two per connection are in flight; the restart sends each pair once. Hence at most
    // MAX_IN_FLIGHT messages, MAX_IN_FLIGHT * RECIPIENTS pairs, each accepted at most twice.
    let duplicated_messages = messages_of(&duplicates);
    assert!(
        duplicated_messages.len() <= MAX_IN_FLIGHT && duplicates.len() <= MAX_IN_FLIGHT * RECIPIENTS,
        "{} messages ({} pairs) accepted twice, more than the {MAX_IN_FLIGHT} in flight: {duplicates:?}",
        duplicated_messages.len(),
        duplicates.len()
    );
    assert_eq!(sink.protocol_errors(), 0, "{:?}", sink.protocol_error_details());
    eprintln!(
        "delivery_crash sigkill: {} pairs queued at the kill; duplicated: {} pairs in {} messages {:?}",
        at_kill.queued.len(),
        duplicates.len(),
        duplicated_messages.len(),
        duplicated_messages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_delivery_finishes_deliveries_in_flight_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let acked = queue_backlog(dir.path(), sink.address).await;

    let (server, spool) = start_delivering(dir.path(), &sink).await;
    let at_signal = sink.stats().received;
    stop_gracefully(server).await;
    let finished_after_signal = sink.stats().received - at_signal;
    let restart_connection = sink.connections();
    let listed = listing(&spool).await;
    let at_stop = check_stopped(&acked, &listed, &tally(&sink.received(), ..restart_connection));
    assert!(
        !at_stop.queued.is_empty(),
        "everything was delivered before SIGTERM: the test did not stop during delivery"
    );
    // A graceful stop lets deliveries in flight finish (shutdown_grace 10 s; they take milliseconds) and
    // store their results before the exit: nothing accepted is still queued, so nothing is sent twice.
    assert!(
        at_stop.unrecorded.is_empty(),
        "accepted by the sink but still queued after a graceful stop: {:?}",
        at_stop.unrecorded
    );

    deliver_the_rest(dir.path(), &sink).await;
    let received = sink.received();
    let first = tally(&received, ..restart_connection);
    let second = tally(&received, restart_connection..);
    let at_stop = check_stopped(&acked, &listed, &first);
    let duplicates = check_restarted(&at_stop, &first, &second);
    assert!(duplicates.is_empty(), "accepted twice: {duplicates:?}");
    assert_eq!(sink.protocol_errors(), 0, "{:?}", sink.protocol_error_details());
    eprintln!(
        "delivery_crash sigterm: {finished_after_signal} transactions accepted between SIGTERM and the exit; \
         {} pairs queued at the stop; duplicated: {} pairs",
        at_stop.queued.len(),
        duplicates.len()
    );
}
