//! Setup shared by the delivery tests: a [`DeliveryWorld`] of a real DNS server, scripted sinks on
//! 127.0.0.2, 127.0.0.3, ... (one port: `delivery.port` is one config value), a sink for the senders'
//! domain (where DSNs go), and the real server delivering to them by MX, writing its JSON event log.
//!
//! The event log is written by a thread of its own, so a line appears a little after the event; the
//! readers here poll the file, bounded by [`WAIT`], until the expected lines are there.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use penguin_config::{Config, HumanDuration};
use penguin_mta::clock::{SharedClock, SystemClock};
use serde_json::Value;

use crate::dns::TestDns;
use crate::sink::{SinkBehaviour, TestSink};
use crate::{TestServer, WAIT, allow_loopback_relay, simple_message, test_config};

/// The envelope sender of most tests; its domain routes to [`DeliveryWorld::sender_sink`].
pub const SENDER: &str = "alice@sender.test";
/// The senders' domain.
pub const SENDER_DOMAIN: &str = "sender.test";
/// An address where nothing listens (on the sinks' port): connections are refused.
pub const NOTHING_LISTENS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);
/// Address of the sink for [`SENDER_DOMAIN`].
const SENDER_SINK_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
/// How often the event log file is read again while waiting for a line.
const EVENT_POLL: Duration = Duration::from_millis(20);

/// Every field of an event line (the contract of `engine::events`).
pub use penguin_mta::events::EVENT_FIELDS;

/// The real server delivering by MX to sinks on loopback, with its DNS server and event log.
pub struct DeliveryWorld {
    /// Spool, event log, certificates.
    pub dir: tempfile::TempDir,
    /// The DNS server the engine asks.
    pub dns: TestDns,
    /// Destination sinks: number `i` listens on 127.0.0.`i + 2`.
    pub sinks: Vec<TestSink>,
    /// The sink of [`SENDER_DOMAIN`] (receives DSNs).
    pub sender_sink: TestSink,
    /// The server under test.
    pub server: TestServer,
    /// The JSON lines event log.
    pub events_path: PathBuf,
    /// The server's config (for a restart).
    config: Config,
    /// The server's clock (for a restart).
    clock: SharedClock,
}

impl DeliveryWorld {
    /// `sinks` accepting destination sinks (plus the sender's) and a server with the delivery test
    /// config (see [`delivery_config`]) changed by `configure`.
    pub async fn start(sinks: usize, configure: impl FnOnce(&mut Config)) -> DeliveryWorld {
        let clock: SharedClock = std::sync::Arc::new(SystemClock);
        DeliveryWorld::start_with_clock(sinks, clock, configure).await
    }

    /// Like [`DeliveryWorld::start`], with the clock delivery decisions read (a [`ManualClock`] makes
    /// hours of rate limits and suspensions pass in no time).
    pub async fn start_with_clock(
        sinks: usize,
        clock: SharedClock,
        configure: impl FnOnce(&mut Config),
    ) -> DeliveryWorld {
        let dir = tempfile::tempdir().expect("tempdir");
        let dns = TestDns::start().await;
        let mut ips: Vec<IpAddr> = (0..sinks).map(|i| IpAddr::V4(sink_ip(i))).collect();
        ips.push(IpAddr::V4(SENDER_SINK_IP));
        let mut all = TestSink::start_on_same_port(&ips, SinkBehaviour::default()).await;
        let sender_sink = all.pop().expect("sender sink");
        let port = sender_sink.address.port();
        let events_path = dir.path().join("events.jsonl");
        let mut config = delivery_config(&dir, dns.address, port);
        configure(&mut config);
        let server = TestServer::start_with_clock(config.clone(), clock.clone()).await;
        let world = DeliveryWorld {
            dir,
            dns,
            sinks: all,
            sender_sink,
            server,
            events_path,
            config,
            clock,
        };
        world.add_mx(SENDER_DOMAIN, 10, "mx.sender.test", SENDER_SINK_IP);
        world
    }

    /// Stops the server (gracefully) and starts it again on the same spool, config and clock.
    pub async fn restart(self) -> DeliveryWorld {
        let DeliveryWorld {
            dir,
            dns,
            sinks,
            sender_sink,
            server,
            events_path,
            config,
            clock,
        } = self;
        server.stop().await.expect("the server stops cleanly");
        let server = TestServer::start_with_clock(config.clone(), clock.clone()).await;
        DeliveryWorld {
            dir,
            dns,
            sinks,
            sender_sink,
            server,
            events_path,
            config,
            clock,
        }
    }

    /// MX `preference` `host` for `domain`, and `host`'s A record.
    pub fn add_mx(&self, domain: &str, preference: u16, host: &str, ip: Ipv4Addr) {
        self.dns.add_mx(domain, preference, host, 300);
        self.dns.add_a(host, ip, 300);
    }

    /// `domain` routed by one MX (`mx.<domain>`) to sink `index`.
    pub fn route_to_sink(&self, domain: &str, index: usize) {
        self.add_mx(domain, 10, &format!("mx.{domain}"), sink_ip(index));
    }

    /// Sends a small message from [`SENDER`] to `to`; returns its queue id.
    pub async fn send(&self, to: &[&str]) -> String {
        let content = simple_message(SENDER, to.first().copied().unwrap_or(""), "delivery test");
        self.send_with(&format!("MAIL FROM:<{SENDER}>"), to, &content)
            .await
    }

    /// Sends `content` with this MAIL command line; returns its queue id.
    pub async fn send_with(&self, mail_line: &str, to: &[&str], content: &str) -> String {
        let mut client = self.server.connect().await;
        assert_eq!(client.ehlo().await.code, 250);
        let reply = client.send_message_with(mail_line, to, content).await;
        let id = reply
            .queued_id()
            .unwrap_or_else(|| panic!("message not queued: {reply}"));
        client.cmd("QUIT").await;
        id
    }

    /// The complete lines of the event log so far, parsed.
    pub fn events(&self) -> Vec<Value> {
        let Ok(text) = std::fs::read_to_string(&self.events_path) else {
            return Vec::new();
        };
        // A line still being written has no newline yet: leave it for the next read.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad event line {line:?}: {e}")))
            .collect()
    }

    /// The per-recipient events of `recipient`, in log order.
    pub fn events_for(&self, recipient: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|event| event["recipient"] == recipient)
            .collect()
    }

    /// Waits (bounded) until the log holds `count` events matching `matches`; returns them in order.
    pub async fn wait_events(
        &self,
        what: &str,
        count: usize,
        matches: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let found: Vec<Value> = self.events().into_iter().filter(|e| matches(e)).collect();
            if found.len() >= count {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {WAIT:?} for {count} event(s): {what}; the log holds:\n{}",
                    self.events()
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(EVENT_POLL).await;
        }
    }

    /// Waits (bounded) for the first event of type `kind` about `recipient`.
    pub async fn wait_event(&self, kind: &str, recipient: &str) -> Value {
        let what = format!("{kind} of {recipient}");
        let mut found = self
            .wait_events(&what, 1, |e| e["type"] == kind && e["recipient"] == recipient)
            .await;
        found.remove(0)
    }

    /// The queued messages (id and envelope).
    pub fn queued(&self) -> Vec<(String, penguin_queue::Envelope)> {
        crate::queued(&self.server.spool_path)
    }

    /// Whether message `id` is gone from the spool: no envelope, no body.
    pub fn is_gone(&self, id: &str) -> bool {
        let reader = penguin_queue::SpoolReader::open(&self.server.spool_path).expect("open spool");
        let id = id.parse().expect("queue id");
        let envelope = reader.read_envelope(id).expect("read envelope");
        let body = reader.read_body(id).expect("read body");
        envelope.is_none() && body.is_none()
    }
}

/// Applies the egress and shaping sections of a TOML snippet (`[[source]]`, `[[pool]]`,
/// `[[provider]]`, `[shaping]` with its tables, `[warmup]`, `[reputation]`) to `config`; panics if the
/// snippet is invalid.
pub fn apply_shaping(config: &mut Config, toml: &str) {
    let snippet = Config::from_toml_str(toml).unwrap_or_else(|e| panic!("shaping snippet: {e}\n{toml}"));
    config.source = snippet.source;
    config.pool = snippet.pool;
    config.provider = snippet.provider;
    config.shaping = snippet.shaping;
    config.warmup = snippet.warmup;
    config.reputation = snippet.reputation;
}

impl DeliveryWorld {
    /// An HTTP request to the engine's API with a JSON body; returns (status, parsed body or null).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let content_type = (!bytes.is_empty()).then_some("application/json");
        let (status, text) = crate::http_request(self.server.api, method, path, content_type, &bytes).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Waits (bounded) until `GET /v1/shaping` shows `queued` items in the queues of `site`; returns
    /// those queues.
    pub async fn wait_queued(&self, site: &str, queued: u64) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, view) = self.api("GET", "/v1/shaping", None).await;
            let queues: Vec<Value> = view["queues"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|q| q["site"] == site)
                .collect();
            let total: u64 = queues.iter().filter_map(|q| q["queued"].as_u64()).sum();
            if total == queued {
                return queues;
            }
            assert!(
                Instant::now() < deadline,
                "waited {WAIT:?} for {queued} queued at {site}: {view}"
            );
            tokio::time::sleep(EVENT_POLL).await;
        }
    }
}

/// Address of destination sink `index`.
pub fn sink_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(index).expect("few sinks"))
}

/// The test config with delivery on: loopback relay, DNS at `dns` (500 ms, one try), remote port
/// `port`, retries every second without jitter, connect timeout 2 s, the event log in `dir`.
pub fn delivery_config(dir: &tempfile::TempDir, dns: SocketAddr, port: u16) -> Config {
    let mut config = test_config(dir.path());
    allow_loopback_relay(&mut config);
    config.smtp.hostname = "mta.test".to_string();
    config.delivery.paused = false;
    config.dns.nameservers = vec![dns];
    config.dns.timeout = HumanDuration::from(Duration::from_millis(500));
    config.dns.attempts = 1;
    config.delivery.port = port;
    config.delivery.retry = vec![HumanDuration::from_secs(1)];
    config.delivery.retry_jitter_percent = 0;
    config.delivery.connect_timeout = HumanDuration::from_secs(2);
    config.log.events = Some(dir.path().join("events.jsonl"));
    config
}

/// Asserts that `sink` saw no protocol error from our client (listing them otherwise).
#[track_caller]
pub fn assert_clean(sink: &TestSink) {
    assert_eq!(
        sink.protocol_errors(),
        0,
        "protocol errors at {}: {:#?}",
        sink.address,
        sink.protocol_error_details()
    );
}

/// The `message/delivery-status` part of a DSN after checking that it is a
/// `multipart/report; report-type=delivery-status` message.
pub fn delivery_status(dsn: &[u8]) -> String {
    use mail_parser::MimeHeaders;
    let message = mail_parser::MessageParser::default()
        .parse(dsn)
        .expect("the DSN parses");
    let top = message.content_type().expect("DSN Content-Type");
    assert_eq!((top.ctype(), top.subtype()), ("multipart", Some("report")));
    assert_eq!(top.attribute("report-type"), Some("delivery-status"));
    let part = message
        .parts
        .iter()
        .find(|part| {
            part.content_type()
                .is_some_and(|t| t.ctype() == "message" && t.subtype() == Some("delivery-status"))
        })
        .expect("a message/delivery-status part");
    String::from_utf8_lossy(part.contents()).into_owned()
}
