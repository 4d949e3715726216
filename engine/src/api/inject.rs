//! HTTP injection: `POST /v1/messages` renders one message per recipient (see `crate::inject`) and
//! takes them the same way as SMTP (sender domain, suppression, List-Unsubscribe, DKIM, usage counts)
//! into ONE synced spool batch before it answers 202; `POST /v1/messages/preview` renders the first
//! recipient's message without queueing. `Idempotency-Key` makes a retried request safe for 24 hours.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use penguin_queue::{Counts, Envelope, IdGenerator, NewMessage, Recipient};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::ApiState;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use crate::events::{Event, EventKind};
use crate::inject::{self, FieldError, InjectRequest, Mailbox, Templates};
use crate::smtp::auth::Tenant;
use crate::smtp::finish::{Finished, Finisher, Prepared};
use crate::usage::Tally;

/// How long an idempotency key is remembered.
const IDEMPOTENCY_MS: u64 = 24 * 3600 * 1000;
/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// What injection needs besides the API state.
pub struct Injection {
    /// DKIM signing and unsubscribe links (shared with SMTP reception).
    pub finisher: Arc<Finisher>,
    /// Queue ids.
    pub ids: IdGenerator,
    /// Wakes delivery.
    pub wakeup: Arc<Notify>,
    /// Idempotency keys being processed now (a second request with one waits its turn by 409).
    pub in_progress: Mutex<HashSet<String>>,
    /// Our host name (Message-IDs).
    pub hostname: String,
}

/// A stored idempotency record.
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyRecord {
    /// Hex SHA-256 of the request body.
    body_sha256: String,
    /// The answer given.
    response: Value,
    /// When, unix milliseconds.
    created_ms: u64,
}

/// One recipient's outcome.
enum Outcome {
    /// A message to store.
    Message(NewMessage),
    /// Refused, with the reason.
    Rejected(String),
}

/// The tenant a request sends as: a tenant key's own (a `tenant` naming another is 404), or the
/// admin's `tenant` field.
fn tenant_of(
    state: &ApiState,
    principal: &Principal,
    request: &InjectRequest,
) -> Result<Arc<Tenant>, ApiError> {
    let name = match (principal.tenant(), &request.tenant) {
        (Some(own), _) => own.to_string(),
        (None, Some(named)) => named.clone(),
        (None, None) => return Err(ApiError::field("tenant", "an admin token must name the tenant")),
    };
    if let Some(named) = &request.tenant {
        principal.check_tenant(state, named)?;
    }
    state
        .registry
        .directory()
        .load()
        .tenant(&name)
        .ok_or_else(|| ApiError::not_found(format!("unknown tenant {name:?}")))
}

/// A field error as a 400.
fn bad(error: FieldError) -> ApiError {
    ApiError::field(error.field, error.message)
}

/// The checks of the whole request: sizes, sender, campaign, pool, templates.
struct Checked {
    /// The tenant.
    tenant: Arc<Tenant>,
    /// From.
    from: Mailbox,
    /// Reply-To.
    reply_to: Option<Mailbox>,
    /// The campaign.
    campaign: String,
    /// The pool ("" = the tenant's default, decided at delivery).
    pool: String,
    /// The compiled templates.
    templates: Templates,
}

/// Checks a request (400/404/409/413 naming the field).
fn check(state: &ApiState, principal: &Principal, request: &InjectRequest) -> Result<Checked, ApiError> {
    let tenant = tenant_of(state, principal, request)?;
    let max = state.config.load().api.max_recipients_per_request;
    if request.recipients.is_empty() {
        return Err(ApiError::field("recipients", "give at least one recipient"));
    }
    if request.recipients.len() > max {
        return Err(ApiError {
            field: Some("recipients".into()),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{} recipients: at most {max} per request (api.max_recipients_per_request)",
                    request.recipients.len()
                ),
            )
        });
    }
    let from = Mailbox::parse(&request.from).map_err(|e| ApiError::field("from", e))?;
    if !tenant.may_send_from(&from.domain()) {
        return Err(ApiError::field(
            "from",
            format!(
                "{} is not a sender domain of tenant {}",
                from.domain(),
                tenant.name
            ),
        ));
    }
    let reply_to = match &request.reply_to {
        Some(text) => Some(Mailbox::parse(text).map_err(|e| ApiError::field("reply_to", e))?),
        None => None,
    };
    let campaign = request
        .campaign
        .clone()
        .unwrap_or_else(|| crate::smtp::headers::DEFAULT_CAMPAIGN.to_string());
    let campaign_ok = !campaign.is_empty()
        && campaign.len() <= crate::smtp::headers::MAX_CAMPAIGN_LEN
        && campaign.bytes().all(|b| b.is_ascii_graphic());
    if !campaign_ok {
        return Err(ApiError::field(
            "campaign",
            "expected 1-128 printable ASCII characters",
        ));
    }
    if state.campaigns.is_cancelled(&tenant.name, &campaign) {
        return Err(ApiError {
            field: Some("campaign".into()),
            ..ApiError::new(
                StatusCode::CONFLICT,
                format!("campaign {campaign:?} is cancelled"),
            )
        });
    }
    let pool = match &request.pool {
        Some(pool) if !tenant.pools.contains(pool) => {
            return Err(ApiError::field(
                "pool",
                format!("{pool:?} is not a pool tenant {} may use", tenant.name),
            ));
        }
        Some(pool) => pool.clone(),
        None => tenant.default_pool.clone().unwrap_or_default(),
    };
    let templates = Templates::compile(request).map_err(bad)?;
    Ok(Checked {
        tenant,
        from,
        reply_to,
        campaign,
        pool,
        templates,
    })
}

/// `POST /v1/messages`: one message per recipient, rendered, signed and stored in one synced batch;
/// 202 `{"accepted": [{"address", "id"}], "rejected": [{"address", "reason"}]}` once on disk.
#[utoipa::path(post, path = "/v1/messages", tag = "injection", request_body = InjectRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key and body within 24 h answers the first response and queues nothing again; another body is 409")),
    responses((status = 202, description = "`{\"accepted\": [{\"address\", \"id\"}], \"rejected\": [{\"address\", \"reason\"}]}`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn inject(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: InjectRequest = serde_json::from_slice(&body).map_err(|e| ApiError::from_json(&e))?;
    let checked = check(&state, &principal, &request)?;
    let key = idempotency_key(&headers, &checked.tenant.name)?;
    let body_sha256 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body));
    let Some(key) = key else {
        return run(&state, request, checked, client, None).await;
    };
    let _guard = KeyGuard::take(&state.injection, &key)?;
    if let Some(answer) = replay(&state, &key, &body_sha256)? {
        return Ok(answer);
    }
    run(&state, request, checked, client, Some((key, body_sha256))).await
}

/// The spool key of an `Idempotency-Key` header, if one was sent.
fn idempotency_key(headers: &HeaderMap, tenant: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(format!("idempotency/{tenant}/{key}")))
        }
        _ => Err(ApiError::field(
            "Idempotency-Key",
            format!("expected 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
        )),
    }
}

/// The first answer for this key and body (within 24 h), or 409 for another body.
fn replay(state: &ApiState, key: &str, body_sha256: &str) -> Result<Option<Response>, ApiError> {
    let Some(stored) = state.spool.control_record(key)? else {
        return Ok(None);
    };
    let Ok(record) = serde_json::from_slice::<IdempotencyRecord>(&stored) else {
        return Ok(None);
    };
    if record.created_ms + IDEMPOTENCY_MS <= state.shaping.clock.now_ms() {
        return Ok(None);
    }
    if record.body_sha256 != body_sha256 {
        return Err(ApiError {
            field: Some("Idempotency-Key".into()),
            ..ApiError::new(
                StatusCode::CONFLICT,
                "this Idempotency-Key was used with another request body",
            )
        });
    }
    Ok(Some(
        (StatusCode::ACCEPTED, Json(record.response)).into_response(),
    ))
}

/// Holds an idempotency key while its request runs; a concurrent request with it gets 409.
struct KeyGuard<'a> {
    /// Where it is registered.
    injection: &'a Injection,
    /// The key.
    key: String,
}

impl<'a> KeyGuard<'a> {
    fn take(injection: &'a Injection, key: &str) -> Result<KeyGuard<'a>, ApiError> {
        let mut keys = injection
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !keys.insert(key.to_string()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "a request with this Idempotency-Key is in progress",
            ));
        }
        Ok(KeyGuard {
            injection,
            key: key.to_string(),
        })
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.injection
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Renders, signs, stores and answers.
async fn run(
    state: &Arc<ApiState>,
    request: InjectRequest,
    checked: Checked,
    client: SocketAddr,
    idempotency: Option<(String, String)>,
) -> Result<Response, ApiError> {
    refuse_over_quota(state, &checked.tenant)?;
    let now_ms = state.shaping.clock.now_ms();
    let outcomes = build_all(state, request.clone(), checked, now_ms).await?;
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut messages = Vec::new();
    for (address, outcome) in request.recipients.iter().map(|r| r.address.clone()).zip(outcomes) {
        match outcome {
            Outcome::Message(message) => {
                accepted.push(json!({"address": address, "id": message.id.to_string()}));
                messages.push(message);
            }
            Outcome::Rejected(reason) => rejected.push(json!({"address": address, "reason": reason})),
        }
    }
    let answer = json!({"accepted": accepted, "rejected": rejected});
    let control = idempotency
        .map(|(key, body_sha256)| {
            let record = IdempotencyRecord {
                body_sha256,
                response: answer.clone(),
                created_ms: now_ms,
            };
            (key, serde_json::to_vec(&record).unwrap_or_default())
        })
        .into_iter()
        .collect::<Vec<_>>();
    store(state, messages, control, client.ip(), now_ms).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// 429 when the tenant's daily quota is used up already.
fn refuse_over_quota(state: &ApiState, tenant: &Tenant) -> Result<(), ApiError> {
    let Some(quota) = tenant.daily_quota else {
        return Ok(());
    };
    // With [cluster] the fleet's count: the other nodes' last known counts are added (never waited on).
    let now_ms = state.shaping.clock.now_ms();
    let accepted =
        crate::cluster::fleet_accepted_today(&state.spool, state.cluster.as_ref(), &tenant.name, now_ms)?;
    if accepted >= quota {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "daily quota of {quota} recipients reached for tenant {}; try again after 00:00 UTC",
                tenant.name
            ),
        ));
    }
    Ok(())
}

/// Every recipient's message (rendered, with unsubscribe link and signature) or refusal, off the
/// runtime.
async fn build_all(
    state: &Arc<ApiState>,
    request: InjectRequest,
    checked: Checked,
    now_ms: u64,
) -> Result<Vec<Outcome>, ApiError> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        request
            .recipients
            .iter()
            .map(|recipient| build_one(&state, &request, &checked, recipient, now_ms))
            .collect()
    })
    .await
    .map_err(|join| ApiError::internal(join.to_string()))
}

/// One recipient: address check, suppression (with its event and count), rendering, finishing.
fn build_one(
    state: &ApiState,
    request: &InjectRequest,
    checked: &Checked,
    recipient: &inject::InjectRecipient,
    now_ms: u64,
) -> Outcome {
    let address = &recipient.address;
    if let Err(why) = inject::valid_address(address) {
        return Outcome::Rejected(format!("invalid address: {why}"));
    }
    match state.spool.suppression(&checked.tenant.name, address) {
        Ok(Some(entry)) => {
            suppressed(state, checked, address, entry.reason.as_str(), now_ms);
            return Outcome::Rejected(format!("suppressed: {}", entry.reason.as_str()));
        }
        Ok(None) => {}
        Err(error) => return Outcome::Rejected(format!("suppression list unreadable: {error}")),
    }
    let id = state.injection.ids.next_id();
    let envelope = inject::Envelope {
        from: &checked.from,
        reply_to: checked.reply_to.as_ref(),
        message_id: format!("{id}@{}", state.injection.hostname),
        date: now_ms / 1000,
    };
    let body = match inject::render_message(request, &checked.templates, recipient, &envelope) {
        Ok(body) => body,
        Err(why) => return Outcome::Rejected(format!("template: {why}")),
    };
    let message = NewMessage {
        id,
        envelope: Envelope {
            tenant: checked.tenant.name.clone(),
            campaign: checked.campaign.clone(),
            pool: checked.pool.clone(),
            sender: checked.from.address.clone(),
            recipients: vec![Recipient::queued(address.clone())],
            size: body.len() as u64,
            received_at_ms: now_ms,
            next_attempt_at_ms: now_ms,
            smtputf8: !address.is_ascii() || !checked.from.address.is_ascii(),
            eight_bit: body.iter().any(|&b| b > 127),
            warmup_priority: recipient.warmup_priority == inject::WarmupPriority::High,
        },
        body,
    };
    match finish(&state.injection, message, &checked.tenant) {
        Ok(mut finished) if !finished.messages.is_empty() => Outcome::Message(finished.messages.remove(0)),
        Ok(_) => Outcome::Rejected("nothing to store".into()),
        Err(reply) => Outcome::Rejected(reply.lines.join(" ")),
    }
}

/// List-Unsubscribe and DKIM, as for SMTP (on this blocking thread).
fn finish(
    injection: &Injection,
    message: NewMessage,
    tenant: &Tenant,
) -> Result<Finished, crate::smtp::reply::Reply> {
    match injection
        .finisher
        .prepare(message, tenant, || injection.ids.next_id())?
    {
        Prepared::Ready(finished) => Ok(finished),
        Prepared::Sign(job) => injection.finisher.sign(job),
    }
}

/// The `suppressed` event and count of a refused recipient.
fn suppressed(state: &ApiState, checked: &Checked, address: &str, reason: &'static str, now_ms: u64) {
    let mut counts = Counts::new();
    Tally::new(&checked.tenant.name, &checked.campaign, now_ms).add(&mut counts, "suppressed", None, 1);
    if let Err(error) = state.spool.add_counts(&counts) {
        tracing::warn!(%error, "cannot count a suppressed recipient");
    }
    let mut event = Event::about_address(
        EventKind::Suppressed,
        now_ms,
        &checked.tenant.name,
        &checked.campaign,
        address,
        reason,
    );
    event.sender = checked.from.address.clone();
    state.events.emit(event);
}

/// Stores the messages (with their usage counts and the idempotency record) in one synced batch, then
/// emits their receptions and wakes delivery.
async fn store(
    state: &ApiState,
    messages: Vec<NewMessage>,
    control: Vec<(String, Vec<u8>)>,
    client_ip: std::net::IpAddr,
    now_ms: u64,
) -> Result<(), ApiError> {
    let mut counts = Counts::new();
    let receptions: Vec<Event> = messages
        .iter()
        .map(|message| {
            if let Some(tally) = Tally::of(&message.envelope, now_ms) {
                tally.add(&mut counts, "accepted", None, 1);
            }
            Event {
                timestamp: now_ms,
                ..crate::smtp::connection::reception_event(message, None, client_ip)
            }
        })
        .collect();
    if messages.is_empty() {
        for (key, value) in control {
            state.spool.put_control(&key, &value)?;
        }
        return Ok(());
    }
    let outbox = state.events.outbox(&receptions);
    let in_outbox = !outbox.is_empty();
    state
        .spool
        .enqueue_with_extras(messages, counts, control, outbox)
        .await?;
    for event in receptions {
        state.events.emit(Event { in_outbox, ..event });
    }
    state.injection.wakeup.notify_one();
    Ok(())
}

/// `POST /v1/messages/preview`: the first recipient's message as it would be queued (before DKIM and
/// List-Unsubscribe), nothing stored: `{"address", "message"}`; 400 when it cannot be rendered.
#[utoipa::path(post, path = "/v1/messages/preview", tag = "injection", request_body = InjectRequest,
    responses((status = 200, description = "`{\"address\", \"message\"}`: the MIME text", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn preview(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: InjectRequest = serde_json::from_slice(&body).map_err(|e| ApiError::from_json(&e))?;
    let checked = check(&state, &principal, &request)?;
    let recipient = &request.recipients[0];
    let envelope = inject::Envelope {
        from: &checked.from,
        reply_to: checked.reply_to.as_ref(),
        message_id: format!("preview@{}", state.injection.hostname),
        date: state.shaping.clock.now_ms() / 1000,
    };
    let message = inject::render_message(&request, &checked.templates, recipient, &envelope)
        .map_err(|why| ApiError::field("recipients[0]", why))?;
    Ok(Json(json!({
        "address": recipient.address,
        "message": String::from_utf8_lossy(&message),
    }))
    .into_response())
}
