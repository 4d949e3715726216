//! penguin-mta under benchmark: the release binary with a bench config, its metrics and its CPU time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::postfix::{free_address, wait_until_listening};

/// A running penguin-mta with its own spool.
pub struct Engine {
    /// The process.
    child: Child,
    /// SMTP address.
    pub smtp: SocketAddr,
    /// HTTP address.
    pub api: SocketAddr,
    /// Holds the spool directory until the engine is dropped.
    _dir: tempfile::TempDir,
}

/// The penguin-mta binary next to this benchmark binary (same target directory and profile).
pub fn default_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("penguin-mta");
    if !path.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p penguin-mta`",
            path.display()
        );
    }
    Ok(path)
}

impl Engine {
    /// Starts `binary serve` with a spool in a fresh directory under `spool_parent` (a real disk:
    /// fsync must cost what it costs in production), relaying for loopback clients. With `relay_to`
    /// every message is delivered there (a sink); without it delivery is paused (intake only).
    pub fn start(binary: &Path, spool_parent: &Path, relay_to: Option<SocketAddr>) -> anyhow::Result<Engine> {
        let dir = tempfile::Builder::new()
            .prefix("penguin-bench-")
            .tempdir_in(spool_parent)?;
        let (smtp, api) = (free_address()?, free_address()?);
        let delivery = match relay_to {
            Some(sink) => format!("[delivery]\nrelay_host = \"{sink}\"\n"),
            None => "[delivery]\npaused = true\n".to_string(),
        };
        let config = format!(
            "[smtp]\nlisten = [\"{smtp}\"]\nhostname = \"bench.test\"\nrelay_networks = [\"127.0.0.0/8\"]\n\
             max_connections_per_ip = 1000\n[spool]\npath = \"{}\"\nmin_free_space = \"0B\"\n[api]\nlisten = \"{api}\"\n\
             {delivery}[log]\n",
            dir.path().join("spool").display()
        );
        let config_path = dir.path().join("bench.toml");
        std::fs::write(&config_path, config)?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let engine = Engine {
            child,
            smtp,
            api,
            _dir: dir,
        };
        wait_until_listening(smtp, Duration::from_secs(30))?;
        Ok(engine)
    }

    /// CPU seconds (user + system) the process used so far, from /proc.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok((ticks(11) + ticks(12)) / per_second)
    }

    /// Resident set size in bytes, from /proc.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_bytes(&self.child.id().to_string())
    }

    /// The sum of every series of a metric (all label sets) from `/metrics`; 0 if absent.
    pub fn metric_sum(&self, name: &str) -> anyhow::Result<f64> {
        let text = http_get(self.api, "/metrics")?;
        Ok(text
            .lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
            .filter_map(|line| {
                line.rsplit_once(' ')
                    .and_then(|(_, value)| value.parse::<f64>().ok())
            })
            .sum())
    }

    /// The value of a metric line (first series whose name matches exactly) from `/metrics`.
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = http_get(self.api, "/metrics")?;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                (series == name || series.starts_with(&format!("{name}{{"))).then(|| value.parse().ok())?
            })
            .with_context(|| format!("metric {name} not found"))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child; the engine flushes and exits.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// VmRSS of `/proc/<pid>/status` in bytes (`pid` may be "self").
pub fn rss_bytes(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .context("VmRSS not in /proc status")
}

/// A blocking HTTP/1.1 GET on loopback; returns the body.
fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    tcp.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}
