//! DKIM signing end to end: the engine signs at reception, delivers by MX to a loopback sink, and the
//! message the sink received is verified with mail-auth against the loopback DNS server publishing the
//! record `dkim keygen` printed. Both algorithms, dual signing, awkward content, keys that appear
//! while the server runs, and the missing-key policies.

use penguin_config::{Config, DkimDomainConfig, MissingKeyAction};
use penguin_dkim::{Algorithm, DnsRecord, KeyStore};
use penguin_tests::delivery::*;
use penguin_tests::dkim::verify_dkim;
use penguin_tests::queued;

/// Generates a key in the server's key directory and publishes its record in the test DNS.
fn publish_key(world: &DeliveryWorld, selector: &str, algorithm: Algorithm) -> DnsRecord {
    publish_key_for(world, SENDER_DOMAIN, selector, algorithm)
}

/// [`publish_key`] for another domain.
fn publish_key_for(world: &DeliveryWorld, domain: &str, selector: &str, algorithm: Algorithm) -> DnsRecord {
    let store = KeyStore::new(world.dir.path().join("dkim"));
    let record = store
        .generate(domain, selector, algorithm)
        .unwrap_or_else(|e| panic!("keygen: {e}"));
    let strings = record.txt_strings();
    let strings: Vec<&str> = strings.iter().map(String::as_str).collect();
    world
        .dns
        .add_txt_strings(record.name().trim_end_matches('.'), &strings, 300);
    record
}

/// A world routing `dest.test` to sink 0, with the event log on.
async fn world(configure: impl FnOnce(&mut Config)) -> DeliveryWorld {
    let world = DeliveryWorld::start(1, configure).await;
    world.route_to_sink("dest.test", 0);
    world
}

/// The content the sink received for the single message it got.
async fn delivered(world: &DeliveryWorld, count: usize) -> Vec<Vec<u8>> {
    world.sinks[0]
        .wait_for(count)
        .await
        .into_iter()
        .map(|received| received.data)
        .collect()
}

/// The DKIM-Signature header fields of a message, unfolded.
fn signatures(message: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let header = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n\t", "\t")
        .replace("\r\n ", " ");
    header
        .lines()
        .filter(|line| line.to_ascii_lowercase().starts_with("dkim-signature:"))
        .map(str::to_owned)
        .collect()
}

/// The value of tag `tag` in a DKIM-Signature field, whitespace removed.
fn tag(signature: &str, tag: &str) -> String {
    let value = signature.split_once(':').map_or("", |(_, v)| v);
    value
        .split(';')
        .filter_map(|part| part.split_once('='))
        .find(|(name, _)| name.trim() == tag)
        .map(|(_, v)| v.split_whitespace().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_signed_mail_verifies_at_the_receiver() {
    let world = world(|_| {}).await;
    publish_key(&world, "default", Algorithm::Rsa);

    world.send(&["bob@dest.test"]).await;
    let messages = delivered(&world, 1).await;

    let results = verify_dkim(world.dns.address, &messages[0]).await;
    assert_eq!(results.len(), 1, "{results:?}");
    let (domain, selector, pass, detail) = &results[0];
    assert!(pass, "signature must verify: {detail}");
    assert_eq!((domain.as_str(), selector.as_str()), (SENDER_DOMAIN, "default"));
    let signature = &signatures(&messages[0])[0];
    assert_eq!(tag(signature, "a"), "rsa-sha256");
    assert_eq!(tag(signature, "c"), "relaxed/relaxed");
    let signed = tag(signature, "h").to_ascii_lowercase();
    let names: Vec<&str> = signed.split(':').collect();
    assert_eq!(
        names.iter().filter(|n| **n == "from").count(),
        2,
        "From is over-signed: {signed}"
    );
    for name in ["to", "subject", "date", "message-id"] {
        assert!(names.contains(&name), "{name} is signed: {signed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_and_dual_signing_verify() {
    let world = world(|config| {
        config.dkim.domain.push(DkimDomainConfig {
            name: SENDER_DOMAIN.into(),
            selectors: vec!["rsa1".into(), "ed1".into()],
        });
    })
    .await;
    publish_key(&world, "rsa1", Algorithm::Rsa);
    publish_key(&world, "ed1", Algorithm::Ed25519);

    world.send(&["bob@dest.test"]).await;
    let messages = delivered(&world, 1).await;

    let mut results = verify_dkim(world.dns.address, &messages[0]).await;
    results.sort();
    let selectors: Vec<(&str, bool)> = results.iter().map(|r| (r.1.as_str(), r.2)).collect();
    assert_eq!(selectors, [("ed1", true), ("rsa1", true)], "{results:?}");
    let algorithms: Vec<String> = signatures(&messages[0]).iter().map(|s| tag(s, "a")).collect();
    assert!(
        algorithms.contains(&"ed25519-sha256".to_string()),
        "{algorithms:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_content_still_verifies() {
    let world = world(|_| {}).await;
    publish_key(&world, "default", Algorithm::Rsa);
    let long_subject = format!(
        "Subject: {}\r\n",
        (0..40)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join("\r\n ")
    );
    let eight_bit = format!(
        "From: Alice <{SENDER}>\r\nTo: bob@dest.test\r\n{long_subject}MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Grüße aus Zürich — ça va? 日本語\r\n\r\n\r\n"
    );
    world
        .send_with(
            &format!("MAIL FROM:<{SENDER}> BODY=8BITMIME"),
            &["bob@dest.test"],
            &eight_bit,
        )
        .await;

    // A body ending without CRLF can only arrive by BDAT.
    let mut client = world.server.connect().await;
    client.ehlo().await;
    client
        .expect(&format!("MAIL FROM:<{SENDER}>"), 250, "2.1.0")
        .await;
    client.expect("RCPT TO:<carol@dest.test>", 250, "2.1.5").await;
    let unterminated =
        format!("From: {SENDER}\r\nTo: carol@dest.test\r\nSubject: no final CRLF\r\n\r\nlast line");
    let reply = client.bdat(unterminated.as_bytes(), true).await;
    assert_eq!(reply.code, 250, "{reply:?}");

    let messages = delivered(&world, 2).await;
    for message in &messages {
        let results = verify_dkim(world.dns.address, message).await;
        assert!(
            results.len() == 1 && results[0].2,
            "{results:?} for\n{}",
            String::from_utf8_lossy(message)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_while_running_signs_the_next_message() {
    let world = world(|_| {}).await;

    world.send(&["first@dest.test"]).await;
    let unsigned = world
        .wait_events("dkim_unsigned", 1, |e| e["type"] == "dkim_unsigned")
        .await;
    assert_eq!(unsigned[0]["reason"], "no_key");
    assert_eq!(unsigned[0]["tenant"], "default");
    publish_key(&world, "default", Algorithm::Ed25519);
    world.send(&["second@dest.test"]).await;

    let messages = delivered(&world, 2).await;
    let first = messages
        .iter()
        .find(|m| String::from_utf8_lossy(m).contains("first@dest.test"));
    let second = messages
        .iter()
        .find(|m| String::from_utf8_lossy(m).contains("second@dest.test"));
    assert!(
        signatures(first.expect("first")).is_empty(),
        "sent before the key existed"
    );
    let results = verify_dkim(world.dns.address, second.expect("second")).await;
    assert!(results.len() == 1 && results[0].2, "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_is_refused_when_configured() {
    let world = world(|config| config.dkim.missing_key = MissingKeyAction::Reject).await;

    let mut client = world.server.connect().await;
    client.ehlo().await;
    let content = penguin_tests::simple_message(SENDER, "bob@dest.test", "no key");
    let reply = client.send_message(SENDER, &["bob@dest.test"], &content).await;

    assert_eq!((reply.code, reply.enhanced_code()), (550, "5.7.1"), "{reply:?}");
    assert!(
        reply.text().contains("no DKIM key for From domain sender.test"),
        "{reply:?}"
    );
    assert!(queued(&world.server.spool_path).is_empty(), "nothing was queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_sign_for_another_tenants_domain() {
    let world = world(|config| config.tenant.push(penguin_tests::ACME.config())).await;
    publish_key(&world, "default", Algorithm::Rsa);
    let mut client = world.server.connect().await;
    client.ehlo().await;
    let auth = client
        .cmd(&format!("AUTH PLAIN {}", penguin_tests::ACME.plain_response()))
        .await;
    assert_eq!(auth.code, 235, "{auth:?}");
    // Envelope sender of acme, From header of the domain that has a key (not acme's).
    let content = penguin_tests::simple_message(SENDER, "bob@dest.test", "spoofed From");
    let reply = client
        .send_message("news@acme.example", &["bob@dest.test"], &content)
        .await;
    assert_eq!(reply.code, 250, "{reply:?}");

    let unsigned = world
        .wait_events("dkim_unsigned", 1, |e| e["type"] == "dkim_unsigned")
        .await;
    assert_eq!(unsigned[0]["reason"], "foreign_domain");
    assert_eq!(unsigned[0]["domain"], SENDER_DOMAIN);
    let messages = delivered(&world, 1).await;
    assert!(
        signatures(&messages[0]).is_empty(),
        "not signed with sender.test's key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsns_are_signed_for_the_host_name_domain() {
    let world = world(|_| {}).await;
    publish_key_for(&world, "mta.test", "default", Algorithm::Ed25519);
    world.dns.add_mx("nullmx.test", 0, ".", 300);

    world.send(&["bob@nullmx.test"]).await;
    let dsn = world.sender_sink.wait_for(1).await.remove(0);

    assert_eq!(dsn.mail_from, "", "a DSN");
    let results = verify_dkim(world.dns.address, &dsn.data).await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(results[0].2, "{results:?}");
    assert_eq!(
        (results[0].0.as_str(), results[0].1.as_str()),
        ("mta.test", "default")
    );
}
