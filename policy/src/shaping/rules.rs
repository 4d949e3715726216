//! Rules on remote replies: "when a site answers like this, do that".
//!
//! A rule matches a reply (a case-insensitive substring, or a regular expression), optionally only for
//! one provider's sites, and fires an action (suspend the source for the site or the provider, reduce
//! the rate, bounce, retry after a delay) either at once or after N matches within a window
//! ([`super::TriggerCounter`]). Configured rules come first, then the built-in ones
//! ([`super::builtin_rules`]) that a configured rule of the same name does not override.
//!
//! Matching runs for every non-2xx reply, so it must not allocate per rule: the caller builds the reply
//! line once in original case ([`reply_line`]) and once lowercased ([`lowercase_reply`]); substrings are
//! stored lowercase and looked up in the lowercased line, regular expressions run on the original.

use regex::Regex;

/// Where a suspension applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleScope {
    /// The ready queue (source, site) that got the reply.
    Site,
    /// Every site of the reply's provider, from the same source (e.g. Yahoo's per-IP deferrals).
    Provider,
}

/// What a rule does when it fires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RuleAction {
    /// Stop sending from this source to the site or provider for a while; messages wait, attempts are
    /// not counted.
    Suspend {
        /// How long the suspension lasts.
        duration_us: u64,
        /// Site or whole provider.
        scope: RuleScope,
    },
    /// Multiply the queue's rate by `factor` (the adaptive loop's decrease, see [`super::Adaptive`]).
    Reduce {
        /// The decrease factor, in (0, 1).
        factor: f64,
    },
    /// Bounce the recipient now, whatever the reply's class says.
    Bounce,
    /// Retry the recipient after this delay instead of the retry schedule's next interval.
    Retry {
        /// The delay before the next attempt.
        after_us: u64,
    },
}

/// When a matching reply fires the action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Every match fires (config: `"immediate"`).
    Immediate,
    /// `hits` matches within `window_us` fire, then counting starts over (config: `"N/h"` and the like).
    Count {
        /// Matches needed; config validation bounds it to 10,000.
        hits: u32,
        /// The window the matches must fall in.
        window_us: u64,
    },
}

/// How a rule recognises a reply.
#[derive(Clone, Debug)]
pub enum ReplyMatcher {
    /// A case-insensitive substring, stored lowercase (build it with [`ReplyMatcher::contains`]).
    Contains(String),
    /// A regular expression, run on the reply line in its original case (use `(?i)` for case-blindness).
    Regex(Regex),
}

impl ReplyMatcher {
    /// A substring matcher; lowercases `needle` so it can be looked up in [`lowercase_reply`]'s output.
    pub fn contains(needle: &str) -> ReplyMatcher {
        ReplyMatcher::Contains(needle.to_lowercase())
    }

    /// A regular expression matcher; the error is the config's to report.
    pub fn regex(pattern: &str) -> Result<ReplyMatcher, regex::Error> {
        Regex::new(pattern).map(ReplyMatcher::Regex)
    }

    /// Whether the reply matches: `reply` in original case, `reply_lower` the same lowercased.
    pub fn matches(&self, reply: &str, reply_lower: &str) -> bool {
        match self {
            ReplyMatcher::Contains(needle) => reply_lower.contains(needle.as_str()),
            ReplyMatcher::Regex(regex) => regex.is_match(reply),
        }
    }
}

/// One reply rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Stable name: shown in events, and a configured rule with a built-in rule's name replaces it.
    pub name: String,
    /// When set, the rule applies only to this provider's sites (names as in the provider table).
    pub provider: Option<String>,
    /// What the reply must look like.
    pub matcher: ReplyMatcher,
    /// What happens when the rule fires.
    pub action: RuleAction,
    /// Whether one match fires, or N within a window.
    pub trigger: Trigger,
}

impl Rule {
    /// Whether this rule applies to a reply from a site of `provider` (`reply` as [`reply_line`] builds
    /// it, `reply_lower` as [`lowercase_reply`] does).
    pub fn matches(&self, provider: &str, reply: &str, reply_lower: &str) -> bool {
        let provider_ok = self
            .provider
            .as_deref()
            .is_none_or(|own| own.eq_ignore_ascii_case(provider));
        provider_ok && self.matcher.matches(reply, reply_lower)
    }
}

/// The reply as one line, `"CODE ENHANCED TEXT"` (or `"CODE TEXT"`), in original case.
///
/// `text` is the reply's text with the lines of a multi-line reply joined by a space, without their
/// repeated code prefixes.
pub fn reply_line(code: u16, enhanced: Option<&str>, text: &str) -> String {
    match enhanced {
        Some(enhanced) => format!("{code} {enhanced} {text}"),
        None => format!("{code} {text}"),
    }
}

/// [`reply_line`] lowercased: what [`ReplyMatcher::Contains`] looks in. Built once per reply.
pub fn lowercase_reply(code: u16, enhanced: Option<&str>, text: &str) -> String {
    reply_line(code, enhanced, text).to_lowercase()
}

/// The rules in force: `configured` first (in order), then the `builtin` rules that no configured rule
/// overrides by name (only when `builtin_on`).
pub fn effective_rules(builtin: Vec<Rule>, configured: Vec<Rule>, builtin_on: bool) -> Vec<Rule> {
    let mut rules = configured;
    if builtin_on {
        let configured_count = rules.len();
        for rule in builtin {
            if !rules[..configured_count].iter().any(|own| own.name == rule.name) {
                rules.push(rule);
            }
        }
    }
    rules
}

/// The first rule (and its index, for per-rule trigger counters) that matches the reply.
pub fn first_match<'a>(
    rules: &'a [Rule],
    provider: &str,
    reply: &str,
    reply_lower: &str,
) -> Option<(usize, &'a Rule)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, rule)| rule.matches(provider, reply, reply_lower))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, provider: Option<&str>, matcher: ReplyMatcher) -> Rule {
        Rule {
            name: name.to_string(),
            provider: provider.map(str::to_string),
            matcher,
            action: RuleAction::Reduce { factor: 0.5 },
            trigger: Trigger::Immediate,
        }
    }

    fn regex(pattern: &str) -> ReplyMatcher {
        ReplyMatcher::regex(pattern).expect("test pattern compiles")
    }

    #[test]
    fn reply_lines() {
        assert_eq!(reply_line(421, Some("4.7.0"), "Try Again"), "421 4.7.0 Try Again");
        assert_eq!(reply_line(450, None, "Busy"), "450 Busy");
        assert_eq!(
            lowercase_reply(421, Some("4.7.0"), "[TSS04] Deferred"),
            "421 4.7.0 [tss04] deferred"
        );
    }

    /// (matcher, rule provider, reply provider, code, enhanced, text, matches?)
    type Case = (
        ReplyMatcher,
        Option<&'static str>,
        &'static str,
        u16,
        Option<&'static str>,
        &'static str,
        bool,
    );

    #[test]
    fn matcher_table() {
        let table: Vec<Case> = vec![
            (
                ReplyMatcher::contains("[TSS04]"),
                None,
                "yahoo",
                421,
                Some("4.7.0"),
                "[TSS04] x",
                true,
            ),
            (
                ReplyMatcher::contains("server BUSY"),
                None,
                "other",
                451,
                None,
                "Server busy.",
                true,
            ),
            (
                ReplyMatcher::contains("absent"),
                None,
                "other",
                451,
                None,
                "Server busy.",
                false,
            ),
            (
                ReplyMatcher::contains("x"),
                Some("yahoo"),
                "google",
                421,
                None,
                "x",
                false,
            ),
            (
                ReplyMatcher::contains("x"),
                Some("Yahoo"),
                "yahoo",
                421,
                None,
                "x",
                true,
            ),
            (
                regex("^4\\d\\d 4\\.7\\.28\\b"),
                None,
                "google",
                421,
                Some("4.7.28"),
                "Rate",
                true,
            ),
            (
                regex("^4\\d\\d 4\\.7\\.28\\b"),
                None,
                "google",
                421,
                Some("4.7.0"),
                "[4.7.28.1]",
                false,
            ),
            (regex("Busy"), None, "other", 451, None, "Server busy", false), // regex sees original case
            (regex("(?i)Busy"), None, "other", 451, None, "Server busy", true),
        ];
        for (matcher, own, provider, code, enhanced, text, expected) in table {
            let r = rule("t", own, matcher);
            let line = reply_line(code, enhanced, text);
            let lower = lowercase_reply(code, enhanced, text);
            assert_eq!(
                r.matches(provider, &line, &lower),
                expected,
                "{line:?} for {provider}"
            );
        }
        assert!(ReplyMatcher::regex("(unclosed").is_err());
    }

    #[test]
    fn effective_rules_and_first_match() {
        let builtin = vec![
            rule("b1", None, ReplyMatcher::contains("alpha")),
            rule("shared", None, ReplyMatcher::contains("beta")),
        ];
        let configured = vec![
            rule("c1", None, ReplyMatcher::contains("gamma")),
            rule("shared", None, ReplyMatcher::contains("delta")),
        ];
        let names = |rules: &[Rule]| rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        let on = effective_rules(builtin.clone(), configured.clone(), true);
        assert_eq!(names(&on), ["c1", "shared", "b1"]);
        let off = effective_rules(builtin, configured, false);
        assert_eq!(names(&off), ["c1", "shared"]);

        // (text, expected index and name)
        let table: &[(&str, Option<(usize, &str)>)] = &[
            ("alpha and gamma", Some((0, "c1"))), // configured first
            ("alpha", Some((2, "b1"))),
            ("beta", None), // the built-in "shared" was overridden
            ("delta", Some((1, "shared"))),
            ("nothing", None),
        ];
        for &(text, expected) in table {
            let line = reply_line(421, None, text);
            let lower = line.to_lowercase();
            let got = first_match(&on, "other", &line, &lower).map(|(i, r)| (i, r.name.as_str()));
            assert_eq!(got, expected, "{text}");
        }
        assert!(first_match(&[], "other", "x", "x").is_none());
    }
}
