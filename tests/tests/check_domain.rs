//! `check-domain` against a real DNS server on loopback: a domain that passes everything, then one
//! test per failure mode (each asserting the status and the exact record to publish), and the real
//! binary's JSON, human output and exit codes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use penguin_config::Config;
use penguin_dkim::{Algorithm, DnsRecord, KeyStore};
use penguin_mta::check_domain::{Check, CheckName, CheckRequest, DomainReport, Status, check_domain};
use penguin_tests::binary::{run_cli, write_config};
use penguin_tests::dns::{DnsFailure, TestDns};
use penguin_tests::test_config;
use tempfile::TempDir;

/// The domain checked.
const DOMAIN: &str = "shop.test";
/// The EHLO name (`test_config` sets it).
const HOSTNAME: &str = "mta.test";
/// The DKIM selector.
const SELECTOR: &str = "s1";
/// The binary under test.
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");

/// The egress IP (`delivery.source_ip`). Not a loopback address: hickory answers PTR queries in
/// 127.in-addr.arpa itself (`localhost`, RFC 6761) without asking the name server. Nothing connects
/// from it; it is only data for the checks.
fn egress() -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 5)
}

/// The records of a well set up domain, each of which a test may leave out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// `shop.test TXT "v=spf1 include:_spf.shop.test -all"` and the included record.
    Spf,
    /// Our key at `s1._domainkey.shop.test`, as two TXT strings.
    Dkim,
    /// `_dmarc.shop.test TXT "v=DMARC1; p=reject; ..."`.
    Dmarc,
    /// `shop.test MX 10 mx.shop.test` with its address.
    Mx,
    /// PTR of the egress IP = the EHLO name, whose A record is the egress IP.
    Ptr,
}

/// A loopback DNS server, a config using it, and our DKIM key.
struct Setup {
    /// Holds the config file and the key directory.
    dir: TempDir,
    /// The name server.
    dns: TestDns,
    /// The config (name server, key directory, egress IP).
    config: Config,
    /// Our key's DNS record.
    dkim: DnsRecord,
}

impl Setup {
    /// Everything published except `skip`.
    async fn without(skip: &[Part]) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let dns = TestDns::start().await;
        let mut config = test_config(dir.path());
        config.dns.nameservers = vec![dns.address];
        config.dns.timeout = Duration::from_secs(2).into();
        config.dns.attempts = 1;
        config.dkim.key_dir = dir.path().join("dkim");
        config.dkim.selectors = vec![SELECTOR.to_string()];
        config.delivery.source_ip = Some(IpAddr::V4(egress()));
        let dkim = KeyStore::new(&config.dkim.key_dir)
            .generate(DOMAIN, SELECTOR, Algorithm::Rsa)
            .expect("generate the DKIM key");
        let setup = Setup {
            dir,
            dns,
            config,
            dkim,
        };
        for part in [Part::Spf, Part::Dkim, Part::Dmarc, Part::Mx, Part::Ptr] {
            if !skip.contains(&part) {
                setup.publish(part);
            }
        }
        setup
    }

    /// Publishes one part.
    fn publish(&self, part: Part) {
        let dns = &self.dns;
        match part {
            Part::Spf => {
                dns.add_txt(DOMAIN, "v=spf1 include:_spf.shop.test -all", 300);
                dns.add_txt("_spf.shop.test", "v=spf1 ip4:192.0.2.0/29 -all", 300);
            }
            Part::Dkim => {
                let strings = self.dkim.txt_strings();
                assert!(strings.len() > 1, "an RSA key needs several strings");
                let strings: Vec<&str> = strings.iter().map(String::as_str).collect();
                dns.add_txt_strings(&dkim_name(), &strings, 300);
            }
            Part::Dmarc => dns.add_txt(
                "_dmarc.shop.test",
                "v=DMARC1; p=reject; rua=mailto:dmarc@shop.test",
                300,
            ),
            Part::Mx => {
                dns.add_mx(DOMAIN, 10, "mx.shop.test", 300);
                dns.add_a("mx.shop.test", Ipv4Addr::new(127, 0, 0, 9), 300);
            }
            Part::Ptr => {
                dns.add_ptr(IpAddr::V4(egress()), HOSTNAME, 300);
                dns.add_a(HOSTNAME, egress(), 300);
            }
        }
    }

    /// Runs the checks in this process with the config's selectors and egress IP.
    async fn check(&self) -> DomainReport {
        self.check_with(&CheckRequest::default()).await
    }

    /// Runs the checks in this process.
    async fn check_with(&self, request: &CheckRequest) -> DomainReport {
        check_domain(&self.config, DOMAIN, request)
            .await
            .expect("checks run")
    }

    /// Writes the config file for the binary.
    fn config_file(&mut self) -> String {
        let path = write_config(self.dir.path(), &mut self.config);
        path.to_str().expect("utf-8 path").to_string()
    }
}

/// Where our DKIM record lives.
fn dkim_name() -> String {
    format!("{SELECTOR}._domainkey.{DOMAIN}")
}

/// The check `name` of `report`, which must have `status`; every other check must pass.
fn only_this(report: &DomainReport, name: CheckName, status: Status) -> &Check {
    for check in &report.checks {
        let expected = if check.name == name { status } else { Status::Pass };
        assert_eq!(check.status, expected, "{check:?}\nin {report:#?}");
    }
    report.check(name).expect("the check is reported")
}

/// The fix of a check (which must have one).
fn fix(check: &Check) -> &str {
    check
        .fix
        .as_deref()
        .unwrap_or_else(|| panic!("no fix: {check:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_set_up_domain_passes_every_check() {
    let setup = Setup::without(&[]).await;
    let report = setup.check().await;
    assert_eq!(report.domain, DOMAIN);
    let names: Vec<CheckName> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            CheckName::Spf,
            CheckName::Dkim,
            CheckName::Dmarc,
            CheckName::Mx,
            CheckName::Ptr
        ]
    );
    for check in &report.checks {
        assert_eq!((check.status, &check.fix), (Status::Pass, &None), "{check:?}");
    }
    assert!(
        report
            .check(CheckName::Spf)
            .unwrap()
            .detail
            .contains("192.0.2.5 (include:_spf.shop.test)")
    );
    assert!(
        report
            .check(CheckName::Dmarc)
            .unwrap()
            .detail
            .contains("policy reject")
    );
    assert!(
        report
            .check(CheckName::Mx)
            .unwrap()
            .detail
            .contains("10 mx.shop.test")
    );
    assert!(report.passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spf_record_fails_with_the_record_to_publish() {
    let setup = Setup::without(&[Part::Spf]).await;
    let report = setup.check().await;
    let spf = only_this(&report, CheckName::Spf, Status::Fail);
    assert_eq!(fix(spf), r#"shop.test. IN TXT "v=spf1 ip4:192.0.2.5 -all""#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_not_authorising_the_egress_ip_fails_with_the_ip_added() {
    let setup = Setup::without(&[Part::Spf]).await;
    setup.dns.add_txt(DOMAIN, "v=spf1 ip4:192.0.2.9 ~all", 300);
    let report = setup.check().await;
    let spf = only_this(&report, CheckName::Spf, Status::Fail);
    assert!(
        spf.detail
            .contains("does not authorise 192.0.2.5: result softfail (~all)"),
        "{spf:?}"
    );
    assert_eq!(
        fix(spf),
        r#"shop.test. IN TXT "v=spf1 ip4:192.0.2.9 ip4:192.0.2.5 ~all""#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_needing_eleven_lookups_fails_with_the_count() {
    let setup = Setup::without(&[Part::Spf]).await;
    // The egress IP is listed first, so it passes at once; but an address nothing authorises takes
    // receivers through 11 includes: permerror.
    setup
        .dns
        .add_txt(DOMAIN, "v=spf1 ip4:192.0.2.5 include:l1.shop.test -all", 300);
    for level in 1..11 {
        let next = format!("v=spf1 include:l{}.shop.test -all", level + 1);
        setup.dns.add_txt(&format!("l{level}.shop.test"), &next, 300);
    }
    setup.dns.add_txt("l11.shop.test", "v=spf1 -all", 300);
    let report = setup.check().await;
    let spf = only_this(&report, CheckName::Spf, Status::Fail);
    assert!(spf.detail.contains("needs 11 DNS lookups"), "{spf:?}");
    assert!(spf.detail.contains("limit of 10"), "{spf:?}");
    assert!(fix(spf).contains("at most 10 DNS lookups"), "{spf:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dkim_record_fails_with_our_zone_line() {
    let setup = Setup::without(&[Part::Dkim]).await;
    let report = setup.check().await;
    let dkim = only_this(&report, CheckName::Dkim, Status::Fail);
    assert!(
        dkim.detail.contains("no DKIM record at s1._domainkey.shop.test"),
        "{dkim:?}"
    );
    assert_eq!(fix(dkim), setup.dkim.zone_line());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dkim_record_with_another_key_fails_with_our_zone_line() {
    let setup = Setup::without(&[Part::Dkim]).await;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = KeyStore::new(other_dir.path())
        .generate(DOMAIN, SELECTOR, Algorithm::Rsa)
        .expect("another key");
    setup.dns.add_txt(&dkim_name(), &other.value(), 300);
    let report = setup.check().await;
    let dkim = only_this(&report, CheckName::Dkim, Status::Fail);
    assert!(dkim.detail.contains("a different public key"), "{dkim:?}");
    assert_eq!(fix(dkim), setup.dkim.zone_line());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_without_our_key_says_how_to_generate_it() {
    let setup = Setup::without(&[]).await;
    let request = CheckRequest {
        selectors: vec!["s2".to_string()],
        ..CheckRequest::default()
    };
    let report = setup.check_with(&request).await;
    let dkim = only_this(&report, CheckName::Dkim, Status::Fail);
    let command = "penguin-mta dkim keygen --config FILE --domain shop.test --selector s2";
    assert!(dkim.detail.contains(command), "{dkim:?}");
    assert!(fix(dkim).contains(command), "{dkim:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dmarc_record_fails_with_a_record_to_publish() {
    let setup = Setup::without(&[Part::Dmarc]).await;
    let report = setup.check().await;
    let dmarc = only_this(&report, CheckName::Dmarc, Status::Fail);
    assert_eq!(
        fix(dmarc),
        r#"_dmarc.shop.test. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@shop.test""#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmarc_p_none_warns_and_reports_the_policy() {
    let setup = Setup::without(&[Part::Dmarc]).await;
    setup.dns.add_txt(
        "_dmarc.shop.test",
        "v=DMARC1; p=none; rua=mailto:dmarc@shop.test",
        300,
    );
    let report = setup.check().await;
    let dmarc = only_this(&report, CheckName::Dmarc, Status::Warn);
    assert!(dmarc.detail.contains("policy none"), "{dmarc:?}");
    assert!(
        fix(dmarc)
            .contains(r#"_dmarc.shop.test. IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@shop.test""#)
    );
    assert!(report.passed(), "a warning is not a failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mx_and_no_address_fails() {
    let setup = Setup::without(&[Part::Mx]).await;
    let report = setup.check().await;
    let mx = only_this(&report, CheckName::Mx, Status::Fail);
    assert!(mx.detail.contains("no MX record and no address"), "{mx:?}");
    assert!(fix(mx).contains("shop.test. IN MX 10 mx.shop.test."), "{mx:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ptr_fails() {
    let setup = Setup::without(&[Part::Ptr]).await;
    let report = setup.check().await;
    let ptr = only_this(&report, CheckName::Ptr, Status::Fail);
    assert!(
        ptr.detail
            .contains("192.0.2.5 has no PTR record (5.2.0.192.in-addr.arpa)"),
        "{ptr:?}"
    );
    assert_eq!(fix(ptr), ptr_fix());
}

/// The PTR fix for the egress IP.
fn ptr_fix() -> &'static str {
    "set the PTR of 192.0.2.5 to mta.test at the IP's provider, and publish mta.test. IN A 192.0.2.5"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ptr_that_does_not_resolve_back_fails() {
    let setup = Setup::without(&[Part::Ptr]).await;
    setup.dns.add_ptr(IpAddr::V4(egress()), HOSTNAME, 300);
    setup.dns.add_a(HOSTNAME, Ipv4Addr::new(192, 0, 2, 6), 300);
    let report = setup.check().await;
    let ptr = only_this(&report, CheckName::Ptr, Status::Fail);
    assert!(
        ptr.detail
            .contains("not forward-confirmed: mta.test resolves to 192.0.2.6"),
        "{ptr:?}"
    );
    assert_eq!(fix(ptr), ptr_fix());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ptr_other_than_the_ehlo_name_fails() {
    let setup = Setup::without(&[Part::Ptr]).await;
    setup.dns.add_ptr(IpAddr::V4(egress()), "host-5.isp.test", 300);
    setup.dns.add_a("host-5.isp.test", egress(), 300);
    let report = setup.check().await;
    let ptr = only_this(&report, CheckName::Ptr, Status::Fail);
    assert!(
        ptr.detail.contains(
            "the PTR of 192.0.2.5 is host-5.isp.test, but the EHLO name (smtp.hostname) is mta.test"
        ),
        "{ptr:?}"
    );
    assert_eq!(fix(ptr), ptr_fix());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servfail_fails_that_check_only() {
    let setup = Setup::without(&[]).await;
    setup.dns.set_failure("_dmarc.shop.test", DnsFailure::ServFail);
    let report = setup.check().await;
    let dmarc = only_this(&report, CheckName::Dmarc, Status::Fail);
    assert_eq!(
        dmarc.detail,
        "DNS lookup of _dmarc.shop.test TXT failed: name server answered SERVFAIL"
    );
    assert!(fix(dmarc).contains("name servers"), "{dmarc:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_that_does_not_exist_fails_every_check() {
    let setup = Setup::without(&[Part::Spf, Part::Mx]).await;
    let report = setup.check().await;
    for check in &report.checks {
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(
            check.detail.contains("shop.test does not exist (NXDOMAIN)"),
            "{check:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_egress_ips_spf_and_ptr_warn() {
    let mut setup = Setup::without(&[]).await;
    setup.config.delivery.source_ip = None;
    let report = setup.check().await;
    for name in [CheckName::Spf, CheckName::Ptr] {
        let check = report.check(name).expect("reported");
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(check.detail.contains("delivery.source_ip"), "{check:?}");
    }
    // An IP named in the request is checked instead.
    let request = CheckRequest {
        egress_ips: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))],
        ..CheckRequest::default()
    };
    let report = setup.check_with(&request).await;
    assert_eq!(report.check(CheckName::Spf).unwrap().status, Status::Pass);
    assert_eq!(report.check(CheckName::Ptr).unwrap().status, Status::Fail);
}

/// Runs `check-domain shop.test --config FILE extra...` and returns (exit code, stdout).
async fn run_binary(config_file: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["check-domain", DOMAIN, "--config", config_file];
    args.extend_from_slice(extra);
    let output = run_cli(EXE, &args, None).await;
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    let code = output.status.code().expect("exit code");
    (code, stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_the_json_contract_and_exits_0_when_all_pass() {
    let mut setup = Setup::without(&[]).await;
    let config_file = setup.config_file();
    let (code, stdout) = run_binary(&config_file, &["--json"]).await;
    assert_eq!(code, 0, "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    let object = json.as_object().expect("an object");
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort();
    assert_eq!(keys, ["checks", "domain"]);
    assert_eq!(json["domain"], DOMAIN);
    let checks = json["checks"].as_array().expect("checks array");
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["spf", "dkim", "dmarc", "mx", "ptr"]);
    for check in checks {
        let mut keys: Vec<&String> = check.as_object().expect("check object").keys().collect();
        keys.sort();
        assert_eq!(keys, ["detail", "fix", "name", "status"], "{check}");
        assert_eq!(check["status"], "pass", "{check}");
        assert!(check["fix"].is_null(), "{check}");
    }

    // A failing check: exit 1, and its fix in the JSON.
    setup.dns.clear(&dkim_name());
    let (code, stdout) = run_binary(&config_file, &["--json", "--selector", SELECTOR]).await;
    assert_eq!(code, 1, "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(json["checks"][1]["status"], "fail");
    assert_eq!(json["checks"][1]["fix"], setup.dkim.zone_line());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_a_line_per_check_and_sets_the_exit_code() {
    let mut setup = Setup::without(&[Part::Dmarc]).await;
    let config_file = setup.config_file();
    let (code, stdout) = run_binary(&config_file, &[]).await;
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("spf    pass  "), "{stdout}");
    assert!(lines[1].starts_with("dkim   pass  "), "{stdout}");
    assert!(
        lines[2].starts_with("dmarc  fail  no DMARC record at _dmarc.shop.test"),
        "{stdout}"
    );
    assert_eq!(
        lines[3],
        r#"       fix: _dmarc.shop.test. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@shop.test""#
    );
    assert!(lines[4].starts_with("mx     pass  "), "{stdout}");
    assert!(lines[5].starts_with("ptr    pass  "), "{stdout}");
    assert_eq!(lines[6], "shop.test: 1 failed, 0 warning(s)");

    // A warning only: exit 0. An explicit --ip replaces delivery.source_ip.
    setup.dns.add_txt("_dmarc.shop.test", "v=DMARC1; p=none", 300);
    let (code, stdout) = run_binary(&config_file, &["--ip", "192.0.2.5"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("dmarc  warn  policy none"), "{stdout}");

    // Usage and config errors: exit 2.
    let missing = setup.dir.path().join("missing.toml");
    let (code, _) = run_binary(missing.to_str().expect("utf-8"), &[]).await;
    assert_eq!(code, 2);
    let (code, _) = run_binary(&config_file, &["--ip", "not-an-ip"]).await;
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_serves_the_same_report() {
    let setup = Setup::without(&[Part::Dmarc]).await;
    let mut config = setup.config.clone();
    config.delivery.source_ip = None;
    let server = penguin_tests::TestServer::start(config).await;

    let path = format!("/v1/tenants/default/domains/{DOMAIN}/check?selector={SELECTOR}&ip=192.0.2.5");
    let (status, body) = server.http_get(&path).await;
    assert_eq!(status, 200, "{body}");
    let report: DomainReport = serde_json::from_str(&body).expect("the JSON contract");
    assert_eq!(report.domain, DOMAIN);
    let dmarc = only_this(&report, CheckName::Dmarc, Status::Fail);
    assert!(
        fix(dmarc).contains("_dmarc.shop.test. IN TXT \"v=DMARC1; p=none"),
        "{dmarc:?}"
    );
    let raw: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(raw["checks"][0]["name"], "spf");
    assert_eq!(raw["checks"][0]["status"], "pass");

    let (status, body) = server
        .http_get(&format!("/v1/tenants/default/domains/{DOMAIN}/check?ip=nope"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ip:"), "names the parameter: {body}");
    let (status, body) = server
        .http_get("/v1/tenants/default/domains/not_a..domain/check")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("domain:"), "{body}");
    server.stop().await.expect("stops");
}
