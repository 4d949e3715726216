//! Shaping resources: the ready queues (`GET /v1/shaping`) and the operator's suspensions
//! (`POST /v1/suspensions`, `GET /v1/suspensions`, `DELETE /v1/suspensions/{id}`).

use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiState, error_response};
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

/// `GET /v1/shaping`: every ready queue with mail, connections, a suspension or a reduced rate.
pub async fn shaping(State(state): State<Arc<ApiState>>) -> Response {
    let now_us = state.shaping.clock.now_us();
    let view = state.shaping.lock().view(now_us);
    Json(view).into_response()
}

/// `POST /v1/suspensions` `{"tenant"?, "campaign"?, "domain"?, "provider"?, "source"?, "duration",
/// "reason"?}` → 201 `{"id", "scope", "until", "reason", "created"}`; 400 naming the field.
pub async fn create_suspension(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    let request: SuspensionRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return error_response(StatusCode::BAD_REQUEST, format!("body: {error}")),
    };
    let suspensions = state.shaping.suspensions.clone();
    let created = tokio::task::spawn_blocking(move || suspensions.create(request)).await;
    match created {
        Ok(Ok(suspension)) => (StatusCode::CREATED, Json(SuspensionView::from(&suspension))).into_response(),
        Ok(Err(SuspensionError::Invalid(message))) => error_response(StatusCode::BAD_REQUEST, message),
        Ok(Err(error)) => error_response(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        Err(join) => error_response(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
    }
}

/// `GET /v1/suspensions` → `{"suspensions": [...]}`, oldest first.
pub async fn list_suspensions(State(state): State<Arc<ApiState>>) -> Response {
    let list: Vec<SuspensionView> = state
        .shaping
        .suspensions
        .list()
        .iter()
        .map(SuspensionView::from)
        .collect();
    Json(json!({ "suspensions": list })).into_response()
}

/// `DELETE /v1/suspensions/{id}` → 204; 404 when there is no such suspension.
pub async fn delete_suspension(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let suspensions = state.shaping.suspensions.clone();
    let target = id.clone();
    match tokio::task::spawn_blocking(move || suspensions.delete(&target)).await {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => error_response(StatusCode::NOT_FOUND, format!("no suspension {id}")),
        Ok(Err(error)) => error_response(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        Err(join) => error_response(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
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
