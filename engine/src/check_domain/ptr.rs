//! The `ptr` check: each egress IP has a PTR record whose name resolves back to the IP
//! (forward-confirmed reverse DNS) and is the EHLO name (`smtp.hostname`).

use std::net::IpAddr;

use super::dns::{Dns, LookupError, reverse_name};
use super::spf_eval::failed;
use super::{Check, CheckName, Context, Status};

/// Most PTR names of one IP that are looked up forward.
const MAX_NAMES: usize = 10;

/// Runs the PTR check over the egress IPs (the worst IP decides the status).
pub(crate) async fn check<D: Dns>(dns: &D, context: &Context) -> Check {
    if context.egress_ips.is_empty() {
        return Check::new(
            CheckName::Ptr,
            Status::Warn,
            format!("reverse DNS not checked: {}", context.no_egress_hint()),
            Some("set delivery.source_ip in the config or pass --ip, then check again".to_string()),
        );
    }
    let mut status = Status::Pass;
    let mut details = Vec::new();
    let mut fixes = Vec::new();
    for ip in &context.egress_ips {
        match check_ip(dns, &context.hostname, *ip).await {
            Ok(detail) => details.push(detail),
            Err(detail) => {
                status = Status::Fail;
                details.push(detail);
                fixes.push(fix(*ip, &context.hostname));
            }
        }
    }
    let fix = (!fixes.is_empty()).then(|| fixes.join("\n"));
    Check::new(CheckName::Ptr, status, details.join("; "), fix)
}

/// What to do for `ip`.
fn fix(ip: IpAddr, hostname: &str) -> String {
    let kind = if ip.is_ipv6() { "AAAA" } else { "A" };
    format!("set the PTR of {ip} to {hostname} at the IP's provider, and publish {hostname}. IN {kind} {ip}")
}

/// Checks one IP: `Ok(detail)` when its PTR is forward-confirmed and the EHLO name, else `Err(detail)`.
async fn check_ip<D: Dns>(dns: &D, hostname: &str, ip: IpAddr) -> Result<String, String> {
    let names = match dns.ptr(ip).await {
        Ok(names) => names,
        Err(err) if err.is_void() => return Err(format!("{ip} has no PTR record ({})", reverse_name(ip))),
        Err(err) => return Err(failed(&reverse_name(ip), "PTR", &err)),
    };
    let mut confirmed = Vec::new();
    let mut unconfirmed = Vec::new();
    for name in names.iter().take(MAX_NAMES) {
        match dns.addresses(name, ip.is_ipv6()).await {
            Ok(addresses) if addresses.contains(&ip) => confirmed.push(name.clone()),
            Ok(addresses) => {
                let list: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
                unconfirmed.push(format!("{name} resolves to {}", list.join(", ")));
            }
            Err(LookupError::Failed(reason)) => {
                let kind = if ip.is_ipv6() { "AAAA" } else { "A" };
                return Err(failed(name, kind, &LookupError::Failed(reason)));
            }
            Err(_) => unconfirmed.push(format!("{name} has no address")),
        }
    }
    if confirmed.is_empty() {
        return Err(format!(
            "the PTR of {ip} is not forward-confirmed: {} (not {ip})",
            unconfirmed.join(", ")
        ));
    }
    if confirmed.iter().any(|name| name == hostname) {
        return Ok(format!(
            "the PTR of {ip} is {hostname}, the EHLO name, which resolves back to it"
        ));
    }
    Err(format!(
        "the PTR of {ip} is {}, but the EHLO name (smtp.hostname) is {hostname}",
        confirmed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::super::dns::fake::FakeDns;
    use super::*;

    fn context(ip: &str) -> Context {
        Context {
            domain: "example.com".into(),
            egress_ips: vec![ip.parse().unwrap()],
            hostname: "mta.example.com".into(),
            selectors: Vec::new(),
            key_dir: "/nonexistent".into(),
            config_file: "FILE".into(),
        }
    }

    fn with_ptr(dns: FakeDns, ip: &str, name: &str) -> FakeDns {
        let mut dns = dns;
        dns.ptr
            .entry(reverse_name(ip.parse().unwrap()))
            .or_default()
            .push(name.to_string());
        dns
    }

    #[tokio::test]
    async fn a_forward_confirmed_ehlo_name_passes() {
        let dns = with_ptr(FakeDns::default(), "192.0.2.7", "mta.example.com")
            .with_address("mta.example.com", "192.0.2.7");
        let check = check(&dns, &context("192.0.2.7")).await;
        assert_eq!(check.status, Status::Pass, "{check:?}");
        assert_eq!(check.fix, None);
    }

    #[tokio::test]
    async fn failures_say_why_and_what_to_publish() {
        let missing = FakeDns::default();
        let unconfirmed = with_ptr(FakeDns::default(), "192.0.2.7", "mta.example.com")
            .with_address("mta.example.com", "192.0.2.8");
        let other_name = with_ptr(FakeDns::default(), "192.0.2.7", "host.isp.net")
            .with_address("host.isp.net", "192.0.2.7");
        let cases = [
            (missing, "has no PTR record"),
            (
                unconfirmed,
                "not forward-confirmed: mta.example.com resolves to 192.0.2.8",
            ),
            (
                other_name,
                "the PTR of 192.0.2.7 is host.isp.net, but the EHLO name",
            ),
        ];
        for (dns, expected) in cases {
            let check = check(&dns, &context("192.0.2.7")).await;
            assert_eq!(check.status, Status::Fail);
            assert!(check.detail.contains(expected), "{}", check.detail);
            assert_eq!(
                check.fix.as_deref(),
                Some(
                    "set the PTR of 192.0.2.7 to mta.example.com at the IP's provider, and publish mta.example.com. IN A 192.0.2.7"
                )
            );
        }
    }
}
