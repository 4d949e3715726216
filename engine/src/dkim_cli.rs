//! `penguin-mta dkim ...` (skeleton, filled by the DKIM work).

use clap::Subcommand;

/// `dkim` subcommands.
#[derive(Debug, Subcommand)]
pub enum DkimCommand {}

/// Runs a `dkim` subcommand.
pub fn run(command: DkimCommand) -> anyhow::Result<()> {
    match command {}
}
