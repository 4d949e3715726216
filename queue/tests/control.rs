//! Control records (the engine's run-time state) and progress saves of a delivery round.

mod common;

use common::{ids, message, open_with};
use penguin_queue::RecipientState;

#[test]
fn control_records_survive_reopen_and_are_listed_by_prefix_in_key_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    spool
        .put_control("suspension/b", b"{\"id\":\"b\"}")
        .expect("put b");
    spool
        .put_control("suspension/a", b"{\"id\":\"a\"}")
        .expect("put a");
    spool.put_control("tenant/x", b"other kind").expect("put tenant");
    spool
        .put_control("suspension/a", b"{\"id\":\"a\",\"v\":2}")
        .expect("replace a");
    spool.close().expect("close");

    let spool = open_with(dir.path(), None);
    let listed = spool.control_records("suspension/").expect("list");
    assert_eq!(
        listed,
        vec![
            ("suspension/a".to_string(), b"{\"id\":\"a\",\"v\":2}".to_vec()),
            ("suspension/b".to_string(), b"{\"id\":\"b\"}".to_vec()),
        ]
    );
    assert!(spool.delete_control("suspension/a").expect("delete"));
    assert!(!spool.delete_control("suspension/a").expect("delete again"));
    spool.close().expect("close");

    let spool = open_with(dir.path(), None);
    let keys: Vec<String> = spool
        .control_records("")
        .expect("all")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(keys, ["suspension/b", "tenant/x"]);
}

#[tokio::test]
async fn a_progress_save_stores_states_without_rescheduling_or_deleting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open_with(dir.path(), None);
    let id = ids(3)[1];
    let stored = message(id);
    spool.enqueue(stored.clone()).await.expect("enqueue");
    let popped = spool.index().pop_due(u64::MAX, 10);
    assert_eq!(popped, vec![id], "taken out of the index for delivery");

    let mut envelope = stored.envelope.clone();
    envelope.recipients[0].state = RecipientState::Delivered;
    envelope.recipients[0].attempts = 1;
    assert!(spool.save_progress(id, &envelope).await.expect("save"));
    assert!(
        !spool.index().contains(id),
        "a progress save leaves the index alone"
    );
    assert_eq!(spool.read_envelope(id).expect("read"), Some(envelope.clone()));

    // Even with nothing queued any more, a progress save never deletes: the round's end decides.
    for recipient in &mut envelope.recipients {
        recipient.state = RecipientState::Delivered;
    }
    assert!(spool.save_progress(id, &envelope).await.expect("save"));
    assert!(spool.read_body(id).expect("read body").is_some());

    envelope.recipients[0].state = RecipientState::Queued;
    envelope.next_attempt_at_ms = 42;
    assert!(spool.update_envelope(id, &envelope).await.expect("end of round"));
    assert_eq!(spool.index().due_ms(id), Some(42), "the round's end reschedules");
    spool.close().expect("close");
}
