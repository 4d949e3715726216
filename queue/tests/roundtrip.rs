//! Enqueue, reopen, read back; envelope updates and deletes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{ids, message, open_with};
use penguin_queue::{MessageId, NewMessage, RecipientState, Spool};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_survive_reopen_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ids(1_000);
    let spool = Arc::new(open_with(dir.path(), None));
    let mut tasks = Vec::new();
    for chunk in all.chunks(20) {
        let spool = Arc::clone(&spool);
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for id in chunk {
                spool.enqueue(message(id)).await?;
            }
            Ok::<_, penguin_queue::SpoolError>(())
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("enqueue");
    }
    let expected: BTreeMap<MessageId, NewMessage> = all.iter().map(|&id| (id, message(id))).collect();
    let queued: Vec<&NewMessage> = expected.values().filter(|m| m.envelope.has_queued()).collect();
    assert_eq!(spool.queued_messages(), queued.len(), "index before reopen");
    Arc::into_inner(spool)
        .expect("sole owner")
        .close()
        .expect("close");

    let spool = open_with(dir.path(), None);
    let report = spool.recovery();
    assert_eq!(report.messages, queued.len() as u64);
    let recipients: usize = queued.iter().map(|m| m.envelope.queued_count()).sum();
    assert_eq!(report.recipients, recipients as u64);
    assert_eq!(report.corrupt, 0);
    for (id, message) in &expected {
        assert_eq!(
            spool.read_envelope(*id).expect("read").as_ref(),
            Some(&message.envelope),
            "{id}"
        );
        assert_eq!(
            spool.read_body(*id).expect("read").as_ref(),
            Some(&message.body),
            "{id}"
        );
    }
    // The index holds every queued message, in due order.
    let mut due: Vec<(u64, MessageId)> = queued
        .iter()
        .map(|m| (m.envelope.next_attempt_at_ms, m.id))
        .collect();
    due.sort();
    let popped = spool.index().pop_due(u64::MAX, usize::MAX);
    assert_eq!(popped, due.into_iter().map(|(_, id)| id).collect::<Vec<_>>());
    spool.close().expect("close");
}

#[test]
fn blocking_enqueues_from_threads_are_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ids(200);
    let spool = Arc::new(open_with(dir.path(), None));
    std::thread::scope(|scope| {
        for chunk in all.chunks(25) {
            let spool = &spool;
            scope.spawn(move || {
                for &id in chunk {
                    spool.enqueue_blocking(message(id)).expect("enqueue");
                }
            });
        }
    });
    drop(spool);
    let spool = open_with(dir.path(), None);
    for &id in &all {
        assert_eq!(spool.read_body(id).expect("read"), Some(message(id).body), "{id}");
    }
}

#[tokio::test]
async fn update_reschedules_and_finishing_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    let id = ids(2)[1]; // sequence 1: two queued recipients
    let original = message(id);
    assert_eq!(original.envelope.recipients.len(), 2);
    spool.enqueue(original.clone()).await.expect("enqueue");
    assert_eq!(
        spool.index().due_ms(id),
        Some(original.envelope.next_attempt_at_ms)
    );

    // One recipient delivered, the other deferred: the message moves to its new due time.
    let mut deferred = original.envelope.clone();
    deferred.recipients[0].state = RecipientState::Delivered;
    deferred.recipients[1].attempts = 1;
    deferred.next_attempt_at_ms += 60_000;
    assert!(spool.update_envelope(id, &deferred).await.expect("update"));
    assert_eq!(spool.read_envelope(id).expect("read"), Some(deferred.clone()));
    assert_eq!(spool.index().due_ms(id), Some(deferred.next_attempt_at_ms));

    // The last recipient bounces: the message is finished, envelope and body are gone.
    let mut finished = deferred;
    finished.recipients[1].state = RecipientState::Bounced;
    assert!(spool.update_envelope(id, &finished).await.expect("update"));
    assert_eq!(spool.read_envelope(id).expect("read"), None);
    assert_eq!(spool.read_body(id).expect("read"), None);
    assert!(!spool.index().contains(id));

    // Updating a message that no longer exists writes nothing.
    assert!(
        !spool
            .update_envelope(id, &original.envelope)
            .await
            .expect("update")
    );
    assert_eq!(spool.read_envelope(id).expect("read"), None);
    assert!(!spool.index().contains(id));
    drop(spool);
    let spool = open_with(dir.path(), None);
    assert_eq!(spool.recovery().messages, 0);
}

#[tokio::test]
async fn delete_removes_envelope_body_and_index_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    let [keep, gone] = [ids(3)[1], ids(3)[2]];
    spool.enqueue(message(keep)).await.expect("enqueue");
    spool.enqueue(message(gone)).await.expect("enqueue");
    spool.delete(gone).await.expect("delete");
    assert_eq!(spool.read_envelope(gone).expect("read"), None);
    assert_eq!(spool.read_body(gone).expect("read"), None);
    assert!(!spool.index().contains(gone));
    assert!(spool.index().contains(keep));
    drop(spool);
    let spool = open_with(dir.path(), None);
    assert_eq!(spool.recovery().messages, 1);
    assert_eq!(spool.index().pop_due(u64::MAX, 10), vec![keep]);
}

#[tokio::test]
async fn enqueue_after_flush_and_reopen_reads_from_files() {
    // Bodies of 5 kB and 20 kB go to blob files once flushed; reading them back must work in both the
    // read-write and the read-only handle.
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ids(30);
    let spool = open_with(dir.path(), None);
    for &id in &all {
        spool.enqueue(message(id)).await.expect("enqueue");
    }
    spool.flush().expect("flush");
    for &id in &all {
        assert_eq!(spool.read_body(id).expect("read"), Some(message(id).body));
    }
    drop(spool);
    let reader = penguin_queue::SpoolReader::open(dir.path()).expect("reader");
    for &id in &all {
        assert_eq!(reader.read_body(id).expect("read"), Some(message(id).body));
    }
    let spool: Spool = open_with(dir.path(), None);
    assert_eq!(
        spool.recovery().messages,
        all.iter()
            .filter(|&&id| message(id).envelope.has_queued())
            .count() as u64
    );
}
