//! Domain onboarding checks: is a sender domain's DNS ready for mail sent by this server? SPF
//! authorises the egress IPs (evaluated, lookup limits counted), the DKIM records carry our keys,
//! DMARC is published, the domain has MX records, and each egress IP has forward-confirmed reverse
//! DNS matching the EHLO name. Each failed check says what to publish.
//!
//! [`check_domain`] is what the API calls; [`cli::run`] is `penguin-mta check-domain`. The lookups go
//! through the config's name servers (`[dns]`), the same resolver set-up as delivery.

pub mod cli;
mod dkim;
mod dmarc;
mod dns;
mod mx;
mod ptr;
mod spf;
mod spf_check;
pub(crate) use spf_check::fresh_record as suggested_spf;
mod spf_eval;

use std::net::IpAddr;
use std::path::PathBuf;

use penguin_config::Config;
use serde::{Deserialize, Serialize};

use crate::delivery::dns::{Resolver, ResolverError, fqdn};
use dns::{Dns, HickoryDns, LookupError};

/// Which check a [`Check`] reports (serialised lowercase: `"spf"`, `"dkim"`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckName {
    /// The SPF record authorises the egress IPs.
    Spf,
    /// The DKIM records match our keys.
    Dkim,
    /// A DMARC policy is published.
    Dmarc,
    /// The domain has MX records (it can receive bounces and replies).
    Mx,
    /// Each egress IP has forward-confirmed reverse DNS matching the EHLO name.
    Ptr,
}

impl CheckName {
    /// The name as serialised (`"spf"`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Spf => "spf",
            CheckName::Dkim => "dkim",
            CheckName::Dmarc => "dmarc",
            CheckName::Mx => "mx",
            CheckName::Ptr => "ptr",
        }
    }
}

/// The outcome of one check (serialised lowercase), ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Pass,
    /// Works, but should be improved (or could not be fully checked).
    Warn,
    /// Must be fixed.
    Fail,
}

impl Status {
    /// The name as serialised (`"pass"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's result: `{"name", "status", "detail", "fix"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// Its outcome.
    pub status: Status,
    /// What was found, for a human.
    pub detail: String,
    /// What to do: the exact record(s) to publish (zone file lines, one per line) or the action to
    /// take; `None` (JSON `null`) when there is nothing to fix.
    pub fix: Option<String>,
}

impl Check {
    /// A check result.
    fn new(name: CheckName, status: Status, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            fix,
        }
    }
}

/// The report of [`check_domain`]: `{"domain", "checks": [...]}`, checks in the order spf, dkim,
/// dmarc, mx, ptr.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainReport {
    /// The domain checked (lowercase, no trailing dot, IDNs as punycode).
    pub domain: String,
    /// One result per check.
    pub checks: Vec<Check>,
}

impl DomainReport {
    /// The result of check `name`.
    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|check| check.name == name)
    }

    /// Whether no check failed (warnings allowed).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.status != Status::Fail)
    }
}

/// What to check besides the domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckRequest {
    /// DKIM selectors to check; empty: the selectors that sign for the domain
    /// (`config.dkim.selectors_for(domain)`).
    pub selectors: Vec<String>,
    /// The egress IPs mail leaves from; empty: `config.delivery.source_ip` if set. Without any, the
    /// SPF and PTR checks can only warn.
    pub egress_ips: Vec<IpAddr>,
    /// The config file's path, quoted in suggested commands (`penguin-mta dkim keygen --config FILE`);
    /// `None` writes `FILE`.
    pub config_file: Option<PathBuf>,
}

/// Why the checks could not run at all (DNS answers never cause this: they fail a check instead).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The domain is not a valid DNS name.
    #[error("{0:?} is not a valid domain name")]
    InvalidDomain(String),
    /// The resolver could not be set up from `[dns]`.
    #[error(transparent)]
    Resolver(#[from] ResolverError),
}

/// Checks `domain`'s DNS for sending through this server: SPF, DKIM, DMARC, MX and PTR, using the
/// config's name servers (`[dns]`), DKIM key directory, EHLO name (`smtp.hostname`) and, unless the
/// request names them, its egress IP (`delivery.source_ip`) and DKIM selectors.
pub async fn check_domain(
    config: &Config,
    domain: &str,
    request: &CheckRequest,
) -> Result<DomainReport, CheckError> {
    let domain = normalise_domain(domain)?;
    let resolver = Resolver::new(
        &config.dns.nameservers,
        config.dns.timeout.get(),
        config.dns.attempts,
    )?;
    let context = Context::new(config, domain, request);
    let checks = run_checks(&HickoryDns::new(resolver), &context).await;
    Ok(DomainReport {
        domain: context.domain,
        checks,
    })
}

/// The domain as checked: lowercase ASCII (IDNs as punycode), no trailing dot.
fn normalise_domain(domain: &str) -> Result<String, CheckError> {
    let invalid = || CheckError::InvalidDomain(domain.to_string());
    let trimmed = dns::normalise(domain);
    if trimmed.is_empty() || trimmed.starts_with('[') || trimmed.parse::<IpAddr>().is_ok() {
        return Err(invalid());
    }
    let name = fqdn(&trimmed.to_lowercase()).map_err(|_| invalid())?;
    Ok(dns::normalise(&name.to_ascii()))
}

/// Everything the checks need besides DNS.
pub(crate) struct Context {
    /// The domain (normalised).
    pub(crate) domain: String,
    /// The egress IPs (may be empty).
    pub(crate) egress_ips: Vec<IpAddr>,
    /// The EHLO name (`smtp.hostname`), normalised.
    pub(crate) hostname: String,
    /// DKIM selectors to check.
    pub(crate) selectors: Vec<String>,
    /// The DKIM key directory.
    pub(crate) key_dir: PathBuf,
    /// How suggested commands name the config file.
    pub(crate) config_file: String,
}

impl Context {
    /// The context of one request.
    fn new(config: &Config, domain: String, request: &CheckRequest) -> Context {
        let selectors = if request.selectors.is_empty() {
            config.dkim.selectors_for(&domain).to_vec()
        } else {
            request.selectors.clone()
        };
        let given = if request.egress_ips.is_empty() {
            config.delivery.source_ip.into_iter().collect()
        } else {
            request.egress_ips.clone()
        };
        let mut egress_ips: Vec<IpAddr> = Vec::new();
        for ip in given {
            if !egress_ips.contains(&ip) {
                egress_ips.push(ip);
            }
        }
        Context {
            hostname: dns::normalise(&config.smtp.hostname),
            selectors,
            egress_ips,
            key_dir: config.dkim.key_dir.clone(),
            config_file: request
                .config_file
                .as_ref()
                .map_or_else(|| "FILE".to_string(), |path| path.display().to_string()),
            domain,
        }
    }

    /// The warning detail when no egress IP is known.
    pub(crate) fn no_egress_hint(&self) -> &'static str {
        "the egress IPs are unknown: set delivery.source_ip in the config or pass --ip"
    }
}

/// Runs every check; a domain that does not exist fails them all.
async fn run_checks<D: Dns>(dns: &D, context: &Context) -> Vec<Check> {
    let apex_txt = dns.txt(&context.domain).await;
    if apex_txt == Err(LookupError::NxDomain) {
        return nonexistent(&context.domain);
    }
    let (spf, dkim, dmarc, mx, ptr) = tokio::join!(
        spf_check::check(dns, context, &apex_txt),
        dkim::check(dns, context),
        dmarc::check(dns, context),
        mx::check(dns, context),
        ptr::check(dns, context),
    );
    vec![spf, dkim, dmarc, mx, ptr]
}

/// Every check failed because the domain does not exist.
fn nonexistent(domain: &str) -> Vec<Check> {
    [
        CheckName::Spf,
        CheckName::Dkim,
        CheckName::Dmarc,
        CheckName::Mx,
        CheckName::Ptr,
    ]
    .into_iter()
    .map(|name| {
        Check::new(
            name,
            Status::Fail,
            format!("{domain} does not exist (NXDOMAIN): nothing can be checked"),
            Some(format!(
                "check the spelling of {domain}, or register it and publish its zone"
            )),
        )
    })
    .collect()
}

/// A zone file line publishing `text` as TXT at `owner` (lowercased): `owner. IN TXT "…" "…"`,
/// character-strings of at most 255 octets (receivers concatenate them).
pub(crate) fn txt_line(owner: &str, text: &str) -> String {
    penguin_dkim::txt_zone_line(&dns::normalise(owner), text)
}

/// The fix of a check whose lookup failed: the name servers must answer.
pub(crate) fn dns_fix(name: &str) -> Option<String> {
    Some(format!(
        "make the name servers of {name} answer (then run the check again)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_serialise_to_the_contract() {
        let report = DomainReport {
            domain: "example.com".into(),
            checks: vec![
                Check::new(CheckName::Spf, Status::Pass, "ok", None),
                Check::new(CheckName::Ptr, Status::Fail, "bad", Some("do this".into())),
            ],
        };
        let json = serde_json::to_value(&report).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({"domain": "example.com", "checks": [
                {"name": "spf", "status": "pass", "detail": "ok", "fix": null},
                {"name": "ptr", "status": "fail", "detail": "bad", "fix": "do this"},
            ]})
        );
    }

    #[test]
    fn the_check_future_can_run_on_any_worker_thread() {
        fn assert_send<T: Send>(_: &T) {}
        let config = Config::embedded_default();
        let request = CheckRequest::default();
        assert_send(&check_domain(&config, "example.com", &request));
    }

    #[test]
    fn domains_are_normalised_and_invalid_ones_refused() {
        assert_eq!(normalise_domain(" Example.COM. ").unwrap(), "example.com");
        assert_eq!(
            normalise_domain("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        for bad in ["", ".", "a..b", "192.0.2.1", "[192.0.2.1]"] {
            assert!(normalise_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn txt_lines_split_long_text_into_quoted_strings() {
        assert_eq!(
            txt_line("example.com", "v=spf1 -all"),
            r#"example.com. IN TXT "v=spf1 -all""#
        );
        let long = "a".repeat(300);
        let line = txt_line("x.example.com.", &long);
        assert_eq!(
            line,
            format!(
                "x.example.com. IN TXT \"{}\" \"{}\"",
                "a".repeat(255),
                "a".repeat(45)
            )
        );
        assert_eq!(txt_line("e.com", r#"a"b\c"#), r#"e.com. IN TXT "a\"b\\c""#);
    }
}
