use super::*;

fn id(n: u32) -> MessageId {
    MessageId::from_parts(1_000_000, n)
}

/// An index holding id(1)@100, id(2)@50, id(3)@100, id(4)@200, id(5)@100 in queue ("t", "c").
fn sample() -> ScheduleIndex {
    let mut index = ScheduleIndex::new();
    for (n, due) in [(1, 100), (2, 50), (3, 100), (4, 200), (5, 100)] {
        index.insert(id(n), due, "t", "c");
    }
    index
}

#[test]
fn pop_due_table() {
    let cases: &[(u64, usize, &[u32], Option<u64>)] = &[
        // (now, max) → popped ids, then next due time.
        (0, 10, &[], Some(50)),
        (49, 10, &[], Some(50)),
        (50, 10, &[2], Some(100)),
        (99, 10, &[2], Some(100)),
        (100, 10, &[2, 1, 3, 5], Some(200)),
        (100, 2, &[2, 1], Some(100)),
        (100, 0, &[], Some(50)),
        (200, 10, &[2, 1, 3, 5, 4], None),
        (u64::MAX, 3, &[2, 1, 3], Some(100)),
    ];
    for &(now, max, expected, next) in cases {
        let mut index = sample();
        let popped = index.pop_due(now, max);
        let expected: Vec<MessageId> = expected.iter().map(|&n| id(n)).collect();
        assert_eq!(popped, expected, "now={now} max={max}");
        assert_eq!(index.next_due_ms(), next, "now={now} max={max}");
        assert_eq!(index.len(), 5 - expected.len());
        for popped_id in &popped {
            assert!(!index.contains(*popped_id));
        }
    }
}

#[test]
fn insert_of_a_known_id_moves_it() {
    let mut index = sample();
    index.insert(id(2), 300, "t", "c");
    assert_eq!(index.len(), 5);
    assert_eq!(index.due_ms(id(2)), Some(300));
    assert_eq!(index.next_due_ms(), Some(100));
    assert_eq!(index.pop_due(250, 10), vec![id(1), id(3), id(5), id(4)]);
    assert_eq!(index.pop_due(300, 10), vec![id(2)]);
    assert!(index.is_empty());
}

#[test]
fn remove_table() {
    let cases: &[(u32, bool, Option<u64>)] =
        &[(2, true, Some(100)), (4, true, Some(50)), (9, false, Some(50))];
    for &(n, removed, next) in cases {
        let mut index = sample();
        assert_eq!(index.remove(id(n)), removed, "id {n}");
        assert_eq!(index.next_due_ms(), next, "id {n}");
        assert_eq!(index.len(), if removed { 4 } else { 5 });
        assert!(!index.pop_due(u64::MAX, 10).contains(&id(n)));
    }
}

#[test]
fn empty_index() {
    let mut index = ScheduleIndex::new();
    assert_eq!(index.next_due_ms(), None);
    assert!(index.pop_due(u64::MAX, 10).is_empty());
    assert!(!index.remove(id(1)));
    assert_eq!(index.len(), 0);
}

#[test]
fn queues_are_interned_per_tenant_and_campaign() {
    let mut index = ScheduleIndex::new();
    let a = index.insert(id(1), 10, "acme", "spring");
    let b = index.insert(id(2), 10, "acme", "spring");
    let c = index.insert(id(3), 10, "acme", "fall");
    let d = index.insert(id(4), 10, "acmes", "pring");
    let e = index.insert(id(5), 10, "zeta", "spring");
    assert_eq!(a, b);
    let distinct: BTreeSet<QueueKey> = [a, c, d, e].into_iter().collect();
    assert_eq!(distinct.len(), 4);
    assert_eq!(index.queue_name(a), Some(("acme", "spring")));
    assert_eq!(index.queue_name(d), Some(("acmes", "pring")));
    assert_eq!(index.queue_name(QueueKey(99)), None);
    assert_eq!(index.queue_of(id(3)), Some(c));
    let entries = index.pop_due_entries(10, 1);
    assert_eq!(
        entries,
        vec![DueEntry {
            id: id(1),
            due_ms: 10,
            queue: a
        }]
    );
}

#[test]
fn bulk_insert_matches_single_inserts() {
    let entries: Vec<(MessageId, u64, QueueKey)> = (0..1000u32)
        .map(|n| (id(n), u64::from((n * 7919) % 100), QueueKey(n % 3)))
        .collect();
    let mut bulk = ScheduleIndex::new();
    bulk.bulk_insert(entries.clone());
    let mut single = ScheduleIndex::new();
    for &(id, due, queue) in &entries {
        single.insert_key(id, due, queue);
    }
    assert_eq!(bulk.len(), 1000);
    assert_eq!(
        bulk.pop_due_entries(u64::MAX, usize::MAX),
        single.pop_due_entries(u64::MAX, usize::MAX)
    );

    // Into a non-empty index, a bulk insert replaces entries of known ids.
    let mut index = sample();
    index.bulk_insert(vec![(id(2), 500, QueueKey(0)), (id(7), 60, QueueKey(0))]);
    assert_eq!(index.len(), 6);
    assert_eq!(index.pop_due(100, 10), vec![id(7), id(1), id(3), id(5)]);
}

#[test]
fn id_hasher_spreads_sequential_ids() {
    use std::hash::BuildHasher;
    let build = BuildHasherDefault::<IdHasher>::default();
    // Ids made in the same microsecond differ only in the sequence; their hashes must differ in the low
    // bits, which pick the bucket.
    let buckets: BTreeSet<u64> = (0..256u32).map(|n| build.hash_one(id(n)) & 0xff).collect();
    assert!(buckets.len() > 128, "only {} distinct low bytes", buckets.len());
}

#[test]
fn id_hasher_tells_apart_runs_with_the_same_sequence() {
    use std::hash::BuildHasher;
    let build = BuildHasherDefault::<IdHasher>::default();
    let a = build.hash_one(MessageId::from_parts(1_000, 42));
    let b = build.hash_one(MessageId::from_parts(2_000, 42));
    assert_eq!(a & 0xffff_ffff, 42, "the sequence is the bucket part");
    assert_ne!(a >> 57, b >> 57, "the tag part differs");
}
