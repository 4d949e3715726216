//! Reading replies and writing commands with timeouts, and the certificate verifier of
//! opportunistic TLS.

use std::time::Duration;

use penguin_policy::NetworkFailure;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::{Connection, MAX_REPLY_LINE, MAX_REPLY_LINES, SessionError};
use crate::delivery::reply::{RemoteReply, parse_reply_line};

impl Connection {
    /// Reads one complete reply within `timeout`. A 421 marks the connection unusable.
    pub(super) async fn read_reply(&mut self, timeout: Duration) -> Result<RemoteReply, SessionError> {
        match tokio::time::timeout(timeout, self.read_reply_lines()).await {
            Ok(Ok(reply)) => {
                if reply.code == 421 {
                    self.usable = false;
                }
                Ok(reply)
            }
            Ok(Err(error)) => {
                self.usable = false;
                Err(error)
            }
            Err(_) => {
                self.usable = false;
                Err(SessionError::network(
                    NetworkFailure::Timeout,
                    format!("{}: timeout waiting for a reply", self.host),
                ))
            }
        }
    }

    /// Reads reply lines until the last one.
    async fn read_reply_lines(&mut self) -> Result<RemoteReply, SessionError> {
        let mut lines = Vec::new();
        let mut raw = Vec::with_capacity(128);
        loop {
            raw.clear();
            let read = (&mut self.stream)
                .take(MAX_REPLY_LINE as u64)
                .read_until(b'\n', &mut raw)
                .await;
            let read =
                read.map_err(|error| SessionError::network(NetworkFailure::Disconnected, error.to_string()))?;
            if read == 0 {
                return Err(SessionError::network(
                    NetworkFailure::Disconnected,
                    format!("{} closed the connection", self.host),
                ));
            }
            let text = String::from_utf8_lossy(&raw);
            let text = text.trim_end_matches(['\r', '\n']);
            let Some(line) = parse_reply_line(text) else {
                return Err(SessionError::network(
                    NetworkFailure::Disconnected,
                    format!("malformed reply line {text:?}"),
                ));
            };
            lines.push(line.text.to_string());
            if line.last {
                return Ok(RemoteReply {
                    code: line.code,
                    lines,
                });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(SessionError::network(
                    NetworkFailure::Disconnected,
                    "reply has too many lines",
                ));
            }
        }
    }

    /// Writes and flushes `bytes` within `timeout`.
    pub(super) async fn write(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), SessionError> {
        let stream = self.stream.get_mut();
        let written = tokio::time::timeout(timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.usable = false;
                Err(SessionError::network(
                    NetworkFailure::Disconnected,
                    error.to_string(),
                ))
            }
            Err(_) => {
                self.usable = false;
                Err(SessionError::network(
                    NetworkFailure::Timeout,
                    format!("{}: timeout sending", self.host),
                ))
            }
        }
    }

    /// Whether the connection may carry another transaction.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Ends the session politely (bounded; errors ignored: the connection is going away anyway).
    pub async fn quit(mut self, timeout: Duration) {
        // With a transaction pipelined ahead the server may be reading message content: a QUIT
        // would become part of it. Closing abandons that transaction, as RFC 5321 says.
        if self.usable && self.announced.is_none() && self.write(b"QUIT\r\n", timeout).await.is_ok() {
            let _ = self.read_reply(timeout).await;
        }
        let _ = self.stream.get_mut().shutdown().await;
    }

    /// Whether the server has sent anything unsolicited (or closed): then the idle connection is dead.
    /// Replies to a transaction pipelined ahead are expected, not unsolicited.
    pub fn has_unread_input(&self) -> bool {
        self.announced.is_none() && !self.stream.buffer().is_empty()
    }

    /// Whether the server offered PIPELINING (then transactions can be pipelined ahead).
    pub fn pipelines(&self) -> bool {
        self.capabilities.pipelining
    }
}

/// Accepts any server certificate: opportunistic TLS (RFC 7435) encrypts against passive observers
/// without authenticating the server, as MTAs do by default. Signatures are still checked.
#[derive(Debug)]
pub(super) struct AcceptAnyCertificate {
    /// The provider whose signature algorithms are checked.
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
}

impl AcceptAnyCertificate {
    /// With the process default crypto provider (aws-lc-rs).
    pub(super) fn new() -> AcceptAnyCertificate {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        AcceptAnyCertificate { provider }
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
