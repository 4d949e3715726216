//! The bench's own SMTP load generator: N sessions on loopback, each pipelining MAIL/RCPT/DATA and
//! timing every message from its final dot to the server's 250 (time-to-250).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What to send.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// SMTP server.
    pub address: SocketAddr,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Messages in total.
    pub messages: usize,
    /// Approximate message size in bytes.
    pub size: usize,
    /// Recipient domains: message number n (0-based, over all sessions) goes to
    /// `domains[n % domains.len()]`, so a list of k domains gets the messages round-robin; empty means
    /// `sink.example`.
    pub domains: Arc<[String]>,
}

/// What happened.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Wall time from the first connect to the last 250.
    pub elapsed: Duration,
    /// Messages answered 250.
    pub accepted: usize,
    /// Time-to-250 of each accepted message.
    pub latencies: Vec<Duration>,
}

impl LoadResult {
    /// The latency at quantile `q` (0..=1), in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        percentile(&self.latencies, q).as_secs_f64() * 1000.0
    }
}

/// The `q` quantile of unsorted durations (nearest rank).
pub fn percentile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A message of about `size` bytes: headers and 76-character body lines, CRLF, no leading dots.
pub fn message(size: usize) -> Vec<u8> {
    let mut out = b"From: <bench@bench.example>\r\nTo: <sink@sink.example>\r\nSubject: penguin bench\r\n\
X-Campaign-ID: bench\r\n\r\n"
        .to_vec();
    let line = b"The quick penguin jumps over the lazy postmaster; the queue stays durable..\r\n";
    while out.len() < size {
        out.extend_from_slice(line);
    }
    out
}

/// Runs the load; every session stops when the shared budget is spent (bounded by `messages`).
pub async fn run(spec: &LoadSpec, deadline: Duration) -> anyhow::Result<LoadResult> {
    let budget = Arc::new(AtomicI64::new(spec.messages as i64));
    let content = Arc::new(message(spec.size));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..spec.sessions {
        let mail = Mail {
            budget: Arc::clone(&budget),
            total: spec.messages as i64,
            content: Arc::clone(&content),
            domains: Arc::clone(&spec.domains),
        };
        let address = spec.address;
        tasks.spawn(async move { session(address, index, mail).await });
    }
    let mut result = LoadResult::default();
    let collected = tokio::time::timeout(deadline, async {
        while let Some(joined) = tasks.join_next().await {
            let latencies = joined.context("session task")??;
            result.accepted += latencies.len();
            result.latencies.extend(latencies);
        }
        anyhow::Ok(())
    })
    .await;
    match collected {
        Ok(outcome) => outcome?,
        Err(_) => bail!("load did not finish within {deadline:?}"),
    }
    result.elapsed = started.elapsed();
    Ok(result)
}

/// What every session of a load shares.
struct Mail {
    /// Messages not yet taken by a session.
    budget: Arc<AtomicI64>,
    /// Messages of the whole load.
    total: i64,
    /// The message content.
    content: Arc<Vec<u8>>,
    /// Recipient domains (see [`LoadSpec::domains`]).
    domains: Arc<[String]>,
}

impl Mail {
    /// Takes the next message of the budget: its recipient domain, or `None` when all are taken.
    fn take(&self) -> Option<&str> {
        let left = self.budget.fetch_sub(1, Ordering::Relaxed);
        if left <= 0 {
            return None;
        }
        let number = usize::try_from(self.total - left).unwrap_or(0);
        Some(match self.domains.len() {
            0 => "sink.example",
            len => &self.domains[number % len],
        })
    }
}

/// One session: EHLO, then messages until the budget is spent; returns each time-to-250.
async fn session(address: SocketAddr, index: usize, mail: Mail) -> anyhow::Result<Vec<Duration>> {
    let tcp = TcpStream::connect(address).await.context("connect")?;
    tcp.set_nodelay(true)?;
    let (read, mut write) = tcp.into_split();
    let mut reader = BufReader::new(read);
    expect(&mut reader, 220).await?;
    write.write_all(b"EHLO bench.example\r\n").await?;
    expect(&mut reader, 250).await?;
    let mut latencies = Vec::new();
    let mut sequence = 0u64;
    while let Some(domain) = mail.take() {
        sequence += 1;
        let envelope =
            format!("MAIL FROM:<bench@bench.example>\r\nRCPT TO:<s{index}m{sequence}@{domain}>\r\nDATA\r\n");
        write.write_all(envelope.as_bytes()).await?;
        expect(&mut reader, 250).await?;
        expect(&mut reader, 250).await?;
        expect(&mut reader, 354).await?;
        write.write_all(&mail.content).await?;
        write.write_all(b".\r\n").await?;
        let sent = Instant::now();
        expect(&mut reader, 250).await?;
        latencies.push(sent.elapsed());
    }
    write.write_all(b"QUIT\r\n").await?;
    Ok(latencies)
}

/// Reads one (multi-line) reply and checks its code.
async fn expect(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, code: u16) -> anyhow::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            bail!("server closed the connection, expected {code}");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    if !line.starts_with(&code.to_string()) {
        bail!("expected {code}, got {}", line.trim_end());
    }
    Ok(())
}
