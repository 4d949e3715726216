//! Key generation and the DNS record, with real keys in a temporary directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use penguin_dkim::{Algorithm, DkimError, KeyStore};

/// The permission bits of a file or directory.
fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn generates_rsa_and_ed25519_keys_with_their_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = KeyStore::new(dir.path().join("dkim"));
    for (selector, algorithm, prefix) in [
        ("s1", Algorithm::Rsa, "v=DKIM1; k=rsa; p="),
        ("ed1", Algorithm::Ed25519, "v=DKIM1; k=ed25519; p="),
    ] {
        let record = store
            .generate("example.com", selector, algorithm)
            .expect("generate");
        let path = dir
            .path()
            .join("dkim/example.com")
            .join(format!("{selector}.pem"));
        assert_eq!(store.key_path("example.com", selector).expect("path"), path);
        assert_eq!(mode(&path), 0o600, "{selector}");
        assert!(
            fs::read_to_string(&path)
                .expect("read")
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert_eq!(record.domain, "example.com");
        assert_eq!(record.selector, selector);
        assert_eq!(record.algorithm, algorithm);
        assert_eq!(record.name(), format!("{selector}._domainkey.example.com."));
        assert!(record.value().starts_with(prefix), "{}", record.value());
        assert_eq!(record.value(), format!("{prefix}{}", record.public_key));
        let strings = record.txt_strings();
        assert!(
            strings.iter().all(|s| !s.is_empty() && s.len() <= 255),
            "{strings:?}"
        );
        assert_eq!(strings.concat(), record.value());
        let quoted: Vec<String> = strings.iter().map(|s| format!("\"{s}\"")).collect();
        assert_eq!(
            record.zone_line(),
            format!("{} IN TXT {}", record.name(), quoted.join(" "))
        );
        // The existing key's record is the same.
        assert_eq!(
            store.dns_record("EXAMPLE.com", selector).expect("record"),
            Some(record.clone())
        );
        let public = STANDARD.decode(&record.public_key).expect("base64");
        match algorithm {
            // SubjectPublicKeyInfo of a 2048-bit key (294 octets), which needs two TXT strings.
            Algorithm::Rsa => {
                assert_eq!(public.len(), 294);
                assert_eq!(strings.len(), 2);
            }
            // RFC 8463: the raw 32-octet key.
            Algorithm::Ed25519 => {
                assert_eq!(public.len(), 32);
                assert_eq!(strings.len(), 1);
            }
        }
    }
    assert_eq!(mode(&dir.path().join("dkim")), 0o700);
    assert_eq!(mode(&dir.path().join("dkim/example.com")), 0o700);
    // Only the two key files: no temporary file left behind.
    let mut names: Vec<String> = fs::read_dir(dir.path().join("dkim/example.com"))
        .expect("read_dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ed1.pem", "s1.pem"]);
}

#[test]
fn refuses_to_overwrite_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = KeyStore::new(dir.path());
    store
        .generate("example.com", "s1", Algorithm::Ed25519)
        .expect("generate");
    let path = dir.path().join("example.com/s1.pem");
    let before = fs::read(&path).expect("read");
    for (domain, algorithm) in [
        ("example.com", Algorithm::Ed25519),
        ("Example.Com", Algorithm::Rsa),
    ] {
        let error = store
            .generate(domain, "s1", algorithm)
            .expect_err("must not overwrite");
        assert!(matches!(error, DkimError::KeyExists { .. }), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("s1") && text.contains("example.com") && text.contains("s1.pem"),
            "{text}"
        );
    }
    assert_eq!(fs::read(&path).expect("read"), before);
}

#[test]
fn domain_is_lowercased() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = KeyStore::new(dir.path());
    let record = store
        .generate("Mail.Example.COM.", "s1", Algorithm::Ed25519)
        .expect("generate");
    assert_eq!(record.domain, "mail.example.com");
    assert_eq!(record.name(), "s1._domainkey.mail.example.com.");
    assert!(dir.path().join("mail.example.com/s1.pem").is_file());
}

#[test]
fn invalid_names_are_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = KeyStore::new(dir.path().join("keys"));
    for (domain, selector) in [
        ("example.com", "../escape"),
        ("example.com", "a/b"),
        ("example.com", ""),
        ("example.com", "under_score"),
        ("example.com", "-s1"),
        ("../etc", "s1"),
        ("exa mple.com", "s1"),
        ("example..com", "s1"),
        ("", "s1"),
        ("bücher.example", "s1"),
    ] {
        let error = store
            .generate(domain, selector, Algorithm::Ed25519)
            .expect_err("invalid");
        assert!(
            matches!(error, DkimError::InvalidName { .. }),
            "{domain:?} {selector:?}: {error}"
        );
        assert!(
            store.dns_record(domain, selector).is_err(),
            "{domain:?} {selector:?}"
        );
    }
    assert!(!dir.path().join("keys").exists(), "nothing created");
}

#[test]
fn dns_record_of_a_missing_key_is_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = KeyStore::new(dir.path());
    assert_eq!(store.dns_record("example.com", "nokey").expect("no error"), None);
}

#[test]
fn a_key_written_by_openssl_style_pkcs8_is_read() {
    // An Ed25519 PKCS#8 v1 key as `openssl genpkey -algorithm ed25519` writes it (RFC 8410 example).
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("example.com")).expect("mkdir");
    fs::write(
        dir.path().join("example.com/ext.pem"),
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let record = KeyStore::new(dir.path())
        .dns_record("example.com", "ext")
        .expect("readable")
        .expect("exists");
    assert_eq!(record.algorithm, Algorithm::Ed25519);
    // RFC 8410 section 10.3: the public key of this private key.
    assert_eq!(record.public_key, "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=");
}

#[test]
fn a_broken_key_file_is_an_error_that_does_not_quote_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("example.com")).expect("mkdir");
    let secret = "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n-----END PRIVATE KEY-----\n";
    fs::write(dir.path().join("example.com/bad.pem"), secret).expect("write");
    let error = KeyStore::new(dir.path())
        .dns_record("example.com", "bad")
        .expect_err("not a key");
    let text = error.to_string();
    assert!(matches!(error, DkimError::InvalidKey { .. }), "{text}");
    assert!(text.contains("bad.pem") && text.contains("example.com"), "{text}");
    assert!(
        !text.contains("U0VDUkVU") && !format!("{error:?}").contains("U0VDUkVU"),
        "{text}"
    );
}
