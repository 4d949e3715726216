//! `TestSink`: a real SMTP server on loopback that plays the remote MX penguin-mta delivers to. Each test
//! scripts how it answers ([`SinkBehaviour`], changeable while it runs) and reads back what arrived
//! ([`Received`]) and how the client behaved ([`SinkStats`], [`TestSink::protocol_error_details`]).
//!
//! The server side is strict on purpose, so that a broken client shows up as a failed test: commands must
//! end with CRLF, arrive in a valid order, use only parameters of offered extensions, and be pipelined only
//! where RFC 2920 allows; message content must be dot-stuffed, CRLF-only, with lines of at most 1000
//! octets and 8-bit octets only when declared. Every such fault is answered like a real server would (5xx
//! for commands) and counted in [`TestSink::protocol_errors`]; faults in content are counted but the
//! message is still taken, so a test sees both.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{TestCerts, WAIT};

mod protocol;
mod script;
use protocol::{Extensions, command_text, declares_eight_bit, format_reply, line_faults, param, parse_path};
pub use script::{DataReply, RcptReply, Received, SinkBehaviour, SinkStats};

/// Longest command line accepted, CRLF included; a longer one gets 500 and the connection is closed.
pub const MAX_LINE: usize = 4096;
/// Largest message content accepted (also announced as `SIZE`); larger content gets 552 after the dot.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Bound on every read and write; a client idle this long gets 421 and is disconnected.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 5321 limit of a text line, CRLF included; longer content lines count as protocol errors.
const MAX_TEXT_LINE: usize = 1000;
/// Bound on recipients per transaction (RFC 5321 asks for at least 100); more get 452.
const MAX_RECIPIENTS: usize = 10_000;
/// The sink's host name in its greeting and EHLO reply.
const HOSTNAME: &str = "sink.test";

/// A behaviour with its TLS acceptor built once.
struct Script {
    /// What the test asked for.
    behaviour: SinkBehaviour,
    /// Server side of STARTTLS, from `behaviour.starttls`.
    acceptor: Option<TlsAcceptor>,
}

impl Script {
    /// Builds the acceptor (panics if the certificate files are unusable: a broken test setup).
    fn new(behaviour: SinkBehaviour) -> Arc<Script> {
        let acceptor = behaviour.starttls.as_deref().map(tls_acceptor);
        Arc::new(Script { behaviour, acceptor })
    }
}

/// A rustls server acceptor for the certificate and key of `certs`.
fn tls_acceptor(certs: &TestCerts) -> TlsAcceptor {
    let chain = CertificateDer::pem_file_iter(&certs.cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .expect("sink: read the certificate chain");
    let key = PrivateKeyDer::from_pem_file(&certs.key_path).expect("sink: read the private key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("sink: TLS server config");
    TlsAcceptor::from(Arc::new(config))
}

/// State shared by the accept loop, every connection and the test.
struct Shared {
    /// The current behaviour; each decision reads the latest one.
    script: Mutex<Arc<Script>>,
    /// Accepted messages in order of acceptance.
    received: Mutex<Vec<Received>>,
    /// One description per protocol error, for failure messages.
    violations: Mutex<Vec<String>>,
    /// Counters; the watch channel wakes waiters on every change (no polling).
    stats: watch::Sender<SinkStats>,
}

impl Shared {
    /// The current behaviour.
    fn script(&self) -> Arc<Script> {
        lock(&self.script).clone()
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test closure must not hide what was recorded).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A scripted SMTP server on loopback; stops (listener and connections) when dropped.
pub struct TestSink {
    /// Where it listens; give this to the engine as the remote MX.
    pub address: SocketAddr,
    /// State shared with the server task.
    shared: Arc<Shared>,
    /// The accept loop; it owns the connection tasks, so aborting it ends them too.
    task: JoinHandle<()>,
}

impl TestSink {
    /// Starts a sink on 127.0.0.1 with a free port.
    pub async fn start(behaviour: SinkBehaviour) -> TestSink {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        TestSink::start_on(any_port, behaviour)
            .await
            .expect("bind the sink")
    }

    /// Starts a sink on `address`, e.g. `127.0.0.2:PORT` (several loopback IPs can share one port).
    pub async fn start_on(address: SocketAddr, behaviour: SinkBehaviour) -> std::io::Result<TestSink> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script: Mutex::new(Script::new(behaviour)),
            received: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            stats: watch::Sender::new(SinkStats::default()),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(TestSink {
            address,
            shared,
            task,
        })
    }

    /// Starts one sink per IP, all on the same free port (retrying when a port is taken on some IP).
    pub async fn start_on_same_port(ips: &[IpAddr], behaviour: SinkBehaviour) -> Vec<TestSink> {
        for _ in 0..20 {
            let Some((&first, rest)) = ips.split_first() else {
                return Vec::new();
            };
            let Ok(sink) = TestSink::start_on(SocketAddr::new(first, 0), behaviour.clone()).await else {
                continue;
            };
            let port = sink.address.port();
            let mut sinks = vec![sink];
            for &ip in rest {
                match TestSink::start_on(SocketAddr::new(ip, port), behaviour.clone()).await {
                    Ok(sink) => sinks.push(sink),
                    Err(_) => break,
                }
            }
            if sinks.len() == ips.len() {
                return sinks;
            }
        }
        panic!("no common free port on {ips:?}");
    }

    /// Changes the behaviour while running; it applies from the next decision on (greeting, EHLO,
    /// RCPT, end of data), also inside open connections.
    pub fn set_behaviour(&self, behaviour: SinkBehaviour) {
        *lock(&self.shared.script) = Script::new(behaviour);
    }

    /// The messages accepted so far, in order of acceptance.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Waits (bounded by [`WAIT`]) until at least `count` messages were accepted; panics with what
    /// arrived otherwise. Returns all accepted messages.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        self.wait_until(&format!("{count} received message(s)"), |stats| {
            stats.received >= count
        })
        .await;
        self.received()
    }

    /// Waits (bounded by [`WAIT`]) until `condition` holds for the counters, woken by every change;
    /// panics naming `what` and showing everything recorded otherwise.
    pub async fn wait_until(&self, what: &str, mut condition: impl FnMut(&SinkStats) -> bool) -> SinkStats {
        let mut stats = self.shared.stats.subscribe();
        let reached = tokio::time::timeout(WAIT, stats.wait_for(|stats| condition(stats)))
            .await
            .map(|outcome| outcome.map(|stats| *stats));
        match reached {
            Ok(Ok(stats)) => stats,
            _ => panic!(
                "sink {}: waited {WAIT:?} for {what}; stats {:?}\nreceived: {:#?}\nprotocol errors: {:#?}",
                self.address,
                self.stats(),
                self.received(),
                self.protocol_error_details()
            ),
        }
    }

    /// All counters now.
    pub fn stats(&self) -> SinkStats {
        *self.shared.stats.borrow()
    }

    /// Accepted connections so far.
    pub fn connections(&self) -> u64 {
        self.stats().connections
    }

    /// Accepted MAIL commands (transactions started) so far.
    pub fn transactions(&self) -> u64 {
        self.stats().transactions
    }

    /// Messages read completely and then answered by dropping the connection.
    pub fn dropped_after_data(&self) -> u64 {
        self.stats().dropped_after_data
    }

    /// Client faults against the protocol so far; a clean client keeps this at 0.
    pub fn protocol_errors(&self) -> u64 {
        self.stats().protocol_errors
    }

    /// One description per protocol error ("connection N: what: line").
    pub fn protocol_error_details(&self) -> Vec<String> {
        lock(&self.shared.violations).clone()
    }

    /// Stops the sink and waits until its listener is closed (dropping only signals the stop).
    pub async fn stop(self) {
        let mut sink = self;
        sink.task.abort();
        let _ = (&mut sink.task).await;
    }
}

impl Drop for TestSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections and runs each in a task owned here (so they end with this task).
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let mut number = 0;
                    shared.stats.send_modify(|stats| {
                        number = stats.connections;
                        stats.connections += 1;
                        stats.open += 1;
                        stats.max_open = stats.max_open.max(stats.open);
                    });
                    let shared = shared.clone();
                    connections.spawn(async move {
                        Connection::new(shared.clone(), tcp, number, peer).run().await;
                        shared.stats.send_modify(|stats| stats.open -= 1);
                    });
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Plain or TLS stream of one connection.
enum Stream {
    /// Before STARTTLS.
    Plain(TcpStream),
    /// After STARTTLS.
    Tls(Box<TlsStream<TcpStream>>),
    /// Moved out during the handshake (the connection ends if it fails).
    Gone,
}

/// Object-safe read + write.
trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

impl Stream {
    /// The stream as a reader/writer.
    fn io(&mut self) -> &mut dyn AsyncReadWrite {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.as_mut(),
            Stream::Gone => panic!("sink: stream used after a failed TLS handshake"),
        }
    }
}

/// Why a connection ends.
enum Stop {
    /// The session is over (QUIT, dropped after data, failed TLS handshake): close quietly.
    Quit,
    /// The client closed it (or it broke).
    Closed,
    /// No progress within [`IO_TIMEOUT`].
    TimedOut,
    /// A line longer than its bound.
    TooLong,
}

/// Outcome of handling one command: go on with the next one, or end the connection.
type Step = Result<(), Stop>;

/// Per-connection SMTP state.
#[derive(Default)]
struct Session {
    /// EHLO/HELO argument; `None` until the client greets (again after STARTTLS).
    helo: Option<String>,
    /// Extensions offered by EHLO; `None` after HELO (plain SMTP).
    esmtp: Option<Extensions>,
    /// Inside TLS.
    tls: bool,
    /// The open mail transaction.
    transaction: Option<Transaction>,
    /// Input was already waiting when the last message's final dot was read: the client pipelined
    /// its next commands behind the content.
    pipelined_after_data: bool,
}

/// One open mail transaction.
struct Transaction {
    /// Transaction number across the sink.
    number: u64,
    /// MAIL FROM address.
    mail_from: String,
    /// Raw MAIL parameters.
    mail_params: String,
    /// Accepted recipients.
    rcpt_to: Vec<String>,
    /// Raw RCPT parameters of each accepted recipient.
    rcpt_params: Vec<String>,
    /// Its MAIL arrived together with the previous message's content (before our reply to its dot).
    pipelined: bool,
}

/// One client connection.
struct Connection {
    /// Sink state.
    shared: Arc<Shared>,
    /// Accept order of this connection.
    number: u64,
    /// The socket.
    stream: Stream,
    /// Bytes read; `buffer[start..]` are not yet consumed.
    buffer: Vec<u8>,
    /// First unconsumed byte of `buffer`.
    start: usize,
    /// SMTP state.
    session: Session,
    /// The command being handled, as received (for protocol error descriptions).
    line: String,
    /// The client's address.
    peer: SocketAddr,
}

impl Connection {
    /// A connection that has not greeted yet.
    fn new(shared: Arc<Shared>, tcp: TcpStream, number: u64, peer: SocketAddr) -> Connection {
        Connection {
            shared,
            peer,
            number,
            stream: Stream::Plain(tcp),
            buffer: Vec::with_capacity(8192),
            start: 0,
            session: Session::default(),
            line: String::new(),
        }
    }

    /// Greets and serves commands until QUIT, a close, a timeout or a fatal fault.
    async fn run(mut self) {
        let greeting = self.shared.script().behaviour.greeting.clone();
        let (code, text) = greeting.unwrap_or_else(|| (220, format!("{HOSTNAME} ESMTP penguin test sink")));
        if self.send(code, &text).await.is_err() || code != 220 {
            return;
        }
        loop {
            match self.next_command().await {
                Ok(()) => {}
                Err(Stop::Quit | Stop::Closed) => return,
                Err(Stop::TimedOut) => {
                    let _ = self.send(421, "4.4.2 Timeout, closing connection").await;
                    return;
                }
                Err(Stop::TooLong) => {
                    self.violation(format!("line longer than {MAX_LINE} octets"));
                    let _ = self.send(500, "5.5.2 Line too long").await;
                    return;
                }
            }
        }
    }

    /// Reads and handles one command.
    async fn next_command(&mut self) -> Step {
        let raw = self.read_line(MAX_LINE).await?;
        self.line = String::from_utf8_lossy(&raw).into_owned();
        let text = match command_text(&raw) {
            Ok(text) => text,
            Err(problem) => return self.fault(&format!("500 5.5.2 Syntax error: {problem}")).await,
        };
        let (verb, arg) = text.split_once(' ').unwrap_or((&text, ""));
        let verb = verb.to_ascii_uppercase();
        self.check_pipelining(&verb);
        match verb.as_str() {
            "EHLO" => self.hello(true, arg).await,
            "HELO" => self.hello(false, arg).await,
            "STARTTLS" => self.starttls(arg).await,
            "MAIL" => self.mail(arg).await,
            "RCPT" => self.rcpt(arg).await,
            "DATA" => self.data(arg).await,
            "RSET" if arg.is_empty() => {
                self.session.transaction = None;
                self.send(250, "2.0.0 Ok").await
            }
            "RSET" => self.fault("501 5.5.4 Syntax: RSET takes no argument").await,
            "NOOP" => self.send(250, "2.0.0 Ok").await,
            "QUIT" => self.send(221, "2.0.0 Bye").await.and(Err(Stop::Quit)),
            _ => self.fault("500 5.5.2 Command not recognized").await,
        }
    }

    /// Counts input that arrived before the reply to a command after which the client must wait
    /// (EHLO, HELO, STARTTLS, DATA), or after any command when PIPELINING was not offered.
    fn check_pipelining(&self, verb: &str) {
        if !self.has_buffered() || verb == "QUIT" {
            return;
        }
        let pipelining = self.session.esmtp.as_ref().is_some_and(|esmtp| esmtp.pipelining);
        if matches!(verb, "EHLO" | "HELO" | "STARTTLS" | "DATA") {
            self.violation(format!("input sent before the reply to {:?}", self.line));
        } else if !pipelining {
            self.violation(format!("pipelined without PIPELINING: {:?}", self.line));
        }
    }

    /// EHLO (`extended`) or HELO.
    async fn hello(&mut self, extended: bool, arg: &str) -> Step {
        if arg.trim().is_empty() {
            return self.fault("501 5.5.4 Syntax: EHLO domain").await;
        }
        self.session.helo = Some(arg.to_string());
        self.session.transaction = None;
        if !extended {
            self.session.esmtp = None;
            return self.send(250, HOSTNAME).await;
        }
        let script = self.shared.script();
        let behaviour = &script.behaviour;
        let extensions = Extensions {
            pipelining: !behaviour.no_pipelining,
            eight_bit: !behaviour.no_8bitmime,
            smtputf8: !behaviour.no_smtputf8,
            starttls: script.acceptor.clone().filter(|_| !self.session.tls),
            extra: behaviour.ehlo_extra.clone(),
        };
        let text = extensions.ehlo_lines(arg).join("\n");
        self.session.esmtp = Some(extensions);
        self.send(250, &text).await
    }

    /// STARTTLS: 220, the handshake, and a fresh session that needs EHLO again.
    async fn starttls(&mut self, arg: &str) -> Step {
        let offered = self
            .session
            .esmtp
            .as_ref()
            .and_then(|esmtp| esmtp.starttls.clone());
        let Some(acceptor) = offered else {
            return self.fault("503 5.5.1 STARTTLS not offered in this session").await;
        };
        if !arg.is_empty() {
            return self.fault("501 5.5.4 Syntax: STARTTLS takes no argument").await;
        }
        self.send(220, "2.0.0 Ready to start TLS").await?;
        // Anything pipelined after STARTTLS was counted already; it must not leak into the TLS session.
        self.buffer.clear();
        self.start = 0;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(Stop::Quit);
        };
        let Ok(Ok(tls)) = tokio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp)).await else {
            self.shared.stats.send_modify(|stats| stats.tls_failures += 1);
            return Err(Stop::Quit);
        };
        self.stream = Stream::Tls(Box::new(tls));
        self.session = Session {
            tls: true,
            ..Session::default()
        };
        Ok(())
    }

    /// MAIL FROM: opens a transaction.
    async fn mail(&mut self, arg: &str) -> Step {
        if self.session.helo.is_none() {
            return self.fault("503 5.5.1 Error: send EHLO first").await;
        }
        if self.session.transaction.is_some() {
            return self.fault("503 5.5.1 Error: nested MAIL command").await;
        }
        let (address, params) = match parse_path(arg, self.session.esmtp.as_ref(), None) {
            Ok(path) => path,
            Err(reply) => return self.fault(&reply).await,
        };
        let size: u64 = param(params, "SIZE")
            .and_then(|size| size.parse().ok())
            .unwrap_or(0);
        if size > MAX_MESSAGE as u64 {
            return self.send(552, "5.3.4 Message size exceeds fixed limit").await;
        }
        let mut number = 0;
        self.shared.stats.send_modify(|stats| {
            number = stats.transactions;
            stats.transactions += 1;
        });
        self.session.transaction = Some(Transaction {
            number,
            mail_from: address.to_string(),
            mail_params: params.to_string(),
            rcpt_to: Vec::new(),
            rcpt_params: Vec::new(),
            pipelined: std::mem::take(&mut self.session.pipelined_after_data),
        });
        self.send(250, "2.1.0 Ok").await
    }

    /// RCPT TO: the scripted reply; 2xx recipients join the transaction.
    async fn rcpt(&mut self, arg: &str) -> Step {
        let Some(transaction) = self.session.transaction.as_ref() else {
            return self.fault("503 5.5.1 Error: need MAIL command").await;
        };
        let smtputf8 = param(&transaction.mail_params, "SMTPUTF8").is_some();
        let count = transaction.rcpt_to.len();
        let (address, params) = match parse_path(arg, self.session.esmtp.as_ref(), Some(smtputf8)) {
            Ok(path) => path,
            Err(reply) => return self.fault(&reply).await,
        };
        if count >= MAX_RECIPIENTS {
            return self.send(452, "4.5.3 Too many recipients").await;
        }
        let script = self.shared.script();
        let (code, text) = match &script.behaviour.rcpt {
            Some(reply) => reply(address),
            None => (250, "2.1.5 Ok".to_string()),
        };
        if (200..300).contains(&code)
            && let Some(transaction) = self.session.transaction.as_mut()
        {
            transaction.rcpt_to.push(address.to_string());
            transaction.rcpt_params.push(params.to_string());
        }
        self.send(code, &text).await
    }

    /// DATA: 354, the content up to CRLF.CRLF, then the scripted reply (or a dropped connection).
    async fn data(&mut self, arg: &str) -> Step {
        if !arg.is_empty() {
            return self.fault("501 5.5.4 Syntax: DATA takes no argument").await;
        }
        let Some(transaction) = self.session.transaction.as_ref() else {
            return self.fault("503 5.5.1 Error: need MAIL command").await;
        };
        if transaction.rcpt_to.is_empty() {
            return self.send(554, "5.5.1 Error: no valid recipients").await;
        }
        self.send(354, "End data with <CR><LF>.<CR><LF>").await?;
        let content = self.read_content().await?;
        self.session.pipelined_after_data = self.has_buffered();
        let Some(transaction) = self.session.transaction.take() else {
            return Err(Stop::Quit);
        };
        let script = self.shared.script();
        if script.behaviour.disconnect_after_data {
            self.shared
                .stats
                .send_modify(|stats| stats.dropped_after_data += 1);
            return Err(Stop::Quit);
        }
        if !self.session.esmtp.as_ref().is_some_and(|esmtp| esmtp.pipelining) && self.has_buffered() {
            self.violation("input sent before the reply to the final dot, without PIPELINING".into());
        }
        let Some(data) = content else {
            return self.send(552, "5.3.4 Message too big").await;
        };
        if data.iter().any(|byte| *byte >= 0x80) && !declares_eight_bit(&transaction.mail_params) {
            self.violation("8-bit content without BODY=8BITMIME or SMTPUTF8".into());
        }
        if let Some(delay) = script.behaviour.data_delay {
            tokio::time::sleep(delay).await;
        }
        let (code, text) = match &script.behaviour.data_reply {
            Some(reply) => reply(transaction.number),
            None => (250, "2.0.0 Ok: queued".to_string()),
        };
        if (200..300).contains(&code) {
            self.record(transaction, data);
        }
        self.send(code, &text).await
    }

    /// Stores an accepted message and wakes the waiters.
    fn record(&self, transaction: Transaction, data: Vec<u8>) {
        let received = Received {
            helo: self.session.helo.clone().unwrap_or_default(),
            mail_from: transaction.mail_from,
            mail_params: transaction.mail_params,
            rcpt_to: transaction.rcpt_to,
            rcpt_params: transaction.rcpt_params,
            data,
            tls: self.session.tls,
            connection: self.number,
            transaction: transaction.number,
            peer: self.peer,
            at: std::time::SystemTime::now(),
            pipelined: transaction.pipelined,
        };
        lock(&self.shared.received).push(received);
        self.shared.stats.send_modify(|stats| stats.received += 1);
    }

    /// Reads the content after 354 up to CRLF.CRLF, un-dot-stuffed; `None` if over [`MAX_MESSAGE`].
    /// Faults in the content are counted (once per kind), not refused.
    async fn read_content(&mut self) -> Result<Option<Vec<u8>>, Stop> {
        let mut content = Vec::new();
        let mut too_big = false;
        let mut faults: Vec<&'static str> = Vec::new();
        // The end is a dot line after a CRLF, not after a bare LF (the SMTP smuggling pattern).
        let mut after_crlf = true;
        loop {
            let line = self.read_line(MAX_MESSAGE).await?;
            if after_crlf && line == b".\r\n" {
                break;
            }
            for fault in line_faults(&line) {
                if !faults.contains(&fault) {
                    faults.push(fault);
                }
            }
            after_crlf = line.ends_with(b"\r\n");
            let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
            too_big |= content.len() + unstuffed.len() > MAX_MESSAGE;
            if too_big {
                content = Vec::new();
            } else {
                content.extend_from_slice(unstuffed);
            }
        }
        for fault in faults {
            self.violation(fault.to_string());
        }
        Ok((!too_big).then_some(content))
    }

    /// Refuses the current command as a client fault: counts it and sends `reply` ("NNN text").
    async fn fault(&mut self, reply: &str) -> Step {
        self.violation(format!("{reply} <- {:?}", self.line));
        let (code, text) = reply.split_at(3);
        self.send(code.parse().unwrap_or(500), text.trim_start()).await
    }

    /// Records one protocol error of the client.
    fn violation(&self, what: String) {
        lock(&self.shared.violations).push(format!("connection {}: {what}", self.number));
        self.shared.stats.send_modify(|stats| stats.protocol_errors += 1);
    }

    /// Writes one (possibly multi-line) reply.
    async fn send(&mut self, code: u16, text: &str) -> Step {
        let wire = format_reply(code, text);
        let io = self.stream.io();
        let write = async {
            io.write_all(wire.as_bytes()).await?;
            io.flush().await
        };
        match tokio::time::timeout(IO_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Closed),
            Err(_) => Err(Stop::TimedOut),
        }
    }

    /// Whether the client sent bytes beyond what has been consumed.
    fn has_buffered(&self) -> bool {
        self.buffer.len() > self.start
    }

    /// The next line up to and including its LF (at most `max` octets).
    async fn read_line(&mut self, max: usize) -> Result<Vec<u8>, Stop> {
        let mut scanned = self.start;
        loop {
            if let Some(offset) = self.buffer[scanned..].iter().position(|byte| *byte == b'\n') {
                let end = scanned + offset + 1;
                if end - self.start > max {
                    return Err(Stop::TooLong);
                }
                let line = self.buffer[self.start..end].to_vec();
                self.start = end;
                return Ok(line);
            }
            if self.buffer.len() - self.start > max {
                return Err(Stop::TooLong);
            }
            self.buffer.drain(..self.start);
            self.start = 0;
            scanned = self.buffer.len();
            self.buffer.reserve(16 * 1024);
            let read = self.stream.io().read_buf(&mut self.buffer);
            match tokio::time::timeout(IO_TIMEOUT, read).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Stop::Closed),
                Ok(Ok(_)) => {}
                Err(_) => return Err(Stop::TimedOut),
            }
        }
    }
}
