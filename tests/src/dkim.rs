//! DKIM verification as a receiver does it: mail-auth's verifier, with its resolver asking the test's
//! loopback DNS server ([`crate::dns::TestDns`]) for the `SELECTOR._domainkey.DOMAIN` TXT records.

use std::net::SocketAddr;
use std::time::Duration;

use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

/// Verifies every DKIM-Signature of `message` with public keys looked up at the DNS server `dns`:
/// one (domain `d=`, selector `s=`, passed, detail) per signature, in the message's order. The
/// detail is mail-auth's result (`Pass`, `Fail(…)`, `TempError(…)`, …). A fresh resolver per call, so
/// nothing is cached between calls.
pub async fn verify_dkim(dns: SocketAddr, message: &[u8]) -> Vec<(String, String, bool, String)> {
    let authenticator = MessageAuthenticator::new(resolver_config(dns), resolver_options())
        .unwrap_or_else(|err| panic!("building the DKIM verifier's resolver: {err}"));
    let parsed = AuthenticatedMessage::parse(message).expect("mail-auth parses the message");
    let outputs = tokio::time::timeout(crate::WAIT, authenticator.verify_dkim(&parsed))
        .await
        .expect("DKIM verification finishes in time");
    outputs
        .iter()
        .map(|output| {
            let (domain, selector) = output
                .signature()
                .map(|signature| (signature.d.clone(), signature.s.clone()))
                .unwrap_or_default();
            let pass = *output.result() == DkimResult::Pass;
            (domain, selector, pass, format!("{:?}", output.result()))
        })
        .collect()
}

/// The loopback server as the only name server, over UDP and TCP (long TXT answers may be truncated
/// over UDP).
fn resolver_config(dns: SocketAddr) -> ResolverConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = dns.port();
    let server = NameServerConfig::new(dns.ip(), true, vec![udp, tcp]);
    ResolverConfig::from_parts(None, Vec::new(), vec![server])
}

/// Fully qualified names only, a short timeout (the server is local), no hosts file.
fn resolver_options() -> ResolverOpts {
    let mut options = ResolverOpts::default();
    options.ndots = 0;
    options.timeout = Duration::from_secs(5);
    options.attempts = 1;
    options.use_hosts_file = mail_auth::hickory_resolver::config::ResolveHosts::Never;
    options
}

/// A zone file line `NAME IN TXT "s1" "s2" …` parsed back into the name and the strings.
pub fn parse_zone_line(line: &str) -> (String, Vec<String>) {
    let (name, rest) = line
        .split_once(" IN TXT ")
        .unwrap_or_else(|| panic!("not a TXT line: {line:?}"));
    let mut strings = Vec::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {}
            '"' => {
                let mut string = String::new();
                loop {
                    match chars.next().expect("closing quote") {
                        '"' => break,
                        '\\' => string.push(chars.next().expect("escaped character")),
                        other => string.push(other),
                    }
                }
                strings.push(string);
            }
            other => panic!("unexpected {other:?} in {line:?}"),
        }
    }
    (name.to_owned(), strings)
}
