//! `penguin-mta cluster status [--json]`: the running server's view of the cluster over its API
//! (`GET /v1/cluster`, admin token), as a table or as the API's JSON.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;

use crate::api::cluster::ClusterStatus;
use crate::shaping_cli::ListArgs;

/// `cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show this node's id, Redis's state and the nodes heard of (id, version, last heartbeat, queue
    /// size; `*` marks the node that answers).
    Status(ListArgs),
}

/// Runs a cluster command on a small runtime of its own.
pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match command {
        ClusterCommand::Status(args) => runtime.block_on(status(&args, &mut out))?,
    }
    out.flush()?;
    Ok(())
}

/// `cluster status [--json]`.
async fn status(args: &ListArgs, out: &mut impl Write) -> anyhow::Result<()> {
    match crate::shaping_cli::listing::<ClusterStatus>(args, "/v1/cluster", out).await? {
        Some(status) => Ok(write_status(&status, out)?),
        None => Ok(()),
    }
}

/// The human form of a status.
pub fn write_status(status: &ClusterStatus, out: &mut impl Write) -> std::io::Result<()> {
    let (Some(node), Some(redis)) = (&status.node, &status.redis) else {
        return writeln!(out, "no [cluster] configured: this node runs on its own");
    };
    let state = if redis.up { "up" } else { "DOWN" };
    writeln!(out, "node {node}, redis {} {state}", redis.url)?;
    writeln!(
        out,
        "  {:<24} {:<10} {:<26} {:>10}",
        "NODE", "VERSION", "LAST HEARTBEAT", "QUEUED"
    )?;
    for entry in &status.nodes {
        writeln!(
            out,
            "{} {:<24} {:<10} {:<26} {:>10}",
            if entry.is_self { '*' } else { ' ' },
            entry.id,
            entry.version,
            entry.last_heartbeat.as_deref().unwrap_or("-"),
            entry.queue_size,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cluster::{ClusterNode, RedisStatus};

    fn text(status: &ClusterStatus) -> String {
        let mut out = Vec::new();
        write_status(status, &mut out).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn tables() {
        assert_eq!(
            text(&ClusterStatus::of(None)),
            "no [cluster] configured: this node runs on its own\n"
        );
        let node = |id: &str, is_self, last: Option<&str>| ClusterNode {
            id: id.into(),
            version: "0.1.0".into(),
            last_heartbeat: last.map(str::to_owned),
            queue_size: 12,
            is_self,
        };
        let status = ClusterStatus {
            node: Some("node-a".into()),
            redis: Some(RedisStatus {
                url: "redis://127.0.0.1:6379/0".into(),
                up: false,
            }),
            nodes: vec![
                node("node-a", true, None),
                node("node-b", false, Some("2026-12-03T10:00:00.000Z")),
            ],
        };
        let table = text(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "node node-a, redis redis://127.0.0.1:6379/0 DOWN");
        assert!(
            lines[2].starts_with("* node-a ") && lines[2].contains(" - "),
            "{table}"
        );
        assert!(lines[3].starts_with("  node-b ") && lines[3].contains("2026-12-03T10:00:00.000Z"));
        assert!(lines[3].trim_end().ends_with("12"), "{table}");
    }
}
