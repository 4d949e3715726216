//! Domain and selector names: DNS names of letters, digits and hyphens, dot-separated. They become
//! file and directory names, so anything else (a `/`, `..`, an empty label) is refused before any path
//! is built.

use crate::DkimError;

/// Longest DNS name in text form (without the trailing dot).
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// The domain lowercased, without a trailing dot, if it is a valid DNS name.
pub(crate) fn domain(name: &str) -> Result<String, DkimError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    check("domain", name, trimmed)?;
    Ok(trimmed.to_ascii_lowercase())
}

/// The selector as given, if it is a valid DNS name (one or more labels, no trailing dot).
pub(crate) fn selector(name: &str) -> Result<&str, DkimError> {
    check("selector", name, name)?;
    Ok(name)
}

/// Checks `text` (the name without a trailing dot) as a DNS name; errors quote `name` as given.
fn check(kind: &'static str, name: &str, text: &str) -> Result<(), DkimError> {
    let invalid = |reason| DkimError::InvalidName {
        kind,
        name: name.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    if text.len() > MAX_NAME {
        return Err(invalid("longer than 253 characters"));
    }
    for label in text.split('.') {
        if label.is_empty() {
            return Err(invalid("empty label (two dots, or a leading dot)"));
        }
        if label.len() > MAX_LABEL {
            return Err(invalid("a label is longer than 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(
                "only letters, digits and hyphens, dot-separated (write an internationalised domain \
                 in its xn-- form)",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label starts or ends with a hyphen"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        assert_eq!(domain("Example.COM").ok().as_deref(), Some("example.com"));
        assert_eq!(domain("example.com.").ok().as_deref(), Some("example.com"));
        assert_eq!(
            domain("xn--bcher-kva.example").ok().as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(selector("s1").ok(), Some("s1"));
        assert_eq!(selector("2026-01.rsa").ok(), Some("2026-01.rsa"));
    }

    #[test]
    fn invalid_names() {
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 26].join(".");
        for bad in [
            "",
            ".",
            "..",
            "a..b",
            ".a",
            "a/b",
            "../etc",
            "a b",
            "a_b",
            "-a",
            "a-",
            "bücher.example",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(domain(bad).is_err(), "domain {bad:?}");
            assert!(selector(bad).is_err(), "selector {bad:?}");
        }
        assert!(selector("s1.").is_err(), "a selector has no trailing dot");
        let error = selector("a/b").expect_err("slash");
        assert!(error.to_string().contains("selector \"a/b\""), "{error}");
    }
}
