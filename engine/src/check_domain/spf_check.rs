//! The `spf` check: one valid `v=spf1` record, within the lookup limits, authorising every egress IP
//! (and not every address).

use std::net::IpAddr;

use super::dns::{Answer, Dns};
use super::spf::{self, ip_term, with_ips};
use super::spf_eval::{self, Evaluation, LOOKUP_LIMIT, SpfError, Verdict, evaluate, lookups_text};
use super::{Check, CheckName, Context, Status, dns_fix, txt_line};

/// Runs the SPF check; `apex_txt` is the domain's TXT answer (already looked up).
pub(crate) async fn check<D: Dns>(dns: &D, context: &Context, apex_txt: &Answer<Vec<String>>) -> Check {
    let domain = &context.domain;
    let texts = match apex_txt {
        Ok(texts) => texts.as_slice(),
        Err(err) if err.is_void() => &[],
        Err(err) => return fail(spf_eval::failed(domain, "TXT", err), dns_fix(domain)),
    };
    let records: Vec<&String> = texts.iter().filter(|text| spf::is_spf(text)).collect();
    let record = match records.as_slice() {
        [] => {
            return fail(
                format!("{domain} has no SPF record (TXT \"v=spf1 ...\")"),
                Some(txt_line(domain, &fresh_record(&context.egress_ips))),
            );
        }
        [one] => one.trim().to_string(),
        many => {
            let merged = with_ips(many[0].trim(), &context.egress_ips);
            return fail(
                format!(
                    "{domain} has {} SPF records; receivers treat that as permerror",
                    many.len()
                ),
                Some(format!(
                    "delete all but one v=spf1 record; keep: {}",
                    txt_line(domain, &merged)
                )),
            );
        }
    };
    if let Err(err) = spf::parse(&record) {
        return fail(
            format!("the SPF record \"{record}\" is invalid (permerror): {err}"),
            Some(txt_line(domain, &fresh_record(&context.egress_ips))),
        );
    }
    let worst = evaluate(dns, domain, None, &context.hostname).await;
    if let Err(err) = &worst.result {
        return limits_failure(domain, &record, &worst, err);
    }
    authorisation(dns, context, &record, &worst).await
}

/// A failed SPF check.
fn fail(detail: String, fix: Option<String>) -> Check {
    Check::new(CheckName::Spf, Status::Fail, detail, fix)
}

/// `v=spf1 ip4:… -all` for the egress IPs (a placeholder when none is known).
pub(crate) fn fresh_record(ips: &[IpAddr]) -> String {
    let terms: Vec<String> = if ips.is_empty() {
        vec!["ip4:EGRESS_IP".to_string()]
    } else {
        ips.iter().map(|ip| ip_term(*ip)).collect()
    };
    format!("v=spf1 {} -all", terms.join(" "))
}

/// The record cannot be evaluated whatever the IP: a DNS failure, too many lookups, a broken include.
fn limits_failure(domain: &str, record: &str, worst: &Evaluation, err: &SpfError) -> Check {
    match err {
        SpfError::Temp(reason) => fail(reason.clone(), dns_fix(domain)),
        SpfError::Perm(reason) if worst.lookups > LOOKUP_LIMIT => fail(
            format!(
                "\"{record}\" needs {} DNS lookups (include, a, mx, ptr, exists, redirect), more than the \
                 limit of {LOOKUP_LIMIT}: receivers get permerror ({reason})",
                lookups_text(worst.lookups)
            ),
            Some(format!(
                "reduce the record to at most {LOOKUP_LIMIT} DNS lookups: replace include: terms by the ip4:/ip6: \
                 ranges they authorise (flattening) and remove includes of services that do not send for {domain}"
            )),
        ),
        SpfError::Perm(reason) => fail(
            format!("\"{record}\" gives receivers permerror: {reason}"),
            Some(format!(
                "correct the SPF record of {domain} (or the records it includes): {reason}"
            )),
        ),
    }
}

/// Whether each egress IP passes, and the record does not authorise everything.
async fn authorisation<D: Dns>(dns: &D, context: &Context, record: &str, worst: &Evaluation) -> Check {
    let domain = &context.domain;
    let lookups = format!("{} of {LOOKUP_LIMIT} DNS lookups", worst.lookups);
    let mut notes = worst.notes.clone();
    notes.dedup();
    let notes: String = notes.iter().map(|note| format!("; {note}")).collect();
    if context.egress_ips.is_empty() {
        return Check::new(
            CheckName::Spf,
            Status::Warn,
            format!(
                "\"{record}\" is valid ({lookups}){notes}; {}",
                context.no_egress_hint()
            ),
            Some("set delivery.source_ip in the config or pass --ip, then check again".to_string()),
        );
    }
    let mut authorised = Vec::new();
    let mut refused = Vec::new();
    for ip in &context.egress_ips {
        let evaluation = evaluate(dns, domain, Some(*ip), &context.hostname).await;
        match &evaluation.result {
            Ok(Verdict::Pass) => authorised.push(format!(
                "{ip} ({})",
                evaluation.matched.as_deref().unwrap_or("pass")
            )),
            Ok(verdict) => refused.push((*ip, verdict_text(*verdict, evaluation.matched.as_deref()))),
            Err(SpfError::Temp(reason)) => return fail(reason.clone(), dns_fix(domain)),
            Err(err) => return limits_failure(domain, record, &evaluation, err),
        }
    }
    if !refused.is_empty() {
        let ips: Vec<IpAddr> = refused.iter().map(|(ip, _)| *ip).collect();
        let why: Vec<String> = refused.iter().map(|(ip, why)| format!("{ip}: {why}")).collect();
        return fail(
            format!("\"{record}\" does not authorise {}", why.join(", ")),
            Some(txt_line(domain, &with_ips(record, &ips))),
        );
    }
    if worst.result == Ok(Verdict::Pass) {
        return Check::new(
            CheckName::Spf,
            Status::Warn,
            format!(
                "\"{record}\" authorises {} but also every other address (+all): anyone can send as {domain}",
                authorised.join(", ")
            ),
            Some(txt_line(domain, &without_pass_all(record))),
        );
    }
    let status = if notes.is_empty() {
        Status::Pass
    } else {
        Status::Warn
    };
    let detail = format!(
        "\"{record}\" authorises {}; {lookups}{notes}",
        authorised.join(", ")
    );
    Check::new(CheckName::Spf, status, detail, None)
}

/// Why an IP is not authorised: `result softfail (~all)`.
fn verdict_text(verdict: Verdict, matched: Option<&str>) -> String {
    match matched {
        Some(term) => format!("result {} ({term})", verdict.name()),
        None => format!("result {}", verdict.name()),
    }
}

/// The record with a top-level `+all`/`all` turned into `-all`.
fn without_pass_all(record: &str) -> String {
    record
        .split(' ')
        .filter(|term| !term.is_empty())
        .map(|term| {
            if term.eq_ignore_ascii_case("all") || term.eq_ignore_ascii_case("+all") {
                "-all"
            } else {
                term
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::dns::fake::FakeDns;
    use super::*;

    fn context(ips: &[&str]) -> Context {
        Context {
            domain: "example.com".into(),
            egress_ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            hostname: "mta.example.com".into(),
            selectors: vec!["s1".into()],
            key_dir: "/nonexistent".into(),
            config_file: "FILE".into(),
        }
    }

    async fn run(dns: &FakeDns, ips: &[&str]) -> Check {
        let context = context(ips);
        let apex = dns::Dns::txt(dns, "example.com").await;
        check(dns, &context, &apex).await
    }

    use super::super::dns;

    #[tokio::test]
    async fn an_authorised_ip_passes_with_the_deciding_term() {
        let dns = FakeDns::default().with_txt("example.com", "v=spf1 a ip4:192.0.2.0/24 -all");
        let check = run(&dns, &["192.0.2.7"]).await;
        assert_eq!(check.status, Status::Pass, "{check:?}");
        assert!(
            check.detail.contains("192.0.2.7 (ip4:192.0.2.0/24)"),
            "{}",
            check.detail
        );
        assert_eq!(check.fix, None);
    }

    #[tokio::test]
    async fn a_missing_record_fails_with_a_record_to_publish() {
        let dns = FakeDns::default().with_mx("example.com", 10, "mx.example.com");
        let check = run(&dns, &["192.0.2.7", "2001:db8::1"]).await;
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.fix.as_deref(),
            Some(r#"example.com. IN TXT "v=spf1 ip4:192.0.2.7 ip6:2001:db8::1 -all""#)
        );
    }

    #[tokio::test]
    async fn an_unauthorised_ip_gets_the_record_with_its_term_added() {
        let dns = FakeDns::default().with_txt("example.com", "v=spf1 mx ~all");
        let check = run(&dns, &["192.0.2.7"]).await;
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.detail.contains("result softfail (~all)"),
            "{}",
            check.detail
        );
        assert_eq!(
            check.fix.as_deref(),
            Some(r#"example.com. IN TXT "v=spf1 mx ip4:192.0.2.7 ~all""#)
        );
    }

    #[tokio::test]
    async fn plus_all_warns() {
        let dns = FakeDns::default().with_txt("example.com", "v=spf1 ip4:192.0.2.7 +all");
        let check = run(&dns, &["192.0.2.7"]).await;
        assert_eq!(check.status, Status::Warn);
        assert_eq!(
            check.fix.as_deref(),
            Some(r#"example.com. IN TXT "v=spf1 ip4:192.0.2.7 -all""#)
        );
    }

    #[tokio::test]
    async fn without_egress_ips_a_valid_record_warns() {
        let dns = FakeDns::default().with_txt("example.com", "v=spf1 -all");
        let check = run(&dns, &[]).await;
        assert_eq!(check.status, Status::Warn);
        assert!(check.detail.contains("delivery.source_ip"), "{}", check.detail);
    }

    #[tokio::test]
    async fn two_records_fail() {
        let dns = FakeDns::default()
            .with_txt("example.com", "v=spf1 -all")
            .with_txt("example.com", "v=spf1 ip4:192.0.2.7 -all");
        let check = run(&dns, &["192.0.2.7"]).await;
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("2 SPF records"), "{}", check.detail);
    }

    #[tokio::test]
    async fn a_syntax_error_fails() {
        let dns = FakeDns::default().with_txt("example.com", "v=spf1 ip4:300.1.1.1 -all");
        let check = run(&dns, &["192.0.2.7"]).await;
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("invalid"), "{}", check.detail);
    }

    #[tokio::test]
    async fn a_ptr_mechanism_warns() {
        let dns = FakeDns::default().with_txt("example.com", "v=spf1 ptr ip4:192.0.2.7 -all");
        let check = run(&dns, &["192.0.2.7"]).await;
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(check.detail.contains("deprecated"), "{}", check.detail);
    }

    #[tokio::test]
    async fn a_failed_lookup_fails_the_check() {
        let dns = FakeDns::default().with_failure("example.com");
        let check = run(&dns, &["192.0.2.7"]).await;
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.detail,
            "DNS lookup of example.com TXT failed: name server answered SERVFAIL"
        );
    }
}
