//! The HTTP listener: health and Prometheus metrics (the control API grows here).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use penguin_queue::Spool;
use serde_json::json;

use crate::metrics::Metrics;

/// What the handlers read.
pub struct ApiState {
    /// Rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Queue depth for `/healthz` and the queue gauge.
    pub spool: Arc<Spool>,
    /// Messages being delivered now (out of the index, still queued).
    pub in_flight: Arc<AtomicUsize>,
}

impl ApiState {
    /// Messages in the queue: scheduled in the index plus those being delivered.
    fn queued_messages(&self) -> usize {
        self.spool.queued_messages() + self.in_flight.load(Ordering::Relaxed)
    }
}

/// The routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// `GET /healthz`: 200 with the queue depth while the server runs.
async fn healthz(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    Json(json!({ "status": "ok", "queued_messages": state.queued_messages() }))
}

/// `GET /metrics`: OpenMetrics text.
async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    state
        .metrics
        .queue_messages
        .set(state.spool.queued_messages() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
