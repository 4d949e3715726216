//! `penguin-mta queue ls|summary`: read-only views of the spool (safe while the server runs).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use penguin_queue::{Envelope, MessageId, QueueSummary, RecipientState, SpoolReader};
use serde_json::json;

use crate::cli::load_config;
use crate::timefmt;

/// Queue subcommands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages (one JSON object per line with --json).
    Ls(QueueArgs),
    /// Counts by tenant, campaign and recipient domain.
    Summary(QueueArgs),
}

/// Where the spool is, and the output format.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Spool directory (default: spool.path of --config, else of the embedded default config).
    #[arg(long, value_name = "PATH")]
    spool: Option<PathBuf>,
    /// Config file whose spool.path to use.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

impl QueueArgs {
    /// The spool directory to open.
    fn spool_path(&self) -> anyhow::Result<PathBuf> {
        match &self.spool {
            Some(path) => Ok(path.clone()),
            None => Ok(load_config(self.config.as_deref())?.spool.path),
        }
    }
}

/// Runs a queue subcommand.
pub fn run(command: QueueCommand) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match command {
        QueueCommand::Ls(args) => list(&open(&args.spool_path()?)?, args.json, &mut out)?,
        QueueCommand::Summary(args) => summarise(&open(&args.spool_path()?)?, args.json, &mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// Opens the spool read-only.
fn open(path: &Path) -> anyhow::Result<SpoolReader> {
    SpoolReader::open(path).with_context(|| format!("cannot open the spool at {}", path.display()))
}

/// The state name used in listings.
fn state_name(state: &RecipientState) -> &'static str {
    match state {
        RecipientState::Queued => "queued",
        RecipientState::Delivered => "delivered",
        RecipientState::Bounced => "bounced",
        RecipientState::Expired => "expired",
        RecipientState::Cancelled => "cancelled",
    }
}

/// The JSON object of one message (`queue ls --json`).
pub fn message_json(id: MessageId, envelope: &Envelope) -> serde_json::Value {
    let recipients: Vec<_> = envelope
        .recipients
        .iter()
        .map(|r| json!({ "address": r.address, "state": state_name(&r.state), "attempts": r.attempts }))
        .collect();
    json!({
        "id": id.to_string(),
        "tenant": envelope.tenant,
        "campaign": envelope.campaign,
        "sender": envelope.sender,
        "recipients": recipients,
        "size": envelope.size,
        "received_at": timefmt::rfc3339_millis(envelope.received_at_ms),
        "next_attempt_at": timefmt::rfc3339_millis(envelope.next_attempt_at_ms),
    })
}

/// `queue ls`.
fn list(reader: &SpoolReader, as_json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    if !as_json {
        writeln!(
            out,
            "{:<24}  {:<16} {:<16} {:>9}  {:<24}  {:<5}  SENDER",
            "ID", "TENANT", "CAMPAIGN", "SIZE", "RECEIVED", "RCPTS"
        )?;
    }
    for item in reader.messages() {
        let (id, envelope) = item?;
        if as_json {
            writeln!(out, "{}", message_json(id, &envelope))?;
        } else {
            let sender = if envelope.sender.is_empty() {
                "<>"
            } else {
                envelope.sender.as_str()
            };
            writeln!(
                out,
                "{id}  {:<16} {:<16} {:>9}  {:<24}  {:<5}  {sender}",
                envelope.tenant,
                envelope.campaign,
                envelope.size,
                timefmt::rfc3339_millis(envelope.received_at_ms),
                envelope.recipients.len(),
            )?;
        }
    }
    Ok(())
}

/// `queue summary`.
fn summarise(reader: &SpoolReader, as_json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let mut summary = QueueSummary::default();
    for item in reader.messages() {
        summary.add(&item?.1);
    }
    if as_json {
        let value = json!({
            "messages": summary.messages,
            "recipients": summary.recipients,
            "by_tenant": summary.by_tenant,
            "by_campaign": summary.by_campaign,
            "by_domain": summary.by_domain,
        });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(
        out,
        "messages: {}  queued recipients: {}",
        summary.messages, summary.recipients
    )?;
    for (title, counts) in [
        ("tenant", &summary.by_tenant),
        ("campaign", &summary.by_campaign),
        ("recipient domain", &summary.by_domain),
    ] {
        writeln!(out, "by {title}:")?;
        for (key, count) in counts {
            writeln!(out, "  {key:<40} {count:>10}")?;
        }
    }
    Ok(())
}
