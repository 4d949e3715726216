//! Offline verification with mail-auth: the public keys come from given [`DnsRecord`]s, never from
//! DNS (the resolver points at a closed loopback port, so a key that is not given fails at once).
//! For the benchmark's signed-mail probe and the crate's tests; the end-to-end tests verify through a
//! real DNS server instead.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mail_auth::common::crypto::Algorithm as SignatureAlgorithm;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};

use crate::{DkimError, DnsRecord};

/// What mail-auth found for one DKIM-Signature field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// `d=` (empty when the field could not be parsed).
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// `a=`: `rsa-sha256`, `ed25519-sha256` or `rsa-sha1` (empty when unparsed).
    pub algorithm: &'static str,
    /// The signature verified.
    pub pass: bool,
    /// mail-auth's result, for messages.
    pub detail: String,
}

/// Verifies every DKIM-Signature of `message` against `records` only (no DNS query is sent).
pub async fn verify_offline(message: &[u8], records: &[&DnsRecord]) -> Result<Vec<Verification>, DkimError> {
    let cache = TxtCache::with(records)?;
    let parsed = AuthenticatedMessage::parse(message)
        .ok_or_else(|| DkimError::Verify("mail-auth cannot parse the message".into()))?;
    let outputs = authenticator()?
        .verify_dkim(Parameters::new(&parsed).with_txt_cache(&cache))
        .await;
    Ok(outputs
        .iter()
        .map(|output| {
            let signature = output.signature();
            Verification {
                domain: signature.map(|s| s.d.clone()).unwrap_or_default(),
                selector: signature.map(|s| s.s.clone()).unwrap_or_default(),
                algorithm: signature.map_or("", |s| algorithm_tag(s.a)),
                pass: *output.result() == DkimResult::Pass,
                detail: format!("{:?}", output.result()),
            }
        })
        .collect())
}

/// The `a=` tag value of an algorithm.
fn algorithm_tag(algorithm: SignatureAlgorithm) -> &'static str {
    match algorithm {
        SignatureAlgorithm::RsaSha256 => "rsa-sha256",
        SignatureAlgorithm::Ed25519Sha256 => "ed25519-sha256",
        SignatureAlgorithm::RsaSha1 => "rsa-sha1",
    }
}

/// The TXT records the verifier sees, by name (lowercase, trailing dot), as mail-auth caches them.
#[derive(Default)]
struct TxtCache(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _valid_until: Instant) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, value);
    }
}

impl TxtCache {
    /// A cache holding these records, each parsed by mail-auth from its published text (the
    /// character-strings concatenated, as a resolver does).
    fn with(records: &[&DnsRecord]) -> Result<TxtCache, DkimError> {
        let cache = TxtCache::default();
        for record in records {
            let text = record.txt_strings().concat();
            let key = DomainKey::parse(text.as_bytes()).map_err(|error| {
                DkimError::Verify(format!("mail-auth cannot parse the record {text:?}: {error}"))
            })?;
            cache.insert(
                record.name().to_ascii_lowercase().into_boxed_str(),
                Txt::DomainKey(Arc::new(key)),
                Instant::now() + Duration::from_secs(3600),
            );
        }
        Ok(cache)
    }
}

/// An authenticator whose resolver would ask a closed loopback port: every record must come from the
/// cache, and a miss fails at once instead of reaching the network.
fn authenticator() -> Result<MessageAuthenticator, DkimError> {
    let mut udp = ConnectionConfig::udp();
    udp.port = 9;
    let server = NameServerConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST), true, vec![udp]);
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
    let mut options = ResolverOpts::default();
    options.timeout = Duration::from_millis(200);
    options.attempts = 0;
    MessageAuthenticator::new(config, options).map_err(|error| DkimError::Verify(error.to_string()))
}
