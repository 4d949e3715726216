//! The real `penguin-mta` binary as a child process (tests pass its path,
//! `env!("CARGO_BIN_EXE_penguin-mta-e2e")`: the engine's own main.rs built for this package).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};

use penguin_config::Config;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::WAIT;

/// A free loopback port (bound then released; the binary binds it right after).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Gives `config` fresh loopback ports and writes it as TOML into `dir`; returns the file path.
pub fn write_config(dir: &Path, config: &mut Config) -> PathBuf {
    config.smtp.listen = vec![SocketAddr::from(([127, 0, 0, 1], free_port()))];
    config.api.listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    config.public.listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let path = dir.join("penguin.toml");
    std::fs::write(&path, toml::to_string(config).expect("serialise config")).expect("write config");
    path
}

/// A running `penguin-mta serve`.
pub struct RunningBinary {
    /// The child process.
    child: Child,
    /// SMTP address from the config.
    pub smtp: SocketAddr,
    /// HTTP address from the config.
    pub api: SocketAddr,
    /// stderr lines of the child, as they arrive.
    log: mpsc::UnboundedReceiver<String>,
}

impl RunningBinary {
    /// Starts `exe serve --config config_path` and waits until it logs that SMTP is listening.
    pub async fn start(exe: &str, config_path: &Path, config: &Config) -> RunningBinary {
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn penguin-mta");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, log) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = RunningBinary {
            child,
            smtp: config.smtp.listen[0],
            api: config.api.listen,
            log,
        };
        running.wait_for_log("SMTP listening").await;
        running
    }

    /// Waits (bounded) for a stderr line containing `needle`; panics with what was logged otherwise.
    pub async fn wait_for_log(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.log.recv().await {
                if line.contains(needle) {
                    return Some(line);
                }
                seen.push(line);
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!(
                "penguin-mta never logged {needle:?}; it logged:\n{}",
                seen.join("\n")
            ),
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// Sends a signal (libc constant) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with the pid of our own child and a valid signal number.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(result, 0, "kill({}, {signal})", self.pid());
    }

    /// SIGKILL, then reap.
    pub async fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("dies in time");
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait(mut self) -> ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits in time")
            .expect("wait")
    }
}

/// Runs `exe args...` to completion (bounded) with optional stdin.
pub async fn run_cli(exe: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_cli_in(exe, Path::new("."), args, stdin).await
}

/// `queue ls --spool PATH --json` parsed into JSON objects.
pub async fn queue_ls(exe: &str, spool: &Path) -> Vec<serde_json::Value> {
    let spool = spool.to_str().expect("utf-8 path");
    let output = run_cli(exe, &["queue", "ls", "--spool", spool, "--json"], None).await;
    assert!(
        output.status.success(),
        "queue ls failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

// ---- Spawning with a chosen working directory / arguments, and reading the startup log. ----

impl RunningBinary {
    /// Spawns `exe args...` (in `current_dir` when given) without waiting for anything; `smtp` and
    /// `api` are the addresses it is expected to listen on. Wait with [`RunningBinary::log_until`].
    pub fn spawn(
        exe: &str,
        args: &[&str],
        current_dir: Option<&Path>,
        smtp: SocketAddr,
        api: SocketAddr,
    ) -> RunningBinary {
        let mut command = Command::new(exe);
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = current_dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().expect("spawn penguin-mta");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, log) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        RunningBinary {
            child,
            smtp,
            api,
            log,
        }
    }

    /// Like [`RunningBinary::start`], and also returns every stderr line up to "SMTP listening"
    /// (the startup log, e.g. "spool recovered messages=N").
    pub async fn start_logged(
        exe: &str,
        config_path: &Path,
        config: &Config,
    ) -> (RunningBinary, Vec<String>) {
        let config_arg = config_path.to_str().expect("utf-8 path");
        let mut running = RunningBinary::spawn(
            exe,
            &["serve", "--config", config_arg],
            None,
            config.smtp.listen[0],
            config.api.listen,
        );
        let lines = running.log_until("SMTP listening").await;
        (running, lines)
    }

    /// Waits (bounded) for a stderr line containing `needle`; returns every line read up to and
    /// including it. Panics with what was logged if the line does not come.
    pub async fn log_until(&mut self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.log.recv().await {
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        match found {
            Ok(true) => seen,
            _ => panic!(
                "penguin-mta never logged {needle:?}; it logged:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// [`run_cli`] with `dir` as the working directory.
pub async fn run_cli_in(exe: &str, dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_cli_env(exe, dir, args, stdin, &[]).await
}

/// [`run_cli_in`] with extra environment variables (`PENGUIN_API_TOKEN` is otherwise removed, so a
/// token in the caller's environment never leaks into a test).
pub async fn run_cli_env(
    exe: &str,
    dir: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(exe)
        .args(args)
        .current_dir(dir)
        .env_remove("PENGUIN_API_TOKEN")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn penguin-mta");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).await.expect("write stdin");
        drop(pipe);
    }
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("CLI finishes in time")
        .expect("output")
}
