//! Receiving sites for the shaping scenarios: one light SMTP server per loopback address, all on one
//! port (the engine's `delivery.port` is a single value), recording for every message which source
//! address sent it to which site address and when its final dot arrived. smtp-sink cannot report
//! per-peer times, hence this server. Async (tokio) so that a thousand open delivery connections cost
//! a thousand tasks, not threads; it accepts every command and keeps no content.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a connection may stay silent before the server closes it (the engine keeps idle delivery
/// connections for seconds; a connection is never held longer than this).
const IDLE_LIMIT: Duration = Duration::from_secs(120);
/// Longest command line read (RFC 5321 says 512 octets; content lines are read with the same bound).
const MAX_LINE: u64 = 8192;
/// Attempts at finding one port free on every address.
const PORT_ATTEMPTS: usize = 50;

/// One delivered message as the receiving side saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arrival {
    /// The sending address (the engine's egress source).
    pub source: IpAddr,
    /// The receiving address (the site).
    pub site: IpAddr,
    /// When its final dot was read, after [`SiteSinks::epoch`].
    pub at: Duration,
}

/// SMTP servers on several loopback addresses and one port; stops accepting when dropped.
pub struct SiteSinks {
    /// The port every address listens on.
    pub port: u16,
    /// The zero of [`Arrival::at`].
    pub epoch: Instant,
    /// Every message received so far.
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    /// The accept loops (aborted on drop; connection tasks end with their connection or the runtime).
    acceptors: Vec<JoinHandle<()>>,
}

impl SiteSinks {
    /// Listens on every address of `sites` with one common port (binding inside `runtime`).
    pub fn start(runtime: &tokio::runtime::Runtime, sites: &[Ipv4Addr]) -> anyhow::Result<SiteSinks> {
        let first = *sites.first().context("no site address")?;
        let _guard = runtime.enter();
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            match bind_all(first, sites) {
                Ok((port, listeners)) => {
                    let arrivals = Arc::new(Mutex::new(Vec::new()));
                    let epoch = Instant::now();
                    let mut acceptors = Vec::new();
                    for listener in listeners {
                        let listener = TcpListener::from_std(listener)?;
                        let arrivals = Arc::clone(&arrivals);
                        acceptors.push(tokio::spawn(accept_loop(listener, arrivals, epoch)));
                    }
                    return Ok(SiteSinks {
                        port,
                        epoch,
                        arrivals,
                        acceptors,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        bail!(
            "no port free on all {} site addresses: {last_error:?}",
            sites.len()
        )
    }

    /// A copy of every arrival so far.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for SiteSinks {
    fn drop(&mut self) {
        for acceptor in &self.acceptors {
            acceptor.abort();
        }
    }
}

/// Binds a free port on `first`, then the same port on every other address (non-blocking, for
/// tokio).
fn bind_all(first: Ipv4Addr, sites: &[Ipv4Addr]) -> std::io::Result<(u16, Vec<std::net::TcpListener>)> {
    let listener = std::net::TcpListener::bind((first, 0))?;
    let port = listener.local_addr()?.port();
    let mut listeners = vec![listener];
    for site in sites.iter().skip(1) {
        listeners.push(std::net::TcpListener::bind((*site, port))?);
    }
    for listener in &listeners {
        listener.set_nonblocking(true)?;
    }
    Ok((port, listeners))
}

/// Accepts connections until aborted; each is served by its own task.
async fn accept_loop(listener: TcpListener, arrivals: Arc<Mutex<Vec<Arrival>>>, epoch: Instant) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let arrivals = Arc::clone(&arrivals);
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(3600), serve(stream, peer, &arrivals, epoch)).await;
        });
    }
}

/// One SMTP session: every command is accepted (PIPELINING offered, no STARTTLS); each message's
/// arrival is recorded at its final dot. Replies are flushed when no further pipelined input is
/// buffered.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    arrivals: &Mutex<Vec<Arrival>>,
    epoch: Instant,
) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let site = stream.local_addr()?.ip();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write.write_all(b"220 site.bench ESMTP\r\n").await?;
    let mut line = Vec::new();
    let mut replies: Vec<u8> = Vec::new();
    loop {
        if !read_line(&mut reader, &mut line).await? {
            return Ok(());
        }
        let verb = line.get(..4).map(<[u8]>::to_ascii_uppercase).unwrap_or_default();
        match verb.as_slice() {
            b"EHLO" => replies.extend_from_slice(b"250-site.bench\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
            b"DATA" => {
                write.write_all(&replies).await?;
                replies.clear();
                write.write_all(b"354 go ahead\r\n").await?;
                skip_content(&mut reader, &mut line).await?;
                let at = epoch.elapsed();
                let arrival = Arrival {
                    source: peer.ip(),
                    site,
                    at,
                };
                arrivals
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(arrival);
                replies.extend_from_slice(b"250 2.0.0 Ok: counted\r\n");
            }
            b"QUIT" => {
                replies.extend_from_slice(b"221 2.0.0 Bye\r\n");
                write.write_all(&replies).await?;
                return Ok(());
            }
            b"STAR" => replies.extend_from_slice(b"502 5.5.1 Not offered\r\n"),
            _ => replies.extend_from_slice(b"250 2.0.0 Ok\r\n"),
        }
        if reader.buffer().is_empty() {
            write.write_all(&replies).await?;
            replies.clear();
        }
    }
}

/// Reads one line (bounded, CRLF kept) into `line`; false at end of stream. Times out after
/// [`IDLE_LIMIT`].
async fn read_line(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> anyhow::Result<bool> {
    line.clear();
    let read = tokio::time::timeout(IDLE_LIMIT, (&mut *reader).take(MAX_LINE).read_until(b'\n', line))
        .await
        .context("idle connection")??;
    Ok(read > 0)
}

/// Reads message content up to and including its final dot line.
async fn skip_content(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> anyhow::Result<()> {
    loop {
        if !read_line(reader, line).await? {
            bail!("connection closed inside DATA");
        }
        if line.as_slice() == b".\r\n" {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_source_site_and_time_of_pipelined_messages() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let sites = [Ipv4Addr::new(127, 0, 1, 201), Ipv4Addr::new(127, 0, 1, 202)];
        let sinks = SiteSinks::start(&runtime, &sites).expect("sinks");
        runtime.block_on(async {
            let local = std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)), 0);
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(local).expect("bind source");
            let target = SocketAddr::new(IpAddr::V4(sites[1]), sinks.port);
            let mut tcp = socket.connect(target).await.expect("connect");
            tcp.write_all(
                b"EHLO t\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\n..\r\n.\r\n\
                  MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
            )
            .await
            .expect("send");
            let mut replies = String::new();
            tcp.read_to_string(&mut replies).await.expect("replies");
            assert!(
                replies.starts_with("220 ") && replies.contains("250-PIPELINING"),
                "{replies}"
            );
            assert_eq!(replies.matches("354 ").count(), 2, "{replies}");
            assert!(replies.ends_with("221 2.0.0 Bye\r\n"), "{replies}");
        });
        let arrivals = sinks.arrivals();
        assert_eq!(arrivals.len(), 2);
        for arrival in arrivals {
            assert_eq!(arrival.source, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)));
            assert_eq!(arrival.site, IpAddr::V4(sites[1]));
        }
    }
}
