//! A real `redis-server` (Debian's, installed by `./x deps`) for the cluster tests: started by the test
//! on a free loopback port with no persistence, killed on drop. `stop` and `restart` (same port) make
//! Redis fail and come back under running nodes.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::WAIT;

/// The server binary.
const REDIS_SERVER: &str = "redis-server";
/// Pause between two PINGs while waiting for the server.
const PING_RETRY: Duration = Duration::from_millis(20);
/// Bound on one PING exchange.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// A `redis-server` child process on 127.0.0.1.
pub struct TestRedis {
    /// Its port (kept across `restart`).
    port: u16,
    /// The process while it runs.
    child: Option<Child>,
}

impl TestRedis {
    /// Starts a server on a free port and waits (bounded) until it answers PING.
    pub async fn start() -> TestRedis {
        let mut redis = TestRedis {
            port: crate::binary::free_port(),
            child: None,
        };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its address.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server (SIGKILL) and waits for it to be gone; connections to it break.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            tokio::time::timeout(WAIT, child.wait())
                .await
                .expect("redis-server exits in time")
                .expect("wait for redis-server");
        }
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Stops the process (SIGSTOP) without closing anything: connections are accepted, commands are
    /// not answered (a Redis that hangs).
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// One command (RESP); the reply as text: a simple string, an integer, a bulk string (`None` when
    /// null). Panics on an error reply.
    pub async fn query(&self, args: &[&str]) -> Option<String> {
        let exchange = async {
            let mut stream = TcpStream::connect(self.address())
                .await
                .expect("connect to redis");
            let mut request = format!("*{}\r\n", args.len());
            for arg in args {
                request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
            stream.write_all(request.as_bytes()).await.expect("write");
            read_reply(&mut stream).await
        };
        tokio::time::timeout(WAIT, exchange)
            .await
            .expect("redis answers in time")
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Option<String> {
        self.query(&["GET", key]).await
    }

    /// A command whose reply is not null (an integer, a simple or bulk string).
    pub async fn command(&self, args: &[&str]) -> String {
        self.query(args)
            .await
            .unwrap_or_else(|| panic!("{args:?}: null reply"))
    }

    /// Sends `signal` to the running server.
    fn signal(&self, signal: i32) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("redis-server runs");
        let pid = i32::try_from(pid).expect("pid");
        // SAFETY: kill(2) with the pid of our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    }

    /// Whether it answers PING now.
    pub async fn answers(&self) -> bool {
        ping(self.address()).await
    }

    /// Runs the server and waits until it answers PING (bounded by [`WAIT`]).
    async fn spawn(&mut self) {
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run {REDIS_SERVER} (install it with `./x deps`): {error}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !self.answers().await {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {WAIT:?}",
                self.port
            );
            tokio::time::sleep(PING_RETRY).await;
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Reads one reply that is not an array: `+text`, `:n`, `$len` + data, `$-1`; `-error` panics.
async fn read_reply(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.push(stream.read_u8().await.expect("reply"));
    }
    let line = String::from_utf8(line[..line.len() - 2].to_vec()).expect("utf-8 reply");
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" | ":" => Some(rest.to_string()),
        "$" if rest == "-1" => None,
        "$" => {
            let len: usize = rest.parse().expect("bulk length");
            let mut data = vec![0; len + 2];
            stream.read_exact(&mut data).await.expect("bulk data");
            data.truncate(len);
            Some(String::from_utf8(data).expect("utf-8 bulk"))
        }
        _ => panic!("unexpected redis reply {line:?}"),
    }
}

/// One `PING` → `+PONG` exchange (bounded).
async fn ping(address: SocketAddr) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(address).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await.ok()?;
        Some(&answer == b"+PONG\r\n")
    };
    matches!(tokio::time::timeout(PING_TIMEOUT, exchange).await, Ok(Some(true)))
}

/// A `[cluster]` section for a test node on `redis`: node `id`, heartbeats every 100 ms, Redis
/// commands bounded at 300 ms, nodes counted for 30 s.
pub fn test_cluster(redis: &str, id: &str) -> penguin_config::ClusterConfig {
    let mut cluster = penguin_config::ClusterConfig::new(redis);
    cluster.node = id.to_string();
    cluster.heartbeat_every = std::time::Duration::from_millis(100).into();
    cluster.node_timeout = std::time::Duration::from_secs(30).into();
    cluster.redis_timeout = std::time::Duration::from_millis(300).into();
    cluster
}
