//! `GET /healthz` (both listeners) and `GET /metrics` (API listener): open unless
//! `api.metrics_require_token`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use super::{ApiState, shaping};

/// `GET /healthz`: 200 with the queue depth while the server runs.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\", \"queued_messages\"}`", body = Object)))]
pub async fn healthz(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    Json(json!({ "status": "ok", "queued_messages": state.queued_messages() }))
}

/// `GET /metrics`: OpenMetrics text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    state
        .metrics
        .queue_messages
        .set(state.spool.queued_messages() as i64);
    shaping::refresh_metrics(&state);
    let rows = state.warmup.status(None);
    state.metrics.set_warmup(&rows);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
