//! Egress sources, pools, providers and `[shaping]`: parsing, resolution (implicit source and pool,
//! limit precedence, tenant pools) and every validation rule with its field path.

use std::net::IpAddr;
use std::time::Duration;

mod common;

use common::*;
use penguin_config::{
    EgressSource, Factor, LaneLimits, MessageRate, PoolMember, ProviderLimits, RuleAction, RuleScope,
    RuleTrigger,
};

/// A tenant block with extra lines (`pool = ...`).
fn tenant(name: &str, extra: &str) -> String {
    format!(
        "[[tenant]]\nname = \"{name}\"\nusername = \"{name}\"\npassword_hash = \"{}\"\n\
         sender_domains = [\"{name}.example\"]\n{extra}\n",
        hash()
    )
}

const HOST: &str = "[smtp]\nhostname = \"mta.example\"\n";

/// The config contract example of the issue, completed with a tenant and a rule.
fn issue_example() -> String {
    format!(
        r#"{HOST}
[[source]]
name = "ip2"
ip = "127.0.0.2"
ehlo_name = "mta2.example"
max_message_rate = "500/min"

[[source]]
name = "ip3"
ip = "127.0.0.3"

[[pool]]
name = "warm"
sources = ["ip2", {{ name = "ip3", weight = 3 }}]

[[pool]]
name = "cold"
sources = [{{ name = "ip3" }}]

[[provider]]
name = "google"
mx_suffixes = [".google.com", "GoogleMail.com"]

[[provider]]
name = "office365"
mx_suffixes = [".mail.protection.outlook.com"]

[shaping]
max_connections = 10
max_message_rate = "50/s"
max_connection_rate = "100/min"
max_deliveries_per_connection = 100
max_recipients_per_transaction = 50
adaptive = true
builtin_rules = true

[[shaping.provider]]
provider = "google"
max_connections = 5
max_deliveries_per_connection = 50
provider_max_connections = 20
provider_max_message_rate = "3000/h"

[[shaping.domain]]
domain = "Small-Company.example"
max_message_rate = "10/min"

[[shaping.rule]]
name = "yahoo-complaints"
provider = "yahoo"
match = "[TSS04]"
action = "suspend"
duration = "2h"
trigger = "2/h"

[[shaping.rule]]
regex = "4\\.7\\.2[78]"
action = "reduce"
factor = 0.25

[[shaping.rule]]
match = "5.7.1"
action = "bounce"
{}{}"#,
        tenant(
            "acme",
            "pool = \"warm\"\npools = [\"warm\", \"cold\"]\nmax_message_rate = \"100/min\""
        ),
        tenant("plain", ""),
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

#[test]
fn issue_example_parses_and_resolves() {
    let config = parse(&issue_example());
    assert_eq!(
        config.sources(),
        vec![
            EgressSource {
                name: "ip2".into(),
                ip: Some(ip("127.0.0.2")),
                ehlo_name: "mta2.example".into(),
                max_message_rate: Some(MessageRate::per_min(500)),
            },
            EgressSource {
                name: "ip3".into(),
                ip: Some(ip("127.0.0.3")),
                ehlo_name: "mta.example".into(),
                max_message_rate: None,
            },
        ]
    );
    let pools = config.pools();
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["warm", "cold", "default"]);
    assert_eq!(
        pools[0].sources,
        [
            PoolMember::new("ip2"),
            PoolMember {
                name: "ip3".into(),
                weight: 3
            }
        ]
    );
    assert_eq!(pools[1].sources, [PoolMember::new("ip3")]);
    assert_eq!(pools[2].sources, [PoolMember::new("ip2"), PoolMember::new("ip3")]);
    assert_eq!(config.shaping.domain[0].domain, "small-company.example");
    assert_eq!(config.provider[0].mx_suffixes, [".google.com", ".googlemail.com"]);
}

#[test]
fn lane_and_provider_limits_follow_the_precedence() {
    let config = parse(&issue_example());
    assert_eq!(
        config.lane_limits("google"),
        LaneLimits {
            max_connections: 5,
            max_message_rate: Some(MessageRate::per_sec(50)),
            max_connection_rate: Some(MessageRate::per_min(100)),
            max_deliveries_per_connection: 50,
            max_recipients_per_transaction: 50,
        }
    );
    let other = config.lane_limits("other");
    assert_eq!(
        (other.max_connections, other.max_deliveries_per_connection),
        (10, 100)
    );
    assert_eq!(config.lane_limits("yahoo"), other);
    assert_eq!(
        config.provider_limits("google"),
        ProviderLimits {
            max_connections: Some(20),
            max_message_rate: Some(MessageRate::per_hour(3000)),
        }
    );
    assert_eq!(config.provider_limits("other"), ProviderLimits::default());
}

#[test]
fn legacy_delivery_keys_apply_without_shaping_and_yield_to_it() {
    let legacy = "[delivery]\nmax_connections_per_host = 7\nmax_messages_per_connection = 30\n\
                  max_recipients_per_transaction = 20\n";
    let config = parse(&format!("{HOST}{legacy}"));
    let expected = LaneLimits {
        max_connections: 7,
        max_message_rate: None,
        max_connection_rate: None,
        max_deliveries_per_connection: 30,
        max_recipients_per_transaction: 20,
    };
    assert_eq!(config.lane_limits("google"), expected);
    assert_eq!(config.lane_limits("other"), expected);

    let partial = parse(&format!("{HOST}{legacy}[shaping]\nmax_connections = 3\n"));
    assert_eq!(
        partial.lane_limits("other"),
        LaneLimits {
            max_connections: 3,
            ..expected
        }
    );
    let full = parse(&format!(
        "{HOST}{legacy}[shaping]\nmax_connections = 3\nmax_deliveries_per_connection = 4\n\
         max_recipients_per_transaction = 5\n"
    ));
    let limits = full.lane_limits("other");
    assert_eq!(
        (
            limits.max_connections,
            limits.max_deliveries_per_connection,
            limits.max_recipients_per_transaction
        ),
        (3, 4, 5)
    );
}

#[test]
fn without_shaping_today_s_defaults_apply() {
    let config = parse(HOST);
    assert_eq!(
        config.lane_limits("google"),
        LaneLimits {
            max_connections: 10,
            max_message_rate: None,
            max_connection_rate: None,
            max_deliveries_per_connection: 100,
            max_recipients_per_transaction: 50,
        }
    );
    let shaping = &config.shaping;
    assert!(shaping.adaptive && shaping.builtin_rules);
    assert_eq!(shaping.adaptive_cooldown.get(), Duration::from_secs(60));
    assert_eq!(shaping.adaptive_recovery.get(), Duration::from_secs(300));
    assert_eq!(shaping.adaptive_min_rate, MessageRate::per_min(1));
}

#[test]
fn without_sources_one_implicit_source_and_pool() {
    let config = parse(HOST);
    let default = EgressSource {
        name: "default".into(),
        ip: None,
        ehlo_name: "mta.example".into(),
        max_message_rate: None,
    };
    assert_eq!(config.sources(), vec![default.clone()]);
    let pools = config.pools();
    assert_eq!(pools.len(), 1);
    assert_eq!(
        (pools[0].name.as_str(), &pools[0].sources[..]),
        ("default", &[PoolMember::new("default")][..])
    );

    let with_ip = parse(&format!("{HOST}[delivery]\nsource_ip = \"192.0.2.9\"\n"));
    assert_eq!(with_ip.sources()[0].ip, Some(ip("192.0.2.9")));
    // A pool may name the implicit source.
    let named = parse(&format!(
        "{HOST}[[pool]]\nname = \"p\"\nsources = [\"default\"]\n"
    ));
    assert_eq!(named.pools().len(), 2);
}

#[test]
fn a_defined_default_pool_replaces_the_implicit_one() {
    let text = format!(
        "{HOST}[[source]]\nname = \"a\"\nip = \"127.0.0.2\"\n[[source]]\nname = \"b\"\nip = \"127.0.0.3\"\n\
         [[pool]]\nname = \"default\"\nsources = [\"b\"]\n"
    );
    let pools = parse(&text).pools();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].sources, [PoolMember::new("b")]);
}

#[test]
fn tenant_pools_default_and_allowed() {
    let config = parse(&issue_example());
    let acme = config.tenant.iter().find(|t| t.name == "acme").expect("acme");
    assert_eq!(acme.max_message_rate, Some(MessageRate::per_min(100)));
    assert_eq!(
        config.tenant_pools("acme"),
        ("warm".to_owned(), vec!["warm".to_owned(), "cold".to_owned()])
    );
    assert_eq!(
        config.tenant_pools("plain"),
        ("default".to_owned(), vec!["default".to_owned()])
    );
    // The relay tenant (and any unknown name) uses "default" and may pick any pool.
    let all: Vec<String> = ["warm", "cold", "default"].map(String::from).to_vec();
    assert_eq!(config.tenant_pools("default"), ("default".to_owned(), all));
    let only_pools = parse(&format!("{HOST}{}", tenant("t", "pools = [\"default\"]")));
    assert_eq!(
        only_pools.tenant_pools("t"),
        ("default".to_owned(), vec!["default".to_owned()])
    );
}

#[test]
fn providers_extend_and_replace_the_builtin_ones() {
    let config = parse(&issue_example());
    let providers = config.providers();
    let google = providers.iter().find(|p| p.name == "google").expect("google");
    assert_eq!(google.mx_suffixes, [".google.com", ".googlemail.com"]);
    let microsoft = providers
        .iter()
        .find(|p| p.name == "microsoft")
        .expect("microsoft");
    assert_eq!(microsoft.mx_suffixes, [".outlook.com", ".mx.microsoft"]);
    assert_eq!(providers.last().map(|p| p.name.as_str()), Some("office365"));
    assert_eq!(providers.len(), penguin_config::BUILTIN_PROVIDERS.len() + 1);
    // Every suffix belongs to one provider only, so a longest-suffix lookup is unambiguous.
    let mut owners = std::collections::HashMap::new();
    for provider in &providers {
        for suffix in &provider.mx_suffixes {
            assert_eq!(
                owners.insert(suffix.clone(), provider.name.clone()),
                None,
                "{suffix}"
            );
        }
    }
    assert_eq!(owners[".mail.protection.outlook.com"], "office365");

    let replaced = parse(&format!(
        "{HOST}[[provider]]\nname = \"apple\"\nmx_suffixes = [\"me.example\"]\n"
    ));
    let apple = replaced
        .providers()
        .into_iter()
        .find(|p| p.name == "apple")
        .expect("apple");
    assert_eq!(apple.mx_suffixes, [".me.example"]);
}

#[test]
fn rules_parse_with_their_defaults() {
    let config = parse(&issue_example());
    let rules = &config.shaping.rule;
    assert_eq!(rules[0].action, RuleAction::Suspend);
    assert_eq!(rules[0].trigger, RuleTrigger::Count(MessageRate::per_hour(2)));
    assert_eq!(
        rules[0].duration.map(|d| d.get()),
        Some(Duration::from_secs(7200))
    );
    assert_eq!(rules[0].effective_scope(), RuleScope::Provider);
    assert_eq!(rules[1].factor, Some(Factor(0.25)));
    assert_eq!(rules[1].reduce_factor(), 0.25);
    assert_eq!(rules[1].effective_scope(), RuleScope::Site);
    assert_eq!(rules[2].trigger, RuleTrigger::Immediate);
    assert_eq!(rules[2].reduce_factor(), 0.5);
    assert_eq!(rules[2].effective_scope(), RuleScope::Site);
}

#[test]
fn the_example_round_trips_through_toml() {
    let config = parse(&issue_example());
    let text = toml::to_string(&config).expect("serialise");
    assert!(text.contains("max_message_rate = \"500/min\""), "{text}");
    assert!(text.contains("trigger = \"2/h\""), "{text}");
    assert_eq!(parse(&text), config);
}

#[test]
fn bad_specs_name_their_path() {
    let errors = errors_of(&format!(
        "{HOST}[[shaping.provider]]\nprovider = \"google\"\nprovider_max_message_rate = \"3000/hour\"\n"
    ));
    assert_eq!(
        errors.to_string(),
        "shaping.provider[0].provider_max_message_rate: invalid rate \"3000/hour\": expected N/s, N/min, \
         N/h or N/d (line 5)"
    );
    let table: &[(&str, &str, &str)] = &[
        (
            "[shaping]\nmax_message_rate = \"0/s\"",
            "shaping.max_message_rate",
            "use a suspension",
        ),
        (
            "[shaping]\nmax_message_rate = 50",
            "shaping.max_message_rate",
            "a period is required",
        ),
        (
            "[shaping]\nadaptive_min_rate = \"1/m\"",
            "shaping.adaptive_min_rate",
            "expected N/s",
        ),
        (
            "[shaping]\nmax_connections = -1",
            "shaping.max_connections",
            "invalid value",
        ),
        ("[shaping]\nspeed = 1", "shaping.speed", "unknown field"),
        (
            "[[source]]\nname = \"a\"\nip = \"300.1.1.1\"",
            "source[0].ip",
            "invalid IP address",
        ),
        ("[[source]]\nname = \"a\"", "source[0]", "missing field `ip`"),
        (
            "[[source]]\nname = \"a\"\nip = \"127.0.0.2\"\nport = 1",
            "source[0].port",
            "unknown field",
        ),
        (
            "[[pool]]\nname = \"p\"\nsources = [{ name = \"a\", w = 2 }]",
            "pool[0].sources[0].w",
            "unknown field",
        ),
        (
            "[[pool]]\nname = \"p\"\nsources = [7]",
            "pool[0].sources[0]",
            "a source name or a table",
        ),
        (
            "[[pool]]\nname = \"p\"\nsources = [{ weight = 2 }]",
            "pool[0].sources[0]",
            "missing field `name`",
        ),
        (
            "[[shaping.rule]]\nmatch = \"x\"\naction = \"drop\"",
            "shaping.rule[0].action",
            "unknown variant",
        ),
        (
            "[[shaping.rule]]\nmatch = \"x\"\naction = \"bounce\"\ntrigger = \"soon\"",
            "shaping.rule[0].trigger",
            "expected \"immediate\"",
        ),
        (
            "[[shaping.rule]]\nmatch = \"x\"\naction = \"bounce\"\ntrigger = 5",
            "shaping.rule[0].trigger",
            "invalid type: integer `5`, expected \"immediate\" or N matches",
        ),
        (
            "[[shaping.rule]]\nmatch = \"x\"\naction = \"reduce\"\nfactor = \"half\"",
            "shaping.rule[0].factor",
            "a number between 0 and 1",
        ),
        (
            "[[shaping.rule]]\nmatch = \"x\"",
            "shaping.rule[0]",
            "missing field `action`",
        ),
        (
            "[[shaping.domain]]\ndomain = \"a.example\"",
            "shaping.domain[0]",
            "missing field `max_message_rate`",
        ),
        (
            "[[tenant]]\nname = \"t\"\nusername = \"t\"\npassword_hash = \"x\"\nsender_domains = []\nmax_message_rate = \"5\"",
            "tenant[0].max_message_rate",
            "expected N/s",
        ),
    ];
    for &(body, path, reason) in table {
        assert_error(&format!("{HOST}{body}\n"), path, reason);
    }
}

/// `[[source]]` blocks for tests: (name, ip).
fn sources(list: &[(&str, &str)]) -> String {
    list.iter()
        .map(|(name, ip)| format!("[[source]]\nname = \"{name}\"\nip = \"{ip}\"\n"))
        .collect()
}

#[test]
fn each_source_and_pool_rule_reports_its_path() {
    let two = sources(&[("a", "127.0.0.2"), ("b", "127.0.0.3")]);
    let table: Vec<(String, &str, &str)> = vec![
        (
            format!("{two}[delivery]\nsource_ip = \"127.0.0.9\"\n"),
            "delivery.source_ip",
            "give each source its address in source[].ip",
        ),
        (
            sources(&[("", "127.0.0.2")]),
            "source[0].name",
            "must not be empty",
        ),
        (
            sources(&[("a b", "127.0.0.2")]),
            "source[0].name",
            "A-Z a-z 0-9 . _ -",
        ),
        (
            sources(&[(&"n".repeat(65), "127.0.0.2")]),
            "source[0].name",
            "1-64 characters",
        ),
        (
            sources(&[("a", "127.0.0.2"), ("a", "127.0.0.3")]),
            "source[1].name",
            "defined twice",
        ),
        (
            sources(&[("a", "127.0.0.2"), ("b", "127.0.0.2")]),
            "source[1].ip",
            "already the ip of source \"a\"",
        ),
        (sources(&[("a", "0.0.0.0")]), "source[0].ip", "unspecified"),
        (sources(&[("a", "::")]), "source[0].ip", "unspecified"),
        (sources(&[("a", "224.0.0.9")]), "source[0].ip", "multicast"),
        (
            format!("{two}[[source]]\nname = \"c\"\nip = \"127.0.0.4\"\nehlo_name = \"bad_name\"\n"),
            "source[2].ehlo_name",
            "not a valid domain name",
        ),
        (
            format!("{two}[[pool]]\nname = \"p q\"\nsources = [\"a\"]\n"),
            "pool[0].name",
            "not a valid pool name",
        ),
        (
            format!(
                "{two}[[pool]]\nname = \"p\"\nsources = [\"a\"]\n[[pool]]\nname = \"p\"\nsources = [\"b\"]\n"
            ),
            "pool[1].name",
            "defined twice",
        ),
        (
            format!("{two}[[pool]]\nname = \"p\"\nsources = []\n"),
            "pool[0].sources",
            "at least one source",
        ),
        (
            format!("{two}[[pool]]\nname = \"p\"\nsources = [\"a\", \"z\"]\n"),
            "pool[0].sources[1]",
            "unknown source \"z\"",
        ),
        (
            format!("{two}[[pool]]\nname = \"p\"\nsources = [\"default\"]\n"),
            "pool[0].sources[0]",
            "unknown source \"default\"",
        ),
        (
            "[[pool]]\nname = \"p\"\nsources = [\"ip2\"]\n".to_owned(),
            "pool[0].sources[0]",
            "the only source is \"default\"",
        ),
        (
            format!("{two}[[pool]]\nname = \"p\"\nsources = [\"a\", {{ name = \"a\", weight = 2 }}]\n"),
            "pool[0].sources[1]",
            "listed twice",
        ),
        (
            format!("{two}[[pool]]\nname = \"p\"\nsources = [{{ name = \"a\", weight = 0 }}]\n"),
            "pool[0].sources[0].weight",
            "must be 1..=1000",
        ),
        (
            format!("{two}[[pool]]\nname = \"p\"\nsources = [{{ name = \"a\", weight = 1001 }}]\n"),
            "pool[0].sources[0].weight",
            "must be 1..=1000",
        ),
        (
            tenant("t", "pool = \"nope\""),
            "tenant[0].pool",
            "unknown pool \"nope\"",
        ),
        (
            tenant("t", "pools = [\"default\", \"nope\"]"),
            "tenant[0].pools[1]",
            "unknown pool \"nope\"",
        ),
        (
            tenant("t", "pools = [\"default\", \"default\"]"),
            "tenant[0].pools[1]",
            "listed twice",
        ),
    ];
    for (body, path, reason) in &table {
        assert_error(&format!("{HOST}{body}"), path, reason);
    }
    let edges = format!(
        "{HOST}{two}[[pool]]\nname = \"p\"\nsources = [{{ name = \"a\", weight = 1000 }}, {{ name = \"b\" }}]\n{}",
        tenant("t", "pool = \"p\"\npools = [\"default\"]")
    );
    parse(&edges);
}

#[test]
fn each_provider_rule_reports_its_path() {
    let provider =
        |name: &str, suffixes: &str| format!("[[provider]]\nname = \"{name}\"\nmx_suffixes = {suffixes}\n");
    let table: Vec<(String, &str, &str)> = vec![
        (
            provider("other", "[\".x.example\"]"),
            "provider[0].name",
            "reserved",
        ),
        (
            provider("bad name", "[\".x.example\"]"),
            "provider[0].name",
            "not a valid provider name",
        ),
        (
            provider("a", "[\".x.example\"]") + &provider("a", "[\".y.example\"]"),
            "provider[1].name",
            "defined twice",
        ),
        (
            provider("a", "[]"),
            "provider[0].mx_suffixes",
            "at least one MX host suffix",
        ),
        (
            provider("a", "[\".bad_suffix.example\"]"),
            "provider[0].mx_suffixes[0]",
            "not a valid domain name",
        ),
        (
            provider("a", "[\"\"]"),
            "provider[0].mx_suffixes[0]",
            "must not be empty",
        ),
        (
            provider("a", "[\"..x.example\"]"),
            "provider[0].mx_suffixes[0]",
            "empty label",
        ),
        (
            provider("a", "[\".x.example\", \"X.Example\"]"),
            "provider[0].mx_suffixes[1]",
            "listed twice",
        ),
        (
            provider("a", "[\".x.example\"]") + &provider("b", "[\".x.example\"]"),
            "provider[1].mx_suffixes[0]",
            "already a suffix of provider \"a\"",
        ),
    ];
    for (body, path, reason) in &table {
        assert_error(&format!("{HOST}{body}"), path, reason);
    }
}

#[test]
fn each_shaping_rule_reports_its_path() {
    let rule = |lines: &str| format!("[[shaping.rule]]\n{lines}\n");
    let table: Vec<(String, &str, &str)> = vec![
        ("[shaping]\nmax_connections = 0".into(), "shaping.max_connections", "at least 1"),
        ("[shaping]\nmax_deliveries_per_connection = 0".into(), "shaping.max_deliveries_per_connection", "at least 1"),
        ("[shaping]\nmax_recipients_per_transaction = 0".into(), "shaping.max_recipients_per_transaction", "at least 1"),
        ("[shaping]\nadaptive_cooldown = \"0s\"".into(), "shaping.adaptive_cooldown", "greater than zero"),
        ("[shaping]\nadaptive_recovery = \"0s\"".into(), "shaping.adaptive_recovery", "greater than zero"),
        ("[[shaping.provider]]\nprovider = \"nope\"".into(), "shaping.provider[0].provider", "unknown provider \"nope\""),
        ("[[shaping.provider]]\nprovider = \"google\"\n[[shaping.provider]]\nprovider = \"google\"".into(), "shaping.provider[1].provider", "two [[shaping.provider]] entries"),
        ("[[shaping.provider]]\nprovider = \"google\"\nmax_connections = 0".into(), "shaping.provider[0].max_connections", "at least 1"),
        ("[[shaping.provider]]\nprovider = \"google\"\nprovider_max_connections = 0".into(), "shaping.provider[0].provider_max_connections", "at least 1"),
        ("[[shaping.provider]]\nprovider = \"other\"\nprovider_max_connections = 5".into(), "shaping.provider[0].provider_max_connections", "not one receiver"),
        ("[[shaping.provider]]\nprovider = \"other\"\nprovider_max_message_rate = \"5/s\"".into(), "shaping.provider[0].provider_max_message_rate", "not one receiver"),
        ("[[shaping.domain]]\ndomain = \"bad_domain\"\nmax_message_rate = \"1/s\"".into(), "shaping.domain[0].domain", "not a valid domain name"),
        ("[[shaping.domain]]\ndomain = \"a.example\"\nmax_message_rate = \"1/s\"\n[[shaping.domain]]\ndomain = \"A.example\"\nmax_message_rate = \"2/s\"".into(), "shaping.domain[1].domain", "two [[shaping.domain]] entries"),
        (rule("action = \"bounce\""), "shaping.rule[0]", "needs `match`"),
        (rule("match = \"x\"\nregex = \"x\"\naction = \"bounce\""), "shaping.rule[0].regex", "not both"),
        (rule("match = \" \"\naction = \"bounce\""), "shaping.rule[0].match", "must not be empty"),
        (rule("regex = \"(unclosed\"\naction = \"bounce\""), "shaping.rule[0].regex", "invalid regular expression"),
        (rule("match = \"x\"\naction = \"suspend\""), "shaping.rule[0].duration", "required for action \"suspend\""),
        (rule("match = \"x\"\naction = \"retry\""), "shaping.rule[0].duration", "required for action \"retry\""),
        (rule("match = \"x\"\naction = \"suspend\"\nduration = \"0s\""), "shaping.rule[0].duration", "greater than zero"),
        (rule("match = \"x\"\naction = \"bounce\"\nduration = \"1h\""), "shaping.rule[0].duration", "only applies to actions"),
        (rule("match = \"x\"\naction = \"reduce\"\nduration = \"1h\""), "shaping.rule[0].duration", "not \"reduce\""),
        (rule("match = \"x\"\naction = \"reduce\"\nfactor = 1.0"), "shaping.rule[0].factor", "less than 1"),
        (rule("match = \"x\"\naction = \"reduce\"\nfactor = 0.0"), "shaping.rule[0].factor", "greater than 0"),
        (rule("match = \"x\"\naction = \"reduce\"\nfactor = 2"), "shaping.rule[0].factor", "out of range"),
        (rule("match = \"x\"\naction = \"reduce\"\nfactor = nan"), "shaping.rule[0].factor", "out of range"),
        (rule("match = \"x\"\naction = \"bounce\"\nfactor = 0.5"), "shaping.rule[0].factor", "only applies to action \"reduce\""),
        (rule("match = \"x\"\naction = \"bounce\"\ntrigger = \"10001/h\""), "shaping.rule[0].trigger", "at most 10000"),
        (rule("match = \"x\"\naction = \"bounce\"\nprovider = \"nope\""), "shaping.rule[0].provider", "unknown provider"),
        (rule("name = \"r\"\nmatch = \"x\"\naction = \"bounce\"") + &rule("name = \"r\"\nmatch = \"y\"\naction = \"bounce\""), "shaping.rule[1].name", "defined twice"),
        (rule("name = \"r r\"\nmatch = \"x\"\naction = \"bounce\""), "shaping.rule[0].name", "not a valid rule name"),
        (rule("match = \"x\"\naction = \"bounce\"\nscope = \"site\""), "shaping.rule[0].scope", "only applies to action \"suspend\""),
        (rule("match = \"x\"\naction = \"suspend\"\nduration = \"1h\"\nscope = \"provider\""), "shaping.rule[0].scope", "needs the rule's provider"),
        (rule("match = \"x\"\naction = \"suspend\"\nduration = \"1h\"\nprovider = \"other\"\nscope = \"provider\""), "shaping.rule[0].scope", "needs the rule's provider"),
    ];
    for (body, path, reason) in &table {
        assert_error(&format!("{HOST}{body}\n"), path, reason);
    }
    let edges = format!(
        "{HOST}[[provider]]\nname = \"mine\"\nmx_suffixes = [\"mx.mine.example\"]\n{}{}{}\
         [[shaping.provider]]\nprovider = \"other\"\nmax_connections = 2\n\
         [[shaping.provider]]\nprovider = \"mine\"\nprovider_max_connections = 1\n",
        rule(
            "provider = \"mine\"\nmatch = \"x\"\naction = \"suspend\"\nduration = \"1ms\"\ntrigger = \"10000/d\""
        ),
        rule("provider = \"other\"\nmatch = \"x\"\naction = \"reduce\"\nfactor = 0.999"),
        rule("match = \"x\"\naction = \"suspend\"\nduration = \"1h\"\nscope = \"site\""),
    );
    parse(&edges);
}

#[test]
fn all_shaping_problems_are_reported_at_once() {
    let text = format!(
        "{HOST}[delivery]\nsource_ip = \"127.0.0.9\"\n{}[[pool]]\nname = \"p\"\nsources = []\n\
         [[provider]]\nname = \"other\"\nmx_suffixes = []\n[shaping]\nmax_connections = 0\n\
         [[shaping.rule]]\naction = \"suspend\"\n{}",
        sources(&[("a", "0.0.0.0")]),
        tenant("t", "pool = \"nope\""),
    );
    let errors = errors_of(&text);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "delivery.source_ip",
            "source[0].ip",
            "pool[0].sources",
            "tenant[0].pool",
            "provider[0].name",
            "provider[0].mx_suffixes",
            "shaping.max_connections",
            "shaping.rule[0]",
            "shaping.rule[0].duration",
        ]
    );
}
