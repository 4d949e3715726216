//! The errors of key generation, key loading and signing. Each names the domain, selector and file
//! concerned and why; none contains key material.

use std::io;
use std::path::PathBuf;

use crate::Algorithm;

/// Why a DKIM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// An algorithm name other than `rsa` / `ed25519`.
    #[error("unknown DKIM key algorithm {given:?}: use \"rsa\" or \"ed25519\"")]
    UnknownAlgorithm {
        /// What was given.
        given: String,
    },
    /// A domain or selector that is not a DNS name (letters, digits and hyphens, dot-separated).
    #[error("invalid DKIM {kind} {name:?}: {reason}")]
    InvalidName {
        /// `"domain"` or `"selector"`.
        kind: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `generate` found a key file already there: keys are never overwritten.
    #[error(
        "a DKIM key for selector {selector:?} of {domain} already exists: {} (not overwritten; to rotate, \
         generate a key with a new selector)",
        path.display()
    )]
    KeyExists {
        /// The domain (lowercase).
        domain: String,
        /// The selector.
        selector: String,
        /// The existing key file.
        path: PathBuf,
    },
    /// A file system operation on a key file or its directory failed.
    #[error(
        "cannot {action} {} (DKIM key of selector {selector:?}, domain {domain}): {error}",
        path.display()
    )]
    Io {
        /// The domain (lowercase).
        domain: String,
        /// The selector.
        selector: String,
        /// What was being done: "create", "read", "write", ….
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// The crypto library could not generate a key.
    #[error(
        "generating the {algorithm} DKIM key for selector {selector:?} of {domain} failed in the crypto library"
    )]
    KeyGeneration {
        /// The domain (lowercase).
        domain: String,
        /// The selector.
        selector: String,
        /// The key type asked for.
        algorithm: Algorithm,
    },
    /// A key file that is not a usable RSA or Ed25519 private key.
    #[error("invalid DKIM key file {} (selector {selector:?} of {domain}): {reason}", path.display())]
    InvalidKey {
        /// The domain (lowercase).
        domain: String,
        /// The selector.
        selector: String,
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// Signing a message failed (e.g. it has none of the headers to sign).
    #[error("DKIM signing for {domain} with selector {selector:?} failed: {reason}")]
    Sign {
        /// The domain (lowercase).
        domain: String,
        /// The selector.
        selector: String,
        /// The signing library's reason.
        reason: String,
    },
    /// A message or record could not be read for verification.
    #[error("DKIM verification: {0}")]
    Verify(String),
}
