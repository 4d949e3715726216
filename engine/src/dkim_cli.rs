//! `penguin-mta dkim keygen`: generates a DKIM key in `[dkim] key_dir` and prints the DNS record to
//! publish. stdout carries the zone file line only (so it can be piped into a zone file or a DNS API);
//! the hints for the operator go to stderr.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use penguin_config::Config;
use penguin_dkim::{Algorithm, DnsRecord, KeyStore};

use crate::cli::load_config;

/// `dkim` subcommands.
#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Generate a key for a domain and selector into `[dkim] key_dir` (DOMAIN/SELECTOR.pem, mode
    /// 0600; never overwrites) and print its DNS TXT record as a zone file line on stdout.
    Keygen {
        /// Config file whose `dkim.key_dir` receives the key.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The signing domain (the From domain of the mail to sign), e.g. example.com.
        #[arg(long, value_name = "DOMAIN")]
        domain: String,
        /// The selector, e.g. s2026 (one key per selector; rotate by generating a new selector).
        #[arg(long, value_name = "SELECTOR")]
        selector: String,
        /// Key type: rsa (2048 bits, understood by every verifier) or ed25519 (RFC 8463; sign with
        /// both for dual signing).
        #[arg(long, value_enum, default_value_t = AlgoArg::Rsa)]
        algo: AlgoArg,
    },
}

/// `--algo` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgoArg {
    /// RSA 2048 bits (rsa-sha256).
    Rsa,
    /// Ed25519 (ed25519-sha256).
    Ed25519,
}

impl From<AlgoArg> for Algorithm {
    fn from(algo: AlgoArg) -> Algorithm {
        match algo {
            AlgoArg::Rsa => Algorithm::Rsa,
            AlgoArg::Ed25519 => Algorithm::Ed25519,
        }
    }
}

/// Runs a `dkim` subcommand.
pub fn run(command: DkimCommand) -> anyhow::Result<()> {
    match command {
        DkimCommand::Keygen {
            config,
            domain,
            selector,
            algo,
        } => keygen(&config, &domain, &selector, algo.into()),
    }
}

/// `dkim keygen`: generates, prints the zone line on stdout and the hints on stderr.
fn keygen(
    config_path: &std::path::Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
) -> anyhow::Result<()> {
    let config = load_config(Some(config_path))?;
    let store = KeyStore::new(&config.dkim.key_dir);
    let record = store.generate(domain, selector, algorithm)?;
    let path = store.key_path(&record.domain, &record.selector)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", record.zone_line())
        .and_then(|()| stdout.flush())
        .context("writing the DNS record to stdout")?;
    eprintln!("{}", hint(&config, &record, &path.display().to_string()));
    Ok(())
}

/// What the operator reads on stderr: where the key is, what to publish, and whether the selector
/// already signs.
fn hint(config: &Config, record: &DnsRecord, path: &str) -> String {
    let DnsRecord { domain, selector, .. } = record;
    let mut text = format!(
        "wrote the {} key of selector {selector} for {domain} to {path} (mode 0600)\n\
         publish the TXT record printed on stdout at {}\n",
        record.algorithm,
        record.name()
    );
    if config.dkim.selectors_for(domain).iter().any(|s| s == selector) {
        text.push_str(&format!(
            "selector {selector} is configured for {domain}: signing starts with the next message \
             (publish the record now; until it is visible, receivers cannot verify this signature)"
        ));
    } else {
        text.push_str(&format!(
            "selector {selector} does not sign yet: add it to [dkim] selectors, or to a [[dkim.domain]] \
             entry with name = \"{domain}\", then reload (SIGHUP or POST /reload); publish the record first"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use penguin_config::DkimDomainConfig;

    fn record(selector: &str) -> DnsRecord {
        DnsRecord {
            domain: "example.com".to_owned(),
            selector: selector.to_owned(),
            algorithm: Algorithm::Ed25519,
            public_key: "AAAA".to_owned(),
        }
    }

    #[test]
    fn hint_says_whether_the_selector_signs() {
        let mut config = Config::embedded_default();
        let listed = hint(&config, &record("default"), "k/example.com/default.pem");
        assert!(listed.contains("k/example.com/default.pem"), "{listed}");
        assert!(listed.contains("default._domainkey.example.com."), "{listed}");
        assert!(
            listed.contains("signing starts with the next message"),
            "{listed}"
        );
        let unlisted = hint(&config, &record("s2"), "p");
        assert!(
            unlisted.contains("[dkim] selectors") && unlisted.contains("[[dkim.domain]]"),
            "{unlisted}"
        );
        config.dkim.domain.push(DkimDomainConfig {
            name: "example.com".to_owned(),
            selectors: vec!["s2".to_owned()],
        });
        let per_domain = hint(&config, &record("s2"), "p");
        assert!(
            per_domain.contains("signing starts with the next message"),
            "{per_domain}"
        );
        let shadowed = hint(&config, &record("default"), "p");
        assert!(shadowed.contains("does not sign yet"), "{shadowed}");
    }
}
