//! Shared by the integration tests: verification with mail-auth itself, the public keys served from
//! an in-memory TXT cache (no DNS), and helpers to read a DKIM-Signature's tags.

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

/// Verifies every DKIM signature of `message` against `records` (no DNS): (selector, passed, detail).
pub async fn verify(message: &[u8], records: &[&DnsRecord]) -> Vec<(String, bool, String)> {
    penguin_dkim::verify_offline(message, records)
        .await
        .expect("mail-auth reads the message and the records")
        .into_iter()
        .map(|v| (v.selector, v.pass, v.detail))
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
