//! Tables of real replies (as providers document them or as they appear in bounces), enhanced codes,
//! network failures and the enhanced-code parser.

use super::*;
use BounceClass::*;

/// An enhanced status code as `ReplyView` carries it.
pub(super) type Enhanced = Option<Code>;

/// An enhanced status code: (class, subject, detail).
type Code = (u8, u16, u16);

/// A table row: whole reply line, outcome constructor (`p` or `t`), expected class.
type Row = (&'static str, fn(BounceClass) -> Outcome, BounceClass);

/// Splits a whole reply line ("550-5.1.1 text") the way the SMTP client hands it over: basic code,
/// parsed enhanced code, and the text after both.
pub(super) fn split_line(line: &str) -> (u16, Enhanced, &str) {
    let code = line.get(..3).and_then(|code| code.parse().ok()).unwrap_or(0);
    let rest = line.get(4..).unwrap_or("");
    let enhanced = parse_enhanced(rest);
    let text = match enhanced {
        Some(_) => rest.split_once(' ').map_or("", |(_, text)| text),
        None => rest,
    };
    (code, enhanced, text)
}

/// P = permanent, T = transient.
fn p(class: BounceClass) -> Outcome {
    Outcome::Permanent(class)
}

/// See [`p`].
fn t(class: BounceClass) -> Outcome {
    Outcome::Transient(class)
}

/// Gmail (support.google.com/mail/answer/3726730 and bounces as received).
const GMAIL: &[Row] = &[
    (
        "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking \
         the recipient's email address for typos or unnecessary spaces. Learn more at \
         https://support.google.com/mail/?p=NoSuchUser",
        p,
        InvalidRecipient,
    ),
    (
        "452-4.2.2 The email account that you tried to reach is over quota. Please direct the recipient \
         to https://support.google.com/mail/?p=OverQuotaTemp",
        t,
        MailboxFull,
    ),
    // Sisimai (Google table): mailboxfull for 552 5.2.2 "is over quota", inactive or not; so says X.2.2.
    (
        "552-5.2.2 The email account that you tried to reach is over quota and inactive. Please direct \
         the recipient to https://support.google.com/mail/?p=OverQuotaPerm",
        p,
        MailboxFull,
    ),
    (
        "550-5.2.1 The email account that you tried to reach is disabled. Learn more at \
         https://support.google.com/mail/?p=DisabledUser",
        p,
        InactiveMailbox,
    ),
    (
        "450-4.2.1 The user you are trying to contact is receiving mail at a rate that prevents \
         additional messages from being delivered. Please resend your message at a later time. If the \
         user is able to receive mail at that time, your message will be delivered. For more \
         information, please visit https://support.google.com/mail/?p=ReceivingRate",
        t,
        RateLimited,
    ),
    (
        "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP \
         address. To protect our users from spam, mail sent from your IP address has been temporarily \
         rate limited. Please visit https://support.google.com/mail/?p=UnsolicitedRateLimitError to \
         review our Bulk Email Senders Guidelines.",
        t,
        RateLimited,
    ),
    (
        "550-5.7.26 This mail is unauthenticated, which poses a security risk to the sender and Gmail \
         users, and has been blocked. The sender must authenticate with at least one of SPF or DKIM. For \
         this message, DKIM checks did not pass and SPF check for [example.com] did not pass with ip: \
         [192.0.2.1]. The sender should visit https://support.google.com/mail/answer/81126#authentication \
         for instructions on setting up authentication.",
        p,
        AuthFailure,
    ),
    (
        "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy. \
         Please contact the administrator of example.com domain if this was a legitimate mail. To learn \
         about the DMARC initiative, go to https://support.google.com/mail/?p=DmarcRejection",
        p,
        AuthFailure,
    ),
    (
        "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail. To \
         reduce the amount of spam sent to Gmail, this message has been blocked. Please visit \
         https://support.google.com/mail/?p=UnsolicitedMessageError for more information.",
        p,
        SpamBlock,
    ),
    (
        "421-4.7.0 [192.0.2.1] Our system has detected that this message is suspicious due to the very \
         low reputation of the sending IP address. To best protect our users from spam, the message has \
         been blocked. Please visit https://support.google.com/mail/answer/188131 for more information.",
        t,
        SpamBlock,
    ),
    (
        "421-4.7.0 IP not in whitelist for RCPT domain, closing connection.",
        t,
        PolicyBlock,
    ),
    // TLS required: a transport matter (Sisimai failedstarttls), no longer policy_block.
    (
        "421-4.7.0 TLS required for RCPT domain, closing connection.",
        t,
        ProtocolError,
    ),
    (
        "550-5.7.25 The IP address sending this message does not have a PTR record setup, or the \
         corresponding forward DNS entry does not point to the sending IP. As a policy, Gmail does not \
         accept messages from IPs with missing PTR records.",
        p,
        // A missing PTR is the sending host's set-up refused by policy (Sisimai requireptr), not sender
        // authentication: auth_failure would send the sender to its SPF/DKIM records.
        PolicyBlock,
    ),
    (
        "550-5.7.1 This message does not have authentication information or fails to pass authentication \
         checks (SPF or DKIM). To best protect our users from spam, the message has been blocked. Please \
         visit https://support.google.com/mail/answer/81126#authentication for more information.",
        p,
        AuthFailure,
    ),
    (
        "552-5.2.3 Your message exceeded Google's message size limits. Please visit \
         https://support.google.com/mail/?p=MaxSizeError to view our size guidelines.",
        p,
        MessageTooLarge,
    ),
    (
        "452-4.5.3 Your message has too many recipients. For more information regarding Google's sending \
         limits, visit https://support.google.com/mail/?p=TooManyRecipientsError",
        t,
        RateLimited,
    ),
    (
        "553-5.1.3 The recipient address <not an address> is not a valid RFC-5321 address. Learn more at \
         https://support.google.com/mail/answer/6596",
        p,
        InvalidRecipient,
    ),
    (
        "552-5.7.0 This message was blocked because its content presents a potential security issue. \
         Please visit https://support.google.com/mail/?p=BlockedMessage to review our message content \
         and attachment content guidelines.",
        p,
        ContentRejected,
    ),
    ("451-4.3.0 Mail server temporarily rejected message.", t, Other),
];

/// Microsoft: Outlook.com consumer and Exchange Online / on-premises Exchange.
const MICROSOFT: &[Row] = &[
    // Ambiguous stock text under a protocol code: neither an unknown user nor a protocol error.
    (
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)",
        p,
        Other,
    ),
    (
        "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet \
         service provider since part of their network is on our block list (S3150). You can also refer \
         your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
        p,
        SpamBlock,
    ),
    // A rate limit that says why is classed by why: Sisimai's Microsoft table gives badreputation.
    (
        "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. \
         For e-mail delivery information, see https://postmaster.live.com (S775)",
        t,
        SpamBlock,
    ),
    (
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) \
         [DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]",
        p,
        InvalidRecipient,
    ),
    (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        p,
        InvalidRecipient,
    ),
    (
        "550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found",
        p,
        InvalidRecipient,
    ),
    (
        "550 5.7.606 Access denied, banned sending IP [192.0.2.1]. To request removal from this list \
         please visit https://sender.office.com/ and follow the directions. For more information please \
         go to http://go.microsoft.com/fwlink/?LinkID=526655 AS(1430)",
        p,
        SpamBlock,
    ),
    (
        "550 5.7.515 Access denied, sending domain example.com doesn't meet the required authentication \
         level.",
        p,
        AuthFailure,
    ),
    // The recipient takes only authenticated senders: Sisimai securityerror, our auth_failure.
    (
        "550 5.7.1 RESOLVER.RST.AuthRequired; authentication required",
        p,
        AuthFailure,
    ),
    (
        "421 RP-001 (COL004-MC1F37) Unfortunately, some messages from 192.0.2.1 weren't sent. Please try \
         again. We have limits for how many messages can be sent per hour and per day. You can also refer \
         to http://mail.live.com/mail/troubleshooting.aspx#errors.",
        t,
        RateLimited,
    ),
    (
        "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.\
         MapiExceptionShutoffQuotaExceeded",
        p,
        MailboxFull,
    ),
    ("550 5.2.1 Mailbox disabled", p, InactiveMailbox),
    ("554 5.6.0 Message content rejected", p, ContentRejected),
    (
        "550 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain",
        p,
        BadDomain,
    ),
    (
        "554 5.4.14 Hop count exceeded - possible mail loop ATTR34",
        p,
        RoutingError,
    ),
];

/// Yahoo / AOL, Apple iCloud, Proofpoint, Mimecast, Comcast, Barracuda.
const OTHER_PROVIDERS: &[Row] = &[
    (
        "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user \
         complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        t,
        RateLimited,
    ),
    (
        "554 5.7.9 Message not accepted for policy reasons. See https://postmaster.yahooinc.com/error-codes",
        p,
        PolicyBlock,
    ),
    (
        "552 1 Requested mail action aborted, mailbox not found",
        p,
        InvalidRecipient,
    ),
    (
        "554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] - \
         mta1234.mail.bf1.yahoo.com",
        p,
        InvalidRecipient,
    ),
    (
        "554 delivery error: dd Sorry your message to someone@yahoo.com cannot be delivered. This mailbox \
         is disabled (554.30). - mta1234.mail.bf1.yahoo.com",
        p,
        InactiveMailbox,
    ),
    (
        "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is in \
         Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
        p,
        SpamBlock,
    ),
    ("451 Message temporarily deferred - [160]", t, RateLimited),
    (
        "554 5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1",
        p,
        SpamBlock,
    ),
    ("550 5.7.1 Not allowed", p, PolicyBlock),
    (
        "550 5.7.0 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=192.0.2.1",
        p,
        SpamBlock,
    ),
    (
        "550 5.1.1 <someone@icloud.com>: user does not exist",
        p,
        InvalidRecipient,
    ),
    (
        "554 5.7.1 [CS01] Message rejected due to local policy. Please visit \
         https://support.apple.com/en-us/HT204137",
        p,
        PolicyBlock,
    ),
    // Anti-spoofing is Mimecast's inbound policy, not an SPF/DKIM result (Sisimai: policyviolation).
    (
        "550 Rejected by header based Anti-Spoofing policy: someone@example.com - \
         https://community.mimecast.com/docs/DOC-1369#550",
        p,
        PolicyBlock,
    ),
    (
        "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550",
        p,
        InvalidRecipient,
    ),
    (
        "451 Internal resource temporarily unavailable - https://community.mimecast.com/docs/DOC-1369#451",
        t,
        Other,
    ),
    // Mimecast: "a signature was detected that could either be a virus, or a spam score over the maximum
    // threshold"; Sisimai's Mimecast table gives virusdetected.
    (
        "554 Email rejected due to security policies - https://community.mimecast.com/docs/DOC-1369#554",
        p,
        ContentRejected,
    ),
    (
        "554 resimta-ch2-18v.sys.comcast.net resimta-ch2-18v.sys.comcast.net 192.0.2.1 found on one or \
         more DNSBLs, see http://postmaster.comcast.net/smtp-error-codes.php#BL000010",
        p,
        SpamBlock,
    ),
    (
        "554 Service unavailable; Client host [192.0.2.1] blocked using Barracuda Reputation; \
         http://www.barracudanetworks.com/reputation/?pr=1&ip=192.0.2.1",
        p,
        SpamBlock,
    ),
];

/// Postfix, Exim, qmail and other open-source servers, and bare RFC 5321 texts.
const SERVERS: &[Row] = &[
    (
        "550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
        p,
        InvalidRecipient,
    ),
    // Postfix's reject_unknown_client_hostname: a missing PTR (Sisimai requireptr), not authentication.
    (
        "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]",
        t,
        PolicyBlock,
    ),
    (
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; \
         https://www.spamhaus.org/query/ip/192.0.2.1",
        p,
        SpamBlock,
    ),
    ("552 5.2.2 Mailbox full", p, MailboxFull),
    ("452 4.5.3 Error: too many recipients", t, RateLimited),
    (
        "450 4.2.0 <someone@example.com>: Recipient address rejected: Greylisted, see \
         http://postgrey.schweikert.ch/help/example.com.html",
        t,
        PolicyBlock,
    ),
    (
        "554 5.7.1 <someone@example.com>: Relay access denied",
        p,
        PolicyBlock,
    ),
    (
        "550 5.7.1 <someone@example.com>: Recipient address rejected: Access denied",
        p,
        PolicyBlock,
    ),
    (
        "450 4.1.2 <someone@example.com>: Recipient address rejected: Domain not found",
        t,
        BadDomain,
    ),
    (
        "450 4.1.8 <bounce@example.net>: Sender address rejected: Domain not found",
        t,
        PolicyBlock,
    ),
    (
        "550 5.1.1 <bounce@example.net>: Sender address rejected: User unknown in local recipient table",
        p,
        PolicyBlock,
    ),
    ("552 5.3.4 Message size exceeds fixed limit", p, MessageTooLarge),
    (
        "421 4.7.0 mx.example.com Error: too many connections from 192.0.2.1",
        t,
        RateLimited,
    ),
    ("452 4.3.1 Insufficient system storage", t, Other),
    (
        "421 4.4.2 mx.example.com Error: timeout exceeded",
        t,
        NetworkError,
    ),
    ("500 5.5.2 Error: bad syntax", p, ProtocolError),
    ("550 Unrouteable address", p, RoutingError),
    (
        "550 Verification failed for <bounce@example.net> Unrouteable address Sender verify failed",
        p,
        PolicyBlock,
    ),
    (
        "550 This message contains a virus (Eicar-Test-Signature) and has been rejected",
        p,
        ContentRejected,
    ),
    (
        "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        p,
        PolicyBlock,
    ),
    (
        "550 sorry, no mailbox here by that name. (#5.1.1)",
        p,
        InvalidRecipient,
    ),
    ("550 Requested action not taken: mailbox unavailable", p, Other),
    (
        "550 5.1.1 Requested action not taken: mailbox unavailable",
        p,
        InvalidRecipient,
    ),
    // "Try again later" alone is no rate limit (it ends most system-error replies); X.7.1 decides.
    ("451 4.7.1 Please try again later", t, PolicyBlock),
    ("451 Temporary local problem - please try later", t, Other),
    (
        "421 Service not available, closing transmission channel",
        t,
        Other,
    ),
    ("502 5.5.1 Error: command not implemented", p, ProtocolError),
    ("503 Bad sequence of commands", p, ProtocolError),
];

#[test]
fn real_replies_classify_as_expected() {
    let tables = [GMAIL, MICROSOFT, OTHER_PROVIDERS, SERVERS];
    let mut rows = 0;
    for &(line, outcome, class) in tables.iter().copied().flatten() {
        let (code, enhanced, text) = split_line(line);
        let expected = outcome(class);
        let parsed = classify_reply(&ReplyView { code, enhanced, text });
        assert_eq!(parsed, expected, "{line}");
        // A caller that leaves the enhanced code in the text gets the same answer.
        let rest = line.get(4..).unwrap_or("");
        let unparsed = classify_reply(&ReplyView {
            code,
            enhanced: None,
            text: rest,
        });
        assert_eq!(unparsed, expected, "unparsed: {line}");
        rows += 1;
    }
    assert!(rows >= 80, "{rows} rows");
}

#[test]
fn basic_code_decides_transient_or_permanent() {
    let reply = |code, enhanced, text| classify_reply(&ReplyView { code, enhanced, text });
    let cases: &[(u16, Enhanced, &str, Outcome)] = &[
        (
            250,
            None,
            "2.0.0 OK 1712345678 a1-20020a05.123 - gsmtp",
            Outcome::Delivered,
        ),
        (250, Some((5, 1, 1)), "user unknown", Outcome::Delivered),
        (251, None, "User not local; will forward", Outcome::Delivered),
        (200, None, "", Outcome::Delivered),
        (299, None, "", Outcome::Delivered),
        (550, Some((4, 2, 2)), "", p(MailboxFull)),
        (450, Some((5, 1, 1)), "", t(InvalidRecipient)),
        (421, Some((2, 0, 0)), "", t(Other)),
        (354, None, "Start mail input", t(ProtocolError)),
        (334, None, "VXNlcm5hbWU6", t(ProtocolError)),
        (199, None, "", t(ProtocolError)),
        (0, None, "", t(ProtocolError)),
        (99, None, "", t(ProtocolError)),
        (600, Some((5, 1, 1)), "user unknown", t(ProtocolError)),
        (999, None, "", t(ProtocolError)),
        (u16::MAX, None, "", t(ProtocolError)),
        (450, None, "", t(Other)),
        (550, None, "", p(Other)),
        (555, None, "5.5.4 Unsupported option: SMTPUTF8", p(ProtocolError)),
        // An out-of-range class digit from the caller is ignored; the text's code is used instead.
        (550, Some((9, 1, 1)), "5.2.2 Mailbox full", p(MailboxFull)),
        (550, Some((9, 1, 1)), "", p(Other)),
    ];
    for &(code, enhanced, text, expected) in cases {
        assert_eq!(
            reply(code, enhanced, text),
            expected,
            "{code} {enhanced:?} {text:?}"
        );
    }
}

#[test]
fn enhanced_codes_alone_give_the_registry_class() {
    // (subject, detail, class of a 5xx reply, class of a 4xx reply) with no text at all.
    let cases: &[(u16, u16, BounceClass, BounceClass)] = &[
        (0, 0, Other, Other),
        (1, 0, Other, Other),
        (1, 1, InvalidRecipient, InvalidRecipient),
        (1, 2, BadDomain, BadDomain),
        (1, 3, InvalidRecipient, InvalidRecipient),
        (1, 6, InvalidRecipient, InvalidRecipient),
        (1, 8, PolicyBlock, PolicyBlock),
        (1, 10, BadDomain, BadDomain),
        (2, 1, InactiveMailbox, InactiveMailbox),
        (2, 2, MailboxFull, MailboxFull),
        (2, 3, MessageTooLarge, MessageTooLarge),
        (2, 4, Other, Other),
        (3, 4, MessageTooLarge, MessageTooLarge),
        (3, 5, Other, Other),
        (4, 1, NetworkError, NetworkError),
        (4, 3, RoutingError, RoutingError),
        (4, 4, BadDomain, RoutingError),
        (4, 5, RateLimited, RateLimited),
        (4, 7, MessageExpired, MessageExpired),
        (5, 0, Other, Other),
        (5, 1, ProtocolError, ProtocolError),
        (5, 3, RateLimited, RateLimited),
        (6, 0, ContentRejected, ContentRejected),
        (6, 3, ContentRejected, ContentRejected),
        (6, 7, ProtocolError, ProtocolError),
        (7, 0, PolicyBlock, PolicyBlock),
        (7, 1, PolicyBlock, PolicyBlock),
        (7, 4, ProtocolError, ProtocolError),
        (7, 13, InactiveMailbox, InactiveMailbox),
        (7, 20, AuthFailure, AuthFailure),
        (7, 22, AuthFailure, AuthFailure),
        (7, 23, AuthFailure, AuthFailure),
        (7, 25, PolicyBlock, PolicyBlock),
        (7, 26, AuthFailure, AuthFailure),
        (7, 27, AuthFailure, AuthFailure),
        (7, 28, RateLimited, RateLimited),
        (7, 29, AuthFailure, AuthFailure),
        (7, 650, PolicyBlock, PolicyBlock),
        (9, 9, Other, Other),
    ];
    for &(subject, detail, permanent, transient) in cases {
        let at = |code: u16| {
            let class = if code < 500 { 4 } else { 5 };
            classify_reply(&ReplyView {
                code,
                enhanced: Some((class, subject, detail)),
                text: "",
            })
        };
        assert_eq!(at(554), p(permanent), "5.{subject}.{detail}");
        assert_eq!(at(451), t(transient), "4.{subject}.{detail}");
    }
}

#[test]
fn specific_codes_are_not_refined_by_incidental_words() {
    // (code, enhanced, text, expected): the words would pick another class under a generic code.
    let cases: &[(u16, Code, &str, Outcome)] = &[
        // A temporary X.7.28 is a rate limit whatever the words (a permanent one is a block, which the
        // words then tell: Sisimai gives blocked to Gmail's 550 5.7.28).
        (
            421,
            (4, 7, 28),
            "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your \
             IP address. To protect our users from spam, mail sent from your IP address has been temporarily \
             rate limited.",
            t(RateLimited),
        ),
        (
            550,
            (5, 1, 1),
            "This address is not listed in our directory",
            p(InvalidRecipient),
        ),
        (
            452,
            (4, 2, 2),
            "Too many messages in this mailbox",
            t(MailboxFull),
        ),
        (
            550,
            (5, 7, 23),
            "Sender not permitted by the domain; reputation poor",
            p(AuthFailure),
        ),
        (
            552,
            (5, 2, 3),
            "The message exceeds what we accept for its attachments",
            p(MessageTooLarge),
        ),
        (
            550,
            (5, 6, 1),
            "Media type not supported: too many parts",
            p(ContentRejected),
        ),
    ];
    for &(code, enhanced, text, expected) in cases {
        let generic = (enhanced.0, enhanced.1, 0);
        assert_eq!(
            classify_reply(&ReplyView {
                code,
                enhanced: Some(enhanced),
                text
            }),
            expected,
            "{text}"
        );
        let refined = classify_reply(&ReplyView {
            code,
            enhanced: Some(generic),
            text,
        });
        assert_ne!(
            refined, expected,
            "the words alone would decide otherwise: {text}"
        );
    }
}

#[test]
fn every_network_failure_has_an_outcome_and_a_code() {
    let cases: &[(NetworkFailure, Outcome, &str)] = &[
        (NetworkFailure::ConnectionRefused, t(NetworkError), "4.4.1"),
        (NetworkFailure::ConnectTimeout, t(NetworkError), "4.4.1"),
        (NetworkFailure::Timeout, t(NetworkError), "4.4.2"),
        (NetworkFailure::Disconnected, t(NetworkError), "4.4.2"),
        (NetworkFailure::DisconnectedAfterData, t(NetworkError), "4.4.2"),
        (NetworkFailure::TlsHandshake, t(NetworkError), "4.4.2"),
        (NetworkFailure::DnsTemporary, t(RoutingError), "4.4.3"),
        (NetworkFailure::DnsNxDomain, p(BadDomain), "5.1.2"),
        (NetworkFailure::NullMx, p(BadDomain), "5.1.10"),
        (NetworkFailure::NoAddresses, t(RoutingError), "4.4.4"),
        (NetworkFailure::SmtpUtf8NotOffered, p(ProtocolError), "5.6.7"),
        (NetworkFailure::MessageExpired, p(MessageExpired), "4.4.7"),
    ];
    assert_eq!(cases.len(), NetworkFailure::ALL.len());
    for (&(failure, outcome, code), listed) in cases.iter().zip(NetworkFailure::ALL) {
        assert_eq!(failure, listed, "table follows NetworkFailure::ALL");
        assert_eq!(classify_network(failure), (outcome, code), "{failure:?}");
    }
}

#[test]
fn network_codes_read_back_as_the_same_class() {
    for failure in NetworkFailure::ALL {
        let (outcome, code) = classify_network(failure);
        let enhanced = parse_enhanced(code).expect("assigned code parses");
        let basic = if enhanced.0 == 4 { 451 } else { 554 };
        let read_back = classify_reply(&ReplyView {
            code: basic,
            enhanced: Some(enhanced),
            text: "",
        });
        let class = |outcome| match outcome {
            Outcome::Transient(class) | Outcome::Permanent(class) => Some(class),
            Outcome::Delivered => None,
        };
        assert_eq!(class(read_back), class(outcome), "{failure:?} {code}");
        if failure != NetworkFailure::MessageExpired {
            assert_eq!(
                read_back, outcome,
                "{failure:?} {code}: permanence follows the code's class"
            );
        }
    }
}

#[test]
fn class_names_are_distinct_snake_case() {
    let names: Vec<&str> = BounceClass::ALL.iter().map(|class| class.as_str()).collect();
    assert_eq!(names[0], "invalid_recipient");
    assert_eq!(BounceClass::MessageTooLarge.as_str(), "message_too_large");
    for (i, name) in names.iter().enumerate() {
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
        assert!(!names[..i].contains(name), "duplicate {name}");
    }
}

#[test]
fn parse_enhanced_table() {
    let cases: &[(&str, Enhanced)] = &[
        ("5.1.1 User unknown", Some((5, 1, 1))),
        ("4.2.2", Some((4, 2, 2))),
        ("2.0.0 OK", Some((2, 0, 0))),
        ("5.1.10 RESOLVER.ADR.RecipientNotFound", Some((5, 1, 10))),
        ("4.7.650 The mail server", Some((4, 7, 650))),
        ("  5.7.1 indented", Some((5, 7, 1))),
        ("5.7.1, comma", Some((5, 7, 1))),
        ("5.7.1. sentence end", Some((5, 7, 1))),
        ("5.7.1;", Some((5, 7, 1))),
        ("550-5.1.1 The email account", Some((5, 1, 1))),
        ("550 5.1.1 The email account", Some((5, 1, 1))),
        ("005.001.001 leading zeros", None),
        ("5.001.001 three digits", Some((5, 1, 1))),
        ("5.1.1000", None),
        ("5.1000.1", None),
        ("5.1", None),
        ("5.1.", None),
        ("5..1", None),
        ("5.1.-1", None),
        ("5.1.1a", None),
        ("5.1.1.1", None),
        ("192.0.2.1 blocked", None),
        ("3.1.1", None),
        ("6.1.1", None),
        ("1 Requested mail action aborted", None),
        ("550", None),
        ("550 ", None),
        ("550 Requested action not taken", None),
        ("#5.1.1", None),
        ("é5.1.1", None),
        ("550é5.1.1", None),
        ("", None),
        ("user unknown 5.1.1", None),
    ];
    for &(text, expected) in cases {
        assert_eq!(parse_enhanced(text), expected, "{text:?}");
    }
}

#[test]
fn hostile_input_never_panics() {
    let long = "x".repeat(100_000) + " user unknown";
    let multibyte = "ü".repeat(MAX_TEXT) + "5.1.1";
    let texts = [
        "",
        " ",
        "(#",
        "(#5",
        "(#5.1.1",
        "5.",
        "550-",
        "\u{0}\u{ff}\r\n",
        "ÄÖÜ 5.1.1 ß",
        long.as_str(),
        multibyte.as_str(),
    ];
    for code in [
        0,
        99,
        200,
        250,
        354,
        421,
        450,
        451,
        452,
        500,
        550,
        554,
        555,
        600,
        999,
        u16::MAX,
    ] {
        for text in texts {
            for enhanced in [
                None,
                Some((5, u16::MAX, u16::MAX)),
                Some((0, 0, 0)),
                Some((u8::MAX, 7, 1)),
            ] {
                let _ = classify_reply(&ReplyView { code, enhanced, text });
            }
            let _ = parse_enhanced(text);
        }
    }
    // Past the inspected prefix, text no longer counts.
    let outcome = classify_reply(&ReplyView {
        code: 550,
        enhanced: None,
        text: &long,
    });
    assert_eq!(outcome, p(Other));
}
