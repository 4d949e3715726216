//! The check the config crate cannot make (it does no IO): every egress address — each `[[source]]`'s
//! `ip`, and `delivery.source_ip` — must be an address of this host, or every connection of that source
//! would fail and its mail would wait in the queue until it expires. `check-config` reports the
//! problems and `serve` refuses to start with them (before it listens, so no mail is accepted).
//!
//! The test: bind a TCP socket to `(ip, 0)`, which fails with `AddrNotAvailable` for an address that no
//! interface has (on Linux every 127.0.0.0/8 address is local).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};

use penguin_config::{Config, ConfigError, ConfigErrors};

/// Checks every egress address of `config` by binding it; the errors name the field
/// (`source[1].ip: 192.0.2.7 is not an address of this host (bind failed: ...)`).
pub fn check(config: &Config) -> Result<(), ConfigErrors> {
    let errors = check_with(config, |ip| TcpListener::bind(SocketAddr::new(ip, 0)).map(drop));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The egress addresses of `config` with their field paths, in file order.
fn egress_addresses(config: &Config) -> Vec<(String, IpAddr)> {
    let mut addresses: Vec<(String, IpAddr)> = config
        .source
        .iter()
        .enumerate()
        .map(|(index, source)| (format!("source[{index}].ip"), source.ip))
        .collect();
    if let Some(ip) = config.delivery.source_ip {
        addresses.push(("delivery.source_ip".to_owned(), ip));
    }
    addresses
}

/// [`check`] with the bind test injected (tests pass a table of outcomes).
fn check_with(config: &Config, mut bind: impl FnMut(IpAddr) -> io::Result<()>) -> Vec<ConfigError> {
    egress_addresses(config)
        .into_iter()
        .filter_map(|(path, ip)| {
            bind(ip)
                .err()
                .map(|error| ConfigError::new(path, not_local(ip, &error)))
        })
        .collect()
}

/// The reason of an address that cannot be bound.
fn not_local(ip: IpAddr, error: &io::Error) -> String {
    format!("{ip} is not an address of this host (bind failed: {error})")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with these `[[source]]` addresses (names ip0, ip1, ...).
    fn with_sources(ips: &[&str]) -> Config {
        let mut text = String::new();
        for (index, ip) in ips.iter().enumerate() {
            text.push_str(&format!("[[source]]\nname = \"ip{index}\"\nip = \"{ip}\"\n"));
        }
        Config::from_toml_str(&text).expect("valid config")
    }

    /// A bind test that fails like Linux for the listed addresses.
    fn foreign(list: &'static [&'static str]) -> impl FnMut(IpAddr) -> io::Result<()> {
        move |ip| {
            if list.iter().any(|f| f.parse::<IpAddr>().ok() == Some(ip)) {
                Err(io::Error::from(io::ErrorKind::AddrNotAvailable))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn each_foreign_address_is_named_by_its_field() {
        let unavailable = io::Error::from(io::ErrorKind::AddrNotAvailable);
        let cases: [(&[&str], &'static [&'static str], Vec<String>); 4] = [
            (&["127.0.0.2"], &[], vec![]),
            (
                &["127.0.0.2", "192.0.2.7"],
                &["192.0.2.7"],
                vec![format!(
                    "source[1].ip: 192.0.2.7 is not an address of this host (bind failed: {unavailable})"
                )],
            ),
            (
                &["2001:db8::7", "127.0.0.3", "192.0.2.8"],
                &["2001:db8::7", "192.0.2.8"],
                vec![
                    format!(
                        "source[0].ip: 2001:db8::7 is not an address of this host (bind failed: {unavailable})"
                    ),
                    format!(
                        "source[2].ip: 192.0.2.8 is not an address of this host (bind failed: {unavailable})"
                    ),
                ],
            ),
            (&[], &["192.0.2.7"], vec![]),
        ];
        for (ips, unavailable_ips, expected) in cases {
            let errors = check_with(&with_sources(ips), foreign(unavailable_ips));
            let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(messages, expected, "{ips:?}");
        }
    }

    #[test]
    fn delivery_source_ip_is_checked_too() {
        let mut config = Config::embedded_default();
        config.delivery.source_ip = Some("192.0.2.7".parse().expect("ip"));
        let errors = check_with(&config, foreign(&["192.0.2.7"]));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "delivery.source_ip");
        assert!(
            errors[0]
                .reason
                .starts_with("192.0.2.7 is not an address of this host (bind failed: ")
        );
    }

    #[test]
    fn the_real_bind_accepts_loopback_and_refuses_test_net() {
        assert!(check(&with_sources(&["127.0.0.1", "127.0.0.2"])).is_ok());
        let errors = check(&with_sources(&["127.0.0.2", "192.0.2.7"])).expect_err("TEST-NET is never local");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["source[1].ip"]);
        assert!(
            errors.0[0]
                .reason
                .contains("is not an address of this host (bind failed: "),
            "{errors}"
        );
    }
}
