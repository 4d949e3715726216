//! `GET /v1/tenants/{tenant}/usage?from=YYYY-MM-DD&to=YYYY-MM-DD`: the tenant's counts per UTC day
//! (the billing hook; see `crate::usage`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use serde_json::{Value, json};

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ApiState, blocking, form_pairs};
use crate::usage::{self, MAX_USAGE_DAYS};

/// A `YYYY-MM-DD` query value.
fn parse_date(field: &str, value: &str) -> Result<Date, ApiError> {
    let well_formed = value.len() == 10 && value.as_bytes()[4] == b'-' && value.as_bytes()[7] == b'-';
    match value.parse::<Date>() {
        Ok(date) if well_formed => Ok(date),
        _ => Err(ApiError::field(
            field,
            format!("{field} {value:?}: expected a date YYYY-MM-DD"),
        )),
    }
}

/// `from` and `to` (default: today, UTC, for both; `from` alone runs to today).
fn date_range(query: Option<&str>, today: Date) -> Result<(Date, Date), ApiError> {
    let (mut from, mut to) = (None, None);
    for (key, value) in form_pairs(query.unwrap_or("")) {
        match key.as_str() {
            "from" => from = Some(parse_date("from", &value)?),
            "to" => to = Some(parse_date("to", &value)?),
            _ => {}
        }
    }
    let to = to.unwrap_or(today);
    let from = from.unwrap_or(to);
    if from > to {
        return Err(ApiError::field("from", format!("from {from} is after to {to}")));
    }
    let days = from.until(to).map(|span| span.get_days()).unwrap_or(i32::MAX);
    if i64::from(days) >= MAX_USAGE_DAYS {
        return Err(ApiError::field(
            "to",
            format!("from {from} to {to} is more than {MAX_USAGE_DAYS} days; ask in parts"),
        ));
    }
    Ok((from, to))
}

/// Adds the other nodes' counts to `days` (this node's, from its spool) when `[cluster]` is set;
/// the `fleet` part of the answer: whether Redis answered, the nodes counted (this one first).
async fn add_fleet(
    state: &ApiState,
    tenant: &str,
    (from, to): (Date, Date),
    days: &mut [usage::UsageDay],
) -> Option<Value> {
    let cluster = state.cluster.as_ref()?;
    let others = cluster.others_usage(tenant, from, to).await;
    for day in days.iter_mut() {
        let counted = day
            .date
            .parse::<Date>()
            .ok()
            .and_then(|date| others.days.get(&date));
        if let Some(totals) = counted {
            day.totals.add(totals);
        }
    }
    let nodes: Vec<&str> = std::iter::once(cluster.node())
        .chain(others.nodes.iter().map(String::as_str))
        .collect();
    Some(json!({"complete": others.complete, "nodes": nodes}))
}

/// `GET /v1/tenants/{tenant}/usage`: one entry per UTC day from `from` to `to` (inclusive), days
/// without activity as zeros, and the totals. With `[cluster]` the counts are the fleet's (every
/// node's, summed) and `fleet` says whether Redis answered (`complete`; else the other nodes' last
/// known counts) and which nodes are counted.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/usage", tag = "usage",
    params(("tenant" = String, Path, description = "Tenant name"),
        ("from" = Option<String>, Query, description = "First UTC day, YYYY-MM-DD (default: `to`)"),
        ("to" = Option<String>, Query, description = "Last UTC day, YYYY-MM-DD (default: today); at most 366 days")),
    responses((status = 200, description = "`{\"tenant\", \"from\", \"to\", \"days\": [{\"date\", \"accepted\", \"delivered\", \"deferred\", \"bounced\", \"expired\", \"suppressed\", \"unsubscribed\", \"cancelled\"}], \"total\"}`; with `[cluster]` the fleet's counts and `\"fleet\": {\"complete\", \"nodes\"}`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let today = usage::utc_date(state.shaping.clock.now_ms());
    let (from, to) = date_range(query.as_deref(), today)?;
    let spool = Arc::clone(&state.spool);
    let name = tenant.clone();
    let mut days = blocking(move || usage::read_usage(&spool, &name, from, to)).await?;
    let fleet = add_fleet(&state, &tenant, (from, to), &mut days).await;
    let mut total = usage::Totals::default();
    for day in &days {
        total.add(&day.totals);
    }
    let mut body = json!({
        "tenant": tenant,
        "from": from.to_string(),
        "to": to.to_string(),
        "days": days,
        "total": total,
    });
    if let Some(fleet) = fleet {
        body["fleet"] = fleet;
    }
    Ok(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_ranges_default_and_refuse_with_the_field() {
        let today: Date = "2026-12-03".parse().unwrap_or_default();
        let range = |q: &str| date_range(Some(q), today).map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(range("").ok(), Some(("2026-12-03".into(), "2026-12-03".into())));
        assert_eq!(
            range("from=2026-11-30").ok(),
            Some(("2026-11-30".into(), "2026-12-03".into()))
        );
        assert_eq!(
            range("from=2026-01-01&to=2026-01-31").ok(),
            Some(("2026-01-01".into(), "2026-01-31".into()))
        );
        for (query, field) in [
            ("from=2026-13-01", "from"),
            ("to=yesterday", "to"),
            ("from=2026-1-1", "from"),
            ("from=2026-12-04&to=2026-12-03", "from"),
            ("from=2024-01-01&to=2026-01-01", "to"),
        ] {
            let error = range(query).err();
            assert_eq!(error.and_then(|e| e.field).as_deref(), Some(field), "{query}");
        }
    }
}
