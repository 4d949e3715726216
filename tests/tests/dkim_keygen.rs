//! `penguin-mta dkim keygen`, run as the real binary: the printed record (parsed back), the key file
//! (mode 0600, never overwritten), argument errors; and the printed record published in the loopback
//! DNS server verifies a message signed with that key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use penguin_dkim::{KeyStore, Signer};
use penguin_tests::binary;
use penguin_tests::dkim::{parse_zone_line, verify_dkim};
use penguin_tests::dns::TestDns;
use penguin_tests::test_config;

/// The binary under test.
const EXE: &str = env!("CARGO_BIN_EXE_penguin-mta-e2e");

/// A config file in `dir` whose `dkim.key_dir` is `dir/keys`; returns its path and the key directory.
fn config(dir: &Path) -> (PathBuf, PathBuf) {
    let mut config = test_config(dir);
    config.dkim.key_dir = dir.join("keys");
    let path = binary::write_config(dir, &mut config);
    (path, dir.join("keys"))
}

/// Runs `dkim keygen --config CONFIG` with `args`.
async fn keygen(config: &Path, args: &[&str]) -> Output {
    let config = config.to_str().expect("utf-8 path");
    let mut all = vec!["dkim", "keygen", "--config", config];
    all.extend_from_slice(args);
    binary::run_cli(EXE, &all, None).await
}

/// stdout and stderr as text.
fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8(output.stdout.clone()).expect("utf-8 stdout"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs keygen successfully and returns the printed record: (name, strings), after checking the output.
async fn keygen_ok(config: &Path, args: &[&str]) -> (String, Vec<String>, String) {
    let output = keygen(config, args).await;
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "keygen {args:?} failed: {stderr}");
    assert!(
        stdout.ends_with('\n') && stdout.lines().count() == 1,
        "one line on stdout: {stdout:?}"
    );
    let (name, strings) = parse_zone_line(stdout.trim_end_matches('\n'));
    assert!(
        strings.iter().all(|s| !s.is_empty() && s.len() <= 255),
        "{strings:?}"
    );
    (name, strings, stderr)
}

/// Permission bits of a file.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_prints_the_record_of_both_algorithms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, keys) = config(dir.path());
    let store = KeyStore::new(&keys);

    let (name, strings, stderr) = keygen_ok(&config, &["--domain", "Example.COM", "--selector", "s1"]).await;
    assert_eq!(name, "s1._domainkey.example.com.");
    let value = strings.concat();
    assert!(value.starts_with("v=DKIM1; k=rsa; p=MII"), "{value}");
    assert_eq!(
        strings.len(),
        2,
        "a 2048-bit RSA key needs two strings: {strings:?}"
    );
    let path = keys.join("example.com/s1.pem");
    assert_eq!(mode(&path), 0o600);
    let record = store
        .dns_record("example.com", "s1")
        .expect("readable")
        .expect("exists");
    assert_eq!(record.value(), value, "printed record = the key file's record");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("[dkim] selectors"),
        "s1 is not configured: {stderr}"
    );

    let ed_args = [
        "--domain",
        "example.com",
        "--selector",
        "default",
        "--algo",
        "ed25519",
    ];
    let (name, strings, stderr) = keygen_ok(&config, &ed_args).await;
    assert_eq!(name, "default._domainkey.example.com.");
    assert_eq!(strings.len(), 1);
    assert!(strings[0].starts_with("v=DKIM1; k=ed25519; p="), "{}", strings[0]);
    assert_eq!(mode(&keys.join("example.com/default.pem")), 0o600);
    let record = store
        .dns_record("example.com", "default")
        .expect("readable")
        .expect("exists");
    assert_eq!(record.value(), strings[0]);
    assert!(
        stderr.contains("signing starts with the next message"),
        "default is configured: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_keygen_for_a_selector_fails_without_touching_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, keys) = config(dir.path());
    let args = ["--domain", "example.com", "--selector", "s1", "--algo", "ed25519"];
    keygen_ok(&config, &args).await;
    let path = keys.join("example.com/s1.pem");
    let before = (
        std::fs::read(&path).expect("read"),
        std::fs::metadata(&path).expect("meta").modified().ok(),
    );

    for algo in ["ed25519", "rsa"] {
        let output = keygen(
            &config,
            &["--domain", "example.com", "--selector", "s1", "--algo", algo],
        )
        .await;
        let (stdout, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains("already exists") && stderr.contains("s1.pem"),
            "{stderr}"
        );
    }
    let after = (
        std::fs::read(&path).expect("read"),
        std::fs::metadata(&path).expect("meta").modified().ok(),
    );
    assert_eq!(before, after, "key file untouched");
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, keys) = config(dir.path());

    let output = keygen(
        &config,
        &["--domain", "example.com", "--selector", "s1", "--algo", "dsa"],
    )
    .await;
    let (stdout, stderr) = texts(&output);
    assert!(!output.status.success() && stdout.is_empty(), "{stderr}");
    assert!(
        stderr.contains("dsa") && stderr.contains("rsa") && stderr.contains("ed25519"),
        "{stderr}"
    );

    for (domain, selector) in [
        ("example.com", "../s1"),
        ("exa_mple.com", "s1"),
        ("example.com", ""),
    ] {
        let output = keygen(&config, &["--domain", domain, "--selector", selector]).await;
        let (stdout, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(1), "{domain:?} {selector:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("invalid DKIM"), "{stderr}");
    }
    let missing = dir.path().join("missing.toml");
    let output = keygen(&missing, &["--domain", "example.com", "--selector", "s1"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", texts(&output).1);
    assert!(!keys.exists(), "nothing written");
}

/// A message from example.com.
fn message(body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: DKIM over DNS\r\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <dns-1@example.com>\r\n\r\n{body}"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_record_published_in_dns_verifies_signed_mail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, keys) = config(dir.path());
    let dns = TestDns::start().await;
    for (selector, algo) in [("rsa1", "rsa"), ("ed1", "ed25519")] {
        let args = ["--domain", "example.com", "--selector", selector, "--algo", algo];
        let (name, strings, _) = keygen_ok(&config, &args).await;
        let strings: Vec<&str> = strings.iter().map(String::as_str).collect();
        dns.add_txt_strings(&name, &strings, 300);
    }

    let signer = Signer::new(Arc::new(KeyStore::new(&keys)));
    let selectors = ["rsa1".to_owned(), "ed1".to_owned()];
    let body = message("Hello Bob,\r\nthe record came from dkim keygen.\r\n");
    let signed = signer.sign(&body, "example.com", &selectors).expect("sign");
    assert_eq!(signed.selectors, selectors);
    let mut results = verify_dkim(dns.address, &[&signed.header[..], &body].concat()).await;
    results.sort();
    let summary: Vec<(&str, &str, bool)> = results
        .iter()
        .map(|(d, s, pass, _)| (d.as_str(), s.as_str(), *pass))
        .collect();
    assert_eq!(
        summary,
        [("example.com", "ed1", true), ("example.com", "rsa1", true)],
        "{results:?}"
    );

    // The same signatures over a changed body fail.
    let tampered = message("Hello Bob,\r\nthe record came from somewhere else.\r\n");
    let results = verify_dkim(dns.address, &[&signed.header[..], &tampered].concat()).await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results.iter().all(|(_, _, pass, _)| !pass), "{results:?}");
    dns.stop().await;
}
