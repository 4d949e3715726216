//! Operator suspensions as the API and the CLI see them: validated, stored in the spool's control
//! column family (synced before the API answers, so they survive a restart), put in force in the
//! scheduler, ended by themselves at their time or by `DELETE /v1/suspensions/{id}`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use penguin_config::HumanDuration;
use penguin_queue::{Spool, SpoolError};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::scheduler::{OperatorScope, OperatorSuspension, Scheduler};
use crate::clock::SharedClock;
use crate::timefmt;

/// Key prefix of the stored suspensions.
const PREFIX: &str = "suspension/";

/// Longest suspension the API accepts (a year): longer is a mistake, or should be a config change.
const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// `POST /v1/suspensions`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspensionRequest {
    /// Tenant name.
    pub tenant: Option<String>,
    /// Campaign.
    pub campaign: Option<String>,
    /// Recipient domain.
    pub domain: Option<String>,
    /// Provider name.
    pub provider: Option<String>,
    /// Source name.
    pub source: Option<String>,
    /// How long, e.g. `"2h"`. Required.
    pub duration: Option<String>,
    /// Why (free text, shown in events and listings).
    pub reason: Option<String>,
}

/// A suspension as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SuspensionView {
    /// Its id.
    pub id: String,
    /// What it holds (unset fields null).
    pub scope: serde_json::Value,
    /// When it ends (RFC 3339).
    pub until: String,
    /// Why.
    pub reason: String,
    /// When it was made (RFC 3339).
    pub created: String,
}

impl From<&OperatorSuspension> for SuspensionView {
    fn from(suspension: &OperatorSuspension) -> Self {
        SuspensionView {
            id: suspension.id.clone(),
            scope: suspension.scope.to_json(),
            until: timefmt::rfc3339_millis(suspension.until_us / 1000),
            reason: suspension.reason.clone(),
            created: timefmt::rfc3339_millis(suspension.created_us / 1000),
        }
    }
}

/// Why a request was refused (the message names the field).
#[derive(Debug, thiserror::Error)]
pub enum SuspensionError {
    /// A field is missing or wrong.
    #[error("{0}")]
    Invalid(String),
    /// The spool could not store it.
    #[error("cannot store the suspension: {0}")]
    Storage(#[from] SpoolError),
}

/// The operator's suspensions (a handle shared by the API and the server).
#[derive(Clone)]
pub struct Suspensions {
    /// Where they are stored.
    spool: Arc<Spool>,
    /// Where they are in force.
    scheduler: Arc<Mutex<Scheduler>>,
    /// Wakes the delivery driver (a suspension changed what may be sent).
    driver: Arc<Notify>,
    /// Now.
    clock: SharedClock,
    /// With `[cluster]`: where changes are journaled for the other nodes.
    replication: Option<crate::cluster::Replication>,
}

impl Suspensions {
    /// A handle.
    pub fn new(
        spool: Arc<Spool>,
        scheduler: Arc<Mutex<Scheduler>>,
        driver: Arc<Notify>,
        clock: SharedClock,
    ) -> Self {
        Suspensions {
            spool,
            scheduler,
            driver,
            clock,
            replication: None,
        }
    }

    /// These suspensions with their changes journaled for the other nodes (`[cluster]`).
    pub fn with_replication(mut self, replication: Option<crate::cluster::Replication>) -> Self {
        self.replication = replication;
        self
    }

    /// Journals a change for the other nodes (with `[cluster]`), before it is stored here.
    fn journal(&self, key: &str, value: Option<&[u8]>) -> Result<(), SpoolError> {
        match &self.replication {
            Some(replication) => replication.record(key, value, self.clock.now_ms()),
            None => Ok(()),
        }
    }

    /// Puts the stored suspensions in force (at start); those that ended while the server was down are
    /// deleted.
    pub fn load(&self) -> Result<usize, SpoolError> {
        let now_us = self.clock.now_us();
        let mut loaded = 0;
        for (key, value) in self.spool.control_records(PREFIX)? {
            let Ok(suspension) = serde_json::from_slice::<OperatorSuspension>(&value) else {
                tracing::warn!(%key, "ignoring an unreadable stored suspension");
                continue;
            };
            if suspension.until_us <= now_us {
                self.spool.delete_control(&key)?;
                continue;
            }
            if self.lock().add_suspension(suspension, now_us).is_ok() {
                loaded += 1;
            }
        }
        Ok(loaded)
    }

    /// Validates, stores and puts in force a new suspension.
    pub fn create(&self, request: SuspensionRequest) -> Result<OperatorSuspension, SuspensionError> {
        let scope = self.validated_scope(&request)?;
        let duration = parse_duration(request.duration.as_deref())?;
        let now_us = self.clock.now_us();
        let suspension = OperatorSuspension {
            id: new_id(),
            scope,
            until_us: now_us.saturating_add(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)),
            reason: request.reason.unwrap_or_default(),
            created_us: now_us,
        };
        let record = serde_json::to_vec(&suspension).map_err(|e| SuspensionError::Invalid(e.to_string()))?;
        let key = format!("{PREFIX}{}", suspension.id);
        self.journal(&key, Some(&record))?;
        self.spool.put_control(&key, &record)?;
        self.lock()
            .add_suspension(suspension.clone(), now_us)
            .map_err(|e| SuspensionError::Invalid(e.to_string()))?;
        self.driver.notify_one();
        Ok(suspension)
    }

    /// The suspensions in force, oldest first.
    pub fn list(&self) -> Vec<OperatorSuspension> {
        let mut list = self.lock().suspensions(self.clock.now_us());
        // Campaign pauses are managed by the campaign routes.
        list.retain(|s| !s.id.starts_with(crate::campaigns::PAUSE_ID_PREFIX));
        list.sort_by_key(|s| s.created_us);
        list
    }

    /// Lifts suspension `id`: true if it existed.
    pub fn delete(&self, id: &str) -> Result<bool, SpoolError> {
        if id.starts_with(crate::campaigns::PAUSE_ID_PREFIX) {
            return Ok(false);
        }
        let key = format!("{PREFIX}{id}");
        self.journal(&key, None)?;
        let stored = self.spool.delete_control(&key)?;
        let in_force = self.lock().remove_suspension(id, self.clock.now_us()).is_some();
        self.driver.notify_one();
        Ok(stored || in_force)
    }

    /// The scheduler, locked.
    fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.scheduler.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The scope of a request, each field checked against what exists.
    fn validated_scope(&self, request: &SuspensionRequest) -> Result<OperatorScope, SuspensionError> {
        let invalid = |message: String| Err(SuspensionError::Invalid(message));
        let scheduler = self.lock();
        let settings = scheduler.settings();
        let clean = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let scope = OperatorScope {
            tenant: clean(&request.tenant),
            campaign: clean(&request.campaign),
            domain: clean(&request.domain).map(|d| d.to_ascii_lowercase()),
            provider: clean(&request.provider),
            source: clean(&request.source),
        };
        if scope.is_empty() {
            return invalid("scope: give at least one of tenant, campaign, domain, provider, source".into());
        }
        if let Some(domain) = &scope.domain
            && let Err(reason) = penguin_config::check_domain(domain)
        {
            return invalid(format!("domain: {reason}"));
        }
        if let Some(provider) = &scope.provider
            && !settings.provider_names.iter().any(|known| **known == **provider)
        {
            let known: Vec<&str> = settings.provider_names.iter().map(|p| &**p).collect();
            return invalid(format!(
                "provider: unknown provider {provider:?} (known: {})",
                known.join(", ")
            ));
        }
        if let Some(source) = &scope.source
            && settings.source_id(source).is_none()
        {
            return invalid(format!("source: unknown source {source:?}"));
        }
        for (field, value) in [("tenant", &scope.tenant), ("campaign", &scope.campaign)] {
            if value
                .as_ref()
                .is_some_and(|v| v.len() > 128 || v.chars().any(char::is_control))
            {
                return invalid(format!(
                    "{field}: at most 128 characters without control characters"
                ));
            }
        }
        Ok(scope)
    }
}

/// The duration of a request: required, a human duration (`"30m"`, `"2h"`), more than zero, at most a
/// year.
fn parse_duration(duration: Option<&str>) -> Result<Duration, SuspensionError> {
    let Some(text) = duration else {
        return Err(SuspensionError::Invalid(
            "duration: required (e.g. \"2h\")".into(),
        ));
    };
    let parsed: HumanDuration = text
        .parse()
        .map_err(|error: String| SuspensionError::Invalid(format!("duration: {error}")))?;
    let duration = parsed.get();
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(SuspensionError::Invalid(
            "duration: must be more than 0s and at most 366d".into(),
        ));
    }
    Ok(duration)
}

/// A new suspension id: `s` and 16 random hex digits.
fn new_id() -> String {
    format!("s{:016x}", rand::random::<u64>())
}

impl crate::cluster::ApplyChange for Suspensions {
    /// Another node created (`Some`) or deleted (`None`) the suspension of `key`: stored and in force
    /// here as if made here, without journaling it again.
    fn apply(&self, key: &str, value: Option<&[u8]>) -> bool {
        let Some(id) = key.strip_prefix(PREFIX) else {
            return false;
        };
        let now_us = self.clock.now_us();
        let stored = match value {
            Some(bytes) => match serde_json::from_slice::<OperatorSuspension>(bytes) {
                Ok(suspension) if suspension.until_us > now_us => {
                    let stored = self.spool.put_control(key, bytes);
                    let _ = self.lock().add_suspension(suspension, now_us);
                    stored
                }
                Ok(_) => Ok(()),
                Err(error) => {
                    tracing::warn!(%key, %error, "cluster: an unreadable suspension from another node");
                    Ok(())
                }
            },
            None => {
                let deleted = self.spool.delete_control(key).map(|_| ());
                self.lock().remove_suspension(id, now_us);
                deleted
            }
        };
        if let Err(error) = stored {
            tracing::error!(%key, %error, "cannot store a suspension from another node");
        }
        self.driver.notify_one();
        true
    }
}
