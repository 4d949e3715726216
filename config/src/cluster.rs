//! `[cluster]`: several penguin-mta nodes sharing state through Redis. Absent means one node on its
//! own, exactly as before (no Redis needed). This file holds the section, its defaults, the parsing of
//! its `redis://` URL and its validation (with field paths).

use std::net::Ipv6Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::HumanDuration;
use crate::validate::Errors;
use crate::validate_shaping::check_name;

/// Redis's port when the URL names none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;
/// Shortest `heartbeat_every`.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
/// Shortest `redis_timeout`.
const MIN_REDIS_TIMEOUT: Duration = Duration::from_millis(1);
/// Shortest `lease_ttl`.
const MIN_LEASE_TTL: Duration = Duration::from_secs(1);
/// What a `redis` URL looks like, for error messages.
const URL_EXPECTED: &str = "expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]";

/// `[cluster]`: this node's membership of a fleet whose shared state lives in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The Redis server, `"redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"` (port 6379 and database 0 by
    /// default; no TLS). Required when `[cluster]` is present.
    pub redis: String,
    /// This node's id among the nodes: 1-64 of `A-Z a-z 0-9 . _ -`, unique in the fleet. Default: the
    /// system host name, other characters replaced by `-`.
    #[serde(default = "default_node")]
    pub node: String,
    /// How often this node writes its record (id, version, heartbeat time, queue size) and reads the
    /// others'. Default `"1s"`, at least `"10ms"`.
    #[serde(default = "default_heartbeat_every")]
    pub heartbeat_every: HumanDuration,
    /// A node not heard from for this long is no longer counted (its record expires in Redis after
    /// it). Default `"60s"`, at least twice `heartbeat_every`.
    #[serde(default = "default_node_timeout")]
    pub node_timeout: HumanDuration,
    /// Longest wait for one Redis command (and for connecting); a slower answer counts as Redis
    /// being down. Default `"500ms"`.
    #[serde(default = "default_redis_timeout")]
    pub redis_timeout: HumanDuration,
    /// How long a connection lease (a slot of a connection cap shared by the nodes) lasts unless its
    /// connection renews it (every third of it): a node killed without closing its connections frees
    /// their slots after this. Default `"15s"`, at least `"1s"` and three times `redis_timeout`.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: HumanDuration,
}

impl ClusterConfig {
    /// A section with this Redis URL and every other field at its default.
    pub fn new(redis: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            redis: redis.into(),
            node: default_node(),
            heartbeat_every: default_heartbeat_every(),
            node_timeout: default_node_timeout(),
            redis_timeout: default_redis_timeout(),
            lease_ttl: default_lease_ttl(),
        }
    }

    /// The `redis` URL without its password (for the API, logs and events); the text as written when
    /// it does not parse.
    pub fn redis_without_password(&self) -> String {
        parse_redis_url(&self.redis).map_or_else(|_| self.redis.clone(), |url| url.without_password())
    }
}

/// The parts of a `redis://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// The user name (ACL), if any.
    pub username: Option<String>,
    /// The password as written (percent-encoded), if any.
    pub password: Option<String>,
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database number.
    pub db: u32,
}

impl RedisUrl {
    /// The URL again, without the password: `redis://[USER@]HOST:PORT/DB`.
    pub fn without_password(&self) -> String {
        let user = self
            .username
            .as_ref()
            .map(|user| format!("{user}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("redis://{user}{host}:{}/{}", self.port, self.db)
    }
}

/// Parses `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` (the scheme in any case; no query, no TLS).
pub fn parse_redis_url(text: &str) -> Result<RedisUrl, String> {
    let scheme = text.get(..8).filter(|s| s.eq_ignore_ascii_case("redis://"));
    if scheme.is_none() {
        return Err(format!(
            "{text:?} is not a redis:// URL (TLS, rediss://, is not supported): {URL_EXPECTED}"
        ));
    }
    let rest = &text[8..];
    if rest.contains(['?', '#']) || rest.chars().any(char::is_whitespace) {
        return Err(format!(
            "{text:?}: query parameters, fragments and spaces are not supported: {URL_EXPECTED}"
        ));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (username, password) = match userinfo.map(|info| info.split_once(':').unwrap_or((info, ""))) {
        None => (None, None),
        Some((user, password)) => (
            Some(user.to_owned()).filter(|u| !u.is_empty()),
            Some(password.to_owned()).filter(|p| !p.is_empty()),
        ),
    };
    let (host, port) = host_and_port(hostport).map_err(|why| format!("{text:?}: {why}"))?;
    let db = match path {
        "" => 0,
        digits => digits
            .parse()
            .map_err(|_| format!("{text:?}: the database {digits:?} is not a number: {URL_EXPECTED}"))?,
    };
    Ok(RedisUrl {
        username,
        password,
        host,
        port,
        db,
    })
}

/// `HOST`, `HOST:PORT`, `[IPV6]` or `[IPV6]:PORT`.
fn host_and_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "an IPv6 address needs its closing ]".to_owned())?;
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{address:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or("expected :PORT after ]")?),
        };
        (address, port)
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if host.is_empty() || !host.chars().all(valid) {
        return Err(format!("{host:?} is not a host name or address: {URL_EXPECTED}"));
    }
    let port = match port {
        None => DEFAULT_REDIS_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&port| port != 0)
            .ok_or_else(|| format!("{port:?} is not a port (1-65535)"))?,
    };
    Ok((host.to_owned(), port))
}

/// The default node id: the system host name, characters outside `A-Z a-z 0-9 . _ -` replaced by `-`,
/// at most 64 characters.
pub fn default_node() -> String {
    sanitise_node(&crate::schema::system_hostname())
}

/// `name` made a valid node id (`"node"` when nothing is left).
fn sanitise_node(name: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let node: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(64)
        .collect();
    if node.is_empty() { "node".to_owned() } else { node }
}

fn default_heartbeat_every() -> HumanDuration {
    HumanDuration::from_secs(1)
}

fn default_node_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_redis_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}

fn default_lease_ttl() -> HumanDuration {
    HumanDuration::from_secs(15)
}

/// `[cluster]`, when present.
pub(crate) fn validate(cluster: Option<&ClusterConfig>, errors: &mut Errors) {
    let Some(cluster) = cluster else {
        return;
    };
    if let Err(reason) = parse_redis_url(&cluster.redis) {
        errors.check(false, "cluster.redis", reason);
    }
    if let Err(reason) = check_name(&cluster.node, "node") {
        errors.check(false, "cluster.node", reason);
    }
    let heartbeat = cluster.heartbeat_every.get();
    errors.check(
        heartbeat >= MIN_HEARTBEAT,
        "cluster.heartbeat_every",
        "must be at least \"10ms\"",
    );
    errors.check(
        cluster.node_timeout.get() >= heartbeat.saturating_mul(2),
        "cluster.node_timeout",
        format!(
            "must be at least twice cluster.heartbeat_every ({})",
            cluster.heartbeat_every
        ),
    );
    errors.check(
        cluster.redis_timeout.get() >= MIN_REDIS_TIMEOUT,
        "cluster.redis_timeout",
        "must be at least \"1ms\"",
    );
    let lease_ttl = cluster.lease_ttl.get();
    errors.check(
        lease_ttl >= MIN_LEASE_TTL && lease_ttl >= cluster.redis_timeout.get().saturating_mul(3),
        "cluster.lease_ttl",
        format!(
            "must be at least \"1s\" and three times cluster.redis_timeout ({})",
            cluster.redis_timeout
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn errors(toml: &str) -> Vec<String> {
        match Config::from_toml_str(toml) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    const CLUSTER: &str = r#"
[cluster]
redis = "redis://:secret@127.0.0.1:6380/2"
node = "node-a"
heartbeat_every = "100ms"
node_timeout = "5s"
redis_timeout = "250ms"
lease_ttl = "2s"
"#;

    #[test]
    fn a_full_section_is_valid() {
        let config = Config::from_toml_str(CLUSTER).expect("valid");
        let cluster = config.cluster.expect("present");
        assert_eq!(cluster.node, "node-a");
        assert_eq!(cluster.heartbeat_every.get(), Duration::from_millis(100));
        assert_eq!(cluster.node_timeout.get(), Duration::from_secs(5));
        assert_eq!(cluster.redis_timeout.get(), Duration::from_millis(250));
        assert_eq!(cluster.lease_ttl.get(), Duration::from_secs(2));
        assert_eq!(cluster.redis_without_password(), "redis://127.0.0.1:6380/2");
    }

    #[test]
    fn absent_means_single_node_and_defaults_apply() {
        assert_eq!(Config::from_toml_str("").expect("valid").cluster, None);
        let config = Config::from_toml_str("[cluster]\nredis = \"redis://r.example\"\n").expect("valid");
        let cluster = config.cluster.expect("present");
        assert_eq!(cluster.node, default_node());
        assert_eq!(cluster.heartbeat_every.get(), Duration::from_secs(1));
        assert_eq!(cluster.node_timeout.get(), Duration::from_secs(60));
        assert_eq!(cluster.redis_timeout.get(), Duration::from_millis(500));
        assert_eq!(cluster.lease_ttl.get(), Duration::from_secs(15));
        assert_eq!(cluster.redis_without_password(), "redis://r.example:6379/0");
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            ("node = \"node-a\"\n", "", ""),
            (
                "redis = \"redis://:secret@127.0.0.1:6380/2\"\n",
                "",
                "cluster: missing field `redis`",
            ),
            ("redis://:secret@", "rediss://:secret@", "cluster.redis"),
            ("redis://:secret@", "http://", "cluster.redis"),
            ("6380/2", "6380/two", "cluster.redis"),
            ("6380/2", "99999/2", "cluster.redis"),
            ("6380/2", "6380/2?protocol=resp3", "cluster.redis"),
            ("127.0.0.1:6380", "", "cluster.redis"),
            ("\"node-a\"", "\"node a\"", "cluster.node"),
            ("\"node-a\"", "\"\"", "cluster.node"),
            ("\"100ms\"", "\"5ms\"", "cluster.heartbeat_every"),
            ("\"100ms\"", "\"3s\"", "cluster.node_timeout"),
            ("\"250ms\"", "\"0s\"", "cluster.redis_timeout"),
            ("\"250ms\"", "250", "cluster.redis_timeout"),
            ("\"2s\"", "\"500ms\"", "cluster.lease_ttl"),
            ("\"250ms\"\nlease", "\"1s\"\nlease", "cluster.lease_ttl"),
            ("node = ", "name = ", "cluster"),
        ];
        for (from, to, path) in cases {
            let toml = CLUSTER.replace(from, to);
            let found = errors(&toml);
            if path.is_empty() {
                assert_eq!(found, Vec::<String>::new(), "{to:?}");
                continue;
            }
            assert!(
                found.iter().any(|e| e.starts_with(path)),
                "{from:?} -> {to:?}: expected an error at {path}, got {found:?}"
            );
        }
    }

    #[test]
    fn urls() {
        let url = parse_redis_url("REDIS://user:p%40ss@[::1]:7000/3").expect("valid");
        assert_eq!(url.username.as_deref(), Some("user"));
        assert_eq!(url.password.as_deref(), Some("p%40ss"));
        assert_eq!((url.host.as_str(), url.port, url.db), ("::1", 7000, 3));
        assert_eq!(url.without_password(), "redis://user@[::1]:7000/3");
        let plain = parse_redis_url("redis://localhost/").expect("valid");
        assert_eq!(plain.without_password(), "redis://localhost:6379/0");
        for bad in [
            "redis://",
            "redis://[::1",
            "redis://[nope]:1",
            "redis://h:0",
            "redis:/h",
        ] {
            assert!(parse_redis_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names_become_node_ids() {
        assert_eq!(sanitise_node("mta1.example.com"), "mta1.example.com");
        assert_eq!(sanitise_node("my host+1"), "my-host-1");
        assert_eq!(sanitise_node(""), "node");
        assert_eq!(sanitise_node(&"x".repeat(80)).len(), 64);
    }
}
