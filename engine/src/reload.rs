//! Run-time reload of the config file, on SIGHUP or `POST /v1/reload`, without a restart: the `[dkim]`
//! section (which selectors sign which domain — key rotation — and the missing-key action), the
//! `[[tenant]]` list (accounts, passwords, sender domains, `list_unsubscribe`, `dkim_missing_key`, `dsn`,
//! and `pools`: what `X-Pool` may pick) and the API's admin tokens (`[[api.token]]`,
//! `api.metrics_require_token`). Sessions already authenticated keep the tenant they logged in as.
//! Other changes need a restart — among them the delivery scheduler's settings (`[[source]]`, `[[pool]]`,
//! `[[provider]]`, `[shaping]`, `[warmup]`, `[reputation]`, `[cluster]`, a tenant's `pool` and
//! `max_message_rate`); the reload reports which
//! differ from the settings the server started with, at every reload until a restart. The running
//! config (what the API reads: DNS servers of domain checks, tokens) is the started one with only the
//! applied parts replaced.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use penguin_config::Config;
use serde::Serialize;

use crate::smtp::finish::Finisher;

/// Why a reload did not happen (the running settings are unchanged).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The server runs with the embedded default config: there is no file to read again.
    #[error("the server was started without --config: there is no config file to reload")]
    NoConfigFile,
    /// The file does not parse or validate.
    #[error("{0}")]
    Invalid(String),
}

/// What a reload applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// The file read.
    pub config: String,
    /// Tenants configured now.
    pub tenants: usize,
    /// `[[dkim.domain]]` entries now.
    pub dkim_domains: usize,
    /// Changed settings that a reload does not apply (they need a restart).
    pub restart_needed: Vec<String>,
}

/// The parts of a running server a reload replaces.
pub struct Reloader {
    /// The `--config` file, if any.
    path: Option<PathBuf>,
    /// Signing settings.
    finisher: Arc<Finisher>,
    /// The tenants (config and API): rebuilt from the new config.
    registry: Arc<crate::tenants::TenantRegistry>,
    /// The config the server started with: what a restart would change is compared against it.
    started: Config,
    /// The config in force: the started one with the applied parts of the last reload (the API
    /// reads it).
    running: Arc<ArcSwap<Config>>,
    /// One reload at a time (SIGHUP and `POST /reload` may race).
    reloading: Mutex<()>,
}

impl Reloader {
    /// A reloader for a server running `config` (read from `path`, if any).
    pub fn new(
        path: Option<PathBuf>,
        config: Arc<ArcSwap<Config>>,
        finisher: Arc<Finisher>,
        registry: Arc<crate::tenants::TenantRegistry>,
    ) -> Reloader {
        Reloader {
            path,
            started: (*config.load_full()).clone(),
            finisher,
            registry,
            running: config,
            reloading: Mutex::new(()),
        }
    }

    /// Reads the config file again and applies it; on any error nothing changes.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoConfigFile)?;
        let config = Config::load(path).map_err(|errors| {
            ReloadError::Invalid(format!("invalid config {}:\n{errors}", path.display()))
        })?;
        let restart_needed = self.apply(config.clone());
        Ok(ReloadReport {
            config: path.display().to_string(),
            tenants: config.tenant.len(),
            dkim_domains: config.dkim.domain.len(),
            restart_needed,
        })
    }

    /// Applies `[dkim]`, `[[tenant]]` and the API tokens of `config`; returns the other settings that
    /// differ from those the server started with.
    fn apply(&self, config: Config) -> Vec<String> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let restart_needed = needs_restart(&self.started, &config);
        self.finisher.reload(config.dkim.clone());
        self.running.store(Arc::new(applied(&self.started, config)));
        self.registry.rebuild();
        restart_needed
    }
}

/// The config in force after reloading `new` on a server started with `started`: `started` with the
/// parts a reload applies taken from `new`.
fn applied(started: &Config, new: Config) -> Config {
    let mut running = started.clone();
    running.dkim = penguin_config::DkimConfig {
        key_dir: started.dkim.key_dir.clone(),
        ..new.dkim
    };
    running.tenant = new.tenant;
    running.api.tokens = new.api.tokens;
    running.api.metrics_require_token = new.api.metrics_require_token;
    running
}

/// The changed settings between `old` and `new` that only a restart applies.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            changed.push(name.to_owned());
        }
    };
    check("smtp", old.smtp != new.smtp);
    check("tls", old.tls != new.tls);
    check("spool", old.spool != new.spool);
    check("api.listen", old.api.listen != new.api.listen);
    check("public", old.public != new.public);
    check("dns", old.dns != new.dns);
    check("delivery", old.delivery != new.delivery);
    check("log", old.log != new.log);
    check("unsubscribe", old.unsubscribe != new.unsubscribe);
    check("suppression", old.suppression != new.suppression);
    check("dkim.key_dir", old.dkim.key_dir != new.dkim.key_dir);
    // The scheduler's settings are built once, at start: egress, providers, limits, rules, and per
    // tenant its default pool and rate (the pools X-Pool may pick live in the reloaded directory).
    check("source", old.source != new.source);
    check("pool", old.pool != new.pool);
    check("provider", old.provider != new.provider);
    check("shaping", old.shaping != new.shaping);
    check("tenant.pool", tenant_pools(old) != tenant_pools(new));
    check("tenant.max_message_rate", tenant_rates(old) != tenant_rates(new));
    check("cluster", old.cluster != new.cluster);
    // Warm-up plans and the blocklist checker are read at start (a source's warm-up can be changed
    // at run time through /v1/sources/{s}/warmup).
    check("warmup", old.warmup != new.warmup);
    check("reputation", old.reputation != new.reputation);
    changed
}

/// The tenants with a default pool other than `default` (a tenant the scheduler does not know sends
/// through `default`, so a new tenant without `pool` needs no restart).
fn tenant_pools(config: &Config) -> Vec<(String, String)> {
    config
        .tenant
        .iter()
        .map(|t| (t.name.clone(), config.tenant_pools(&t.name).0))
        .filter(|(_, pool)| pool != penguin_config::DEFAULT_POOL)
        .collect()
}

/// The tenants with a `max_message_rate` (one the scheduler does not know has none).
fn tenant_rates(config: &Config) -> Vec<(String, penguin_config::MessageRate)> {
    config
        .tenant
        .iter()
        .filter_map(|t| Some((t.name.clone(), t.max_message_rate?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sections_a_reload_cannot_apply_are_reported() {
        let old = Config::embedded_default();
        let mut new = old.clone();
        new.dkim.selectors = vec!["s2".into()];
        assert!(needs_restart(&old, &new).is_empty(), "selectors are applied");
        new.delivery.port = 2526;
        new.dkim.key_dir = "elsewhere".into();
        assert_eq!(needs_restart(&old, &new), ["delivery", "dkim.key_dir"]);
    }

    #[test]
    fn the_running_config_takes_only_what_a_reload_applies() {
        let started = Config::embedded_default();
        let mut new = started.clone();
        new.dkim.selectors = vec!["s2".into()];
        new.dkim.key_dir = "elsewhere".into();
        new.dns.nameservers = vec!["127.0.0.1:5353".parse().expect("addr")];
        new.api.metrics_require_token = true;
        let running = applied(&started, new.clone());
        assert_eq!(running.dkim.selectors, ["s2"], "applied");
        assert!(running.api.metrics_require_token, "applied");
        assert_eq!(running.dkim.key_dir, started.dkim.key_dir, "needs a restart");
        assert_eq!(
            running.dns, started.dns,
            "needs a restart: domain checks keep the DNS in force"
        );
        assert_eq!(
            needs_restart(&started, &new),
            ["dns", "dkim.key_dir"],
            "compared with the started config, so a second reload reports them again"
        );
    }

    /// A config from TOML (the embedded defaults for everything else).
    fn config(toml: &str) -> Config {
        Config::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"))
    }

    /// A `[[tenant]]` named `name` with extra lines.
    fn tenant(name: &str, extra: &str) -> String {
        format!(
            "[[tenant]]\nname = \"{name}\"\nusername = \"{name}\"\n\
             password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA\"\n\
             sender_domains = [\"{name}.example\"]\n{extra}"
        )
    }

    #[test]
    fn shaping_settings_are_reported_but_the_pools_a_tenant_may_pick_are_applied() {
        let egress = "[[source]]\nname = \"ip1\"\nip = \"127.0.0.2\"\n\
                      [[source]]\nname = \"ip2\"\nip = \"127.0.0.3\"\n\
                      [[pool]]\nname = \"bulk\"\nsources = [\"ip2\"]\n";
        let base = config(&format!("{egress}{}", tenant("acme", "")));
        let cases: [(String, &[&str]); 11] = [
            (format!("{egress}{}", tenant("acme", "pools = [\"bulk\"]\n")), &[]),
            (
                format!("{egress}{}{}", tenant("acme", ""), tenant("globex", "")),
                &[],
            ),
            (format!("{egress}{}", tenant("acme", "pool = \"default\"\n")), &[]),
            (
                format!("{egress}{}", tenant("acme", "pool = \"bulk\"\n")),
                &["tenant.pool"],
            ),
            (
                format!("{egress}{}", tenant("acme", "max_message_rate = \"10/min\"\n")),
                &["tenant.max_message_rate"],
            ),
            (
                format!(
                    "{}{}",
                    egress.replace("127.0.0.3", "127.0.0.4"),
                    tenant("acme", "")
                ),
                &["source"],
            ),
            (
                format!(
                    "{}{}",
                    egress.replace("[\"ip2\"]", "[\"ip1\", \"ip2\"]"),
                    tenant("acme", "")
                ),
                &["pool"],
            ),
            (
                format!(
                    "{egress}[[provider]]\nname = \"corp\"\nmx_suffixes = [\"mx.corp.example\"]\n{}",
                    tenant("acme", "")
                ),
                &["provider"],
            ),
            (
                format!(
                    "{egress}[shaping]\nmax_message_rate = \"5/s\"\n{}",
                    tenant("acme", "")
                ),
                &["shaping"],
            ),
            (
                format!(
                    "{egress}[[warmup.plan]]\nname = \"new\"\ndaily = [50]\n{}",
                    tenant("acme", "")
                ),
                &["warmup"],
            ),
            (
                format!(
                    "{egress}[reputation]\ndnsbl = [\"zen.example\"]\n{}",
                    tenant("acme", "")
                ),
                &["reputation"],
            ),
        ];
        for (toml, expected) in cases {
            assert_eq!(needs_restart(&base, &config(&toml)), expected, "{toml}");
        }
    }
}
