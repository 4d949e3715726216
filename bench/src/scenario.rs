//! One measurement of one scenario: the loopback ceiling, Postfix as a durable relay, or penguin-mta,
//! each under a workload, timed until the sink has counted every message.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::dkim::{self, KeySet, Signing};
use crate::engine::Engine;
use crate::load::{self, LoadSpec};
use crate::postfix::{self, CountingSink, SourceLoad};
use crate::postfix_relay::PostfixRelay;
use crate::procfs;

/// Longest any single run may take before the benchmark fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(900);

/// A workload: what smtp-source sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Short label for tables ("5 KiB, reuse, 1 rcpt").
    pub label: &'static str,
    /// Payload bytes.
    pub size: usize,
    /// Connection reuse.
    pub reuse: bool,
    /// Recipients per message.
    pub recipients: usize,
}

/// The MTA under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mta {
    /// No MTA: smtp-source straight into smtp-sink.
    Ceiling,
    /// Postfix as a durable relay.
    Postfix,
    /// penguin-mta relaying to the sink.
    Penguin,
    /// penguin-mta relaying to the sink, DKIM-signing every message at reception.
    PenguinDkim(Signing),
    /// penguin-mta relaying to the sink with traffic shaping configured far above what the run
    /// reaches ([`SHAPING_NOT_BINDING`]): the shaping code paths run, no limit binds.
    PenguinShaping,
    /// penguin-mta with delivery paused: reception alone, timed until smtp-source has its last 250.
    PenguinReception,
}

/// The `[shaping]` section of [`Mta::PenguinShaping`]: limits far above what the run can reach, a
/// provider entry for the relay's site (provider "other") and a reply rule that never matches.
pub const SHAPING_NOT_BINDING: &str = "[shaping]\nmax_connections = 20\nmax_message_rate = \"100000/s\"\n\
max_connection_rate = \"100000/s\"\n[[shaping.provider]]\nprovider = \"other\"\nmax_connections = 20\n\
max_message_rate = \"100000/s\"\n[[shaping.rule]]\nname = \"bench-never\"\nmatch = \"penguin-bench never replies this\"\naction = \"reduce\"\n";

impl Mta {
    /// The `kind` of report figures.
    pub fn kind(self) -> &'static str {
        match self {
            Mta::Ceiling => "ceiling",
            Mta::Postfix => "postfix",
            Mta::Penguin => "penguin",
            Mta::PenguinDkim(Signing::Rsa) => "penguin-dkim-rsa",
            Mta::PenguinDkim(Signing::Ed25519) => "penguin-dkim-ed25519",
            Mta::PenguinShaping => "penguin-shaping",
            Mta::PenguinReception => "penguin-reception",
        }
    }

    /// The DKIM signing of a penguin-mta scenario.
    pub fn signing(self) -> Option<Signing> {
        match self {
            Mta::PenguinDkim(signing) => Some(signing),
            _ => None,
        }
    }
}

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measurement {
    /// Messages per second, until the sink counted them all.
    pub rate: f64,
    /// CPU seconds of the MTA's process tree per 1,000 messages.
    pub cpu_per_1000: Option<f64>,
    /// Peak memory of the MTA (penguin: VmHWM; Postfix: summed PSS of its processes at the end).
    pub memory_mib: Option<f64>,
}

/// Where the MTAs keep their files and which penguin binary runs.
pub struct Setup<'a> {
    /// penguin-mta binary.
    pub binary: &'a Path,
    /// Directory on a real disk for spools and Postfix queues.
    pub work: &'a Path,
    /// Parallel sessions of the load.
    pub sessions: usize,
    /// The DKIM keys of the signing scenarios.
    pub keys: &'a KeySet,
}

impl Setup<'_> {
    /// A fresh penguin-mta relaying to `relay_to` (or with delivery paused), signing and shaping as
    /// `mta` says.
    fn engine(&self, mta: Mta, relay_to: Option<std::net::SocketAddr>) -> anyhow::Result<Engine> {
        let keys = mta.signing().map(|signing| self.keys.get(signing)).transpose()?;
        match (mta, relay_to) {
            (Mta::PenguinShaping, Some(sink)) => {
                let sections = format!("[delivery]\nrelay_host = \"{sink}\"\n{SHAPING_NOT_BINDING}");
                Engine::start_with(self.binary, self.work, &sections, keys)
            }
            _ => Engine::start(self.binary, self.work, relay_to, keys),
        }
    }
}

/// Runs `messages` of `workload` through `mta` into a fresh counting sink.
pub fn measure(
    setup: &Setup<'_>,
    mta: Mta,
    workload: Workload,
    messages: usize,
) -> anyhow::Result<Measurement> {
    let sink = CountingSink::start()?;
    let load = SourceLoad {
        sessions: setup.sessions,
        messages,
        size: workload.size,
        recipients: workload.recipients,
        reuse: workload.reuse,
    };
    match mta {
        Mta::Ceiling => {
            sink.restart_clock();
            postfix::source(sink.address, load)?;
            let elapsed = sink.wait_for(messages as u64, RUN_LIMIT)?;
            Ok(Measurement {
                rate: rate(messages, elapsed),
                ..Measurement::default()
            })
        }
        Mta::Postfix => {
            let work = tempfile::Builder::new()
                .prefix("penguin-bench-postfix-")
                .tempdir_in(setup.work)?;
            let relay = PostfixRelay::start(sink.address, work.path())?;
            let master = relay.master_pid();
            let cpu_before = procfs::tree_cpu_seconds(master)?;
            sink.restart_clock();
            postfix::source(relay.address, load)?;
            let elapsed = sink.wait_for(messages as u64, RUN_LIMIT)?;
            let cpu = procfs::tree_cpu_seconds(master)? - cpu_before;
            let memory = procfs::tree_pss_bytes(master) as f64 / MIB;
            relay.stop()?;
            Ok(Measurement {
                rate: rate(messages, elapsed),
                cpu_per_1000: Some(cpu * 1000.0 / messages as f64),
                memory_mib: Some(memory),
            })
        }
        Mta::PenguinReception => {
            let engine = setup.engine(mta, None)?;
            let cpu_before = engine.cpu_seconds()?;
            let elapsed = postfix::source(engine.smtp, load)?;
            let cpu = engine.cpu_seconds()? - cpu_before;
            let memory = procfs::peak_rss(engine.pid())? as f64 / MIB;
            dkim::check_census(&engine, messages, None)?;
            Ok(Measurement {
                rate: rate(messages, elapsed),
                cpu_per_1000: Some(cpu * 1000.0 / messages as f64),
                memory_mib: Some(memory),
            })
        }
        Mta::Penguin | Mta::PenguinDkim(_) | Mta::PenguinShaping => {
            let engine = setup.engine(mta, Some(sink.address))?;
            let cpu_before = engine.cpu_seconds()?;
            sink.restart_clock();
            postfix::source(engine.smtp, load)?;
            let elapsed = sink.wait_for(messages as u64, RUN_LIMIT)?;
            let cpu = engine.cpu_seconds()? - cpu_before;
            let memory = procfs::peak_rss(engine.pid())? as f64 / MIB;
            dkim::check_census(&engine, messages, mta.signing())?;
            if mta == Mta::PenguinShaping {
                check_shaping_in_force(&engine)?;
            }
            Ok(Measurement {
                rate: rate(messages, elapsed),
                cpu_per_1000: Some(cpu * 1000.0 / messages as f64),
                memory_mib: Some(memory),
            })
        }
    }
}

/// Fails unless the engine shows its relay lane with the configured (not binding) shaping limits: the
/// shaping config was read and the lane that just delivered runs under it. Called right after the
/// sink counted the last message, while the delivery connections are still open (they idle for
/// seconds), so the lane is listed.
fn check_shaping_in_force(engine: &Engine) -> anyhow::Result<()> {
    let queues = engine.ready_queues()?;
    let shaped = queues
        .iter()
        .any(|queue| queue.max_connections == 20 && queue.max_message_rate == Some(100_000.0));
    anyhow::ensure!(
        shaped,
        "penguin-mta shows no ready queue with the configured shaping limits (20 connections, 100000/s): {queues:?}"
    );
    Ok(())
}

/// Time-to-250 of `mta` (p50, p99 in ms) under the bench's own pipelining client: 5 KiB, reuse,
/// 1 recipient, while the MTA relays to a sink.
pub fn latency(
    setup: &Setup<'_>,
    mta: Mta,
    messages: usize,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(f64, f64)> {
    let sink = CountingSink::start()?;
    let run = |address| {
        let spec = LoadSpec {
            address,
            sessions: setup.sessions,
            messages,
            size: 5120,
            domains: Vec::new().into(),
        };
        runtime.block_on(load::run(&spec, RUN_LIMIT))
    };
    let result = match mta {
        Mta::Ceiling => run(sink.address)?,
        Mta::Postfix => {
            let work = tempfile::Builder::new()
                .prefix("penguin-bench-postfix-")
                .tempdir_in(setup.work)?;
            let relay = PostfixRelay::start(sink.address, work.path())?;
            let result = run(relay.address)?;
            sink.wait_for(messages as u64, RUN_LIMIT)?;
            relay.stop()?;
            result
        }
        Mta::Penguin | Mta::PenguinDkim(_) | Mta::PenguinShaping | Mta::PenguinReception => {
            let engine = setup.engine(mta, Some(sink.address))?;
            let result = run(engine.smtp)?;
            sink.wait_for(messages as u64, RUN_LIMIT)?;
            dkim::check_census(&engine, messages, mta.signing())?;
            result
        }
    };
    anyhow::ensure!(
        result.accepted == messages,
        "{} of {messages} messages accepted",
        result.accepted
    );
    Ok((result.latency_ms(0.50), result.latency_ms(0.99)))
}

/// Messages per second.
fn rate(messages: usize, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Bytes per MiB.
pub const MIB: f64 = 1_048_576.0;

/// The figures of the scale scenario.
#[derive(Clone, Debug)]
pub struct Scale {
    /// Messages queued.
    pub messages: usize,
    /// penguin-mta's RSS per queued message after a restart, bytes.
    pub rss_per_message: f64,
    /// Start-up (process start to SMTP listening, recovery included).
    pub restart: Duration,
    /// A raw RocksDB scan of the same spool's envelopes (open included).
    pub raw_scan: Duration,
}

/// Queues `messages` small messages with delivery paused, then restarts penguin-mta on that spool:
/// RSS per queued message and the restart time against a raw scan of the spool.
pub fn scale(setup: &Setup<'_>, messages: usize) -> anyhow::Result<Scale> {
    let empty = setup.engine(Mta::Penguin, None)?;
    let baseline = empty.rss_bytes()?;
    drop(empty);
    let engine = setup.engine(Mta::Penguin, None)?;
    let load = SourceLoad {
        sessions: setup.sessions,
        messages,
        size: 300,
        recipients: 1,
        reuse: true,
    };
    postfix::source(engine.smtp, load)?;
    let spool = engine.spool_path();
    let dir = engine.stop()?;
    let (raw_scan, scanned) = penguin_queue::raw_scan(&spool).context("raw scan of the spool")?;
    anyhow::ensure!(
        scanned as usize == messages,
        "the spool holds {scanned} of {messages} messages"
    );
    let (engine, restart) = Engine::restart(setup.binary, dir)?;
    let rss = engine.rss_bytes()?;
    Ok(Scale {
        messages,
        rss_per_message: rss.saturating_sub(baseline) as f64 / messages as f64,
        restart,
        raw_scan,
    })
}
