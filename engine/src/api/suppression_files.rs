//! A tenant's suppression list as CSV: `POST /v1/tenants/{tenant}/suppressions/import` (lines
//! `address,reason`; a first line `address,reason` is a header; the reason may be empty = `manual`)
//! answers `{"added", "updated", "unchanged", "invalid": [{"line", "error"}]}`; `GET
//! …/suppressions/export` answers `text/csv` with `address,reason,added_at,campaign`. Parsed with the
//! `csv` crate (quoted fields, CRLF).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use penguin_queue::{SuppressionEntry, SuppressionReason};
use serde_json::json;

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ApiState, blocking};
use crate::events::{Event, EventKind};
use crate::timefmt;

/// Most lines one import takes (a larger file is refused: split it).
const MAX_LINES: usize = 100_000;
/// Entries read from the spool per step of an export.
const EXPORT_PAGE: usize = 1000;

/// What an import did.
#[derive(Debug, Default)]
struct Imported {
    /// New entries.
    added: Vec<SuppressionEntry>,
    /// Entries whose reason changed.
    updated: usize,
    /// Entries already there with the same reason.
    unchanged: usize,
    /// (line number, what is wrong).
    invalid: Vec<(u64, String)>,
}

/// `POST /v1/tenants/{tenant}/suppressions/import` (see the module documentation).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/suppressions/import", tag = "suppressions",
    params(("tenant" = String, Path, description = "Tenant name")),
    request_body(content = String, content_type = "text/csv", description = "Lines `address,reason`"),
    responses((status = 200, description = "`{\"added\", \"updated\", \"unchanged\", \"invalid\": [{\"line\", \"error\"}]}`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let now = state.shaping.clock.now_ms();
    let spool = Arc::clone(&state.spool);
    let name = tenant.clone();
    let outcome = blocking(move || Ok(import_lines(&spool, &name, &body, now))).await?;
    let imported = outcome?;
    for entry in &imported.added {
        state.events.emit(Event::about_address(
            EventKind::SuppressionAdded,
            now,
            &tenant,
            "",
            &entry.address,
            entry.reason.as_str(),
        ));
    }
    let invalid: Vec<serde_json::Value> = imported
        .invalid
        .iter()
        .map(|(line, error)| json!({"line": line, "error": error}))
        .collect();
    Ok(Json(json!({
        "added": imported.added.len(),
        "updated": imported.updated,
        "unchanged": imported.unchanged,
        "invalid": invalid,
    }))
    .into_response())
}

/// Reads the CSV and applies each valid line.
fn import_lines(
    spool: &penguin_queue::Spool,
    tenant: &str,
    body: &[u8],
    now: u64,
) -> Result<Imported, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let mut imported = Imported::default();
    for (index, record) in reader.records().enumerate() {
        if index >= MAX_LINES {
            return Err(ApiError::field(
                "body",
                format!("more than {MAX_LINES} lines: split the file"),
            ));
        }
        let line = index as u64 + 1;
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                imported.invalid.push((line, format!("not CSV: {error}")));
                continue;
            }
        };
        let address = record.get(0).unwrap_or("").to_ascii_lowercase();
        let reason = record.get(1).unwrap_or("");
        if index == 0 && address == "address" {
            continue;
        }
        let entry = match parse_line(&address, reason, record.len()) {
            Ok(reason) => SuppressionEntry {
                address,
                reason,
                added_at_ms: now,
                campaign: None,
            },
            Err(error) => {
                imported.invalid.push((line, error));
                continue;
            }
        };
        apply(spool, tenant, entry, &mut imported)?;
    }
    Ok(imported)
}

/// The reason of one line, or what is wrong with it.
fn parse_line(address: &str, reason: &str, fields: usize) -> Result<SuppressionReason, String> {
    if fields > 2 {
        return Err("expected address,reason".to_string());
    }
    super::suppressions::check_address(address).map_err(|error| error.message)?;
    if reason.is_empty() {
        return Ok(SuppressionReason::Manual);
    }
    reason.parse().map_err(|error| format!("reason: {error}"))
}

/// Adds `entry`, or changes the reason of the entry already there.
fn apply(
    spool: &penguin_queue::Spool,
    tenant: &str,
    entry: SuppressionEntry,
    imported: &mut Imported,
) -> Result<(), ApiError> {
    match spool.suppression(tenant, &entry.address)? {
        Some(existing) if existing.reason == entry.reason => imported.unchanged += 1,
        Some(existing) => {
            spool.unsuppress_at(tenant, &existing.address, entry.added_at_ms)?;
            spool.suppress(tenant, entry)?;
            imported.updated += 1;
        }
        None => {
            if spool.suppress(tenant, entry.clone())? {
                imported.added.push(entry);
            } else {
                imported.unchanged += 1;
            }
        }
    }
    Ok(())
}

/// `GET /v1/tenants/{tenant}/suppressions/export` → `text/csv`.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/suppressions/export", tag = "suppressions",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, description = "CSV: `address,reason,added_at,campaign`", content_type = "text/csv", body = String),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let spool = Arc::clone(&state.spool);
    let csv = blocking(move || {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let _ = writer.write_record(["address", "reason", "added_at", "campaign"]);
        let mut after: Option<String> = None;
        loop {
            let page = spool.suppressions(&tenant, after.as_deref(), EXPORT_PAGE)?;
            for entry in &page {
                let added_at = timefmt::rfc3339_millis(entry.added_at_ms);
                let campaign = entry.campaign.as_deref().unwrap_or("");
                let _ =
                    writer.write_record([entry.address.as_str(), entry.reason.as_str(), &added_at, campaign]);
            }
            match page.last() {
                Some(last) if page.len() == EXPORT_PAGE => after = Some(last.address.clone()),
                _ => break,
            }
        }
        Ok(writer.into_inner().unwrap_or_default())
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
}
