//! Postfix's `smtp-sink` and `smtp-source` (Debian package `postfix`): the loopback ceiling and a
//! second, independent load generator. Only processes started here are stopped, by their own handle.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
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

/// A running `smtp-sink` that accepts and discards mail.
pub struct Sink {
    /// The process.
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
}

impl Sink {
    /// Starts `smtp-sink` on a free loopback port and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Sink> {
        let address = free_address()?;
        // -c would print a running counter on stdout that must be drained; the ceiling is timed by
        // smtp-source's completion instead, so stdout goes to /dev/null.
        let mut command = Command::new(SMTP_SINK);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // smtp-sink refuses to run as root without a user to switch to.
            command.args(["-u", "nobody"]);
        }
        let child = command
            .arg(address.to_string())
            .arg("1024")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting smtp-sink")?;
        let sink = Sink { child, address };
        wait_until_listening(address, Duration::from_secs(10))?;
        Ok(sink)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `smtp-source` against `target` with connection reuse; returns the wall time.
pub fn source(target: SocketAddr, sessions: usize, messages: usize, size: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut child = Command::new(SMTP_SOURCE)
        .args([
            "-d",
            "-s",
            &sessions.to_string(),
            "-m",
            &messages.to_string(),
            "-l",
            &size.to_string(),
        ])
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
