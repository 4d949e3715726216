//! Turning one delivery attempt's per-recipient results into recipient states, the next attempt
//! time, and the events to emit. Pure: inputs, `now`, a jitter sample; no IO.

use std::net::IpAddr;

use penguin_policy::{BounceClass, NetworkFailure, Outcome, RetryDecision, RetrySchedule, classify_network};
use penguin_queue::{Envelope, RecipientState};

use super::client::SessionError;
use super::reply::RemoteReply;
use crate::events::{EventKind, EventResponse};
use crate::smtp::headers::TlsInfo;

/// What one attempt meant for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Delivered, transient or permanent, with the class.
    pub outcome: Outcome,
    /// The deciding answer.
    pub response: EventResponse,
    /// The remote host that answered.
    pub mx: Option<String>,
    /// Our address on the connection.
    pub source_ip: Option<IpAddr>,
    /// TLS of the connection.
    pub tls: Option<TlsInfo>,
}

/// Where an attempt happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Remote host name.
    pub mx: Option<String>,
    /// Our address.
    pub source_ip: Option<IpAddr>,
    /// TLS in use.
    pub tls: Option<TlsInfo>,
}

impl Attempt {
    /// The attempt a remote reply decides.
    pub fn from_reply(reply: &RemoteReply, at: &ConnectionInfo) -> Attempt {
        let outcome = reply.with_view(penguin_policy::classify_reply);
        Attempt {
            outcome,
            response: reply.response(),
            mx: at.mx.clone(),
            source_ip: at.source_ip,
            tls: at.tls.clone(),
        }
    }

    /// The attempt a failure without a per-recipient reply decides.
    pub fn from_error(error: &SessionError, at: &ConnectionInfo) -> Attempt {
        match error {
            SessionError::Reply(reply) => Attempt::from_reply(reply, at),
            SessionError::Network { failure, detail } => Attempt::from_failure(*failure, detail, at),
        }
    }

    /// The attempt of a network, TLS or DNS failure (code 0, our enhanced code).
    pub fn from_failure(failure: NetworkFailure, detail: &str, at: &ConnectionInfo) -> Attempt {
        let (outcome, enhanced) = classify_network(failure);
        Attempt {
            outcome,
            response: EventResponse {
                code: 0,
                enhanced: Some(enhanced.to_string()),
                text: detail.to_string(),
            },
            mx: at.mx.clone(),
            source_ip: at.source_ip,
            tls: at.tls.clone(),
        }
    }

    /// The bounce class, for events (none when delivered).
    pub fn class(&self) -> Option<BounceClass> {
        match self.outcome {
            Outcome::Delivered => None,
            Outcome::Transient(class) | Outcome::Permanent(class) => Some(class),
        }
    }
}

/// One event to emit for a recipient after the envelope is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientEvent {
    /// Index of the recipient in the envelope.
    pub index: usize,
    /// Event type.
    pub kind: EventKind,
    /// The attempt behind it.
    pub attempt: Attempt,
}

/// The result of applying an attempt to an envelope.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events in recipient order.
    pub events: Vec<RecipientEvent>,
    /// Recipients that became final failures now (bounced or expired): DSN candidates.
    pub failed: Vec<usize>,
}

/// Applies per-recipient attempts: states, attempt counts, and either the next attempt time or the
/// expiry of every recipient still queued (`jitter` is a uniform sample in [0, 1)).
pub fn apply(
    envelope: &mut Envelope,
    attempts: Vec<(usize, Attempt)>,
    now_ms: u64,
    retry: &RetrySchedule,
    jitter: f64,
) -> Applied {
    let mut applied = record(envelope, attempts);
    schedule_next(envelope, &mut applied, now_ms, retry, jitter, None);
    applied
}

/// Records per-recipient attempts (states, attempt counts, events) without deciding when the message
/// is next due: the message's delivery round is not over (other domains are still being sent).
pub fn record(envelope: &mut Envelope, attempts: Vec<(usize, Attempt)>) -> Applied {
    let mut applied = Applied::default();
    for (index, attempt) in attempts {
        let Some(recipient) = envelope.recipients.get_mut(index) else {
            continue;
        };
        recipient.attempts = recipient.attempts.saturating_add(1);
        let kind = match attempt.outcome {
            Outcome::Delivered => {
                recipient.state = RecipientState::Delivered;
                EventKind::Delivery
            }
            Outcome::Permanent(_) => {
                recipient.state = RecipientState::Bounced;
                applied.failed.push(index);
                EventKind::Bounce
            }
            Outcome::Transient(_) => EventKind::TransientFailure,
        };
        applied.events.push(RecipientEvent { index, kind, attempt });
    }
    applied
}

/// The end of a delivery round: the next attempt time of the recipients still queued (the retry
/// schedule's, or `retry_at_ms` when a reply rule asked for one, never past the maximum age), or
/// their expiry.
pub fn schedule_next(
    envelope: &mut Envelope,
    applied: &mut Applied,
    now_ms: u64,
    retry: &RetrySchedule,
    jitter: f64,
    retry_at_ms: Option<u64>,
) {
    let queued = envelope
        .recipients
        .iter()
        .filter(|r| r.state == RecipientState::Queued);
    let Some(attempts_made) = queued.map(|r| r.attempts).max() else {
        return;
    };
    match retry.after_failure(attempts_made, envelope.received_at_ms, now_ms, jitter) {
        RetryDecision::RetryAt(at) => {
            envelope.next_attempt_at_ms = retry_at_ms.map_or(at, |asked| asked.max(now_ms));
        }
        RetryDecision::Expire => expire(envelope, applied),
    }
}

/// Expires the given recipients now (they waited in a ready queue past the maximum age without an
/// attempt being possible).
pub fn expire_waiting(envelope: &mut Envelope, indexes: &[usize]) -> Applied {
    let mut applied = Applied::default();
    for &index in indexes {
        let Some(recipient) = envelope.recipients.get_mut(index) else {
            continue;
        };
        if recipient.state != RecipientState::Queued {
            continue;
        }
        recipient.state = RecipientState::Expired;
        applied.failed.push(index);
        applied.events.push(RecipientEvent {
            index,
            kind: EventKind::Expiration,
            attempt: expired_attempt(),
        });
    }
    applied
}

/// Why recipients were cancelled (the `reason` of their `cancelled` events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// Their campaign was cancelled.
    CampaignCancelled,
    /// Their message was deleted over the API.
    MessageDeleted,
}

impl CancelReason {
    /// The event's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::CampaignCancelled => "campaign_cancelled",
            CancelReason::MessageDeleted => "message_deleted",
        }
    }
}

/// The recipients `indexes` that are still queued are cancelled: final, no attempt, no DSN (nothing
/// goes into `failed`).
pub fn cancel(envelope: &mut Envelope, indexes: &[usize], reason: CancelReason) -> Applied {
    let mut applied = Applied::default();
    for &index in indexes {
        let Some(recipient) = envelope.recipients.get_mut(index) else {
            continue;
        };
        if recipient.state != RecipientState::Queued {
            continue;
        }
        recipient.state = RecipientState::Cancelled;
        applied.events.push(RecipientEvent {
            index,
            kind: EventKind::Cancelled,
            attempt: Attempt {
                outcome: Outcome::Permanent(BounceClass::Other),
                response: EventResponse {
                    code: 0,
                    enhanced: None,
                    text: reason.as_str().to_string(),
                },
                mx: None,
                source_ip: None,
                tls: None,
            },
        });
    }
    applied
}

/// The attempt an expiry without a final reply stands for.
fn expired_attempt() -> Attempt {
    let (_, enhanced) = classify_network(NetworkFailure::MessageExpired);
    Attempt {
        outcome: Outcome::Permanent(BounceClass::MessageExpired),
        response: EventResponse {
            code: 0,
            enhanced: Some(enhanced.to_string()),
            text: "delivery time expired".into(),
        },
        mx: None,
        source_ip: None,
        tls: None,
    }
}

/// Every still-queued recipient expires; its transient event becomes an expiration.
fn expire(envelope: &mut Envelope, applied: &mut Applied) {
    for (index, recipient) in envelope.recipients.iter_mut().enumerate() {
        if recipient.state != RecipientState::Queued {
            continue;
        }
        recipient.state = RecipientState::Expired;
        applied.failed.push(index);
        let expired = Outcome::Permanent(BounceClass::MessageExpired);
        match applied.events.iter_mut().find(|event| event.index == index) {
            Some(event) => {
                event.kind = EventKind::Expiration;
                event.attempt.outcome = expired;
            }
            None => applied.events.push(RecipientEvent {
                index,
                kind: EventKind::Expiration,
                attempt: expired_attempt(),
            }),
        }
    }
    applied.failed.sort_unstable();
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod tests;
