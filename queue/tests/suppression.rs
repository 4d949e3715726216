//! Suppression lists, secrets and the atomic multi-message enqueue.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{CountingObserver, ids, message, open_with};
use penguin_queue::{SpoolOptions, SpoolReader, SuppressionChange, SuppressionEntry, SuppressionReason};

fn entry(address: &str, reason: SuppressionReason, campaign: Option<&str>) -> SuppressionEntry {
    SuppressionEntry {
        address: address.to_string(),
        reason,
        added_at_ms: 1_795_638_425_042,
        campaign: campaign.map(str::to_string),
    }
}

#[test]
fn entries_survive_reopen_and_lookups_ignore_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    let added = entry(
        "Jane.Doe@Example.COM",
        SuppressionReason::Unsubscribe,
        Some("spring"),
    );
    assert!(spool.suppress("acme", added.clone()).expect("suppress"));
    // A second insert (other case, other reason) keeps the first entry.
    let again = entry("jane.doe@example.com", SuppressionReason::Manual, None);
    assert!(!spool.suppress("acme", again).expect("suppress again"));
    spool.close().expect("close");

    let spool = open_with(dir.path(), None);
    let stored = spool
        .suppression("acme", "JANE.DOE@example.com")
        .expect("lookup")
        .expect("present after reopen");
    assert_eq!(
        stored,
        SuppressionEntry {
            address: "jane.doe@example.com".to_string(),
            ..added
        }
    );
    assert_eq!(
        spool.suppression("acme", "jane@example.com").expect("lookup"),
        None
    );
    assert!(
        spool
            .unsuppress("acme", "Jane.Doe@EXAMPLE.com")
            .expect("unsuppress")
    );
    assert!(!spool.unsuppress("acme", "jane.doe@example.com").expect("absent"));
    spool.close().expect("close");

    let spool = open_with(dir.path(), None);
    assert_eq!(
        spool.suppression("acme", "jane.doe@example.com").expect("lookup"),
        None
    );
}

#[test]
fn tenants_are_separate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    let complaint = entry("a@x.example", SuppressionReason::Complaint, None);
    assert!(spool.suppress("acme", complaint.clone()).expect("suppress"));
    assert_eq!(spool.suppression("globex", "a@x.example").expect("lookup"), None);
    // A tenant whose name is a prefix of another's sees none of its entries.
    assert!(spool.suppressions("acm", None, 10).expect("list").is_empty());
    assert!(spool.suppressions("acme2", None, 10).expect("list").is_empty());
    let hard = entry("a@x.example", SuppressionReason::HardBounce, None);
    assert!(spool.suppress("globex", hard.clone()).expect("suppress"));
    assert_eq!(
        spool.suppression("acme", "a@x.example").expect("lookup"),
        Some(complaint)
    );
    assert_eq!(
        spool.suppression("globex", "a@x.example").expect("lookup"),
        Some(hard)
    );
    assert!(spool.unsuppress("acme", "a@x.example").expect("unsuppress"));
    assert!(
        spool
            .suppression("globex", "a@x.example")
            .expect("lookup")
            .is_some()
    );
}

#[test]
fn list_pages_in_address_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    let mut expected: Vec<String> = (0..25).map(|n| format!("user{n:02}@example.com")).collect();
    // Inserted out of order and in mixed case.
    for address in expected.iter().rev() {
        let shouted = entry(&address.to_uppercase(), SuppressionReason::Manual, None);
        assert!(spool.suppress("acme", shouted).expect("suppress"));
    }
    assert!(
        spool
            .suppress(
                "zeta",
                entry("other@example.com", SuppressionReason::Manual, None)
            )
            .expect("suppress")
    );
    expected.sort();

    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = spool.suppressions("acme", after.as_deref(), 10).expect("page");
        assert!(page.len() <= 10);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|e| e.address.clone());
        listed.extend(page.into_iter().map(|e| e.address));
    }
    assert_eq!(listed, expected);

    // `after` is exclusive and case-insensitive; it need not be an existing entry.
    let page = spool
        .suppressions("acme", Some("USER04@example.com"), 2)
        .expect("page");
    let addresses: Vec<_> = page.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(addresses, ["user05@example.com", "user06@example.com"]);
    let page = spool
        .suppressions("acme", Some("user04@example.com0"), 1)
        .expect("page");
    assert_eq!(page[0].address, "user05@example.com");
    assert!(spool.suppressions("acme", None, 0).expect("page").is_empty());
}

#[test]
fn secret_is_stable_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    let first = spool.secret("unsubscribe").expect("secret");
    assert_eq!(spool.secret("unsubscribe").expect("secret"), first);
    let other = spool.secret("other").expect("secret");
    assert_ne!(first, other);
    assert_ne!(first, [0u8; 32]);
    spool.close().expect("close");

    let spool = open_with(dir.path(), None);
    assert_eq!(spool.secret("unsubscribe").expect("secret"), first);
    assert_eq!(spool.secret("other").expect("secret"), other);
}

#[test]
fn the_journal_holds_the_latest_change_per_address_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    assert!(
        spool
            .suppress("acme", entry("off@x.example", SuppressionReason::Manual, None))
            .expect("suppress")
    );
    assert!(
        spool.pending_suppression_changes(10).expect("journal").is_empty(),
        "off by default"
    );
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    assert!(spool.journal_suppressions(Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })));
    assert!(
        spool
            .suppress(
                "acme",
                entry("Jane@X.example", SuppressionReason::Unsubscribe, Some("c"))
            )
            .expect("suppress")
    );
    assert!(
        spool
            .unsuppress_at("acme", "off@x.example", 7)
            .expect("unsuppress")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let pending = spool.pending_suppression_changes(10).expect("journal");
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert_eq!(
        (pending[0].address.as_str(), pending[0].entry.is_some()),
        ("jane@x.example", true)
    );
    assert_eq!(
        (
            pending[1].address.as_str(),
            pending[1].at_ms,
            pending[1].entry.is_none()
        ),
        ("off@x.example", 7, true)
    );
    // A newer change of the address replaces the pending one: settling the older one keeps it.
    assert!(
        spool
            .unsuppress_at("acme", "jane@x.example", 9)
            .expect("unsuppress")
    );
    assert!(!spool.settle_suppression_change(&pending[0]).expect("settle"));
    assert!(spool.settle_suppression_change(&pending[1]).expect("settle"));
    spool.close().expect("close");

    let spool = open_with(dir.path(), None);
    let pending = spool.pending_suppression_changes(10).expect("journal");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!((pending[0].at_ms, pending[0].entry.is_none()), (9, true));
}

#[test]
fn remote_changes_apply_unless_a_later_local_one_is_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    spool.journal_suppressions(Box::new(|| {}));
    let remote = |address: &str, at_ms: u64, added: bool| SuppressionChange {
        tenant: "acme".into(),
        address: address.into(),
        at_ms,
        entry: added.then(|| SuppressionEntry {
            added_at_ms: at_ms,
            ..entry(address, SuppressionReason::Manual, None)
        }),
    };
    // Nothing pending: applied (not journaled), and applying it again changes nothing.
    assert!(
        spool
            .apply_suppression_change(&remote("a@x.example", 5, true), |_| unreachable!())
            .expect("apply")
    );
    assert!(
        !spool
            .apply_suppression_change(&remote("a@x.example", 5, true), |_| unreachable!())
            .expect("apply")
    );
    assert!(
        spool
            .suppression("acme", "a@x.example")
            .expect("lookup")
            .is_some()
    );
    assert!(spool.pending_suppression_changes(10).expect("journal").is_empty());
    // A pending local deletion that wins keeps the local state; one that loses is replaced.
    assert!(
        spool
            .unsuppress_at("acme", "a@x.example", 10)
            .expect("unsuppress")
    );
    assert!(
        !spool
            .apply_suppression_change(&remote("a@x.example", 8, true), |pending| pending.at_ms >= 8)
            .expect("apply")
    );
    assert_eq!(spool.suppression("acme", "a@x.example").expect("lookup"), None);
    assert!(
        spool
            .apply_suppression_change(&remote("a@x.example", 12, true), |pending| pending.at_ms >= 12)
            .expect("apply")
    );
    assert!(
        spool
            .suppression("acme", "a@x.example")
            .expect("lookup")
            .is_some()
    );
    assert!(
        spool.pending_suppression_changes(10).expect("journal").is_empty(),
        "the losing change is dropped"
    );
    // A remote deletion removes the entry; every tenant's entries are listed in key order.
    assert!(
        spool
            .suppress("globex", entry("b@x.example", SuppressionReason::Manual, None))
            .expect("suppress")
    );
    assert!(
        spool
            .apply_suppression_change(&remote("a@x.example", 20, false), |_| false)
            .expect("apply")
    );
    let all = spool.all_suppressions(None, 10).expect("all");
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].0.as_str(), all[0].1.address.as_str()),
        ("globex", "b@x.example")
    );
    assert!(
        spool
            .all_suppressions(Some(("globex", "b@x.example")), 10)
            .expect("all")
            .is_empty()
    );
}

#[test]
fn set_secrets_replace_and_stored_secret_never_creates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    assert_eq!(spool.stored_secret("fleet").expect("read"), None);
    spool.set_secret("fleet", [3; 32]).expect("set");
    spool.set_secret("fleet", [4; 32]).expect("set");
    assert_eq!(spool.stored_secret("fleet").expect("read"), Some([4; 32]));
    assert_eq!(spool.secret("fleet").expect("secret"), [4; 32]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_all_is_one_batch_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let observer = Arc::new(CountingObserver::default());
    let mut options = SpoolOptions::new(dir.path());
    options.max_batch_messages = 4;
    options.max_batch_bytes = 1024;
    options.observer = Some(Arc::clone(&observer) as _);
    let spool = penguin_queue::Spool::open(options).expect("open");

    let messages: Vec<_> = ids(10).into_iter().map(message).collect();
    let queued: Vec<_> = messages
        .iter()
        .filter(|m| m.envelope.has_queued())
        .map(|m| m.id)
        .collect();
    spool.enqueue_all(messages.clone()).await.expect("enqueue_all");
    // Ten messages over a bound of four (and many times the byte bound): still one batch.
    assert_eq!(observer.commits.load(Ordering::SeqCst), 1);
    assert_eq!(observer.largest.load(Ordering::SeqCst), 10);
    let stats = spool.stats();
    assert_eq!((stats.commits, stats.requests), (1, 10));
    // Indexed before the call resolved.
    assert_eq!(spool.queued_messages(), queued.len());
    spool.enqueue_all(Vec::new()).await.expect("nothing to do");
    assert_eq!(spool.stats().commits, 1);
    spool.close().expect("close");

    let spool = open_with(dir.path(), None);
    assert_eq!(spool.queued_messages(), queued.len());
    for id in &queued {
        assert!(spool.index().contains(*id), "{id} indexed after reopen");
    }
    for message in &messages {
        assert_eq!(
            spool.read_envelope(message.id).expect("read").as_ref(),
            Some(&message.envelope)
        );
        assert_eq!(
            spool.read_body(message.id).expect("read").as_ref(),
            Some(&message.body)
        );
    }
    spool.close().expect("close");
    // The read-only reader sees them too (and opens a spool with the new column families).
    let reader = SpoolReader::open(dir.path()).expect("reader");
    assert_eq!(reader.messages().count(), messages.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_all_is_not_merged_past_the_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let observer = Arc::new(CountingObserver::default());
    let mut options = SpoolOptions::new(dir.path());
    options.max_batch_messages = 4;
    options.observer = Some(Arc::clone(&observer) as _);
    let spool = Arc::new(penguin_queue::Spool::open(options).expect("open"));
    let all = ids(40);
    // Singles and groups of three race for the writer; every batch respects the bound of four
    // except a group alone, and every message is stored.
    let tasks: Vec<_> = all
        .chunks(3)
        .enumerate()
        .map(|(n, chunk)| {
            let spool = Arc::clone(&spool);
            let batch: Vec<_> = chunk.iter().copied().map(message).collect();
            tokio::spawn(async move {
                if n % 2 == 0 {
                    spool.enqueue_all(batch).await
                } else {
                    for m in batch {
                        spool.enqueue(m).await?;
                    }
                    Ok(())
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join").expect("enqueue");
    }
    assert!(observer.largest.load(Ordering::SeqCst) <= 4);
    assert_eq!(observer.messages.load(Ordering::SeqCst), 40);
    for id in all {
        assert!(spool.read_envelope(id).expect("read").is_some(), "{id} stored");
    }
}

#[test]
fn a_spool_without_the_new_column_families_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // The layout of earlier versions: only envelopes and bodies.
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        rocksdb::DB::open_cf(&options, dir.path(), ["envelopes", "bodies"]).expect("old layout");
    }
    let reader = SpoolReader::open(dir.path()).expect("read-only open of the old layout");
    assert_eq!(reader.messages().count(), 0);
    drop(reader);
    let spool = open_with(dir.path(), None);
    let added = entry("a@x.example", SuppressionReason::Manual, None);
    assert!(spool.suppress("acme", added.clone()).expect("suppress"));
    spool.secret("unsubscribe").expect("secret");
    spool.close().expect("close");
    let spool = open_with(dir.path(), None);
    assert_eq!(
        spool.suppression("acme", "a@x.example").expect("lookup"),
        Some(added)
    );
}
