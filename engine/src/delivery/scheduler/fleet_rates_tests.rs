//! Closed-loop changes shared between two nodes' schedulers: a reduction made on A is taken by B
//! (same rate, same cooldown, no local-looking event, no echo), recovery converges, a lane B has not
//! seen yet adopts the change when it is created.

use super::*;

const RATE_60_PER_MIN: &str = "[shaping]\nmax_message_rate = \"60/min\"\n";

/// A throttling reply.
const THROTTLED: Feedback<'static> = Feedback {
    code: 421,
    enhanced: Some("4.7.28"),
    text: "Rate limited",
    class: BounceClass::RateLimited,
};

/// A node's scheduler sharing its closed loop as `node`, with its events.
fn node(node: &str) -> (Scheduler, Arc<Collected>) {
    let (mut s, events) = scheduler(RATE_60_PER_MIN);
    s.enable_fleet_rates(node, Arc::new(Notify::new()));
    (s, events)
}

/// Queues a message to example.com and takes it on a connection; its lane.
fn lane_of_a_send(s: &mut Scheduler, n: u32, now: u64) -> LaneId {
    add(s, n, "acme", "c", "example.com", "mx.example.com", now);
    let opens = s.poll(now);
    send(s, opens[0].conn, now).lane
}

/// The effective rate of the queue of mx.example.com in the view.
fn effective(s: &Scheduler, now: u64) -> Option<f64> {
    s.view(now)
        .queues
        .iter()
        .find(|q| q.site == "mx.example.com")
        .and_then(|q| q.effective_rate)
}

#[test]
fn a_reduction_made_on_one_node_is_taken_by_the_other_without_a_local_event_or_an_echo() {
    let (mut a, a_events) = node("node-a");
    let (mut b, b_events) = node("node-b");
    let lane_a = lane_of_a_send(&mut a, 1, T0);
    let lane_b = lane_of_a_send(&mut b, 2, T0);

    a.feedback(lane_a, None, &THROTTLED, T0 + S);
    let changes = a.take_rate_changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    let change = &changes[0];
    assert_eq!(
        (change.node.as_str(), change.reason.as_str(), change.rate),
        ("node-a", "rate_limited", Some(0.5))
    );
    assert_eq!(change.at_ms, (T0 + S) / 1000);
    assert!(a.take_rate_changes().is_empty(), "taken once");

    assert_eq!(
        b.apply_remote_rate(change, T0 + S + 1_000),
        RemoteOutcome::Applied
    );
    assert_eq!(effective(&b, T0 + 2 * S), Some(0.5));
    let adjusted = b_events.of(EventKind::ShapingAdjusted);
    assert_eq!(adjusted.len(), 1, "{adjusted:?}");
    assert_eq!(
        adjusted[0].reason.as_deref(),
        Some("from node-a: rate_limited"),
        "said to come from A, not a reply B got"
    );
    assert_eq!(
        (adjusted[0].rate_before, adjusted[0].rate_after),
        (Some(1.0), Some(0.5))
    );
    assert!(
        b.take_rate_changes().is_empty(),
        "an applied change is not sent back"
    );
    assert_eq!(b.apply_remote_rate(change, T0 + 2 * S), RemoteOutcome::Stale);
    assert_eq!(
        a.apply_remote_rate(change, T0 + 2 * S),
        RemoteOutcome::Stale,
        "A's own"
    );
    assert_eq!(a_events.of(EventKind::ShapingAdjusted).len(), 1);

    // B is in A's cooldown: a throttling reply there changes no rate, only restarts the recovery
    // period, which A takes silently.
    b.feedback(lane_b, None, &THROTTLED, T0 + 10 * S);
    assert_eq!(effective(&b, T0 + 10 * S), Some(0.5), "no second halving");
    let restarted = b.take_rate_changes();
    assert_eq!(restarted.len(), 1);
    assert_eq!(
        a.apply_remote_rate(&restarted[0], T0 + 10 * S),
        RemoteOutcome::Applied
    );
    assert_eq!(
        a_events.of(EventKind::ShapingAdjusted).len(),
        1,
        "same rate: no event"
    );

    // Recovery: both take the step at the same time, each once; their changes cross without events.
    let step = T0 + 10 * S + 300 * S;
    a.poll(step);
    b.poll(step);
    assert_eq!(effective(&a, step), effective(&b, step));
    assert!((effective(&a, step).unwrap_or(0.0) - 0.6).abs() < 1e-9);
    let (from_a, from_b) = (a.take_rate_changes(), b.take_rate_changes());
    assert_eq!((from_a.len(), from_b.len()), (1, 1));
    b.apply_remote_rate(&from_a[0], step);
    a.apply_remote_rate(&from_b[0], step);
    assert_eq!(a_events.of(EventKind::ShapingAdjusted).len(), 2);
    assert_eq!(b_events.of(EventKind::ShapingAdjusted).len(), 2);
    assert_eq!(effective(&a, step), effective(&b, step));
}

#[test]
fn a_change_for_a_lane_not_seen_yet_is_kept_until_it_exists() {
    let (mut a, _) = node("node-a");
    let (mut b, b_events) = node("node-b");
    let lane_a = lane_of_a_send(&mut a, 1, T0);
    a.feedback(lane_a, None, &THROTTLED, T0);
    let change = a.take_rate_changes().remove(0);
    assert_eq!(b.apply_remote_rate(&change, T0), RemoteOutcome::Kept);
    assert!(b.view(T0).queues.is_empty());

    add(&mut b, 2, "acme", "c", "example.com", "mx.example.com", T0 + S);
    assert_eq!(effective(&b, T0 + S), Some(0.5), "adopted when the lane was made");
    let adjusted = b_events.of(EventKind::ShapingAdjusted);
    assert_eq!(adjusted[0].reason.as_deref(), Some("from node-a: rate_limited"));

    let unknown = LaneRateChange {
        source: "not-ours".into(),
        ..change
    };
    assert_eq!(b.apply_remote_rate(&unknown, T0), RemoteOutcome::Unknown);
}

#[test]
fn without_a_cluster_nothing_is_shared() {
    let (mut alone, events) = scheduler(RATE_60_PER_MIN);
    let lane = lane_of_a_send(&mut alone, 1, T0);
    alone.feedback(lane, None, &THROTTLED, T0);
    assert!(alone.take_rate_changes().is_empty());
    assert_eq!(events.of(EventKind::ShapingAdjusted).len(), 1);
    let (mut a, _) = node("node-a");
    let lane_a = lane_of_a_send(&mut a, 1, T0);
    a.feedback(lane_a, None, &THROTTLED, T0);
    let change = a.take_rate_changes().remove(0);
    assert_eq!(alone.apply_remote_rate(&change, T0), RemoteOutcome::Unknown);
}
