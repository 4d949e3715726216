//! The outbound SMTP client: one connection to a remote host, EHLO, opportunistic STARTTLS, and mail
//! transactions with per-recipient results (pipelined when the server offers PIPELINING).
//!
//! mail-send stops at the first rejected RCPT and insists on TLS; delivery needs every recipient's
//! answer and TLS only when offered, so the transaction loop is ours (RFC 5321, 2920, 3207, 6152, 6531).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use penguin_policy::NetworkFailure;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use super::reply::RemoteReply;
use crate::smtp::headers::TlsInfo;

/// Longest reply line we accept (RFC 5321 says 512; be lenient with real servers).
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one reply.
const MAX_REPLY_LINES: usize = 200;

/// Timeouts of an outbound session (RFC 5321 §4.5.3.2).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Waiting for the 220 greeting.
    pub greeting: Duration,
    /// Replies to EHLO, STARTTLS, MAIL, RCPT, RSET, QUIT.
    pub command: Duration,
    /// The 354 after DATA.
    pub data_init: Duration,
    /// Each write of message data.
    pub data_block: Duration,
    /// The reply after the final dot.
    pub data_done: Duration,
}

/// How to open sessions.
#[derive(Clone)]
pub struct ClientSettings {
    /// Our EHLO name.
    pub helo: String,
    /// Local address to bind, if configured.
    pub source_ip: Option<IpAddr>,
    /// STARTTLS when offered (None = never).
    pub tls: Option<TlsConnector>,
    /// Timeouts.
    pub timeouts: Timeouts,
}

/// Why a session could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// No usable reply: connection, timeout, TLS, protocol violation.
    Network {
        /// The failure kind (classified by `penguin_policy::classify_network`).
        failure: NetworkFailure,
        /// What happened, for logs and events.
        detail: String,
    },
    /// The server answered with an error where the whole session or transaction fails (greeting,
    /// EHLO, MAIL, DATA).
    Reply(RemoteReply),
}

impl SessionError {
    /// A network failure with a description.
    fn network(failure: NetworkFailure, detail: impl Into<String>) -> SessionError {
        SessionError::Network {
            failure,
            detail: detail.into(),
        }
    }
}

/// Extensions the server announced.
#[derive(Clone, Debug, Default)]
struct Capabilities {
    /// PIPELINING (RFC 2920).
    pipelining: bool,
    /// STARTTLS (RFC 3207).
    starttls: bool,
    /// SMTPUTF8 (RFC 6531).
    smtputf8: bool,
    /// 8BITMIME (RFC 6152).
    eight_bit_mime: bool,
    /// SIZE limit, if announced (0 = no limit given).
    size: Option<u64>,
}

/// A stream the client can use (plain TCP or TLS).
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One message to send over a connection.
#[derive(Debug)]
pub struct Transaction<'a> {
    /// Envelope sender ("" = null reverse-path).
    pub sender: &'a str,
    /// Recipients (all of one domain).
    pub recipients: &'a [String],
    /// Message content as stored (not dot-stuffed).
    pub body: &'a [u8],
    /// The message needs SMTPUTF8 (UTF-8 addresses or headers).
    pub smtputf8: bool,
    /// The body has 8-bit content.
    pub eight_bit: bool,
}

/// An open outbound SMTP session.
pub struct Connection {
    /// The byte stream (buffered for reading replies).
    stream: BufReader<Box<dyn Stream>>,
    /// What the server offers.
    capabilities: Capabilities,
    /// Remote host name (MX name) for events.
    pub host: String,
    /// Remote address.
    pub address: SocketAddr,
    /// Our local address on this connection.
    pub local_ip: Option<IpAddr>,
    /// TLS parameters, when STARTTLS was used.
    pub tls: Option<TlsInfo>,
    /// Transactions completed on this connection.
    pub transactions: usize,
    /// False once the connection must not be reused (error, 421, timeout).
    usable: bool,
    /// The envelope commands (MAIL, RCPT, DATA) of the next transaction, written behind the previous
    /// message's final dot (RFC 2920 allows content first in a group), their replies not read yet.
    announced: Option<String>,
}

impl Connection {
    /// Connects, reads the greeting, EHLO, and STARTTLS when offered and configured (a failed
    /// handshake falls back to a new plaintext connection, as opportunistic TLS allows).
    pub async fn open(
        address: SocketAddr,
        host: &str,
        settings: &ClientSettings,
    ) -> Result<Connection, SessionError> {
        let connection = Connection::connect(address, host, settings).await?;
        let connection = connection.greet(&settings.helo, settings.timeouts).await?;
        let Some(connector) = settings.tls.as_ref().filter(|_| connection.capabilities.starttls) else {
            return Ok(connection);
        };
        match connection
            .starttls(connector, &settings.helo, settings.timeouts)
            .await
        {
            Ok(secured) => Ok(secured),
            Err(SessionError::Network {
                failure: NetworkFailure::TlsHandshake,
                ..
            }) => {
                let plain = Connection::connect(address, host, settings).await?;
                plain.greet(&settings.helo, settings.timeouts).await
            }
            Err(other) => Err(other),
        }
    }

    /// TCP connect (bound to the source address when configured).
    async fn connect(
        address: SocketAddr,
        host: &str,
        settings: &ClientSettings,
    ) -> Result<Connection, SessionError> {
        let socket = match address {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|error| SessionError::network(NetworkFailure::ConnectionRefused, error.to_string()))?;
        if let Some(source) = settings.source_ip {
            socket.bind(SocketAddr::new(source, 0)).map_err(|error| {
                SessionError::network(
                    NetworkFailure::ConnectionRefused,
                    format!("bind {source}: {error}"),
                )
            })?;
        }
        let tcp: TcpStream =
            match tokio::time::timeout(settings.timeouts.connect, socket.connect(address)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(error)) => {
                    return Err(SessionError::network(
                        NetworkFailure::ConnectionRefused,
                        format!("{address}: {error}"),
                    ));
                }
                Err(_) => {
                    return Err(SessionError::network(
                        NetworkFailure::ConnectTimeout,
                        format!("{address}: connect timeout"),
                    ));
                }
            };
        let _ = tcp.set_nodelay(true);
        let local_ip = tcp.local_addr().ok().map(|local| local.ip());
        Ok(Connection {
            stream: BufReader::new(Box::new(tcp)),
            capabilities: Capabilities::default(),
            host: host.to_string(),
            address,
            local_ip,
            tls: None,
            transactions: 0,
            usable: true,
            announced: None,
        })
    }

    /// Reads the 220 greeting and sends EHLO (HELO if EHLO is refused).
    async fn greet(mut self, helo: &str, timeouts: Timeouts) -> Result<Connection, SessionError> {
        let greeting = self.read_reply(timeouts.greeting).await?;
        if greeting.code != 220 {
            return Err(SessionError::Reply(greeting));
        }
        self.hello(helo, timeouts).await?;
        Ok(self)
    }

    /// EHLO (or HELO) and capability parsing.
    async fn hello(&mut self, helo: &str, timeouts: Timeouts) -> Result<(), SessionError> {
        self.write(format!("EHLO {helo}\r\n").as_bytes(), timeouts.command)
            .await?;
        let reply = self.read_reply(timeouts.command).await?;
        if reply.code == 250 {
            self.capabilities = parse_capabilities(&reply.lines);
            return Ok(());
        }
        if reply.code >= 500 {
            self.write(format!("HELO {helo}\r\n").as_bytes(), timeouts.command)
                .await?;
            let reply = self.read_reply(timeouts.command).await?;
            if reply.code == 250 {
                self.capabilities = Capabilities::default();
                return Ok(());
            }
            return Err(SessionError::Reply(reply));
        }
        Err(SessionError::Reply(reply))
    }

    /// STARTTLS, the handshake (no certificate verification: opportunistic), and EHLO again.
    async fn starttls(
        mut self,
        connector: &TlsConnector,
        helo: &str,
        timeouts: Timeouts,
    ) -> Result<Connection, SessionError> {
        self.write(b"STARTTLS\r\n", timeouts.command).await?;
        let reply = self.read_reply(timeouts.command).await?;
        if reply.code != 220 {
            // Offered but refused: go on in plaintext on this connection.
            return Ok(self);
        }
        let stream = self.stream.into_inner();
        let name = rustls_pki_types::ServerName::try_from(self.host.clone())
            .unwrap_or_else(|_| rustls_pki_types::ServerName::IpAddress(self.address.ip().into()));
        let handshake = tokio::time::timeout(timeouts.command, connector.connect(name, stream)).await;
        let tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                return Err(SessionError::network(
                    NetworkFailure::TlsHandshake,
                    error.to_string(),
                ));
            }
            Err(_) => {
                return Err(SessionError::network(
                    NetworkFailure::TlsHandshake,
                    "TLS handshake timeout",
                ));
            }
        };
        let info = TlsInfo::of(tls.get_ref().1);
        let mut secured = Connection {
            stream: BufReader::new(Box::new(tls)),
            tls: Some(info),
            ..self
        };
        secured.hello(helo, timeouts).await?;
        Ok(secured)
    }
}

/// The EHLO keywords we use.
fn parse_capabilities(lines: &[String]) -> Capabilities {
    let mut capabilities = Capabilities::default();
    for line in lines.iter().skip(1) {
        let mut words = line.split_ascii_whitespace();
        let keyword = words.next().unwrap_or("").to_ascii_uppercase();
        match keyword.as_str() {
            "PIPELINING" => capabilities.pipelining = true,
            "STARTTLS" => capabilities.starttls = true,
            "SMTPUTF8" => capabilities.smtputf8 = true,
            "8BITMIME" => capabilities.eight_bit_mime = true,
            "SIZE" => capabilities.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
            _ => {}
        }
    }
    capabilities
}

#[path = "client_io.rs"]
mod client_io;

#[path = "client_transaction.rs"]
mod client_transaction;

/// A TLS connector for opportunistic STARTTLS: any certificate is accepted (RFC 7435).
pub fn opportunistic_tls() -> TlsConnector {
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(client_io::AcceptAnyCertificate::new()))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_ehlo() {
        let lines: Vec<String> = [
            "mx.example",
            "PIPELINING",
            "SIZE 1000",
            "starttls",
            "8BITMIME",
            "SMTPUTF8",
            "X-FOO bar",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let caps = parse_capabilities(&lines);
        assert!(caps.pipelining && caps.starttls && caps.eight_bit_mime && caps.smtputf8);
        assert_eq!(caps.size, Some(1000));
        let none = parse_capabilities(&["mx.example".to_string()]);
        assert!(!none.pipelining && !none.starttls && none.size.is_none());
    }
}
