//! What delivery must not send: cancelled campaigns (kept in the spool's control records by
//! `crate::campaigns`, loaded here) and messages deleted over the API. The driver asks at intake and
//! when a route arrives; items already waiting in lanes are taken out by `Scheduler::cancel_where`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use penguin_queue::MessageId;

use super::Delivery;
use super::outcome::CancelReason;
use super::scheduler::Work;

/// Cancelled campaigns and deleted messages (shared by the API and the driver).
#[derive(Debug, Default)]
pub struct Cancellations {
    /// Whether anything is cancelled at all: the driver's per-message check is one load otherwise.
    any: AtomicBool,
    /// (tenant, campaign) pairs.
    campaigns: RwLock<HashSet<(String, String)>>,
    /// Messages deleted whose queued recipients are not cancelled yet.
    messages: RwLock<HashSet<MessageId>>,
}

impl Cancellations {
    /// Nothing cancelled.
    pub fn new() -> Arc<Cancellations> {
        Arc::new(Cancellations::default())
    }

    /// Marks a campaign cancelled (for good).
    pub fn cancel_campaign(&self, tenant: &str, campaign: &str) {
        self.campaigns
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((tenant.to_string(), campaign.to_string()));
        self.any.store(true, Ordering::Release);
    }

    /// Marks a message deleted (until its queued recipients are cancelled).
    pub fn delete_message(&self, id: MessageId) {
        self.messages
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        self.any.store(true, Ordering::Release);
    }

    /// Whether a campaign is cancelled.
    pub fn campaign_cancelled(&self, tenant: &str, campaign: &str) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .campaigns
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&(tenant.to_string(), campaign.to_string()))
    }

    /// Why a message of (`tenant`, `campaign`) must not be sent, if it must not; a deleted message is
    /// forgotten here once asked about (its recipients are cancelled now).
    pub fn check(&self, tenant: &str, campaign: &str, id: MessageId) -> Option<CancelReason> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        if self
            .messages
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
        {
            self.messages
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            return Some(CancelReason::MessageDeleted);
        }
        self.campaign_cancelled(tenant, campaign)
            .then_some(CancelReason::CampaignCancelled)
    }
}

impl Delivery {
    /// Cancels, off the driver loop, items taken out of the scheduler.
    pub(super) fn spawn_cancel(
        self: &Arc<Self>,
        works: Vec<(Work, CancelReason)>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        if works.is_empty() {
            return;
        }
        let delivery = Arc::clone(self);
        tasks.spawn(async move {
            for (work, reason) in works {
                delivery.cancel_item(work, reason).await;
            }
        });
    }

    /// The reason each item the scheduler took out is cancelled for (a deleted message's, else its
    /// campaign's).
    pub(super) fn cancel_reasons(&self, works: Vec<Work>) -> Vec<(Work, CancelReason)> {
        works
            .into_iter()
            .map(|work| {
                let id = work.item.id;
                let deleted = self
                    .cancellations
                    .messages
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(&id);
                let reason = if deleted {
                    CancelReason::MessageDeleted
                } else {
                    CancelReason::CampaignCancelled
                };
                (work, reason)
            })
            .collect()
    }
}
