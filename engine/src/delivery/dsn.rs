//! RFC 3464 delivery status notifications: the `multipart/report` message returned to the envelope
//! sender when recipients fail permanently (or are still being retried). Pure: values in, bytes out.
//!
//! The report has three parts: a short English explanation, the `message/delivery-status` fields, and
//! the original message's header section (`text/rfc822-headers`, never its content). The output is
//! 7-bit ASCII with CRLF line endings and no line longer than 998 octets: remote texts are cleaned
//! (control characters become spaces, non-ASCII becomes `?`) and folded, and an original header section
//! that is not plain 7-bit text is sent quoted-printable, which keeps it byte for byte.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memchr::memmem;

use crate::smtp::headers::header_fields;
use crate::timefmt;

/// Folding aims for lines of at most this many octets (RFC 5322 §2.1.1 "SHOULD").
const SOFT_LIMIT: usize = 78;
/// No line is longer than this many octets, CRLF excluded (RFC 5322 §2.1.1 "MUST").
const HARD_LIMIT: usize = 998;
/// Longest encoded line of quoted-printable text before its soft line break `=` (RFC 2045 §6.7).
const QP_LIMIT: usize = 75;
/// How much of the queue id goes into the MIME boundary.
const BOUNDARY_ID_LEN: usize = 32;
/// How many random boundaries are tried before settling for one (a collision is practically
/// impossible; this only bounds the loop).
const BOUNDARY_ATTEMPTS: usize = 16;

/// What the report says happened to a recipient (RFC 3464 §2.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnAction {
    /// Delivery failed permanently (or the recipient expired); the message was not delivered.
    Failed,
    /// Delivery has not succeeded yet and is still being retried.
    Delayed,
}

impl DsnAction {
    /// The `Action` field value.
    fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
        }
    }

    /// The status used when the given one is not a valid RFC 3463 code.
    fn default_status(self) -> &'static str {
        match self {
            DsnAction::Failed => "5.0.0",
            DsnAction::Delayed => "4.0.0",
        }
    }
}

/// One recipient of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The recipient address as given in RCPT TO (without angle brackets).
    pub address: String,
    /// Failed or delayed.
    pub action: DsnAction,
    /// RFC 3463 enhanced status code, e.g. "5.1.1"; an invalid one is replaced by 5.0.0 / 4.0.0.
    pub status: String,
    /// The remote host that gave the answer, e.g. "mx.example.com", if a server was reached.
    pub remote_mta: Option<String>,
    /// The remote reply text (e.g. "550 5.1.1 <bob@x>: user unknown") or our failure description.
    pub diagnostic: Option<String>,
    /// When the last delivery attempt was made, unix milliseconds.
    pub last_attempt_ms: Option<u64>,
}

/// Everything a report is built from.
#[derive(Clone, Copy, Debug)]
pub struct DsnInput<'a> {
    /// Our host name: `Reporting-MTA` and the `MAILER-DAEMON@` sender.
    pub reporting_mta: &'a str,
    /// The queue id of the original message (`X-Penguin-Queue-ID`, and part of the MIME boundary).
    pub queue_id: &'a str,
    /// The original envelope sender, who receives the report; never empty (no reports to `<>`).
    pub original_sender: &'a str,
    /// When the original message was accepted, unix milliseconds (`Arrival-Date`).
    pub arrival_ms: u64,
    /// Now: the report's `Date`.
    pub now: SystemTime,
    /// The recipients the report is about.
    pub recipients: &'a [DsnRecipient],
    /// The stored original message; only its header section is included.
    pub original_message: &'a [u8],
    /// The report's Message-ID, without angle brackets.
    pub dsn_message_id: &'a str,
}

/// Builds the complete report message (RFC 5322, CRLF line endings, 7-bit, lines ≤ 998 octets).
pub fn build_dsn(input: &DsnInput<'_>) -> Vec<u8> {
    let notification = notification_text(input);
    let status = delivery_status(input);
    let (headers, quoted) = header_part(input.original_message);
    let boundary = pick_boundary(input.queue_id, &[&notification, &status, &headers]);

    let mut out = top_header(input, &boundary);
    out.extend_from_slice(b"This is a MIME-encapsulated message.\r\n");
    let parts: [(&str, &str, Option<&str>, &[u8]); 3] = [
        (
            "Notification",
            "text/plain; charset=us-ascii",
            None,
            &notification,
        ),
        ("Delivery report", "message/delivery-status", None, &status),
        (
            "Undelivered Message Headers",
            "text/rfc822-headers",
            quoted.then_some("quoted-printable"),
            &headers,
        ),
    ];
    for (description, content_type, encoding, body) in parts {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(format!("Content-Description: {description}\r\n").as_bytes());
        out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        if let Some(encoding) = encoding {
            out.extend_from_slice(format!("Content-Transfer-Encoding: {encoding}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The report's own header section, ending with the blank line.
fn top_header(input: &DsnInput<'_>, boundary: &str) -> Vec<u8> {
    let host = clean_token(input.reporting_mta);
    let sender = clean_token(input.original_sender).replace(['<', '>'], "");
    let message_id = clean_token(input.dsn_message_id).replace(['<', '>'], "");
    let subject = if all_delayed(input.recipients) {
        "Delayed Mail (still being retried)"
    } else {
        "Undelivered Mail Returned to Sender"
    };
    let mut out = Vec::with_capacity(512);
    push_wrapped(
        &mut out,
        "From:",
        &format!("Mail Delivery System <MAILER-DAEMON@{host}>"),
        " ",
    );
    push_wrapped(&mut out, "To:", &format!("<{sender}>"), " ");
    push_wrapped(&mut out, "Subject:", subject, " ");
    push_wrapped(&mut out, "Date:", &timefmt::rfc5322(input.now), " ");
    push_wrapped(&mut out, "Message-ID:", &format!("<{message_id}>"), " ");
    push_wrapped(&mut out, "Auto-Submitted:", "auto-replied", " ");
    push_wrapped(&mut out, "MIME-Version:", "1.0", " ");
    let content_type = format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\"");
    push_wrapped(&mut out, "Content-Type:", &content_type, " ");
    push_wrapped(&mut out, "Content-Transfer-Encoding:", "7bit", " ");
    out.extend_from_slice(b"\r\n");
    out
}

/// True when every recipient is only delayed (the report is a warning, not a bounce).
fn all_delayed(recipients: &[DsnRecipient]) -> bool {
    !recipients.is_empty() && recipients.iter().all(|r| r.action == DsnAction::Delayed)
}

/// Part 1: the human-readable explanation, one paragraph per recipient.
fn notification_text(input: &DsnInput<'_>) -> Vec<u8> {
    let host = clean_token(input.reporting_mta);
    let mut out = Vec::with_capacity(1024);
    push_wrapped(
        &mut out,
        "",
        &format!("This is the mail system at host {host}."),
        "",
    );
    out.extend_from_slice(b"\r\n");
    let explanation = if all_delayed(input.recipients) {
        "THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE. Your message could not be \
         delivered yet to the recipients listed below. The mail system will keep trying to deliver it \
         and will tell you if it finally gives up."
    } else {
        "I'm sorry to have to inform you that your message could not be delivered to one or more \
         recipients. The reasons are listed below; the delivery report and the header of your message \
         are attached. For further assistance, please contact your postmaster and include this report."
    };
    push_wrapped(&mut out, "", explanation, "");
    out.extend_from_slice(b"\r\n");
    push_wrapped(&mut out, "", "The mail system", "");
    for recipient in input.recipients {
        out.extend_from_slice(b"\r\n");
        push_wrapped(&mut out, "", &recipient_summary(recipient), "    ");
    }
    out
}

/// One recipient's line in the explanation, Postfix style: `<bob@x>: host mx said: 550 ...`.
fn recipient_summary(recipient: &DsnRecipient) -> String {
    let address = clean_token(&recipient.address);
    let status = status_of(recipient);
    let action = recipient.action.as_str();
    match (recipient.remote_mta.as_deref(), recipient.diagnostic.as_deref()) {
        (Some(mx), Some(text)) => format!("<{address}>: host {} said: {}", clean_token(mx), clean(text)),
        (None, Some(text)) => format!("<{address}>: {}", clean(text)),
        (Some(mx), None) => format!(
            "<{address}>: delivery via host {} {action} (status {status})",
            clean_token(mx)
        ),
        (None, None) => format!("<{address}>: delivery {action} (status {status})"),
    }
}

/// Part 2: the `message/delivery-status` fields (RFC 3464 §2.2 and §2.3).
fn delivery_status(input: &DsnInput<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + 256 * input.recipients.len());
    push_wrapped(
        &mut out,
        "Reporting-MTA:",
        &format!("dns; {}", clean_token(input.reporting_mta)),
        " ",
    );
    push_wrapped(&mut out, "X-Penguin-Queue-ID:", &clean_token(input.queue_id), " ");
    push_wrapped(&mut out, "Arrival-Date:", &date_of_millis(input.arrival_ms), " ");
    for recipient in input.recipients {
        out.extend_from_slice(b"\r\n");
        let address = format!("rfc822; {}", clean_token(&recipient.address));
        push_wrapped(&mut out, "Final-Recipient:", &address, " ");
        push_wrapped(&mut out, "Action:", recipient.action.as_str(), " ");
        push_wrapped(&mut out, "Status:", status_of(recipient), " ");
        if let Some(mx) = &recipient.remote_mta {
            push_wrapped(&mut out, "Remote-MTA:", &format!("dns; {}", clean_token(mx)), " ");
        }
        if let Some(text) = &recipient.diagnostic {
            push_wrapped(
                &mut out,
                "Diagnostic-Code:",
                &format!("smtp; {}", clean(text)),
                " ",
            );
        }
        if let Some(millis) = recipient.last_attempt_ms {
            push_wrapped(&mut out, "Last-Attempt-Date:", &date_of_millis(millis), " ");
        }
    }
    out
}

/// The recipient's status if it is a valid RFC 3463 code (`[245].d{1,3}.d{1,3}`), else the default.
fn status_of(recipient: &DsnRecipient) -> &str {
    let status = recipient.status.trim();
    let mut parts = status.split('.');
    let valid = matches!(parts.next(), Some("2" | "4" | "5"))
        && parts
            .by_ref()
            .take(2)
            .filter(|p| (1..=3).contains(&p.len()))
            .count()
            == 2
        && parts.next().is_none()
        && status.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if valid {
        status
    } else {
        recipient.action.default_status()
    }
}

/// An RFC 5322 date from unix milliseconds.
fn date_of_millis(millis: u64) -> String {
    let time = UNIX_EPOCH
        .checked_add(Duration::from_millis(millis))
        .unwrap_or(UNIX_EPOCH);
    timefmt::rfc5322(time)
}

/// Part 3: the original header section, and whether it is quoted-printable encoded.
fn header_part(message: &[u8]) -> (Vec<u8>, bool) {
    let len: usize = header_fields(message)
        .map(|(name, value)| name.len() + 1 + value.len())
        .sum();
    let section = normalize_lines(message.get(..len).unwrap_or(message));
    let plain = section.split(|&b| b == b'\n').all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.len() <= HARD_LIMIT && line.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    });
    if plain {
        (section, false)
    } else {
        (quoted_printable(&section), true)
    }
}

/// Turns CRLF and bare LF into CRLF, drops bare CR, and ends non-empty text with CRLF.
fn normalize_lines(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    for &b in text {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => {}
            _ => out.push(b),
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Quoted-printable encoding (RFC 2045 §6.7) of CRLF-normalised text, keeping its line breaks.
fn quoted_printable(text: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len() * 2);
    let body = text.strip_suffix(b"\r\n").unwrap_or(text);
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut len = 0;
        for (i, &b) in line.iter().enumerate() {
            let trailing = i + 1 == line.len();
            let literal =
                ((b'!'..=b'~').contains(&b) && b != b'=') || (matches!(b, b' ' | b'\t') && !trailing);
            let width = if literal { 1 } else { 3 };
            if len + width > QP_LIMIT {
                out.extend_from_slice(b"=\r\n");
                len = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            len += width;
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A boundary made of the queue id and a random part that occurs in none of `parts`.
fn pick_boundary(queue_id: &str, parts: &[&[u8]]) -> String {
    let id: String = queue_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(BOUNDARY_ID_LEN)
        .collect();
    let mut boundary = String::new();
    for _ in 0..BOUNDARY_ATTEMPTS {
        boundary = format!("=_penguin_{id}_{:016x}", rand::random::<u64>());
        if parts
            .iter()
            .all(|part| memmem::find(part, boundary.as_bytes()).is_none())
        {
            break;
        }
    }
    boundary
}

/// Remote or caller text made safe for a header or the report: control characters become spaces,
/// non-ASCII characters become `?`, and runs of whitespace collapse to one space.
fn clean(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| match c {
            c if c.is_ascii_control() => ' ',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect();
    mapped.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

/// Like [`clean`], for single tokens (addresses, host names, ids): whitespace is removed entirely.
fn clean_token(text: &str) -> String {
    clean(text).replace(' ', "")
}

/// Appends `lead` and the words of `text` (cleaned, ASCII) as one logical line ending in CRLF, wrapped
/// before a word where a line would pass 78 octets; each new line starts with `continuation` (" " folds
/// a header field). A word longer than a line is split only where a line would pass 998 octets.
/// `lead` and `continuation` are short constants.
fn push_wrapped(out: &mut Vec<u8>, lead: &str, text: &str, continuation: &str) {
    out.extend_from_slice(lead.as_bytes());
    let mut len = lead.len();
    let mut first = true;
    for word in text.split_ascii_whitespace() {
        let separator = if first && lead.is_empty() { "" } else { " " };
        if !first && len + separator.len() + word.len() > SOFT_LIMIT {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(continuation.as_bytes());
            len = continuation.len();
        } else {
            out.extend_from_slice(separator.as_bytes());
            len += separator.len();
        }
        push_word(out, &mut len, word.as_bytes(), continuation);
        first = false;
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `word` to the current line of length `len`, breaking it where the line would pass 998 octets.
fn push_word(out: &mut Vec<u8>, len: &mut usize, word: &[u8], continuation: &str) {
    let mut rest = word;
    loop {
        let room = HARD_LIMIT.saturating_sub(*len).max(1);
        if rest.len() <= room {
            out.extend_from_slice(rest);
            *len += rest.len();
            return;
        }
        let (head, tail) = rest.split_at(room);
        out.extend_from_slice(head);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(continuation.as_bytes());
        *len = continuation.len();
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{Message, MessageParser, MimeHeaders};

    /// A stored message: the header section (with a folded field) and a body that must not be returned.
    const ORIGINAL: &[u8] = b"Received: from client.example (client.example [192.0.2.1])\r\n\
        \tby mta.example.net with ESMTPSA id 0123ABC\r\n\
        From: Alice <alice@example.org>\r\n\
        To: bob@x.example, carol@y.example\r\n\
        Subject: Hello\r\n\
        Message-ID: <m1@example.org>\r\n\
        \r\n\
        Secret body text\r\n";

    /// The header section of [`ORIGINAL`], including the CRLF of its last field.
    fn original_headers() -> &'static str {
        let text = std::str::from_utf8(ORIGINAL).unwrap();
        &text[..text.find("\r\n\r\n").unwrap() + 2]
    }

    /// Bob failed at a remote MX; Carol never reached a server.
    fn two_recipients() -> Vec<DsnRecipient> {
        vec![
            DsnRecipient {
                address: "bob@x.example".into(),
                action: DsnAction::Failed,
                status: "5.1.1".into(),
                remote_mta: Some("mx.x.example".into()),
                diagnostic: Some("550 5.1.1 <bob@x.example>: user unknown".into()),
                last_attempt_ms: Some(1_795_638_425_000),
            },
            DsnRecipient {
                address: "carol@y.example".into(),
                action: DsnAction::Failed,
                status: "4.4.1".into(),
                remote_mta: None,
                diagnostic: Some("connection timed out".into()),
                last_attempt_ms: None,
            },
        ]
    }

    /// An input around `recipients` and `original`.
    fn input<'a>(recipients: &'a [DsnRecipient], original: &'a [u8]) -> DsnInput<'a> {
        DsnInput {
            reporting_mta: "mta.example.net",
            queue_id: "0123ABC",
            original_sender: "alice@example.org",
            arrival_ms: 1_795_638_000_000,
            now: UNIX_EPOCH + Duration::from_secs(1_795_638_500),
            recipients,
            original_message: original,
            dsn_message_id: "0123ABC.dsn@mta.example.net",
        }
    }

    /// Asserts CRLF-only line endings, 7-bit content and no line over 998 octets.
    fn assert_wire_safe(raw: &[u8]) {
        assert!(raw.is_ascii(), "non-ASCII byte in the report");
        for (i, &b) in raw.iter().enumerate() {
            match b {
                b'\n' => assert_eq!(raw.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF at {i}"),
                b'\r' => assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
                _ => {}
            }
        }
        let text = std::str::from_utf8(raw).unwrap();
        for line in text.split("\r\n") {
            assert!(line.len() <= HARD_LIMIT, "line of {} octets", line.len());
        }
        assert!(text.ends_with("\r\n"));
    }

    /// The three parts of a parsed report, after checking the multipart/report structure.
    fn report_parts<'m>(message: &'m Message<'m>) -> [&'m mail_parser::MessagePart<'m>; 3] {
        let root = message.root_part();
        let content_type = root.content_type().expect("content type");
        assert_eq!(content_type.ctype(), "multipart");
        assert_eq!(content_type.subtype(), Some("report"));
        assert_eq!(content_type.attribute("report-type"), Some("delivery-status"));
        let ids = root.sub_parts().expect("multipart");
        assert_eq!(ids.len(), 3);
        let part = |i: usize| message.part(ids[i]).expect("part");
        let parts = [part(0), part(1), part(2)];
        let types: Vec<String> = parts
            .iter()
            .map(|p| {
                let ct = p.content_type().expect("part content type");
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
            })
            .collect();
        assert_eq!(
            types,
            ["text/plain", "message/delivery-status", "text/rfc822-headers"]
        );
        parts
    }

    /// Undoes RFC 5322 folding.
    fn unfold(text: &str) -> String {
        text.replace("\r\n ", " ").replace("\r\n\t", "\t")
    }

    #[test]
    fn failed_report_structure_and_fields() {
        let recipients = two_recipients();
        let raw = build_dsn(&input(&recipients, ORIGINAL));
        assert_wire_safe(&raw);
        assert!(
            memmem::find(&raw, b"Secret body text").is_none(),
            "the content must not be returned"
        );
        let message = MessageParser::default().parse(&raw).expect("parses");
        assert_eq!(message.subject(), Some("Undelivered Mail Returned to Sender"));
        let from = message.from().and_then(|a| a.first()).expect("from");
        assert_eq!(from.address(), Some("MAILER-DAEMON@mta.example.net"));
        assert_eq!(from.name(), Some("Mail Delivery System"));
        let to = message.to().and_then(|a| a.first()).expect("to");
        assert_eq!(to.address(), Some("alice@example.org"));
        assert_eq!(message.message_id(), Some("0123ABC.dsn@mta.example.net"));
        assert_eq!(
            message.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert_eq!(message.header_raw("MIME-Version").map(str::trim), Some("1.0"));
        assert_eq!(message.date().map(|d| d.to_timestamp()), Some(1_795_638_500));

        let [text, status, headers] = report_parts(&message);
        let text = text.text_contents().expect("text").replace("\r\n    ", " ");
        assert!(
            text.contains("<bob@x.example>: host mx.x.example said: 550 5.1.1 <bob@x.example>: user unknown")
        );
        assert!(text.contains("<carol@y.example>: connection timed out"));

        let status = std::str::from_utf8(status.contents()).expect("ascii");
        let blocks: Vec<&str> = status.trim_end().split("\r\n\r\n").collect();
        assert_eq!(blocks.len(), 3, "{status}");
        assert_eq!(
            blocks[0],
            "Reporting-MTA: dns; mta.example.net\r\nX-Penguin-Queue-ID: 0123ABC\r\n\
             Arrival-Date: Wed, 25 Nov 2026 20:20:00 +0000"
        );
        assert_eq!(
            unfold(blocks[1]),
            "Final-Recipient: rfc822; bob@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\
             Remote-MTA: dns; mx.x.example\r\nDiagnostic-Code: smtp; 550 5.1.1 <bob@x.example>: user unknown\r\n\
             Last-Attempt-Date: Wed, 25 Nov 2026 20:27:05 +0000"
        );
        assert_eq!(
            blocks[2],
            "Final-Recipient: rfc822; carol@y.example\r\nAction: failed\r\nStatus: 4.4.1\r\n\
             Diagnostic-Code: smtp; connection timed out"
        );
        assert_eq!(headers.text_contents(), Some(original_headers()));
    }

    #[test]
    fn boundary_uses_queue_id_and_is_absent_from_the_parts() {
        let recipients = two_recipients();
        let raw = build_dsn(&input(&recipients, ORIGINAL));
        let message = MessageParser::default().parse(&raw).expect("parses");
        let boundary = message
            .root_part()
            .content_type()
            .and_then(|ct| ct.attribute("boundary"))
            .unwrap();
        assert!(boundary.starts_with("=_penguin_0123ABC_"), "{boundary}");
        assert!(boundary.len() <= 70);
        let delimiter = format!("--{boundary}");
        assert_eq!(String::from_utf8_lossy(&raw).matches(&delimiter).count(), 4);
        // A boundary never appears inside the parts it separates.
        let parts = [b"x =_penguin_ID_ y".as_slice(), b"z"];
        for _ in 0..100 {
            let picked = pick_boundary("ID", &parts);
            assert!(parts.iter().all(|p| memmem::find(p, picked.as_bytes()).is_none()));
        }
    }

    #[test]
    fn long_and_hostile_diagnostics_are_folded_and_cleaned() {
        let words: String = (0..1000).map(|i| format!("w{i:03} ")).collect();
        let spaced = format!("550 5.7.1 {}", &words[..4990]);
        let solid = "x".repeat(5000);
        let hostile = "550 line one\r\n550-line\ttwo\u{0}\u{7f} \u{e9}t\u{e9} \r\n.\r\n";
        for diagnostic in [spaced.clone(), solid.clone(), hostile.to_string()] {
            let mut recipients = two_recipients();
            recipients[0].diagnostic = Some(diagnostic.clone());
            recipients[1].remote_mta = Some(format!("mx{}", "y".repeat(3000)));
            let raw = build_dsn(&input(&recipients, ORIGINAL));
            assert_wire_safe(&raw);
            let message = MessageParser::default().parse(&raw).expect("parses");
            let [_, status, _] = report_parts(&message);
            let status = unfold(std::str::from_utf8(status.contents()).unwrap());
            let line = status
                .lines()
                .find(|l| l.starts_with("Diagnostic-Code:"))
                .unwrap();
            let expected = clean(&diagnostic);
            if diagnostic == solid {
                // A word longer than a line can only be split; nothing is lost.
                assert_eq!(
                    line.replace(' ', "").trim_start_matches("Diagnostic-Code:smtp;"),
                    expected
                );
            } else {
                assert_eq!(line, format!("Diagnostic-Code: smtp; {expected}"));
            }
        }
        assert_eq!(clean(hostile), "550 line one 550-line two ?t? .");
        let spaced_raw = {
            let mut recipients = two_recipients();
            recipients[0].diagnostic = Some(spaced);
            build_dsn(&input(&recipients, ORIGINAL))
        };
        let longest = String::from_utf8(spaced_raw)
            .unwrap()
            .split("\r\n")
            .map(str::len)
            .max()
            .unwrap();
        assert!(
            longest <= SOFT_LIMIT,
            "words are folded at 78 octets, got {longest}"
        );
    }

    #[test]
    fn delayed_report_wording() {
        let mut recipients = two_recipients();
        for r in &mut recipients {
            r.action = DsnAction::Delayed;
            r.status = "4.2.2".into();
        }
        let raw = build_dsn(&input(&recipients, ORIGINAL));
        assert_wire_safe(&raw);
        let message = MessageParser::default().parse(&raw).expect("parses");
        assert_eq!(message.subject(), Some("Delayed Mail (still being retried)"));
        let [text, status, _] = report_parts(&message);
        let text = unfold(text.text_contents().unwrap());
        assert!(text.contains("THIS IS A WARNING ONLY"), "{text}");
        assert!(text.contains("will keep trying"));
        let status = std::str::from_utf8(status.contents()).unwrap();
        assert_eq!(status.matches("Action: delayed\r\n").count(), 2);
        assert_eq!(status.matches("Status: 4.2.2\r\n").count(), 2);
        // One failed recipient makes it a bounce.
        recipients[1].action = DsnAction::Failed;
        let raw = build_dsn(&input(&recipients, ORIGINAL));
        let message = MessageParser::default().parse(&raw).expect("parses");
        assert_eq!(message.subject(), Some("Undelivered Mail Returned to Sender"));
    }

    #[test]
    fn eight_bit_and_bare_lf_headers_are_kept_via_quoted_printable() {
        let original = "Subject: Gr\u{fc}\u{df}e aus K\u{f6}ln = \"test\" \nFrom: a@b\nX-Long: ".to_string()
            + &"z".repeat(1500)
            + "\n\nbody\n";
        let recipients = two_recipients();
        let raw = build_dsn(&input(&recipients, original.as_bytes()));
        assert_wire_safe(&raw);
        let message = MessageParser::default().parse(&raw).expect("parses");
        let [_, _, headers] = report_parts(&message);
        let expected = original[..original.find("\n\n").unwrap() + 1].replace('\n', "\r\n");
        assert_eq!(headers.text_contents(), Some(expected.as_str()));
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let weird = DsnRecipient {
            address: "<we ird\r\n@x>".into(),
            action: DsnAction::Failed,
            status: "5.1.1.1; DROP".into(),
            remote_mta: Some(String::new()),
            diagnostic: Some(String::new()),
            last_attempt_ms: Some(u64::MAX),
        };
        let originals: [&[u8]; 5] = [
            b"",
            b"\r\n\r\nbody",
            b"no colon here\r\n\r\n",
            b"\r\r\r\n\n",
            b"A: \xff\xfe\r",
        ];
        for original in originals {
            for recipients in [Vec::new(), vec![weird.clone()]] {
                let mut input = input(&recipients, original);
                input.queue_id = "\"--<>\u{e9}";
                input.original_sender = "<a\r\nb>";
                input.arrival_ms = u64::MAX;
                let raw = build_dsn(&input);
                assert_wire_safe(&raw);
                let message = MessageParser::default().parse(&raw).expect("parses");
                report_parts(&message);
            }
        }
        assert_eq!(status_of(&weird), "5.0.0");
        let statuses = [
            ("4.7.26", "4.7.26"),
            ("5.1", "5.0.0"),
            ("3.1.1", "5.0.0"),
            ("5.1234.1", "5.0.0"),
        ];
        for (given, used) in statuses {
            assert_eq!(
                status_of(&DsnRecipient {
                    status: given.into(),
                    ..weird.clone()
                }),
                used
            );
        }
    }
}
