//! What the scheduler needs of the config, resolved once: sources and pools as indexes, limits per
//! provider, rates per tenant and domain, the reply rules, the closed loop's settings.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use penguin_policy::shaping::{AdaptiveSettings, ProviderTable, Rate, Rule};

use super::names::{PoolId, ProviderId, SourceId};

/// One egress source.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    /// `source.name` (`default` for the implicit one).
    pub name: Arc<str>,
    /// The local address connections are made from (None = the OS's choice).
    pub ip: Option<IpAddr>,
    /// The EHLO name of its sessions.
    pub ehlo_name: String,
    /// `source.max_message_rate`: everything it sends, all destinations.
    pub rate: Option<Rate>,
}

/// One pool.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// `pool.name`.
    pub name: Arc<str>,
    /// Its sources with their weights.
    pub members: Vec<(SourceId, u32)>,
}

/// What a tenant's mail may use.
#[derive(Clone, Debug)]
pub struct TenantSettings {
    /// The pool of its messages without `X-Pool`.
    pub pool: PoolId,
    /// The pools `X-Pool` may name; `None` = any (the relay tenant).
    pub allowed: Option<Vec<PoolId>>,
    /// `tenant.max_message_rate`: all of its deliveries.
    pub rate: Option<Rate>,
}

/// Limits of one (source, site) ready queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LaneLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Messages per second, evenly spaced (before the closed loop's reduction); None = unlimited.
    pub rate: Option<Rate>,
    /// New connections per second, evenly spaced; None = unlimited.
    pub connection_rate: Option<Rate>,
    /// Transactions on one connection before it is closed.
    pub max_deliveries_per_connection: usize,
    /// Recipients in one transaction.
    pub max_recipients_per_transaction: usize,
}

/// Limits of one source summed over all sites of a provider.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ProviderLimits {
    /// Connections open at once from the source to all the provider's sites.
    pub max_connections: Option<usize>,
    /// Messages per second from the source to all the provider's sites.
    pub rate: Option<Rate>,
}

/// Everything the scheduler reads of the config.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The egress sources; a [`SourceId`] indexes this.
    pub sources: Vec<SourceSettings>,
    /// The pools; a [`PoolId`] indexes this.
    pub pools: Vec<PoolSettings>,
    /// Pool `default`: of tenants without a pool, of the relay tenant and of DSNs.
    pub default_pool: PoolId,
    /// Per configured tenant.
    pub tenants: HashMap<String, TenantSettings>,
    /// `[[shaping.domain]]`: all sources together, per recipient domain (lowercase).
    pub domain_rates: HashMap<String, Rate>,
    /// Provider of a site by MX host suffix.
    pub providers: ProviderTable,
    /// Provider names; a [`ProviderId`] indexes this. Includes `other`.
    pub provider_names: Vec<Arc<str>>,
    /// Limits of the ready queues per provider (indexed by [`ProviderId`]).
    pub lane_limits: Vec<LaneLimits>,
    /// Limits per (source, provider) (indexed by [`ProviderId`]).
    pub provider_limits: Vec<ProviderLimits>,
    /// Rules on remote replies, configured first, then the builtin ones.
    pub rules: Vec<Rule>,
    /// Whether throttling replies (class `rate_limited`) reduce a lane's rate by themselves
    /// (`shaping.adaptive`); `reduce` rules act either way.
    pub adaptive: bool,
    /// Cooldown, recovery period and floor of every reduction (automatic or by a rule).
    pub adaptive_settings: AdaptiveSettings,
    /// `delivery.max_connections`: outbound connections in total.
    pub max_connections: usize,
}

impl Settings {
    /// The id of provider `name`, or of `other`.
    pub fn provider_id(&self, name: &str) -> ProviderId {
        let index = self
            .provider_names
            .iter()
            .position(|known| &**known == name)
            .or_else(|| self.provider_names.iter().position(|known| &**known == "other"))
            .unwrap_or(0);
        ProviderId(u16::try_from(index).unwrap_or(u16::MAX))
    }

    /// The name of provider `id`.
    pub fn provider_name(&self, id: ProviderId) -> Arc<str> {
        self.provider_names
            .get(usize::from(id.0))
            .cloned()
            .unwrap_or_else(|| Arc::from("other"))
    }

    /// The limits of a ready queue to a site of `provider`.
    pub fn lane_limits(&self, provider: ProviderId) -> LaneLimits {
        self.lane_limits
            .get(usize::from(provider.0))
            .copied()
            .unwrap_or(LaneLimits {
                max_connections: 10,
                rate: None,
                connection_rate: None,
                max_deliveries_per_connection: 100,
                max_recipients_per_transaction: 50,
            })
    }

    /// The per-source limits of `provider`.
    pub fn provider_limits(&self, provider: ProviderId) -> ProviderLimits {
        self.provider_limits
            .get(usize::from(provider.0))
            .copied()
            .unwrap_or_default()
    }

    /// The pool named `name`.
    pub fn pool_id(&self, name: &str) -> Option<PoolId> {
        self.pools
            .iter()
            .position(|pool| &*pool.name == name)
            .and_then(|index| u16::try_from(index).ok())
            .map(PoolId)
    }

    /// The pool of a message of `tenant` that chose `pool` (`""` = the tenant's default). A pool that no
    /// longer exists (config changed since the message was queued) falls back to the default.
    pub fn message_pool(&self, tenant: &str, pool: &str) -> PoolId {
        let tenant_pool = self
            .tenants
            .get(tenant)
            .map_or(self.default_pool, |settings| settings.pool);
        if pool.is_empty() {
            return tenant_pool;
        }
        self.pool_id(pool).unwrap_or(tenant_pool)
    }

    /// The name of source `id`.
    pub fn source_name(&self, id: SourceId) -> Arc<str> {
        self.sources
            .get(usize::from(id.0))
            .map_or_else(|| Arc::from(""), |source| Arc::clone(&source.name))
    }

    /// The name of pool `id`.
    pub fn pool_name(&self, id: PoolId) -> Arc<str> {
        self.pools
            .get(usize::from(id.0))
            .map_or_else(|| Arc::from(""), |pool| Arc::clone(&pool.name))
    }

    /// The source named `name`.
    pub fn source_id(&self, name: &str) -> Option<SourceId> {
        self.sources
            .iter()
            .position(|source| &*source.name == name)
            .and_then(|index| u16::try_from(index).ok())
            .map(SourceId)
    }
}

/// The policy's rate of a config rate.
pub fn rate_of(rate: penguin_config::MessageRate) -> Option<Rate> {
    Rate::new(
        rate.count,
        u64::try_from(rate.per.as_micros()).unwrap_or(u64::MAX),
    )
}

impl Settings {
    /// Resolves the config: sources, pools, tenants' pools and rates, providers and their limits,
    /// rules (configured first, then the builtin ones unless `shaping.builtin_rules = false`).
    pub fn from_config(config: &penguin_config::Config) -> Result<Settings, String> {
        let sources = sources(config);
        let pools = pools(config, &sources);
        let pool_index = |name: &str| index_of(pools.iter().map(|p| &*p.name), name).map(PoolId);
        let default_pool = pool_index("default").ok_or("no pool named default")?;
        let tenants = config
            .tenant
            .iter()
            .map(|tenant| {
                let (pool, allowed) = config.tenant_pools(&tenant.name);
                let settings = TenantSettings {
                    pool: pool_index(&pool).unwrap_or(default_pool),
                    allowed: Some(allowed.iter().filter_map(|name| pool_index(name)).collect()),
                    rate: tenant.max_message_rate.and_then(rate_of),
                };
                (tenant.name.clone(), settings)
            })
            .collect();
        let (providers, provider_names, lane_limits, provider_limits) = providers(config);
        Ok(Settings {
            sources,
            pools,
            default_pool,
            tenants,
            domain_rates: config
                .shaping
                .domain
                .iter()
                .filter_map(|d| rate_of(d.max_message_rate).map(|rate| (d.domain.clone(), rate)))
                .collect(),
            providers,
            provider_names,
            lane_limits,
            provider_limits,
            rules: rules(config)?,
            adaptive: config.shaping.adaptive,
            adaptive_settings: AdaptiveSettings {
                cooldown_us: micros(config.shaping.adaptive_cooldown.get()),
                recovery_us: micros(config.shaping.adaptive_recovery.get()),
                min_rate: rate_of(config.shaping.adaptive_min_rate).unwrap_or(Rate::ONE_PER_MINUTE),
            },
            max_connections: config.delivery.max_connections,
        })
    }
}

/// The position of `name` among `names`, as a `u16` id.
fn index_of<'a>(mut names: impl Iterator<Item = &'a str>, name: &str) -> Option<u16> {
    names
        .position(|known| known == name)
        .and_then(|i| u16::try_from(i).ok())
}

/// The egress sources (the implicit `default` one without `[[source]]`).
fn sources(config: &penguin_config::Config) -> Vec<SourceSettings> {
    config
        .sources()
        .into_iter()
        .map(|source| SourceSettings {
            name: Arc::from(source.name.as_str()),
            ip: source.ip,
            ehlo_name: source.ehlo_name,
            rate: source.max_message_rate.and_then(rate_of),
        })
        .collect()
}

/// The pools with their members as source ids (the implicit `default` pool included).
fn pools(config: &penguin_config::Config, sources: &[SourceSettings]) -> Vec<PoolSettings> {
    config
        .pools()
        .into_iter()
        .map(|pool| PoolSettings {
            name: Arc::from(pool.name.as_str()),
            members: pool
                .sources
                .iter()
                .filter_map(|member| {
                    let id = index_of(sources.iter().map(|s| &*s.name), &member.name)?;
                    Some((SourceId(id), member.weight))
                })
                .collect(),
        })
        .collect()
}

/// The provider table, the provider names (`other` last) and their lane and provider limits.
fn providers(
    config: &penguin_config::Config,
) -> (ProviderTable, Vec<Arc<str>>, Vec<LaneLimits>, Vec<ProviderLimits>) {
    let providers = config.providers();
    let mut names: Vec<Arc<str>> = providers.iter().map(|p| Arc::from(p.name.as_str())).collect();
    names.push(Arc::from(penguin_config::OTHER_PROVIDER));
    let lanes = names.iter().map(|name| lane_limits(config, name)).collect();
    let aggregate = names
        .iter()
        .map(|name| {
            let limits = config.provider_limits(name);
            ProviderLimits {
                max_connections: limits.max_connections,
                rate: limits.max_message_rate.and_then(rate_of),
            }
        })
        .collect();
    let table = ProviderTable::new(providers.into_iter().map(|p| (p.name, p.mx_suffixes)).collect());
    (table, names, lanes, aggregate)
}

/// Microseconds of a duration (saturating).
fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The lane limits of a provider.
fn lane_limits(config: &penguin_config::Config, provider: &str) -> LaneLimits {
    let limits = config.lane_limits(provider);
    LaneLimits {
        max_connections: limits.max_connections.max(1),
        rate: limits.max_message_rate.and_then(rate_of),
        connection_rate: limits.max_connection_rate.and_then(rate_of),
        max_deliveries_per_connection: limits.max_deliveries_per_connection.max(1),
        max_recipients_per_transaction: limits.max_recipients_per_transaction.max(1),
    }
}

/// The reply rules: configured ones (in file order), then the builtin ones they do not replace.
fn rules(config: &penguin_config::Config) -> Result<Vec<Rule>, String> {
    use penguin_config::{RuleAction as Action, RuleScope as Scope, RuleTrigger};
    use penguin_policy::shaping::{
        ReplyMatcher, RuleAction, RuleScope, Trigger, builtin_rules, effective_rules,
    };
    let mut configured = Vec::with_capacity(config.shaping.rule.len());
    for (index, rule) in config.shaping.rule.iter().enumerate() {
        let path = format!("shaping.rule[{index}]");
        let matcher = match (&rule.r#match, &rule.regex) {
            (Some(text), _) => ReplyMatcher::contains(text),
            (None, Some(pattern)) => {
                ReplyMatcher::regex(pattern).map_err(|error| format!("{path}.regex: {error}"))?
            }
            (None, None) => return Err(format!("{path}: give match or regex")),
        };
        let duration_us = rule.duration.map_or(0, |d| micros(d.get()));
        let scope = match rule.scope {
            Some(Scope::Site) => RuleScope::Site,
            Some(Scope::Provider) => RuleScope::Provider,
            None if rule
                .provider
                .as_deref()
                .is_some_and(|p| p != penguin_config::OTHER_PROVIDER) =>
            {
                RuleScope::Provider
            }
            None => RuleScope::Site,
        };
        let action = match rule.action {
            Action::Suspend => RuleAction::Suspend { duration_us, scope },
            Action::Reduce => RuleAction::Reduce {
                factor: rule
                    .factor
                    .map_or(penguin_policy::shaping::DEFAULT_FACTOR, |f| f.get()),
            },
            Action::Bounce => RuleAction::Bounce,
            Action::Retry => RuleAction::Retry {
                after_us: duration_us,
            },
        };
        let trigger = match rule.trigger {
            RuleTrigger::Immediate => Trigger::Immediate,
            RuleTrigger::Count(rate) => Trigger::Count {
                hits: u32::try_from(rate.count).unwrap_or(u32::MAX),
                window_us: micros(rate.per),
            },
        };
        configured.push(Rule {
            name: rule.name.clone().unwrap_or_else(|| format!("rule-{index}")),
            provider: rule.provider.clone(),
            matcher,
            action,
            trigger,
        });
    }
    Ok(effective_rules(
        builtin_rules(),
        configured,
        config.shaping.builtin_rules,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_name_builtin_providers_and_real_mx_hosts_map_to_them() {
        let settings = Settings::from_config(&penguin_config::Config::embedded_default()).expect("settings");
        for rule in &settings.rules {
            if let Some(provider) = &rule.provider {
                assert!(
                    settings.provider_names.iter().any(|known| **known == **provider),
                    "rule {} names unknown provider {provider}",
                    rule.name
                );
            }
        }
        let cases = [
            ("gmail-smtp-in.l.google.com", "google"),
            ("mta7.am0.yahoodns.net", "yahoo"),
            ("hotmail-com.olc.protection.outlook.com", "microsoft"),
            ("example-com.mail.protection.outlook.com", "microsoft"),
            ("mx01.mail.icloud.com", "apple"),
            ("mx.example.net", "other"),
        ];
        for (host, expected) in cases {
            let provider = settings.providers.provider_of(&[host]);
            assert_eq!(provider, expected, "{host}");
            assert_eq!(&*settings.provider_name(settings.provider_id(provider)), expected);
        }
    }

    #[test]
    fn legacy_delivery_keys_are_the_lane_defaults_and_pools_resolve() {
        let toml = "[delivery]\nmax_connections_per_host = 4\nmax_messages_per_connection = 7\n\
                    [[source]]\nname = \"a\"\nip = \"127.0.0.2\"\n[[source]]\nname = \"b\"\nip = \"127.0.0.3\"\n\
                    [[pool]]\nname = \"warm\"\nsources = [{ name = \"b\", weight = 3 }]\n";
        let config = penguin_config::Config::from_toml_str(toml).expect("config");
        let settings = Settings::from_config(&config).expect("settings");
        let limits = settings.lane_limits(settings.provider_id("other"));
        assert_eq!(
            (limits.max_connections, limits.max_deliveries_per_connection),
            (4, 7)
        );
        let warm = settings.pool_id("warm").expect("warm");
        assert_eq!(
            settings.pools[usize::from(warm.0)].members,
            vec![(SourceId(1), 3)]
        );
        let default = &settings.pools[usize::from(settings.default_pool.0)];
        assert_eq!(default.members, vec![(SourceId(0), 1), (SourceId(1), 1)]);
        assert_eq!(settings.message_pool("anyone", "warm"), warm);
        assert_eq!(settings.message_pool("anyone", "gone"), settings.default_pool);
    }
}
