//! Signing with real keys, verified by mail-auth's own verifier (keys served from a TXT cache).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use common::{crlf, fields, plain_message, prepend, tag, verify};
use penguin_dkim::{Algorithm, DkimError, DnsRecord, KeyStore, Signed, Signer};

/// A key store in a temporary directory and a signer over it.
struct Setup {
    /// Keeps the directory alive.
    dir: tempfile::TempDir,
    /// The store.
    store: Arc<KeyStore>,
    /// The signer.
    signer: Signer,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(KeyStore::new(dir.path().join("dkim")));
        let signer = Signer::new(Arc::clone(&store));
        Setup { dir, store, signer }
    }

    fn generate(&self, selector: &str, algorithm: Algorithm) -> DnsRecord {
        self.store
            .generate("example.com", selector, algorithm)
            .expect("generate")
    }

    fn sign(&self, message: &[u8], selectors: &[&str]) -> Signed {
        let selectors: Vec<String> = selectors.iter().map(|s| s.to_string()).collect();
        self.signer
            .sign(message, "example.com", &selectors)
            .expect("sign")
    }
}

/// Signs `message` with `selector` and asserts that mail-auth verifies it with `record`.
async fn assert_round_trip(setup: &Setup, message: &[u8], selector: &str, record: &DnsRecord) {
    let signed = setup.sign(message, &[selector]);
    assert_eq!(signed.selectors, [selector]);
    let results = verify(&prepend(&signed.header, message), &[record]).await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(
        results[0].1,
        "{selector}: {results:?}\n{}",
        String::from_utf8_lossy(&signed.header)
    );
}

#[tokio::test]
async fn rsa_and_ed25519_signatures_verify() {
    let setup = Setup::new();
    for (selector, algorithm, a) in [
        ("rsa1", Algorithm::Rsa, "rsa-sha256"),
        ("ed1", Algorithm::Ed25519, "ed25519-sha256"),
    ] {
        let record = setup.generate(selector, algorithm);
        let message = plain_message();
        let signed = setup.sign(&message, &[selector]);
        let header = String::from_utf8(signed.header.clone()).expect("ASCII");
        assert!(header.starts_with("DKIM-Signature: "), "{header}");
        assert!(header.ends_with("\r\n"), "{header}");
        let fields = fields(&signed.header);
        assert_eq!(fields.len(), 1, "{fields:?}");
        assert_eq!(tag(&fields[0], "a").as_deref(), Some(a));
        assert_eq!(tag(&fields[0], "c").as_deref(), Some("relaxed/relaxed"));
        assert_eq!(tag(&fields[0], "d").as_deref(), Some("example.com"));
        assert_eq!(tag(&fields[0], "s").as_deref(), Some(selector));
        assert!(
            tag(&fields[0], "t").is_some_and(|t| t.parse::<u64>().is_ok()),
            "{}",
            fields[0]
        );
        let results = verify(&prepend(&signed.header, &message), &[&record]).await;
        assert_eq!(results, vec![(selector.to_owned(), true, "Pass".to_owned())]);
    }
}

#[tokio::test]
async fn dual_signing_gives_two_passing_signatures() {
    let setup = Setup::new();
    let rsa = setup.generate("rsa1", Algorithm::Rsa);
    let ed = setup.generate("ed1", Algorithm::Ed25519);
    let message = plain_message();
    let signed = setup.sign(&message, &["rsa1", "ed1", "rsa1"]);
    assert_eq!(
        signed.selectors,
        ["rsa1", "ed1"],
        "a repeated selector signs once"
    );
    assert_eq!(fields(&signed.header).len(), 2);
    let mut results = verify(&prepend(&signed.header, &message), &[&rsa, &ed]).await;
    results.sort();
    assert_eq!(
        results,
        vec![
            ("ed1".to_owned(), true, "Pass".to_owned()),
            ("rsa1".to_owned(), true, "Pass".to_owned())
        ]
    );
}

#[tokio::test]
async fn from_is_over_signed_and_absent_headers_are_named() {
    let setup = Setup::new();
    let record = setup.generate("ed1", Algorithm::Ed25519);
    let message = plain_message();
    let signed = setup.sign(&message, &["ed1"]);
    let h = tag(&fields(&signed.header)[0], "h").expect("h=");
    let names: Vec<String> = h.split(':').map(str::to_ascii_lowercase).collect();
    assert_eq!(names.iter().filter(|n| *n == "from").count(), 2, "h={h}");
    for present in [
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
    ] {
        assert_eq!(
            names.iter().filter(|n| *n == present).count(),
            1,
            "{present} in h={h}"
        );
    }
    // mail-auth names the absent headers of the list too: they cannot be added later either.
    for absent in ["cc", "reply-to", "list-unsubscribe", "list-unsubscribe-post"] {
        assert!(names.iter().any(|n| n == absent), "{absent} in h={h}");
    }
    let original = prepend(&signed.header, &message);
    assert!(verify(&original, &[&record]).await[0].1);

    // A second From (or an added Reply-To) breaks the signature.
    for added in [
        "From: Mallory <mallory@evil.example>\r\n",
        "Reply-To: mallory@evil.example\r\n",
    ] {
        let tampered = prepend(&signed.header, &prepend(added.as_bytes(), &message));
        let results = verify(&tampered, &[&record]).await;
        assert!(!results[0].1, "{added}: {results:?}");
    }

    // A message with two From fields: h= has three.
    let two_froms = prepend(b"From: second@example.com\r\n", &message);
    let signed = setup.sign(&two_froms, &["ed1"]);
    let h = tag(&fields(&signed.header)[0], "h").expect("h=");
    assert_eq!(
        h.split(':').filter(|n| n.eq_ignore_ascii_case("from")).count(),
        3,
        "h={h}"
    );
}

#[tokio::test]
async fn eight_bit_body_and_header_verify() {
    let setup = Setup::new();
    let rsa = setup.generate("rsa1", Algorithm::Rsa);
    let ed = setup.generate("ed1", Algorithm::Ed25519);
    let message = crlf(&[
        "From: Zoë <zoe@example.com>",
        "To: jürgen@example.net",
        "Subject: Grüße aus Köln — 東京",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "Liebe Grüße, ça va? 🐧",
        "Ünïcödé body line",
        "",
    ]);
    assert_round_trip(&setup, &message, "rsa1", &rsa).await;
    assert_round_trip(&setup, &message, "ed1", &ed).await;
}

#[tokio::test]
async fn long_folded_header_verifies() {
    let setup = Setup::new();
    let record = setup.generate("rsa1", Algorithm::Rsa);
    let words: Vec<String> = (0..60).map(|i| format!("word{i:02}")).collect();
    // A 300+ character Subject folded over several lines, with tabs and runs of spaces.
    let folded = words
        .chunks(10)
        .map(|chunk| chunk.join("  "))
        .collect::<Vec<_>>()
        .join("\r\n\t  ");
    let subject = format!("Subject: {folded}");
    assert!(subject.len() > 300, "{}", subject.len());
    let message = crlf(&[
        "From: alice@example.com",
        "To: bob@example.net",
        &subject,
        "",
        "Body.",
        "",
    ]);
    assert_round_trip(&setup, &message, "rsa1", &record).await;
}

#[tokio::test]
async fn message_without_final_crlf_verifies_as_stored_and_as_sent() {
    let setup = Setup::new();
    let record = setup.generate("ed1", Algorithm::Ed25519);
    // A body whose last line has no CRLF, and a message of headers only without CRLF after the last.
    let with_body = crlf(&[
        "From: alice@example.com",
        "To: bob@example.net",
        "Subject: x",
        "",
        "line 1",
        "last line",
    ]);
    let headers_only = crlf(&[
        "From: alice@example.com",
        "To: bob@example.net",
        "Subject: no body",
    ]);
    for message in [with_body, headers_only] {
        let signed = setup.sign(&message, &["ed1"]);
        // As the SMTP client sends it: CRLF added before the final dot.
        let sent = prepend(&signed.header, &[&message[..], b"\r\n"].concat());
        let results = verify(&sent, &[&record]).await;
        assert!(
            results[0].1,
            "{:?}: {results:?}",
            String::from_utf8_lossy(&message)
        );
    }
    // The stored form (without the final CRLF) verifies too when there is a body: relaxed body
    // canonicalisation ends a non-empty body with one CRLF either way.
    let message = crlf(&["From: alice@example.com", "Subject: x", "", "last line"]);
    let signed = setup.sign(&message, &["ed1"]);
    assert!(verify(&prepend(&signed.header, &message), &[&record]).await[0].1);
}

#[tokio::test]
async fn tampered_body_fails() {
    let setup = Setup::new();
    let record = setup.generate("rsa1", Algorithm::Rsa);
    let message = plain_message();
    let signed = setup.sign(&message, &["rsa1"]);
    let mut tampered = prepend(&signed.header, &message);
    let at = tampered.len() - 5;
    tampered[at] = b'X';
    let results = verify(&tampered, &[&record]).await;
    assert_eq!(results.len(), 1);
    assert!(!results[0].1, "{results:?}");
}

#[test]
fn selectors_without_a_key_are_skipped() {
    let setup = Setup::new();
    let message = plain_message();
    let none = setup.sign(&message, &["nokey"]);
    assert_eq!(none, Signed::default());
    setup.generate("ed1", Algorithm::Ed25519);
    let one = setup.sign(&message, &["nokey", "ed1"]);
    assert_eq!(one.selectors, ["ed1"]);
    assert_eq!(fields(&one.header).len(), 1);
    let other_domain = setup
        .signer
        .sign(&message, "other.example", &["ed1".to_owned()])
        .expect("no key is no error");
    assert_eq!(other_domain, Signed::default());
}

#[test]
fn invalid_names_and_broken_keys_are_errors() {
    let setup = Setup::new();
    let message = plain_message();
    for (domain, selector) in [("../etc", "s1"), ("example.com", "../s1"), ("exa mple.com", "s1")] {
        let error = setup
            .signer
            .sign(&message, domain, &[selector.to_owned()])
            .expect_err("invalid");
        assert!(matches!(error, DkimError::InvalidName { .. }), "{error}");
    }
    let dir = setup.dir.path().join("dkim/example.com");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("bad.pem"), "not a key at all").expect("write");
    let error = setup.sign_error("bad");
    assert!(matches!(error, DkimError::InvalidKey { .. }), "{error}");
    assert!(error.to_string().contains("bad.pem") && !error.to_string().contains("not a key at all"));
}

impl Setup {
    fn sign_error(&self, selector: &str) -> DkimError {
        self.signer
            .sign(&plain_message(), "example.com", &[selector.to_owned()])
            .expect_err("sign fails")
    }
}

#[tokio::test]
async fn keys_added_replaced_and_removed_while_running() {
    let setup = Setup::new();
    let message = plain_message();
    assert!(setup.sign(&message, &["live"]).selectors.is_empty(), "no key yet");

    // A key that appears after the signer was created (and after a miss) is used at once.
    let first = setup.generate("live", Algorithm::Rsa);
    let signed = setup.sign(&message, &["live"]);
    assert_eq!(signed.selectors, ["live"]);
    assert!(verify(&prepend(&signed.header, &message), &[&first]).await[0].1);

    // Replaced by another key (here even another algorithm): the next message uses the new one.
    let path = setup.store.key_path("example.com", "live").expect("path");
    fs::remove_file(&path).expect("remove");
    let second = setup.generate("live", Algorithm::Ed25519);
    let signed = setup.sign(&message, &["live"]);
    let field = &fields(&signed.header)[0];
    assert_eq!(tag(field, "a").as_deref(), Some("ed25519-sha256"));
    let sent = prepend(&signed.header, &message);
    assert!(verify(&sent, &[&second]).await[0].1, "new key");
    assert!(!verify(&sent, &[&first]).await[0].1, "not the old key");

    // Same algorithm, same file size, same inode, rewritten in place: noticed by its mtime. (The mtime
    // is set explicitly: two writes within one kernel timer tick may share a timestamp.)
    let third_store = KeyStore::new(setup.dir.path().join("other"));
    let third = third_store
        .generate("example.com", "live", Algorithm::Ed25519)
        .expect("generate");
    let third_pem = fs::read(third_store.key_path("example.com", "live").expect("path")).expect("read");
    let before = fs::metadata(&path).expect("metadata");
    fs::write(&path, &third_pem).expect("rewrite in place");
    let file = fs::File::options().write(true).open(&path).expect("open");
    file.set_modified(before.modified().expect("mtime") + Duration::from_secs(1))
        .expect("set mtime");
    let after = fs::metadata(&path).expect("metadata");
    assert_eq!(
        (after.ino(), after.len()),
        (before.ino(), before.len()),
        "same inode and size"
    );
    let signed = setup.sign(&message, &["live"]);
    assert!(
        verify(&prepend(&signed.header, &message), &[&third]).await[0].1,
        "rewritten key"
    );

    // Removed: no more signatures.
    fs::remove_file(&path).expect("remove");
    assert_eq!(setup.sign(&message, &["live"]), Signed::default());
}

#[tokio::test]
async fn two_threads_sign_concurrently() {
    let setup = Setup::new();
    let rsa = setup.generate("rsa1", Algorithm::Rsa);
    let ed = setup.generate("ed1", Algorithm::Ed25519);
    let message = plain_message();
    let outputs: Vec<Signed> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    (0..20)
                        .map(|_| setup.sign(&message, &["rsa1", "ed1"]))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(outputs.len(), 40);
    for signed in outputs.iter().step_by(7) {
        let results = verify(&prepend(&signed.header, &message), &[&rsa, &ed]).await;
        assert!(results.iter().all(|r| r.1) && results.len() == 2, "{results:?}");
    }
}

#[test]
fn debug_output_holds_no_key_material() {
    let setup = Setup::new();
    setup.generate("ed1", Algorithm::Ed25519);
    setup.sign(&plain_message(), &["ed1"]);
    let pem = fs::read_to_string(setup.store.key_path("example.com", "ed1").expect("path")).expect("read");
    let secret_line = pem.lines().nth(1).expect("base64 line");
    let debug = format!("{:?} {:?}", setup.signer, setup.store);
    assert!(debug.contains("cached_keys: 1"), "{debug}");
    assert!(
        !debug.contains(secret_line) && !debug.contains("PRIVATE"),
        "{debug}"
    );
}
