//! A tenant's campaigns: `GET /v1/tenants/{tenant}/campaigns[/{campaign}]` (counts and state) and
//! `POST …/{campaign}/pause|resume|cancel` (see `crate::campaigns`). A campaign is the `X-Campaign-ID`
//! of its mail (`default` without one).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::paging::PageQuery;
use super::{ApiState, blocking};
use crate::campaigns::{CampaignError, CampaignState};
use crate::smtp::headers::MAX_CAMPAIGN_LEN;
use crate::usage::{self, CampaignCounts};

/// The JSON of a campaign.
fn view(name: &str, state: CampaignState, counts: &CampaignCounts) -> Value {
    let mut value = serde_json::to_value(counts).unwrap_or_else(|_| json!({}));
    value["name"] = json!(name);
    value["state"] = json!(state);
    value
}

/// 400 unless `campaign` is a possible campaign id (1-128 printable ASCII).
fn check_campaign(campaign: &str) -> Result<(), ApiError> {
    if campaign.is_empty()
        || campaign.len() > MAX_CAMPAIGN_LEN
        || !campaign.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::field(
            "campaign",
            format!("campaign {campaign:?}: expected 1-{MAX_CAMPAIGN_LEN} printable ASCII characters"),
        ));
    }
    Ok(())
}

/// `GET /v1/tenants/{tenant}/campaigns?after=NAME&limit=N`: every campaign with mail or a state, in
/// name order, with its counts; `next_after` pages on.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/campaigns", tag = "campaigns",
    params(("tenant" = String, Path, description = "Tenant name"),
        ("after" = Option<String>, Query, description = "Start after this campaign (`next_after` of the previous page)"),
        ("limit" = Option<usize>, Query, description = "Campaigns per page, 1-1000 (default 100)")),
    responses((status = 200, description = "`{\"tenant\", \"campaigns\": [{\"name\", \"state\", \"accepted\", \"delivered\", \"deferred\", \"bounced\", \"bounced_by_class\", \"deferred_by_class\", \"suppressed\", \"unsubscribed\", \"expired\", \"cancelled\", \"queued\"}], \"next_after\"}`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let paging = PageQuery::parse(query.as_deref())?;
    let (spool, campaigns, name) = (Arc::clone(&state.spool), state.campaigns.clone(), tenant.clone());
    let (mut counts, states) =
        blocking(move || Ok((usage::read_campaigns(&spool, &name)?, campaigns.states(&name)?))).await?;
    for name in states.keys() {
        counts.entry(name.clone()).or_default();
    }
    let (page, next_after) = paging.apply(counts.into_iter().collect(), |(name, _)| name.clone());
    let shown: Vec<Value> = page
        .iter()
        .map(|(name, counts)| view(name, state_of(&states, name), counts))
        .collect();
    Ok(Json(json!({ "tenant": tenant, "campaigns": shown, "next_after": next_after })).into_response())
}

/// A campaign's stored state (active when none).
fn state_of(states: &BTreeMap<String, CampaignState>, name: &str) -> CampaignState {
    states.get(name).copied().unwrap_or_default()
}

/// `GET /v1/tenants/{tenant}/campaigns/{campaign}`: its counts and state; 404 when it has neither mail
/// nor a state.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/campaigns/{campaign}", tag = "campaigns",
    params(("tenant" = String, Path, description = "Tenant name"), ("campaign" = String, Path, description = "Campaign id (X-Campaign-ID)")),
    responses((status = 200, description = "The campaign (fields as in the list)", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, campaign)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    check_campaign(&campaign)?;
    let (counts, current, known) = read(&state, &tenant, &campaign).await?;
    if !known {
        return Err(ApiError::not_found(format!(
            "tenant {tenant:?} has no campaign {campaign:?}"
        )));
    }
    Ok(Json(view(&campaign, current, &counts)).into_response())
}

/// A campaign's counts, state and whether it is known at all.
async fn read(
    state: &ApiState,
    tenant: &str,
    campaign: &str,
) -> Result<(CampaignCounts, CampaignState, bool), ApiError> {
    let (spool, campaigns) = (Arc::clone(&state.spool), state.campaigns.clone());
    let (tenant, campaign) = (tenant.to_string(), campaign.to_string());
    let (counts, states) = blocking(move || {
        Ok((
            usage::read_campaign(&spool, &tenant, &campaign)?,
            campaigns.states(&tenant)?.remove(&campaign),
        ))
    })
    .await?;
    let known = states.is_some() || counts != CampaignCounts::default();
    Ok((counts, states.unwrap_or_default(), known))
}

/// What a POST does.
#[derive(Clone, Copy)]
enum Change {
    /// Queued mail waits.
    Pause,
    /// Sending goes on.
    Resume,
    /// Queued mail is removed; final.
    Cancel,
}

/// Applies a change and answers with the campaign.
async fn change(
    state: Arc<ApiState>,
    principal: Principal,
    tenant: String,
    campaign: String,
    change: Change,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    check_campaign(&campaign)?;
    let campaigns = state.campaigns.clone();
    let (t, c) = (tenant.clone(), campaign.clone());
    let outcome = tokio::task::spawn_blocking(move || match change {
        Change::Pause => campaigns.pause(&t, &c),
        Change::Resume => campaigns.resume(&t, &c),
        Change::Cancel => campaigns.cancel(&t, &c),
    })
    .await
    .map_err(|join| ApiError::internal(join.to_string()))?;
    match outcome {
        Ok(_) => {
            let (counts, current, _) = read(&state, &tenant, &campaign).await?;
            Ok(Json(view(&campaign, current, &counts)).into_response())
        }
        Err(error @ CampaignError::Cancelled(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, error.to_string()))
        }
        Err(CampaignError::Storage(error)) => Err(error.into()),
    }
}

/// `POST /v1/tenants/{tenant}/campaigns/{campaign}/pause`: its queued mail waits (no attempts
/// counted; it still expires at `delivery.max_age`), also mail accepted later; survives restart.
/// 409 for a cancelled campaign.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/campaigns/{campaign}/pause", tag = "campaigns",
    params(("tenant" = String, Path, description = "Tenant name"), ("campaign" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "The campaign, `state` `paused`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn pause(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, campaign)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    change(state, principal, tenant, campaign, Change::Pause).await
}

/// `POST /v1/tenants/{tenant}/campaigns/{campaign}/resume`: sending goes on. 409 for a cancelled one.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/campaigns/{campaign}/resume", tag = "campaigns",
    params(("tenant" = String, Path, description = "Tenant name"), ("campaign" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "The campaign, `state` `active`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, campaign)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    change(state, principal, tenant, campaign, Change::Resume).await
}

/// `POST /v1/tenants/{tenant}/campaigns/{campaign}/cancel`: every queued recipient is removed (one
/// `cancelled` event each, no DSN; those on a connection right now finish their attempt); new mail
/// for it is refused with `550 5.7.1`. Final; survives restart.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/campaigns/{campaign}/cancel", tag = "campaigns",
    params(("tenant" = String, Path, description = "Tenant name"), ("campaign" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "The campaign, `state` `cancelled` (its `queued` count falls as the removals are stored)", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, campaign)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    change(state, principal, tenant, campaign, Change::Cancel).await
}
