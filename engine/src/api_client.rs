//! A small HTTP/1.1 client for the server's control API (`[api] listen`), for the CLI commands that
//! talk to a running server (`shaping`, `suspend`, `resume`, `suspensions`): plain HTTP (the API has no
//! TLS), one connection per request, each request bounded by [`REQUEST_TIMEOUT`], the bearer token
//! (`--token` or `PENGUIN_API_TOKEN`) in every request.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Bound on one request: connecting, sending, and reading the whole answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    /// `--api` is not an `http://HOST:PORT` URL.
    #[error("--api {url:?}: {reason}")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be opened (nothing listens, unknown host, ...).
    #[error("cannot reach the API at {url}: {reason}; is penguin-mta serve running?")]
    Unreachable {
        /// The API's URL.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// No complete answer within [`REQUEST_TIMEOUT`].
    #[error("the API at {url} did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The API's URL.
        url: String,
    },
    /// The HTTP exchange failed (connection closed, malformed answer, bad request path).
    #[error("HTTP exchange with the API at {url} failed: {reason}")]
    Http {
        /// The API's URL.
        url: String,
        /// The error.
        reason: String,
    },
}

/// An answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
}

impl ApiResponse {
    /// The message of a JSON error body (`{"error": {"message": "..."}}`), else the body as text.
    pub fn error_message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|value| {
                let error = value.get("error")?;
                let message = error.get("message").unwrap_or(error);
                message.as_str().map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_owned())
    }
}

/// Where the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClient {
    /// `HOST:PORT`: what is resolved and connected to, and the `Host` header.
    authority: String,
    /// Sent as `Authorization: Bearer TOKEN`.
    token: Option<String>,
}

impl ApiClient {
    /// The API of a server whose `api.listen` is `listen` (an unspecified address — `0.0.0.0`, `::` —
    /// is reached on loopback).
    pub fn from_listen(listen: SocketAddr) -> ApiClient {
        let ip = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        ApiClient {
            authority: SocketAddr::new(ip, listen.port()).to_string(),
            token: None,
        }
    }

    /// This client, sending `token` with every request.
    pub fn with_token(mut self, token: Option<String>) -> ApiClient {
        self.token = token.filter(|token| !token.trim().is_empty());
        self
    }

    /// The API at `url`: `http://HOST:PORT` (a trailing `/` is fine; without a port, 80), or just
    /// `HOST:PORT`.
    pub fn from_url(url: &str) -> Result<ApiClient, ApiClientError> {
        let bad = |reason: &str| ApiClientError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = url.trim();
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(bad("the API speaks plain HTTP: use http://"));
            }
            Some(_) => return Err(bad("expected http://HOST:PORT")),
            None => trimmed,
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !path.is_empty() && path != "/" {
            return Err(bad(
                "give the server's address only, e.g. http://127.0.0.1:8025 (no path)",
            ));
        }
        if authority.is_empty()
            || authority.contains(['@', '?', '#'])
            || authority.contains(char::is_whitespace)
        {
            return Err(bad("expected http://HOST:PORT, e.g. http://127.0.0.1:8025"));
        }
        let has_port = !authority.ends_with(']') && authority.contains(':');
        let authority = if has_port {
            let (_, port) = authority.rsplit_once(':').unwrap_or_default();
            port.parse::<u16>()
                .map_err(|_| bad(&format!("port {port:?} is not a number from 0 to 65535")))?;
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(ApiClient {
            authority,
            token: None,
        })
    }

    /// The API's URL as shown in messages.
    pub fn url(&self) -> String {
        format!("http://{}", self.authority)
    }

    /// Sends `method path` with an optional JSON body; any HTTP status is an answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<ApiResponse, ApiClientError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, json_body))
            .await
            .map_err(|_| ApiClientError::Timeout { url: self.url() })?
    }

    /// A failed HTTP exchange.
    fn http_error(&self, error: impl std::fmt::Display) -> ApiClientError {
        ApiClientError::Http {
            url: self.url(),
            reason: error.to_string(),
        }
    }

    /// One request over a new connection.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<ApiResponse, ApiClientError> {
        let stream = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.http_error(e))?;
        // The connection does the IO until the answer is read (or this request fails).
        let driver = tokio::spawn(connection);
        let answer = self.send(&mut sender, method, path, json_body).await;
        driver.abort();
        answer
    }

    /// Sends the request over an open connection and reads the whole answer.
    async fn send(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        method: Method,
        path: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<ApiResponse, ApiClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "application/json");
        if json_body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
        }
        let request = request
            .body(Full::new(Bytes::from(json_body.unwrap_or_default())))
            .map_err(|e| self.http_error(e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.http_error(e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.http_error(e))?
            .to_bytes();
        Ok(ApiResponse { status, body })
    }

    /// A connection to the first address of the authority that accepts one.
    async fn connect(&self) -> Result<TcpStream, ApiClientError> {
        let unreachable = |error: &io::Error| ApiClientError::Unreachable {
            url: self.url(),
            reason: describe(error),
        };
        let addresses = tokio::net::lookup_host(&self.authority)
            .await
            .map_err(|e| unreachable(&e))?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name has no address");
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last = error,
            }
        }
        Err(unreachable(&last))
    }
}

/// A connection error in words (`connection refused` rather than `Connection refused (os error 111)`).
fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut => "connection timed out".to_owned(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_owned(),
        _ => error.to_string(),
    }
}

/// What a path segment keeps as it is: `A-Z a-z 0-9 - . _ ~` (RFC 3986 unreserved).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `segment` percent-encoded for use as one path segment (everything but `A-Z a-z 0-9 - . _ ~`).
pub fn path_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |url: &str| ApiClient::from_url(url).map(|c| c.url()).ok();
        assert_eq!(
            ok("http://127.0.0.1:8025").as_deref(),
            Some("http://127.0.0.1:8025")
        );
        assert_eq!(
            ok("http://127.0.0.1:8025/").as_deref(),
            Some("http://127.0.0.1:8025")
        );
        assert_eq!(
            ok("HTTP://localhost:9000").as_deref(),
            Some("http://localhost:9000")
        );
        assert_eq!(ok("127.0.0.1:8025").as_deref(), Some("http://127.0.0.1:8025"));
        assert_eq!(ok("http://[::1]:8025").as_deref(), Some("http://[::1]:8025"));
        assert_eq!(ok("http://[::1]").as_deref(), Some("http://[::1]:80"));
        assert_eq!(ok("http://localhost").as_deref(), Some("http://localhost:80"));
        for bad in [
            "https://127.0.0.1:8025",
            "ftp://127.0.0.1",
            "http://127.0.0.1:8025/v1",
            "http://",
            "http://127.0.0.1:99999",
            "http://user@127.0.0.1:8025",
            "",
        ] {
            assert!(ok(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let cases = [
            ("0.0.0.0:8025", "http://127.0.0.1:8025"),
            ("[::]:8025", "http://[::1]:8025"),
            ("127.0.0.2:81", "http://127.0.0.2:81"),
        ];
        for (listen, url) in cases {
            let listen: SocketAddr = listen.parse().expect("address");
            assert_eq!(ApiClient::from_listen(listen).url(), url);
        }
    }

    #[test]
    fn error_messages_come_from_the_error_field() {
        let answer = |body: &'static str| ApiResponse {
            status: StatusCode::BAD_REQUEST,
            body: Bytes::from_static(body.as_bytes()),
        };
        assert_eq!(
            answer(r#"{"error":"duration: required"}"#).error_message(),
            "duration: required"
        );
        assert_eq!(answer("plain text\n").error_message(), "plain text");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("s0123abcd"), "s0123abcd");
        assert_eq!(path_segment("a/b c%"), "a%2Fb%20c%25");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn nothing_listening_is_connection_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let client = ApiClient::from_listen(SocketAddr::from(([127, 0, 0, 1], port)));
        let error = runtime
            .block_on(client.request(Method::GET, "/v1/shaping", None))
            .expect_err("nothing listens");
        assert_eq!(
            error.to_string(),
            format!(
                "cannot reach the API at http://127.0.0.1:{port}: connection refused; is penguin-mta serve running?"
            )
        );
    }
}
