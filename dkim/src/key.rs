//! Key material: generation (aws-lc-rs), the PEM file form, and loading a key file as a signing key
//! (mail-auth's types) or as the public key of its DNS record.
//!
//! Files are PKCS#8 PEM (`BEGIN PRIVATE KEY`), RSA or Ed25519; an RSA key in PKCS#1 PEM
//! (`BEGIN RSA PRIVATE KEY`, as older tools write) is accepted too. Errors here are fixed texts: they
//! never quote the file's content.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};

use crate::Algorithm;

/// Why a key file cannot be used.
const NOT_A_KEY: &str = "not an RSA (2048 to 8192 bits) or Ed25519 private key";

/// A generated key: the private key's file content and the public key of its record.
pub(crate) struct NewKey {
    /// The private key as PKCS#8 PEM (secret).
    pub(crate) pem: String,
    /// The public key as the record's `p=` wants it (base64).
    pub(crate) public_key: String,
}

/// Generates a key: RSA 2048 bits or Ed25519. `None` if the crypto library fails.
pub(crate) fn generate(algorithm: Algorithm) -> Option<NewKey> {
    let (pkcs8, public_key) = match algorithm {
        Algorithm::Rsa => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).ok()?;
            let pkcs8: Pkcs8V1Der = pair.as_der().ok()?;
            let public: PublicKeyX509Der = pair.public_key().as_der().ok()?;
            (pkcs8.as_ref().to_vec(), public.as_ref().to_vec())
        }
        Algorithm::Ed25519 => {
            let pair = Ed25519KeyPair::generate().ok()?;
            let pkcs8: Pkcs8V1Der = pair.as_der().ok()?;
            (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
        }
    };
    Some(NewKey {
        pem: pem("PRIVATE KEY", &pkcs8),
        public_key: STANDARD.encode(public_key),
    })
}

/// `der` as a PEM block with 64-character lines.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        // base64 output is ASCII: every chunk is valid UTF-8.
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// The private key of a key file's content.
fn decode(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| {
        "no PEM private key in the file (expected \"-----BEGIN PRIVATE KEY-----\", PKCS#8)".to_owned()
    })
}

/// The signing key of a key file's content.
pub(crate) fn signing_key(pem: &[u8]) -> Result<DkimKey, String> {
    match decode(pem)? {
        PrivateKeyDer::Pkcs8(der) => {
            let secret = der.secret_pkcs8_der();
            if let Ok(key) =
                RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(secret)))
            {
                return Ok(DkimKey::Rsa(key));
            }
            Ed25519Key::from_pkcs8_maybe_unchecked_der(secret)
                .map(DkimKey::Ed25519)
                .map_err(|_| NOT_A_KEY.to_owned())
        }
        PrivateKeyDer::Pkcs1(der) => RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(
            PrivatePkcs1KeyDer::from(der.secret_pkcs1_der()),
        ))
        .map(DkimKey::Rsa)
        .map_err(|_| NOT_A_KEY.to_owned()),
        _ => Err(format!("{NOT_A_KEY} (an EC key cannot sign DKIM)")),
    }
}

/// The algorithm and the record's public key (base64) of a key file's content.
pub(crate) fn public_key(pem: &[u8]) -> Result<(Algorithm, String), String> {
    let rsa = |pair: RsaKeyPair| -> Result<(Algorithm, String), String> {
        let public: PublicKeyX509Der = pair
            .public_key()
            .as_der()
            .map_err(|_| "cannot encode the RSA public key".to_owned())?;
        Ok((Algorithm::Rsa, STANDARD.encode(public.as_ref())))
    };
    match decode(pem)? {
        PrivateKeyDer::Pkcs8(der) => {
            let secret = der.secret_pkcs8_der();
            if let Ok(pair) = RsaKeyPair::from_pkcs8(secret) {
                return rsa(pair);
            }
            let pair =
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(secret).map_err(|_| NOT_A_KEY.to_owned())?;
            Ok((Algorithm::Ed25519, STANDARD.encode(pair.public_key().as_ref())))
        }
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
            .map_err(|_| NOT_A_KEY.to_owned())
            .and_then(rsa),
        _ => Err(format!("{NOT_A_KEY} (an EC key cannot sign DKIM)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_back() {
        for algorithm in [Algorithm::Rsa, Algorithm::Ed25519] {
            let key = generate(algorithm).expect("generate");
            assert!(
                key.pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
                "{algorithm}"
            );
            assert!(key.pem.lines().all(|line| line.len() <= 64), "{algorithm}");
            let (loaded, public) = public_key(key.pem.as_bytes()).expect("public key");
            assert_eq!((loaded, &public), (algorithm, &key.public_key));
            let signing = signing_key(key.pem.as_bytes()).expect("signing key");
            assert_eq!(matches!(signing, DkimKey::Rsa(_)), algorithm == Algorithm::Rsa);
        }
        let ed = generate(Algorithm::Ed25519).expect("generate");
        assert_eq!(
            STANDARD.decode(&ed.public_key).expect("base64").len(),
            32,
            "raw Ed25519 key"
        );
    }

    #[test]
    fn garbage_is_refused_without_quoting_it() {
        for content in [
            &b"secret-looking garbage"[..],
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        ] {
            let reason = signing_key(content).err().expect("refused");
            assert!(
                !reason.contains("secret") && !reason.contains("c2VjcmV0"),
                "{reason}"
            );
            assert!(public_key(content).is_err());
        }
    }
}
