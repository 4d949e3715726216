//! The handle's bookkeeping without Redis: health transitions and their events, and how long another
//! node is counted after its record was last read (on a manual clock). Rounds against a real Redis:
//! `tests/tests/cluster.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::clock::ManualClock;
use crate::events::EventSink;

/// Records the events it is given.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl EventSink for Recorder {
    fn emit(&self, event: &Event) {
        self.0.lock().expect("lock").push(event.clone());
    }
}

impl Recorder {
    fn kinds(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.kind.as_str())
            .collect()
    }
}

fn cluster(clock: Arc<ManualClock>) -> (Cluster, Arc<Recorder>, Arc<Metrics>) {
    let recorder = Arc::new(Recorder::default());
    let metrics = Arc::new(Metrics::new());
    let mut config = ClusterConfig::new("redis://:pw@127.0.0.1:1/0");
    config.node = "node-a".into();
    config.node_timeout = Duration::from_secs(60).into();
    let parts = ClusterParts {
        events: EventBus::new(vec![Arc::clone(&recorder) as Arc<dyn EventSink>]),
        metrics: Arc::clone(&metrics),
        clock,
        queue_size: Arc::new(|| 7),
    };
    (Cluster::new(&config, parts).expect("cluster"), recorder, metrics)
}

fn record(id: &str, at: u64) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        version: "0.0.9".into(),
        last_heartbeat_ms: at,
        queue_size: 3,
    }
}

#[test]
fn transitions() {
    use EventKind::{ClusterDegraded, ClusterRecovered};
    let cases = [
        (Health::Unknown, true, Health::Up, None),
        (Health::Unknown, false, Health::Down, Some(ClusterDegraded)),
        (Health::Up, true, Health::Up, None),
        (Health::Up, false, Health::Down, Some(ClusterDegraded)),
        (Health::Down, false, Health::Down, None),
        (Health::Down, true, Health::Up, Some(ClusterRecovered)),
    ];
    for (before, succeeded, after, event) in cases {
        assert_eq!(
            transition(before, succeeded),
            (after, event),
            "{before:?} {succeeded}"
        );
    }
}

#[test]
fn one_event_per_outage_and_the_gauge_follows() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000_000));
    let (cluster, recorder, metrics) = cluster(clock);
    assert_eq!(cluster.redis_url(), "redis://127.0.0.1:1/0");
    assert!(metrics.render().contains("penguin_cluster_up 0"));
    assert!(!cluster.is_up());
    let refused = ClusterError::Timeout {
        what: "connect",
        after: Duration::from_millis(5),
    };
    cluster.failed(&refused);
    cluster.failed(&refused);
    assert!(!cluster.is_up());
    let own = cluster.own_record();
    cluster.succeeded(&own, vec![own.clone()]);
    assert!(cluster.is_up());
    assert!(metrics.render().contains("penguin_cluster_up 1"));
    cluster.succeeded(&own, vec![own.clone()]);
    assert_eq!(recorder.kinds(), ["cluster_degraded", "cluster_recovered"]);
    let first = &recorder.0.lock().expect("lock")[0];
    assert_eq!(
        first.reason.as_deref(),
        Some("redis: no answer to connect within 5ms")
    );
}

#[test]
fn others_count_for_node_timeout_after_they_were_last_read() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000_000));
    let (cluster, _, _) = cluster(Arc::clone(&clock));
    assert_eq!(cluster.nodes_seen(), 1, "alone before any round");
    let me = cluster.nodes();
    assert!(me[0].is_self && me[0].last_heartbeat.is_none() && me[0].queue_size == 7);
    let own = cluster.own_record();
    let now = own.last_heartbeat_ms;
    cluster.succeeded(
        &own,
        vec![record("node-c", now), own.clone(), record("node-b", now - 10)],
    );
    let ids: Vec<(String, bool)> = cluster.nodes().into_iter().map(|n| (n.id, n.is_self)).collect();
    assert_eq!(
        ids,
        [
            ("node-a".into(), true),
            ("node-b".into(), false),
            ("node-c".into(), false)
        ]
    );
    assert_eq!(cluster.nodes()[0].last_heartbeat, Some(now));
    // Redis goes away: the others still count until node_timeout after they were last read.
    cluster.failed(&ClusterError::Timeout {
        what: "MGET",
        after: Duration::from_millis(5),
    });
    clock.advance(Duration::from_secs(59));
    assert_eq!(cluster.nodes_seen(), 3);
    clock.advance(Duration::from_secs(1));
    assert_eq!(cluster.nodes_seen(), 1);
    // A round that no longer finds a node drops it at once.
    cluster.succeeded(&own, vec![own.clone(), record("node-b", now)]);
    assert_eq!(cluster.nodes_seen(), 2);
    cluster.succeeded(&own, vec![own.clone()]);
    assert_eq!(cluster.nodes_seen(), 1);
}
