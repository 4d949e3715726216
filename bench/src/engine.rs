//! penguin-mta under benchmark: the release binary with a bench config, its metrics and its CPU time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::dkim::DkimKeys;
use crate::postfix::free_address;
use crate::procfs;

/// A running penguin-mta with its own spool.
pub struct Engine {
    /// The process.
    child: Child,
    /// SMTP address.
    pub smtp: SocketAddr,
    /// HTTP API address (`/metrics`).
    pub api: SocketAddr,
    /// The spool and config directory (removed when the last owner drops it).
    dir: Option<EngineDir>,
}

/// The directory of a stopped engine: its config and spool, for a restart.
pub struct EngineDir {
    /// The temporary directory.
    dir: tempfile::TempDir,
    /// SMTP address of its config.
    smtp: SocketAddr,
    /// HTTP API address of its config.
    api: SocketAddr,
}

/// The admin token of the engines under test (its hash is in their config).
pub const BENCH_TOKEN: &str = "pmt_penguin-bench";

/// The hex SHA-256 of [`BENCH_TOKEN`].
fn bench_token_sha256() -> String {
    penguin_tests::token_sha256(BENCH_TOKEN)
}

/// One ready queue of `GET /v1/shaping`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadyQueue {
    /// Source name.
    pub source: String,
    /// Site name.
    pub site: String,
    /// Items waiting.
    pub queued: u64,
    /// Configured connections per lane.
    pub max_connections: u64,
    /// Configured messages per second (None = unlimited).
    pub max_message_rate: Option<f64>,
    /// Whether it is suspended now.
    pub suspended: bool,
}

impl ReadyQueue {
    /// From one element of the `queues` array (missing fields read as empty / zero).
    fn from_json(queue: &serde_json::Value) -> ReadyQueue {
        let text = |field: &str| queue[field].as_str().unwrap_or_default().to_string();
        ReadyQueue {
            source: text("source"),
            site: text("site"),
            queued: queue["queued"].as_u64().unwrap_or(0),
            max_connections: queue["configured"]["max_connections"].as_u64().unwrap_or(0),
            max_message_rate: queue["configured"]["max_message_rate"].as_f64(),
            suspended: !queue["suspended_until"].is_null(),
        }
    }
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
    /// every message is delivered there (a sink); without it delivery is paused (intake only). With
    /// `dkim` it signs every message with those keys; without, its key directory is empty, so every
    /// message goes out unsigned (with a `dkim_unsigned` event), as on a server without keys.
    pub fn start(
        binary: &Path,
        spool_parent: &Path,
        relay_to: Option<SocketAddr>,
        dkim: Option<&DkimKeys>,
    ) -> anyhow::Result<Engine> {
        let delivery = match relay_to {
            Some(sink) => format!("[delivery]\nrelay_host = \"{sink}\"\n"),
            None => "[delivery]\npaused = true\n".to_string(),
        };
        Engine::start_with(binary, spool_parent, &delivery, dkim)
    }

    /// [`Engine::start`] with the config's delivery part written by the caller: `sections` is TOML
    /// holding at least the `[delivery]` table, and may add `[dns]`, `[shaping]`, `[[source]]` and
    /// the like (it is placed before `[dkim]` and `[log]`).
    pub fn start_with(
        binary: &Path,
        spool_parent: &Path,
        sections: &str,
        dkim: Option<&DkimKeys>,
    ) -> anyhow::Result<Engine> {
        let dir = tempfile::Builder::new()
            .prefix("penguin-bench-")
            .tempdir_in(spool_parent)?;
        let (smtp, api, public) = (free_address()?, free_address()?, free_address()?);
        let dkim = match dkim {
            Some(keys) => keys.config(),
            None => format!(
                "[dkim]\nkey_dir = \"{}\"\n",
                dir.path().join("no-dkim-keys").display()
            ),
        };
        let config = format!(
            "[smtp]\nlisten = [\"{smtp}\"]\nhostname = \"bench.test\"\nrelay_networks = [\"127.0.0.0/8\"]\n\
             max_connections_per_ip = 1000\n[spool]\npath = \"{}\"\nmin_free_space = \"0B\"\n[api]\nlisten = \"{api}\"\n\
             [[api.token]]\nname = \"bench\"\nsha256 = \"{}\"\n[public]\nlisten = \"{public}\"\n\
             {sections}{dkim}[log]\n",
            dir.path().join("spool").display(),
            bench_token_sha256(),
        );
        std::fs::write(dir.path().join("bench.toml"), config)?;
        Ok(Engine::restart(binary, EngineDir { dir, smtp, api })?.0)
    }

    /// Starts the engine again on a stopped engine's directory; returns it with the time from spawn
    /// until its SMTP port accepted a connection (start-up, spool recovery included).
    pub fn restart(binary: &Path, dir: EngineDir) -> anyhow::Result<(Engine, Duration)> {
        let started = std::time::Instant::now();
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(dir.dir.path().join("bench.toml"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut engine = Engine {
            child,
            smtp: dir.smtp,
            api: dir.api,
            dir: Some(dir),
        };
        wait_until_greeting(engine.smtp, &mut engine.child, Duration::from_secs(300))?;
        Ok((engine, started.elapsed()))
    }

    /// The spool directory.
    pub fn spool_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|dir| dir.dir.path().join("spool"))
            .unwrap_or_default()
    }

    /// SIGTERM, wait for the exit (bounded), and keep the directory for a restart.
    pub fn stop(mut self) -> anyhow::Result<EngineDir> {
        self.terminate()?;
        self.dir.take().context("engine directory already taken")
    }

    /// Sends SIGTERM and waits (at most 5 minutes) for the process to exit.
    fn terminate(&mut self) -> anyhow::Result<()> {
        // SAFETY: SIGTERM to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("penguin-mta did not stop within 5 minutes of SIGTERM")
    }

    /// The process id (for [`procfs`] accounting).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// CPU seconds (user + system) the process tree used so far, from /proc (penguin-mta forks nothing,
    /// so this is the process's own time).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        procfs::tree_cpu_seconds(self.pid())
    }

    /// The OpenMetrics text of its `GET /metrics`.
    pub fn metrics(&self) -> anyhow::Result<String> {
        self.http("GET", "/metrics", None, 200)
    }

    /// One request to its HTTP API (HTTP/1.0 on loopback, bounded by a timeout): `method` `path` with
    /// an optional JSON `body`; the response body when the status is `expect`, an error otherwise.
    pub fn http(&self, method: &str, path: &str, body: Option<&str>, expect: u16) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let limit = Duration::from_secs(30);
        let mut tcp = std::net::TcpStream::connect_timeout(&self.api, limit)
            .with_context(|| format!("connecting to the API at {}", self.api))?;
        tcp.set_read_timeout(Some(limit))?;
        let mut request =
            format!("{method} {path} HTTP/1.0\r\nHost: bench\r\nAuthorization: Bearer {BENCH_TOKEN}\r\n");
        if let Some(body) = body {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            request.push_str("\r\n");
        }
        tcp.write_all(request.as_bytes())?;
        let mut response = String::new();
        tcp.read_to_string(&mut response)
            .with_context(|| format!("reading the {method} {path} response"))?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .with_context(|| format!("a {method} {path} response without a header end"))?;
        let status = head.lines().next().unwrap_or_default();
        let code = status.split_whitespace().nth(1).unwrap_or_default();
        if code != expect.to_string() {
            bail!("{method} {path} answered {status}: {}", body.trim());
        }
        Ok(body.to_owned())
    }

    /// Its ready queues, from `GET /v1/shaping` (only the fields the scenarios read).
    pub fn ready_queues(&self) -> anyhow::Result<Vec<ReadyQueue>> {
        let body = self.http("GET", "/v1/shaping", None, 200)?;
        let view: serde_json::Value = serde_json::from_str(&body).context("parsing /v1/shaping")?;
        let queues = view["queues"]
            .as_array()
            .context("/v1/shaping without a queues array")?;
        Ok(queues.iter().map(ReadyQueue::from_json).collect())
    }

    /// Resident set size in bytes, from /proc.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        procfs::rss_bytes(self.pid())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
    }
}

/// Waits (bounded) until the server at `address` sends its 220 greeting. The engine binds its port
/// before it opens the spool, so a TCP connect succeeds during recovery; the greeting only comes once
/// the server runs. Fails at once when the process exits (a config error, printed on its stderr).
fn wait_until_greeting(address: SocketAddr, child: &mut Child, limit: Duration) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait()? {
            bail!("penguin-mta exited before it greeted ({status}); its stderr says why");
        }
        if let Ok(mut tcp) = std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            tcp.set_read_timeout(Some(
                limit
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(1)),
            ))?;
            let mut greeting = [0u8; 3];
            if tcp.read_exact(&mut greeting).is_ok() && &greeting == b"220" {
                let _ = tcp.write_all(b"QUIT\r\n");
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("penguin-mta at {address} sent no greeting within {limit:?}")
}
