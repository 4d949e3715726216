//! SPF records (RFC 7208): parsing into terms, macro expansion (§7), and rewriting a record to
//! authorise more addresses. Pure: no DNS here (evaluation is in `spf_eval.rs`).

use std::net::IpAddr;

use ipnet::{Ipv4Net, Ipv6Net};

/// The result a matching directive gives (RFC 7208 §4.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Qualifier {
    /// `+` (the default).
    Pass,
    /// `-`.
    Fail,
    /// `~`.
    SoftFail,
    /// `?`.
    Neutral,
}

/// A mechanism (RFC 7208 §5); domain specs are kept unexpanded (they may hold macros).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// `all`.
    All,
    /// `include:domain`.
    Include(String),
    /// `a[:domain][/cidr4][//cidr6]`.
    A {
        /// The domain to look up; `None` is the current domain.
        domain: Option<String>,
        /// IPv4 prefix length (32 when absent).
        cidr4: u8,
        /// IPv6 prefix length (128 when absent).
        cidr6: u8,
    },
    /// `mx[:domain][/cidr4][//cidr6]`.
    Mx {
        /// The domain whose MX hosts are looked up; `None` is the current domain.
        domain: Option<String>,
        /// IPv4 prefix length (32 when absent).
        cidr4: u8,
        /// IPv6 prefix length (128 when absent).
        cidr6: u8,
    },
    /// `ptr[:domain]` (deprecated, RFC 7208 §5.5).
    Ptr(Option<String>),
    /// `ip4:network`.
    Ip4(Ipv4Net),
    /// `ip6:network`.
    Ip6(Ipv6Net),
    /// `exists:domain`.
    Exists(String),
}

impl Mechanism {
    /// Whether evaluating it counts against the limit of 10 DNS lookups (RFC 7208 §4.6.4).
    pub(crate) fn queries_dns(&self) -> bool {
        matches!(
            self,
            Mechanism::Include(_)
                | Mechanism::A { .. }
                | Mechanism::Mx { .. }
                | Mechanism::Ptr(_)
                | Mechanism::Exists(_)
        )
    }
}

/// One directive: qualifier and mechanism, with the term as written (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Directive {
    /// What a match means.
    pub(crate) qualifier: Qualifier,
    /// What is matched.
    pub(crate) mechanism: Mechanism,
    /// The term as written in the record.
    pub(crate) text: String,
}

/// A parsed `v=spf1` record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Record {
    /// The directives, in order.
    pub(crate) directives: Vec<Directive>,
    /// The `redirect=` target, if any.
    pub(crate) redirect: Option<String>,
}

/// Whether a TXT record is an SPF record: `v=spf1` alone or followed by a space (case-insensitive).
pub(crate) fn is_spf(text: &str) -> bool {
    let text = text.trim_start();
    let Some(prefix) = text.get(..6) else {
        return false;
    };
    prefix.eq_ignore_ascii_case("v=spf1") && text[6..].chars().next().is_none_or(|c| c == ' ')
}

/// Parses an SPF record (which [`is_spf`] accepted); the error says which term is wrong.
pub(crate) fn parse(text: &str) -> Result<Record, String> {
    let mut terms = text.split(' ').filter(|term| !term.is_empty());
    match terms.next() {
        Some(version) if version.eq_ignore_ascii_case("v=spf1") => {}
        _ => return Err("the record does not start with v=spf1".to_string()),
    }
    let mut record = Record::default();
    let mut exp_seen = false;
    for term in terms {
        if let Some((name, value)) = modifier(term) {
            let duplicate = if name.eq_ignore_ascii_case("redirect") {
                check_domain_spec(value, term)?;
                record.redirect.replace(value.to_string()).is_some()
            } else if name.eq_ignore_ascii_case("exp") {
                check_domain_spec(value, term)?;
                std::mem::replace(&mut exp_seen, true)
            } else {
                check_macro_string(value, term)?;
                false
            };
            if duplicate {
                return Err(format!("{name}= appears more than once"));
            }
            continue;
        }
        record.directives.push(directive(term)?);
    }
    Ok(record)
}

/// `name=value` when `term` is a modifier (a name of ALPHA *(ALPHA / DIGIT / "-" / "_" / ".") then `=`).
fn modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    valid.then_some((name, value))
}

/// Parses a directive term: `[qualifier]mechanism`.
fn directive(term: &str) -> Result<Directive, String> {
    let (qualifier, rest) = match term.as_bytes().first() {
        Some(b'+') => (Qualifier::Pass, &term[1..]),
        Some(b'-') => (Qualifier::Fail, &term[1..]),
        Some(b'~') => (Qualifier::SoftFail, &term[1..]),
        Some(b'?') => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, argument) = rest.split_at(end);
    let mechanism = mechanism(&name.to_ascii_lowercase(), argument, term)?;
    Ok(Directive {
        qualifier,
        mechanism,
        text: term.to_string(),
    })
}

/// Parses a mechanism from its lowercase name and the rest of the term (`:...` and/or `/...`).
fn mechanism(name: &str, argument: &str, term: &str) -> Result<Mechanism, String> {
    let bad = |what: &str| format!("invalid term {term:?}: {what}");
    match name {
        "all" if argument.is_empty() => Ok(Mechanism::All),
        "include" | "exists" => {
            let domain = argument
                .strip_prefix(':')
                .ok_or_else(|| bad("a domain is required"))?;
            check_domain_spec(domain, term)?;
            Ok(if name == "include" {
                Mechanism::Include(domain.to_string())
            } else {
                Mechanism::Exists(domain.to_string())
            })
        }
        "a" | "mx" => {
            let (domain, cidr4, cidr6) = domain_and_cidrs(argument, term)?;
            Ok(if name == "a" {
                Mechanism::A { domain, cidr4, cidr6 }
            } else {
                Mechanism::Mx { domain, cidr4, cidr6 }
            })
        }
        "ptr" => match argument.strip_prefix(':') {
            None if argument.is_empty() => Ok(Mechanism::Ptr(None)),
            None => Err(bad("unexpected text after ptr")),
            Some(domain) => {
                check_domain_spec(domain, term)?;
                Ok(Mechanism::Ptr(Some(domain.to_string())))
            }
        },
        "ip4" => network(argument, term).and_then(|(ip, prefix)| match ip {
            IpAddr::V4(v4) => Ipv4Net::new(v4, prefix.unwrap_or(32))
                .map(Mechanism::Ip4)
                .map_err(|_| bad("bad prefix length")),
            IpAddr::V6(_) => Err(bad("not an IPv4 address")),
        }),
        "ip6" => network(argument, term).and_then(|(ip, prefix)| match ip {
            IpAddr::V6(v6) => Ipv6Net::new(v6, prefix.unwrap_or(128))
                .map(Mechanism::Ip6)
                .map_err(|_| bad("bad prefix length")),
            IpAddr::V4(_) => Err(bad("not an IPv6 address")),
        }),
        _ => Err(format!("unknown mechanism in {term:?}")),
    }
}

/// The address and optional prefix length of `:ADDRESS[/LEN]`.
fn network(argument: &str, term: &str) -> Result<(IpAddr, Option<u8>), String> {
    let bad = || format!("invalid term {term:?}: expected an address with an optional /prefix");
    let value = argument.strip_prefix(':').ok_or_else(bad)?;
    let (address, prefix) = match value.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (value, None),
    };
    let address: IpAddr = address.parse().map_err(|_| bad())?;
    let prefix = prefix.map(cidr_length).transpose().map_err(|_| bad())?;
    Ok((address, prefix))
}

/// A prefix length: 1 to 3 digits, no sign, no leading zero (RFC 7208 §5.6).
fn cidr_length(text: &str) -> Result<u8, ()> {
    let digits_only = !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return Err(());
    }
    text.parse().map_err(|_| ())
}

/// `[:domain][/cidr4][//cidr6]` of `a` and `mx`.
fn domain_and_cidrs(argument: &str, term: &str) -> Result<(Option<String>, u8, u8), String> {
    let bad = |what: &str| format!("invalid term {term:?}: {what}");
    let mut rest = argument;
    let mut cidr6 = 128;
    if let Some(at) = rest.rfind("//") {
        cidr6 = cidr_length(&rest[at + 2..])
            .ok()
            .filter(|len| *len <= 128)
            .ok_or_else(|| bad("bad IPv6 prefix length"))?;
        rest = &rest[..at];
    }
    let mut cidr4 = 32;
    if let Some(at) = rest.rfind('/')
        && rest[at + 1..].bytes().all(|b| b.is_ascii_digit())
    {
        cidr4 = cidr_length(&rest[at + 1..])
            .ok()
            .filter(|len| *len <= 32)
            .ok_or_else(|| bad("bad IPv4 prefix length"))?;
        rest = &rest[..at];
    }
    let domain = match rest.strip_prefix(':') {
        Some(domain) => {
            check_domain_spec(domain, term)?;
            Some(domain.to_string())
        }
        None if rest.is_empty() => None,
        None => return Err(bad("unexpected text")),
    };
    Ok((domain, cidr4, cidr6))
}

/// A domain-spec (RFC 7208 §7.1): a valid macro-string ending in a macro or a top label.
fn check_domain_spec(spec: &str, term: &str) -> Result<(), String> {
    check_macro_string(spec, term)?;
    if spec.ends_with('}') {
        return Ok(());
    }
    let trimmed = spec.strip_suffix('.').unwrap_or(spec);
    let top = trimmed.rsplit('.').next().unwrap_or("");
    let top_ok = trimmed.contains('.')
        && !top.is_empty()
        && top.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !top.bytes().all(|b| b.is_ascii_digit())
        && !top.starts_with('-')
        && !top.ends_with('-');
    if top_ok {
        Ok(())
    } else {
        Err(format!("invalid domain {spec:?} in {term:?}"))
    }
}

/// The macro letters of domain specs (RFC 7208 §7.2; `c`, `r`, `t` are for `exp` only).
const MACRO_LETTERS: &str = "slodiphv";

/// A macro-string: `%%`, `%_`, `%-` and `%{letter digits [r] delimiters}` are the only `%` sequences.
fn check_macro_string(spec: &str, term: &str) -> Result<(), String> {
    let bad = || format!("invalid macro in {term:?}");
    let mut rest = spec;
    while let Some(at) = rest.find('%') {
        rest = &rest[at + 1..];
        match rest.as_bytes().first() {
            Some(b'%' | b'_' | b'-') => rest = &rest[1..],
            Some(b'{') => {
                let close = rest.find('}').ok_or_else(bad)?;
                parse_macro(&rest[1..close]).ok_or_else(bad)?;
                rest = &rest[close + 1..];
            }
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// A parsed `%{...}` body: letter, keep-rightmost count, reverse, delimiters.
#[derive(Debug, PartialEq, Eq)]
struct Macro {
    /// The macro letter, lowercase.
    letter: char,
    /// Keep only this many rightmost parts.
    keep: Option<usize>,
    /// Reverse the parts first.
    reverse: bool,
    /// Characters splitting the value into parts (default `.`).
    delimiters: String,
}

/// Parses a `%{...}` body.
fn parse_macro(body: &str) -> Option<Macro> {
    let mut chars = body.chars();
    let letter = chars.next()?.to_ascii_lowercase();
    if !MACRO_LETTERS.contains(letter) {
        return None;
    }
    let rest = chars.as_str();
    let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let keep = match &rest[..digits_end] {
        "" => None,
        digits => Some(digits.parse::<usize>().ok().filter(|n| *n > 0)?),
    };
    let rest = &rest[digits_end..];
    let (reverse, delimiters) = match rest.strip_prefix(['r', 'R']) {
        Some(after) => (true, after),
        None => (false, rest),
    };
    if !delimiters.chars().all(|c| ".-+,/_=".contains(c)) {
        return None;
    }
    let delimiters = if delimiters.is_empty() {
        ".".to_string()
    } else {
        delimiters.to_string()
    };
    Some(Macro {
        letter,
        keep,
        reverse,
        delimiters,
    })
}

/// What macros expand to during one evaluation.
#[derive(Clone, Debug)]
pub(crate) struct MacroContext {
    /// The sender (`postmaster@domain` for the checks).
    pub(crate) sender: String,
    /// The client IP; `None` when the evaluation stands for "an address nothing authorises".
    pub(crate) ip: Option<IpAddr>,
    /// The HELO/EHLO name.
    pub(crate) helo: String,
}

/// Expands the macros of a domain spec (validated by [`parse`]) for `domain`, the current domain. A
/// result longer than 253 characters loses labels on the left (RFC 7208 §7.3).
pub(crate) fn expand(spec: &str, domain: &str, context: &MacroContext) -> String {
    let mut out = String::new();
    let mut rest = spec;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        match rest.as_bytes().first() {
            Some(b'%') => out.push('%'),
            Some(b'_') => out.push(' '),
            Some(b'-') => out.push_str("%20"),
            Some(b'{') => {
                let close = rest.find('}').unwrap_or(rest.len());
                if let Some(parsed) = parse_macro(rest.get(1..close).unwrap_or("")) {
                    out.push_str(&apply(&parsed, &macro_value(parsed.letter, domain, context)));
                }
                rest = rest.get(close..).unwrap_or("");
            }
            _ => {}
        }
        rest = rest.get(1..).unwrap_or("");
    }
    out.push_str(rest);
    shorten(out)
}

/// The value of a macro letter.
fn macro_value(letter: char, domain: &str, context: &MacroContext) -> String {
    let (local, sender_domain) = context
        .sender
        .rsplit_once('@')
        .unwrap_or(("postmaster", &context.sender));
    match letter {
        's' => context.sender.clone(),
        'l' => local.to_string(),
        'o' => sender_domain.to_string(),
        'd' => domain.to_string(),
        'i' => match context.ip {
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => v6
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0xf])
                .map(|n| format!("{n:x}"))
                .collect::<Vec<_>>()
                .join("."),
            None => "192.0.2.0".to_string(),
        },
        'v' => if matches!(context.ip, Some(IpAddr::V6(_))) {
            "ip6"
        } else {
            "in-addr"
        }
        .to_string(),
        'h' => context.helo.clone(),
        // `p` (the validated name of the IP) is not looked up; RFC 7208 §7.3 allows "unknown".
        _ => "unknown".to_string(),
    }
}

/// Splits, reverses, keeps the rightmost parts and joins with dots.
fn apply(parsed: &Macro, value: &str) -> String {
    let mut parts: Vec<&str> = value.split(|c| parsed.delimiters.contains(c)).collect();
    if parsed.reverse {
        parts.reverse();
    }
    if let Some(keep) = parsed.keep
        && parts.len() > keep
    {
        parts.drain(..parts.len() - keep);
    }
    parts.join(".")
}

/// Drops labels on the left until the name fits in 253 characters.
fn shorten(mut name: String) -> String {
    while name.len() > 253 {
        match name.find('.') {
            Some(dot) => name.drain(..=dot),
            None => return name,
        };
    }
    name
}

/// `record` with `ip4:`/`ip6:` terms for `ips` that it does not list yet, inserted before its `all`
/// term, else before its modifiers, else at the end.
pub(crate) fn with_ips(record: &str, ips: &[IpAddr]) -> String {
    let mut terms: Vec<String> = record
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let new: Vec<String> = ips
        .iter()
        .map(|ip| ip_term(*ip))
        .filter(|term| !terms.iter().any(|t| t.eq_ignore_ascii_case(term)))
        .collect();
    let is_all = |term: &String| {
        term.trim_start_matches(['+', '-', '~', '?'])
            .eq_ignore_ascii_case("all")
    };
    let at = terms
        .iter()
        .position(is_all)
        .or_else(|| {
            terms
                .iter()
                .skip(1)
                .position(|t| modifier(t).is_some())
                .map(|i| i + 1)
        })
        .unwrap_or(terms.len());
    terms.splice(at..at, new);
    terms.join(" ")
}

/// The SPF term naming exactly `ip`.
pub(crate) fn ip_term(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip4:{v4}"),
        IpAddr::V6(v6) => format!("ip6:{v6}"),
    }
}

#[cfg(test)]
#[path = "spf_tests.rs"]
mod tests;
