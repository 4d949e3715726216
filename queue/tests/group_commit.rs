//! The writer batches what is waiting and acknowledges only after the commit.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{CountingObserver, ids, message, open_with};
use penguin_queue::{CommitObserver, Spool, SpoolError, SpoolOptions};

/// Holds the writer inside its first `on_commit` until the test opens the gate, so that every other
/// request is waiting in the channel when the writer forms its next batch.
#[derive(Default)]
struct GatedObserver {
    /// Counts every commit.
    counts: CountingObserver,
    /// Size of the first batch, once it is committed.
    first_batch: Mutex<Option<usize>>,
    /// Whether the gate is open.
    open: Mutex<bool>,
    /// Signals both changes.
    changed: Condvar,
}

impl GatedObserver {
    fn wait_first_batch(&self) -> usize {
        let guard = self.first_batch.lock().expect("lock");
        let (guard, timeout) = self
            .changed
            .wait_timeout_while(guard, Duration::from_secs(60), |b| b.is_none())
            .expect("lock");
        assert!(!timeout.timed_out(), "no first commit");
        guard.unwrap_or(0)
    }

    fn open_gate(&self) {
        *self.open.lock().expect("lock") = true;
        self.changed.notify_all();
    }
}

impl CommitObserver for GatedObserver {
    fn on_commit(&self, messages: usize, bytes: usize, sync: Duration) {
        self.counts.on_commit(messages, bytes, sync);
        {
            let mut first = self.first_batch.lock().expect("lock");
            if first.is_some() {
                return;
            }
            *first = Some(messages);
        }
        self.changed.notify_all();
        let open = self.open.lock().expect("lock");
        drop(self.changed.wait_while(open, |open| !*open).expect("lock"));
    }
}

/// Spawns 200 enqueues while the writer is held in its first commit, waits until all the others are
/// queued in the channel, opens the gate and returns the enqueue results.
async fn gated_run(spool: &Arc<Spool>, observer: &Arc<GatedObserver>) -> Vec<Result<(), SpoolError>> {
    let tasks: Vec<_> = ids(200)
        .into_iter()
        .map(|id| {
            let spool = Arc::clone(spool);
            tokio::spawn(async move { spool.enqueue(message(id)).await })
        })
        .collect();
    let waiting = Arc::clone(observer);
    let first = tokio::task::spawn_blocking(move || waiting.wait_first_batch())
        .await
        .expect("join");
    let deadline = Instant::now() + Duration::from_secs(60);
    while spool.pending_requests() < 200 - first {
        assert!(
            Instant::now() < deadline,
            "only {} requests queued",
            spool.pending_requests()
        );
        tokio::task::yield_now().await;
    }
    observer.open_gate();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("join"));
    }
    results
}

fn gated_spool(dir: &std::path::Path, max_batch_messages: usize) -> (Arc<Spool>, Arc<GatedObserver>) {
    let observer = Arc::new(GatedObserver::default());
    let mut options = SpoolOptions::new(dir);
    options.max_batch_messages = max_batch_messages;
    options.observer = Some(Arc::clone(&observer) as Arc<dyn CommitObserver>);
    (Arc::new(Spool::open(options).expect("open")), observer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_takes_everything_waiting_in_one_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, observer) = gated_spool(dir.path(), 512);
    let results = gated_run(&spool, &observer).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        200,
        "every enqueue acknowledged"
    );
    let commits = observer.counts.commits.load(Ordering::SeqCst);
    // The first batch, then everything that queued up behind it.
    assert!(commits <= 2, "{commits} commits for 200 concurrent enqueues");
    assert!(commits < 200);
    assert_eq!(observer.counts.messages.load(Ordering::SeqCst), 200);
    assert_eq!(spool.stats().commits, commits as u64);
    assert_eq!(spool.stats().requests, 200);
    assert_eq!(
        spool.queued_messages(),
        ids(200)
            .into_iter()
            .filter(|&id| message(id).envelope.has_queued())
            .count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_respect_max_batch_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, observer) = gated_spool(dir.path(), 16);
    let results = gated_run(&spool, &observer).await;
    assert!(results.iter().all(Result::is_ok));
    assert!(observer.counts.largest.load(Ordering::SeqCst) <= 16);
    // 200 requests in batches of at most 16, and the 199 or fewer waiting ones in full batches.
    let commits = observer.counts.commits.load(Ordering::SeqCst);
    assert!((13..=14).contains(&commits), "{commits} commits");
    assert_eq!(observer.counts.messages.load(Ordering::SeqCst), 200);
}

/// Counts committed requests; an acknowledgement may never run ahead of it.
#[derive(Default)]
struct CommittedCounter {
    /// Requests in batches whose `on_commit` ran.
    committed: AtomicU64,
}

impl CommitObserver for CommittedCounter {
    fn on_commit(&self, messages: usize, _bytes: usize, _sync: Duration) {
        self.committed.fetch_add(messages as u64, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ack_arrives_only_after_its_batch_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let observer = Arc::new(CommittedCounter::default());
    let spool = Arc::new(open_with(
        dir.path(),
        Some(Arc::clone(&observer) as Arc<dyn CommitObserver>),
    ));
    let acks = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for chunk in ids(400).chunks(8) {
        let (spool, observer, acks, violations) = (
            Arc::clone(&spool),
            Arc::clone(&observer),
            Arc::clone(&acks),
            Arc::clone(&violations),
        );
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for id in chunk {
                spool.enqueue(message(id)).await.expect("enqueue");
                let acked = acks.fetch_add(1, Ordering::SeqCst) + 1;
                // Every acknowledged request was reported committed before its ack was sent.
                if observer.committed.load(Ordering::SeqCst) < acked {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
                assert!(
                    spool.read_envelope(id).expect("read").is_some(),
                    "{id} acked but not readable"
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert_eq!(acks.load(Ordering::SeqCst), 400);
    assert_eq!(observer.committed.load(Ordering::SeqCst), 400);
}

#[test]
fn sync_off_still_commits_in_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let observer = Arc::new(CountingObserver::default());
    let mut options = SpoolOptions::new(dir.path());
    options.sync = false;
    options.observer = Some(Arc::clone(&observer) as Arc<dyn CommitObserver>);
    let spool = Spool::open(options).expect("open");
    for id in ids(10) {
        spool.enqueue_blocking(message(id)).expect("enqueue");
    }
    assert_eq!(observer.messages.load(Ordering::SeqCst), 10);
    spool.close().expect("close");
    let spool = open_with(dir.path(), None);
    assert!(
        ids(10)
            .into_iter()
            .all(|id| spool.read_body(id).ok().flatten().is_some())
    );
}
