//! MX routing against a real DNS server on loopback: ordering, shuffling, implicit and null MX,
//! NXDOMAIN / SERVFAIL / timeouts, unresolvable hosts, domain literals and TTL caching.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use penguin_mta::delivery::dns::{MxHost, Resolver, RouteError};
use penguin_tests::dns::{DnsFailure, TestDns};

/// A resolver asking only `dns`: 500 ms per query, one send.
fn resolver(dns: &TestDns) -> Resolver {
    Resolver::new(&[dns.address], Duration::from_millis(500), 1).expect("resolver")
}

/// An expected host.
fn host(name: &str, preference: u16, addresses: &[&str]) -> MxHost {
    MxHost {
        name: name.to_string(),
        preference,
        addresses: addresses.iter().map(|a| a.parse().expect("address")).collect(),
    }
}

/// The names of `hosts`, in order.
fn names(hosts: &[MxHost]) -> Vec<&str> {
    hosts.iter().map(|h| h.name.as_str()).collect()
}

/// An IPv4 address in TEST-NET-1 (192.0.2.0/24).
fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_hosts_come_in_preference_order_with_their_addresses() {
    let dns = TestDns::start().await;
    dns.add_mx("order.test", 30, "mx3.order.test", 300);
    dns.add_mx("order.test", 10, "mx1.order.test", 300);
    dns.add_mx("order.test", 20, "mx2.order.test", 300);
    dns.add_a("mx1.order.test", v4(1), 300);
    dns.add_a("mx2.order.test", v4(2), 300);
    dns.add_a("mx2.order.test", v4(22), 300);
    dns.add_a("mx3.order.test", v4(3), 300);

    let hosts = resolver(&dns).mail_hosts("order.test").await.expect("routed");

    assert_eq!(
        hosts,
        vec![
            host("mx1.order.test", 10, &["192.0.2.1"]),
            host("mx2.order.test", 20, &["192.0.2.2", "192.0.2.22"]),
            host("mx3.order.test", 30, &["192.0.2.3"]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_of_equal_preference_are_shuffled_between_lookups() {
    let dns = TestDns::start().await;
    dns.add_mx("spread.test", 10, "a.spread.test", 300);
    dns.add_mx("spread.test", 10, "b.spread.test", 300);
    dns.add_mx("spread.test", 20, "backup.spread.test", 300);
    for (name, last) in [
        ("a.spread.test", 1),
        ("b.spread.test", 2),
        ("backup.spread.test", 3),
    ] {
        dns.add_a(name, v4(last), 300);
    }
    let resolver = resolver(&dns);

    // The MX set is cached (TTL 300): the order is drawn anew for every lookup, not per DNS answer.
    let (mut a_first, mut b_first) = (0, 0);
    for _ in 0..100 {
        let hosts = resolver.mail_hosts("spread.test").await.expect("routed");
        match names(&hosts).as_slice() {
            ["a.spread.test", "b.spread.test", "backup.spread.test"] => a_first += 1,
            ["b.spread.test", "a.spread.test", "backup.spread.test"] => b_first += 1,
            other => panic!("unexpected order {other:?}"),
        }
        if a_first > 0 && b_first > 0 {
            break;
        }
    }
    assert!(
        a_first > 0 && b_first > 0,
        "both orders appear: a first {a_first}, b first {b_first}"
    );
    assert_eq!(
        dns.queries("spread.test", "MX"),
        1,
        "the MX set came from the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_without_mx_is_its_own_mail_host() {
    let dns = TestDns::start().await;
    dns.add_a("implicit.test", v4(7), 300);
    dns.add_aaaa("implicit.test", "2001:db8::7".parse().expect("v6"), 300);

    let hosts = resolver(&dns).mail_hosts("implicit.test").await.expect("routed");

    assert_eq!(
        hosts,
        vec![host("implicit.test", 0, &["192.0.2.7", "2001:db8::7"])]
    );
    assert_eq!(dns.queries("implicit.test", "MX"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_addresses_are_included_after_ipv4() {
    let dns = TestDns::start().await;
    dns.add_mx("six.test", 10, "dual.six.test", 300);
    dns.add_mx("six.test", 20, "only6.six.test", 300);
    dns.add_aaaa("dual.six.test", "2001:db8::1".parse().expect("v6"), 300);
    dns.add_a("dual.six.test", v4(1), 300);
    dns.add_aaaa("only6.six.test", Ipv6Addr::LOCALHOST, 300);

    let hosts = resolver(&dns).mail_hosts("six.test").await.expect("routed");

    assert_eq!(
        hosts,
        vec![
            host("dual.six.test", 10, &["192.0.2.1", "2001:db8::1"]),
            host("only6.six.test", 20, &["::1"]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_mx_means_the_domain_takes_no_mail() {
    let dns = TestDns::start().await;
    dns.add_mx("nomail.test", 0, ".", 300);
    dns.add_a("nomail.test", v4(9), 300);

    let result = resolver(&dns).mail_hosts("nomail.test").await;

    assert_eq!(result, Err(RouteError::NullMx("nomail.test".into())));
    assert_eq!(
        dns.queries("nomail.test", "A"),
        0,
        "no implicit MX for a null MX domain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_domain_is_nxdomain() {
    let dns = TestDns::start().await;

    let result = resolver(&dns).mail_hosts("missing.test").await;

    assert_eq!(result, Err(RouteError::NxDomain("missing.test".into())));
    assert_eq!(dns.queries("missing.test", "MX"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_and_refused_are_temporary() {
    let dns = TestDns::start().await;
    dns.set_failure("broken.test", DnsFailure::ServFail);
    dns.set_failure("closed.test", DnsFailure::Refused);
    let resolver = resolver(&dns);

    let servfail = resolver.mail_hosts("broken.test").await;
    let refused = resolver.mail_hosts("closed.test").await;

    assert_eq!(
        servfail,
        Err(RouteError::Temporary {
            domain: "broken.test".into(),
            reason: "name server answered SERVFAIL".into()
        })
    );
    assert_eq!(
        refused,
        Err(RouteError::Temporary {
            domain: "closed.test".into(),
            reason: "name server answered REFUSED".into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_query_is_temporary_within_bounded_time() {
    let dns = TestDns::start().await;
    dns.set_failure("silent.test", DnsFailure::Timeout);

    let started = Instant::now();
    let result = resolver(&dns).mail_hosts("silent.test").await;
    let elapsed = started.elapsed();

    assert_eq!(
        result,
        Err(RouteError::Temporary {
            domain: "silent.test".into(),
            reason: "timed out".into()
        })
    );
    assert!(elapsed < Duration::from_secs(5), "gave up after {elapsed:?}");
    assert!(
        dns.queries("silent.test", "MX") >= 1,
        "the query reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_hosts_without_an_address_are_left_out() {
    let dns = TestDns::start().await;
    dns.add_mx("partial.test", 10, "gone.partial.test", 300);
    dns.add_mx("partial.test", 20, "noaddr.partial.test", 300);
    dns.add_mx("partial.test", 30, "live.partial.test", 300);
    dns.add_txt("noaddr.partial.test", "v=spf1 -all", 300);
    dns.add_a("live.partial.test", v4(30), 300);

    let hosts = resolver(&dns).mail_hosts("partial.test").await.expect("routed");

    assert_eq!(hosts, vec![host("live.partial.test", 30, &["192.0.2.30"])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mx_host_with_an_address_is_no_addresses() {
    let dns = TestDns::start().await;
    dns.add_mx("dead.test", 10, "gone.dead.test", 300);
    dns.add_mx("dead.test", 20, "noaddr.dead.test", 300);
    dns.add_txt("noaddr.dead.test", "nothing here", 300);

    let result = resolver(&dns).mail_hosts("dead.test").await;

    assert_eq!(result, Err(RouteError::NoAddresses("dead.test".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_hosts_failing_temporarily_make_the_route_temporary() {
    let dns = TestDns::start().await;
    dns.add_mx("flaky.test", 10, "mx.flaky.test", 300);
    dns.set_failure("mx.flaky.test", DnsFailure::ServFail);

    let result = resolver(&dns).mail_hosts("flaky.test").await;

    assert_eq!(
        result,
        Err(RouteError::Temporary {
            domain: "flaky.test".into(),
            reason: "mx.flaky.test: name server answered SERVFAIL".into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_with_neither_mx_nor_address_is_no_addresses() {
    let dns = TestDns::start().await;
    dns.add_txt("textonly.test", "v=spf1 -all", 300);

    let result = resolver(&dns).mail_hosts("textonly.test").await;

    assert_eq!(result, Err(RouteError::NoAddresses("textonly.test".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_literals_are_routed_without_dns() {
    let dns = TestDns::start().await;
    let resolver = resolver(&dns);

    let v4 = resolver.mail_hosts("[127.0.0.1]").await.expect("IPv4 literal");
    let v6 = resolver.mail_hosts("[IPv6:::1]").await.expect("IPv6 literal");
    let bad = resolver.mail_hosts("[999.0.0.1]").await;

    assert_eq!(v4, vec![host("[127.0.0.1]", 0, &["127.0.0.1"])]);
    assert_eq!(v6, vec![host("[ipv6:::1]", 0, &["::1"])]);
    assert_eq!(bad, Err(RouteError::NxDomain("[999.0.0.1]".into())));
    assert_eq!(dns.total_queries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_and_exchanges_are_lowercased_without_the_trailing_dot() {
    let dns = TestDns::start().await;
    dns.add_mx("case.test", 10, "MX.Case.TEST", 300);
    dns.add_a("mx.case.test", v4(5), 300);

    let hosts = resolver(&dns).mail_hosts("  Case.TEST. ").await.expect("routed");

    assert_eq!(hosts, vec![host("mx.case.test", 10, &["192.0.2.5"])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mx_change_is_seen_once_its_ttl_has_passed() {
    let dns = TestDns::start().await;
    dns.add_mx("moving.test", 10, "old.moving.test", 1);
    dns.add_a("old.moving.test", v4(1), 300);
    dns.add_a("new.moving.test", v4(2), 300);
    let resolver = resolver(&dns);
    let before = resolver.mail_hosts("moving.test").await.expect("routed");

    dns.clear("moving.test");
    dns.add_mx("moving.test", 10, "new.moving.test", 1);
    let cached = resolver
        .mail_hosts("moving.test")
        .await
        .expect("routed from cache");
    let queries_while_cached = dns.queries("moving.test", "MX");
    // Sleeping is the point here: the TTL (1 s) must pass before the resolver asks again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = resolver.mail_hosts("moving.test").await.expect("routed");

    assert_eq!(names(&before), ["old.moving.test"]);
    assert_eq!(
        names(&cached),
        ["old.moving.test"],
        "within the TTL the cached MX is used"
    );
    assert_eq!(queries_while_cached, 1);
    assert_eq!(
        names(&after),
        ["new.moving.test"],
        "after the TTL the new MX is used"
    );
    assert_eq!(dns.queries("moving.test", "MX"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mx_with_a_long_ttl_is_not_asked_again() {
    let dns = TestDns::start().await;
    dns.add_mx("stable.test", 10, "mx.stable.test", 3600);
    dns.add_a("mx.stable.test", v4(1), 3600);
    let resolver = resolver(&dns);
    let first = resolver.mail_hosts("stable.test").await.expect("routed");

    dns.clear("stable.test");
    dns.add_mx("stable.test", 10, "other.stable.test", 3600);
    let mut later = Vec::new();
    for _ in 0..3 {
        later.push(
            resolver
                .mail_hosts("stable.test")
                .await
                .expect("routed from cache"),
        );
    }

    assert_eq!(names(&first), ["mx.stable.test"]);
    assert!(
        later.iter().all(|hosts| *hosts == first),
        "cached answers: {later:?}"
    );
    assert_eq!(dns.queries("stable.test", "MX"), 1);
    assert_eq!(dns.queries("mx.stable.test", "A"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smarthost_name_resolves_to_its_addresses() {
    let dns = TestDns::start().await;
    dns.add_a("relay.test", v4(25), 300);
    dns.add_aaaa("relay.test", "2001:db8::25".parse().expect("v6"), 300);
    let resolver = resolver(&dns);

    let addresses = resolver.addresses("Relay.Test.").await.expect("resolved");
    let missing = resolver.addresses("norelay.test").await;
    let queries_before_ip = dns.total_queries();
    let ip = resolver.addresses("127.0.0.1").await.expect("IP address");

    let expected: Vec<IpAddr> = vec!["192.0.2.25".parse().unwrap(), "2001:db8::25".parse().unwrap()];
    assert_eq!(addresses, expected);
    assert_eq!(missing, Err(RouteError::NxDomain("norelay.test".into())));
    assert_eq!(ip, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    assert_eq!(
        dns.total_queries(),
        queries_before_ip,
        "an IP address needs no DNS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_mx_set_is_fetched_over_tcp_and_the_most_preferred_hosts_kept() {
    let dns = TestDns::start().await;
    // 60 MX records with long names: the answer (about 2.5 kB) does not fit a 1232-byte UDP answer.
    for i in 1..=60u8 {
        let exchange = format!("mail-exchanger-number-{i:02}.big.test");
        dns.add_mx("big.test", u16::from(i), &exchange, 300);
        dns.add_a(&exchange, v4(i), 300);
    }

    let hosts = resolver(&dns).mail_hosts("big.test").await.expect("routed");

    assert!(
        dns.tcp_queries() >= 1,
        "the truncated answer was asked again over TCP"
    );
    let preferences: Vec<u16> = hosts.iter().map(|h| h.preference).collect();
    assert_eq!(
        preferences,
        (1..=32).collect::<Vec<u16>>(),
        "the 32 most preferred, in order"
    );
    assert_eq!(
        hosts[0],
        host("mail-exchanger-number-01.big.test", 1, &["192.0.2.1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_server_releases_its_port_when_stopped() {
    let dns = TestDns::start().await;
    dns.add_a("up.test", v4(1), 0);
    let address = dns.address;
    let resolved = resolver(&dns).addresses("up.test").await;

    dns.stop().await;

    assert_eq!(
        resolved,
        Ok(vec![IpAddr::V4(v4(1))]),
        "the server answered while running"
    );
    let udp = tokio::net::UdpSocket::bind(address).await;
    let tcp = tokio::net::TcpListener::bind(address).await;
    assert!(
        udp.is_ok() && tcp.is_ok(),
        "port free again: UDP {udp:?}, TCP {tcp:?}"
    );
}
