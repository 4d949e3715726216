//! `[dkim]`, `[unsubscribe]` and `[suppression]`: what makes bulk mail acceptable to the big mailbox
//! providers — DKIM signatures aligned with the From domain, one-click unsubscribe (RFC 8058), and
//! never mailing an address that unsubscribed or does not exist.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Config;
use crate::validate::{Errors, check_domain};

/// What happens to a message whose From domain has no DKIM key (or is not one of the tenant's domains).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingKeyAction {
    /// Accept and send it unsigned; a `dkim_unsigned` warning event says why.
    Unsigned,
    /// Refuse it at the end of DATA with `550 5.7.1`.
    Reject,
}

/// `[dkim]`: DKIM signing at reception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DkimConfig {
    /// Directory of the private keys, one file per domain and selector:
    /// `KEY_DIR/DOMAIN/SELECTOR.pem` (PKCS#8 PEM, RSA or Ed25519, mode 0600), written by
    /// `penguin-mta dkim keygen`. Default `"data/dkim"`. A key file that appears while the server runs is
    /// used from the next message on (no restart).
    pub key_dir: PathBuf,
    /// Selectors that sign for every domain without its own `[[dkim.domain]]` entry. Each listed selector
    /// whose key file exists adds one signature, so an RSA and an Ed25519 selector dual-sign. Default
    /// `["default"]`.
    pub selectors: Vec<String>,
    /// What happens to a message whose From domain has no key: `"unsigned"` (send it unsigned with a
    /// `dkim_unsigned` warning event) or `"reject"` (`550 5.7.1` at the end of DATA). Default
    /// `"unsigned"`; a tenant may override it with `dkim_missing_key`.
    pub missing_key: MissingKeyAction,
    /// `[[dkim.domain]]`: per-domain selector choice, e.g. during a key rotation. Changing it takes effect
    /// on SIGHUP or `POST /reload`, without a restart. Default: none.
    pub domain: Vec<DkimDomainConfig>,
}

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig {
            key_dir: PathBuf::from("data/dkim"),
            selectors: vec!["default".to_owned()],
            missing_key: MissingKeyAction::Unsigned,
            domain: Vec::new(),
        }
    }
}

impl DkimConfig {
    /// The selectors that sign for `domain` (lowercase): its `[[dkim.domain]]` entry, else `selectors`.
    pub fn selectors_for(&self, domain: &str) -> &[String] {
        self.domain
            .iter()
            .find(|entry| entry.name == domain)
            .map_or(&self.selectors, |entry| &entry.selectors)
    }
}

/// `[[dkim.domain]]`: which selectors sign one sender domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimDomainConfig {
    /// The sender (From header) domain, matched case-insensitively. Required.
    pub name: String,
    /// Selectors that sign this domain's mail, each one signature (RSA + Ed25519 = dual signing). To
    /// rotate: `dkim keygen` a new selector, publish its record, list it here (the old one may stay
    /// listed until the new record has propagated), reload. Required, at least one.
    pub selectors: Vec<String>,
}

/// `[unsubscribe]`: the one-click unsubscribe links (RFC 8058) of tenants with `list_unsubscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnsubscribeConfig {
    /// Base of the links: `List-Unsubscribe: <BASE_URL/u/TOKEN>`. It must reach this server's public
    /// listener (`POST /u/TOKEN`, see `[public]`), usually through an HTTPS reverse proxy. Default:
    /// none, which means `http://` + `public.listen` (only useful on a test machine).
    pub base_url: Option<String>,
    /// An address added as a second `List-Unsubscribe` URI, `<mailto:ADDRESS?subject=unsubscribe-TOKEN>`,
    /// for receivers that do not support one-click. Mail to it is not processed by penguin-mta.
    /// Default: none.
    pub mailto: Option<String>,
}

/// `[suppression]`: the per-tenant lists of addresses that must not be mailed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuppressionConfig {
    /// Add a recipient to its tenant's suppression list (reason `hard_bounce`) when its delivery bounces
    /// with class `invalid_recipient` (5.1.1 user unknown) or `bad_domain` (NXDOMAIN, null MX).
    /// Default `true`.
    pub auto_hard_bounce: bool,
}

impl Default for SuppressionConfig {
    fn default() -> Self {
        SuppressionConfig {
            auto_hard_bounce: true,
        }
    }
}

/// Canonical forms: domain names lowercased, a trailing `/` of the unsubscribe base URL removed.
pub(crate) fn normalise(config: &mut Config) {
    for entry in &mut config.dkim.domain {
        entry.name = entry.name.trim().to_ascii_lowercase();
    }
    if let Some(base) = &mut config.unsubscribe.base_url {
        *base = base.trim().trim_end_matches('/').to_owned();
    }
}

/// `[dkim]`, `[unsubscribe]`.
pub(crate) fn validate(config: &Config, errors: &mut Errors) {
    let dkim = &config.dkim;
    errors.check(
        !dkim.key_dir.as_os_str().is_empty(),
        "dkim.key_dir",
        "must not be empty",
    );
    check_selectors(&dkim.selectors, "dkim.selectors", errors);
    let mut seen = std::collections::HashSet::new();
    for (index, entry) in dkim.domain.iter().enumerate() {
        let at = |field: &str| format!("dkim.domain[{index}].{field}");
        if let Err(reason) = check_domain(&entry.name) {
            errors.check(false, at("name"), reason);
        }
        errors.check(
            seen.insert(entry.name.as_str()),
            at("name"),
            format!("{:?} has two [[dkim.domain]] entries", entry.name),
        );
        errors.check(
            !entry.selectors.is_empty(),
            at("selectors"),
            "must list at least one selector",
        );
        check_selectors(&entry.selectors, &at("selectors"), errors);
    }
    if let Some(base) = &config.unsubscribe.base_url {
        let scheme_ok = base.starts_with("https://") || base.starts_with("http://");
        let host_ok = base.split_once("://").is_some_and(|(_, rest)| !rest.is_empty());
        errors.check(
            scheme_ok && host_ok && !base.contains(char::is_whitespace),
            "unsubscribe.base_url",
            format!("{base:?} is not an http(s) URL such as \"https://unsubscribe.example.com\""),
        );
    }
    if let Some(mailto) = &config.unsubscribe.mailto {
        let valid = mailto
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && check_domain(domain).is_ok());
        errors.check(
            valid && mailto.is_ascii() && !mailto.contains(['<', '>', '?', ' ']),
            "unsubscribe.mailto",
            format!("{mailto:?} is not an email address such as \"unsubscribe@example.com\""),
        );
    }
}

/// DKIM selectors are dot-separated DNS labels (RFC 6376 3.1).
fn check_selectors(selectors: &[String], path: &str, errors: &mut Errors) {
    for (index, selector) in selectors.iter().enumerate() {
        if let Err(reason) = check_domain(selector) {
            errors.check(
                false,
                format!("{path}[{index}]"),
                format!("not a valid DKIM selector: {reason}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(toml: &str) -> Vec<String> {
        match Config::from_toml_str(toml) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn selector_choice_per_domain() {
        let config = Config::from_toml_str(
            "[dkim]\nselectors = [\"a\"]\n[[dkim.domain]]\nname = \"Acme.Example\"\nselectors = [\"s2\", \"ed\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.dkim.selectors_for("acme.example"), ["s2", "ed"]);
        assert_eq!(config.dkim.selectors_for("other.example"), ["a"]);
    }

    #[test]
    fn bad_signing_settings_name_their_field() {
        let errors = errors_of(
            "[dkim]\nselectors = [\"bad selector\"]\nmissing_key = \"unsigned\"\n\
             [[dkim.domain]]\nname = \"x.example\"\nselectors = []\n\
             [unsubscribe]\nbase_url = \"ftp://x\"\nmailto = \"nobody\"\n",
        );
        let joined = errors.join("\n");
        for field in [
            "dkim.selectors[0]",
            "dkim.domain[0].selectors",
            "unsubscribe.base_url",
            "unsubscribe.mailto",
        ] {
            assert!(joined.contains(field), "{field} missing in:\n{joined}");
        }
    }

    #[test]
    fn missing_key_action_is_checked_by_name() {
        let errors = errors_of("[dkim]\nmissing_key = \"drop\"\n");
        assert!(
            errors.iter().any(|e| e.contains("dkim.missing_key")),
            "{errors:?}"
        );
    }

    #[test]
    fn base_url_loses_its_trailing_slash() {
        let config = Config::from_toml_str("[unsubscribe]\nbase_url = \"https://u.example/x/\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.unsubscribe.base_url.as_deref(),
            Some("https://u.example/x")
        );
    }
}
