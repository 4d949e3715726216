//! The DNS TXT record that publishes a DKIM public key (RFC 6376 section 3.6.1).

use crate::Algorithm;

/// Longest character-string of a TXT record (RFC 1035: one length octet).
const MAX_TXT_STRING: usize = 255;

/// The DNS record of one DKIM key: `SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=…; p=…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// The signing domain (lowercase, no trailing dot).
    pub domain: String,
    /// The selector.
    pub selector: String,
    /// The key type.
    pub algorithm: Algorithm,
    /// The public key, base64: an RSA key's SubjectPublicKeyInfo DER, or an Ed25519 key's 32 raw
    /// octets (RFC 8463).
    pub public_key: String,
}

impl DnsRecord {
    /// The owner name, fully qualified: `"s1._domainkey.example.com."`.
    pub fn name(&self) -> String {
        format!("{}._domainkey.{}.", self.selector, self.domain)
    }

    /// The record's text: `"v=DKIM1; k=rsa; p=MIIB…"`.
    pub fn value(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.algorithm, self.public_key)
    }

    /// The value as TXT character-strings of at most 255 octets each (a 2048-bit RSA key needs two);
    /// verifiers concatenate them without separator.
    pub fn txt_strings(&self) -> Vec<String> {
        txt_strings(&self.value())
    }

    /// The record as a zone file line: `NAME IN TXT "chunk1" "chunk2"`, each character-string quoted.
    pub fn zone_line(&self) -> String {
        txt_zone_line(&self.name(), &self.value())
    }
}

/// `text` as TXT character-strings of at most 255 octets, split at character boundaries (a record
/// longer than that, such as a 2048-bit RSA key, needs several; receivers concatenate them).
pub fn txt_strings(text: &str) -> Vec<String> {
    let mut strings = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if current.len() + c.len_utf8() > MAX_TXT_STRING {
            strings.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    strings.push(current);
    strings
}

/// A zone file line publishing `text` as TXT at `owner` (a trailing dot is added when missing):
/// `owner. IN TXT "…" "…"`, each character-string of [`txt_strings`] quoted.
pub fn txt_zone_line(owner: &str, text: &str) -> String {
    let owner = owner.trim_end_matches('.');
    let strings: Vec<String> = txt_strings(text).iter().map(|s| quote(s)).collect();
    format!("{owner}. IN TXT {}", strings.join(" "))
}

/// `text` as a zone file quoted string (`"` and `\` escaped; a DKIM record has neither).
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(public_key: &str) -> DnsRecord {
        DnsRecord {
            domain: "example.com".to_owned(),
            selector: "s1".to_owned(),
            algorithm: Algorithm::Rsa,
            public_key: public_key.to_owned(),
        }
    }

    #[test]
    fn short_record_is_one_string() {
        let record = record("QUJD");
        assert_eq!(record.name(), "s1._domainkey.example.com.");
        assert_eq!(record.value(), "v=DKIM1; k=rsa; p=QUJD");
        assert_eq!(record.txt_strings(), vec!["v=DKIM1; k=rsa; p=QUJD".to_owned()]);
        assert_eq!(
            record.zone_line(),
            "s1._domainkey.example.com. IN TXT \"v=DKIM1; k=rsa; p=QUJD\""
        );
    }

    #[test]
    fn long_record_is_split_at_255_octets() {
        let record = record(&"A".repeat(600));
        let strings = record.txt_strings();
        assert_eq!(
            strings.iter().map(String::len).collect::<Vec<_>>(),
            vec![255, 255, 108]
        );
        assert_eq!(strings.concat(), record.value());
        assert_eq!(
            record.zone_line(),
            format!(
                "s1._domainkey.example.com. IN TXT \"{}\" \"{}\" \"{}\"",
                strings[0], strings[1], strings[2]
            )
        );
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
