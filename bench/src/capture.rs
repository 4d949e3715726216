//! A minimal SMTP server on loopback that keeps what it receives: the DKIM probe reads the message
//! penguin-mta delivered, byte for byte (smtp-sink only counts messages). Not for load: one thread per
//! connection, one line at a time.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};

/// How long a connection may stay silent before its thread gives up (the engine keeps idle delivery
/// connections open; they end when the engine stops or this expires).
const IDLE_LIMIT: Duration = Duration::from_secs(120);
/// Longest line or message accepted (the probe sends one small message).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A running capture server; stops accepting when dropped.
pub struct CaptureServer {
    /// Where it listens.
    pub address: SocketAddr,
    /// Every received message (dot-unstuffed content, CRLF line endings, without the final dot).
    messages: Receiver<Vec<u8>>,
    /// Set on drop; the accept loop checks it after every connection.
    stopping: Arc<AtomicBool>,
    /// The accept loop.
    acceptor: Option<JoinHandle<()>>,
}

impl CaptureServer {
    /// Listens on a free loopback port and accepts connections on a thread of its own.
    pub fn start() -> anyhow::Result<CaptureServer> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the capture server")?;
        let address = listener.local_addr()?;
        let (sender, messages) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let acceptor = std::thread::Builder::new()
            .name("capture-accept".into())
            .spawn(move || accept_loop(&listener, &sender, &stop))
            .context("spawning the capture server")?;
        Ok(CaptureServer {
            address,
            messages,
            stopping,
            acceptor: Some(acceptor),
        })
    }

    /// The next message received, waiting at most `limit`.
    pub fn next_message(&self, limit: Duration) -> anyhow::Result<Vec<u8>> {
        match self.messages.recv_timeout(limit) {
            Ok(message) => Ok(message),
            Err(RecvTimeoutError::Timeout) => {
                bail!("the capture server received no message within {limit:?}")
            }
            Err(RecvTimeoutError::Disconnected) => bail!("the capture server stopped"),
        }
    }
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wakes the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Accepts connections until `stopping`; each is served on its own (detached, time-bounded) thread.
fn accept_loop(listener: &TcpListener, sender: &Sender<Vec<u8>>, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let sender = sender.clone();
        let _ = std::thread::Builder::new()
            .name("capture-conn".into())
            .spawn(move || {
                let _ = serve(stream, &sender);
            });
    }
}

/// One SMTP session: every command is accepted; each DATA content is sent to `sender`.
fn serve(stream: TcpStream, sender: &Sender<Vec<u8>>) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(IDLE_LIMIT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 capture.bench ESMTP\r\n")?;
    let mut line = Vec::new();
    loop {
        if !read_line(&mut reader, &mut line)? {
            return Ok(());
        }
        let verb = line
            .get(..4)
            .map(|verb| verb.to_ascii_uppercase())
            .unwrap_or_default();
        let reply: &[u8] = match verb.as_slice() {
            b"EHLO" => b"250-capture.bench\r\n250 8BITMIME\r\n",
            b"DATA" => {
                writer.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let message = read_data(&mut reader)?;
                let _ = sender.send(message);
                b"250 2.0.0 Ok: captured\r\n"
            }
            b"QUIT" => {
                writer.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            _ => b"250 2.0.0 Ok\r\n",
        };
        writer.write_all(reply)?;
    }
}

/// Reads one line (with its CRLF) into `line`; false at end of stream.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> anyhow::Result<bool> {
    line.clear();
    let read = std::io::Read::take(&mut *reader, MAX_MESSAGE as u64).read_until(b'\n', line)?;
    Ok(read > 0)
}

/// Reads DATA content up to the final dot line and undoes the dot-stuffing.
fn read_data(reader: &mut impl BufRead) -> anyhow::Result<Vec<u8>> {
    let mut message = Vec::new();
    let mut line = Vec::new();
    loop {
        if !read_line(reader, &mut line)? {
            bail!("connection closed inside DATA");
        }
        if line == b".\r\n" {
            return Ok(message);
        }
        let content = line.strip_prefix(b".").unwrap_or(&line);
        message.extend_from_slice(content);
        if message.len() > MAX_MESSAGE {
            bail!("message larger than {MAX_MESSAGE} bytes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_an_unstuffed_message() {
        let server = CaptureServer::start().expect("start");
        let mut client = TcpStream::connect(server.address).expect("connect");
        client
            .write_all(
                b"EHLO t\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\nend\r\n.\r\nQUIT\r\n",
            )
            .expect("send");
        let message = server.next_message(Duration::from_secs(10)).expect("message");
        assert_eq!(message, b"Subject: x\r\n\r\n.dot\r\nend\r\n");
        let mut replies = String::new();
        std::io::Read::read_to_string(&mut client, &mut replies).expect("replies");
        assert!(replies.starts_with("220 "), "{replies}");
        assert!(
            replies.contains("354 ") && replies.ends_with("221 2.0.0 Bye\r\n"),
            "{replies}"
        );
    }
}
