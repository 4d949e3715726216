//! A tenant's sender domains: `GET /v1/tenants/{tenant}/domains/{domain}/check?selector=S&ip=IP`
//! (both repeatable, both optional): the `check-domain` report, `{"domain", "checks": [{"name",
//! "status", "detail", "fix"}]}`, with the running config's DNS servers, keys, EHLO name and egress
//! IP. The domain must be one of the tenant's sender domains (any domain for the relay tenant
//! `default`): otherwise 404. 400 for a bad domain or IP.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ApiState, form_pairs};

/// `GET /v1/tenants/{tenant}/domains/{domain}/check` (see the module documentation).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/domains/{domain}/check", tag = "domains",
    params(("tenant" = String, Path, description = "Tenant name"), ("domain" = String, Path, description = "One of the tenant's sender domains"),
        ("selector" = Option<Vec<String>>, Query, description = "DKIM selectors to check (repeatable)"),
        ("ip" = Option<Vec<String>>, Query, description = "Egress IPs for SPF and PTR (repeatable)")),
    responses((status = 200, description = "`{\"domain\", \"checks\": [{\"name\", \"status\", \"detail\", \"fix\"}]}`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn check(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, domain)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    use crate::check_domain::{CheckError, CheckRequest};
    principal.check_tenant(&state, &tenant)?;
    let config = state.config.load_full();
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let owned = config
        .tenant
        .iter()
        .find(|t| t.name == tenant)
        .is_some_and(|t| t.sender_domains.contains(&domain));
    if !owned && tenant != penguin_config::RELAY_TENANT {
        return Err(ApiError::not_found(format!(
            "{domain:?} is not a sender domain of {tenant:?}"
        )));
    }
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
                    return Err(ApiError::field(
                        "ip",
                        format!("ip: {value:?} is not an IP address"),
                    ));
                }
            },
            other => {
                return Err(ApiError::field(
                    other,
                    format!("{other}: unknown parameter (use selector, ip)"),
                ));
            }
        }
    }
    match crate::check_domain::check_domain(&config, &domain, &request).await {
        Ok(report) => Ok(Json(report).into_response()),
        Err(error @ CheckError::InvalidDomain(_)) => {
            Err(ApiError::field("domain", format!("domain: {error}")))
        }
        Err(error) => Err(ApiError::internal(error.to_string())),
    }
}
