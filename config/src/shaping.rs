//! Egress and traffic shaping: `[[source]]` (egress IPs), `[[pool]]` (weighted groups of sources a tenant
//! sends through), `[[provider]]` (sites grouped by MX host suffix) and `[shaping]` (limits per (source,
//! site) lane, per provider and per recipient domain, and rules on remote replies).
//!
//! Field names are a contract with outside tooling. Resolution (implicit source and pool, built-in
//! providers, limit precedence) is in `resolve.rs`, validation in `validate_shaping.rs`.

use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::rate::{Factor, MessageRate, RuleTrigger};
use crate::spec::HumanDuration;

/// The name of the implicit source used when no `[[source]]` is configured.
pub const DEFAULT_SOURCE: &str = "default";
/// The name of the pool used by tenants without `pool`; implicit (every source, weight 1) unless defined.
pub const DEFAULT_POOL: &str = "default";

/// `[[source]]`: one egress IP address. Mail leaves from a source; limits and reputation are per source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's identifier in pools, events and metrics: 1-64 characters from `A-Z a-z 0-9 . _ -`,
    /// unique. Required.
    pub name: String,
    /// Local address outbound connections of this source are bound to before connecting. It must be an
    /// address of this host (`check-config` verifies that), unique, neither unspecified nor multicast.
    /// Required. Cannot be combined with `delivery.source_ip`.
    pub ip: IpAddr,
    /// The EHLO name this source announces; receivers compare it with the PTR name of `ip`, so set it to
    /// that name. Default: `smtp.hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ehlo_name: Option<String>,
    /// Most messages this source sends, all destinations together, as `"N/s"`, `"N/min"`, `"N/h"` or
    /// `"N/d"` (spread evenly, no burst). Use it to warm up a new IP. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_rate: Option<MessageRate>,
    /// `{ plan = "standard", start = "2026-12-01" }`: the source is new and ramps its volume per
    /// provider by that `[[warmup.plan]]` from that day. Default: none (the source is warm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<crate::warmup::SourceWarmupConfig>,
}

/// `[[pool]]`: a weighted group of sources. A message is sent through one source of its pool, chosen
/// by weight among the sources that may send now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's identifier (tenants' `pool`/`pools`, the `X-Pool` header): 1-64 characters from
    /// `A-Z a-z 0-9 . _ -`, unique. `"default"` is the pool of tenants without `pool`; when no pool has
    /// that name, an implicit one holds every source with weight 1. Required.
    pub name: String,
    /// Member sources, each a name (`"ip2"`, weight 1) or `{ name = "ip3", weight = 3 }`; a source with
    /// weight 3 gets three times the share of one with weight 1. Names must be `[[source]]` names (or
    /// `"default"` when there are none), each once. Required, at least one.
    pub sources: Vec<PoolMember>,
}

/// One source of a pool and its share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolMember {
    /// The source's name.
    pub name: String,
    /// Relative share of the pool's messages, 1..=1000. Default 1.
    pub weight: u32,
}

impl PoolMember {
    /// A member with weight 1.
    pub fn new(name: impl Into<String>) -> Self {
        PoolMember {
            name: name.into(),
            weight: 1,
        }
    }
}

/// The table form of a pool member (`{ name = "ip3", weight = 3 }`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolMemberTable {
    name: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

impl<'de> Deserialize<'de> for PoolMember {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;
        impl<'de> Visitor<'de> for MemberVisitor {
            type Value = PoolMember;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a source name or a table { name = \"ip3\", weight = 3 }")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<PoolMember, E> {
                Ok(PoolMember::new(name))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PoolMember, A::Error> {
                let table = PoolMemberTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(PoolMember {
                    name: table.name,
                    weight: table.weight,
                })
            }
        }
        deserializer.deserialize_any(MemberVisitor)
    }
}

/// `[[provider]]`: adds a provider, or replaces the built-in one of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider's identifier in `[[shaping.provider]]`, rules, events and metrics: 1-64 characters
    /// from `A-Z a-z 0-9 . _ -`, unique; `"other"` is reserved for sites of no provider. Required.
    pub name: String,
    /// MX host name suffixes of this provider's sites (`".google.com"` matches `aspmx.l.google.com`).
    /// Stored lowercase with a leading dot (added if missing). When suffixes of several providers match
    /// a host, the longest wins; a suffix listed here is taken away from any built-in provider, and may
    /// not be listed by another `[[provider]]`. Required, at least one.
    pub mx_suffixes: Vec<String>,
}

/// `[shaping]`: how fast mail leaves. Limits apply per lane, a (source, site) pair (site = the set of MX
/// hosts of a destination, so domains hosted together share limits), unless said otherwise. Each count
/// or rate left out falls back to the legacy `[delivery]` key named in its comment, or is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShapingConfig {
    /// Most concurrent connections per lane. Default: `delivery.max_connections_per_host` (10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Most messages per lane, spread evenly (GCRA, no burst): `"N/s"`, `"N/min"`, `"N/h"`, `"N/d"`.
    /// Default: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_rate: Option<MessageRate>,
    /// Most new connections per lane, spread evenly, e.g. `"100/min"`. Default: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connection_rate: Option<MessageRate>,
    /// Messages sent over one connection before it is closed. Default:
    /// `delivery.max_messages_per_connection` (100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deliveries_per_connection: Option<usize>,
    /// Recipients of one domain per SMTP transaction. Default: `delivery.max_recipients_per_transaction`
    /// (50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_recipients_per_transaction: Option<usize>,
    /// The closed loop: slow a lane down when the remote side pushes back (4xx throttling replies,
    /// connection refusals) and speed it up again once it accepts. Default `true`.
    pub adaptive: bool,
    /// Apply penguin-mta's built-in reply rules (known throttling and blocking replies of the big
    /// providers); a `[[shaping.rule]]` with a built-in rule's name replaces that rule. Default `true`.
    pub builtin_rules: bool,
    /// Closed loop: the least time between two slow-downs of one lane, so one burst of deferrals counts
    /// once. Default `"1m"`; must be greater than zero.
    pub adaptive_cooldown: HumanDuration,
    /// Closed loop: how long a slowed-down lane must see no pushback before its rate is raised one step
    /// back towards its limit. Default `"5m"`; must be greater than zero.
    pub adaptive_recovery: HumanDuration,
    /// Closed loop: the floor below which a lane is never slowed (it is suspended by a rule instead).
    /// Default `"1/min"`.
    pub adaptive_min_rate: MessageRate,
    /// `[[shaping.provider]]`: limits for the sites of one provider (overriding the values above), and
    /// limits per source summed over all of the provider's sites. Default: none.
    pub provider: Vec<ShapingProviderConfig>,
    /// `[[shaping.domain]]`: a rate for one recipient domain, all sources together. Default: none.
    pub domain: Vec<ShapingDomainConfig>,
    /// `[[shaping.rule]]`: what to do when a remote reply matches. Default: none (built-in rules only).
    pub rule: Vec<ShapingRuleConfig>,
}

impl Default for ShapingConfig {
    fn default() -> Self {
        ShapingConfig {
            max_connections: None,
            max_message_rate: None,
            max_connection_rate: None,
            max_deliveries_per_connection: None,
            max_recipients_per_transaction: None,
            adaptive: true,
            builtin_rules: true,
            adaptive_cooldown: HumanDuration::from_secs(60),
            adaptive_recovery: HumanDuration::from_secs(5 * 60),
            adaptive_min_rate: MessageRate::per_min(1),
            provider: Vec::new(),
            domain: Vec::new(),
            rule: Vec::new(),
        }
    }
}

/// `[[shaping.provider]]`: limits for the lanes to one provider's sites, and per-source limits over all
/// of them. Fields left out keep the `[shaping]` value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapingProviderConfig {
    /// A built-in or `[[provider]]` name, or `"other"` (sites of no provider). Unique. Required.
    pub provider: String,
    /// Most concurrent connections per lane (source, site) to this provider's sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Most messages per lane, spread evenly, e.g. `"50/s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_rate: Option<MessageRate>,
    /// Most new connections per lane, spread evenly, e.g. `"100/min"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_rate: Option<MessageRate>,
    /// Messages per connection before it is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deliveries_per_connection: Option<usize>,
    /// Recipients per SMTP transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recipients_per_transaction: Option<usize>,
    /// Most concurrent connections of one source to all of this provider's sites together (Gmail counts
    /// connections per sending IP, not per MX host). Default: no limit. Not for `"other"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_max_connections: Option<usize>,
    /// Most messages of one source to all of this provider's sites together, spread evenly, e.g.
    /// `"3000/h"`. Default: no limit. Not for `"other"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_max_message_rate: Option<MessageRate>,
}

/// `[[shaping.domain]]`: one recipient domain's rate, all sources and sites together (a small company's
/// server that accepts only so much).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapingDomainConfig {
    /// The recipient domain (after the `@`), matched exactly and case-insensitively; stored lowercase.
    /// Unique. Required.
    pub domain: String,
    /// Most messages to this domain, spread evenly, e.g. `"10/min"`. Required.
    pub max_message_rate: MessageRate,
}

/// What a matching reply rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Stop sending on the rule's scope for `duration`; queued mail waits (it is not an attempt).
    Suspend,
    /// Multiply the lane's message rate by `factor` (the closed loop raises it again later).
    Reduce,
    /// Fail the recipient permanently (bounce) whatever the reply code said.
    Bounce,
    /// Treat the reply as temporary and retry the recipient after `duration`.
    Retry,
}

/// What a `suspend` applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleScope {
    /// The lane whose reply matched: this source to this site.
    Site,
    /// This source to every site of the rule's provider.
    Provider,
}

/// `[[shaping.rule]]`: an action taken when a remote SMTP reply matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapingRuleConfig {
    /// Identifier in events and metrics: 1-64 characters from `A-Z a-z 0-9 . _ -`, unique. A rule with a
    /// built-in rule's name replaces that rule. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only replies from this provider's sites (a built-in or `[[provider]]` name, or `"other"`).
    /// Default: none (replies from every site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Text or enhanced status code the reply must contain, case-insensitively (`"4.7.28"`,
    /// `"[TSS04]"`). Exactly one of `match` and `regex` is required.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<String>,
    /// A regular expression (Rust `regex` syntax) the reply line `"CODE ENHANCED TEXT"` must match,
    /// instead of `match`; case-sensitive unless it starts with `(?i)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `"suspend"`, `"reduce"`, `"bounce"` or `"retry"`. Required.
    pub action: RuleAction,
    /// How long a `suspend` lasts, or when a `retry` is due, e.g. `"30m"`. Required for those two actions
    /// (and greater than zero), refused for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    /// The rate multiplier of a `reduce`, strictly between 0 and 1. Default 0.5; refused for other actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<Factor>,
    /// `"immediate"` (the first match fires) or `"N/s"`, `"N/min"`, `"N/h"`, `"N/d"`: N matches within the
    /// period fire (N ≤ 10000). Default `"immediate"`.
    #[serde(default)]
    pub trigger: RuleTrigger,
    /// What a `suspend` stops: `"site"` (the lane that got the reply) or `"provider"` (this source to all
    /// the provider's sites). Default: `"provider"` when the rule names a provider other than `"other"`,
    /// else `"site"`. Only for `suspend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<RuleScope>,
}

/// The factor of a `reduce` rule without `factor`.
pub const DEFAULT_REDUCE_FACTOR: f64 = 0.5;

impl ShapingRuleConfig {
    /// The scope a `suspend` applies to: `scope` if set, else `Provider` when the rule names a provider
    /// (other than `"other"`), else `Site`.
    pub fn effective_scope(&self) -> RuleScope {
        match (self.scope, self.provider.as_deref()) {
            (Some(scope), _) => scope,
            (None, Some(provider)) if provider != crate::providers::OTHER_PROVIDER => RuleScope::Provider,
            (None, _) => RuleScope::Site,
        }
    }

    /// The multiplier of a `reduce`: `factor`, or [`DEFAULT_REDUCE_FACTOR`].
    pub fn reduce_factor(&self) -> f64 {
        self.factor.map_or(DEFAULT_REDUCE_FACTOR, Factor::get)
    }
}
