//! Agreement with Sisimai's bounce reasons on real remote replies.
//!
//! The corpus lives in `policy/tests/data/sisimai/*.txt`, one reply a line as `<reason> | <reply line>`,
//! grouped under `# source:` comments naming where Sisimai documents the reply and its reason (provider
//! tables, reason tests, sample bounces with their expected reasons). [`MAPPING`] turns each Sisimai
//! reason into the class we should give; the test measures how often [`classify_reply`] does.

use super::tests::split_line;
use super::*;
use BounceClass::*;

/// The corpus files: (name for reports, contents).
const CORPUS: &[(&str, &str)] = &[
    ("google.txt", include_str!("../../tests/data/sisimai/google.txt")),
    (
        "microsoft.txt",
        include_str!("../../tests/data/sisimai/microsoft.txt"),
    ),
    (
        "providers.txt",
        include_str!("../../tests/data/sisimai/providers.txt"),
    ),
    (
        "reason_examples.txt",
        include_str!("../../tests/data/sisimai/reason_examples.txt"),
    ),
    (
        "bounces.txt",
        include_str!("../../tests/data/sisimai/bounces.txt"),
    ),
];

/// How a Sisimai reason maps onto our classes.
#[derive(Clone, Copy, Debug)]
struct Mapped {
    /// Sisimai's reason name.
    reason: &'static str,
    /// The class that reason means to us.
    class: BounceClass,
    /// Further classes that also agree, where Sisimai's reason spans two of ours: our classes say why
    /// (spam or policy, content or policy, queue or connection), Sisimai's sometimes only what.
    also: &'static [BounceClass],
}

/// Shorthand for [`MAPPING`].
const fn map(reason: &'static str, class: BounceClass, also: &'static [BounceClass]) -> Mapped {
    Mapped { reason, class, also }
}

/// Sisimai reason → our class. The one mapping the agreement is measured against; reasons that do not
/// describe a failed delivery (delivered, feedback, vacation, undefined, onhold, emptyrcpt) are absent,
/// and the corpus holds none of them. The `also` classes are deviations from a one-to-one mapping, each
/// backed by corpus rows (see the module documentation of `classify`).
const MAPPING: &[Mapped] = &[
    // The recipient address is wrong or gone: suppressing it is right.
    map("userunknown", InvalidRecipient, &[]),
    map("hasmoved", InvalidRecipient, &[]),
    map("hostunknown", BadDomain, &[]),
    map("notaccept", BadDomain, &[]),
    // The mailbox exists.
    map("mailboxfull", MailboxFull, &[]),
    map("suspend", InactiveMailbox, &[]),
    // The sending IP or host is refused. Sisimai's blocked also covers refusals that are the receiver's
    // policy, not the sender's reputation: greylisting, IP allowlists, HELO and reverse-DNS checks,
    // "does not accept email over IPv6", an organisation's own IP block (rows in the corpus).
    map("blocked", SpamBlock, &[PolicyBlock]),
    map("badreputation", SpamBlock, &[]),
    map("spamdetected", SpamBlock, &[]),
    // The sender address, the relay path or the receiver's policy refuses the message. Sisimai's
    // rejected also covers senders refused for spam ("spam abuse detected", "Email flagged as Spam"),
    // its policyviolation attachment and header rules ("illegal attachment", "header is too long").
    map("rejected", PolicyBlock, &[SpamBlock]),
    map("norelaying", PolicyBlock, &[]),
    map("policyviolation", PolicyBlock, &[ContentRejected]),
    map("filtered", PolicyBlock, &[]),
    // A missing or mismatched PTR record: the sending host's set-up, refused by policy. Not sender
    // authentication (SPF/DKIM/DMARC), which is what `auth_failure` tells the sender to fix.
    map("requireptr", PolicyBlock, &[]),
    // Sender authentication: SPF, DKIM, DMARC; and, from Sisimai's securityerror samples, SMTP AUTH
    // (credentials refused, authentication required): in both the sender failed to prove who it is.
    map("authfailure", AuthFailure, &[]),
    map("securityerror", AuthFailure, &[]),
    // What the message contains or how it is formatted.
    map("contenterror", ContentRejected, &[]),
    map("virusdetected", ContentRejected, &[]),
    map("notcompliantrfc", ContentRejected, &[]),
    map("exceedlimit", MessageTooLarge, &[]),
    map("mesgtoobig", MessageTooLarge, &[]),
    map("emailtoolarge", MessageTooLarge, &[]),
    // Too fast or too many: the closed-loop shaping slows down on these.
    map("toomanyconn", RateLimited, &[]),
    map("speeding", RateLimited, &[]),
    map("ratelimited", RateLimited, &[]),
    // In a reply Sisimai's expired is a timed-out connection ("Timeout - closing connection",
    // "Connection expired, try reconnecting"); the queue's own expiry never comes as a reply.
    map("expired", MessageExpired, &[NetworkError]),
    // In replies Sisimai's networkerror is a mail loop, a hop count or a misrouted MX: routing; a
    // connection-level report is a network error.
    map("networkerror", RoutingError, &[NetworkError]),
    // The receiver's own trouble: nothing the sender can act on.
    map("systemerror", Other, &[]),
    map("systemfull", Other, &[]),
    map("mailererror", Other, &[]),
    map("syntaxerror", ProtocolError, &[]),
    map("failedstarttls", ProtocolError, &[]),
];

/// Reasons about the sender, its IP or the receiver's policy: never a reason to suppress the recipient.
const SENDER_SIDE: &[&str] = &[
    "blocked",
    "badreputation",
    "spamdetected",
    "rejected",
    "norelaying",
    "policyviolation",
    "requireptr",
    "authfailure",
    "securityerror",
    "toomanyconn",
    "speeding",
    "ratelimited",
];

/// The lowest agreement the classifier must keep.
const MIN_AGREEMENT: f64 = 0.9;

/// One corpus row.
#[derive(Clone, Copy, Debug)]
struct Row {
    /// The `# source:` comment the row is under, or the file name.
    source: &'static str,
    /// Sisimai's reason for the reply.
    reason: &'static str,
    /// The whole reply line.
    line: &'static str,
}

/// Every row of every corpus file.
fn corpus_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for &(file, contents) in CORPUS {
        let mut source = file;
        for line in contents.lines().map(str::trim).filter(|line| !line.is_empty()) {
            if let Some(comment) = line.strip_prefix('#') {
                if let Some(named) = comment.trim().strip_prefix("source:") {
                    source = named.trim();
                }
                continue;
            }
            let (reason, reply) = line
                .split_once(" | ")
                .unwrap_or_else(|| panic!("{file}: not `<reason> | <reply>`: {line}"));
            rows.push(Row {
                source,
                reason: reason.trim(),
                line: reply.trim(),
            });
        }
    }
    rows
}

/// The mapping of a Sisimai reason; panics on a reason the mapping does not know (a typo in the corpus).
fn mapped(reason: &str) -> Mapped {
    MAPPING
        .iter()
        .find(|mapped| mapped.reason == reason)
        .copied()
        .unwrap_or_else(|| panic!("Sisimai reason {reason:?} is not in MAPPING"))
}

/// The class and outcome `classify_reply` gives a whole reply line.
fn classify_line(line: &str) -> (u16, Outcome) {
    let (code, enhanced, text) = split_line(line);
    (code, classify_reply(&ReplyView { code, enhanced, text }))
}

/// The class inside a non-delivered outcome.
fn class_of(outcome: Outcome) -> Option<BounceClass> {
    match outcome {
        Outcome::Transient(class) | Outcome::Permanent(class) => Some(class),
        Outcome::Delivered => None,
    }
}

#[test]
fn corpus_rows_are_distinct_replies_with_known_reasons() {
    let rows = corpus_rows();
    assert!(rows.len() >= 400, "{} rows", rows.len());
    let mut lines: Vec<&str> = rows.iter().map(|row| row.line).collect();
    lines.sort_unstable();
    let before = lines.len();
    lines.dedup();
    assert_eq!(lines.len(), before, "duplicate reply lines in the corpus");
    for row in &rows {
        mapped(row.reason);
        let (code, _, _) = split_line(row.line);
        assert!(
            (400..=599).contains(&code),
            "{}: not a 4xx/5xx reply: {}",
            row.source,
            row.line
        );
    }
    for reason in SENDER_SIDE {
        mapped(reason);
    }
}

#[test]
fn sisimai_agreement_is_at_least_0_9() {
    let rows = corpus_rows();
    let mut disagreements = Vec::new();
    let mut strict_agreements = 0;
    let mut wrong_permanence = Vec::new();
    let mut suppressing = Vec::new();
    for row in &rows {
        let (code, outcome) = classify_line(row.line);
        if matches!(outcome, Outcome::Permanent(_)) != (code >= 500) {
            wrong_permanence.push(format!("  {outcome:?}: {}", row.line));
        }
        let ours = class_of(outcome).expect("a 4xx/5xx reply is never delivered");
        let expected = mapped(row.reason);
        if ours == expected.class {
            strict_agreements += 1;
        } else if !expected.also.contains(&ours) {
            disagreements.push(format!(
                "  sisimai {} (= {}), ours {}: {}  [{}]",
                row.reason,
                expected.class.as_str(),
                ours.as_str(),
                row.line,
                row.source
            ));
        }
        if SENDER_SIDE.contains(&row.reason) && matches!(ours, InvalidRecipient | BadDomain) {
            suppressing.push(format!(
                "  sisimai {}, ours {}: {}",
                row.reason,
                ours.as_str(),
                row.line
            ));
        }
    }
    let total = rows.len() as f64;
    let agreement = 1.0 - disagreements.len() as f64 / total;
    eprintln!(
        "Sisimai agreement: {agreement:.3} ({} of {} rows; {:.3} counting only each reason's first class)",
        rows.len() - disagreements.len(),
        rows.len(),
        f64::from(strict_agreements) / total
    );
    eprintln!("Disagreements:\n{}", disagreements.join("\n"));
    assert!(
        wrong_permanence.is_empty(),
        "permanence must follow the basic code:\n{}",
        wrong_permanence.join("\n")
    );
    assert!(
        suppressing.is_empty(),
        "sender, IP or policy replies classified as a bad address:\n{}",
        suppressing.join("\n")
    );
    assert!(
        agreement >= MIN_AGREEMENT,
        "agreement {agreement:.3} < {MIN_AGREEMENT}; disagreeing rows:\n{}",
        disagreements.join("\n")
    );
}

#[test]
fn corpus_rules_hold_for_replies_outside_the_corpus() {
    // Variants of corpus replies, with other addresses and codes: the rules are phrases, not rows.
    let cases: &[(&str, BounceClass)] = &[
        // A code about the sender wins over words about a recipient.
        ("550 5.1.7 <bounce@example.net>: No such domain", PolicyBlock),
        (
            "553 5.1.8 <bounce@example.net>: Sender address rejected: Domain not found",
            PolicyBlock,
        ),
        (
            "550 5.1.0 Domain of sender address bounce@example.net does not exist",
            PolicyBlock,
        ),
        // Addresses are not wording.
        (
            "554 5.7.1 <password-reset@example.com>: Relay access denied",
            PolicyBlock,
        ),
        (
            "550 5.1.1 <shops@example.com>: Recipient address rejected: User unknown",
            InvalidRecipient,
        ),
        ("550 5.1.1 <spam@example.com>... User unknown", InvalidRecipient),
        // A full mailbox under a misused X.1.1 is never an unknown user.
        ("552 5.1.1 <someone@example.org>: mailbox is full", MailboxFull),
        // Too many invalid recipients is about the sender's list, not this address.
        (
            "550 5.7.1 Your IP has been blocked for sending to too many invalid recipients",
            SpamBlock,
        ),
        // A missing PTR record is policy, not sender authentication, even under an SPF or auth code.
        (
            "451 4.7.23 Client host rejected: cannot find your hostname, [192.0.2.9]",
            PolicyBlock,
        ),
        (
            "421 4.7.26 The sending IP does not have a PTR record",
            PolicyBlock,
        ),
        // TLS required is the transport.
        ("530 5.7.0 Must issue a STARTTLS command first", ProtocolError),
        ("451 4.7.1 TLS is required for this domain", ProtocolError),
        // A temporary flood code asks to slow down; a permanent one with spam words is a block.
        (
            "421 4.7.28 Unusual rate of mail from your IP, slow down",
            RateLimited,
        ),
        (
            "550 5.7.28 Mail from your IP has been blocked as unsolicited",
            SpamBlock,
        ),
        // The receiver's own trouble.
        ("451 4.3.0 Temporary system problem, try again later", Other),
    ];
    for &(line, expected) in cases {
        let (_, outcome) = classify_line(line);
        assert_eq!(class_of(outcome), Some(expected), "{line}");
    }
}
