//! The public listener (`[public] listen`): what recipients reach, and nothing else.
//!
//! - `GET /u/{token}`: a confirmation page (never unsubscribes: mail scanners prefetch links);
//!   `POST /u/{token}` (body `List-Unsubscribe=One-Click`, or empty): suppresses the token's recipient
//!   for its tenant (reason `unsubscribe`), emits an `unsubscribe` event when newly suppressed.
//! - `GET /healthz`. Every other path is 404.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use penguin_queue::{SuppressionEntry, SuppressionReason};

use super::{ApiState, blocking, form_pairs};
use crate::events::{Event, EventKind};

/// The routes of the public listener.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(super::health::healthz))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .fallback(not_found)
        .with_state(state)
}

/// Any other path: a plain 404 (the public side shows nothing of the API).
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

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
    let now = state.shaping.clock.now_ms();
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
                let mut counts = penguin_queue::Counts::new();
                crate::usage::Tally::new(&claims.tenant, &claims.campaign, now).add(
                    &mut counts,
                    "unsubscribed",
                    None,
                    1,
                );
                if let Err(error) = state.spool.add_counts(&counts) {
                    tracing::warn!(%error, "cannot count an unsubscription");
                }
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
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
