//! Delivering one message: its queued recipients grouped by domain, each domain routed (MX or
//! smarthost) and sent over a pooled connection; then the envelope is stored durably with the new
//! states and the events are emitted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use penguin_policy::NetworkFailure;
use penguin_queue::{Envelope, MessageId};

use super::client::{Connection, SessionError, Transaction};
use super::dns::RouteError;
use super::outcome::{self, Attempt, ConnectionInfo, RecipientEvent};
use super::pool::{Acquired, Lease};
use super::{Delivery, Target};
use crate::events::Event;
use crate::smtp::headers;
use crate::timefmt;

/// The message being delivered, read once from the spool.
pub(super) struct Loaded {
    /// Queue id.
    pub id: MessageId,
    /// Its envelope (updated with the outcomes).
    pub envelope: Envelope,
    /// The stored content.
    pub body: Vec<u8>,
    /// Its Message-ID header, for events.
    pub message_id: Option<String>,
}

impl Delivery {
    /// Delivers every queued recipient of `id` once, then stores the outcome.
    pub(super) async fn deliver_message(self: Arc<Self>, id: MessageId) {
        let loaded = match self.load(id) {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%id, %error, "cannot read a queued message; retrying later");
                self.reschedule_in_memory(id, None);
                return;
            }
        };
        let attempts = self.attempt_all(&loaded).await;
        self.finish(loaded, attempts).await;
    }

    /// Reads envelope and body; `None` when the message is gone.
    fn load(&self, id: MessageId) -> Result<Option<Loaded>, penguin_queue::SpoolError> {
        let Some(envelope) = self.spool.read_envelope(id)? else {
            return Ok(None);
        };
        let Some(body) = self.spool.read_body(id)? else {
            return Err(penguin_queue::SpoolError::Corrupt {
                key: id.to_string(),
                reason: "body missing".into(),
            });
        };
        let message_id = headers::message_id(&body);
        Ok(Some(Loaded {
            id,
            envelope,
            body,
            message_id,
        }))
    }

    /// One attempt for every queued recipient, domains in parallel.
    async fn attempt_all(&self, loaded: &Loaded) -> Vec<(usize, Attempt)> {
        let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, recipient) in loaded.envelope.recipients.iter().enumerate() {
            if recipient.state == penguin_queue::RecipientState::Queued {
                by_domain
                    .entry(recipient.domain().to_ascii_lowercase())
                    .or_default()
                    .push(index);
            }
        }
        let domains = by_domain
            .into_iter()
            .map(|(domain, indexes)| self.deliver_domain(loaded, domain, indexes));
        futures_util::future::join_all(domains)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Routes one domain and sends its recipients in transactions of at most the configured size.
    async fn deliver_domain(
        &self,
        loaded: &Loaded,
        domain: String,
        indexes: Vec<usize>,
    ) -> Vec<(usize, Attempt)> {
        let targets = match self.route(&domain).await {
            Ok(targets) => targets,
            Err((failure, detail)) => {
                let attempt = Attempt::from_failure(failure, &detail, &ConnectionInfo::default());
                return indexes
                    .into_iter()
                    .map(|index| (index, attempt.clone()))
                    .collect();
            }
        };
        let mut results = Vec::with_capacity(indexes.len());
        for chunk in indexes.chunks(self.settings.max_recipients_per_transaction.max(1)) {
            let recipients: Vec<String> = chunk
                .iter()
                .map(|&i| loaded.envelope.recipients[i].address.clone())
                .collect();
            let tx = Transaction {
                sender: &loaded.envelope.sender,
                recipients: &recipients,
                body: &loaded.body,
                smtputf8: loaded.envelope.smtputf8,
                eight_bit: loaded.envelope.eight_bit,
            };
            match self.transact(&targets, &tx).await {
                Ok((replies, at)) => {
                    results.extend(
                        chunk
                            .iter()
                            .zip(&replies)
                            .map(|(&i, reply)| (i, Attempt::from_reply(reply, &at))),
                    );
                }
                Err((error, at)) => {
                    let attempt = Attempt::from_error(&error, &at);
                    results.extend(chunk.iter().map(|&i| (i, attempt.clone())));
                }
            }
        }
        results
    }

    /// Where mail for `domain` goes, in order: the smarthost, or the MX hosts' addresses.
    async fn route(&self, domain: &str) -> Result<Vec<Target>, (NetworkFailure, String)> {
        let port = self.settings.port;
        let hosts = match &self.settings.relay_host {
            Some(relay) => {
                let addresses = match relay.host.parse() {
                    Ok(ip) => vec![ip],
                    Err(_) => self
                        .resolver
                        .addresses(&relay.host)
                        .await
                        .map_err(route_failure)?,
                };
                return Ok(addresses
                    .into_iter()
                    .map(|ip| Target {
                        host: relay.host.clone(),
                        address: (ip, relay.port).into(),
                    })
                    .collect());
            }
            None => self.resolver.mail_hosts(domain).await.map_err(route_failure)?,
        };
        Ok(hosts
            .into_iter()
            .flat_map(|host| {
                let name = host.name;
                host.addresses.into_iter().map(move |ip| Target {
                    host: name.clone(),
                    address: (ip, port).into(),
                })
            })
            .collect())
    }

    /// Runs the transaction on the first target that takes it (next MX on connection failure or a
    /// refusal at greeting/EHLO). A reused idle connection that turns out dead is replaced once.
    async fn transact(
        &self,
        targets: &[Target],
        tx: &Transaction<'_>,
    ) -> Result<(Vec<super::reply::RemoteReply>, ConnectionInfo), (SessionError, ConnectionInfo)> {
        let mut last = None;
        let failed_at = |target: &Target| ConnectionInfo {
            mx: Some(target.host.clone()),
            ..Default::default()
        };
        for target in targets {
            let mut lease = match self.connect(target).await {
                Ok(lease) => lease,
                Err(error) => {
                    last = Some((error, failed_at(target)));
                    continue;
                }
            };
            let mut result = lease.connection.send(tx, self.settings.client.timeouts).await;
            if lease.reused
                && matches!(&result, Err(SessionError::Network { failure, .. }) if *failure != NetworkFailure::DisconnectedAfterData)
            {
                self.pool.discard(lease).await;
                lease = match self.connect_new(target).await {
                    Ok(lease) => lease,
                    Err(error) => {
                        last = Some((error, failed_at(target)));
                        continue;
                    }
                };
                result = lease.connection.send(tx, self.settings.client.timeouts).await;
            }
            let at = connection_info(&lease.connection);
            self.pool.release(lease).await;
            return result
                .map(|replies| (replies, at.clone()))
                .map_err(|error| (error, at));
        }
        Err(last.unwrap_or_else(|| {
            let error = SessionError::Network {
                failure: NetworkFailure::NoAddresses,
                detail: "no address to try".into(),
            };
            (error, ConnectionInfo::default())
        }))
    }

    /// A pooled connection to `target`, reused or new.
    async fn connect(&self, target: &Target) -> Result<Lease, SessionError> {
        match self.pool.acquire(target.address).await {
            Acquired::Reuse(lease) => Ok(*lease),
            Acquired::Open(permits) => {
                let connection =
                    Connection::open(target.address, &target.host, &self.settings.client).await?;
                Ok(self.pool.lease(connection, permits))
            }
        }
    }

    /// A new connection to `target` (after a reused one failed).
    async fn connect_new(&self, target: &Target) -> Result<Lease, SessionError> {
        loop {
            match self.pool.acquire(target.address).await {
                Acquired::Reuse(lease) => self.pool.discard(*lease).await,
                Acquired::Open(permits) => {
                    let connection =
                        Connection::open(target.address, &target.host, &self.settings.client).await?;
                    return Ok(self.pool.lease(connection, permits));
                }
            }
        }
    }

    /// Stores the outcome durably, then emits the events and queues DSNs.
    async fn finish(&self, loaded: Loaded, attempts: Vec<(usize, Attempt)>) {
        let Loaded {
            id,
            mut envelope,
            body,
            message_id,
        } = loaded;
        let now = timefmt::unix_millis(SystemTime::now());
        let applied = outcome::apply(
            &mut envelope,
            attempts,
            now,
            &self.settings.retry,
            rand::random::<f64>(),
        );
        if !applied.failed.is_empty() {
            self.send_dsn(id, &envelope, &body, &applied.failed, &applied.events)
                .await;
        }
        if let Err(error) = self.spool.update_envelope(id, envelope.clone()).await {
            tracing::error!(%id, %error, "cannot store delivery results; the message will be retried");
            self.reschedule_in_memory(id, Some(&envelope));
            return;
        }
        let suppressions = self
            .suppress_hard_bounces(id, &envelope, &applied.events, now)
            .await;
        for event in &applied.events {
            self.events
                .emit(self.event(id, &envelope, message_id.as_deref(), event, now));
        }
        for event in suppressions {
            self.events.emit(event);
        }
    }

    /// Puts a message back into the in-memory schedule after a storage error (one minute later).
    fn reschedule_in_memory(&self, id: MessageId, envelope: Option<&Envelope>) {
        let due = timefmt::unix_millis(SystemTime::now()) + 60_000;
        let (tenant, campaign) = envelope.map_or(("", ""), |e| (e.tenant.as_str(), e.campaign.as_str()));
        self.spool.index().insert(id, due, tenant, campaign);
    }

    /// The event of one recipient's outcome.
    fn event(
        &self,
        id: MessageId,
        envelope: &Envelope,
        message_id: Option<&str>,
        e: &RecipientEvent,
        now: u64,
    ) -> Event {
        let recipient = &envelope.recipients[e.index];
        Event {
            kind: e.kind,
            timestamp: now,
            id: Some(id),
            message_id: message_id.map(str::to_string),
            tenant: envelope.tenant.clone(),
            campaign: envelope.campaign.clone(),
            sender: envelope.sender.clone(),
            recipient: Some(recipient.address.clone()),
            domain: Some(recipient.domain().to_ascii_lowercase()),
            mx: e.attempt.mx.clone(),
            source_ip: e.attempt.source_ip,
            client_ip: None,
            attempt: Some(recipient.attempts),
            response: Some(e.attempt.response.clone()),
            class: e.attempt.class().map(|class| class.as_str()),
            tls: e.attempt.tls.clone(),
            size: envelope.size,
            recipients: None,
            delay_ms: Some(now.saturating_sub(envelope.received_at_ms)),
            reason: None,
        }
    }
}

/// Where an attempt happened, from its connection.
fn connection_info(connection: &Connection) -> ConnectionInfo {
    ConnectionInfo {
        mx: Some(connection.host.clone()),
        source_ip: connection.local_ip,
        tls: connection.tls.clone(),
    }
}

/// The failure a routing error stands for.
fn route_failure(error: RouteError) -> (NetworkFailure, String) {
    let failure = match &error {
        RouteError::NullMx(_) => NetworkFailure::NullMx,
        RouteError::NxDomain(_) => NetworkFailure::DnsNxDomain,
        RouteError::Temporary { .. } => NetworkFailure::DnsTemporary,
        RouteError::NoAddresses(_) => NetworkFailure::NoAddresses,
    };
    (failure, error.to_string())
}
