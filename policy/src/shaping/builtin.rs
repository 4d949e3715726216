//! The built-in reply rules: the large providers' documented throttling replies.
//!
//! Each rule is scoped to its provider (names as in the provider table: `google`, `yahoo`,
//! `microsoft`, `apple`, `comcast`), has a stable name that a configured rule can override, and cites
//! where its reply is documented. Substrings are matched case-insensitively; regular expressions run
//! on the reply line `"CODE ENHANCED TEXT"` ([`super::reply_line`]), so an anchored `^4\d\d 4\.7\.28`
//! looks at the codes and not at an IP address in the text.
//!
//! Only throttling replies are here: a slower rate or a pause is the documented remedy for each, and
//! neither loses mail. Per-recipient limits (Gmail's `450 4.2.1 … receiving mail too quickly`) are left
//! to the retry schedule, since slowing a whole source down would not help one busy mailbox.

use super::rules::{ReplyMatcher, Rule, RuleAction, RuleScope, Trigger};

/// Microseconds in an hour.
const HOUR_US: u64 = 3_600_000_000;

/// Halving the rate: the adaptive loop's plain throttling factor.
const HALVE: RuleAction = RuleAction::Reduce { factor: 0.5 };

/// How a built-in rule recognises its reply.
enum Pattern {
    /// Case-insensitive substring.
    Contains(&'static str),
    /// Regular expression on the original-case reply line.
    Regex(&'static str),
}

/// One built-in rule: (name, provider, pattern, action).
type Spec = (&'static str, &'static str, Pattern, RuleAction);

/// Suspend the source for the whole provider for `hours`.
const fn suspend_provider(hours: u64) -> RuleAction {
    RuleAction::Suspend {
        duration_us: hours * HOUR_US,
        scope: RuleScope::Provider,
    }
}

/// The specifications, in matching order, each with its source.
fn specs() -> Vec<Spec> {
    use Pattern::{Contains, Regex};
    vec![
        // Yahoo: "421 4.7.0 [TSS04] Messages from x.x.x.x temporarily deferred due to unexpected volume
        // or user complaints - 4.16.55.1; see https://postmaster.verizonmedia.com/error-codes" (the
        // reply quoted by cPanel's support article "Exim Log Error: temporarily deferred due to
        // unexpected volume or user complaints"). Yahoo's "4xx SMTP error codes" page
        // (help.yahoo.com/kb/review-xx-smtp-sln26151.html): deferrals for unusual traffic or
        // complaints; resend hours later. Deferrals are per sending IP for all of Yahoo: suspend the
        // source for the provider.
        ("yahoo-tss04", "yahoo", Contains("[tss04]"), suspend_provider(2)),
        ("yahoo-ts04", "yahoo", Contains("[ts04]"), suspend_provider(2)),
        // Yahoo: "421 4.7.0 [TS02] Temporarily deferred" (unusual traffic or complaints from the IP);
        // the same "Message temporarily deferred (TS* errors)" section of Yahoo's error-code page.
        ("yahoo-ts02", "yahoo", Contains("[ts02]"), suspend_provider(2)),
        // Yahoo: "421 4.7.1 [TS03] All messages from x.x.x.x will be permanently deferred; Retrying will
        // NOT succeed. See https://help.yahoo.com/kb/postmaster/SLN3436.html": retrying soon is
        // pointless; Yahoo's 4xx page says to resend no sooner than 4 hours later.
        ("yahoo-ts03", "yahoo", Contains("[ts03]"), suspend_provider(4)),
        // Microsoft (Outlook.com): "451 4.7.650 The mail server [x.x.x.x] has been temporarily rate
        // limited due to IP reputation. For e-mail delivery information, see
        // https://aka.ms/postmaster (S775)" and the 4.7.651 "(S3114)" variant.
        (
            "microsoft-ip-reputation",
            "microsoft",
            Contains("temporarily rate limited due to ip reputation"),
            HALVE,
        ),
        // Microsoft (Outlook.com): replies tagged S3150, which read like a block list entry; a Microsoft
        // spam analyst on the mailop list (thread "Anyone from Outlook? S3150 block list mirage",
        // February 2026): "S3150 is what you get when you don't slow down after seeing 4xx".
        ("microsoft-s3150", "microsoft", Contains("(s3150)"), HALVE),
        // Microsoft (Exchange Online / EOP): "451 4.7.500 Server busy. Please try again later from
        // [x.x.x.x]. (AS761)"; Microsoft Learn, "Fix NDR error 451 4.7.500-699 (ASxxx) in Exchange
        // Online": IP throttling (graylisting) of suspiciously large volumes from a source. The range
        // also covers Outlook.com's "451 4.7.652 The mail server has exceeded the maximum number of
        // connections. (S3115)".
        (
            "microsoft-server-busy",
            "microsoft",
            Contains("server busy"),
            HALVE,
        ),
        (
            "microsoft-as-throttling",
            "microsoft",
            Regex(r"^4\d\d 4\.7\.[56]\d\d\b"),
            HALVE,
        ),
        // Gmail: "421 4.7.28 ... Our system has detected an unusual rate of unsolicited mail
        // originating from your IP address. To protect our users from spam, mail sent from your IP
        // address has been temporarily rate limited." (Google, "Gmail SMTP errors and codes",
        // support.google.com/a/answer/3726730; also for SPF/DKIM domains and URL domains).
        ("google-4-7-28", "google", Regex(r"^4\d\d 4\.7\.28\b"), HALVE),
        // Gmail: the same text under "421 4.7.0" ("... has been temporarily rate limited. Please visit
        // https://support.google.com/mail/?p=UnsolicitedRateLimitError"), same Google page.
        (
            "google-rate-limited",
            "google",
            Regex(r"(?is)^421 4\.7\.0\b.*(unusual rate|rate limited)"),
            HALVE,
        ),
        // Apple iCloud: "421 4.7.1 Messages to x@icloud.com deferred due to excessive volume. Try again
        // later - https://support.apple.com/en-us/HT204137".
        (
            "apple-excessive-volume",
            "apple",
            Contains("deferred due to excessive volume"),
            HALVE,
        ),
        // Comcast: "421 ... Throttled - try again later. ... Please see
        // http://postmaster.comcast.net/smtp-error-codes.php#RL000002"; the RL* codes of Comcast's
        // "Understand email error messages and their codes" page are rate limits.
        (
            "comcast-throttled",
            "comcast",
            Regex(r"(?i)throttled - try again later|\bRL0000\d\d\b"),
            HALVE,
        ),
    ]
}

/// The built-in rules, each scoped to its provider, all firing on the first match.
pub fn builtin_rules() -> Vec<Rule> {
    specs()
        .into_iter()
        .filter_map(|(name, provider, pattern, action)| {
            let matcher = match pattern {
                Pattern::Contains(needle) => ReplyMatcher::contains(needle),
                // The patterns are constants: a test proves they all compile.
                Pattern::Regex(pattern) => ReplyMatcher::regex(pattern).ok()?,
            };
            Some(Rule {
                name: name.to_string(),
                provider: Some(provider.to_string()),
                matcher,
                action,
                trigger: Trigger::Immediate,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::rules::{first_match, lowercase_reply, reply_line};
    use super::*;

    #[test]
    fn every_builtin_rule_compiles_and_has_a_unique_name() {
        let rules = builtin_rules();
        assert_eq!(rules.len(), specs().len());
        let mut names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), rules.len());
        assert!(rules.iter().all(|r| r.provider.is_some()));
    }

    /// (provider, code, enhanced, text, expected rule)
    type Case = (
        &'static str,
        u16,
        Option<&'static str>,
        &'static str,
        Option<&'static str>,
    );

    #[test]
    fn real_replies_table() {
        let rules = builtin_rules();
        let table: &[Case] = &[
            (
                "yahoo",
                421,
                Some("4.7.0"),
                "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user \
                 complaints - 4.16.55.1; see https://postmaster.verizonmedia.com/error-codes",
                Some("yahoo-tss04"),
            ),
            (
                "yahoo",
                421,
                Some("4.7.0"),
                "[TS04] Messages from 192.0.2.1 temporarily deferred",
                Some("yahoo-ts04"),
            ),
            (
                "yahoo",
                421,
                Some("4.7.0"),
                "[TS02] Temporarily deferred",
                Some("yahoo-ts02"),
            ),
            (
                "yahoo",
                421,
                Some("4.7.1"),
                "[TS03] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed.",
                Some("yahoo-ts03"),
            ),
            ("google", 421, Some("4.7.0"), "[TSS04] only Yahoo says this", None),
            (
                "microsoft",
                451,
                Some("4.7.650"),
                "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. For \
                 e-mail delivery information, see https://aka.ms/postmaster (S775)",
                Some("microsoft-ip-reputation"),
            ),
            (
                "microsoft",
                451,
                Some("4.7.651"),
                "Throttled (S3150)",
                Some("microsoft-s3150"),
            ),
            (
                "microsoft",
                451,
                Some("4.7.500"),
                "Server busy. Please try again later from [192.0.2.1]. (AS761)",
                Some("microsoft-server-busy"),
            ),
            (
                "microsoft",
                451,
                Some("4.7.555"),
                "Access denied, please try again later",
                Some("microsoft-as-throttling"),
            ),
            (
                "microsoft",
                550,
                Some("5.7.606"),
                "Access denied, banned sending IP [192.0.2.1]",
                None,
            ),
            (
                "microsoft",
                451,
                Some("4.7.652"),
                "The mail server has exceeded the maximum number of connections. (S3115)",
                Some("microsoft-as-throttling"),
            ),
            (
                "microsoft",
                550,
                Some("5.7.1"),
                "Unfortunately, messages from [192.0.2.1] weren't sent. (S3150)",
                Some("microsoft-s3150"),
            ),
            (
                "google",
                421,
                Some("4.7.28"),
                "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from \
                 your IP address. To protect our users from spam, mail sent from your IP address has been \
                 temporarily rate limited.",
                Some("google-4-7-28"),
            ),
            (
                "google",
                421,
                Some("4.7.0"),
                "[192.0.2.1 15] Our system has detected an unusual rate of unsolicited mail originating \
                 from your IP address.",
                Some("google-rate-limited"),
            ),
            (
                "google",
                421,
                Some("4.7.0"),
                "Try again later, closing connection.",
                None,
            ),
            ("google", 421, Some("4.7.0"), "[114.7.28.3] TLS required", None), // not 4.7.28
            (
                "google",
                450,
                Some("4.2.1"),
                "The user you are trying to contact is receiving mail at a rate that prevents additional \
                 messages from being delivered.",
                None,
            ),
            (
                "apple",
                421,
                Some("4.7.1"),
                "Messages to x@icloud.com deferred due to excessive volume. Try again later - \
                 https://support.apple.com/en-us/HT204137",
                Some("apple-excessive-volume"),
            ),
            (
                "comcast",
                421,
                None,
                "resimta.sys.comcast.net 192.0.2.1 Throttled - try again later. Please see \
                 http://postmaster.comcast.net/smtp-error-codes.php#RL000002",
                Some("comcast-throttled"),
            ),
            ("comcast", 421, None, "Too many sessions opened", None),
            (
                "other",
                451,
                Some("4.7.500"),
                "Server busy. Please try again later",
                None,
            ),
        ];
        for &(provider, code, enhanced, text, expected) in table {
            let line = reply_line(code, enhanced, text);
            let lower = lowercase_reply(code, enhanced, text);
            let got = first_match(&rules, provider, &line, &lower).map(|(_, r)| r.name.as_str());
            assert_eq!(got, expected, "{provider}: {line}");
        }
    }

    #[test]
    fn yahoo_suspends_the_provider_for_two_hours() {
        let rules = builtin_rules();
        let tss04 = rules.iter().find(|r| r.name == "yahoo-tss04").expect("present");
        assert_eq!(
            tss04.action,
            RuleAction::Suspend {
                duration_us: 2 * HOUR_US,
                scope: RuleScope::Provider
            }
        );
        let busy = rules
            .iter()
            .find(|r| r.name == "microsoft-server-busy")
            .expect("present");
        assert_eq!(busy.action, RuleAction::Reduce { factor: 0.5 });
    }
}
