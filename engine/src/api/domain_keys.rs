//! A tenant's sending domains with their DKIM keys: `POST /v1/tenants/{t}/domains` `{"domain",
//! "selector"?, "algo"?}` adds the domain to the tenant's sender domains, generates its DKIM key
//! (`dkim.key_dir/DOMAIN/SELECTOR.pem`, kept when it exists) and answers every DNS record to publish:
//! the DKIM key, an SPF record for the egress IPs and a DMARC record. `GET …/domains` lists the
//! domains with their signing selectors and keys; `DELETE …/domains/{d}` removes the domain (its key
//! files stay). Tenants of the config file are changed in the file (409 here). With `[cluster]` the
//! key (its PEM, through Redis) and the domain reach the other nodes (`crate::tenants`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use penguin_dkim::{Algorithm, DnsRecord, KeyStore};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiState;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};

/// The body of `POST /v1/tenants/{t}/domains`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// The sending domain.
    domain: String,
    /// DKIM selector; default the first of the selectors that sign the domain (`dkim.selectors`).
    selector: Option<String>,
    /// `rsa` (2048 bits, default) or `ed25519`.
    algo: Option<String>,
}

/// The records to publish for `domain` with its DKIM `record`.
fn records(config: &penguin_config::Config, domain: &str, record: &DnsRecord) -> Value {
    let ips: Vec<std::net::IpAddr> = config.sources().iter().filter_map(|source| source.ip).collect();
    json!([
        {"type": "TXT", "name": record.name(), "value": record.value()},
        {"type": "TXT", "name": format!("{domain}."), "value": crate::check_domain::suggested_spf(&ips)},
        {"type": "TXT", "name": format!("_dmarc.{domain}."),
         "value": format!("v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}")},
    ])
}

/// `POST /v1/tenants/{tenant}/domains` (see the module documentation).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/domains", tag = "domains", request_body = NewDomain,
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 201, description = "`{\"domain\", \"selector\", \"records\": [{\"type\", \"name\", \"value\"}]}`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let request: NewDomain = serde_json::from_slice(&body).map_err(|error| ApiError::from_json(&error))?;
    let domain = request.domain.trim().trim_end_matches('.').to_ascii_lowercase();
    penguin_config::check_domain(&domain)
        .map_err(|why| ApiError::field("body.domain", format!("domain: {why}")))?;
    let algorithm = match request.algo.as_deref() {
        None | Some("rsa") => Algorithm::Rsa,
        Some("ed25519") => Algorithm::Ed25519,
        Some(other) => {
            return Err(ApiError::field(
                "body.algo",
                format!("algo {other:?}: rsa or ed25519"),
            ));
        }
    };
    let config = state.config.load_full();
    let signing = config.dkim.selectors_for(&domain).to_vec();
    let selector = match request.selector {
        Some(selector) if !signing.contains(&selector) => {
            return Err(ApiError::field(
                "body.selector",
                format!(
                    "selector {selector:?} does not sign {domain}: use one of {signing:?} (dkim.selectors)"
                ),
            ));
        }
        Some(selector) => selector,
        None => signing.first().cloned().ok_or_else(|| {
            ApiError::field(
                "body.selector",
                "no selector signs this domain (dkim.selectors is empty)",
            )
        })?,
    };
    let owner = state.directory_owner(&domain);
    if owner.as_deref().is_some_and(|owner| owner != tenant) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{domain} is a sender domain of another tenant"),
        ));
    }
    let api = Arc::clone(&state);
    let (name, host, key) = (tenant.clone(), domain.clone(), selector.clone());
    let record = super::off_runtime(move || -> Result<DnsRecord, ApiError> {
        let mut current = api.registry.existing(&name)?;
        let store = KeyStore::new(&api.config.load().dkim.key_dir);
        let record = match store.dns_record(&host, &key) {
            Ok(Some(record)) => record,
            Ok(None) => store
                .generate(&host, &key, algorithm)
                .map_err(|e| ApiError::internal(e.to_string()))?,
            Err(error) => return Err(ApiError::internal(error.to_string())),
        };
        // With [cluster] the key reaches the other nodes (before the domain does, in the journal's
        // key order), so the domain signs on all of them.
        api.registry.share_dkim_key(&host, &key)?;
        if !current.sender_domains.contains(&host) {
            current.sender_domains.push(host);
            api.registry.replace(&name, current)?;
        }
        Ok(record)
    })
    .await?;
    let body = json!({"domain": domain, "selector": selector, "records": records(&config, &domain, &record)});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/tenants/{tenant}/domains` → `{"domains": [{"domain", "selectors": [{"selector", "key",
/// "record"}]}], "next_after"}` (`key` false when no key file exists for a signing selector), by
/// domain, paged.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/domains", tag = "domains",
    params(("tenant" = String, Path, description = "Tenant name"),
        ("after" = Option<String>, Query, description = "Start after this domain (`next_after` of the previous page)"),
        ("limit" = Option<usize>, Query, description = "Domains per page, 1-1000 (default 100)")),
    responses((status = 200, description = "`{\"domains\": [{\"domain\", \"selectors\": [{\"selector\", \"key\", \"record\"}]}], \"next_after\"}`", body = Object),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(tenant): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let paging = super::paging::PageQuery::parse(query.as_deref())?;
    let directory = state.registry.directory().load_full();
    let domains: Vec<String> = directory
        .tenant(&tenant)
        .and_then(|t| t.sender_domains.clone())
        .map(|set| set.into_iter().collect())
        .unwrap_or_default();
    let (domains, next_after) = paging.apply(domains, Clone::clone);
    let config = state.config.load_full();
    let listed = tokio::task::spawn_blocking(move || {
        let store = KeyStore::new(&config.dkim.key_dir);
        domains
            .iter()
            .map(|domain| {
                let selectors: Vec<Value> = config
                    .dkim
                    .selectors_for(domain)
                    .iter()
                    .map(|selector| match store.dns_record(domain, selector) {
                        Ok(Some(record)) => {
                            json!({"selector": selector, "key": true, "record": record.value()})
                        }
                        _ => json!({"selector": selector, "key": false, "record": null}),
                    })
                    .collect();
                json!({"domain": domain, "selectors": selectors})
            })
            .collect::<Vec<Value>>()
    })
    .await
    .map_err(|join| ApiError::internal(join.to_string()))?;
    Ok(Json(json!({ "domains": listed, "next_after": next_after })).into_response())
}

/// `DELETE /v1/tenants/{tenant}/domains/{domain}` → 204; 404 when it is not the tenant's; 409 for
/// a config tenant or its last domain.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/domains/{domain}", tag = "domains",
    params(("tenant" = String, Path, description = "Tenant name"), ("domain" = String, Path, description = "Sender domain")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path((tenant, domain)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.check_tenant(&state, &tenant)?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let api = Arc::clone(&state);
    super::off_runtime(move || -> Result<(), ApiError> {
        let mut current = api.registry.existing(&tenant)?;
        if !current.sender_domains.contains(&domain) {
            return Err(ApiError::not_found(format!(
                "{domain:?} is not a sender domain of {tenant:?}"
            )));
        }
        if current.sender_domains.len() == 1 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "a tenant keeps at least one sender domain",
            ));
        }
        current.sender_domains.retain(|d| *d != domain);
        api.registry.replace(&tenant, current)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
