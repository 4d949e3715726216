//! `penguin-mta tenant list|create|delete`: the tenants of a running server over its API
//! (`GET/POST /v1/tenants`, `DELETE /v1/tenants/{name}`; an admin token), found and authenticated like
//! the shaping commands (`--api`/`--config`, `--token`/`PENGUIN_API_TOKEN`).

use std::io::Write;

use clap::{Args, Subcommand};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_client::path_segment;
use crate::shaping_cli::{ApiArgs, get_json, unexpected, write_raw};

/// `tenant` subcommands.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List the tenants (config file and API): name, source, sender domains.
    List(TenantListArgs),
    /// Make a tenant over the API; prints it as JSON.
    Create(TenantCreateArgs),
    /// Delete a tenant made over the API (its logins and API keys stop; queued mail is delivered).
    Delete(TenantDeleteArgs),
}

/// `tenant list`.
#[derive(Debug, Args)]
pub struct TenantListArgs {
    /// Where the API is.
    #[command(flatten)]
    api: ApiArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `tenant create`.
#[derive(Debug, Args)]
pub struct TenantCreateArgs {
    /// Where the API is.
    #[command(flatten)]
    api: ApiArgs,
    /// The tenant's name (1-64 of A-Z a-z 0-9 . _ -).
    name: String,
    /// A domain it may use in MAIL FROM (repeat for several; at least one).
    #[arg(long = "sender-domain", value_name = "DOMAIN", required = true)]
    sender_domains: Vec<String>,
    /// Its IP pools, the default first (repeatable; default: the pool "default").
    #[arg(long = "pool", value_name = "POOL")]
    pools: Vec<String>,
    /// Send no DSNs to its senders.
    #[arg(long)]
    no_dsn: bool,
    /// Add one-click unsubscribe headers to its mail.
    #[arg(long)]
    list_unsubscribe: bool,
}

/// `tenant delete`.
#[derive(Debug, Args)]
pub struct TenantDeleteArgs {
    /// Where the API is.
    #[command(flatten)]
    api: ApiArgs,
    /// The tenant's name.
    name: String,
}

/// Runs a tenant command on a small runtime of its own.
pub fn run(command: TenantCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    runtime.block_on(async {
        match command {
            TenantCommand::List(args) => list(&args, &mut out).await,
            TenantCommand::Create(args) => create(&args, &mut out).await,
            TenantCommand::Delete(args) => delete(&args).await,
        }
    })?;
    out.flush()?;
    Ok(())
}

/// `tenant list [--json]`: every page of `GET /v1/tenants`.
async fn list(args: &TenantListArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let mut tenants: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let path = match &after {
            Some(after) => format!("/v1/tenants?limit=1000&after={}", path_segment(after)),
            None => "/v1/tenants?limit=1000".to_string(),
        };
        let (_, page) = get_json(&client, &path).await?;
        tenants.extend(page["tenants"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    if args.json {
        return Ok(write_raw(
            out,
            json!({ "tenants": tenants }).to_string().as_bytes(),
        )?);
    }
    writeln!(out, "{:<24} {:<7} sender domains", "tenant", "source")?;
    for tenant in &tenants {
        let domains: Vec<&str> = tenant["sender_domains"]
            .as_array()
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        writeln!(
            out,
            "{:<24} {:<7} {}",
            tenant["name"].as_str().unwrap_or(""),
            tenant["source"].as_str().unwrap_or(""),
            domains.join(" ")
        )?;
    }
    Ok(())
}

/// `tenant create NAME --sender-domain D ...`: prints the created tenant; a refusal is the error.
async fn create(args: &TenantCreateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let mut body = json!({
        "name": args.name,
        "sender_domains": args.sender_domains,
        "dsn": !args.no_dsn,
        "list_unsubscribe": args.list_unsubscribe,
    });
    if !args.pools.is_empty() {
        body["pools"] = json!(args.pools);
    }
    let response = client
        .request(Method::POST, "/v1/tenants", Some(body.to_string().into_bytes()))
        .await?;
    match response.status {
        StatusCode::CREATED => Ok(write_raw(out, &response.body)?),
        StatusCode::BAD_REQUEST | StatusCode::CONFLICT => anyhow::bail!("{}", response.error_message()),
        _ => anyhow::bail!(unexpected(&client, &response)),
    }
}

/// `tenant delete NAME`.
async fn delete(args: &TenantDeleteArgs) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let path = format!("/v1/tenants/{}", path_segment(&args.name));
    let response = client.request(Method::DELETE, &path, None).await?;
    match response.status {
        StatusCode::NO_CONTENT => Ok(()),
        StatusCode::NOT_FOUND | StatusCode::CONFLICT => anyhow::bail!("{}", response.error_message()),
        _ => anyhow::bail!(unexpected(&client, &response)),
    }
}
