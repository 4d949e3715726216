//! The queue: `GET /v1/queue/summary`, `GET /v1/messages/{id}` (envelope, recipient states, attempt
//! history), `POST /v1/messages/{id}/retry`, `DELETE /v1/messages/{id}`. A tenant key sees only its
//! own tenant's messages (another's answer 404, as if absent).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use penguin_queue::{Envelope, MessageId, RecipientState};
use serde_json::{Value, json};

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ApiState, blocking, form_pairs};
use crate::timefmt;

/// `GET /v1/queue/summary`: queued recipients by tenant, campaign (`tenant/campaign`) and recipient
/// domain, and the messages that have any. Admins see every tenant (or `?tenant=NAME`); a tenant key
/// sees its own.
#[utoipa::path(get, path = "/v1/queue/summary", tag = "queue",
    params(("tenant" = Option<String>, Query, description = "Only this tenant (a tenant key always sees only its own)")),
    responses((status = 200, description = "`{\"messages\", \"recipients\", \"by_tenant\", \"by_campaign\", \"by_domain\"}`", body = Object),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn summary(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let asked = form_pairs(query.as_deref().unwrap_or(""))
        .into_iter()
        .find(|(key, _)| key == "tenant")
        .map(|(_, value)| value);
    let tenant = match (principal.tenant(), asked) {
        (Some(own), _) => Some(own.to_string()),
        (None, Some(asked)) => {
            principal.check_tenant(&state, &asked)?;
            Some(asked)
        }
        (None, None) => None,
    };
    let spool = Arc::clone(&state.spool);
    let summary = blocking(move || spool.summary(tenant.as_deref())).await?;
    Ok(Json(json!({
        "messages": summary.messages,
        "recipients": summary.recipients,
        "by_tenant": summary.by_tenant,
        "by_campaign": summary.by_campaign,
        "by_domain": summary.by_domain,
    }))
    .into_response())
}

/// The message `id` if it exists and the caller may see it; the same 404 otherwise.
async fn visible(
    state: &ApiState,
    principal: &Principal,
    id: &str,
) -> Result<(MessageId, Envelope), ApiError> {
    let not_found = || ApiError::not_found(format!("no queued message {id:?}"));
    let Ok(parsed) = id.parse::<MessageId>() else {
        return Err(ApiError::field(
            "id",
            format!("id {id:?}: expected a queue id of 24 hexadecimal digits"),
        ));
    };
    let spool = Arc::clone(&state.spool);
    let envelope = blocking(move || spool.read_envelope(parsed)).await?;
    match envelope {
        Some(envelope) if principal.may_see(&envelope.tenant) => Ok((parsed, envelope)),
        _ => Err(not_found()),
    }
}

/// The name of a recipient state.
fn state_name(state: RecipientState) -> Value {
    serde_json::to_value(state).unwrap_or(Value::Null)
}

/// `GET /v1/messages/{id}`: a queued message: envelope, each recipient's state and attempts, and the
/// attempt history with the remote replies (oldest first). Finished messages leave the queue (their
/// story is in the event log and webhooks): 404.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "queue",
    params(("id" = String, Path, description = "Queue id (24 hex digits, as in `250 queued as`)")),
    responses((status = 200, description = "`{\"id\", \"tenant\", \"campaign\", \"pool\", \"sender\", \"size\", \"received_at\", \"next_attempt_at\", \"scheduled\", \"recipients\": [{\"address\", \"state\", \"attempts\"}], \"history\": [{\"at\", \"type\", \"recipient\", \"attempt\", \"response\", \"class\", \"mx\", \"source_ip\", \"source\", \"site\", \"provider\", \"pool\"}]}`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, envelope) = visible(&state, &principal, &id).await?;
    let spool = Arc::clone(&state.spool);
    let history = blocking(move || spool.history(id)).await?;
    let history: Vec<Value> = history
        .iter()
        .filter_map(|record| serde_json::from_slice(record).ok())
        .collect();
    let scheduled = state.spool.index().contains(id);
    let recipients: Vec<Value> = envelope
        .recipients
        .iter()
        .map(|r| json!({ "address": r.address, "state": state_name(r.state), "attempts": r.attempts }))
        .collect();
    Ok(Json(json!({
        "id": id.to_string(),
        "tenant": envelope.tenant,
        "campaign": envelope.campaign,
        "pool": (!envelope.pool.is_empty()).then_some(&envelope.pool),
        "sender": envelope.sender,
        "size": envelope.size,
        "received_at": timefmt::rfc3339_millis(envelope.received_at_ms),
        "next_attempt_at": timefmt::rfc3339_millis(envelope.next_attempt_at_ms),
        "scheduled": scheduled,
        "recipients": recipients,
        "history": history,
    }))
    .into_response())
}

/// `POST /v1/messages/{id}/retry`: the message is due now (its queued recipients are attempted as
/// soon as their ready queues allow). 409 while it is being delivered.
#[utoipa::path(post, path = "/v1/messages/{id}/retry", tag = "queue",
    params(("id" = String, Path, description = "Queue id")),
    responses((status = 202, description = "`{\"id\", \"status\": \"due_now\"}`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, _) = visible(&state, &principal, &id).await?;
    if !state.campaigns.hasten(id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("message {id} is being delivered right now; its next attempt is set when this one ends"),
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id.to_string(), "status": "due_now" })),
    )
        .into_response())
}

/// `DELETE /v1/messages/{id}`: its queued recipients are removed (one `cancelled` event each,
/// reason `message_deleted`, no DSN); a recipient on a connection right now finishes its attempt.
#[utoipa::path(delete, path = "/v1/messages/{id}", tag = "queue",
    params(("id" = String, Path, description = "Queue id")),
    responses((status = 202, description = "`{\"id\", \"cancelling\": N}`: N queued recipients are being removed", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, envelope) = visible(&state, &principal, &id).await?;
    state.campaigns.delete_message(id);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id.to_string(), "cancelling": envelope.queued_count() })),
    )
        .into_response())
}
