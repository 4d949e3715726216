//! Helpers shared by the config integration tests.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use penguin_config::{Config, ConfigErrors};

/// A real argon2id hash (hashing is slow, so once per test binary).
pub fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(b"correct horse", &salt)
            .expect("hash")
            .to_string()
    })
}

/// Parses a config that must be valid.
pub fn parse(text: &str) -> Config {
    Config::from_toml_str(text).unwrap_or_else(|e| panic!("{e}\nfor:\n{text}"))
}

/// The errors of a config that must be invalid.
pub fn errors_of(text: &str) -> ConfigErrors {
    match Config::from_toml_str(text) {
        Ok(config) => panic!("expected errors, got {config:?}\nfor:\n{text}"),
        Err(errors) => errors,
    }
}

/// Asserts that parsing `text` fails with an error at exactly `path` whose reason contains `reason`.
pub fn assert_error(text: &str, path: &str, reason: &str) {
    let errors = errors_of(text);
    let error = errors
        .at(path)
        .unwrap_or_else(|| panic!("no error at {path:?} in:\n{errors}\nfor:\n{text}"));
    assert!(
        error.reason.contains(reason),
        "{path}: {:?} does not contain {reason:?}",
        error.reason
    );
}
