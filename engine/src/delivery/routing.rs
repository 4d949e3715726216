//! From a recipient domain to its site: the MX hosts (or the smarthost) with their addresses, named
//! by the sorted set of host names so that domains hosted on the same MX hosts share one ready queue.
//!
//! Answers are kept for [`ROUTE_CACHE`] (the resolver underneath honours the DNS TTLs), so the driver
//! routes most messages without an await; a domain not in the cache is looked up once however many
//! messages wait for it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use penguin_config::RelayHost;
use penguin_policy::NetworkFailure;

use super::dns::{Resolver, RouteError};
use super::scheduler::{Route, RouteHost};

/// How long a domain's route is reused before the resolver is asked again (its cache honours the
/// records' TTLs; this only saves the lookups in between).
pub const ROUTE_CACHE: Duration = Duration::from_secs(5);

/// Most domains kept in the cache (the least recently refreshed are dropped beyond it).
const MAX_CACHED: usize = 50_000;

/// Why a domain cannot be routed: the failure class and its description.
pub type RouteFailure = (NetworkFailure, String);

/// Routes domains.
pub struct Router {
    /// DNS.
    resolver: Resolver,
    /// The smarthost, if every message goes there.
    relay: Option<RelayHost>,
    /// Remote SMTP port for MX hosts.
    port: u16,
    /// domain → (route, fetched at).
    cache: Mutex<HashMap<String, (Arc<Route>, Instant)>>,
}

impl Router {
    /// A router over `resolver`.
    pub fn new(resolver: Resolver, relay: Option<RelayHost>, port: u16) -> Router {
        Router {
            resolver,
            relay,
            port,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The cached route of `domain`, if fresh.
    pub fn cached(&self, domain: &str) -> Option<Arc<Route>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let key = if self.relay.is_some() { "" } else { domain };
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < ROUTE_CACHE)
            .map(|(route, _)| Arc::clone(route))
    }

    /// Looks `domain` up and caches the answer.
    pub async fn resolve(&self, domain: &str) -> Result<Arc<Route>, RouteFailure> {
        let route = Arc::new(self.lookup(domain).await?);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, at)| at.elapsed() < ROUTE_CACHE);
        }
        let key = if self.relay.is_some() {
            String::new()
        } else {
            domain.to_string()
        };
        cache.insert(key, (Arc::clone(&route), Instant::now()));
        Ok(route)
    }

    /// The route of `domain`: the smarthost, or the MX hosts in preference order.
    async fn lookup(&self, domain: &str) -> Result<Route, RouteFailure> {
        if let Some(relay) = &self.relay {
            let addresses = match relay.host.parse() {
                Ok(ip) => vec![ip],
                Err(_) => self
                    .resolver
                    .addresses(&relay.host)
                    .await
                    .map_err(route_failure)?,
            };
            return Ok(Route {
                site: relay.to_string(),
                hosts: vec![RouteHost {
                    name: relay.host.clone(),
                    preference: 0,
                    addresses: addresses
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, relay.port))
                        .collect(),
                }],
            });
        }
        let hosts = self.resolver.mail_hosts(domain).await.map_err(route_failure)?;
        let mut names: Vec<&str> = hosts.iter().map(|host| host.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let site = names.join(",");
        let port = self.port;
        Ok(Route {
            site,
            hosts: hosts
                .into_iter()
                .map(|host| RouteHost {
                    name: host.name,
                    preference: host.preference,
                    addresses: host
                        .addresses
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect(),
                })
                .collect(),
        })
    }
}

/// The failure a routing error stands for.
fn route_failure(error: RouteError) -> RouteFailure {
    let failure = match &error {
        RouteError::NullMx(_) => NetworkFailure::NullMx,
        RouteError::NxDomain(_) => NetworkFailure::DnsNxDomain,
        RouteError::Temporary { .. } => NetworkFailure::DnsTemporary,
        RouteError::NoAddresses(_) => NetworkFailure::NoAddresses,
    };
    (failure, error.to_string())
}

/// The addresses to try for a route, in order: hosts by preference, hosts of equal preference
/// shuffled (each connection spreads over them, RFC 5321 §5.1), each host's addresses in order.
pub fn targets(route: &Route) -> Vec<(String, SocketAddr)> {
    use rand::seq::SliceRandom;
    let mut hosts: Vec<&RouteHost> = route.hosts.iter().collect();
    hosts.shuffle(&mut rand::rng());
    hosts.sort_by_key(|host| host.preference);
    hosts
        .into_iter()
        .flat_map(|host| {
            host.addresses
                .iter()
                .map(move |address| (host.name.clone(), *address))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, preference: u16) -> RouteHost {
        RouteHost {
            name: name.into(),
            preference,
            addresses: vec![SocketAddr::from(([127, 0, 0, 2], 25))],
        }
    }

    #[test]
    fn targets_keep_preference_order_and_spread_ties() {
        let route = Route {
            site: "a,b,c".into(),
            hosts: vec![host("b", 10), host("c", 20), host("a", 10)],
        };
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let order: Vec<String> = targets(&route).into_iter().map(|(name, _)| name).collect();
            assert_eq!(order.last().map(String::as_str), Some("c"));
            firsts.insert(order[0].clone());
        }
        assert_eq!(
            firsts.len(),
            2,
            "both hosts of preference 10 come first sometimes"
        );
    }
}
