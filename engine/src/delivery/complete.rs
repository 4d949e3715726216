//! The end of an item (one message's recipients of one domain): outcomes into the envelope, stored
//! durably; DSNs to the sender for final failures; hard bounces onto the suppression list; then the
//! events. The message's last item of its delivery round also decides when it is next due (or its
//! expiry) and puts it back into the schedule; earlier ones only save their progress.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use penguin_policy::NetworkFailure;
use penguin_queue::{Counts, Envelope, MessageId, NewMessage, Recipient, SpoolError, UpdateExtras};

use super::outcome::{self, Applied, Attempt, CancelReason, ConnectionInfo, RecipientEvent};
use super::scheduler::{Item, Work};
use super::sender::LaneNames;
use super::{DSN_CAMPAIGN, Delivery, dsn};
use crate::events::{Event, EventKind};
use crate::smtp::headers;
use crate::usage::{self, Tally};

/// A message being finished, read from the spool.
pub(super) struct Loaded {
    /// Its envelope (updated with the outcomes).
    pub envelope: Envelope,
    /// The stored content.
    pub body: Vec<u8>,
}

impl Delivery {
    /// Reads envelope and body; `None` when the message is gone.
    pub(super) fn load(&self, id: MessageId) -> Result<Option<Loaded>, SpoolError> {
        let Some(envelope) = self.spool.read_envelope(id)? else {
            return Ok(None);
        };
        let Some(body) = self.spool.read_body(id)? else {
            return Err(SpoolError::Corrupt {
                key: id.to_string(),
                reason: "body missing".into(),
            });
        };
        Ok(Some(Loaded { envelope, body }))
    }

    /// Finishes an item after its attempt (`names`: the lane it was sent on, None when it could not
    /// be routed).
    pub(super) async fn finish_item(
        &self,
        work: &Work,
        names: Option<&LaneNames>,
        attempts: Vec<(usize, Attempt)>,
        loaded: Option<Loaded>,
    ) {
        self.finish(work, names, loaded, |envelope| {
            outcome::record(envelope, attempts)
        })
        .await;
    }

    /// An item that waited past the maximum age: its recipients expire without an attempt.
    pub(super) async fn expire_item(&self, work: Work) {
        let indexes: Vec<usize> = work.item.recipients.iter().map(|&i| usize::from(i)).collect();
        self.finish(&work, None, None, |envelope| {
            outcome::expire_waiting(envelope, &indexes)
        })
        .await;
    }

    /// An item whose recipients are cancelled (campaign cancelled, message deleted): final, no attempt,
    /// no DSN, one `cancelled` event each.
    pub(super) async fn cancel_item(&self, work: Work, reason: CancelReason) {
        let indexes: Vec<usize> = work.item.recipients.iter().map(|&i| usize::from(i)).collect();
        self.finish(&work, None, None, |envelope| {
            outcome::cancel(envelope, &indexes, reason)
        })
        .await;
    }

    /// An item whose domain could not be routed (DNS failure, NXDOMAIN, null MX): one attempt each.
    pub(super) async fn fail_unrouted(&self, item: Item, failure: NetworkFailure, detail: &str) {
        let attempt = Attempt::from_failure(failure, detail, &ConnectionInfo::default());
        let attempts = item
            .recipients
            .iter()
            .map(|&i| (usize::from(i), attempt.clone()))
            .collect();
        let pool = self.lock().settings().pool_name(item.pool);
        let work = Work {
            lane: super::scheduler::LaneId(u32::MAX),
            pool,
            item,
        };
        self.finish_item(&work, None, attempts, None).await;
    }

    /// Applies `change` to the message's current envelope under its lock, stores it (with the next
    /// due time when this is the round's last item), then DSNs, suppressions and events. `preloaded`
    /// is the message as read for sending: current unless another item of it finished meanwhile,
    /// so it is used only for a message of one item.
    async fn finish(
        &self,
        work: &Work,
        names: Option<&LaneNames>,
        preloaded: Option<Loaded>,
        change: impl FnOnce(&mut Envelope) -> Applied,
    ) {
        let id = work.item.id;
        // A message of one item has no lock: it ends under the same scheduler lock that finds this out
        // (and that tells the warm-up day its sends count for, when its source is warming).
        let (lock, ended, warm_day) = {
            let mut scheduler = self.lock();
            let warm_day = names.and_then(|_| scheduler.warm_tally_day(work.lane, self.clock.now_us()));
            match scheduler.message_lock(id) {
                Some(lock) => (Some(lock), None, warm_day),
                None => (None, Some(scheduler.finish_item(id)), warm_day),
            }
        };
        let _serial = match &lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let end = match ended {
            Some(end) => end,
            None => self.lock().finish_item(id),
        };
        let current = match preloaded {
            Some(loaded) if lock.is_none() => Ok(Some(loaded)),
            _ => self.load(id),
        };
        let loaded = match current {
            Ok(Some(loaded)) => loaded,
            Ok(None) => {
                if end.last {
                    self.in_flight.fetch_sub(1, Ordering::Relaxed);
                }
                return;
            }
            Err(error) => {
                tracing::error!(%id, %error, "cannot read a message to store its delivery results");
                if end.last {
                    self.reschedule_in_memory(id, None);
                }
                return;
            }
        };
        let Loaded { mut envelope, body } = loaded;
        let now_ms = self.clock.now_ms();
        let mut applied = change(&mut envelope);
        if end.last {
            outcome::schedule_next(
                &mut envelope,
                &mut applied,
                now_ms,
                &self.settings.retry,
                rand::random::<f64>(),
                end.retry_at_ms,
            );
        }
        if !applied.failed.is_empty() {
            self.send_dsn(id, &envelope, &body, &applied.failed, &applied.events)
                .await;
        }
        let mut events = self.outcome_events(work, names, &envelope, &body, &applied, now_ms);
        let mut extras = extras_of(&envelope, &applied, names, &work.pool, now_ms);
        if let (Some(names), Some(day)) = (names, warm_day) {
            let kinds = applied
                .events
                .iter()
                .filter_map(|event| usage::outcome_kind(event.kind));
            crate::warmup::count_outcomes(&mut extras.counts, &names.source, &names.provider, day, kinds);
        }
        // The webhooks' copies are stored with the outcomes they report.
        extras.outbox = self.events.outbox(&events);
        let in_outbox = !extras.outbox.is_empty();
        if !self.store(id, &envelope, end.last, extras).await {
            return;
        }
        let suppressions = self
            .suppress_hard_bounces(id, &envelope, &applied.events, now_ms)
            .await;
        for mut event in events.drain(..) {
            event.in_outbox = in_outbox;
            self.events.emit(event);
        }
        for event in suppressions {
            self.events.emit(event);
        }
    }

    /// Stores the envelope: with its next due time at the end of the round (`last`), else as
    /// progress. False when the round's result could not be stored (the message is retried in a
    /// minute; its events are not emitted).
    async fn store(&self, id: MessageId, envelope: &Envelope, last: bool, extras: UpdateExtras) -> bool {
        if !last {
            if let Err(error) = self.spool.save_progress_with(id, envelope, extras).await {
                tracing::error!(%id, %error, "cannot store delivery progress; a crash would repeat it");
            }
            return true;
        }
        match self.spool.update_envelope_with(id, envelope, extras).await {
            Ok(_) => {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                if envelope.has_queued() {
                    // Back in the index with its next due time: the driver's sleep must consider it.
                    self.driver.notify_one();
                }
                true
            }
            Err(error) => {
                tracing::error!(%id, %error, "cannot store delivery results; the message will be retried");
                self.reschedule_in_memory(id, Some(envelope));
                false
            }
        }
    }

    /// The events of an item's outcomes, with the lane it went out on and its pool.
    fn outcome_events(
        &self,
        work: &Work,
        names: Option<&LaneNames>,
        envelope: &Envelope,
        body: &[u8],
        applied: &Applied,
        now_ms: u64,
    ) -> Vec<Event> {
        let message_id = headers::message_id(body);
        applied
            .events
            .iter()
            .map(|event| {
                let mut event = self.event(work.item.id, envelope, message_id.as_deref(), event, now_ms);
                if let Some(names) = names {
                    event.source = Some(Arc::clone(&names.source));
                    event.site = Some(Arc::clone(&names.site));
                    event.provider = Some(Arc::clone(&names.provider));
                }
                event.pool = Some(Arc::clone(&work.pool));
                event
            })
            .collect()
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
        if e.kind == EventKind::Cancelled {
            return Event {
                id: Some(id),
                message_id: message_id.map(str::to_string),
                tenant: envelope.tenant.clone(),
                campaign: envelope.campaign.clone(),
                sender: envelope.sender.clone(),
                recipient: Some(recipient.address.clone()),
                domain: Some(recipient.domain().to_ascii_lowercase()),
                attempt: Some(recipient.attempts),
                size: envelope.size,
                delay_ms: Some(now.saturating_sub(envelope.received_at_ms)),
                reason: Some(e.attempt.response.text.clone().into()),
                ..Event::blank(e.kind, now)
            };
        }
        Event {
            id: Some(id),
            message_id: message_id.map(str::to_string),
            tenant: envelope.tenant.clone(),
            campaign: envelope.campaign.clone(),
            sender: envelope.sender.clone(),
            recipient: Some(recipient.address.clone()),
            domain: Some(recipient.domain().to_ascii_lowercase()),
            mx: e.attempt.mx.clone(),
            source_ip: e.attempt.source_ip,
            attempt: Some(recipient.attempts),
            response: Some(e.attempt.response.clone()),
            class: e.attempt.class().map(|class| class.as_str()),
            tls: e.attempt.tls.clone(),
            size: envelope.size,
            delay_ms: Some(now.saturating_sub(envelope.received_at_ms)),
            ..Event::blank(e.kind, now)
        }
    }

    /// Queues a DSN to the sender for recipients that failed for good (if the tenant wants DSNs and
    /// the sender is not null). A DSN that cannot be queued is logged; the bounce events remain.
    async fn send_dsn(
        &self,
        id: MessageId,
        envelope: &Envelope,
        body: &[u8],
        failed: &[usize],
        events: &[RecipientEvent],
    ) {
        let wanted = self
            .settings
            .tenants
            .as_ref()
            .and_then(|tenants| tenants.load().tenant(&envelope.tenant))
            .is_none_or(|tenant| tenant.dsn);
        if !wanted || envelope.sender.is_empty() {
            return;
        }
        let now = self.clock.now();
        let recipients: Vec<dsn::DsnRecipient> = failed
            .iter()
            .filter_map(|&index| {
                let event = events.iter().find(|event| event.index == index)?;
                Some(dsn_recipient(&envelope.recipients[index], event, now))
            })
            .collect();
        let dsn_id = self.ids.next_id();
        let message_id = format!("{dsn_id}.dsn@{}", self.settings.hostname);
        let content = dsn::build_dsn(&dsn::DsnInput {
            reporting_mta: &self.settings.hostname,
            queue_id: &id.to_string(),
            original_sender: &envelope.sender,
            arrival_ms: envelope.received_at_ms,
            now,
            recipients: &recipients,
            original_message: body,
            dsn_message_id: &message_id,
        });
        let now_ms = crate::timefmt::unix_millis(now);
        let dsn_envelope = Envelope {
            tenant: envelope.tenant.clone(),
            campaign: DSN_CAMPAIGN.to_string(),
            pool: String::new(),
            sender: String::new(),
            recipients: vec![Recipient::queued(envelope.sender.clone())],
            size: content.len() as u64,
            received_at_ms: now_ms,
            next_attempt_at_ms: now_ms,
            smtputf8: !envelope.sender.is_ascii(),
            eight_bit: false,
            warmup_priority: false,
        };
        let message = NewMessage {
            id: dsn_id,
            envelope: dsn_envelope,
            body: content,
        };
        let finisher = Arc::clone(&self.finisher);
        let message = match tokio::task::spawn_blocking(move || finisher.sign_own(message)).await {
            Ok(message) => message,
            Err(join) => {
                tracing::error!(%id, %join, "signing the DSN failed; it is not queued");
                return;
            }
        };
        match self.spool.enqueue(message).await {
            Ok(()) => self.wakeup.notify_one(),
            Err(error) => tracing::error!(%id, %error, "cannot queue the DSN"),
        }
    }
}

/// The counts (usage per day, campaign) and attempt records written with an item's outcomes.
fn extras_of(
    envelope: &Envelope,
    applied: &Applied,
    names: Option<&LaneNames>,
    pool: &Arc<str>,
    now_ms: u64,
) -> UpdateExtras {
    let mut counts = Counts::new();
    if let Some(tally) = Tally::of(envelope, now_ms) {
        for event in &applied.events {
            let Some(kind) = usage::outcome_kind(event.kind) else {
                continue;
            };
            let class = match event.kind {
                EventKind::Bounce | EventKind::TransientFailure => event.attempt.class().map(|c| c.as_str()),
                _ => None,
            };
            tally.add(&mut counts, kind, class, 1);
        }
    }
    // A finished message leaves the queue with its history: nothing to write then.
    let history = if envelope.has_queued() {
        applied
            .events
            .iter()
            .map(|event| history_record(envelope, event, names, pool, now_ms))
            .collect()
    } else {
        Vec::new()
    };
    UpdateExtras {
        counts,
        history,
        outbox: Vec::new(),
    }
}

/// One attempt record as JSON (`GET /v1/messages/{id}` shows them).
fn history_record(
    envelope: &Envelope,
    event: &RecipientEvent,
    names: Option<&LaneNames>,
    pool: &Arc<str>,
    now_ms: u64,
) -> Vec<u8> {
    let recipient = &envelope.recipients[event.index];
    let cancelled = event.kind == EventKind::Cancelled;
    let attempt = &event.attempt;
    let record = serde_json::json!({
        "at": crate::timefmt::rfc3339_millis(now_ms),
        "type": event.kind.as_str(),
        "recipient": recipient.address,
        "attempt": recipient.attempts,
        "response": (!cancelled).then_some(&attempt.response),
        "class": if cancelled { None } else { attempt.class().map(|c| c.as_str()) },
        "reason": cancelled.then_some(&attempt.response.text),
        "mx": attempt.mx,
        "source_ip": attempt.source_ip,
        "source": names.map(|n| &*n.source),
        "site": names.map(|n| &*n.site),
        "provider": names.map(|n| &*n.provider),
        "pool": &**pool,
    });
    serde_json::to_vec(&record).unwrap_or_default()
}

/// The DSN entry of a recipient that bounced or expired.
fn dsn_recipient(
    recipient: &Recipient,
    event: &RecipientEvent,
    now: std::time::SystemTime,
) -> dsn::DsnRecipient {
    let response = &event.attempt.response;
    let status = if event.kind == EventKind::Expiration {
        "4.4.7".to_string()
    } else {
        response.enhanced.clone().unwrap_or_else(|| {
            if response.code >= 500 {
                "5.0.0".into()
            } else {
                "4.0.0".into()
            }
        })
    };
    let diagnostic = (response.code != 0).then(|| format!("{} {}", response.code, response.text));
    dsn::DsnRecipient {
        address: recipient.address.clone(),
        action: dsn::DsnAction::Failed,
        status,
        remote_mta: event.attempt.mx.clone(),
        diagnostic,
        last_attempt_ms: Some(crate::timefmt::unix_millis(now)),
    }
}
