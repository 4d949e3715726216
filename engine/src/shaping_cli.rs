//! `penguin-mta shaping|suspend|resume|suspensions`: traffic shaping of a running server, over its HTTP
//! API (`GET /v1/shaping`, `POST`/`GET /v1/suspensions`, `DELETE /v1/suspensions/{id}`).
//!
//! The API is found at `--api URL` if given, else at `api.listen` of `--config FILE`, else at the
//! embedded default config's (`127.0.0.1:8025`); `--token TOKEN` (or `PENGUIN_API_TOKEN`) is sent as
//! the bearer token. `--json` prints the API's JSON as received.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api_client::{ApiClient, ApiResponse, path_segment};
use crate::cli::load_config;

/// The commands that talk to the API.
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Show the ready queues of the running server, one per (egress source, destination site):
    /// queued mail, connections, the rate in force, suspensions, the last throttling reply.
    Shaping(ListArgs),
    /// Stop sending the mail of a tenant, campaign, recipient domain, provider and/or source for a
    /// while (queued mail waits; nothing bounces). Prints the suspension (JSON) with its id.
    Suspend(SuspendArgs),
    /// Lift a suspension before its time, by id (see `suspensions`).
    Resume(ResumeArgs),
    /// List the suspensions in force.
    Suspensions(ListArgs),
}

/// How to reach the API: `--api` wins, else `--config`'s `api.listen`, else the embedded default's.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The API's URL, e.g. `http://127.0.0.1:8025` (takes precedence over --config).
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// Config file of the running server: its `api.listen` is used (default: the embedded default
    /// config's, 127.0.0.1:8025).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The API token (an admin token of `[[api.token]]`, or a tenant API key).
    #[arg(long, value_name = "TOKEN", env = "PENGUIN_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// A listing: where, and the format.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Where the API is.
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `suspend`: the scope (at least one of tenant, campaign, domain, provider, source), how long, why.
#[derive(Debug, Args)]
pub struct SuspendArgs {
    /// Where the API is.
    #[command(flatten)]
    api: ApiArgs,
    /// How long, e.g. `30m`, `2h`, `1d` (at most 366d).
    #[arg(long, value_name = "DURATION")]
    duration: String,
    /// Only this tenant's mail.
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    /// Only this campaign's mail.
    #[arg(long, value_name = "CAMPAIGN")]
    campaign: Option<String>,
    /// Only mail to this recipient domain.
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// Only mail to this provider's sites (a built-in or `[[provider]]` name, or `other`).
    #[arg(long, value_name = "PROVIDER")]
    provider: Option<String>,
    /// Only mail sent from this `[[source]]`.
    #[arg(long, value_name = "SOURCE")]
    source: Option<String>,
    /// Why (shown in listings and events).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

/// `resume ID`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Where the API is.
    #[command(flatten)]
    api: ApiArgs,
    /// The suspension's id (as printed by `suspend` and `suspensions`).
    id: String,
}

impl ApiArgs {
    /// The client for the API these arguments name.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        let client = match &self.api {
            Some(url) => ApiClient::from_url(url)?,
            None => ApiClient::from_listen(load_config(self.config.as_deref())?.api.listen),
        };
        Ok(client.with_token(self.token.clone()))
    }
}

/// Runs an API command on a small runtime of its own.
pub fn run(command: ApiCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    runtime.block_on(async {
        match command {
            ApiCommand::Shaping(args) => shaping(&args, &mut out).await,
            ApiCommand::Suspend(args) => suspend(&args, &mut out).await,
            ApiCommand::Resume(args) => resume(&args, &mut out).await,
            ApiCommand::Suspensions(args) => suspensions(&args, &mut out).await,
        }
    })?;
    out.flush()?;
    Ok(())
}

/// `GET path`, which must answer 200 with JSON; returns the answer and its parsed body.
pub(crate) async fn get_json(client: &ApiClient, path: &str) -> anyhow::Result<(ApiResponse, Value)> {
    let response = client.request(Method::GET, path, None).await?;
    if response.status != StatusCode::OK {
        anyhow::bail!(unexpected(client, &response));
    }
    let value = serde_json::from_slice(&response.body)
        .with_context(|| format!("the API at {} answered invalid JSON", client.url()))?;
    Ok((response, value))
}

/// The error of an answer with an unexpected status.
pub(crate) fn unexpected(client: &ApiClient, response: &ApiResponse) -> String {
    format!(
        "the API at {} answered {}: {}",
        client.url(),
        response.status,
        response.error_message()
    )
}

/// Writes a body as received, ending in a newline.
pub(crate) fn write_raw(out: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    out.write_all(body)?;
    if !body.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A listing command's answer: `GET path`, printed as received with `--json` (then None), else
/// parsed for a table.
pub(crate) async fn listing<T: serde::de::DeserializeOwned>(
    args: &ListArgs,
    path: &str,
    out: &mut impl Write,
) -> anyhow::Result<Option<T>> {
    let client = args.api.client()?;
    let (response, value) = get_json(&client, path).await?;
    if args.json {
        write_raw(out, &response.body)?;
        return Ok(None);
    }
    let parsed = serde_json::from_value(value)
        .with_context(|| format!("unexpected answer of {}{path}", client.url()))?;
    Ok(Some(parsed))
}

/// `shaping [--json]`.
async fn shaping(args: &ListArgs, out: &mut impl Write) -> anyhow::Result<()> {
    match listing::<ShapingList>(args, "/v1/shaping", out).await? {
        Some(view) => Ok(write_queues(&view.queues, out)?),
        None => Ok(()),
    }
}

/// `suspensions [--json]`.
async fn suspensions(args: &ListArgs, out: &mut impl Write) -> anyhow::Result<()> {
    match listing::<SuspensionList>(args, "/v1/suspensions", out).await? {
        Some(list) => Ok(write_suspensions(&list.suspensions, out)?),
        None => Ok(()),
    }
}

/// `suspend`: prints the created suspension as the API answered it; a refusal (400) is the error.
async fn suspend(args: &SuspendArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let response = client
        .request(Method::POST, "/v1/suspensions", Some(suspend_body(args)))
        .await?;
    match response.status {
        StatusCode::CREATED => Ok(write_raw(out, &response.body)?),
        StatusCode::BAD_REQUEST => anyhow::bail!("{}", response.error_message()),
        _ => anyhow::bail!(unexpected(&client, &response)),
    }
}

/// The JSON body of `POST /v1/suspensions`: the given fields only.
fn suspend_body(args: &SuspendArgs) -> Vec<u8> {
    let mut body = Map::new();
    let fields = [
        ("tenant", &args.tenant),
        ("campaign", &args.campaign),
        ("domain", &args.domain),
        ("provider", &args.provider),
        ("source", &args.source),
        ("reason", &args.reason),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            body.insert(name.to_owned(), Value::String(value.clone()));
        }
    }
    body.insert("duration".to_owned(), Value::String(args.duration.clone()));
    Value::Object(body).to_string().into_bytes()
}

/// `resume ID`: 204 → done; 404 → no such suspension (an error).
async fn resume(args: &ResumeArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let path = format!("/v1/suspensions/{}", path_segment(&args.id));
    let response = client.request(Method::DELETE, &path, None).await?;
    match response.status {
        StatusCode::NO_CONTENT => Ok(writeln!(out, "suspension {} lifted", args.id)?),
        StatusCode::NOT_FOUND => anyhow::bail!(
            "no suspension {:?}: the id is unknown or the suspension has already ended \
             (`penguin-mta suspensions` lists those in force)",
            args.id
        ),
        _ => anyhow::bail!(unexpected(&client, &response)),
    }
}

// ---- Tables ----

/// `GET /v1/shaping`, the fields the table shows.
#[derive(Debug, Deserialize)]
struct ShapingList {
    /// The ready queues.
    queues: Vec<QueueRow>,
}

/// One ready queue.
#[derive(Debug, Deserialize)]
struct QueueRow {
    /// Source name.
    source: String,
    /// Site name.
    site: String,
    /// Provider name.
    provider: String,
    /// Items waiting.
    queued: u64,
    /// Connections open or opening.
    connections: u64,
    /// The rate in force, messages per second; null = unlimited.
    effective_rate: Option<f64>,
    /// Until when it is suspended.
    suspended_until: Option<String>,
    /// Why.
    suspended_reason: Option<String>,
    /// The last throttling reply.
    last_throttle: Option<ThrottleRow>,
}

/// The last throttling reply of a queue.
#[derive(Debug, Deserialize)]
struct ThrottleRow {
    /// When.
    at: String,
    /// The reply.
    reply: String,
}

/// `GET /v1/suspensions`.
#[derive(Debug, Deserialize)]
struct SuspensionList {
    /// The suspensions in force.
    suspensions: Vec<SuspensionRow>,
}

/// One suspension.
#[derive(Debug, Deserialize)]
struct SuspensionRow {
    /// Its id.
    id: String,
    /// What it holds (unset fields null).
    scope: Map<String, Value>,
    /// When it ends.
    until: String,
    /// Why.
    #[serde(default)]
    reason: String,
    /// When it was made.
    created: String,
}

/// The ready queues as a table, or a line saying there are none.
fn write_queues(queues: &[QueueRow], out: &mut impl Write) -> std::io::Result<()> {
    if queues.is_empty() {
        return writeln!(
            out,
            "no ready queues: none has queued mail, connections, a suspension or a reduced rate"
        );
    }
    let header = [
        "SOURCE",
        "SITE",
        "PROVIDER",
        "QUEUED",
        "CONNS",
        "RATE",
        "SUSPENDED UNTIL",
        "LAST THROTTLE",
    ];
    let rows = queues
        .iter()
        .map(|q| {
            let suspended = match (&q.suspended_until, q.suspended_reason.as_deref()) {
                (None, _) => "-".to_owned(),
                (Some(until), None | Some("")) => until.clone(),
                (Some(until), Some(reason)) => format!("{until} ({reason})"),
            };
            let throttle = q
                .last_throttle
                .as_ref()
                .map_or_else(|| "-".to_owned(), |t| format!("{} {}", t.at, t.reply));
            vec![
                q.source.clone(),
                q.site.clone(),
                q.provider.clone(),
                q.queued.to_string(),
                q.connections.to_string(),
                q.effective_rate.map_or_else(|| "-".to_owned(), format_rate),
                suspended,
                throttle,
            ]
        })
        .collect();
    write_table(out, &header, rows)
}

/// The suspensions as a table, or a line saying there are none.
fn write_suspensions(list: &[SuspensionRow], out: &mut impl Write) -> std::io::Result<()> {
    if list.is_empty() {
        return writeln!(out, "no suspensions in force");
    }
    let header = ["ID", "SCOPE", "UNTIL", "CREATED", "REASON"];
    let rows = list
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                scope_text(&s.scope),
                s.until.clone(),
                s.created.clone(),
                if s.reason.is_empty() {
                    "-".to_owned()
                } else {
                    s.reason.clone()
                },
            ]
        })
        .collect();
    write_table(out, &header, rows)
}

/// A scope as `tenant=acme domain=example.com` (set fields only, in a fixed order).
fn scope_text(scope: &Map<String, Value>) -> String {
    const ORDER: [&str; 5] = ["tenant", "campaign", "domain", "provider", "source"];
    let known = ORDER.iter().filter_map(|&key| Some((key, scope.get(key)?)));
    let others = scope
        .iter()
        .filter(|(key, _)| !ORDER.contains(&key.as_str()))
        .map(|(key, value)| (key.as_str(), value));
    let parts: Vec<String> = known
        .chain(others)
        .filter_map(|(key, value)| match value {
            Value::Null => None,
            Value::String(text) => Some(format!("{key}={text}")),
            other => Some(format!("{key}={other}")),
        })
        .collect();
    parts.join(" ")
}

/// Left-aligned columns two spaces apart; the last column is not padded (it may be long).
fn write_table(out: &mut impl Write, header: &[&str], rows: Vec<Vec<String>>) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(index).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A rate (messages per second) in the config's notation: the first of `/s`, `/min`, `/h`, `/d` in
/// which it is a whole number (`0.5` → `30/min`), else with two decimals in the first unit where it is
/// at least 1 (`1.234` → `1.23/s`).
fn format_rate(per_second: f64) -> String {
    const UNITS: [(&str, f64); 4] = [("s", 1.0), ("min", 60.0), ("h", 3600.0), ("d", 86_400.0)];
    if !per_second.is_finite() || per_second <= 0.0 {
        return format!("{per_second}/s");
    }
    for (unit, seconds) in UNITS {
        let value = per_second * seconds;
        let whole = value.round();
        if whole >= 1.0 && (value - whole).abs() <= 1e-6 * value {
            return format!("{whole}/{unit}");
        }
    }
    let (unit, seconds) = UNITS
        .into_iter()
        .find(|(_, seconds)| per_second * seconds >= 1.0)
        .unwrap_or(UNITS[3]);
    let text = format!("{:.2}", per_second * seconds);
    format!("{}/{unit}", text.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests;
