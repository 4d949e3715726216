//! The TOML schema. Field names are a contract with outside tooling; the doc comments are the reference
//! documentation operators read, so each says the unit, the default and why the knob exists.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::spec::{ByteSize, HumanDuration};

/// `[smtp]`: the SMTP reception side (where tenants submit mail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Socket addresses (`"IP:port"`, IPv6 as `"[::1]:2525"`) the SMTP listener binds. Default
    /// `["127.0.0.1:2525"]`: loopback only, so a fresh install is not reachable from the network until
    /// the operator says so. Must not be empty.
    #[serde(deserialize_with = "de_socket_addrs")]
    pub listen: Vec<SocketAddr>,
    /// The server's own domain name, announced in the 220 greeting and EHLO replies and used as the EHLO
    /// name when delivering. Default: the system host name (`/proc/sys/kernel/hostname`, `"localhost"` if
    /// unreadable). Receivers check it against reverse DNS, so set it to the egress IP's PTR name.
    pub hostname: String,
    /// Largest message accepted, in bytes or a size such as `"25MB"` (KB/MB/GB are 1000-based,
    /// KiB/MiB/GiB 1024-based). Default `"25MB"`. Advertised in the EHLO `SIZE` extension; larger
    /// messages get 552. Allowed range 1KB..=2GB.
    pub max_message_size: ByteSize,
    /// Most recipients accepted in one transaction (RCPT TO commands); further ones get 452 so the client
    /// retries them in a new transaction (RFC 5321 4.5.3.1.8 requires at least 100). Default 1000.
    pub max_recipients: usize,
    /// Networks in CIDR form (`"10.0.0.0/8"`, `"::1/128"`; a bare IP means that one host) whose clients may
    /// relay without AUTH. Their mail is attributed to the tenant `"default"` with any sender domain, so
    /// list only hosts you fully trust. Default `[]`. A `/0` network is refused (open relay).
    #[serde(deserialize_with = "de_networks")]
    pub relay_networks: Vec<IpNet>,
    /// Networks (CIDR) whose clients may use AUTH before STARTTLS. Everywhere else AUTH is offered only
    /// inside TLS so passwords never cross a network in the clear. Clients in `relay_networks` may too.
    /// Default `["127.0.0.0/8", "::1/128"]` (loopback); `[]` requires TLS for AUTH from every client.
    /// A `/0` network is refused.
    #[serde(deserialize_with = "de_networks")]
    pub auth_cleartext_networks: Vec<IpNet>,
    /// Most concurrent SMTP sessions across all clients; further connections get 421 4.7.0 and are
    /// closed. Bounds memory and file descriptors. Default 1000.
    pub max_connections: usize,
    /// Most concurrent SMTP sessions from one client IP; further connections get 421. Keeps one client
    /// from taking every slot. Default 50; must not exceed `max_connections`.
    pub max_connections_per_ip: usize,
    /// Protocol errors (bad commands, bad sequence) tolerated in one session before the server answers
    /// 421 and closes it, to shed misbehaving or hostile clients. Default 10.
    pub max_errors: u32,
    /// How long the server waits for the next command before answering 421 and closing (RFC 5321
    /// 4.5.3.2.7 recommends 5 minutes). Default `"5m"`; must be greater than zero.
    pub command_timeout: HumanDuration,
    /// How long the server waits for each chunk of message data (DATA until the terminating `.`, or each
    /// BDAT block) before giving up on the transaction. Default `"10m"`; must be greater than zero.
    pub data_timeout: HumanDuration,
    /// Failed AUTH attempts from one IP, within `auth_failure_window`, that lock that IP out for
    /// `auth_lockout`. Slows password guessing. Default 5.
    pub auth_failure_limit: u32,
    /// The window in which failed AUTH attempts from one IP are counted (it starts at the first failure). Default `"10m"`.
    pub auth_failure_window: HumanDuration,
    /// How long an IP that hit `auth_failure_limit` is refused (421 on connect). Default `"15m"`.
    pub auth_lockout: HumanDuration,
    /// On SIGTERM the listener stops accepting at once; this is how long transactions already in flight
    /// may take to finish before their sessions are closed with 421. Default `"30s"`; `"0s"` closes them
    /// immediately (the client retries; nothing acknowledged is lost).
    pub shutdown_grace: HumanDuration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            hostname: system_hostname(),
            max_message_size: ByteSize(25_000_000),
            max_recipients: 1000,
            relay_networks: Vec::new(),
            auth_cleartext_networks: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|net| net.parse().ok())
                .collect(),
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_errors: 10,
            command_timeout: HumanDuration::from_secs(5 * 60),
            data_timeout: HumanDuration::from_secs(10 * 60),
            auth_failure_limit: 5,
            auth_failure_window: HumanDuration::from_secs(10 * 60),
            auth_lockout: HumanDuration::from_secs(15 * 60),
            shutdown_grace: HumanDuration::from_secs(30),
        }
    }
}

/// The system host name, the default for `smtp.hostname`. This is the one bit of IO besides reading the
/// config file; a missing or empty file gives `"localhost"`.
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `[tls]`: the certificate for STARTTLS. Absent means STARTTLS is not offered (and AUTH is then only
/// safe on loopback). Both files are read by the engine at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first. Required when `[tls]` is present; relative paths
    /// are relative to the working directory.
    pub cert: PathBuf,
    /// PEM file with the private key for `cert` (PKCS#8, PKCS#1 or SEC1). Required when `[tls]` is
    /// present; keep it readable only by the penguin-mta user.
    pub key: PathBuf,
}

/// `[spool]`: the durable message store (RocksDB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of the spool database; created if missing. Relative paths are relative to the working
    /// directory. Default `"data/spool"`. Put it on a disk that honours fsync: acceptance waits for it.
    pub path: PathBuf,
    /// Free space (bytes or a size such as `"100MB"`) below which, on the spool's filesystem, the server
    /// answers 452 4.3.1 instead of accepting mail, so a full disk never loses an acknowledged message
    /// (like Postfix `queue_minfree`). Default `"100MB"`; `0` disables the check.
    pub min_free_space: ByteSize,
    /// Group commit: most messages written in one synced RocksDB write batch. Bigger batches mean fewer
    /// fsyncs under load; each waiting session is acknowledged when its batch is synced. Default 512.
    pub max_batch_messages: usize,
    /// Group commit: most bytes (bodies plus envelopes) in one synced write batch; a single larger message
    /// still forms a batch of its own. Default `"32MB"`.
    pub max_batch_bytes: ByteSize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            path: PathBuf::from("data/spool"),
            min_free_space: ByteSize(100_000_000),
            max_batch_messages: 512,
            max_batch_bytes: ByteSize(32_000_000),
        }
    }
}

/// `[api]`: the HTTP control API (`/v1/...`, `/metrics`, `/healthz`). Every `/v1` route needs
/// `Authorization: Bearer TOKEN`: an admin token listed here, or a tenant API key made over the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Socket address (`"IP:port"`) the control API binds. Default `"127.0.0.1:8025"`: loopback only,
    /// because the API controls the server.
    #[serde(deserialize_with = "de_socket_addr")]
    pub listen: SocketAddr,
    /// `[[api.token]]`: admin tokens, which reach every route. Only the SHA-256 of each token is
    /// stored; `penguin-mta token create --name NAME` makes a token and prints its entry. Default none
    /// (then only tenant API keys, which an admin token creates, and the open routes work).
    #[serde(rename = "token", skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<ApiTokenConfig>,
    /// Require a token for `/metrics` and `/healthz` as well. Default false (scrapers and health
    /// checks usually carry no token; neither route shows tenant data).
    pub metrics_require_token: bool,
    /// Most recipients of one `POST /v1/messages` (each gets its own message); more is a 413 naming
    /// the limit. Default 1000.
    pub max_recipients_per_request: usize,
    /// Largest request body the API reads (`"25MB"`); a larger one is a 413. Default `"25MB"`.
    pub max_request_size: crate::spec::ByteSize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8025)),
            tokens: Vec::new(),
            metrics_require_token: false,
            max_recipients_per_request: 1000,
            max_request_size: crate::spec::ByteSize(25_000_000),
        }
    }
}

/// One `[[api.token]]`: an admin token of the control API, by the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    /// Who holds the token (shown in logs): 1-64 characters from `A-Z a-z 0-9 . _ -`, unique.
    /// Required.
    pub name: String,
    /// The hex SHA-256 of the token (64 hex digits; the token itself is never stored). Required.
    pub sha256: String,
}

/// `[public]`: the listener recipients reach (one-click unsubscribe links). It serves only
/// `GET/POST /u/{token}` and `/healthz`; everything else there is 404.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicConfig {
    /// Socket address (`"IP:port"`) of the public listener. Default `"127.0.0.1:8026"`; put it (or a
    /// proxy in front of it) where recipients' mail clients can reach it, and set
    /// `unsubscribe.base_url` to its public URL. Must differ from `api.listen`.
    #[serde(deserialize_with = "de_socket_addr")]
    pub listen: SocketAddr,
}

impl Default for PublicConfig {
    fn default() -> Self {
        PublicConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8026)),
        }
    }
}

/// `[[tenant]]`: an account that submits mail with SMTP AUTH. Every message carries its tenant.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's identifier in queues, events, metrics and the API: 1-64 characters from
    /// `A-Z a-z 0-9 . _ -`, unique. `"default"` is reserved for `smtp.relay_networks` clients. Required.
    pub name: String,
    /// The SMTP AUTH (PLAIN/LOGIN) user name, matched exactly; unique across tenants. Required.
    pub username: String,
    /// The AUTH password as an argon2 PHC string (`$argon2id$v=19$m=...`), never the password itself.
    /// Generate one with `penguin-mta hash-password`. Required.
    pub password_hash: String,
    /// Domains this tenant may use in MAIL FROM (the envelope sender's domain must be one of these,
    /// exactly; subdomains must be listed too). Matched case-insensitively. Required, at least one.
    pub sender_domains: Vec<String>,
    /// Send a delivery status notification (RFC 3464 bounce message) to the envelope sender when a
    /// recipient bounces or expires. Never for the null sender. Default `true`.
    #[serde(default = "default_true")]
    pub dsn: bool,
    /// Add one-click unsubscribe headers (RFC 8058: `List-Unsubscribe: <BASE_URL/u/TOKEN>` and
    /// `List-Unsubscribe-Post`) to messages that have none, one token per recipient (a message to several
    /// recipients is stored as one copy per recipient). Default `false`.
    #[serde(default)]
    pub list_unsubscribe: bool,
    /// Overrides `dkim.missing_key` for this tenant: `"unsigned"` or `"reject"`. Default: none (the
    /// `[dkim]` setting applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim_missing_key: Option<crate::signing::MissingKeyAction>,
    /// The pool (`[[pool]]` name) this tenant's mail leaves through unless a message picks another.
    /// Default: none, meaning pool `"default"` (implicit unless defined: every source, weight 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Further pools a message of this tenant may pick with the `X-Pool` header (its `pool` is always
    /// allowed). Default `[]`: only `pool`.
    #[serde(default)]
    pub pools: Vec<String>,
    /// Most messages of this tenant, all deliveries together, spread evenly: `"N/s"`, `"N/min"`, `"N/h"`,
    /// `"N/d"`. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_rate: Option<crate::rate::MessageRate>,
    /// Most recipients this tenant may have accepted per UTC day (SMTP and HTTP together); past it,
    /// MAIL FROM gets `452 4.7.1` naming the quota until midnight UTC. Default: no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_quota: Option<u64>,
}

/// Serde default for flags that are on unless turned off.
fn default_true() -> bool {
    true
}

/// Written by hand so the password hash never lands in logs (it is an offline-crackable secret).
impl fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantConfig")
            .field("name", &self.name)
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("sender_domains", &self.sender_domains)
            .field("dsn", &self.dsn)
            .field("list_unsubscribe", &self.list_unsubscribe)
            .field("dkim_missing_key", &self.dkim_missing_key)
            .field("pool", &self.pool)
            .field("pools", &self.pools)
            .field("max_message_rate", &self.max_message_rate)
            .field("daily_quota", &self.daily_quota)
            .finish()
    }
}

const ADDR_EXPECTED: &str = "expected IP:port such as \"127.0.0.1:2525\" or \"[::1]:2525\"";
const NET_EXPECTED: &str =
    "expected a network in CIDR form such as \"10.0.0.0/8\" or \"::1/128\", or a single IP address";

/// A listen address with an error message that says what is accepted (serde's own is terse).
struct ListenAddr(SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AddrVisitor;
        impl Visitor<'_> for AddrVisitor {
            type Value = ListenAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ADDR_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ListenAddr, E> {
                text.trim()
                    .parse()
                    .map(ListenAddr)
                    .map_err(|_| E::custom(format!("invalid address {text:?}: {ADDR_EXPECTED}")))
            }
        }
        deserializer.deserialize_str(AddrVisitor)
    }
}

/// A relay network; a bare IP address is accepted as a single-host network.
struct Network(IpNet);

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NetVisitor;
        impl Visitor<'_> for NetVisitor {
            type Value = Network;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(NET_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Network, E> {
                let trimmed = text.trim();
                if let Ok(net) = trimmed.parse::<IpNet>() {
                    return Ok(Network(net.trunc()));
                }
                trimmed
                    .parse::<IpAddr>()
                    .map(|ip| Network(IpNet::from(ip)))
                    .map_err(|_| E::custom(format!("invalid network {text:?}: {NET_EXPECTED}")))
            }
        }
        deserializer.deserialize_str(NetVisitor)
    }
}

fn de_socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    ListenAddr::deserialize(deserializer).map(|addr| addr.0)
}

fn de_socket_addrs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<ListenAddr>::deserialize(deserializer).map(|addrs| addrs.into_iter().map(|a| a.0).collect())
}

fn de_networks<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<Network>::deserialize(deserializer).map(|nets| nets.into_iter().map(|n| n.0).collect())
}
