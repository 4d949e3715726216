//! What the spool stores about a message besides its body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::MessageId;

/// Where one recipient of a message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    /// Not delivered yet; delivery is (still) due.
    Queued,
    /// Accepted by the destination.
    Delivered,
    /// Rejected permanently; a DSN was or will be sent.
    Bounced,
    /// Retried until the maximum age without success.
    Expired,
    /// Removed by the operator or the tenant (campaign cancelled, message deleted) before delivery;
    /// no DSN.
    Cancelled,
}

/// One recipient of a message and its delivery state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The forward-path as given in RCPT TO, without angle brackets.
    pub address: String,
    /// Whether the recipient is still queued or how it ended.
    pub state: RecipientState,
    /// How many delivery attempts were made for this recipient.
    pub attempts: u32,
}

impl Recipient {
    /// A new recipient, queued, with no attempts yet.
    pub fn queued(address: impl Into<String>) -> Recipient {
        Recipient {
            address: address.into(),
            state: RecipientState::Queued,
            attempts: 0,
        }
    }

    /// The domain part of the address: what follows the last `@`, or `""` if there is none.
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map_or("", |(_, domain)| domain)
    }
}

/// The envelope and delivery state of a message; stored apart from the body so that state changes do not
/// rewrite the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The tenant that submitted the message (from AUTH).
    pub tenant: String,
    /// The campaign the tenant filed the message under (may be empty).
    pub campaign: String,
    /// The IP pool the message chose with `X-Pool`; `""` = its tenant's default pool (looked up at
    /// delivery time, so a config change applies to mail already queued).
    pub pool: String,
    /// The reverse-path from MAIL FROM; `""` for the null reverse-path.
    pub sender: String,
    /// Every recipient with its own state.
    pub recipients: Vec<Recipient>,
    /// Body length in bytes.
    pub size: u64,
    /// When the message was accepted, unix milliseconds.
    pub received_at_ms: u64,
    /// When delivery is next due, unix milliseconds (`== received_at_ms` for a new message).
    pub next_attempt_at_ms: u64,
    /// The client used SMTPUTF8.
    pub smtputf8: bool,
    /// BODY=8BITMIME was given or the body has a byte above 127.
    pub eight_bit: bool,
    /// `X-Warmup-Priority: high` (an engaged recipient): preferred for a warming source's capacity.
    pub warmup_priority: bool,
}

impl Envelope {
    /// Whether at least one recipient is still queued, i.e. whether the message is still scheduled.
    pub fn has_queued(&self) -> bool {
        self.recipients.iter().any(|r| r.state == RecipientState::Queued)
    }

    /// How many recipients are still queued.
    pub fn queued_count(&self) -> usize {
        self.recipients
            .iter()
            .filter(|r| r.state == RecipientState::Queued)
            .count()
    }
}

/// A message handed to [`crate::Spool::enqueue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// Its id (from an [`crate::IdGenerator`]); also the storage key.
    pub id: MessageId,
    /// Envelope and initial recipient states.
    pub envelope: Envelope,
    /// The message content as it will be delivered (already signed, dot-unstuffed, CRLF line ends).
    pub body: Vec<u8>,
}

/// Counts of queued recipients by tenant, campaign and recipient domain, and of messages that have any.
///
/// Only recipients in state [`RecipientState::Queued`] count; a message counts if it has at least one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSummary {
    /// Messages with at least one queued recipient.
    pub messages: u64,
    /// Queued recipients in all.
    pub recipients: u64,
    /// Queued recipients per tenant.
    pub by_tenant: BTreeMap<String, u64>,
    /// Queued recipients per campaign, keyed `tenant/campaign` (campaign names are per tenant).
    pub by_campaign: BTreeMap<String, u64>,
    /// Queued recipients per recipient domain (ASCII-lowercased).
    pub by_domain: BTreeMap<String, u64>,
}

impl QueueSummary {
    /// Counts one message and its queued recipients.
    pub fn add(&mut self, envelope: &Envelope) {
        let queued = envelope.queued_count() as u64;
        if queued == 0 {
            return;
        }
        self.messages += 1;
        self.recipients += queued;
        *self.by_tenant.entry(envelope.tenant.clone()).or_default() += queued;
        let campaign = format!("{}/{}", envelope.tenant, envelope.campaign);
        *self.by_campaign.entry(campaign).or_default() += queued;
        for recipient in envelope
            .recipients
            .iter()
            .filter(|r| r.state == RecipientState::Queued)
        {
            let domain = recipient.domain().to_ascii_lowercase();
            *self.by_domain.entry(domain).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient(address: &str, state: RecipientState) -> Recipient {
        Recipient {
            address: address.to_string(),
            state,
            attempts: 0,
        }
    }

    fn envelope(tenant: &str, campaign: &str, recipients: Vec<Recipient>) -> Envelope {
        Envelope {
            tenant: tenant.to_string(),
            campaign: campaign.to_string(),
            pool: String::new(),
            sender: "bounce@example.com".to_string(),
            recipients,
            size: 10,
            received_at_ms: 1,
            next_attempt_at_ms: 1,
            smtputf8: false,
            eight_bit: false,
            warmup_priority: false,
        }
    }

    #[test]
    fn domain_is_after_the_last_at() {
        let cases = [
            ("user@example.com", "example.com"),
            ("\"a@b\"@example.org", "example.org"),
            ("no-at-sign", ""),
            ("trailing@", ""),
            ("@only.domain", "only.domain"),
        ];
        for (address, domain) in cases {
            assert_eq!(Recipient::queued(address).domain(), domain, "{address}");
        }
    }

    #[test]
    fn summary_counts_only_queued_recipients() {
        let mut summary = QueueSummary::default();
        summary.add(&envelope(
            "acme",
            "spring",
            vec![
                recipient("a@Gmail.com", RecipientState::Queued),
                recipient("b@gmail.com", RecipientState::Queued),
                recipient("c@yahoo.com", RecipientState::Delivered),
            ],
        ));
        summary.add(&envelope(
            "acme",
            "fall",
            vec![recipient("d@yahoo.com", RecipientState::Queued)],
        ));
        summary.add(&envelope(
            "zeta",
            "spring",
            vec![recipient("e@x.org", RecipientState::Bounced)],
        ));

        assert_eq!(summary.messages, 2);
        assert_eq!(summary.recipients, 3);
        let map = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(summary.by_tenant, map(&[("acme", 3)]));
        assert_eq!(summary.by_campaign, map(&[("acme/fall", 1), ("acme/spring", 2)]));
        assert_eq!(summary.by_domain, map(&[("gmail.com", 2), ("yahoo.com", 1)]));
    }

    #[test]
    fn state_serializes_snake_case() {
        assert_eq!(
            serde_json::to_string(&RecipientState::Queued).ok().as_deref(),
            Some("\"queued\"")
        );
        let parsed: Option<RecipientState> = serde_json::from_str("\"expired\"").ok();
        assert_eq!(parsed, Some(RecipientState::Expired));
    }
}
