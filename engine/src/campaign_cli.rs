//! `penguin-mta campaign list|pause|resume|cancel TENANT [CAMPAIGN]`: a tenant's campaigns on a running
//! server over its API (`/v1/tenants/{t}/campaigns…`), found and authenticated like the shaping
//! commands (`--api`/`--config`, `--token`/`PENGUIN_API_TOKEN`; an admin token or the tenant's key).

use std::io::Write;

use clap::{Args, Subcommand};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_client::path_segment;
use crate::shaping_cli::{ApiArgs, get_json, unexpected, write_raw};

/// `campaign` subcommands.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// List a tenant's campaigns: state and counts.
    List(CampaignListArgs),
    /// Pause a campaign: its queued mail waits (no attempts) until resumed.
    Pause(CampaignArgs),
    /// Resume a paused campaign.
    Resume(CampaignArgs),
    /// Cancel a campaign for good: its queued recipients are removed, new mail for it is refused.
    Cancel(CampaignArgs),
}

/// `campaign list`.
#[derive(Debug, Args)]
pub struct CampaignListArgs {
    /// Where the API is.
    #[command(flatten)]
    api: ApiArgs,
    /// The tenant.
    tenant: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `campaign pause|resume|cancel`.
#[derive(Debug, Args)]
pub struct CampaignArgs {
    /// Where the API is.
    #[command(flatten)]
    api: ApiArgs,
    /// The tenant.
    tenant: String,
    /// The campaign (its X-Campaign-ID).
    campaign: String,
}

/// Runs a campaign command on a small runtime of its own.
pub fn run(command: CampaignCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    runtime.block_on(async {
        match command {
            CampaignCommand::List(args) => list(&args, &mut out).await,
            CampaignCommand::Pause(args) => change(&args, "pause", &mut out).await,
            CampaignCommand::Resume(args) => change(&args, "resume", &mut out).await,
            CampaignCommand::Cancel(args) => change(&args, "cancel", &mut out).await,
        }
    })?;
    out.flush()?;
    Ok(())
}

/// `campaign list TENANT [--json]`: every page of the list.
async fn list(args: &CampaignListArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let base = format!("/v1/tenants/{}/campaigns?limit=1000", path_segment(&args.tenant));
    let mut campaigns: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let path = match &after {
            Some(after) => format!("{base}&after={}", path_segment(after)),
            None => base.clone(),
        };
        let (_, page) = get_json(&client, &path).await?;
        campaigns.extend(page["campaigns"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    if args.json {
        let body = json!({ "tenant": args.tenant, "campaigns": campaigns });
        return Ok(write_raw(out, body.to_string().as_bytes())?);
    }
    writeln!(
        out,
        "{:<32} {:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "campaign", "state", "accepted", "queued", "delivered", "bounced", "deferred", "cancelled"
    )?;
    for campaign in &campaigns {
        let number = |field: &str| campaign[field].as_i64().unwrap_or(0);
        writeln!(
            out,
            "{:<32} {:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            campaign["name"].as_str().unwrap_or(""),
            campaign["state"].as_str().unwrap_or(""),
            number("accepted"),
            number("queued"),
            number("delivered"),
            number("bounced"),
            number("deferred"),
            number("cancelled"),
        )?;
    }
    Ok(())
}

/// `campaign pause|resume|cancel TENANT CAMPAIGN`: prints the campaign as JSON.
async fn change(args: &CampaignArgs, action: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let path = format!(
        "/v1/tenants/{}/campaigns/{}/{action}",
        path_segment(&args.tenant),
        path_segment(&args.campaign)
    );
    let response = client.request(Method::POST, &path, None).await?;
    match response.status {
        StatusCode::OK => Ok(write_raw(out, &response.body)?),
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::CONFLICT => {
            anyhow::bail!("{}", response.error_message())
        }
        _ => anyhow::bail!(unexpected(&client, &response)),
    }
}
