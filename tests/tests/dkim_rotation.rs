//! DKIM key rotation on the real binary, without a restart: `dkim keygen` a second selector while
//! the first one signs, switch with a config change and SIGHUP, dual-sign after `POST /v1/reload`, and
//! an invalid config that a reload refuses. Every delivered message is verified with mail-auth
//! against the loopback DNS server publishing the records keygen printed.

use std::net::SocketAddr;
use std::path::Path;

use penguin_config::{Config, DkimDomainConfig};
use penguin_tests::binary::{self, RunningBinary};
use penguin_tests::dkim::{parse_zone_line, verify_dkim};
use penguin_tests::dns::TestDns;
use penguin_tests::sink::{SinkBehaviour, TestSink};
use penguin_tests::{SmtpClient, allow_loopback_relay, http_request, simple_message, test_config};

/// The binary under test.
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");
/// The signing domain.
const DOMAIN: &str = "rotate.test";

/// `dkim keygen` for `selector`, and publishes the printed record in `dns`.
async fn keygen_and_publish(config: &Path, dns: &TestDns, selector: &str, algo: &str) {
    let config = config.to_str().expect("utf-8 path");
    let args = [
        "dkim",
        "keygen",
        "--config",
        config,
        "--domain",
        DOMAIN,
        "--selector",
        selector,
        "--algo",
        algo,
    ];
    let output = binary::run_cli(EXE, &args, None).await;
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        output.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (name, strings) = parse_zone_line(stdout.trim_end());
    let strings: Vec<&str> = strings.iter().map(String::as_str).collect();
    dns.add_txt_strings(name.trim_end_matches('.'), &strings, 60);
}

/// Sends one message from the relay client and returns the selectors whose signatures verify at the
/// sink (sorted), after checking that every signature verifies.
async fn send_and_verify(smtp: SocketAddr, sink: &TestSink, dns: &TestDns, number: usize) -> Vec<String> {
    let mut client = SmtpClient::connect(smtp).await;
    client.ehlo().await;
    let to = format!("r{number}@dest.test");
    let content = simple_message(&format!("news@{DOMAIN}"), &to, "rotation");
    let reply = client
        .send_message(&format!("news@{DOMAIN}"), &[&to], &content)
        .await;
    assert_eq!(reply.code, 250, "{reply:?}");
    let received = sink.wait_for(number).await;
    let message = received
        .iter()
        .find(|m| m.rcpt_to == [to.clone()])
        .expect("delivered");
    let results = verify_dkim(dns.address, &message.data).await;
    assert!(
        results.iter().all(|r| r.2),
        "every signature verifies: {results:?}"
    );
    let mut selectors: Vec<String> = results.into_iter().map(|r| r.1).collect();
    selectors.sort();
    selectors
}

/// Rewrites the config file with `domain_selectors` as the domain's `[[dkim.domain]]` entry.
fn rewrite(path: &Path, config: &mut Config, domain_selectors: &[&str]) {
    config.dkim.domain = vec![DkimDomainConfig {
        name: DOMAIN.into(),
        selectors: domain_selectors.iter().map(|s| s.to_string()).collect(),
    }];
    std::fs::write(path, toml::to_string(config).expect("toml")).expect("write config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_rotate_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dns = TestDns::start().await;
    let sink = TestSink::start(SinkBehaviour::default()).await;
    let mut config = test_config(dir.path());
    allow_loopback_relay(&mut config);
    config.delivery.paused = false;
    config.delivery.relay_host = Some(sink.address.to_string().parse().expect("relay host"));
    config.dkim.selectors = vec!["s1".into()];
    let path = binary::write_config(dir.path(), &mut config);
    keygen_and_publish(&path, &dns, "s1", "rsa").await;
    let mut server = RunningBinary::start(EXE, &path, &config).await;

    assert_eq!(send_and_verify(server.smtp, &sink, &dns, 1).await, ["s1"]);
    keygen_and_publish(&path, &dns, "s2", "ed25519").await;
    assert_eq!(
        send_and_verify(server.smtp, &sink, &dns, 2).await,
        ["s1"],
        "a new key does not sign before the config says so"
    );

    rewrite(&path, &mut config, &["s2"]);
    server.signal(libc::SIGHUP);
    server.wait_for_log("config reloaded").await;
    assert_eq!(send_and_verify(server.smtp, &sink, &dns, 3).await, ["s2"]);

    rewrite(&path, &mut config, &["s1", "s2"]);
    let (status, body) = http_request(server.api, "POST", "/v1/reload", None, b"").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"reloaded\""), "{body}");
    assert_eq!(send_and_verify(server.smtp, &sink, &dns, 4).await, ["s1", "s2"]);

    std::fs::write(&path, "[dkim]\nselectors = [\"not a selector\"]\n").expect("write bad config");
    let (status, body) = http_request(server.api, "POST", "/v1/reload", None, b"").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("dkim.selectors[0]"), "names the field: {body}");
    assert_eq!(
        send_and_verify(server.smtp, &sink, &dns, 5).await,
        ["s1", "s2"],
        "a refused reload changes nothing"
    );
}
