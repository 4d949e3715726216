//! `penguin-mta check-domain DOMAIN --config FILE [--selector S] [--ip IP] [--json]`.
//!
//! Exit codes: 0 when no check fails (warnings allowed), 1 when one fails, 2 on usage or config errors.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::{CheckRequest, DomainReport, Status, check_domain};

/// Arguments of `check-domain`.
#[derive(Debug, clap::Args)]
pub struct CheckDomainArgs {
    /// The domain to check.
    pub domain: String,
    /// Config file (TOML): its name servers (`[dns]`), DKIM keys, EHLO name (`smtp.hostname`) and
    /// egress IP (`delivery.source_ip`) are used.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// DKIM selector to check (repeatable, or comma-separated); default: the selectors that sign for
    /// the domain (`dkim.selectors` or its `[[dkim.domain]]` entry).
    #[arg(long = "selector", value_name = "S", value_delimiter = ',')]
    pub selectors: Vec<String>,
    /// Egress IP that mail leaves from (repeatable, or comma-separated); default: `delivery.source_ip`.
    #[arg(long = "ip", value_name = "IP", value_delimiter = ',')]
    pub ips: Vec<IpAddr>,
    /// Print the report as JSON: `{"domain", "checks": [{"name", "status", "detail", "fix"}]}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `check-domain`: 0 when no check fails, 1 when one does, 2 when the checks cannot run.
pub fn run(args: CheckDomainArgs) -> ExitCode {
    let report = match checks(&args) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("penguin-mta: {error:#}");
            return ExitCode::from(2);
        }
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(error) => {
                eprintln!("penguin-mta: cannot serialise the report: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        human(&report)
    };
    // A closed stdout (`| head`) is not an error worth a panic; the exit code still tells.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Loads the config and runs the checks on a small runtime.
fn checks(args: &CheckDomainArgs) -> anyhow::Result<DomainReport> {
    let config = crate::cli::load_config(Some(&args.config))?;
    let request = CheckRequest {
        selectors: args.selectors.clone(),
        egress_ips: args.ips.clone(),
        config_file: Some(args.config.clone()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(check_domain(&config, &args.domain, &request))?;
    Ok(report)
}

/// The human report: one line per check (`spf    pass  detail`), its fix lines indented below, and
/// a summary line.
pub fn human(report: &DomainReport) -> String {
    let mut out = String::new();
    for check in &report.checks {
        out.push_str(&format!(
            "{:<6} {:<5} {}\n",
            check.name.as_str(),
            check.status.as_str(),
            check.detail
        ));
        if let Some(fix) = &check.fix {
            for (index, line) in fix.lines().enumerate() {
                let label = if index == 0 { "fix: " } else { "     " };
                out.push_str(&format!("{:7}{label}{line}\n", ""));
            }
        }
    }
    let count = |status| {
        report
            .checks
            .iter()
            .filter(|check| check.status == status)
            .count()
    };
    let (failed, warned) = (count(Status::Fail), count(Status::Warn));
    out.push_str(&match (failed, warned) {
        (0, 0) => format!("{}: every check passes\n", report.domain),
        _ => format!("{}: {failed} failed, {warned} warning(s)\n", report.domain),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Check, CheckName};
    use super::*;

    #[test]
    fn the_human_report_has_a_line_per_check_and_indented_fixes() {
        let report = DomainReport {
            domain: "example.com".into(),
            checks: vec![
                Check {
                    name: CheckName::Spf,
                    status: Status::Pass,
                    detail: "ok".into(),
                    fix: None,
                },
                Check {
                    name: CheckName::Dkim,
                    status: Status::Fail,
                    detail: "missing".into(),
                    fix: Some("line one\nline two".into()),
                },
            ],
        };
        assert_eq!(
            human(&report),
            "spf    pass  ok\n\
             dkim   fail  missing\n       fix: line one\n            line two\n\
             example.com: 1 failed, 0 warning(s)\n"
        );
    }
}
