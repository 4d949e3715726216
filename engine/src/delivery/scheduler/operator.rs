//! Operator suspensions: stop sending for a tenant, campaign, recipient domain, provider or source (or
//! a combination: every field given must match) until a time. Suspended mail stays queued and counts
//! no attempt. The records are stored by the API (`delivery::suspensions`); here they are in force.
//!
//! A suspension naming only a source and/or a provider holds whole lanes (their connections close);
//! any other holds the scheduled queues it matches inside the lanes, so the rest of a lane goes on.

use std::sync::Arc;

use penguin_policy::shaping::{DeliveryKey, SuspensionScope, lane_suspended_until};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Scheduler;
use super::lane::{Hold, Item};
use super::names::{LaneId, Names};
use crate::events::{Event, EventKind};

/// One operator suspension (also its stored and API form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSuspension {
    /// Its id (`penguin-mta resume ID`, `DELETE /v1/suspensions/{id}`).
    pub id: String,
    /// What it holds.
    pub scope: OperatorScope,
    /// When it ends by itself, unix microseconds.
    pub until_us: u64,
    /// The operator's words.
    pub reason: String,
    /// When it was made, unix microseconds.
    pub created_us: u64,
}

/// The scope of a suspension as stored and shown (every field optional; at least one set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorScope {
    /// Tenant name.
    pub tenant: Option<String>,
    /// Campaign (of the tenant if one is given, else of any tenant).
    pub campaign: Option<String>,
    /// Recipient domain (lowercase).
    pub domain: Option<String>,
    /// Provider name.
    pub provider: Option<String>,
    /// Source name.
    pub source: Option<String>,
}

impl OperatorScope {
    /// The policy form.
    pub fn to_policy(&self) -> SuspensionScope {
        SuspensionScope {
            tenant: self.tenant.clone(),
            campaign: self.campaign.clone(),
            domain: self.domain.clone(),
            provider: self.provider.clone(),
            source: self.source.clone(),
        }
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.to_policy().is_empty()
    }

    /// The JSON form of events and the API.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "tenant": self.tenant, "campaign": self.campaign, "domain": self.domain,
            "provider": self.provider, "source": self.source,
        })
    }
}

/// Why a suspension was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SuspensionError {
    /// No scope field was given.
    #[error("give at least one of tenant, campaign, domain, provider, source")]
    EmptyScope,
}

/// The names of an item on a lane, owned, to match scopes against.
pub(super) struct OwnedKey {
    /// Tenant.
    tenant: Arc<str>,
    /// Campaign.
    campaign: Arc<str>,
    /// Domain.
    domain: Arc<str>,
    /// The lane's provider.
    provider: Arc<str>,
    /// The lane's source.
    source: Arc<str>,
}

impl OwnedKey {
    /// The key of `item` sent from `source` to a site of `provider`.
    pub(super) fn of(names: &Names, item: &Item, source: &Arc<str>, provider: &Arc<str>) -> OwnedKey {
        OwnedKey {
            tenant: names.name(item.key.tenant),
            campaign: names.name(item.key.campaign),
            domain: names.name(item.key.domain),
            provider: Arc::clone(provider),
            source: Arc::clone(source),
        }
    }

    /// As the policy's borrowed key.
    fn as_key(&self) -> DeliveryKey<'_> {
        DeliveryKey {
            tenant: &self.tenant,
            campaign: &self.campaign,
            domain: &self.domain,
            provider: &self.provider,
            source: &self.source,
        }
    }
}

/// The latest end of the operator suspensions in force that hold `key`.
pub(super) fn suspended_until(
    suspensions: &[OperatorSuspension],
    key: &OwnedKey,
    now_us: u64,
) -> Option<u64> {
    let key = key.as_key();
    suspensions
        .iter()
        .filter(|s| s.until_us > now_us && s.scope.to_policy().matches(&key))
        .map(|s| s.until_us)
        .max()
}

/// The operator suspension in force that holds the whole lane of (`source`, `provider`), if any.
pub(super) fn lane_suspended(
    suspensions: &[OperatorSuspension],
    source: &str,
    provider: &str,
    now_us: u64,
) -> Option<Hold> {
    let scopes: Vec<(SuspensionScope, u64)> = suspensions
        .iter()
        .map(|s| (s.scope.to_policy(), s.until_us))
        .collect();
    let until = lane_suspended_until(
        scopes.iter().map(|(scope, until)| (scope, *until)),
        source,
        provider,
        now_us,
    )?;
    let reason = suspensions
        .iter()
        .find(|s| s.until_us == until)
        .map_or_else(String::new, |s| format!("operator: {}", s.reason));
    Some(Hold {
        until_us: until,
        reason,
    })
}

/// The scope JSON of a rule's suspension of a lane (`site` set for a site-wide one).
pub(super) fn lane_scope_json(source: &str, provider: &str, site: Option<&str>) -> serde_json::Value {
    json!({
        "tenant": null, "campaign": null, "domain": null,
        "provider": provider, "source": source, "site": site,
    })
}

impl Scheduler {
    /// Puts a suspension in force (made by the API, or loaded at start). Lanes it holds stop and
    /// their mail moves to other sources of its pools where possible; an event says so.
    pub fn add_suspension(
        &mut self,
        suspension: OperatorSuspension,
        now_us: u64,
    ) -> Result<(), SuspensionError> {
        if suspension.scope.is_empty() {
            return Err(SuspensionError::EmptyScope);
        }
        self.now_ms = now_us / 1000;
        self.emit(Event {
            scope: Some(suspension.scope.to_json()),
            until: Some(suspension.until_us / 1000),
            reason: Some(suspension.reason.clone().into()),
            source: suspension.scope.source.as_deref().map(Arc::from),
            provider: suspension.scope.provider.as_deref().map(Arc::from),
            ..Event::blank(EventKind::Suspended, self.now_ms)
        });
        let names_source = suspension.scope.source.is_some();
        self.suspensions.retain(|s| s.id != suspension.id);
        self.suspensions.push(suspension);
        for index in 0..self.lanes.len() {
            let lane_id = LaneId(index as u32);
            if names_source && self.lanes[index].queued > 0 {
                self.rebalance(lane_id, now_us);
            }
            self.lanes[index].notify.notify_waiters();
        }
        Ok(())
    }

    /// Lifts the suspension `id`; returns it, or None if it is not in force.
    pub fn remove_suspension(&mut self, id: &str, now_us: u64) -> Option<OperatorSuspension> {
        let index = self.suspensions.iter().position(|s| s.id == id)?;
        let removed = self.suspensions.remove(index);
        self.now_ms = now_us / 1000;
        self.resumed(&removed, "deleted");
        self.release_all();
        Some(removed)
    }

    /// The suspensions in force, oldest first.
    pub fn suspensions(&self, now_us: u64) -> Vec<OperatorSuspension> {
        self.suspensions
            .iter()
            .filter(|s| s.until_us > now_us)
            .cloned()
            .collect()
    }

    /// Ends the suspensions whose time is over (called by every poll).
    pub(super) fn end_operator_suspensions(&mut self, now_us: u64) {
        if self.suspensions.iter().all(|s| s.until_us > now_us) {
            return;
        }
        let (ended, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.suspensions)
            .into_iter()
            .partition(|s| s.until_us <= now_us);
        self.suspensions = kept;
        for suspension in &ended {
            self.resumed(suspension, "expired");
        }
        self.release_all();
    }

    /// Emits `resumed` for an operator suspension.
    fn resumed(&self, suspension: &OperatorSuspension, reason: &'static str) {
        self.emit(Event {
            scope: Some(suspension.scope.to_json()),
            reason: Some(reason.into()),
            source: suspension.scope.source.as_deref().map(Arc::from),
            provider: suspension.scope.provider.as_deref().map(Arc::from),
            ..Event::blank(EventKind::Resumed, self.now_ms)
        });
    }

    /// After a suspension ended: every held-back queue is checked again, every lane with mail looked at.
    pub(super) fn release_all(&mut self) {
        for index in 0..self.lanes.len() {
            let lane = &mut self.lanes[index];
            lane.unblock_all();
            if lane.queued > 0 {
                lane.notify.notify_waiters();
                self.mark_dirty(LaneId(index as u32));
            }
        }
    }

    /// When an operator suspension holding `item` on `lane_id` ends, if one does.
    pub(super) fn item_suspended_until(&self, lane_id: LaneId, item: &Item, now_us: u64) -> Option<u64> {
        if self.suspensions.is_empty() {
            return None;
        }
        let (source, _, provider) = self.lane_names(lane_id);
        let key = OwnedKey::of(&self.names, item, &source, &provider);
        suspended_until(&self.suspensions, &key, now_us)
    }
}
