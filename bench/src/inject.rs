//! `penguin-bench inject`: HTTP injection against the SMTP path, and webhook events per second, in the
//! same run on the same engine build.
//!
//! Set-up: penguin-mta relaying to Postfix's `smtp-sink` (the loopback ceiling's receiver), with a
//! webhook endpoint for tenant `default` that counts the events it gets (a loopback receiver answering
//! 200 at once). Then, for the same number of messages of the same size:
//! 1. SMTP: the bench's pipelining client, 20 sessions, one recipient per message;
//! 2. HTTP: `POST /v1/messages` with 100 recipients per request, `sessions` requests at a time.
//!
//! For each: messages per second from the first request to the sink's last message (end to end), and
//! to the last 202/250 (intake). Then the webhook receiver's events per second over the HTTP run
//! (`reception` and `delivery` events: two per message) against the delivery rate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::engine::{BENCH_TOKEN, Engine};
use crate::load::{self, LoadSpec};
use crate::postfix::CountingSink;

/// Recipients per HTTP request.
const PER_REQUEST: usize = 100;
/// Bound on each phase.
const LIMIT: Duration = Duration::from_secs(600);

/// Figures of one path.
#[derive(Debug)]
struct PathFigures {
    /// Until the last 250/202.
    intake: Duration,
    /// Until the sink had every message.
    end_to_end: Duration,
}

/// Runs the benchmark and prints its figures.
pub fn run(
    binary: &std::path::Path,
    work: &std::path::Path,
    messages: usize,
    sessions: usize,
) -> anyhow::Result<()> {
    let messages = messages.div_ceil(PER_REQUEST) * PER_REQUEST;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let receiver = runtime.block_on(EventCounter::start())?;
    let sink = CountingSink::start()?;
    let sections = format!(
        "[delivery]\nrelay_host = \"{}\"\n[webhooks]\nallow_private_targets = true\nbatch_size = 500\n",
        sink.address
    );
    let engine = Engine::start_with(binary, work, &sections, None)?;
    let hook = format!(
        r#"{{"url":"http://{}/events","events":["reception","delivery"]}}"#,
        receiver.address
    );
    engine.http("POST", "/v1/tenants/default/webhooks", Some(&hook), 201)?;

    let spec = LoadSpec {
        address: engine.smtp,
        sessions,
        messages,
        size: 2048,
        domains: Vec::new().into(),
    };
    sink.restart_clock();
    let smtp = runtime.block_on(load::run(&spec, LIMIT))?;
    ensure!(
        smtp.accepted == messages,
        "SMTP: {} of {messages} accepted",
        smtp.accepted
    );
    let smtp = PathFigures {
        intake: smtp.elapsed,
        end_to_end: sink.wait_for(messages as u64, LIMIT)?,
    };

    let events_before = receiver.events();
    sink.restart_clock();
    let started = Instant::now();
    let intake = runtime.block_on(inject_all(engine.api, messages, sessions))?;
    let http = PathFigures {
        intake,
        end_to_end: sink.wait_for(2 * messages as u64, LIMIT)?,
    };
    let events = 2 * messages as u64;
    let webhooks = runtime.block_on(receiver.wait_for(events_before + events, LIMIT))?;
    let webhook_time = webhooks.saturating_duration_since(started);
    report(messages, sessions, &smtp, &http, events, webhook_time);
    drop(engine);
    Ok(())
}

/// Prints the figures.
fn report(
    messages: usize,
    sessions: usize,
    smtp: &PathFigures,
    http: &PathFigures,
    events: u64,
    webhook_time: Duration,
) {
    let rate = |n: f64, d: Duration| n / d.as_secs_f64().max(1e-9);
    let m = messages as f64;
    println!(
        "penguin-bench inject: {messages} messages of ~2 KiB, {sessions} concurrent clients, relay to smtp-sink"
    );
    println!(
        "  SMTP (1 recipient per transaction): intake {:.0} msg/s, end to end {:.0} msg/s",
        rate(m, smtp.intake),
        rate(m, smtp.end_to_end)
    );
    println!(
        "  HTTP ({PER_REQUEST} recipients per request): intake {:.0} msg/s, end to end {:.0} msg/s",
        rate(m, http.intake),
        rate(m, http.end_to_end)
    );
    println!(
        "  HTTP / SMTP end to end: {:.2}x",
        smtp.end_to_end.as_secs_f64() / http.end_to_end.as_secs_f64().max(1e-9)
    );
    println!(
        "  webhooks: {events} events delivered in {:.2} s = {:.0} events/s (deliveries: {:.0}/s)",
        webhook_time.as_secs_f64(),
        rate(events as f64, webhook_time),
        rate(m, http.end_to_end)
    );
}

/// Injects `messages` in requests of [`PER_REQUEST`], `sessions` at a time; the time to the last 202.
async fn inject_all(api: SocketAddr, messages: usize, sessions: usize) -> anyhow::Result<Duration> {
    let requests = messages / PER_REQUEST;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..sessions.max(1) {
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                if n >= requests {
                    return Ok::<(), anyhow::Error>(());
                }
                inject_one(api, n).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// One request of [`PER_REQUEST`] personalised recipients.
async fn inject_one(api: SocketAddr, request: usize) -> anyhow::Result<()> {
    let text =
        "Hello {{ name }},\n".to_string() + &"This is a benchmark line of text for the body.\n".repeat(40);
    let recipients: Vec<serde_json::Value> = (0..PER_REQUEST)
        .map(|i| {
            serde_json::json!({"address": format!("r{request}-{i}@sink.example"),
                "variables": {"name": format!("Reader {i}")}})
        })
        .collect();
    let body =
        serde_json::json!({"tenant": "default", "from": "bench@bench.test", "subject": "Hi {{ name }}",
        "text": text, "recipients": recipients})
        .to_string();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nAuthorization: Bearer {BENCH_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut tcp = TcpStream::connect(api).await.context("connecting to the API")?;
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 202") {
        bail!("injection answered: {}", text.lines().next().unwrap_or(""));
    }
    Ok(())
}

/// A webhook receiver that counts events (answers 200 at once).
struct EventCounter {
    /// Where it listens.
    address: SocketAddr,
    /// Events received.
    count: Arc<AtomicU64>,
}

impl EventCounter {
    /// Starts on a loopback port.
    async fn start() -> anyhow::Result<EventCounter> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let count = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&count);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(count_events(stream, Arc::clone(&counter)));
            }
        });
        Ok(EventCounter { address, count })
    }

    /// Events so far.
    fn events(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until `n` events arrived; when.
    async fn wait_for(&self, n: u64, limit: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + limit;
        while self.events() < n {
            if Instant::now() > deadline {
                bail!("the webhook receiver got {} of {n} events", self.events());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Instant::now())
    }
}

/// Reads requests of one connection, counts their events (`"type":` occurrences), answers 200.
async fn count_events(mut stream: TcpStream, count: Arc<AtomicU64>) {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = vec![0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < end + 4 + length {
            let mut chunk = vec![0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = &buffer[end + 4..end + 4 + length];
        let events = body.windows(7).filter(|w| w == b"\"type\":").count() as u64;
        count.fetch_add(events, Ordering::AcqRel);
        buffer.drain(..end + 4 + length);
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}
