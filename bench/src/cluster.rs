//! `penguin-bench cluster`: what sharing the limits through Redis costs, and what a second node gives,
//! in the same run on the same engine build.
//!
//! Set-up: a `redis-server` started here on a free loopback port, Postfix's `smtp-sink` as the relay
//! every engine delivers to, and `[shaping] max_message_rate = "1000000/s"` (configured, never
//! binding, so every message takes a slot of the shared rate when `[cluster]` is on) with
//! `max_connections` (default 10, the engine's: fleet-wide with `[cluster]`). Rounds of:
//! 1. one node without `[cluster]`;
//! 2. one node with `[cluster]` (its lane rate a fleet GCRA in Redis);
//! 3. two nodes with `[cluster]`, each given half of the messages at once.
//!
//! Each figure is messages per second from the first SMTP command to the sink's last message (the
//! bench's pipelining client, `sessions` sessions per node, one recipient per message); the medians
//! of the rounds are compared: with ÷ without (goal ≥ 0.8), two nodes ÷ one.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::engine::Engine;
use crate::load::{self, LoadSpec};
use crate::postfix::CountingSink;

/// Bound on each phase.
const LIMIT: Duration = Duration::from_secs(600);

/// A `redis-server` of the bench's own, killed on drop.
struct Redis {
    child: Child,
    address: SocketAddr,
}

impl Redis {
    fn start() -> anyhow::Result<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (Debian package redis-server; ./x installs it)")?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(address).is_err() {
            ensure!(
                Instant::now() < deadline,
                "redis-server did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Redis { child, address })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config sections of an engine relaying to `sink`, in the cluster of `redis` as `node` if any.
fn sections(sink: SocketAddr, max_connections: usize, cluster: Option<(&Redis, &str)>) -> String {
    // A lane rate that never binds, and the lane's connection cap (fleet-wide with [cluster]).
    let mut text = format!(
        "[delivery]\nrelay_host = \"{sink}\"\n[shaping]\nmax_message_rate = \"1000000/s\"\nmax_connections = {max_connections}\n"
    );
    if let Some((redis, node)) = cluster {
        text.push_str(&format!(
            "[cluster]\nredis = \"redis://{}/0\"\nnode = \"{node}\"\nheartbeat_every = \"200ms\"\n",
            redis.address
        ));
    }
    text
}

/// Messages per second through `engines` together (each given its share at once), to the sink.
fn measure(
    runtime: &tokio::runtime::Runtime,
    engines: &[&Engine],
    sink: &CountingSink,
    messages: usize,
    sessions: usize,
) -> anyhow::Result<f64> {
    let before = sink.received();
    sink.restart_clock();
    let share = messages / engines.len();
    let specs: Vec<LoadSpec> = engines
        .iter()
        .map(|engine| LoadSpec {
            address: engine.smtp,
            sessions,
            messages: share,
            size: 2048,
            domains: Vec::new().into(),
        })
        .collect();
    let results = runtime.block_on(futures_join(&specs))?;
    for result in &results {
        ensure!(
            result.accepted == share,
            "{} of {share} accepted",
            result.accepted
        );
    }
    let elapsed = sink.wait_for(before + (share * engines.len()) as u64, LIMIT)?;
    Ok((share * engines.len()) as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// Waits (bounded) until `engine` sees two nodes with Redis up: the shared rate is the fleet's then.
fn wait_for_two(engine: &Engine) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer: serde_json::Value =
            serde_json::from_str(&engine.http("GET", "/v1/cluster", None, 200)?)?;
        if answer["redis"]["up"] == true && answer["nodes"].as_array().map_or(0, Vec::len) == 2 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the nodes did not see each other: {answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the loads at once.
async fn futures_join(specs: &[LoadSpec]) -> anyhow::Result<Vec<load::LoadResult>> {
    let handles: Vec<_> = specs
        .iter()
        .cloned()
        .map(|spec| tokio::spawn(async move { load::run(&spec, LIMIT).await }))
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await??);
    }
    Ok(results)
}

/// Runs the benchmark and prints its figures.
pub fn run(
    binary: &Path,
    work: &Path,
    (messages, sessions, rounds): (usize, usize, usize),
    max_connections: usize,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let redis = Redis::start()?;
    let sink = CountingSink::start()?;
    let mut alone = Vec::new();
    let mut shared = Vec::new();
    let mut two = Vec::new();
    for _ in 0..rounds {
        let engine = Engine::start_with(binary, work, &sections(sink.address, max_connections, None), None)?;
        alone.push(measure(&runtime, &[&engine], &sink, messages, sessions)?);
        drop(engine);
        let engine = Engine::start_with(
            binary,
            work,
            &sections(sink.address, max_connections, Some((&redis, "a"))),
            None,
        )?;
        shared.push(measure(&runtime, &[&engine], &sink, messages, sessions)?);
        let other = Engine::start_with(
            binary,
            work,
            &sections(sink.address, max_connections, Some((&redis, "b"))),
            None,
        )?;
        wait_for_two(&engine)?;
        two.push(measure(&runtime, &[&engine, &other], &sink, messages, sessions)?);
    }
    let (alone, shared, two) = (median(alone), median(shared), median(two));
    println!(
        "penguin-bench cluster: {messages} messages of ~2 KiB per figure, {sessions} sessions per node, max_connections = {max_connections} (fleet-wide with [cluster]), relay to smtp-sink, {rounds} rounds (medians)"
    );
    println!("  one node, no [cluster]:          {alone:.0} msg/s");
    println!(
        "  one node, [cluster] (Redis):     {shared:.0} msg/s = {:.2} of the node alone (goal >= 0.8)",
        shared / alone
    );
    println!(
        "  two nodes, [cluster], together:  {two:.0} msg/s = {:.2} x one node alone",
        two / alone
    );
    Ok(())
}

/// The median of a few figures.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
