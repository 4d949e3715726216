//! The text patterns of the third classification layer, in the order they are tried.
//!
//! Phrases are general wording shared by many receivers (most of them also in Sisimai's phrase lists),
//! never one provider's whole reply. A pattern is one lowercase substring or a few that must occur in
//! order.

use super::BounceClass;

/// When a text pattern may decide the class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    /// Always, even over a specific enhanced code: the phrase is unambiguous and known to come with
    /// misleading codes (Gmail's 4.7.23 for a missing PTR, 4.2.1 for a relay limit, Orange's 5.1.1 for
    /// a full mailbox). A phrase about the recipient still yields to a code about the sender (X.1.7,
    /// X.1.8).
    Override,
    /// When the enhanced code is absent, says nothing, or is generic.
    Refine,
    /// Like `Refine`, but not under an X.7 code: Postfix's "Recipient address rejected: Access denied"
    /// under 5.7.1 is an access-map policy, the same words under Microsoft's 5.4.1 an unknown recipient.
    RefineOutsidePolicy,
    /// Only when the enhanced code is absent or says nothing: words too vague to refine a code.
    Fallback,
}

/// One text pattern: `parts` must all occur, in order, in the lowercased text.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pattern {
    /// When the pattern may apply.
    pub(super) scope: Scope,
    /// The class it gives.
    pub(super) class: BounceClass,
    /// Lowercase substrings that must occur in this order (usually one).
    pub(super) parts: &'static [&'static str],
}

/// Shorthand for the pattern table.
const fn pat(scope: Scope, class: BounceClass, parts: &'static [&'static str]) -> Pattern {
    Pattern { scope, class, parts }
}

/// The text patterns, first match wins. Order matters where phrases meet:
/// - the receiver's own trouble first ("cannot authenticate due to temporary system problem");
/// - a failed SPF/DKIM/DMARC check before the sender address ("Invalid Sender. SPF check failed");
/// - the sender address before the recipient ("Sender address rejected: User unknown", "Domain of
///   sender address ... does not exist"), and the PTR record before authentication ("PTR records and
///   authentication");
/// - phrases that name recipients or a quota but are about the sender's volume before the recipient
///   phrases ("too many invalid recipients", "Daily sending quota exceeded");
/// - message format before authentication and spam ("Duplicate header 'DKIM-Signature'", "not RFC 5322
///   compliant ... To reduce the amount of spam");
/// - sender authentication before spam and rate limits (Gmail's auth blocks mention spam, its 4.7.26
///   and 4.7.32 say "rate limited because ... SPF or DKIM");
/// - spam and reputation before rate limits: "rate limited due to IP reputation" and "temporarily
///   rate limited" for "the very low reputation of the sending IP" are reputation blocks to Sisimai
///   (a rate limit that says why is classed by why; a plain one stays `rate_limited`);
/// - rate limits before the generic sender, relay and policy words.
pub(super) const PATTERNS: &[Pattern] = {
    use BounceClass::*;
    use Scope::*;
    &[
        // The receiving system's own trouble, whatever code it came with.
        pat(Override, Other, &["system problem"]),
        pat(Override, Other, &["server error"]),
        pat(Override, Other, &["server busy"]),
        pat(Override, Other, &["agent busy"]),
        pat(Override, Other, &["replicat"]),
        pat(Override, Other, &["ambiguous"]),
        pat(Override, PolicyBlock, &["greylist"]),
        pat(Override, PolicyBlock, &["graylist"]),
        // TLS required or refused: the transport, not the message.
        pat(Override, ProtocolError, &["starttls"]),
        pat(Override, ProtocolError, &["tls", "required"]),
        pat(Override, ProtocolError, &["requires tls"]),
        pat(Override, ProtocolError, &["requires encryption"]),
        pat(Override, ProtocolError, &["tls/ssl"]),
        pat(Override, ProtocolError, &["tls connection"]),
        pat(Override, ProtocolError, &["cipher"]),
        pat(Override, ProtocolError, &["certificate"]),
        // A failed SPF, DKIM or DMARC check, even when the reply also calls the sender invalid.
        pat(Refine, AuthFailure, &["spf", "fail"]),
        pat(Refine, AuthFailure, &["dkim", "fail"]),
        pat(Refine, AuthFailure, &["dmarc", "fail"]),
        // The sender address or account is refused.
        pat(Override, PolicyBlock, &["sender", "not authenticated"]),
        pat(Override, PolicyBlock, &["sender address"]),
        pat(Override, PolicyBlock, &["sender verif"]),
        pat(Override, PolicyBlock, &["sender account"]),
        pat(Override, PolicyBlock, &["sender denied"]),
        pat(Override, PolicyBlock, &["invalid sender"]),
        pat(Override, PolicyBlock, &["unknown sender"]),
        pat(Override, PolicyBlock, &["sender envelope"]),
        pat(Override, PolicyBlock, &["envelope sender"]),
        pat(Override, PolicyBlock, &["envelope from"]),
        pat(Override, PolicyBlock, &["envelope blocked"]),
        pat(Override, PolicyBlock, &["blocked sender"]),
        pat(Override, PolicyBlock, &["from: domain"]),
        pat(Refine, PolicyBlock, &["from domain"]),
        pat(Override, PolicyBlock, &["your domain has been"]),
        pat(Override, PolicyBlock, &["your email address has been"]),
        // The sending host: its HELO name, its reverse DNS.
        pat(Override, SpamBlock, &["helo", "invalid"]),
        pat(Override, SpamBlock, &["helo", "not allowed"]),
        pat(Override, SpamBlock, &["bad helo"]),
        pat(Override, SpamBlock, &["service refused"]),
        pat(Override, SpamBlock, &["helo command rejected"]),
        pat(Override, PolicyBlock, &["ptr record"]),
        pat(Override, PolicyBlock, &["(ptr)"]),
        pat(Override, PolicyBlock, &["reverse dns"]),
        pat(Override, PolicyBlock, &["rdns"]),
        pat(Override, PolicyBlock, &["cannot find your hostname"]),
        // Message format (RFC 5322) and content.
        pat(Override, ContentRejected, &["message content"]),
        pat(Refine, ContentRejected, &["not rfc 5322"]),
        pat(Refine, ContentRejected, &["rfc 5322 compliant"]),
        pat(Refine, ContentRejected, &["rfc compliant"]),
        pat(Refine, ContentRejected, &["missing a valid"]),
        pat(Refine, ContentRejected, &["multiple addresses in from"]),
        pat(Refine, ContentRejected, &["duplicate header"]),
        pat(Refine, ContentRejected, &["multiple", "headers"]),
        pat(Refine, ContentRejected, &["disallowed header"]),
        pat(Refine, ContentRejected, &["encoded-word"]),
        pat(Refine, ContentRejected, &["malformed"]),
        pat(Refine, ContentRejected, &["blank from"]),
        pat(Refine, ContentRejected, &["as a from"]),
        pat(Refine, ContentRejected, &["linefeed"]),
        pat(Refine, ContentRejected, &["improperly-formatted"]),
        pat(Refine, ContentRejected, &["security polic"]),
        pat(Refine, ContentRejected, &["header", "too long"]),
        // Mail loops.
        pat(Override, RoutingError, &["mail loop"]),
        pat(Override, RoutingError, &["routing loop"]),
        pat(Override, RoutingError, &["loop detected"]),
        pat(Override, RoutingError, &["hop count"]),
        pat(Override, RoutingError, &[" hops"]),
        // Phrases that name the recipient or a quota but are about the sender's volume.
        pat(Override, SpamBlock, &["too many invalid recipients"]),
        pat(Override, RateLimited, &["submission quota"]),
        pat(Override, RateLimited, &["sending quota"]),
        pat(Override, RateLimited, &["sending limit"]),
        pat(Override, RateLimited, &["relay limit"]),
        pat(Override, RateLimited, &["relay quota"]),
        pat(Override, RateLimited, &["receiving mail at a rate"]),
        pat(Override, RateLimited, &["too quickly"]),
        // The recipient domain, address and mailbox.
        pat(Override, BadDomain, &["domain not found"]),
        pat(Override, BadDomain, &["domain does not exist"]),
        pat(Override, BadDomain, &["no such domain"]),
        pat(Override, BadDomain, &["host unknown"]),
        pat(Override, BadDomain, &["domain is not reachable"]),
        pat(Override, InvalidRecipient, &["recipientnotfound"]),
        pat(Override, InvalidRecipient, &["recipient not found"]),
        pat(Override, InvalidRecipient, &["unknown recipient"]),
        pat(Override, InvalidRecipient, &["user unknown"]),
        pat(Override, InvalidRecipient, &["unknown user"]),
        pat(Override, InvalidRecipient, &["no such user"]),
        pat(Override, InvalidRecipient, &["no such recipient"]),
        pat(Override, InvalidRecipient, &["user", "does not exist"]),
        pat(Override, InvalidRecipient, &["account", "does not exist"]),
        pat(Override, InvalidRecipient, &["mailbox", "does not exist"]),
        pat(Override, InvalidRecipient, &["recipient", "does not exist"]),
        pat(Override, InvalidRecipient, &["address", "does not exist"]),
        pat(Override, InvalidRecipient, &["mailbox not found"]),
        pat(Override, InvalidRecipient, &["invalid recipient"]),
        pat(Override, InvalidRecipient, &["no mailbox here by that name"]),
        pat(Override, InvalidRecipient, &["user doesn't have a"]),
        pat(Override, MailboxFull, &["over quota"]),
        pat(Override, MailboxFull, &["overquota"]),
        pat(Override, MailboxFull, &["quota exceeded"]),
        pat(Override, MailboxFull, &["quotaexceeded"]),
        pat(Override, MailboxFull, &["mailbox full"]),
        pat(Override, MailboxFull, &["mailbox is full"]),
        pat(Override, MailboxFull, &["out of storage"]),
        pat(Refine, ProtocolError, &["commands"]),
        // Sender authentication: SPF, DKIM, DMARC, and SMTP AUTH credentials.
        pat(Override, AuthFailure, &["authentication required"]),
        pat(Override, AuthFailure, &["log in"]),
        pat(Override, AuthFailure, &["password"]),
        pat(Refine, AuthFailure, &["authrequired"]),
        pat(Refine, AuthFailure, &["login attempt"]),
        pat(Refine, AuthFailure, &["spf"]),
        pat(Refine, AuthFailure, &["dkim"]),
        pat(Refine, AuthFailure, &["dmarc"]),
        pat(Refine, AuthFailure, &["authenticat"]),
        pat(Refine, AuthFailure, &["authentif"]),
        // A mailbox that exists but takes no mail.
        pat(Refine, InactiveMailbox, &["inactive"]),
        pat(Refine, InactiveMailbox, &["deactivated"]),
        pat(Refine, InactiveMailbox, &["account", "disabled"]),
        pat(Refine, InactiveMailbox, &["mailbox", "disabled"]),
        pat(Refine, InactiveMailbox, &["suspend"]),
        pat(Refine, InactiveMailbox, &[" locked"]),
        pat(Refine, InactiveMailbox, &["no longer valid"]),
        pat(Refine, InactiveMailbox, &["archived"]),
        pat(Refine, InactiveMailbox, &["banned recipient"]),
        pat(Refine, InactiveMailbox, &["recipient account", "blocked"]),
        pat(Refine, MailboxFull, &["exceeded", "quota"]),
        pat(Refine, MailboxFull, &["insufficient storage"]),
        pat(Refine, MailboxFull, &["storage allocation"]),
        pat(Refine, MailboxFull, &["mailbox size limit"]),
        pat(Refine, MailboxFull, &["disk space"]),
        pat(Refine, MessageTooLarge, &["message size"]),
        pat(Refine, MessageTooLarge, &["size limit"]),
        pat(Refine, MessageTooLarge, &["size exceeded"]),
        pat(Refine, MessageTooLarge, &["too large"]),
        pat(Refine, MessageTooLarge, &["too big"]),
        pat(Refine, MessageTooLarge, &["length exceeds"]),
        // Spam, block lists, reputation: the sending IP or domain is refused.
        pat(Refine, SpamBlock, &["spam"]),
        pat(Refine, SpamBlock, &["unsolicited"]),
        pat(Refine, SpamBlock, &["blocked using"]),
        pat(Refine, SpamBlock, &["blacklist"]),
        pat(Refine, SpamBlock, &["black list"]),
        pat(Refine, SpamBlock, &["blocklist"]),
        pat(Refine, SpamBlock, &["block list"]),
        pat(Refine, SpamBlock, &["denylist"]),
        pat(Refine, SpamBlock, &["dnsbl"]),
        pat(Refine, SpamBlock, &["rbl"]),
        pat(Refine, SpamBlock, &["ipcheck.proofpoint"]),
        pat(Refine, SpamBlock, &["barracuda"]),
        pat(Refine, SpamBlock, &["reputation"]),
        pat(Refine, SpamBlock, &["listed"]),
        pat(Refine, SpamBlock, &["banned"]),
        pat(Refine, SpamBlock, &["score"]),
        pat(Refine, SpamBlock, &["ip address", "blocked"]),
        pat(Refine, SpamBlock, &["invalid ip"]),
        pat(Refine, SpamBlock, &["of your isp"]),
        pat(Refine, SpamBlock, &["not accepting connections"]),
        pat(Refine, SpamBlock, &["connection denied"]),
        pat(Refine, SpamBlock, &["connection rejected"]),
        pat(Refine, SpamBlock, &["message filtered"]),
        // Too fast or too many.
        pat(Refine, RateLimited, &["rate limit"]),
        pat(Refine, RateLimited, &["throttl"]),
        pat(Refine, RateLimited, &["temporarily deferred"]),
        pat(Refine, RateLimited, &["too many"]),
        pat(Refine, RateLimited, &["limits for how many"]),
        pat(Refine, RateLimited, &["exceeded", "limit"]),
        pat(Refine, RateLimited, &["limit exceeded"]),
        pat(Refine, RateLimited, &["exceeded", "threshold"]),
        pat(Refine, RateLimited, &["frequency", "limit"]),
        pat(Refine, RateLimited, &["per connection"]),
        pat(Refine, RateLimited, &["per session"]),
        pat(Refine, RateLimited, &["per hour"]),
        pat(Refine, RateLimited, &["thread limit"]),
        pat(Refine, RateLimited, &["number of connections"]),
        pat(Refine, RateLimited, &["daily limit"]),
        pat(Refine, RateLimited, &["slower"]),
        pat(Refine, RateLimited, &["excessive volume"]),
        pat(Refine, ContentRejected, &["content rejected"]),
        pat(Refine, ContentRejected, &["content presents"]),
        pat(Refine, ContentRejected, &["virus"]),
        pat(Refine, ContentRejected, &["malware"]),
        pat(Refine, ContentRejected, &["phish"]),
        pat(Refine, ContentRejected, &["attachment"]),
        pat(Refine, PolicyBlock, &["policy reasons"]),
        pat(Refine, PolicyBlock, &["rejected by recipient"]),
        pat(Refine, NetworkError, &["connection expired"]),
        pat(Refine, PolicyBlock, &["relay"]),
        pat(Refine, PolicyBlock, &["mail from"]),
        pat(Refine, PolicyBlock, &["sender"]),
        pat(Refine, ProtocolError, &["syntax"]),
        pat(Refine, ProtocolError, &["protocol violation"]),
        pat(
            RefineOutsidePolicy,
            InvalidRecipient,
            &["recipient address rejected"],
        ),
        pat(Fallback, PolicyBlock, &["polic"]),
        pat(Fallback, PolicyBlock, &["not allowed"]),
        pat(Fallback, PolicyBlock, &["access denied"]),
        pat(Fallback, PolicyBlock, &["prohibit"]),
        pat(Fallback, RoutingError, &["unrouteable"]),
        pat(Fallback, RoutingError, &["unroutable"]),
        pat(Fallback, RoutingError, &["no route"]),
    ]
};
