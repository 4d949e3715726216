//! SPF evaluation over an in-memory DNS table.

use super::super::dns::fake::FakeDns;
use super::*;

const D: &str = "example.com";

async fn eval(dns: &FakeDns, ip: Option<&str>) -> Evaluation {
    evaluate(dns, D, ip.map(|ip| ip.parse().unwrap()), "mta.example.com").await
}

#[tokio::test]
async fn qualifiers_give_their_results() {
    for (all, verdict) in [
        ("-all", Verdict::Fail),
        ("~all", Verdict::SoftFail),
        ("?all", Verdict::Neutral),
        ("+all", Verdict::Pass),
        ("all", Verdict::Pass),
    ] {
        let dns = FakeDns::default().with_txt(D, &format!("v=spf1 ip4:192.0.2.0/24 {all}"));
        let evaluation = eval(&dns, Some("198.51.100.1")).await;
        assert_eq!(evaluation.result, Ok(verdict), "{all}");
        assert_eq!(evaluation.matched.as_deref(), Some(all));
    }
}

#[tokio::test]
async fn no_match_and_no_redirect_is_neutral_and_no_record_is_none() {
    let dns = FakeDns::default()
        .with_txt(D, "v=spf1 ip4:192.0.2.1")
        .with_txt("other.example.com", "hello");
    assert_eq!(
        eval(&dns, Some("198.51.100.1")).await.result,
        Ok(Verdict::Neutral)
    );
    let none = evaluate(&dns, "other.example.com", Some("192.0.2.1".parse().unwrap()), "h").await;
    assert_eq!(none.result, Ok(Verdict::None));
}

#[tokio::test]
async fn ip_mechanisms_match_by_prefix_and_family() {
    let dns = FakeDns::default().with_txt(D, "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all");
    assert_eq!(eval(&dns, Some("192.0.2.200")).await.result, Ok(Verdict::Pass));
    assert_eq!(eval(&dns, Some("2001:db8:1::5")).await.result, Ok(Verdict::Pass));
    assert_eq!(
        eval(&dns, Some("::ffff:192.0.2.9")).await.result,
        Ok(Verdict::Pass)
    );
    assert_eq!(eval(&dns, Some("192.0.3.1")).await.result, Ok(Verdict::Fail));
}

#[tokio::test]
async fn a_and_mx_match_their_addresses_and_count_lookups() {
    let dns = FakeDns::default()
        .with_txt(D, "v=spf1 a mx:mail.example.com/24 -all")
        .with_address(D, "192.0.2.1")
        .with_mx("mail.example.com", 10, "mx1.example.com")
        .with_address("mx1.example.com", "198.51.100.10");
    let a = eval(&dns, Some("192.0.2.1")).await;
    assert_eq!(
        (a.result, a.lookups, a.matched.as_deref()),
        (Ok(Verdict::Pass), 1, Some("a"))
    );
    let mx = eval(&dns, Some("198.51.100.77")).await;
    assert_eq!((mx.result, mx.lookups), (Ok(Verdict::Pass), 2));
    assert_eq!(eval(&dns, Some("203.0.113.1")).await.result, Ok(Verdict::Fail));
}

#[tokio::test]
async fn include_matches_only_on_pass_and_redirect_takes_the_result() {
    let dns = FakeDns::default()
        .with_txt(D, "v=spf1 include:a.example.net redirect=b.example.net")
        .with_txt("a.example.net", "v=spf1 ip4:192.0.2.1 -all")
        .with_txt("b.example.net", "v=spf1 ip4:192.0.2.2 ~all");
    let included = eval(&dns, Some("192.0.2.1")).await;
    assert_eq!(included.result, Ok(Verdict::Pass));
    assert_eq!(included.matched.as_deref(), Some("include:a.example.net"));
    assert_eq!(eval(&dns, Some("192.0.2.2")).await.result, Ok(Verdict::Pass));
    let other = eval(&dns, Some("192.0.2.3")).await;
    assert_eq!(other.result, Ok(Verdict::SoftFail));
    assert_eq!(other.lookups, 2);
    assert_eq!(other.matched.as_deref(), Some("redirect=b.example.net"));
}

#[tokio::test]
async fn include_or_redirect_without_a_record_is_a_permerror() {
    let dns = FakeDns::default().with_txt(D, "v=spf1 include:nowhere.example.net -all");
    assert!(
        matches!(eval(&dns, Some("192.0.2.1")).await.result, Err(SpfError::Perm(reason)) if reason.contains("nowhere.example.net has no SPF record"))
    );
    let dns = FakeDns::default().with_txt(D, "v=spf1 redirect=nowhere.example.net");
    assert!(matches!(
        eval(&dns, Some("192.0.2.1")).await.result,
        Err(SpfError::Perm(_))
    ));
}

/// A chain of `count` includes from the domain, the last one ending in `-all`.
fn include_chain(count: usize) -> FakeDns {
    let mut dns = FakeDns::default().with_txt(D, "v=spf1 ip4:192.0.2.1 include:l1.example.com -all");
    for level in 1..count {
        dns = dns.with_txt(
            &format!("l{level}.example.com"),
            &format!("v=spf1 include:l{}.example.com -all", level + 1),
        );
    }
    dns.with_txt(&format!("l{count}.example.com"), "v=spf1 -all")
}

#[tokio::test]
async fn ten_lookups_are_allowed_eleven_are_a_permerror_with_the_count() {
    let ten = eval(&include_chain(10), None).await;
    assert_eq!((ten.result, ten.lookups), (Ok(Verdict::Fail), 10));
    let eleven = eval(&include_chain(11), None).await;
    assert_eq!(eleven.lookups, 11);
    assert_eq!(
        eleven.result,
        Err(SpfError::Perm("11 DNS lookups, more than the limit of 10".into()))
    );
    // The address listed before the includes passes without evaluating them.
    let direct = eval(&include_chain(11), Some("192.0.2.1")).await;
    assert_eq!((direct.result, direct.lookups), (Ok(Verdict::Pass), 0));
}

#[tokio::test]
async fn include_loops_stop_at_the_cap() {
    let dns = FakeDns::default().with_txt(D, "v=spf1 include:example.com -all");
    let evaluation = eval(&dns, None).await;
    assert_eq!(evaluation.lookups, HARD_LOOKUP_CAP + 1);
    assert!(matches!(evaluation.result, Err(SpfError::Perm(reason)) if reason.contains("at least 31")));
}

#[tokio::test]
async fn more_than_two_void_lookups_are_a_permerror() {
    let dns = FakeDns::default().with_txt(D, "v=spf1 a:x1.example.com a:x2.example.com -all");
    assert_eq!(eval(&dns, None).await.result, Ok(Verdict::Fail));
    let dns = FakeDns::default().with_txt(
        D,
        "v=spf1 a:x1.example.com a:x2.example.com mx:x3.example.com -all",
    );
    let evaluation = eval(&dns, None).await;
    assert_eq!(evaluation.void_lookups, 3);
    assert!(matches!(evaluation.result, Err(SpfError::Perm(reason)) if reason.contains("3 void lookups")));
}

#[tokio::test]
async fn dns_failures_are_temperrors() {
    let dns = FakeDns::default()
        .with_txt(D, "v=spf1 include:broken.example.net -all")
        .with_failure("broken.example.net");
    let evaluation = eval(&dns, Some("192.0.2.1")).await;
    assert_eq!(
        evaluation.result,
        Err(SpfError::Temp(
            "DNS lookup of broken.example.net TXT failed: name server answered SERVFAIL".into()
        ))
    );
}

#[tokio::test]
async fn ptr_counts_never_matches_and_is_noted() {
    let dns = FakeDns::default().with_txt(D, "v=spf1 ptr -all");
    let evaluation = eval(&dns, Some("192.0.2.1")).await;
    assert_eq!((evaluation.result, evaluation.lookups), (Ok(Verdict::Fail), 1));
    assert_eq!(evaluation.notes.len(), 1);
}

#[tokio::test]
async fn exists_expands_macros() {
    let dns = FakeDns::default()
        .with_txt(D, "v=spf1 exists:%{ir}.allow.example.com -all")
        .with_address("1.2.0.192.allow.example.com", "127.0.0.2");
    assert_eq!(eval(&dns, Some("192.0.2.1")).await.result, Ok(Verdict::Pass));
    assert_eq!(eval(&dns, Some("192.0.2.2")).await.result, Ok(Verdict::Fail));
}

#[tokio::test]
async fn more_than_ten_mx_hosts_are_a_permerror() {
    let mut dns = FakeDns::default().with_txt(D, "v=spf1 mx -all");
    for n in 0..11 {
        dns = dns.with_mx(D, 10, &format!("mx{n}.example.com"));
    }
    assert!(matches!(
        eval(&dns, Some("192.0.2.1")).await.result,
        Err(SpfError::Perm(_))
    ));
}

#[tokio::test]
async fn several_records_are_a_permerror() {
    let dns = FakeDns::default()
        .with_txt(D, "v=spf1 -all")
        .with_txt(D, "v=spf1 +all");
    assert!(
        matches!(eval(&dns, Some("192.0.2.1")).await.result, Err(SpfError::Perm(reason)) if reason.contains("2 SPF records"))
    );
}
