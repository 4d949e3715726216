//! Classification of delivery results: every remote SMTP reply and every network or DNS failure
//! becomes one [`Outcome`] carrying a [`BounceClass`].
//!
//! A reply is read in three layers, in this order of authority:
//! 1. The basic reply code decides the outcome: 2xx delivered, 4xx transient, 5xx permanent, anything
//!    else a transient protocol error. An enhanced code that disagrees never changes this: RFC 3463 §2
//!    makes the basic code authoritative.
//! 2. The enhanced status code (RFC 3463 and the IANA "SMTP Enhanced Status Codes" registry) gives the
//!    class. Taken from [`ReplyView::enhanced`], else from the start of the text, else from a qmail-style
//!    `(#5.1.1)` in it.
//! 3. Text patterns (case-insensitive substrings) then refine a *generic* code (X.N.0, the catch-all
//!    X.7.1, the SMTP AUTH code X.7.9, X.4.1/X.4.2, details the registry does not define such as
//!    Microsoft's 4.7.650) or give the class when there is no enhanced code. A few phrases override even
//!    a specific code, because providers are known to put them under the wrong one: Microsoft's
//!    "5.1.10 RecipientNotFound" (X.1.10 is null MX), Gmail's "4.2.1 receiving mail at a rate" (X.2.1 is
//!    a disabled mailbox), Gmail's "5.2.2 over quota and inactive".
//!
//! What cannot be told apart stays [`BounceClass::Other`] rather than guessed: "mailbox unavailable" is
//! RFC 5321's stock 550 text, sent for unknown users and policy refusals alike, so it means an invalid
//! recipient only under X.1.1 (where the code already says so). Suppression acts on
//! [`BounceClass::InvalidRecipient`], so a wrong guess there would drop a good address.

/// Why a delivery attempt did not succeed, in terms a sender can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BounceClass {
    /// The mailbox does not exist (X.1.1, "user unknown"): the address should be suppressed.
    InvalidRecipient,
    /// The recipient domain does not exist or accepts no mail (X.1.2, NXDOMAIN, null MX).
    BadDomain,
    /// The mailbox exists but is over its quota (X.2.2).
    MailboxFull,
    /// The mailbox exists but is disabled, suspended or abandoned (X.2.1).
    InactiveMailbox,
    /// Refused by the receiver's policy, without a more specific reason (X.7.1, greylisting, TLS required).
    PolicyBlock,
    /// Refused for the sender's reputation or as spam: block lists, complaint rates.
    SpamBlock,
    /// Refused for what the message contains: virus, attachment, media type (X.6.x).
    ContentRejected,
    /// Deferred or refused because the sender goes too fast: rate limits, too many connections/recipients.
    RateLimited,
    /// Sender authentication failed: SPF, DKIM, DMARC, ARC, reverse DNS (X.7.20–X.7.27, X.7.29).
    AuthFailure,
    /// The conversation itself went wrong: syntax, unexpected reply, SMTPUTF8 not offered (X.5.x).
    ProtocolError,
    /// The destination could not be routed: DNS failure, no usable address, routing loop (X.4.x).
    RoutingError,
    /// The connection could not be made or was lost (X.4.1, X.4.2).
    NetworkError,
    /// The message is larger than the receiver accepts (X.2.3, X.3.4).
    MessageTooLarge,
    /// The message was in the queue longer than the maximum age (X.4.7).
    MessageExpired,
    /// Nothing more specific can be told from the reply.
    Other,
}

impl BounceClass {
    /// Every class, in declaration order (for metrics labels and exhaustive tests).
    pub const ALL: [BounceClass; 15] = [
        BounceClass::InvalidRecipient,
        BounceClass::BadDomain,
        BounceClass::MailboxFull,
        BounceClass::InactiveMailbox,
        BounceClass::PolicyBlock,
        BounceClass::SpamBlock,
        BounceClass::ContentRejected,
        BounceClass::RateLimited,
        BounceClass::AuthFailure,
        BounceClass::ProtocolError,
        BounceClass::RoutingError,
        BounceClass::NetworkError,
        BounceClass::MessageTooLarge,
        BounceClass::MessageExpired,
        BounceClass::Other,
    ];

    /// The stable snake_case name used in events, metrics labels and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::InvalidRecipient => "invalid_recipient",
            BounceClass::BadDomain => "bad_domain",
            BounceClass::MailboxFull => "mailbox_full",
            BounceClass::InactiveMailbox => "inactive_mailbox",
            BounceClass::PolicyBlock => "policy_block",
            BounceClass::SpamBlock => "spam_block",
            BounceClass::ContentRejected => "content_rejected",
            BounceClass::RateLimited => "rate_limited",
            BounceClass::AuthFailure => "auth_failure",
            BounceClass::ProtocolError => "protocol_error",
            BounceClass::RoutingError => "routing_error",
            BounceClass::NetworkError => "network_error",
            BounceClass::MessageTooLarge => "message_too_large",
            BounceClass::MessageExpired => "message_expired",
            BounceClass::Other => "other",
        }
    }
}

/// What became of one recipient after one delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver accepted responsibility for the message (2xx).
    Delivered,
    /// Not delivered this time; retry by the schedule until the message expires.
    Transient(BounceClass),
    /// Not delivered and never will be: bounce (DSN) now.
    Permanent(BounceClass),
}

/// A reply as received from the remote server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyView<'a> {
    /// The three-digit basic reply code (RFC 5321 §4.2); anything outside 200–599 is malformed.
    pub code: u16,
    /// The RFC 3463 enhanced status code as (class, subject, detail), if the caller already parsed it;
    /// when `None` it is looked for in `text`.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The reply text after the code, all lines joined with a space.
    pub text: &'a str,
}

/// Classifies a remote reply: 2xx delivered, 4xx transient, 5xx permanent, anything else a transient
/// protocol error; the class from the enhanced code, refined by known provider texts (see the module
/// documentation for the order).
pub fn classify_reply(reply: &ReplyView<'_>) -> Outcome {
    let transient = match reply.code {
        200..=299 => return Outcome::Delivered,
        400..=499 => true,
        500..=599 => false,
        _ => return Outcome::Transient(BounceClass::ProtocolError),
    };
    let enhanced = reply
        .enhanced
        .filter(|&(class, _, _)| valid_class(class))
        .or_else(|| parse_enhanced(reply.text))
        .or_else(|| qmail_enhanced(reply.text));
    let class = reply_class(reply.code, enhanced, reply.text);
    if transient {
        Outcome::Transient(class)
    } else {
        Outcome::Permanent(class)
    }
}

/// Failures without a usable reply from the remote server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkFailure {
    /// The TCP connection was refused (RST) by every address tried.
    ConnectionRefused,
    /// The TCP connection did not complete in time.
    ConnectTimeout,
    /// The server stopped answering within the command or data timeout.
    Timeout,
    /// The connection closed before the transaction ended.
    Disconnected,
    /// The connection closed after the message data was sent but before the final reply: the message may
    /// have been delivered (RFC 1047), but without a reply it has to be retried.
    DisconnectedAfterData,
    /// STARTTLS was required or attempted and the TLS handshake failed.
    TlsHandshake,
    /// The DNS lookup failed temporarily (SERVFAIL, timeout).
    DnsTemporary,
    /// The recipient domain does not exist (NXDOMAIN).
    DnsNxDomain,
    /// The domain publishes a null MX: it accepts no mail (RFC 7505).
    NullMx,
    /// The MX hosts (or the implicit MX) have no A/AAAA addresses.
    NoAddresses,
    /// The message needs SMTPUTF8 and the server does not offer it (RFC 6531 §3.2).
    SmtpUtf8NotOffered,
    /// The message reached the maximum queue age without being delivered.
    MessageExpired,
}

impl NetworkFailure {
    /// Every failure, in declaration order (for exhaustive tests and metrics labels).
    pub const ALL: [NetworkFailure; 12] = [
        NetworkFailure::ConnectionRefused,
        NetworkFailure::ConnectTimeout,
        NetworkFailure::Timeout,
        NetworkFailure::Disconnected,
        NetworkFailure::DisconnectedAfterData,
        NetworkFailure::TlsHandshake,
        NetworkFailure::DnsTemporary,
        NetworkFailure::DnsNxDomain,
        NetworkFailure::NullMx,
        NetworkFailure::NoAddresses,
        NetworkFailure::SmtpUtf8NotOffered,
        NetworkFailure::MessageExpired,
    ];
}

/// Classifies a failure without a reply, with the enhanced status code we assign to it (for the DSN's
/// `Status:` field and events).
///
/// Every code maps back to the same class through [`classify_reply`]. The one exception in permanence is
/// `MessageExpired`: its code is 4.4.7 ("delivery time expired", a 4 because the registry defines it so)
/// but expiry is final, so the outcome is permanent.
pub fn classify_network(failure: NetworkFailure) -> (Outcome, &'static str) {
    use BounceClass::{BadDomain, NetworkError, ProtocolError, RoutingError};
    match failure {
        NetworkFailure::ConnectionRefused | NetworkFailure::ConnectTimeout => {
            (Outcome::Transient(NetworkError), "4.4.1")
        }
        NetworkFailure::Timeout
        | NetworkFailure::Disconnected
        | NetworkFailure::DisconnectedAfterData
        | NetworkFailure::TlsHandshake => (Outcome::Transient(NetworkError), "4.4.2"),
        NetworkFailure::DnsTemporary => (Outcome::Transient(RoutingError), "4.4.3"),
        NetworkFailure::DnsNxDomain => (Outcome::Permanent(BadDomain), "5.1.2"),
        NetworkFailure::NullMx => (Outcome::Permanent(BadDomain), "5.1.10"),
        NetworkFailure::NoAddresses => (Outcome::Transient(RoutingError), "4.4.4"),
        NetworkFailure::SmtpUtf8NotOffered => (Outcome::Permanent(ProtocolError), "5.6.7"),
        NetworkFailure::MessageExpired => (Outcome::Permanent(BounceClass::MessageExpired), "4.4.7"),
    }
}

/// Parses an RFC 3463 enhanced status code at the start of `text` ("5.1.1 User unknown" → (5, 1, 1)).
///
/// Leading whitespace is skipped, and so is a leading basic code (`"550-5.1.1 ..."`, `"550 5.1.1 ..."`),
/// so a whole reply line works too. The class must be 2, 4 or 5; subject and detail have 1–3 digits; the
/// code must end there (not run into letters, digits or a further ".N", which would be an IP address).
pub fn parse_enhanced(text: &str) -> Option<(u8, u16, u16)> {
    let text = text.trim_start();
    parse_code_at(text.as_bytes()).or_else(|| {
        let bytes = text.as_bytes();
        let has_basic_code =
            bytes.len() > 4 && bytes[..3].iter().all(u8::is_ascii_digit) && matches!(bytes[3], b' ' | b'-');
        if has_basic_code {
            parse_code_at(text[4..].trim_start().as_bytes())
        } else {
            None
        }
    })
}

/// Whether `class` is a class digit RFC 3463 defines (2 success, 4 persistent transient, 5 permanent).
fn valid_class(class: u8) -> bool {
    matches!(class, 2 | 4 | 5)
}

/// The enhanced code at the very start of `bytes`, if one is there and ends cleanly.
fn parse_code_at(bytes: &[u8]) -> Option<(u8, u16, u16)> {
    let (&class, rest) = bytes.split_first()?;
    if !class.is_ascii_digit() || !valid_class(class - b'0') {
        return None;
    }
    let rest = rest.strip_prefix(b".")?;
    let (subject, rest) = number(rest)?;
    let rest = rest.strip_prefix(b".")?;
    let (detail, rest) = number(rest)?;
    let clean_end = match rest {
        [] => true,
        [b'.', next, ..] => !next.is_ascii_digit(),
        [next, ..] => !next.is_ascii_alphanumeric(),
    };
    clean_end.then_some((class - b'0', subject, detail))
}

/// A number of one to three digits at the start of `bytes`, and what follows it.
fn number(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    Some((value, &bytes[digits..]))
}

/// qmail puts the enhanced code at the end in parentheses: "no mailbox here by that name. (#5.1.1)".
fn qmail_enhanced(text: &str) -> Option<(u8, u16, u16)> {
    let start = text.find("(#")?;
    parse_code_at(&text.as_bytes()[start + 2..])
}

/// The class an enhanced code gives, and whether text may refine it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CodeClass {
    /// The class the registry's meaning of the code implies.
    class: BounceClass,
    /// The code is a catch-all (X.N.0, X.7.1), unregistered, or one providers are known to misuse, so a
    /// text pattern may replace its class.
    generic: bool,
}

/// The class of enhanced code X.`subject`.`detail` per the IANA registry; `None` when the code says
/// nothing usable (X.0.0, X.1.0, X.2.0, X.3.0, X.5.0, success details, unknown subjects).
fn code_class(subject: u16, detail: u16, transient: bool) -> Option<CodeClass> {
    use BounceClass::*;
    let (class, generic) = match (subject, detail) {
        (1, 1 | 3 | 4 | 6) => (InvalidRecipient, false),
        (1, 2 | 10) => (BadDomain, false),
        (1, 7 | 8) => (PolicyBlock, false), // the sender's address is refused
        (2, 1) => (InactiveMailbox, false),
        (2, 2) => (MailboxFull, false),
        (2, 3) | (3, 4) | (7, 16) => (MessageTooLarge, false),
        (2, 4) | (4, 3 | 6) => (RoutingError, false),
        (3, 3) => (ProtocolError, false),
        // "No answer from host" / "bad connection" in a reply: a relay's report, or Microsoft's 5.4.1
        // edge block of unknown recipients.
        (4, 1 | 2) => (NetworkError, true),
        (4, 4) if transient => (RoutingError, false),
        (4, 4) => (BadDomain, false),
        (4, 5) | (5, 3) | (7, 28) => (RateLimited, false),
        (4, 7) => (MessageExpired, false),
        (4, _) => (RoutingError, true),
        (5, 1 | 2 | 4 | 5 | 6) => (ProtocolError, false),
        (5, 7..) => (ProtocolError, true),
        (6, 1..=6) => (ContentRejected, false),
        (6, 7..=10) => (ProtocolError, false), // SMTPUTF8 (RFC 6531)
        (6, _) => (ContentRejected, true),
        (7, 8 | 12 | 20..=27 | 29) => (AuthFailure, false),
        // "Authentication mechanism too weak" is about SMTP AUTH; Yahoo sends 5.7.9 for policy refusals.
        (7, 9) => (AuthFailure, true),
        (7, 17 | 18) => (InvalidRecipient, false), // the address changed owner (RFC 7293)
        (7, 2..=7 | 10 | 11 | 13 | 14 | 15 | 19 | 30) => (PolicyBlock, false),
        (7, _) => (PolicyBlock, true),
        _ => return None,
    };
    Some(CodeClass { class, generic })
}

/// When a text pattern may decide the class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Always, even over a specific enhanced code: the phrase is unambiguous and known to come with
    /// misleading codes.
    Override,
    /// When the enhanced code is absent, says nothing, or is generic.
    Refine,
    /// Like `Refine`, but not under an X.7 code: Postfix's "Recipient address rejected: Access denied"
    /// under 5.7.1 is an access-map policy, the same words under Microsoft's 5.4.1 an unknown recipient.
    RefineOutsidePolicy,
    /// Like `Refine`, and only for a 4xx reply.
    RefineTransient,
    /// Only when the enhanced code is absent or says nothing: words too vague to refine a code.
    Fallback,
}

/// One text pattern: `parts` must all occur, in order, in the lowercased text.
#[derive(Clone, Copy, Debug)]
struct Pattern {
    /// When the pattern may apply.
    scope: Scope,
    /// The class it gives.
    class: BounceClass,
    /// Lowercase substrings that must occur in this order (usually one).
    parts: &'static [&'static str],
}

/// Shorthand for the pattern table.
const fn pat(scope: Scope, class: BounceClass, parts: &'static [&'static str]) -> Pattern {
    Pattern { scope, class, parts }
}

/// The text patterns, first match wins. Order matters where phrases meet: sender refusals before
/// unknown users ("Sender address rejected: User unknown"), domains before "does not exist", sender
/// authentication before spam (Gmail's auth blocks mention spam), rate limits before spam and reputation
/// (Microsoft's "rate limited due to IP reputation", Gmail's 4.7.28).
const PATTERNS: &[Pattern] = {
    use BounceClass::*;
    use Scope::*;
    &[
        pat(Override, PolicyBlock, &["greylist"]),
        pat(Override, PolicyBlock, &["graylist"]),
        pat(Override, PolicyBlock, &["sender address rejected"]),
        pat(Override, PolicyBlock, &["sender verify failed"]),
        pat(Override, RateLimited, &["receiving mail at a rate"]),
        pat(Override, RateLimited, &["receiving mail too quickly"]),
        pat(Override, BadDomain, &["domain not found"]),
        pat(Override, BadDomain, &["domain does not exist"]),
        pat(Override, BadDomain, &["no such domain"]),
        pat(Override, InvalidRecipient, &["recipientnotfound"]),
        pat(Override, InvalidRecipient, &["recipient not found"]),
        pat(Override, InvalidRecipient, &["user unknown"]),
        pat(Override, InvalidRecipient, &["unknown user"]),
        pat(Override, InvalidRecipient, &["no such user"]),
        pat(Override, InvalidRecipient, &["no such recipient"]),
        pat(Override, InvalidRecipient, &["does not exist"]),
        pat(Override, InvalidRecipient, &["mailbox not found"]),
        pat(Override, InvalidRecipient, &["invalid recipient"]),
        pat(Override, InvalidRecipient, &["no mailbox here by that name"]),
        pat(Override, InvalidRecipient, &["user doesn't have a"]),
        pat(Override, InactiveMailbox, &["inactive"]),
        pat(Override, InactiveMailbox, &["deactivated"]),
        pat(Override, InactiveMailbox, &["account", "disabled"]),
        pat(Override, InactiveMailbox, &["mailbox", "disabled"]),
        pat(Override, InactiveMailbox, &["account", "suspended"]),
        pat(Override, InactiveMailbox, &["mailbox", "suspended"]),
        pat(Refine, PolicyBlock, &["authentication required"]),
        pat(Refine, PolicyBlock, &["authrequired"]),
        pat(Refine, AuthFailure, &["spf"]),
        pat(Refine, AuthFailure, &["dkim"]),
        pat(Refine, AuthFailure, &["dmarc"]),
        pat(Refine, AuthFailure, &["authenticat"]),
        pat(Refine, AuthFailure, &["spoof"]),
        pat(Refine, AuthFailure, &["ptr record"]),
        pat(Refine, AuthFailure, &["reverse dns"]),
        pat(Refine, AuthFailure, &["cannot find your"]),
        pat(Refine, MailboxFull, &["over quota"]),
        pat(Refine, MailboxFull, &["overquota"]),
        pat(Refine, MailboxFull, &["quota exceeded"]),
        pat(Refine, MailboxFull, &["quotaexceeded"]),
        pat(Refine, MailboxFull, &["exceeded", "quota"]),
        pat(Refine, MailboxFull, &["mailbox full"]),
        pat(Refine, MailboxFull, &["mailbox is full"]),
        pat(Refine, MailboxFull, &["insufficient storage"]),
        pat(Refine, MailboxFull, &["storage allocation"]),
        pat(Refine, MailboxFull, &["mailbox size limit"]),
        pat(Refine, MessageTooLarge, &["message size"]),
        pat(Refine, MessageTooLarge, &["size limit"]),
        pat(Refine, MessageTooLarge, &["too large"]),
        pat(Refine, MessageTooLarge, &["too big"]),
        pat(Refine, MessageTooLarge, &["length exceeds"]),
        pat(Refine, RateLimited, &["rate limit"]),
        pat(Refine, RateLimited, &["throttl"]),
        pat(Refine, RateLimited, &["temporarily deferred"]),
        pat(Refine, RateLimited, &["too many"]),
        pat(Refine, RateLimited, &["limits for how many"]),
        pat(Refine, RateLimited, &["exceeded", "limit"]),
        pat(Refine, SpamBlock, &["spam"]),
        pat(Refine, SpamBlock, &["unsolicited"]),
        pat(Refine, SpamBlock, &["blocked using"]),
        pat(Refine, SpamBlock, &["blacklist"]),
        pat(Refine, SpamBlock, &["black list"]),
        pat(Refine, SpamBlock, &["blocklist"]),
        pat(Refine, SpamBlock, &["block list"]),
        pat(Refine, SpamBlock, &["denylist"]),
        pat(Refine, SpamBlock, &["dnsbl"]),
        pat(Refine, SpamBlock, &["ipcheck.proofpoint"]),
        pat(Refine, SpamBlock, &["barracuda"]),
        pat(Refine, SpamBlock, &["reputation"]),
        pat(Refine, SpamBlock, &["listed"]),
        pat(Refine, SpamBlock, &["banned"]),
        pat(Refine, ContentRejected, &["message content"]),
        pat(Refine, ContentRejected, &["content rejected"]),
        pat(Refine, ContentRejected, &["content presents"]),
        pat(Refine, ContentRejected, &["virus"]),
        pat(Refine, ContentRejected, &["malware"]),
        pat(Refine, ContentRejected, &["phish"]),
        pat(Refine, ContentRejected, &["attachment"]),
        pat(Refine, PolicyBlock, &["policy reasons"]),
        pat(
            RefineOutsidePolicy,
            InvalidRecipient,
            &["recipient address rejected"],
        ),
        pat(RefineTransient, RateLimited, &["try again later"]),
        pat(Fallback, PolicyBlock, &["polic"]),
        pat(Fallback, PolicyBlock, &["not allowed"]),
        pat(Fallback, PolicyBlock, &["access denied"]),
        pat(Fallback, PolicyBlock, &["prohibit"]),
        pat(Fallback, PolicyBlock, &["relay"]),
        pat(Fallback, RoutingError, &["unrouteable"]),
        pat(Fallback, RoutingError, &["unroutable"]),
        pat(Fallback, RoutingError, &["routing loop"]),
        pat(Fallback, RoutingError, &["hop count"]),
        pat(Fallback, RoutingError, &["no route"]),
    ]
};

/// How much of a reply text the patterns look at: real replies are far shorter, and a hostile server
/// must not make classification expensive.
const MAX_TEXT: usize = 8192;

/// The class of a 4xx/5xx reply: first matching pattern allowed by the code, else the code's class, else
/// a guess from the basic code.
fn reply_class(code: u16, enhanced: Option<(u8, u16, u16)>, text: &str) -> BounceClass {
    let transient = code < 500;
    let subject = enhanced.map(|(_, subject, _)| subject);
    let from_code = enhanced.and_then(|(_, subject, detail)| code_class(subject, detail, transient));
    let refinable = from_code.is_none_or(|c| c.generic);
    let lowered: Vec<u8> = text
        .as_bytes()
        .iter()
        .take(MAX_TEXT)
        .map(u8::to_ascii_lowercase)
        .collect();
    let applies = |scope: Scope| match scope {
        Scope::Override => true,
        Scope::Refine => refinable,
        Scope::RefineOutsidePolicy => refinable && subject != Some(7),
        Scope::RefineTransient => refinable && transient,
        Scope::Fallback => from_code.is_none(),
    };
    PATTERNS
        .iter()
        .find(|p| applies(p.scope) && contains_in_order(&lowered, p.parts))
        .map(|p| p.class)
        .or(from_code.map(|c| c.class))
        .unwrap_or_else(|| basic_class(code))
}

/// The class when neither an enhanced code nor a pattern says anything: the command/syntax errors of
/// RFC 5321 (500–504, 555) are protocol errors, the rest cannot be told.
fn basic_class(code: u16) -> BounceClass {
    match code {
        500..=504 | 555 => BounceClass::ProtocolError,
        _ => BounceClass::Other,
    }
}

/// Whether every part occurs in `haystack`, each after the end of the one before.
fn contains_in_order(haystack: &[u8], parts: &[&str]) -> bool {
    let mut rest = haystack;
    for part in parts {
        match find(rest, part.as_bytes()) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The first position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests;
