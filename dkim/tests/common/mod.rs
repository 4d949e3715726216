//! Shared by the integration tests: verification with mail-auth itself, the public keys served from
//! an in-memory TXT cache (no DNS), and helpers to read a DKIM-Signature's tags.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};
use penguin_dkim::DnsRecord;

/// A message with CRLF line endings from lines joined by CRLF (no CRLF added at the end).
pub fn crlf(lines: &[&str]) -> Vec<u8> {
    lines.join("\r\n").into_bytes()
}

/// A plain test message: From, To, Subject, Date, Message-ID, a two-line body ending with CRLF.
pub fn plain_message() -> Vec<u8> {
    crlf(&[
        "From: Alice <alice@example.com>",
        "To: bob@example.net",
        "Subject: Quarterly report",
        "Date: Wed, 25 Nov 2026 10:00:00 +0000",
        "Message-ID: <report-1@example.com>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Hello Bob,",
        "here is the report.",
        "",
    ])
}

/// The TXT records the verifier sees, by name (lowercase, trailing dot), as mail-auth caches them.
#[derive(Default)]
pub struct TxtCache(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().expect("cache lock").get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().expect("cache lock").remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _valid_until: Instant) {
        self.0.lock().expect("cache lock").insert(key, value);
    }
}

impl TxtCache {
    /// A cache holding these records, each parsed by mail-auth from its published text (the
    /// character-strings concatenated, as a resolver does).
    pub fn with(records: &[&DnsRecord]) -> TxtCache {
        let cache = TxtCache::default();
        for record in records {
            let text = record.txt_strings().concat();
            let key = DomainKey::parse(text.as_bytes()).expect("mail-auth parses the record");
            cache.insert(
                record.name().to_ascii_lowercase().into_boxed_str(),
                Txt::DomainKey(Arc::new(key)),
                Instant::now() + Duration::from_secs(3600),
            );
        }
        cache
    }
}

/// An authenticator whose resolver would ask a closed loopback port: every record must come from the
/// cache, and a miss fails at once instead of reaching the Internet.
fn authenticator() -> MessageAuthenticator {
    let mut udp = ConnectionConfig::udp();
    udp.port = 9;
    let server = NameServerConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST), true, vec![udp]);
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
    let mut options = ResolverOpts::default();
    options.timeout = Duration::from_millis(200);
    options.attempts = 0;
    MessageAuthenticator::new(config, options).expect("authenticator")
}

/// Verifies every DKIM signature of `message` against `records`: (selector, passed, detail).
pub async fn verify(message: &[u8], records: &[&DnsRecord]) -> Vec<(String, bool, String)> {
    let cache = TxtCache::with(records);
    let parsed = AuthenticatedMessage::parse(message).expect("mail-auth parses the message");
    let outputs = authenticator()
        .verify_dkim(Parameters::new(&parsed).with_txt_cache(&cache))
        .await;
    outputs
        .iter()
        .map(|output| {
            let selector = output.signature().map(|s| s.s.clone()).unwrap_or_default();
            let pass = *output.result() == DkimResult::Pass;
            (selector, pass, format!("{:?}", output.result()))
        })
        .collect()
}

/// `signature_fields` (DKIM-Signature fields ending with CRLF) prepended to `message`.
pub fn prepend(signature_fields: &[u8], message: &[u8]) -> Vec<u8> {
    [signature_fields, message].concat()
}

/// The DKIM-Signature fields of a header block, unfolded, one string each.
pub fn fields(header: &[u8]) -> Vec<String> {
    let text = String::from_utf8(header.to_vec()).expect("ASCII header");
    let unfolded = text.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The value of `tag` in one unfolded DKIM-Signature field, whitespace removed.
pub fn tag(field: &str, tag: &str) -> Option<String> {
    let value = field.split_once(':')?.1;
    value.split(';').find_map(|part| {
        let (name, value) = part.split_once('=')?;
        (name.trim() == tag).then(|| value.chars().filter(|c| !c.is_whitespace()).collect())
    })
}
