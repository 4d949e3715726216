//! A made-up DNS world on loopback for the shaping scenarios: many recipient domains, each with an MX
//! record, spread over fewer sites (MX host names), each site's host name resolving to one loopback
//! address. Served by the end-to-end tests' real DNS server (`penguin_tests::dns::TestDns`,
//! hickory-server on UDP and TCP); the engine under test gets it as `dns.nameservers`.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::ensure;
use penguin_tests::dns::TestDns;

/// TTL of every record: longer than any run, so the engine's resolver asks once per name.
const TTL: u32 = 3600;

/// The shape of a DNS world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorldShape {
    /// Label that makes the names of this world unique (`d7.LABEL.test`, `mx3.LABEL.test`).
    pub label: &'static str,
    /// Recipient domains.
    pub domains: usize,
    /// Sites (MX host names); domain n is hosted by site n mod `sites`.
    pub sites: usize,
    /// Whether every site's host resolves to its own address (127.0.1.1, 127.0.1.2, …) or all to
    /// 127.0.2.1.
    pub distinct_addresses: bool,
}

/// A running DNS server with the world's records; dropping it stops the server.
pub struct DnsWorld {
    /// The server (UDP and TCP on one loopback port).
    dns: TestDns,
    /// The recipient domains, in order (domain n is hosted by site n mod sites).
    pub domains: Vec<String>,
    /// The address of each site, in order.
    pub site_addresses: Vec<Ipv4Addr>,
}

impl DnsWorld {
    /// Starts the server (inside a tokio runtime: its tasks live there) with the world's records.
    pub async fn start(shape: WorldShape) -> anyhow::Result<DnsWorld> {
        ensure!(
            shape.sites > 0 && shape.domains >= shape.sites,
            "a world needs sites and at least one domain per site"
        );
        let site_addresses = (0..shape.sites)
            .map(|site| site_address(site, shape.distinct_addresses))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let dns = TestDns::start().await;
        for (site, address) in site_addresses.iter().enumerate() {
            dns.add_a(&site_host(shape.label, site), *address, TTL);
        }
        let mut domains = Vec::with_capacity(shape.domains);
        for index in 0..shape.domains {
            let domain = format!("d{index}.{}.test", shape.label);
            dns.add_mx(&domain, 10, &site_host(shape.label, index % shape.sites), TTL);
            domains.push(domain);
        }
        Ok(DnsWorld {
            dns,
            domains,
            site_addresses,
        })
    }

    /// The server's address, for `dns.nameservers`.
    pub fn address(&self) -> SocketAddr {
        self.dns.address
    }
}

/// The MX host name of site `site`.
fn site_host(label: &str, site: usize) -> String {
    format!("mx{site}.{label}.test")
}

/// The address of site `site`: 127.0.1.1 to 127.0.1.254, then 127.0.3.1 onwards (127.0.2.x is the
/// shared address), at most 254 × 200 sites; or 127.0.2.1 for all.
fn site_address(site: usize, distinct: bool) -> anyhow::Result<Ipv4Addr> {
    if !distinct {
        return Ok(Ipv4Addr::new(127, 0, 2, 1));
    }
    ensure!(site < 254 * 200, "too many sites for distinct loopback addresses");
    let (high, low) = (site / 254, site % 254);
    let third = if high == 0 { 1 } else { high + 2 };
    Ok(Ipv4Addr::new(127, 0, third as u8, 1 + low as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_addresses_are_distinct_loopback_addresses() {
        let addresses: Vec<Ipv4Addr> = (0..600).map(|s| site_address(s, true).unwrap()).collect();
        assert_eq!(addresses[0], Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(addresses[49], Ipv4Addr::new(127, 0, 1, 50));
        let unique: std::collections::HashSet<_> = addresses.iter().collect();
        assert_eq!(unique.len(), 600);
        assert!(
            addresses
                .iter()
                .all(|a| a.is_loopback() && a.octets()[3] != 0 && a.octets()[3] != 255)
        );
        assert!(
            addresses.iter().all(|a| a.octets()[2] != 2),
            "127.0.2.x is the shared address"
        );
        assert_eq!(site_address(7, false).unwrap(), Ipv4Addr::new(127, 0, 2, 1));
    }

    #[test]
    fn maps_domains_onto_sites() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let shape = WorldShape {
                label: "unit",
                domains: 6,
                sites: 3,
                distinct_addresses: true,
            };
            let world = DnsWorld::start(shape).await.unwrap();
            assert_eq!(world.domains[4], "d4.unit.test");
            assert_eq!(world.site_addresses.len(), 3);
            assert_eq!(world.address().ip(), std::net::IpAddr::V4(Ipv4Addr::LOCALHOST));
        });
    }
}
