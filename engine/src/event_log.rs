//! The JSON lines event log (`log.events`): an [`EventSink`] that appends one JSON object per event to a
//! file, rotating it by size and reopening it on SIGHUP (for logrotate).
//!
//! [`EventSink::emit`] runs on the caller's thread (often a tokio task), so it only serialises the event
//! and hands the line to a bounded channel; it never blocks and never touches the file. A dedicated
//! writer thread drains the channel, writes everything waiting with one `write_all` per batch, rotates
//! the file when the next line would take it past the size limit, and keeps lines it could not write
//! (disk full, unwritable file) for the next batch, bounded, reporting errors at most once a minute.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::events::{Event, EventSink};

/// Lines that may wait in the channel; beyond this `emit` drops (and counts) instead of blocking.
const CHANNEL_BOUND: usize = 65_536;
/// Lines kept while the file cannot be written; the oldest are dropped (and counted) beyond this.
const MAX_PENDING: usize = 10_000;
/// Commands taken from the channel per batch, so a busy log still writes (and acknowledges) regularly.
const MAX_BATCH: usize = 4_096;
/// How often lines that could not be written are retried when no new event arrives.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Minimum time between two error reports.
const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// What the writer thread is asked to do.
enum Command {
    /// Append this line (ending in `\n`).
    Line(String),
    /// Write what came before, then close and reopen the file.
    Reopen,
    /// Only wake up: a reopen was requested through the shared flag (the channel was full).
    Wake,
    /// Write everything received so far, then acknowledge.
    Flush(SyncSender<()>),
}

/// The event log sink. Dropping it writes what is left and stops the writer thread.
pub struct EventLog {
    /// Hands lines to the writer thread; `None` only while dropping (closing it stops the thread).
    sender: Option<SyncSender<Command>>,
    /// The writer thread, joined on drop so no accepted line is abandoned.
    worker: Option<JoinHandle<()>>,
    /// Set by [`EventLog::reopen`] when the channel is full; the writer then reopens the file before
    /// writing its next batch.
    reopen: Arc<AtomicBool>,
    /// Lines lost: channel full, too many unwritable lines, or unwritable at shutdown.
    dropped: Arc<AtomicU64>,
}

impl EventLog {
    /// Opens (creating parent dirs, appending) `path`; rotates when the file would exceed `max_size`
    /// (rename path → path.1, path.1 → path.2 ... keep `keep` rotated files, delete older); starts a
    /// dedicated writer thread.
    pub fn open(path: &Path, max_size: u64, keep: usize) -> io::Result<EventLog> {
        let (file, size) = open_append(path)?;
        let (sender, receiver) = mpsc::sync_channel(CHANNEL_BOUND);
        let reopen = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            path: path.to_path_buf(),
            max_size,
            keep,
            file: Some(file),
            size,
            pending: VecDeque::new(),
            buffer: Vec::new(),
            reopen: Arc::clone(&reopen),
            dropped: Arc::clone(&dropped),
            errors: ErrorReporter::default(),
        };
        let worker = std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || writer.run(&receiver))?;
        Ok(EventLog {
            sender: Some(sender),
            worker: Some(worker),
            reopen,
            dropped,
        })
    }

    /// Close and reopen the file (SIGHUP, for logrotate): lines emitted after this go to a file at
    /// `path` again, lines emitted before it to the old file. Does not block: when the channel is full
    /// the reopen happens before the writer's next batch instead (some earlier lines may then go to the
    /// new file).
    pub fn reopen(&self) {
        let Some(sender) = &self.sender else { return };
        if let Err(TrySendError::Full(_)) = sender.try_send(Command::Reopen) {
            self.reopen.store(true, Ordering::Release);
            // Also full, most likely: the writer is busy and sees the flag at its next batch anyway.
            let _ = sender.try_send(Command::Wake);
        }
    }

    /// Flush everything sent so far (blocking until written, or until writing failed) — used at
    /// shutdown and by tests.
    pub fn flush(&self) {
        let Some(sender) = &self.sender else { return };
        let (ack, acked) = mpsc::sync_channel(1);
        if sender.send(Command::Flush(ack)).is_ok() {
            let _ = acked.recv();
        }
    }

    /// How many lines were lost so far (channel full, disk trouble beyond the backlog bound).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl EventSink for EventLog {
    fn emit(&self, event: &Event) {
        let Some(sender) = &self.sender else { return };
        let mut line = event.to_json();
        line.push('\n');
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            sender.try_send(Command::Line(line))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // Closing the channel makes the writer drain it, write, and exit.
        drop(self.sender.take());
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::error!("event log writer thread panicked");
        }
    }
}

/// Opens `path` for appending, creating it and its parent directories; returns it with its size.
fn open_append(path: &Path) -> io::Result<(File, u64)> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// `path` with `.n` appended (`events.jsonl.2`).
fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Reports write errors on the log, at most once per [`REPORT_INTERVAL`], counting the rest.
#[derive(Default)]
struct ErrorReporter {
    /// When the last report was made.
    last_report: Option<Instant>,
    /// Errors since the last report that were not reported.
    suppressed: u64,
    /// Whether the last operation failed (to say when writing works again).
    failing: bool,
}

impl ErrorReporter {
    /// Records a failure of `what` on `path`; reports it unless one was reported within the interval.
    fn failed(&mut self, what: &str, path: &Path, error: &io::Error, pending: usize) {
        self.failing = true;
        let now = Instant::now();
        if self
            .last_report
            .is_some_and(|last| now.duration_since(last) < REPORT_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::error!(
            path = %path.display(),
            %error,
            suppressed = self.suppressed,
            pending,
            "event log: {what} failed; unwritten lines are kept and retried"
        );
        self.last_report = Some(now);
        self.suppressed = 0;
    }

    /// Records a successful write; says so once after failures.
    fn succeeded(&mut self, path: &Path) {
        if std::mem::take(&mut self.failing) {
            tracing::warn!(path = %path.display(), "event log: writing works again");
        }
    }
}

/// The writer thread's state.
struct Writer {
    /// The log file's path.
    path: PathBuf,
    /// Rotate before a line would take the file past this many bytes.
    max_size: u64,
    /// Rotated files kept (`path.1` ..= `path.keep`).
    keep: usize,
    /// The open file; `None` after an error or a reopen request until it is opened again.
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    /// Lines received and not yet written, oldest first.
    pending: VecDeque<String>,
    /// Reused buffer for one `write_all`.
    buffer: Vec<u8>,
    /// Set by [`EventLog::reopen`] when it could not queue a [`Command::Reopen`].
    reopen: Arc<AtomicBool>,
    /// Shared lost-line counter.
    dropped: Arc<AtomicU64>,
    /// Rate-limited error reporting.
    errors: ErrorReporter,
}

impl Writer {
    /// Runs until the sending side is dropped and everything received has been handled.
    fn run(mut self, receiver: &Receiver<Command>) {
        loop {
            let mut acks = Vec::new();
            let first = if self.pending.is_empty() {
                receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                receiver.recv_timeout(RETRY_INTERVAL)
            };
            let mut closed = matches!(first, Err(RecvTimeoutError::Disconnected));
            if let Ok(command) = first {
                self.take(command, &mut acks);
                closed = self.drain(receiver, &mut acks);
            }
            if self.reopen.swap(false, Ordering::AcqRel) {
                self.reopen_file();
            }
            self.write_pending();
            for ack in acks {
                let _ = ack.send(());
            }
            if closed {
                let lost = self.pending.len() as u64;
                self.dropped.fetch_add(lost, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Takes what else is waiting, up to [`MAX_BATCH`]; true when the channel is closed.
    fn drain(&mut self, receiver: &Receiver<Command>, acks: &mut Vec<SyncSender<()>>) -> bool {
        for _ in 0..MAX_BATCH {
            match receiver.try_recv() {
                Ok(command) => self.take(command, acks),
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => return true,
            }
        }
        false
    }

    /// Queues a line (dropping the oldest beyond [`MAX_PENDING`]) or collects a flush acknowledgement.
    fn take(&mut self, command: Command, acks: &mut Vec<SyncSender<()>>) {
        match command {
            Command::Line(line) => {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.pop_front();
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                self.pending.push_back(line);
            }
            Command::Reopen => {
                self.write_pending();
                self.reopen_file();
            }
            Command::Wake => {}
            Command::Flush(ack) => acks.push(ack),
        }
    }

    /// Closes the file and opens `path` again (it may be a new file after logrotate renamed the old one).
    fn reopen_file(&mut self) {
        self.file = None;
        if let Err(error) = self.ensure_open() {
            self.errors
                .failed("reopen", &self.path, &error, self.pending.len());
        }
    }

    /// Opens the file if it is not open.
    fn ensure_open(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            let (file, size) = open_append(&self.path)?;
            self.file = Some(file);
            self.size = size;
        }
        Ok(())
    }

    /// Writes the pending lines, rotating as needed; on error keeps the unwritten ones for later.
    fn write_pending(&mut self) {
        while !self.pending.is_empty() {
            if let Err(error) = self.ensure_open() {
                self.errors.failed("open", &self.path, &error, self.pending.len());
                return;
            }
            let mut count = self.fill_buffer(false);
            if count == 0 {
                // The next line does not fit: start a new file. If that fails, overfill this one
                // rather than stall the log.
                if let Err(error) = self.rotate() {
                    self.errors
                        .failed("rotation", &self.path, &error, self.pending.len());
                    count = self.fill_buffer(true);
                } else {
                    continue;
                }
            }
            if let Err(error) = self.write_buffer() {
                self.errors
                    .failed("write", &self.path, &error, self.pending.len());
                return;
            }
            self.pending.drain(..count);
            self.errors.succeeded(&self.path);
        }
    }

    /// Fills the buffer with the pending lines that fit in the current file (all of them when `force`);
    /// an empty file takes at least one line. Returns how many lines it took.
    fn fill_buffer(&mut self, force: bool) -> usize {
        self.buffer.clear();
        let mut size = self.size;
        let mut count = 0;
        for line in &self.pending {
            let len = line.len() as u64;
            if !force && size > 0 && size.saturating_add(len) > self.max_size {
                break;
            }
            self.buffer.extend_from_slice(line.as_bytes());
            size = size.saturating_add(len);
            count += 1;
        }
        count
    }

    /// Appends the buffer to the file. After a failed write the file is cut back to its previous size,
    /// so a half-written batch leaves no partial line, and closed, to be opened afresh next time.
    fn write_buffer(&mut self) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("event log file is not open"));
        };
        match file.write_all(&self.buffer) {
            Ok(()) => {
                self.size = self.size.saturating_add(self.buffer.len() as u64);
                Ok(())
            }
            Err(error) => {
                if file.metadata().is_ok_and(|meta| meta.len() > self.size) {
                    let _ = file.set_len(self.size);
                }
                self.file = None;
                Err(error)
            }
        }
    }

    /// Shifts `path.n` → `path.n+1` (the oldest beyond `keep` is replaced), renames `path` → `path.1`
    /// (or removes it when `keep` is 0) and opens a new, empty file. On error the current file stays open.
    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..self.keep).rev() {
            match fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        let moved = if self.keep == 0 {
            fs::remove_file(&self.path)
        } else {
            fs::rename(&self.path, numbered(&self.path, 1))
        };
        match moved {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        self.file = None;
        self.ensure_open()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use penguin_queue::MessageId;
    use serde_json::Value;

    use super::*;
    use crate::events::{EventKind, EventResponse};
    use crate::smtp::headers::TlsInfo;

    /// A delivery event for recipient number `n` (fixed width, so all lines have the same length).
    fn event(n: usize) -> Event {
        Event {
            id: Some(MessageId::from_parts(1_795_638_425_000_000, 7)),
            message_id: Some("m1@example.org".into()),
            tenant: "acme".into(),
            campaign: "spring".into(),
            sender: "news@acme.example".into(),
            recipient: Some(format!("r{n:06}@example.com")),
            domain: Some("example.com".into()),
            mx: Some("mx1.example.com".into()),
            source_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
            attempt: Some(1),
            response: Some(EventResponse {
                code: 250,
                enhanced: Some("2.0.0".into()),
                text: "OK queued as 12345".into(),
            }),
            tls: Some(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_256_GCM_SHA384".into(),
            }),
            size: 2048,
            delay_ms: Some(1_500),
            source: Some("ip2".into()),
            pool: Some("warm".into()),
            provider: Some("other".into()),
            site: Some("mx1.example.com".into()),
            ..Event::blank(EventKind::Delivery, 1_795_638_425_042)
        }
    }

    /// The lines of a file (empty when it does not exist).
    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The recipient of a logged line.
    fn recipient(line: &str) -> String {
        let value: Value = serde_json::from_str(line).expect("valid JSON");
        value["recipient"].as_str().expect("recipient").to_string()
    }

    #[test]
    fn lines_are_json_with_the_contract_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/events.jsonl");
        let log = EventLog::open(&path, 1_000_000, 3).unwrap();
        let mut bounce = event(2);
        bounce.kind = EventKind::Bounce;
        bounce.class = Some("invalid_recipient");
        bounce.tls = None;
        log.emit(&event(1));
        log.emit(&bounce);
        log.flush();
        let lines = lines(&path);
        assert_eq!(lines.len(), 2);
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        let object = first.as_object().expect("object");
        for field in crate::events::EVENT_FIELDS {
            assert!(object.contains_key(field), "missing {field}");
        }
        assert_eq!(first["type"], "delivery");
        assert_eq!(first["timestamp"], "2026-11-25T20:27:05.042Z");
        assert_eq!(
            first["id"],
            MessageId::from_parts(1_795_638_425_000_000, 7).to_string()
        );
        assert_eq!(first["message_id"], "m1@example.org");
        assert_eq!(first["tenant"], "acme");
        assert_eq!(first["campaign"], "spring");
        assert_eq!(first["sender"], "news@acme.example");
        assert_eq!(first["recipient"], "r000001@example.com");
        assert_eq!(first["domain"], "example.com");
        assert_eq!(first["mx"], "mx1.example.com");
        assert_eq!(first["source_ip"], "192.0.2.10");
        assert_eq!(first["attempt"], 1);
        assert_eq!(first["response"]["code"], 250);
        assert_eq!(first["response"]["enhanced"], "2.0.0");
        assert_eq!(first["response"]["text"], "OK queued as 12345");
        assert_eq!(first["tls"], "TLSv1.3 TLS13_AES_256_GCM_SHA384");
        assert_eq!(first["size"], 2048);
        assert_eq!(first["delay_ms"], 1_500);
        assert!(first["class"].is_null() && first["client_ip"].is_null() && first["recipients"].is_null());
        let second: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["type"], "bounce");
        assert_eq!(second["class"], "invalid_recipient");
        assert!(second["tls"].is_null());
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn rotation_by_size_keeps_order_and_at_most_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let line_len = event(0).to_json().len() as u64 + 1;
        let log = EventLog::open(&path, 3 * line_len, 2).unwrap();
        for n in 0..9 {
            log.emit(&event(n));
        }
        log.flush();
        let files = [numbered(&path, 2), numbered(&path, 1), path.clone()];
        let all: Vec<String> = files
            .iter()
            .flat_map(|f| lines(f))
            .map(|l| recipient(&l))
            .collect();
        let expected: Vec<String> = (0..9).map(|n| format!("r{n:06}@example.com")).collect();
        assert_eq!(all, expected);
        for file in &files {
            assert_eq!(lines(file).len(), 3, "{}", file.display());
        }
        // Three more lines: the oldest file goes, never more than `keep` rotated files.
        for n in 9..12 {
            log.emit(&event(n));
        }
        log.flush();
        assert!(!numbered(&path, 3).exists());
        let all: Vec<String> = files
            .iter()
            .flat_map(|f| lines(f))
            .map(|l| recipient(&l))
            .collect();
        let expected: Vec<String> = (3..12).map(|n| format!("r{n:06}@example.com")).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn rotation_with_keep_zero_and_oversized_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        fs::write(&path, "x".repeat(100) + "\n").unwrap();
        // Every line is larger than the limit: each gets a file of its own.
        let log = EventLog::open(&path, 10, 0).unwrap();
        log.emit(&event(1));
        log.emit(&event(2));
        log.flush();
        assert_eq!(
            lines(&path).iter().map(|l| recipient(l)).collect::<Vec<_>>(),
            ["r000002@example.com"]
        );
        assert!(!numbered(&path, 1).exists());
    }

    #[test]
    fn reopen_after_rename_writes_to_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let rotated = dir.path().join("events.jsonl-20260101");
        let log = EventLog::open(&path, 1_000_000, 5).unwrap();
        log.emit(&event(1));
        log.flush();
        fs::rename(&path, &rotated).unwrap();
        log.emit(&event(2)); // still goes to the renamed file: logrotate's window before SIGHUP
        log.reopen();
        log.emit(&event(3));
        log.flush();
        let old: Vec<String> = lines(&rotated).iter().map(|l| recipient(l)).collect();
        assert_eq!(old, ["r000001@example.com", "r000002@example.com"]);
        let new: Vec<String> = lines(&path).iter().map(|l| recipient(l)).collect();
        assert_eq!(new, ["r000003@example.com"]);
    }

    #[test]
    fn flush_and_drop_make_lines_visible() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::open(&path, 1_000_000, 5).unwrap();
        for n in 0..100 {
            log.emit(&event(n));
        }
        log.flush();
        assert_eq!(lines(&path).len(), 100);
        for n in 100..200 {
            log.emit(&event(n));
        }
        drop(log);
        let all: Vec<String> = lines(&path).iter().map(|l| recipient(l)).collect();
        let expected: Vec<String> = (0..200).map(|n| format!("r{n:06}@example.com")).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn concurrent_emitters_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = Arc::new(EventLog::open(&path, 1_000_000_000, 5).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for n in 0..2_000 {
                        log.emit(&event(t * 100_000 + n));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        log.flush();
        assert_eq!(log.dropped(), 0);
        let got: Vec<usize> = lines(&path)
            .iter()
            .map(|l| recipient(l)[1..7].parse().unwrap())
            .collect();
        assert_eq!(got.len(), 16_000);
        for t in 0..8 {
            let mine: Vec<usize> = got.iter().copied().filter(|n| n / 100_000 == t).collect();
            let expected: Vec<usize> = (0..2_000).map(|n| t * 100_000 + n).collect();
            assert_eq!(mine, expected, "thread {t}: all lines, in its order");
        }
    }

    #[test]
    fn unwritable_file_keeps_a_bounded_backlog_and_retries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::open(&path, 1_000_000_000, 5).unwrap();
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap(); // a directory cannot be opened for writing, even by root
        log.reopen();
        let extra = 25;
        for n in 0..MAX_PENDING + extra {
            log.emit(&event(n));
        }
        log.flush();
        assert_eq!(
            log.dropped(),
            extra as u64,
            "the oldest beyond the bound are dropped"
        );
        fs::remove_dir(&path).unwrap();
        log.flush(); // the next batch retries, even without new lines
        assert_eq!(lines(&path).len(), MAX_PENDING);
        log.emit(&event(999_999));
        log.flush();
        assert_eq!(log.dropped(), extra as u64);
        let got: Vec<String> = lines(&path).iter().map(|l| recipient(l)).collect();
        let mut expected: Vec<String> = (extra..MAX_PENDING + extra)
            .map(|n| format!("r{n:06}@example.com"))
            .collect();
        expected.push("r999999@example.com".into());
        assert_eq!(got.len(), expected.len());
        assert!(
            got == expected,
            "the newest lines, in order (first {:?}, last {:?})",
            got.first(),
            got.last()
        );
    }

    #[test]
    fn failed_write_keeps_the_lines_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        fs::write(&path, "").unwrap();
        let mut writer = Writer {
            path: path.clone(),
            max_size: 1_000_000,
            keep: 1,
            file: Some(File::open(&path).unwrap()), // read-only: every write fails
            size: 0,
            pending: (0..3).map(|n| event(n).to_json() + "\n").collect(),
            buffer: Vec::new(),
            reopen: Arc::new(AtomicBool::new(false)),
            dropped: Arc::new(AtomicU64::new(0)),
            errors: ErrorReporter::default(),
        };
        writer.write_pending();
        assert_eq!(writer.pending.len(), 3);
        assert!(writer.file.is_none() && writer.errors.failing);
        writer.write_pending();
        assert!(writer.pending.is_empty() && !writer.errors.failing);
        assert_eq!(lines(&path).len(), 3);
    }

    #[test]
    fn open_fails_when_the_path_cannot_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").unwrap();
        assert!(EventLog::open(&blocker.join("events.jsonl"), 1_000, 1).is_err());
    }
}
