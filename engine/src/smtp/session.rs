//! The SMTP server session as a sans-IO state machine.
//!
//! The connection driver feeds it command lines, DATA bytes and BDAT chunk bytes, and performs the
//! [`Step`]s it returns (write a reply, start TLS, verify credentials, spool a message), feeding the
//! results back. Nothing here touches a socket, the disk or a clock, so every rule of RFC 5321
//! reception is tested by feeding lines and reading replies.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use penguin_queue::{Envelope, IdGenerator, MessageId, NewMessage, Recipient, RecipientState, SpoolError};
use smtp_proto::{MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, Request};

use super::auth::{Credentials, Tenant};
use super::codec::{ContentChecker, DataDecoder, DataOutcome, LineError};
use super::headers::{self, TlsInfo, Trace};
use super::reply::{Reply, replies};
use crate::timefmt;

/// Maximum command line: RFC 5321 §4.5.3.1.4, 512 octets with CRLF.
pub const MAX_COMMAND_LINE: usize = 512;
/// Maximum AUTH response line (RFC 4954 §4 allows 12288 octets).
pub const MAX_AUTH_LINE: usize = 12_288;

/// Settings a session needs, derived from `[smtp]` config.
#[derive(Clone, Debug)]
pub struct SessionParams {
    /// Our host name for the greeting, EHLO and Received.
    pub hostname: String,
    /// Message size limit in bytes (SIZE and actual).
    pub max_message_size: usize,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Protocol errors before 421 and close.
    pub max_errors: u32,
    /// Whether a certificate is configured (STARTTLS offered).
    pub tls_available: bool,
}

/// What the session asks the spool: free disk space and the suppression lists.
pub trait SpoolGauge: Send + Sync {
    /// False when the spool's filesystem is below its free-space minimum.
    fn has_free_space(&self) -> bool;
    /// The reason (`unsubscribe`, `hard_bounce`, `complaint`, `manual`) why `tenant` must not mail
    /// `address`, `None` if it may; `Err` (with the cause) when the list cannot be read.
    fn suppression_reason(&self, tenant: &str, address: &str) -> Result<Option<&'static str>, String>;
    /// Recipients `tenant` had accepted today (UTC), compared with its `daily_quota`; `Err` when the
    /// counter cannot be read.
    fn accepted_today(&self, _tenant: &str) -> Result<u64, String> {
        Ok(0)
    }
    /// Whether the tenant's campaign was cancelled (its new mail is refused).
    fn campaign_cancelled(&self, _tenant: &str, _campaign: &str) -> bool {
        false
    }
}

/// What is shared by all sessions of a server.
pub struct SessionShared {
    /// Limits and names.
    pub params: SessionParams,
    /// Queue id source.
    pub ids: IdGenerator,
    /// Disk space check.
    pub gauge: Arc<dyn SpoolGauge>,
}

/// The client as seen at connect time.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Client address.
    pub ip: IpAddr,
    /// The tenant for unauthenticated relaying when the client is in relay_networks.
    pub relay_tenant: Option<Arc<Tenant>>,
    /// The client is in `auth_cleartext_networks`: AUTH is offered before STARTTLS.
    pub cleartext_auth: bool,
}

impl Peer {
    /// AUTH without TLS: for `auth_cleartext_networks` (loopback by default: the password does not
    /// cross a network) and relay_networks (trusted anyway).
    fn may_auth_in_clear(&self) -> bool {
        self.cleartext_auth || self.relay_tenant.is_some()
    }
}

/// How the driver must read the next input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// A line of at most this many bytes (with CRLF), for `on_line`.
    Line(usize),
    /// DATA content, for `feed_data`.
    Data,
    /// BDAT chunk bytes still to come, for `feed_chunk`.
    Chunk(usize),
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Step {
    /// Write the reply and go on.
    Reply(Reply),
    /// Write the reply, flush and close the connection.
    Close(Reply),
    /// Write the reply (220), discard any buffered input, run the TLS handshake, then call
    /// `on_tls_established`.
    StartTls(Reply),
    /// Verify the credentials (and the lockout), then call `on_verified`.
    Verify(Credentials),
    /// Write the message to the spool, then call `on_enqueued`.
    Enqueue(Box<Accepted>),
    /// A recipient is on the tenant's suppression list: emit the `suppressed` event, write the reply.
    Suppressed(Box<SuppressedRecipient>),
    /// Nothing to answer yet: read more input as `read_mode` says (BDAT chunk bytes).
    ReadMore,
}

/// Result of a credential check, as fed back by the driver.
#[derive(Debug)]
pub enum AuthOutcome {
    /// Valid: the session now belongs to this tenant.
    Success(Arc<Tenant>),
    /// Wrong username or password.
    Failure,
    /// The client is locked out after too many failures.
    LockedOut,
}

/// A RCPT TO refused because of the suppression list.
#[derive(Debug)]
pub struct SuppressedRecipient {
    /// The 550 reply.
    pub reply: Reply,
    /// Whose list.
    pub tenant: String,
    /// The transaction's reverse-path.
    pub sender: String,
    /// The refused address.
    pub recipient: String,
    /// The list entry's reason.
    pub reason: &'static str,
    /// The client address.
    pub client_ip: IpAddr,
}

/// A message accepted by the protocol, on its way to the spool.
#[derive(Debug)]
pub struct Accepted {
    /// The tenant it belongs to (signing and unsubscribe settings).
    pub tenant: Arc<Tenant>,
    /// Id, envelope and body (with our trace header fields in front).
    pub message: NewMessage,
    /// TLS of the session, for the reception event.
    pub tls: Option<TlsInfo>,
    /// The client address, for the reception event.
    pub client_ip: IpAddr,
}

/// The state of an AUTH exchange waiting for a response line.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AuthExchange {
    /// PLAIN without an initial response: waiting for it.
    Plain,
    /// LOGIN: waiting for the username.
    LoginUsername,
    /// LOGIN: waiting for the password of this username.
    LoginPassword(String),
}

/// A mail transaction between MAIL and the end of the message.
#[derive(Debug)]
struct Transaction {
    /// Reverse-path ("" for the null sender).
    sender: String,
    /// Accepted forward-paths.
    recipients: Vec<String>,
    /// SIZE parameter (0 when absent).
    declared_size: usize,
    /// SMTPUTF8 parameter given.
    smtputf8: bool,
    /// BODY=8BITMIME given.
    eight_bit_mime: bool,
    /// BDAT content, once the first chunk was announced.
    chunks: Option<Chunks>,
}

/// One SMTP session.
pub struct Session {
    /// Server-wide settings and services.
    shared: Arc<SessionShared>,
    /// The client.
    peer: Peer,
    /// EHLO/HELO argument once given.
    helo: Option<String>,
    /// The client said EHLO (pipelining and extensions allowed).
    esmtp: bool,
    /// TLS parameters once STARTTLS completed.
    tls: Option<TlsInfo>,
    /// The tenant from AUTH.
    authenticated: Option<Arc<Tenant>>,
    /// AUTH exchange waiting for a response line.
    auth_exchange: Option<AuthExchange>,
    /// The mail transaction in progress.
    transaction: Option<Transaction>,
    /// DATA content decoder while in DATA.
    data: Option<DataDecoder>,
    /// BDAT chunk being read.
    chunk: Option<PendingChunk>,
    /// Protocol errors so far.
    errors: u32,
}

impl Session {
    /// A new session for a client that just connected.
    pub fn new(shared: Arc<SessionShared>, peer: Peer) -> Session {
        Session {
            shared,
            peer,
            helo: None,
            esmtp: false,
            tls: None,
            authenticated: None,
            auth_exchange: None,
            transaction: None,
            data: None,
            chunk: None,
            errors: 0,
        }
    }

    /// Server-wide settings and services (the queue id source).
    pub fn shared(&self) -> Arc<SessionShared> {
        Arc::clone(&self.shared)
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> Reply {
        Reply::bare(
            220,
            vec![format!("{} ESMTP penguin-mta", self.shared.params.hostname).into()],
        )
    }

    /// How the next input must be read.
    pub fn read_mode(&self) -> ReadMode {
        if let Some(chunk) = &self.chunk {
            ReadMode::Chunk(chunk.remaining)
        } else if self.data.is_some() {
            ReadMode::Data
        } else if self.auth_exchange.is_some() {
            ReadMode::Line(MAX_AUTH_LINE)
        } else {
            ReadMode::Line(MAX_COMMAND_LINE)
        }
    }

    /// Whether a mail transaction is open (shutdown waits for it, within its grace period).
    pub fn in_transaction(&self) -> bool {
        self.transaction.is_some() || self.data.is_some() || self.chunk.is_some()
    }

    /// The client's address.
    pub fn peer_ip(&self) -> IpAddr {
        self.peer.ip
    }

    /// The host name (for replies the driver makes itself, such as timeouts).
    pub fn hostname(&self) -> &str {
        &self.shared.params.hostname
    }

    /// A line that the framer refused.
    pub fn on_line_error(&mut self, error: LineError) -> Step {
        self.auth_exchange = None;
        match error {
            LineError::BareLineEnding => Step::Close(replies::bare_line_ending_in_command()),
            LineError::TooLong => self.error(replies::line_too_long()),
        }
    }

    /// A complete line (with CRLF). `more_input` says whether more client bytes were already
    /// buffered behind it (pipelining).
    pub fn on_line(&mut self, line: &[u8], more_input: bool, now: SystemTime) -> Step {
        if let Some(exchange) = self.auth_exchange.take() {
            return self.on_auth_response(exchange, line);
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request,
            Err(error) => return self.error(parse_error_reply(error)),
        };
        if more_input && self.must_be_last_in_group(&request) {
            return Step::Close(replies::protocol_synchronization());
        }
        match request {
            Request::Ehlo { host } => self.on_hello(host.into_owned(), true),
            Request::Helo { host } => self.on_hello(host.into_owned(), false),
            Request::Mail { from } => self.on_mail(from.address.into_owned(), from.flags, from.size),
            Request::Rcpt { to } => self.on_rcpt(to.address.into_owned()),
            Request::Data => self.on_data(),
            Request::Bdat { chunk_size, is_last } => self.on_bdat(chunk_size, is_last, now),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.on_auth(mechanism, &initial_response),
            Request::StartTls => self.on_starttls(),
            Request::Rset => {
                self.transaction = None;
                Step::Reply(replies::ok())
            }
            Request::Noop { .. } => Step::Reply(replies::ok()),
            Request::Quit => Step::Close(Reply::new(221, "2.0.0", "Bye")),
            Request::Vrfy { .. } => Step::Reply(Reply::new(
                252,
                "2.5.2",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Request::Help { .. } => Step::Reply(Reply::new(
                214,
                "2.0.0",
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            )),
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. }
            | Request::Lhlo { .. } => self.error(replies::not_implemented()),
        }
    }

    /// RFC 2920: without PIPELINING nothing may follow a command unanswered; with it, EHLO/HELO and
    /// DATA must still end a group. A client breaking this is desynchronised or injecting.
    fn must_be_last_in_group(&self, request: &Request<Cow<'_, str>>) -> bool {
        !self.esmtp
            || matches!(
                request,
                Request::Ehlo { .. } | Request::Helo { .. } | Request::Data
            )
    }

    /// Counts a protocol error; past the limit the answer becomes 421 and the session ends.
    fn error(&mut self, reply: Reply) -> Step {
        self.errors += 1;
        if self.errors >= self.shared.params.max_errors {
            return Step::Close(replies::too_many_errors(&self.shared.params.hostname));
        }
        Step::Reply(reply)
    }

    /// EHLO or HELO.
    fn on_hello(&mut self, host: String, esmtp: bool) -> Step {
        self.transaction = None;
        self.helo = Some(host);
        self.esmtp = esmtp;
        let params = &self.shared.params;
        if !esmtp {
            return Step::Reply(Reply::bare(250, vec![params.hostname.clone().into()]));
        }
        let mut lines: Vec<Cow<'static, str>> = vec![
            params.hostname.clone().into(),
            "PIPELINING".into(),
            format!("SIZE {}", params.max_message_size).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if params.tls_available && self.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        if self.auth_allowed() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        Step::Reply(Reply::bare(250, lines))
    }

    /// AUTH is offered after TLS, or in the clear to loopback/relay_networks clients.
    fn auth_allowed(&self) -> bool {
        self.tls.is_some() || self.peer.may_auth_in_clear()
    }

    /// The tenant the session sends for: from AUTH, else from relay_networks.
    fn tenant(&self) -> Option<&Arc<Tenant>> {
        self.authenticated.as_ref().or(self.peer.relay_tenant.as_ref())
    }

    /// MAIL FROM.
    fn on_mail(&mut self, sender: String, flags: u64, size: usize) -> Step {
        if self.helo.is_none() {
            return self.error(replies::bad_sequence("Error: send HELO/EHLO first"));
        }
        if self.transaction.is_some() {
            return self.error(replies::bad_sequence("Error: nested MAIL command"));
        }
        let Some(tenant) = self.tenant() else {
            return Step::Reply(replies::authentication_required());
        };
        if flags & MAIL_BODY_BINARYMIME != 0 {
            return self.error(Reply::new(
                555,
                "5.5.4",
                "Error: BODY=BINARYMIME is not supported",
            ));
        }
        if !sender.is_ascii() && flags & MAIL_SMTPUTF8 == 0 {
            return Step::Reply(Reply::new(
                553,
                "5.6.7",
                "Error: UTF-8 address needs the SMTPUTF8 parameter",
            ));
        }
        if let Some(refusal) = sender_refusal(tenant, &sender) {
            return Step::Reply(refusal);
        }
        if size > self.shared.params.max_message_size {
            return Step::Reply(replies::message_too_big());
        }
        if let Some(quota) = tenant.daily_quota {
            match self.shared.gauge.accepted_today(&tenant.name) {
                Ok(accepted) if accepted >= quota => {
                    return Step::Reply(replies::daily_quota_reached(&tenant.name, quota));
                }
                Ok(_) => {}
                Err(_) => return Step::Reply(replies::spool_write_failed()),
            }
        }
        if !self.shared.gauge.has_free_space() {
            return Step::Reply(replies::insufficient_storage());
        }
        self.transaction = Some(Transaction {
            sender,
            recipients: Vec::new(),
            declared_size: size,
            smtputf8: flags & MAIL_SMTPUTF8 != 0,
            eight_bit_mime: flags & MAIL_BODY_8BITMIME != 0,
            chunks: None,
        });
        Step::Reply(Reply::new(250, "2.1.0", "Ok"))
    }

    /// RCPT TO.
    fn on_rcpt(&mut self, address: String) -> Step {
        let max_recipients = self.shared.params.max_recipients;
        let Some(transaction) = self.transaction.as_mut() else {
            return self.error(replies::bad_sequence("Error: need MAIL command"));
        };
        if transaction.chunks.is_some() {
            return self.error(replies::bad_sequence("Error: RCPT after BDAT"));
        }
        if transaction.recipients.len() >= max_recipients {
            return Step::Reply(replies::too_many_recipients());
        }
        if !address.is_ascii() && !transaction.smtputf8 {
            return Step::Reply(Reply::new(
                553,
                "5.6.7",
                "Error: UTF-8 address needs the SMTPUTF8 parameter",
            ));
        }
        if !is_routable_address(&address) {
            return self.error(Reply::new(501, "5.1.3", "Error: bad recipient address syntax"));
        }
        if let Some(refusal) = self.suppression_refusal(&address) {
            return refusal;
        }
        if let Some(transaction) = self.transaction.as_mut() {
            transaction.recipients.push(address);
        }
        Step::Reply(Reply::new(250, "2.1.5", "Ok"))
    }

    /// The refusal of a recipient on the tenant's suppression list (or of an unreadable list).
    fn suppression_refusal(&self, address: &str) -> Option<Step> {
        let tenant = self.tenant()?;
        match self.shared.gauge.suppression_reason(&tenant.name, address) {
            Ok(None) => None,
            Ok(Some(reason)) => Some(Step::Suppressed(Box::new(SuppressedRecipient {
                reply: Reply::new(
                    550,
                    "5.7.1",
                    format!(
                        "Recipient <{address}> is on the suppression list of tenant {} ({reason}); not sent",
                        tenant.name
                    ),
                ),
                tenant: tenant.name.clone(),
                sender: self
                    .transaction
                    .as_ref()
                    .map(|t| t.sender.clone())
                    .unwrap_or_default(),
                recipient: address.to_owned(),
                reason,
                client_ip: self.peer.ip,
            }))),
            Err(cause) => {
                tracing::error!(%cause, "cannot read the suppression list");
                Some(Step::Reply(Reply::new(
                    451,
                    "4.3.0",
                    "Error: cannot check the suppression list, try again later",
                )))
            }
        }
    }

    /// The checks DATA and BDAT share: a transaction with recipients.
    fn transaction_ready(&self) -> Option<Reply> {
        match &self.transaction {
            None => Some(replies::bad_sequence("Error: need MAIL command")),
            Some(transaction) if transaction.recipients.is_empty() => {
                Some(replies::bad_sequence("Error: need RCPT command"))
            }
            Some(_) => None,
        }
    }

    /// DATA.
    fn on_data(&mut self) -> Step {
        if let Some(refusal) = self.transaction_ready() {
            return self.error(refusal);
        }
        let declared = self.transaction.as_ref().map_or(0, |t| t.declared_size);
        if self.transaction.as_ref().is_some_and(|t| t.chunks.is_some()) {
            return self.error(replies::bad_sequence("Error: DATA after BDAT"));
        }
        self.data = Some(DataDecoder::new(self.shared.params.max_message_size, declared));
        // 3xx replies have no enhanced status code class (RFC 3463 defines 2, 4 and 5).
        Step::Reply(Reply::bare(354, vec!["End data with <CR><LF>.<CR><LF>".into()]))
    }

    /// DATA content bytes; returns how many were consumed and, at the end, the step.
    pub fn feed_data(&mut self, input: &[u8], now: SystemTime) -> (usize, Option<Step>) {
        let Some(decoder) = self.data.as_mut() else {
            return (0, None);
        };
        let (consumed, outcome) = decoder.feed(input);
        let Some(outcome) = outcome else {
            return (consumed, None);
        };
        self.data = None;
        let DataOutcome {
            content,
            too_big,
            checks,
        } = outcome;
        (
            consumed,
            Some(self.complete_message(content, too_big, &checks, now)),
        )
    }

    /// The end of a message (DATA or BDAT LAST): checks, trace fields, then the spool.
    fn complete_message(
        &mut self,
        content: Vec<u8>,
        too_big: bool,
        checks: &ContentChecker,
        now: SystemTime,
    ) -> Step {
        let Some(transaction) = self.transaction.take() else {
            return self.error(replies::bad_sequence("Error: need MAIL command"));
        };
        if too_big {
            return Step::Reply(replies::message_too_big());
        }
        if checks.bare_line_ending {
            return Step::Reply(replies::bare_line_ending_in_message());
        }
        if checks.long_line {
            return Step::Reply(replies::message_line_too_long());
        }
        let Ok(campaign) = headers::campaign_of(&content) else {
            return Step::Reply(Reply::new(
                550,
                "5.6.0",
                "Message rejected: X-Campaign-ID must be 1-128 printable ASCII characters",
            ));
        };
        let Some(tenant) = self.tenant().cloned() else {
            return Step::Reply(replies::authentication_required());
        };
        if self.shared.gauge.campaign_cancelled(&tenant.name, &campaign) {
            return Step::Reply(replies::campaign_cancelled(&campaign));
        }
        let pool = match headers::pool_of(&content) {
            Ok(Some(pool)) if !tenant.pools.contains(&pool) => {
                return Step::Reply(replies::pool_refused(&pool, &tenant.name));
            }
            Ok(pool) => pool.or_else(|| tenant.default_pool.clone()).unwrap_or_default(),
            Err(headers::BadPool(value)) => return Step::Reply(replies::pool_refused(&value, &tenant.name)),
        };
        let warmup_priority = headers::warmup_priority_of(&content);
        // The campaign, pool and priority steer delivery; recipients never see them (nor are they
        // signed).
        let content = headers::strip_control_fields(&content).unwrap_or(content);
        let mut accepted = self.accepted(transaction, tenant, campaign, content, checks.eight_bit, now);
        accepted.message.envelope.pool = pool;
        accepted.message.envelope.warmup_priority = warmup_priority;
        Step::Enqueue(Box::new(accepted))
    }

    /// Builds the spool record of a complete message.
    fn accepted(
        &self,
        transaction: Transaction,
        tenant: Arc<Tenant>,
        campaign: String,
        content: Vec<u8>,
        eight_bit: bool,
        now: SystemTime,
    ) -> Accepted {
        let id = self.shared.ids.next_id();
        let queue_id = id.to_string();
        let trace = Trace {
            hostname: &self.shared.params.hostname,
            helo: self.helo.as_deref().unwrap_or("unknown"),
            client_ip: self.peer.ip,
            esmtp: self.esmtp,
            tls: self.tls.as_ref(),
            authenticated_tenant: self.authenticated.as_ref().map(|t| t.name.as_str()),
            queue_id: &queue_id,
            single_recipient: match transaction.recipients.as_slice() {
                [only] => Some(only.as_str()),
                _ => None,
            },
            now,
        };
        let mut body = headers::prefix_for(&content, &trace);
        body.extend_from_slice(&content);
        let received_at_ms = timefmt::unix_millis(now);
        let envelope = Envelope {
            tenant: tenant.name.clone(),
            campaign,
            pool: String::new(),
            sender: transaction.sender,
            recipients: transaction
                .recipients
                .into_iter()
                .map(|address| Recipient {
                    address,
                    state: RecipientState::Queued,
                    attempts: 0,
                })
                .collect(),
            size: body.len() as u64,
            received_at_ms,
            next_attempt_at_ms: received_at_ms,
            smtputf8: transaction.smtputf8,
            eight_bit: eight_bit || transaction.eight_bit_mime,
            warmup_priority: false,
        };
        Accepted {
            tenant,
            message: NewMessage { id, envelope, body },
            tls: self.tls.clone(),
            client_ip: self.peer.ip,
        }
    }

    /// The spool's answer for a message: the final reply of DATA/BDAT.
    pub fn on_enqueued(&mut self, id: MessageId, result: Result<(), SpoolError>) -> Step {
        Step::Reply(match result {
            Ok(()) => Reply::new(250, "2.0.0", format!("Ok: queued as {id}")),
            Err(SpoolError::NoSpace) => replies::insufficient_storage(),
            Err(_) => replies::spool_write_failed(),
        })
    }

    /// STARTTLS.
    fn on_starttls(&mut self) -> Step {
        if !self.shared.params.tls_available {
            return self.error(replies::not_implemented());
        }
        if self.tls.is_some() {
            return self.error(replies::bad_sequence("Error: TLS already active"));
        }
        Step::StartTls(Reply::new(220, "2.0.0", "Ready to start TLS"))
    }

    /// The handshake completed: RFC 3207 §4.2, the session starts over (the client must EHLO again).
    pub fn on_tls_established(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.helo = None;
        self.esmtp = false;
        self.authenticated = None;
        self.transaction = None;
    }
}

/// Whether the tenant may use this reverse-path; the refusal if not.
fn sender_refusal(tenant: &Tenant, sender: &str) -> Option<Reply> {
    let domain = sender.rsplit_once('@').map(|(_, domain)| domain);
    let allowed = match domain {
        Some(domain) => tenant.may_send_from(domain),
        // The null reverse-path (or a domain-less one) only for the relay tenant, which may use any sender.
        None => tenant.sender_domains.is_none(),
    };
    (!allowed).then(|| {
        Reply::new(
            553,
            "5.7.1",
            format!(
                "Error: sender <{sender}> is not allowed for tenant {}",
                tenant.name
            ),
        )
    })
}

/// A forward-path we can route: `local@domain` with a non-empty local part and a domain.
fn is_routable_address(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.starts_with('.'),
        None => false,
    }
}

/// The reply for a command smtp-proto could not parse.
fn parse_error_reply(error: smtp_proto::Error) -> Reply {
    match error {
        smtp_proto::Error::UnknownCommand => replies::unknown_command(),
        smtp_proto::Error::InvalidSenderAddress => {
            Reply::new(501, "5.1.7", "Error: bad sender address syntax")
        }
        smtp_proto::Error::InvalidRecipientAddress => {
            Reply::new(501, "5.1.3", "Error: bad recipient address syntax")
        }
        smtp_proto::Error::SyntaxError { syntax } => Reply::new(501, "5.5.4", format!("Syntax: {syntax}")),
        smtp_proto::Error::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("Error: invalid parameter {param}"))
        }
        smtp_proto::Error::UnsupportedParameter { param } => {
            Reply::new(555, "5.5.4", format!("Error: unsupported parameter {param}"))
        }
        _ => Reply::new(501, "5.5.4", "Error: syntax error"),
    }
}

#[path = "session_auth.rs"]
mod session_auth;

#[path = "session_chunking.rs"]
mod session_chunking;
use session_chunking::{Chunks, PendingChunk};

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
