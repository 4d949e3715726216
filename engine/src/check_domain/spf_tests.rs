//! SPF parsing, macro expansion and record rewriting.

use super::*;

fn context(ip: &str) -> MacroContext {
    MacroContext {
        sender: "strong-bad@email.example.com".into(),
        ip: Some(ip.parse().unwrap()),
        helo: "mx.example.org".into(),
    }
}

#[test]
fn spf_records_are_recognised_by_their_version() {
    assert!(is_spf("v=spf1 -all"));
    assert!(is_spf("V=SPF1"));
    assert!(is_spf("v=spf1"));
    assert!(!is_spf("v=spf10 -all"));
    assert!(!is_spf("v=DMARC1; p=none"));
    assert!(!is_spf("google-site-verification=abc"));
}

#[test]
fn every_mechanism_and_qualifier_parses() {
    let record = parse("v=spf1 +all -include:_spf.example.com ~a ?a:mail.example.com/24//64 mx/28 mx:example.org ptr ptr:example.net ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{i}.bl.example.com").unwrap();
    let mechanisms: Vec<&Mechanism> = record.directives.iter().map(|d| &d.mechanism).collect();
    assert_eq!(mechanisms[0], &Mechanism::All);
    assert_eq!(record.directives[0].qualifier, Qualifier::Pass);
    assert_eq!(mechanisms[1], &Mechanism::Include("_spf.example.com".into()));
    assert_eq!(record.directives[1].qualifier, Qualifier::Fail);
    assert_eq!(record.directives[2].qualifier, Qualifier::SoftFail);
    assert_eq!(
        mechanisms[2],
        &Mechanism::A {
            domain: None,
            cidr4: 32,
            cidr6: 128
        }
    );
    assert_eq!(record.directives[3].qualifier, Qualifier::Neutral);
    assert_eq!(
        mechanisms[3],
        &Mechanism::A {
            domain: Some("mail.example.com".into()),
            cidr4: 24,
            cidr6: 64
        }
    );
    assert_eq!(
        mechanisms[4],
        &Mechanism::Mx {
            domain: None,
            cidr4: 28,
            cidr6: 128
        }
    );
    assert_eq!(
        mechanisms[5],
        &Mechanism::Mx {
            domain: Some("example.org".into()),
            cidr4: 32,
            cidr6: 128
        }
    );
    assert_eq!(mechanisms[6], &Mechanism::Ptr(None));
    assert_eq!(mechanisms[7], &Mechanism::Ptr(Some("example.net".into())));
    assert_eq!(mechanisms[8], &Mechanism::Ip4("192.0.2.0/24".parse().unwrap()));
    assert_eq!(mechanisms[9], &Mechanism::Ip6("2001:db8::/32".parse().unwrap()));
    assert_eq!(mechanisms[10], &Mechanism::Exists("%{i}.bl.example.com".into()));
    assert_eq!(record.redirect, None);
}

#[test]
fn modifiers_are_recognised_and_unknown_ones_ignored() {
    let record = parse("v=spf1 mx redirect=_spf.example.com exp=explain.example.com foo=bar").unwrap();
    assert_eq!(record.directives.len(), 1);
    assert_eq!(record.redirect.as_deref(), Some("_spf.example.com"));
}

#[test]
fn mechanism_names_are_case_insensitive_and_spaces_may_repeat() {
    let record = parse("v=spf1  IP4:192.0.2.1   -ALL").unwrap();
    assert_eq!(record.directives[1].mechanism, Mechanism::All);
}

#[test]
fn syntax_errors_are_refused() {
    for text in [
        "v=spf1 ip4:192.0.2.300",
        "v=spf1 ip4:192.0.2.0/33",
        "v=spf1 ip4:2001:db8::1",
        "v=spf1 ip6:192.0.2.1",
        "v=spf1 ip6:2001:db8::/129",
        "v=spf1 ip4:192.0.2.0/024",
        "v=spf1 include",
        "v=spf1 include:",
        "v=spf1 include:localhost",
        "v=spf1 a:example.com/33",
        "v=spf1 a//129",
        "v=spf1 all:foo",
        "v=spf1 frobnicate",
        "v=spf1 exists:%{x}.example.com",
        "v=spf1 exists:%a.example.com",
        "v=spf1 redirect=a.example.com redirect=b.example.com",
        "v=spf1 exp=a.example.com exp=b.example.com",
        "spf1 -all",
    ] {
        assert!(parse(text).is_err(), "{text} parsed");
    }
}

#[test]
fn macros_expand_as_in_rfc_7208_section_7_4() {
    let context = context("192.0.2.3");
    let d = "email.example.com";
    let cases = [
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        ("%{h}.x", "mx.example.org.x"),
        ("a%%b%_c%-d", "a%b c%20d"),
    ];
    for (spec, expected) in cases {
        assert_eq!(expand(spec, d, &context), expected, "{spec}");
    }
    let v6 = MacroContext {
        ip: Some("2001:db8::cb01".parse().unwrap()),
        ..context
    };
    assert_eq!(
        expand("%{ir}.%{v}._spf.%{d2}", d, &v6),
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    );
}

#[test]
fn long_expansions_lose_labels_on_the_left() {
    let context = context("192.0.2.3");
    let long = format!("{}.example.com", "a.".repeat(200));
    let expanded = expand(&long, "example.com", &context);
    assert!(expanded.len() <= 253, "{}", expanded.len());
    assert!(expanded.ends_with(".example.com"));
}

#[test]
fn ips_are_added_before_the_all_term() {
    let ips: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
    assert_eq!(
        with_ips("v=spf1 include:_spf.example.com ~all", &ips),
        "v=spf1 include:_spf.example.com ip4:192.0.2.7 ip6:2001:db8::7 ~all"
    );
    assert_eq!(
        with_ips("v=spf1 mx redirect=x.example.com", &ips[..1]),
        "v=spf1 mx ip4:192.0.2.7 redirect=x.example.com"
    );
    assert_eq!(with_ips("v=spf1 mx", &ips[..1]), "v=spf1 mx ip4:192.0.2.7");
    assert_eq!(
        with_ips("v=spf1 ip4:192.0.2.7 -all", &ips[..1]),
        "v=spf1 ip4:192.0.2.7 -all"
    );
}
