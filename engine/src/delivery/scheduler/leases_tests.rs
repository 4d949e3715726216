//! Shared connection caps in the scheduler: the leases a connection needs, a refused lease (no attempt,
//! the lane waits for its timer), and this node's share of a cap while the store is away.

use super::*;

/// A scheduler sharing its limits with a second node, the store as given, and `items` messages to
/// example.com queued at T0.
fn shared(toml: &str, store_up: bool, items: u32) -> Scheduler {
    let (mut s, _) = scheduler(toml);
    s.enable_shared_limits(2, Arc::new(Notify::new()));
    s.set_shared_store(store_up, 2);
    for n in 0..items {
        add(&mut s, n, "acme", "c", "example.com", "mx.example.com", T0);
    }
    s
}

#[test]
fn connections_name_their_leases_only_with_a_cluster() {
    let (mut alone, _) = scheduler("[shaping]\nmax_connections = 2\n");
    add(&mut alone, 1, "acme", "c", "example.com", "mx.example.com", T0);
    assert!(alone.poll(T0)[0].leases.is_empty(), "no [cluster]: no lease");

    let toml = "[[provider]]\nname = \"bigmail\"\nmx_suffixes = [\".bigmail.test\"]\n\
                [shaping]\nmax_connections = 2\n\
                [[shaping.provider]]\nprovider = \"bigmail\"\nprovider_max_connections = 3\n";
    let mut s = shared(toml, true, 0);
    add(&mut s, 1, "acme", "c", "big.test", "mx1.bigmail.test", T0);
    let open = s.poll(T0).remove(0);
    let names: Vec<(&str, usize)> = open.leases.iter().map(|k| (k.name.as_str(), k.cap)).collect();
    let source = open.names.0.to_string();
    assert_eq!(
        names,
        [
            (format!("lane/{source}/mx1.bigmail.test").as_str(), 2),
            (format!("provider/{source}/bigmail").as_str(), 3),
        ]
    );
}

#[test]
fn a_refused_lease_closes_the_connection_without_an_attempt_and_the_lane_waits_for_its_timer() {
    let mut s = shared("[shaping]\nmax_connections = 1\n", true, 2);
    let conn = s.poll(T0)[0].conn;
    assert_eq!(s.connection_count(), 1);
    // The earliest lease of the fleet expires in 3 s: the lane asks again within LEASE_RETRY_US.
    s.lease_refused(conn, T0 + 3 * S, T0);
    assert_eq!(s.connection_count(), 0, "the counted connection is closed");
    assert_eq!(s.next_timer_us(), Some(T0 + leases::LEASE_RETRY_US));
    assert!(s.poll(T0 + 1_000).is_empty(), "no connection before the timer");
    assert!(s.take_expired().is_empty());
    let again = s.poll(T0 + leases::LEASE_RETRY_US);
    assert_eq!(again.len(), 1, "the timer opens a connection again");
    let first = send(&mut s, again[0].conn, T0 + leases::LEASE_RETRY_US);
    assert_eq!(
        first.item.id,
        MessageId::from_parts(1, 0),
        "the first item was never taken: waiting for a lease is not an attempt"
    );

    // A slot expected sooner is asked for then.
    s.lease_refused(again[0].conn, T0 + S, T0 + 950_000);
    assert_eq!(s.next_timer_us(), Some(T0 + S));
}

#[test]
fn without_the_store_each_cap_is_this_nodes_share() {
    let toml = "[shaping]\nmax_connections = 4\n";
    let mut s = shared(toml, false, 10);
    assert_eq!(s.poll(T0).len(), 2, "4 connections ÷ 2 nodes");
    s.set_shared_store(false, 3);
    assert!(s.poll(T0).is_empty(), "4 ÷ 3 nodes: 1, already open");
    s.set_shared_store(true, 3);
    let more = s.poll(T0);
    assert_eq!(more.len(), 2, "the store answers: the whole cap, held by leases");
    assert!(more.iter().all(|open| !open.leases.is_empty()));

    let provider = "[[provider]]\nname = \"bigmail\"\nmx_suffixes = [\".bigmail.test\"]\n\
                    [shaping]\nmax_connections = 10\n\
                    [[shaping.provider]]\nprovider = \"bigmail\"\nprovider_max_connections = 3\n";
    let mut s = shared(provider, false, 0);
    for n in 0..6 {
        add(&mut s, n, "acme", "c", "big.test", "mx1.bigmail.test", T0);
    }
    assert_eq!(s.poll(T0).len(), 1, "3 connections to the provider ÷ 2 nodes: 1");
    let mut one = shared("[shaping]\nmax_connections = 1\n", false, 3);
    assert_eq!(one.poll(T0).len(), 1, "a share is at least one connection");
}
