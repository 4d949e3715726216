//! The `mx` check: the domain can receive bounces and replies (MX records, not a null MX).

use super::dns::{Dns, LookupError};
use super::spf_eval::failed;
use super::{Check, CheckName, Context, Status, dns_fix};

/// Runs the MX check.
pub(crate) async fn check<D: Dns>(dns: &D, context: &Context) -> Check {
    let domain = &context.domain;
    let publish = format!(
        "publish an MX record naming the host that receives {domain}'s mail, e.g. {domain}. IN MX 10 mx.{domain}."
    );
    let mut records = match dns.mx(domain).await {
        Ok(records) => records,
        Err(LookupError::NoData) => return implicit(dns, domain, publish).await,
        Err(LookupError::NxDomain) => {
            return Check::new(
                CheckName::Mx,
                Status::Fail,
                format!("{domain} does not exist (NXDOMAIN)"),
                Some(publish),
            );
        }
        Err(err) => {
            return Check::new(
                CheckName::Mx,
                Status::Fail,
                failed(domain, "MX", &err),
                dns_fix(domain),
            );
        }
    };
    if records.iter().all(|(_, host)| host == ".") {
        return Check::new(
            CheckName::Mx,
            Status::Fail,
            format!(
                "{domain} publishes a null MX (RFC 7505): it accepts no mail, so bounces and replies to it are lost"
            ),
            Some(format!("delete the null MX ({domain}. IN MX 0 .) and {publish}")),
        );
    }
    records.retain(|(_, host)| host != ".");
    records.sort();
    let hosts: Vec<String> = records
        .iter()
        .map(|(preference, host)| format!("{preference} {host}"))
        .collect();
    Check::new(
        CheckName::Mx,
        Status::Pass,
        format!("mail hosts: {}", hosts.join(", ")),
        None,
    )
}

/// No MX records: the domain's address records stand in (warn), or nothing receives its mail (fail).
async fn implicit<D: Dns>(dns: &D, domain: &str, publish: String) -> Check {
    let (v4, v6) = tokio::join!(dns.addresses(domain, false), dns.addresses(domain, true));
    let addresses: Vec<String> = [&v4, &v6]
        .into_iter()
        .filter_map(|answer| answer.as_ref().ok())
        .flatten()
        .map(|ip| ip.to_string())
        .collect();
    if !addresses.is_empty() {
        return Check::new(
            CheckName::Mx,
            Status::Warn,
            format!(
                "{domain} has no MX record; its mail goes to its own address ({}, implicit MX), which is \
                 rarely a mail server",
                addresses.join(", ")
            ),
            Some(publish),
        );
    }
    if let Some(Err(err)) = [v4, v6]
        .into_iter()
        .find(|answer| matches!(answer, Err(LookupError::Failed(_))))
    {
        return Check::new(
            CheckName::Mx,
            Status::Fail,
            failed(domain, "address", &err),
            dns_fix(domain),
        );
    }
    Check::new(
        CheckName::Mx,
        Status::Fail,
        format!("{domain} has no MX record and no address: it cannot receive bounces or replies"),
        Some(publish),
    )
}

#[cfg(test)]
mod tests {
    use super::super::dns::fake::FakeDns;
    use super::*;

    fn context() -> Context {
        Context {
            domain: "example.com".into(),
            egress_ips: Vec::new(),
            hostname: "mta.example.com".into(),
            selectors: Vec::new(),
            key_dir: "/nonexistent".into(),
            config_file: "FILE".into(),
        }
    }

    #[tokio::test]
    async fn hosts_are_listed_by_preference() {
        let dns = FakeDns::default()
            .with_mx("example.com", 20, "b.example.com")
            .with_mx("example.com", 10, "a.example.com");
        let check = check(&dns, &context()).await;
        assert_eq!(check.status, Status::Pass);
        assert_eq!(check.detail, "mail hosts: 10 a.example.com, 20 b.example.com");
    }

    #[tokio::test]
    async fn a_null_mx_fails() {
        let dns = FakeDns::default().with_mx("example.com", 0, ".");
        let check = check(&dns, &context()).await;
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("null MX"), "{}", check.detail);
    }

    #[tokio::test]
    async fn no_mx_warns_with_an_address_and_fails_without() {
        let dns = FakeDns::default().with_address("example.com", "192.0.2.1");
        assert_eq!(check(&dns, &context()).await.status, Status::Warn);
        let dns = FakeDns::default().with_txt("example.com", "v=spf1 -all");
        let check = check(&dns, &context()).await;
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .fix
                .unwrap()
                .contains("example.com. IN MX 10 mx.example.com.")
        );
    }
}
