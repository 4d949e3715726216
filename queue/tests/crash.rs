//! kill -9 of a process that is enqueueing loses no acknowledged message and leaves no half message.
//!
//! The test binary re-executes itself: with `CHILD_DIR_ENV` set, `crash_child_enqueues_until_killed` opens
//! the spool in that directory and enqueues from many tasks, printing `ACK <id>` after each
//! acknowledgement. The parent reads some acknowledgements, SIGKILLs the child mid-stream and checks the
//! spool.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{message, open_with};
use penguin_queue::{IdGenerator, MessageId, SpoolReader};
use rand::Rng;

const CHILD_DIR_ENV: &str = "PENGUIN_QUEUE_CRASH_CHILD_DIR";
const CHILD_TEST: &str = "crash_child_enqueues_until_killed";

/// The child's side (a no-op unless `CHILD_DIR_ENV` is set): enqueue from 16 tasks, print each ack.
/// Bounded: each task stops after 5,000 messages or 60 seconds.
#[test]
fn crash_child_enqueues_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let runtime = runtime.expect("runtime");
    runtime.block_on(async move {
        let spool = Arc::new(open_with(std::path::Path::new(&dir), None));
        let ids = Arc::new(IdGenerator::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (spool, ids) = (Arc::clone(&spool), Arc::clone(&ids));
                tokio::spawn(async move {
                    for _ in 0..5_000 {
                        if Instant::now() > deadline {
                            break;
                        }
                        let id = ids.next_id();
                        spool.enqueue(message(id)).await.expect("enqueue");
                        println!("ACK {id}");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
}

/// Starts the child, collects at least `acks_wanted` acknowledged ids, kills it with SIGKILL and returns
/// every id it acknowledged (including lines still in the pipe).
fn run_child_and_kill(dir: &std::path::Path, acks_wanted: usize) -> Vec<MessageId> {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let parse = |line: &str| {
        line.strip_prefix("ACK ")
            .map(|id| id.parse::<MessageId>().expect("id"))
    };
    while acked.len() < acks_wanted {
        match lines.next() {
            Some(line) => acked.extend(parse(&line.expect("read"))),
            None => panic!("child exited after {} acks", acked.len()),
        }
    }
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
    let status = child.wait().expect("wait");
    assert!(!status.success(), "child was killed, not finished");
    // Acks printed before the kill that the parent had not read yet.
    for line in lines {
        acked.extend(parse(&line.expect("read")));
    }
    acked
}

#[test]
fn kill_9_loses_no_acknowledged_message() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return; // This process is a child.
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand::rng();
    let mut all_acked = BTreeSet::new();
    for round in 0..3 {
        let acked = run_child_and_kill(dir.path(), rng.random_range(50..400));
        all_acked.extend(acked);

        let spool = open_with(dir.path(), None);
        for &id in &all_acked {
            let expected = message(id);
            assert_eq!(
                spool.read_envelope(id).expect("read"),
                Some(expected.envelope),
                "round {round}: {id}"
            );
            assert_eq!(
                spool.read_body(id).expect("read"),
                Some(expected.body),
                "round {round}: {id}"
            );
        }
        let indexed = spool.recovery().messages;
        spool.close().expect("close");

        // Whatever is stored (acknowledged or not) is whole: each envelope has its body and vice versa,
        // and both are exactly what the child enqueued.
        let reader = SpoolReader::open(dir.path()).expect("reader");
        let mut envelope_ids = BTreeSet::new();
        for item in reader.messages() {
            let (id, envelope) = item.expect("decodable envelope");
            assert_eq!(envelope, message(id).envelope, "{id}");
            envelope_ids.insert(id);
        }
        let body_ids: BTreeSet<MessageId> = reader.body_ids().map(|id| id.expect("body key")).collect();
        assert_eq!(
            envelope_ids, body_ids,
            "round {round}: envelopes and bodies differ"
        );
        for &id in &body_ids {
            assert_eq!(
                reader.read_body(id).expect("read"),
                Some(message(id).body),
                "{id}"
            );
        }
        assert!(all_acked.is_subset(&envelope_ids));
        let queued = envelope_ids
            .iter()
            .filter(|&&id| message(id).envelope.has_queued())
            .count();
        assert_eq!(
            indexed, queued as u64,
            "round {round}: recovery indexed every queued message"
        );
    }
}
