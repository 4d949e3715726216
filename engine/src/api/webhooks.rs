//! A tenant's webhook endpoints: `POST /v1/tenants/{tenant}/webhooks` `{"url", "events"}` → 201 with
//! the signing secret (shown once), `GET` (with `pending`, `dropped`, `last_success`, `last_error`),
//! `DELETE …/{id}`. See `crate::webhooks`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::paging::PageQuery;
use crate::events::EventKind;
use crate::webhooks::Webhook;
use crate::webhooks::target::Target;

/// Event types an endpoint may ask for (besides `*`).
const EVENT_TYPES: [EventKind; 9] = [
    EventKind::Reception,
    EventKind::Delivery,
    EventKind::TransientFailure,
    EventKind::Bounce,
    EventKind::Expiration,
    EventKind::Suppressed,
    EventKind::Unsubscribe,
    EventKind::SuppressionAdded,
    EventKind::Cancelled,
];

/// The body of a new endpoint.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `https://…` (or `http://…`); its host must not resolve to a loopback, private, link-local or
    /// metadata address unless `[webhooks] allow_private_targets`.
    url: String,
    /// Event types (`reception`, `delivery`, `transient_failure`, `bounce`, `expiration`,
    /// `suppressed`, `unsubscribe`, `suppression_added`, `cancelled`) or `["*"]`.
    events: Vec<String>,
}

/// Random hex of `bytes` bytes.
fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// `POST /v1/tenants/{tenant}/webhooks` → 201 `{"id", "url", "events", "created", "secret"}`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/webhooks", tag = "webhooks", request_body = NewWebhook,
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 201, description = "`{\"id\", \"url\", \"events\", \"created\", \"secret\"}` (the secret is shown once)", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let new: NewWebhook = serde_json::from_slice(&body).map_err(|e| ApiError::from_json(&e))?;
    let target = Target::parse(&new.url).map_err(|e| ApiError::field("url", e))?;
    let allow_private = state.config.load().webhooks.allow_private_targets;
    target
        .addresses(allow_private)
        .await
        .map_err(|e| ApiError::field("url", e))?;
    let known = |e: &String| e == "*" || EVENT_TYPES.iter().any(|k| k.as_str() == e);
    if new.events.is_empty() || !new.events.iter().all(known) {
        let names: Vec<&str> = EVENT_TYPES.iter().map(|k| k.as_str()).collect();
        return Err(ApiError::field(
            "events",
            format!("give [\"*\"] or event types among {}", names.join(", ")),
        ));
    }
    let hook = Webhook {
        id: format!("wh{}", random_hex(8)),
        tenant,
        url: new.url,
        events: new.events,
        secret: format!("whsec_{}", random_hex(24)),
        created: crate::timefmt::rfc3339_millis(state.shaping.clock.now_ms()),
    };
    let webhooks = Arc::clone(&state.webhooks);
    let stored = hook.clone();
    super::off_runtime(move || webhooks.add(stored)).await?;
    let answer = json!({"id": hook.id, "url": hook.url, "events": hook.events, "created": hook.created,
        "secret": hook.secret});
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /v1/tenants/{tenant}/webhooks` → `{"webhooks": [{"id", "url", "events", "created", "pending",
/// "dropped", "last_success", "last_error"}], "next_after"}`, by id, paged.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/webhooks", tag = "webhooks",
    params(("tenant" = String, Path, description = "Tenant name"),
        ("after" = Option<String>, Query, description = "Start after this id"),
        ("limit" = Option<usize>, Query, description = "Items per page, 1-1000 (default 100)")),
    responses((status = 200, description = "The endpoints (never their secrets)", body = Object),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let paging = PageQuery::parse(query.as_deref())?;
    let views: Vec<serde_json::Value> = state.webhooks.list(&tenant).iter().map(|e| e.view()).collect();
    let (page, next_after) = paging.apply(views, |v| v["id"].as_str().unwrap_or_default().to_string());
    Ok(Json(json!({"webhooks": page, "next_after": next_after})).into_response())
}

/// `DELETE /v1/tenants/{tenant}/webhooks/{id}` → 204 (its waiting events are dropped); 404.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/webhooks/{id}", tag = "webhooks",
    params(("tenant" = String, Path, description = "Tenant name"), ("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let webhooks = Arc::clone(&state.webhooks);
    let (t, i) = (tenant.clone(), id.clone());
    let deleted = super::off_runtime(move || webhooks.delete(&t, &i)).await?;
    if !deleted {
        return Err(ApiError::not_found(format!(
            "tenant {tenant:?} has no webhook {id:?}"
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
