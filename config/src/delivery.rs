//! `[dns]`, `[delivery]` and `[log]`: how accepted mail leaves, and where its events are written.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::spec::{ByteSize, HumanDuration};

/// `[dns]`: the resolver used for MX and address lookups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers as `"IP:port"` (e.g. `["127.0.0.1:53"]` for a local caching resolver). Default `[]`:
    /// the system resolver configuration (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// How long to wait for one answer before trying again or giving up (a lookup that times out is a
    /// temporary failure: the message is retried). Default `"5s"`.
    pub timeout: HumanDuration,
    /// How many times a query is sent before the lookup counts as timed out. Default 2.
    pub attempts: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: HumanDuration::from_secs(5),
            attempts: 2,
        }
    }
}

/// How outbound sessions use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartTls {
    /// Use STARTTLS when the server offers it, without verifying its certificate (RFC 7435); if the
    /// handshake fails, the attempt is retried later.
    Opportunistic,
    /// Never use STARTTLS.
    Disabled,
}

/// `[delivery]`: routing, connections, timeouts, retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// When true nothing is delivered: accepted mail stays queued until this is turned off (maintenance,
    /// an intake-only node, or a test that inspects the queue). Default `false`.
    pub paused: bool,
    /// TCP port of remote SMTP servers (MX hosts). Default 25; tests and benchmarks use loopback ports.
    pub port: u16,
    /// Smarthost `"host:port"` (IP or DNS name): when set, every message goes there, without MX lookup.
    /// Default: none (deliver by MX).
    pub relay_host: Option<RelayHost>,
    /// Local address outbound connections are made from, when no `[[source]]` is configured (it is then
    /// the `ip` of the implicit source `"default"`). Default: none (the OS chooses). With `[[source]]`,
    /// give each source its address in `source[].ip` instead: setting both is an error.
    pub source_ip: Option<IpAddr>,
    /// Intervals between attempts after a temporary failure: the first retry waits the first interval,
    /// and so on; the last one then repeats. Each is varied by `retry_jitter_percent`. Default
    /// `["1m", "5m", "15m", "30m", "1h", "2h", "4h"]`.
    pub retry: Vec<HumanDuration>,
    /// Random variation of each retry interval, in percent (spreads retries of a burst). Default 10.
    pub retry_jitter_percent: u8,
    /// How long a message may stay queued; a recipient still undelivered then expires (DSN to the
    /// sender, event `expiration`). Default `"3d"`.
    pub max_age: HumanDuration,
    /// Most recipients of one domain sent in one SMTP transaction. Default 50. The fallback of
    /// `shaping.max_recipients_per_transaction`, which takes precedence when set.
    pub max_recipients_per_transaction: usize,
    /// Messages sent over one connection before it is closed. Default 100. The fallback of
    /// `shaping.max_deliveries_per_connection`, which takes precedence when set.
    pub max_messages_per_connection: usize,
    /// How long an outbound connection with nothing to send (or waiting longer than this for its
    /// ready queue's next rate slot) is kept open for the next message to the same site before it is
    /// closed. Default "5s".
    pub connection_idle_timeout: HumanDuration,
    /// Most concurrent outbound connections per lane (source, site). Default 10. The fallback of
    /// `shaping.max_connections`, which takes precedence when set.
    pub max_connections_per_host: usize,
    /// Most concurrent outbound connections in total. Default 500.
    pub max_connections: usize,
    /// Most items (one message's recipients of one domain) waiting at once for their domain's MX lookup
    /// before they join a ready queue: bounds the routing stage when DNS is slow. Messages in ready
    /// queues are not counted (waiting for a limit takes no slot). Default 1000.
    pub max_messages_in_flight: usize,
    /// STARTTLS use: `"opportunistic"` (default) or `"disabled"`.
    pub starttls: StartTls,
    /// TCP connect timeout per address. Default `"30s"`.
    pub connect_timeout: HumanDuration,
    /// Wait for the 220 greeting (RFC 5321 4.5.3.2.1). Default `"5m"`.
    pub greeting_timeout: HumanDuration,
    /// Wait for replies to EHLO, MAIL, RCPT, RSET, STARTTLS (RFC 5321 4.5.3.2.2-3). Default `"5m"`.
    pub command_timeout: HumanDuration,
    /// Wait for the 354 reply to DATA (RFC 5321 4.5.3.2.4). Default `"2m"`.
    pub data_init_timeout: HumanDuration,
    /// Wait for each write of message data to complete (RFC 5321 4.5.3.2.5). Default `"3m"`.
    pub data_block_timeout: HumanDuration,
    /// Wait for the reply after the final dot (RFC 5321 4.5.3.2.6). Default `"10m"`.
    pub data_done_timeout: HumanDuration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let retry = ["1m", "5m", "15m", "30m", "1h", "2h", "4h"];
        DeliveryConfig {
            paused: false,
            port: 25,
            relay_host: None,
            source_ip: None,
            retry: retry.iter().filter_map(|spec| spec.parse().ok()).collect(),
            retry_jitter_percent: 10,
            max_age: HumanDuration::from_secs(3 * 86_400),
            max_recipients_per_transaction: 50,
            max_messages_per_connection: 100,
            connection_idle_timeout: HumanDuration::from_secs(5),
            max_connections_per_host: 10,
            max_connections: 500,
            max_messages_in_flight: 1000,
            starttls: StartTls::Opportunistic,
            connect_timeout: HumanDuration::from_secs(30),
            greeting_timeout: HumanDuration::from_secs(300),
            command_timeout: HumanDuration::from_secs(300),
            data_init_timeout: HumanDuration::from_secs(120),
            data_block_timeout: HumanDuration::from_secs(180),
            data_done_timeout: HumanDuration::from_secs(600),
        }
    }
}

/// `[log]`: the JSON event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// File that receives one JSON object per event (reception, delivery, transient_failure, bounce,
    /// expiration). Default: none (no event log). The embedded default config sets `"data/events.jsonl"`.
    pub events: Option<PathBuf>,
    /// When the file reaches this size it is renamed to `<file>.1` (older ones shift to `.2`, ...) and
    /// a new one is started. SIGHUP also reopens the file (for logrotate). Default `"100MB"`.
    pub events_max_size: ByteSize,
    /// Rotated files kept. Default 5.
    pub events_keep: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            events: None,
            events_max_size: ByteSize(100_000_000),
            events_keep: 5,
        }
    }
}

/// A smarthost: `"host:port"`, host an IP address (IPv6 in brackets) or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayHost {
    /// IP address or DNS name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for RelayHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for RelayHost {
    type Err = String;

    fn from_str(text: &str) -> Result<RelayHost, String> {
        const EXPECTED: &str =
            "expected \"host:port\" such as \"127.0.0.1:2526\" or \"smtp.example.com:587\"";
        if let Ok(addr) = text.trim().parse::<SocketAddr>() {
            return Ok(RelayHost {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = text
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| format!("invalid relay host {text:?}: {EXPECTED}"))?;
        let port = port
            .parse()
            .map_err(|_| format!("invalid port in {text:?}: {EXPECTED}"))?;
        crate::validate::check_domain(host)
            .map_err(|reason| format!("invalid host in {text:?}: {reason}"))?;
        Ok(RelayHost {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl Serialize for RelayHost {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RelayHost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RelayVisitor;
        impl Visitor<'_> for RelayVisitor {
            type Value = RelayHost;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"host:port\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RelayHost, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(RelayVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_host_table() {
        let ok = |host: &str, port| {
            Ok(RelayHost {
                host: host.into(),
                port,
            })
        };
        let cases: &[(&str, Result<RelayHost, ()>)] = &[
            ("127.0.0.1:2526", ok("127.0.0.1", 2526)),
            ("[::1]:25", ok("::1", 25)),
            ("Smtp.Example.com:587", ok("smtp.example.com", 587)),
            ("smtp.example.com", Err(())),
            ("smtp.example.com:port", Err(())),
            ("bad_host!:25", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(&text.parse::<RelayHost>().map_err(|_| ()), expected, "{text}");
        }
        assert_eq!(ok("::1", 25).map(|h| h.to_string()), Ok("[::1]:25".to_string()));
    }
}
