//! The DNS lookups of the domain checks, behind a small trait so that the SPF evaluator and the checks
//! can be unit-tested with an in-memory table; [`HickoryDns`] answers from the configured name servers.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::lookup::Lookup;
use hickory_resolver::proto::rr::{Name, RData, RecordType};

use crate::delivery::dns::{Failure, Resolver, classify, fqdn};

/// How a lookup ended without records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// NOERROR without records of the asked type.
    NoData,
    /// No usable answer (SERVFAIL, REFUSED, timeout, network error, a name DNS cannot hold): why.
    Failed(String),
}

impl LookupError {
    /// NXDOMAIN or NODATA: the name has no such record (as opposed to a failed lookup).
    pub(crate) fn is_void(&self) -> bool {
        matches!(self, LookupError::NxDomain | LookupError::NoData)
    }
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::NxDomain => f.write_str("no such name (NXDOMAIN)"),
            LookupError::NoData => f.write_str("no record of that type"),
            LookupError::Failed(reason) => f.write_str(reason),
        }
    }
}

/// The answer to one lookup.
pub(crate) type Answer<T> = Result<T, LookupError>;

/// The lookups the checks make. Names are given without the trailing dot; answers are lowercase names
/// without the trailing dot.
pub(crate) trait Dns: Sync {
    /// The TXT records of `name`, each record's strings concatenated (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
    fn txt(&self, name: &str) -> impl Future<Output = Answer<Vec<String>>> + Send;

    /// The A (`v6` false) or AAAA (`v6` true) addresses of `name`.
    fn addresses(&self, name: &str, v6: bool) -> impl Future<Output = Answer<Vec<IpAddr>>> + Send;

    /// The MX records of `name` as (preference, exchange); the root exchange is `"."`.
    fn mx(&self, name: &str) -> impl Future<Output = Answer<Vec<(u16, String)>>> + Send;

    /// The PTR names of `ip` (its in-addr.arpa / ip6.arpa name).
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = Answer<Vec<String>>> + Send;
}

/// [`Dns`] over the engine's resolver (the config's name servers, timeout and attempts).
pub(crate) struct HickoryDns {
    /// The resolver (only its hickory part is used).
    resolver: Resolver,
}

impl HickoryDns {
    /// Lookups through `resolver`.
    pub(crate) fn new(resolver: Resolver) -> HickoryDns {
        HickoryDns { resolver }
    }

    /// One lookup of `record_type` at `name`, classified.
    async fn lookup(&self, name: Name, record_type: RecordType) -> Answer<Lookup> {
        let resolver: &TokioResolver = self.resolver.hickory();
        resolver
            .lookup(name, record_type)
            .await
            .map_err(|err| match classify(&err) {
                Failure::NxDomain => LookupError::NxDomain,
                Failure::NoData => LookupError::NoData,
                Failure::Temporary(reason) => LookupError::Failed(reason),
            })
    }

    /// The records of `record_type` at `name`, mapped by `pick`; an answer without any is NODATA.
    async fn records<T>(
        &self,
        name: &str,
        record_type: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Answer<Vec<T>> {
        let name =
            fqdn(name).map_err(|_| LookupError::Failed(format!("{name:?} is not a valid DNS name")))?;
        let lookup = self.lookup(name, record_type).await?;
        let found: Vec<T> = lookup
            .answers()
            .iter()
            .filter_map(|record| pick(&record.data))
            .collect();
        if found.is_empty() {
            Err(LookupError::NoData)
        } else {
            Ok(found)
        }
    }
}

impl Dns for HickoryDns {
    async fn txt(&self, name: &str) -> Answer<Vec<String>> {
        self.records(name, RecordType::TXT, |data| match data {
            RData::TXT(txt) => {
                let bytes: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|part| part.iter().copied())
                    .collect();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => None,
        })
        .await
    }

    async fn addresses(&self, name: &str, v6: bool) -> Answer<Vec<IpAddr>> {
        let record_type = if v6 { RecordType::AAAA } else { RecordType::A };
        self.records(name, record_type, |data| match data {
            RData::A(a) if !v6 => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) if v6 => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .await
    }

    async fn mx(&self, name: &str) -> Answer<Vec<(u16, String)>> {
        self.records(name, RecordType::MX, |data| match data {
            RData::MX(mx) if mx.exchange.is_root() => Some((mx.preference, ".".to_string())),
            RData::MX(mx) => Some((mx.preference, normalise(&mx.exchange.to_ascii()))),
            _ => None,
        })
        .await
    }

    async fn ptr(&self, ip: IpAddr) -> Answer<Vec<String>> {
        let mut name = Name::from(ip);
        name.set_fqdn(true);
        let lookup = self.lookup(name, RecordType::PTR).await?;
        let names: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::PTR(ptr) => Some(normalise(&ptr.0.to_ascii())),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            Err(LookupError::NoData)
        } else {
            Ok(names)
        }
    }
}

/// A name as the checks compare it: trimmed, lowercase, without the trailing dot.
pub(crate) fn normalise(name: &str) -> String {
    let trimmed = name.trim();
    trimmed.strip_suffix('.').unwrap_or(trimmed).to_ascii_lowercase()
}

/// The reverse-lookup name of `ip` (`4.3.2.1.in-addr.arpa`), for messages.
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    normalise(&Name::from(ip).to_ascii())
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory [`Dns`] for unit tests.

    use std::collections::HashMap;
    use std::net::IpAddr;

    use super::{Answer, Dns, LookupError, normalise, reverse_name};

    /// Records by (lowercase name, type); a name with no entry at all is NXDOMAIN, a name with entries
    /// of other types only is NODATA; `failing` names fail.
    #[derive(Default)]
    pub(crate) struct FakeDns {
        /// TXT records.
        pub(crate) txt: HashMap<String, Vec<String>>,
        /// A and AAAA records.
        pub(crate) addresses: HashMap<String, Vec<IpAddr>>,
        /// MX records.
        pub(crate) mx: HashMap<String, Vec<(u16, String)>>,
        /// PTR records by reverse name.
        pub(crate) ptr: HashMap<String, Vec<String>>,
        /// Names whose lookups fail (SERVFAIL).
        pub(crate) failing: Vec<String>,
    }

    impl FakeDns {
        /// Adds a TXT record.
        pub(crate) fn with_txt(mut self, name: &str, text: &str) -> FakeDns {
            self.txt
                .entry(normalise(name))
                .or_default()
                .push(text.to_string());
            self
        }

        /// Adds an address record.
        pub(crate) fn with_address(mut self, name: &str, ip: &str) -> FakeDns {
            let ip = ip.parse().expect("test address");
            self.addresses.entry(normalise(name)).or_default().push(ip);
            self
        }

        /// Adds an MX record.
        pub(crate) fn with_mx(mut self, name: &str, preference: u16, exchange: &str) -> FakeDns {
            let exchange = if exchange == "." {
                ".".to_string()
            } else {
                normalise(exchange)
            };
            self.mx
                .entry(normalise(name))
                .or_default()
                .push((preference, exchange));
            self
        }

        /// Makes lookups of `name` fail.
        pub(crate) fn with_failure(mut self, name: &str) -> FakeDns {
            self.failing.push(normalise(name));
            self
        }

        /// The answer for `name` from `table`.
        fn answer<T: Clone>(&self, name: &str, pick: impl Fn(&FakeDns) -> Option<&Vec<T>>) -> Answer<Vec<T>> {
            let name = normalise(name);
            if self.failing.contains(&name) {
                return Err(LookupError::Failed("name server answered SERVFAIL".to_string()));
            }
            if let Some(found) = pick(self) {
                return Ok(found.clone());
            }
            let exists = self.txt.contains_key(&name)
                || self.addresses.contains_key(&name)
                || self.mx.contains_key(&name)
                || self.ptr.contains_key(&name);
            Err(if exists {
                LookupError::NoData
            } else {
                LookupError::NxDomain
            })
        }
    }

    impl Dns for FakeDns {
        async fn txt(&self, name: &str) -> Answer<Vec<String>> {
            let key = normalise(name);
            self.answer(name, |dns| dns.txt.get(&key))
        }

        async fn addresses(&self, name: &str, v6: bool) -> Answer<Vec<IpAddr>> {
            let key = normalise(name);
            let found = self.answer(name, |dns| dns.addresses.get(&key))?;
            let found: Vec<IpAddr> = found.into_iter().filter(|ip| ip.is_ipv6() == v6).collect();
            if found.is_empty() {
                Err(LookupError::NoData)
            } else {
                Ok(found)
            }
        }

        async fn mx(&self, name: &str) -> Answer<Vec<(u16, String)>> {
            let key = normalise(name);
            self.answer(name, |dns| dns.mx.get(&key))
        }

        async fn ptr(&self, ip: IpAddr) -> Answer<Vec<String>> {
            let key = reverse_name(ip);
            self.answer(&key, |dns| dns.ptr.get(&key))
        }
    }
}
