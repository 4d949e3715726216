//! `penguin-bench`: same-run comparisons of penguin-mta against the loopback ceiling (Postfix's
//! smtp-source → smtp-sink) and against Postfix as a durable relay, and of DKIM-signing penguin-mta
//! against one core's `openssl speed` signing rate; penguin-mta with shaping configured and receiving
//! only; the accuracy of shaped rates per (source, site) lane and the idle cost of held ready queues. A benchmark, not a test: it prints figures, it does
//! not assert them (but it fails loudly when a scenario cannot run or a DKIM run was not signed).

mod accuracy;
mod capture;
mod cluster;
mod dkim;
mod dnsworld;
mod engine;
mod idle;
mod inject;
mod load;
mod openssl;
mod postfix;
mod postfix_relay;
mod procfs;
mod report;
mod run;
mod scenario;
mod sitesink;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use penguin_queue::{IdGenerator, ScheduleIndex};

/// penguin-mta benchmarks. Without a subcommand: the full comparison (`--quick` for the smoke run).
#[derive(Debug, Parser)]
#[command(name = "penguin-bench", about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Another benchmark.
    #[command(subcommand)]
    command: Option<Bench>,
    /// Options of the comparison run.
    #[command(flatten)]
    run: RunArgs,
}

/// Other benchmarks.
#[derive(Debug, Subcommand)]
enum Bench {
    /// HTTP injection (100 recipients per request) against SMTP (one per transaction), end to end to
    /// smtp-sink, and webhook events per second; printed, RESULTS.md untouched.
    Inject {
        /// Messages per path (rounded up to whole requests of 100).
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Concurrent SMTP sessions and concurrent HTTP requests.
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        /// The penguin-mta binary (default: next to this one).
        #[arg(long)]
        engine: Option<PathBuf>,
        /// Directory on the disk for the spool.
        #[arg(long, default_value = "/var/tmp")]
        spool_dir: PathBuf,
    },
    /// What `[cluster]` (shared limits in Redis) costs one node, and two nodes against one, same run;
    /// printed, RESULTS.md untouched.
    Cluster {
        /// Messages per figure.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Concurrent SMTP sessions per node.
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        /// Rounds (the medians are compared).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Connections per (source, site) lane (fleet-wide with [cluster]).
        #[arg(long, default_value_t = 10)]
        max_connections: usize,
        /// The penguin-mta binary (default: next to this one).
        #[arg(long)]
        engine: Option<PathBuf>,
        /// Directory on the disk for the spools.
        #[arg(long, default_value = "/var/tmp")]
        spool_dir: PathBuf,
    },
    /// Bytes of RAM per queued message in the schedule index alone.
    IndexMemory {
        /// Messages to insert.
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
    },
    /// Only the shaping scenarios that are not workloads (rate accuracy, idle cost of held queues):
    /// printed, RESULTS.md untouched. `--quick` for the smoke sizes.
    Shaping {
        /// The smoke sizes.
        #[arg(long)]
        quick: bool,
        /// Concurrent SMTP sessions of the injection.
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        /// The penguin-mta binary (default: next to this one).
        #[arg(long)]
        engine: Option<PathBuf>,
        /// Directory on the disk for the spool.
        #[arg(long, default_value = "/var/tmp")]
        spool_dir: PathBuf,
    },
}

/// Options of the comparison run.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The smoke run: one workload, one round, small counts, one DKIM (RSA-2048) run, the shaping
    /// scenarios at smoke sizes (10 lanes for 5 s, 2,000 held queues for 10 s), no scale scenario;
    /// under a minute, and RESULTS.md is not touched.
    #[arg(long)]
    pub quick: bool,
    /// Interleaved rounds (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Concurrent SMTP sessions of every load.
    #[arg(long, default_value_t = 20)]
    pub sessions: usize,
    /// Messages per run for the ceiling and penguin-mta (Postfix gets a quarter: it is that much slower).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Messages of the scale scenario (0 = skip it).
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_messages: usize,
    /// The penguin-mta binary (default: next to this one).
    #[arg(long)]
    pub engine: Option<PathBuf>,
    /// Directory on the disk for spools and Postfix queues (fsync must hit a real disk).
    #[arg(long, default_value = "/var/tmp")]
    pub spool_dir: PathBuf,
    /// Where results.jsonl and results.png go (default: bench/ for a full run, a temporary directory
    /// for --quick).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// The RESULTS.md whose generated section a full run replaces.
    #[arg(long, default_value = "bench/RESULTS.md")]
    pub results: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Bench::IndexMemory { messages }) => index_memory(messages),
        Some(Bench::Shaping {
            quick,
            sessions,
            engine,
            spool_dir,
        }) => run::shaping_only(quick, sessions, engine, &spool_dir),
        Some(Bench::Inject {
            messages,
            sessions,
            engine,
            spool_dir,
        }) => {
            let binary = match engine {
                Some(path) => path,
                None => engine::default_binary()?,
            };
            inject::run(&binary, &spool_dir, messages, sessions)
        }
        Some(Bench::Cluster {
            messages,
            sessions,
            rounds,
            max_connections,
            engine,
            spool_dir,
        }) => {
            let binary = match engine {
                Some(path) => path,
                None => engine::default_binary()?,
            };
            cluster::run(&binary, &spool_dir, (messages, sessions, rounds), max_connections)
        }
        None => run::run(cli.run),
    }
}

/// RSS growth per message when `messages` entries are put into the schedule index.
fn index_memory(messages: usize) -> anyhow::Result<()> {
    let ids = IdGenerator::new();
    let campaigns: Vec<String> = (0..100).map(|n| format!("campaign-{n}")).collect();
    let before = procfs::rss_bytes(std::process::id() as i32)?;
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
    let after = procfs::rss_bytes(std::process::id() as i32)?;
    let grown = after.saturating_sub(before);
    println!(
        "schedule index: {messages} messages, RSS +{:.1} MiB = {:.1} B per queued message",
        grown as f64 / scenario::MIB,
        grown as f64 / messages as f64
    );
    anyhow::ensure!(index.len() == messages, "index lost entries");
    Ok(())
}
