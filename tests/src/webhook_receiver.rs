//! `WebhookReceiver`: a real HTTP/1.1 server on loopback that plays a tenant's webhook endpoint. It
//! answers each POST with the next status of its script (then 200), and records every request (its
//! headers and body) with the answer given.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as received.
#[derive(Clone, Debug)]
pub struct WebhookRequest {
    /// Header lines, lowercased names: (name, value).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl WebhookRequest {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// State shared with the server task.
#[derive(Default)]
struct Shared {
    /// Statuses still to answer, in order (then 200).
    script: Mutex<Vec<u16>>,
    /// Requests in order.
    requests: Mutex<Vec<WebhookRequest>>,
    /// TLS handshakes that completed (https receivers).
    handshakes: std::sync::atomic::AtomicU64,
}

/// A scripted webhook endpoint; stops when dropped.
pub struct WebhookReceiver {
    /// Where it listens.
    pub address: SocketAddr,
    /// Shared with the task.
    shared: Arc<Shared>,
    /// The accept loop.
    task: JoinHandle<()>,
}

impl WebhookReceiver {
    /// Starts on 127.0.0.1, answering `script` in order, then 200.
    pub async fn start(script: Vec<u16>) -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            requests: Mutex::new(Vec::new()),
            handshakes: std::sync::atomic::AtomicU64::new(0),
        });
        let state = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&state)));
            }
        });
        WebhookReceiver {
            address,
            shared,
            task,
        }
    }

    /// An https receiver (answering 200) with the test CA's certificate, which no system trusts.
    pub async fn start_tls(certs: &crate::TestCerts) -> WebhookReceiver {
        use rustls_pki_types::pem::PemObject;
        let chain = rustls_pki_types::CertificateDer::pem_file_iter(&certs.cert_path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .expect("read the certificate chain");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&certs.key_path).expect("read the key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("TLS server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shared = Arc::new(Shared::default());
        let state = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), Arc::clone(&state));
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        state.handshakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        serve(tls, state).await;
                    }
                });
            }
        });
        WebhookReceiver {
            address,
            shared,
            task,
        }
    }

    /// TLS handshakes that completed.
    pub fn handshakes(&self) -> u64 {
        self.shared.handshakes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Its URL with `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Replaces the statuses still to answer (then 200).
    pub fn set_script(&self, script: Vec<u16>) {
        *self.shared.script.lock().unwrap_or_else(PoisonError::into_inner) = script;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<WebhookRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (bounded by [`crate::WAIT`]) until `done` holds for the requests; returns them.
    pub async fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&[WebhookRequest]) -> bool,
    ) -> Vec<WebhookRequest> {
        let deadline = Instant::now() + crate::WAIT;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            assert!(Instant::now() < deadline, "waited for {what}; got {requests:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: requests until the client closes (keep-alive or not).
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    loop {
        let Some(head_end) = read_until_head(&mut stream, &mut buffer).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body_start = head_end + 4;
        while buffer.len() < body_start + length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[body_start..body_start + length].to_vec();
        buffer.drain(..body_start + length);
        let status = {
            let mut script = shared.script.lock().unwrap_or_else(PoisonError::into_inner);
            if script.is_empty() { 200 } else { script.remove(0) }
        };
        shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(WebhookRequest {
                headers,
                body,
                status,
            });
        let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads until the end of a request head; its offset (before the blank line), or None at EOF.
async fn read_until_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<usize> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}
