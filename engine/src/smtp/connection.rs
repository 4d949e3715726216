//! The IO driver of one SMTP connection: reads bytes, feeds the [`Session`], performs its steps.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use penguin_policy::{AuthThrottle, ThrottleDecision};
use penguin_queue::{NewMessage, Spool};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::auth::SharedTenants;
use super::codec::{CommandFramer, Frame};
use super::finish::{Finisher, Prepared};
use super::headers::{self, TlsInfo};
use super::listener::ConnectionSlot;
use super::reply::{Reply, replies};
use super::session::{Accepted, AuthOutcome, ReadMode, Session, Step, SuppressedRecipient};
use crate::events::{Event, EventBus, EventKind, EventResponse};
use crate::metrics::Metrics;
use crate::usage::Tally;

/// Input buffer size per read.
const READ_CHUNK: usize = 16 * 1024;

/// What every connection of a server shares.
pub struct ConnectionContext {
    /// Tenants and credentials.
    pub tenants: SharedTenants,
    /// AUTH failure lockout.
    pub throttle: Arc<Mutex<AuthThrottle>>,
    /// The durable queue.
    pub spool: Arc<Spool>,
    /// Unsubscribe links and DKIM signatures, before the spool write.
    pub finisher: Arc<Finisher>,
    /// STARTTLS, when a certificate is configured.
    pub tls: Option<TlsAcceptor>,
    /// The event stream.
    pub events: EventBus,
    /// Wakes the delivery dispatcher when a message was queued.
    pub delivery_wakeup: Arc<tokio::sync::Notify>,
    /// Metrics of the server.
    pub metrics: Arc<Metrics>,
    /// Idle timeout while waiting for a command.
    pub command_timeout: Duration,
    /// Timeout while waiting for DATA/BDAT content.
    pub data_timeout: Duration,
    /// The time of acceptance (a message's arrival and first due time), shared with delivery.
    pub clock: crate::clock::SharedClock,
}

/// How a driven stream ended.
enum Ending {
    /// The connection is over.
    Closed,
    /// The client asked for TLS: upgrade the TCP stream and go on.
    StartTls,
}

/// Buffers of one connection, kept across the STARTTLS upgrade (input is cleared there).
struct Buffers {
    /// Bytes read and not yet consumed.
    input: BytesMut,
    /// Replies not yet written.
    output: Vec<u8>,
    /// Command line splitter.
    framer: CommandFramer,
}

/// Runs one connection to its end. `shutdown` turns true when the server stops. `slot` is the
/// connection's hold on the connection limits: it is released before the server signals the close
/// (FIN), so a client that saw its session end may reconnect at once.
pub async fn handle(
    context: Arc<ConnectionContext>,
    tcp: TcpStream,
    mut session: Session,
    shutdown: watch::Receiver<bool>,
    slot: ConnectionSlot,
) {
    let mut buffers = Buffers {
        input: BytesMut::with_capacity(READ_CHUNK),
        output: Vec::new(),
        framer: CommandFramer::default(),
    };
    session.greeting().write_to(&mut buffers.output);
    let mut tcp = tcp;
    let mut driver = Driver {
        context: &context,
        session: &mut session,
        shutdown,
        slot: Some(slot),
    };
    match driver.drive(&mut tcp, &mut buffers).await {
        Ok(Ending::StartTls) => {}
        Ok(Ending::Closed) | Err(_) => return,
    }
    let Some(acceptor) = context.tls.clone() else {
        return;
    };
    let handshake = tokio::time::timeout(context.command_timeout, acceptor.accept(tcp)).await;
    let Ok(Ok(mut tls)) = handshake else { return };
    let info = TlsInfo::of(tls.get_ref().1);
    driver.session.on_tls_established(info);
    buffers.input.clear();
    buffers.framer = CommandFramer::default();
    // A second STARTTLS is refused by the session, so this cannot ask for another upgrade.
    let _ = driver.drive(&mut tls, &mut buffers).await;
}

/// The loop state of one connection.
struct Driver<'a> {
    /// Server-wide context.
    context: &'a ConnectionContext,
    /// The protocol state machine.
    session: &'a mut Session,
    /// Server shutdown signal.
    shutdown: watch::Receiver<bool>,
    /// The connection-limit slot, given back in `close` before the FIN (else dropped with the driver).
    slot: Option<ConnectionSlot>,
}

impl Driver<'_> {
    /// Processes input until the connection closes or asks for TLS.
    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        buffers: &mut Buffers,
    ) -> std::io::Result<Ending> {
        loop {
            let step = match self.next_step(buffers) {
                Some(step) => step,
                None => {
                    if let Some(ending) = self.wait_for_input(stream, buffers).await? {
                        return Ok(ending);
                    }
                    continue;
                }
            };
            if let Some(ending) = self.perform(step, stream, buffers).await? {
                return Ok(ending);
            }
        }
    }

    /// Feeds buffered input to the session; `None` when more bytes are needed.
    fn next_step(&mut self, buffers: &mut Buffers) -> Option<Step> {
        let now = self.context.clock.now();
        match self.session.read_mode() {
            ReadMode::Line(max_len) => match buffers.framer.next_frame(&buffers.input, max_len) {
                Frame::Line { len } => {
                    let more_input = buffers.input.len() > len;
                    let step = self.session.on_line(&buffers.input[..len], more_input, now);
                    buffers.input.advance(len);
                    Some(step)
                }
                Frame::Invalid { consumed, error } => {
                    buffers.input.advance(consumed);
                    Some(self.session.on_line_error(error))
                }
                Frame::NeedMore { consumed } => {
                    buffers.input.advance(consumed);
                    None
                }
            },
            ReadMode::Data | ReadMode::Chunk(_) if buffers.input.is_empty() => None,
            ReadMode::Data => {
                let (consumed, step) = self.session.feed_data(&buffers.input, now);
                buffers.input.advance(consumed);
                step.or(Some(Step::ReadMore))
            }
            ReadMode::Chunk(_) => {
                let (consumed, step) = self.session.feed_chunk(&buffers.input, now);
                buffers.input.advance(consumed);
                step.or(Some(Step::ReadMore))
            }
        }
    }

    /// Flushes replies, then reads more input (with the timeout of the read mode), or ends the
    /// session when the server shuts down between transactions.
    async fn wait_for_input<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        buffers: &mut Buffers,
    ) -> std::io::Result<Option<Ending>> {
        flush(stream, &mut buffers.output).await?;
        let in_content = !matches!(self.session.read_mode(), ReadMode::Line(_));
        let timeout = if in_content {
            self.context.data_timeout
        } else {
            self.context.command_timeout
        };
        if buffers.input.capacity() - buffers.input.len() < READ_CHUNK {
            buffers.input.reserve(READ_CHUNK);
        }
        loop {
            if *self.shutdown.borrow() && !self.session.in_transaction() {
                return self
                    .close(stream, buffers, replies::shutting_down(self.session.hostname()))
                    .await;
            }
            tokio::select! {
                read = tokio::time::timeout(timeout, stream.read_buf(&mut buffers.input)) => {
                    return match read {
                        Ok(Ok(0)) | Ok(Err(_)) => Ok(Some(Ending::Closed)),
                        Ok(Ok(_)) => Ok(None),
                        Err(_) => self.close(stream, buffers, replies::timeout(self.session.hostname())).await,
                    };
                }
                changed = self.shutdown.changed() => {
                    if changed.is_err() {
                        // The server dropped its sender: treat as shutdown.
                        return self.close(stream, buffers, replies::shutting_down(self.session.hostname())).await;
                    }
                }
            }
        }
    }

    /// Writes a final reply and ends the connection.
    async fn close<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        buffers: &mut Buffers,
        reply: Reply,
    ) -> std::io::Result<Option<Ending>> {
        reply.write_to(&mut buffers.output);
        flush(stream, &mut buffers.output).await?;
        // Free the slot before the client can see the close, so its reconnect finds it free.
        self.slot.take();
        let _ = stream.shutdown().await;
        Ok(Some(Ending::Closed))
    }

    /// Performs one step (and the steps it leads to).
    async fn perform<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut step: Step,
        stream: &mut S,
        buffers: &mut Buffers,
    ) -> std::io::Result<Option<Ending>> {
        loop {
            step = match step {
                Step::Reply(reply) => {
                    reply.write_to(&mut buffers.output);
                    return Ok(None);
                }
                Step::ReadMore => return Ok(None),
                Step::Close(reply) => return self.close(stream, buffers, reply).await,
                Step::StartTls(reply) => {
                    reply.write_to(&mut buffers.output);
                    flush(stream, &mut buffers.output).await?;
                    // Anything the client sent behind STARTTLS was sent in the clear before the
                    // handshake: never execute it (CVE-2011-0411).
                    buffers.input.clear();
                    return Ok(Some(Ending::StartTls));
                }
                Step::Verify(credentials) => {
                    let outcome = self.verify(credentials).await;
                    self.session.on_verified(outcome)
                }
                Step::Enqueue(accepted) => self.enqueue(*accepted).await,
                Step::Suppressed(suppressed) => {
                    let now_ms = self.context.clock.now_ms();
                    let mut counts = penguin_queue::Counts::new();
                    Tally::new(&suppressed.tenant, "", now_ms).add(&mut counts, "suppressed", None, 1);
                    if let Err(error) = self.context.spool.add_counts(&counts) {
                        tracing::warn!(%error, "cannot count a suppressed recipient");
                    }
                    self.context.events.emit(suppressed_event(&suppressed, now_ms));
                    Step::Reply(suppressed.reply)
                }
            };
        }
    }

    /// Checks credentials off the runtime, with the failure lockout.
    async fn verify(&mut self, credentials: super::auth::Credentials) -> AuthOutcome {
        let ip = self.session.peer_ip();
        if self.throttle_check(|throttle| throttle.check(ip, Instant::now())) {
            return AuthOutcome::LockedOut;
        }
        let tenants = self.context.tenants.load_full();
        let verified =
            tokio::task::spawn_blocking(move || tenants.verify(&credentials.username, &credentials.password))
                .await;
        match verified {
            Ok(Some(tenant)) => AuthOutcome::Success(tenant),
            _ => {
                self.context.metrics.auth_failures.inc();
                if self.throttle_check(|throttle| throttle.record_failure(ip, Instant::now())) {
                    AuthOutcome::LockedOut
                } else {
                    AuthOutcome::Failure
                }
            }
        }
    }

    /// Runs `decide` on the shared throttle; true when the client is locked out.
    fn throttle_check(&self, decide: impl FnOnce(&mut AuthThrottle) -> ThrottleDecision) -> bool {
        let mut throttle = self
            .context
            .throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        matches!(decide(&mut throttle), ThrottleDecision::LockedOut { .. })
    }

    /// Adds unsubscribe links and DKIM signatures (off the runtime), writes the message(s) durably in
    /// one batch, emits the reception events, and returns the final reply step.
    async fn enqueue(&mut self, accepted: Accepted) -> Step {
        let started = std::time::Instant::now();
        let Accepted {
            tenant,
            message,
            tls,
            client_ip,
        } = accepted;
        let first_id = message.id;
        let shared = self.session.shared();
        let prepared = self
            .context
            .finisher
            .prepare(message, &tenant, || shared.ids.next_id());
        let finished = match prepared {
            Ok(Prepared::Ready(finished)) => finished,
            Ok(Prepared::Sign(job)) => {
                let finisher = Arc::clone(&self.context.finisher);
                match tokio::task::spawn_blocking(move || finisher.sign(job)).await {
                    Ok(Ok(finished)) => finished,
                    Ok(Err(refusal)) => return Step::Reply(refusal),
                    Err(_) => return Step::Reply(replies::spool_write_failed()),
                }
            }
            Err(refusal) => return Step::Reply(refusal),
        };
        let now_ms = self.context.clock.now_ms();
        let receptions: Vec<Event> = finished
            .messages
            .iter()
            .map(|message| Event {
                timestamp: now_ms,
                ..reception_event(message, tls.clone(), client_ip)
            })
            .collect();
        let unsigned = finished.unsigned.map(|reason| {
            let mut event = receptions[0].clone();
            event.kind = EventKind::DkimUnsigned;
            event.reason = Some(reason.into());
            event.domain = finished.from_domain.clone();
            event
        });
        let messages = finished.messages;
        let counts = reception_counts(&messages, now_ms);
        // The webhooks' copies of the receptions are stored with the messages.
        let outbox = self.context.events.outbox(&receptions);
        let in_outbox = !outbox.is_empty();
        let result = self
            .context
            .spool
            .enqueue_with_extras(messages, counts, Vec::new(), outbox)
            .await;
        if result.is_ok() {
            self.context
                .metrics
                .smtp_ack_seconds
                .observe(started.elapsed().as_secs_f64());
            for event in receptions {
                self.context.events.emit(Event { in_outbox, ..event });
            }
            if let Some(event) = unsigned {
                self.context.events.emit(event);
            }
            self.context.delivery_wakeup.notify_one();
        }
        self.session.on_enqueued(first_id, result)
    }
}

/// The usage counts of a reception: every recipient of every stored copy, accepted.
fn reception_counts(messages: &[NewMessage], now_ms: u64) -> penguin_queue::Counts {
    let mut counts = penguin_queue::Counts::new();
    for message in messages {
        if let Some(tally) = Tally::of(&message.envelope, now_ms) {
            let recipients = i64::try_from(message.envelope.recipients.len()).unwrap_or(i64::MAX);
            tally.add(&mut counts, "accepted", None, recipients);
        }
    }
    counts
}

/// The `reception` event of a stored message (timestamp set when it is emitted).
pub(crate) fn reception_event(
    message: &NewMessage,
    tls: Option<TlsInfo>,
    client_ip: std::net::IpAddr,
) -> Event {
    let envelope = &message.envelope;
    Event {
        id: Some(message.id),
        message_id: headers::message_id(&message.body),
        tenant: envelope.tenant.clone(),
        campaign: envelope.campaign.clone(),
        sender: envelope.sender.clone(),
        client_ip: Some(client_ip),
        tls,
        size: envelope.size,
        recipients: Some(envelope.recipients.len()),
        pool: (!envelope.pool.is_empty()).then(|| std::sync::Arc::from(envelope.pool.as_str())),
        ..Event::blank(EventKind::Reception, 0)
    }
}

/// The `suppressed` event of a refused RCPT TO.
fn suppressed_event(suppressed: &SuppressedRecipient, now_ms: u64) -> Event {
    Event {
        sender: suppressed.sender.clone(),
        client_ip: Some(suppressed.client_ip),
        response: Some(EventResponse {
            code: suppressed.reply.code,
            enhanced: suppressed.reply.status.map(str::to_owned),
            text: suppressed.reply.lines.join(" "),
        }),
        ..Event::about_address(
            EventKind::Suppressed,
            now_ms,
            &suppressed.tenant,
            "",
            &suppressed.recipient,
            suppressed.reason,
        )
    }
}

/// Writes and clears pending output.
async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, output: &mut Vec<u8>) -> std::io::Result<()> {
    if output.is_empty() {
        return Ok(());
    }
    stream.write_all(output).await?;
    stream.flush().await?;
    output.clear();
    Ok(())
}
