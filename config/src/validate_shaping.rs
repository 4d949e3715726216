//! Validation of `[[source]]`, `[[pool]]`, the tenants' pool fields and `[[provider]]`; `[shaping]` is in
//! `validate_rules.rs`. Every rule that fails adds an error with its field path.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::Config;
use crate::providers::{BUILTIN_PROVIDERS, OTHER_PROVIDER};
use crate::shaping::{DEFAULT_POOL, DEFAULT_SOURCE, PoolConfig};
use crate::validate::{Errors, check_domain};

/// Largest pool member weight: enough for any split, small enough that sums never overflow.
const MAX_WEIGHT: u32 = 1000;

/// Canonical forms: provider suffixes lowercase with one leading dot, shaping domains lowercase.
pub(crate) fn normalise(config: &mut Config) {
    for provider in &mut config.provider {
        for suffix in &mut provider.mx_suffixes {
            let trimmed = suffix.trim();
            let bare = trimmed.strip_prefix('.').unwrap_or(trimmed).to_ascii_lowercase();
            *suffix = format!(".{bare}");
        }
    }
    for entry in &mut config.shaping.domain {
        entry.domain = entry.domain.trim().to_ascii_lowercase();
    }
}

/// `[[source]]`, `[[pool]]`, `tenant[].pool`/`pools`, `[[provider]]`.
pub(crate) fn validate(config: &Config, errors: &mut Errors) {
    validate_sources(config, errors);
    validate_pools(config, errors);
    validate_tenant_pools(config, errors);
    validate_providers(config, errors);
}

/// A source, pool, provider or rule name: 1-64 characters from `A-Z a-z 0-9 . _ -`.
pub(crate) fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.len() > 64 || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} is not a valid {what} name: use 1-64 characters from A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

/// Checks a name's syntax and uniqueness (within `seen`) at `path`.
fn check_unique_name<'a>(
    name: &'a str,
    what: &str,
    seen: &mut HashSet<&'a str>,
    path: String,
    errors: &mut Errors,
) {
    match check_name(name, what) {
        Err(reason) => errors.check(false, path, reason),
        Ok(()) => errors.check(
            seen.insert(name),
            path,
            format!("{what} {name:?} is defined twice"),
        ),
    }
}

fn validate_sources(config: &Config, errors: &mut Errors) {
    if !config.source.is_empty() && config.delivery.source_ip.is_some() {
        errors.check(
            false,
            "delivery.source_ip",
            "cannot be combined with [[source]]: give each source its address in source[].ip \
             and remove delivery.source_ip",
        );
    }
    let mut names = HashSet::new();
    let mut ips: HashMap<IpAddr, &str> = HashMap::new();
    for (index, source) in config.source.iter().enumerate() {
        let at = |field: &str| format!("source[{index}].{field}");
        check_unique_name(&source.name, "source", &mut names, at("name"), errors);
        let ip = source.ip;
        if let Some(bad) = unusable_ip(ip) {
            errors.check(
                false,
                at("ip"),
                format!("{ip} is {bad}: use an address of this host"),
            );
        } else if let Some(other) = ips.insert(ip, &source.name) {
            errors.check(
                false,
                at("ip"),
                format!("{ip} is already the ip of source {other:?}"),
            );
        }
        if let Some(ehlo) = &source.ehlo_name
            && let Err(reason) = check_domain(ehlo)
        {
            errors.check(
                false,
                at("ehlo_name"),
                format!("{reason}; use this IP's PTR name"),
            );
        }
    }
}

/// Why `ip` cannot be bound as a source address, if it cannot.
fn unusable_ip(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("the unspecified address (it lets the OS choose)");
    }
    if ip.is_multicast() {
        return Some("a multicast address");
    }
    match ip {
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        _ => None,
    }
}

/// The source names pools may use: the configured ones, or the implicit `"default"`.
fn source_names(config: &Config) -> HashSet<&str> {
    if config.source.is_empty() {
        HashSet::from([DEFAULT_SOURCE])
    } else {
        config.source.iter().map(|s| s.name.as_str()).collect()
    }
}

fn validate_pools(config: &Config, errors: &mut Errors) {
    let sources = source_names(config);
    let mut names = HashSet::new();
    for (index, pool) in config.pool.iter().enumerate() {
        check_unique_name(
            &pool.name,
            "pool",
            &mut names,
            format!("pool[{index}].name"),
            errors,
        );
        validate_members(pool, &format!("pool[{index}].sources"), &sources, errors);
    }
}

fn validate_members(pool: &PoolConfig, path: &str, sources: &HashSet<&str>, errors: &mut Errors) {
    errors.check(!pool.sources.is_empty(), path, "must list at least one source");
    let mut seen = HashSet::new();
    for (index, member) in pool.sources.iter().enumerate() {
        let name = member.name.as_str();
        if !sources.contains(name) {
            let hint = if sources.contains(DEFAULT_SOURCE) && sources.len() == 1 {
                "with no [[source]] the only source is \"default\"".to_owned()
            } else {
                "define it as a [[source]]".to_owned()
            };
            errors.check(
                false,
                format!("{path}[{index}]"),
                format!("unknown source {name:?}: {hint}"),
            );
        } else {
            errors.check(
                seen.insert(name),
                format!("{path}[{index}]"),
                format!("source {name:?} is listed twice in this pool"),
            );
        }
        errors.check(
            (1..=MAX_WEIGHT).contains(&member.weight),
            format!("{path}[{index}].weight"),
            format!("{} is out of range: must be 1..={MAX_WEIGHT}", member.weight),
        );
    }
}

fn validate_tenant_pools(config: &Config, errors: &mut Errors) {
    let mut pools: HashSet<&str> = config.pool.iter().map(|p| p.name.as_str()).collect();
    pools.insert(DEFAULT_POOL);
    let unknown = |name: &str| format!("unknown pool {name:?}: define it as a [[pool]]");
    for (index, tenant) in config.tenant.iter().enumerate() {
        if let Some(pool) = &tenant.pool {
            errors.check(
                pools.contains(pool.as_str()),
                format!("tenant[{index}].pool"),
                unknown(pool),
            );
        }
        let mut seen = HashSet::new();
        for (position, pool) in tenant.pools.iter().enumerate() {
            let at = format!("tenant[{index}].pools[{position}]");
            if !pools.contains(pool.as_str()) {
                errors.check(false, at, unknown(pool));
            } else {
                errors.check(seen.insert(pool), at, format!("{pool:?} is listed twice"));
            }
        }
    }
}

fn validate_providers(config: &Config, errors: &mut Errors) {
    let mut names = HashSet::new();
    let mut claimed: HashMap<&str, &str> = HashMap::new();
    for (index, provider) in config.provider.iter().enumerate() {
        let at = |field: &str| format!("provider[{index}].{field}");
        if provider.name == OTHER_PROVIDER {
            errors.check(
                false,
                at("name"),
                "\"other\" is reserved for sites of no provider; set their limits with \
                 [[shaping.provider]] provider = \"other\"",
            );
        } else {
            check_unique_name(&provider.name, "provider", &mut names, at("name"), errors);
        }
        errors.check(
            !provider.mx_suffixes.is_empty(),
            at("mx_suffixes"),
            "must list at least one MX host suffix, such as \".mail.example.net\"",
        );
        for (position, suffix) in provider.mx_suffixes.iter().enumerate() {
            let path = format!("provider[{index}].mx_suffixes[{position}]");
            if let Err(reason) = check_domain(suffix.strip_prefix('.').unwrap_or(suffix)) {
                errors.check(false, path, reason);
            } else if let Some(owner) = claimed.insert(suffix, &provider.name) {
                let reason = if owner == provider.name {
                    format!("{suffix:?} is listed twice")
                } else {
                    format!("{suffix:?} is already a suffix of provider {owner:?}")
                };
                errors.check(false, path, reason);
            }
        }
    }
}

/// Every provider name a reference may use: built-in, configured, and `"other"`.
pub(crate) fn known_providers(config: &Config) -> HashSet<&str> {
    let mut known: HashSet<&str> = BUILTIN_PROVIDERS.iter().map(|(name, _)| *name).collect();
    known.extend(config.provider.iter().map(|p| p.name.as_str()));
    known.insert(OTHER_PROVIDER);
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_identifiers() {
        for name in ["ip2", "a", "A.b_c-9", &"x".repeat(64), "default"] {
            assert_eq!(check_name(name, "source"), Ok(()), "{name}");
        }
        for name in ["", "has space", "slash/", &"x".repeat(65), "ünï"] {
            assert!(check_name(name, "source").is_err(), "{name:?}");
        }
    }

    #[test]
    fn unusable_source_addresses() {
        for ip in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            assert!(unusable_ip(ip.parse().expect(ip)).is_some(), "{ip}");
        }
        for ip in ["127.0.0.2", "192.0.2.7", "2001:db8::1", "::1"] {
            assert_eq!(unusable_ip(ip.parse().expect(ip)), None, "{ip}");
        }
    }
}
