//! `penguin-bench`: same-run comparisons of penguin-mta against the loopback ceiling (Postfix's
//! smtp-source → smtp-sink). A benchmark, not a test: it prints figures, it does not assert them.

mod engine;
mod load;
mod postfix;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use penguin_queue::{IdGenerator, ScheduleIndex};

use crate::engine::Engine;
use crate::load::LoadSpec;

/// penguin-mta benchmarks.
#[derive(Debug, Parser)]
#[command(name = "penguin-bench", about)]
struct Cli {
    /// The benchmark.
    #[command(subcommand)]
    command: Bench,
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
enum Bench {
    /// SMTP acceptance and end-to-end relay with fsync: penguin-mta vs the smtp-source → smtp-sink ceiling.
    Intake(IntakeArgs),
    /// Bytes of RAM per queued message in the schedule index.
    IndexMemory {
        /// Messages to insert.
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
    },
}

/// Options of the intake benchmark.
#[derive(Debug, clap::Args)]
struct IntakeArgs {
    /// Concurrent SMTP sessions.
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// Messages per run.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 5120)]
    size: usize,
    /// Interleaved rounds (each: ceiling, smtp-source → penguin, bench client → penguin).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A short run (2,000 messages, one round).
    #[arg(long)]
    quick: bool,
    /// The penguin-mta binary (default: next to this one).
    #[arg(long)]
    engine: Option<PathBuf>,
    /// Directory on the disk to hold the spools (fsync must hit a real disk).
    #[arg(long, default_value = "/var/tmp")]
    spool_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Bench::Intake(args) => intake(args),
        Bench::IndexMemory { messages } => index_memory(messages),
    }
}

/// Figures of one round.
#[derive(Debug, Default, Clone)]
struct Round {
    /// smtp-source → smtp-sink msg/s.
    ceiling: f64,
    /// smtp-source → penguin-mta msg/s.
    penguin_source: f64,
    /// bench client → penguin-mta msg/s.
    penguin_client: f64,
    /// p50 time-to-250 (ms), bench client.
    p50_ms: f64,
    /// p99 time-to-250 (ms), bench client.
    p99_ms: f64,
    /// Mean messages per group commit, bench client run.
    mean_batch: f64,
    /// CPU seconds of penguin-mta per 1,000 messages, bench client run.
    cpu_per_1000: f64,
    /// RSS of penguin-mta after the bench client run, MiB.
    rss_mib: f64,
    /// smtp-source → penguin-mta → smtp-sink msg/s (until all delivered).
    end_to_end: f64,
    /// CPU seconds of penguin-mta per 1,000 messages end to end.
    end_to_end_cpu_per_1000: f64,
}

/// The intake benchmark.
fn intake(mut args: IntakeArgs) -> anyhow::Result<()> {
    if args.quick {
        args.messages = 2000;
        args.rounds = 1;
    }
    postfix::check_tools()?;
    let binary = match &args.engine {
        Some(path) => path.clone(),
        None => engine::default_binary()?,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    println!(
        "intake: {} sessions, {} messages of {} B per run, {} round(s), fsync on, spool under {}",
        args.sessions,
        args.messages,
        args.size,
        args.rounds,
        args.spool_dir.display()
    );
    let mut rounds = Vec::new();
    for number in 1..=args.rounds {
        let round = intake_round(&args, &binary, &runtime).with_context(|| format!("round {number}"))?;
        println!(
            "round {number}: ceiling {:.0}/s  end-to-end {:.0}/s (cpu {:.3} s/1000)  penguin(smtp-source) {:.0}/s  \
             penguin(bench client) {:.0}/s  p50 {:.2} ms  p99 {:.2} ms  batch {:.1}  cpu {:.3} s/1000  rss {:.0} MiB",
            round.ceiling,
            round.end_to_end,
            round.end_to_end_cpu_per_1000,
            round.penguin_source,
            round.penguin_client,
            round.p50_ms,
            round.p99_ms,
            round.mean_batch,
            round.cpu_per_1000,
            round.rss_mib
        );
        rounds.push(round);
    }
    print_intake_table(&rounds);
    Ok(())
}

/// One interleaved round: ceiling, then penguin with smtp-source, then penguin with the bench client.
fn intake_round(
    args: &IntakeArgs,
    binary: &std::path::Path,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Round> {
    let rate = |elapsed: Duration| args.messages as f64 / elapsed.as_secs_f64();
    let sink = postfix::Sink::start()?;
    let ceiling = rate(postfix::source(
        sink.address,
        args.sessions,
        args.messages,
        args.size,
    )?);
    drop(sink);

    let engine = Engine::start(binary, &args.spool_dir, None)?;
    let penguin_source = rate(postfix::source(
        engine.smtp,
        args.sessions,
        args.messages,
        args.size,
    )?);
    drop(engine);

    let (end_to_end, end_to_end_cpu_per_1000) = end_to_end_run(args, binary)?;

    let engine = Engine::start(binary, &args.spool_dir, None)?;
    let cpu_before = engine.cpu_seconds()?;
    let spec = LoadSpec {
        address: engine.smtp,
        sessions: args.sessions,
        messages: args.messages,
        size: args.size,
    };
    let result = runtime.block_on(load::run(&spec, Duration::from_secs(600)))?;
    let cpu = engine.cpu_seconds()? - cpu_before;
    let rss_mib = engine.rss_bytes()? as f64 / 1_048_576.0;
    let batches = engine.metric("penguin_spool_commit_batch_messages_count")?;
    let batched = engine.metric("penguin_spool_commit_batch_messages_sum")?;
    anyhow::ensure!(
        result.accepted == args.messages,
        "only {} of {} accepted",
        result.accepted,
        args.messages
    );
    Ok(Round {
        ceiling,
        penguin_source,
        penguin_client: result.rate(),
        p50_ms: result.latency_ms(0.50),
        p99_ms: result.latency_ms(0.99),
        mean_batch: batched / batches.max(1.0),
        cpu_per_1000: cpu * 1000.0 / result.accepted as f64,
        rss_mib,
        end_to_end,
        end_to_end_cpu_per_1000,
    })
}

/// smtp-source → penguin-mta → smtp-sink: msg/s from the first connection until the engine has
/// delivered every message (its delivered counter), and the engine's CPU seconds per 1,000.
fn end_to_end_run(args: &IntakeArgs, binary: &std::path::Path) -> anyhow::Result<(f64, f64)> {
    let sink = postfix::Sink::start()?;
    let engine = Engine::start(binary, &args.spool_dir, Some(sink.address))?;
    let cpu_before = engine.cpu_seconds()?;
    let started = std::time::Instant::now();
    postfix::source(engine.smtp, args.sessions, args.messages, args.size)?;
    let deadline = started + Duration::from_secs(600);
    // Polling the engine's counter is the only completion signal smtp-sink offers without its -c
    // output; a 10 ms period costs nothing next to the run.
    while engine.metric_sum("penguin_messages_delivered_total")? < args.messages as f64 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "delivery did not finish within 600 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let cpu = engine.cpu_seconds()? - cpu_before;
    Ok((
        args.messages as f64 / elapsed.as_secs_f64(),
        cpu * 1000.0 / args.messages as f64,
    ))
}

/// The median of a column.
fn median(rounds: &[Round], column: impl Fn(&Round) -> f64) -> f64 {
    let mut values: Vec<f64> = rounds.iter().map(column).collect();
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Prints the medians as a Markdown table (pasted into bench/RESULTS.md).
fn print_intake_table(rounds: &[Round]) {
    let ceiling = median(rounds, |r| r.ceiling);
    let ratio = |rate: f64| rate / ceiling.max(1e-9);
    let source = median(rounds, |r| r.penguin_source);
    let client = median(rounds, |r| r.penguin_client);
    println!("\nmedians of {} round(s):\n", rounds.len());
    println!("| scenario | msg/s | ratio to ceiling | p50 ms | p99 ms | mean batch | CPU s/1000 msg |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!("| ceiling: smtp-source → smtp-sink | {ceiling:.0} | 1.00 | | | | |");
    let end_to_end = median(rounds, |r| r.end_to_end);
    println!(
        "| end to end: smtp-source → penguin-mta → smtp-sink (fsync) | {end_to_end:.0} | {:.2} | | | | {:.3} |",
        ratio(end_to_end),
        median(rounds, |r| r.end_to_end_cpu_per_1000)
    );
    println!(
        "| smtp-source → penguin-mta (fsync) | {source:.0} | {:.2} | | | | |",
        ratio(source)
    );
    println!(
        "| bench client → penguin-mta (fsync) | {client:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.3} |",
        ratio(client),
        median(rounds, |r| r.p50_ms),
        median(rounds, |r| r.p99_ms),
        median(rounds, |r| r.mean_batch),
        median(rounds, |r| r.cpu_per_1000)
    );
}

/// RSS growth per message when `messages` entries are put into the schedule index.
fn index_memory(messages: usize) -> anyhow::Result<()> {
    let ids = IdGenerator::new();
    let campaigns: Vec<String> = (0..100).map(|n| format!("campaign-{n}")).collect();
    let before = engine::rss_bytes("self")?;
    let mut index = ScheduleIndex::new();
    for n in 0..messages {
        let tenant = if n % 2 == 0 { "acme" } else { "globex" };
        index.insert(
            ids.next_id(),
            1_800_000_000_000 + (n as u64 % 3_600_000),
            tenant,
            &campaigns[n % 100],
        );
    }
    let after = engine::rss_bytes("self")?;
    let per_message = (after.saturating_sub(before)) as f64 / messages as f64;
    println!(
        "schedule index: {messages} messages, RSS +{:.1} MiB = {per_message:.1} B per queued message",
        (after - before) as f64 / 1048576.0
    );
    anyhow::ensure!(index.len() == messages, "index lost entries");
    Ok(())
}
