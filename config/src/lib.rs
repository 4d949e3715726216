//! penguin-mta configuration: the TOML schema, human specs (`"25MB"`, `"1h30m"`), validation whose errors
//! name the field path, and the embedded default config. Egress sources, pools, providers and traffic
//! shaping (`shaping.rs`, rates in `rate.rs`) come with pure resolution helpers on [`Config`]
//! (`sources`, `pools`, `providers`, `lane_limits`, `provider_limits`, `tenant_pools`) that apply every
//! default and fallback, so the engine never re-derives them.
//!
//! The only IO here is reading the config file ([`Config::load`]) and the system host name (the default
//! for `smtp.hostname`).

mod cluster;
mod delivery;
mod error;
mod providers;
mod rate;
mod resolve;
mod schema;
mod shaping;
mod signing;
mod spec;
mod validate;
mod validate_rules;
mod validate_shaping;
mod validate_warmup;
mod warmup;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use cluster::{ClusterConfig, DEFAULT_REDIS_PORT, RedisUrl, default_node, parse_redis_url};
pub use delivery::{DeliveryConfig, DnsConfig, LogConfig, RelayHost, StartTls};
pub use error::{ConfigError, ConfigErrors};
pub use providers::{BUILTIN_PROVIDERS, OTHER_PROVIDER, builtin_providers};
pub use rate::{Factor, MessageRate, RuleTrigger};
pub use resolve::{EgressSource, LaneLimits, ProviderLimits};
pub use schema::{
    ApiConfig, ApiTokenConfig, PublicConfig, SmtpConfig, SpoolConfig, TenantConfig, TlsConfig,
    system_hostname,
};
pub use shaping::{
    DEFAULT_POOL, DEFAULT_REDUCE_FACTOR, DEFAULT_SOURCE, PoolConfig, PoolMember, ProviderConfig, RuleAction,
    RuleScope, ShapingConfig, ShapingDomainConfig, ShapingProviderConfig, ShapingRuleConfig, SourceConfig,
};
pub use signing::{DkimConfig, DkimDomainConfig, MissingKeyAction, SuppressionConfig, UnsubscribeConfig};
pub use spec::{ByteSize, HumanDuration};
pub use validate::{RELAY_TENANT, check_domain};
pub use validate_warmup::parse_start as parse_warmup_start;
pub use warmup::{
    HourWindow, Overflow, ReputationConfig, SourceWarmupConfig, WarmupConfig, WarmupPlanConfig,
};

/// The embedded default config: every field with a comment, loopback-only listeners, no tenants.
/// `penguin-mta` writes it out for a new install; it is tested to parse and validate.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");

/// The whole engine config. Every section may be omitted and then takes its defaults, except `[tls]`,
/// whose absence means STARTTLS is not offered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[smtp]`: the SMTP listener, limits, timeouts and relay networks.
    pub smtp: SmtpConfig,
    /// `[tls]`: the STARTTLS certificate and key. Default: absent, so STARTTLS is not offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// `[spool]`: where and how accepted mail is stored durably.
    pub spool: SpoolConfig,
    /// `[api]`: the HTTP control API listener and its admin tokens.
    pub api: ApiConfig,
    /// `[public]`: the listener recipients reach (one-click unsubscribe).
    pub public: PublicConfig,
    /// `[dns]`: the resolver for MX and address lookups.
    pub dns: DnsConfig,
    /// `[delivery]`: routing, outbound connections, timeouts and retries.
    pub delivery: DeliveryConfig,
    /// `[log]`: the JSON event log.
    pub log: LogConfig,
    /// `[dkim]`: DKIM keys and which selectors sign.
    pub dkim: DkimConfig,
    /// `[unsubscribe]`: one-click unsubscribe links.
    pub unsubscribe: UnsubscribeConfig,
    /// `[suppression]`: automatic additions to the suppression lists.
    pub suppression: SuppressionConfig,
    /// `[[tenant]]`: the accounts that may submit mail with SMTP AUTH. Default: none (then only
    /// `smtp.relay_networks` clients can send).
    pub tenant: Vec<TenantConfig>,
    /// `[[source]]`: egress IP addresses. Default: none, which means one implicit source `"default"`
    /// sending from `delivery.source_ip` (or the OS's choice), as before sources existed.
    pub source: Vec<SourceConfig>,
    /// `[[pool]]`: weighted groups of sources that tenants send through. Default: none (then the
    /// implicit pool `"default"` holds every source with weight 1).
    pub pool: Vec<PoolConfig>,
    /// `[[provider]]`: providers added to, or replacing by name, the built-in list (`BUILTIN_PROVIDERS`).
    /// Default: none.
    pub provider: Vec<ProviderConfig>,
    /// `[shaping]`: limits per lane, provider and domain, the closed loop and reply rules. Absent means
    /// today's behaviour: the legacy `[delivery]` limits, no rates, closed loop and built-in rules on.
    pub shaping: ShapingConfig,
    /// `[webhooks]`: how tenants' webhook endpoints are called.
    pub webhooks: WebhooksConfig,
    /// `[warmup]`: warm-up plans (`[[warmup.plan]]`) that `[[source]] warmup` refers to.
    pub warmup: WarmupConfig,
    /// `[reputation]`: DNS blocklist checks of the sources' addresses.
    pub reputation: ReputationConfig,
    /// `[cluster]`: several nodes sharing state through Redis. Default: absent, one node on its own
    /// (no Redis needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
}

/// `[webhooks]`: the delivery of events to the tenants' endpoints (made over the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Allow endpoints whose address is loopback, private, link-local or a cloud metadata address.
    /// Default false: such URLs are refused (they would reach this server's API or the internal
    /// network). Tests set it to call a receiver on loopback.
    pub allow_private_targets: bool,
    /// Most events waiting per endpoint; past it the oldest are dropped (counted as `dropped`).
    /// Default 100000.
    pub max_pending_per_endpoint: u64,
    /// Most events per POST. Default 100.
    pub batch_size: usize,
    /// How long one POST may take (connect, TLS, answer). Default `"10s"`.
    pub timeout: HumanDuration,
    /// How long a failing batch is retried (exponential backoff from 1 s, at most 10 min apart);
    /// then it is dropped with a `webhook_failed` event. Default `"24h"`.
    pub max_retry_age: HumanDuration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_private_targets: false,
            max_pending_per_endpoint: 100_000,
            batch_size: 100,
            timeout: HumanDuration::from_secs(10),
            max_retry_age: HumanDuration::from_secs(24 * 3600),
        }
    }
}

impl Config {
    /// Parses and validates a config. On failure returns every validation problem, or the first parse
    /// problem (syntax error, unknown key, bad value), each with its field path.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let mut config = parse(text).map_err(ConfigErrors::from)?;
        let errors = validate::validate(&mut config);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Reads the file at `path` and parses it with [`Config::from_toml_str`].
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::new("", format!("cannot read {}: {error}", path.display())))?;
        Config::from_toml_str(&text)
    }

    /// The embedded default config ([`DEFAULT_CONFIG_TOML`]), parsed.
    pub fn embedded_default() -> Config {
        // Not user input: a test proves the embedded file parses and validates.
        Config::from_toml_str(DEFAULT_CONFIG_TOML).expect("the embedded default config is valid")
    }

    /// The tenant whose SMTP AUTH user name is exactly `username`.
    pub fn tenant_by_username(&self, username: &str) -> Option<&TenantConfig> {
        self.tenant.iter().find(|tenant| tenant.username == username)
    }
}

/// TOML to [`Config`], with the failing field's path (`smtp.listen[0]`) and line number in the error.
fn parse(text: &str) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|error| {
        let at =
            location(text, error.span()).map(|(line, column)| format!(" at line {line}, column {column}"));
        ConfigError::new(
            "",
            format!(
                "TOML syntax error{}: {}",
                at.unwrap_or_default(),
                one_line(error.message())
            ),
        )
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = error.inner();
        let at = location(text, inner.span()).map(|(line, _)| format!(" (line {line})"));
        ConfigError::new(
            path,
            format!("{}{}", one_line(inner.message()), at.unwrap_or_default()),
        )
    })
}

/// 1-based line and column (in characters) of a byte offset, if it lies inside `text`.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> Option<(usize, usize)> {
    let before = text.get(..span?.start)?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    Some((line, column))
}

/// `ConfigErrors` prints one error per line, so a reason must not contain line breaks; serde's Rust type
/// names are replaced by what an operator would write.
fn one_line(message: &str) -> String {
    let mut message = message.trim().replace('\n', "; ");
    for (rust, toml) in [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected a sequence", "expected an array"),
    ] {
        message = message.replace(rust, toml);
    }
    if let Some(start) = message.find("expected struct ") {
        message.replace_range(start.., "expected a table");
    }
    message
}
