//! Tenants (admin): `POST /v1/tenants`, `GET /v1/tenants`, `GET|PATCH|DELETE /v1/tenants/{t}`; and
//! their SMTP credentials (admin or the tenant's keys): `POST|GET /v1/tenants/{t}/smtp-credentials`,
//! `DELETE /v1/tenants/{t}/smtp-credentials/{username}`. Tenants of the config file are listed with
//! `"source": "config"`; changing them here is 409. See `crate::tenants` for storage.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiState;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::paging::PageQuery;
use crate::tenants::{ApiTenant, SmtpLogin, TenantError};
use crate::timefmt;

impl From<TenantError> for ApiError {
    fn from(error: TenantError) -> ApiError {
        match error {
            TenantError::Invalid(field, why) => ApiError::field(field.clone(), format!("{field}: {why}")),
            TenantError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, message),
            TenantError::NotFound(name) => ApiError::not_found(format!("unknown tenant {name:?}")),
            TenantError::Spool(error) => ApiError::from(error),
            TenantError::Key(why) => ApiError::internal(why),
        }
    }
}

/// The JSON of an API tenant.
fn api_json(tenant: &ApiTenant) -> Value {
    let mut value = serde_json::to_value(tenant).unwrap_or(Value::Null);
    value["source"] = json!("api");
    value
}

/// The JSON of a config tenant.
fn config_json(config: &penguin_config::Config, tenant: &penguin_config::TenantConfig) -> Value {
    json!({
        "name": tenant.name,
        "sender_domains": tenant.sender_domains,
        "dsn": tenant.dsn,
        "list_unsubscribe": tenant.list_unsubscribe,
        "dkim_missing_key": tenant.dkim_missing_key,
        "pools": config.tenant_pools(&tenant.name).1,
        "daily_quota": tenant.daily_quota,
        "max_message_rate": tenant.max_message_rate,
        "source": "config",
    })
}

/// Every tenant (config and API) by name, as JSON.
fn all_tenants(state: &ApiState) -> Vec<(String, Value)> {
    let config = state.config.load();
    let mut all: Vec<(String, Value)> = config
        .tenant
        .iter()
        .map(|tenant| (tenant.name.clone(), config_json(&config, tenant)))
        .collect();
    for tenant in state.registry.list() {
        if !all.iter().any(|(name, _)| *name == tenant.name) {
            all.push((tenant.name.clone(), api_json(&tenant)));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// `POST /v1/tenants` → 201 with the tenant; 409 when the name is taken.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = ApiTenant,
    responses((status = 201, description = "The tenant, with `\"source\": \"api\"`", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let tenant: ApiTenant = serde_json::from_slice(&body).map_err(|error| ApiError::from_json(&error))?;
    let created = timefmt::rfc3339_millis(timefmt::unix_millis(std::time::SystemTime::now()));
    let registry = Arc::clone(&state.registry);
    let tenant = super::off_runtime(move || registry.create(tenant, created)).await?;
    apply_rates(&state);
    Ok((StatusCode::CREATED, Json(api_json(&tenant))).into_response())
}

/// `GET /v1/tenants?after=NAME&limit=N` → `{"tenants": [...], "next_after"}` in name order.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    params(("after" = Option<String>, Query, description = "Start after this name"),
        ("limit" = Option<usize>, Query, description = "Tenants per page, 1-1000 (default 100)")),
    responses((status = 200, description = "`{\"tenants\": [...], \"next_after\"}`", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let paging = PageQuery::parse(query.as_deref())?;
    let (page, next_after) = paging.apply(all_tenants(&state), |(name, _)| name.clone());
    let page: Vec<Value> = page.into_iter().map(|(_, value)| value).collect();
    Ok(Json(json!({ "tenants": page, "next_after": next_after })).into_response())
}

/// `GET /v1/tenants/{tenant}` → the tenant.
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, description = "The tenant", body = Object), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    all_tenants(&state)
        .into_iter()
        .find(|(name, _)| *name == tenant)
        .map(|(_, value)| Json(value).into_response())
        .ok_or_else(|| ApiError::not_found(format!("unknown tenant {tenant:?}")))
}

/// The fields `PATCH` may change (each optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    /// New sender domains.
    sender_domains: Option<Vec<String>>,
    /// DSNs on or off.
    dsn: Option<bool>,
    /// One-click unsubscribe headers on or off.
    list_unsubscribe: Option<bool>,
    /// `dkim_missing_key` override (null removes it).
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    dkim_missing_key: Option<Option<penguin_config::MissingKeyAction>>,
    /// New pools, the default first.
    pools: Option<Vec<String>>,
    /// Recipients per UTC day (null removes the quota).
    #[serde(default, deserialize_with = "some")]
    daily_quota: Option<Option<u64>>,
    /// Rate of all its deliveries, `"N/s|min|h|d"` (null removes it).
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    max_message_rate: Option<Option<penguin_config::MessageRate>>,
}

/// A present field, even `null`, is `Some` (so `null` can clear an option).
fn some<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// `PATCH /v1/tenants/{tenant}` → the changed tenant; 409 for a config tenant.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}", tag = "tenants", request_body = TenantPatch,
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, description = "The tenant", body = Object), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let patch: TenantPatch = serde_json::from_slice(&body).map_err(|error| ApiError::from_json(&error))?;
    let registry = Arc::clone(&state.registry);
    let changed = super::off_runtime(move || {
        let mut current = registry.existing(&tenant)?;
        current.sender_domains = patch.sender_domains.unwrap_or(current.sender_domains);
        current.dsn = patch.dsn.unwrap_or(current.dsn);
        current.list_unsubscribe = patch.list_unsubscribe.unwrap_or(current.list_unsubscribe);
        current.dkim_missing_key = patch.dkim_missing_key.unwrap_or(current.dkim_missing_key);
        current.pools = patch.pools.unwrap_or(current.pools);
        current.daily_quota = patch.daily_quota.unwrap_or(current.daily_quota);
        current.max_message_rate = patch.max_message_rate.unwrap_or(current.max_message_rate);
        registry.replace(&tenant, current)
    })
    .await?;
    apply_rates(&state);
    Ok(Json(api_json(&changed)).into_response())
}

/// `DELETE /v1/tenants/{tenant}` → 204: its SMTP logins and API keys stop at once; its queued mail is
/// kept and delivered. 409 for a config tenant.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let api = Arc::clone(&state);
    super::off_runtime(move || -> Result<(), ApiError> {
        api.registry.delete(&tenant)?;
        api.auth.keys.delete_tenant(&tenant)?;
        Ok(())
    })
    .await?;
    apply_rates(&state);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Gives the scheduler the API tenants' `max_message_rate` (after every change of a tenant).
pub fn apply_rates(state: &ApiState) {
    let rates = state.registry.rates();
    state.shaping.lock().set_api_tenant_rates(rates);
}

/// `POST /v1/tenants/{tenant}/smtp-credentials` → 201 `{"username", "password", "created"}` (the
/// password is shown once and stored as argon2id).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/smtp-credentials", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 201, description = "`{\"username\", \"password\", \"created\"}`", body = Object),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_login(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    if tenant == crate::smtp::auth::RELAY_TENANT {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the relay tenant \"default\" has no logins (relay_networks)",
        ));
    }
    let suffix = hex::encode(super::api_keys::random_bytes(4)?);
    let username = format!("{}-{suffix}", tenant.to_ascii_lowercase());
    let password = super::api_keys::random_secret(24)?;
    let created = timefmt::rfc3339_millis(timefmt::unix_millis(std::time::SystemTime::now()));
    let registry = Arc::clone(&state.registry);
    let (name, secret, when) = (username.clone(), password.clone(), created.clone());
    super::off_runtime(move || -> Result<(), ApiError> {
        let password_hash = crate::smtp::auth::hash_password(secret.as_bytes())
            .map_err(|error| ApiError::internal(format!("hashing failed: {error}")))?;
        let login = SmtpLogin {
            tenant,
            password_hash,
            created: when,
        };
        Ok(registry.add_login(&name, login)?)
    })
    .await?;
    let body = json!({"username": username, "password": password, "created": created});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/tenants/{tenant}/smtp-credentials` → `{"smtp_credentials": [{"username", "created",
/// "source"}], "next_after"}` (never a password), by username, paged.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/smtp-credentials", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name"),
        ("after" = Option<String>, Query, description = "Start after this key (`next_after` of the previous page)"),
        ("limit" = Option<usize>, Query, description = "Items per page, 1-1000 (default 100)")),
    responses((status = 200, description = "`{\"smtp_credentials\": [{\"username\", \"created\", \"source\"}], \"next_after\"}`", body = Object),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_logins(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let paging = PageQuery::parse(query.as_deref())?;
    let config = state.config.load();
    let mut logins: Vec<Value> = config
        .tenant
        .iter()
        .filter(|t| t.name == tenant)
        .map(|t| json!({"username": t.username, "created": null, "source": "config"}))
        .collect();
    logins.extend(
        state
            .registry
            .logins_of(&tenant)
            .into_iter()
            .map(|(username, created)| json!({"username": username, "created": created, "source": "api"})),
    );
    let (logins, next_after) = paging.apply(logins, |login| {
        login["username"].as_str().unwrap_or_default().to_string()
    });
    Ok(Json(json!({ "smtp_credentials": logins, "next_after": next_after })).into_response())
}

/// `DELETE /v1/tenants/{tenant}/smtp-credentials/{username}` → 204: the next AUTH with it fails (535).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/smtp-credentials/{username}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name"), ("username" = String, Path, description = "SMTP username")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_login(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, username)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let configured = state
        .config
        .load()
        .tenant
        .iter()
        .any(|t| t.name == tenant && t.username == username);
    if configured {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{username:?} comes from the config file: change it there and reload"),
        ));
    }
    let registry = Arc::clone(&state.registry);
    let (name, user) = (tenant.clone(), username.clone());
    let deleted = super::off_runtime(move || registry.delete_login(&name, &user)).await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "tenant {tenant:?} has no login {username:?}"
        )))
    }
}
