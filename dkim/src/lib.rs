//! DKIM for penguin-mta: the key store (key generation, the DNS record to publish) and the signer.
//!
//! Keys live in `KEY_DIR/DOMAIN/SELECTOR.pem` (PKCS#8 PEM, mode 0600). [`KeyStore::generate`] writes one
//! and returns its [`DnsRecord`]; [`Signer::sign`] adds one `DKIM-Signature` per selector whose key file
//! exists (relaxed/relaxed, rsa-sha256 or ed25519-sha256, `From` over-signed). The signer caches the
//! parsed keys and notices a key file that appears, changes or disappears at the next message.
//!
//! Key material never appears in `Debug` output or in errors.

mod error;
mod key;
mod names;
mod record;
mod signer;
mod store;
mod verify;

use std::fmt;
use std::str::FromStr;

pub use error::DkimError;
pub use record::{DnsRecord, txt_strings, txt_zone_line};
pub use signer::{SIGNED_HEADERS, Signed, Signer};
pub use store::KeyStore;
pub use verify::{Verification, verify_offline};

/// A DKIM key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSA 2048 bits, signatures `a=rsa-sha256`, record `k=rsa`.
    Rsa,
    /// Ed25519 (RFC 8463), signatures `a=ed25519-sha256`, record `k=ed25519`.
    Ed25519,
}

impl Algorithm {
    /// The name used on the command line and in the DNS record's `k=` tag: `"rsa"` or `"ed25519"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DkimError;

    /// Accepts `"rsa"` and `"ed25519"` (any case).
    fn from_str(s: &str) -> Result<Algorithm, DkimError> {
        if s.eq_ignore_ascii_case("rsa") {
            Ok(Algorithm::Rsa)
        } else if s.eq_ignore_ascii_case("ed25519") {
            Ok(Algorithm::Ed25519)
        } else {
            Err(DkimError::UnknownAlgorithm { given: s.to_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for algorithm in [Algorithm::Rsa, Algorithm::Ed25519] {
            assert_eq!(algorithm.to_string().parse::<Algorithm>().ok(), Some(algorithm));
        }
        assert_eq!("RSA".parse::<Algorithm>().ok(), Some(Algorithm::Rsa));
        let error = "dsa".parse::<Algorithm>().expect_err("dsa is not supported");
        assert!(error.to_string().contains("\"dsa\""), "{error}");
    }
}
