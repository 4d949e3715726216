//! A tenant's suppression list: `GET /v1/tenants/{tenant}/suppressions?after=ADDR&limit=N`, and
//! `GET`/`PUT`/`DELETE /v1/tenants/{tenant}/suppressions/{address}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use penguin_queue::{SuppressionEntry, SuppressionReason};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::paging::PageQuery;
use super::{ApiState, blocking};
use crate::events::{Event, EventKind};
use crate::timefmt;

/// Longest address accepted (RFC 5321: 64 + 1 + 255).
const MAX_ADDRESS: usize = 320;
/// Longest campaign name accepted in a PUT body.
const MAX_CAMPAIGN: usize = 255;

/// The 404 of an address that is not on a list.
fn not_listed(tenant: &str, address: &str) -> ApiError {
    ApiError::not_found(format!(
        "{address:?} is not on the suppression list of {tenant:?}"
    ))
}

/// 400 unless `address` looks like an email address: `local@domain`, both parts non-empty, at most
/// 320 octets, no whitespace or control characters.
pub(super) fn check_address(address: &str) -> Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::field("address", format!("address {address:?}: {why}")));
    if address.len() > MAX_ADDRESS {
        return bad(&format!("longer than {MAX_ADDRESS} octets"));
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace or control characters");
    }
    match address.rsplit_once('@') {
        None => bad("no @"),
        Some((local, domain)) if local.is_empty() || domain.is_empty() => bad("empty local part or domain"),
        Some(_) => Ok(()),
    }
}

/// The JSON form of an entry.
fn entry_json(entry: &SuppressionEntry) -> Value {
    json!({
        "address": entry.address,
        "reason": entry.reason.as_str(),
        "added_at": timefmt::rfc3339_millis(entry.added_at_ms),
        "campaign": entry.campaign,
    })
}

/// `GET /v1/tenants/{tenant}/suppressions?after=ADDR&limit=N`: a page of the list in address order;
/// `next_after` is the `after` of the next page, null on the last.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/suppressions", tag = "suppressions",
    params(("tenant" = String, Path, description = "Tenant name"),
        ("after" = Option<String>, Query, description = "Start after this address (`next_after` of the previous page)"),
        ("limit" = Option<usize>, Query, description = "Entries per page, 1-1000 (default 100)")),
    responses((status = 200, description = "`{\"tenant\", \"suppressions\": [{\"address\", \"reason\", \"added_at\", \"campaign\"}], \"next_after\"}`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_suppressions(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let PageQuery { after, limit } = PageQuery::parse(query.as_deref())?;
    let spool = Arc::clone(&state.spool);
    let name = tenant.clone();
    // One more than asked: tells whether there is a next page.
    let mut entries = blocking(move || spool.suppressions(&name, after.as_deref(), limit + 1)).await?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next_after = more.then(|| entries.last().map(|e| e.address.clone())).flatten();
    Ok(Json(json!({
        "tenant": tenant,
        "suppressions": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "next_after": next_after,
    }))
    .into_response())
}

/// `GET /v1/tenants/{tenant}/suppressions/{address}`: the entry, or 404.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/suppressions/{address}", tag = "suppressions",
    params(("tenant" = String, Path, description = "Tenant name"), ("address" = String, Path, description = "Email address")),
    responses((status = 200, description = "The entry", body = Object), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_suppression(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, address)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    check_address(&address)?;
    match state.spool.suppression(&tenant, &address)? {
        Some(entry) => Ok(Json(entry_json(&entry)).into_response()),
        None => Err(not_listed(&tenant, &address)),
    }
}

/// The optional JSON body of a PUT.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PutBody {
    /// `manual` (default), `complaint`, `hard_bounce` or `unsubscribe`.
    reason: Option<String>,
    /// The campaign that led to it.
    campaign: Option<String>,
}

/// Reads a PUT body: empty means the defaults.
fn parse_put_body(body: &[u8]) -> Result<(SuppressionReason, Option<String>), ApiError> {
    let parsed: PutBody = if body.iter().all(u8::is_ascii_whitespace) {
        PutBody::default()
    } else {
        serde_json::from_slice(body).map_err(|error| ApiError::from_json(&error))?
    };
    let reason = match parsed.reason.as_deref() {
        None => SuppressionReason::Manual,
        Some(text) => text
            .parse()
            .map_err(|error| ApiError::field("body.reason", format!("reason: {error}")))?,
    };
    let campaign = parsed.campaign.filter(|c| !c.is_empty());
    if let Some(campaign) = &campaign
        && (campaign.len() > MAX_CAMPAIGN || campaign.chars().any(char::is_control))
    {
        return Err(ApiError::field(
            "body.campaign",
            format!("campaign: at most {MAX_CAMPAIGN} octets without control characters"),
        ));
    }
    Ok((reason, campaign))
}

/// `PUT /v1/tenants/{tenant}/suppressions/{address}` with an optional body `{"reason", "campaign"}`:
/// 201 with the new entry, or 200 with the entry already there (left unchanged). A new entry emits a
/// `suppression_added` event.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/suppressions/{address}", tag = "suppressions",
    params(("tenant" = String, Path, description = "Tenant name"), ("address" = String, Path, description = "Email address")),
    request_body(content = Option<PutBody>, description = "Optional; reason defaults to manual"),
    responses((status = 201, description = "Added", body = Object), (status = 200, description = "Already listed (unchanged)", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_suppression(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, address)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    check_address(&address)?;
    let (reason, campaign) = parse_put_body(&body)?;
    let now = state.shaping.clock.now_ms();
    let entry = SuppressionEntry {
        address: address.clone(),
        reason,
        added_at_ms: now,
        campaign,
    };
    let spool = Arc::clone(&state.spool);
    let name = tenant.clone();
    let (added, stored) = blocking(move || {
        let added = spool.suppress(&name, entry)?;
        Ok((added, spool.suppression(&name, &address)?))
    })
    .await?;
    // None: deleted by a concurrent DELETE between the two calls.
    let entry = stored.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "address: removed by a concurrent request, retry",
        )
    })?;
    if added {
        state.events.emit(Event::about_address(
            EventKind::SuppressionAdded,
            now,
            &tenant,
            entry.campaign.as_deref().unwrap_or(""),
            &entry.address,
            entry.reason.as_str(),
        ));
    }
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry_json(&entry))).into_response())
}

/// `DELETE /v1/tenants/{tenant}/suppressions/{address}`: 204, or 404 when it was not on the list.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/suppressions/{address}", tag = "suppressions",
    params(("tenant" = String, Path, description = "Tenant name"), ("address" = String, Path, description = "Email address")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_suppression(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, address)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    check_address(&address)?;
    let spool = Arc::clone(&state.spool);
    let (name, target) = (tenant.clone(), address.clone());
    let now = state.shaping.clock.now_ms();
    if blocking(move || spool.unsuppress_at(&name, &target, now)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_listed(&tenant, &address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_bodies() {
        let ok = |body: &str| parse_put_body(body.as_bytes()).ok();
        assert_eq!(ok(""), Some((SuppressionReason::Manual, None)));
        assert_eq!(ok("{}"), Some((SuppressionReason::Manual, None)));
        assert_eq!(
            ok(r#"{"reason":"complaint","campaign":"spring"}"#),
            Some((SuppressionReason::Complaint, Some("spring".to_string())))
        );
        assert_eq!(ok(r#"{"campaign":""}"#), Some((SuppressionReason::Manual, None)));
        for bad in [
            "{",
            "[]",
            r#"{"reason":"bogus"}"#,
            r#"{"reasn":"manual"}"#,
            r#"{"reason":5}"#,
        ] {
            assert!(ok(bad).is_none(), "{bad}");
        }
        let long = format!(r#"{{"campaign":"{}"}}"#, "c".repeat(MAX_CAMPAIGN + 1));
        assert!(ok(&long).is_none());
    }
}
