//! The `dkim` check: for each selector, the TXT record at `SELECTOR._domainkey.DOMAIN` publishes the
//! public key of our private key (`dkim.key_dir`).

use penguin_dkim::KeyStore;

use super::dns::Dns;
use super::spf_eval::failed;
use super::{Check, CheckName, Context, Status, dns_fix};

/// One selector's outcome.
struct SelectorResult {
    /// Pass or fail.
    status: Status,
    /// What was found.
    detail: String,
    /// What to publish or do.
    fix: Option<String>,
}

/// Runs the DKIM check over the context's selectors (the worst selector decides the status).
pub(crate) async fn check<D: Dns>(dns: &D, context: &Context) -> Check {
    if context.selectors.is_empty() {
        return Check::new(
            CheckName::Dkim,
            Status::Fail,
            format!("no DKIM selector is configured for {}", context.domain),
            Some(
                "list a selector in dkim.selectors (or a [[dkim.domain]] entry) and generate its key"
                    .to_string(),
            ),
        );
    }
    let store = KeyStore::new(&context.key_dir);
    let mut results = Vec::new();
    for selector in &context.selectors {
        results.push(check_selector(dns, context, &store, selector).await);
    }
    let status = results.iter().map(|r| r.status).max().unwrap_or(Status::Pass);
    let details: Vec<&str> = results.iter().map(|r| r.detail.as_str()).collect();
    let fixes: Vec<&str> = results.iter().filter_map(|r| r.fix.as_deref()).collect();
    let fix = (!fixes.is_empty()).then(|| fixes.join("\n"));
    Check::new(CheckName::Dkim, status, details.join("; "), fix)
}

/// Checks one selector.
async fn check_selector<D: Dns>(
    dns: &D,
    context: &Context,
    store: &KeyStore,
    selector: &str,
) -> SelectorResult {
    let domain = &context.domain;
    let fail = |detail: String, fix: Option<String>| SelectorResult {
        status: Status::Fail,
        detail,
        fix,
    };
    let keygen = format!(
        "penguin-mta dkim keygen --config {} --domain {domain} --selector {selector}",
        context.config_file
    );
    let ours = match store.dns_record(domain, selector) {
        Ok(Some(record)) => record,
        Ok(None) => {
            return fail(
                format!(
                    "selector {selector}: no key in {} (run `{keygen}`)",
                    context.key_dir.display()
                ),
                Some(format!("run `{keygen}` and publish the record it prints")),
            );
        }
        Err(err) => {
            return fail(
                format!("selector {selector}: our key cannot be read: {err}"),
                Some(format!(
                    "repair or replace the key file (`{keygen}` after removing it)"
                )),
            );
        }
    };
    let name = format!("{selector}._domainkey.{domain}");
    let texts = match dns.txt(&name).await {
        Ok(texts) => texts,
        Err(err) if err.is_void() => {
            return fail(
                format!("selector {selector}: no DKIM record at {name}"),
                Some(ours.zone_line()),
            );
        }
        Err(err) => {
            return fail(
                format!("selector {selector}: {}", failed(&name, "TXT", &err)),
                dns_fix(&name),
            );
        }
    };
    let keys: Vec<String> = texts.iter().filter_map(|text| public_key(text)).collect();
    if keys.contains(&ours.public_key) {
        return SelectorResult {
            status: Status::Pass,
            detail: format!("selector {selector}: {name} publishes our {} key", ours.algorithm),
            fix: None,
        };
    }
    let detail = match keys.as_slice() {
        [] => format!("selector {selector}: the TXT record at {name} is not a DKIM key record"),
        [key] if key.is_empty() => format!("selector {selector}: the key at {name} is revoked (empty p=)"),
        _ => format!("selector {selector}: {name} publishes a different public key than ours"),
    };
    fail(detail, Some(ours.zone_line()))
}

/// The `p=` value of a DKIM key record (whitespace removed), if `text` is one (RFC 6376 §3.6.1: a tag
/// list whose `v=`, when present, is `DKIM1`).
pub(crate) fn public_key(text: &str) -> Option<String> {
    let mut key = None;
    for (index, tag) in text.split(';').enumerate() {
        let Some((name, value)) = tag.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name == "v" && (index != 0 || value.trim() != "DKIM1") {
            return None;
        }
        if name == "p" {
            key = Some(value.chars().filter(|c| !c.is_whitespace()).collect());
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_is_read_from_the_tag_list() {
        assert_eq!(
            public_key("v=DKIM1; k=rsa; p=MIIB AQAB").as_deref(),
            Some("MIIBAQAB")
        );
        assert_eq!(public_key("k=ed25519;p=abc=").as_deref(), Some("abc="));
        assert_eq!(public_key("v=DKIM1; p=").as_deref(), Some(""));
        assert_eq!(public_key("v=DKIM2; p=abc"), None);
        assert_eq!(public_key("k=rsa; v=DKIM1; p=abc"), None);
        assert_eq!(public_key("v=spf1 -all"), None);
    }
}
