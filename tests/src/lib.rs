//! Test harness for penguin-mta's end-to-end tests: the real server (in process via `serve`, or the
//! real binary as a child process) on 127.0.0.1 port 0, real TCP, real TLS with certificates made
//! here, and a line-level SMTP client that shows exactly what the server answered.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use penguin_config::{Config, TenantConfig, TlsConfig};
use penguin_mta::{Listeners, ServeError};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub mod binary;
pub mod cluster;
pub mod delivery;
pub mod dkim;
pub mod dns;
pub mod redis;
pub mod sink;
pub mod webhook_receiver;

/// Bound on every wait for the server in these tests: a hung server fails the test instead of CI.
pub const WAIT: Duration = Duration::from_secs(30);

/// A CA and a server certificate for "localhost"/127.0.0.1 signed by it, written as PEM files.
pub struct TestCerts {
    /// PEM certificate chain of the server.
    pub cert_path: PathBuf,
    /// PEM private key of the server.
    pub key_path: PathBuf,
    /// The CA certificate clients trust.
    pub ca: CertificateDer<'static>,
}

impl TestCerts {
    /// Generates the CA and server certificate into `dir`.
    pub fn generate(dir: &Path) -> TestCerts {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "penguin test CA");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let server_key = rcgen::KeyPair::generate().expect("server key");
        let server_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, server_cert.pem()).expect("write cert");
        std::fs::write(&key_path, server_key.serialize_pem()).expect("write key");
        let ca_der: &rcgen::Certificate = ca.as_ref();
        TestCerts {
            cert_path,
            key_path,
            ca: ca_der.der().clone(),
        }
    }

    /// A rustls client that trusts the test CA.
    pub fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).expect("add CA");
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// A tenant for tests, with its password in clear (the config gets the argon2 hash).
pub struct TestTenant {
    /// Tenant name.
    pub name: &'static str,
    /// AUTH username.
    pub username: &'static str,
    /// AUTH password.
    pub password: &'static str,
    /// MAIL FROM domains.
    pub sender_domains: &'static [&'static str],
}

impl TestTenant {
    /// The config entry (hashing the password).
    pub fn config(&self) -> TenantConfig {
        TenantConfig {
            name: self.name.to_string(),
            username: self.username.to_string(),
            password_hash: penguin_mta::smtp::auth::hash_password(self.password.as_bytes()).expect("hash"),
            sender_domains: self.sender_domains.iter().map(|d| d.to_string()).collect(),
            dsn: true,
            list_unsubscribe: false,
            dkim_missing_key: None,
            pool: None,
            pools: Vec::new(),
            max_message_rate: None,
            daily_quota: None,
        }
    }

    /// `AUTH PLAIN` initial response for these credentials.
    pub fn plain_response(&self) -> String {
        plain_response(self.username, self.password)
    }
}

/// Base64 of `\0username\0password`.
pub fn plain_response(username: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{username}\0{password}"))
}

/// The tenant "acme" sending as acme.example.
pub const ACME: TestTenant = TestTenant {
    name: "acme",
    username: "acme",
    password: "acme-secret",
    sender_domains: &["acme.example"],
};
/// The tenant "globex" sending as globex.example.
pub const GLOBEX: TestTenant = TestTenant {
    name: "globex",
    username: "globex",
    password: "globex-secret",
    sender_domains: &["globex.example"],
};

/// A config for tests: spool in `dir`, hostname "mta.test", no relay networks, no tenants, no TLS,
/// delivery paused (reception tests inspect the queue; nothing may leave the machine).
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::embedded_default();
    config.smtp.hostname = "mta.test".to_string();
    config.smtp.relay_networks = Vec::new();
    config.smtp.listen = vec!["127.0.0.1:0".parse().expect("addr")];
    config.api.listen = "127.0.0.1:0".parse().expect("addr");
    config.public.listen = "127.0.0.1:0".parse().expect("addr");
    config.api.tokens = vec![penguin_config::ApiTokenConfig {
        name: "test-admin".to_string(),
        sha256: token_sha256(TEST_ADMIN_TOKEN),
    }];
    config.spool.path = dir.join("spool");
    config.spool.min_free_space = penguin_config::ByteSize(0);
    config.delivery.paused = true;
    config.log.events = None;
    config.dkim.key_dir = dir.join("dkim");
    config
}

/// The admin token of [`test_config`] (its `[[api.token]]`), sent by [`http_request`].
pub const TEST_ADMIN_TOKEN: &str = "pmt_test-admin-token-for-the-suite";

/// The hex SHA-256 of a token, as `[[api.token]] sha256` holds it.
pub fn token_sha256(token: &str) -> String {
    penguin_mta::api::api_keys::token_hash(token)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Adds loopback to relay_networks (tenant "default", any sender).
pub fn allow_loopback_relay(config: &mut Config) {
    config.smtp.relay_networks = vec!["127.0.0.0/8".parse().expect("net")];
}

/// Turns on STARTTLS with certificates generated in `dir`.
pub fn enable_tls(config: &mut Config, dir: &Path) -> TestCerts {
    let certs = TestCerts::generate(dir);
    config.tls = Some(TlsConfig {
        cert: certs.cert_path.clone(),
        key: certs.key_path.clone(),
    });
    certs
}

/// A server with TLS, the tenant ACME, and AUTH allowed only inside TLS (no cleartext networks).
pub async fn tls_only_auth_server(dir: &Path) -> (TestServer, TestCerts) {
    let mut config = test_config(dir);
    config.smtp.auth_cleartext_networks = Vec::new();
    config.tenant.push(ACME.config());
    let certs = enable_tls(&mut config, dir);
    (TestServer::start(config).await, certs)
}

/// The real server running in this process on loopback ports.
pub struct TestServer {
    /// SMTP address.
    pub smtp: SocketAddr,
    /// HTTP control API address.
    pub api: SocketAddr,
    /// Public HTTP address (one-click unsubscribe).
    pub public: SocketAddr,
    /// Spool directory.
    pub spool_path: PathBuf,
    /// Sends the shutdown signal.
    stop: Option<oneshot::Sender<()>>,
    /// The `serve` task.
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// Starts `serve` with this config on fresh loopback ports.
    pub async fn start(config: Config) -> TestServer {
        TestServer::start_with_clock(config, std::sync::Arc::new(penguin_mta::clock::SystemClock)).await
    }

    /// Starts `serve` with this config and this clock for delivery decisions (a
    /// [`penguin_mta::clock::ManualClock`] runs an hour of shaping in no time).
    pub async fn start_with_clock(config: Config, clock: penguin_mta::clock::SharedClock) -> TestServer {
        let smtp_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind smtp");
        let api_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind api");
        let public_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind public");
        let smtp = smtp_listener.local_addr().expect("addr");
        let api = api_listener.local_addr().expect("addr");
        let public = public_listener.local_addr().expect("addr");
        let spool_path = config.spool.path.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = Listeners {
            smtp: vec![smtp_listener],
            api: api_listener,
            public: public_listener,
        };
        let task = tokio::spawn(penguin_mta::server::serve_with_clock(
            config,
            None,
            clock,
            listeners,
            async {
                let _ = stopped.await;
            },
        ));
        TestServer {
            smtp,
            api,
            public,
            spool_path,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Opens an SMTP session and reads the greeting.
    pub async fn connect(&self) -> SmtpClient {
        SmtpClient::connect(self.smtp).await
    }

    /// Signals shutdown and waits for `serve` to return (bounded).
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(WAIT, task)
            .await
            .expect("server stops in time")
            .expect("serve task")
    }

    /// GET a path of the HTTP API listener with the test admin token; returns (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.api, path).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection, with the test admin token; returns (status, body).
pub async fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    http_request(address, "GET", path, None, b"").await
}

/// A minimal HTTP/1.1 request (`method`, with `body` and its content type, if any) over a fresh
/// connection, with the test admin token ([`TEST_ADMIN_TOKEN`]); returns (status, body).
pub async fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let answer = http_exchange(address, Some(TEST_ADMIN_TOKEN), method, path, content_type, body).await;
    (answer.status, answer.body)
}

/// An HTTP answer: status, header lines, body.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    /// The status code (0 when unparseable).
    pub status: u16,
    /// The header section (lines after the status line).
    pub headers: String,
    /// The body (as sent: no chunked decoding; the API answers with Content-Length).
    pub body: String,
}

impl HttpAnswer {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    /// The body as JSON (null when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A minimal HTTP/1.1 request with `token` as the bearer token (None: no Authorization header).
pub async fn http_exchange(
    address: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpAnswer {
    let mut tcp = tokio::time::timeout(WAIT, TcpStream::connect(address))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(content_type) = content_type {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE") {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    tcp.write_all(&request).await.expect("write request");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers = head.split_once("\r\n").map(|(_, rest)| rest).unwrap_or("");
    HttpAnswer {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

/// One SMTP reply as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Reply code.
    pub code: u16,
    /// Text of each line (after "NNN-" / "NNN ").
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined by newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The queue id of a `250 2.0.0 Ok: queued as ID` reply.
    pub fn queued_id(&self) -> Option<String> {
        let text = self.lines.last()?;
        text.strip_prefix("2.0.0 Ok: queued as ").map(str::to_string)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" | "))
    }
}

/// Plain or TLS stream of the client.
enum Stream {
    /// Before STARTTLS.
    Plain(TcpStream),
    /// After STARTTLS.
    Tls(Box<TlsStream<TcpStream>>),
    /// Moved out during the upgrade.
    Gone,
}

impl Stream {
    /// The stream as a reader/writer.
    fn io(&mut self) -> &mut dyn AsyncReadWrite {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.as_mut(),
            Stream::Gone => panic!("stream used during upgrade"),
        }
    }
}

/// Object-safe read + write.
trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

/// A line-level SMTP client that sends exactly what the test says.
pub struct SmtpClient {
    /// The connection.
    stream: Stream,
    /// Bytes read but not yet parsed.
    buffer: Vec<u8>,
    /// The greeting (or refusal) read at connect.
    pub greeting: Reply,
}

impl SmtpClient {
    /// Connects and reads the greeting.
    pub async fn connect(address: SocketAddr) -> SmtpClient {
        let tcp = tokio::time::timeout(WAIT, TcpStream::connect(address))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut client = SmtpClient {
            stream: Stream::Plain(tcp),
            buffer: Vec::new(),
            greeting: Reply {
                code: 0,
                lines: Vec::new(),
            },
        };
        client.greeting = client.reply().await;
        client
    }

    /// Sends raw bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let io = self.stream.io();
        io.write_all(bytes).await.expect("write");
        io.flush().await.expect("flush");
    }

    /// Sends one command line (CRLF added).
    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// Sends a command and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.send(line).await;
        self.reply().await
    }

    /// Reads one complete (possibly multi-line) reply; panics on EOF or timeout.
    pub async fn reply(&mut self) -> Reply {
        self.try_reply()
            .await
            .unwrap_or_else(|| panic!("connection closed while waiting for a reply"))
    }

    /// Reads one reply, or `None` if the server closed the connection first.
    pub async fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("bad reply line {line:?}"));
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Some(Reply { code, lines });
            }
        }
    }

    /// True when the server has closed the connection (EOF within the wait bound, nothing unread).
    pub async fn is_closed(&mut self) -> bool {
        self.read_line().await.is_none()
    }

    /// Reads one CRLF-terminated line (without CRLF); `None` at EOF.
    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..pos]).into_owned();
                self.buffer.drain(..pos + 2);
                return Some(line);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(WAIT, self.stream.io().read(&mut chunk))
                .await
                .expect("reply in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// EHLO and its reply.
    pub async fn ehlo(&mut self) -> Reply {
        self.cmd("EHLO client.test").await
    }

    /// STARTTLS (expects 220), then the TLS handshake trusting `certs`' CA.
    pub async fn starttls(&mut self, certs: &TestCerts) {
        let reply = self.cmd("STARTTLS").await;
        assert_eq!(reply.code, 220, "STARTTLS: {reply}");
        self.upgrade(certs).await;
    }

    /// The TLS handshake on the current connection (after a 220 to STARTTLS).
    pub async fn upgrade(&mut self, certs: &TestCerts) {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            panic!("TLS already active");
        };
        let name = ServerName::try_from("localhost").expect("name");
        let tls = tokio::time::timeout(WAIT, certs.connector().connect(name, tcp))
            .await
            .expect("handshake in time")
            .expect("handshake");
        self.stream = Stream::Tls(Box::new(tls));
        self.buffer.clear();
    }

    /// MAIL, RCPT for each recipient, DATA, content (dot-stuffed here), final dot; every reply
    /// must be positive. Returns the final reply (250 queued as ID).
    pub async fn send_message(&mut self, from: &str, to: &[&str], content: &str) -> Reply {
        self.send_message_with(&format!("MAIL FROM:<{from}>"), to, content)
            .await
    }
}

/// Dot-stuffs `content` and makes sure it ends with CRLF.
pub fn dot_stuff(content: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 16);
    for line in content.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A small message with the given subject.
pub fn simple_message(from: &str, to: &str, subject: &str) -> String {
    format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\nHello from the penguin tests.\r\n")
}

/// Reads every queued message of a spool (read-only, works while the server runs).
pub fn queued(spool: &Path) -> Vec<(String, penguin_queue::Envelope)> {
    let reader = penguin_queue::SpoolReader::open(spool).expect("open spool read-only");
    reader
        .messages()
        .map(|item| item.expect("readable record"))
        .map(|(id, env)| (id.to_string(), env))
        .collect()
}

/// The stored body of one message.
pub fn stored_body(spool: &Path, id: &str) -> Vec<u8> {
    let reader = penguin_queue::SpoolReader::open(spool).expect("open spool read-only");
    reader
        .read_body(id.parse().expect("queue id"))
        .expect("read")
        .expect("body present")
}

// ---- Helpers for the reception, smuggling and limits tests ----

impl Reply {
    /// The RFC 3463 enhanced status code at the start of the last line ("" when there is none, as on
    /// the greeting and EHLO/HELO replies).
    pub fn enhanced_code(&self) -> &str {
        let first = self
            .lines
            .last()
            .and_then(|line| line.split(' ').next())
            .unwrap_or("");
        let parts: Vec<&str> = first.split('.').collect();
        let is_status = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if is_status { first } else { "" }
    }
}

/// Asserts a reply's code and enhanced status code (`""` for none); `context` names the command.
#[track_caller]
pub fn assert_reply(reply: &Reply, code: u16, enhanced: &str, context: &str) {
    assert_eq!(
        (reply.code, reply.enhanced_code()),
        (code, enhanced),
        "{context}: unexpected reply {reply}"
    );
}

impl SmtpClient {
    /// Sends a command and asserts its reply's code and enhanced status code; returns the reply.
    pub async fn expect(&mut self, line: &str, code: u16, enhanced: &str) -> Reply {
        let reply = self.cmd(line).await;
        assert_reply(&reply, code, enhanced, line);
        reply
    }

    /// Reads `count` replies in order.
    pub async fn replies(&mut self, count: usize) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(count);
        for _ in 0..count {
            replies.push(self.reply().await);
        }
        replies
    }

    /// Sends `BDAT <len> [LAST]` and the chunk bytes in one write and reads the reply.
    pub async fn bdat(&mut self, chunk: &[u8], last: bool) -> Reply {
        let mut wire = format!("BDAT {}{}\r\n", chunk.len(), if last { " LAST" } else { "" }).into_bytes();
        wire.extend_from_slice(chunk);
        self.send_raw(&wire).await;
        self.reply().await
    }

    /// Asserts that the server closes the connection next, sending nothing more first.
    pub async fn expect_closed(&mut self, context: &str) {
        if let Some(line) = self.read_line().await {
            panic!("{context}: expected the connection to close, got {line:?}");
        }
    }
}

/// Starts a server on `config` after letting loopback clients relay (tenant "default", any sender).
pub async fn start_relay_server(mut config: Config) -> TestServer {
    allow_loopback_relay(&mut config);
    TestServer::start(config).await
}

// ---- Helpers for sessions that may outlive the server (crash and shutdown tests) and for /metrics. ----

impl SmtpClient {
    /// Sends raw bytes; an error (instead of a panic) when the connection is gone.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let io = self.stream.io();
        io.write_all(bytes).await?;
        io.flush().await
    }

    /// Sends a command and reads its reply; `None` if the connection broke on the way.
    pub async fn try_cmd(&mut self, line: &str) -> Option<Reply> {
        self.try_send_raw(format!("{line}\r\n").as_bytes()).await.ok()?;
        self.try_reply().await
    }

    /// Like [`SmtpClient::send_message`], but never panics on the server's answers: returns the first
    /// reply that is not the expected positive one (250 to MAIL/RCPT, 354 to DATA) or the final reply
    /// after the content; `None` if the connection broke on the way.
    pub async fn try_send_message(&mut self, from: &str, to: &[&str], content: &str) -> Option<Reply> {
        let reply = self.try_cmd(&format!("MAIL FROM:<{from}>")).await?;
        if reply.code != 250 {
            return Some(reply);
        }
        for recipient in to {
            let reply = self.try_cmd(&format!("RCPT TO:<{recipient}>")).await?;
            if reply.code != 250 {
                return Some(reply);
            }
        }
        let reply = self.try_cmd("DATA").await?;
        if reply.code != 354 {
            return Some(reply);
        }
        let mut wire = dot_stuff(content);
        wire.extend_from_slice(b".\r\n");
        self.try_send_raw(&wire).await.ok()?;
        self.try_reply().await
    }
}

/// The value of one sample of a Prometheus/OpenMetrics text exposition, by its exact series name with
/// labels as rendered (`penguin_spool_commits_total`, `penguin_messages_received_total{tenant="acme"}`).
pub fn metric_sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

impl SmtpClient {
    /// `mail_line` (a whole MAIL command, parameters included), RCPT for each recipient, DATA, the
    /// content (dot-stuffed here) and the final dot; the replies before the last must be positive.
    /// Returns the final reply.
    pub async fn send_message_with(&mut self, mail_line: &str, to: &[&str], content: &str) -> Reply {
        let reply = self.cmd(mail_line).await;
        assert_eq!(reply.code, 250, "{mail_line}: {reply}");
        for recipient in to {
            let reply = self.cmd(&format!("RCPT TO:<{recipient}>")).await;
            assert_eq!(reply.code, 250, "RCPT {recipient}: {reply}");
        }
        let reply = self.cmd("DATA").await;
        assert_eq!(reply.code, 354, "DATA: {reply}");
        self.send_raw(&dot_stuff(content)).await;
        self.send_raw(b".\r\n").await;
        self.reply().await
    }
}
