//! The HTTP listener: health, Prometheus metrics, one-click unsubscribe (RFC 8058) and the suppression
//! management API of the platform.
//!
//! - `GET /healthz`, `GET /metrics`.
//! - `GET /u/{token}`: a confirmation page (never unsubscribes: mail scanners prefetch links);
//!   `POST /u/{token}` (body `List-Unsubscribe=One-Click`, or empty): suppresses the token's recipient
//!   for its tenant (reason `unsubscribe`), emits an `unsubscribe` event when newly suppressed.
//! - `GET /tenants/{tenant}/suppressions?after=ADDR&limit=N`, and `GET`/`PUT`/`DELETE`
//!   `/tenants/{tenant}/suppressions/{address}`: JSON; errors are `{"error": "..."}`.
//! - `GET /v1/shaping`, `POST`/`GET /v1/suspensions`, `DELETE /v1/suspensions/{id}`: the ready queues
//!   and the operator's suspensions (`shaping.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use penguin_queue::{Spool, SpoolError, SuppressionEntry, SuppressionReason};
use serde::Deserialize;
use serde_json::{Value, json};

mod shaping;

pub use shaping::ShapingState;

use crate::events::{Event, EventBus, EventKind};
use crate::metrics::Metrics;
use crate::timefmt;
use crate::unsubscribe::UnsubscribeTokens;

/// What the handlers read.
pub struct ApiState {
    /// Rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Queue depth for `/healthz` and the queue gauge; the suppression lists.
    pub spool: Arc<Spool>,
    /// Messages being delivered now (out of the index, still queued).
    pub in_flight: Arc<AtomicUsize>,
    /// Where `unsubscribe` and `suppression_added` events go.
    pub events: EventBus,
    /// Verifies the tokens of `/u/{token}`.
    pub tokens: Arc<UnsubscribeTokens>,
    /// Tenants the management API knows: the configured ones and `default`.
    pub tenants: Arc<ArcSwap<HashSet<String>>>,
    /// Reloads the config file for `POST /reload`; `None` when the server has none to reload.
    pub reloader: Option<Arc<crate::reload::Reloader>>,
    /// The running config (DNS servers, key directory, EHLO name and egress IP for domain checks).
    pub config: Arc<ArcSwap<penguin_config::Config>>,
    /// The config file, quoted in the commands domain checks suggest.
    pub config_path: Option<std::path::PathBuf>,
    /// Ready queues and suspensions.
    pub shaping: ShapingState,
}

/// The tenant names the management API accepts: every configured tenant and `default`.
pub fn tenant_names(config: &penguin_config::Config) -> HashSet<String> {
    let mut names: HashSet<String> = config.tenant.iter().map(|t| t.name.clone()).collect();
    names.insert("default".to_string());
    names
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
        .route("/reload", post(reload))
        .route("/v1/shaping", get(shaping::shaping))
        .route(
            "/v1/suspensions",
            get(shaping::list_suspensions).post(shaping::create_suspension),
        )
        .route(
            "/v1/suspensions/{id}",
            axum::routing::delete(shaping::delete_suspension),
        )
        .route("/domains/{domain}/check", get(check_domain))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/tenants/{tenant}/suppressions", get(list_suppressions))
        .route(
            "/tenants/{tenant}/suppressions/{address}",
            get(get_suppression)
                .put(put_suppression)
                .delete(delete_suppression),
        )
        .with_state(state)
}

/// `POST /reload`: reads the config file again and applies `[dkim]` and `[[tenant]]` (like SIGHUP).
/// 200 with what was applied; 400 when the file is invalid; 409 without a config file.
async fn reload(State(state): State<Arc<ApiState>>) -> Response {
    use crate::reload::ReloadError;
    let Some(reloader) = state.reloader.clone() else {
        return error_response(StatusCode::CONFLICT, ReloadError::NoConfigFile.to_string());
    };
    let outcome = tokio::task::spawn_blocking(move || reloader.reload()).await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(join) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
    };
    let answer = match &outcome {
        Ok(report) => (
            StatusCode::OK,
            Json(json!({ "status": "reloaded", "report": report })),
        )
            .into_response(),
        Err(error @ ReloadError::NoConfigFile) => error_response(StatusCode::CONFLICT, error.to_string()),
        Err(error) => error_response(StatusCode::BAD_REQUEST, error.to_string()),
    };
    crate::server::log_reload(outcome);
    answer
}

/// `GET /domains/{domain}/check?selector=S&ip=IP` (both repeatable, both optional): the
/// `check-domain` report, `{"domain", "checks": [{"name", "status", "detail", "fix"}]}`, with the
/// running config's DNS servers, keys, EHLO name and egress IP. 400 for a bad domain or IP.
async fn check_domain(
    State(state): State<Arc<ApiState>>,
    Path(domain): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    use crate::check_domain::{CheckError, CheckRequest};
    let mut request = CheckRequest {
        config_file: state.config_path.clone(),
        ..CheckRequest::default()
    };
    for (key, value) in form_pairs(query.as_deref().unwrap_or("")) {
        match key.as_str() {
            "selector" => request.selectors.push(value),
            "ip" => match value.parse() {
                Ok(ip) => request.egress_ips.push(ip),
                Err(_) => {
                    let message = format!("ip: {value:?} is not an IP address");
                    return error_response(StatusCode::BAD_REQUEST, message);
                }
            },
            other => {
                let message = format!("{other}: unknown parameter (use selector, ip)");
                return error_response(StatusCode::BAD_REQUEST, message);
            }
        }
    }
    let config = state.config.load_full();
    match crate::check_domain::check_domain(&config, &domain, &request).await {
        Ok(report) => Json(report).into_response(),
        Err(error @ CheckError::InvalidDomain(_)) => {
            error_response(StatusCode::BAD_REQUEST, format!("domain: {error}"))
        }
        Err(error) => error_response(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
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
    shaping::refresh_metrics(&state);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

// ---- One-click unsubscribe ----

/// `GET /u/{token}`: asks for confirmation with a form that POSTs `List-Unsubscribe=One-Click` back to
/// the same URL. Changes nothing.
async fn unsubscribe_page(State(state): State<Arc<ApiState>>, Path(token): Path<String>) -> Response {
    let Some(claims) = state.tokens.verify(&token) else {
        return invalid_link_page();
    };
    let body = format!(
        "<p>Unsubscribe <strong>{}</strong> from <strong>{}</strong> mailings?</p>\n\
         <form method=\"post\">\n\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
         <button type=\"submit\">Unsubscribe</button>\n</form>",
        escape_html(&claims.recipient),
        escape_html(&claims.tenant),
    );
    page(StatusCode::OK, "Unsubscribe", &body)
}

/// `POST /u/{token}`: puts the recipient on the tenant's suppression list (reason `unsubscribe`);
/// idempotent. A forged or malformed token gets 404 and changes nothing.
async fn unsubscribe(
    State(state): State<Arc<ApiState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(claims) = state.tokens.verify(&token) else {
        return invalid_link_page();
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if !one_click_requested(content_type, &body) {
        return page(
            StatusCode::BAD_REQUEST,
            "Unsubscribe",
            "<p>This address expects the form field List-Unsubscribe=One-Click (RFC 8058).</p>",
        );
    }
    let now = timefmt::unix_millis(SystemTime::now());
    let entry = SuppressionEntry {
        address: claims.recipient.clone(),
        reason: SuppressionReason::Unsubscribe,
        added_at_ms: now,
        campaign: (!claims.campaign.is_empty()).then(|| claims.campaign.clone()),
    };
    let spool = Arc::clone(&state.spool);
    let tenant = claims.tenant.clone();
    match blocking(move || spool.suppress(&tenant, entry)).await {
        Ok(added) => {
            if added {
                state.events.emit(Event::about_address(
                    EventKind::Unsubscribe,
                    now,
                    &claims.tenant,
                    &claims.campaign,
                    &claims.recipient,
                    SuppressionReason::Unsubscribe.as_str(),
                ));
            }
            let body = format!(
                "<p>You are unsubscribed: <strong>{}</strong> will get no more {} mailings.</p>",
                escape_html(&claims.recipient),
                escape_html(&claims.tenant),
            );
            page(StatusCode::OK, "You are unsubscribed", &body)
        }
        Err(error) => {
            tracing::error!(%error, tenant = %claims.tenant, "cannot store an unsubscribe");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unsubscribe",
                "<p>Your request could not be recorded right now. Please try again later.</p>",
            )
        }
    }
}

/// Whether a POST body asks for a one-click unsubscribe: empty, an urlencoded form with
/// `List-Unsubscribe=One-Click`, or a multipart form with that field (names and value compared
/// case-insensitively: clients differ).
fn one_click_requested(content_type: Option<&str>, body: &[u8]) -> bool {
    if body.iter().all(u8::is_ascii_whitespace) {
        return true;
    }
    let multipart = content_type.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    });
    if multipart {
        let lower = body.to_ascii_lowercase();
        let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
        return has(b"name=\"list-unsubscribe\"") && has(b"one-click");
    }
    form_pairs(&String::from_utf8_lossy(body))
        .iter()
        .any(|(key, value)| {
            key.trim().eq_ignore_ascii_case("List-Unsubscribe")
                && value.trim().eq_ignore_ascii_case("One-Click")
        })
}

/// The 404 page of a link that is not ours (forged, mistyped, truncated by a mail client).
fn invalid_link_page() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Invalid link",
        "<p>This unsubscribe link is not valid. Please use the complete link from the message.</p>",
    )
}

/// A small HTML page; `body_html` must already be escaped. Not cached, no referrer (the URL is a token).
fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let title = escape_html(title);
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n{body_html}\n</body>\n</html>\n"
    );
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html),
    )
        .into_response()
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` pairs (also query strings): `+` is a space, `%XX` a byte;
/// malformed escapes are kept as they are, invalid UTF-8 becomes U+FFFD.
fn form_pairs(input: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(input.as_bytes()).into_owned().collect()
}

/// Runs a blocking spool call off the async runtime.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|join| Err(SpoolError::Storage(format!("spool task failed: {join}"))))
}

// ---- Suppression management API ----

/// Entries per page when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// Most entries per page; a larger `limit` is lowered to it.
const MAX_LIMIT: usize = 1000;
/// Longest address accepted (RFC 5321: 64 + 1 + 255).
const MAX_ADDRESS: usize = 320;
/// Longest campaign name accepted in a PUT body.
const MAX_CAMPAIGN: usize = 255;

/// `{"error": message}` with `status`.
fn error_response(status: StatusCode, message: String) -> Response {
    ApiError { status, message }.into_response()
}

/// An error answer of the management API: `{"error": message}` with `status`.
#[derive(Debug)]
struct ApiError {
    /// The HTTP status.
    status: StatusCode,
    /// What is wrong (naming the field for a 400).
    message: String,
}

impl ApiError {
    /// A 400 saying what is wrong with which field.
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A 404.
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// The 404 of an address that is not on a list.
    fn not_listed(tenant: &str, address: &str) -> ApiError {
        ApiError::not_found(format!(
            "{address:?} is not on the suppression list of {tenant:?}"
        ))
    }
}

impl From<SpoolError> for ApiError {
    fn from(error: SpoolError) -> ApiError {
        tracing::error!(%error, "suppression API: spool error");
        let status = match error {
            SpoolError::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: format!("spool: {error}"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// 404 unless `tenant` is configured (or `default`).
fn check_tenant(state: &ApiState, tenant: &str) -> Result<(), ApiError> {
    if state.tenants.load().contains(tenant) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("unknown tenant {tenant:?}")))
    }
}

/// 400 unless `address` looks like an email address: `local@domain`, both parts non-empty, at most
/// 320 octets, no whitespace or control characters.
fn check_address(address: &str) -> Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::bad_request(format!("address {address:?}: {why}")));
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

/// `after` and `limit` of a list query.
fn list_query(query: Option<&str>) -> Result<(Option<String>, usize), ApiError> {
    let (mut after, mut limit) = (None, DEFAULT_LIMIT);
    for (key, value) in form_pairs(query.unwrap_or("")) {
        match key.as_str() {
            "after" => after = Some(value),
            "limit" => match value.parse::<usize>() {
                Ok(n) if n > 0 => limit = n.min(MAX_LIMIT),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "limit {value:?}: expected a number from 1 to {MAX_LIMIT}"
                    )));
                }
            },
            _ => {}
        }
    }
    Ok((after, limit))
}

/// `GET /tenants/{tenant}/suppressions?after=ADDR&limit=N`: a page of the list in address order;
/// `next_after` is the `after` of the next page, null on the last.
async fn list_suppressions(
    State(state): State<Arc<ApiState>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    check_tenant(&state, &tenant)?;
    let (after, limit) = list_query(query.as_deref())?;
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

/// `GET /tenants/{tenant}/suppressions/{address}`: the entry, or 404.
async fn get_suppression(
    State(state): State<Arc<ApiState>>,
    Path((tenant, address)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_tenant(&state, &tenant)?;
    check_address(&address)?;
    match state.spool.suppression(&tenant, &address)? {
        Some(entry) => Ok(Json(entry_json(&entry)).into_response()),
        None => Err(ApiError::not_listed(&tenant, &address)),
    }
}

/// The optional JSON body of a PUT.
#[derive(Debug, Default, Deserialize)]
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
        serde_json::from_slice(body)
            .map_err(|error| ApiError::bad_request(format!("body: invalid JSON: {error}")))?
    };
    let reason = match parsed.reason.as_deref() {
        None => SuppressionReason::Manual,
        Some(text) => text
            .parse()
            .map_err(|error| ApiError::bad_request(format!("reason: {error}")))?,
    };
    let campaign = parsed.campaign.filter(|c| !c.is_empty());
    if let Some(campaign) = &campaign
        && (campaign.len() > MAX_CAMPAIGN || campaign.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(format!(
            "campaign: at most {MAX_CAMPAIGN} octets without control characters"
        )));
    }
    Ok((reason, campaign))
}

/// `PUT /tenants/{tenant}/suppressions/{address}` with an optional body `{"reason", "campaign"}`:
/// 201 with the new entry, or 200 with the entry already there (left unchanged). A new entry emits a
/// `suppression_added` event.
async fn put_suppression(
    State(state): State<Arc<ApiState>>,
    Path((tenant, address)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_tenant(&state, &tenant)?;
    check_address(&address)?;
    let (reason, campaign) = parse_put_body(&body)?;
    let now = timefmt::unix_millis(SystemTime::now());
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
    let entry = stored.ok_or_else(|| ApiError {
        status: StatusCode::CONFLICT,
        message: "address: removed by a concurrent request, retry".to_string(),
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

/// `DELETE /tenants/{tenant}/suppressions/{address}`: 204, or 404 when it was not on the list.
async fn delete_suppression(
    State(state): State<Arc<ApiState>>,
    Path((tenant, address)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_tenant(&state, &tenant)?;
    check_address(&address)?;
    let spool = Arc::clone(&state.spool);
    let (name, target) = (tenant.clone(), address.clone());
    if blocking(move || spool.unsuppress(&name, &target)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_listed(&tenant, &address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_bodies() {
        let form = Some("application/x-www-form-urlencoded");
        let cases: [(Option<&str>, &[u8], bool); 9] = [
            (form, b"List-Unsubscribe=One-Click", true),
            (form, b"", true),
            (None, b"  \r\n", true),
            (form, b"a=b&List-Unsubscribe=One-Click", true),
            (form, b"list-unsubscribe=one-click", true),
            (form, b"List-Unsubscribe=One%2DClick", true),
            (form, b"List-Unsubscribe=Nope", false),
            (form, b"something else", false),
            (
                Some("multipart/form-data; boundary=XyZ"),
                b"--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n",
                true,
            ),
        ];
        for (content_type, body, expected) in cases {
            let text = String::from_utf8_lossy(body);
            assert_eq!(one_click_requested(content_type, body), expected, "{text}");
        }
    }

    #[test]
    fn percent_decoding() {
        let cases = [
            ("a+b", "a b"),
            ("a%2Bb%40c", "a+b@c"),
            ("%", "%"),
            ("%4", "%4"),
            ("%zz", "%zz"),
            ("%C3%A9t%C3%A9", "été"),
            ("%FF", "\u{FFFD}"),
        ];
        for (input, expected) in cases {
            let pairs = form_pairs(&format!("k={input}"));
            assert_eq!(pairs, [("k".to_string(), expected.to_string())], "{input}");
        }
        assert_eq!(
            form_pairs("after=a%40b&limit=5&flag"),
            [
                ("after".to_string(), "a@b".to_string()),
                ("limit".to_string(), "5".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

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
