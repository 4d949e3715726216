//! `penguin-mta warmup …`: IP warm-up plans from the command line.
//!
//! `warmup simulate --plan NAME` prints the ramp a `[[warmup.plan]]` would produce (no server needed:
//! the plan comes from `--config` or the embedded default config). The arithmetic is
//! `penguin_policy::warmup`; this file only reads the config, the date of today (UTC, once, here at the
//! edge) and prints.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use penguin_config::WarmupPlanConfig;
use penguin_policy::warmup::{Plan, SimulatedDay, simulate};
use serde_json::{Value, json};

/// Longest simulation (`--days`): ten years.
const MAX_SIMULATED_DAYS: u32 = 3660;

/// `warmup` subcommands.
#[derive(Debug, Subcommand)]
pub enum WarmupCommand {
    /// Print the ramp a plan would produce, day by day per provider, every day healthy and offered
    /// `--daily-volume` messages per provider (no server needed).
    Simulate(SimulateArgs),
    /// Show every warming source × provider of the running server (over its API, `GET /v1/warmup`):
    /// step, today's cap and count, health, state and why.
    Status(crate::shaping_cli::ListArgs),
}

/// `warmup simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The `[[warmup.plan]]` name.
    #[arg(long, value_name = "NAME")]
    plan: String,
    /// Days to simulate (1-3660).
    #[arg(long, value_name = "N", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SIMULATED_DAYS)))]
    days: u32,
    /// Messages offered to each provider every day.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    daily_volume: u64,
    /// First day of the warm-up (YYYY-MM-DD). Default: today (UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    start: Option<String>,
    /// Print a JSON array instead of tables.
    #[arg(long)]
    json: bool,
    /// Config file (TOML); without it the embedded default config is used.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Runs a warmup command.
pub fn run(command: WarmupCommand) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match command {
        WarmupCommand::Simulate(args) => simulate_command(&args, &mut out)?,
        WarmupCommand::Status(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(status_command(&args, &mut out))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `warmup status [--json]`: the API's rows, as a table or as received.
async fn status_command(args: &crate::shaping_cli::ListArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let rows: Vec<crate::warmup::WarmupRow> =
        match crate::shaping_cli::listing(args, "/v1/warmup", out).await? {
            Some(rows) => rows,
            None => return Ok(()),
        };
    if rows.is_empty() {
        writeln!(out, "no source is warming up")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<12} {:<12} {:>4} {:>8} {:>8} {:>8} {:>8} {:<13} REASON",
        "SOURCE", "PROVIDER", "PLAN", "STEP", "CAP", "SENT", "DEFER%", "BOUNCE%", "STATE"
    )?;
    for row in rows {
        let dash = || "-".to_owned();
        writeln!(
            out,
            "{:<16} {:<12} {:<12} {:>4} {:>8} {:>8} {:>8.1} {:>8.1} {:<13} {}",
            row.source,
            row.provider,
            row.plan,
            row.step.map_or_else(dash, |s| s.to_string()),
            row.cap_today.map_or_else(dash, |c| c.to_string()),
            row.sent_today,
            row.health.deferral_rate * 100.0,
            row.health.bounce_rate * 100.0,
            row.state,
            row.reason.unwrap_or_default(),
        )?;
    }
    Ok(())
}

/// Resolves a configured plan for the policy: its time zone looked up, its shares as numbers.
pub fn plan_from_config(plan: &WarmupPlanConfig) -> Result<Plan, String> {
    let tz = jiff::tz::TimeZone::get(&plan.timezone).map_err(|error| {
        format!(
            "plan {:?}: {:?} is not a known IANA time zone: {error}",
            plan.name, plan.timezone
        )
    })?;
    Ok(Plan {
        name: plan.name.clone(),
        daily: plan.daily.clone(),
        provider_daily: plan.provider_daily.clone(),
        hours: plan.hours.map(|window| (window.start, window.end)),
        tz,
        min_fill: plan.min_fill.get(),
        max_deferral_rate: plan.max_deferral_rate.get(),
        max_bounce_rate: plan.max_bounce_rate.get(),
        max_complaint_rate: plan.max_complaint_rate.get(),
    })
}

/// `warmup simulate`: finds the plan, simulates, prints tables or JSON.
fn simulate_command(args: &SimulateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let plan = find_plan(args.config.as_deref(), &args.plan)?;
    let start = match &args.start {
        Some(text) => penguin_config::parse_warmup_start(text)
            .map_err(|_| anyhow::anyhow!("--start {text:?} is not a date such as \"2026-12-01\""))?,
        None => jiff::Timestamp::now()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date(),
    };
    let rows = simulate(&plan, start, args.days, args.daily_volume);
    if args.json {
        let rows: Vec<Value> = rows.iter().map(row_json).collect();
        serde_json::to_writer_pretty(&mut *out, &rows)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "plan {}: {} days from {start}, {} messages a day offered to each provider",
        plan.name, args.days, args.daily_volume
    )?;
    write_tables(&rows, out)?;
    Ok(())
}

/// The named plan of the config file (or of the embedded default), resolved.
fn find_plan(config_path: Option<&Path>, name: &str) -> anyhow::Result<Plan> {
    let config = crate::cli::load_config(config_path)?;
    let Some(plan) = config.warmup.plan.iter().find(|plan| plan.name == name) else {
        let source = match config_path {
            Some(path) => path.display().to_string(),
            None => "the embedded default config".to_owned(),
        };
        anyhow::bail!("no [[warmup.plan]] named {name} in {source}");
    };
    plan_from_config(plan).map_err(anyhow::Error::msg)
}

/// One row as `{day, date, providers, step, cap, sent, overflow}` (step and cap null once warm).
fn row_json(row: &SimulatedDay) -> Value {
    json!({
        "day": row.day,
        "date": row.date.to_string(),
        "providers": row.providers,
        "step": row.step,
        "cap": row.cap,
        "sent": row.sent,
        "overflow": row.overflow,
    })
}

/// One table per ramp (in the order the ramps first appear): day, date, step, cap, sent, overflow.
fn write_tables(rows: &[SimulatedDay], out: &mut impl Write) -> std::io::Result<()> {
    let mut ramps: Vec<&str> = Vec::new();
    for row in rows {
        if !ramps.contains(&row.providers.as_str()) {
            ramps.push(&row.providers);
        }
    }
    for ramp in ramps {
        let cells: Vec<[String; 6]> = rows
            .iter()
            .filter(|row| row.providers == ramp)
            .map(|row| {
                [
                    row.day.to_string(),
                    row.date.to_string(),
                    row.step
                        .map_or_else(|| "warm".to_owned(), |step| step.to_string()),
                    row.cap.map_or_else(|| "-".to_owned(), |cap| cap.to_string()),
                    row.sent.to_string(),
                    row.overflow.to_string(),
                ]
            })
            .collect();
        writeln!(out)?;
        writeln!(out, "{ramp}")?;
        write_table(&["DAY", "DATE", "STEP", "CAP", "SENT", "OVERFLOW"], &cells, out)?;
    }
    Ok(())
}

/// Columns padded to their widest cell, numbers right-aligned (all but the date).
fn write_table(header: &[&str; 6], cells: &[[String; 6]], out: &mut impl Write) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |row: [&str; 6]| -> String {
        let padded: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (cell, width))| match column {
                1 => format!("{cell:<width$}"),
                _ => format!("{cell:>width$}"),
            })
            .collect();
        padded.join("  ")
    };
    writeln!(out, "{}", line(*header))?;
    for row in cells {
        writeln!(out, "{}", line(row.each_ref().map(String::as_str)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan with the default shares, in `timezone`.
    fn config(daily: Vec<u64>, microsoft: Vec<u64>, hours: Option<&str>, timezone: &str) -> WarmupPlanConfig {
        use penguin_config::{Factor, HourWindow, Overflow};
        WarmupPlanConfig {
            name: "standard".to_owned(),
            daily,
            provider_daily: [("microsoft".to_owned(), microsoft)].into(),
            hours: hours.map(|text| HourWindow::parse(text).expect("hours")),
            timezone: timezone.to_owned(),
            overflow: Overflow::Pool,
            min_fill: Factor(0.8),
            max_deferral_rate: Factor(0.1),
            max_bounce_rate: Factor(0.05),
            max_complaint_rate: Factor(0.001),
        }
    }

    #[test]
    fn plan_from_config_resolves_the_time_zone_and_hours() {
        let config = config(vec![50, 100], vec![20], Some("08:00-20:00"), "America/New_York");
        let plan = plan_from_config(&config).expect("plan");
        assert_eq!(plan.name, "standard");
        assert_eq!(plan.hours, Some((8, 20)));
        assert_eq!(plan.cap("microsoft", 0), Some(20));
        assert_eq!(plan.cap("gmail", 1), Some(100));
        assert!((plan.min_fill - 0.8).abs() < 1e-12);
        assert!((plan.max_complaint_rate - 0.001).abs() < 1e-12);
        assert_eq!(plan.tz.iana_name(), Some("America/New_York"));
        let mut bad = config.clone();
        bad.timezone = "Mars/Olympus".to_owned();
        assert!(plan_from_config(&bad).unwrap_err().contains("Mars/Olympus"));
    }

    #[test]
    fn tables_per_ramp() {
        let plan = plan_from_config(&config(vec![5, 10], vec![3], None, "UTC")).expect("plan");
        let rows = simulate(&plan, jiff::civil::date(2026, 12, 1), 3, 8);
        let mut out = Vec::new();
        write_tables(&rows, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let expected = "
microsoft
DAY  DATE        STEP  CAP  SENT  OVERFLOW
  1  2026-12-01     1    3     3         5
  2  2026-12-02  warm    -     8         0
  3  2026-12-03  warm    -     8         0

others
DAY  DATE        STEP  CAP  SENT  OVERFLOW
  1  2026-12-01     1    5     5         3
  2  2026-12-02     2   10     8         0
  3  2026-12-03  warm    -     8         0
";
        assert_eq!(text, expected);
    }
}
