//! Parsing, defaults, error paths and validation of whole config files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod common;

use common::*;
use penguin_config::{
    ApiConfig, ByteSize, Config, DEFAULT_CONFIG_TOML, Factor, HumanDuration, MessageRate, PoolConfig,
    PoolMember, ProviderConfig, RuleAction, RuleScope, RuleTrigger, ShapingConfig, ShapingDomainConfig,
    ShapingProviderConfig, ShapingRuleConfig, SmtpConfig, SourceConfig, SpoolConfig, TenantConfig, TlsConfig,
};

fn tenant(name: &str, username: &str, domains: &str) -> String {
    format!(
        "[[tenant]]\nname = \"{name}\"\nusername = \"{username}\"\npassword_hash = \"{}\"\n\
         sender_domains = {domains}\n",
        hash()
    )
}

/// The contract example from the design brief, with a real hash.
fn contract_example() -> String {
    format!(
        r#"[smtp]
listen = ["127.0.0.1:2525"]
hostname = "mta.example.test"
max_message_size = "25MB"
max_recipients = 1000
relay_networks = []            # CIDRs allowed to relay without AUTH (tenant "default")
[tls]
cert = "cert.pem"              # PEM chain; STARTTLS is offered when set
key = "key.pem"
[spool]
path = "data/spool"
[api]
listen = "127.0.0.1:8025"
{}"#,
        tenant("acme", "acme", r#"["acme.example"]"#)
    )
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

#[test]
fn contract_example_parses() {
    let config = Config::from_toml_str(&contract_example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.smtp.listen, vec![addr("127.0.0.1:2525")]);
    assert_eq!(config.smtp.hostname, "mta.example.test");
    assert_eq!(config.smtp.max_message_size, ByteSize(25_000_000));
    assert_eq!(config.smtp.max_recipients, 1000);
    assert!(config.smtp.relay_networks.is_empty());
    let tls = config.tls.as_ref().expect("tls");
    assert_eq!(
        (tls.cert.as_path(), tls.key.as_path()),
        (PathBuf::from("cert.pem").as_path(), "key.pem".as_ref())
    );
    assert_eq!(config.spool.path, PathBuf::from("data/spool"));
    assert_eq!(config.api.listen, addr("127.0.0.1:8025"));
    assert_eq!(config.tenant.len(), 1);
    let acme = config.tenant_by_username("acme").expect("tenant");
    assert_eq!(
        (acme.name.as_str(), acme.password_hash.as_str()),
        ("acme", hash())
    );
    assert_eq!(acme.sender_domains, vec!["acme.example".to_owned()]);
    assert!(config.tenant_by_username("ACME").is_none());
    assert!(config.tenant_by_username("nobody").is_none());
}

#[test]
fn embedded_default_is_valid_and_has_documented_values() {
    let config = Config::embedded_default();
    let smtp = &config.smtp;
    assert_eq!(smtp.listen, vec![addr("127.0.0.1:2525")]);
    assert_eq!(smtp.hostname, "localhost");
    assert_eq!(smtp.max_message_size.bytes(), 25_000_000);
    assert_eq!(smtp.max_recipients, 1000);
    let nets: Vec<String> = smtp.relay_networks.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["127.0.0.0/8", "::1/128"]);
    // Apart from hostname and relay networks, [smtp], [spool] and [api] are exactly the built-in defaults.
    let expected = SmtpConfig {
        hostname: smtp.hostname.clone(),
        relay_networks: smtp.relay_networks.clone(),
        ..SmtpConfig::default()
    };
    assert_eq!(*smtp, expected);
    assert_eq!(config.spool, SpoolConfig::default());
    assert_eq!(config.api, ApiConfig::default());
    assert!(config.tls.is_none());
    assert!(config.tenant.is_empty());
    // Redis-free: one node on its own.
    assert!(config.cluster.is_none());
    // The shaping section only spells out the defaults: the legacy [delivery] limits stay in force.
    assert_eq!(config.shaping, ShapingConfig::default());
    assert!(config.source.is_empty() && config.pool.is_empty() && config.provider.is_empty());
    for (name, suffixes) in penguin_config::BUILTIN_PROVIDERS {
        assert!(DEFAULT_CONFIG_TOML.contains(&format!(" {name} (")), "{name}");
        for suffix in *suffixes {
            assert!(DEFAULT_CONFIG_TOML.contains(suffix), "{suffix}");
        }
    }
}

#[test]
fn embedded_default_mentions_every_field() {
    // Serialise a config with every optional part present, and check each key appears in the file.
    let mut config = Config::embedded_default();
    config.tls = Some(TlsConfig {
        cert: "c.pem".into(),
        key: "k.pem".into(),
    });
    config.tenant.push(TenantConfig {
        name: "t".into(),
        username: "u".into(),
        password_hash: hash().into(),
        sender_domains: vec!["t.example".into()],
        dsn: true,
        list_unsubscribe: true,
        dkim_missing_key: Some(penguin_config::MissingKeyAction::Reject),
        pool: Some("warm".into()),
        pools: vec!["default".into()],
        max_message_rate: Some(MessageRate::per_min(100)),
        daily_quota: None,
    });
    add_every_shaping_field(&mut config);
    config.delivery.relay_host = Some("127.0.0.1:2526".parse().expect("relay host"));
    config.delivery.source_ip = Some("127.0.0.1".parse().expect("ip"));
    config.unsubscribe.base_url = Some("https://u.example".into());
    config.unsubscribe.mailto = Some("unsubscribe@u.example".into());
    config.dkim.domain.push(penguin_config::DkimDomainConfig {
        name: "t.example".into(),
        selectors: vec!["s1".into()],
    });
    config.cluster = Some(penguin_config::ClusterConfig::new("redis://127.0.0.1:6379/0"));
    let table: toml::Table = toml::from_str(&toml::to_string(&config).expect("serialise")).expect("reparse");
    for (section, value) in &table {
        let fields = match value {
            toml::Value::Table(fields) => fields.clone(),
            toml::Value::Array(items) => items[0].as_table().expect("table").clone(),
            other => panic!("unexpected {other:?}"),
        };
        assert!(
            DEFAULT_CONFIG_TOML.contains(&format!("[{section}]")),
            "section {section}"
        );
        for (key, value) in &fields {
            let array_of_tables = value
                .as_array()
                .is_some_and(|items| items.first().is_some_and(toml::Value::is_table));
            assert!(
                DEFAULT_CONFIG_TOML.contains(&format!("\n{key} = "))
                    || DEFAULT_CONFIG_TOML.contains(&format!("# {key} = "))
                    || (array_of_tables && DEFAULT_CONFIG_TOML.contains(&format!("[[{section}.{key}]]"))),
                "{section}.{key}"
            );
        }
    }
}

/// Every optional egress and shaping field set, for `embedded_default_mentions_every_field`.
fn add_every_shaping_field(config: &mut Config) {
    let rate = Some(MessageRate::per_sec(5));
    config.source.push(SourceConfig {
        name: "ip2".into(),
        ip: "192.0.2.2".parse().expect("ip"),
        ehlo_name: Some("mta2.example".into()),
        max_message_rate: rate,
        warmup: Some(penguin_config::SourceWarmupConfig {
            plan: "standard".into(),
            start: "2026-12-01".into(),
        }),
    });
    config.warmup.plan.push(penguin_config::WarmupPlanConfig {
        name: "standard".into(),
        daily: vec![50, 100],
        provider_daily: [("microsoft".to_owned(), vec![20])].into(),
        hours: Some(penguin_config::HourWindow { start: 8, end: 20 }),
        timezone: "UTC".into(),
        overflow: penguin_config::Overflow::Pool,
        min_fill: penguin_config::Factor(0.8),
        max_deferral_rate: penguin_config::Factor(0.1),
        max_bounce_rate: penguin_config::Factor(0.05),
        max_complaint_rate: penguin_config::Factor(0.001),
    });
    config.pool.push(PoolConfig {
        name: "warm".into(),
        sources: vec![PoolMember::new("ip2")],
    });
    config.provider.push(ProviderConfig {
        name: "office365".into(),
        mx_suffixes: vec![".mail.protection.outlook.com".into()],
    });
    let shaping = &mut config.shaping;
    shaping.max_connections = Some(10);
    shaping.max_message_rate = rate;
    shaping.max_connection_rate = rate;
    shaping.max_deliveries_per_connection = Some(100);
    shaping.max_recipients_per_transaction = Some(50);
    shaping.provider.push(ShapingProviderConfig {
        provider: "google".into(),
        max_connections: Some(5),
        max_message_rate: rate,
        max_connection_rate: rate,
        max_deliveries_per_connection: Some(50),
        max_recipients_per_transaction: Some(50),
        provider_max_connections: Some(20),
        provider_max_message_rate: rate,
    });
    shaping.domain.push(ShapingDomainConfig {
        domain: "small.example".into(),
        max_message_rate: MessageRate::per_min(10),
    });
    shaping.rule.push(ShapingRuleConfig {
        name: Some("r".into()),
        provider: Some("yahoo".into()),
        r#match: Some("[TSS04]".into()),
        regex: Some("TSS0[45]".into()),
        action: RuleAction::Suspend,
        duration: Some(HumanDuration::from_secs(60)),
        factor: Some(Factor(0.5)),
        trigger: RuleTrigger::Count(MessageRate::per_hour(2)),
        scope: Some(RuleScope::Provider),
    });
}

#[test]
fn missing_sections_take_defaults() {
    let config =
        Config::from_toml_str("[smtp]\nhostname = \"mx.example.test\"\n").unwrap_or_else(|e| panic!("{e}"));
    let smtp = SmtpConfig {
        hostname: "mx.example.test".into(),
        ..SmtpConfig::default()
    };
    assert_eq!(config.smtp, smtp);
    assert_eq!(config.smtp.max_connections, 1000);
    assert_eq!(config.smtp.max_connections_per_ip, 50);
    assert_eq!(config.smtp.max_errors, 10);
    assert_eq!(config.smtp.command_timeout.get(), Duration::from_secs(300));
    assert_eq!(config.smtp.data_timeout.get(), Duration::from_secs(600));
    assert_eq!(config.smtp.auth_failure_limit, 5);
    assert_eq!(
        config.smtp.auth_failure_window,
        HumanDuration(Duration::from_secs(600))
    );
    assert_eq!(config.smtp.auth_lockout, HumanDuration(Duration::from_secs(900)));
    assert_eq!(config.smtp.shutdown_grace, HumanDuration(Duration::from_secs(30)));
    assert_eq!(config.spool.min_free_space, ByteSize(100_000_000));
    assert_eq!(config.spool.max_batch_messages, 512);
    assert_eq!(config.spool.max_batch_bytes, ByteSize(32_000_000));
    assert_eq!(config.api.listen, addr("127.0.0.1:8025"));
    assert!(config.tls.is_none() && config.tenant.is_empty());
}

#[test]
fn default_hostname_is_the_system_host_name() {
    let name = penguin_config::system_hostname();
    assert!(!name.is_empty());
    assert_eq!(SmtpConfig::default().hostname, name);
}

#[test]
fn serialised_config_round_trips_in_human_form() {
    let config = Config::from_toml_str(&contract_example()).unwrap_or_else(|e| panic!("{e}"));
    let text = toml::to_string(&config).expect("serialise");
    assert!(text.contains("max_message_size = \"25MB\""), "{text}");
    assert!(text.contains("command_timeout = \"5m\""), "{text}");
    assert_eq!(
        Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}")),
        config
    );
}

#[test]
fn unknown_keys_name_their_path_and_line() {
    let text = "[smtp]\nhostname = \"a.test\"\nlisen = [\"127.0.0.1:25\"]\n";
    let errors = errors_of(text);
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = &errors.0[0];
    assert_eq!(error.path, "smtp.lisen");
    assert!(error.reason.contains("unknown field `lisen`"), "{}", error.reason);
    assert!(error.reason.contains("line 3"), "{}", error.reason);
    assert!(
        errors.to_string().starts_with("smtp.lisen: unknown field"),
        "{errors}"
    );

    assert_error("colour = 1\n", "colour", "unknown field");
    assert_error(
        "[tls]\ncert = \"c\"\nkey = \"k\"\nchain = \"x\"\n",
        "tls.chain",
        "unknown field",
    );
    assert_error("[spool]\ndir = \"x\"\n", "spool.dir", "unknown field");
    assert_error("[api]\nport = 1\n", "api.port", "unknown field");
    let two = format!(
        "{}{}extra = 1\n",
        tenant("a", "a", "[\"a.example\"]"),
        tenant("b", "b", "[\"b.example\"]")
    );
    assert_error(&two, "tenant[1].extra", "unknown field");
}

#[test]
fn bad_values_name_their_path_and_reason() {
    let errors = errors_of("[smtp]\nmax_message_size = \"25XB\"\n");
    assert_eq!(
        errors.to_string(),
        "smtp.max_message_size: invalid size \"25XB\": expected a number followed by B, KB, MB, GB, KiB, \
         MiB or GiB (line 2)"
    );
    assert_error(
        "[smtp]\nmax_message_size = -5\n",
        "smtp.max_message_size",
        "must not be negative",
    );
    assert_error(
        "[smtp]\nmax_message_size = 1.5\n",
        "smtp.max_message_size",
        "a size such as",
    );
    assert_error(
        "[smtp]\ncommand_timeout = \"5\"\n",
        "smtp.command_timeout",
        "invalid duration \"5\"",
    );
    assert_error(
        "[smtp]\ncommand_timeout = 5\n",
        "smtp.command_timeout",
        "a unit is required",
    );
    assert_error(
        "[smtp]\nlisten = [\"127.0.0.1:1\", \"nope\"]\n",
        "smtp.listen[1]",
        "expected IP:port",
    );
    assert_error(
        "[smtp]\nlisten = \"127.0.0.1:1\"\n",
        "smtp.listen",
        "invalid type",
    );
    assert_error(
        "[smtp]\nrelay_networks = [\"10.0.0.0/33\"]\n",
        "smtp.relay_networks[0]",
        "CIDR form",
    );
    assert_error(
        "[smtp]\nmax_recipients = -1\n",
        "smtp.max_recipients",
        "invalid value",
    );
    assert_error(
        "[api]\nlisten = \"localhost:80\"\n",
        "api.listen",
        "expected IP:port",
    );
    let bad_domain = format!(
        "{}{}",
        tenant("a", "a", "[\"a.example\"]"),
        tenant("b", "b", "[7]")
    );
    assert_error(&bad_domain, "tenant[1].sender_domains[0]", "invalid type");
    assert_error(
        "[[tenant]]\nname = \"a\"\n",
        "tenant[0]",
        "missing field `username`",
    );
    assert_error("[tls]\ncert = \"c.pem\"\n", "tls", "missing field `key`");
}

#[test]
fn bare_ips_in_relay_networks_are_single_hosts() {
    let text =
        "[smtp]\nhostname = \"a.test\"\nrelay_networks = [\"192.0.2.7\", \"2001:db8::1\", \"10.1.2.3/8\"]\n";
    let config = Config::from_toml_str(text).unwrap_or_else(|e| panic!("{e}"));
    let nets: Vec<String> = config
        .smtp
        .relay_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["192.0.2.7/32", "2001:db8::1/128", "10.0.0.0/8"]);
}

#[test]
fn toml_syntax_errors_report_the_line() {
    let errors = errors_of("[smtp]\nhostname = \n");
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].path, "");
    assert!(
        errors.0[0].reason.starts_with("TOML syntax error at line 2"),
        "{errors}"
    );
    assert!(!errors.to_string().contains('\n'), "{errors}");
}

#[test]
fn open_relay_networks_are_rejected() {
    for net in ["0.0.0.0/0", "::/0", "10.0.0.0/0"] {
        let text = format!("[smtp]\nrelay_networks = [\"127.0.0.0/8\", \"{net}\"]\n");
        assert_error(
            &text,
            "smtp.relay_networks[1]",
            "would make penguin-mta an open relay",
        );
    }
}

#[test]
fn each_smtp_rule_reports_its_path() {
    let table: &[(&str, &str, &str)] = &[
        ("listen = []", "smtp.listen", "at least one address"),
        (
            "listen = [\"127.0.0.1:25\", \"127.0.0.1:25\"]",
            "smtp.listen[1]",
            "listed twice",
        ),
        ("hostname = \"\"", "smtp.hostname", "must not be empty"),
        (
            "hostname = \"bad_host\"",
            "smtp.hostname",
            "not a valid domain name",
        ),
        ("hostname = \"a..b\"", "smtp.hostname", "empty label"),
        (
            "max_message_size = \"999B\"",
            "smtp.max_message_size",
            "between 1KB and 2GB",
        ),
        (
            "max_message_size = \"2000000001\"",
            "smtp.max_message_size",
            "out of range",
        ),
        ("max_recipients = 0", "smtp.max_recipients", "at least 1"),
        ("max_connections = 0", "smtp.max_connections", "at least 1"),
        (
            "max_connections_per_ip = 0",
            "smtp.max_connections_per_ip",
            "at least 1",
        ),
        (
            "max_connections_per_ip = 1001",
            "smtp.max_connections_per_ip",
            "exceeds smtp.max_connections",
        ),
        ("max_errors = 0", "smtp.max_errors", "at least 1"),
        (
            "command_timeout = \"0s\"",
            "smtp.command_timeout",
            "greater than zero",
        ),
        ("data_timeout = \"0ms\"", "smtp.data_timeout", "greater than zero"),
        ("auth_failure_limit = 0", "smtp.auth_failure_limit", "at least 1"),
        (
            "auth_failure_window = \"0s\"",
            "smtp.auth_failure_window",
            "greater than zero",
        ),
        ("auth_lockout = \"0s\"", "smtp.auth_lockout", "greater than zero"),
    ];
    for &(line, path, reason) in table {
        let hostname = if line.starts_with("hostname") {
            ""
        } else {
            "hostname = \"a.test\"\n"
        };
        assert_error(&format!("[smtp]\n{hostname}{line}\n"), path, reason);
    }
    let edges = "[smtp]\nhostname = \"a.test\"\nmax_message_size = \"1KB\"\nshutdown_grace = \"0s\"\n\
                 max_connections = 1\nmax_connections_per_ip = 1\n";
    Config::from_toml_str(edges).unwrap_or_else(|e| panic!("{e}"));
    Config::from_toml_str("[smtp]\nhostname = \"a.test\"\nmax_message_size = \"2GB\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn each_other_section_rule_reports_its_path() {
    assert_error(
        "[smtp]\nhostname = \"a.test\"\n[tls]\ncert = \"\"\nkey = \"k\"\n",
        "tls.cert",
        "must not be empty",
    );
    assert_error(
        "[smtp]\nhostname = \"a.test\"\n[tls]\ncert = \"c\"\nkey = \"\"\n",
        "tls.key",
        "must not be empty",
    );
    assert_error("[spool]\npath = \"\"\n", "spool.path", "must not be empty");
    assert_error(
        "[spool]\nmax_batch_messages = 0\n",
        "spool.max_batch_messages",
        "at least 1",
    );
    assert_error(
        "[spool]\nmax_batch_bytes = 0\n",
        "spool.max_batch_bytes",
        "at least 1B",
    );
    assert_error(
        "[smtp]\nlisten = [\"127.0.0.1:8025\"]\n",
        "api.listen",
        "also in smtp.listen",
    );
}

#[test]
fn each_tenant_rule_reports_its_path() {
    let ok = tenant("a", "a", "[\"a.example\"]");
    let h = hash();
    let table: Vec<(String, &str, &str)> = vec![
        (
            tenant("", "u", "[\"x.example\"]"),
            "tenant[1].name",
            "must not be empty",
        ),
        (
            tenant("has space", "u", "[\"x.example\"]"),
            "tenant[1].name",
            "A-Z a-z 0-9 . _ -",
        ),
        (
            tenant(&"n".repeat(65), "u", "[\"x.example\"]"),
            "tenant[1].name",
            "1-64 characters",
        ),
        (
            tenant("a", "u", "[\"x.example\"]"),
            "tenant[1].name",
            "defined twice",
        ),
        (
            tenant("default", "u", "[\"x.example\"]"),
            "tenant[1].name",
            "reserved for clients in smtp.relay_networks",
        ),
        (
            tenant("b", "", "[\"x.example\"]"),
            "tenant[1].username",
            "must not be empty",
        ),
        (
            tenant("b", "a", "[\"x.example\"]"),
            "tenant[1].username",
            "already used",
        ),
        (
            tenant("b", "u", "[]"),
            "tenant[1].sender_domains",
            "at least one domain",
        ),
        (
            tenant("b", "u", "[\"bad_domain\"]"),
            "tenant[1].sender_domains[0]",
            "not a valid domain name",
        ),
        (
            tenant("b", "u", "[\"x.example\", \"X.Example\"]"),
            "tenant[1].sender_domains[1]",
            "listed twice",
        ),
        (
            tenant("b", "u", "[\"x.example\"]").replace(h, "hunter2"),
            "tenant[1].password_hash",
            "generate one with `penguin-mta hash-password`",
        ),
        (
            tenant("b", "u", "[\"x.example\"]").replace(h, &h.replace("argon2id", "scrypt")),
            "tenant[1].password_hash",
            "not supported",
        ),
    ];
    for (second, path, reason) in &table {
        assert_error(
            &format!("[smtp]\nhostname = \"a.test\"\n{ok}{second}"),
            path,
            reason,
        );
    }
}

#[test]
fn password_hash_errors_do_not_echo_the_value() {
    let text = tenant("a", "a", "[\"a.example\"]")
        .replace(hash(), "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$c2VjcmV0");
    let errors = errors_of(&text);
    let reason = &errors.at("tenant[0].password_hash").expect("error").reason;
    assert!(!reason.contains("c2VjcmV0"), "{reason}");
    let config = Config::from_toml_str(&contract_example()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !format!("{config:?}").contains(hash()),
        "Debug must redact the hash"
    );
}

#[test]
fn sender_domains_are_stored_lowercased() {
    let text = format!(
        "[smtp]\nhostname = \"a.test\"\n{}",
        tenant("a", "a", "[\"Acme.EXAMPLE\", \"b.example\"]")
    );
    let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.tenant[0].sender_domains, ["acme.example", "b.example"]);
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = format!(
        "[smtp]\nlisten = []\nhostname = \"bad host\"\nmax_recipients = 0\nrelay_networks = [\"0.0.0.0/0\"]\n\
         [spool]\nmax_batch_messages = 0\n{}{}",
        tenant("default", "a", "[]"),
        tenant("b", "a", "[\"ok.example\"]"),
    );
    let errors = errors_of(&text);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "smtp.listen",
            "smtp.hostname",
            "smtp.max_recipients",
            "smtp.relay_networks[0]",
            "spool.max_batch_messages",
            "tenant[0].name",
            "tenant[0].sender_domains",
            "tenant[1].username",
        ]
    );
    assert_eq!(errors.to_string().lines().count(), paths.len());
}

#[test]
fn load_reads_a_file_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("penguin.toml");
    std::fs::write(&path, contract_example()).expect("write");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.smtp.hostname, "mta.example.test");

    let missing = dir.path().join("missing.toml");
    let errors = Config::load(&missing).expect_err("missing file");
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].path, "");
    assert!(
        errors.0[0]
            .reason
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{errors}"
    );
}

#[test]
fn api_tokens_and_the_public_listener() {
    let hash = "AB".repeat(32);
    let config = parse(&format!(
        "[api]\nmetrics_require_token = true\n[[api.token]]\nname = \"ops\"\nsha256 = \"{hash}\"\n\
         [public]\nlisten = \"127.0.0.1:9026\"\n"
    ));
    assert!(config.api.metrics_require_token);
    assert_eq!(config.api.tokens[0].name, "ops");
    assert_eq!(config.api.tokens[0].sha256, "ab".repeat(32), "stored lowercase");
    assert_eq!(config.public.listen, addr("127.0.0.1:9026"));
    assert_eq!(Config::embedded_default().public.listen, addr("127.0.0.1:8026"));
    let token = |name: &str, sha: &str| format!("[[api.token]]\nname = \"{name}\"\nsha256 = \"{sha}\"\n");
    assert_error(&token("ops", "abc"), "api.token[0].sha256", "64 hex digits");
    assert_error(
        &token("bad name", &hash),
        "api.token[0].name",
        "not a valid token name",
    );
    assert_error(
        &format!("{}{}", token("ops", &hash), token("ops", &hash)),
        "api.token[1].name",
        "used by another token",
    );
    assert_error(
        "[api]\nlisten = \"127.0.0.1:9025\"\n[public]\nlisten = \"127.0.0.1:9025\"\n",
        "public.listen",
        "is also api.listen",
    );
    assert_error(
        "[[api.token]]\nname = \"ops\"\nsha256 = \"x\"\ntoken = \"plain\"\n",
        "api.token[0].token",
        "unknown field",
    );
}
