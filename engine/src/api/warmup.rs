//! IP warm-up (admin only): `GET /v1/warmup` (every warming source × provider), `PUT
//! /v1/sources/{source}/warmup` `{"plan", "start"}` (start or restart a warm-up), `DELETE
//! /v1/sources/{source}/warmup` (declare the source warm), `POST /v1/sources/{source}/warmup/hold` and
//! `/resume` (freeze and unfreeze its steps). See `crate::warmup`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ApiState, off_runtime};
use crate::warmup::{WarmupError, WarmupRow};

impl From<WarmupError> for ApiError {
    fn from(error: WarmupError) -> ApiError {
        match &error {
            WarmupError::UnknownSource(_) | WarmupError::NotWarming(_) => {
                ApiError::not_found(error.to_string())
            }
            WarmupError::UnknownPlan(_) => ApiError::field("plan", error.to_string()),
            WarmupError::BadStart(_) => ApiError::field("start", error.to_string()),
            WarmupError::Storage(storage) => ApiError::internal(storage.to_string()),
        }
    }
}

/// `PUT /v1/sources/{source}/warmup`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartWarmup {
    /// A `[[warmup.plan]]` name.
    pub plan: String,
    /// Its first day, `YYYY-MM-DD` in the plan's time zone.
    pub start: String,
}

/// The rows of one source.
fn rows_of(state: &ApiState, source: &str) -> Vec<WarmupRow> {
    let mut rows = state.warmup.status(Some(&state.reputation));
    rows.retain(|row| row.source == source);
    rows
}

/// `GET /v1/warmup` (admin): every warming (or declared warm) source × provider.
#[utoipa::path(get, path = "/v1/warmup", tag = "warmup",
    responses((status = 200, body = [WarmupRow]), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn status(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let rows = off_runtime(move || Ok::<_, ApiError>(state.warmup.status(Some(&state.reputation)))).await?;
    Ok(Json(rows).into_response())
}

/// `PUT /v1/sources/{source}/warmup` `{"plan", "start"}` (admin): the source warms on that plan from
/// that day (step 1 for every provider; wins over the config) → 200 its rows; 400 naming `plan` or
/// `start`; 404 for an unknown source.
#[utoipa::path(put, path = "/v1/sources/{source}/warmup", tag = "warmup", request_body = StartWarmup,
    params(("source" = String, Path, description = "Source name")),
    responses((status = 200, body = [WarmupRow]), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(source): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let request: StartWarmup = serde_json::from_slice(&body).map_err(|error| ApiError::from_json(&error))?;
    let rows = off_runtime(move || {
        state.warmup.start(&source, &request.plan, &request.start)?;
        Ok::<_, ApiError>(rows_of(&state, &source))
    })
    .await?;
    Ok(Json(rows).into_response())
}

/// `DELETE /v1/sources/{source}/warmup` (admin): the source is warm (no caps) → 204; 404 when it
/// is not warming.
#[utoipa::path(delete, path = "/v1/sources/{source}/warmup", tag = "warmup",
    params(("source" = String, Path, description = "Source name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn declare_warm(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(source): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    off_runtime(move || state.warmup.declare_warm(&source)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/sources/{source}/warmup/hold` (admin): its steps neither advance nor go back (the
/// current caps still apply) → 200 its rows.
#[utoipa::path(post, path = "/v1/sources/{source}/warmup/hold", tag = "warmup",
    params(("source" = String, Path, description = "Source name")),
    responses((status = 200, body = [WarmupRow]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn hold(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(source): Path<String>,
) -> Result<Response, ApiError> {
    set_held(state, principal, source, true).await
}

/// `POST /v1/sources/{source}/warmup/resume` (admin): lifts a hold (the days under it are not
/// judged) → 200 its rows.
#[utoipa::path(post, path = "/v1/sources/{source}/warmup/resume", tag = "warmup",
    params(("source" = String, Path, description = "Source name")),
    responses((status = 200, body = [WarmupRow]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(source): Path<String>,
) -> Result<Response, ApiError> {
    set_held(state, principal, source, false).await
}

async fn set_held(
    state: Arc<ApiState>,
    principal: Principal,
    source: String,
    held: bool,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let rows = off_runtime(move || {
        state.warmup.set_held(&source, held)?;
        Ok::<_, ApiError>(rows_of(&state, &source))
    })
    .await?;
    Ok(Json(rows).into_response())
}
