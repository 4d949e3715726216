//! The STARTTLS server configuration from `[tls] cert/key` (PEM files).

use std::sync::Arc;

use penguin_config::TlsConfig;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// A TLS setting that cannot be used, with the config field it comes from.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TlsSetupError {
    /// Config path of the field, e.g. "tls.cert".
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Loads the certificate chain and key and builds the acceptor.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsSetupError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|error| TlsSetupError {
            field: "tls.cert",
            reason: format!(
                "cannot read a PEM certificate chain from {}: {error}",
                config.cert.display()
            ),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError {
            field: "tls.cert",
            reason: format!("{} holds no PEM certificate", config.cert.display()),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|error| TlsSetupError {
        field: "tls.key",
        reason: format!(
            "cannot read a PEM private key from {}: {error}",
            config.key.display()
        ),
    })?;
    let server_config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| TlsSetupError {
            field: "tls.key",
            reason: format!("does not match tls.cert: {error}"),
        })?;
    Ok(TlsAcceptor::from(Arc::new(server_config)))
}
