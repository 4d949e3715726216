//! Campaign states: pause, resume, cancel; and message deletion. The states are control records
//! (`campaign/TENANT/CAMPAIGN`, JSON `{"state", "changed_us"}`) so they survive restart.
//!
//! - **Pause** puts a scheduler suspension in force with scope (tenant, campaign) and no end (id
//!   `campaign:TENANT/CAMPAIGN`, shown by `/v1/suspensions` but lifted only by resume): queued mail
//!   waits in its lanes, no attempt is counted, and it still expires at `delivery.max_age`.
//! - **Cancel** is final: the campaign joins `delivery::Cancellations`, its items waiting in lanes are
//!   taken out and its messages in the schedule are made due now, so the driver ends every queued
//!   recipient as `cancelled` (one event each, no DSN). New mail for it is refused at the end of DATA.
//! - **Deleting a message** does the same for one message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use penguin_queue::{MessageId, Spool, SpoolError};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::delivery::Cancellations;
use crate::delivery::scheduler::{OperatorScope, OperatorSuspension, Scheduler};

/// Prefix of the control records.
const PREFIX: &str = "campaign/";
/// Prefix of the ids of the scheduler suspensions that pause campaigns.
pub const PAUSE_ID_PREFIX: &str = "campaign:";

/// How long a pause suspension lasts: until resumed (a hundred years).
const PAUSE_US: u64 = 100 * 365 * 86_400 * 1_000_000;

/// Where a campaign stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Sending (the default of every campaign).
    #[default]
    Active,
    /// Queued mail waits until resumed.
    Paused,
    /// Queued mail was removed; new mail is refused. Final.
    Cancelled,
}

/// The stored form.
#[derive(Debug, Serialize, Deserialize)]
struct StateRecord {
    /// The state.
    state: CampaignState,
    /// When it was set, unix microseconds.
    changed_us: u64,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// Cancelled campaigns stay cancelled.
    #[error("campaign {0:?} is cancelled; a cancelled campaign cannot be paused or resumed")]
    Cancelled(String),
    /// The spool failed.
    #[error(transparent)]
    Storage(#[from] SpoolError),
}

/// The campaign and message controls (shared by the API and the server).
#[derive(Clone)]
pub struct Campaigns {
    /// Where states are stored; the schedule index.
    spool: Arc<Spool>,
    /// Where pauses are in force and waiting items are taken out.
    scheduler: Arc<Mutex<Scheduler>>,
    /// What delivery must not send.
    cancellations: Arc<Cancellations>,
    /// Wakes the delivery driver.
    wakeup: Arc<Notify>,
    /// Now.
    clock: SharedClock,
    /// With `[cluster]`: where changes are journaled for the other nodes.
    replication: Option<crate::cluster::Replication>,
}

impl Campaigns {
    /// A handle.
    pub fn new(
        spool: Arc<Spool>,
        scheduler: Arc<Mutex<Scheduler>>,
        cancellations: Arc<Cancellations>,
        wakeup: Arc<Notify>,
        clock: SharedClock,
    ) -> Campaigns {
        Campaigns {
            spool,
            scheduler,
            cancellations,
            wakeup,
            clock,
            replication: None,
        }
    }

    /// These campaigns with their state changes journaled for the other nodes (`[cluster]`).
    pub fn with_replication(mut self, replication: Option<crate::cluster::Replication>) -> Self {
        self.replication = replication;
        self
    }

    /// Puts the stored states in force (at start): pauses into the scheduler, cancellations into the
    /// cancelled set. Returns how many records were loaded.
    pub fn load(&self) -> Result<usize, SpoolError> {
        let records = self.spool.control_records(PREFIX)?;
        for (key, value) in &records {
            let Some((tenant, campaign)) = key[PREFIX.len()..].split_once('/') else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<StateRecord>(value) else {
                tracing::warn!(%key, "ignoring an unreadable campaign state");
                continue;
            };
            match record.state {
                CampaignState::Paused => self.hold(tenant, campaign),
                CampaignState::Cancelled => self.cancellations.cancel_campaign(tenant, campaign),
                CampaignState::Active => {}
            }
        }
        Ok(records.len())
    }

    /// The state of one campaign.
    pub fn state(&self, tenant: &str, campaign: &str) -> Result<CampaignState, SpoolError> {
        let records = self.spool.control_records(&key(tenant, campaign))?;
        Ok(records
            .iter()
            .find(|(k, _)| *k == key(tenant, campaign))
            .and_then(|(_, value)| serde_json::from_slice::<StateRecord>(value).ok())
            .map_or(CampaignState::Active, |record| record.state))
    }

    /// Every stored state of a tenant's campaigns (campaigns not listed are active).
    pub fn states(&self, tenant: &str) -> Result<BTreeMap<String, CampaignState>, SpoolError> {
        let prefix = format!("{PREFIX}{tenant}/");
        Ok(self
            .spool
            .control_records(&prefix)?
            .into_iter()
            .filter_map(|(key, value)| {
                let record = serde_json::from_slice::<StateRecord>(&value).ok()?;
                Some((key[prefix.len()..].to_string(), record.state))
            })
            .collect())
    }

    /// Pauses a campaign (idempotent).
    pub fn pause(&self, tenant: &str, campaign: &str) -> Result<CampaignState, CampaignError> {
        self.refuse_cancelled(tenant, campaign)?;
        self.store(tenant, campaign, CampaignState::Paused, true)?;
        self.hold(tenant, campaign);
        Ok(CampaignState::Paused)
    }

    /// Resumes a paused campaign (idempotent).
    pub fn resume(&self, tenant: &str, campaign: &str) -> Result<CampaignState, CampaignError> {
        self.refuse_cancelled(tenant, campaign)?;
        self.unstore(tenant, campaign, true)?;
        self.release(tenant, campaign);
        Ok(CampaignState::Active)
    }

    /// Cancels a campaign (final; idempotent): its queued recipients are removed.
    pub fn cancel(&self, tenant: &str, campaign: &str) -> Result<CampaignState, CampaignError> {
        self.store(tenant, campaign, CampaignState::Cancelled, true)?;
        self.cancel_here(tenant, campaign);
        Ok(CampaignState::Cancelled)
    }

    /// What a cancellation does on this node (once stored).
    fn cancel_here(&self, tenant: &str, campaign: &str) {
        self.cancellations.cancel_campaign(tenant, campaign);
        {
            // Under one lock: the items leave the lanes before the pause (if any) ends, so no
            // connection can take them in between.
            let mut scheduler = self.lock();
            scheduler.cancel_where(|t, c, _| t == tenant && c == campaign);
            scheduler.remove_suspension(&pause_id(tenant, campaign), self.clock.now_us());
        }
        let now_ms = self.clock.now_ms();
        self.spool.index().hasten_queue(tenant, campaign, now_ms);
        self.wakeup.notify_one();
    }

    /// Deletes a message: its queued recipients are removed (`cancelled` events).
    pub fn delete_message(&self, id: MessageId) {
        self.cancellations.delete_message(id);
        self.lock().cancel_where(|_, _, message| message == id);
        self.hasten(id);
    }

    /// Makes a scheduled message due now (`POST /v1/messages/{id}/retry`, and deletion). Returns false
    /// when it is not in the schedule (being delivered right now, or gone).
    pub fn hasten(&self, id: MessageId) -> bool {
        let now_ms = self.clock.now_ms();
        let moved = {
            let mut index = self.spool.index();
            match (index.queue_of(id), index.due_ms(id)) {
                (Some(queue), Some(due_ms)) => {
                    index.insert_key(id, now_ms.min(due_ms), queue);
                    true
                }
                _ => false,
            }
        };
        self.wakeup.notify_one();
        moved
    }

    /// Whether new mail for the campaign is refused.
    pub fn is_cancelled(&self, tenant: &str, campaign: &str) -> bool {
        self.cancellations.campaign_cancelled(tenant, campaign)
    }

    /// 409 for a cancelled campaign.
    fn refuse_cancelled(&self, tenant: &str, campaign: &str) -> Result<(), CampaignError> {
        if self.is_cancelled(tenant, campaign) {
            return Err(CampaignError::Cancelled(campaign.to_string()));
        }
        Ok(())
    }

    /// Stores a state, synced (journaled first for the other nodes when `journal` and `[cluster]`).
    fn store(
        &self,
        tenant: &str,
        campaign: &str,
        state: CampaignState,
        journal: bool,
    ) -> Result<(), SpoolError> {
        let record = StateRecord {
            state,
            changed_us: self.clock.now_us(),
        };
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let key = key(tenant, campaign);
        if let Some(replication) = self.replication.as_ref().filter(|_| journal) {
            replication.record(&key, Some(&value), self.clock.now_ms())?;
        }
        self.spool.put_control(&key, &value)
    }

    /// Deletes a stored state (back to active), journaled like [`Campaigns::store`].
    fn unstore(&self, tenant: &str, campaign: &str, journal: bool) -> Result<(), SpoolError> {
        let key = key(tenant, campaign);
        if let Some(replication) = self.replication.as_ref().filter(|_| journal) {
            replication.record(&key, None, self.clock.now_ms())?;
        }
        self.spool.delete_control(&key).map(|_| ())
    }

    /// Puts the campaign's pause in force.
    fn hold(&self, tenant: &str, campaign: &str) {
        let now_us = self.clock.now_us();
        let suspension = OperatorSuspension {
            id: pause_id(tenant, campaign),
            scope: OperatorScope {
                tenant: Some(tenant.to_string()),
                campaign: Some(campaign.to_string()),
                ..OperatorScope::default()
            },
            until_us: now_us.saturating_add(PAUSE_US),
            reason: "campaign paused".to_string(),
            created_us: now_us,
        };
        let _ = self.lock().add_suspension(suspension, now_us);
    }

    /// Lifts the campaign's pause, if in force.
    fn release(&self, tenant: &str, campaign: &str) {
        let now_us = self.clock.now_us();
        self.lock().remove_suspension(&pause_id(tenant, campaign), now_us);
        self.wakeup.notify_one();
    }

    /// The scheduler, locked.
    fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.scheduler.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The control key of a campaign's state.
fn key(tenant: &str, campaign: &str) -> String {
    format!("{PREFIX}{tenant}/{campaign}")
}

/// The id of the suspension that pauses a campaign.
fn pause_id(tenant: &str, campaign: &str) -> String {
    format!("{PAUSE_ID_PREFIX}{tenant}/{campaign}")
}

impl crate::cluster::ApplyChange for Campaigns {
    /// Another node paused, cancelled (`Some`) or resumed (`None`) the campaign of `key`: the same
    /// here, without journaling it again.
    fn apply(&self, key: &str, value: Option<&[u8]>) -> bool {
        let Some((tenant, campaign)) = key.strip_prefix(PREFIX).and_then(|rest| rest.split_once('/')) else {
            return false;
        };
        let state = value.and_then(|bytes| serde_json::from_slice::<StateRecord>(bytes).ok());
        let result = match state.map(|record| record.state) {
            Some(CampaignState::Paused) => self
                .store(tenant, campaign, CampaignState::Paused, false)
                .map(|()| self.hold(tenant, campaign)),
            Some(CampaignState::Cancelled) => self
                .store(tenant, campaign, CampaignState::Cancelled, false)
                .map(|()| self.cancel_here(tenant, campaign)),
            Some(CampaignState::Active) | None => self
                .unstore(tenant, campaign, false)
                .map(|()| self.release(tenant, campaign)),
        };
        if let Err(error) = result {
            tracing::error!(%key, %error, "cannot store a campaign state from another node");
        }
        true
    }
}
