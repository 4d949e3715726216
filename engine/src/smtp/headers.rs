//! What reception adds to and reads from a message's header: the Received trace field,
//! Message-ID and Date when missing, and the campaign from `X-Campaign-ID`.

use std::net::IpAddr;
use std::time::SystemTime;

use memchr::memchr;

use crate::timefmt;

/// The campaign of messages without an `X-Campaign-ID` header.
pub const DEFAULT_CAMPAIGN: &str = "default";
/// Longest accepted campaign id.
pub const MAX_CAMPAIGN_LEN: usize = 128;

/// TLS parameters of a session, for the Received field and events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. "TLSv1.3".
    pub version: String,
    /// e.g. "TLS13_AES_256_GCM_SHA384".
    pub cipher: String,
}

impl TlsInfo {
    /// Version and cipher of an established session (either side), named as in Postfix's logs.
    pub fn of(session: &rustls::CommonState) -> TlsInfo {
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            other => format!("{other:?}"),
        };
        let cipher = session
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown");
        TlsInfo {
            version,
            cipher: cipher.to_string(),
        }
    }
}

/// Everything the Received field says about how a message arrived.
#[derive(Debug)]
pub struct Trace<'a> {
    /// Our host name (`by`).
    pub hostname: &'a str,
    /// The client's EHLO/HELO argument (`from`).
    pub helo: &'a str,
    /// The client's address.
    pub client_ip: IpAddr,
    /// EHLO (true) or HELO.
    pub esmtp: bool,
    /// TLS in use, if any.
    pub tls: Option<&'a TlsInfo>,
    /// The tenant, when the client authenticated.
    pub authenticated_tenant: Option<&'a str>,
    /// The queue id of the message.
    pub queue_id: &'a str,
    /// The recipient, named only when there is exactly one (RFC 5321 §4.4 privacy).
    pub single_recipient: Option<&'a str>,
    /// Time of reception.
    pub now: SystemTime,
}

/// Iterates the header fields of `content` as (name, raw value with folding), up to the blank line.
pub fn header_fields(content: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = content;
    std::iter::from_fn(move || {
        if rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return None;
        }
        let mut end = 0;
        loop {
            let line_end = memchr(b'\n', &rest[end..]).map_or(rest.len(), |pos| end + pos + 1);
            end = line_end;
            if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        let field = &rest[..end];
        rest = &rest[end..];
        let colon = memchr(b':', field)?;
        Some((&field[..colon], &field[colon + 1..]))
    })
}

/// The Message-ID field's value without angle brackets and folding, if the header has one.
pub fn message_id(content: &[u8]) -> Option<String> {
    let (_, raw) = header_fields(content).find(|(name, _)| name.eq_ignore_ascii_case(b"message-id"))?;
    let text = String::from_utf8_lossy(raw);
    let value: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let value = value.trim_start_matches('<').trim_end_matches('>');
    (!value.is_empty()).then(|| value.to_string())
}

/// The value of the first field named `name` (lowercase), unfolded (line breaks removed), if the
/// header has one.
fn first_value(content: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let (_, raw) = header_fields(content).find(|(field, _)| field.eq_ignore_ascii_case(name))?;
    Some(
        raw.iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect(),
    )
}

/// Why the campaign header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadCampaign;

/// The campaign from the first `X-Campaign-ID` field: unfolded, trimmed, 1–128 printable ASCII.
pub fn campaign_of(content: &[u8]) -> Result<String, BadCampaign> {
    let Some(unfolded) = first_value(content, b"x-campaign-id") else {
        return Ok(DEFAULT_CAMPAIGN.to_string());
    };
    let value = unfolded.trim_ascii();
    if value.is_empty() {
        return Ok(DEFAULT_CAMPAIGN.to_string());
    }
    if value.len() > MAX_CAMPAIGN_LEN || !value.iter().all(|b| b.is_ascii_graphic()) {
        return Err(BadCampaign);
    }
    Ok(String::from_utf8_lossy(value).into_owned())
}

/// Longest accepted pool name (pool names are 1-64 characters).
pub const MAX_POOL_LEN: usize = 64;

/// Why the pool header was refused: the value as written (lossy), for the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPool(pub String);

/// The pool a message asks for with its first `X-Pool` field (unfolded, trimmed); `None` without one
/// (or with an empty one). A value that cannot be a pool name is refused.
pub fn pool_of(content: &[u8]) -> Result<Option<String>, BadPool> {
    let Some(unfolded) = first_value(content, b"x-pool") else {
        return Ok(None);
    };
    let value = unfolded.trim_ascii();
    if value.is_empty() {
        return Ok(None);
    }
    let name_like = value.len() <= MAX_POOL_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let text: String = String::from_utf8_lossy(value)
        .chars()
        .take(MAX_POOL_LEN)
        .collect();
    if name_like {
        Ok(Some(text))
    } else {
        Err(BadPool(text))
    }
}

/// Whether the message's first `X-Warmup-Priority` field says `high` (any case): the platform marks
/// engaged recipients so that a warming source's capacity goes to them first. Any other value is
/// normal priority.
pub fn warmup_priority_of(content: &[u8]) -> bool {
    first_value(content, b"x-warmup-priority")
        .is_some_and(|value| value.trim_ascii().eq_ignore_ascii_case(b"high"))
}

/// Header fields that steer penguin-mta and are never delivered: the campaign, the pool and the
/// warm-up priority.
const CONTROL_FIELDS: [&[u8]; 3] = [b"x-campaign-id", b"x-pool", b"x-warmup-priority"];

/// The content without its `X-Campaign-ID`, `X-Pool` and `X-Warmup-Priority` fields (every occurrence, with their folded
/// lines), or `None` when it has neither (nothing is copied then).
pub fn strip_control_fields(content: &[u8]) -> Option<Vec<u8>> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut offset = 0;
    for (name, value) in header_fields(content) {
        let field_len = name.len() + 1 + value.len();
        if CONTROL_FIELDS
            .iter()
            .any(|control| name.trim_ascii().eq_ignore_ascii_case(control))
        {
            spans.push((offset, offset + field_len));
        }
        offset += field_len;
    }
    if spans.is_empty() {
        return None;
    }
    let mut kept = Vec::with_capacity(content.len());
    let mut from = 0;
    for (start, end) in spans {
        kept.extend_from_slice(&content[from..start]);
        from = end;
    }
    kept.extend_from_slice(&content[from..]);
    Some(kept)
}

/// The header text to put in front of the client's content: Received, then Message-ID and Date
/// if the content has none.
pub fn prefix_for(content: &[u8], trace: &Trace<'_>) -> Vec<u8> {
    let mut prefix = received_field(trace).into_bytes();
    let (mut has_message_id, mut has_date) = (false, false);
    for (name, _) in header_fields(content) {
        has_message_id |= name.eq_ignore_ascii_case(b"message-id");
        has_date |= name.eq_ignore_ascii_case(b"date");
    }
    if !has_message_id {
        prefix
            .extend_from_slice(format!("Message-ID: <{}@{}>\r\n", trace.queue_id, trace.hostname).as_bytes());
    }
    if !has_date {
        prefix.extend_from_slice(format!("Date: {}\r\n", timefmt::rfc5322(trace.now)).as_bytes());
    }
    prefix
}

/// The Received field (RFC 5321 §4.4, protocol names from RFC 3848).
fn received_field(trace: &Trace<'_>) -> String {
    let protocol = match (
        trace.esmtp,
        trace.tls.is_some(),
        trace.authenticated_tenant.is_some(),
    ) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    };
    let helo: String = trace
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let mut field = format!(
        "Received: from {helo} ([{}])\r\n\tby {} (penguin-mta) with {protocol} id {}",
        trace.client_ip, trace.hostname, trace.queue_id
    );
    if let Some(tls) = trace.tls {
        field.push_str(&format!(
            "\r\n\t(using {} with cipher {})",
            tls.version, tls.cipher
        ));
    }
    if let Some(tenant) = trace.authenticated_tenant {
        field.push_str(&format!("\r\n\t(authenticated tenant {tenant})"));
    }
    if let Some(recipient) = trace.single_recipient {
        field.push_str(&format!("\r\n\tfor <{recipient}>"));
    }
    field.push_str(&format!(";\r\n\t{}\r\n", timefmt::rfc5322(trace.now)));
    field
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn control_fields_are_stripped_with_their_folded_lines_and_only_from_the_header() {
        let content = b"Subject: a\r\nX-Pool: warm\r\nX-Campaign-ID: c1\r\n more\r\nFrom: <a@b>\r\nx-pool: again\r\n\r\nX-Pool: body stays\r\n";
        let stripped = strip_control_fields(content).expect("fields to strip");
        assert_eq!(
            stripped,
            b"Subject: a\r\nFrom: <a@b>\r\n\r\nX-Pool: body stays\r\n".to_vec()
        );
        assert_eq!(strip_control_fields(b"Subject: x\r\n\r\nX-Pool: body\r\n"), None);
        assert_eq!(
            strip_control_fields(b"X-Warmup-Priority: high\r\nSubject: x\r\n\r\nbody\r\n"),
            Some(b"Subject: x\r\n\r\nbody\r\n".to_vec())
        );
    }

    #[test]
    fn warmup_priority_is_high_only_when_it_says_so() {
        for (content, high) in [
            (&b"X-Warmup-Priority: high\r\n\r\n"[..], true),
            (b"x-warmup-priority:  HIGH \r\n\r\n", true),
            (b"X-Warmup-Priority: low\r\n\r\n", false),
            (b"Subject: x\r\n\r\nX-Warmup-Priority: high\r\n", false),
            (b"Subject: x\r\n\r\n", false),
        ] {
            assert_eq!(
                warmup_priority_of(content),
                high,
                "{:?}",
                String::from_utf8_lossy(content)
            );
        }
    }

    #[test]
    fn pool_table() {
        type Expected = Result<Option<&'static str>, &'static str>;
        let cases: &[(&[u8], Expected)] = &[
            (b"X-Pool: warm\r\n\r\n", Ok(Some("warm"))),
            (b"x-pool:   cold-2 \r\n\r\n", Ok(Some("cold-2"))),
            (b"X-Pool:\r\n\r\n", Ok(None)),
            (b"Subject: x\r\n\r\nX-Pool: body\r\n", Ok(None)),
            (b"X-Pool: two words\r\n\r\n", Err("two words")),
            (b"X-Pool: first\r\nX-Pool: second\r\n\r\n", Ok(Some("first"))),
        ];
        for (content, expected) in cases {
            let got = pool_of(content);
            let expected = expected
                .map(|o| o.map(str::to_string))
                .map_err(|v| BadPool(v.to_string()));
            assert_eq!(got, expected, "{}", String::from_utf8_lossy(content));
        }
    }

    #[test]
    fn header_fields_handle_folding_and_stop_at_the_body() {
        let content = b"Subject: a\r\n b\r\nX-Campaign-ID: c1\r\n\r\nX-Campaign-ID: body\r\n";
        let fields: Vec<_> = header_fields(content).collect();
        assert_eq!(
            fields,
            vec![
                (&b"Subject"[..], &b" a\r\n b\r\n"[..]),
                (&b"X-Campaign-ID"[..], &b" c1\r\n"[..])
            ]
        );
    }

    #[test]
    fn message_id_table() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"Message-ID: <a.b@c.example>\r\n\r\n", Some("a.b@c.example")),
            (
                b"message-id:\r\n <folded@c.example>\r\n\r\n",
                Some("folded@c.example"),
            ),
            (b"Subject: x\r\n\r\nMessage-ID: <in-body@x>\r\n", None),
            (b"Message-ID: <>\r\n\r\n", None),
        ];
        for (content, expected) in cases {
            assert_eq!(
                message_id(content).as_deref(),
                *expected,
                "{:?}",
                String::from_utf8_lossy(content)
            );
        }
    }

    #[test]
    fn campaign_table() {
        let cases: &[(&[u8], Result<&str, BadCampaign>)] = &[
            (b"Subject: x\r\n\r\nbody\r\n", Ok("default")),
            (b"x-campaign-id:  spring-2026 \r\n\r\n", Ok("spring-2026")),
            (b"X-Campaign-ID: a\r\n b\r\n\r\n", Err(BadCampaign)),
            (b"X-Campaign-ID:\r\n\r\n", Ok("default")),
            (
                b"X-Campaign-ID: first\r\nX-Campaign-ID: second\r\n\r\n",
                Ok("first"),
            ),
            (b"Subject: x\r\n\r\nX-Campaign-ID: in-body\r\n", Ok("default")),
            ("X-Campaign-ID: caf\u{e9}\r\n\r\n".as_bytes(), Err(BadCampaign)),
        ];
        for (content, expected) in cases {
            let expected = expected.map(str::to_string);
            assert_eq!(
                campaign_of(content),
                expected,
                "{:?}",
                String::from_utf8_lossy(content)
            );
        }
        let long = format!("X-Campaign-ID: {}\r\n\r\n", "c".repeat(129));
        assert_eq!(campaign_of(long.as_bytes()), Err(BadCampaign));
    }

    #[test]
    fn prefix_adds_missing_fields_only() {
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        };
        let trace = Trace {
            hostname: "mta.example.test",
            helo: "client.example",
            client_ip: "127.0.0.1".parse().expect("ip"),
            esmtp: true,
            tls: Some(&tls),
            authenticated_tenant: Some("acme"),
            queue_id: "0123456789ABCDEF01234567",
            single_recipient: Some("bob@example.com"),
            now: UNIX_EPOCH + Duration::from_secs(1_795_638_425),
        };
        let prefix = String::from_utf8(prefix_for(b"Subject: x\r\n\r\nhi\r\n", &trace)).expect("ascii");
        assert_eq!(
            prefix,
            "Received: from client.example ([127.0.0.1])\r\n\tby mta.example.test (penguin-mta) with ESMTPSA \
             id 0123456789ABCDEF01234567\r\n\t(using TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256)\r\n\t\
             (authenticated tenant acme)\r\n\tfor <bob@example.com>;\r\n\tWed, 25 Nov 2026 20:27:05 +0000\r\n\
             Message-ID: <0123456789ABCDEF01234567@mta.example.test>\r\nDate: Wed, 25 Nov 2026 20:27:05 +0000\r\n"
        );
        let complete = b"Date: x\r\nMessage-Id: <a@b>\r\n\r\n";
        let prefix = String::from_utf8(prefix_for(complete, &trace)).expect("ascii");
        assert!(!prefix.contains("Message-ID:") && !prefix.contains("\r\nDate:"));
    }
}
