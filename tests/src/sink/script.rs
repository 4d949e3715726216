//! What a test tells the sink (its behaviour) and reads back from it (messages, counters).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::TestCerts;

/// Reply per recipient address (without angle brackets), e.g. `(550, "5.1.1 No such user")`.
pub type RcptReply = Arc<dyn Fn(&str) -> (u16, String) + Send + Sync>;
/// Reply after the final dot, by transaction number (0, 1, 2... across the whole sink).
pub type DataReply = Arc<dyn Fn(u64) -> (u16, String) + Send + Sync>;

/// How the sink behaves. `Default`: accept everything; offer PIPELINING, 8BITMIME, SMTPUTF8, SIZE and
/// ENHANCEDSTATUSCODES; no STARTTLS. A reply text may hold `\n` to make a multi-line reply.
#[derive(Clone, Default)]
pub struct SinkBehaviour {
    /// Offer STARTTLS (real TLS) with this server certificate; the client must EHLO again after it.
    pub starttls: Option<Arc<TestCerts>>,
    /// Greeting instead of `220 sink.test ESMTP`; any code but 220 is sent and the connection closed.
    pub greeting: Option<(u16, String)>,
    /// Reply per RCPT address; default `250 2.1.5 Ok`. Only 2xx recipients join the transaction.
    pub rcpt: Option<RcptReply>,
    /// Reply after the final dot; default `250 2.0.0 Ok: queued`. Only 2xx messages are recorded.
    pub data_reply: Option<DataReply>,
    /// Read the whole message, then drop the connection without replying; the message is not recorded
    /// but counted in [`TestSink::dropped_after_data`].
    pub disconnect_after_data: bool,
    /// Do not offer PIPELINING (and count pipelined commands as protocol errors).
    pub no_pipelining: bool,
    /// Do not offer SMTPUTF8.
    pub no_smtputf8: bool,
    /// Do not offer 8BITMIME.
    pub no_8bitmime: bool,
    /// More EHLO lines, e.g. `"DSN"`. Offered only: their MAIL parameter (`DSN`: RET/ENVID on MAIL,
    /// NOTIFY/ORCPT on RCPT; otherwise the keyword itself on MAIL) is accepted and recorded, nothing more.
    pub ehlo_extra: Vec<String>,
    /// Wait this long before answering the final dot (keeps the client's connection busy, so a test
    /// sees how many connections it opens at once).
    pub data_delay: Option<Duration>,
}

impl SinkBehaviour {
    /// This behaviour with a per-recipient reply.
    pub fn with_rcpt(mut self, reply: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) -> Self {
        self.rcpt = Some(Arc::new(reply));
        self
    }

    /// This behaviour with a reply after the final dot, by transaction number.
    pub fn with_data_reply(mut self, reply: impl Fn(u64) -> (u16, String) + Send + Sync + 'static) -> Self {
        self.data_reply = Some(Arc::new(reply));
        self
    }
}

/// One message the sink accepted (2xx after the final dot).
#[derive(Clone, Debug)]
pub struct Received {
    /// The EHLO/HELO argument of the session that carried it.
    pub helo: String,
    /// MAIL FROM address without angle brackets ("" for the null sender).
    pub mail_from: String,
    /// Raw text after `MAIL FROM:<..>`, e.g. `" SIZE=120 BODY=8BITMIME"`.
    pub mail_params: String,
    /// Accepted recipients (2xx to RCPT), in order, without angle brackets.
    pub rcpt_to: Vec<String>,
    /// Raw text after `RCPT TO:<..>` of each accepted recipient, parallel to `rcpt_to`.
    pub rcpt_params: Vec<String>,
    /// The content as delivered, dot-unstuffed, without the final `.CRLF`.
    pub data: Vec<u8>,
    /// Whether the session was inside TLS.
    pub tls: bool,
    /// Which accepted connection carried it (0, 1, 2... in accept order).
    pub connection: u64,
    /// Which transaction it was (0, 1, 2... in order of accepted MAIL commands across the sink).
    pub transaction: u64,
    /// The client's address (the egress source the MTA connected from).
    pub peer: SocketAddr,
    /// When the final dot arrived (system time).
    pub at: std::time::SystemTime,
    /// Its MAIL command arrived in the same read as the previous message's content, before the
    /// sink's reply to that message's final dot (pipelined across transactions, RFC 2920).
    pub pipelined: bool,
}

impl Received {
    /// The content as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Counters of what happened at the sink; waited on by [`TestSink::wait_until`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Accepted TCP connections.
    pub connections: u64,
    /// Accepted MAIL commands (transactions started).
    pub transactions: u64,
    /// Recorded messages (2xx after the final dot).
    pub received: u64,
    /// Messages read completely and then answered by dropping the connection.
    pub dropped_after_data: u64,
    /// Client faults against the protocol (see the module documentation).
    pub protocol_errors: u64,
    /// TLS handshakes after STARTTLS that failed or timed out.
    pub tls_failures: u64,
    /// Connections open now.
    pub open: u64,
    /// The most connections that were open at once.
    pub max_open: u64,
}
