//! `penguin-mta check-domain` (skeleton).

use std::process::ExitCode;

/// Arguments of `check-domain`.
#[derive(Debug, clap::Args)]
pub struct CheckDomainArgs {
    /// The domain to check.
    pub domain: String,
}

/// Runs `check-domain`; the exit code says whether every check passed.
pub fn run(args: CheckDomainArgs) -> ExitCode {
    eprintln!("penguin-mta: check-domain {} is not built yet", args.domain);
    ExitCode::FAILURE
}
