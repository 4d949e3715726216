//! The `dmarc` check: a parseable DMARC record (RFC 7489 §6.3) at `_dmarc.DOMAIN`, or at the parent
//! domain one level up (whose `sp=`, else `p=`, then applies); the policy is reported, `p=none` warns.

use super::dns::{Dns, LookupError};
use super::spf_eval::failed;
use super::{Check, CheckName, Context, Status, dns_fix, txt_line};

/// A DMARC policy (`p=` / `sp=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Monitoring only.
    None,
    /// Failing mail goes to spam.
    Quarantine,
    /// Failing mail is refused.
    Reject,
}

impl Policy {
    /// The tag value.
    fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    /// Parses a tag value (case-insensitive).
    fn parse(value: &str) -> Option<Policy> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }
}

/// A parsed DMARC record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DmarcRecord {
    /// `p=`.
    pub(crate) policy: Policy,
    /// `sp=` (subdomains), if given.
    pub(crate) subdomain_policy: Option<Policy>,
    /// `pct=` (default 100).
    pub(crate) pct: u8,
    /// `rua=` URIs.
    pub(crate) rua: Vec<String>,
    /// `ruf=` URIs.
    pub(crate) ruf: Vec<String>,
    /// `adkim=` strict (`s`) or relaxed (`r`, the default).
    pub(crate) adkim_strict: bool,
    /// `aspf=` strict (`s`) or relaxed (`r`, the default).
    pub(crate) aspf_strict: bool,
}

/// Whether a TXT record is meant as a DMARC record (starts with `v=DMARC1`, spaces allowed).
pub(crate) fn is_dmarc(text: &str) -> bool {
    text.split(';')
        .next()
        .and_then(|tag| tag.split_once('='))
        .is_some_and(|(name, value)| name.trim() == "v" && value.trim() == "DMARC1")
}

/// Parses a DMARC record; the error says what is wrong.
pub(crate) fn parse(text: &str) -> Result<DmarcRecord, String> {
    if !is_dmarc(text) {
        return Err("the record does not start with v=DMARC1".to_string());
    }
    let mut policy = None;
    let mut record = DmarcRecord {
        policy: Policy::None,
        subdomain_policy: None,
        pct: 100,
        rua: Vec::new(),
        ruf: Vec::new(),
        adkim_strict: false,
        aspf_strict: false,
    };
    for tag in text
        .split(';')
        .skip(1)
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
    {
        let (name, value) = tag
            .split_once('=')
            .ok_or_else(|| format!("tag {tag:?} has no value"))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        let bad = || format!("invalid {name}={value}");
        match name.as_str() {
            "p" => policy = Some(Policy::parse(value).ok_or_else(bad)?),
            "sp" => record.subdomain_policy = Some(Policy::parse(value).ok_or_else(bad)?),
            "pct" => record.pct = value.parse().ok().filter(|pct| *pct <= 100).ok_or_else(bad)?,
            "rua" => record.rua = uris(value).ok_or_else(bad)?,
            "ruf" => record.ruf = uris(value).ok_or_else(bad)?,
            "adkim" => record.adkim_strict = alignment(value).ok_or_else(bad)?,
            "aspf" => record.aspf_strict = alignment(value).ok_or_else(bad)?,
            "v" => return Err("v= must be the first tag, once".to_string()),
            // fo, rf, ri and future tags are not checked.
            _ => {}
        }
    }
    record.policy = policy.ok_or("the required p= tag is missing")?;
    Ok(record)
}

/// Comma-separated report URIs; each must be a `mailto:` with an `@`, or another scheme.
fn uris(value: &str) -> Option<Vec<String>> {
    let list: Vec<String> = value.split(',').map(|uri| uri.trim().to_string()).collect();
    let valid = list.iter().all(|uri| match uri.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("mailto:") => uri[7..].contains('@'),
        _ => uri.contains(':'),
    });
    valid.then_some(list)
}

/// `r` → relaxed (false), `s` → strict (true).
fn alignment(value: &str) -> Option<bool> {
    match value {
        "r" | "R" => Some(false),
        "s" | "S" => Some(true),
        _ => None,
    }
}

/// The record we suggest: `v=DMARC1; p=POLICY; rua=mailto:dmarc-reports@DOMAIN`.
fn suggested(domain: &str, policy: Policy) -> String {
    format!(
        "v=DMARC1; p={}; rua=mailto:dmarc-reports@{domain}",
        policy.as_str()
    )
}

/// Runs the DMARC check.
pub(crate) async fn check<D: Dns>(dns: &D, context: &Context) -> Check {
    let domain = &context.domain;
    let name = format!("_dmarc.{domain}");
    let found = match lookup(dns, &name).await {
        Ok(found) => found,
        Err(check) => return check,
    };
    match found {
        Some(text) => judge(domain, &name, &text, None),
        None => match parent(domain) {
            Some(parent) => {
                let parent_name = format!("_dmarc.{parent}");
                match lookup(dns, &parent_name).await {
                    Ok(Some(text)) => judge(domain, &parent_name, &text, Some(parent)),
                    Ok(None) => missing(domain, &name),
                    Err(check) => check,
                }
            }
            None => missing(domain, &name),
        },
    }
}

/// The DMARC record text at `name` (`None` if it has none); a failed lookup or several records is the
/// failed check.
async fn lookup<D: Dns>(dns: &D, name: &str) -> Result<Option<String>, Check> {
    let texts = match dns.txt(name).await {
        Ok(texts) => texts,
        Err(LookupError::NxDomain | LookupError::NoData) => return Ok(None),
        Err(err) => {
            return Err(Check::new(
                CheckName::Dmarc,
                Status::Fail,
                failed(name, "TXT", &err),
                dns_fix(name),
            ));
        }
    };
    let mut records: Vec<String> = texts.into_iter().filter(|text| is_dmarc(text)).collect();
    match records.len() {
        0 => Ok(None),
        1 => Ok(records.pop()),
        count => Err(Check::new(
            CheckName::Dmarc,
            Status::Fail,
            format!("{name} has {count} DMARC records; receivers then apply no policy"),
            Some(format!("delete all but one DMARC record at {name}")),
        )),
    }
}

/// The parent domain one level up, if it is not a top-level domain.
fn parent(domain: &str) -> Option<&str> {
    let (_, parent) = domain.split_once('.')?;
    parent.contains('.').then_some(parent)
}

/// No DMARC record.
fn missing(domain: &str, name: &str) -> Check {
    Check::new(
        CheckName::Dmarc,
        Status::Fail,
        format!("no DMARC record at {name}"),
        Some(txt_line(name, &suggested(domain, Policy::None))),
    )
}

/// The check result for the record `text` found at `name` (of `inherited_from` when it is the
/// parent's).
fn judge(domain: &str, name: &str, text: &str, inherited_from: Option<&str>) -> Check {
    let own_name = format!("_dmarc.{domain}");
    let record = match parse(text) {
        Ok(record) => record,
        Err(err) => {
            return Check::new(
                CheckName::Dmarc,
                Status::Fail,
                format!("the DMARC record at {name} (\"{text}\") is invalid: {err}"),
                Some(txt_line(&own_name, &suggested(domain, Policy::None))),
            );
        }
    };
    let policy = match inherited_from {
        Some(_) => record.subdomain_policy.unwrap_or(record.policy),
        None => record.policy,
    };
    let mut detail = match inherited_from {
        Some(parent) => format!(
            "no record at {own_name}; {parent}'s record applies: policy {}",
            policy.as_str()
        ),
        None => format!("policy {}", policy.as_str()),
    };
    if let (None, Some(sp)) = (inherited_from, record.subdomain_policy) {
        detail.push_str(&format!(", subdomains {}", sp.as_str()));
    }
    if record.pct < 100 {
        detail.push_str(&format!(", applied to {}% of failing mail", record.pct));
    }
    detail.push_str(&match record.rua.is_empty() {
        true => ", no aggregate reports (rua)".to_string(),
        false => format!(", reports to {}", record.rua.join(",")),
    });
    if policy != Policy::None {
        return Check::new(CheckName::Dmarc, Status::Pass, detail, None);
    }
    detail
        .push_str(" (monitoring only: meets the Gmail/Yahoo bulk sender requirement, but protects nothing)");
    let rua = match record.rua.as_slice() {
        [] => format!("mailto:dmarc-reports@{domain}"),
        list => list.join(","),
    };
    let fix = format!(
        "once the reports show your mail aligned: {}",
        txt_line(&own_name, &format!("v=DMARC1; p=quarantine; rua={rua}"))
    );
    Check::new(CheckName::Dmarc, Status::Warn, detail, Some(fix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_record_parses() {
        let record = parse("v=DMARC1; p=reject; sp=quarantine; pct=50; rua=mailto:a@example.com,mailto:b@example.com; ruf=mailto:f@example.com; adkim=s; aspf=r; fo=1").unwrap();
        assert_eq!(record.policy, Policy::Reject);
        assert_eq!(record.subdomain_policy, Some(Policy::Quarantine));
        assert_eq!(record.pct, 50);
        assert_eq!(record.rua, vec!["mailto:a@example.com", "mailto:b@example.com"]);
        assert_eq!(record.ruf, vec!["mailto:f@example.com"]);
        assert!(record.adkim_strict);
        assert!(!record.aspf_strict);
    }

    #[test]
    fn spacing_and_case_of_values_are_tolerated() {
        let record = parse("v=DMARC1 ;p = Quarantine ;").unwrap();
        assert_eq!(record.policy, Policy::Quarantine);
        assert_eq!(record.pct, 100);
    }

    #[test]
    fn broken_records_are_refused_with_a_reason() {
        let cases = [
            ("v=DMARC1", "p= tag is missing"),
            ("v=DMARC1; p=block", "invalid p=block"),
            ("p=reject; v=DMARC1", "does not start with v=DMARC1"),
            ("v=DMARC1; p=none; pct=101", "invalid pct=101"),
            ("v=DMARC1; p=none; rua=dmarc@example.com", "invalid rua"),
            ("v=DMARC1; p=none; adkim=x", "invalid adkim=x"),
            ("v=DMARC1; p=none; v=DMARC1", "v= must be the first tag"),
            ("v=DMARC1; p", "has no value"),
        ];
        for (text, reason) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn only_v_dmarc1_records_count() {
        assert!(is_dmarc("v=DMARC1; p=none"));
        assert!(is_dmarc(" v = DMARC1;p=none"));
        assert!(!is_dmarc("v=spf1 -all"));
        assert!(!is_dmarc("v=DMARC2; p=none"));
    }

    #[test]
    fn p_none_warns_and_suggests_quarantine() {
        let check = judge(
            "example.com",
            "_dmarc.example.com",
            "v=DMARC1; p=none; rua=mailto:r@example.com",
            None,
        );
        assert_eq!(check.status, Status::Warn);
        assert!(
            check
                .fix
                .unwrap()
                .contains(r#"_dmarc.example.com. IN TXT "v=DMARC1; p=quarantine; rua=mailto:r@example.com""#)
        );
    }

    #[test]
    fn a_parent_record_applies_its_subdomain_policy() {
        let check = judge(
            "news.example.com",
            "_dmarc.example.com",
            "v=DMARC1; p=none; sp=reject",
            Some("example.com"),
        );
        assert_eq!(check.status, Status::Pass);
        assert!(
            check
                .detail
                .contains("example.com's record applies: policy reject"),
            "{}",
            check.detail
        );
        assert_eq!(parent("news.example.com"), Some("example.com"));
        assert_eq!(parent("example.com"), None);
    }
}
