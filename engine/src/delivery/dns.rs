//! MX routing (RFC 5321 §5.1, RFC 7505): the hosts to try for a recipient domain, in order, each with its
//! addresses.
//!
//! Lookups go through hickory-resolver. Its response cache honours record TTLs (no minimum TTL is
//! imposed: a record with TTL 0 is asked for again every time), so routing follows DNS changes as fast
//! as the zone's TTLs allow and no faster. Names are always queried fully qualified: search domains and
//! `ndots` of the system configuration never turn `example.com` into `example.com.corp.local`.
//!
//! How hickory 0.26 reports the answers that matter here (sorted by `classify`):
//! - NXDOMAIN: `NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code: NXDomain, .. }))`;
//! - NODATA (the name exists, no record of that type): the same with `response_code: NoError`;
//! - SERVFAIL, REFUSED and other error codes: `NetError::Dns(DnsError::ResponseCode(code))`;
//! - no answer in time: `NetError::Timeout`; socket errors: `NetError::Io`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::task::JoinSet;

/// Responses the resolver cache holds (one per name and type). An MX lookup uses one entry for the MX
/// set and two (A, AAAA) per host, so this covers a few thousand active destination domains.
const CACHE_SIZE: u64 = 16_384;

/// The longest a positive answer is cached, whatever its TTL says (one day, hickory's own ceiling).
const POSITIVE_MAX_TTL: Duration = Duration::from_secs(86_400);

/// The longest a negative answer (NXDOMAIN, NODATA) is cached: RFC 2308 §5 finds one to three hours
/// sensible; a domain fixed after a mistake is then seen within the hour.
const NEGATIVE_MAX_TTL: Duration = Duration::from_secs(3_600);

/// Most MX hosts of one domain that are resolved and returned: bounds the work a hostile or broken
/// zone with hundreds of MX records can cause. The hosts kept are the most preferred.
const MAX_MX_HOSTS: usize = 32;

/// One host to try, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    /// The MX exchange, lowercase ASCII (IDNs as punycode) without the trailing dot; for the implicit
    /// MX (no MX records) the domain itself; for a domain literal the literal as written (`[192.0.2.1]`).
    pub name: String,
    /// MX preference (lower is tried first); 0 for the implicit MX and for domain literals.
    pub preference: u16,
    /// The host's addresses: IPv4 first, then IPv6, each in the order the name server gave them.
    pub addresses: Vec<IpAddr>,
}

/// Why a domain (or host name) could not be routed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The domain publishes a null MX: it accepts no mail (permanent).
    #[error("null MX: {0} accepts no mail (RFC 7505)")]
    NullMx(String),
    /// The name does not exist (NXDOMAIN), or is not a valid domain name or literal (permanent).
    #[error("domain {0} does not exist")]
    NxDomain(String),
    /// The lookup failed without an answer about the name: SERVFAIL, REFUSED, timeout, network error.
    #[error("temporary DNS failure for {domain}: {reason}")]
    Temporary {
        /// The domain (or host) being looked up.
        domain: String,
        /// What went wrong, briefly (`name server answered SERVFAIL`, `timed out`).
        reason: String,
    },
    /// Mail hosts exist but none has an address (or the domain has neither MX nor address records):
    /// the caller treats this as temporary, since such zones are often being fixed.
    #[error("no address for any mail host of {0}")]
    NoAddresses(String),
}

/// Why the resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// `dns.nameservers` is empty and the system configuration could not be read.
    #[error(
        "cannot use the system resolver configuration (/etc/resolv.conf): {0}; set dns.nameservers instead"
    )]
    SystemConfig(String),
    /// `dns.nameservers` is empty and the system configuration names no name server.
    #[error("/etc/resolv.conf lists no name server; set dns.nameservers")]
    NoNameServers,
    /// hickory refused the configuration.
    #[error("cannot set up the DNS resolver: {0}")]
    Build(String),
}

/// MX and address lookups with a TTL-honouring cache. Clones share the cache and the connections.
#[derive(Clone, Debug)]
pub struct Resolver {
    /// The hickory resolver: name server pool, retries and the response cache.
    inner: TokioResolver,
}

impl Resolver {
    /// A resolver asking `nameservers` (UDP, then TCP for truncated answers), or the servers of
    /// `/etc/resolv.conf` when `nameservers` is empty. `timeout` bounds the wait for each answer and
    /// `attempts` is how many times a query is sent before the lookup fails (at least once). With the
    /// system configuration `/etc/hosts` is consulted for addresses as the system resolver would; with
    /// configured name servers every answer comes from them.
    pub fn new(
        nameservers: &[SocketAddr],
        timeout: Duration,
        attempts: usize,
    ) -> Result<Resolver, ResolverError> {
        let (servers, hosts_file) = if nameservers.is_empty() {
            (system_name_servers()?, ResolveHosts::Auto)
        } else {
            let servers = nameservers.iter().map(|address| name_server(*address)).collect();
            (servers, ResolveHosts::Never)
        };
        let config = ResolverConfig::from_parts(None, Vec::new(), servers);
        let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = options(timeout, attempts, hosts_file);
        let inner = builder
            .build()
            .map_err(|err| ResolverError::Build(err.to_string()))?;
        Ok(Resolver { inner })
    }

    /// The hickory resolver itself, for lookups of other record types (TXT, PTR) with the same name
    /// servers, options and cache.
    pub(crate) fn hickory(&self) -> &TokioResolver {
        &self.inner
    }

    /// Mail hosts for `domain` in the order to try them: by MX preference, hosts of equal preference in
    /// random order (spreading load, RFC 5321 §5.1), each with its addresses; hosts without an address
    /// are left out. A domain without MX records is its own mail host (implicit MX). `domain` may be a
    /// domain literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`), which needs no DNS.
    pub async fn mail_hosts(&self, domain: &str) -> Result<Vec<MxHost>, RouteError> {
        let domain = match parse_target(domain)? {
            Target::Literal { text, address } => {
                return Ok(vec![MxHost {
                    name: text,
                    preference: 0,
                    addresses: vec![address],
                }]);
            }
            Target::Domain(domain) => domain,
        };
        let fqdn = fqdn(&domain)?;
        let records = match self.inner.mx_lookup(fqdn.clone()).await {
            Ok(lookup) => mx_records(&lookup),
            Err(err) => match classify(&err) {
                Failure::NxDomain => return Err(RouteError::NxDomain(domain)),
                Failure::NoData => Vec::new(),
                Failure::Temporary(reason) => return Err(RouteError::Temporary { domain, reason }),
            },
        };
        if records.is_empty() {
            return self.implicit_mx(domain, fqdn).await;
        }
        match classify_mx(records) {
            MxAnswer::Null => Err(RouteError::NullMx(domain)),
            MxAnswer::Exchanges(exchanges) => {
                let ordered = order_exchanges(exchanges, &mut rand::rng());
                self.resolve_exchanges(domain, ordered).await
            }
        }
    }

    /// Addresses of one host (A, then AAAA), e.g. a smarthost given by name. An IP address or a domain
    /// literal is returned as it is, without DNS.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, RouteError> {
        if let Ok(address) = host.trim().parse::<IpAddr>() {
            return Ok(vec![address]);
        }
        match parse_target(host)? {
            Target::Literal { address, .. } => Ok(vec![address]),
            Target::Domain(host) => {
                let fqdn = fqdn(&host)?;
                host_addresses(&self.inner, &host, fqdn).await
            }
        }
    }

    /// The implicit MX (RFC 5321 §5.1): the domain's own addresses as one host of preference 0. A
    /// domain with neither MX nor address records takes no mail: [`RouteError::NoAddresses`].
    async fn implicit_mx(&self, domain: String, fqdn: Name) -> Result<Vec<MxHost>, RouteError> {
        match host_addresses(&self.inner, &domain, fqdn).await {
            Ok(addresses) => Ok(vec![MxHost {
                name: domain,
                preference: 0,
                addresses,
            }]),
            Err(err @ RouteError::Temporary { .. }) => Err(err),
            Err(_) => Err(RouteError::NoAddresses(domain)),
        }
    }

    /// Resolves the ordered exchanges in parallel and keeps, in order, those with addresses. When none
    /// has one: [`RouteError::Temporary`] if some lookup failed temporarily, else `NoAddresses`.
    async fn resolve_exchanges(
        &self,
        domain: String,
        exchanges: Vec<(u16, String)>,
    ) -> Result<Vec<MxHost>, RouteError> {
        let mut lookups = JoinSet::new();
        for (index, (_, exchange)) in exchanges.iter().enumerate() {
            let resolver = self.inner.clone();
            let exchange = exchange.clone();
            lookups.spawn(async move {
                let result = match fqdn(&exchange) {
                    Ok(fqdn) => host_addresses(&resolver, &exchange, fqdn).await,
                    Err(err) => Err(err),
                };
                (index, result)
            });
        }
        let mut results: Vec<Option<Result<Vec<IpAddr>, RouteError>>> = vec![None; exchanges.len()];
        while let Some(joined) = lookups.join_next().await {
            if let Ok((index, result)) = joined
                && let Some(slot) = results.get_mut(index)
            {
                *slot = Some(result);
            }
        }
        let mut hosts = Vec::with_capacity(exchanges.len());
        let mut temporary = None;
        for ((preference, name), result) in exchanges.into_iter().zip(results) {
            match result {
                Some(Ok(addresses)) => hosts.push(MxHost {
                    name,
                    preference,
                    addresses,
                }),
                Some(Err(RouteError::Temporary { reason, .. })) => {
                    temporary.get_or_insert_with(|| format!("{name}: {reason}"));
                }
                Some(Err(_)) => {}
                None => {
                    temporary.get_or_insert_with(|| format!("{name}: lookup task failed"));
                }
            }
        }
        match (hosts.is_empty(), temporary) {
            (false, _) => Ok(hosts),
            (true, Some(reason)) => Err(RouteError::Temporary { domain, reason }),
            (true, None) => Err(RouteError::NoAddresses(domain)),
        }
    }
}

/// The servers named in `/etc/resolv.conf` (its search list and options are not used).
fn system_name_servers() -> Result<Vec<NameServerConfig>, ResolverError> {
    let (config, _) = hickory_resolver::system_conf::read_system_conf()
        .map_err(|err| ResolverError::SystemConfig(err.to_string()))?;
    if config.name_servers.is_empty() {
        return Err(ResolverError::NoNameServers);
    }
    Ok(config.name_servers)
}

/// A name server at `address`, over UDP and (for truncated answers) TCP on the same port.
fn name_server(address: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = address.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = address.port();
    NameServerConfig::new(address.ip(), true, vec![udp, tcp])
}

/// Resolver options: fully qualified names only, record TTLs honoured (no minimum), bounded negative
/// caching, `attempts` sends per query.
fn options(timeout: Duration, attempts: usize, hosts_file: ResolveHosts) -> ResolverOpts {
    let mut options = ResolverOpts::default();
    options.timeout = timeout;
    // hickory counts retries after the first send.
    options.attempts = attempts.saturating_sub(1);
    options.ndots = 0;
    options.cache_size = CACHE_SIZE;
    options.positive_min_ttl = Some(Duration::ZERO);
    options.positive_max_ttl = Some(POSITIVE_MAX_TTL);
    options.negative_min_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(NEGATIVE_MAX_TTL);
    // CNAME records are not wanted in the answers; the records they lead to are.
    options.preserve_intermediates = false;
    options.use_hosts_file = hosts_file;
    options
}

/// A domain argument, normalised.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A domain literal (RFC 5321 §4.1.3).
    Literal {
        /// The literal as written, lowercased (`[192.0.2.1]`, `[ipv6:2001:db8::1]`).
        text: String,
        /// The address it names.
        address: IpAddr,
    },
    /// A domain name: trimmed, lowercase, without the trailing dot.
    Domain(String),
}

/// Normalises `input` and tells a domain literal from a domain name. A malformed literal or an empty
/// name cannot exist in DNS: [`RouteError::NxDomain`].
fn parse_target(input: &str) -> Result<Target, RouteError> {
    let text = normalise(input);
    if let Some(inner) = text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        return match literal_address(inner) {
            Some(address) => Ok(Target::Literal { text, address }),
            None => Err(RouteError::NxDomain(text)),
        };
    }
    if text.is_empty() {
        return Err(RouteError::NxDomain(text));
    }
    Ok(Target::Domain(text))
}

/// Trimmed, lowercase, without one trailing dot.
fn normalise(input: &str) -> String {
    let trimmed = input.trim();
    trimmed.strip_suffix('.').unwrap_or(trimmed).to_lowercase()
}

/// The address inside a domain literal's brackets: a dotted IPv4 address or `IPv6:` and an IPv6
/// address (RFC 5321 §4.1.3; the tag is matched case-insensitively, `inner` is lowercase).
fn literal_address(inner: &str) -> Option<IpAddr> {
    match inner.strip_prefix("ipv6:") {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => inner.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// The fully qualified DNS name of a normalised domain (IDNs to punycode); a name DNS cannot hold is
/// [`RouteError::NxDomain`].
pub(crate) fn fqdn(domain: &str) -> Result<Name, RouteError> {
    let parsed = if domain.is_ascii() {
        Name::from_ascii(domain)
    } else {
        Name::from_utf8(domain)
    };
    match parsed {
        Ok(mut name) if !name.is_root() => {
            name.set_fqdn(true);
            Ok(name)
        }
        _ => Err(RouteError::NxDomain(domain.to_string())),
    }
}

/// The MX records of an answer as (preference, exchange); the root exchange is `"."`, other names are
/// normalised ASCII.
fn mx_records(lookup: &Lookup) -> Vec<(u16, String)> {
    lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::MX(mx) if mx.exchange.is_root() => Some((mx.preference, ".".to_string())),
            RData::MX(mx) => Some((mx.preference, normalise(&mx.exchange.to_ascii()))),
            _ => None,
        })
        .collect()
}

/// What a domain's MX records say.
#[derive(Debug, PartialEq, Eq)]
enum MxAnswer {
    /// The null MX (RFC 7505): the only record, preference 0, exchange the root.
    Null,
    /// The exchanges to try (possibly none), each once with its lowest preference, root exchanges
    /// dropped (RFC 7505 forbids mixing a null MX with others; the others are used).
    Exchanges(Vec<(u16, String)>),
}

/// Null MX detection and clean-up of an MX set.
fn classify_mx(records: Vec<(u16, String)>) -> MxAnswer {
    if let [(0, exchange)] = records.as_slice()
        && exchange == "."
    {
        return MxAnswer::Null;
    }
    let mut exchanges: Vec<(u16, String)> = records.into_iter().filter(|(_, name)| name != ".").collect();
    exchanges.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    exchanges.dedup_by(|later, kept| later.1 == kept.1);
    MxAnswer::Exchanges(exchanges)
}

/// Orders exchanges by preference, those of equal preference in random order, keeping at most
/// [`MAX_MX_HOSTS`].
fn order_exchanges<R: Rng + ?Sized>(mut exchanges: Vec<(u16, String)>, rng: &mut R) -> Vec<(u16, String)> {
    exchanges.shuffle(rng);
    // A stable sort keeps the shuffled order within each preference.
    exchanges.sort_by_key(|(preference, _)| *preference);
    exchanges.truncate(MAX_MX_HOSTS);
    exchanges
}

/// How a failed lookup ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// NOERROR without records of the asked type: the name exists.
    NoData,
    /// No usable answer; the reason, briefly.
    Temporary(String),
}

/// Sorts a hickory error into NXDOMAIN, NODATA and temporary failures.
pub(crate) fn classify(err: &NetError) -> Failure {
    match err {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NXDomain,
            ..
        })) => Failure::NxDomain,
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NoError,
            ..
        })) => Failure::NoData,
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. }))
        | NetError::Dns(DnsError::ResponseCode(response_code)) => {
            Failure::Temporary(format!("name server answered {}", rcode_name(*response_code)))
        }
        NetError::Timeout => Failure::Temporary("timed out".to_string()),
        NetError::Io(err) => Failure::Temporary(format!("network error: {err}")),
        NetError::NoConnections => Failure::Temporary("no name server reachable".to_string()),
        other => Failure::Temporary(other.to_string()),
    }
}

/// The usual mnemonic of a response code (`SERVFAIL`), or its number.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".to_string(),
        ResponseCode::Refused => "REFUSED".to_string(),
        ResponseCode::FormErr => "FORMERR".to_string(),
        ResponseCode::NotImp => "NOTIMP".to_string(),
        other => format!("response code {}", u16::from(other)),
    }
}

/// The A and AAAA addresses of `host` (looked up in parallel), IPv4 first.
async fn host_addresses(resolver: &TokioResolver, host: &str, fqdn: Name) -> Result<Vec<IpAddr>, RouteError> {
    let (v4, v6) = tokio::join!(resolver.ipv4_lookup(fqdn.clone()), resolver.ipv6_lookup(fqdn));
    combine(host, [address_outcome(v4), address_outcome(v6)])
}

/// The addresses in one A or AAAA lookup, or how it failed (an answer without addresses is NODATA).
fn address_outcome(result: Result<Lookup, NetError>) -> Result<Vec<IpAddr>, Failure> {
    let lookup = result.map_err(|err| classify(&err))?;
    let addresses: Vec<IpAddr> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    if addresses.is_empty() {
        Err(Failure::NoData)
    } else {
        Ok(addresses)
    }
}

/// Joins the A and AAAA outcomes of `host`: any addresses win; else NXDOMAIN (the name does not exist)
/// before a temporary failure (an address may exist) before NODATA (no address).
fn combine(host: &str, outcomes: [Result<Vec<IpAddr>, Failure>; 2]) -> Result<Vec<IpAddr>, RouteError> {
    let mut addresses = Vec::new();
    let mut nxdomain = false;
    let mut temporary = None;
    for outcome in outcomes {
        match outcome {
            Ok(found) => {
                for address in found {
                    if !addresses.contains(&address) {
                        addresses.push(address);
                    }
                }
            }
            Err(Failure::NxDomain) => nxdomain = true,
            Err(Failure::Temporary(reason)) => {
                temporary.get_or_insert(reason);
            }
            Err(Failure::NoData) => {}
        }
    }
    if !addresses.is_empty() {
        return Ok(addresses);
    }
    match (nxdomain, temporary) {
        (true, _) => Err(RouteError::NxDomain(host.to_string())),
        (false, Some(reason)) => Err(RouteError::Temporary {
            domain: host.to_string(),
            reason,
        }),
        (false, None) => Err(RouteError::NoAddresses(host.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::Query;
    use hickory_resolver::proto::rr::RecordType;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// (preference, exchange) pairs from literals.
    fn mx(records: &[(u16, &str)]) -> Vec<(u16, String)> {
        records.iter().map(|(p, n)| (*p, n.to_string())).collect()
    }

    #[test]
    fn normalises_case_whitespace_and_the_trailing_dot() {
        assert_eq!(
            parse_target(" Example.COM. "),
            Ok(Target::Domain("example.com".into()))
        );
        assert_eq!(
            parse_target("example.com"),
            Ok(Target::Domain("example.com".into()))
        );
        assert_eq!(
            parse_target("Bücher.Example"),
            Ok(Target::Domain("bücher.example".into()))
        );
    }

    #[test]
    fn empty_domains_do_not_exist() {
        for input in ["", " ", "."] {
            assert_eq!(
                parse_target(input),
                Err(RouteError::NxDomain(String::new())),
                "{input:?}"
            );
        }
    }

    #[test]
    fn domain_literals_name_their_address() {
        let cases: [(&str, &str, IpAddr); 4] = [
            ("[127.0.0.1]", "[127.0.0.1]", IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ("[192.0.2.7].", "[192.0.2.7]", "192.0.2.7".parse().unwrap()),
            ("[IPv6:::1]", "[ipv6:::1]", IpAddr::V6(Ipv6Addr::LOCALHOST)),
            (
                "[ipv6:2001:DB8::1]",
                "[ipv6:2001:db8::1]",
                "2001:db8::1".parse().unwrap(),
            ),
        ];
        for (input, text, address) in cases {
            let expected = Target::Literal {
                text: text.to_string(),
                address,
            };
            assert_eq!(parse_target(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn malformed_domain_literals_do_not_exist() {
        for input in [
            "[]",
            "[300.1.1.1]",
            "[::1]",
            "[IPv6:127.0.0.1]",
            "[1.2.3]",
            "[x:1.2.3.4]",
        ] {
            let err = parse_target(input).expect_err(input);
            assert!(matches!(err, RouteError::NxDomain(_)), "{input}: {err:?}");
        }
    }

    #[test]
    fn names_dns_cannot_hold_do_not_exist() {
        assert!(matches!(fqdn("a..b"), Err(RouteError::NxDomain(_))));
        assert!(matches!(fqdn(&"x".repeat(64)), Err(RouteError::NxDomain(_))));
        let name = fqdn("bücher.example").expect("IDN");
        assert_eq!(name.to_ascii(), "xn--bcher-kva.example.");
        assert!(fqdn("mail.example.com").expect("name").is_fqdn());
    }

    #[test]
    fn a_lone_root_exchange_of_preference_0_is_a_null_mx() {
        assert_eq!(classify_mx(mx(&[(0, ".")])), MxAnswer::Null);
    }

    #[test]
    fn root_exchanges_beside_others_or_with_a_preference_are_not_a_null_mx() {
        assert_eq!(
            classify_mx(mx(&[(0, "."), (10, "mx.example.com")])),
            MxAnswer::Exchanges(mx(&[(10, "mx.example.com")]))
        );
        assert_eq!(classify_mx(mx(&[(10, ".")])), MxAnswer::Exchanges(Vec::new()));
    }

    #[test]
    fn an_exchange_listed_twice_keeps_its_lowest_preference() {
        assert_eq!(
            classify_mx(mx(&[(20, "b.example"), (10, "a.example"), (5, "b.example")])),
            MxAnswer::Exchanges(mx(&[(10, "a.example"), (5, "b.example")]))
        );
    }

    #[test]
    fn exchanges_are_ordered_by_preference() {
        let records = mx(&[(30, "c"), (10, "a"), (20, "b")]);
        for seed in 0..20 {
            let ordered = order_exchanges(records.clone(), &mut StdRng::seed_from_u64(seed));
            assert_eq!(ordered, mx(&[(10, "a"), (20, "b"), (30, "c")]), "seed {seed}");
        }
    }

    #[test]
    fn equal_preferences_are_shuffled() {
        let records = mx(&[(20, "z"), (10, "a"), (10, "b"), (10, "c")]);
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let ordered = order_exchanges(records.clone(), &mut StdRng::seed_from_u64(seed));
            assert_eq!(ordered.last(), Some(&(20, "z".to_string())), "seed {seed}");
            assert!(
                ordered[..3].iter().all(|(p, _)| *p == 10),
                "seed {seed}: {ordered:?}"
            );
            firsts.insert(ordered[0].1.clone());
        }
        assert_eq!(
            firsts.len(),
            3,
            "every host of preference 10 comes first sometimes: {firsts:?}"
        );
    }

    #[test]
    fn at_most_max_mx_hosts_are_kept_the_most_preferred() {
        let records: Vec<(u16, String)> = (0..100u16).map(|i| (i, format!("mx{i}"))).collect();
        let ordered = order_exchanges(records, &mut StdRng::seed_from_u64(1));
        assert_eq!(ordered.len(), MAX_MX_HOSTS);
        assert_eq!(ordered.last().map(|r| r.0), Some(MAX_MX_HOSTS as u16 - 1));
    }

    /// A NoRecordsFound error as hickory builds it from a response with `code`.
    fn no_records(code: ResponseCode) -> NetError {
        let query = Query::query(Name::from_ascii("example.com.").unwrap(), RecordType::MX);
        NoRecords::new(query, code).into()
    }

    #[test]
    fn hickory_errors_are_sorted_into_nxdomain_nodata_and_temporary() {
        assert_eq!(classify(&no_records(ResponseCode::NXDomain)), Failure::NxDomain);
        assert_eq!(classify(&no_records(ResponseCode::NoError)), Failure::NoData);
        let servfail = NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail));
        assert_eq!(
            classify(&servfail),
            Failure::Temporary("name server answered SERVFAIL".into())
        );
        let refused = NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused));
        assert_eq!(
            classify(&refused),
            Failure::Temporary("name server answered REFUSED".into())
        );
        assert_eq!(
            classify(&NetError::Timeout),
            Failure::Temporary("timed out".into())
        );
        let io = NetError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(classify(&io), Failure::Temporary(reason) if reason.starts_with("network error")));
    }

    #[test]
    fn address_outcomes_combine_ipv4_first() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(combine("h", [Ok(vec![v4]), Ok(vec![v6])]), Ok(vec![v4, v6]));
        assert_eq!(combine("h", [Err(Failure::NoData), Ok(vec![v6])]), Ok(vec![v6]));
        let timeout = Failure::Temporary("timed out".into());
        assert_eq!(combine("h", [Ok(vec![v4]), Err(timeout)]), Ok(vec![v4]));
    }

    #[test]
    fn address_failures_combine_nxdomain_then_temporary_then_no_addresses() {
        let temporary = || Failure::Temporary("timed out".into());
        assert_eq!(
            combine("h", [Err(Failure::NxDomain), Err(temporary())]),
            Err(RouteError::NxDomain("h".into()))
        );
        assert_eq!(
            combine("h", [Err(Failure::NoData), Err(temporary())]),
            Err(RouteError::Temporary {
                domain: "h".into(),
                reason: "timed out".into()
            })
        );
        assert_eq!(
            combine("h", [Err(Failure::NoData), Err(Failure::NoData)]),
            Err(RouteError::NoAddresses("h".into()))
        );
    }

    #[test]
    fn name_servers_use_the_configured_port_for_udp_and_tcp() {
        let server = name_server("127.0.0.1:5353".parse().unwrap());
        assert_eq!(server.ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let ports: Vec<u16> = server.connections.iter().map(|c| c.port).collect();
        assert_eq!(ports, vec![5353, 5353]);
    }

    #[test]
    fn a_resolver_is_built_from_configured_name_servers_without_a_runtime() {
        let servers = ["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()];
        assert!(Resolver::new(&servers, Duration::from_secs(1), 2).is_ok());
    }

    #[test]
    fn attempts_count_sends_and_ttls_are_not_raised() {
        let options = options(Duration::from_millis(700), 3, ResolveHosts::Never);
        assert_eq!(options.timeout, Duration::from_millis(700));
        assert_eq!(options.attempts, 2);
        assert_eq!(options.positive_min_ttl, Some(Duration::ZERO));
        assert_eq!(options.negative_min_ttl, Some(Duration::ZERO));
        assert_eq!(
            super::options(Duration::from_secs(1), 0, ResolveHosts::Never).attempts,
            0
        );
    }
}
