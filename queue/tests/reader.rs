//! The read-only view used by the CLI.

mod common;

use std::collections::BTreeMap;

use common::{ids, message, open_with};
use penguin_queue::{MessageId, QueueSummary, SpoolError, SpoolReader};

#[tokio::test]
async fn reader_sees_messages_while_spool_is_open_and_after_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ids(40);
    let spool = open_with(dir.path(), None);
    for &id in &all[..20] {
        spool.enqueue(message(id)).await.expect("enqueue");
    }

    // While the spool is open (and its writes are only in the WAL and memtables).
    let reader = SpoolReader::open(dir.path()).expect("read-only open while the spool is open");
    let listed: Vec<(MessageId, penguin_queue::Envelope)> =
        reader.messages().collect::<Result<_, _>>().expect("messages");
    let expected: Vec<_> = all[..20].iter().map(|&id| (id, message(id).envelope)).collect();
    assert_eq!(listed, expected, "all messages, in id order");
    assert_eq!(
        reader.read_body(all[3]).expect("read"),
        Some(message(all[3]).body)
    );
    assert_eq!(
        reader.read_envelope(all[4]).expect("read"),
        Some(message(all[4]).envelope)
    );
    assert_eq!(reader.read_body(all[30]).expect("read"), None);
    drop(reader);

    for &id in &all[20..] {
        spool.enqueue(message(id)).await.expect("enqueue");
    }
    spool.close().expect("close");

    // After close, a new reader sees everything.
    let reader = SpoolReader::open(dir.path()).expect("read-only open after close");
    let ids_listed: Vec<MessageId> = reader.messages().map(|m| m.expect("message").0).collect();
    assert_eq!(ids_listed, all);
    let body_ids: Vec<MessageId> = reader.body_ids().collect::<Result<_, _>>().expect("bodies");
    assert_eq!(body_ids, all);

    let mut expected_summary = QueueSummary::default();
    for &id in &all {
        expected_summary.add(&message(id).envelope);
    }
    let summary = reader.summary().expect("summary");
    assert_eq!(summary, expected_summary);
    assert_eq!(
        summary.messages, 36,
        "4 of 40 test messages have no queued recipient"
    );
    assert_eq!(summary.by_tenant.values().sum::<u64>(), summary.recipients);
    let by_domain: BTreeMap<String, u64> = summary.by_domain.clone();
    assert_eq!(by_domain.values().sum::<u64>(), summary.recipients);
}

#[test]
fn reader_says_when_there_is_no_spool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing-here");
    match SpoolReader::open(&missing) {
        Err(SpoolError::Storage(message)) => assert!(message.contains("no spool at"), "{message}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened a spool that does not exist"),
    }
    assert!(!missing.exists(), "the reader must not create anything");
}

#[tokio::test]
async fn a_corrupt_envelope_is_reported_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ids(3);
    let spool = open_with(dir.path(), None);
    for &id in &all {
        spool.enqueue(message(id)).await.expect("enqueue");
    }
    spool.close().expect("close");
    {
        // Damage one envelope behind the spool's back.
        let cfs = [
            "envelopes",
            "bodies",
            "suppressions",
            "meta",
            "control",
            "counters",
            "history",
            "outbox",
        ];
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), cfs).expect("raw open");
        let envelopes = db.cf_handle("envelopes").expect("cf");
        db.put_cf(envelopes, all[1].as_bytes(), [1u8, 0xff]).expect("put");
    }
    let spool = open_with(dir.path(), None);
    assert_eq!(spool.recovery().corrupt, 1);
    assert_eq!(spool.recovery().messages, 2);
    assert!(matches!(
        spool.read_envelope(all[1]),
        Err(SpoolError::Corrupt { .. })
    ));
    drop(spool);
    let reader = SpoolReader::open(dir.path()).expect("reader");
    let items: Vec<_> = reader.messages().collect();
    assert_eq!(items.len(), 3);
    assert!(matches!(&items[1], Err(SpoolError::Corrupt { key, .. }) if *key == all[1].to_string()));
    assert!(matches!(reader.summary(), Err(SpoolError::Corrupt { .. })));
}
