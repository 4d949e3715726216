//! IP warm-up and reputation: `[[warmup.plan]]` (the ramp a new source follows per mailbox provider),
//! `[[source]] warmup = { plan, start }`, and `[reputation]` (DNS blocklist checks of the sources).
//!
//! Field names are a contract with outside tooling. Validation is in `validate_warmup.rs`; the ramp's
//! arithmetic (days, hours, steps) is `penguin_policy::warmup`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::rate::Factor;
use crate::spec::HumanDuration;

/// `[warmup]`: warm-up plans that sources refer to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmupConfig {
    /// `[[warmup.plan]]`: named ramps. Default: none.
    pub plan: Vec<WarmupPlanConfig>,
}

/// `[[warmup.plan]]`: how a new source ramps its daily volume, per provider, gated by its own health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupPlanConfig {
    /// The plan's identifier (`[[source]] warmup.plan`, the API): 1-64 characters from
    /// `A-Z a-z 0-9 . _ -`, unique. Required.
    pub name: String,
    /// Messages per provider per day at each step (step 1 first), each at least 1 and not smaller than
    /// the one before. After the last step the source is warm for that provider (no cap). Required.
    pub daily: Vec<u64>,
    /// Per provider name (built-in or `[[provider]]`, or `"other"`), steps that replace `daily` for
    /// that provider, same rules. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provider_daily: BTreeMap<String, Vec<u64>>,
    /// Sending hours `"HH:00-HH:00"` in `timezone` (end after start, `"24:00"` allowed): the day's cap
    /// opens evenly hour by hour over them (an unused share carries over to the next hour) and nothing
    /// is sent to a warming provider outside them. Default: the whole cap is open from 00:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<HourWindow>,
    /// IANA time zone of the plan's days and hours (`"America/New_York"`; daylight saving handled).
    /// Default `"UTC"`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Where mail over the cap goes: `"pool"` (the pool's other sources), `"pool:NAME"` (the sources of
    /// pool NAME) or `"hold"` (it waits for the source's next opening). Waiting is never an attempt.
    /// Default `"pool"`.
    #[serde(default)]
    pub overflow: Overflow,
    /// A step counts only on a day the source sent at least this share of its cap to the provider
    /// (0..=1). Default 0.8.
    #[serde(default = "default_min_fill")]
    pub min_fill: Factor,
    /// Deferred ÷ sent over a day above which the source steps back one step for that provider
    /// (0..=1). Default 0.10.
    #[serde(default = "default_max_deferral_rate")]
    pub max_deferral_rate: Factor,
    /// Bounced ÷ sent over a day above which the source steps back (0..=1). Default 0.05.
    #[serde(default = "default_max_bounce_rate")]
    pub max_bounce_rate: Factor,
    /// Complaints ÷ sent over a day above which the source steps back (0..=1). Default 0.001.
    #[serde(default = "default_max_complaint_rate")]
    pub max_complaint_rate: Factor,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn default_min_fill() -> Factor {
    Factor(0.8)
}

fn default_max_deferral_rate() -> Factor {
    Factor(0.10)
}

fn default_max_bounce_rate() -> Factor {
    Factor(0.05)
}

fn default_max_complaint_rate() -> Factor {
    Factor(0.001)
}

impl WarmupPlanConfig {
    /// The steps for `provider`: its `provider_daily` entry, else `daily`.
    pub fn steps_for(&self, provider: &str) -> &[u64] {
        self.provider_daily.get(provider).unwrap_or(&self.daily)
    }
}

/// Sending hours of a plan: whole hours `[start, end)` of the local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourWindow {
    /// First hour (0..=23).
    pub start: u8,
    /// Hour after the last (1..=24), greater than `start`.
    pub end: u8,
}

impl HourWindow {
    /// Parses `"08:00-20:00"`.
    pub fn parse(text: &str) -> Result<HourWindow, String> {
        let bad = || format!("{text:?} is not a window of whole hours such as \"08:00-20:00\"");
        let (start, end) = text.trim().split_once('-').ok_or_else(bad)?;
        let hour = |part: &str| -> Result<u8, String> {
            let (h, m) = part.trim().split_once(':').ok_or_else(bad)?;
            if m != "00" {
                return Err(format!(
                    "{text:?}: sending hours are whole hours (minutes must be 00)"
                ));
            }
            h.parse::<u8>().map_err(|_| bad())
        };
        let (start, end) = (hour(start)?, hour(end)?);
        if start > 23 || end > 24 || end <= start {
            return Err(format!(
                "{text:?}: the window must start at 00:00-23:00 and end after its start, at 24:00 at the latest"
            ));
        }
        Ok(HourWindow { start, end })
    }
}

impl fmt::Display for HourWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:00-{:02}:00", self.start, self.end)
    }
}

impl Serialize for HourWindow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HourWindow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WindowVisitor;
        impl Visitor<'_> for WindowVisitor {
            type Value = HourWindow;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("sending hours such as \"08:00-20:00\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<HourWindow, E> {
                HourWindow::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(WindowVisitor)
    }
}

/// Where mail over a warming source's cap goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Through the other sources of the message's pool.
    #[default]
    Pool,
    /// Through the sources of the named pool.
    PoolNamed(String),
    /// It waits for the source's next opening.
    Hold,
}

impl Overflow {
    /// Parses `"pool"`, `"pool:NAME"` or `"hold"`.
    pub fn parse(text: &str) -> Result<Overflow, String> {
        match text {
            "pool" => Ok(Overflow::Pool),
            "hold" => Ok(Overflow::Hold),
            _ => match text.strip_prefix("pool:") {
                Some(name) if !name.is_empty() => Ok(Overflow::PoolNamed(name.to_owned())),
                _ => Err(format!(
                    "{text:?} is not an overflow: use \"pool\", \"pool:NAME\" or \"hold\""
                )),
            },
        }
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Overflow::Pool => f.write_str("pool"),
            Overflow::PoolNamed(name) => write!(f, "pool:{name}"),
            Overflow::Hold => f.write_str("hold"),
        }
    }
}

impl Serialize for Overflow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Overflow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OverflowVisitor;
        impl Visitor<'_> for OverflowVisitor {
            type Value = Overflow;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"pool\", \"pool:NAME\" or \"hold\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Overflow, E> {
                Overflow::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(OverflowVisitor)
    }
}

/// `[[source]] warmup = { plan = "standard", start = "2026-12-01" }`: the source is warming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceWarmupConfig {
    /// The `[[warmup.plan]]` it follows. Required.
    pub plan: String,
    /// The first day of the warm-up (`YYYY-MM-DD`, in the plan's time zone); before it the source
    /// sends nothing to any provider (its mail overflows). Required.
    pub start: String,
}

/// `[reputation]`: DNS blocklist (DNSBL) checks of every source's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReputationConfig {
    /// DNSBL zones each source IP is looked up in (`"zen.spamhaus.org"`): reversed octets (IPv4) or
    /// nibbles (IPv6) under the zone, through `[dns]`. An A answer is a listing; its TXT is the
    /// reason. Default: none (no checks).
    pub dnsbl: Vec<String>,
    /// How often every source is looked up in every zone. Default `"15m"`, at least `"1m"`.
    pub check_every: HumanDuration,
    /// A listed source sends nothing (its mail goes through the pool's other sources) until it is
    /// delisted. Default true; false only reports the listing (events, status, metrics).
    pub suspend_on_listing: bool,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            dnsbl: Vec::new(),
            check_every: HumanDuration::from_secs(15 * 60),
            suspend_on_listing: true,
        }
    }
}
