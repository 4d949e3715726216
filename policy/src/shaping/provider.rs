//! Which provider runs a destination: by the suffix of its MX host names.
//!
//! gmail.com and a Google Workspace domain both have MX hosts under `google.com`, so both belong to
//! `google`, share its limits and its reply rules. Suffixes match at label boundaries only
//! (`google.com` matches `aspmx.l.google.com` and `google.com`, never `notgoogle.com`), and the longest
//! matching suffix wins across providers, so a specific entry can carve a zone out of a broader one.
//!
//! A lookup walks the host's labels from the full name down and probes a hash map at each dot: a few
//! hash lookups per host, whatever the number of providers.

use std::collections::HashMap;

/// The provider name for destinations that match no suffix.
pub const OTHER_PROVIDER: &str = "other";

/// Provider names by MX host suffix.
#[derive(Clone, Debug, Default)]
pub struct ProviderTable {
    /// Normalised suffix (lowercase, no leading or trailing dot) → index into `names`.
    suffixes: HashMap<String, usize>,
    /// Provider names, in input order.
    names: Vec<String>,
}

impl ProviderTable {
    /// A table from (provider name, MX host suffixes). Suffixes are lowercased, a leading dot is
    /// optional; empty ones are ignored. A suffix listed by two providers belongs to the first.
    pub fn new(providers: Vec<(String, Vec<String>)>) -> ProviderTable {
        let mut table = ProviderTable::default();
        for (name, suffixes) in providers {
            let index = table.names.len();
            table.names.push(name);
            for suffix in suffixes {
                let normalised = normalise(&suffix);
                if !normalised.is_empty() {
                    table.suffixes.entry(normalised).or_insert(index);
                }
            }
        }
        table
    }

    /// The provider of the first host in `mx_hosts` (most preferred first) that matches a suffix;
    /// [`OTHER_PROVIDER`] when none does. Case and a trailing dot in host names are ignored.
    pub fn provider_of(&self, mx_hosts: &[&str]) -> &str {
        mx_hosts
            .iter()
            .find_map(|host| self.lookup(host))
            .map_or(OTHER_PROVIDER, |index| self.names[index].as_str())
    }

    /// The provider index of the longest suffix of `host` in the table.
    fn lookup(&self, host: &str) -> Option<usize> {
        let host = normalise(host);
        let mut rest = host.as_str();
        loop {
            if let Some(&index) = self.suffixes.get(rest) {
                return Some(index);
            }
            let (_, parent) = rest.split_once('.')?;
            rest = parent;
        }
    }
}

/// Lowercase, without surrounding whitespace and leading/trailing dots.
fn normalise(name: &str) -> String {
    name.trim().trim_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ProviderTable {
        ProviderTable::new(vec![
            (
                "google".into(),
                vec![".google.com".into(), "GoogleMail.com".into()],
            ),
            (
                "yahoo".into(),
                vec!["yahoodns.net.".into(), "".into(), ".".into()],
            ),
            ("microsoft".into(), vec!["outlook.com".into()]),
            // A more specific zone inside another provider's: the longest suffix wins.
            ("special".into(), vec!["eu.protection.outlook.com".into()]),
            ("late".into(), vec!["google.com".into()]), // duplicate: the first provider keeps it
        ])
    }

    #[test]
    fn lookup_table() {
        let t = table();
        // (MX hosts in preference order, provider)
        let cases: &[(&[&str], &str)] = &[
            (&["aspmx.l.google.com"], "google"),
            (&["google.com"], "google"),
            (&["ASPMX.L.Google.COM."], "google"),
            (&["gmail-smtp-in.l.googlemail.com"], "google"),
            (&["notgoogle.com"], "other"),
            (&["google.com.evil.example"], "other"),
            (&["mta5.am0.yahoodns.net"], "yahoo"),
            (&["example-com.mail.protection.outlook.com"], "microsoft"),
            (&["example-com.eu.protection.outlook.com"], "special"),
            (&["mx.example.org", "alt1.aspmx.l.google.com"], "google"), // first host that matches
            (&["mx.example.org", "mx2.example.org"], "other"),
            (&[], "other"),
            (&[""], "other"),
            (&["."], "other"),
            (&["com"], "other"),
        ];
        for &(hosts, expected) in cases {
            assert_eq!(t.provider_of(hosts), expected, "{hosts:?}");
        }
    }

    #[test]
    fn ten_thousand_destinations_resolve_among_a_thousand_providers() {
        let mut providers = Vec::new();
        for n in 0..1_000 {
            providers.push((
                format!("p{n}"),
                vec![format!("mx{n}.example"), format!("z{n}.net")],
            ));
        }
        let t = ProviderTable::new(providers);
        let hosts: Vec<String> = (0..10_000)
            .map(|n| format!("a.b.c.mx{}.example", n % 2_000))
            .collect();
        let matched = hosts
            .iter()
            .filter(|host| t.provider_of(&[host.as_str()]) != OTHER_PROVIDER)
            .count();
        assert_eq!(matched, 5_000);
    }
}
