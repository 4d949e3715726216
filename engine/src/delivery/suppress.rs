//! Automatic suppression (`suppression.auto_hard_bounce`): a recipient whose delivery bounced because
//! the mailbox or the domain does not exist goes on its tenant's suppression list, so the next
//! message to it is refused at RCPT instead of hurting the sender's reputation again.

use penguin_policy::BounceClass;
use penguin_queue::{Envelope, MessageId, SuppressionEntry, SuppressionReason};

use super::Delivery;
use super::outcome::RecipientEvent;
use crate::events::{Event, EventKind};

/// Whether a bounce of this class says the address will never work.
fn is_hard(class: Option<BounceClass>) -> bool {
    matches!(
        class,
        Some(BounceClass::InvalidRecipient | BounceClass::BadDomain)
    )
}

impl Delivery {
    /// Suppresses the hard-bounced recipients among `events` (durably, before their events are
    /// emitted); returns the `suppression_added` events of the addresses that were new on the list.
    pub(super) async fn suppress_hard_bounces(
        &self,
        id: MessageId,
        envelope: &Envelope,
        events: &[RecipientEvent],
        now: u64,
    ) -> Vec<Event> {
        if !self.settings.auto_suppress {
            return Vec::new();
        }
        let addresses: Vec<String> = events
            .iter()
            .filter(|event| event.kind == EventKind::Bounce && is_hard(event.attempt.class()))
            .map(|event| envelope.recipients[event.index].address.clone())
            .collect();
        if addresses.is_empty() {
            return Vec::new();
        }
        let spool = std::sync::Arc::clone(&self.spool);
        let (tenant, campaign) = (envelope.tenant.clone(), envelope.campaign.clone());
        let added = tokio::task::spawn_blocking(move || {
            let mut added = Vec::new();
            for address in addresses {
                let entry = SuppressionEntry {
                    address: address.clone(),
                    reason: SuppressionReason::HardBounce,
                    added_at_ms: now,
                    campaign: Some(campaign.clone()),
                };
                match spool.suppress(&tenant, entry) {
                    Ok(true) => added.push(address),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(%error, %address, "cannot add a hard bounce to the suppression list")
                    }
                }
            }
            added
        })
        .await
        .unwrap_or_default();
        added
            .into_iter()
            .map(|address| suppression_event(id, envelope, address, now))
            .collect()
    }
}

/// The `suppression_added` event of an address suppressed after a hard bounce of message `id`.
fn suppression_event(id: MessageId, envelope: &Envelope, address: String, now: u64) -> Event {
    Event {
        id: Some(id),
        sender: envelope.sender.clone(),
        size: envelope.size,
        ..Event::about_address(
            EventKind::SuppressionAdded,
            now,
            &envelope.tenant,
            &envelope.campaign,
            &address,
            SuppressionReason::HardBounce.as_str(),
        )
    }
}
