//! SPF evaluation (RFC 7208 §4 `check_host()`) over the [`Dns`] trait, counting the DNS-querying terms
//! (limit 10) and void lookups (limit 2) across includes and redirects.
//!
//! Unlike a receiver, the evaluation does not stop at the 11th lookup: it goes on (up to
//! [`HARD_LOOKUP_CAP`]) so that the report can say how many lookups the record needs; the result is
//! still `permerror` as a receiver would see it. An evaluation without an IP stands for "an address
//! nothing authorises": it walks every term a receiver would for such an address, which is the worst
//! case for the lookup count.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use super::dns::{Dns, LookupError};
use super::spf::{self, MacroContext, Mechanism, Qualifier, Record};

/// Most DNS-querying terms a receiver evaluates (RFC 7208 §4.6.4).
pub(crate) const LOOKUP_LIMIT: usize = 10;

/// Most void lookups (NXDOMAIN or no records) a receiver tolerates (RFC 7208 §4.6.4).
pub(crate) const VOID_LIMIT: usize = 2;

/// Where the evaluation stops counting (include loops end here).
pub(crate) const HARD_LOOKUP_CAP: usize = 30;

/// Most MX hosts (and PTR names) whose addresses one mechanism may look up (RFC 7208 §4.6.4).
const NAMES_PER_MECHANISM: usize = 10;

/// A `check_host()` result other than an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No SPF record.
    None,
    /// No directive matched (or `?`).
    Neutral,
    /// Authorised.
    Pass,
    /// Not authorised (`-`).
    Fail,
    /// Probably not authorised (`~`).
    SoftFail,
}

impl Verdict {
    /// The RFC 7208 name of the result.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verdict::None => "none",
            Verdict::Neutral => "neutral",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::SoftFail => "softfail",
        }
    }
}

impl From<Qualifier> for Verdict {
    fn from(qualifier: Qualifier) -> Verdict {
        match qualifier {
            Qualifier::Pass => Verdict::Pass,
            Qualifier::Fail => Verdict::Fail,
            Qualifier::SoftFail => Verdict::SoftFail,
            Qualifier::Neutral => Verdict::Neutral,
        }
    }
}

/// An SPF error result, with what caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SpfError {
    /// `temperror`: a DNS lookup failed.
    Temp(String),
    /// `permerror`: the published records are wrong.
    Perm(String),
}

/// What one evaluation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Evaluation {
    /// The result a receiver would get.
    pub(crate) result: Result<Verdict, SpfError>,
    /// DNS-querying terms evaluated (counting on past the limit, up to [`HARD_LOOKUP_CAP`]).
    pub(crate) lookups: usize,
    /// Void lookups seen.
    pub(crate) void_lookups: usize,
    /// The term of the top-level record that decided the result (`ip4:192.0.2.0/24`, `redirect=...`).
    pub(crate) matched: Option<String>,
    /// Remarks worth reporting (deprecated `ptr`).
    pub(crate) notes: Vec<String>,
}

/// Evaluates the SPF policy of `domain` for `ip` (`None`: an address nothing authorises), the sender
/// being `postmaster@domain` and the HELO name `helo`.
pub(crate) async fn evaluate<D: Dns>(dns: &D, domain: &str, ip: Option<IpAddr>, helo: &str) -> Evaluation {
    let ip = ip.map(unmapped);
    let mut evaluator = Evaluator {
        dns,
        context: MacroContext {
            sender: format!("postmaster@{domain}"),
            ip,
            helo: helo.to_string(),
        },
        lookups: 0,
        voids: 0,
        matched: None,
        notes: Vec::new(),
    };
    let mut result = evaluator.check_host(domain.to_string(), 0).await;
    if !matches!(result, Err(SpfError::Temp(_))) {
        if evaluator.lookups > LOOKUP_LIMIT {
            result = Err(SpfError::Perm(format!(
                "{} DNS lookups, more than the limit of {LOOKUP_LIMIT}",
                lookups_text(evaluator.lookups)
            )));
        } else if evaluator.voids > VOID_LIMIT {
            result = Err(SpfError::Perm(format!(
                "{} void lookups (names without records), more than the limit of {VOID_LIMIT}",
                evaluator.voids
            )));
        }
    }
    Evaluation {
        result,
        lookups: evaluator.lookups,
        void_lookups: evaluator.voids,
        matched: evaluator.matched,
        notes: evaluator.notes,
    }
}

/// The lookup count for messages (`at least 31` once the cap stopped the evaluation).
pub(crate) fn lookups_text(lookups: usize) -> String {
    if lookups > HARD_LOOKUP_CAP {
        format!("at least {lookups}")
    } else {
        lookups.to_string()
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (RFC 7208 §5).
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The state of one evaluation.
struct Evaluator<'d, D> {
    /// Where records come from.
    dns: &'d D,
    /// Macro values (sender, IP, HELO).
    context: MacroContext,
    /// DNS-querying terms so far.
    lookups: usize,
    /// Void lookups so far.
    voids: usize,
    /// The deciding top-level term.
    matched: Option<String>,
    /// Remarks.
    notes: Vec<String>,
}

/// A boxed `check_host` future (includes and redirects recurse).
type HostFuture<'a> = Pin<Box<dyn Future<Output = Result<Verdict, SpfError>> + Send + 'a>>;

impl<D: Dns> Evaluator<'_, D> {
    /// `check_host()` for `domain` at include/redirect depth `depth`.
    fn check_host(&mut self, domain: String, depth: usize) -> HostFuture<'_> {
        Box::pin(async move {
            let record = match self.fetch(&domain).await? {
                Some(record) => record,
                None => return Ok(Verdict::None),
            };
            for directive in &record.directives {
                if directive.mechanism.queries_dns() {
                    self.count_lookup()?;
                }
                if self.matches(&directive.mechanism, &domain, depth).await? {
                    if depth == 0 {
                        self.matched = Some(directive.text.clone());
                    }
                    return Ok(directive.qualifier.into());
                }
            }
            let Some(target) = record.redirect else {
                return Ok(Verdict::Neutral);
            };
            self.count_lookup()?;
            let target = self.target(&target, &domain)?;
            if depth == 0 {
                self.matched = Some(format!("redirect={target}"));
            }
            match self.check_host(target.clone(), depth + 1).await? {
                Verdict::None => Err(SpfError::Perm(format!(
                    "redirect={target}: {target} has no SPF record"
                ))),
                verdict => Ok(verdict),
            }
        })
    }

    /// The one SPF record of `domain` (`None` if it has none).
    async fn fetch(&mut self, domain: &str) -> Result<Option<Record>, SpfError> {
        let texts = match self.dns.txt(domain).await {
            Ok(texts) => texts,
            Err(err) if err.is_void() => return Ok(None),
            Err(err) => return Err(SpfError::Temp(failed(domain, "TXT", &err))),
        };
        let records: Vec<&String> = texts.iter().filter(|text| spf::is_spf(text)).collect();
        match records.as_slice() {
            [] => Ok(None),
            [one] => spf::parse(one)
                .map(Some)
                .map_err(|err| SpfError::Perm(format!("SPF record of {domain}: {err}"))),
            many => Err(SpfError::Perm(format!(
                "{domain} has {} SPF records (only one is allowed)",
                many.len()
            ))),
        }
    }

    /// Counts one DNS-querying term; past [`HARD_LOOKUP_CAP`] the evaluation stops.
    fn count_lookup(&mut self) -> Result<(), SpfError> {
        self.lookups += 1;
        if self.lookups > HARD_LOOKUP_CAP {
            return Err(SpfError::Perm(format!(
                "{} DNS lookups, more than the limit of {LOOKUP_LIMIT}",
                lookups_text(self.lookups)
            )));
        }
        Ok(())
    }

    /// The expanded, validated target name of a domain spec.
    fn target(&self, spec: &str, domain: &str) -> Result<String, SpfError> {
        let name = super::dns::normalise(&spf::expand(spec, domain, &self.context));
        if valid_name(&name) {
            Ok(name)
        } else {
            Err(SpfError::Perm(format!(
                "{spec:?} expands to {name:?}, not a valid domain name"
            )))
        }
    }

    /// Whether `mechanism` matches the IP, `domain` being the current domain.
    async fn matches(&mut self, mechanism: &Mechanism, domain: &str, depth: usize) -> Result<bool, SpfError> {
        let ip = self.context.ip;
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net) => Ok(matches!(ip, Some(IpAddr::V4(v4)) if net.contains(&v4))),
            Mechanism::Ip6(net) => Ok(matches!(ip, Some(IpAddr::V6(v6)) if net.contains(&v6))),
            Mechanism::Include(spec) => {
                let target = self.target(spec, domain)?;
                match self.check_host(target.clone(), depth + 1).await? {
                    Verdict::Pass => Ok(true),
                    Verdict::None => Err(SpfError::Perm(format!(
                        "include:{target}: {target} has no SPF record"
                    ))),
                    _ => Ok(false),
                }
            }
            Mechanism::A {
                domain: spec,
                cidr4,
                cidr6,
            } => {
                let target = self.optional_target(spec.as_deref(), domain)?;
                let v6 = ip.is_some_and(|ip| ip.is_ipv6());
                let addresses = self.void_or(
                    self.dns.addresses(&target, v6).await,
                    &target,
                    if v6 { "AAAA" } else { "A" },
                )?;
                Ok(ip.is_some_and(|ip| addresses.iter().any(|a| in_network(*a, ip, *cidr4, *cidr6))))
            }
            Mechanism::Mx {
                domain: spec,
                cidr4,
                cidr6,
            } => {
                let target = self.optional_target(spec.as_deref(), domain)?;
                self.mx_matches(&target, *cidr4, *cidr6).await
            }
            Mechanism::Ptr(_) => {
                self.notes.push(
                    "the ptr mechanism is deprecated (RFC 7208 §5.5) and was treated as not matching"
                        .to_string(),
                );
                Ok(false)
            }
            Mechanism::Exists(spec) => {
                let target = self.target(spec, domain)?;
                let addresses = self.void_or(self.dns.addresses(&target, false).await, &target, "A")?;
                Ok(!addresses.is_empty())
            }
        }
    }

    /// The target of `a`/`mx`: the given domain spec or the current domain.
    fn optional_target(&self, spec: Option<&str>, domain: &str) -> Result<String, SpfError> {
        match spec {
            Some(spec) => self.target(spec, domain),
            None => Ok(domain.to_string()),
        }
    }

    /// The `mx` mechanism: the addresses of at most 10 MX hosts of `target`.
    async fn mx_matches(&mut self, target: &str, cidr4: u8, cidr6: u8) -> Result<bool, SpfError> {
        let hosts = self.void_or(self.dns.mx(target).await, target, "MX")?;
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|(_, host)| host)
            .filter(|host| host != ".")
            .collect();
        if hosts.len() > NAMES_PER_MECHANISM {
            return Err(SpfError::Perm(format!(
                "mx:{target} has {} MX hosts, more than the limit of {NAMES_PER_MECHANISM}",
                hosts.len()
            )));
        }
        let Some(ip) = self.context.ip else {
            return Ok(false);
        };
        for host in hosts {
            match self.dns.addresses(&host, ip.is_ipv6()).await {
                Ok(addresses) if addresses.iter().any(|a| in_network(*a, ip, cidr4, cidr6)) => {
                    return Ok(true);
                }
                Ok(_) => {}
                Err(err) if err.is_void() => {}
                Err(err) => return Err(SpfError::Temp(failed(&host, "address", &err))),
            }
        }
        Ok(false)
    }

    /// The records of a lookup; a void answer is counted and gives none; a failure is a temperror.
    fn void_or<T>(
        &mut self,
        answer: Result<Vec<T>, LookupError>,
        name: &str,
        kind: &str,
    ) -> Result<Vec<T>, SpfError> {
        match answer {
            Ok(found) => Ok(found),
            Err(err) if err.is_void() => {
                self.voids += 1;
                Ok(Vec::new())
            }
            Err(err) => Err(SpfError::Temp(failed(name, kind, &err))),
        }
    }
}

/// `DNS lookup of NAME TYPE failed: REASON`.
pub(crate) fn failed(name: &str, kind: &str, err: &LookupError) -> String {
    format!("DNS lookup of {name} {kind} failed: {err}")
}

/// Whether `address` and `ip` are in the same network of the mechanism's prefix length.
fn in_network(address: IpAddr, ip: IpAddr, cidr4: u8, cidr6: u8) -> bool {
    match (address, ip) {
        (IpAddr::V4(a), IpAddr::V4(b)) => ipnet::Ipv4Net::new(a, cidr4).is_ok_and(|net| net.contains(&b)),
        (IpAddr::V6(a), IpAddr::V6(b)) => ipnet::Ipv6Net::new(a, cidr6).is_ok_and(|net| net.contains(&b)),
        _ => false,
    }
}

/// A name DNS can hold: labels of 1 to 63 octets, at most 253 in all.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
}

#[cfg(test)]
#[path = "spf_eval_tests.rs"]
mod tests;
