//! Who calls: `Authorization: Bearer TOKEN` is an admin token (`[[api.token]]`, by its SHA-256) or a
//! tenant API key (made with `POST /v1/tenants/{t}/api-keys`, stored hashed in the spool). Admins reach
//! every route; a tenant key only its own tenant's resources: another tenant's answer 404 (never
//! revealing that it exists), admin-only routes 403. No or a bad token: 401 with
//! `WWW-Authenticate: Bearer`. Failed tokens are counted per client IP with the SMTP AUTH limits
//! (`smtp.auth_failure_limit` in `auth_failure_window` locks the IP out for `auth_lockout`: 429 with
//! `Retry-After`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use penguin_policy::{AuthThrottle, AuthThrottleRule, ThrottleDecision};

use super::ApiState;
use super::api_keys::{ApiKeys, token_hash};
use super::error::ApiError;

/// Most client IPs whose failures are tracked at once.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// An admin token, by its configured name.
    Admin(Arc<str>),
    /// A tenant API key.
    Tenant {
        /// Its tenant.
        tenant: String,
        /// The key's id.
        key_id: String,
    },
}

impl Principal {
    /// Ok for admins; 403 for tenant keys.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin(_) => Ok(()),
            Principal::Tenant { .. } => Err(ApiError::forbidden(
                "this route needs an admin token; tenant API keys cannot use it",
            )),
        }
    }

    /// The tenant a tenant key is limited to; None for admins.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Admin(_) => None,
            Principal::Tenant { tenant, .. } => Some(tenant),
        }
    }

    /// Whether the caller may see `tenant`'s resources (admins: every tenant).
    pub fn may_see(&self, tenant: &str) -> bool {
        self.tenant().is_none_or(|own| own == tenant)
    }

    /// Ok when `tenant` exists and the caller may see it; otherwise the same 404 either way.
    pub fn check_tenant(&self, state: &ApiState, tenant: &str) -> Result<(), ApiError> {
        if self.may_see(tenant) && state.tenants.load().contains(tenant) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("unknown tenant {tenant:?}")))
        }
    }
}

/// Verifies tokens and locks out clients that guess.
pub struct Authenticator {
    /// Tenant API keys.
    pub keys: ApiKeys,
    /// Failed attempts per client IP.
    throttle: Mutex<AuthThrottle>,
}

impl Authenticator {
    /// An authenticator over `keys`, with the SMTP AUTH failure limits of `config`.
    pub fn new(keys: ApiKeys, config: &penguin_config::Config) -> Authenticator {
        let rule = AuthThrottleRule {
            limit: config.smtp.auth_failure_limit,
            window: config.smtp.auth_failure_window.get(),
            lockout: config.smtp.auth_lockout.get(),
        };
        Authenticator {
            keys,
            throttle: Mutex::new(AuthThrottle::new(rule, MAX_TRACKED_CLIENTS)),
        }
    }

    /// The caller of a request from `ip` with `headers`, by the admin tokens of `config`.
    pub fn authenticate(
        &self,
        config: &penguin_config::Config,
        headers: &HeaderMap,
        ip: IpAddr,
    ) -> Result<Principal, ApiError> {
        let now = Instant::now();
        if let ThrottleDecision::LockedOut { until } = self.throttle().check(ip, now) {
            return Err(locked_out(until, now));
        }
        let Some(token) = bearer(headers) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing token: send Authorization: Bearer TOKEN",
            ));
        };
        let hash = token_hash(token);
        if let Some(name) = admin_name(config, &hash) {
            return Ok(Principal::Admin(name));
        }
        if let Some(key) = self.keys.lookup(&hash) {
            return Ok(Principal::Tenant {
                tenant: key.tenant,
                key_id: key.id,
            });
        }
        match self.throttle().record_failure(ip, now) {
            ThrottleDecision::LockedOut { until } => Err(locked_out(until, now)),
            ThrottleDecision::Allow => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid token")),
        }
    }

    /// The failure counters, locked briefly.
    fn throttle(&self) -> std::sync::MutexGuard<'_, AuthThrottle> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The 429 of a locked-out client.
fn locked_out(until: Instant, now: Instant) -> ApiError {
    let seconds = until.saturating_duration_since(now).as_secs().max(1);
    ApiError {
        retry_after: Some(seconds),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many invalid tokens from this address; retry in {seconds} s"),
        )
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The name of the admin token whose hash is `hash`. Every configured hash is compared in constant
/// time, all of them whatever matches, so timing tells nothing about which bytes were right.
fn admin_name(config: &penguin_config::Config, hash: &[u8; 32]) -> Option<Arc<str>> {
    let mut found = None;
    for token in &config.api.tokens {
        let Ok(configured) = hex::decode(&token.sha256) else {
            continue;
        };
        #[allow(deprecated)]
        let equal = aws_lc_rs::constant_time::verify_slices_are_equal(&configured, hash).is_ok();
        if equal && found.is_none() {
            found = Some(Arc::from(token.name.as_str()));
        }
    }
    found
}

/// Middleware of the `/v1` routes: the caller becomes a [`Principal`] extension, or the request is
/// answered 401/429.
pub async fn require_token(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let config = state.config.load();
    match state.auth.authenticate(&config, request.headers(), peer.ip()) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// Middleware of `/metrics` and `/healthz` on the API listener: a token only when
/// `api.metrics_require_token` is set.
pub async fn token_if_configured(
    State(state): State<Arc<ApiState>>,
    connect: ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if state.config.load().api.metrics_require_token {
        require_token(State(state), connect, request, next).await
    } else {
        next.run(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer ", None),
            ("abc", None),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().expect("header"));
            assert_eq!(bearer(&headers), expected, "{value:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn admin_tokens_match_by_hash() {
        let mut config = penguin_config::Config::embedded_default();
        config.api.tokens = vec![
            penguin_config::ApiTokenConfig {
                name: "one".into(),
                sha256: hex::encode(token_hash("first")),
            },
            penguin_config::ApiTokenConfig {
                name: "two".into(),
                sha256: hex::encode(token_hash("second")),
            },
        ];
        assert_eq!(admin_name(&config, &token_hash("second")).as_deref(), Some("two"));
        assert_eq!(admin_name(&config, &token_hash("first")).as_deref(), Some("one"));
        assert_eq!(admin_name(&config, &token_hash("third")), None);
    }
}
