//! A private Postfix instance configured as a durable relay to a sink: the comparison MTA. Postfix fsyncs
//! every queue file before it answers 250 to DATA, the same durability as penguin-mta's spool.
//!
//! Everything lives under a work directory the caller owns: `etc/` (main.cf, master.cf), `queue/`
//! (queue_directory, with `pid/master.pid`) and `data/` (data_directory). The system's /etc/postfix is
//! only read (master.cf is copied; Postfix reads its own `postfix-files` via meta_directory) and a system
//! Postfix, if one runs, is untouched: other ports, other queue, other lock files.
//!
//! What Postfix 3.7 needs here:
//! - `postfix -c DIR` as root needs no `alternate_config_directories` in the default main.cf (that list is
//!   only checked for set-gid commands run by other users: postdrop, sendmail); the master gets the
//!   directory through `MAIL_CONFIG`, which the `postfix` command sets.
//! - The master opens `data_directory/master.lock` after dropping to `mail_owner`, so `data/` must be
//!   owned by `postfix`, and every directory above the instance must be traversable by it: the work
//!   directory gets `o+x` (a `tempfile` directory is 0700).
//! - `chroot = n` for every service (a chroot jail would need copies of /etc files and libraries).
//! - Logging goes nowhere (`maillog_file =` and no syslog daemon), so a failed start is run once more
//!   as `postfix start-fg` with `maillog_file=/dev/stdout`, only to put Postfix's own explanation in the
//!   error.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::postfix::{free_address, wait_until_listening};
use crate::procfs;

/// Debian's paths.
const POSTFIX: &str = "/usr/sbin/postfix";
/// Debian's paths.
const POSTCONF: &str = "/usr/sbin/postconf";
/// The master.cf the private instance starts from.
const SYSTEM_MASTER_CF: &str = "/etc/postfix/master.cf";
/// The user Postfix daemons run as (the default `mail_owner`).
const MAIL_OWNER: &str = "postfix";
/// Bound on one `postfix`/`postconf` command (`postfix start` waits for the master to initialise).
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// Bound on the smtpd port to accept connections after `postfix start`.
const LISTEN_LIMIT: Duration = Duration::from_secs(20);
/// Bound on the diagnostic `postfix start-fg` after a failed start (it runs on if it succeeds).
const DIAGNOSIS_LIMIT: Duration = Duration::from_secs(10);
/// Bound on the master to exit after `postfix stop`.
const STOP_LIMIT: Duration = Duration::from_secs(15);
/// Bound on the master's children to exit once it is gone.
const CHILDREN_LIMIT: Duration = Duration::from_secs(5);

/// A running private Postfix that relays everything it accepts on `address` to a sink.
pub struct PostfixRelay {
    /// The smtpd listener (loopback).
    pub address: SocketAddr,
    /// main.cf and master.cf of this instance.
    config_dir: PathBuf,
    /// The work directory (the caller owns and removes it).
    work: PathBuf,
    /// The master daemon; `None` once stopped.
    master: Option<Process>,
}

/// A pid with its start time, so that a reused pid is never signalled.
#[derive(Debug, Clone, Copy)]
struct Process {
    /// The pid.
    pid: i32,
    /// `starttime` from /proc/PID/stat.
    started: u64,
}

impl Process {
    /// The process now running as `pid`, if any.
    fn of(pid: i32) -> Option<Process> {
        procfs::stat(pid).ok().map(|stat| Process {
            pid,
            started: stat.starttime,
        })
    }

    /// Whether this very process still exists and is not a zombie.
    fn alive(&self) -> bool {
        procfs::stat(self.pid).is_ok_and(|stat| stat.starttime == self.started && stat.state != 'Z')
    }

    /// SIGKILL, if it is still this process.
    fn kill(&self) {
        if self.alive() {
            // SAFETY: kill has no memory-safety preconditions; the pid was checked to be the process
            // this relay started (same start time) just before.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

impl PostfixRelay {
    /// Configures and starts a private Postfix under `work` (created if missing; the caller removes it
    /// after [`PostfixRelay::stop`]) relaying every message to `sink`, and waits until its smtpd port
    /// accepts connections. Needs root (the Postfix master starts as root) and Debian's `postfix`.
    pub fn start(sink: SocketAddr, work: &Path) -> anyhow::Result<PostfixRelay> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the Postfix comparison needs root: Postfix's master daemon starts as root");
        }
        for tool in [POSTFIX, POSTCONF] {
            if !Path::new(tool).exists() {
                bail!("{tool} is missing: install the Debian package `postfix` (./x bench does it)");
            }
        }
        let work = std::fs::canonicalize(work)
            .or_else(|_| {
                std::fs::create_dir_all(work)?;
                std::fs::canonicalize(work)
            })
            .with_context(|| format!("work directory {}", work.display()))?;
        let config_dir = work.join("etc");
        let queue_dir = work.join("queue");
        let data_dir = work.join("data");
        for dir in [&config_dir, &queue_dir, &data_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // The daemons reach queue/ and data/ as `postfix`: every directory above must be traversable.
        for ancestor in work.ancestors().skip(1) {
            let mode = std::fs::metadata(ancestor)?.permissions().mode();
            if mode & 0o001 == 0 {
                bail!(
                    "Postfix's daemons run as `{MAIL_OWNER}` and cannot traverse {} (mode {:o}): put the \
                     work directory elsewhere (e.g. under /var/tmp)",
                    ancestor.display(),
                    mode & 0o7777
                );
            }
        }
        let mut mode = std::fs::metadata(&work)?.permissions();
        if mode.mode() & 0o001 == 0 {
            mode.set_mode(mode.mode() | 0o011);
            std::fs::set_permissions(&work, mode)?;
        }
        let (uid, gid) = user_ids(MAIL_OWNER)?;
        std::os::unix::fs::chown(&data_dir, Some(uid), Some(gid))
            .with_context(|| format!("chown {MAIL_OWNER} {}", data_dir.display()))?;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))?;

        std::fs::copy(SYSTEM_MASTER_CF, config_dir.join("master.cf"))
            .with_context(|| format!("copying {SYSTEM_MASTER_CF}"))?;
        std::fs::write(
            config_dir.join("main.cf"),
            "# penguin-bench: a private Postfix relaying to smtp-sink; written by postconf below.\n",
        )?;

        let address = free_address()?;
        let relay = PostfixRelay {
            address,
            config_dir,
            work,
            master: None,
        };
        relay.configure(sink, &queue_dir, &data_dir)?;
        // Creates the queue hierarchy (post-install create-missing) and checks ownerships.
        relay.postfix(&["check"])?;
        relay.start_master()
    }

    /// Writes main.cf parameters and master.cf services with `postconf -c`.
    fn configure(&self, sink: SocketAddr, queue_dir: &Path, data_dir: &Path) -> anyhow::Result<()> {
        let queue_directory = format!("queue_directory={}", queue_dir.display());
        let data_directory = format!("data_directory={}", data_dir.display());
        let relayhost = format!("relayhost=[{}]:{}", sink.ip(), sink.port());
        let mut parameters = vec!["-e", &queue_directory, &data_directory, &relayhost];
        parameters.extend([
            // Debian's main.cf says 3.6; without a level Postfix logs backwards-compatibility warnings.
            "compatibility_level=3.6",
            "myhostname=bench.test",
            "mydomain=bench.test",
            "mydestination=",
            "inet_interfaces=127.0.0.1",
            "inet_protocols=ipv4",
            "mynetworks=127.0.0.0/8",
            "smtp_dns_support_level=disabled",
            "smtpd_tls_security_level=none",
            "smtp_tls_security_level=none",
            // Relayhost mail goes through the `relay` transport; both limits say 50.
            "default_destination_concurrency_limit=50",
            "relay_destination_concurrency_limit=50",
            // Debian's "Local only" sets both to `error` (BUILD-FACTS); explicit here.
            "default_transport=smtp",
            "relay_transport=relay",
            // No syslog daemon: logging costs nothing.
            "maillog_file=",
            "alias_maps=",
            "alias_database=",
        ]);
        self.postconf(&parameters)?;
        // The public smtpd replaces `smtp inet`: a private loopback port instead of port 25. Any other
        // inet service of the system's master.cf (submission, ...) goes too: it could collide with a
        // running system Postfix.
        for service in self.inet_services()? {
            self.postconf(&["-MX", &format!("{service}/inet")])?;
        }
        let listener = format!("{0}/inet={0} inet n - n - - smtpd", self.address);
        self.postconf(&["-M", &listener])?;
        self.postconf(&["-F", "*/*/chroot=n"])?;
        Ok(())
    }

    /// The names of the `inet` services in this instance's master.cf (`postconf -M`).
    fn inet_services(&self) -> anyhow::Result<Vec<String>> {
        let output = Command::new(POSTCONF)
            .arg("-c")
            .arg(&self.config_dir)
            .arg("-M")
            .stdin(Stdio::null())
            .output()
            .context("running postconf -M")?;
        if !output.status.success() {
            bail!(
                "postconf -M failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let name = fields.next()?;
                (fields.next()? == "inet").then(|| name.to_string())
            })
            .collect())
    }

    /// `postfix start`, the master pid, and the smtpd port accepting connections.
    fn start_master(mut self) -> anyhow::Result<PostfixRelay> {
        if let Err(error) = self.postfix(&["start"]) {
            let log = self.diagnose_start();
            bail!("{error:#}\nA second attempt in the foreground, with Postfix's log:\n{log}");
        }
        match self.read_master() {
            Ok(master) => self.master = Some(master),
            Err(error) => {
                // Started but not found: stop it by the config directory, as Drop cannot.
                let _ = self.postfix(&["stop"]);
                return Err(error);
            }
        }
        // From here on Drop stops the instance if anything fails.
        wait_until_listening(self.address, LISTEN_LIMIT).context("Postfix's smtpd")?;
        Ok(self)
    }

    /// The master daemon, from `queue_directory/pid/master.pid`.
    fn read_master(&self) -> anyhow::Result<Process> {
        let pid_file = self.work.join("queue/pid/master.pid");
        let text = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {} after postfix start", pid_file.display()))?;
        let pid: i32 = text
            .trim()
            .parse()
            .with_context(|| format!("{}: {text:?}", pid_file.display()))?;
        Process::of(pid).with_context(|| format!("the Postfix master {pid} is gone"))
    }

    /// Runs Postfix once more in the foreground with its log on stdout (`start-fg`,
    /// `maillog_file=/dev/stdout`: nothing to traverse, no postlogd needed), only for an error message.
    fn diagnose_start(&self) -> String {
        if let Err(error) = self.postconf(&["-e", "maillog_file=/dev/stdout"]) {
            return format!("(could not log to stdout: {error:#})");
        }
        let mut command = Command::new(POSTFIX);
        command.arg("-c").arg(&self.config_dir).arg("start-fg");
        let outcome = self.run_bounded(command, "postfix start-fg", DIAGNOSIS_LIMIT);
        let started = matches!(&outcome, Err(error) if error.is::<TimedOut>());
        if started {
            // It came up this time (the master runs in the foreground under postfix-script): stop it.
            let _ = self.postfix(&["stop"]);
        }
        let _ = self.postconf(&["-e", "maillog_file="]);
        match outcome {
            Ok(()) => "(postfix start-fg exited without an error)".to_string(),
            Err(_) if started => "(the second attempt started, so it was stopped again)".to_string(),
            Err(error) => format!("{error:#}"),
        }
    }

    /// The Postfix master's pid (set for as long as the relay runs); its process tree is the MTA under
    /// measurement: smtpd, cleanup, qmgr and smtp are its children, and their CPU time lands in its
    /// cutime/cstime once it reaps them.
    pub fn master_pid(&self) -> i32 {
        self.master.map_or(0, |master| master.pid)
    }

    /// Stops Postfix: `postfix stop`, then waits (bounded) for the master to exit; if it does not, or its
    /// children linger, SIGKILLs the master and its descendants (only those, by pid).
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    /// The body of [`PostfixRelay::stop`] and Drop; does nothing the second time.
    fn shutdown(&mut self) -> anyhow::Result<()> {
        let Some(master) = self.master.take() else {
            return Ok(());
        };
        // Remembered before stopping: once the master is gone its children are reparented to init.
        let tree: Vec<Process> = procfs::descendants(master.pid)
            .into_iter()
            .filter_map(Process::of)
            .collect();
        let stopped = self.postfix(&["stop"]);
        let master_exited = wait_until(STOP_LIMIT, || !master.alive());
        let children_exited =
            master_exited && wait_until(CHILDREN_LIMIT, || !tree.iter().any(Process::alive));
        if children_exited {
            return stopped;
        }
        // The master first (it would restart children), then everything it forked: remembered ones, and
        // while the master still lives, the ones forked since.
        let mut left: Vec<Process> = tree.iter().copied().filter(Process::alive).collect();
        if master.alive() {
            for pid in procfs::descendants(master.pid) {
                if !left.iter().any(|process| process.pid == pid)
                    && let Some(process) = Process::of(pid)
                {
                    left.push(process);
                }
            }
        }
        for process in &left {
            process.kill();
        }
        wait_until(CHILDREN_LIMIT, || !left.iter().any(Process::alive));
        let pids: Vec<i32> = left.iter().map(|process| process.pid).collect();
        match stopped {
            Err(error) => Err(error.context(format!("killed the Postfix processes left: {pids:?}"))),
            Ok(()) => bail!("Postfix did not stop within {STOP_LIMIT:?}; killed {pids:?}"),
        }
    }

    /// `postconf -c DIR ARGS`.
    fn postconf(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new(POSTCONF);
        command.arg("-c").arg(&self.config_dir).args(args);
        self.run(command, &format!("postconf {}", args.join(" ")))
    }

    /// `postfix -c DIR ARGS`.
    fn postfix(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new(POSTFIX);
        command.arg("-c").arg(&self.config_dir).args(args);
        self.run(command, &format!("postfix {}", args.join(" ")))
    }

    /// Runs a Postfix command (bounded) with its output appended to `work/commands.log`: a file, not a
    /// pipe, because `postfix start` leaves a daemon behind that could hold a pipe open.
    fn run(&self, command: Command, what: &str) -> anyhow::Result<()> {
        self.run_bounded(command, what, COMMAND_LIMIT)
    }

    /// [`PostfixRelay::run`] with a bound of `limit`; past it the command (not what it started) is killed.
    fn run_bounded(&self, mut command: Command, what: &str, limit: Duration) -> anyhow::Result<()> {
        let log_path = self.work.join("commands.log");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&log_path)?;
        let offset = log.seek(SeekFrom::End(0))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .spawn()
            .with_context(|| format!("running {what}"))?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TimedOut(format!("{what} did not finish within {limit:?}")).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.success() {
            return Ok(());
        }
        let mut output = String::new();
        log.seek(SeekFrom::Start(offset))?;
        let _ = log.read_to_string(&mut output);
        bail!("{what} failed ({status}): {}", output.trim())
    }
}

impl Drop for PostfixRelay {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            eprintln!("penguin-bench: stopping Postfix: {error:#}");
        }
    }
}

/// A Postfix command that ran past its bound (and was killed).
#[derive(Debug)]
struct TimedOut(String);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimedOut {}

/// Polls `done` every 20 ms until it holds or `limit` passes; whether it held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if done() {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The uid and gid of a user, from the system's user database.
fn user_ids(name: &str) -> anyhow::Result<(u32, u32)> {
    let c_name = std::ffi::CString::new(name)?;
    // SAFETY: getpwnam gets a valid NUL-terminated string; the returned record is read at once, before
    // any other call could overwrite its static storage (the benchmark resolves users on one thread).
    let entry = unsafe { libc::getpwnam(c_name.as_ptr()) };
    if entry.is_null() {
        bail!("no user `{name}`: install the Debian package `postfix`");
    }
    // SAFETY: non-null, points to getpwnam's record.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok((uid, gid))
}
