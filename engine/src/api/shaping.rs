//! Shaping resources: the ready queues (`GET /v1/shaping`, admin) and the operator's suspensions
//! (`POST /v1/suspensions`, `GET /v1/suspensions`, `DELETE /v1/suspensions/{id}`; tenant keys: their
//! own campaigns only).

use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiState;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use crate::clock::SharedClock;
use crate::delivery::scheduler::Scheduler;
use crate::delivery::suspensions::{SuspensionError, SuspensionRequest, SuspensionView, Suspensions};

/// What the shaping routes read.
pub struct ShapingState {
    /// The ready queues.
    pub scheduler: Arc<Mutex<Scheduler>>,
    /// The operator's suspensions.
    pub suspensions: Suspensions,
    /// Now.
    pub clock: SharedClock,
}

impl ShapingState {
    /// The scheduler, locked (briefly: no await while held).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.scheduler.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `GET /v1/shaping` (admin): every ready queue with mail, connections, a suspension or a reduced rate.
#[utoipa::path(get, path = "/v1/shaping", tag = "shaping",
    responses((status = 200, description = "`{\"queues\": [{\"source\", \"site\", \"provider\", \"domains\", \"queued\", \"connections\", \"configured\", \"effective_rate\", \"suspended_until\", \"last_throttle\"}]}`", body = Object),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn shaping(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let now_us = state.shaping.clock.now_us();
    let view = state.shaping.lock().view(now_us);
    Ok(Json(view).into_response())
}

/// `POST /v1/suspensions` `{"tenant"?, "campaign"?, "domain"?, "provider"?, "source"?, "duration",
/// "reason"?}` → 201 `{"id", "scope", "until", "reason", "created"}`; 400 naming the field. A tenant
/// key may only suspend a campaign of its own (`campaign` required, `tenant` its own or absent;
/// other scopes 403).
#[utoipa::path(post, path = "/v1/suspensions", tag = "shaping", request_body = SuspensionRequest,
    responses((status = 201, description = "`{\"id\", \"scope\", \"until\", \"reason\", \"created\"}`", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_suspension(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut request: SuspensionRequest =
        serde_json::from_slice(&body).map_err(|error| ApiError::from_json(&error))?;
    if let Some(own) = principal.tenant() {
        let others = request.domain.is_some() || request.provider.is_some() || request.source.is_some();
        if others || request.campaign.is_none() {
            return Err(ApiError::forbidden(
                "a tenant API key may only suspend one of its campaigns (tenant, campaign)",
            ));
        }
        match &request.tenant {
            Some(tenant) if tenant != own => {
                return Err(ApiError::not_found(format!("unknown tenant {tenant:?}")));
            }
            _ => request.tenant = Some(own.to_string()),
        }
    }
    let suspensions = state.shaping.suspensions.clone();
    let created = tokio::task::spawn_blocking(move || suspensions.create(request))
        .await
        .map_err(|join| ApiError::internal(join.to_string()))?;
    match created {
        Ok(suspension) => Ok((StatusCode::CREATED, Json(SuspensionView::from(&suspension))).into_response()),
        Err(SuspensionError::Invalid(message)) => Err(invalid(message)),
        Err(error) => Err(ApiError::internal(error.to_string())),
    }
}

/// A 400 from the suspension checks, whose messages start with the field name (`duration: ...`).
fn invalid(message: String) -> ApiError {
    let field = message
        .split_once(':')
        .map(|(field, _)| field)
        .filter(|field| !field.contains(' '))
        .map(|field| format!("body.{field}"));
    ApiError {
        field,
        ..ApiError::bad_request(message)
    }
}

/// `GET /v1/suspensions` → `{"suspensions": [...]}`, oldest first (a tenant key: its own).
#[utoipa::path(get, path = "/v1/suspensions", tag = "shaping",
    responses((status = 200, description = "`{\"suspensions\": [{\"id\", \"scope\", \"until\", \"reason\", \"created\"}]}`", body = Object)),
    security(("bearer" = [])))]
pub async fn list_suspensions(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let list: Vec<SuspensionView> = state
        .shaping
        .suspensions
        .list()
        .iter()
        .filter(|s| principal.tenant().is_none() || s.scope.tenant.as_deref() == principal.tenant())
        .map(SuspensionView::from)
        .collect();
    Json(json!({ "suspensions": list })).into_response()
}

/// `DELETE /v1/suspensions/{id}` → 204; 404 when there is no such suspension (or it is not the
/// tenant key's own).
#[utoipa::path(delete, path = "/v1/suspensions/{id}", tag = "shaping",
    params(("id" = String, Path, description = "Suspension id")),
    responses((status = 204, description = "Lifted"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_suspension(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("no suspension {id}"));
    if let Some(own) = principal.tenant() {
        let list = state.shaping.suspensions.list();
        let mine = list
            .iter()
            .any(|s| s.id == id && s.scope.tenant.as_deref() == Some(own));
        if !mine {
            return Err(not_found());
        }
    }
    let suspensions = state.shaping.suspensions.clone();
    let target = id.clone();
    match tokio::task::spawn_blocking(move || suspensions.delete(&target)).await {
        Ok(Ok(true)) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(Ok(false)) => Err(not_found()),
        Ok(Err(error)) => Err(ApiError::from(error)),
        Err(join) => Err(ApiError::internal(join.to_string())),
    }
}

/// Brings the shaping gauges of the metrics up to date (at scrape time).
pub fn refresh_metrics(state: &ApiState) {
    let now_us = state.shaping.clock.now_us();
    let (totals, suspensions) = {
        let scheduler = state.shaping.lock();
        (
            scheduler.totals(now_us),
            scheduler.operator_suspension_count(now_us),
        )
    };
    state.metrics.set_shaping(&totals, suspensions);
}
