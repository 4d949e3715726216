//! What the engine asks of a validated config about egress and shaping, with every default and fallback
//! applied in one place: the effective sources, pools and providers, and the limits of a lane.
//! Pure functions of the config.

use std::net::IpAddr;

use crate::Config;
use crate::providers::builtin_providers;
use crate::rate::MessageRate;
use crate::shaping::{DEFAULT_POOL, DEFAULT_SOURCE, PoolConfig, PoolMember, ProviderConfig};

/// A source as the engine uses it: `[[source]]` with its defaults applied, or the implicit `default`
/// source when none is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressSource {
    /// The source's name (`"default"` for the implicit source).
    pub name: String,
    /// The local address to bind before connecting; `None` lets the OS choose (only the implicit source
    /// without `delivery.source_ip`).
    pub ip: Option<IpAddr>,
    /// The EHLO name: the source's `ehlo_name`, else `smtp.hostname`.
    pub ehlo_name: String,
    /// The source's own rate over all destinations; `None` means no limit.
    pub max_message_rate: Option<MessageRate>,
}

/// The limits of one lane, a (source, site) pair, for sites of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneLimits {
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Most messages, spread evenly; `None` means no limit.
    pub max_message_rate: Option<MessageRate>,
    /// Most new connections, spread evenly; `None` means no limit.
    pub max_connection_rate: Option<MessageRate>,
    /// Messages per connection before it is closed.
    pub max_deliveries_per_connection: usize,
    /// Recipients per SMTP transaction.
    pub max_recipients_per_transaction: usize,
}

/// The limits of one source towards all the sites of one provider together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProviderLimits {
    /// Most concurrent connections; `None` means no limit.
    pub max_connections: Option<usize>,
    /// Most messages, spread evenly; `None` means no limit.
    pub max_message_rate: Option<MessageRate>,
}

impl Config {
    /// The egress sources: every `[[source]]` (in file order) with `ehlo_name` resolved, or, when there is
    /// none, the one implicit source `"default"` with `ip` = `delivery.source_ip` (`None`: the OS chooses).
    pub fn sources(&self) -> Vec<EgressSource> {
        if self.source.is_empty() {
            return vec![EgressSource {
                name: DEFAULT_SOURCE.to_owned(),
                ip: self.delivery.source_ip,
                ehlo_name: self.smtp.hostname.clone(),
                max_message_rate: None,
            }];
        }
        self.source
            .iter()
            .map(|source| EgressSource {
                name: source.name.clone(),
                ip: Some(source.ip),
                ehlo_name: source
                    .ehlo_name
                    .clone()
                    .unwrap_or_else(|| self.smtp.hostname.clone()),
                max_message_rate: source.max_message_rate,
            })
            .collect()
    }

    /// The pools: every `[[pool]]` (in file order), then, when none is named `"default"`, the implicit
    /// pool `"default"` holding every source of [`Config::sources`] with weight 1.
    pub fn pools(&self) -> Vec<PoolConfig> {
        let mut pools = self.pool.clone();
        if !pools.iter().any(|pool| pool.name == DEFAULT_POOL) {
            pools.push(PoolConfig {
                name: DEFAULT_POOL.to_owned(),
                sources: self
                    .sources()
                    .into_iter()
                    .map(|s| PoolMember::new(s.name))
                    .collect(),
            });
        }
        pools
    }

    /// The providers: the built-in ones (`BUILTIN_PROVIDERS`), each replaced by the `[[provider]]` of the
    /// same name, then the other `[[provider]]` entries in file order. A suffix that a `[[provider]]`
    /// lists is removed from the built-in providers (so a configured provider can take over part of a
    /// built-in one); a built-in provider may thus end up with no suffix, matching no site.
    pub fn providers(&self) -> Vec<ProviderConfig> {
        let claimed = |suffix: &String| {
            self.provider
                .iter()
                .any(|configured| configured.mx_suffixes.contains(suffix))
        };
        let mut providers: Vec<ProviderConfig> = builtin_providers()
            .into_iter()
            .map(
                |builtin| match self.provider.iter().find(|p| p.name == builtin.name) {
                    Some(configured) => configured.clone(),
                    None => ProviderConfig {
                        mx_suffixes: builtin.mx_suffixes.into_iter().filter(|s| !claimed(s)).collect(),
                        name: builtin.name,
                    },
                },
            )
            .collect();
        for configured in &self.provider {
            if !providers.iter().any(|p| p.name == configured.name) {
                providers.push(configured.clone());
            }
        }
        providers
    }

    /// The limits of a lane to a site of `provider` (a provider name, or `"other"`): each value is the
    /// `[[shaping.provider]]` entry's for that provider if set, else `[shaping]`'s, else the legacy
    /// `[delivery]` key's (`max_connections_per_host`, `max_messages_per_connection`,
    /// `max_recipients_per_transaction`), and for the two rates no limit.
    pub fn lane_limits(&self, provider: &str) -> LaneLimits {
        let shaping = &self.shaping;
        let delivery = &self.delivery;
        let entry = shaping.provider.iter().find(|entry| entry.provider == provider);
        let pick = |from_entry: Option<usize>, from_shaping: Option<usize>, legacy: usize| {
            from_entry.or(from_shaping).unwrap_or(legacy)
        };
        LaneLimits {
            max_connections: pick(
                entry.and_then(|e| e.max_connections),
                shaping.max_connections,
                delivery.max_connections_per_host,
            ),
            max_message_rate: entry
                .and_then(|e| e.max_message_rate)
                .or(shaping.max_message_rate),
            max_connection_rate: entry
                .and_then(|e| e.max_connection_rate)
                .or(shaping.max_connection_rate),
            max_deliveries_per_connection: pick(
                entry.and_then(|e| e.max_deliveries_per_connection),
                shaping.max_deliveries_per_connection,
                delivery.max_messages_per_connection,
            ),
            max_recipients_per_transaction: pick(
                entry.and_then(|e| e.max_recipients_per_transaction),
                shaping.max_recipients_per_transaction,
                delivery.max_recipients_per_transaction,
            ),
        }
    }

    /// The per-source limits over all sites of `provider`, from its `[[shaping.provider]]` entry
    /// (`provider_max_connections`, `provider_max_message_rate`); no limit when absent.
    pub fn provider_limits(&self, provider: &str) -> ProviderLimits {
        self.shaping
            .provider
            .iter()
            .find(|entry| entry.provider == provider)
            .map_or_else(ProviderLimits::default, |entry| ProviderLimits {
                max_connections: entry.provider_max_connections,
                max_message_rate: entry.provider_max_message_rate,
            })
    }

    /// A tenant's pools: (default pool, allowed pools). The default is the tenant's `pool`, else
    /// `"default"`; the allowed pools (what an `X-Pool` header may pick) are the default followed by
    /// `pools` (duplicates dropped). A name that is no configured tenant — notably the relay tenant
    /// `"default"` of `smtp.relay_networks` clients, who are trusted — gets pool `"default"` and may pick
    /// any pool of [`Config::pools`].
    pub fn tenant_pools(&self, tenant: &str) -> (String, Vec<String>) {
        let Some(config) = self.tenant.iter().find(|t| t.name == tenant) else {
            let all = self.pools().into_iter().map(|pool| pool.name).collect();
            return (DEFAULT_POOL.to_owned(), all);
        };
        let default = config.pool.clone().unwrap_or_else(|| DEFAULT_POOL.to_owned());
        let mut allowed = vec![default.clone()];
        for pool in &config.pools {
            if !allowed.contains(pool) {
                allowed.push(pool.clone());
            }
        }
        (default, allowed)
    }
}
