//! The HTTP side: two listeners.
//!
//! - The API listener (`[api] listen`): `GET /healthz` and `GET /metrics` (open unless
//!   `api.metrics_require_token`), and the control API under `/v1`, every route behind a bearer
//!   token (`auth.rs`): admin tokens reach everything, tenant API keys their own tenant. JSON in and
//!   out; errors `{"error": {"code", "message", "field"}}` (`error.rs`). One file per resource:
//!   `tenants.rs` (tenants, SMTP credentials), `suppressions.rs` + `suppression_files.rs` (CSV),
//!   `domains.rs` (checks), `domain_keys.rs` (domains and DKIM keys), `api_keys.rs`, `shaping.rs` (ready queues and suspensions), `cluster.rs` (`GET /v1/cluster`); `GET /v1/openapi.json`
//!   and `POST /v1/reload` here.
//! - The public listener (`[public] listen`, `public.rs`): one-click unsubscribe `/u/{token}` and
//!   `/healthz`, nothing else.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use penguin_queue::{Spool, SpoolError};
use serde_json::json;

pub mod api_keys;
pub mod auth;
mod campaigns;
pub mod cluster;
mod domain_keys;
mod domains;
pub mod error;
mod health;
pub mod inject;
mod messages;
mod paging;
pub mod public;
mod shaping;
mod suppression_files;
mod suppressions;
mod tenants;
mod usage;
mod warmup;
mod webhooks;

pub use auth::{Authenticator, Principal};
pub use error::{ApiError, ErrorBody};
pub use shaping::ShapingState;

use crate::events::EventBus;
use crate::metrics::Metrics;
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
    /// Reloads the config file for `POST /v1/reload`; `None` when the server has none to reload.
    pub reloader: Option<Arc<crate::reload::Reloader>>,
    /// The running config (admin tokens; DNS servers, keys, EHLO name and egress IP of domain checks).
    pub config: Arc<ArcSwap<penguin_config::Config>>,
    /// The config file, quoted in the commands domain checks suggest.
    pub config_path: Option<std::path::PathBuf>,
    /// Ready queues and suspensions.
    pub shaping: ShapingState,
    /// Bearer tokens: admin tokens (from `config`) and tenant API keys.
    pub auth: Authenticator,
    /// The tenants made over the API and their SMTP logins.
    pub registry: Arc<crate::tenants::TenantRegistry>,
    /// Campaign pause/resume/cancel and message deletion.
    pub campaigns: crate::campaigns::Campaigns,
    /// HTTP injection: signing, ids, delivery wake-up.
    pub injection: Arc<inject::Injection>,
    /// The tenants' webhook endpoints.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The sources' DNS blocklist listings (empty without `[reputation] dnsbl`).
    pub reputation: crate::reputation::Reputation,
    /// The warm-up service.
    pub warmup: crate::warmup::Warmup,
    /// This node's view of the cluster; `None` without `[cluster]`.
    pub cluster: Option<crate::cluster::Cluster>,
}

impl ApiState {
    /// The tenant that has `domain` among its sender domains, if any.
    fn directory_owner(&self, domain: &str) -> Option<String> {
        let directory = self.registry.directory().load_full();
        let names = directory.names();
        names.into_iter().find(|name| {
            directory
                .tenant(name)
                .and_then(|t| t.sender_domains.clone())
                .is_some_and(|domains| domains.contains(domain))
        })
    }

    /// Messages in the queue: scheduled in the index plus those being delivered.
    fn queued_messages(&self) -> usize {
        self.spool.queued_messages() + self.in_flight.load(Ordering::Relaxed)
    }
}

/// The API document's frame: title, version, the bearer security scheme.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "penguin-mta control API", description = "Every /v1 route needs `Authorization: Bearer TOKEN` (an admin token of `[[api.token]]` or a tenant API key). Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`. The public listener (`[public] listen`) serves only `GET/POST /u/{token}` (one-click unsubscribe) and `/healthz`."),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

/// Adds the `bearer` security scheme the routes name.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The API document (`GET /v1/openapi.json`), serialised once.
#[derive(Clone)]
struct OpenApiJson(Arc<String>);

/// The routes of the API listener with the API document they make (every route is registered from
/// its `#[utoipa::path]`, so the document cannot miss one).
pub fn router_and_doc(state: Arc<ApiState>) -> (Router, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let open = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::token_if_configured,
        ));
    let v1 = OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(reload))
        .routes(routes!(shaping::shaping))
        .routes(routes!(shaping::list_suspensions, shaping::create_suspension))
        .routes(routes!(shaping::delete_suspension))
        .routes(routes!(suppressions::list_suppressions))
        .routes(routes!(
            suppressions::get_suppression,
            suppressions::put_suppression,
            suppressions::delete_suppression
        ))
        .routes(routes!(suppression_files::import))
        .routes(routes!(suppression_files::export))
        .routes(routes!(domains::check))
        .routes(routes!(domain_keys::list, domain_keys::add))
        .routes(routes!(domain_keys::remove))
        .routes(routes!(api_keys::list, api_keys::create))
        .routes(routes!(api_keys::delete))
        .routes(routes!(tenants::list, tenants::create))
        .routes(routes!(tenants::get, tenants::patch, tenants::delete))
        .routes(routes!(tenants::list_logins, tenants::create_login))
        .routes(routes!(tenants::delete_login))
        .routes(routes!(usage::usage))
        .routes(routes!(campaigns::list))
        .routes(routes!(campaigns::get))
        .routes(routes!(campaigns::pause))
        .routes(routes!(campaigns::resume))
        .routes(routes!(campaigns::cancel))
        .routes(routes!(messages::summary))
        .routes(routes!(inject::inject))
        .routes(routes!(inject::preview))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::delete))
        .routes(routes!(messages::get, messages::delete))
        .routes(routes!(messages::retry))
        .routes(routes!(warmup::status))
        .routes(routes!(warmup::start, warmup::declare_warm))
        .routes(routes!(warmup::hold))
        .routes(routes!(warmup::resume))
        .routes(routes!(cluster::status))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_token,
        ));
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(open)
        .merge(v1)
        .split_for_parts();
    let json = OpenApiJson(Arc::new(doc.to_json().unwrap_or_else(|_| "{}".to_string())));
    let max_body = usize::try_from(state.config.load().api.max_request_size.bytes()).unwrap_or(usize::MAX);
    let router = router
        .layer(axum::middleware::map_response(body_too_large))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(Extension(json))
        .fallback(not_found)
        .with_state(state);
    (router, doc)
}

/// The routes of the API listener.
pub fn router(state: Arc<ApiState>) -> Router {
    router_and_doc(state).0
}

/// `GET /v1/openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)),
    security(("bearer" = [])))]
async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}

/// A body over `api.max_request_size` is refused by axum before any handler: answered in the API's
/// error format.
async fn body_too_large(response: Response) -> Response {
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || json {
        return response;
    }
    ApiError {
        field: Some("body".into()),
        ..ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than api.max_request_size",
        )
    }
    .into_response()
}

/// An unknown path.
async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// `POST /v1/reload` (admin): reads the config file again and applies what a reload can (like
/// SIGHUP). 200 with the report; 400 when the file is invalid; 409 without a config file.
#[utoipa::path(post, path = "/v1/reload", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"reloaded\", \"report\": {\"config\", \"tenants\", \"dkim_domains\", \"restart_needed\"}}`", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn reload(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    use crate::reload::ReloadError;
    principal.require_admin()?;
    let Some(reloader) = state.reloader.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ReloadError::NoConfigFile.to_string(),
        ));
    };
    let outcome = tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .map_err(|join| ApiError::internal(join.to_string()))?;
    let answer = match &outcome {
        Ok(report) => Ok((
            StatusCode::OK,
            Json(json!({ "status": "reloaded", "report": report })),
        )
            .into_response()),
        Err(error @ ReloadError::NoConfigFile) => Err(ApiError::new(StatusCode::CONFLICT, error.to_string())),
        Err(error) => Err(ApiError::bad_request(error.to_string())),
    };
    crate::server::log_reload(outcome);
    answer
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

/// Runs a blocking call off the async runtime; its error (or a failed task) becomes the answer.
async fn off_runtime<T, E>(call: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|join| ApiError::internal(join.to_string()))?
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
