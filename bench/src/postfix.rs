//! Postfix's `smtp-sink` and `smtp-source` (Debian package `postfix`): the loopback ceiling and a
//! second, independent load generator. Only processes started here are stopped, by their own handle.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where Debian installs the tools.
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
/// Where Debian installs the tools.
const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";

/// Fails loudly when the Postfix tools are missing.
pub fn check_tools() -> anyhow::Result<()> {
    for tool in [SMTP_SINK, SMTP_SOURCE] {
        if !std::path::Path::new(tool).exists() {
            bail!("{tool} is missing: install the Debian package `postfix` (./x bench does it)");
        }
    }
    Ok(())
}

/// The `smtp-sink -c` command line for `address` (with the running counter).
fn sink_command(address: SocketAddr) -> Command {
    let mut command = Command::new(SMTP_SINK);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // smtp-sink refuses to run as root without a user to switch to.
        command.args(["-u", "nobody"]);
    }
    command.arg("-c").arg(address.to_string()).arg("1024");
    command
}

/// A running `smtp-sink -c` whose message counter is followed live: the end of an end-to-end relay run
/// is the moment the sink has received every message. The counter is cumulative over the sink's life.
pub struct CountingSink {
    /// The process.
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
    /// The counter, shared with the reader thread.
    counter: Arc<Counter>,
    /// Drains smtp-sink's stdout (it blocks once the pipe is full) and updates `counter`.
    reader: Option<JoinHandle<()>>,
}

/// Messages counted by smtp-sink, with the moments the count changed.
struct Counter {
    /// The latest count (readable without the lock).
    messages: AtomicU64,
    /// History and clock.
    progress: Mutex<Progress>,
    /// Signalled on every count change and when the sink's stdout closes.
    changed: Condvar,
}

/// The part of [`Counter`] under its lock.
struct Progress {
    /// Where [`CountingSink::wait_for`] measures from.
    epoch: Instant,
    /// Every change of the count, ascending, with when the reader saw it (16 bytes per message).
    history: Vec<(u64, Instant)>,
    /// smtp-sink's stdout reached EOF (the process exited).
    closed: bool,
}

impl Progress {
    /// When the count first reached `n` (`None` if it has not yet).
    fn reached_at(&self, n: u64) -> Option<Instant> {
        if n == 0 {
            return Some(self.epoch);
        }
        let index = self.history.partition_point(|(count, _)| *count < n);
        self.history.get(index).map(|(_, at)| *at)
    }
}

impl CountingSink {
    /// Starts `smtp-sink -c` on a free loopback port, follows its counter and waits until it accepts
    /// connections. The clock of [`CountingSink::wait_for`] starts now.
    pub fn start() -> anyhow::Result<CountingSink> {
        let address = free_address()?;
        let mut child = sink_command(address)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting smtp-sink -c")?;
        let stdout = child.stdout.take().context("smtp-sink stdout")?;
        let counter = Arc::new(Counter {
            messages: AtomicU64::new(0),
            progress: Mutex::new(Progress {
                epoch: Instant::now(),
                history: Vec::new(),
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let shared = Arc::clone(&counter);
        let reader = std::thread::Builder::new()
            .name("smtp-sink-counter".to_string())
            .spawn(move || follow_counter(stdout, &shared));
        let reader = match reader {
            Ok(reader) => reader,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error).context("spawning the smtp-sink counter thread");
            }
        };
        let sink = CountingSink {
            child,
            address,
            counter,
            reader: Some(reader),
        };
        wait_until_listening(address, Duration::from_secs(10))?;
        Ok(sink)
    }

    /// Messages received so far (cumulative since start).
    pub fn received(&self) -> u64 {
        self.counter.messages.load(Ordering::Acquire)
    }

    /// Restarts the clock of [`CountingSink::wait_for`]: call it right before starting the load.
    pub fn restart_clock(&self) {
        lock(&self.counter.progress).epoch = Instant::now();
    }

    /// Blocks until the counter reaches `n` (cumulative: add what earlier rounds sent), at most `limit`.
    /// Returns the time from the clock start ([`CountingSink::start`] or the last
    /// [`CountingSink::restart_clock`]) to the moment the reader thread saw the count reach `n`, even if
    /// that was before this call (zero if before the clock start). Resolution: when smtp-sink's output
    /// reached this process, well under a millisecond on loopback.
    pub fn wait_for(&self, n: u64, limit: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + limit;
        let mut progress = lock(&self.counter.progress);
        loop {
            if let Some(at) = progress.reached_at(n) {
                return Ok(at.saturating_duration_since(progress.epoch));
            }
            let received = self.received();
            if progress.closed {
                bail!("smtp-sink exited after receiving {received} of {n} messages");
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("smtp-sink received {received} of {n} messages within {limit:?}");
            }
            progress = self
                .counter
                .changed
                .wait_timeout(progress, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for CountingSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipe is closed now, so the reader reaches EOF.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Locks a mutex, ignoring poisoning (the data stays consistent: one push or one flag per update).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads smtp-sink's `-c` output until EOF: records `sess=N quit=N mesg=N` separated by `\r`, rewritten
/// after every session end, QUIT and message.
fn follow_counter(mut stdout: ChildStdout, counter: &Counter) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = match stdout.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let seen = Instant::now();
        pending.extend_from_slice(&buffer[..read]);
        let mut latest = None;
        while let Some(end) = pending.iter().position(|byte| matches!(byte, b'\r' | b'\n')) {
            latest = parse_messages(&pending[..end]).or(latest);
            pending.drain(..=end);
        }
        if let Some(messages) = latest
            && messages > counter.messages.load(Ordering::Acquire)
        {
            let mut progress = lock(&counter.progress);
            progress.history.push((messages, seen));
            counter.messages.store(messages, Ordering::Release);
            drop(progress);
            counter.changed.notify_all();
        }
    }
    lock(&counter.progress).closed = true;
    counter.changed.notify_all();
}

/// The `mesg=N` value of one counter record.
fn parse_messages(record: &[u8]) -> Option<u64> {
    std::str::from_utf8(record)
        .ok()?
        .split_whitespace()
        .find_map(|field| field.strip_prefix("mesg=")?.parse().ok())
}

/// What `smtp-source` sends: the workload of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLoad {
    /// Parallel sessions.
    pub sessions: usize,
    /// Messages in total.
    pub messages: usize,
    /// Message payload bytes.
    pub size: usize,
    /// Recipients per message.
    pub recipients: usize,
    /// Reuse connections (`-d`) or one connection per message.
    pub reuse: bool,
}

/// Runs `smtp-source` against `target`; returns its wall time.
pub fn source(target: SocketAddr, load: SourceLoad) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut command = Command::new(SMTP_SOURCE);
    if load.reuse {
        command.arg("-d");
    }
    let mut child = command
        .args(["-s", &load.sessions.to_string(), "-m", &load.messages.to_string()])
        .args(["-l", &load.size.to_string(), "-r", &load.recipients.to_string()])
        .args(["-f", "bench@bench.example", "-t", "sink@sink.example", "-N"])
        .arg(target.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting smtp-source")?;
    let status = child.wait().context("waiting for smtp-source")?;
    let elapsed = started.elapsed();
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        bail!("smtp-source failed ({status}): {}", stderr.trim());
    }
    Ok(elapsed)
}

/// A loopback address with a port that was free a moment ago.
pub fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Polls a TCP connect until it succeeds (bounded): the tools give no other readiness signal.
pub fn wait_until_listening(address: SocketAddr, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on {address} after {limit:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_counter_record() {
        assert_eq!(parse_messages(b"sess=43 quit=16 mesg=1000"), Some(1000));
        assert_eq!(parse_messages(b""), None);
        assert_eq!(parse_messages(b"sess=1 quit=0 mesg="), None);
    }

    #[test]
    fn finds_when_a_count_was_reached() {
        let epoch = Instant::now();
        let later = |ms| epoch + Duration::from_millis(ms);
        let progress = Progress {
            epoch,
            history: vec![(1, later(1)), (5, later(2)), (6, later(3))],
            closed: false,
        };
        assert_eq!(progress.reached_at(0), Some(epoch));
        assert_eq!(progress.reached_at(3), Some(later(2)));
        assert_eq!(progress.reached_at(6), Some(later(3)));
        assert_eq!(progress.reached_at(7), None);
    }
}
