//! Semantic validation: rules serde cannot express. Every rule that fails adds an error with its field
//! path; nothing stops at the first problem.

use std::collections::HashSet;
use std::time::Duration;

use crate::Config;
use crate::error::ConfigError;
use crate::schema::{SmtpConfig, SpoolConfig, TenantConfig};
use crate::spec::ByteSize;

/// The tenant name given to clients in `smtp.relay_networks`; configured tenants may not use it.
pub const RELAY_TENANT: &str = "default";

const MIN_MESSAGE_SIZE: ByteSize = ByteSize(1_000);
const MAX_MESSAGE_SIZE: ByteSize = ByteSize(2_000_000_000);
const HASH_HINT: &str = "generate one with `penguin-mta hash-password`";

/// Normalises what the schema stores in canonical form (sender domains lowercased), then checks every
/// rule. Returns all problems found; empty means the config is valid.
pub(crate) fn validate(config: &mut Config) -> Vec<ConfigError> {
    for tenant in &mut config.tenant {
        for domain in &mut tenant.sender_domains {
            *domain = domain.trim().to_ascii_lowercase();
        }
    }
    for token in &mut config.api.tokens {
        token.sha256 = token.sha256.trim().to_ascii_lowercase();
    }
    crate::signing::normalise(config);
    crate::validate_shaping::normalise(config);
    let mut errors = Errors::default();
    validate_smtp(&config.smtp, &mut errors);
    validate_relay_networks(&config.smtp, &mut errors);
    if let Some(tls) = &config.tls {
        errors.check(!tls.cert.as_os_str().is_empty(), "tls.cert", "must not be empty");
        errors.check(!tls.key.as_os_str().is_empty(), "tls.key", "must not be empty");
    }
    validate_spool(&config.spool, &mut errors);
    validate_listeners(config, &mut errors);
    validate_api_tokens(&config.api, &mut errors);
    validate_tenants(&config.tenant, &mut errors);
    validate_delivery(config, &mut errors);
    crate::signing::validate(config, &mut errors);
    crate::validate_shaping::validate(config, &mut errors);
    crate::validate_rules::validate(config, &mut errors);
    crate::validate_warmup::validate(config, &mut errors);
    crate::cluster::validate(config.cluster.as_ref(), &mut errors);
    errors.0
}

/// `api.listen` and `public.listen`: not one of the other listeners' addresses.
fn validate_listeners(config: &Config, errors: &mut Errors) {
    let (api, public) = (config.api.listen, config.public.listen);
    let clash = api.port() != 0 && config.smtp.listen.contains(&api);
    errors.check(!clash, "api.listen", format!("{api} is also in smtp.listen"));
    let clash = public.port() != 0 && config.smtp.listen.contains(&public);
    errors.check(
        !clash,
        "public.listen",
        format!("{public} is also in smtp.listen"),
    );
    let clash = public.port() != 0 && public == api;
    errors.check(!clash, "public.listen", format!("{public} is also api.listen"));
}

/// `[[api.token]]`: names valid and unique, hashes 64 hex digits (stored lowercase).
fn validate_api_tokens(api: &crate::ApiConfig, errors: &mut Errors) {
    let mut seen = std::collections::HashSet::new();
    for (index, token) in api.tokens.iter().enumerate() {
        let field = format!("api.token[{index}]");
        if let Err(problem) = crate::validate_shaping::check_name(&token.name, "token") {
            errors.check(false, format!("{field}.name"), problem);
        }
        errors.check(
            seen.insert(token.name.as_str()),
            format!("{field}.name"),
            format!("{:?} is used by another token", token.name),
        );
        errors.check(
            token.sha256.len() == 64 && token.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            format!("{field}.sha256"),
            "must be 64 hex digits (the SHA-256 that `penguin-mta token create` prints)",
        );
    }
}

/// `[dns]`, `[delivery]` and `[log]`.
fn validate_delivery(config: &Config, errors: &mut Errors) {
    let (dns, delivery, log) = (&config.dns, &config.delivery, &config.log);
    errors.check(
        dns.timeout.get() > Duration::ZERO,
        "dns.timeout",
        "must be greater than zero",
    );
    errors.check(dns.attempts >= 1, "dns.attempts", "must be at least 1");
    errors.check(
        delivery.port != 0,
        "delivery.port",
        "must be a TCP port (1-65535)",
    );
    errors.check(
        !delivery.retry.is_empty(),
        "delivery.retry",
        "must list at least one interval",
    );
    for (index, interval) in delivery.retry.iter().enumerate() {
        errors.check(
            interval.get() > Duration::ZERO,
            format!("delivery.retry[{index}]"),
            "must be greater than zero",
        );
    }
    errors.check(
        delivery.retry_jitter_percent <= 100,
        "delivery.retry_jitter_percent",
        "must be 0..=100",
    );
    let counts = [
        (
            "delivery.max_recipients_per_transaction",
            delivery.max_recipients_per_transaction,
        ),
        (
            "delivery.max_messages_per_connection",
            delivery.max_messages_per_connection,
        ),
        (
            "delivery.max_connections_per_host",
            delivery.max_connections_per_host,
        ),
        ("delivery.max_connections", delivery.max_connections),
        ("delivery.max_messages_in_flight", delivery.max_messages_in_flight),
    ];
    for (path, count) in counts {
        errors.check(count >= 1, path, "must be at least 1");
    }
    let durations = [
        ("delivery.max_age", delivery.max_age),
        (
            "delivery.connection_idle_timeout",
            delivery.connection_idle_timeout,
        ),
        ("delivery.connect_timeout", delivery.connect_timeout),
        ("delivery.greeting_timeout", delivery.greeting_timeout),
        ("delivery.command_timeout", delivery.command_timeout),
        ("delivery.data_init_timeout", delivery.data_init_timeout),
        ("delivery.data_block_timeout", delivery.data_block_timeout),
        ("delivery.data_done_timeout", delivery.data_done_timeout),
    ];
    for (path, duration) in durations {
        errors.check(duration.get() > Duration::ZERO, path, "must be greater than zero");
    }
    if let Some(path) = &log.events {
        errors.check(
            !path.as_os_str().is_empty(),
            "log.events",
            "must not be empty (omit it for no event log)",
        );
    }
    errors.check(
        log.events_max_size.bytes() >= 1000,
        "log.events_max_size",
        "must be at least 1KB",
    );
}

/// Collects errors; `check` reads like an assertion.
#[derive(Default)]
pub(crate) struct Errors(Vec<ConfigError>);

impl Errors {
    pub(crate) fn check(&mut self, ok: bool, path: impl Into<String>, reason: impl Into<String>) {
        if !ok {
            self.0.push(ConfigError::new(path, reason));
        }
    }
}

fn validate_smtp(smtp: &SmtpConfig, errors: &mut Errors) {
    errors.check(
        !smtp.listen.is_empty(),
        "smtp.listen",
        "must list at least one address",
    );
    let mut seen = HashSet::new();
    for (index, addr) in smtp.listen.iter().enumerate() {
        let unique = addr.port() == 0 || seen.insert(addr);
        errors.check(
            unique,
            format!("smtp.listen[{index}]"),
            format!("{addr} is listed twice"),
        );
    }
    if let Err(reason) = check_domain(&smtp.hostname) {
        errors.check(
            false,
            "smtp.hostname",
            format!("{reason}; set it to this server's DNS name"),
        );
    }
    let size = smtp.max_message_size;
    errors.check(
        (MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&size),
        "smtp.max_message_size",
        format!("{size} is out of range: must be between {MIN_MESSAGE_SIZE} and {MAX_MESSAGE_SIZE}"),
    );
    errors.check(
        smtp.max_recipients >= 1,
        "smtp.max_recipients",
        "must be at least 1",
    );
    errors.check(
        smtp.max_connections >= 1,
        "smtp.max_connections",
        "must be at least 1",
    );
    let per_ip = smtp.max_connections_per_ip;
    errors.check(per_ip >= 1, "smtp.max_connections_per_ip", "must be at least 1");
    errors.check(
        per_ip <= smtp.max_connections,
        "smtp.max_connections_per_ip",
        format!("{per_ip} exceeds smtp.max_connections ({})", smtp.max_connections),
    );
    errors.check(smtp.max_errors >= 1, "smtp.max_errors", "must be at least 1");
    errors.check(
        smtp.auth_failure_limit >= 1,
        "smtp.auth_failure_limit",
        "must be at least 1",
    );
    let durations = [
        ("smtp.command_timeout", smtp.command_timeout.get()),
        ("smtp.data_timeout", smtp.data_timeout.get()),
        ("smtp.auth_failure_window", smtp.auth_failure_window.get()),
        ("smtp.auth_lockout", smtp.auth_lockout.get()),
    ];
    for (path, duration) in durations {
        errors.check(duration > Duration::ZERO, path, "must be greater than zero");
    }
}

fn validate_relay_networks(smtp: &SmtpConfig, errors: &mut Errors) {
    for (index, net) in smtp.relay_networks.iter().enumerate() {
        errors.check(
            net.prefix_len() != 0,
            format!("smtp.relay_networks[{index}]"),
            format!(
                "{net} matches every address and would make penguin-mta an open relay; \
                 list only the networks of hosts you trust, and give other clients a [[tenant]] login"
            ),
        );
    }
    for (index, net) in smtp.auth_cleartext_networks.iter().enumerate() {
        errors.check(
            net.prefix_len() != 0,
            format!("smtp.auth_cleartext_networks[{index}]"),
            format!(
                "{net} matches every address and would let passwords cross the internet unencrypted; \
                 list only networks you control (clients elsewhere use STARTTLS before AUTH)"
            ),
        );
    }
}

fn validate_spool(spool: &SpoolConfig, errors: &mut Errors) {
    errors.check(
        !spool.path.as_os_str().is_empty(),
        "spool.path",
        "must not be empty",
    );
    errors.check(
        spool.max_batch_messages >= 1,
        "spool.max_batch_messages",
        "must be at least 1",
    );
    errors.check(
        spool.max_batch_bytes.bytes() >= 1,
        "spool.max_batch_bytes",
        "must be at least 1B",
    );
}

fn validate_tenants(tenants: &[TenantConfig], errors: &mut Errors) {
    let mut names = HashSet::new();
    let mut usernames = HashSet::new();
    for (index, tenant) in tenants.iter().enumerate() {
        let at = |field: &str| format!("tenant[{index}].{field}");
        if let Err(reason) = check_tenant_name(&tenant.name) {
            errors.check(false, at("name"), reason);
        } else {
            let name = tenant.name.as_str();
            errors.check(
                names.insert(name),
                at("name"),
                format!("tenant {name:?} is defined twice"),
            );
        }
        let username = tenant.username.as_str();
        if username.is_empty() {
            errors.check(false, at("username"), "must not be empty");
        } else {
            let unique = usernames.insert(username);
            errors.check(
                unique,
                at("username"),
                format!("{username:?} is already used by another tenant"),
            );
        }
        if let Err(reason) = check_password_hash(&tenant.password_hash) {
            errors.check(false, at("password_hash"), format!("{reason}; {HASH_HINT}"));
        }
        validate_sender_domains(tenant, &at("sender_domains"), errors);
    }
}

fn validate_sender_domains(tenant: &TenantConfig, path: &str, errors: &mut Errors) {
    errors.check(
        !tenant.sender_domains.is_empty(),
        path,
        "must list at least one domain",
    );
    let mut seen = HashSet::new();
    for (index, domain) in tenant.sender_domains.iter().enumerate() {
        let at = format!("{path}[{index}]");
        match check_domain(domain) {
            Err(reason) => errors.check(false, at, reason),
            Ok(()) => errors.check(seen.insert(domain), at, format!("{domain:?} is listed twice")),
        }
    }
}

fn check_tenant_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.len() > 64 || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} is not a valid tenant name: use 1-64 characters from A-Z a-z 0-9 . _ -"
        ));
    }
    if name.eq_ignore_ascii_case(RELAY_TENANT) {
        return Err(format!(
            "{name:?} is reserved for clients in smtp.relay_networks; choose another name"
        ));
    }
    Ok(())
}

/// Accepts argon2id/argon2i/argon2d PHC strings with parameters argon2 can verify with. The reason never
/// repeats the hash itself.
fn check_password_hash(hash: &str) -> Result<(), String> {
    if hash.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let parsed = argon2::PasswordHash::new(hash)
        .map_err(|error| format!("not a valid PHC password hash ({error})"))?;
    let algorithm = parsed.algorithm.as_str();
    if !matches!(algorithm, "argon2id" | "argon2i" | "argon2d") {
        return Err(format!("algorithm {algorithm:?} is not supported: use argon2id"));
    }
    argon2::Params::try_from(&parsed).map_err(|error| format!("invalid argon2 parameters ({error})"))?;
    if parsed.hash.is_none() {
        return Err("the PHC string has no hash part".to_owned());
    }
    Ok(())
}

/// A syntactically valid domain name: LDH labels of 1-63 characters that neither start nor end with a
/// hyphen, at most 253 characters in total, no trailing dot. The reason names the offending value.
pub fn check_domain(name: &str) -> Result<(), String> {
    let invalid = |why: &str| Err(format!("{name:?} is not a valid domain name: {why}"));
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 253 {
        return invalid("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return invalid("empty label (leading, trailing or doubled dot)");
        }
        if label.len() > 63 {
            return invalid("a label is longer than 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return invalid("use only letters, digits, hyphens and dots");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return invalid("a label starts or ends with a hyphen");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_syntax() {
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(62)].join(".");
        let good = [
            "localhost",
            "mta.example.test",
            "xn--bcher-kva.example",
            "a-b.c1",
            "EXAMPLE.COM",
        ];
        for name in good {
            assert_eq!(check_domain(name), Ok(()), "{name}");
        }
        let ok_253 = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        assert_eq!(ok_253.len(), 253);
        assert_eq!(check_domain(&ok_253), Ok(()));
        let bad = [
            "",
            "example..com",
            ".example",
            "example.",
            "-a.example",
            "a-.example",
            "under_score.example",
            "sp ace.example",
            "ünïcode.example",
            long_label.as_str(),
            long_name.as_str(),
        ];
        for name in bad {
            assert!(check_domain(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn tenant_name_syntax() {
        for name in ["acme", "a", "A.b_c-9", &"x".repeat(64)] {
            assert_eq!(check_tenant_name(name), Ok(()), "{name}");
        }
        for name in ["", "has space", "slash/", &"x".repeat(65), "default", "Default"] {
            assert!(check_tenant_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn password_hash_must_be_argon2_phc() {
        let bad = [
            "",
            "hunter2",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
        ];
        for hash in bad {
            assert!(check_password_hash(hash).is_err(), "{hash:?}");
        }
        let good = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        assert_eq!(check_password_hash(good), Ok(()));
    }
}
